#!/bin/sh
# takeover-rsplib: our enrp-server takes over the PEs of a dead rspregistrar
# (RFC 5353 §3.6, asap/wire/INTEROP.md §5.8) and reaches them with
# ENDPOINT_KEEP_ALIVE (H flag) at the ASAP transport rspregistrar reported in
# HANDLE_UPDATE (rsplib PE: its one-to-many SCTP socket).
#
#   PR1 enrp-server --transport sctp  10.0.0.1 (ours, ID 0x5eed0001)
#   PR2 rspregistrar                  10.0.0.2 (rsplib, ID 0x0000aaa2)
#   PE  3x rspserver -echo            10.0.0.11-13, registered at PR2 only
#
# kill -9 PR2 -> ours takes over: hsdump at ours lists the 3 PEs owned by
# ours, and they are still there (answering our keep-alives) after the
# keep-alive timeout, i.e. each answered the H-flag keep-alive. Host side
# (check.sh): H-flag keep-alives from ours and the PEs' ACKs in the pcap.
# vm-timeout: 120
. /rig/lib.sh
PR1=10.0.0.1
PR2=10.0.0.2

net_dummy $PR1 $PR2 10.0.0.11 10.0.0.12 10.0.0.13
capture lo takeover-rsplib

peered_registrars $PR1 $PR2 --keep-alive-interval 2000 --keep-alive-timeout 2000

rsp_echo_pes $PR2:3863 10.0.0.11 10.0.0.12 10.0.0.13

# PEs (index section of an hsdump) whose home is $2: "$11111111" lines
homed() {
  awk -v h="home=\$$2" '/idx:#/ { id = $3 } index($0, h) && id { print id; id = "" }' "$1" | sort -u
}
# the 3 PEs known at ours with home $1
known_at_ours() {
  hsdump_to poll $PR1:9901
  [ "$(homed "$OUT/hsdump-poll.txt" "$1" | wc -l)" = 3 ]
}
wait_for 40 known_at_ours 0000aaa2
hsdump_to before $PR1:9901
expect_eq "ours knows rspregistrar's 3 PEs (home \$0000aaa2)" \
  "$(homed "$OUT/hsdump-before.txt" 0000aaa2 | tr '\n' ' ')" '$11111111 $22222222 $33333333 '

log "kill -9 rspregistrar"
stop pr2 KILL
wait_for 40 grep -q "TakeoverDone" "$OUT/pr1.log"
expect_grep "ours completed the takeover of \$0000aaa2" "TakeoverDone.*target: 43682" "$OUT/pr1.log"
wait_for 20 known_at_ours 5eed0001
hsdump_to after $PR1:9901
expect_eq "hsdump at ours: the 3 PEs, owned by ours" \
  "$(homed "$OUT/hsdump-after.txt" 5eed0001 | tr '\n' ' ')" '$11111111 $22222222 $33333333 '
wait_for 20 grep -c "Adopted" "$OUT/pr1.log"
expect_eq "ours reached the 3 PEs (association, H keep-alive)" \
  "$(grep -c 'Adopted {' "$OUT/pr1.log")" 3

# Past the keep-alive timeout (2 s) and a few keep-alive cycles: nobody
# removed, still owned by ours (the ACKs satisfied the adoption check).
sleep 6
hsdump_to later $PR1:9901
expect_eq "6 s later: still the 3 PEs owned by ours" \
  "$(homed "$OUT/hsdump-later.txt" 5eed0001 | tr '\n' ' ')" '$11111111 $22222222 $33333333 '
expect_no_grep "no adopted PE removed by keep-alive timeout" "keep-alive-timeout" "$OUT/pr1.log"

# rsplib PEs took ours as their home: SIGINT makes each deregister there.
for i in 1 2 3; do
  stop pe$i INT
  expect_grep "rspserver $i deregistered at ours (its new home)" \
    "pe_id=0x$i$i$i$i$i$i$i$i reason=\"deregistered\"" "$OUT/pr1.log"
done
stop pr1 INT
finish
