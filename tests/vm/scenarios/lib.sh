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
#   hs_count_is ENRP N               hsdump at ENRP (ADDR:PORT) lists N PEs
#                                    (for wait_for; the dump is hsdump-poll.txt)
#   expect_hs_pes DESC NAME ENRP N   hsdump_to NAME ENRP, check it lists N PEs
#   rsp_registrar NAME ADDR [OPT...] rspregistrar 0x0000aaa1 at ADDR (ASAP 3863,
#                                    ENRP 9901, announces off, $RSPLOG), waits
#                                    until it listens
#   peered_registrars OURS THEIRS [OPT...]
#                                    pr1: enrp-server at OURS, pr2: rspregistrar
#                                    0x0000aaa2 at THEIRS, peers of each other
#                                    with short ENRP timers (OPT: more
#                                    enrp-server options)
#   rsp_echo_pes REGISTRAR LOCAL...  rspserver -echo pe1, pe2 ... (one per
#                                    LOCAL address) in pool EchoPool, ids
#                                    0x11111111, 0x22222222 ...
#   serving_pe NAME                  the PE id (hex) that last served the PU
#                                    NAME (rspterminal or echo_pu log)
#   kill_serving PU                  kill -9 the rsplib PE peN that serves the
#                                    PU (by serving_pe; pe1 if there is no
#                                    peN), its id in $SERVING, name in $VICTIM
#   rsp_term_hello POOL REGISTRAR WHO [ID]
#                                    rspterminal "term" on POOL types "Hello from
#                                    rsplib 1" and "... 2"; each comes back
#                                    (from PE ID if given), checked as echoed by
#                                    WHO; then it is stopped
#   rsp_term_failover PR             rspterminal "pu" on EchoPool at PR:3863 (the
#                                    3 PEs of rsp_echo_pes, ENRP at PR:9901,
#                                    input on fd 3, left open): 3 lines echoed;
#                                    kill -9 of the serving PE ($SERVING,
#                                    $VICTIM) -> hsdump-two.txt lists 2 PEs,
#                                    not it; the next line is echoed by another
#   fifo_start FD [-n NS] NAME CMD...
#                                    start NAME with stdin from the fifo
#                                    /tmp/fifo-NAME, held open on fd FD
#   send FD LINE                     write LINE to fd FD
#   send_wait FD LINE NAME SECS PATTERN
#                                    send, then wait until PATTERN is in
#                                    $OUT/NAME.log
#   send_expect FD LINE NAME SECS DESC PATTERN
#                                    send_wait, then expect_grep DESC on it
#   legacy_servers                   legacy-echo echo1..3 (10.0.0.41:7001 ..
#                                    10.0.0.43:7003, tags IP1..IP3) and their
#                                    daemons' keys /tmp/legacy-1..3.key
#   legacy_proxy_servers FILE        append the three servers and their
#                                    daemons to the proxy-pe config FILE
#   legacy_daemon_conf I PROXY...    /tmp/daemon-I.toml: legacy-daemon for
#                                    server I, reporting to each PROXY address
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
# rsplib's logging options (the rsplib helpers below pass them; a scenario may set others)
RSPLOG=${RSPLOG:-"-logcolor=off -loglevel=2"}
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

