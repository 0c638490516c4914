# tests/vm/scenarios/lib.sh - helpers for scenario scripts (busybox ash).
#
# A scenario starts with `. /rig/lib.sh` and ends with `finish`. Everything
# it writes to $OUT comes back to tests/vm/results/<scenario>/ on the host.
#
#   log MSG...                       timestamped line in scenario.log
#   net_dummy ADDR...                site-local /24 addresses on dummy0
#   netns_add NS...                  network namespaces with lo up
#   veth_link NS1 IF1 ADDR1 NS2 IF2 ADDR2
#                                    veth pair between two namespaces
#                                    ("-" = root namespace), /24 addresses
#   in_ns NS CMD...                  run CMD in namespace NS
#   start [-n NS] [-i FILE] NAME CMD...
#                                    run CMD in the background (in netns NS,
#                                    stdin from FILE, e.g. a fifo), output
#                                    to $OUT/NAME.log, pid in $NAME_pid;
#                                    ("-" in NAME becomes "_" there)
#   wait_exit NAME SECONDS           wait for it to end, status in $NAME_rc
#   stop NAME [SIGNAL]               signal (default INT), wait (bounded),
#                                    then SIGKILL if still alive
#   capture [-n NS] IFACE NAME       tcpdump IFACE -> $OUT/NAME.pcap
#   wait_for SECONDS CMD...          poll CMD every 0.2 s until it succeeds
#   hsdump_to NAME ADDR:PORT         rsplib hsdump -> $OUT/hsdump-NAME.txt
#   hs_pe_count FILE                 pool elements listed in an hsdump file
#   expect_eq DESC ACTUAL EXPECTED   checks; each records "ok - DESC" or
#   expect_grep DESC PATTERN FILE      "not ok - DESC (...)" in
#   expect_no_grep DESC PATTERN FILE   $OUT/checks.txt; a scenario passes
#   expect_ok DESC CMD...              only if it recorded at least one
#   pass DESC / fail DESC REASON       check and no failure
#   stop_all                         stop every process still running
#   finish                           stop captures and processes, exit 1
#                                    on any failed check (or none at all)
#
# Pitfalls handled here:
# * busybox ash runs its own applets before $PATH, so `ip` would be
#   busybox ip (no netns); ip and ss are wrapped to iproute2, tcpdump and
#   `ip netns exec` are called by full path.
# * a backgrounded shell function gets a subshell pid; `start` therefore
#   runs CMD directly (or through `ip netns exec`, which execs it), so the
#   recorded pid is the program's own and `stop NAME KILL` really kills it.
#   CMD must be a program, not a shell function.
# * tcpdump runs with --immediate-mode: without it libpcap's TPACKET_V3 ring hands
#   packets over in blocks retired after up to 1 s, and the packets of the last
#   block are lost when tcpdump is stopped (-U alone does not help); a fast
#   scenario then ends with a pcap that misses its last second of traffic.
OUT=${OUT:-/out}
CHECKS=$OUT/checks.txt
: >> "$CHECKS"
_PROCS=""
_CAPTURES=""

ip() { /usr/bin/ip "$@"; }
ss() { /usr/bin/ss "$@"; }
ts() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[$(ts)] $*"; }

# ---- networks ---------------------------------------------------------------
net_dummy() {
  ip link show dummy0 > /dev/null 2>&1 || ip link add dummy0 type dummy
  ip link set dummy0 up
  for _a in "$@"; do ip addr add "$_a/24" dev dummy0; done
  log "dummy0: $*"
}
netns_add() {
  for _ns in "$@"; do
    ip netns add "$_ns"
    ip -n "$_ns" link set lo up
  done
}
_ipn() { if [ "$1" = "-" ]; then shift; ip "$@"; else _n=$1; shift; ip -n "$_n" "$@"; fi; }
veth_link() {
  ip link add "$2" type veth peer name "$5"
  [ "$1" = "-" ] || ip link set "$2" netns "$1"
  [ "$4" = "-" ] || ip link set "$5" netns "$4"
  _ipn "$1" addr add "$3/24" dev "$2"
  _ipn "$4" addr add "$6/24" dev "$5"
  _ipn "$1" link set "$2" up
  _ipn "$4" link set "$5" up
  log "veth $1:$2 $3 <-> $4:$5 $6"
}
in_ns() { _n=$1; shift; /usr/bin/ip netns exec "$_n" "$@"; }

