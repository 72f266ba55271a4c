#!/bin/bash
# ganeti-lab.sh: a real single-node Ganeti 3.0 cluster (hypervisor kvm, QEMU
# under TCG) whose whole network lives inside one network namespace, for the
# Ganeti test suite. Run as root on Debian 12.
#
#   ganeti-lab.sh up          install missing packages, build and start the lab (idempotent)
#   ganeti-lab.sh up2         "up", then a second node joined to the cluster (idempotent)
#   ganeti-lab.sh down        remove instances, destroy the cluster, undo "up" and "up2"
#   ganeti-lab.sh gnt CMD…    run a command inside the lab's namespace (node 1)
#   ganeti-lab.sh node2 CMD…  run a command on node 2 (its network, host name and mounts)
#
# Node 2 (node2.example.com, 198.51.100.11) has its own network namespace
# (GKD_LAB_NS2, default gkd-ganeti2), its own UTS namespace (host name) and
# its own mount namespace, in which its own directories are mounted over
# /var/lib/ganeti, /run/ganeti, /var/log/ganeti, /etc/ganeti-kvm-devices
# and /run/ganeti-kvm-devices: its Ganeti state, runtime files, QMP sockets,
# the plugin's configuration and the plugin daemon's socket are its own.
# Shared with node 1: the programs, /etc/ganeti (hooks, file storage
# paths), the SSH host keys and the shared-file storage directory, which is
# what lets Ganeti live-migrate a sharedfile instance without DRBD. The two
# namespaces are joined by a bridge inside node 1's namespace; nothing is
# routed outside.
#
# What "up" changes on the machine (all undone by "down"): a network
# namespace (GKD_LAB_NS, default gkd-ganeti) holding every address of the
# lab, the host name (Ganeti takes the node name from the host name, which is
# not per namespace), two lines in /etc/hosts, /etc/ganeti/file-storage-paths,
# a TCG wrapper as the cluster's kvm_path, the daemon's config file when
# there is none (listing the wrapper in qemuBinaries), and the cluster itself. Nothing of
# the lab listens or sends outside the namespace.
set -Eeuo pipefail

NS=${GKD_LAB_NS:-gkd-ganeti}
NET=198.51.100.0/24             # TEST-NET-2: documentation addresses only
NODE_IP=198.51.100.10
CLUSTER_IP=198.51.100.100
NODE=node1.example.com
CLUSTER=cluster.example.com
IF=gnt0
BRIDGE=br0
QEMU_WRAPPER=/usr/local/sbin/gkd-qemu-tcg
DAEMON_CONFIG=/etc/ganeti-kvm-devices/config.json
FILE_DIR=/srv/ganeti/file-storage
SHARED_DIR=/srv/ganeti/shared-file-storage
STATE=/var/lib/gkd-ganeti-lab
DAEMONS="noded wconfd luxid confd rapi mond"
PKGS="ganeti ganeti-os-noop openssh-server qemu-system-x86 qemu-utils iproute2 curl"

