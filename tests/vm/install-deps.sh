#!/usr/bin/env bash
# tests/vm/install-deps.sh - install everything the VM test rig needs.
#
# Idempotent: packages already present are not touched (apt-get update runs
# at most once, and only if something is missing); the kernel is downloaded
# only if the cache does not hold it yet. Needs root (or sudo) and access to
# the Debian package archive, nothing else. Target: Debian 12 (bookworm).
#
# Installs on the host (their binaries and libraries are copied into the
# guest's initramfs by run.sh):
#   qemu-system-x86   the VM (TCG; KVM is not used)
#   busybox-static    the guest's userland
#   rsplib-*          reference RSerPool peers (rspregistrar, rspserver,
#                     rspterminal, hsdump, calcappclient, ...)
#   tcpdump iproute2  captures and namespaces/veth inside the guest
#   lksctp-tools      checksctp / sctp_test / sctp_darn for the smoke test
#   tshark            host-side checks of the captures
# Downloads into tests/vm/cache/ (gitignored):
#   the Debian cloud kernel package that linux-image-cloud-amd64 currently
#   depends on, unpacked to cache/kernel/ (vmlinuz + lib/modules). This
#   kernel has CONFIG_IP_SCTP=m, which host and CI kernels lack.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VM_CACHE:-$HERE/cache}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
# (env inside sudo: sudo's env_reset would drop an exported variable)
APT=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get)

PKGS=(qemu-system-x86 busybox-static rsplib-registrar rsplib-services
      rsplib-tools tcpdump iproute2 lksctp-tools tshark)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
    || missing+=("$p")
done

UPDATED=0
apt_update_once() {
  if [ $UPDATED -eq 0 ]; then
    "${APT[@]}" update -qq
    UPDATED=1
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt_update_once
  "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi

# --- kernel ---------------------------------------------------------------
# The metapackage names the current ABI package, e.g.
#   linux-image-cloud-amd64 Depends: linux-image-6.1.0-56-cloud-amd64
kernel_pkg() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1
}
KPKG=$(kernel_pkg)
if [ -z "$KPKG" ]; then
  apt_update_once
  KPKG=$(kernel_pkg)
fi
[ -n "$KPKG" ] || { echo "install-deps: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }

# Kernel modules the guest loads (dependencies are added automatically):
#   sctp                      kernel SCTP (+ libcrc32c, udp_tunnel, ip6_udp_tunnel)
#   virtio_pci virtio_blk     the raw results disk (/dev/vda)
#   veth dummy bridge         lab networks (netns + veth, site-local addresses)
#   sch_netem                 delay/loss (dpf-distance: a netem delay per PE link)
# Add a name here if a scenario needs another module; the cache is rebuilt
# when this list changes.
MODS=(sctp virtio_pci virtio_blk veth dummy bridge sch_netem)

KDIR=$CACHE/kernel
STAMP="$KPKG ${MODS[*]}"
if [ -f "$KDIR/.stamp" ] && [ "$(cat "$KDIR/.stamp")" = "$STAMP" ] \
   && [ -f "$KDIR/vmlinuz" ]; then
  echo "install-deps: kernel $KPKG already in $KDIR"
  exit 0
fi

mkdir -p "$CACHE"
deb=$(ls "$CACHE/${KPKG}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  echo "install-deps: downloading $KPKG"
  # apt-get download writes to the current directory (as the calling user,
  # hence the harmless "unsandboxed" notice when run as root).
  if ! ( cd "$CACHE" && apt-get download "$KPKG" ); then
    # stale package lists: the mirror may have moved on to a newer ABI
    apt_update_once
    KPKG=$(kernel_pkg)
    STAMP="$KPKG ${MODS[*]}"
    ( cd "$CACHE" && apt-get download "$KPKG" )
  fi
  deb=$(ls "$CACHE/${KPKG}"_*.deb | head -n1)
fi
# drop packages of older kernel versions
for old in "$CACHE"/linux-image-*.deb; do
  [ "$old" = "$deb" ] || rm -f "$old"
done

TMP=$(mktemp -d "$CACHE/unpack.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
dpkg-deb -x "$deb" "$TMP/pkg"
kver=$(ls "$TMP/pkg/lib/modules" | head -n1)
moddir=$TMP/pkg/lib/modules/$kver
mkdir -p "$TMP/kernel/modules"
cp "$TMP/pkg/boot/vmlinuz-$kver" "$TMP/kernel/vmlinuz"

# Resolve dependencies from each module's own modinfo "depends=" field
# (the package ships no modules.dep; depmod runs only at install time) and
# write them, dependencies first, to modules/load-order.
declare -A seen=()
add_mod() {
  local m=${1//-/_} f dep
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  grep -q "/$m\.ko" "$moddir/modules.builtin" && return 0
  f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
  [ -n "$f" ] || { echo "install-deps: module $m not in $KPKG" >&2; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" > "$TMP/kernel/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$TMP/kernel/modules/$m.ko" ;;
    *) cp "$f" "$TMP/kernel/modules/$m.ko" ;;
  esac
  for dep in $(tr '\0' '\n' < "$TMP/kernel/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_mod "$dep"
  done
  echo "$m" >> "$TMP/kernel/modules/load-order.rev"
}
for m in "${MODS[@]}"; do add_mod "$m"; done
# add_mod appends a module after its dependencies, so the file is already
# in load order.
mv "$TMP/kernel/modules/load-order.rev" "$TMP/kernel/modules/load-order"
echo "$kver" > "$TMP/kernel/kver"
echo "$STAMP" > "$TMP/kernel/.stamp"
rm -rf "$KDIR"
mv "$TMP/kernel" "$KDIR"
echo "install-deps: kernel $kver + modules ($(tr '\n' ' ' < "$KDIR/modules/load-order")) in $KDIR"
