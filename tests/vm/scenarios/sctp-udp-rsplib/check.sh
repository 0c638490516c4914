#!/usr/bin/env bash
# sctp-udp-rsplib, host side: the SCTP-over-UDP traffic as tshark reads it (UDP port
# 9899 decoded as SCTP, RFC 6951), with no malformed frame.
. "$(dirname "$0")/../../check-lib.sh"
D="-d udp.port==9899,sctp"
for P in "$RES/sctp-udp-u1.pcap" "$RES/sctp-udp-u2.pcap"; do
  N=$(basename "$P" .pcap)
  check_eq "$N: malformed frames" "$(pcap_count "$P" "_ws.malformed || _ws.expert.severity == error" $D)" 0
done
P=$RES/sctp-udp-u1.pcap
check_min "u1: SCTP INIT inside UDP 9899" "$(pcap_count "$P" 'udp.port == 9899 && sctp.chunk_type == 1' $D)" 1
check_min "u1: rsplib PE's Registration (PPID 11) to our registrar" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && ip.dst == 10.0.1.2' $D)" 2
check_min "u1: our registrar's Registration Response (PPID 11)" \
  "$(pcap_count "$P" 'asap.message_type == 3 && sctp.data_payload_proto_id == 11 && ip.src == 10.0.1.2' $D)" 2
check_min "u1: ENRP (PPID 12) from our registrar to hsdump" \
  "$(pcap_count "$P" 'sctp.data_payload_proto_id == 12 && ip.src == 10.0.1.2' $D)" 1
check_min "u1: our PE's Registration (PPID 11, PE 0x21212121) to rspregistrar" \
  "$(pcap_count "$P" 'asap.message_type == 1 && sctp.data_payload_proto_id == 11 && asap.pool_element_pe_identifier == 0x21212121' $D)" 1
# No HEARTBEAT check: both sides use the 30 s default interval and no phase is idle that
# long (heartbeats and loss detection are tested on the host, transport_sctp_udp).
check_min "u1: SHUTDOWN COMPLETE (graceful ends)" "$(pcap_count "$P" 'sctp.chunk_type == 14' $D)" 1
check_eq "u1: bad SCTP checksums" "$(pcap_count "$P" 'sctp.checksum.status == "Bad"' $D -o sctp.checksum:CRC-32C)" 0
check_done
