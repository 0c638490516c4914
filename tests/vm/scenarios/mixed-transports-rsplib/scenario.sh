#!/bin/sh
# mixed-transports-rsplib: one enrp-server listening on kernel SCTP and TCP at once
# (--transport sctp,tcp, issue 17 item 4), one port each for ASAP and ENRP.
#
#   PR  enrp-server --transport sctp,tcp      10.0.0.1 (ASAP 3863, ENRP 9901; SCTP and TCP)
#   PE  2x rspserver -echo (kernel SCTP)      10.0.0.11-12, pool EchoPool
#   PU  echo_pu --transport tcp (ours)        EchoPool: resolves over TCP, sessions over
#                                             SCTP to the rsplib PEs; 3 lines echoed
#   PE  echo_pe --transport tcp (ours)        10.0.0.21, pool OurPool, TCP user transport
#   PU  echo_pu --transport sctp (ours)       OurPool: resolves over SCTP, session over TCP
#   announces: ASAP_SERVER_ANNOUNCE (unicast to 10.0.0.1:3863/udp) lists SCTP and TCP
# vm-timeout: 150
. /rig/lib.sh
PR=10.0.0.1

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.21
capture lo mixed

start pr enrp-server --transport sctp,tcp --asap $PR:3863 --enrp $PR:9901 \
  --identifier 0x5eed0018 --asap-announce $PR:3863 \
  --keep-alive-interval 2000 --keep-alive-timeout 3000 --hsdump-allow 10.0.0.0/8
wait_for 10 grep -q "registrar listening" "$OUT/pr.log"
wait_for 5 grep -qw 3863 /proc/net/sctp/eps
expect_ok "ASAP on kernel SCTP 3863" grep -qw 3863 /proc/net/sctp/eps
expect_ok "ENRP on kernel SCTP 9901" grep -qw 9901 /proc/net/sctp/eps
ss -ltn > "$OUT/ss-tcp.txt"
expect_grep "ASAP on TCP 3863" "10.0.0.1:3863" "$OUT/ss-tcp.txt"
expect_grep "ENRP on TCP 9901" "10.0.0.1:9901" "$OUT/ss-tcp.txt"
expect_grep "registrar log names both transports" 'transports=\["sctp", "tcp"\]' "$OUT/pr.log"

# 1. rsplib PEs over kernel SCTP, our PU over TCP
rsp_echo_pes $PR:3863 10.0.0.11 10.0.0.12
wait_for 40 hs_count_is $PR:9901 2
expect_hs_pes "hsdump (rsplib, ENRP over SCTP) lists the 2 rsplib PEs" two $PR:9901 2
expect_grep "hsdump: PEs have our home ID" "home=\$5eed0018" "$OUT/hsdump-two.txt"
fifo_start 4 pu echo_pu --transport tcp --registrar $PR:3863 --pool EchoPool
for i in 1 2 3; do
  send_expect 4 "tcp line $i" pu 20 "our PU (TCP to the registrar): line $i echoed by rspserver (SCTP)" "^tcp line $i\$"
done
exec 4>&-
wait_exit pu 10
expect_eq "our TCP PU exits 0 at end of input" "$pu_rc" 0

# 2. our PE over TCP, our PU over kernel SCTP
start ourpe echo_pe --transport tcp --registrar $PR:3863 --pool OurPool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr
# (rsplib's hsdump leaves out PEs with a TCP user transport: look at the logs instead)
wait_for 30 grep -q "PE registered.*0x21212121" "$OUT/pr.log"
expect_grep "our PE registered over TCP at our registrar" "PE registered.*0x21212121" "$OUT/pr.log"
expect_grep "our PE saw its registration" "Registered" "$OUT/ourpe.log"
fifo_start 5 pu2 echo_pu --transport sctp --registrar $PR:3863 --pool OurPool
for i in 1 2; do
  send_expect 5 "sctp line $i" pu2 20 "our PU (SCTP to the registrar): line $i echoed by our TCP PE" "^sctp line $i\$"
done
exec 5>&-
wait_exit pu2 10
expect_eq "our SCTP PU exits 0 at end of input" "$pu2_rc" 0

stop ourpe INT
stop pe1 INT
stop pe2 INT
wait_for 15 hs_count_is $PR:9901 0
stop pr INT
expect_grep "registrar shut down gracefully" "registrar shutting down" "$OUT/pr.log"
finish
