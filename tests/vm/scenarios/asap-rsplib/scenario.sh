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
RSPLOG="-logcolor=off -loglevel=2"

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.21
capture lo asap-rsplib

start pr rspregistrar -identifier=0x0000aaa1 -asap=$PR:3863 -enrp=$PR:9901 \
  -asapannounce=off -enrpannounce=off $RSPLOG
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"

# 1. our PE registered at rspregistrar, serving rspterminal
start ourpe echo_pe --transport sctp --registrar $PR:3863 --pool OurPool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr
pool_count() { hsdump_to poll $PR:9901; [ "$(hs_pe_count "$OUT/hsdump-poll.txt")" = "$1" ]; }
wait_for 30 pool_count 1
hsdump_to ours $PR:9901
expect_grep "our PE in rspregistrar's handlespace" "\$21212121 flags" "$OUT/hsdump-ours.txt"
expect_grep "our PE registered (event logged)" "Registered" "$OUT/ourpe.log"
expect_grep "rspregistrar sent keep-alives, our PE answered" "KeepAlive" "$OUT/ourpe.log"

mkfifo /tmp/term.in
start -i /tmp/term.in term rspterminal -poolhandle=OurPool -registrar=$PR:3863 $RSPLOG
exec 3> /tmp/term.in
for i in 1 2; do
  echo "Hello from rsplib $i" >&3
  wait_for 20 grep -q "Hello from rsplib $i" "$OUT/term.log"
  expect_grep "rspterminal line $i echoed by our PE" "21212121.*Hello from rsplib $i" "$OUT/term.log"
done
exec 3>&-
stop term INT

# 2. rsplib PEs serving our PU, with failover
for i in 1 2; do
  start pe$i rspserver -echo -poolhandle=EchoPool -registrar=$PR:3863 \
    -local=10.0.0.1$i -identifier=0x$i$i$i$i$i$i$i$i $RSPLOG
done
wait_for 30 pool_count 3
mkfifo /tmp/pu.in
start -i /tmp/pu.in pu echo_pu --transport sctp --registrar $PR:3863 --pool EchoPool
exec 4> /tmp/pu.in
for i in 1 2 3; do
  echo "line $i" >&4
  wait_for 20 grep -qx "line $i" "$OUT/pu.log"
  expect_grep "our PU: line $i echoed by rspserver" "^line $i\$" "$OUT/pu.log"
done
SERVING=$(sed -n 's/^connected to PE 0x\([0-9a-f]*\).*/\1/p' "$OUT/pu.log" | tail -n1)
log "our PU is served by PE $SERVING"
VICTIM=pe$(echo "$SERVING" | cut -c1)
case "$VICTIM" in pe1|pe2) ;; *) VICTIM=pe1 ;; esac
stop "$VICTIM" KILL
for i in 4 5 6; do
  echo "line $i" >&4
done
wait_for 30 grep -qx "line 6" "$OUT/pu.log"
expect_grep "our PU failed over" "^failover 0x$SERVING -> 0x" "$OUT/pu.log"
for i in 4 5 6; do
  expect_eq "line $i echoed exactly once after the failover" "$(grep -cx "line $i" "$OUT/pu.log")" 1
done
exec 4>&-
wait_exit pu 10
expect_eq "our PU exits 0 at end of input" "$pu_rc" 0

stop ourpe INT
expect_grep "our PE deregistered on SIGINT" "deregistered" "$OUT/ourpe.log"
stop pr INT
finish
