#!/usr/bin/env bash
# peering-rsplib, host side: ENRP between the registrars went over SCTP (PPID 12).
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/peering-rsplib.pcap
check_min "pcap: PRESENCE from ours over SCTP (PPID 12)" \
  "$(pcap_count "$P" 'enrp.message_type == 1 && sctp.data_payload_proto_id == 12 && ip.src == 10.0.0.1')" 1
check_min "pcap: HANDLE_UPDATE from ours over SCTP (PPID 12)" \
  "$(pcap_count "$P" 'enrp.message_type == 4 && sctp.data_payload_proto_id == 12 && ip.src == 10.0.0.1')" 1
check_min "pcap: HANDLE_UPDATE from rspregistrar to ours" \
  "$(pcap_count "$P" 'enrp.message_type == 4 && ip.src == 10.0.0.2 && ip.dst == 10.0.0.1')" 1
check_eq "pcap: no unicast ENRP datagrams from ours" \
  "$(pcap_count "$P" 'enrp && udp && ip.src == 10.0.0.1')" 0
check_done
