#!/usr/bin/env bash
# Footprint of legacy-daemon: steady-state RSS, CPU per poll with ~1000 processes on the
# host, start-up time to the first Hello, binary size. Results go to stdout; copy them into
# BENCHMARKS.md ("legacy-daemon").
#
#   bash legacy-daemon/bench/footprint.sh            # from the repository root
#   NPROC=1000 SETTLE=10 bash legacy-daemon/bench/footprint.sh
#   PROFILE=small bash legacy-daemon/bench/footprint.sh   # the size-optimised profile
#   # static builds (the deploy build is the first; see legacy-daemon/README.md):
#   TARGET=x86_64-unknown-linux-musl PROFILE=small bash legacy-daemon/bench/footprint.sh
#   TARGET=x86_64-unknown-linux-gnu CRT_STATIC=1 PROFILE=small bash legacy-daemon/bench/footprint.sh
#
# TARGET builds the daemon with `--target TARGET` (musl links statically by default);
# CRT_STATIC=1 adds RUSTFLAGS="-C target-feature=+crt-static" to that build only (with an
# explicit --target, build scripts and proc macros stay dynamic). The proxy_sink receiver
# is always a plain host release build.
#
# Needs: cargo, sleep, file, ldd, strip, Linux /proc. Spawns NPROC `sleep` processes and
# kills them on exit.
set -euo pipefail
NPROC=${NPROC:-1000}
SETTLE=${SETTLE:-10}
PROFILE=${PROFILE:-release}
TARGET=${TARGET:-}
CRT_STATIC=${CRT_STATIC:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
cargo build -q -p legacy-daemon --release --example proxy_sink
if [ -n "$TARGET" ]; then
  FLAGS=${CRT_STATIC:+-C target-feature=+crt-static}
  RUSTFLAGS="$FLAGS" cargo build -q -p legacy-daemon --profile "$PROFILE" \
    --target "$TARGET" --bin legacy-daemon
  BIN="$TARGET_DIR/$TARGET/$PROFILE/legacy-daemon"
else
  [ -z "$CRT_STATIC" ] || { echo "CRT_STATIC needs TARGET" >&2; exit 2; }
  cargo build -q -p legacy-daemon --profile "$PROFILE" --bin legacy-daemon
  BIN="$TARGET_DIR/$PROFILE/legacy-daemon"
fi
echo "profile: $PROFILE; target: ${TARGET:-host}; crt-static: ${CRT_STATIC:-no}"
echo "file: $(file -b "$BIN")"
echo "ldd: $(ldd "$BIN" 2>&1 | tr '\n' ' ')"
SINK="$TARGET_DIR/release/examples/proxy_sink"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${SLEEPERS_PGID:-}" ] && kill -- "-$SLEEPERS_PGID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ~NPROC extra processes; 3 of them belong to the watched application "bench".
setsid bash -c "for i in \$(seq 1 $NPROC); do sleep 3600.\$i & done; touch $WORK/spawned; wait" &
SLEEPERS_PGID=$!
for _ in $(seq 1 600); do [ -e "$WORK/spawned" ] && break; sleep 0.1; done
# Let every sleeper get older than the poller's YOUNG_SECS (2 s): processes younger than
# that have `comm` re-read at every poll (fork before exec), long-running ones do not.
sleep 3
echo "processes on host: $(ls -d /proc/[0-9]* | wc -l)"

PORT=$(( 20000 + RANDOM % 20000 ))
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$SINK" "127.0.0.1:$PORT" "bench=$KEY" > "$WORK/sink.out" 2> "$WORK/sink.err" &
PIDS+=($!)
sleep 0.5
cat > "$WORK/d.toml" <<EOF
[daemon]
id = "bench"
key = "$KEY"
poll_interval_ms = 1000
[[proxy]]
address = "127.0.0.1:$PORT"
[[proxy]]
address = "127.0.0.1:$(( PORT + 1 ))"
[[app]]
name = "bench"
exe = "sleep"
cmdline = '^sleep 3600\.[123]$'
[[app]]
name = "sshd"
exe = "sshd"
ports = [22]
count_connections = true
[[app]]
name = "cron"
exe = "cron"
[[app]]
name = "byregex"
cmdline = 'no-such-process-anywhere'
EOF

echo "== CPU per poll (--bench-poll 50, $NPROC sleepers) =="
"$BIN" --config "$WORK/d.toml" --bench-poll 50

echo "== start-up: exec to first Hello at the proxy =="
T0=$(date +%s%N)
"$BIN" --config "$WORK/d.toml" 2> "$WORK/daemon.err" &
DPID=$!
PIDS+=($DPID)
for _ in $(seq 1 100); do grep -q '"type":"hello"' "$WORK/sink.out" && break; sleep 0.02; done
T1=$(awk '/"type":"hello"/ {print $1; exit}' "$WORK/sink.out")
echo "start-up to hello: $(( (T1 - T0) / 1000000 )) ms"

sleep "$SETTLE"
echo "== steady state after ${SETTLE}s (pid $DPID) =="
grep -E 'VmRSS|VmHWM|RssAnon|RssFile|Threads' "/proc/$DPID/status"
read -r -a ST < "/proc/$DPID/stat"
TICKS=$(getconf CLK_TCK)
CPU0=$(( ST[13] + ST[14] ))
read -r NS0 _ < "/proc/$DPID/schedstat"
sleep 10
read -r -a ST < "/proc/$DPID/stat"
read -r NS1 _ < "/proc/$DPID/schedstat"
CPU1=$(( ST[13] + ST[14] ))
echo "CPU over 10 s of 1 s polls: $(( (CPU1 - CPU0) * 1000 / TICKS )) ms (= average ms per poll x 10)"
echo "  same from schedstat (ns resolution): $(( (NS1 - NS0) / 10000 )) us per second"
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$DPID/status"
echo "messages at sink: $(wc -l < "$WORK/sink.out")"
echo "binary: $(stat -c %s "$BIN") bytes; stripped: $(strip -o "$WORK/stripped" "$BIN" && stat -c %s "$WORK/stripped") bytes"
kill "$DPID"

