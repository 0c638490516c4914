//! The metrics endpoint (`legacy-daemon --metrics ADDR`, `GET /metrics`): poll duration,
//! reports sent per proxy and kind, proxy link state, application states, in the
//! OpenMetrics text format encoded by `prometheus-client` (issue 16 item 3; names listed in
//! the README "Metrics" section and used by `deploy/` alert rules and dashboard).
//!
//! The daemon and its reporters update a [`Metrics`] handle (cheap atomic updates); a scrape
//! renders the registry. The endpoint serves one page per connection, then closes.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use legacy_protocol::DaemonMessage;

/// Content type of [`Metrics::render`]'s output.
pub use rserpool_cli_assets::metrics_http::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// The daemon's metrics, shared by the core loop and every reporter task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    poll_duration: Histogram,
    reports: Family<Labels, Counter>,
    link_up: Family<Labels, Gauge>,
    connects: Family<Labels, Counter>,
    app_running: Family<Labels, Gauge>,
    config_version: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The protocol name of a daemon message kind (PROTOCOL.md §2), the `kind` label.
pub fn message_kind(msg: &DaemonMessage) -> &'static str {
    match msg {
        DaemonMessage::Hello(_) => "hello",
        DaemonMessage::Snapshot(_) => "snapshot",
        DaemonMessage::Delta(_) => "delta",
        DaemonMessage::Heartbeat(_) => "heartbeat",
        DaemonMessage::ConfigAck(_) => "config_ack",
    }
}

impl Metrics {
    /// A fresh set of metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // 100 µs .. ~3.3 s: a poll of a busy host's /proc takes a few ms (BENCHMARKS.md).
        let poll_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let reports = Family::<Labels, Counter>::default();
        let link_up = Family::<Labels, Gauge>::default();
        let connects = Family::<Labels, Counter>::default();
        let app_running = Family::<Labels, Gauge>::default();
        let config_version = Gauge::default();
        registry.register_with_unit(
            "legacy_daemon_poll_duration",
            "Time of one poll of the process table.",
            prometheus_client::registry::Unit::Seconds,
            poll_duration.clone(),
        );
        registry.register(
            "legacy_daemon_reports",
            "Frames sent to proxies, by proxy and message kind (hello, snapshot, delta, heartbeat, config_ack).",
            reports.clone(),
        );
        registry.register(
            "legacy_daemon_proxy_link_up",
            "1 while the authenticated link to the proxy is open, else 0.",
            link_up.clone(),
        );
        registry.register(
            "legacy_daemon_proxy_connects",
            "Connection attempts to proxies, by proxy and result (ok, failed).",
            connects.clone(),
        );
        registry.register(
            "legacy_daemon_application_running",
            "1 if the watched application is running (as last reported), else 0.",
            app_running.clone(),
        );
        registry.register(
            "legacy_daemon_config_version",
            "Configuration version in force.",
            config_version.clone(),
        );
        Self {
            registry,
            poll_duration,
            reports,
            link_up,
            connects,
            app_running,
            config_version,
        }
    }

    /// One poll took `took`; `apps` are (name, running) of every watched application.
    pub fn polled<'a>(&self, took: Duration, apps: impl IntoIterator<Item = (&'a str, bool)>) {
        self.poll_duration.observe(took.as_secs_f64());
        self.app_running.clear();
        for (name, running) in apps {
            self.app_running
                .get_or_create(&vec![("app", name.to_string())])
                .set(i64::from(running));
        }
    }

    /// The configuration version in force changed.
    pub fn set_config_version(&self, version: u64) {
        self.config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// A frame was written to `proxy`.
    pub fn sent(&self, proxy: &str, msg: &DaemonMessage) {
        self.reports
            .get_or_create(&vec![
                ("proxy", proxy.to_string()),
                ("kind", message_kind(msg).to_string()),
            ])
            .inc();
    }

    /// A connection attempt to `proxy` ended: `ok` means connected and authenticated.
    pub fn connect_result(&self, proxy: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.connects
            .get_or_create(&vec![
                ("proxy", proxy.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// The link to `proxy` opened (`true`) or closed.
    pub fn set_link(&self, proxy: &str, up: bool) {
        self.link_up
            .get_or_create(&vec![("proxy", proxy.to_string())])
            .set(i64::from(up));
    }

    /// All metrics (OpenMetrics text, ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut o = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut o, &self.registry);
        o
    }
}

/// Serves `/metrics` forever (the shared endpoint, [`rserpool_cli_assets::metrics_http`]).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    rserpool_cli_assets::metrics_http::serve(listener, move || {
        let metrics = metrics.clone();
        async move { Some(metrics.render()) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_values() {
        let m = Metrics::new();
        m.polled(Duration::from_millis(3), [("a", true), ("b", false)]);
        m.set_config_version(4);
        m.connect_result("10.0.0.1:7100", true);
        m.set_link("10.0.0.1:7100", true);
        m.sent(
            "10.0.0.1:7100",
            &DaemonMessage::Heartbeat(legacy_protocol::Heartbeat {
                heartbeat_seq: 1,
                state_seq: 0,
                config_version: 4,
                uptime_s: 0,
            }),
        );
        let t = m.render();
        assert!(
            t.contains("legacy_daemon_poll_duration_seconds_count 1\n"),
            "{t}"
        );
        assert!(
            t.contains("legacy_daemon_poll_duration_seconds_bucket{le=\"0.0032\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("legacy_daemon_poll_duration_seconds_bucket{le=\"0.0016\"} 0\n"),
            "{t}"
        );
        assert!(t.contains("legacy_daemon_application_running{app=\"a\"} 1\n"));
        assert!(t.contains("legacy_daemon_application_running{app=\"b\"} 0\n"));
        assert!(t.contains("legacy_daemon_config_version 4\n"));
        assert!(t.contains(
            "legacy_daemon_reports_total{proxy=\"10.0.0.1:7100\",kind=\"heartbeat\"} 1\n"
        ));
        assert!(t.contains("legacy_daemon_proxy_link_up{proxy=\"10.0.0.1:7100\"} 1\n"));
        assert!(t.contains(
            "legacy_daemon_proxy_connects_total{proxy=\"10.0.0.1:7100\",result=\"ok\"} 1\n"
        ));
        assert!(t.ends_with("# EOF\n"));
        // An application no longer watched disappears at the next poll.
        m.polled(Duration::from_millis(1), [("a", false)]);
        let t = m.render();
        assert!(t.contains("legacy_daemon_application_running{app=\"a\"} 0\n"));
        assert!(!t.contains("app=\"b\""));
    }
}
