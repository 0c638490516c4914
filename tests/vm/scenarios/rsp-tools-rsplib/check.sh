#!/usr/bin/env bash
# rsp-tools-rsplib, host side: the CSP datagrams both ways and our PEs' ASAP traffic.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/rsp-tools-rsplib.pcap
check_min "pcap: CSP reports to rsp monitor (UDP 2960, rsplib's registrar and PE)" \
  "$(pcap_count "$P" 'udp.dstport == 2960')" 4
check_min "pcap: CSP reports to cspmonitor (UDP 2961, our registrar and PE)" \
  "$(pcap_count "$P" 'udp.dstport == 2961')" 4
check_min "pcap: rsp serve's Registration (PPID 11, PE id 0x21212121)" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && asap.pool_element_pe_identifier == 0x21212121')" 1
check_min "pcap: rsp term's Handle Resolution" \
  "$(pcap_count "$P" 'asap.message_type == 5 && sctp.data_payload_proto_id == 11')" 1
check_min "pcap: rsp serve's Deregistration" \
  "$(pcap_count "$P" 'asap.message_type == 2 && asap.pe_identifier == 0x21212121')" 1
check_done
