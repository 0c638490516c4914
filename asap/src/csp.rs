//! Component Status Protocol reporting (rsplib's `cspmonitor` protocol,
//! asap/wire/INTEROP.md §8; codec in [`crate::wire::csp`]): a sans-I/O [`CspReporter`] that decides when a
//! report is due and builds it, and a tiny tokio driver, [`run_reporter`], that sends the
//! reports over UDP and a final one (flag `FINAL`) on shutdown.
//!
//! The component supplies its state as a [`CspStatus`] each time a report is due (the
//! registrar: PEs, pools, associations; a PE: its sessions). Reports are one-way and
//! unauthenticated, like rsplib's: they carry nothing the monitor acts upon except showing
//! them.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use asap::csp::{CspReporter, CspReporterConfig, CspStatus};
//! use asap::wire::csp::{ComponentGroup, ComponentId, CspReport};
//!
//! let id = ComponentId::new(ComponentGroup::PoolElement, 0x21212121);
//! let mut r = CspReporter::new(CspReporterConfig::new(id, Duration::from_secs(1)));
//! let t0 = Instant::now();
//! let first = r.handle_timeout(t0, || CspStatus::text("1 session")).expect("due at once");
//! assert_eq!(CspReport::decode(&first).unwrap().status, "1 session");
//! assert!(r.handle_timeout(t0 + Duration::from_millis(500), || CspStatus::text("x")).is_none());
//! assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
//! ```

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::wire::csp::{ComponentId, CspAssociation, CspReport, CSP_FLAG_FINAL};

/// rsplib's smallest report interval (`-cspinterval`); shorter ones are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Default report interval of our components' `--csp-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// What a component reports now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CspStatus {
    /// Free text (at most 127 bytes are sent).
    pub status: String,
    /// Workload fraction 0..=1; `None` = unknown.
    pub workload: Option<f64>,
    /// Associations to show.
    pub associations: Vec<CspAssociation>,
}

impl CspStatus {
    /// A status with only a text.
    pub fn text(s: impl Into<String>) -> Self {
        CspStatus {
            status: s.into(),
            ..CspStatus::default()
        }
    }
}

/// Settings of a [`CspReporter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CspReporterConfig {
    /// Who reports (group + registrar server ID / PE identifier).
    pub sender: ComponentId,
    /// Time between reports (at least [`MIN_INTERVAL`]).
    pub interval: Duration,
    /// Location text (default: `hostname`).
    pub location: String,
}

impl CspReporterConfig {
    /// Reports from `sender` every `interval` (raised to [`MIN_INTERVAL`]), located at
    /// this host's name.
    pub fn new(sender: ComponentId, interval: Duration) -> Self {
        CspReporterConfig {
            sender,
            interval: interval.max(MIN_INTERVAL),
            location: hostname(),
        }
    }
}

/// This host's name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The reporting state machine: time in, report bytes out.
#[derive(Debug)]
pub struct CspReporter {
    cfg: CspReporterConfig,
    started: Option<Instant>,
    next: Option<Instant>,
}

impl CspReporter {
    /// A reporter whose first report is due at once.
    pub fn new(cfg: CspReporterConfig) -> Self {
        CspReporter {
            cfg,
            started: None,
            next: None,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &CspReporterConfig {
        &self.cfg
    }

    /// When the next report is due (`None`: now, nothing sent yet).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn build(&mut self, now: Instant, st: CspStatus, flags: u8) -> Vec<u8> {
        let started = *self.started.get_or_insert(now);
        let interval_us = u32::try_from(self.cfg.interval.as_micros()).unwrap_or(u32::MAX);
        CspReport {
            flags,
            sender: self.cfg.sender,
            timestamp_us: u64::try_from(now.saturating_duration_since(started).as_micros())
                .unwrap_or(u64::MAX),
            report_interval_us: interval_us,
            location: self.cfg.location.clone(),
            status: st.status,
            workload: CspReport::encode_workload(st.workload),
            associations: st.associations,
        }
        .encode()
    }

    /// If a report is due at `now`, builds it from `status()` (called only then) and
    /// schedules the next one interval later.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        status: impl FnOnce() -> CspStatus,
    ) -> Option<Vec<u8>> {
        if self.next.is_some_and(|n| now < n) {
            return None;
        }
        self.next = Some(now + self.cfg.interval);
        Some(self.build(now, status(), 0))
    }

