#!/bin/sh
# Writes the seed corpora of the fuzz targets (README.md here, RELIABILITY.md):
# * corpus/decode/: one file per message of the capture fixtures, first byte 00 = ASAP,
#   01 = ENRP;
# * corpus/daemon_protocol/: frames of the legacy-daemon protocol (PROTOCOL.md), the
#   handshake and a plaintext Hello/Snapshot/Delta/Heartbeat/ConfigAck session;
# * corpus/registrar_core/: operation sequences (fuzz_targets/registrar_core.rs) that connect
#   an ASAP and an ENRP association, deliver every fixture message on them, advance time
#   and disconnect.
set -eu
cd "$(dirname "$0")"
mkdir -p corpus/decode corpus/daemon_protocol corpus/registrar_core
fixtures() { grep -hv '^#' ../wire/tests/data/*.hex; }

fixtures | while read -r frame proto hex; do
    sel=00; [ "$proto" = enrp ] && sel=01
    printf '%s%s' "$sel" "$hex" | xxd -r -p > "corpus/decode/$proto-$frame-$(printf '%s' "$hex" | cksum | cut -d' ' -f1)"
done

# A frame of the daemon protocol: 4-byte big-endian length, then the body.
frame() { printf '%08x' "$(printf '%s' "$1" | wc -c)" | xxd -r -p; printf '%s' "$1"; }
hello='{"seq":0,"type":"hello","protocol_version":2,"daemon_id":"web1","instance":7,"config_version":1,"poll_interval_ms":500,"heartbeat_interval_ms":1000,"software":"0.1.0"}'
app='{"name":"httpd","running":true,"instances":2,"pids":[10,11],"cpu_percent":1.5,"rss_bytes":4096,"ports":[{"port":80,"listening":true,"connections":3}],"load_hints":{"weight":5}}'
snap="{\"seq\":1,\"type\":\"snapshot\",\"state_seq\":1,\"config_version\":1,\"taken_at_ms\":5,\"apps\":[$app]}"
delta="{\"seq\":2,\"type\":\"delta\",\"state_seq\":2,\"config_version\":1,\"taken_at_ms\":6,\"changed\":[$app],\"removed\":[\"ftpd\"]}"
hb='{"seq":3,"type":"heartbeat","heartbeat_seq":1,"state_seq":2,"config_version":1,"uptime_s":9}'
ack='{"seq":4,"type":"config_ack","version":2,"accepted":false,"active_version":1,"error":"bad"}'
init='{"type":"auth_init","protocol_version":2,"daemon_id":"web1","auth":"hmac-sha256","nonce":"00112233"}'
accept='{"type":"auth_accept","auth":"none","nonce":"44556677"}'
refused='{"type":"auth_refused","reason":"unknown daemon"}'
push='{"type":"config_push","version":2,"config_toml":"[daemon]\nid = \"web1\"\n"}'
{ printf '\077'; frame "$hello"; frame "$snap"; frame "$delta"; frame "$hb"; frame "$ack"; } > corpus/daemon_protocol/session
{ printf '\003'; frame "$init"; frame "$accept"; frame "$refused"; frame "$push"; } > corpus/daemon_protocol/handshake
for m in "$hello" "$snap" "$delta" "$hb" "$ack" "$init" "$accept" "$push"; do
    { printf '\000'; frame "$m"; } > "corpus/daemon_protocol/one-$(printf '%s' "$m" | cksum | cut -d' ' -f1)"
done

# registrar_core: config byte, Connected(0: ASAP 127.0.0.1), Connected(1: ENRP 127.0.0.1),
# each fixture message as op 2 on association 0 (ASAP) or 1 (ENRP), time +1 s, Disconnect.
for cfg in 00 c0 15; do
    {
        printf '%s' "$cfg 00 00 00 05 00 01 01 06" | xxd -r -p
        fixtures | while read -r _frame proto hex; do
            assoc=00; p=00; [ "$proto" = enrp ] && { assoc=01; p=01; }
            printf '02%s%s%04x%s' "$assoc" "$p" "$(( ${#hex} / 2 ))" "$hex" | xxd -r -p
        done
        printf '%s' "04 0a 01 00 01 01 04 ff" | xxd -r -p
    } > "corpus/registrar_core/fixtures-$cfg"
done
fixtures | while read -r frame proto hex; do
    assoc=00; p=00; [ "$proto" = enrp ] && { assoc=01; p=01; }
    printf '00 00 00 05 00 01 01 06 02%s%s%04x%s 04 32' "$assoc" "$p" "$(( ${#hex} / 2 ))" "$hex" \
        | tr -d ' ' | xxd -r -p > "corpus/registrar_core/$proto-$frame-$(printf '%s' "$hex" | cksum | cut -d' ' -f1)"
done
