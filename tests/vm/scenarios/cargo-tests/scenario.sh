#!/bin/sh
# cargo-tests: the project's integration tests that need kernel SCTP.
#
# On the host (no SCTP) these tests print "SKIPPED" and pass; here they must
# really run. run.sh builds the tests listed in CARGO_TESTS with
# `cargo test --release --no-run` and copies them to /opt/rserpool/tests.
# Each one runs single-threaded with --nocapture; it passes if it exits 0,
# libtest reports "test result: ok" and no test skipped itself because SCTP
# was missing ("SKIPPED: kernel SCTP not available"; tests that only make
# sense without SCTP may still print other SKIPPED lines here).
# vm-timeout: 150
. /rig/lib.sh
net_dummy 10.0.0.1 10.0.0.2 10.0.1.1 10.0.1.2   # site-local addresses, for tests that want them

found=0
for t in /opt/rserpool/tests/*; do
  [ -x "$t" ] || continue
  found=1
  n=$(basename "$t")
  log "run $n"
  timeout 60 "$t" --test-threads=1 --nocapture > "$OUT/$n.log" 2>&1
  expect_eq "$n: exit status" "$?" 0
  expect_grep "$n: test result ok" "^test result: ok" "$OUT/$n.log"
  expect_no_grep "$n: no test skipped for lack of SCTP" "SKIPPED.*\(not available\|unavailable\)" "$OUT/$n.log"
  log "$n: $(grep '^test result' "$OUT/$n.log")"
done
[ $found -eq 1 ] || fail "integration test binaries in /opt/rserpool/tests" "none built (CARGO_TESTS in run.sh)"
finish
