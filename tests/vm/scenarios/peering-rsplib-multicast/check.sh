#!/usr/bin/env bash
# peering-rsplib-multicast, host side: discovery by multicast PRESENCE both ways, then
# ENRP over SCTP (PPID 12) between the registrars.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/peering-rsplib-multicast.pcap
check_min "pcap: PRESENCE from ours to 239.0.0.51:9901 (UDP)" \
  "$(pcap_count "$P" 'enrp.message_type == 1 && udp.dstport == 9901 && ip.dst == 239.0.0.51 && ip.src == 10.0.0.1')" 1
check_min "pcap: PRESENCE from rspregistrar to 239.0.0.51:9901 (UDP)" \
  "$(pcap_count "$P" 'enrp.message_type == 1 && udp.dstport == 9901 && ip.dst == 239.0.0.51 && ip.src == 10.0.0.2')" 1
check_min "pcap: HANDLE_UPDATE from ours over SCTP (PPID 12)" \
  "$(pcap_count "$P" 'enrp.message_type == 4 && sctp.data_payload_proto_id == 12 && ip.src == 10.0.0.1')" 1
check_min "pcap: HANDLE_UPDATE from rspregistrar to ours over SCTP" \
  "$(pcap_count "$P" 'enrp.message_type == 4 && sctp && ip.src == 10.0.0.2 && ip.dst == 10.0.0.1')" 1
check_done
