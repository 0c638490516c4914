#!/bin/sh
# peering-rsplib-multicast: like peering-rsplib, but neither registrar is told
# about the other: they find each other only through ENRP_PRESENCE multicast to
# 239.0.0.51:9901 (RFC 5353 §3.1; rsplib's group), then peer over ENRP/SCTP
# associations (PPID 12).
#
#   netns a: PR1 enrp-server --transport sctp  10.0.0.1 (ours, ID 0x5eed0001)
#            PE2 rspserver -echo               10.0.0.12, registered at PR1
#   netns b: PR2 rspregistrar                  10.0.0.2 (rsplib, ID 0x0000aaa2)
#            PE1 rspserver -echo               10.0.0.11, registered at PR2
#   one veth pair a:va <-> b:vb, multicast routed onto it
#
# One namespace per registrar because rsplib takes a multicast peer's address
# from the datagram's source (tests/vm/README.md). No --peer / -peer
# anywhere. Checks: hsdump against each registrar lists both PEs; a
# deregistered PE disappears from the other registrar too. Host side: PRESENCE
# to 239.0.0.51:9901 from both, HANDLE_UPDATEs both ways over SCTP.
# vm-timeout: 150
. /rig/lib.sh
PR1=10.0.0.1
PR2=10.0.0.2
RSPLOG="-logcolor=off -loglevel=2"

netns_add a b
veth_link a va $PR1 b vb $PR2
in_ns a ip addr add 10.0.0.12/24 dev va
in_ns b ip addr add 10.0.0.11/24 dev vb
for nd in a:va b:vb; do
  in_ns ${nd%:*} ip link set ${nd#*:} multicast on
  in_ns ${nd%:*} ip route add 224.0.0.0/4 dev ${nd#*:}
done
capture -n a va peering-rsplib-multicast

start -n a pr1 enrp-server --transport sctp \
  --asap $PR1:3863 --enrp $PR1:9901 --identifier 0x5eed0001 \
  --asap-announce off --enrp-announce 239.0.0.51:9901 \
  --peer-heartbeat-cycle 1000 --peer-max-time-last-heard 3000 \
  --peer-max-time-no-response 2000 --mentor-discovery-timeout 2000 \
  --takeover-expiry-interval 3000 \
  --peer-allow 10.0.0.0/24 --hsdump-allow 10.0.0.0/24
start -n b pr2 rspregistrar -identifier=0x0000aaa2 -asap=$PR2:3863 -enrp=$PR2:9901 \
  -asapannounce=off -enrpannounce=239.0.0.51:9901 \
  -peerheartbeatcycle=1000 -peermaxtimelastheard=3000 -peermaxtimenoresponse=2000 \
  -takeoverexpiryinterval=3000 -mentordiscoverytimeout=2000 $RSPLOG
wait_for 10 in_ns a grep -qw 3863 /proc/net/sctp/eps || log "ours not listening"
wait_for 10 in_ns b grep -qw 3863 /proc/net/sctp/eps || log "rspregistrar not listening"

start -n b pe1 rspserver -echo -poolhandle=EchoPool -registrar=$PR2:3863 \
  -local=10.0.0.11 -identifier=0x11111111 $RSPLOG
start -n a pe2 rspserver -echo -poolhandle=EchoPool -registrar=$PR1:3863 \
  -local=10.0.0.12 -identifier=0x22222222 $RSPLOG

# hsdump from the registrar's own namespace (it acts as a registrar itself).
hsd() {  # hsd NS ADDR:PORT NAME
  in_ns "$1" timeout 15 hsdump "$2" -logcolor=off -loglevel=1 > "$OUT/hsdump-$3.txt" 2>&1
  log "hsdump $2 -> hsdump-$3.txt: $(grep -m1 'PoolElements' "$OUT/hsdump-$3.txt")"
}
count_at() { hsd "$1" "$2" poll; sleep 1; [ "$(hs_pe_count "$OUT/hsdump-poll.txt")" = "$3" ]; }

wait_for 60 count_at a $PR1:9901 2
hsd a $PR1:9901 ours
expect_eq "hsdump at ours lists 2 PEs" "$(hs_pe_count "$OUT/hsdump-ours.txt")" 2
expect_grep "rsplib's PE (at rspregistrar) listed at ours" "\$11111111 flags" "$OUT/hsdump-ours.txt"
wait_for 60 count_at b $PR2:9901 2
hsd b $PR2:9901 theirs
expect_eq "hsdump at rspregistrar lists 2 PEs" "$(hs_pe_count "$OUT/hsdump-theirs.txt")" 2
expect_grep "PE registered at ours listed at rspregistrar" "\$22222222 flags" "$OUT/hsdump-theirs.txt"
expect_grep "ours found rspregistrar by multicast" "PeerFound { server_id: 43682" "$OUT/pr1.log"

# deregistration at rspregistrar propagates to ours, and the other way round
stop pe1 INT
wait_for 30 count_at a $PR1:9901 1
hsd a $PR1:9901 ours-after
expect_no_grep "deregistered rsplib PE gone at ours" "\$11111111 flags" "$OUT/hsdump-ours-after.txt"
stop pe2 INT
wait_for 30 count_at b $PR2:9901 0
hsd b $PR2:9901 theirs-after
expect_no_grep "deregistered PE gone at rspregistrar" "\$22222222 flags" "$OUT/hsdump-theirs-after.txt"

stop pr2 INT
stop pr1 INT
finish
