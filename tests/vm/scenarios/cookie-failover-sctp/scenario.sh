#!/bin/sh
# cookie-failover-sctp: cookie-based state failover (RFC 5351 §2.5, RFC 5352 §3)
# between our PEs, over kernel SCTP, with rsplib's rspregistrar as the registrar.
#
#   PR  rspregistrar                     10.0.0.1 (ASAP 3863, ENRP 9901)
#   PE  2x echo_pe --cookie-state (ours) 10.0.0.21-22, pool CookiePool, ids 0x21212121/0x22222222
#   PU  echo_pu (ours, session API)      CookiePool
#   PE  2x echo_pe --cookie-state (ours) 10.0.0.23-24, pool TermPool, ids 0x23232323/0x24242424
#   PU  rspterminal (rsplib)             TermPool
#
# An echo_pe with --cookie-state numbers its echoes ("#<n> <line>") and after every echo
# sends an ASAP_COOKIE "pe=<id>;n=<n>" (PPID 11); on ASAP_COOKIE_ECHO it continues the
# count from the cookie's n.
# (1) Our PU: lines 1-3 echoed as #1-#3 by the serving PE; kill -9 of it; the session fails
#     over to the other PE, sends COOKIE_ECHO with the last cookie (n=3) first, and lines
#     4-6 come back as #4-#6 (state continued, not restarted at #1), each line exactly once.
# (2) Interop: rsplib's rspterminal as the PU against our PEs: rsplib stores our COOKIEs
#     and, after kill -9 of the serving PE, echoes the last one to our other PE, which
#     continues with #4, #5.
# Host side (check.sh, tshark): COOKIEs from the first PE and the COOKIE_ECHO to the
# second PE with PPID 11, the COOKIE_ECHO carrying the bytes of the first PE's last
# COOKIE; application data on those associations with PPID 0 (never 11).
# Not covered: rsplib's calcappserver/calcappclient. CalcApp is rsplib's own application
# protocol (jobs, keep-alives, cookies with its own layout); our examples do not speak it,
# so only calcappclient against calcappserver would run, which is rsplib against itself.
# Business cards and TCP user transports are not exercised here.
# vm-timeout: 150
. /rig/lib.sh
PR=10.0.0.1

net_dummy $PR 10.0.0.21 10.0.0.22 10.0.0.23 10.0.0.24
capture lo cookie-failover

rsp_registrar pr $PR
our_pe() {  # our_pe N POOL: echo_pe 10.0.0.N, id 0xNNNNNNNN
  start pe$1 echo_pe --transport sctp --registrar $PR:3863 --pool "$2" \
    --listen 10.0.0.$1:0 --id 0x$1$1$1$1 --policy rr --cookie-state
}
# roles WHO SERVING A B: of the PE pair 10.0.0.A/B, $first serves (by its id SERVING;
# A if SERVING is neither), $second is the survivor
roles() {
  first=$(echo "$2" | cut -c1-2)
  case "$first" in
    "$3") second=$4 ;;
    "$4") second=$3 ;;
    *) log "unexpected serving PE '$2'"; first=$3 second=$4 ;;
  esac
  log "$1 is served by PE 0x$2 (10.0.0.$first); survivor 10.0.0.$second"
}

# ---- 1. our PU ------------------------------------------------------------------
our_pe 21 CookiePool
our_pe 22 CookiePool
wait_for 30 hs_count_is $PR:9901 2
# the session logs each stored cookie at debug level
export RUST_LOG=info,asap::session=debug
fifo_start 4 pu echo_pu --transport sctp --registrar $PR:3863 --pool CookiePool \
  --reply-timeout-ms 0
unset RUST_LOG
for i in 1 2 3; do
  send_wait 4 "line $i" pu 20 "line $i\$"