# ---- processes --------------------------------------------------------------
start() {
  _ns="" _in=/dev/null
  while :; do
    case "$1" in
      -n) _ns=$2; shift 2 ;;
      -i) _in=$2; shift 2 ;;
      *) break ;;
    esac
  done
  _name=$1; shift
  log "start $_name${_ns:+ (netns $_ns)}: $*"
  if [ -n "$_ns" ]; then
    /usr/bin/ip netns exec "$_ns" "$@" < "$_in" > "$OUT/$_name.log" 2>&1 &
  else
    "$@" < "$_in" > "$OUT/$_name.log" 2>&1 &
  fi
  eval "$(_var "$_name")_pid=$!"
  _PROCS="$_PROCS $_name"
}
# shell variable prefix for a process name (rsplib-sanity -> rsplib_sanity)
_var() { echo "$1" | tr -c 'A-Za-z0-9_\n' '_'; }
pid_of() { eval "echo \${$(_var "$1")_pid:-}"; }
running() { _p=$(pid_of "$1"); [ -n "$_p" ] && kill -0 "$_p" 2> /dev/null; }
stop() {
  _p=$(pid_of "$1")
  [ -n "$_p" ] || return 0
  log "stop $1 (pid $_p, SIG${2:-INT})"
  kill -"${2:-INT}" "$_p" 2> /dev/null
  _i=0
  while kill -0 "$_p" 2> /dev/null && [ $_i -lt 30 ]; do sleep 0.1; _i=$((_i + 1)); done
  if kill -0 "$_p" 2> /dev/null; then
    log "$1 still alive -> SIGKILL"
    kill -KILL "$_p" 2> /dev/null
  fi
  wait "$_p" 2> /dev/null
  eval "$(_var "$1")_pid="
}
# wait for a background process to exit by itself; its exit status is
# stored in NAME_rc (124 if it did not exit within SECONDS and was killed)
wait_exit() {  # wait_exit NAME SECONDS
  _p=$(pid_of "$1")
  _i=0
  while kill -0 "$_p" 2> /dev/null && [ $_i -lt $(($2 * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
  if kill -0 "$_p" 2> /dev/null; then
    log "$1 did not exit within $2 s"
    kill -KILL "$_p" 2> /dev/null
    wait "$_p" 2> /dev/null
    _rc=124
  else
    wait "$_p"
    _rc=$?
  fi
  eval "$(_var "$1")_rc=$_rc $(_var "$1")_pid="
  log "$1 exited rc=$_rc"
}
wait_for() {  # wait_for SECONDS CMD...
  _limit=$(($1 * 5)); shift
  _i=0
  until "$@" > /dev/null 2>&1; do
    _i=$((_i + 1))
    [ $_i -ge $_limit ] && { log "timed out waiting for: $*"; return 1; }
    sleep 0.2
  done
}

# ---- captures ---------------------------------------------------------------
capture() {  # capture [-n NS] IFACE NAME
  _ns=""
  if [ "$1" = "-n" ]; then _ns=$2; shift 2; fi
  start ${_ns:+-n "$_ns"} "tcpdump_$2" /usr/bin/tcpdump -i "$1" -n -s 0 -U --immediate-mode -Z root -w "$OUT/$2.pcap"
  _CAPTURES="$_CAPTURES tcpdump_$2"
  wait_for 10 grep -q "listening on" "$OUT/tcpdump_$2.log" || log "tcpdump on $1 did not start"
}
stop_captures() {
  for _c in $_CAPTURES; do stop "$_c" INT; done
  _CAPTURES=""
}

# ---- rsplib -----------------------------------------------------------------
hsdump_to() {  # hsdump_to NAME ADDR:PORT
  timeout 15 hsdump "$2" -logcolor=off -loglevel=1 > "$OUT/hsdump-$1.txt" 2>&1
  log "hsdump $2 -> hsdump-$1.txt: $(grep -m1 'PoolElements' "$OUT/hsdump-$1.txt")"
}
# "Handlespace[home=$...]: (1 Pools, 3 PoolElements, 0 Owned)" -> 3
hs_pe_count() {
  sed -n 's/^Handlespace.*(\([0-9]*\) Pools*, \([0-9]*\) PoolElements.*/\2/p' "$1" | head -n1
}

# ---- checks -----------------------------------------------------------------
_ok() { echo "ok - $1" >> "$CHECKS"; log "ok - $1"; }
_fail() { echo "not ok - $1 ($2)" >> "$CHECKS"; log "NOT OK - $1 ($2)"; }
pass() { _ok "$1"; }
fail() { _fail "$1" "$2"; }
expect_eq() {  # expect_eq DESC ACTUAL EXPECTED
  if [ "$2" = "$3" ]; then _ok "$1"; else _fail "$1" "got '$2', expected '$3'"; fi
}
expect_grep() {  # expect_grep DESC PATTERN FILE
  if grep -q -- "$2" "$3" 2> /dev/null; then _ok "$1"; else _fail "$1" "no '$2' in $(basename "$3")"; fi
}
expect_no_grep() {  # expect_no_grep DESC PATTERN FILE
  if grep -q -- "$2" "$3" 2> /dev/null; then _fail "$1" "'$2' found in $(basename "$3")"; else _ok "$1"; fi
}
expect_ok() {  # expect_ok DESC CMD...
  _d=$1; shift
  "$@" >> "$OUT/expect_ok.log" 2>&1
  _rc=$?
  if [ $_rc -eq 0 ]; then _ok "$_d"; else _fail "$_d" "'$*' exited $_rc"; fi
}

# SIGTERM to every process still running (newest first), SIGKILL to the
# survivors after 2 s. Use `stop NAME INT` first where a graceful exit
# matters (rsplib deregisters on SIGINT).
stop_all() {
  _alive=""
  for _f in $_PROCS; do running "$_f" && _alive="$_f $_alive"; done
  [ -n "$_alive" ] || return 0
  log "stop_all: $_alive"
  for _f in $_alive; do kill -TERM "$(pid_of "$_f")" 2> /dev/null; done
  _i=0
  while [ $_i -lt 20 ]; do
    _left=""
    for _f in $_alive; do running "$_f" && _left="$_left $_f"; done
    [ -n "$_left" ] || break
    sleep 0.1; _i=$((_i + 1))
  done
  for _f in $_left; do log "$_f still alive -> SIGKILL"; kill -KILL "$(pid_of "$_f")" 2> /dev/null; done
  for _f in $_alive; do wait "$(pid_of "$_f")" 2> /dev/null; eval "$(_var "$_f")_pid="; done
}

finish() {
  stop_captures
  stop_all
  _nok=$(grep -c '^ok' "$CHECKS")
  _nfail=$(grep -c '^not ok' "$CHECKS")
  log "checks: $_nok ok, $_nfail failed"
  [ "$_nfail" -eq 0 ] && [ "$_nok" -gt 0 ]
  exit $?
}
