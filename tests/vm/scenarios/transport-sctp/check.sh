#!/usr/bin/env bash
# transport-sctp, host side: what went over the wire.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/transport-sctp.pcap
check_min "pcap: DATA with PPID 11" "$(pcap_count "$P" 'sctp.data_payload_proto_id == 11')" 1
check_eq "pcap: DATA with another PPID" "$(pcap_count "$P" 'sctp.data_payload_proto_id && sctp.data_payload_proto_id != 11')" 0
check_min "pcap: DATA on stream 3" "$(pcap_count "$P" 'sctp.data_sid == 3')" 1
check_min "pcap: client INIT lists both addresses (multi-homed)" \
  "$(pcap_count "$P" 'sctp.chunk_type == 1 && sctp.parameter_ipv4_address == 10.0.0.2 && sctp.parameter_ipv4_address == 10.0.1.2')" 1
check_min "pcap: DATA over path B (10.0.1.x) after failover" \
  "$(pcap_count "$P" 'ip.dst == 10.0.1.1 && sctp.data_payload_proto_id == 11')" 1
check_done
