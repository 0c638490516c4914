#!/bin/sh
# proxy-rsplib: our proxy-pe (mode B, broker) brings three legacy TCP echo servers into an
# RSerPool pool served to rsplib 3.4.4's rspterminal over kernel SCTP.
#
#   PR  rspregistrar                 10.0.0.1 (ASAP 3863, ENRP 9901)
#   PE  proxy-pe (ours)              10.0.0.30: registers at rspregistrar over SCTP, pool
#                                    "ProxyPool", SCTP user transport 10.0.0.30:8001
#                                    (data plus control), round-robin over IP1..IP3
#   3x  legacy-echo (ours)           10.0.0.41:7001 (IP1), .42:7002 (IP2), .43:7003 (IP3):
#                                    plain TCP, know nothing of RSerPool; each greets
#                                    "hello from IPn"
#   3x  legacy-daemon (ours)         report the echo servers' status to the proxy
#   PU  rspterminal                  resolves ProxyPool, opens an SCTP association to the
#                                    proxy and types lines; the proxy relays them to a legacy
#                                    server. kill -9 of that server -> the proxy moves the
#                                    session to another server, rspterminal keeps its
#                                    association and its next lines are echoed.
# vm-timeout: 120
. /rig/lib.sh
PR=10.0.0.1
PX=10.0.0.30

net_dummy $PR $PX 10.0.0.41 10.0.0.42 10.0.0.43
capture lo proxy-rsplib

rsp_registrar pr $PR

# The legacy servers and their daemons' keys.
legacy_servers

# The proxy.
cat > /tmp/proxy.toml <<TOML
mode = "broker"
daemon_listen = "127.0.0.1:7100"
control_listen = "127.0.0.1:7199"
control_socket = "/tmp/proxy-ctl/control.sock"
admin_state_file = "/tmp/proxy-admin-state.json"
registrars = ["$PR:3863"]
registrar_transport = "sctp"

[[application]]
name = "echo"
pool_handle = "ProxyPool"
policy = "round-robin"
asap_listen = "$PX:8001"
asap_transport = "sctp"
# legacy-echo is stateless: the session moves when its server dies (default: close).
on_server_failure = "reconnect"
TOML
legacy_proxy_servers /tmp/proxy.toml
cp /tmp/proxy.toml "$OUT/proxy.toml"
expect_ok "proxy-pe check accepts the configuration" proxy-pe check -c /tmp/proxy.toml
start proxy proxy-pe run -c /tmp/proxy.toml

# The daemons, one per legacy server (all on this one VM, told apart by command line).
for i in 1 2 3; do
  legacy_daemon_conf $i 127.0.0.1:7100
  start daemon$i legacy-daemon --config /tmp/daemon-$i.toml
done

running() {  # running N: the proxy's pooling table lists exactly N running servers
  proxy-pe status > /tmp/status.txt 2>&1 || return 1
  [ "$(grep -c ' is running' /tmp/status.txt)" = "$1" ]
}
wait_for 30 running 3
proxy-pe status > "$OUT/status-start.txt" 2>&1
for i in 1 2 3; do
  expect_grep "pooling table: IP$i is running (daemon report)" "^IP$i is running" "$OUT/status-start.txt"
done

# 1. The proxy's PE in rspregistrar's handlespace, with its SCTP user transport.
wait_for 30 hs_count_is $PR:9901 1
expect_hs_pes "rspregistrar lists 1 PE (the proxy)" proxy $PR:9901 1
expect_grep "hsdump: pool ProxyPool, SCTP with control channel" \
  'Pool "ProxyPool", Policy "RoundRobin", Protocol SCTP, CtrlCh=yes' "$OUT/hsdump-proxy.txt"
expect_grep "hsdump: the proxy's user transport $PX:8001/SCTP" \
  "userT: {$PX} 8001/SCTP+CtrlCh" "$OUT/hsdump-proxy.txt"
PEID=$(sed -n 's/^ *- idx:#0001: \$\([0-9a-f]*\) flags.*/\1/p' "$OUT/hsdump-proxy.txt" | tail -n1)
log "the proxy's PE identifier: \$$PEID"

# 2. rspterminal reaches a legacy server through the proxy.
fifo_start 3 term rspterminal -poolhandle=ProxyPool -registrar=$PR:3863 $RSPLOG
for i in 1 2 3; do
  send_expect 3 "proxied line $i" term 20 "rspterminal: line $i echoed through the proxy (PE \$$PEID)" \
    "from PE \$$PEID>.*proxied line $i"
done
# A greeting and an echo may arrive in one SCTP message (the legacy side is a TCP byte
# stream), which rspterminal prints on one line: match anywhere in the line.
FIRST=$(sed -n 's/.*> hello from IP\([0-9]\).*/\1/p' "$OUT/term.log" | head -n1)
log "rspterminal's session is relayed to IP$FIRST"
expect_eq "round-robin: the first session goes to IP1" "$FIRST" 1
case "$FIRST" in 1|2|3) ;; *) FIRST=1 ;; esac

# 3. The legacy server in use dies; the proxy moves the session, the association stays.
stop echo$FIRST KILL
wait_for 20 running 2
proxy-pe status > "$OUT/status-killed.txt" 2>&1
expect_grep "pooling table: IP$FIRST is not running" "^IP$FIRST is not running" "$OUT/status-killed.txt"
# The session has moved when the next server's greeting reaches rspterminal.
moved() { [ "$(grep -c 'hello from IP' "$OUT/term.log")" -ge 2 ]; }
wait_for 20 moved
NEXT=$(sed -n 's/.*hello from IP\([0-9]\).*/\1/p' "$OUT/term.log" | sed -n 2p)
log "session moved from IP$FIRST to IP$NEXT"
expect_ok "the session moved to another legacy server (IP$NEXT)" \
  sh -c "[ -n '$NEXT' ] && [ '$NEXT' != '$FIRST' ]"
for i in 4 5 6; do
  send_wait 3 "proxied line $i" term 20 "proxied line $i"
done
for i in 4 5 6; do
  expect_eq "rspterminal: line $i echoed exactly once after the move" \
    "$(grep -c "from PE \$$PEID>.*proxied line $i" "$OUT/term.log")" 1
done
expect_no_grep "rspterminal kept its association (no failover to another PE)" \
  "[Ff]ailover\|Connection lost\|unreachable" "$OUT/term.log"
exec 3>&-
stop term INT
proxy-pe status --json > "$OUT/status.json" 2>&1
expect_grep "proxy answered rspregistrar (registration accepted)" '"accepted": [1-9]' "$OUT/status.json"

# 4. Graceful proxy shutdown deregisters it.
stop proxy INT
wait_for 20 hs_count_is $PR:9901 0
expect_hs_pes "after the proxy's SIGINT rspregistrar lists no PE" end $PR:9901 0
stop pr INT
# tcpdump lags under TCG emulation; give it time to write the last packets.
sleep 2
finish
