#!/bin/bash
# Builds the guest kit used by the booted-guest tests: a Debian kernel plus a
# busybox initramfs whose /init offers a command channel on the second serial
# port (see test/guest/init.sh and test/helpers/guest.ts).
#
# Output, inside the repository (gitignored):
#   .lab/guest/vmlinuz, .lab/guest/initrd.gz       cloud kernel (default)
#   .lab/guest/std/vmlinuz, .lab/guest/std/initrd.gz   std kernel, only with GUEST_KERNELS=std (or "cloud std")
#   .lab/guest/guest.json                          kernel versions and the paths above, relative to .lab/guest
#
# Runs as root on Debian 12 after qemu-system-x86, qemu-utils and busybox-static
# are installed. Idempotent: a flavour is rebuilt only when Debian's current
# kernel package or this kit's recipe (this script, init.sh) changed.
#
# Environment:
#   GUEST_KERNELS   space/comma separated flavours: cloud (default), std
#   GUEST_KIT_DIR   output directory (default: <repo>/.lab/guest)
set -euo pipefail

t0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kit=${GUEST_KIT_DIR:-$repo/.lab/guest}
cache=$kit/cache
flavours=$(echo "${GUEST_KERNELS:-cloud}" | tr ',' ' ')
export DEBIAN_FRONTEND=noninteractive

# Drivers the tests need in the guest. The cloud kernel has some of the SCSI
# helpers built in; modules.builtin tells those apart from missing ones.
required_modules="virtio_pci virtio_blk virtio_scsi sd_mod virtio_net"
# Loaded when the kernel has them: the std kernel's CRC helpers for sd_mod,
# and the HBAs behind QEMU's lsi53c895a and megasas (std kernel only).
optional_modules="crct10dif_generic crc64_rocksoft_generic megaraid_sas sym53c8xx"
# Copied when the kernel has them but loaded only when the kernel command line
# asks (gk.modules=a,b): the IDE CD-ROM stack for the CD-ROM tests.
ondemand_modules="ata_piix sr_mod"

die() { echo "prepare.sh: $*" >&2; exit 1; }
log() { echo "prepare.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (it may run apt-get update/install, and the initramfs files must be owned by root)"
for fl in $flavours; do
  case $fl in cloud|std) ;; *) die "unknown flavour '$fl' in GUEST_KERNELS (use cloud, std)";; esac
done

mkdir -p "$cache/debs"
# Two CI jobs sharing a checkout must not build into the same files at once.
exec 9>"$kit/.lock"
flock 9

# The initramfs needs the statically linked busybox: the dynamic one from the
# "busybox" package would not run without a libc in the guest.
if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; then
  log "installing busybox-static"
  apt-get install -y -qq --no-install-recommends busybox-static >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends busybox-static >/dev/null; } ||
    die "cannot install busybox-static"
fi
busybox=$(command -v busybox)

# Anything that changes what ends up in the initramfs must invalidate it.
recipe=$(cat "$0" "$here/init.sh" <(dpkg-query -W -f='${Version}' busybox-static) | sha256sum | cut -c1-16)

apt_updated=0
apt_update_once() {
  [ "$apt_updated" = 1 ] && return 1
  apt_updated=1
  log "apt-get update"
  apt-get update -qq || true
}

# The ABI-versioned package behind the metapackage changes with each Debian
# kernel security update (and the mirror then drops the old one), so it is
# resolved on every run.
resolve_pkg() {
  local meta=$1 pkg
  pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$pkg" ] && apt_update_once; then
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  fi
  echo "$pkg"
}

