#!/bin/sh
# bench-registrar: side-by-side registrar benchmark over kernel SCTP (issue 15).
# Not in run.sh's default set: it measures, it does not test behaviour.
#
#   bash tests/vm/run.sh bench-registrar        (results: tests/vm/results/bench-registrar/)
#
# In one VM boot, the same rsp-loadgen load (1 association, 16 requests in flight,
# --transport sctp, all on 127.0.0.1, --engine blocking: the light engine, one blocking
# thread per association, so that the generator sharing the one vCPU is not the
# bottleneck; ENGINE=tokio below gives part 3's tokio generator) against each server, freshly
# started per run:
#   fixed  rsp-fixed-responder   stateless fixed replies: the rig's ceiling
#   rsplib rspregistrar          rsplib's registrar (-loglevel=1)
#   ours   enrp-server           RUST_LOG=warn
#   NAME   enrp-server-NAME      every other build of enrp-server in the image, e.g. "old" for
#                                a before/after in the same boot (`run.sh --bin-dir
#                                target/release --bin-dir D` with the build at
#                                D/examples/enrp-server-old)
# Rounds (issue 15: one long run per server was noise-bound under TCG on a loaded host): the
# servers take turns in ROUNDS rounds of short runs, the order rotating every round, so a
# slow spell of the host hits every server alike; summary.awk reports the median and min–max
# of each rate per server and load, and the ratios of the medians (summary.txt).
# Keep-alives are switched off in effect (interval and timeout 1 h on both registrars): at
# the rig's speed under TCG, 3 000 PEs with the usual 5 s interval are 600 keep-alives/s,
# more than the rig can carry, and the PE association then dies mid-run. The PEs announce an
# SCTP user transport at the registrar's address 10.0.0.1 (dummy0), as rspserver does
# (rspregistrar filters user addresses against the association's addresses and a minimum
# scope, RSERPOOL-SPEC §4).
# Two loads per server and round:
#   pool3     3 PEs in 1 pool, then resolutions for DUR ms
#   pool3000  PES (3 000) new PEs in 1 pool: registrations/s, re-registrations/s, then
#             resolutions on that pool for DUR ms
# Each run's summary is in lg-SERVER-LOAD-rROUND.txt; bench.tsv has one row per run, with the
# server's CPU time (utime+stime ticks from /proc/PID/stat) over the run. Before the rounds, for each
# registrar, a resolution run on the 3-PE pool under `perf stat` (software events, all
# syscalls and the ones of the hot path by name: perfstat-SERVER.txt, requests in the window
# from the load generator's count: perfstat.tsv) and one under `perf record -e cpu-clock`
# (perf-SERVER.txt): where the time goes. perf is in the guest only when run.sh builds the
# initramfs with RIG_PERF=1 (it does so when bench-registrar is among the scenarios).
# vm-timeout: 3300
. /rig/lib.sh
export RUST_LOG=warn
PR=10.0.0.1
DUR=${BENCH_DURATION_MS:-3000}
ROUNDS=${BENCH_ROUNDS:-3}
PES=${BENCH_PES:-3000}
SERVERS="fixed rsplib ours"
# other builds of enrp-server in the image: /opt/rserpool/bin/enrp-server-NAME runs as NAME
for _b in /opt/rserpool/bin/enrp-server-*; do
  [ -x "$_b" ] && SERVERS="$SERVERS ${_b#/opt/rserpool/bin/enrp-server-}"
done
log "servers: $SERVERS; $ROUNDS rounds; $DUR ms of resolutions per run; $PES PEs; engine ${BENCH_ENGINE:-blocking}"
KA=3600000
net_dummy $PR
ENGINE=${BENCH_ENGINE:-blocking}
LG="timeout ${LG_TIMEOUT:-400} rsp-loadgen --engine $ENGINE --user-transport sctp --transport sctp --registrar $PR:3863 --pe-connections 1 --pu-connections 1 --window 16 --duration-ms $DUR"

mount -t tracefs nodev /sys/kernel/tracing 2> /dev/null
mount -t debugfs nodev /sys/kernel/debug 2> /dev/null
HAVE_PERF=0
command -v perf > /dev/null 2>&1 && HAVE_PERF=1
log "perf in the guest: $HAVE_PERF"

start_server() {  # start_server fixed|rsplib|ours
  case "$1" in
    fixed) start srv-fixed rsp-fixed-responder --transport sctp --listen $PR:3863 ;;
    rsplib) start srv-rsplib rspregistrar -identifier=0x0000aaa1 -asap=$PR:3863 -enrp=$PR:9901 \
              -asapannounce=off -enrpannounce=off -logcolor=off -loglevel=1 -minaddressscope=loopback \
              -endpointkeepalivetransmissioninterval=$KA -endpointkeepalivetimeoutinterval=$KA ;;
    *)
      _bin=enrp-server; [ "$1" = ours ] || _bin=enrp-server-$1
      start "srv-$1" $_bin --transport sctp --asap $PR:3863 --enrp $PR:9901 \
              --identifier 0x5eed0001 --asap-announce off --keep-alive-interval $KA --keep-alive-timeout $KA ;;
  esac
  wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "$1 not listening"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2> /dev/null; }

printf 'round\tserver\tload\trc\treg_per_s\treg_p50_us\treg_p99_us\trereg_per_s\trereg_p50_us\trereg_p99_us\thres_per_s\thres_p50_us\thres_p99_us\tserver_cpu_ticks\twall_s\n' > "$OUT/bench.tsv"
jget() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2" | tail -n1; }

