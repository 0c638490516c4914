#!/bin/sh
# bench-transports: messages/s and RTT of kernel SCTP, TCP and our sctp-udp (RFC 6951)
# in the guest, with rsp-transport-test (issue 17 item 5). Benchmark, not in the default
# set: bash tests/vm/run.sh bench-transports. Results: $OUT/bench.jsonl (one JSON line per
# run, prefixed with "transport window"); the checks only say that every run finished.
#
#   echo servers on 127.0.0.1: tcp 5101, sctp-udp 5102 (UDP 19899), kernel sctp 5103;
#   then kernel SCTP with UDP encapsulation (net.sctp.udp_port/encap_port 9899): our
#   sctp-udp client in namespace c (10.0.1.2, no encapsulation there) against the
#   kernel SCTP server in the root namespace (10.0.1.1) over a veth.
# vm-timeout: 240
. /rig/lib.sh
DUR=${BENCH_MS:-4000}
RT=rsp-transport-test
start s_tcp $RT server --transport tcp --listen 127.0.0.1:5101
start s_udp $RT server --transport sctp-udp --sctp-udp-port 19899 --listen 127.0.0.1:5102
start s_sctp $RT server --transport sctp --listen 127.0.0.1:5103
sleep 1
bench() {  # bench LABEL WINDOW ARGS...
  _l=$1; _w=$2; shift 2
  _r=$("$@" --size 100 --duration-ms $DUR --window $_w 2> "$OUT/bench-err.txt")
  echo "$_l $_w $_r" >> "$OUT/bench.jsonl"
  log "$_l window $_w: $_r"
  case "$_r" in *msgs_per_s*) pass "$_l window $_w finished" ;; *) fail "$_l window $_w finished" "no result: $(head -c 300 "$OUT/bench-err.txt")" ;; esac
}
for w in 1 16; do
  bench tcp $w $RT bench --transport tcp --connect 127.0.0.1:5101
  bench sctp-udp $w $RT bench --transport sctp-udp --sctp-udp-port 0 --sctp-udp-remote-port 19899 --connect 127.0.0.1:5102
  bench sctp $w $RT bench --transport sctp --connect 127.0.0.1:5103
done
stop s_tcp INT
stop s_udp INT
stop s_sctp INT

# Our sctp-udp against kernel SCTP over UDP (RFC 6951 interop path).
netns_add c
veth_link - vr 10.0.1.1 c vc 10.0.1.2
echo 9899 > /proc/sys/net/sctp/udp_port
echo 9899 > /proc/sys/net/sctp/encap_port
start s_kudp $RT server --transport sctp --listen 10.0.1.1:5104
sleep 1
for w in 1 16; do
  _r=$(in_ns c $RT bench --transport sctp-udp --sctp-udp-port 9899 --connect 10.0.1.1:5104 \
    --size 100 --duration-ms $DUR --window $w 2> "$OUT/bench-err.txt")
  echo "sctp-udp->kernel-sctp/udp $w $_r" >> "$OUT/bench.jsonl"
  log "sctp-udp -> kernel SCTP/UDP window $w: $_r"
  case "$_r" in *msgs_per_s*) pass "sctp-udp -> kernel SCTP/UDP window $w finished" ;; *) fail "sctp-udp -> kernel SCTP/UDP window $w finished" "no result: $(head -c 300 "$OUT/bench-err.txt")" ;; esac
done
stop s_kudp INT
finish
