#!/usr/bin/env bash
# dpf-distance, host side: tshark decodes the Distance of the LU-DPF pool
# elements in our HANDLE_RESOLUTION_RESPONSEs (0x06) to the PU on the near
# link: the near PE listed first, the far one at least 20 ms and 8 ms farther.
. "$(dirname "$0")/../../check-lib.sh"
P=$RES/dpf-distance.pcap
F='asap.message_type == 6 && ip.src == 10.0.2.1 && ip.dst == 10.0.2.12'
check_min "pcap: HANDLE_RESOLUTION_RESPONSEs to the PU" "$(pcap_count "$P" "$F")" 3
# The PE IDs of the pool elements, and every Distance in the message: the
# response's own policy parameter (a copy of the first PE's, as rsplib) comes
# first, then one per pool element, so the PEs' are the last two.
last=$(_tshark "$P" -Y "$F" -T fields -E occurrence=a -E 'separator=;' \
  -e asap.pool_element_pe_identifier -e asap.pool_member_selection_policy_distance | tail -n1)
echo "last response: PE IDs;distances = $last"
ids=${last%%;*}
dists=$(echo "${last#*;}" | tr ',' '\n' | tail -n2)
first_d=$(echo "$dists" | head -n1)
second_d=$(echo "$dists" | tail -n1)
check_eq "pcap: last response lists the near PE first" "${ids%%,*}" "0x22222222"
check_eq "pcap: then the far PE" "$(echo "$ids" | cut -d, -f2)" "0x11111111"
# same bounds as the guest checks (TCG adds its own delay to both RTTs)
check_eq "pcap: far PE distance at least 20 ms" "$([ "${second_d:-0}" -ge 20 ] && echo yes || echo "no ($second_d)")" yes
check_eq "pcap: near PE at least 8 ms nearer" "$([ -n "$first_d" ] && [ "$first_d" -le $((${second_d:-0} - 8)) ] && echo yes || echo "no ($first_d vs $second_d)")" yes
check_done
