#!/bin/sh
# rsp-tools-rsplib: the operator tools `rsp serve`, `rsp term` and `rsp monitor`, and the
# Component Status Protocol reports of our registrar and PE, against real rsplib 3.4.4
# over kernel SCTP (issue 16 items 1 and the CSP part).
#
#   PR   rspregistrar 0xaaa1            10.0.0.1 (ASAP 3863, ENRP 9901), CSP -> rsp monitor
#   MON  rsp monitor --json             10.0.0.1:2960: decodes rsplib's registrar and PE
#   MON2 cspmonitor (rsplib)            10.0.0.1:2961: shows our enrp-server and rsp serve
#   PE   rspserver -echo 0x11111111     10.0.0.11, pool EchoPool, CSP -> rsp monitor
#   PU   rsp term (ours)                EchoPool: lines echoed by rspserver
#   PE   rsp serve --echo 0x21212121    10.0.0.21, pool OurEcho, CSP -> cspmonitor
#   PU   rspterminal                    OurEcho: lines echoed by our PE
#   PE   rsp serve --daytime 0x22222222 10.0.0.22, pool OurDaytime
#   PU   rspterminal                    OurDaytime: rsplib's daytime format from our PE
#   PR   enrp-server 0xbbb2 (ours)      10.0.0.2, no peers, CSP -> cspmonitor
# vm-timeout: 180
. /rig/lib.sh
PR=10.0.0.1

net_dummy $PR 10.0.0.2 10.0.0.11 10.0.0.21 10.0.0.22
capture lo rsp-tools-rsplib

start mon rsp monitor --json --listen $PR:2960
start mon2 cspmonitor -compact -localaddress=$PR:2961
wait_for 10 grep -q "listening on UDP" "$OUT/mon.log" || log "rsp monitor not listening"

rsp_registrar pr $PR -cspserver=$PR:2960 -cspinterval=1000
start ourpr enrp-server --transport sctp --asap 10.0.0.2:3863 --enrp 10.0.0.2:9901 \
  --asap-announce off --enrp-announce off --peering off --identifier 0x0000bbb2 \
  --csp $PR:2961 --csp-interval 1000

# 1. rspserver (reporting to our monitor) serving our rsp term
start pe1 env CSP_SERVER=$PR:2960 CSP_INTERVAL=1000 rspserver -echo -poolhandle=EchoPool \
  -registrar=$PR:3863 -local=10.0.0.11 -identifier=0x11111111 $RSPLOG
wait_for 30 hs_count_is $PR:9901 1
printf 'Hello from rsp term 1\nHello from rsp term 2\n' > /tmp/term.in
start -i /tmp/term.in ourterm rsp term EchoPool --transport sctp --registrar $PR:3863 \
  --linger 3000 --timeout 20
wait_exit ourterm 40
expect_eq "rsp term exits 0 at end of input" "$ourterm_rc" 0
for i in 1 2; do
  expect_eq "rsp term: line $i echoed once by rspserver" \
    "$(grep -cx "Hello from rsp term $i" "$OUT/ourterm.log")" 1
done
expect_grep "rsp term connected to rspserver's PE" "connected to PE 0x11111111" "$OUT/ourterm.log"

# 2. our rsp serve --echo / --daytime (reporting to rsplib's cspmonitor) serving rspterminal
start ourpe rsp serve OurEcho --echo --transport sctp --registrar $PR:3863 \
  --listen 10.0.0.21:0 --id 0x21212121 --csp $PR:2961 --csp-interval 1000
start ourday rsp serve OurDaytime --daytime --transport sctp --registrar $PR:3863 \
  --listen 10.0.0.22:0 --id 0x22222222
wait_for 30 hs_count_is $PR:9901 3
hsdump_to ours $PR:9901
expect_grep "rsp serve --echo in rspregistrar's handlespace" "\$21212121 flags" "$OUT/hsdump-ours.txt"
expect_grep "rsp serve --daytime in rspregistrar's handlespace" "\$22222222 flags" "$OUT/hsdump-ours.txt"

# 2b. rsp hsdump and rsp resolve against rspregistrar (any registrar, not only ours)
start rsphs rsp hsdump $PR:9901 --transport sctp
wait_exit rsphs 20
expect_eq "rsp hsdump of rspregistrar exits 0" "$rsphs_rc" 0
expect_grep "rsp hsdump of rspregistrar lists rsp serve's PE" "0x21212121" "$OUT/rsphs.log"
expect_grep "rsp hsdump of rspregistrar lists rspserver's PE" "0x11111111" "$OUT/rsphs.log"
start rspres rsp resolve OurEcho --registrar $PR:3863 --transport sctp
wait_exit rspres 20
expect_eq "rsp resolve at rspregistrar exits 0" "$rspres_rc" 0
expect_grep "rsp resolve at rspregistrar selects rsp serve's PE" "0x21212121" "$OUT/rspres.log"

rsp_term_hello OurEcho $PR:3863 "rsp serve"

fifo_start 4 dayterm rspterminal -poolhandle=OurDaytime -registrar=$PR:3863 $RSPLOG
DAYRE='day, [0-3][0-9]-[A-Z][a-z]*-[0-9][0-9][0-9][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9]\.[0-9]\{6\}'
send_expect 4 "what time is it" dayterm 20 "rspterminal got rsplib's daytime format from rsp serve --daytime" "$DAYRE"
exec 4>&-
stop dayterm INT

# 3. CSP both ways (reports every second; give each monitor a few)
sleep 3
expect_grep "rsp monitor decoded rspregistrar's reports" \
  '"group":"registrar","object":"aaa1"' "$OUT/mon.log"
expect_grep "rsp monitor: rspregistrar's status text" '"status":"[0-9]*\[[0-9]*\] PEs in ' "$OUT/mon.log"
expect_grep "rsp monitor decoded rspserver's reports" '"group":"pe","object":"11111111"' "$OUT/mon.log"
expect_grep "rsp monitor: rspserver's interval (1000 ms sent in µs)" '"report_interval_us":1000000' "$OUT/mon.log"
expect_grep "cspmonitor shows our enrp-server" 'PR $0000bbb2' "$OUT/mon2.log"
expect_grep "cspmonitor: our registrar's status" '0 PEs in 0 Pools' "$OUT/mon2.log"
expect_grep "cspmonitor shows our rsp serve" 'PE $21212121' "$OUT/mon2.log"
expect_grep "cspmonitor: our PE's status" 'echo: [0-9]* session' "$OUT/mon2.log"

stop ourpe INT
stop ourday INT
expect_grep "rsp serve deregistered on SIGINT" "deregistering" "$OUT/ourpe.log"
stop pe1 INT
sleep 2
expect_grep "rsp monitor saw rspserver's final report" '"event":"gone","group":"pe","object":"11111111"' "$OUT/mon.log"
stop ourpr INT
stop pr INT
stop mon INT
stop mon2 INT
sleep 3
finish
