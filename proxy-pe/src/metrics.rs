//! The metrics endpoint (`proxy-pe run --metrics ADDR`, `GET /metrics`), in the OpenMetrics
//! text format encoded by `prometheus-client` (issue 16 item 3; names listed in the README
//! "Metrics" section and used by the `deploy/` alert rules and dashboard).
//!
//! Two sources, so that the driver needs only a few hook calls:
//! - event counters the driver bumps in a shared [`Metrics`] handle (sessions opened and
//!   refused, failovers by reason, failed failovers);
//! - everything else is read at scrape time from the same [`Report`] that `proxy-pe status`
//!   shows (pooling table: server states, selections and sessions per server; daemon link
//!   states; registrations), asked from the driver over the control channel, so the page
//!   and `status` never disagree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::control::{ControlRequest, Report};
use crate::core::{DaemonView, ServerView, Status};

/// Content type of [`render`]'s output.
pub use rserpool_cli_assets::metrics_http::CONTENT_TYPE;

/// Why a session moved to another server (the `reason` label of `proxy_pe_failovers_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverReason {
    /// The relay lost or could not reach the server (seed 003 \[35\] step 203).
    ServerFailed,
    /// The core moved the session: lifetime expired, declared down, removed (203/205).
    Moved,
}

impl FailoverReason {
    /// Every reason, in label order.
    pub const ALL: [FailoverReason; 2] = [FailoverReason::ServerFailed, FailoverReason::Moved];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverReason::ServerFailed => "server-failed",
            FailoverReason::Moved => "moved",
        }
    }
}

/// Event counters bumped by the driver.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_opened: AtomicU64,
    sessions_refused: AtomicU64,
    failovers: [AtomicU64; 2],
    failovers_failed: AtomicU64,
}

