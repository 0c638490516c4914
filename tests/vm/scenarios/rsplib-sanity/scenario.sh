#!/bin/sh
# rsplib-sanity: the reference implementation works in the rig.
#
#   PR  rspregistrar               10.0.0.1 (ASAP 3863, ENRP 9901)
#   PE  3x rspserver -echo         10.0.0.11-13, pool "EchoPool"
#   PU  rspterminal                resolves EchoPool, lines in -> echoes out
#
# All addresses sit on dummy0 (rsplib refuses loopback-only PEs), so the
# traffic travels over lo and one capture on lo sees all of it.
# Checks: 3 PEs registered (hsdump); typed lines come back echoed; kill -9
# of the serving PE -> hsdump lists 2 and the next line is echoed by
# another PE (failover).
# vm-timeout: 90
. /rig/lib.sh
PR=10.0.0.1
RSPLOG="-logcolor=off -loglevel=2"

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.13
capture lo rsplib-sanity

start pr rspregistrar -identifier=0x0000aaa1 -asap=$PR:3863 -enrp=$PR:9901 \
  -asapannounce=off -enrpannounce=off $RSPLOG
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"

for i in 1 2 3; do
  start pe$i rspserver -echo -poolhandle=EchoPool -registrar=$PR:3863 \
    -local=10.0.0.1$i -identifier=0x$i$i$i$i$i$i$i$i $RSPLOG
done
pe_count() { hsdump_to poll $PR:9901; [ "$(hs_pe_count "$OUT/hsdump-poll.txt")" = "$1" ]; }
wait_for 20 pe_count 3
hsdump_to three $PR:9901
expect_eq "hsdump lists 3 PEs" "$(hs_pe_count "$OUT/hsdump-three.txt")" 3
for i in 1 2 3; do
  expect_grep "PE \$$i$i$i$i$i$i$i$i in the handlespace" "\$$i$i$i$i$i$i$i$i flags" "$OUT/hsdump-three.txt"
done

# pool user, fed through a fifo held open on fd 3
mkfifo /tmp/pu.in
start -i /tmp/pu.in pu rspterminal -poolhandle=EchoPool -registrar=$PR:3863 $RSPLOG
exec 3> /tmp/pu.in
for i in 1 2 3; do
  echo "Hello RSerPool $i" >&3
  wait_for 10 grep -q "from PE .*> Hello RSerPool $i" "$OUT/pu.log"
  expect_grep "line $i echoed by a PE" "from PE .*> Hello RSerPool $i" "$OUT/pu.log"
done
SERVING=$(sed -n 's/.*from PE \$\([0-9a-fA-F]*\)>.*/\1/p' "$OUT/pu.log" | tail -n1)
log "PU is served by PE \$$SERVING"

# hard kill of the serving PE: the kernel aborts its associations and the
# registrar removes it at once
VICTIM=pe$(echo "$SERVING" | cut -c1)
case "$VICTIM" in pe1|pe2|pe3) ;; *) VICTIM=pe1 ;; esac
stop "$VICTIM" KILL
wait_for 15 pe_count 2
hsdump_to two $PR:9901
expect_eq "hsdump lists 2 PEs after kill -9" "$(hs_pe_count "$OUT/hsdump-two.txt")" 2
expect_no_grep "killed PE gone from the handlespace" "\$$SERVING flags" "$OUT/hsdump-two.txt"

echo "After failover" >&3
wait_for 15 grep -q "from PE .*> After failover" "$OUT/pu.log"
expect_grep "line echoed after failover" "from PE .*> After failover" "$OUT/pu.log"
expect_no_grep "failover went to another PE" "from PE \$$SERVING> After failover" "$OUT/pu.log"

exec 3>&-
finish
