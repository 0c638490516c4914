#!/bin/sh
# registrar-announce: rsplib finds our registrar by ASAP_SERVER_ANNOUNCE alone.
#
#   PR  enrp-server --transport sctp   10.0.0.1, announces to 239.0.0.50:3863
#   PE  rspserver -echo                10.0.0.11, no -registrar option
#   PU  rspterminal                    no -registrar option
#
# Checks: the PE registers with us and the PU's lines are echoed, both having
# learned our address only from the multicast announces (which carry our SCTP
# transport); hsdump lists the PE.
# vm-timeout: 120
. /rig/lib.sh
PR=10.0.0.1
RSPLOG="-logcolor=off -loglevel=2"

net_dummy $PR 10.0.0.11
ip link set dummy0 multicast on
ip route add 224.0.0.0/4 dev dummy0
capture any registrar-announce

start pr enrp-server --transport sctp --asap $PR:3863 --enrp $PR:9901 \
  --identifier 0x5eed0002 --asap-announce 239.0.0.50:3863 --announce-cycle 500
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"
expect_grep "announces go to 239.0.0.50:3863" "announce=\[239.0.0.50:3863\]" "$OUT/pr.log"

start pe1 rspserver -echo -poolhandle=EchoPool -local=10.0.0.11 \
  -identifier=0x11111111 $RSPLOG
pe_count() { hsdump_to poll $PR:9901; [ "$(hs_pe_count "$OUT/hsdump-poll.txt")" = "$1" ]; }
wait_for 40 pe_count 1
hsdump_to one $PR:9901
expect_eq "PE found us by announce and registered" "$(hs_pe_count "$OUT/hsdump-one.txt")" 1
expect_grep "registration logged" "PE registered.*0x11111111" "$OUT/pr.log"

mkfifo /tmp/pu.in
start -i /tmp/pu.in pu rspterminal -poolhandle=EchoPool $RSPLOG
exec 3> /tmp/pu.in
echo "Hello by announce" >&3
wait_for 30 grep -q "from PE .*> Hello by announce" "$OUT/pu.log"
expect_grep "PU found us by announce, line echoed" "from PE .*> Hello by announce" "$OUT/pu.log"
exec 3>&-
finish
