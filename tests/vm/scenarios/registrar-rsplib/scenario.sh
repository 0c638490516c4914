#!/bin/sh
# registrar-rsplib: our enrp-server as the registrar of real rsplib components
# over kernel SCTP.
#
#   PR  enrp-server --transport sctp    10.0.0.1 (ASAP 3863, ENRP 9901)
#   PE  3x rspserver -echo              10.0.0.11-13, pool "EchoPool"
#   PU  rspterminal                     resolves EchoPool via our PR
#   hsdump                              dumps our handlespace over ENRP
#
# Checks: 3 registrations accepted and listed by hsdump (with our home ID);
# typed lines come back echoed; kill -9 of the serving PE -> removed at once
# (association lost), and the next line is echoed by another PE (failover);
# SIGSTOP of another PE -> removed after the keep-alive timeout (the PR aborts
# its association); SIGCONT -> it registers again; SIGINT -> graceful exit.
# vm-timeout: 150
. /rig/lib.sh
PR=10.0.0.1
RSPLOG="-logcolor=off -loglevel=2"

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.13
capture lo registrar-rsplib

start pr enrp-server --transport sctp \
  --asap $PR:3863 --enrp $PR:9901 --identifier 0x5eed0001 \
  --asap-announce off --keep-alive-interval 2000 --keep-alive-timeout 3000 \
  --hsdump-allow 10.0.0.0/24
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"
expect_grep "enrp-server listens over SCTP" "transport=\"*sctp" "$OUT/pr.log"

for i in 1 2 3; do
  start pe$i rspserver -echo -poolhandle=EchoPool -registrar=$PR:3863 \
    -local=10.0.0.1$i -identifier=0x$i$i$i$i$i$i$i$i $RSPLOG
done
pe_count() { hsdump_to poll $PR:9901; [ "$(hs_pe_count "$OUT/hsdump-poll.txt")" = "$1" ]; }
wait_for 30 pe_count 3
hsdump_to three $PR:9901
expect_eq "hsdump lists 3 PEs" "$(hs_pe_count "$OUT/hsdump-three.txt")" 3
for i in 1 2 3; do
  expect_grep "PE \$$i$i$i$i$i$i$i$i in the handlespace" "\$$i$i$i$i$i$i$i$i flags" "$OUT/hsdump-three.txt"
  expect_grep "registration of PE $i logged" "PE registered.*0x$i$i$i$i$i$i$i$i" "$OUT/pr.log"
done
expect_grep "hsdump: PEs have our home ID" "home=\$5eed0001" "$OUT/hsdump-three.txt"
expect_grep "hsdump: user transport of PE 1" "userT: {10.0.0.11}" "$OUT/hsdump-three.txt"

# pool user, fed through a fifo held open on fd 3
mkfifo /tmp/pu.in
start -i /tmp/pu.in pu rspterminal -poolhandle=EchoPool -registrar=$PR:3863 $RSPLOG
exec 3> /tmp/pu.in
for i in 1 2 3; do
  echo "Hello RSerPool $i" >&3
  wait_for 15 grep -q "from PE .*> Hello RSerPool $i" "$OUT/pu.log"
  expect_grep "line $i echoed by a PE" "from PE .*> Hello RSerPool $i" "$OUT/pu.log"
done
SERVING=$(sed -n 's/.*from PE \$\([0-9a-fA-F]*\)>.*/\1/p' "$OUT/pu.log" | tail -n1)
log "PU is served by PE \$$SERVING"

# hard kill of the serving PE: its association is aborted by the kernel and
# the registrar removes it at once
VICTIM=pe$(echo "$SERVING" | cut -c1)
case "$VICTIM" in pe1|pe2|pe3) ;; *) VICTIM=pe1 ;; esac
stop "$VICTIM" KILL
wait_for 15 pe_count 2
hsdump_to two $PR:9901
expect_eq "hsdump lists 2 PEs after kill -9" "$(hs_pe_count "$OUT/hsdump-two.txt")" 2
expect_no_grep "killed PE gone from the handlespace" "\$$SERVING flags" "$OUT/hsdump-two.txt"
expect_grep "removal logged as association-lost" "reason=\"*association-lost" "$OUT/pr.log"

echo "After failover" >&3
wait_for 20 grep -q "from PE .*> After failover" "$OUT/pu.log"
expect_grep "line echoed after failover" "from PE .*> After failover" "$OUT/pu.log"
expect_no_grep "failover went to another PE" "from PE \$$SERVING> After failover" "$OUT/pu.log"

# freeze another PE: the kernel still answers SCTP heartbeats, only the
# ASAP keep-alive notices that the PE is gone
for p in pe1 pe2 pe3; do
  [ "$p" = "$VICTIM" ] && continue
  FROZEN=$p; break
done
FROZEN_ID=$(echo "$FROZEN" | cut -c3)
FROZEN_ID="$FROZEN_ID$FROZEN_ID$FROZEN_ID$FROZEN_ID$FROZEN_ID$FROZEN_ID$FROZEN_ID$FROZEN_ID"
log "freezing $FROZEN (\$$FROZEN_ID)"
kill -STOP "$(pid_of "$FROZEN")"
wait_for 20 pe_count 1
hsdump_to frozen $PR:9901
expect_eq "hsdump lists 1 PE after SIGSTOP" "$(hs_pe_count "$OUT/hsdump-frozen.txt")" 1
expect_no_grep "frozen PE gone from the handlespace" "\$$FROZEN_ID flags" "$OUT/hsdump-frozen.txt"
expect_grep "removal logged as keep-alive-timeout" "reason=\"*keep-alive-timeout" "$OUT/pr.log"

# thaw it: rsplib notices the aborted association and registers again
kill -CONT "$(pid_of "$FROZEN")"
wait_for 40 pe_count 2
hsdump_to thawed $PR:9901
expect_grep "thawed PE registered again" "\$$FROZEN_ID flags" "$OUT/hsdump-thawed.txt"

echo "Still there" >&3
wait_for 20 grep -q "from PE .*> Still there" "$OUT/pu.log"
expect_grep "line echoed at the end" "from PE .*> Still there" "$OUT/pu.log"
exec 3>&-

# graceful shutdown on SIGINT
stop pu INT
stop pr INT
expect_grep "registrar shut down gracefully" "registrar shutting down" "$OUT/pr.log"
finish
