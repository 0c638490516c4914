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

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.13
capture lo registrar-rsplib

start pr enrp-server --transport sctp \
  --asap $PR:3863 --enrp $PR:9901 --identifier 0x5eed0001 \
  --asap-announce off --keep-alive-interval 2000 --keep-alive-timeout 3000 \
  --hsdump-allow 10.0.0.0/24
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"
expect_grep "enrp-server listens over SCTP" "transport=\"*sctp" "$OUT/pr.log"

rsp_echo_pes $PR:3863 10.0.0.11 10.0.0.12 10.0.0.13
wait_for 30 hs_count_is $PR:9901 3
expect_hs_pes "hsdump lists 3 PEs" three $PR:9901 3
for i in 1 2 3; do
  expect_grep "PE \$$i$i$i$i$i$i$i$i in the handlespace" "\$$i$i$i$i$i$i$i$i flags" "$OUT/hsdump-three.txt"
  expect_grep "registration of PE $i logged" "PE registered.*0x$i$i$i$i$i$i$i$i" "$OUT/pr.log"
done
expect_grep "hsdump: PEs have our home ID" "home=\$5eed0001" "$OUT/hsdump-three.txt"
expect_grep "hsdump: user transport of PE 1" "userT: {10.0.0.11}" "$OUT/hsdump-three.txt"

# pool user rspterminal; hard kill of the serving PE -> removed at once (its
# association is aborted by the kernel), failover
rsp_term_failover $PR
expect_grep "removal logged as association-lost" "reason=\"*association-lost" "$OUT/pr.log"

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
wait_for 20 hs_count_is $PR:9901 1
expect_hs_pes "hsdump lists 1 PE after SIGSTOP" frozen $PR:9901 1
expect_no_grep "frozen PE gone from the handlespace" "\$$FROZEN_ID flags" "$OUT/hsdump-frozen.txt"
expect_grep "removal logged as keep-alive-timeout" "reason=\"*keep-alive-timeout" "$OUT/pr.log"

# thaw it: rsplib notices the aborted association and registers again
kill -CONT "$(pid_of "$FROZEN")"
wait_for 40 hs_count_is $PR:9901 2
hsdump_to thawed $PR:9901
expect_grep "thawed PE registered again" "\$$FROZEN_ID flags" "$OUT/hsdump-thawed.txt"

send_expect 3 "Still there" pu 20 "line echoed at the end" "from PE .*> Still there"
exec 3>&-

# graceful shutdown on SIGINT
stop pu INT
stop pr INT
expect_grep "registrar shut down gracefully" "registrar shutting down" "$OUT/pr.log"
finish
