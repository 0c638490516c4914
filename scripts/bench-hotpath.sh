#!/bin/bash
# Registrar hot path on host TCP (issue 15; BENCHMARKS.md "Registrar hot path, part 2"):
# for each enrp-server binary given, 3-PE and 3 000-PE pools, `--threads 1` and the default,
# one PE and one PU association, window 16, 5 s of resolutions:
#   1. throughput run: resolutions/s, p50/p99, server CPU (utime+stime) per answered request
#   2. the same load under `strace -c -f -p SERVER`: syscalls and futex per answered request
#
#   cargo build --release -p enrp-server --bins
#   bash scripts/bench-hotpath.sh old=/tmp/perf2-old/enrp-server new=target/release/enrp-server
#
# Needs strace and python3. Output: one line per run on stdout; strace files in $OUT
# (default /tmp/bench-hotpath).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG=${LG:-$ROOT/target/release/rsp-loadgen}
OUT=${OUT:-/tmp/bench-hotpath}
PORT=${PORT:-24800}
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
[ $# -gt 0 ] || set -- "new=$ROOT/target/release/enrp-server"
load() { # label port
  RUST_LOG=warn "$LG" --registrar 127.0.0.1:$2 --pes $pes --pools 1 --pe-connections 1 \
    --pu-connections 1 --window 16 --duration-ms 5000 --reregistrations 0 --label "$1" \
    2> /dev/null | tail -n 1
}
for pes in 3 3000; do for threads in 1 default; do for spec in "$@"; do
  name=${spec%%=*} bin=${spec#*=}
  ta=(); [ $threads = 1 ] && ta=(--threads 1)
  PORT=$((PORT + 2))
  RUST_LOG=warn "$bin" --transport tcp --asap 127.0.0.1:$PORT --enrp 127.0.0.1:$((PORT + 1)) \
    --asap-announce off --enrp-announce off "${ta[@]}" > /dev/null 2>&1 &
  sp=$!
  sleep 0.5
  la=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(awk '{print $14+$15}' /proc/$sp/stat)
  j=$(load "$name" $PORT)
  c1=$(awk '{print $14+$15}' /proc/$sp/stat)
  st="$OUT/strace-$name-$threads-$pes.txt"
  strace -c -f -p $sp -o "$st" 2> /dev/null &
  tp=$!
  sleep 0.5
  j2=$(load "$name-traced" $PORT)
  kill -INT $tp; wait $tp 2> /dev/null
  kill $sp; wait $sp 2> /dev/null
  J="$j" J2="$j2" ST="$st" python3 - "$name" "$threads" "$pes" "$la" "$((c1 - c0))" "$TCK" <<'PY'
import json, os, sys
name, threads, pes, la, ticks, tck = sys.argv[1:]
j, j2 = json.loads(os.environ["J"]), json.loads(os.environ["J2"])
req = j["registrations_ok"] + j["resolutions_ok"]
req2 = j2["registrations_ok"] + j2["resolutions_ok"]
calls = {}
for line in open(os.environ["ST"]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
top = sorted(calls.items(), key=lambda x: -x[1])[:5]
print(f"{name}\tthreads {threads}\tpes {pes}\tload {la}\tres/s {j['resolutions_per_s']}"
      f"\tp50/p99 us {j['resolutions_p50_us']}/{j['resolutions_p99_us']}"
      f"\tcpu/req us {int(ticks) / int(tck) / req * 1e6:.1f}"
      f"\tsyscalls/req {sum(calls.values()) / req2:.2f}\tfutex/req {calls.get('futex', 0) / req2:.2f}\t"
      + ", ".join(f"{k} {v / req2:.2f}" for k, v in top))
PY
done; done; done
