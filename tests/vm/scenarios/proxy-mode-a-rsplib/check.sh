#!/usr/bin/env bash
# proxy-mode-a-rsplib, host side: the third-party REGISTRATIONs and what each registrar
# answered, as tshark reads them (capture on the root end of the proxy namespace's veth,
# so only the px proxies' traffic is in it).
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/mode-a.pcap
L=$RES/mode-a-lo.pcap
REG='asap.message_type == 1 && sctp.data_payload_proto_id == 11 && ip.src == 10.0.1.30'
RESP='asap.message_type == 3 && sctp.data_payload_proto_id == 11'
for r in 10.0.0.1 10.0.0.2 10.0.0.3; do
  check_min "pcap: 3 third-party Registrations to $r (TCP user transports 7001-7003)" \
    "$(pcap_count "$P" "$REG && ip.dst == $r && asap.tcp_transport_port >= 7001 && asap.tcp_transport_port <= 7003")" 3
done
check_eq "pcap: the Registrations carry the legacy addresses" \
  "$(pcap_values "$P" asap.ipv4_address "$REG" | tr '\n' ' ')" "10.0.0.41 10.0.0.42 10.0.0.43 "
# rspregistrar: rejected, R bit, rsplib's private cause 0xf008 (no usable user addresses).
check_eq "pcap: rspregistrar answers every Registration with R=1" \
  "$(pcap_values "$P" asap.r_bit "$RESP && ip.src == 10.0.0.1" | tr '\n' ' ')" "1 "
check_eq "pcap: rspregistrar's cause is 0xf008 (no usable user addresses)" \
  "$(pcap_values "$P" asap.cause_code "$RESP && ip.src == 10.0.0.1" | tr '\n' ' ')" "0xf008 "
check_min "pcap: 3 rejections from rspregistrar" \
  "$(pcap_count "$P" "$RESP && ip.src == 10.0.0.1 && asap.r_bit == 1")" 3
# enrp-server with the allow-list: accepted.
check_min "pcap: 3 acceptances from enrp-server (allow-listed)" \
  "$(pcap_count "$P" "$RESP && ip.src == 10.0.0.2 && asap.r_bit == 0 && !asap.cause_code")" 3
check_eq "pcap: enrp-server (allow-listed) never sets R" \
  "$(pcap_count "$P" "$RESP && ip.src == 10.0.0.2 && asap.r_bit == 1")" 0
check_min "pcap: keep-alive acks from the proxy to enrp-server (allow-listed)" \
  "$(pcap_count "$P" 'asap.message_type == 8 && ip.dst == 10.0.0.2')" 1
# enrp-server without the allow-list: rejected with Invalid Values (3).
check_eq "pcap: enrp-server (no allow-list) answers with R=1" \
  "$(pcap_values "$P" asap.r_bit "$RESP && ip.src == 10.0.0.3" | tr '\n' ' ')" "1 "
check_eq "pcap: enrp-server (no allow-list) cause is 3 (Invalid Values)" \
  "$(pcap_values "$P" asap.cause_code "$RESP && ip.src == 10.0.0.3" | tr '\n' ' ')" "0x0003 "
# proxy-l on the legacy host (loopback capture): rspregistrar accepts.
check_min "pcap (lo): rspregistrar accepts proxy-l's registrations (R=0)" \
  "$(pcap_count "$L" "$RESP && asap.r_bit == 0 && !asap.cause_code")" 3
check_done
