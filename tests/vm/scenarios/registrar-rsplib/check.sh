#!/usr/bin/env bash
# registrar-rsplib, host side: what our registrar put on the wire, as tshark reads it.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/registrar-rsplib.pcap
check_min "pcap: 3 ASAP Registrations (PPID 11)" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11')" 3
check_min "pcap: accepted Registration Responses from our PR (PPID 11)" \
  "$(pcap_count "$P" 'asap.message_type == 3 && sctp.data_payload_proto_id == 11 && ip.src == 10.0.0.1')" 3
check_min "pcap: Handle Resolution Responses with PEs" \
  "$(pcap_count "$P" 'asap.message_type == 6 && asap.pool_element_pe_identifier')" 1
check_min "pcap: Endpoint Keep-Alives from our PR" "$(pcap_count "$P" 'asap.message_type == 7')" 3
check_min "pcap: Endpoint Keep-Alive Acks from rsplib" "$(pcap_count "$P" 'asap.message_type == 8')" 3
check_min "pcap: ENRP Handle Table Responses (PPID 12)" \
  "$(pcap_count "$P" 'enrp.message_type == 3 && sctp.data_payload_proto_id == 12')" 3
check_done
