#!/usr/bin/env bash
# mixed-transports-rsplib, host side: ASAP over both transports of one registrar, and
# its announces listing both.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/mixed.pcap
check_eq "malformed frames" "$(pcap_count "$P" "_ws.malformed")" 0
check_min "rsplib Registrations over SCTP (PPID 11) to 3863" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && sctp.dstport == 3863')" 2
check_min "Handle Resolution over TCP to 3863 (our TCP PU)" \
  "$(pcap_count "$P" 'asap.message_type == 5 && tcp.dstport == 3863')" 1
check_min "Handle Resolution Response over TCP from 3863" \
  "$(pcap_count "$P" 'asap.message_type == 6 && tcp.srcport == 3863')" 1
check_min "our PE's Registration over TCP to 3863" \
  "$(pcap_count "$P" 'asap.message_type == 1 && tcp.dstport == 3863 && asap.pool_element_pe_identifier == 0x21212121')" 1
check_min "Handle Resolution over SCTP (our SCTP PU)" \
  "$(pcap_count "$P" 'asap.message_type == 5 && sctp.dstport == 3863')" 1
check_min "ASAP_SERVER_ANNOUNCE with an SCTP transport 10.0.0.1:3863" \
  "$(pcap_count "$P" 'asap.message_type == 10 && udp && asap.sctp_transport_port == 3863')" 1
check_min "ASAP_SERVER_ANNOUNCE with a TCP transport 10.0.0.1:3863" \
  "$(pcap_count "$P" 'asap.message_type == 10 && udp && asap.tcp_transport_port == 3863')" 1
check_done
