#!/usr/bin/env bash
# asap-rsplib, host side: what our PE and PU put on the wire, as tshark reads it.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/asap-rsplib.pcap
check_min "pcap: our PE's Registration (PPID 11, PE id 0x21212121)" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && asap.pool_element_pe_identifier == 0x21212121')" 1
check_min "pcap: rspregistrar accepted it" \
  "$(pcap_count "$P" 'asap.message_type == 3 && asap.pe_identifier == 0x21212121')" 1
check_min "pcap: Keep-Alive Acks from our PE" \
  "$(pcap_count "$P" 'asap.message_type == 8 && asap.pe_identifier == 0x21212121')" 1
check_min "pcap: our PU's Handle Resolution with the HR option" \
  "$(pcap_count "$P" 'asap.message_type == 5 && sctp.data_payload_proto_id == 11')" 1
check_min "pcap: our PU reported the killed PE (Endpoint Unreachable)" \
  "$(pcap_count "$P" 'asap.message_type == 9')" 1
check_min "pcap: our PE's Deregistration" \
  "$(pcap_count "$P" 'asap.message_type == 2 && asap.pe_identifier == 0x21212121')" 1
check_done
