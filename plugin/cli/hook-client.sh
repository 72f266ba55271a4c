# The body of every Ganeti hook script in hooks/, sourced by them after they
# set HOOK (the hook's name), WHEN_UNSURE (refuse or pass: what the hook does
# when the daemon cannot judge; post hooks pass) and PER_INSTANCE (yes or
# no), as plugin/cli/hook-table.ts says; a test keeps the two equal.
#
# It posts the hook's environment to the daemon's POST /hook/$HOOK with curl:
# the daemon runs the same checks as "kvm-devices hook $HOOK" and answers the
# exit status and the line to print, without the ~60 ms Node needs to start.
# When the daemon is unreachable or does not answer in time, the policy is
# applied here, in the Node CLI's words. Anything out of the ordinary (no
# curl, an unreadable config file, a setting sed cannot read for sure) goes
# to the Node CLI, which handles every case.
# install.sh pins the paths below (Ganeti runs hooks with PATH reset).
KVM_DEVICES='@KVM_DEVICES@'
SYSCONFDIR='@SYSCONFDIR@'
nl='
'

node_cli() {
  case $KVM_DEVICES in
    @*) exec node "$(dirname "$0")/../dist/plugin/cli/main.js" hook "$HOOK" ;;
  esac
  exec "$KVM_DEVICES" hook "$HOOK"
}

say() { printf 'kvm-devices %s: %s: %s\n' "$HOOK" "$1" "$2"; }

# The daemon cannot judge ($1 says why): the hook's policy decides.
unsure() {
  case $HOOK:$WHEN_UNSURE in
    *-pre:refuse) say refused "$1 (pre hook: failing closed)"; exit 1 ;;
    *-pre:*) say ok "$1 (this pre hook only refuses what QEMU would refuse: passing)"; exit 0 ;;
    *) say ok "$1 (post hook: failing open)"; exit 0 ;;
  esac
}

# Sets $value to setting $1 of the config file when it sits on its key's line
# matching the sed expression $2; empty when the file does not set it. A value
# this cannot read for sure (escapes, split lines, the key twice) means the
# Node CLI, which parses JSON.
read_setting() {
  value=$(sed -n -e "s/.*\"$1\"[[:space:]]*:[[:space:]]*\($2\)[[:space:]]*\([,}].*\)\{0,1\}\$/=\1/p" -e t \
    -e "/\"$1\"[[:space:]]*:/s/.*/?/p" "$conf")
  case $value in
    '') ;;
    *"$nl"* | '?'*) node_cli ;;
    *) value=${value#=} ;;
  esac
}

if [ "$PER_INSTANCE" = yes ] && [ -n "${GANETI_INSTANCE_HYPERVISOR+set}" ] && [ "$GANETI_INSTANCE_HYPERVISOR" != kvm ]; then
  say ok "${GANETI_INSTANCE_NAME-instance} uses hypervisor \"$GANETI_INSTANCE_HYPERVISOR\", nothing to check"
  exit 0
fi
command -v curl >/dev/null 2>&1 || node_cli

# The config file the Node CLI would read: GKD_CONFIG, else the installed one, else the system one.
conf=${GKD_CONFIG:-}
if [ -z "$conf" ]; then
  for f in "$SYSCONFDIR/ganeti-kvm-devices/config.json" /etc/ganeti-kvm-devices/config.json; do
    if [ -f "$f" ]; then conf=$f; break; fi
  done
fi
[ -z "$conf" ] || [ -r "$conf" ] || node_cli

# Environment over config file over default, as in the Node CLI.
socket=${GKD_SOCKET:-}
timeout_ms=${GKD_HOOK_TIMEOUT_MS:-}
if [ -n "$conf" ]; then
  [ -n "$socket" ] || { read_setting socket '"[^"\\]*"'; socket=${value#\"}; socket=${socket%\"}; }
  [ -n "$timeout_ms" ] || { read_setting hookTimeoutMs '[1-9][0-9]*'; timeout_ms=$value; }
fi
if [ -z "$socket" ]; then
  # Another user's default socket is in a per-user directory only the Node CLI works out.
  [ "$(id -u)" = 0 ] || node_cli
  socket=/run/ganeti-kvm-devices/rpc.sock
fi
case ${timeout_ms:-60000} in
  *[!0-9]* | 0*) node_cli ;;
esac
# Each call the hook makes is bounded by hookTimeoutMs inside the daemon, as over the
# WebSocket; this bounds the whole request, with the Node CLI's 5 s connect allowance.
max_ms=$((${timeout_ms:-60000} + 5000))

# The body: the environment the hook code reads, as env -0 prints it, and the config file's
# text (the daemon reads no file a request names).
body() {
  env -0 | grep -z -E '^(GANETI|GKD)_'
  if [ -n "$conf" ]; then printf 'GKD_CONFIG_TEXT='; cat "$conf"; printf '\0'; fi
}
unset GKD_CONFIG_TEXT
if [ -n "$conf" ]; then GKD_CONFIG=$conf; export GKD_CONFIG; fi
out=$(body | curl -s --unix-socket "$socket" --connect-timeout 5 --max-time "$((max_ms / 1000)).$((max_ms % 1000 / 100))" \
  -H 'Content-Type: application/octet-stream' -H 'Expect:' --data-binary @- -w '\n%{http_code}' \
  "http://localhost/hook/$HOOK")
rc=$?
case $rc in
  0) ;;
  7)
    why=ECONNREFUSED
    if [ ! -e "$socket" ]; then why=ENOENT; elif [ ! -w "$socket" ]; then why=EACCES; fi
    unsure "daemon unreachable: Cannot reach the daemon on \"$socket\": connect $why $socket" ;;
  28) unsure "Cannot get an answer from the daemon: no answer to hook \"$HOOK\" within $max_ms ms" ;;
  *) unsure "daemon unreachable: Cannot reach the daemon on \"$socket\": curl failed with exit status $rc" ;;
esac
http=${out##*"$nl"}
out=${out%"$nl"*}
[ "$http" = 200 ] || unsure "the daemon cannot run this hook: HTTP $http: $out"
# The answer: the exit status, then what to print.
status=${out%%"$nl"*}
case $status in
  0 | 1) printf '%s' "${out#*"$nl"}"; exit "$status" ;;
  *) unsure "the daemon's answer has no exit status: $out" ;;
esac
