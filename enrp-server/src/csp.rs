//! Component Status Protocol reports of the registrar (`--csp ADDR`, asap/wire/INTEROP.md §8):
//! what rsplib's `rspregistrar -cspserver=` sends to `cspmonitor`, read from the driver's
//! [`Stats`] snapshot. The reporting itself is [`asap::csp`]; this module only says what a
//! registrar reports.
//!
//! Status text: `N PEs in P Pools, A Assocs` (rsplib: `N[M] PEs in P Pools, Q Peers`).
//! Location: `hostname: <ASAP addresses>`. Sender: group registrar, object = server ID.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use asap::csp::{run_reporter, CspReporter, CspReporterConfig, CspStatus};
use asap::wire::csp::{ComponentGroup, ComponentId};
use asap::wire::ServerId;

use crate::driver::Stats;

/// The registrar's status now.
pub fn status(stats: &Stats) -> CspStatus {
    CspStatus::text(format!(
        "{} PEs in {} Pools, {} Assocs",
        stats.pes.load(Ordering::Relaxed),
        stats.pools.load(Ordering::Relaxed),
        stats.associations.load(Ordering::Relaxed)
    ))
}

/// The reporter of registrar `server_id` listening for ASAP on `asap`.
pub fn reporter(server_id: ServerId, asap: &[SocketAddr], interval: Duration) -> CspReporter {
    let mut cfg = CspReporterConfig::new(
        ComponentId::new(ComponentGroup::Registrar, server_id.into()),
        interval,
    );
    let addrs: Vec<String> = asap.iter().map(ToString::to_string).collect();
    if !addrs.is_empty() {
        cfg.location = format!("{}: {}", cfg.location, addrs.join(", "));
    }
    CspReporter::new(cfg)
}

/// Sends the registrar's reports to `target` until `shutdown`, then a final one.
pub async fn run(
    target: SocketAddr,
    reporter: CspReporter,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_reporter(target, reporter, move || status(&stats), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use asap::wire::csp::CspReport;
    use std::time::Instant;

    #[test]
    fn reports_the_stats_snapshot() {
        let stats = Stats::default();
        stats.pes.store(3, Ordering::Relaxed);
        stats.pools.store(2, Ordering::Relaxed);
        stats.associations.store(4, Ordering::Relaxed);
        let mut r = reporter(
            0xaaa1,
            &["10.0.0.1:3863".parse().unwrap()],
            Duration::from_secs(1),
        );
        let b = r.handle_timeout(Instant::now(), || status(&stats)).unwrap();
        let d = CspReport::decode(&b).unwrap();
        assert_eq!(d.status, "3 PEs in 2 Pools, 4 Assocs");
        assert!(d.location.ends_with(": 10.0.0.1:3863"), "{}", d.location);
        assert_eq!(d.sender.group(), ComponentGroup::Registrar);
        assert_eq!(d.sender.object(), 0xaaa1);
        assert_eq!(d.report_interval_us, 1_000_000);
    }
}
