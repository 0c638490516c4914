#!/bin/bash
# Registrar resolutions/s on the host over TCP (issue 15, BENCHMARKS.md "Registrar hot path,
# part 4"): `enrp-server --threads 1` pinned to CPU 0 and `rsp-loadgen` pinned to CPU 1, both
# at nice -15 (run as root), a 3-PE pool, one PE and one PU association, 5 s of
# resolutions; for each engine (blocking, tokio) and window (16, 64, 256), a fresh server.
# With PERF=1 a last blocking run at window 16 is recorded with `perf record -g` on the
# server (report in $OUT/perf-server.txt).
#
#   cargo build --release -p enrp-server --bins
#   sudo bash scripts/bench-host-tcp.sh
#
# Output: one line per run (load average, engine, window, the loadgen's JSON line).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
OUT=${OUT:-/tmp/bench-host-tcp}
PORT=${PORT:-24900}
DUR=${DUR:-5000}
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
run() { # engine window [perf]
  PORT=$((PORT + 2))
  RUST_LOG=warn nice -n -15 taskset -c 0 "$BIN/enrp-server" --threads 1 --transport tcp \
    --asap 127.0.0.1:$PORT --enrp 127.0.0.1:$((PORT + 1)) --asap-announce off \
    --enrp-announce off > /dev/null 2>&1 &
  sp=$!
  sleep 0.5
  if [ "${3:-}" = perf ]; then
    (sleep 1.5; perf record -g -F 2999 -p $sp -o "$OUT/perf.data" -- sleep 3 > /dev/null 2>&1) &
  fi
  la=$(cut -d' ' -f1-3 /proc/loadavg)
  c0=$(awk '{print $14+$15}' /proc/$sp/stat)
  j=$(nice -n -15 taskset -c 1 "$BIN/rsp-loadgen" --engine "$1" --registrar 127.0.0.1:$PORT \
    --pes 3 --pools 1 --pe-connections 1 --pu-connections 1 --window "$2" --duration-ms $DUR \
    --reregistrations 0 --label "$1-w$2" 2> /dev/null | tail -n 1)
  c1=$(awk '{print $14+$15}' /proc/$sp/stat)
  wait_perf=$(jobs -p | grep -v "^$sp$")
  [ -n "$wait_perf" ] && wait $wait_perf 2> /dev/null
  kill $sp; wait $sp 2> /dev/null
  echo "load $la | $1 window $2 | server cpu $(( (c1 - c0) * 1000 / TCK )) ms | $j"
}
for w in 16 64 256; do for e in blocking tokio; do run $e $w; done; done
if [ "${PERF:-0}" = 1 ]; then
  run blocking 16 perf
  perf report -i "$OUT/perf.data" --stdio --no-children --sort dso,symbol 2> /dev/null \
    | grep -v '^$' | head -n 80 > "$OUT/perf-server.txt"
  perf report -i "$OUT/perf.data" --stdio --children --sort symbol -g none 2> /dev/null \
    | grep -v '^$' | head -n 80 > "$OUT/perf-server-children.txt"
fi
