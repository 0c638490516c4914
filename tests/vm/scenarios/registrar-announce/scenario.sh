#!/bin/sh
# registrar-announce: rsplib finds our registrar by ASAP_SERVER_ANNOUNCE alone.
#
#   PR  enrp-server --transport sctp   10.0.0.1, announces to 239.0.0.50:3863
#   PE  rspserver -echo                10.0.0.11, no -registrar option
#   PU  rspterminal                    no -registrar option
#
# Checks: the PE registers with us and the PU's lines are echoed, both having
# learned our address only from the multicast announces (which carry our SCTP
# transport); hsdump lists the PE. Then the same for the asap crate: our echo_pe
# (10.0.0.21, pool OurPool) and echo_pu, both with --announce and no
# --registrar, find our registrar through the announces alone (the PE/PU
# multicast listener on 239.0.0.50:3863).
# vm-timeout: 120
. /rig/lib.sh
PR=10.0.0.1

net_dummy $PR 10.0.0.11 10.0.0.21
ip link set dummy0 multicast on
ip route add 224.0.0.0/4 dev dummy0
capture any registrar-announce

start pr enrp-server --transport sctp --asap $PR:3863 --enrp $PR:9901 \
  --identifier 0x5eed0002 --asap-announce 239.0.0.50:3863 --announce-cycle 500 \
  --hsdump-allow 10.0.0.0/24
wait_for 10 grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"
expect_grep "announces go to 239.0.0.50:3863" "announce=\[239.0.0.50:3863\]" "$OUT/pr.log"

start pe1 rspserver -echo -poolhandle=EchoPool -local=10.0.0.11 \
  -identifier=0x11111111 $RSPLOG
wait_for 40 hs_count_is $PR:9901 1
expect_hs_pes "PE found us by announce and registered" one $PR:9901 1
expect_grep "registration logged" "PE registered.*0x11111111" "$OUT/pr.log"

fifo_start 3 pu rspterminal -poolhandle=EchoPool $RSPLOG
send_expect 3 "Hello by announce" pu 30 "PU found us by announce, line echoed" "from PE .*> Hello by announce"
exec 3>&-

# The asap crate's PE and PU, announces only.
start ourpe echo_pe --transport sctp --announce --pool OurPool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr
wait_for 40 hs_count_is $PR:9901 2
hsdump_to two $PR:9901
expect_grep "our PE found us by announce and registered" "\$21212121" "$OUT/hsdump-two.txt"
fifo_start 4 ourpu echo_pu --transport sctp --announce --pool OurPool
send_expect 4 "our line by announce" ourpu 40 "our PU found us by announce, line echoed" "^our line by announce\$"
expect_grep "our PU connected to our PE" "connected to PE 0x21212121" "$OUT/ourpu.log"
exec 4>&-
wait_exit ourpu 10
expect_eq "our PU exits 0 at end of input" "$ourpu_rc" 0
stop ourpe INT
finish
