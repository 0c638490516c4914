#!/usr/bin/env bash
# tests/vm/run.sh - run the VM scenarios (kernel SCTP, rsplib interop).
#
# Usage: tests/vm/run.sh [--keep] [--no-build] [--bin-dir DIR]... [SCENARIO...]
#
#   SCENARIO      names under tests/vm/scenarios/ (default: DEFAULT_SCENARIOS
#                 below)
#   --no-build    do not run `cargo build --release` (and, for cargo-tests,
#                 `cargo test --release --no-run`) first
#   --bin-dir D   take project binaries from D instead of target/release
#                 (repeatable; the first directory holding a binary wins;
#                 examples from D/examples, integration tests from D/deps)
#   --keep        keep tests/vm/build/ (initramfs, per-scenario disk images)
#   --list        print the scenario names and exit
#
# Needs tests/vm/install-deps.sh to have run. For every scenario: one fresh
# VM (qemu TCG, 1 vCPU) boots the shared initramfs with
# vm_scenario=NAME on the kernel command line; results land in
# tests/vm/results/NAME/ (scenario.log, checks.txt, per-process logs, pcaps,
# rc, console.log, wall.txt) and tests/vm/results/summary.tsv (wall, boot
# and scenario seconds per scenario). A scenario passes if the guest script exited
# 0, recorded at least one check and no failed check, and the optional
# host-side tests/vm/scenarios/NAME/check.sh (run with the results
# directory as its argument) exits 0.
# Output: "PASS name (12s)" / "FAIL name (12s)" per scenario, then
# "N passed, N failed". Exit status 1 if any failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KDIR=${VM_CACHE:-$HERE/cache}/kernel
BUILD=$HERE/build
RESULTS=$HERE/results
DEFAULT_SCENARIOS="smoke rsplib-sanity transport-sctp cargo-tests registrar-rsplib registrar-announce asap-rsplib proxy-rsplib peering-rsplib peering-rsplib-multicast proxy-mode-a-rsplib takeover-rsplib takeover-rsplib-pe takeover-sctp cookie-failover-sctp rsp-tools-rsplib sctp-udp-rsplib dpf-distance tls-sctp mixed-transports-rsplib"
# Project binaries copied into the guest (/opt/rserpool/bin) when they exist,
# plus every example in target/release/examples.
PROJECT_BINS="rsp-transport-test enrp-server rsp rsp-decode legacy-daemon proxy-pe legacy-echo rsp-loadgen rsp-fixed-responder"
# Cargo integration tests that need kernel SCTP (they skip on the host), as
# CRATE_DIR:TEST for CRATE_DIR/tests/TEST.rs (the package has the directory's
# name). Built with `cargo test --release --no-run`, copied to
# /opt/rserpool/tests and run by the cargo-tests scenario. Missing ones are
# ignored.
CARGO_TESTS="asap:transport_sctp asap:transport_kind enrp-server:sctp"
GUEST_TIMEOUT_DEFAULT=120   # seconds; a scenario may override: "# vm-timeout: N"
HOST_GRACE=60               # boot + export on top of the guest timeout

KEEP=0 BUILD_BINS=1 BIN_DIRS=() SCENARIOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --no-build) BUILD_BINS=0 ;;
    --bin-dir) BIN_DIRS+=("$2"); shift ;;
    --list) ls "$HERE/scenarios" | while read -r s; do [ -f "$HERE/scenarios/$s/scenario.sh" ] && echo "$s"; done; exit 0 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) SCENARIOS+=("$1") ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || read -r -a SCENARIOS <<< "$DEFAULT_SCENARIOS"
for s in "${SCENARIOS[@]}"; do
  [ -f "$HERE/scenarios/$s/scenario.sh" ] || { echo "run.sh: no scenario $s" >&2; exit 2; }
done
[ -f "$KDIR/vmlinuz" ] || { echo "run.sh: no kernel in $KDIR; run tests/vm/install-deps.sh first" >&2; exit 2; }

# ---- project binaries -------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
tests=()
if [[ " ${SCENARIOS[*]} " == *" cargo-tests "* ]]; then
  for t in $CARGO_TESTS; do
    [ -f "$ROOT/${t%%:*}/tests/${t#*:}.rs" ] && tests+=("$t")
  done
fi
if [ $BUILD_BINS -eq 1 ]; then
  echo "run.sh: cargo build --release --workspace --features asap/cli --bins --examples"
  ( cd "$ROOT" && cargo build --release --workspace --features asap/cli --bins --examples ) || { echo "run.sh: cargo build failed" >&2; exit 2; }
  for t in "${tests[@]}"; do
    echo "run.sh: cargo test --release -p ${t%%:*} --test ${t#*:} --no-run"
    ( cd "$ROOT" && cargo test --release -q -p "${t%%:*}" --test "${t#*:}" --no-run ) \
      || { echo "run.sh: cargo test --no-run failed" >&2; exit 2; }
  done
