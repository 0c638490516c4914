#!/bin/sh
# tls-sctp: TLS over kernel SCTP (issue 13 item 1; SECURITY.md "TLS over SCTP"):
# one TLS session per association on stream 0, RSerPool messages framed inside.
#
#   PR1 enrp-server --transport sctp  10.0.0.1 (ID 0x5eed0001)
#   PR2 enrp-server --transport sctp  10.0.0.2 (ID 0x5eed0002)
#       both: --enrp-security tls (mutual TLS, certificates naming the server
#       IDs), --asap-tls on, SecurePool needs a client certificate naming
#       pe1.example ([[pool_auth]])
#   PE  echo_pe (ours)   10.0.0.21, TLS with pe1.example, registers at PR2
#   PE2 echo_pe (ours)   10.0.0.22, TLS with pe2.example (wrong name): refused
#   PU  echo_pu (ours)   TLS without a certificate, resolves at PR1
#
# The PE registered at PR2 reaches PR1 over the TLS peering; the PU's lines
# are echoed by it. PE2 is refused (cause 0xA, counted in
# enrp_registrations_rejected at PR2). Host side (check.sh): every SCTP DATA
# chunk on the registrar ports (3863, 9901) carries TLS records (content type
# 0x14-0x17, version 3.x) on stream 0, TLS handshakes on both ports, and no
# plaintext ASAP/ENRP: the pool handle never appears in the capture.
# vm-timeout: 150
. /rig/lib.sh
PR1=10.0.0.1
PR2=10.0.0.2
PKI=/rig/scenarios/tls-sctp/pki
FAST="--asap-announce off --enrp-announce off \
  --peer-heartbeat-cycle 1000 --peer-max-time-last-heard 3000 \
  --peer-max-time-no-response 2000 --mentor-discovery-timeout 2000"
cat > /tmp/pool-auth.toml <<TOML
[[pool_auth]]
handle = "SecurePool"
tls-names = ["pe1.example"]
TOML
TLS="--enrp-security tls --asap-tls on --tls-ca $PKI/ca.pem --config /tmp/pool-auth.toml"

net_dummy $PR1 $PR2 10.0.0.21 10.0.0.22 10.0.0.31
capture lo tls-sctp

start pr1 enrp-server --transport sctp --asap $PR1:3863 --enrp $PR1:9901 \
  --identifier 0x5eed0001 --peer $PR2:9901 $FAST $TLS \
  --tls-cert $PKI/pr1.pem --tls-key $PKI/pr1.key --metrics $PR1:9100
start pr2 enrp-server --transport sctp --asap $PR2:3863 --enrp $PR2:9901 \
  --identifier 0x5eed0002 --peer $PR1:9901 $FAST $TLS \
  --tls-cert $PKI/pr2.pem --tls-key $PKI/pr2.key --metrics $PR2:9100
wait_for 15 grep -qw 3863 /proc/net/sctp/eps || log "registrars not listening"
metric() { # ADDR SAMPLE -> value of the first sample starting with SAMPLE
  wget -q -O - "http://$1:9100/metrics" 2> /dev/null | grep -F "$2" | grep -v '^#' | head -n1 | awk '{print $2}'
}
at_least() { # ADDR SAMPLE MIN
  _v=$(metric "$1" "$2")
  [ -n "$_v" ] && [ "$_v" -ge "$3" ]
}

start ourpe echo_pe --transport sctp --registrar $PR2:3863 --pool SecurePool \
  --listen 10.0.0.21:0 --id 0x21212121 --policy rr \
  --tls-ca $PKI/ca.pem --tls-cert $PKI/pe1.pem --tls-key $PKI/pe1.key
wait_for 30 grep -q "pool element registered" "$OUT/ourpe.log"
expect_grep "TLS PE registered at PR2 over TLS on kernel SCTP" "pool element registered" "$OUT/ourpe.log"
expect_ok "PR2 accepted the registration" at_least $PR2 enrp_registrations_total 1

# The wrong certificate name: refused, never registered.
start badpe echo_pe --transport sctp --registrar $PR2:3863 --pool SecurePool \
  --listen 10.0.0.22:0 --id 0x22222222 --policy rr \
  --tls-ca $PKI/ca.pem --tls-cert $PKI/pe2.pem --tls-key $PKI/pe2.key
wait_for 20 at_least $PR2 enrp_registrations_rejected_total 1
expect_ok "PR2 refused the PE with the wrong certificate name (cause 0xA)" \
  at_least $PR2 enrp_registrations_rejected_total 1
expect_ok "counted as a registration refusal at a trust boundary" \
  at_least $PR2 'enrp_security_refusals_total{what="registration"}' 1
expect_no_grep "the wrong-name PE never registered" "pool element registered" "$OUT/badpe.log"
stop badpe KILL

# The PU resolves at PR1 (replicated over the TLS peering) and is echoed.
printf 'one\ntwo\nthree\n' > /tmp/pu-in.txt
start -i /tmp/pu-in.txt ourpu echo_pu --transport sctp --registrar $PR1:3863 \
  --pool SecurePool --tls-ca $PKI/ca.pem
wait_exit ourpu 40
expect_eq "TLS PU exit status" "$ourpu_rc" 0
for w in one two three; do
  expect_grep "PU got '$w' echoed" "^$w\$" "$OUT/ourpu.log"
done
expect_grep "PU used our PE" "connected to PE 0x21212121" "$OUT/ourpu.log"
expect_eq "no TLS refusal at PR1" "$(metric $PR1 enrp_tls_refused_total)" 0
expect_eq "no TLS refusal at PR2 (the wrong name is refused by the core, not TLS)" \
  "$(metric $PR2 enrp_tls_refused_total)" 0
expect_eq "no tls-identity refusal at PR1 (peer certificates name their IDs)" \
  "$(metric $PR1 'enrp_security_refusals_total{what="tls-identity"}')" 0
expect_ok "PR1 answered the PU's resolution with the PE" \
  at_least $PR1 enrp_handle_resolutions_total 1

stop ourpe INT
sleep 1
finish