done
cookies3() { [ "$(grep -c 'cookie stored' "$OUT/pu.log")" -ge 3 ]; }
wait_for 10 cookies3
expect_ok "our PU stored 3 cookies before the kill" cookies3
SERVING=$(serving_pe pu)
roles "our PU" "$SERVING" 21 22
N1=$first N2=$second
for i in 1 2 3; do
  expect_grep "our PU: line $i answered as #$i by the first PE" "^#$i line $i\$" "$OUT/pu.log"
done
stop pe$N1 KILL
for i in 4 5 6; do
  send 4 "line $i"
done
wait_for 30 grep -q "line 6\$" "$OUT/pu.log"
expect_grep "our PU failed over with COOKIE_ECHO" \
  "^failover 0x$SERVING -> 0x$N2$N2$N2$N2 .*cookie echoed: true" "$OUT/pu.log"
expect_grep "second PE got the first PE's last cookie" "cookie=pe=$SERVING;n=3" "$OUT/pe$N2.log"
expect_grep "second PE restored the state (n=3)" "state restored from cookie n=3" "$OUT/pe$N2.log"
for i in 1 2 3 4 5 6; do
  expect_eq "our PU: line $i answered exactly once" "$(grep -c "^#[0-9]* line $i\$" "$OUT/pu.log")" 1
done
for i in 4 5 6; do
  expect_grep "our PU: line $i answered as #$i (state continued)" "^#$i line $i\$" "$OUT/pu.log"
done
exec 4>&-
wait_exit pu 10
expect_eq "our PU exits 0 at end of input" "$pu_rc" 0
cat > "$OUT/roles.txt" << ROLES
P1_FIRST=10.0.0.$N1
P1_SECOND=10.0.0.$N2
P1_FIRST_ID=$SERVING
ROLES
stop pe$N2 INT
wait_for 20 hs_count_is $PR:9901 0

# ---- 2. rsplib's rspterminal as the PU --------------------------------------------
our_pe 23 TermPool
our_pe 24 TermPool
wait_for 30 hs_count_is $PR:9901 2
fifo_start 3 term rspterminal -poolhandle=TermPool -registrar=$PR:3863 $RSPLOG
for i in 1 2 3; do
  send_wait 3 "term $i" term 20 "> #[0-9]* term $i"
done
TSERVING=$(sed -n 's/.*from PE \$\([0-9a-f]*\)> #3 term 3.*/\1/p' "$OUT/term.log" | tail -n1)
roles rspterminal "$TSERVING" 23 24
T1=$first T2=$second
for i in 1 2 3; do
  expect_grep "rspterminal: term $i answered as #$i by the first PE" \
    "from PE \$$TSERVING> #$i term $i" "$OUT/term.log"
done
# rsplib reads the cookie that follows the echo on its next receive; give it a moment
sleep 1
stop pe$T1 KILL
wait_for 20 hs_count_is $PR:9901 1
for i in 4 5; do
  send_wait 3 "term $i" term 20 "> #[0-9]* term $i"
done
expect_grep "second PE got the first PE's last cookie from rsplib" \
  "cookie=pe=$TSERVING;n=3" "$OUT/pe$T2.log"
expect_grep "second PE restored the state (n=3)" "state restored from cookie n=3" "$OUT/pe$T2.log"
for i in 4 5; do
  expect_grep "rspterminal: term $i answered as #$i by the second PE (state continued)" \
    "from PE \$$T2$T2$T2$T2> #$i term $i" "$OUT/term.log"
done
for i in 1 2 3 4 5; do
  expect_eq "rspterminal: term $i answered exactly once" "$(grep -c "> #[0-9]* term $i" "$OUT/term.log")" 1
done
exec 3>&-
stop term INT
cat >> "$OUT/roles.txt" << ROLES
P2_FIRST=10.0.0.$T1
P2_SECOND=10.0.0.$T2
P2_FIRST_ID=$TSERVING
ROLES
stop pe$T2 INT
stop pr INT
# tcpdump lags under TCG emulation; let it write the last packets before finish stops it
sleep 2
finish
