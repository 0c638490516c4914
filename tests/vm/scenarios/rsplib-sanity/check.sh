#!/usr/bin/env bash
# rsplib-sanity, host side: the capture holds the ASAP exchange.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/rsplib-sanity.pcap
check_min "pcap: 3 ASAP Registrations (PPID 11)" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11')" 3
check_min "pcap: 3 ASAP Registration Responses" "$(pcap_count "$P" 'asap.message_type == 3')" 3
check_min "pcap: ASAP Handle Resolution" "$(pcap_count "$P" 'asap.message_type == 5')" 1
check_min "pcap: ASAP Handle Resolution Response" "$(pcap_count "$P" 'asap.message_type == 6')" 1
check_done
