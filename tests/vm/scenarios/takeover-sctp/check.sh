#!/usr/bin/env bash
# takeover-sctp, host side: PR1's ENDPOINT_KEEP_ALIVE (0x07) with the H flag
# reached our PE at the port of its registration association with PR2, over
# SCTP with PPID 11; the PE acknowledged, re-registered at PR1 and answered
# PR1's further (plain) keep-alives on that association.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/takeover-sctp.pcap
H='asap.message_type == 7 && asap.h_bit == 1 && ip.src == 10.0.0.1 && ip.dst == 10.0.0.21 && sctp.data_payload_proto_id == 11'
check_eq "pcap: one ENDPOINT_KEEP_ALIVE with H from PR1 to the PE" "$(pcap_count "$P" "$H")" 1
reg_port=$(tshark -n -r "$P" -Y 'asap.message_type == 1 && ip.src == 10.0.0.21 && ip.dst == 10.0.0.2' -T fields -e sctp.srcport 2> /dev/null | head -n1)
h_port=$(tshark -n -r "$P" -Y "$H" -T fields -e sctp.dstport 2> /dev/null | head -n1)
check_eq "pcap: H keep-alive sent to the port of the PE's registration at PR2" "$h_port" "$reg_port"
check_min "pcap: the PE's ENDPOINT_KEEP_ALIVE_ACKs to PR1" \
  "$(pcap_count "$P" 'asap.message_type == 8 && ip.src == 10.0.0.21 && ip.dst == 10.0.0.1')" 2
check_min "pcap: the PE's REGISTRATION at PR1" \
  "$(pcap_count "$P" 'asap.message_type == 1 && ip.src == 10.0.0.21 && ip.dst == 10.0.0.1')" 1
check_min "pcap: plain keep-alives from PR1 to the PE afterwards" \
  "$(pcap_count "$P" 'asap.message_type == 7 && asap.h_bit == 0 && ip.src == 10.0.0.1 && ip.dst == 10.0.0.21')" 1
check_done
