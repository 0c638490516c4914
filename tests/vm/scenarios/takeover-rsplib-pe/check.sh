#!/usr/bin/env bash
# takeover-rsplib-pe, host side: the winning rspregistrar's ENDPOINT_KEEP_ALIVE
# (0x07) with the H flag reached our PE at the port of its registration
# association with ours, and our PE answered with ENDPOINT_KEEP_ALIVE_ACK (0x08)
# and re-registered there.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/takeover-rsplib-pe.pcap
W=$(cat "$RES/winner.txt" 2> /dev/null)
W=${W:-10.0.0.2}
case $W in 10.0.0.2) L=10.0.0.3 ;; *) L=10.0.0.2 ;; esac
H="asap.message_type == 7 && asap.h_bit == 1 && ip.src == $W && ip.dst == 10.0.0.21"
check_min "pcap: ENDPOINT_KEEP_ALIVE with H from the winner ($W) to our PE" "$(pcap_count "$P" "$H")" 1
check_min "pcap: our PE's ENDPOINT_KEEP_ALIVE_ACK to the winner" \
  "$(pcap_count "$P" "asap.message_type == 8 && ip.src == 10.0.0.21 && ip.dst == $W")" 1
check_min "pcap: our PE's REGISTRATION at the winner" \
  "$(pcap_count "$P" "asap.message_type == 1 && ip.src == 10.0.0.21 && ip.dst == $W")" 1
# The H keep-alive went to the port our PE's registration association used.
reg_port=$(tshark -n -r "$P" -Y 'asap.message_type == 1 && ip.src == 10.0.0.21 && ip.dst == 10.0.0.1' -T fields -e sctp.srcport 2> /dev/null | head -n1)
h_port=$(tshark -n -r "$P" -Y "$H" -T fields -e sctp.dstport 2> /dev/null | head -n1)
check_eq "pcap: H keep-alive sent to the port of our PE's registration association" "$h_port" "$reg_port"
# What rsplib 3.4.4 does around it: INIT_TAKEOVER from the winner, the other
# one's INIT_TAKEOVER_ACK, and no TAKEOVER_SERVER at all (its send fails: NULL
# destination on the one-to-many socket).
check_min "pcap: INIT_TAKEOVER from the winner" \
  "$(pcap_count "$P" "enrp.message_type == 7 && ip.src == $W")" 1
check_min "pcap: INIT_TAKEOVER_ACK from the other rspregistrar to the winner" \
  "$(pcap_count "$P" "enrp.message_type == 8 && ip.src == $L && ip.dst == $W")" 1
check_eq "pcap: no TAKEOVER_SERVER (rsplib 3.4.4 never sends it)" \
  "$(pcap_count "$P" 'enrp.message_type == 9')" 0
check_eq "pcap: no H keep-alive from the loser" \
  "$(pcap_count "$P" "asap.message_type == 7 && asap.h_bit == 1 && ip.src == $L")" 0
check_done