fetch_deb() {
  local pkg=$1 deb
  deb=$(ls "$cache/debs/${pkg}"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$cache/debs" && apt-get download -qq "$pkg" >/dev/null 2>&1) ||
      { apt_update_once && (cd "$cache/debs" && apt-get download -qq "$pkg" >/dev/null); } ||
      return 1
    deb=$(ls "$cache/debs/${pkg}"_*.deb | head -1)
  fi
  echo "$deb"
}

# Unpacks the kernel .deb (never installed: its postinst would run
# update-initramfs and pull kmod/udev upgrades) and indexes its modules.
# kmod is not a dependency of ours; busybox depmod does the job.
unpack_kernel() {
  local pkg=$1 deb=$2 tree=$cache/tree-$1 kver
  rm -rf "$tree"
  dpkg-deb -x "$deb" "$tree" >&2
  kver=$(ls "$tree/lib/modules")
  [ "$(echo "$kver" | wc -w)" = 1 ] || die "$deb: expected one module directory, found: $kver"
  "$busybox" depmod -b "$tree" "$kver" >&2
  echo "$tree"
}

# Prints the module files (relative to lib/modules/<kver>) for a module and
# its dependencies, nothing when the module is built in, and fails when the
# kernel has neither.
module_files() {
  local moddir=$1 name=$2 pat line
  pat="(^|/)${name//_/[_-]}\\.ko:"
  line=$(grep -E "$pat" "$moddir/modules.dep" | head -1 || true)
  if [ -n "$line" ]; then
    echo "${line%%:*} ${line#*:}" | tr ' ' '\n' | sed '/^$/d'
    return 0
  fi
  grep -qE "(^|/)${name//_/[_-]}\\.ko\$" "$moddir/modules.builtin" 2>/dev/null && return 0
  return 1
}

build_initrd() {
  local tree=$1 kver=$2 out=$3 moddir=$1/lib/modules/$2 st=$cache/stage m files f load=""
  rm -rf "$st"
  mkdir -p "$st"/{bin,dev,proc,sys,tmp,etc,lib/modules/$kver}
  cp "$busybox" "$st/bin/busybox"
  for m in $required_modules $optional_modules $ondemand_modules; do
    if ! files=$(module_files "$moddir" "$m"); then
      case " $required_modules " in *" $m "*) die "kernel $kver has no module $m";; esac
      continue
    fi
    [ -n "$files" ] || continue            # built in
    case " $ondemand_modules " in *" $m "*) ;; *) load="$load $m" ;; esac
    for f in $files; do
      mkdir -p "$st/lib/modules/$kver/$(dirname "$f")"
      cp "$moddir/$f" "$st/lib/modules/$kver/$f"
    done
  done
  cp "$moddir"/modules.{order,builtin} "$st/lib/modules/$kver/" 2>/dev/null || true
  "$busybox" depmod -b "$st" "$kver" >&2
  echo "${load# }" > "$st/etc/modules"
  cp "$here/init.sh" "$st/init"
  chmod 755 "$st/init"
  # Debian does not install cpio by default; busybox has one. gzip -1: the kernel
  # decompresses it in well under a second either way.
  (cd "$st" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$out.tmp")
  mv "$out.tmp" "$out"
  rm -rf "$st"
  echo "${load# }"
}

