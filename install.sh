#!/bin/sh
# Installs ganeti-kvm-devices: the built code and its production Node
# modules, the kvm-devices command, a systemd unit and (with --hooks) the
# Ganeti hooks. Idempotent: a rerun replaces what the previous run installed.
# --uninstall removes exactly what the manifest lists.
#
#   PREFIX=/usr/local DESTDIR= ./install.sh [--hooks [DIR]] [--with-qemu] [--no-systemd]
#   ./install.sh --uninstall
#
# Variables: PREFIX (/usr/local), DESTDIR (empty), SYSCONFDIR (/etc),
# SYSTEMDUNITDIR (/etc/systemd/system), NODE (node found on PATH).
set -eu

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
SYSTEMDUNITDIR=${SYSTEMDUNITDIR:-/etc/systemd/system}
BINDIR=$PREFIX/bin
LIBDIR=$PREFIX/lib/ganeti-kvm-devices
MANIFEST=$LIBDIR/MANIFEST
UNIT=ganeti-kvm-devices.service
HOOK_NAME=kvm-devices
SRC=$(cd "$(dirname "$0")" && pwd)

hooks_dir=
with_qemu=0
use_systemd=1
action=install
while [ $# -gt 0 ]; do
  case $1 in
    --hooks)
      hooks_dir=$SYSCONFDIR/ganeti/hooks
      case ${2:-} in /*) hooks_dir=$2; shift ;; esac ;;
    --hooks=*) hooks_dir=${1#--hooks=} ;;
    --with-qemu) with_qemu=1 ;;
    --no-systemd) use_systemd=0 ;;
    --uninstall) action=uninstall ;;
    -h|--help) sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'install.sh: %s\n' "$*"; }
systemd_live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# Removes what a manifest lists: files first, then directories deepest first
# (only when empty, so nothing we did not put there goes).
remove_manifest() {
  [ -f "$DESTDIR$MANIFEST" ] || return 0
  # Work on a copy: the manifest lists itself.
  m=$(mktemp)
  cp "$DESTDIR$MANIFEST" "$m"
  if grep -qx 'systemd-enabled' "$m" && systemd_live; then
    systemctl disable --now "$UNIT" >/dev/null 2>&1 || true
  fi
  grep '^f ' "$m" | cut -c3- | while IFS= read -r f; do rm -f "$DESTDIR$f"; done
  grep '^d ' "$m" | cut -c3- | sort -r | while IFS= read -r d; do rmdir "$DESTDIR$d" 2>/dev/null || true; done
  if grep -qx 'systemd-enabled' "$m" && systemd_live; then systemctl daemon-reload || true; fi
  rm -f "$m" "$DESTDIR$MANIFEST"
}

if [ "$action" = uninstall ]; then
  if [ ! -f "$DESTDIR$MANIFEST" ]; then say "nothing to uninstall (no $DESTDIR$MANIFEST)"; exit 0; fi
  remove_manifest
  say "uninstalled"
  exit 0
fi

# --- install ---------------------------------------------------------------
# A fresh checkout has neither node_modules nor dist: install the locked
# dependencies (TypeScript among them) and build.
if [ ! -f "$SRC/dist/plugin/cli/main.js" ]; then
  command -v npm >/dev/null 2>&1 || { say "npm is required to build from a checkout"; exit 1; }
  [ -x "$SRC/node_modules/.bin/tsc" ] || (cd "$SRC" && npm ci --no-audit --no-fund >/dev/null) || { say "npm ci failed"; exit 1; }
  (cd "$SRC" && npm run --silent build) || { say "build failed"; exit 1; }
fi
NODE=${NODE:-$(command -v node || true)}
[ -n "$NODE" ] || { say "node (>= 20) is required and was not found on PATH"; exit 1; }

# The nearest existing ancestor of $1 (itself when it exists).
existing_ancestor() {
  d=$1
  while [ ! -e "$d" ]; do d=$(dirname "$d"); done
  printf '%s\n' "$d"
}
# Refuse before touching anything when the unit cannot be written: a unit the
# operator asked for is not silently skipped (use --no-systemd to go without).
if [ "$use_systemd" = 1 ]; then
  unitdir_base=$(existing_ancestor "$DESTDIR$SYSTEMDUNITDIR")
  if [ ! -d "$unitdir_base" ] || [ ! -w "$unitdir_base" ]; then
    say "cannot write the systemd unit into $DESTDIR$SYSTEMDUNITDIR ($unitdir_base is not a writable directory): set SYSTEMDUNITDIR or rerun with --no-systemd; nothing was installed"
    exit 1
  fi
fi

remove_manifest
[ -z "$DESTDIR" ] || mkdir -p "$DESTDIR"
# Every file and directory is recorded here the moment it is created; on exit,
# also after a failure, the list becomes the manifest, so --uninstall can
# always remove exactly what this run put down.
tmp_manifest=$(mktemp)
finish_manifest() {
  status=$?
  trap - EXIT
  if [ -s "$tmp_manifest" ] && [ -d "$DESTDIR$LIBDIR" ] && { echo "f $MANIFEST" >>"$tmp_manifest"; install -m 644 "$tmp_manifest" "$DESTDIR$MANIFEST"; }; then
    [ "$status" = 0 ] || say "install failed (status $status); what it installed is listed in $DESTDIR$MANIFEST and \"$0 --uninstall\" removes it" >&2
  elif [ -s "$tmp_manifest" ]; then
    say "install failed (status $status) and could not write $DESTDIR$MANIFEST; it had created:" >&2
    cut -c3- "$tmp_manifest" >&2
    [ "$status" != 0 ] || status=1
  fi
  rm -f "$tmp_manifest"
  exit "$status"
}
trap finish_manifest EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Creates $1 and its missing parents, recording each one created.
mkdirs() {
  if [ "$1" = / ] || [ -d "$DESTDIR$1" ]; then return 0; fi
  mkdirs "$(dirname "$1")"
  mkdir -m 755 "$DESTDIR$1"
  echo "d $1" >>"$tmp_manifest"
}
# put MODE SOURCE DEST: installs one file, recorded first (a failed copy may
# still leave a partial file behind).
put() {
  mkdirs "$(dirname "$3")"
  echo "f $3" >>"$tmp_manifest"
  install -m "$1" "$2" "$DESTDIR$3"
}
# put_tree SRCDIR DESTDIR: copies a tree file by file, recording each.
put_tree() {
  (cd "$1" && find . -type f ! -name '*.map' | sort) | while IFS= read -r f; do
    f=${f#./}
    put 644 "$1/$f" "$2/$f"
  done
}

mkdirs "$LIBDIR"
put 644 "$SRC/package.json" "$LIBDIR/package.json"
put_tree "$SRC/dist/plugin" "$LIBDIR/dist/plugin"
put_tree "$SRC/dist/schemas" "$LIBDIR/dist/schemas"
put_tree "$SRC/schemas" "$LIBDIR/schemas"

# Production dependencies: copied from the checkout's node_modules when it
# has them (offline), else installed with npm ci --omit=dev.
if [ -d "$SRC/node_modules" ] && deps=$(cd "$SRC" && npm ls --omit=dev --all --parseable 2>/dev/null); then
  printf '%s\n' "$deps" | while IFS= read -r p; do
    case $p in "$SRC"/node_modules/*) put_tree "$p" "$LIBDIR/${p#"$SRC"/}" ;; esac
  done
else
  stage=$(mktemp -d)
  cp "$SRC/package.json" "$SRC/package-lock.json" "$stage/"
  (cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
  put_tree "$stage/node_modules" "$LIBDIR/node_modules"
  rm -rf "$stage"
fi

# The command: finds its code relative to itself, so a DESTDIR tree runs too.
wrapper=$(mktemp)
cat >"$wrapper" <<EOF
#!/bin/sh
# kvm-devices, installed by ganeti-kvm-devices' install.sh
here=\$(dirname "\$(readlink -f "\$0")")
if [ -z "\${GKD_CONFIG:-}" ] && [ -f '$SYSCONFDIR/ganeti-kvm-devices/config.json' ]; then
  GKD_CONFIG='$SYSCONFDIR/ganeti-kvm-devices/config.json'; export GKD_CONFIG
fi
node='$NODE'
[ -x "\$node" ] || node=node
exec "\$node" "\$here/../lib/ganeti-kvm-devices/dist/plugin/cli/main.js" "\$@"
EOF
put 755 "$wrapper" "$BINDIR/kvm-devices"
rm -f "$wrapper"

if [ -n "$hooks_dir" ]; then
  # What every hook script sources: it posts the hook's environment to the daemon with curl
  # (the Node CLI, kvm-devices hook, when curl is missing).
  staged=$(mktemp)
  sed -e "s|@KVM_DEVICES@|$BINDIR/kvm-devices|" -e "s|@SYSCONFDIR@|$SYSCONFDIR|" "$SRC/plugin/cli/hook-client.sh" >"$staged"
  put 644 "$staged" "$LIBDIR/hook-client.sh"
  rm -f "$staged"
  for h in "$SRC"/hooks/*; do
    name=$(basename "$h")
    # Ganeti skips names outside ^[a-zA-Z0-9_-]+$ (a ".sh" suffix included).
    if ! printf '%s' "$name" | grep -Eq '^[a-zA-Z0-9_-]+$'; then say "skipping hook \"$name\": not a valid Ganeti hook name"; continue; fi
    staged=$(mktemp)
    sed "s|@HOOK_CLIENT@|$LIBDIR/hook-client.sh|" "$h" >"$staged"
    put 755 "$staged" "$hooks_dir/$name.d/$HOOK_NAME"
    rm -f "$staged"
  done
  say "hooks installed under $DESTDIR$hooks_dir"
  command -v curl >/dev/null 2>&1 || say "curl not found: the hooks run through the Node CLI, about 60 ms slower each (on Debian: apt-get install curl)"
fi

if [ "$use_systemd" = 1 ]; then
  unit=$(mktemp)
  cat >"$unit" <<EOF
[Unit]
Description=ganeti-kvm-devices daemon (QEMU device model for Ganeti KVM instances)
After=local-fs.target

[Service]
Type=simple
ExecStart=$BINDIR/kvm-devices serve
Restart=on-failure
# 2: bad configuration; 3: another daemon serves the socket. Restarting cannot help.
RestartPreventExitStatus=2 3
KillSignal=SIGTERM
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
EOF
  put 644 "$unit" "$SYSTEMDUNITDIR/$UNIT"
  rm -f "$unit"
  if systemd_live; then
    systemctl daemon-reload
    systemctl enable "$UNIT" >/dev/null
    echo systemd-enabled >>"$tmp_manifest"
    systemctl restart "$UNIT"
    say "systemd unit $UNIT enabled and started"
  else
    why="systemd is not running"
    [ -z "$DESTDIR" ] || why="installing into DESTDIR"
    say "systemd unit written to $DESTDIR$SYSTEMDUNITDIR/$UNIT (not started: $why)"
  fi
fi

# QEMU itself, and qemu-img (Debian's qemu-utils), which the demo and the tests use for disk images.
qemu_pkgs=
command -v qemu-system-x86_64 >/dev/null 2>&1 || qemu_pkgs="qemu-system-x86"
command -v qemu-img >/dev/null 2>&1 || qemu_pkgs="$qemu_pkgs qemu-utils"
if [ -n "$qemu_pkgs" ]; then
  if [ "$with_qemu" = 1 ] && [ -z "$DESTDIR" ] && command -v apt-get >/dev/null 2>&1; then
    # A fresh machine may have no package lists yet.
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $qemu_pkgs
  else
    say "QEMU not found (missing:$qemu_pkgs): on Debian run \"apt-get install$qemu_pkgs\" or rerun with --with-qemu"
  fi
fi

say "installed into $DESTDIR$PREFIX ($(grep -c '^f ' "$tmp_manifest") files and the manifest $DESTDIR$MANIFEST)"