run() {  # run ROUND SERVER LOAD LOADGEN-ARGS...
  _r=$1 _srv=$2 _load=$3; shift 3
  start_server "$_srv"
  _pid=$(pid_of "srv-$_srv")
  _f=$OUT/lg-$_srv-$_load-r$_r.txt
  _c0=$(cpu_ticks "$_pid") _t0=$(ts)
  log "bench r$_r $_srv $_load: $LG --label $_srv $*"
  $LG --label "$_srv" "$@" > "$_f" 2>&1
  _rc=$?
  _c1=$(cpu_ticks "$_pid") _t1=$(ts)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$_r" "$_srv" "$_load" "$_rc" \
    "$(jget registrations_per_s "$_f")" "$(jget registrations_p50_us "$_f")" "$(jget registrations_p99_us "$_f")" \
    "$(jget reregistrations_per_s "$_f")" "$(jget reregistrations_p50_us "$_f")" "$(jget reregistrations_p99_us "$_f")" \
    "$(jget resolutions_per_s "$_f")" "$(jget resolutions_p50_us "$_f")" "$(jget resolutions_p99_us "$_f")" \
    "$((_c1 - _c0))" "$(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%.1f", b - a }')" >> "$OUT/bench.tsv"
  expect_eq "r$_r $_srv $_load: rsp-loadgen exit status" "$_rc" 0
  tail -n 3 "$_f"
  # rsp-fixed-responder has no SIGINT handler, and a background job of a non-interactive
  # shell ignores SIGINT
  if [ "$_srv" = fixed ]; then stop "srv-$_srv" TERM; else stop "srv-$_srv"; fi
  sleep 1
}

# where the time goes (first, so that a guest timeout in the rounds cannot lose it): perf
# stat (context switches, syscalls) and perf record on the registrar process during a
# resolution run on the 3-PE pool
printf 'server\tresolutions_per_s\twindow_s\trequests\n' > "$OUT/perfstat.tsv"
if [ $HAVE_PERF -eq 1 ]; then
  EV=task-clock,context-switches,cpu-migrations,page-faults
  [ -d /sys/kernel/tracing/events/raw_syscalls ] && EV="$EV,raw_syscalls:sys_enter"
  for sc in sendmsg sendmmsg recvmsg recvmmsg epoll_wait epoll_pwait futex write read sched_yield; do
    [ -d /sys/kernel/tracing/events/syscalls/sys_enter_$sc ] && EV="$EV,syscalls:sys_enter_$sc"
  done
  log "perf stat events: $EV"
  for s in $(echo "$SERVERS" | sed 's/fixed//'); do
    start_server "$s"
    _pid=$(pid_of "srv-$s")
    # perf runs in the foreground for a fixed time (`-- sleep`): a background job of a
    # non-interactive shell ignores SIGINT, so it could not be stopped cleanly
    LGP="timeout 120 rsp-loadgen --engine $ENGINE --user-transport sctp --transport sctp --registrar $PR:3863 --pe-connections 1 --pu-connections 1 --window 16 --duration-ms 10000"
    $LGP --label "$s" --pools 1 --pes 3 --reregistrations 0 > "$OUT/lg-$s-perfstat.txt" 2>&1 &
    _lg=$!
    sleep 2
    perf stat -e "$EV" -p "$_pid" -o "$OUT/perfstat-$s.txt" -- sleep 6 > /dev/null 2>&1
    wait $_lg
    # requests answered in the 6 s window, from the run's rate (the window lies inside it)
    _rate=$(jget resolutions_per_s "$OUT/lg-$s-perfstat.txt")
    printf '%s\t%s\t6\t%s\n' "$s" "$_rate" "$((${_rate:-0} * 6))" >> "$OUT/perfstat.tsv"
    $LGP --label "$s" --pools 1 --pes 3 --reregistrations 0 > "$OUT/lg-$s-perfrecord.txt" 2>&1 &
    _lg=$!
    sleep 2
    perf record -e cpu-clock -F 999 -g -p "$_pid" -o /tmp/perf-$s.data -- sleep 6 > /dev/null 2>&1
    wait $_lg
    perf report -i /tmp/perf-$s.data --stdio --no-children --sort dso,symbol 2> /dev/null \
      | head -n 150 > "$OUT/perf-$s.txt"
    perf report -i /tmp/perf-$s.data --stdio --no-children --sort dso 2> /dev/null \
      | head -n 40 > "$OUT/perf-dso-$s.txt"
    rm -f /tmp/perf-$s.data
    stop "srv-$s"
    sleep 1
  done
fi

# the servers in turn, ROUNDS times, the order rotated by one every round
_order=$SERVERS
_r=1
while [ $_r -le $ROUNDS ]; do
  log "round $_r: $_order"
  for s in $_order; do
    run $_r "$s" pool3 --pools 1 --pes 3 --reregistrations 0
    run $_r "$s" pool3000 --pools 1 --pes $PES --reregistrations 1
  done
  _first=${_order%% *}
  _order="${_order#* } $_first"
  _r=$((_r + 1))
done
awk -f "$SCENARIO_DIR/summary.awk" "$OUT/bench.tsv" > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"

log "bench.tsv:"
cat "$OUT/bench.tsv"
finish
