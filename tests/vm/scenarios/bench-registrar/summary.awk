# summary.awk - median and min-max per server and load of bench-registrar's bench.tsv, and
# the ratios of the medians (issue 15). Runs in the guest (busybox awk) and on the host:
#   awk -f tests/vm/scenarios/bench-registrar/summary.awk tests/vm/results/bench-registrar/bench.tsv
# Only runs whose rsp-loadgen exited 0 count. Columns of bench.tsv: round server load rc
# reg_per_s reg_p50_us reg_p99_us rereg_per_s rereg_p50_us rereg_p99_us hres_per_s
# hres_p50_us hres_p99_us server_cpu_ticks wall_s.
BEGIN { FS = "\t"; nm = split("reg:5 rereg:8 hres:11", M, " ") }
NR == 1 || $4 != "0" { next }
{
  if (!(($2) in seen)) { seen[$2] = 1; order[++ns] = $2 }
  if (!(($3) in seenl)) { seenl[$3] = 1; loads[++nl] = $3 }
  for (i = 1; i <= nm; i++) {
    split(M[i], kv, ":"); c = kv[2] + 0
    if ($c == "") continue
    k = $2 SUBSEP $3 SUBSEP kv[1]
    vals[k, ++cnt[k]] = $c + 0
    # p50 latency next to the rate
    lk = k SUBSEP "p50"
    lat[lk, ++lcnt[lk]] = $(c + 1) + 0
  }
}
# median of a[k, 1..n] (sorted copy; insertion sort, busybox awk has no asort)
function med(a, k, n,   i, j, t, s) {
  for (i = 1; i <= n; i++) s[i] = a[k, i]
  for (i = 2; i <= n; i++) { t = s[i]; for (j = i - 1; j >= 1 && s[j] > t; j--) s[j + 1] = s[j]; s[j + 1] = t }
  lo = s[1]; hi = s[n]
  return (n % 2) ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
}
END {
  name["reg"] = "registrations/s"; name["rereg"] = "re-registrations/s"; name["hres"] = "resolutions/s"
  printf "%-9s %-19s %-8s %9s %17s %4s %12s\n", "load", "rate", "server", "median", "min-max", "n", "p50 ms (med)"
  for (l = 1; l <= nl; l++) for (i = 1; i <= nm; i++) {
    split(M[i], kv, ":"); m = kv[1]
    # 3 requests of a 3-PE pool measure the association set-up, not a rate
    if (loads[l] == "pool3" && m != "hres") continue
    for (s = 1; s <= ns; s++) {
      k = order[s] SUBSEP loads[l] SUBSEP m
      if (!cnt[k]) continue
      md = med(vals, k, cnt[k]); mlo = lo; mhi = hi
      lm = med(lat, k SUBSEP "p50", lcnt[k SUBSEP "p50"])
      medv[k] = md
      printf "%-9s %-19s %-8s %9.0f %8.0f-%-8.0f %4d %12.1f\n", loads[l], name[m], order[s], md, mlo, mhi, cnt[k], lm / 1000
    }
  }
  print ""
  print "ratios of the medians"
  # ours and every other enrp-server build (old, ...) against rsplib, the fixed responder
  # and each other
  pl = "rsplib:fixed"
  for (s = 1; s <= ns; s++) {
    if (order[s] == "fixed" || order[s] == "rsplib") continue
    pl = pl " " order[s] ":rsplib " order[s] ":fixed"
    if (order[s] != "ours") pl = pl " ours:" order[s]
  }
  np = split(pl, P, " ")
  for (l = 1; l <= nl; l++) for (i = 1; i <= nm; i++) {
    split(M[i], kv, ":"); m = kv[1]
    if (loads[l] == "pool3" && m != "hres") continue
    line = ""
    for (p = 1; p <= np; p++) {
      split(P[p], ab, ":")
      a = ab[1] SUBSEP loads[l] SUBSEP m; b = ab[2] SUBSEP loads[l] SUBSEP m
      if ((a in medv) && (b in medv) && medv[b] > 0) line = line sprintf("  %s %.2fx", P[p], medv[a] / medv[b])
    }
    if (line != "") printf "%-9s %-19s%s\n", loads[l], name[m], line
  }
}
