#!/usr/bin/env bash
# The main job on loopback: one registrar (enrp-server) and a demo pool of three echo pool
# elements, then a pool user that resolves the pool, is served, and fails over when the
# element serving it is killed. The registrar and the pool keep running until Ctrl-C.
#
#   scripts/demo.sh [--once]
#
#   --once   stop everything after the pool-user demo (used by the test suite)
#
# Environment: DEMO_ASAP_PORT (default 3863), DEMO_ENRP_PORT (default 9901),
# DEMO_DIR (logs; default target/demo). Transport: kernel SCTP when the kernel has it,
# TCP otherwise (the registrar logs which).
set -euo pipefail
cd "$(dirname "$0")/.."

once=0
for arg in "$@"; do
    case "$arg" in
        --once) once=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

asap_port=${DEMO_ASAP_PORT:-3863}
enrp_port=${DEMO_ENRP_PORT:-9901}
dir=${DEMO_DIR:-target/demo}
mkdir -p "$dir"
rm -f "$dir"/*.log

echo "demo: building (cargo build --release)"
cargo build --release -q -p enrp-server --bin enrp-server
cargo build --release -q -p asap --example echo_pe --example echo_pu
bin=target/release

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

registrar="127.0.0.1:$asap_port"
"$bin/enrp-server" --asap "$registrar" --enrp "127.0.0.1:$enrp_port" \
    --asap-announce off --enrp-announce off >"$dir/registrar.log" 2>&1 &
pids+=($!)

for i in 1 2 3; do
    "$bin/examples/echo_pe" --registrar "$registrar" --listen 127.0.0.1:0 \
        >"$dir/pe$i.log" 2>&1 &
    pids+=($!)
done
pe_pids=("${pids[@]:1:3}")

# Wait until the registrar has registered all three pool elements.
for _ in $(seq 1 100); do
    n=$(grep -c "PE registered" "$dir/registrar.log" || true)
    [ "$n" -ge 3 ] && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "demo: the registrar exited:" >&2
        tail -5 "$dir/registrar.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ "$(grep -c "PE registered" "$dir/registrar.log" || true)" -lt 3 ]; then
    echo "demo: pool elements did not register; see $dir/*.log" >&2
    exit 1
fi
echo "demo: registrar on $registrar (ENRP 127.0.0.1:$enrp_port), pool EchoPool:"
grep "PE registered" "$dir/registrar.log" | sed -e 's/.*pe_id=/    PE /' -e 's/ policy=.*addresses=/ at /'

# The pool user: three lines, then the serving element is killed, then three more lines.
fifo="$dir/pu.in"
rm -f "$fifo"
mkfifo "$fifo"
"$bin/examples/echo_pu" --registrar "$registrar" <"$fifo" >"$dir/pu.out" 2>"$dir/pu.log" &
pu=$!
exec 3>"$fifo"
for i in 1 2 3; do echo "hello $i" >&3; sleep 0.3; done
serving=""
for i in 1 2 3; do
    if grep -q "session opened" "$dir/pe$i.log"; then serving=$i; fi
done
if [ -n "$serving" ]; then
    echo "demo: killing pool element $serving, which serves the pool user"
    victim=${pe_pids[$((serving - 1))]}
    kill -9 "$victim" 2>/dev/null || true
    wait "$victim" 2>/dev/null || true
fi
for i in 4 5 6; do echo "hello $i" >&3; sleep 0.3; done
exec 3>&-
wait "$pu" || true
echo "demo: what the pool user printed (echoes and its failover report):"
grep -E "^(connected|failover)" "$dir/pu.log" | sed 's/^/    /'
sed 's/^/    /' "$dir/pu.out"

if [ "$once" = 1 ]; then
    got=$(grep -c "^hello [1-6]$" "$dir/pu.out" || true)
    [ "$got" = 6 ] || { echo "demo: expected 6 echoed lines, got $got" >&2; exit 1; }
    echo "demo: ok (6 lines echoed across a failover)"
    exit 0
fi

cat <<EOF

The registrar and the remaining pool elements keep running (logs in $dir/).
Try:  $bin/examples/echo_pu --registrar $registrar      (type lines; Ctrl-D ends)
      $bin/examples/echo_pe --registrar $registrar --listen 127.0.0.1:0   (another PE)
Ctrl-C stops everything.
EOF
wait "${pids[0]}"
