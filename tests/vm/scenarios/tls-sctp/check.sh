#!/usr/bin/env bash
# tls-sctp, host side: on the registrar ports (ASAP 3863, ENRP 9901) every SCTP
# DATA chunk with PPID 11 or 12 starts with a TLS record header (content type
# 0x14-0x17, version 0x03xx), all on stream 0; TLS ClientHellos and encrypted
# application data on both ports; and no plaintext ASAP/ENRP: the pool handle
# "SecurePool" (in every REGISTRATION, HANDLE_RESOLUTION and HANDLE_UPDATE)
# never appears in the capture, while the PU's echo lines (plaintext user data
# between PU and PE, PPID 0) do - the control that the byte search works.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/tls-sctp.pcap
# ASAP/ENRP dissectors off: the payload is raw data; then decoded as TLS by port.
RAW="--disable-protocol asap --disable-protocol enrp"
TLS="$RAW -d sctp.port==3863,tls -d sctp.port==9901,tls"
REG='(sctp.port == 3863 || sctp.port == 9901)'
PP='(sctp.data_payload_proto_id == 11 || sctp.data_payload_proto_id == 12)'
TLSHDR='(data.data[0:2] == 17:03 || data.data[0:2] == 16:03 || data.data[0:2] == 15:03 || data.data[0:2] == 14:03)'
# pcap_count takes no extra tshark options: count PCAP FILTER OPTIONS...
count() {
  _p=$1
  _f=$2
  shift 2
  _tshark "$_p" "$@" -Y "$_f" | wc -l
}
check_min "pcap: DATA with PPID 11/12 on the registrar ports" \
  "$(count "$P" "$REG && $PP" $RAW)" 20
check_min "pcap: ENRP (PPID 12) between the registrars" \
  "$(count "$P" "sctp.port == 9901 && sctp.data_payload_proto_id == 12" $RAW)" 4
check_eq "pcap: DATA with PPID 11/12 not starting with a TLS record header" \
  "$(count "$P" "$REG && $PP && !$TLSHDR" $RAW)" 0
check_eq "pcap: DATA on the registrar ports on a stream other than 0" \
  "$(count "$P" "$REG && sctp.data_sid != 0" $RAW)" 0
check_min "pcap: TLS ClientHello on the ENRP port (mutual TLS peering)" \
  "$(count "$P" "sctp.port == 9901 && tls.handshake.type == 1" $TLS)" 1
check_min "pcap: TLS ClientHello on the ASAP port (PE, wrong-name PE, PU)" \
  "$(count "$P" "sctp.port == 3863 && tls.handshake.type == 1" $TLS)" 3
check_min "pcap: encrypted application data on the ENRP port" \
  "$(count "$P" "sctp.port == 9901 && (tls.record.opaque_type == 23 || tls.record.content_type == 23)" $TLS)" 2
check_min "pcap: encrypted application data on the ASAP port" \
  "$(count "$P" "sctp.port == 3863 && (tls.record.opaque_type == 23 || tls.record.content_type == 23)" $TLS)" 4
check_eq "pcap: the pool handle never in plaintext" "$(grep -a -c SecurePool "$P")" 0
check_min "pcap: control - the PU's plaintext user data is found" "$(grep -a -c three "$P")" 1
check_done
