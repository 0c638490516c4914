#!/bin/bash
# Runs the kernel-SCTP checks of asap::transport in a qemu VM (the host kernel has no SCTP).
#
# Usage: asap/tests/transport_vm/run.sh HARNESS_DIR KROOT [RESULTDIR]
#   HARNESS_DIR  directory with make-initramfs.sh, run-vm.sh and scenarios/common
#                (the qemu harness described in /work/shared/vm/REPORT.md or tests/vm/)
#   KROOT        unpacked linux-image-*-cloud-amd64 package (kernel with CONFIG_IP_SCTP=m):
#                apt-get download linux-image-6.1.0-NN-cloud-amd64 && dpkg -x *.deb KROOT
#   RESULTDIR    where the VM's /out lands (default: target/transport-vm)
#
# What runs in the VM (scenario.sh): rsp-transport-test server/client over two veth paths
# (10.0.0.0/24 and 10.0.1.0/24) with a multi-homed association: 3 x 256 KiB messages with
# PPID 11 on stream 3; then 50 messages at 100 ms intervals while the 10.0.0.x path is taken
# down (expects an "unreachable" peer-address event and no lost message); then the
# integration test binaries transport_sctp and transport_kind. The host then checks the
# results and the PPID/stream of every SCTP DATA chunk in the capture (check-pcap.py).
set -euo pipefail
HARNESS=$(cd "${1:?harness dir}" && pwd)
KROOT=$(cd "${2:?kernel root}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
RES=$(realpath -m "${3:-$ROOT/target/transport-vm}")
cd "$ROOT"
cargo build -p asap --bin rsp-transport-test
bins=$(cargo test -p asap --test transport_sctp --test transport_kind --no-run 2>&1 \
  | sed -n 's/.*Executable tests\/\(transport_[a-z]*\)\.rs (\(.*\))/\1 \2/p')
STAGE=$(mktemp -d /tmp/transport-vm.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/scen/opt/t/bin"
cp "$HERE/scenario.sh" "$STAGE/scen/scenario.sh"
cp target/debug/rsp-transport-test "$STAGE/scen/opt/t/bin/"
while read -r name path; do cp "$path" "$STAGE/scen/opt/t/bin/$name"; done <<< "$bins"
KVMLINUZ=$(ls "$KROOT"/boot/vmlinuz-* | head -n1)
( cd "$STAGE" && KROOT="$KROOT" "$HARNESS/make-initramfs.sh" -o "$STAGE/t.cpio" \
    "$HARNESS/scenarios/common" "$STAGE/scen" )
rm -rf "$RES"
( cd "$STAGE" && KERNEL="$KVMLINUZ" "$HARNESS/run-vm.sh" -t 280 "$STAGE/t.cpio" "$RES" )
fail=0
for f in client1 client2 transport_sctp transport_kind; do
  rc=$(cat "$RES/$f.rc" 2>/dev/null || echo "$f missing")
  echo "$rc"; case "$rc" in *"rc=0") ;; *) fail=1 ;; esac
done
grep -q '"ok":true' "$RES/client1.json" || fail=1
grep -q '"state":"unreachable"' "$RES/client2.json" || { echo "no unreachable event"; fail=1; }
python3 "$HERE/check-pcap.py" "$RES/client.pcap" || fail=1
[ $fail -eq 0 ] && echo "transport VM checks: PASS" || { echo "transport VM checks: FAIL"; exit 1; }
