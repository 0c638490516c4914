//! Component Status Protocol reports of the proxy (`proxy-pe run --csp ADDR`,
//! asap/wire/INTEROP.md §8), for `rsp monitor` or rsplib's `cspmonitor`. The reporter reads
//! the proxy's status snapshot through its own control endpoint (the `status` command of
//! `proxy-pe status`), so the proxy's event loop is not touched; sending is
//! [`asap::csp::run_reporter`].
//!
//! Sender: group pool element, object = `--csp-id` (default: random). Status text:
//! `mode B: A apps, S/T servers selectable, N sessions, R registrations` (R: PEs registered or being registered); workload: the
//! mean load of the selectable servers; associations: the registrar association.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asap::csp::{run_reporter, CspReporter, CspReporterConfig, CspStatus};
use asap::wire::csp::{ComponentGroup, ComponentId, CspAssociation};

use crate::control::{query_at, Endpoint, Report};

/// The CSP status of a proxy snapshot.
pub fn status_of(r: &Report) -> CspStatus {
    let p = &r.proxy;
    let servers: Vec<_> = p.applications.iter().flat_map(|a| &a.servers).collect();
    let selectable: Vec<_> = servers.iter().filter(|s| s.selectable).collect();
    let workload = (!selectable.is_empty())
        .then(|| selectable.iter().map(|s| s.load).sum::<f64>() / selectable.len() as f64);
    let associations = r
        .registrar
        .connected_to
        .map(|_| CspAssociation {
            receiver: ComponentId::new(
                ComponentGroup::Registrar,
                r.registrar.home.map_or(0, u64::from),
            ),
            duration_us: 0,
            flags: 0,
            protocol: 132,
            ppid: 11,
        })
        .into_iter()
        .collect();
    CspStatus {
        status: format!(
            "mode {}: {} apps, {}/{} servers selectable, {} sessions, {} registrations",
            match p.mode {
                crate::config::Mode::Broker => "B",
                crate::config::Mode::Registration => "A",
            },
            p.applications.len(),
            selectable.len(),
            servers.len(),
            p.sessions,
            p.registrations
        ),
        workload,
        associations,
    }
}

/// Reports to `target` every `interval` as component `id` until `shutdown`, then a final
/// report; the status is the last snapshot read from `control` (`proxy starting` until
/// the first one).
pub async fn run(
    target: SocketAddr,
    interval: Duration,
    id: u64,
    control: Endpoint,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let latest = Arc::new(Mutex::new(CspStatus::text("proxy starting")));
    let poll = {
        let latest = latest.clone();
        async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                match query_at(&control).await {
                    Ok(r) => {
                        if let Ok(mut l) = latest.lock() {
                            *l = status_of(&r);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "CSP: no status snapshot"),
                }
            }
        }
    };
    let reporter = CspReporter::new(CspReporterConfig::new(
        ComponentId::new(ComponentGroup::PoolElement, id),
        interval,
    ));
    let report = run_reporter(
        target,
        reporter,
        move || latest.lock().map(|l| l.clone()).unwrap_or_default(),
        shutdown,
    );
    tokio::select! {
        r = report => r,
        () = poll => Ok(()),
    }
}