fi
[ ${#BIN_DIRS[@]} -gt 0 ] || BIN_DIRS=("$TARGET/release")
bins=()
for name in $PROJECT_BINS; do
  for d in "${BIN_DIRS[@]}"; do
    if [ -x "$d/$name" ] && [ -f "$d/$name" ]; then bins+=("$d/$name"); break; fi
  done
done
for d in "${BIN_DIRS[@]}"; do
  # examples (cargo also leaves hash-suffixed copies: name-0123abcd...)
  for f in "$d"/examples/*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    [[ $(basename "$f") =~ -[0-9a-f]{16}$ ]] && continue
    bins+=("$f")
  done
done

# integration test executables: DIR/deps/TEST-<hash>, the newest one
for t in "${tests[@]}"; do
  for d in "${BIN_DIRS[@]}"; do
    f=$(ls -t "$d/deps/${t#*:}"-* 2> /dev/null | grep -E -- '-[0-9a-f]{16}$' | head -n1)
    if [ -n "$f" ] && [ -x "$f" ]; then bins+=("test:$f"); break; fi
  done
done

# ---- initramfs --------------------------------------------------------------
# perf (and its libraries, ~33 MB) only for the benchmark scenario: it slows every boot
if [[ " ${SCENARIOS[*]} " == *" bench-registrar "* ]]; then export RIG_PERF=1; fi
rm -rf "$BUILD"
mkdir -p "$BUILD" "$RESULTS"
"$HERE/mkinitramfs.sh" "$BUILD/initramfs.cpio" "${bins[@]}" || { echo "run.sh: initramfs build failed" >&2; exit 2; }

# ---- scenarios --------------------------------------------------------------
run_one() {  # run_one NAME -> 0 pass, 1 fail
  local name=$1 res=$RESULTS/$1 img=$BUILD/$1.img gt ht qrc rc
  rm -rf "$res"; mkdir -p "$res"
  gt=$(sed -n 's/^# vm-timeout: *\([0-9]*\).*/\1/p' "$HERE/scenarios/$name/scenario.sh" | head -n1)
  gt=${gt:-$GUEST_TIMEOUT_DEFAULT}
  ht=$((gt + HOST_GRACE))
  rm -f "$img"; truncate -s 256M "$img"
  timeout -k 5 "$ht" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 768 \
    -nographic -no-reboot -nic none \
    -kernel "$KDIR/vmlinuz" -initrd "$BUILD/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 vm_scenario=$name vm_timeout=$gt" \
    -drive "file=$img,format=raw,if=virtio,cache=unsafe" \
    < /dev/null > "$res/console.log" 2>&1
  qrc=$?
  [ $qrc -eq 124 ] && echo "host timeout ${ht}s: qemu killed" >> "$res/console.log"
  if ! tar -xf "$img" -C "$res" 2> "$res/untar.err" || [ ! -f "$res/rc" ]; then
    echo "no results from the VM (qemu exit $qrc), see $res/console.log" >> "$res/host.txt"
    return 1
  fi
  [ $KEEP -eq 1 ] || rm -f "$img"
  rm -f "$res/untar.err"
  local ok=0
  rc=$(sed -n 's/^rc=//p' "$res/rc")
  case "$rc" in
    0) ;;
    137) echo "guest timeout: scenario killed after ${gt}s" >> "$res/host.txt"; ok=1 ;;
    *) echo "guest scenario exit status $rc" >> "$res/host.txt"; ok=1 ;;
  esac
  if [ -f "$HERE/scenarios/$name/check.sh" ]; then
    bash "$HERE/scenarios/$name/check.sh" "$res" > "$res/host-check.log" 2>&1 \
      || { echo "host-side check.sh failed" >> "$res/host.txt"; ok=1; }
  fi
  grep -q '^ok' "$res/checks.txt" 2> /dev/null || { echo "no checks recorded" >> "$res/host.txt"; ok=1; }
  grep -q '^not ok' "$res/checks.txt" 2> /dev/null && { echo "failed checks" >> "$res/host.txt"; ok=1; }
  return $ok
}

pass=0 fail=0
printf 'scenario\tverdict\twall_s\tboot_s\tscenario_s\n' > "$RESULTS/summary.tsv"
for s in "${SCENARIOS[@]}"; do
  t0=$(date +%s.%N)
  if run_one "$s"; then verdict=PASS; pass=$((pass + 1)); else verdict=FAIL; fail=$((fail + 1)); fi
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  echo "$secs" > "$RESULTS/$s/wall.txt"
  echo "$verdict $s (${secs}s)"
  # guest uptimes: boot = kernel start -> scenario start
  awk -F= -v n="$s" -v v="$verdict" -v w="$secs" '
    /^start_uptime/ { a = $2 } /^end_uptime/ { b = $2 }
    END { printf "%s\t%s\t%s\t%s\t%s\n", n, v, w, a, (b == "" ? "" : b - a) }' \
    "$RESULTS/$s/rc" 2> /dev/null >> "$RESULTS/summary.tsv" \
    || printf '%s\t%s\t%s\t\t\n' "$s" "$verdict" "$secs" >> "$RESULTS/summary.tsv"
  if [ $verdict = FAIL ]; then
    sed 's/^/    /' "$RESULTS/$s/host.txt" 2> /dev/null
    grep '^not ok' "$RESULTS/$s/checks.txt" 2> /dev/null | sed 's/^/    /'
  fi
done
[ $KEEP -eq 1 ] || rm -rf "$BUILD"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
