#!/bin/sh
# transport-sctp: the project's SCTP transport over real kernel SCTP,
# driven by rsp-transport-test (asap/src/bin/rsp-transport-test.rs).
#
#   netns srv                                  netns cli
#   s0 10.0.0.1/24  <-- veth pair (path A) -->  c0 10.0.0.2/24
#   s1 10.0.1.1/24  <-- veth pair (path B) -->  c1 10.0.1.2/24
#
#   server: echo server listening on both addresses, port 5000
#   client: multi-homed association (binds both, connects to both)
#
# 1. basic: 3 messages of 256 KiB with PPID 11 on stream 3 come back intact
#    with PPID and stream preserved (the client exits non-zero otherwise)
# 2. multi-homing: a 50-message client (one every 100 ms) is running when
#    path A goes down (ip link set s0 down); the association must fail over
#    to path B and the client still finish with 0 mismatches
# The capture (tcpdump -i any in cli) is checked on the host by check.sh:
# PPID 11 on the wire, both addresses in INIT, DATA over path B.
# vm-timeout: 100
. /rig/lib.sh
T=rsp-transport-test
SERVER_ADDRS=10.0.0.1,10.0.1.1
CLIENT_ADDRS=10.0.0.2,10.0.1.2

if ! command -v $T > /dev/null; then
  fail "$T is in the image" "not built? see tests/vm/README.md"
  finish
fi

netns_add srv cli
veth_link srv s0 10.0.0.1 cli c0 10.0.0.2
veth_link srv s1 10.0.1.1 cli c1 10.0.1.2
capture -n cli any transport-sctp

start -n srv server $T server --transport sctp --listen $SERVER_ADDRS:5000
wait_for 10 in_ns srv grep -qw 5000 /proc/net/sctp/eps || log "server not listening"

# ---- 1: basic exchange, 256 KiB messages ------------------------------------
in_ns cli timeout 30 $T client --transport sctp --connect $SERVER_ADDRS:5000 \
  --bind $CLIENT_ADDRS --ppid 11 --stream 3 --size 262144 --count 3 \
  > "$OUT/client-basic.json" 2> "$OUT/client-basic.log"
expect_eq "basic client exit status (3 x 256 KiB, ppid 11, stream 3)" "$?" 0
cat "$OUT/client-basic.json"
# the client prints one JSON line, e.g.
# {"transport":"sctp","ok":true,"sent":3,"received":3,"mismatches":0,...,
#  "ppid_seen":[11],"stream_seen":[3],...,"events":[...],...}
expect_json() {  # expect_json DESC FILE 'KEY":VALUE' (regex, compact JSON)
  expect_grep "$1" "^{.*\"$3[,}]" "$2"
}
expect_json "basic: client reports ok" "$OUT/client-basic.json" 'ok":true'
expect_json "basic: 3 messages sent" "$OUT/client-basic.json" 'sent":3'
expect_json "basic: 3 echoes received" "$OUT/client-basic.json" 'received":3'
expect_json "basic: no mismatches" "$OUT/client-basic.json" 'mismatches":0'
expect_json "basic: 256 KiB messages" "$OUT/client-basic.json" 'size":262144'
expect_json "basic: echoes carried PPID 11 only" "$OUT/client-basic.json" 'ppid_seen":\[11\]'
expect_json "basic: echoes came on stream 3 only" "$OUT/client-basic.json" 'stream_seen":\[3\]'

# ---- 2: multi-homing, path A fails mid-run ---------------------------------
start -n cli longclient $T client --transport sctp --connect $SERVER_ADDRS:5000 \
  --bind $CLIENT_ADDRS --ppid 11 --stream 3 --size 1000 --count 50 --interval-ms 100
sleep 1.5
in_ns cli cat /proc/net/sctp/remaddr > "$OUT/remaddr-before.txt" 2>&1
log "path A down: ip -n srv link set s0 down"
ip -n srv link set s0 down
wait_exit longclient 60
expect_eq "multi-homed client survives path A failure (exit status)" "$longclient_rc" 0
expect_json "failover: client reports ok" "$OUT/longclient.log" 'ok":true'
expect_json "failover: 50 echoes received" "$OUT/longclient.log" 'received":50'
expect_json "failover: no mismatches" "$OUT/longclient.log" 'mismatches":0'
# its "events" list must hold {"addr":"10.0.0.1:5000",...,"event":"peer_addr_change",
# "state":"unreachable"} (keys in any order)
grep -o '{[^{}]*"peer_addr_change"[^{}]*}' "$OUT/longclient.log" > "$OUT/path-events.txt"
expect_grep "failover: client was told path A (10.0.0.1) is unreachable" \
  '"10.0.0.1:5000".*"unreachable"\|"unreachable".*"10.0.0.1:5000"' "$OUT/path-events.txt"
in_ns srv cat /proc/net/sctp/snmp > "$OUT/snmp-server.txt" 2>&1
finish
