//! The monitoring files in `*/deploy/monitoring/` (issue 16 item 3): Prometheus alert rules
//! and Grafana dashboards for enrp-server, proxy-pe and legacy-daemon.
//!
//! - `promtool check rules` on every rules file when promtool is installed (Debian package
//!   `prometheus`; scripts/test-all.sh installs it; `RSERPOOL_REQUIRE_PROMTOOL=1` makes its
//!   absence a failure);
//! - every dashboard is JSON with the structure Grafana imports (title, uid, panels with
//!   Prometheus targets, a `datasource` variable);
//! - every metric an alert or a panel names exists in its exporter's output (the families
//!   each exporter declares, rendered in process), so a renamed metric fails here.

use crate::root;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

/// (crate dir, metric prefix).
const DAEMONS: [(&str, &str); 3] = [
    ("enrp-server", "enrp_"),
    ("proxy-pe", "proxy_pe_"),
    ("legacy-daemon", "legacy_daemon_"),
];

/// An empty but complete proxy-pe report (no applications or daemons).
fn empty_report() -> proxy_pe::control::Report {
    proxy_pe::control::Report {
        proxy: proxy_pe::core::Status {
            mode: Default::default(),
            now_ms: 0,
            applications: Vec::new(),
            daemons: Vec::new(),
            sessions: 0,
            registrations: 0,
            events: Vec::new(),
            event_seq: 0,
        },
        registrar: Default::default(),
        config_path: String::new(),
        config_loads: 1,
        last_config_error: None,
        ha: None,
    }
}

/// The exporter's page for `daemon`, rendered in process.
fn page(daemon: &str) -> String {
    match daemon {
        "enrp-server" => enrp_server::metrics::render(&enrp_server::metrics::registry(Arc::new(
            Default::default(),
        ))),
        "proxy-pe" => proxy_pe::metrics::render(empty_report(), Arc::new(Default::default())),
        "legacy-daemon" => legacy_daemon::metrics::Metrics::new().render(),
        _ => unreachable!(),
    }
}

/// Every sample name a page can carry: from `# TYPE name kind`, with the OpenMetrics
/// suffixes of the kind.
fn series_names(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, kind) in rserpool_tests::metrics::families(page) {
        match kind.as_str() {
            "counter" => {
                out.insert(format!("{name}_total"));
                out.insert(format!("{name}_created"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count", "_created"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            _ => {
                out.insert(name);
            }
        }
    }
    out
}

/// Identifiers in a PromQL expression that start with `prefix` (metric names); quoted
/// label values are skipped.
fn metrics_in(expr: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let unquoted: String = expr
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 0 { part } else { "" })
        .collect::<Vec<_>>()
        .join("\"\"");
    let expr = unquoted.as_str();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        if word(b[i]) && (i == 0 || !word(b[i - 1])) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let w = &expr[start..i];
            if w.starts_with(prefix) {
                out.push(w.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

fn rules_path(d: &str) -> PathBuf {
    root().join(format!("{d}/deploy/monitoring/{d}.rules.yml"))
}

fn dashboard_path(d: &str) -> PathBuf {
    root().join(format!("{d}/deploy/monitoring/{d}.dashboard.json"))
}

/// `expr:` values of a rules file (one line each, as the files' headers require).
fn rule_exprs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect()
}

#[test]
fn alert_rules_name_only_exported_metrics() {
    for (d, prefix) in DAEMONS {
        let text = std::fs::read_to_string(rules_path(d)).expect("rules file");
        let known = series_names(&page(d));
        assert!(!known.is_empty(), "{d}: exporter declares no metric");
        let exprs = rule_exprs(&text);
        let alerts = text
            .lines()
            .filter(|l| l.trim().starts_with("- alert:"))
            .count();
        assert!(alerts >= 4, "{d}: only {alerts} alerts");
        assert_eq!(exprs.len(), alerts, "{d}: one single-line expr per alert");
        let mut used = 0;
        for e in &exprs {
            for m in metrics_in(e, prefix) {
                assert!(
                    known.contains(&m),
                    "{d}: rule uses {m}, not exported; known {known:?}"
                );
                used += 1;
            }
        }
        // Every alert carries a severity and a summary.
        assert!(used >= alerts - 1, "{d}: rules barely use the exporter");
        assert_eq!(text.matches("severity:").count(), alerts, "{d}");
        assert_eq!(text.matches("summary:").count(), alerts, "{d}");
        assert!(
            text.contains(&format!("up{{job=\"{d}\"}} == 0")),
            "{d}: no down alert"
        );
    }
}

#[test]
fn dashboards_are_grafana_json_on_exported_metrics() {
    for (d, prefix) in DAEMONS {
        let text = std::fs::read_to_string(dashboard_path(d)).expect("dashboard");
        let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
        assert!(v["title"].as_str().is_some_and(|t| t.contains(d)), "{d}");
        assert!(v["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40));
        let vars = v["templating"]["list"].as_array().expect("variables");
        assert!(vars
            .iter()
            .any(|x| x["type"] == "datasource" && x["query"] == "prometheus"));
        let known = series_names(&page(d));
        let panels = v["panels"].as_array().expect("panels");
        assert!(panels.len() >= 5, "{d}: {} panels", panels.len());
        let mut ids = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for p in panels {
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{d}: duplicate id"
            );
            assert!(p["title"].as_str().is_some());
            for k in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][k].is_u64(), "{d}: gridPos.{k}");
            }
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty());
            for t in targets {
                let e = t["expr"].as_str().expect("expr");
                let ms = metrics_in(e, prefix);
                assert!(!ms.is_empty(), "{d}: target without a {prefix} metric: {e}");
                for m in ms {
                    assert!(known.contains(&m), "{d}: panel uses {m}, not exported");
                    seen.insert(m);
                }
            }
        }
        // The dashboard shows most of what the exporter has.
        let families = rserpool_tests::metrics::families(&page(d)).len();
        assert!(
            seen.len() * 3 >= families * 2,
            "{d}: dashboard shows {} of {families} families",
            seen.len()
        );
    }
}

#[test]
fn promtool_checks_the_rules() {
    let have = Command::new("promtool").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("RSERPOOL_REQUIRE_PROMTOOL").is_none(),
            "promtool required but not installed (apt-get install prometheus)"
        );
        eprintln!("promtool not installed: skipped (scripts/test-all.sh installs it)");
        return;
    }
    for (d, _) in DAEMONS {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(rules_path(d))
            .output()
            .expect("promtool");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{d}: {text}");
        assert!(text.contains("SUCCESS"), "{d}: {text}");
    }
    // The check can fail: a broken expression is refused.
    let bad = std::env::temp_dir().join(format!("bad-rules-{}.yml", std::process::id()));
    std::fs::write(
        &bad,
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(foo[5m] > 1\n",
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&bad)
        .output()
        .expect("promtool");
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
}

#[test]
fn metric_name_extraction() {
    assert_eq!(
        metrics_in(
            "sum by (a) (rate(proxy_pe_x_total{a=\"proxy_pe_no\"}[5m])) / proxy_pe_y",
            "proxy_pe_"
        ),
        vec!["proxy_pe_x_total", "proxy_pe_y"]
    );
}
