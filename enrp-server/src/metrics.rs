//! The metrics endpoint (`GET /metrics`): the driver's [`Stats`] in the OpenMetrics text
//! format, encoded by `prometheus-client`. Every request gets the full page; the connection
//! then closes.
//!
//! The counters live in [`Stats`] as atomics that the driver bumps on the hot path; a
//! [`Collector`] reads them at scrape time, so scraping never locks the registrar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::core::{Refusal, RemovalReason};
use crate::driver::Stats;

/// Content type of [`render`]'s output.
pub use rserpool_cli_assets::metrics_http::CONTENT_TYPE;

/// Reads [`Stats`] at each scrape.
#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

/// Counters: (name without `_total`, help, value).
fn counters(s: &Stats) -> [(&'static str, &'static str, &AtomicU64); 7] {
    [
        (
            "enrp_registrations",
            "Accepted ASAP registrations and re-registrations.",
            &s.registrations,
        ),
        (
            "enrp_registrations_rejected",
            "Refused ASAP registrations.",
            &s.registrations_rejected,
        ),
        (
            "enrp_handle_resolutions",
            "Handle resolutions answered with pool elements.",
            &s.resolutions,
        ),
        (
            "enrp_handle_resolutions_failed",
            "Handle resolutions answered with an Operation Error.",
            &s.resolutions_failed,
        ),
        (
            "enrp_protocol_errors",
            "Malformed or unrecognised messages.",
            &s.protocol_errors,
        ),
        (
            "enrp_rate_limited",
            "Requests refused by per-peer rate limits.",
            &s.rate_limited,
        ),
        (
            "enrp_tls_refused",
            "Connections closed by a TLS listener: handshake failed or timed out, or \
             plaintext where TLS is required (SECURITY.md).",
            &s.tls_refused,
        ),
    ]
}

/// Gauges: (name, help, value).
fn gauges(s: &Stats) -> [(&'static str, &'static str, &AtomicU64); 3] {
    [
        ("enrp_pools", "Pools in the handlespace.", &s.pools),
        (
            "enrp_pool_elements",
            "Pool elements in the handlespace.",
            &s.pes,
        ),
        (
            "enrp_associations",
            "Open ASAP/ENRP associations.",
            &s.associations,
        ),
    ]
}

fn gauge_value(a: &AtomicU64) -> i64 {
    i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

/// Encodes the counter family `name` with one series per `(value of label, count)`.
fn encode_labelled<'c>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    series: impl Iterator<Item = (&'static str, &'c AtomicU64)>,
) -> Result<(), std::fmt::Error> {
    let proto = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, proto.metric_type())?;
    for (value, count) in series {
        let labels = [(label, value)];
        ConstCounter::new(count.load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &*self.0;
        for (name, help, value) in counters(s) {
            let c = ConstCounter::new(value.load(Ordering::Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        encode_labelled(
            &mut encoder,
            "enrp_pe_removals",
            "Pool elements removed, by reason.",
            "reason",
            RemovalReason::ALL
                .iter()
                .map(|r| r.as_str())
                .zip(&s.removals),
        )?;
        encode_labelled(
            &mut encoder,
            "enrp_security_refusals",
            "Input refused at a trust boundary (SECURITY.md), by kind.",
            "what",
            Refusal::ALL.iter().map(|r| r.as_str()).zip(&s.refusals),
        )?;
        for (name, help, value) in gauges(s) {
            let g = ConstGauge::new(gauge_value(value));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// A registry exposing `stats`.
pub fn registry(stats: Arc<Stats>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StatsCollector(stats)));
    r
}

/// Renders all metrics (OpenMetrics text, ends with `# EOF`).
pub fn render(registry: &Registry) -> String {
    let mut o = String::new();
    // Writing into a String cannot fail; the encoder only returns fmt::Error from the writer.
    let _ = prometheus_client::encoding::text::encode(&mut o, registry);
    o
}

/// Serves `/metrics` forever (the shared endpoint, [`rserpool_cli_assets::metrics_http`]).
pub async fn serve(listener: TcpListener, stats: Arc<Stats>) {
    let registry = Arc::new(registry(stats));
    rserpool_cli_assets::metrics_http::serve(listener, move || {
        let registry = registry.clone();
        async move { Some(render(&registry)) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let s = Arc::new(Stats::default());
        s.registrations.fetch_add(3, Ordering::Relaxed);
        s.removals[1].fetch_add(2, Ordering::Relaxed);
        s.pes.store(7, Ordering::Relaxed);
        s.refusals[0].fetch_add(4, Ordering::Relaxed);
        let r = registry(s.clone());
        let text = render(&r);
        rserpool_tests::metrics::assert_samples(
            &text,
            &[
                "# TYPE enrp_registrations counter\nenrp_registrations_total 3\n",
                "enrp_pe_removals_total{reason=\"keep-alive-timeout\"} 2\n",
                "enrp_pe_removals_total{reason=\"deregistered\"} 0\n",
                "# TYPE enrp_pool_elements gauge\nenrp_pool_elements 7\n",
                "enrp_security_refusals_total{what=\"peer-message\"} 4\n",
                "enrp_security_refusals_total{what=\"handle-table\"} 0\n",
            ],
        );
        assert!(text.ends_with("# EOF\n"));
        // read at scrape time: a later change shows on the next render
        s.pes.store(9, Ordering::Relaxed);
        assert!(render(&r).contains("enrp_pool_elements 9\n"));
    }
}
