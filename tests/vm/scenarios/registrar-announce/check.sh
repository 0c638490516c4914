#!/usr/bin/env bash
# registrar-announce, host side: tshark decodes our announces.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/registrar-announce.pcap
check_min "pcap: ASAP Server Announces to 239.0.0.50 (UDP 3863)" \
  "$(pcap_count "$P" 'asap.message_type == 10 && ip.dst == 239.0.0.50 && udp.dstport == 3863')" 2
check_min "pcap: announces carry our SCTP transport 10.0.0.1:3863" \
  "$(pcap_count "$P" 'asap.message_type == 10 && asap.sctp_transport_port == 3863 && asap.ipv4_address == 10.0.0.1')" 2
check_min "pcap: Registration over SCTP" "$(pcap_count "$P" 'asap.message_type == 1 && sctp')" 1
check_min "pcap: our PE's Registration (learned from the announces)" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && asap.pool_element_pe_identifier == 0x21212121')" 1
check_min "pcap: our PU's Handle Resolution of OurPool" \
  "$(pcap_count "$P" 'asap.message_type == 5 && asap.pool_handle_pool_handle == 4f:75:72:50:6f:6f:6c')" 1
check_done
