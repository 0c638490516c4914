#!/bin/sh
# proxy-mode-a-rsplib: our proxy-pe in mode A (registration proxy) registers three legacy
# TCP echo servers with their OWN addresses (third-party registration) over kernel SCTP
# at three registrars at once, and shows what each does with the foreign addresses:
#
#   root namespace (the "legacy host" and the registrars, dummy0):
#     PR-R  rspregistrar (rsplib 3.4.4)           10.0.0.1
#     PR-A  enrp-server --allow-third-party 10.0.1.0/24   10.0.0.2
#     PR-N  enrp-server (no allow-list)           10.0.0.3
#     3x    legacy-echo IP1..IP3                  10.0.0.41:7001 .. 10.0.0.43:7003
#     3x    legacy-daemon, each reporting to all four proxies
#   namespace px (the proxy host, veth 10.0.1.30 <-> 10.0.1.1):
#     proxy-r / proxy-a / proxy-n: mode A, pool LegacyPool, one per registrar. Their ASAP
#     associations carry only 10.0.1.30, so the legacy addresses are third-party.
#   root namespace again:
#     proxy-l: mode A at rspregistrar, pool LocalPool, running on the legacy host itself:
#     its association's INIT lists every root address, the legacy ones included.
#
# Checks: rspregistrar refuses the third-party registrations (no PE in hsdump, the
# proxy counts rejections, host side: R bit and cause 0xf008 "no usable user
# addresses") but accepts the same servers from proxy-l; our enrp-server with the
# allow-list accepts them with the legacy addresses (hsdump, legacy_pu reaches each
# legacy server directly, a killed server is deregistered); without the allow-list it
# refuses them with cause 3 (Invalid Values).
# vm-timeout: 120
. /rig/lib.sh
PRR=10.0.0.1
PRA=10.0.0.2
PRN=10.0.0.3
PX=10.0.1.30
RSPLOG="-logcolor=off -loglevel=3"

net_dummy $PRR $PRA $PRN 10.0.0.41 10.0.0.42 10.0.0.43
netns_add px
veth_link - vpx0 10.0.1.1 px px0 $PX
in_ns px /usr/bin/ip route add default via 10.0.1.1
capture vpx0 mode-a
capture lo mode-a-lo

start prr rspregistrar -identifier=0x0000aaa1 -asap=$PRR:3863 -enrp=$PRR:9901 \
  -asapannounce=off -enrpannounce=off $RSPLOG
start pra enrp-server --transport sctp --asap $PRA:3863 --enrp $PRA:9901 \
  --identifier 0x5eed00a2 --asap-announce off --enrp-announce off \
  --allow-third-party 10.0.1.0/24 --keep-alive-interval 1000 --keep-alive-timeout 2000 \
  --hsdump-allow 10.0.0.0/24
start prn enrp-server --transport sctp --asap $PRN:3863 --enrp $PRN:9901 \
  --identifier 0x5eed00a3 --asap-announce off --enrp-announce off --hsdump-allow 10.0.0.0/24
listening() { [ "$(grep -cw 3863 /proc/net/sctp/eps)" -ge 3 ]; }
wait_for 15 listening || log "registrars not listening"

legacy_servers

# proxy_conf NAME REGISTRAR POOL DAEMON_LISTEN CONTROL
proxy_conf() {
  cat > /tmp/proxy-$1.toml <<TOML
mode = "registration"
daemon_listen = "$4"
control_listen = "$5"
control_socket = "/tmp/proxy-$1-ctl/control.sock"
admin_state_file = "/tmp/proxy-$1-admin-state.json"
registrars = ["$2:3863"]
registrar_transport = "sctp"

[[application]]
name = "echo"
pool_handle = "$3"
policy = "round-robin"
TOML
  legacy_proxy_servers /tmp/proxy-$1.toml
  cp /tmp/proxy-$1.toml "$OUT/proxy-$1.toml"
}
proxy_conf r $PRR LegacyPool $PX:7101 127.0.0.1:7191
proxy_conf a $PRA LegacyPool $PX:7102 127.0.0.1:7192
proxy_conf n $PRN LegacyPool $PX:7103 127.0.0.1:7193
proxy_conf l $PRR LocalPool 127.0.0.1:7104 127.0.0.1:7194
expect_ok "proxy-pe check accepts the mode A configuration" proxy-pe check -c /tmp/proxy-a.toml
for p in r a n; do start -n px proxy-$p proxy-pe run -c /tmp/proxy-$p.toml; done
start proxy-l proxy-pe run -c /tmp/proxy-l.toml

for i in 1 2 3; do
  legacy_daemon_conf $i $PX:7101 $PX:7102 $PX:7103 127.0.0.1:7104
  start daemon$i legacy-daemon --config /tmp/daemon-$i.toml
done