impl Metrics {
    /// A session was assigned a server (step 199) or refused (step 197).
    pub fn session_opened(&self, ok: bool) {
        if ok {
            &self.sessions_opened
        } else {
            &self.sessions_refused
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A session was moved for `reason`; `ok` false: no other server could take it.
    pub fn failover(&self, reason: FailoverReason, ok: bool) {
        let i = FailoverReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.failovers[i].fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failovers_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Health values of [`crate::core::Health`] as serialized (`status --json`), the `health`
/// label of `proxy_pe_server_health`.
const HEALTH: [&str; 5] = ["unknown", "running", "not-running", "suspect", "down"];

fn label_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct Page {
    report: Report,
    metrics: Arc<Metrics>,
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One family with a sample `value(item)` per item of `items`, labelled with the item's
/// labels ([`servers`], [`daemons`]).
fn family<'a, T: 'a, M: EncodeMetric, const N: usize>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    items: impl IntoIterator<Item = ([(&'static str, &'a str); N], &'a T)>,
    value: impl Fn(&T) -> M,
) -> Result<(), std::fmt::Error> {
    let mut f = e.encode_descriptor(name, help, None, kind)?;
    for (labels, item) in items {
        value(item).encode(f.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The servers of the pooling table, labelled with their application and name.
fn servers(st: &Status) -> impl Iterator<Item = ([(&'static str, &str); 2], &ServerView)> {
    st.applications.iter().flat_map(|a| {
        a.servers.iter().map(move |s| {
            (
                [
                    ("application", a.name.as_str()),
                    ("server", s.name.as_str()),
                ],
                s,
            )
        })
    })
}

/// The known daemons, labelled with their identity.
fn daemons(st: &Status) -> impl Iterator<Item = ([(&'static str, &str); 1], &DaemonView)> {
    st.daemons.iter().map(|d| ([("daemon", d.id.as_str())], d))
}

impl Collector for Page {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &*self.metrics;
        let st = &self.report.proxy;
        let gauge_type = ConstGauge::new(0i64).metric_type();
        let counter_type = ConstCounter::new(0u64).metric_type();

        gauge(
            &mut e,
            "proxy_pe_sessions",
            "Open sessions (mode B).",
            clamp(st.sessions as u64),
        )?;
        counter(
            &mut e,
            "proxy_pe_sessions_opened",
            "Sessions assigned a legacy server (seed 003 step 199).",
            m.sessions_opened.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "proxy_pe_sessions_refused",
            "Sessions refused: no server runs the application (seed 003 step 197).",
            m.sessions_refused.load(Ordering::Relaxed),
        )?;
        let mut f = e.encode_descriptor(
            "proxy_pe_failovers",
            "Sessions moved to another server, by reason (seed 003 steps 203/205).",
            None,
            counter_type,
        )?;
        for (r, c) in FailoverReason::ALL.iter().zip(m.failovers.iter()) {
            ConstCounter::new(c.load(Ordering::Relaxed))
                .encode(f.encode_family(&[("reason", r.as_str())])?)?;
        }
        counter(
            &mut e,
            "proxy_pe_failovers_failed",
            "Failovers that found no other server (the session was closed).",
            m.failovers_failed.load(Ordering::Relaxed),
        )?;

        family(
            &mut e,
            (
                "proxy_pe_server_selections",
                "Sessions assigned to the server (selections and reselections).",
                counter_type,
            ),
            servers(st),
            |s| ConstCounter::new(s.assigned_total),
        )?;
        family(
            &mut e,
            (
                "proxy_pe_server_active_sessions",
                "Sessions open on the server.",
                gauge_type,
            ),
            servers(st),
            |s| ConstGauge::new(i64::from(s.active_sessions)),
        )?;
        family(
            &mut e,
            (
                "proxy_pe_server_selectable",
                "1 if the server may be given sessions (mode B) or is registered (mode A).",
                gauge_type,
            ),
            servers(st),
            |s| ConstGauge::new(i64::from(s.selectable)),
        )?;
        let mut f = e.encode_descriptor(
            "proxy_pe_server_health",
            "Declared health of the server: 1 for the current state, 0 for the others.",
            None,
            gauge_type,
        )?;
        for ([app, server], s) in servers(st) {
            let now = label_of(&s.health);
            let mut states: Vec<&str> = HEALTH.to_vec();
            if !states.contains(&now.as_str()) {
                states.push(&now);
            }
            for h in states {
                ConstGauge::new(i64::from(h == now)).encode(f.encode_family(&[
                    app,
                    server,
                    ("health", h),
                ])?)?;
            }
        }
        family(
            &mut e,
            (
                "proxy_pe_server_load",
                "Load reported by the server's daemon, 0..1.",
                gauge_type,
            ),
            servers(st),
            |s| ConstGauge::new(s.load),
        )?;

        family(
            &mut e,
            (
                "proxy_pe_daemon_connected",
                "1 while the legacy-daemon's link is open, else 0.",
                gauge_type,
            ),
            daemons(st),
            |d| ConstGauge::new(i64::from(d.connected)),
        )?;
        family(
            &mut e,
            (
                "proxy_pe_daemon_last_frame_age_seconds",
                "Age of the last frame from the daemon.",
                gauge_type,
            ),
            daemons(st),
            |d| ConstGauge::new(d.last_frame_age_ms as f64 / 1000.0),
        )?;
        family(
            &mut e,
            (
                "proxy_pe_daemon_connections",
                "Connections accepted from the daemon.",
                counter_type,
            ),
            daemons(st),
            |d| ConstCounter::new(d.connections),
        )?;

        let reg = &self.report.registrar;
        gauge(
            &mut e,
            "proxy_pe_registrations",
            "PEs registered (or being registered) at the registrar.",
            clamp(st.registrations as u64),
        )?;
        gauge(
            &mut e,
            "proxy_pe_registrar_connected",
            "1 while an association with a registrar is open, else 0.",
            i64::from(reg.connected_to.is_some()),
        )?;
        counter(
            &mut e,
            "proxy_pe_registrations_rejected",
            "Registration responses with a rejection.",
            reg.rejected,
        )?;
        counter(
            &mut e,
            "proxy_pe_config_loads",
            "Successful configuration loads (1 = the initial one).",
            self.report.config_loads,
        )?;
        gauge(
            &mut e,
            "proxy_pe_config_reload_failed",
            "1 if the latest reload was rejected (the previous configuration stays).",
            i64::from(self.report.last_config_error.is_some()),
        )?;
        Ok(())
    }
}

/// Renders the page for `report` and the event counters (OpenMetrics, ends with `# EOF`).
pub fn render(report: Report, metrics: Arc<Metrics>) -> String {
    let mut r = Registry::default();
    r.register_collector(Box::new(Page { report, metrics }));
    let mut o = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut o, &r);
    o
}

/// Serves `/metrics` forever (the shared endpoint, [`rserpool_cli_assets::metrics_http`]):
/// each `GET` asks the driver for a fresh [`Report`] over `requests` and answers with the
/// rendered page (503 when the driver does not answer).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    requests: mpsc::UnboundedSender<ControlRequest>,
) {
    rserpool_cli_assets::metrics_http::serve(listener, move || {
        let metrics = metrics.clone();
        let requests = requests.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            requests.send(ControlRequest::Report(tx)).ok()?;
            let report = rx.await.ok()?;
            Some(render(report, metrics))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            proxy: crate::core::Status {
                mode: Default::default(),
                now_ms: 0,
                applications: Vec::new(),
                daemons: Vec::new(),
                sessions: 2,
                registrations: 1,
                events: Vec::new(),
                event_seq: 0,
            },
            registrar: Default::default(),
            config_path: String::new(),
            config_loads: 3,
            last_config_error: Some("bad".into()),
            ha: None,
        }
    }

    #[test]
    fn counters_by_reason_and_report_values() {
        let m = Arc::new(Metrics::default());
        m.session_opened(true);
        m.session_opened(true);
        m.session_opened(false);
        m.failover(FailoverReason::Moved, false);
        m.failover(FailoverReason::ServerFailed, true);
        m.failover(FailoverReason::ServerFailed, true);
        let t = render(report(), m);
        for line in [
            "proxy_pe_sessions 2\n",
            "proxy_pe_sessions_opened_total 2\n",
            "proxy_pe_sessions_refused_total 1\n",
            "proxy_pe_failovers_total{reason=\"server-failed\"} 2\n",
            "proxy_pe_failovers_total{reason=\"moved\"} 1\n",
            "proxy_pe_failovers_failed_total 1\n",
            "proxy_pe_registrations 1\n",
            "proxy_pe_registrar_connected 0\n",
            "proxy_pe_config_loads_total 3\n",
            "proxy_pe_config_reload_failed 1\n",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
        assert!(t.ends_with("# EOF\n"));
    }
}