    /// The final report (flag `FINAL`, empty texts as rsplib sends it) for a component
    /// going away; the monitor drops the component at once.
    pub fn final_report(&mut self, now: Instant) -> Vec<u8> {
        self.next = None;
        self.build(now, CspStatus::default(), CSP_FLAG_FINAL)
    }
}

/// Sends `reporter`'s reports to `target` over UDP until `shutdown` completes, then the
/// final report. `status` is asked for the component's state each time a report is due.
/// Send errors (monitor down, no route) are logged at DEBUG and do not stop reporting.
pub async fn run_reporter(
    target: SocketAddr,
    mut reporter: CspReporter,
    mut status: impl FnMut() -> CspStatus,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    tracing::info!(%target, sender = %reporter.config().sender, interval = ?reporter.config().interval, "CSP reports enabled");
    tokio::pin!(shutdown);
    loop {
        let now = Instant::now();
        if let Some(bytes) = reporter.handle_timeout(now, &mut status) {
            if let Err(e) = sock.send_to(&bytes, target).await {
                tracing::debug!(%target, error = %e, "CSP report not sent");
            }
        }
        let wake = reporter.poll_timeout().unwrap_or(now);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let bytes = reporter.final_report(Instant::now());
    let _ = sock.send_to(&bytes, target).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::csp::ComponentGroup;

    #[test]
    fn schedule_timestamps_and_final_report() {
        let id = ComponentId::new(ComponentGroup::Registrar, 7);
        let mut r = CspReporter::new(CspReporterConfig::new(id, Duration::from_millis(10)));
        assert_eq!(
            r.config().interval,
            MIN_INTERVAL,
            "raised to rsplib's minimum"
        );
        let t0 = Instant::now();
        let a = CspReport::decode(&r.handle_timeout(t0, || CspStatus::text("a")).unwrap()).unwrap();
        assert_eq!(
            (a.timestamp_us, a.report_interval_us, a.flags),
            (0, 250_000, 0)
        );
        let mut asked = false;
        assert!(r
            .handle_timeout(t0 + Duration::from_millis(249), || {
                asked = true;
                CspStatus::default()
            })
            .is_none());
        assert!(!asked, "status is built only when a report is due");
        let b = r
            .handle_timeout(t0 + Duration::from_millis(300), || CspStatus {
                status: "b".into(),
                workload: Some(1.0),
                associations: Vec::new(),
            })
            .unwrap();
        let b = CspReport::decode(&b).unwrap();
        assert_eq!(
            (b.timestamp_us, b.workload, b.status.as_str()),
            (300_000, 0xFFFE, "b")
        );
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(550)));
        let f = CspReport::decode(&r.final_report(t0 + Duration::from_secs(1))).unwrap();
        assert!(f.is_final());
        assert_eq!(f.sender, id);
        assert_eq!(f.status, "");
    }
}

#[cfg(test)]
mod driver_tests {
    use super::*;
    use crate::wire::csp::ComponentGroup;

    #[tokio::test]
    async fn driver_sends_reports_then_final_on_shutdown() {
        let mon = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = mon.local_addr().unwrap();
        let id = ComponentId::new(ComponentGroup::PoolElement, 0x42);
        let reporter = CspReporter::new(CspReporterConfig::new(id, MIN_INTERVAL));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut n = 0;
        let task = tokio::spawn(run_reporter(
            target,
            reporter,
            move || {
                n += 1;
                CspStatus::text(format!("report {n}"))
            },
            async {
                let _ = rx.await;
            },
        ));
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        for _ in 0..2 {
            let (len, _) = tokio::time::timeout(Duration::from_secs(5), mon.recv_from(&mut buf))
                .await
                .expect("a report within 5 s")
                .unwrap();
            got.push(CspReport::decode(&buf[..len]).unwrap());
        }
        assert_eq!(got[0].status, "report 1");
        assert_eq!(got[1].status, "report 2");
        assert!(got[1].timestamp_us >= 250_000);
        tx.send(()).unwrap();
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), mon.recv_from(&mut buf))
            .await
            .expect("final report")
            .unwrap();
        let f = CspReport::decode(&buf[..len]).unwrap();
        assert!(f.is_final());
        assert_eq!(f.sender, id);
        task.await.unwrap().unwrap();
    }
}
