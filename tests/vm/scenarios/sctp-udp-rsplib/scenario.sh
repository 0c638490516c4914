#!/bin/sh
# sctp-udp-rsplib: our userspace SCTP over UDP (RFC 6951, --transport sctp-udp) against
# the guest kernel's SCTP with UDP encapsulation (net.sctp.udp_port/encap_port = 9899)
# and real rsplib components. Our processes run in namespaces whose kernel SCTP has no
# encapsulation (their UDP port 9899 is ours); the root namespace's kernel SCTP sends
# and receives every SCTP packet inside UDP.
#
#   root (kernel SCTP over UDP 9899)  10.0.1.1 / 10.0.2.1 (veth), forwarding
#   ns u1                             10.0.1.2: enrp-server --transport sctp-udp, later echo_pe
#   ns u2                             10.0.2.2: echo_pu --transport sctp-udp
#
# Phase A: 2x rspserver -echo (root) register at our registrar, hsdump (kernel, ENRP)
#          lists them, rspterminal (root) resolves via our registrar and lines are echoed.
# Phase B: rspregistrar (root); our echo_pe (u1) registers there over sctp-udp, our
#          echo_pu (u2) resolves via rspregistrar and its lines are echoed by our PE.
# vm-timeout: 180
. /rig/lib.sh

netns_add u1 u2
veth_link - vr1 10.0.1.1 u1 vu1 10.0.1.2
veth_link - vr2 10.0.2.1 u2 vu2 10.0.2.2
in_ns u1 /usr/bin/ip route add default via 10.0.1.1
in_ns u2 /usr/bin/ip route add default via 10.0.2.1
echo 1 > /proc/sys/net/ipv4/ip_forward
# RFC 6951 in the root namespace's kernel (Linux >= 5.11).
echo 9899 > /proc/sys/net/sctp/udp_port
echo 9899 > /proc/sys/net/sctp/encap_port
expect_eq "kernel SCTP UDP port set" "$(cat /proc/sys/net/sctp/udp_port)" 9899
expect_eq "kernel SCTP encap port set" "$(cat /proc/sys/net/sctp/encap_port)" 9899
expect_eq "ns u1 kernel SCTP without encapsulation" "$(in_ns u1 cat /proc/sys/net/sctp/udp_port)" 0
capture vr1 sctp-udp-u1
capture vr2 sctp-udp-u2

# ---- Phase A: our registrar over sctp-udp, rsplib PEs and PU over kernel SCTP/UDP ----
start -n u1 pr enrp-server --transport sctp-udp \
  --asap 10.0.1.2:3863 --enrp 10.0.1.2:9901 --identifier 0x5eed0017 \
  --asap-announce off --keep-alive-interval 2000 --keep-alive-timeout 3000 \
  --hsdump-allow 10.0.0.0/8
wait_for 10 grep -q "listen" "$OUT/pr.log"
expect_grep "registrar listens over sctp-udp" "sctp-udp" "$OUT/pr.log"
rsp_echo_pes 10.0.1.2:3863 10.0.1.1 10.0.1.1
wait_for 40 hs_count_is 10.0.1.2:9901 2
expect_hs_pes "hsdump (kernel SCTP/UDP -> our ENRP) lists 2 PEs" two 10.0.1.2:9901 2
for i in 1 2; do
  expect_grep "PE \$$i$i$i$i$i$i$i$i registered at our registrar" "PE registered.*0x$i$i$i$i$i$i$i$i" "$OUT/pr.log"
done
expect_grep "hsdump: PEs have our home ID" "home=\$5eed0017" "$OUT/hsdump-two.txt"

fifo_start 3 term rspterminal -poolhandle=EchoPool -registrar=10.0.1.2:3863 $RSPLOG
for i in 1 2; do
  send_expect 3 "Hello over UDP $i" term 20 "rspterminal line $i echoed (resolved via our registrar)" "from PE .*> Hello over UDP $i"
done
exec 3>&-
stop term INT
stop pe1 INT
stop pe2 INT
wait_for 15 hs_count_is 10.0.1.2:9901 0
stop pr INT
expect_grep "registrar shut down gracefully" "registrar shutting down" "$OUT/pr.log"

# ---- Phase B: rspregistrar (kernel SCTP/UDP), our PE and PU over sctp-udp ----
rsp_registrar rr 10.0.1.1
start -n u1 ourpe echo_pe --transport sctp-udp --registrar 10.0.1.1:3863 --pool OurPool \
  --listen 10.0.1.2:0 --id 0x21212121 --policy rr
wait_for 40 hs_count_is 10.0.1.1:9901 1
hsdump_to ours 10.0.1.1:9901
expect_grep "our sctp-udp PE in rspregistrar's handlespace" "\$21212121 flags" "$OUT/hsdump-ours.txt"
fifo_start 4 -n u2 pu echo_pu --transport sctp-udp --registrar 10.0.1.1:3863 --pool OurPool
for i in 1 2 3; do
  send_expect 4 "line $i" pu 20 "our PU (sctp-udp): line $i echoed by our PE (sctp-udp)" "^line $i\$"
done
exec 4>&-
stop pu INT
stop ourpe INT
stop rr INT
finish
