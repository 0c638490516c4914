#!/usr/bin/env bash
# takeover-rsplib, host side: ours sent ENDPOINT_KEEP_ALIVE (0x07) with the H flag
# to each adopted rsplib PE over SCTP (PPID 11) and each answered with
# ENDPOINT_KEEP_ALIVE_ACK (0x08).
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/takeover-rsplib.pcap
H='asap.message_type == 7 && asap.h_bit == 1 && ip.src == 10.0.0.1 && sctp.data_payload_proto_id == 11'
check_min "pcap: ENDPOINT_KEEP_ALIVE with H from ours" "$(pcap_count "$P" "$H")" 3
check_eq "pcap: H keep-alives name the 3 PEs" \
  "$(pcap_values "$P" asap.pe_identifier "$H" | tr '\n' ' ')" "0x11111111 0x22222222 0x33333333 "
check_eq "pcap: H keep-alives carry our server ID" \
  "$(pcap_values "$P" asap.server_identifier "$H" | tr '\n' ' ')" "0x5eed0001 "
A='asap.message_type == 8 && ip.dst == 10.0.0.1 && sctp.data_payload_proto_id == 11'
check_eq "pcap: ENDPOINT_KEEP_ALIVE_ACK to ours from the 3 PEs" \
  "$(pcap_values "$P" asap.pe_identifier "$A" | tr '\n' ' ')" "0x11111111 0x22222222 0x33333333 "
check_eq "pcap: no H keep-alive from rspregistrar" \
  "$(pcap_count "$P" 'asap.message_type == 7 && asap.h_bit == 1 && ip.src == 10.0.0.2')" 0
check_done
