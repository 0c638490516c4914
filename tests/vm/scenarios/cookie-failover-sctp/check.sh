#!/usr/bin/env bash
# cookie-failover-sctp, host side: the COOKIE / COOKIE_ECHO exchange as tshark reads it.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/cookie-failover.pcap
if [ -f "$RES/roles.txt" ]; then
  . "$RES/roles.txt"
else
  _record "not ok" "roles.txt missing (guest did not get that far)"
  exit 1
fi
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
# not the registrar association (the PE's ASAP association shares its address)
USER="sctp.srcport != 3863 && sctp.dstport != 3863"
part() {  # part LABEL FIRST_IP SECOND_IP FIRST_ID
  local l=$1 a=$2 b=$3 id=$4
  check_min "$l: ASAP COOKIEs (PPID 11) from the first PE $a" \
    "$(pcap_count "$P" "asap.message_type == 11 && sctp.data_payload_proto_id == 11 && ip.src == $a && $USER")" 3
  check_eq "$l: no COOKIE_ECHO to the first PE $a" \
    "$(pcap_count "$P" "asap.message_type == 12 && ip.dst == $a")" 0
  check_eq "$l: one ASAP COOKIE_ECHO (PPID 11) to the second PE $b" \
    "$(pcap_count "$P" "asap.message_type == 12 && sctp.data_payload_proto_id == 11 && ip.dst == $b && $USER")" 1
  local last echo
  last=$(_tshark "$P" -Y "asap.message_type == 11 && ip.src == $a && $USER" -T fields -e asap.cookie | tail -n1)
  echo=$(_tshark "$P" -Y "asap.message_type == 12 && ip.dst == $b && $USER" -T fields -e asap.cookie | tail -n1)
  check_eq "$l: the first PE's last COOKIE is pe=$id;n=3" "$last" "$(hex "pe=$id;n=3")"
  check_eq "$l: the COOKIE_ECHO carries the same bytes" "$echo" "$last"
  check_min "$l: data from the first PE with PPID 0" \
    "$(pcap_count "$P" "sctp.data_payload_proto_id == 0 && ip.src == $a && $USER")" 3
  check_min "$l: data from the second PE with PPID 0" \
    "$(pcap_count "$P" "sctp.data_payload_proto_id == 0 && ip.src == $b && $USER")" 2
  check_min "$l: data to the PEs with PPID 0" \
    "$(pcap_count "$P" "sctp.data_payload_proto_id == 0 && (ip.dst == $a || ip.dst == $b) && $USER")" 5
  check_eq "$l: PPIDs on the PE user associations: 0 (data) and 11 (ASAP) only" \
    "$(pcap_values "$P" sctp.data_payload_proto_id "(ip.addr == $a || ip.addr == $b) && $USER" | tr '\n' ' ')" "0 11 "
}
part "our PU" "$P1_FIRST" "$P1_SECOND" "$P1_FIRST_ID"
part "rspterminal" "$P2_FIRST" "$P2_SECOND" "$P2_FIRST_ID"
check_done