summary=()
for fl in $flavours; do
  if [ "$fl" = cloud ]; then meta=linux-image-cloud-amd64; sub=""; else meta=linux-image-amd64; sub="std/"; fi
  stamp=$kit/.stamp-$fl
  pkg=$(resolve_pkg "$meta")
  if [ -z "$pkg" ]; then
    if [ -f "$stamp" ]; then
      log "cannot resolve $meta (no apt index?); keeping the existing $fl kernel"
      summary+=("$fl kept (unresolved)")
      continue
    fi
    die "cannot resolve the kernel package behind $meta (apt-cache depends $meta)"
  fi
  if [ -f "$stamp" ] && [ "$(sed -n 's/^package=//p' "$stamp")" = "$pkg" ] &&
     [ "$(sed -n 's/^recipe=//p' "$stamp")" = "$recipe" ] &&
     [ -f "$kit/${sub}vmlinuz" ] && [ -f "$kit/${sub}initrd.gz" ]; then
    summary+=("$fl ${pkg#linux-image-} unchanged")
    continue
  fi
  deb=$(fetch_deb "$pkg") || die "apt-get download $pkg failed"
  tree=$(unpack_kernel "$pkg" "$deb")
  kver=$(ls "$tree/lib/modules")
  [ -f "$tree/boot/vmlinuz-$kver" ] || die "$deb has no boot/vmlinuz-$kver"
  mkdir -p "$kit/$sub"
  loaded=$(build_initrd "$tree" "$kver" "$kit/${sub}initrd.gz")
  cp "$tree/boot/vmlinuz-$kver" "$kit/${sub}vmlinuz.tmp"
  mv "$kit/${sub}vmlinuz.tmp" "$kit/${sub}vmlinuz"
  {
    echo "package=$pkg"
    echo "debVersion=$(dpkg-deb -f "$deb" Version)"
    echo "kernelVersion=$kver"
    echo "kernel=${sub}vmlinuz"
    echo "initrd=${sub}initrd.gz"
    echo "modules=$loaded"
    echo "recipe=$recipe"
  } > "$stamp"
  # Older kernels of this flavour are dead weight.
  for old in "$cache"/debs/linux-image-*.deb; do
    [ -e "$old" ] || continue
    [ "$old" = "$deb" ] && continue
    case ${old##*/} in
      *-cloud-amd64_*) old_fl=cloud ;;
      *) old_fl=std ;;
    esac
    if [ "$old_fl" = "$fl" ]; then rm -f "$old"; fi
  done
  # The unpacked tree (100-400 MB) is only needed for the build; the .deb
  # stays cached, and unpacking it again takes a few seconds.
  rm -rf "$tree"
  summary+=("$fl $kver built")
done

# A flavour built by an earlier run but not asked for now is kept only while
# it is current: a stale initramfs could speak an older console protocol.
for fl in cloud std; do
  case " $flavours " in *" $fl "*) continue ;; esac
  stamp=$kit/.stamp-$fl
  [ -f "$stamp" ] || continue
  if [ "$fl" = cloud ]; then meta=linux-image-cloud-amd64; sub=""; else meta=linux-image-amd64; sub="std/"; fi
  if [ "$(sed -n 's/^recipe=//p' "$stamp")" != "$recipe" ] ||
     [ "$(sed -n 's/^package=//p' "$stamp")" != "$(resolve_pkg "$meta")" ]; then
    rm -f "$stamp" "$kit/${sub}vmlinuz" "$kit/${sub}initrd.gz"
    summary+=("$fl dropped (outdated; GUEST_KERNELS=$fl rebuilds it)")
  fi
done

# Left behind only by an interrupted run.
rm -rf "$cache"/tree-* "$cache/stage"

# guest.json lists every flavour built so far, so that a later default run
# does not hide a std kernel built earlier.
json_flavour() {
  local f=$1 k v first=1
  printf '    "%s": {' "$f"
  while IFS='=' read -r k v; do
    [ "$k" = recipe ] && continue
    if [ "$k" = modules ]; then
      v="[$(echo "$v" | awk '{for(i=1;i<=NF;i++) printf "%s\"%s\"", (i>1?", ":""), $i}')]"
    else
      v="\"$v\""
    fi
    [ $first = 1 ] || printf ','
    first=0
    printf '\n      "%s": %s' "$k" "$v"
  done < "$kit/.stamp-$f"
  printf '\n    }'
}
{
  echo '{'
  echo '  "format": 1,'
  echo '  "default": "cloud",'
  echo '  "flavours": {'
  sep=""
  for f in cloud std; do
    [ -f "$kit/.stamp-$f" ] || continue
    printf '%s' "$sep"; json_flavour "$f"; sep=$',\n'
  done
  echo
  echo '  }'
  echo '}'
} > "$kit/guest.json.tmp"
mv "$kit/guest.json.tmp" "$kit/guest.json"

t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
joined=$(printf '%s; ' "${summary[@]}")
echo "guest kit: ${joined%; } -> ${kit#"$repo"/}/guest.json (${secs}s)"