hs_count_is() {  # hs_count_is ENRP N
  hsdump_to poll "$1"
  [ "$(hs_pe_count "$OUT/hsdump-poll.txt")" = "$2" ]
}
expect_hs_pes() {  # expect_hs_pes DESC NAME ENRP N
  hsdump_to "$2" "$3"
  expect_eq "$1" "$(hs_pe_count "$OUT/hsdump-$2.txt")" "$4"
}
rsp_registrar() {  # rsp_registrar NAME ADDR [OPTION...]
  _n=$1 _a=$2; shift 2
  start "$_n" rspregistrar -identifier=0x0000aaa1 -asap="$_a:3863" -enrp="$_a:9901" \
    -asapannounce=off -enrpannounce=off "$@" $RSPLOG
  wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"
}
peered_registrars() {  # peered_registrars OURS THEIRS [ENRP-SERVER OPTION...]
  _o=$1 _t=$2; shift 2
  start pr1 enrp-server --transport sctp \
    --asap "$_o:3863" --enrp "$_o:9901" --identifier 0x5eed0001 \
    --asap-announce off --enrp-announce off --peer "$_t:9901" \
    --peer-heartbeat-cycle 1000 --peer-max-time-last-heard 3000 \
    --peer-max-time-no-response 2000 --mentor-discovery-timeout 2000 \
    --takeover-expiry-interval 3000 "$@" --hsdump-allow 10.0.0.0/24
  start pr2 rspregistrar -identifier=0x0000aaa2 -asap="$_t:3863" -enrp="$_t:9901" \
    -asapannounce=off -enrpannounce=off -peer="$_o:9901" \
    -peerheartbeatcycle=1000 -peermaxtimelastheard=3000 -peermaxtimenoresponse=2000 \
    -takeoverexpiryinterval=3000 -mentordiscoverytimeout=2000 $RSPLOG
  wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrars not listening"
}
rsp_echo_pes() {  # rsp_echo_pes REGISTRAR LOCAL...
  _r=$1; shift
  _i=0
  for _l in "$@"; do
    _i=$((_i + 1))
    start pe$_i rspserver -echo -poolhandle=EchoPool -registrar="$_r" \
      -local="$_l" -identifier=0x$_i$_i$_i$_i$_i$_i$_i$_i $RSPLOG
  done
}
# rspterminal prints "from PE $11111111> ...", echo_pu "connected to PE 0x11111111"
serving_pe() {  # serving_pe NAME
  sed -n -e 's/.*from PE \$\([0-9a-fA-F]*\)>.*/\1/p' \
    -e 's/^connected to PE 0x\([0-9a-f]*\).*/\1/p' "$OUT/$1.log" | tail -n1
}
kill_serving() {  # kill_serving PU
  SERVING=$(serving_pe "$1")
  log "$1 is served by PE $SERVING"
  VICTIM=pe$(echo "$SERVING" | cut -c1)
  [ -n "$(pid_of "$VICTIM")" ] || VICTIM=pe1
  stop "$VICTIM" KILL
}
rsp_term_hello() {  # rsp_term_hello POOL REGISTRAR WHO [ID]
  fifo_start 3 term rspterminal -poolhandle="$1" -registrar="$2" $RSPLOG
  for _l in 1 2; do
    send_expect 3 "Hello from rsplib $_l" term 20 "rspterminal line $_l echoed by $3" \
      "${4:+$4.*}Hello from rsplib $_l"
  done
  exec 3>&-
  stop term INT
}
rsp_term_failover() {  # rsp_term_failover PR
  fifo_start 3 pu rspterminal -poolhandle=EchoPool -registrar="$1:3863" $RSPLOG
  for _l in 1 2 3; do
    send_expect 3 "Hello RSerPool $_l" pu 15 "line $_l echoed by a PE" "from PE .*> Hello RSerPool $_l"
  done
  # the kernel aborts the killed PE's associations and the registrar removes it at once
  kill_serving pu
  wait_for 15 hs_count_is "$1:9901" 2
  expect_hs_pes "hsdump lists 2 PEs after kill -9" two "$1:9901" 2
  expect_no_grep "killed PE gone from the handlespace" "\$$SERVING flags" "$OUT/hsdump-two.txt"
  send_expect 3 "After failover" pu 20 "line echoed after failover" "from PE .*> After failover"
  expect_no_grep "failover went to another PE" "from PE \$$SERVING> After failover" "$OUT/pu.log"
}

# ---- pool users fed through a fifo ---------------------------------------------
fifo_start() {  # fifo_start FD [-n NS] NAME CMD...
  _fd=$1 _fns=""; shift
  if [ "$1" = "-n" ]; then _fns=$2; shift 2; fi
  rm -f "/tmp/fifo-$1"
  mkfifo "/tmp/fifo-$1"
  start ${_fns:+-n "$_fns"} -i "/tmp/fifo-$1" "$@"
  eval "exec $_fd> /tmp/fifo-$1"
}
send() { eval "echo \"\$2\" >&$1"; }  # send FD LINE
send_wait() {  # send_wait FD LINE NAME SECS PATTERN
  send "$1" "$2"
  wait_for "$4" grep -q -- "$5" "$OUT/$3.log"
}
send_expect() {  # send_expect FD LINE NAME SECS DESC PATTERN
  send_wait "$1" "$2" "$3" "$4" "$6"
  expect_grep "$5" "$6" "$OUT/$3.log"
}

# ---- legacy servers behind proxy-pe ----------------------------------------------
legacy_servers() {
  for _i in 1 2 3; do
    start echo$_i legacy-echo --listen 10.0.0.4$_i:700$_i --tag IP$_i
  done
  # one pre-shared key per daemon, read by the proxies and by the daemon
  for _i in 1 2 3; do legacy-daemon --gen-key > /tmp/legacy-$_i.key; done
}
legacy_proxy_servers() {  # legacy_proxy_servers FILE
  for _i in 1 2 3; do
    cat >> "$1" <<TOML

[[application.server]]
name = "IP$_i"
address = "10.0.0.4$_i"
port = 700$_i
daemon = "legacy-$_i"
TOML
  done
  # Each daemon may connect with its pre-shared key (legacy-daemon PROTOCOL.md §1.1).
  for _i in 1 2 3; do
    cat >> "$1" <<TOML

[[daemon]]
id = "legacy-$_i"
key_file = "/tmp/legacy-$_i.key"
TOML
  done
}
legacy_daemon_conf() {  # legacy_daemon_conf I PROXY_ADDR...
  _i=$1; shift
  cat > /tmp/daemon-$_i.toml <<TOML
[daemon]
id = "legacy-$_i"
key_file = "/tmp/legacy-$_i.key"
poll_interval_ms = 300
TOML
  for _p in "$@"; do
    cat >> /tmp/daemon-$_i.toml <<TOML

[[proxy]]
address = "$_p"
reconnect_max_ms = 500
TOML
  done
  cat >> /tmp/daemon-$_i.toml <<TOML

[[app]]
name = "echo"
exe = "legacy-echo"
cmdline = '--tag IP$_i\$'
ports = [700$_i]
require_listen = true
TOML
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
