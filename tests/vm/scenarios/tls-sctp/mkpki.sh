#!/usr/bin/env bash
# Regenerates the throw-away PKI of the tls-sctp scenario (host side, openssl):
# a cluster CA, the two registrars' certificates (SAN enrp-<8 hex>.rserpool,
# SECURITY.md "Peer certificates"), a PE certificate for [[pool_auth]]
# tls-names = ["pe1.example"], and one naming pe2.example (the wrong name).
# These keys protect nothing: they exist only for the VM test.
set -euo pipefail
cd "$(dirname "$0")/pki"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
  -subj "/CN=tls-sctp test CA" -keyout ca.key -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2> /dev/null
issue() { # NAME SAN
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2> /dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -out "$1.pem" -extfile <(printf '%s\n' "subjectAltName=DNS:$2" \
      "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=critical,digitalSignature") 2> /dev/null
  rm -f "$1.csr"
}
issue pr1 enrp-5eed0001.rserpool
issue pr2 enrp-5eed0002.rserpool
issue pe1 pe1.example
issue pe2 pe2.example
rm -f ca.srl ca.key
ls