REPO=$(cd "$(dirname "$(readlink -f "$0")")/../../.." && pwd)
STEP=start
log() { printf '[ganeti-lab %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'ganeti-lab.sh: FAILED in step "%s": %s\n' "$STEP" "$*" >&2; exit 1; }
trap 'printf "ganeti-lab.sh: FAILED in step \"%s\" (line %s): %s\n" "$STEP" "$LINENO" "$BASH_COMMAND" >&2' ERR
in_ns() { ip netns exec "$NS" "$@"; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -x "$NS" >/dev/null; }
alive() { [ -n "$1" ] && [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# pid_in_ns PIDFILE: the file names a live process inside the lab's namespace.
pid_in_ns() { local p; p=$(cat "$1" 2>/dev/null) && alive "$p" && [ "$(ip netns identify "$p" 2>/dev/null)" = "$NS" ]; }

packages() {
  STEP=packages
  local missing="" p
  for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    log "apt-get install$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # Debian's package starts no daemons by itself under systemd-less CI, but
  # its init script would start them outside the namespace at the next boot.
  if ls /etc/rc[2345].d/S[0-9][0-9]ganeti >/dev/null 2>&1; then
    update-rc.d ganeti disable >/dev/null 2>&1 && touch "$STATE/initd-disabled" || true
  fi
}

network() {
  STEP=network
  ns_exists || ip netns add "$NS"
  in_ns ip link set lo up
  if ! in_ns ip link show "$IF" >/dev/null 2>&1; then
    # Both ends of the veth pair stay in the namespace: the node's interface
    # gets a carrier and nothing is connected to the outside.
    ip -n "$NS" link add "$IF" type veth peer name "$IF-peer"
  fi
  in_ns ip -4 addr show dev "$IF" | grep " $NODE_IP/" >/dev/null || in_ns ip addr add "$NODE_IP/24" dev "$IF"
  in_ns ip link set "$IF-peer" up
  in_ns ip link set "$IF" up
  in_ns ip link show "$BRIDGE" >/dev/null 2>&1 || ip -n "$NS" link add "$BRIDGE" type bridge
  in_ns ip link set "$BRIDGE" up
  # Outside the namespace the lab's addresses are unreachable, never routed.
  # (No "grep -q" in pipelines here: under pipefail its early exit can fail the writer.)
  ip route show type unreachable | grep "^unreachable $NET" >/dev/null || { ip route add unreachable "$NET" && touch "$STATE/guard-route"; }
}

names() {
  STEP=names
  [ -f "$STATE/orig-hostname" ] || hostname >"$STATE/orig-hostname"
  [ -f "$STATE/orig-etc-hostname" ] || cp /etc/hostname "$STATE/orig-etc-hostname" 2>/dev/null || : >"$STATE/orig-etc-hostname"
  local ip name
  for ip in "$NODE_IP $NODE" "$NODE2_IP $NODE2" "$CLUSTER_IP $CLUSTER"; do
    name=${ip#* }; ip=${ip%% *}
    grep " $name ${name%%.*} # gkd-ganeti-lab\$" /etc/hosts >/dev/null || printf '%s %s %s # gkd-ganeti-lab\n' "$ip" "$name" "${name%%.*}" >>/etc/hosts
  done
  [ "$(hostname)" = "$NODE" ] || hostname "$NODE"
  [ "$(cat /etc/hostname 2>/dev/null)" = "$NODE" ] || echo "$NODE" >/etc/hostname
  [ "$(in_ns /usr/bin/python3 -c 'import socket; print(socket.getfqdn())')" = "$NODE" ] || die "socket.getfqdn() inside $NS is not $NODE"
}

sshd_up() {
  STEP=sshd
  ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A >/dev/null
  mkdir -p /root/.ssh /run/sshd; chmod 700 /root/.ssh
  [ -f /root/.ssh/id_rsa ] || { ssh-keygen -q -t rsa -b 2048 -N '' -f /root/.ssh/id_rsa; touch "$STATE/created-root-key"; }
  grep -qxF "$(cat /root/.ssh/id_rsa.pub)" /root/.ssh/authorized_keys 2>/dev/null || cat /root/.ssh/id_rsa.pub >>/root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
  if ! pid_in_ns "$STATE/sshd.pid"; then
    in_ns /usr/sbin/sshd -o ListenAddress="$NODE_IP" -o ListenAddress=127.0.0.1 \
      -o PidFile="$STATE/sshd.pid" -o PermitRootLogin=prohibit-password
    local i; for i in $(seq 50); do pid_in_ns "$STATE/sshd.pid" && break; sleep 0.1; done
    pid_in_ns "$STATE/sshd.pid" || die "sshd did not start inside $NS"
  fi
  local h
  for h in "$NODE" "${NODE%%.*}" "$NODE_IP"; do
    ssh-keygen -F "$h" >/dev/null 2>&1 || in_ns ssh-keyscan -T 5 "$h" 2>/dev/null >>/root/.ssh/known_hosts || true
  done
  in_ns ssh -o BatchMode=yes -o ConnectTimeout=5 "$NODE" true || die "ssh root@$NODE inside $NS does not work"
}

qemu_wrapper() {
  STEP=qemu-wrapper
  # With kvm_flag=enabled Ganeti passes "-machine VERSION,accel=kvm", which is
  # what production runtime files hold; this machine has no KVM, so the
  # wrapper runs the same command line under TCG. Probes pass through.
  mkdir -p "$(dirname "$QEMU_WRAPPER")"
  cat >"$QEMU_WRAPPER.new" <<'EOF'
#!/bin/sh
# qemu-system-x86_64 under TCG for the Ganeti test lab: accel=kvm becomes accel=tcg.
n=$#
for a in "$@"; do
  case $a in
    -enable-kvm) ;;
    *accel=kvm*) set -- "$@" "$(printf '%s' "$a" | sed 's/accel=kvm/accel=tcg/')" ;;
    *) set -- "$@" "$a" ;;
  esac
done
shift $n
exec /usr/bin/qemu-system-x86_64 "$@"
EOF
  chmod 755 "$QEMU_WRAPPER.new"; mv "$QEMU_WRAPPER.new" "$QEMU_WRAPPER"
  # The daemon runs only the QEMU binaries its configuration lists: as an operator
  # with a custom kvm_path would, list the wrapper (unless a config is there already).
  # The booted-guest tests give Ganeti the repository's guest kit as kernel_path/initrd_path.
  if [ ! -f "$DAEMON_CONFIG" ] || [ -f "$STATE/created-daemon-config" ]; then
    mkdir -p "$(dirname "$DAEMON_CONFIG")"
    # No KVM here: QEMUs the daemon builds (migration targets) run under TCG, as on any node without KVM.
    printf '{"qemuBinaries": ["%s", "/usr/bin/qemu-system-x86_64"], "kernelRoots": ["/boot/", "%s/"], "accel": "tcg"}\n' \
      "$QEMU_WRAPPER" "${GUEST_KIT_DIR:-$REPO/.lab/guest}" >"$DAEMON_CONFIG"
    touch "$STATE/created-daemon-config"
  fi
}

cluster_init() {
  STEP=cluster-init
  if [ -f /var/lib/ganeti/config.data ]; then
    [ "$(cat /var/lib/ganeti/ssconf_master_node 2>/dev/null)" = "$NODE" ] || die "/var/lib/ganeti holds another cluster; destroy it first"
    return 0
  fi
  mkdir -p "$FILE_DIR" "$SHARED_DIR" /etc/ganeti
  [ -f /etc/ganeti/file-storage-paths ] || touch "$STATE/created-file-storage-paths"
  local d
  for d in "$FILE_DIR" "$SHARED_DIR"; do
    grep -qxF "$d" /etc/ganeti/file-storage-paths 2>/dev/null || echo "$d" >>/etc/ganeti/file-storage-paths
  done
  log "gnt-cluster init $CLUSTER inside $NS"
  in_ns gnt-cluster init --enabled-hypervisors=kvm --enabled-disk-templates=file,sharedfile,diskless \
    --file-storage-dir="$FILE_DIR" --shared-file-storage-dir="$SHARED_DIR" \
    --master-netdev="$IF" --master-netmask=24 --nic-parameters=mode=bridged,link="$BRIDGE" \
    --no-etc-hosts --no-ssh-init \
    -H "kvm:kvm_path=$QEMU_WRAPPER,kvm_flag=enabled,kernel_path=,initrd_path=,vnc_bind_address=,serial_console=false" \
    "$CLUSTER" >/dev/null
  # Disks of a few MiB, up to Ganeti's 16 disks and 8 NICs.
  in_ns gnt-cluster modify --ipolicy-bounds-specs \
    min:disk-size=1,cpu-count=1,disk-count=0,memory-size=32,nic-count=0,spindle-use=0/max:disk-size=1048576,cpu-count=8,disk-count=16,memory-size=32768,nic-count=8,spindle-use=12
  in_ns gnt-cluster modify --ipolicy-std-specs disk-size=64,memory-size=128,cpu-count=1,disk-count=1,nic-count=1,spindle-use=1
  # Debian's cron job would run ganeti-watcher outside the namespace.
  in_ns gnt-cluster watcher pause 3650d >/dev/null
}

daemons() {
  STEP=daemons
  local d pf i
  for d in $DAEMONS; do
    pf=/var/run/ganeti/ganeti-$d.pid
    pid_in_ns "$pf" && continue
    if p=$(cat "$pf" 2>/dev/null) && alive "$p"; then die "ganeti-$d (pid $p) runs outside $NS"; fi
    rm -f "$pf"
    in_ns /usr/lib/ganeti/daemon-util start "ganeti-$d" >/dev/null
    for i in $(seq 100); do pid_in_ns "$pf" && break; sleep 0.1; done
    pid_in_ns "$pf" || die "ganeti-$d did not stay up (see /var/log/ganeti/)"
  done
  for i in $(seq 60); do in_ns gnt-node list --no-headers -o name >/dev/null 2>&1 && break; sleep 0.5; done
  in_ns ip -4 addr show dev "$IF" | grep " $CLUSTER_IP/" >/dev/null || in_ns gnt-cluster activate-master-ip >/dev/null
  [ "$(in_ns gnt-cluster getmaster)" = "$NODE" ] || die "gnt-cluster getmaster does not answer $NODE"
}

up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  mkdir -p "$STATE"
  packages; network; names; sshd_up; qemu_wrapper; cluster_init; daemons
  STEP=done
  log "cluster $CLUSTER up inside network namespace $NS"
}

