#!/bin/sh
# peering-rsplib: our enrp-server and rsplib's rspregistrar in one operational
# scope, peering over ENRP/SCTP associations (RFC 5353, PPID 12, port 9901).
#
#   PR1 enrp-server --transport sctp  10.0.0.1 (ours, ID 0x5eed0001)
#   PR2 rspregistrar                  10.0.0.2 (rsplib, ID 0x0000aaa2)
#   PE1 rspserver -echo               10.0.0.11, registered at PR2
#   PE2 rspserver -echo               10.0.0.12, registered at PR1
#
# Checks: hsdump against each registrar lists both PEs (HANDLE_UPDATE /
# handle table exchange over the association); a deregistered PE disappears
# from the other registrar too.
# vm-timeout: 150
. /rig/lib.sh
PR1=10.0.0.1
PR2=10.0.0.2

net_dummy $PR1 $PR2 10.0.0.11 10.0.0.12
capture lo peering-rsplib

peered_registrars $PR1 $PR2

start pe1 rspserver -echo -poolhandle=EchoPool -registrar=$PR2:3863 \
  -local=10.0.0.11 -identifier=0x11111111 $RSPLOG
start pe2 rspserver -echo -poolhandle=EchoPool -registrar=$PR1:3863 \
  -local=10.0.0.12 -identifier=0x22222222 $RSPLOG

wait_for 40 hs_count_is $PR1:9901 2
expect_hs_pes "hsdump at ours lists 2 PEs" ours $PR1:9901 2
expect_grep "rsplib's PE (at rspregistrar) listed at ours" "\$11111111 flags" "$OUT/hsdump-ours.txt"
wait_for 40 hs_count_is $PR2:9901 2
expect_hs_pes "hsdump at rspregistrar lists 2 PEs" theirs $PR2:9901 2
expect_grep "PE registered at ours listed at rspregistrar" "\$22222222 flags" "$OUT/hsdump-theirs.txt"
expect_grep "ours found rspregistrar as a peer" "PeerFound" "$OUT/pr1.log"

# deregistration at rspregistrar propagates to ours, and the other way round
stop pe1 INT
wait_for 30 hs_count_is $PR1:9901 1
hsdump_to ours-after $PR1:9901
expect_no_grep "deregistered rsplib PE gone at ours" "\$11111111 flags" "$OUT/hsdump-ours-after.txt"
stop pe2 INT
wait_for 30 hs_count_is $PR2:9901 0
hsdump_to theirs-after $PR2:9901
expect_no_grep "deregistered PE gone at rspregistrar" "\$22222222 flags" "$OUT/hsdump-theirs-after.txt"

stop pr2 INT
stop pr1 INT
finish
