#!/usr/bin/env bash
# The whole test suite of rserpool-rs: the README's test command, and what .ci/run runs.
#
#   scripts/test-all.sh [--no-vm] [--soak]
#
# 1. installs what the tests need (tshark as the independent decoder; qemu, a Debian
#    cloud kernel with SCTP, busybox and rsplib for the VM rig) when run as root on
#    Debian/Ubuntu; elsewhere it says what is missing and the dependent tests skip;
# 2. runs every cargo test of the workspace (unit, property, conformance replay of
#    pcap-fixtures, tshark oracle, host integration over TCP and network namespaces);
# 3. runs the demo (scripts/demo.sh --once) as a smoke test of the first README command;
# 4. boots the qemu VM rig (tests/vm/run.sh) for the kernel-SCTP and rsplib interop
#    scenarios.
# --no-vm skips step 4; --soak adds the long simulation and soak runs (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

vm=1
soak=0
for arg in "$@"; do
    case "$arg" in
        --no-vm) vm=0 ;;
        --soak) soak=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "test-all.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "system packages"
# tshark: the independent decoder of the oracle tests; iproute2 (`ip netns`): the
# multi-host tests (enrp-server netns_peering) run registrars in network namespaces.
# systemd-analyze (package systemd): `verify` of the units in */deploy/ (tests/tests/deploy/deploy_units.rs).
# promtool (package prometheus, without recommends): `check rules` of the alert rules in
# */deploy/monitoring/ (tests/tests/deploy/deploy_monitoring.rs).
if ! command -v tshark >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 \
    || ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq tshark iproute2 systemd >/dev/null
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        echo "tshark, ip, systemd-analyze or promtool missing and not installable here: the tshark oracle, netns, unit-verify and promtool tests will skip"
    fi
fi
tshark --version 2>/dev/null | head -1 || true
# cargo-deb (crates.io, not a Debian package): tests/tests/deploy/packaging.rs builds the
# legacy-daemon .deb and checks its contents with dpkg-deb.
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked cargo-deb || echo "cargo-deb not installable here: the .deb build test will skip"
fi
if [ "$vm" = 1 ]; then
    bash tests/vm/install-deps.sh
fi

if [ "$soak" = 1 ]; then
    export RSERPOOL_SOAK=1
fi

mkdir -p target
step "cargo test (workspace)"
if command -v tshark >/dev/null 2>&1; then export RSERPOOL_REQUIRE_TSHARK=1; fi
if command -v promtool >/dev/null 2>&1; then export RSERPOOL_REQUIRE_PROMTOOL=1; fi
if cargo deb --version >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    export RSERPOOL_REQUIRE_CARGO_DEB=1
fi
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee target/cargo-test.log
# Print one total line over every test binary, in the plain 'N passed, N failed' form.
awk '/^test result:/ { p += $4; f += $6 } END { printf "cargo: %d passed, %d failed\n", p, f }' \
    target/cargo-test.log

step "demo (README's first command, on spare ports)"
DEMO_ASAP_PORT=23863 DEMO_ENRP_PORT=29901 bash scripts/demo.sh --once

if [ "$vm" = 1 ]; then
    step "VM scenarios (kernel SCTP, rsplib interop)"
    bash tests/vm/run.sh
fi