# status P: the proxy's JSON report -> $OUT/status-P.json (px proxies run in px)
status() {
  case "$1" in
    l) proxy-pe status --json --control 127.0.0.1:7194 > "$OUT/status-$1.json" 2>&1 ;;
    r) in_ns px proxy-pe status --json --control 127.0.0.1:7191 > "$OUT/status-$1.json" 2>&1 ;;
    a) in_ns px proxy-pe status --json --control 127.0.0.1:7192 > "$OUT/status-$1.json" 2>&1 ;;
    n) in_ns px proxy-pe status --json --control 127.0.0.1:7193 > "$OUT/status-$1.json" 2>&1 ;;
  esac
}
# counts P: the registrar counters of proxy P -> $acc, $rej (one status query; process
# starts are slow under TCG, so each check below reads the values saved here)
counts() {
  status "$1"
  acc=$(sed -n 's/.*"accepted": \([0-9]*\).*/\1/p' "$OUT/status-$1.json" | head -n1)
  rej=$(sed -n 's/.*"rejected": \([0-9]*\).*/\1/p' "$OUT/status-$1.json" | head -n1)
}
# answered P N: the registrar answered at least N registrations of proxy P
answered() { counts "$1"; [ $(( ${acc:-0} + ${rej:-0} )) -ge "$2" ]; }
for p in r a n l; do
  wait_for 40 answered $p 3 || log "proxy-$p: fewer than 3 registration responses"
  eval "${p}_acc=\${acc:-none} ${p}_rej=\${rej:-none}"
done
log "registration responses: proxy-r $r_acc/$r_rej, proxy-a $a_acc/$a_rej, proxy-n $n_acc/$n_rej, proxy-l $l_acc/$l_rej (accepted/rejected)"
in_ns px proxy-pe status --control 127.0.0.1:7192 > "$OUT/status-table.txt" 2>&1
for i in 1 2 3; do
  expect_grep "pooling table: IP$i is running" "^IP$i is running" "$OUT/status-table.txt"
done

# 1. rspregistrar and third-party addresses: refused.
expect_ok "rspregistrar refused proxy-r's 3 third-party registrations (retried with back-off)" [ "${r_rej:-0}" -ge 3 ]
expect_eq "rspregistrar accepted none of them" "$r_acc" 0
hsdump_to rsplib $PRR:9901
expect_eq "rspregistrar lists 3 PEs (proxy-l's, below)" "$(hs_pe_count "$OUT/hsdump-rsplib.txt")" 3
expect_grep "rspregistrar has pool LocalPool" '"LocalPool"' "$OUT/hsdump-rsplib.txt"
expect_no_grep "no LegacyPool at rspregistrar" '"LegacyPool"' "$OUT/hsdump-rsplib.txt"
expect_grep "rspregistrar log: no usable user transport addresses" \
  "no usable user transport addresses are available" "$OUT/prr.log"
expect_grep "rspregistrar log: the association's address is the proxy's" \
  "Addresses from association: .*$PX" "$OUT/prr.log"
# The same servers, registered by a proxy on the legacy host itself (its association
# carries the legacy addresses): accepted, with the legacy addresses.
expect_eq "rspregistrar accepted proxy-l's 3 registrations (proxy on the legacy host)" \
  "$l_acc" 3
expect_eq "rspregistrar refused none of proxy-l's" "$l_rej" 0
for i in 1 2 3; do
  expect_grep "hsdump: LocalPool PE for IP$i with its own address" \
    "userT: {10.0.0.4$i} 700$i/TCP" "$OUT/hsdump-rsplib.txt"
done

# 2. Our enrp-server with the proxy's network allow-listed: accepted, legacy addresses.
expect_eq "enrp-server (allow-listed) accepted 3 registrations" "$a_acc" 3
expect_eq "enrp-server (allow-listed) refused none" "$a_rej" 0
# pes_at PR N NAME: hsdump at PR lists N PEs (the last dump stays in hsdump-NAME.txt)
pes_at() { hsdump_to "$3" $1:9901; [ "$(hs_pe_count "$OUT/hsdump-$3.txt")" = "$2" ]; }
wait_for 20 pes_at $PRA 3 ours
expect_eq "hsdump at enrp-server (allow-listed) lists 3 PEs" "$(hs_pe_count "$OUT/hsdump-ours.txt")" 3
for i in 1 2 3; do
  expect_grep "hsdump: PE for IP$i has the legacy server's address" \
    "userT: {10.0.0.4$i} 700$i/TCP" "$OUT/hsdump-ours.txt"
done
start pu legacy_pu --registrar $PRA:3863 --transport sctp --pool LegacyPool
wait_exit pu 30
expect_eq "legacy_pu resolved LegacyPool and talked to every PE directly" "$pu_rc" 0
for i in 1 2 3; do
  expect_grep "legacy_pu: 10.0.0.4$i:700$i greeted as IP$i and echoed" \
    "10.0.0.4$i:700$i/TCP greeting \"hello from IP$i\" echo ok" "$OUT/pu.log"
done
# A legacy server dies: the proxy deregisters it.
stop echo2 KILL
wait_for 20 pes_at $PRA 2 killed
expect_eq "after kill -9 of IP2 enrp-server lists 2 PEs" "$(hs_pe_count "$OUT/hsdump-killed.txt")" 2
expect_no_grep "IP2's PE is gone" "userT: {10.0.0.42}" "$OUT/hsdump-killed.txt"

# 3. Our enrp-server without the allow-list: refused.
# The proxy retries a rejected registration with back-off (1 s, 2 s, 4 s ...), so the
# registrar may have refused each of the 3 PEs more than once by now; none is accepted.
expect_ok "enrp-server (no allow-list) refused at least 3 registrations" [ "${n_rej:-0}" -ge 3 ]
expect_eq "enrp-server (no allow-list) accepted none" "$n_acc" 0
hsdump_to refused $PRN:9901
expect_eq "hsdump at enrp-server (no allow-list) lists 0 PEs" "$(hs_pe_count "$OUT/hsdump-refused.txt")" 0

# No graceful stops needed: finish stops the captures (SIGINT), then the rest (SIGTERM).
# tcpdump lags under TCG emulation; give it time to write the last packets.
sleep 1
finish
