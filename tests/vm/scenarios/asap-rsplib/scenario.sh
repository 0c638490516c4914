#!/bin/sh
# asap-rsplib: the asap crate's PE/PU/session API (examples echo_pe and echo_pu) against
# real rsplib 3.4.4 over kernel SCTP.
#
#   PR  rspregistrar                 10.0.0.1 (ASAP 3863, ENRP 9901)
#   PE  echo_pe (ours)               10.0.0.21, pool "OurPool", SCTP user transport
#   PU  rspterminal                  OurPool: typed lines come back from our PE
#   PE  2x rspserver -echo           10.0.0.11-12, pool "EchoPool"
#   PU  echo_pu (ours)               EchoPool: lines echoed; kill -9 of the serving
#                                    rspserver -> our session fails over, the next lines
#                                    are echoed by the other PE, nothing lost
# vm-timeout: 150
. /rig/lib.sh
PR=10.0.0.1

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.21
capture lo asap-rsplib

rsp_registrar pr $PR

# 1. our PE registered at rspregistrar, serving rspterminal
start ourpe echo_pe --transport sctp --registrar $PR:3863 --pool OurPool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr
wait_for 30 hs_count_is $PR:9901 1
hsdump_to ours $PR:9901
expect_grep "our PE in rspregistrar's handlespace" "\$21212121 flags" "$OUT/hsdump-ours.txt"
expect_grep "our PE registered (event logged)" "Registered" "$OUT/ourpe.log"

rsp_term_hello OurPool $PR:3863 "our PE" 21212121

# 2. rsplib PEs serving our PU, with failover
rsp_echo_pes $PR:3863 10.0.0.11 10.0.0.12
wait_for 30 hs_count_is $PR:9901 3
fifo_start 4 pu echo_pu --transport sctp --registrar $PR:3863 --pool EchoPool
for i in 1 2 3; do
  send_expect 4 "line $i" pu 20 "our PU: line $i echoed by rspserver" "^line $i\$"
done
kill_serving pu
for i in 4 5 6; do
  send 4 "line $i"
done
wait_for 30 grep -qx "line 6" "$OUT/pu.log"
expect_grep "our PU failed over" "^failover 0x$SERVING -> 0x" "$OUT/pu.log"
for i in 4 5 6; do
  expect_eq "line $i echoed exactly once after the failover" "$(grep -cx "line $i" "$OUT/pu.log")" 1
done
exec 4>&-
wait_exit pu 10
expect_eq "our PU exits 0 at end of input" "$pu_rc" 0

# rspregistrar's keep-alive cycle is 5 s: by now our PE has answered at least one
wait_for 20 grep -q "KeepAlive" "$OUT/ourpe.log"
expect_grep "rspregistrar sent keep-alives, our PE answered" "KeepAlive" "$OUT/ourpe.log"
stop ourpe INT
expect_grep "our PE deregistered on SIGINT" "deregistered" "$OUT/ourpe.log"
stop pr INT
# tcpdump lags under TCG emulation; give it time to write the last packets (the
# deregistration) before finish stops it.
sleep 3
finish
