#!/usr/bin/env bash
# tests/vm/mkinitramfs.sh - build the test VM's initramfs (uncompressed cpio).
#
# Usage: mkinitramfs.sh OUT.cpio [PROJECT_BINARY | test:TEST_BINARY]...
#
# Contents:
#   /init                      tests/vm/guest/init
#   /modules/                  kernel modules + load-order from cache/kernel
#                              (install-deps.sh)
#   /rig/lib.sh, /rig/scenarios/   scenario helpers and all scenarios
#   /opt/rserpool/bin/         the PROJECT_BINARY arguments (first in PATH)
#   /opt/rserpool/tests/       the test:TEST_BINARY arguments (cargo test
#                              executables, "-<hash>" suffix dropped)
#   host programs              busybox (+ applet links), rsplib tools,
#                              lksctp-tools, tcpdump, iproute2, each with
#                              every shared library ldd lists, at the same
#                              path as on the host (Debian merged /usr)
# Uncompressed because the guest then boots about 1 s faster under TCG.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KDIR=${VM_CACHE:-$HERE/cache}/kernel
OUTFILE=${1:?usage: mkinitramfs.sh OUT.cpio [PROJECT_BINARY...]}
shift
[ -f "$KDIR/modules/load-order" ] || { echo "no kernel in $KDIR: run tests/vm/install-deps.sh" >&2; exit 1; }

# Host programs that go into the guest. Missing optional ones are skipped.
HOST_BINS=(
  /usr/bin/rspregistrar /usr/bin/rspserver /usr/bin/rspterminal /usr/bin/hsdump
  /usr/bin/cspmonitor /usr/bin/calcappclient /usr/bin/pingpongclient
  /usr/bin/checksctp /usr/bin/sctp_test /usr/bin/sctp_darn /usr/bin/sctp_status
  /usr/bin/tcpdump /usr/bin/ip /usr/bin/ss
  /usr/sbin/tc
)
# perf for the benchmark scenario (run.sh sets RIG_PERF=1 for bench-registrar)
[ "${RIG_PERF:-0}" = 1 ] && HOST_BINS+=(/usr/bin/perf)

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/vm-initramfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,proc,sys,dev,tmp,run,root,out,rig,opt/rserpool/bin}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$STAGE/$d"; done
chmod 1777 "$STAGE/tmp"

# copy SRC to the same path in the image (or DST), once
put() {
  local src=$1 dst=${2:-$1}
  [ -e "$STAGE$dst" ] && return 0
  mkdir -p "$STAGE$(dirname "$dst")"
  cp -L "$src" "$STAGE$dst"
}
# copy an executable and all shared libraries ldd resolves for it
put_elf() {
  local src=$1 dst=${2:-$1} lib
  put "$src" "$dst"
  while read -r lib; do
    [ -n "$lib" ] && put "$lib"
  done < <(ldd "$src" 2>/dev/null | sed -n -e 's/.*=> \(\/[^ ]*\).*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\).*/\1/p')
  if ldd "$src" 2>/dev/null | grep -q 'not found'; then
    echo "mkinitramfs: $src: missing libraries:" >&2
    ldd "$src" | grep 'not found' >&2
    exit 1
  fi
}

put /bin/busybox /usr/bin/busybox
for b in "${HOST_BINS[@]}"; do
  if [ -x "$b" ]; then put_elf "$b"; else echo "mkinitramfs: skipping missing $b" >&2; fi
done
# busybox applets, without shadowing real programs copied above
while read -r applet; do
  [ -e "$STAGE$applet" ] || [ -e "$STAGE/usr/bin/${applet##*/}" ] || [ -e "$STAGE/usr/sbin/${applet##*/}" ] && continue
  mkdir -p "$STAGE$(dirname "$applet")"
  ln -s /usr/bin/busybox "$STAGE$applet"
done < <(/bin/busybox --list-full | sed 's|^|/|')

# project binaries, without debug info (release builds carry it; 24 MB -> 5 MB
# means a faster boot under TCG)
for b in "$@"; do
  case "$b" in
    test:*) b=${b#test:}; dst=/opt/rserpool/tests/$(basename "$b" | sed 's/-[0-9a-f]\{16\}$//') ;;
    *) dst=/opt/rserpool/bin/$(basename "$b") ;;
  esac
  put_elf "$b" "$dst"
  if command -v strip > /dev/null; then strip --strip-debug "$STAGE$dst"; fi
done

mkdir -p "$STAGE/modules"
cp "$KDIR"/modules/* "$STAGE/modules/"
cp "$HERE/guest/init" "$STAGE/init"
chmod 755 "$STAGE/init"
cp "$HERE/scenarios/lib.sh" "$STAGE/rig/lib.sh"
cp -a "$HERE/scenarios" "$STAGE/rig/scenarios"

cat > "$STAGE/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
tcpdump:x:104:110::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PW
cat > "$STAGE/etc/group" <<'GR'
root:x:0:
tcpdump:x:110:
nogroup:x:65534:
GR
printf '127.0.0.1 localhost\n::1 localhost\n' > "$STAGE/etc/hosts"
echo "hosts: files" > "$STAGE/etc/nsswitch.conf"
for f in /etc/services /etc/protocols; do [ -e "$f" ] && cp "$f" "$STAGE$f"; done
{
  echo "kernel $(cat "$KDIR/kver")"
  dpkg-query -W -f='${Package} ${Version}\n' rsplib-registrar rsplib-tools librsplib3 \
    lksctp-tools tcpdump iproute2 busybox-static 2>/dev/null || true
  for b in "$@"; do b=${b#test:}; echo "project $(basename "$b") $(stat -c '%y' "$b")"; done
} > "$STAGE/rig/versions"

mkdir -p "$(dirname "$OUTFILE")"
( cd "$STAGE" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null ) > "$OUTFILE.tmp"
mv "$OUTFILE.tmp" "$OUTFILE"
echo "mkinitramfs: $OUTFILE ($(du -h "$OUTFILE" | cut -f1)), project binaries: ${*:-none}"
