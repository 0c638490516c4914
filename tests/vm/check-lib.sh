# tests/vm/check-lib.sh - helpers for host-side checks (scenarios/NAME/check.sh).
#
# run.sh runs `bash scenarios/NAME/check.sh RESULTS_DIR` after the VM is
# done; a check.sh sources this file, makes its checks and ends with
# `check_done`. Checks are appended to RESULTS_DIR/checks.txt like the
# guest's, marked "(host)".
#
#   pcap_count PCAP FILTER               frames matching a tshark display filter
#   check_min DESC ACTUAL MIN            ok if ACTUAL >= MIN
#   check_eq DESC ACTUAL EXPECTED
#   check_done                           exit 1 if a host check failed
RES=${1:?usage: check.sh RESULTS_DIR}
_host_fail=0
pcap_count() {
  tshark -n -r "$1" -Y "$2" 2> /dev/null | wc -l
}
_record() {
  echo "$1 - $2 (host)" >> "$RES/checks.txt"
  echo "$1 - $2"
}
check_min() {
  if [ "$2" -ge "$3" ] 2> /dev/null; then _record ok "$1"
  else _record "not ok" "$1 (got '$2', expected at least $3)"; _host_fail=1; fi
}
check_eq() {
  if [ "$2" = "$3" ]; then _record ok "$1"
  else _record "not ok" "$1 (got '$2', expected '$3')"; _host_fail=1; fi
}
check_done() {
  exit $_host_fail
}
command -v tshark > /dev/null || { _record "not ok" "tshark missing (run tests/vm/install-deps.sh)"; exit 1; }
