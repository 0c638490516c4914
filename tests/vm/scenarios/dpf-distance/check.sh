#!/usr/bin/env bash
# dpf-distance, host side: tshark decodes the Distance of the LU-DPF pool
# elements in our HANDLE_RESOLUTION_RESPONSEs (0x06) to the PU on the near
# link: the far PE ~25 ms, the near one ~3 ms, the near one listed first.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/dpf-distance.pcap
F='asap.message_type == 6 && ip.src == 10.0.2.1 && ip.dst == 10.0.2.12'
check_min "pcap: HANDLE_RESOLUTION_RESPONSEs to the PU" "$(pcap_count "$P" "$F")" 3
last=$(_tshark "$P" -Y "$F" -T fields -E occurrence=a -E separator=/ \
  -e asap.pe_identifier -e asap.pool_member_selection_policy_distance | tail -n1)
echo "last response: ids/distances $last"
ids=${last%%/*}
dists=${last#*/}
check_eq "pcap: last response lists the near PE first" "${ids%%,*}" "0x22222222"
first_d=${dists%%,*}
second_d=$(echo "$dists" | cut -d, -f2)
check_eq "pcap: near PE distance within 1..8 ms" "$([ "$first_d" -ge 1 ] && [ "$first_d" -le 8 ] && echo yes || echo "no ($first_d)")" yes
check_eq "pcap: far PE distance within 20..40 ms" "$([ "$second_d" -ge 20 ] && [ "$second_d" -le 40 ] && echo yes || echo "no ($second_d)")" yes
check_done
