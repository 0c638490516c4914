#!/bin/sh
# smoke: the rig itself works. Boot, SCTP module loaded, a kernel SCTP
# association carries data (lksctp-tools sctp_test, client -> server over
# 127.0.0.1), tools present, capture and result export work.
. /rig/lib.sh

log "kernel $(uname -r)"
expect_grep "sctp module loaded" "^sctp " /proc/modules
expect_ok "checksctp: SCTP sockets available" checksctp
expect_ok "virtio disk for results present" test -b /dev/vda

capture lo smoke
start server sctp_test -H 127.0.0.1 -P 7777 -l
wait_for 5 grep -q "7777" /proc/net/sctp/eps
# -s: send, -c 1: 1 message of each size class, -x 3: 3 repetitions
timeout 20 sctp_test -H 127.0.0.1 -P 7778 -h 127.0.0.1 -p 7777 -s -c 1 -x 3 \
  > "$OUT/client.log" 2>&1
expect_eq "sctp_test client exit status" "$?" 0
stop server KILL   # sctp_test -l ignores SIGINT
expect_grep "server received the client's data" "recvmsg.*Data [0-9]* bytes" "$OUT/server.log"
stop_captures
expect_ok "capture is non-empty" test -s "$OUT/smoke.pcap"

for b in rspregistrar rspserver rspterminal hsdump tcpdump /usr/bin/ip; do
  expect_ok "tool $b present" command -v "$b"
done
ls /opt/rserpool/bin > "$OUT/project-binaries.txt" 2>&1
log "project binaries: $(tr '\n' ' ' < "$OUT/project-binaries.txt")"
finish
