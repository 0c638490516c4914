# tests/vm/check-lib.sh - helpers for host-side checks (scenarios/NAME/check.sh).
#
# run.sh runs `bash scenarios/NAME/check.sh RESULTS_DIR` after the VM is
# done; a check.sh sources this file, makes its checks and ends with
# `check_done`. Checks are appended to RESULTS_DIR/checks.txt like the
# guest's, marked "(host)".
#
#   pcap_count PCAP FILTER               frames matching a tshark display filter
#   pcap_values PCAP FIELD [FILTER]      distinct values of FIELD, one line each
#   check_min DESC ACTUAL MIN            ok if ACTUAL >= MIN
#   check_eq DESC ACTUAL EXPECTED
#   check_done                           exit 1 if a host check failed
RES=${1:?usage: check.sh RESULTS_DIR}
_host_fail=0
# tshark's exit status and stderr are kept: a pcap that is cut short or a tshark that
# fails must show up in host-check.log, not as a silent count of 0.
_tshark() {  # _tshark PCAP ARGS...: stdout of `tshark -n -r PCAP ARGS`; diagnostics on stderr
  _pcap=$1
  shift
  _err=$(mktemp)
  _outf=$(mktemp)
  tshark -n -r "$_pcap" "$@" > "$_outf" 2> "$_err"
  _rc=$?
  if [ $_rc -ne 0 ] || [ -s "$_err" ]; then
    echo "tshark -r $_pcap $* -> exit $_rc: $(head -c 400 "$_err")" >&2
    ls -l "$_pcap" >&2
    command -v capinfos > /dev/null && capinfos -c -s -u "$_pcap" >&2
  fi
  cat "$_outf"
  rm -f "$_err" "$_outf"
}
pcap_count() {
  _tshark "$1" -Y "$2" | wc -l
}
pcap_values() {
  _tshark "$1" ${3:+-Y "$3"} -T fields -e "$2" | tr ',' '\n' | sed '/^$/d' | sort -u
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
