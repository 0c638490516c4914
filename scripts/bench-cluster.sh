#!/usr/bin/env bash
# scripts/bench-cluster.sh - cluster figures with real enrp-server processes on the host
# (TCP over 127.0.0.1; issue 15 item 4; BENCHMARKS.md "Cluster figures").
#
# Usage: bash scripts/bench-cluster.sh [PES] [POOLS]      (defaults 100000, 10000)
#
# 1. Download: registrar A (ID 0xA) gets PES PEs from rsp-loadgen (100 associations,
#    held open); registrar B (ID 0xB, --peer A) is started and the time from its exec to
#    its enrp_pool_elements metric reaching PES is measured (mentor handle table download,
#    RFC 5353 HANDLE_TABLE_REQUEST/RESPONSE with the M bit).
# 2. Takeover: A is SIGKILLed; measured is the time from the kill to B's log line
#    "PE ownership changed" (B took over A's PEs, RFC 5353 takeover) and to B's
#    enrp_pool_elements still being PES. Peer timers: rsplib's (heartbeat 2444 ms,
#    max-time-last-heard 5000 ms, max-time-no-response 5000 ms) unless overridden with
#    the environment variables HB, MTLH, MTNR (ms).
# Needs: cargo build --release -p enrp-server (enrp-server, rsp-loadgen), curl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
PES=${1:-100000}
POOLS=${2:-10000}
HB=${HB:-2444} MTLH=${MTLH:-5000} MTNR=${MTNR:-5000}
BASE=${PORT_BASE:-24000}
A_ASAP=127.0.0.1:$((BASE + 1)) A_ENRP=127.0.0.1:$((BASE + 2)) A_MET=127.0.0.1:$((BASE + 3))
B_ASAP=127.0.0.1:$((BASE + 11)) B_ENRP=127.0.0.1:$((BASE + 12)) B_MET=127.0.0.1:$((BASE + 13))
OUT=${OUT:-$(mktemp -d /tmp/bench-cluster.XXXXXX)}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done; }
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
pes_at() { curl -s "http://$1/metrics" | awk '$1 == "enrp_pool_elements" { print $2 }'; }
common=(--transport tcp --asap-announce off --max-pes-per-peer $((PES + 1000))
  --peer-heartbeat-cycle "$HB" --peer-max-time-last-heard "$MTLH"
  --peer-max-time-no-response "$MTNR" --keep-alive-interval 3600000 --keep-alive-timeout 3600000)

RUST_LOG=${RUST_LOG:-info} "$BIN/enrp-server" "${common[@]}" --identifier 0xA --asap "$A_ASAP" \
  --enrp "$A_ENRP" --metrics "$A_MET" --peer "$B_ENRP" > "$OUT/a.log" 2>&1 &
A=$!; PIDS+=("$A")
sleep 1
"$BIN/rsp-loadgen" --registrar "$A_ASAP" --pes "$PES" --pools "$POOLS" --pe-connections 100 \
  --pu-connections 0 --reregistrations 0 --window 32 --hold-ms 600000 > "$OUT/loadgen.log" 2>&1 &
L=$!; PIDS+=("$L")
until grep -q '^holding' "$OUT/loadgen.log"; do
  kill -0 "$L" 2> /dev/null || { cat "$OUT/loadgen.log"; exit 1; }
  sleep 0.1
done
echo "A: $(pes_at "$A_MET") PEs ($(grep '^registrations' "$OUT/loadgen.log"))"

# 1. download
t0=$(now)
RUST_LOG=${RUST_LOG:-info} "$BIN/enrp-server" "${common[@]}" --identifier 0xB --asap "$B_ASAP" \
  --enrp "$B_ENRP" --metrics "$B_MET" --peer "$A_ENRP" > "$OUT/b.log" 2>&1 &
B=$!; PIDS+=("$B")
until [ "$(pes_at "$B_MET")" = "$PES" ]; do
  [ "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print (b - a > 120) }')" = 1 ] && { echo "B: no full download in 120 s ($(pes_at "$B_MET") PEs)"; exit 1; }
  sleep 0.02
done
echo "download: B has all $PES PEs $(since "$t0") s after its exec"
echo "  B RSS: $(awk '/VmRSS/ { print $2, $3 }' /proc/$B/status), A RSS: $(awk '/VmRSS/ { print $2, $3 }' /proc/$A/status)"
sleep 3

# 2. takeover
t1=$(now)
kill -KILL "$A"
until grep -q 'PE ownership changed' "$OUT/b.log"; do
  [ "$(awk -v a="$t1" -v b="$(now)" 'BEGIN { print (b - a > 120) }')" = 1 ] && { echo "B: no takeover in 120 s"; exit 1; }
  sleep 0.02
done
echo "takeover: B owns A's PEs $(since "$t1") s after kill -9 of A (timers: heartbeat $HB ms, max-time-last-heard $MTLH ms, max-time-no-response $MTNR ms); B has $(pes_at "$B_MET") PEs"
grep -m1 'PE ownership changed' "$OUT/b.log" | cut -c1-200
echo "logs: $OUT"
