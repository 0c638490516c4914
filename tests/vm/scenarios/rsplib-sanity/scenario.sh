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

net_dummy $PR 10.0.0.11 10.0.0.12 10.0.0.13
capture lo rsplib-sanity

rsp_registrar pr $PR

rsp_echo_pes $PR:3863 10.0.0.11 10.0.0.12 10.0.0.13
wait_for 20 hs_count_is $PR:9901 3
expect_hs_pes "hsdump lists 3 PEs" three $PR:9901 3
for i in 1 2 3; do
  expect_grep "PE \$$i$i$i$i$i$i$i$i in the handlespace" "\$$i$i$i$i$i$i$i$i flags" "$OUT/hsdump-three.txt"
done

# pool user rspterminal; hard kill of the serving PE -> failover
rsp_term_failover $PR

exec 3>&-
finish
