#!/bin/busybox sh
# /init of the test guest (busybox initramfs built by prepare.sh).
#
# Console protocol, shared with test/helpers/guest.ts:
#   ttyS0 (first -serial, a log file on the host) carries everything the guest
#   says; ttyS1 (second -serial, a unix socket on the host) carries commands.
#   Lines this script prints start with "==GK== ":
#     ==GK== READY kernel=<uname -r> uptime=<s> channel=ttyS1|none
#     ==GK== MODPROBE-FAILED <module>
#     ==GK== BEGIN <seq>          then the command's stdout+stderr,
#     ==GK== END <seq> rc=<exit code>
#   A command arrives as one line "<seq> <base64 of a sh script>": base64 keeps
#   quoting, newlines and control characters out of the tty's way.
#
# Kernel arguments read here:
#   gk.verbose   keep kernel messages on ttyS0 after boot. By default they are
#                muted once the guest is ready, because the kernel writes them
#                to the console asynchronously and they would split command
#                output mid-line; `dmesg` still has them.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

mark() { echo "==GK== $*"; }

# Probing is synchronous for virtio-blk and virtio-net, and for SCSI too with
# scsi_mod.scan=sync on the kernel command line, so once modprobe returns the
# boot-time devices are visible and no settle delay is needed.
for m in $(cat /etc/modules); do
  modprobe "$m" || mark "MODPROBE-FAILED $m"
done
# gk.modules=a,b: modules the kit carries but loads only on request.
for m in $(sed -n 's/.*gk\.modules=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' '); do
  modprobe "$m" || mark "MODPROBE-FAILED $m"
done

grep -qw gk.verbose /proc/cmdline || dmesg -n 1

channel=none
if [ -c /dev/ttyS1 ] && exec 3<>/dev/ttyS1; then
  # raw: no line editing, no special characters, no 4 KiB canonical line
  # limit; -echo: nothing written back into the host's socket.
  stty -F /dev/ttyS1 raw -echo && channel=ttyS1
fi

mark "READY kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime) channel=$channel"

if [ "$channel" = none ]; then
  # PID 1 must not exit: the kernel would panic and QEMU would quit.
  while :; do sleep 3600; done
fi

while :; do
  if ! read -r seq payload <&3; then
    sleep 0.1
    continue
  fi
  case $seq in ''|*[!0-9]*) continue ;; esac
  if echo "$payload" | base64 -d > /tmp/gk.cmd 2>/dev/null; then
    # A fresh sh per command: no state leaks between commands, and stdin is
    # not the command channel, so a command cannot swallow the next ones.
    sh /tmp/gk.cmd </dev/null >/tmp/gk.out 2>&1
    rc=$?
  else
    echo "cannot decode command" > /tmp/gk.out
    rc=126
  fi
  mark "BEGIN $seq"
  cat /tmp/gk.out
  # Keep the END marker on a line of its own.
  [ -n "$(tail -c 1 /tmp/gk.out)" ] && echo
  mark "END $seq rc=$rc"
done
