#!/bin/sh
# takeover-rsplib-pe: rspregistrar takes over our PE from our dead enrp-server
# (RFC 5353 §3.6): the asap crate's PE opens its registrar association from a
# port it also listens on (SO_REUSEPORT, kernel SCTP), so rspregistrar reaches
# it at the ASAP transport ours reported in HANDLE_UPDATE; our PE answers the
# H-flag keep-alive and re-registers with its new home.
#
#   PR1 enrp-server --transport sctp  10.0.0.1 (ours, ID 0x5eed0001)
#   PR2 rspregistrar                  10.0.0.2 (rsplib, ID 0x0000aaa2)
#   PR3 rspregistrar                  10.0.0.3 (rsplib, ID 0x0000aaa3)
#   PE  echo_pe (ours)                10.0.0.21, id 0x21212121, registered at PR1 only
#
# Two rsplib registrars because rsplib 3.4.4 completes a takeover only when an
# INIT_TAKEOVER_ACK arrives: with no other live peer to acknowledge, its
# takeover expires ("0 outstanding acknowledgements") and is abandoned. PR2 and
# PR3 race; the one that gets the other's ACK first wins (observed: either).
#
# kill -9 PR1 -> the winner W takes over: our PE reports HomeChanged to W;
# hsdump at W lists it with home W after W's keep-alive timeout; rspterminal
# through W is echoed by it; it deregisters at W. Host side (check.sh): W's
# H-flag keep-alive to our PE's registration port, our ACK and our
# re-registration at W.
# vm-timeout: 120
. /rig/lib.sh
PR1=10.0.0.1
PR2=10.0.0.2
PR3=10.0.0.3
RSPLOG="-logcolor=off -loglevel=2"
FAST="-peerheartbeatcycle=1000 -peermaxtimelastheard=3000 -peermaxtimenoresponse=2000 \
  -takeoverexpiryinterval=3000 -mentordiscoverytimeout=2000 \
  -endpointkeepalivetransmissioninterval=2000 -endpointkeepalivetimeoutinterval=2000"

net_dummy $PR1 $PR2 $PR3 10.0.0.21
capture lo takeover-rsplib-pe

start pr1 enrp-server --transport sctp \
  --asap $PR1:3863 --enrp $PR1:9901 --identifier 0x5eed0001 \
  --asap-announce off --enrp-announce off --peer $PR2:9901 --peer $PR3:9901 \
  --peer-heartbeat-cycle 1000 --peer-max-time-last-heard 3000 \
  --peer-max-time-no-response 2000 --mentor-discovery-timeout 2000 \
  --takeover-expiry-interval 3000 --hsdump-allow 10.0.0.0/24
start pr2 rspregistrar -identifier=0x0000aaa2 -asap=$PR2:3863 -enrp=$PR2:9901 \
  -asapannounce=off -enrpannounce=off -peer=$PR1:9901 -peer=$PR3:9901 $FAST $RSPLOG
start pr3 rspregistrar -identifier=0x0000aaa3 -asap=$PR3:3863 -enrp=$PR3:9901 \
  -asapannounce=off -enrpannounce=off -peer=$PR1:9901 -peer=$PR2:9901 $FAST $RSPLOG
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrars not listening"

start ourpe echo_pe --transport sctp --registrar $PR1:3863 --pool OurPool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr

# No hsdump at the rsplib registrars before the kill: every hsdump run enters
# their peer lists as a peer, and rsplib 3.4.4 waits for INIT_TAKEOVER_ACKs
# from every peer listed when the takeover starts (even ones dropped
# meanwhile), so a recent hsdump makes the takeover expire.
wait_for 30 grep -q "PE registered.*pe_id=0x21212121" "$OUT/pr1.log"
peers_found() { [ "$(grep -c PeerFound "$OUT/pr1.log")" -ge 2 ]; }
wait_for 30 peers_found
# HANDLE_UPDATE / mentor download to the rsplib registrars: within a
# heartbeat cycle (1 s).
sleep 3

log "kill -9 our registrar"
stop pr1 KILL
wait_for 40 grep -Eq "HomeChanged.*to: 4368[23] " "$OUT/ourpe.log"
case "$(grep -Eo 'HomeChanged.*to: 4368[23] ' "$OUT/ourpe.log" | tail -n1)" in
  *43682*) W=$PR2 WID=0000aaa2 ;;
  *43683*) W=$PR3 WID=0000aaa3 ;;
  *) W=$PR2 WID=none ;;
esac
echo "$W" > "$OUT/winner.txt"
log "takeover winner: $W (\$$WID)"
expect_ok "our PE adopted an rspregistrar as home (H keep-alive)" [ "$WID" != none ]
home_at_w() {
  hsdump_to poll $W:9901
  grep -A1 '\$21212121 flags' "$OUT/hsdump-poll.txt" | grep -q "home=\$$1"
}
wait_for 20 home_at_w $WID
# Past rspregistrar's keep-alive timeout (2 s): our PE is still there.
sleep 5
hsdump_to after $W:9901
expect_eq "hsdump at the winner lists our PE" "$(hs_pe_count "$OUT/hsdump-after.txt")" 1
expect_grep "our PE owned by the winner" "home=\$$WID" "$OUT/hsdump-after.txt"
expect_grep "our PE's ASAP transport at the winner: 10.0.0.21" "regT:  {10.0.0.21}" "$OUT/hsdump-after.txt"

mkfifo /tmp/term.in
start -i /tmp/term.in term rspterminal -poolhandle=OurPool -registrar=$W:3863 $RSPLOG
exec 3> /tmp/term.in
echo "after the takeover" >&3
wait_for 20 grep -q "after the takeover" "$OUT/term.log"
expect_grep "rspterminal echoed by our PE through the winner" "21212121.*after the takeover" "$OUT/term.log"
exec 3>&-
stop term INT

stop ourpe INT
expect_grep "our PE deregistered at its new home" "confirmed=true" "$OUT/ourpe.log"
stop pr3 INT
stop pr2 INT
finish
