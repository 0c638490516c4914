#!/bin/sh
# Kernel SCTP checks for asap::transport (rsp-transport-test) in two namespaces joined by
# two veth pairs (paths 10.0.0.0/24 and 10.0.1.0/24).
. /lab/lib.sh
B=/opt/t/bin/rsp-transport-test
ip netns add srv; ip netns add cli
ip link add a0 type veth peer name b0
ip link add a1 type veth peer name b1
ip link set a0 netns srv; ip link set a1 netns srv
ip link set b0 netns cli; ip link set b1 netns cli
ip -n srv addr add 10.0.0.1/24 dev a0; ip -n srv addr add 10.0.1.1/24 dev a1
ip -n cli addr add 10.0.0.2/24 dev b0; ip -n cli addr add 10.0.1.2/24 dev b1
for n in srv cli; do ip -n $n link set lo up; done
ip -n srv link set a0 up; ip -n srv link set a1 up
ip -n cli link set b0 up; ip -n cli link set b1 up
sleep 1
/usr/bin/ip netns exec srv $B server --transport sctp --listen 10.0.0.1,10.0.1.1:5000 > $OUT/server.jsonl 2> $OUT/server.err &
SP=$!
sleep 1
/usr/bin/ip netns exec cli tcpdump -i any -n -s 200 -U -Z root -w $OUT/client.pcap > $OUT/tcpdump.log 2>&1 &
TP=$!
sleep 1
log "test 1: 256 KiB x3 ppid 11 stream 3"
/usr/bin/ip netns exec cli $B client --transport sctp --connect 10.0.0.1,10.0.1.1:5000 --bind 10.0.0.2,10.0.1.2 --ppid 11 --stream 3 --size 262144 --count 3 > $OUT/client1.json 2> $OUT/client1.err
echo "client1 rc=$?" | tee $OUT/client1.rc
cat $OUT/client1.json
log "test 2: 50 x 1000 B, interval 100 ms, path 10.0.0.x down after 1.5 s"
/usr/bin/ip netns exec cli $B client --transport sctp --connect 10.0.0.1,10.0.1.1:5000 --bind 10.0.0.2,10.0.1.2 --ppid 11 --stream 3 --size 1000 --count 50 --interval-ms 100 > $OUT/client2.json 2> $OUT/client2.err &
CP=$!
sleep 1.5
ip -n cli link set b0 down
log "b0 down"
wait $CP
echo "client2 rc=$?" | tee $OUT/client2.rc
cat $OUT/client2.json
ip -n cli link set b0 up
kill -INT $TP; wait $TP
for t in transport_sctp transport_kind; do
  if [ -x /opt/t/bin/$t ]; then
    log "integration tests: $t"
    /opt/t/bin/$t --test-threads=1 --nocapture > $OUT/$t.log 2>&1
    echo "$t rc=$?" | tee $OUT/$t.rc
    tail -30 $OUT/$t.log
  fi
done
kill $SP
cat $OUT/server.jsonl