# stop_pidfile FILE PATTERN: stops the process the file names when its
# command line matches PATTERN and it runs inside the lab's namespace.
stop_pidfile() {
  local p cmd i
  p=$(cat "$1" 2>/dev/null) || return 0
  alive "$p" || { rm -f "$1"; return 0; }
  cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)
  printf '%s' "$cmd" | grep -Eq -- "$2" || { log "left pid $p alone: '$cmd' is not /$2/"; return 0; }
  [ "$(ip netns identify "$p" 2>/dev/null)" = "$NS" ] || { log "left pid $p alone: not inside $NS"; return 0; }
  kill "$p" 2>/dev/null || true
  for i in $(seq 100); do alive "$p" || break; sleep 0.1; done
  alive "$p" && kill -9 "$p" 2>/dev/null || true
  rm -f "$1"
}

down() {
  STEP=down
  [ "$(id -u)" = 0 ] || die "run as root"
  set +e
  if ns_exists && [ -f /var/lib/ganeti/config.data ] && in_ns gnt-cluster getmaster >/dev/null 2>&1; then
    for i in $(in_ns gnt-instance list --no-headers -o name 2>/dev/null); do
      in_ns gnt-instance remove -f --shutdown-timeout=0 --ignore-failures "$i" >/dev/null 2>&1
    done
    in_ns gnt-node list --no-headers -o name 2>/dev/null | grep -x "$NODE2" >/dev/null &&
      in_ns gnt-node remove "$NODE2" >/dev/null 2>&1
    in_ns gnt-cluster destroy --yes-do-it >/dev/null 2>&1
  fi
  down2
  local f n d
  for f in /var/run/ganeti/kvm-hypervisor/pid/*; do
    [ -f "$f" ] || continue
    n=$(basename "$f"); stop_pidfile "$f" "qemu-system.* -name $n( |$)"
  done
  for d in metad kvmd mond rapi confd luxid wconfd noded; do stop_pidfile "/var/run/ganeti/ganeti-$d.pid" "ganeti-$d"; done
  stop_pidfile "$STATE/sshd.pid" sshd
  # What gnt-cluster destroy leaves when it could not run (as its --force would).
  find /var/lib/ganeti -maxdepth 1 -type f -delete 2>/dev/null
  # The daemons are stopped by now: the queue's lock file goes too (gnt-cluster init refuses a queue
  # dir holding any file, which is what a cluster destroy that could not reach node 2 leaves).
  find /var/lib/ganeti/queue -maxdepth 1 -type f -delete 2>/dev/null
  find /var/run/ganeti/crypto -mindepth 1 -delete 2>/dev/null
  for d in conf pid ctrl nic uid; do find "/var/run/ganeti/kvm-hypervisor/$d" -mindepth 1 -delete 2>/dev/null; done
  find /var/run/ganeti/instance-disks "$FILE_DIR" "$SHARED_DIR" -mindepth 1 -delete 2>/dev/null
  ns_exists && ip netns del "$NS"
  [ -f "$STATE/guard-route" ] && ip route del unreachable "$NET" 2>/dev/null
  if grep -q ' # gkd-ganeti-lab$' /etc/hosts; then
    local t; t=$(mktemp); grep -v ' # gkd-ganeti-lab$' /etc/hosts >"$t"; cat "$t" >/etc/hosts; rm -f "$t"
  fi
  [ -s "$STATE/orig-hostname" ] && hostname "$(cat "$STATE/orig-hostname")"
  [ -f "$STATE/orig-etc-hostname" ] && cat "$STATE/orig-etc-hostname" >/etc/hostname
  [ -f "$STATE/initd-disabled" ] && update-rc.d ganeti enable >/dev/null 2>&1
  [ -f "$STATE/created-file-storage-paths" ] && rm -f /etc/ganeti/file-storage-paths
  [ -f "$STATE/created-daemon-config" ] && rm -f "$DAEMON_CONFIG"
  rm -f "$QEMU_WRAPPER"
  rm -rf "$STATE"
  log "lab removed"
}


# ---- node 2 -------------------------------------------------------------
NS2=${GKD_LAB_NS2:-gkd-ganeti2}
NODE2_IP=198.51.100.11
NODE2=node2.example.com
LAN=lan0
NODE2_DIR=$STATE/node2
NSFILES=$STATE/ns
# The directories node 2 has for itself, mounted over the shared ones.
NODE2_MOUNTS="/var/lib/ganeti /run/ganeti /var/log/ganeti /etc/ganeti-kvm-devices /run/ganeti-kvm-devices"

# n2 CMD…: runs CMD on node 2.
n2() { nsenter --net="/run/netns/$NS2" --uts="$NSFILES/node2.uts" --mount="$NSFILES/node2.mnt" "$@"; }
node2_ns_ready() { ip netns list 2>/dev/null | awk '{print $1}' | grep -x "$NS2" >/dev/null && [ -f "$NSFILES/node2.mnt" ] && n2 true 2>/dev/null; }

node2_network() {
  STEP=node2-network
  ip netns list 2>/dev/null | awk '{print $1}' | grep -x "$NS2" >/dev/null || ip netns add "$NS2"
  ip -n "$NS2" link set lo up
  # Node 1's interface gets a switch: its veth peer and node 2's cable on one bridge.
  in_ns ip link show "$LAN" >/dev/null 2>&1 || ip -n "$NS" link add "$LAN" type bridge
  in_ns ip link set "$LAN" up
  in_ns ip link set "$IF-peer" master "$LAN"
  if ! in_ns ip link show n2lan >/dev/null 2>&1; then
    ip -n "$NS" link add n2lan type veth peer name "$IF" netns "$NS2"
  fi
  in_ns ip link set n2lan master "$LAN"
  in_ns ip link set n2lan up
  ip -n "$NS2" -4 addr show dev "$IF" | grep " $NODE2_IP/" >/dev/null || ip -n "$NS2" addr add "$NODE2_IP/24" dev "$IF"
  ip -n "$NS2" link set "$IF" up
  ip -n "$NS2" link show "$BRIDGE" >/dev/null 2>&1 || ip -n "$NS2" link add "$BRIDGE" type bridge
  ip -n "$NS2" link set "$BRIDGE" up
}

node2_namespaces() {
  STEP=node2-namespaces
  node2_ns_ready && return 0
  local d
  # A namespace is kept alive by mounting its file; that mount must not propagate.
  mkdir -p "$NSFILES"
  mountpoint -q "$NSFILES" || { mount --bind "$NSFILES" "$NSFILES"; mount --make-private "$NSFILES"; }
  : >"$NSFILES/node2.mnt"; : >"$NSFILES/node2.uts"
  for d in $NODE2_MOUNTS; do mkdir -p "$d" "$NODE2_DIR$d"; done
  cp -a /etc/ganeti-kvm-devices/. "$NODE2_DIR/etc/ganeti-kvm-devices/" 2>/dev/null || true
  # sysfs is mounted again so that it shows node 2's own interfaces (Ganeti
  # checks its bridge under /sys/class/net), as "ip netns exec" does.
  nsenter --net="/run/netns/$NS2" unshare --mount="$NSFILES/node2.mnt" --uts="$NSFILES/node2.uts" --propagation private \
    /bin/sh -ec '
      hostname "$1"; shift
      mount -t sysfs sysfs /sys
      dir=$1; shift
      for m in "$@"; do mount --bind "$dir$m" "$m"; done
    ' node2 "$NODE2" "$NODE2_DIR" $NODE2_MOUNTS
  [ "$(n2 hostname)" = "$NODE2" ] || die "node 2's host name is not $NODE2"
  [ "$(n2 /usr/bin/python3 -c 'import socket; print(socket.getfqdn())')" = "$NODE2" ] || die "socket.getfqdn() on node 2 is not $NODE2"
  n2 ip link show "$BRIDGE" >/dev/null || die "node 2 does not see its bridge"
  n2 /usr/lib/ganeti/ensure-dirs >/dev/null 2>&1 || true
}

node2_sshd() {
  STEP=node2-sshd
  mkdir -p "$NODE2_DIR/state"
  if ! { p=$(cat "$NODE2_DIR/state/sshd.pid" 2>/dev/null) && alive "$p" && [ "$(ip netns identify "$p")" = "$NS2" ]; }; then
    n2 /usr/sbin/sshd -o ListenAddress="$NODE2_IP" -o PidFile="$NODE2_DIR/state/sshd.pid" -o PermitRootLogin=prohibit-password
    local i; for i in $(seq 50); do [ -s "$NODE2_DIR/state/sshd.pid" ] && break; sleep 0.1; done
  fi
  local h
  for h in "$NODE2" "${NODE2%%.*}" "$NODE2_IP"; do
    ssh-keygen -F "$h" >/dev/null 2>&1 || in_ns ssh-keyscan -T 5 "$h" 2>/dev/null >>/root/.ssh/known_hosts || true
  done
  in_ns ssh -o BatchMode=yes -o ConnectTimeout=5 "$NODE2" true || die "ssh root@$NODE2 from node 1 does not work"
  [ "$(in_ns ssh -o BatchMode=yes "$NODE2" hostname)" = "$NODE2" ] || die "ssh to $NODE2 does not land on node 2"
}

node2_join() {
  STEP=node2-join
  if ! in_ns gnt-node list --no-headers -o name 2>/dev/null | grep -x "$NODE2" >/dev/null; then
    log "gnt-node add $NODE2"
    in_ns gnt-node add --no-ssh-key-check --master-capable=no "$NODE2" >/dev/null
  fi
  # noded on node 2 (gnt-node add starts it; a later "up2" after a restart must too).
  local pf=/run/ganeti/ganeti-noded.pid p i
  if ! { p=$(n2 cat "$pf" 2>/dev/null) && alive "$p" && [ "$(ip netns identify "$p")" = "$NS2" ]; }; then
    n2 rm -f "$pf"
    n2 /usr/lib/ganeti/daemon-util start ganeti-noded >/dev/null
  fi
  for i in $(seq 60); do
    [ "$(in_ns gnt-node list --no-headers -o name,offline 2>/dev/null | awk -v n="$NODE2" '$1 == n {print $2}')" = N ] && break
    sleep 0.5
  done
  in_ns gnt-node list --no-headers -o name 2>/dev/null | grep -x "$NODE2" >/dev/null || die "$NODE2 is not in the cluster"
}

up2() {
  up
  packages_for_node2
  node2_network; node2_namespaces; node2_sshd; node2_join
  STEP=done
  log "node $NODE2 up inside network namespace $NS2"
}

packages_for_node2() { command -v nsenter >/dev/null && command -v unshare >/dev/null || die "nsenter/unshare (util-linux) missing"; }

down2() {
  local p i
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -x "$NS2" >/dev/null; then
    # Every process on node 2 (noded, sshd, QEMU, the plugin's daemon) lives in its network namespace.
    for p in $(ip netns pids "$NS2" 2>/dev/null); do kill "$p" 2>/dev/null; done
    for i in $(seq 50); do [ -z "$(ip netns pids "$NS2" 2>/dev/null)" ] && break; sleep 0.1; done
    for p in $(ip netns pids "$NS2" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$NS2"
  fi
  if [ -d "$NSFILES" ]; then
    umount "$NSFILES/node2.mnt" 2>/dev/null; umount "$NSFILES/node2.uts" 2>/dev/null
    mountpoint -q "$NSFILES" && umount "$NSFILES"
  fi
  rm -rf "$NODE2_DIR" "$NSFILES"
  rmdir /run/ganeti-kvm-devices 2>/dev/null || true
  return 0
}

case ${1:-} in
  up) up ;;
  up2) up2 ;;
  down) down ;;
  node2) shift; [ $# -gt 0 ] || die "usage: $0 node2 COMMAND [ARG…]"
    exec nsenter --net="/run/netns/$NS2" --uts="$NSFILES/node2.uts" --mount="$NSFILES/node2.mnt" "$@" ;;
  gnt) shift; [ $# -gt 0 ] || die "usage: $0 gnt COMMAND [ARG…]"; exec ip netns exec "$NS" "$@" ;;
  *) echo "usage: $0 up|up2|down|gnt COMMAND [ARG…]|node2 COMMAND [ARG…]" >&2; exit 2 ;;
esac
