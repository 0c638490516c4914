#!/usr/bin/env bash
# proxy-rsplib, host side: the proxy's registration and rspterminal's relayed data as
# tshark reads them.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/proxy-rsplib.pcap
check_min "pcap: the proxy's Registration over SCTP (PPID 11) with SCTP user transport 8001" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && asap.sctp_transport_port == 8001')" 1
check_min "pcap: rspregistrar accepted it (Registration Response)" \
  "$(pcap_count "$P" 'asap.message_type == 3')" 1
check_min "pcap: rspterminal's Handle Resolution Response lists the proxy" \
  "$(pcap_count "$P" 'asap.message_type == 6 && asap.sctp_transport_port == 8001')" 1
check_min "pcap: rspterminal's data to the proxy (PPID 0, port 8001)" \
  "$(pcap_count "$P" 'sctp.chunk_type == 0 && sctp.dstport == 8001 && sctp.data_payload_proto_id == 0')" 6
check_min "pcap: relayed echoes back to rspterminal (PPID 0)" \
  "$(pcap_count "$P" 'sctp.chunk_type == 0 && sctp.srcport == 8001 && sctp.data_payload_proto_id == 0')" 6
check_min "pcap: relayed to IP1 over TCP" "$(pcap_count "$P" 'tcp.dstport == 7001 && tcp.len > 0')" 1
check_min "pcap: the proxy's Deregistration" \
  "$(pcap_count "$P" 'asap.message_type == 2')" 1
check_done
