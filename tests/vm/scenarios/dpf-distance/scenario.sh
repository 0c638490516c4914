#!/bin/sh
# dpf-distance: the registrar fills the Distance of LU-DPF pool elements from
# the kernel SCTP RTT (SCTP_STATUS spinfo_srtt, converted from jiffies) and
# hands the near PE out first (issue 14 item 4).
#
#   netns reg: enrp-server --transport sctp --distance-step 1
#     r1 10.0.1.1/24 <-- veth, netem 50 ms on the PE side --> pe1 p1 10.0.1.11
#     r2 10.0.2.1/24 <-- veth, netem  5 ms on the PE side --> pe2 p2 10.0.2.12
#     r9 10.0.9.1/24 <-- veth, no delay --> root h9 10.0.9.2 (hsdump)
#   PE 0x11111111 (far) and 0x22222222 (near): rsplib rspserver -echo,
#   -policy=LeastUsedDPF:0.001, re-registering every second.
#   PU: rsp resolve from pe2 (near link).
#
# Checks: hsdump (rsplib's decoder) shows dist ~25 for the far PE and ~3 for
# the near one; rsp resolve lists the near PE first although the far one has
# the lower ID; check.sh decodes the Distance fields of our
# HANDLE_RESOLUTION_RESPONSEs with tshark.
# SCTP measures no RTT before the first DATA is acknowledged, so a PE's
# first REGISTRATION gets distance 0; its re-registrations carry the
# measured one (rsplib behaves the same). The short keep-alive interval gives
# the registrar RTT samples (KEEP_ALIVE out, ACK with the SACK bundled back).
# vm-timeout: 240
. /rig/lib.sh
TC=/usr/sbin/tc
RSPLOG="-logcolor=off -loglevel=2"
FAR=11111111
NEAR=22222222

if [ ! -x $TC ]; then
  fail "tc is in the image" "not found at $TC (tests/vm/mkinitramfs.sh HOST_BINS)"
  finish
fi

netns_add reg pe1 pe2
veth_link reg r1 10.0.1.1 pe1 p1 10.0.1.11
veth_link reg r2 10.0.2.1 pe2 p2 10.0.2.12
veth_link reg r9 10.0.9.1 - h9 10.0.9.2
# one-way delay on the PE side of each link = the RTT seen by the registrar
in_ns pe1 $TC qdisc add dev p1 root netem delay 50ms
expect_eq "netem 50 ms on the far link" "$?" 0
in_ns pe2 $TC qdisc add dev p2 root netem delay 5ms
expect_eq "netem 5 ms on the near link" "$?" 0
in_ns pe1 $TC qdisc show dev p1 > "$OUT/qdisc.txt" 2>&1
in_ns pe2 $TC qdisc show dev p2 >> "$OUT/qdisc.txt" 2>&1
capture -n reg any dpf-distance

start -n reg pr enrp-server --transport sctp \
  --asap 10.0.1.1,10.0.2.1,10.0.9.1:3863 --enrp 10.0.9.1:9901 \
  --identifier 0x5eed0d15 --asap-announce off --enrp-announce off \
  --keep-alive-interval 300 --keep-alive-timeout 3000 \
  --distance-step 1 --hsdump-allow 10.0.9.0/24
wait_for 10 in_ns reg grep -qw 3863 /proc/net/sctp/eps || log "registrar not listening"

start -n pe1 pe1 rspserver -echo -poolhandle=DpfPool -registrar=10.0.1.1:3863 \
  -local=10.0.1.11 -identifier=0x$FAR -policy=LeastUsedDPF:0.001 \
  -rereginterval=1000 $RSPLOG
start -n pe2 pe2 rspserver -echo -poolhandle=DpfPool -registrar=10.0.2.1:3863 \
  -local=10.0.2.12 -identifier=0x$NEAR -policy=LeastUsedDPF:0.001 \
  -rereginterval=1000 $RSPLOG

# dist=N of PE $1 in hsdump file $2 (rsplib prints the policy settings with the PE)
dist_of() {
  grep -A6 "\$$1 flags" "$2" | sed -n 's/.*dist=\([0-9]*\).*/\1/p' | head -n1
}
in_range() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
# Under TCG the guest adds its own processing delay to every RTT (seen: near
# 14, far 30 instead of 3 and 25), so the checks are: the far PE at least
# 20 ms (half its 50 ms netem RTT) and at least 8 ms farther than the near
# one (the netem difference alone is 22 ms). Without the jiffies conversion
# (CONFIG_HZ=250) the far PE would read about 7.
settled() {
  hsdump_to poll 10.0.9.1:9901
  _f=$(dist_of $FAR "$OUT/hsdump-poll.txt")
  _n=$(dist_of $NEAR "$OUT/hsdump-poll.txt")
  in_range "$_f" 20 200 && in_range "$_n" 0 $((_f - 8))
}
wait_for 30 settled
hsdump_to dist 10.0.9.1:9901
expect_eq "hsdump lists 2 PEs" "$(hs_pe_count "$OUT/hsdump-dist.txt")" 2
D_FAR=$(dist_of $FAR "$OUT/hsdump-dist.txt")
D_NEAR=$(dist_of $NEAR "$OUT/hsdump-dist.txt")
log "distances: far PE \$$FAR dist=$D_FAR, near PE \$$NEAR dist=$D_NEAR"
echo "far=$D_FAR near=$D_NEAR" > "$OUT/distances.txt"
if in_range "$D_FAR" 20 200; then pass "far PE distance $D_FAR ms (RTT 50 ms / 2 + guest delay)"; else fail "far PE distance" "dist=$D_FAR, expected >= 20"; fi
if in_range "$D_NEAR" 0 $((D_FAR - 8)); then pass "near PE distance $D_NEAR ms, at least 8 below the far one"; else fail "near PE distance" "dist=$D_NEAR, expected <= far - 8 = $((D_FAR - 8))"; fi

# the PU on the near link: the registrar's order, near PE first (3 answers)
for i in 1 2 3; do
  in_ns pe2 timeout 20 rsp resolve DpfPool --registrar 10.0.2.1:3863 \
    --transport sctp --json > "$OUT/resolve-$i.json" 2> "$OUT/resolve-$i.err"
  expect_eq "rsp resolve $i exit status" "$?" 0
  FIRST=$(grep -o '"pe_id":[0-9]*' "$OUT/resolve-$i.json" | head -n1 | cut -d: -f2)
  expect_eq "resolution $i hands out the near PE first" "$FIRST" "$((0x$NEAR))"
done

stop pe1 INT
stop pe2 INT
stop pr INT
finish
