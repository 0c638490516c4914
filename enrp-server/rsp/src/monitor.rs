//! `rsp monitor`: the live table of Component Status Protocol reports (rsplib
//! `cspmonitor`'s job; asap/wire/INTEROP.md §8, codec [`asap::wire::csp`]).
//!
//! [`Monitor`] is sans-I/O: datagrams and the time go in, the table comes out. A component
//! leaves the table when it sends a final report, or when nothing was heard from it for
//! [`EXPIRY_INTERVALS`] of its own report intervals (at least [`MIN_EXPIRY`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asap::wire::csp::{ComponentId, CspError, CspReport};
use serde::Serialize;

/// A component is dropped after this many of its report intervals without a report.
pub const EXPIRY_INTERVALS: u32 = 5;
/// Lower bound of the silence after which a component is dropped.
pub const MIN_EXPIRY: Duration = Duration::from_secs(3);

/// One component as last heard.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its last report.
    pub report: CspReport,
    /// Where the report came from.
    pub from: SocketAddr,
    /// When the first report arrived.
    pub first: Instant,
    /// When the last one arrived.
    pub last: Instant,
    /// Reports received.
    pub reports: u64,
}

impl Entry {
    fn expiry(&self) -> Duration {
        (Duration::from_micros(u64::from(self.report.report_interval_us)) * EXPIRY_INTERVALS)
            .max(MIN_EXPIRY)
    }
}

/// What one datagram did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A component appeared.
    New(ComponentId),
    /// A known component reported again.
    Refreshed(ComponentId),
    /// A component said goodbye (final report) and was removed.
    Gone(ComponentId),
}

/// The table of components.
#[derive(Debug, Default)]
pub struct Monitor {
    entries: BTreeMap<ComponentId, Entry>,
    /// Datagrams that did not decode.
    pub errors: u64,
}

impl Monitor {
    /// An empty table.
    pub fn new() -> Self {
        Monitor::default()
    }

    /// Handles one datagram from `from` received at `now`.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(CspReport, Update), CspError> {
        let report = match CspReport::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.errors += 1;
                return Err(e);
            }
        };
        let id = report.sender;
        if report.is_final() {
            self.entries.remove(&id);
            return Ok((report, Update::Gone(id)));
        }
        let update = match self.entries.get_mut(&id) {
            Some(e) => {
                e.report = report.clone();
                e.from = from;
                e.last = now;
                e.reports += 1;
                Update::Refreshed(id)
            }
            None => {
                self.entries.insert(
                    id,
                    Entry {
                        report: report.clone(),
                        from,
                        first: now,
                        last: now,
                        reports: 1,
                    },
                );
                Update::New(id)
            }
        };
        Ok((report, update))
    }

    /// Drops the components silent for too long; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<ComponentId> {
        let gone: Vec<ComponentId> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last) > e.expiry())
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.entries.remove(id);
        }
        gone
    }

    /// The components, by ID (registrars first, then PEs, then PUs).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The table as text: one line per component.
    pub fn table(&self, now: Instant) -> String {
        let rows: Vec<[String; 7]> = self
            .entries
            .values()
            .map(|e| {
                let r = &e.report;
                [
                    r.sender.group().name(),
                    format!("{:x}", r.sender.object()),
                    r.location.clone(),
                    r.status.clone(),
                    r.workload_fraction()
                        .map_or("-".into(), |w| format!("{:.1}%", w * 100.0)),
                    r.associations.len().to_string(),
                    format!(
                        "{:.1}s",
                        now.saturating_duration_since(e.last).as_secs_f64()
                    ),
                ]
            })
            .collect();
        let head = ["GROUP", "ID", "LOCATION", "STATUS", "LOAD", "ASSOCS", "AGE"];
        let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[&str]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                let _ = write!(l, "{c:<width$}  ", width = w[i]);
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut out, &head);
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            line(&mut out, &cells);
        }
        out
    }
}

/// One report as `rsp monitor --json` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
pub struct ReportView<'a> {
    /// Sender address of the datagram.
    pub from: SocketAddr,
    /// `new`, `refreshed` or `gone`.
    pub event: &'static str,
    /// Sender group name (`registrar`, `pe`, `pu`).
    pub group: String,
    /// Sender object ID (registrar server ID, PE identifier), hex.
    pub object: String,
    /// Workload as a fraction, `null` when unknown.
    pub workload_fraction: Option<f64>,
    /// The decoded report.
    pub report: &'a CspReport,
}

impl<'a> ReportView<'a> {
    /// The view of `report` from `from` after `update`.
    pub fn new(from: SocketAddr, report: &'a CspReport, update: &Update) -> Self {
        ReportView {
            from,
            event: match update {
                Update::New(_) => "new",
                Update::Refreshed(_) => "refreshed",
                Update::Gone(_) => "gone",
            },
            group: report.sender.group().name(),
            object: format!("{:x}", report.sender.object()),
            workload_fraction: report.workload_fraction(),
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asap::wire::csp::ComponentGroup;

    fn report(obj: u64, status: &str, interval_us: u32) -> CspReport {
        CspReport::new(
            ComponentId::new(ComponentGroup::Registrar, obj),
            interval_us,
        )
        .with_status(status)
    }

    #[test]
    fn new_refresh_final_expire_and_garbage() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let t0 = Instant::now();
        let mut m = Monitor::new();
        let a = report(1, "a", 1_000_000);
        assert_eq!(
            m.on_datagram(t0, from, &a.encode()).unwrap().1,
            Update::New(a.sender)
        );
        let a2 = report(1, "a2", 1_000_000);
        assert_eq!(
            m.on_datagram(t0, from, &a2.encode()).unwrap().1,
            Update::Refreshed(a.sender)
        );
        assert_eq!(m.entries().next().unwrap().report.status, "a2");
        assert_eq!(m.entries().next().unwrap().reports, 2);
        let b = report(2, "b", 250_000);
        m.on_datagram(t0, from, &b.encode()).unwrap();
        let table = m.table(t0);
        assert!(table.starts_with("GROUP"), "{table}");
        assert!(table.contains("registrar  1   "), "{table}");
        assert_eq!(table.lines().count(), 3);
        // b expires after max(5 × 250 ms, 3 s); a after 5 s.
        assert!(m.expire(t0 + Duration::from_millis(2900)).is_empty());
        assert_eq!(m.expire(t0 + Duration::from_millis(3100)), vec![b.sender]);
        let mut fin = report(1, "", 1_000_000);
        fin.flags = asap::wire::csp::CSP_FLAG_FINAL;
        assert_eq!(
            m.on_datagram(t0, from, &fin.encode()).unwrap().1,
            Update::Gone(a.sender)
        );
        assert_eq!(m.entries().count(), 0);
        assert!(m.on_datagram(t0, from, b"junk").is_err());
        assert_eq!(m.errors, 1);
    }
}
