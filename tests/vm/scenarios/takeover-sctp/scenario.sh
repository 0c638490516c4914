#!/bin/sh
# takeover-sctp: takeover between two of our enrp-servers over kernel SCTP
# with our PE (RFC 5353 §3.6): the surviving registrar connects (SCTP) to the
# ASAP transport the dead one recorded for the asap crate's PE (its registrar
# association's port, shared with a SO_REUSEPORT listener), sends
# ENDPOINT_KEEP_ALIVE with the H flag, and monitors the PE over that
# association.
#
#   PR1 enrp-server --transport sctp  10.0.0.1 (ID 0x5eed0001)
#   PR2 enrp-server --transport sctp  10.0.0.2 (ID 0x5eed0002)
#   PE  echo_pe (ours)                10.0.0.21, id 0x21212121, registered at PR2 only
#
# kill -9 PR2 -> PR1 takes over: the PE reports HomeChanged to 0x5eed0001,
# hsdump at PR1 lists it owned by PR1, still after PR1's keep-alive timeout,
# and it deregisters at PR1. Host side (check.sh): PR1's H keep-alive to the
# PE's registration port, the ACK, the re-registration at PR1 and PR1's plain
# keep-alives on that association.
# vm-timeout: 120
. /rig/lib.sh
PR1=10.0.0.1
PR2=10.0.0.2
FAST="--asap-announce off --enrp-announce off \
  --peer-heartbeat-cycle 1000 --peer-max-time-last-heard 3000 \
  --peer-max-time-no-response 2000 --mentor-discovery-timeout 2000 \
  --takeover-expiry-interval 3000 --keep-alive-interval 2000 --keep-alive-timeout 2000 \
  --hsdump-allow 10.0.0.0/24"

net_dummy $PR1 $PR2 10.0.0.21
capture lo takeover-sctp

start pr1 enrp-server --transport sctp --asap $PR1:3863 --enrp $PR1:9901 \
  --identifier 0x5eed0001 --peer $PR2:9901 $FAST
start pr2 enrp-server --transport sctp --asap $PR2:3863 --enrp $PR2:9901 \
  --identifier 0x5eed0002 --peer $PR1:9901 $FAST
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrars not listening"
start ourpe echo_pe --transport sctp --registrar $PR2:3863 --pool OurPool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr

homed_at_pr1() {
  hsdump_to poll $PR1:9901
  grep -A1 '\$21212121 flags' "$OUT/hsdump-poll.txt" | grep -q "home=\$$1"
}
wait_for 30 homed_at_pr1 5eed0002
hsdump_to before $PR1:9901
expect_grep "PR1 knows the PE with home \$5eed0002" "home=\$5eed0002" "$OUT/hsdump-before.txt"
expect_grep "PE's ASAP transport at PR1: 10.0.0.21" "regT:  {10.0.0.21}" "$OUT/hsdump-before.txt"

log "kill -9 PR2"
stop pr2 KILL
wait_for 40 grep -q "HomeChanged.*to: 1592590337" "$OUT/ourpe.log"
expect_grep "PE adopted PR1 as home (H keep-alive)" \
  "HomeChanged { from: .*, to: 1592590337 }" "$OUT/ourpe.log"
expect_grep "PR1 bound the PE to its association (Adopted)" "Adopted {.*id: 555819297" "$OUT/pr1.log"
wait_for 20 homed_at_pr1 5eed0001
# Past PR1's keep-alive timeout (2 s), a few keep-alive cycles.
sleep 6
hsdump_to after $PR1:9901
expect_eq "hsdump at PR1 lists the PE" "$(hs_pe_count "$OUT/hsdump-after.txt")" 1
expect_grep "PE owned by PR1" "home=\$5eed0001" "$OUT/hsdump-after.txt"
expect_no_grep "no keep-alive-timeout removal at PR1" "keep-alive-timeout" "$OUT/pr1.log"

stop ourpe INT
expect_grep "PE deregistered at its new home" "confirmed=true" "$OUT/ourpe.log"
expect_grep "PR1 removed it as deregistered" 'pe_id=0x21212121 reason="deregistered"' "$OUT/pr1.log"
stop pr1 INT
finish
