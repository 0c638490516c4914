//! `rsp serve`: a pool element offering one of rsplib `rspserver`'s standard services
//! (echo, discard, daytime) through the `asap` PE builder (RFC 5352 registration, the
//! session layer of RFC 5351 §2.5), for smoke tests of a pool.
//!
//! * **echo**: every message comes back unchanged on the session (rsplib `EchoServer`).
//! * **discard**: every message is dropped (rsplib `DiscardServer`).
//! * **daytime**: the time as `Weekday, DD-Month-YYYY HH:MM:SS.uuuuuu\n` (rsplib's
//!   `DaytimeServer` format; ours is in UTC) when the session opens and again for every
//!   message received. rsplib's server then closes the association; ours leaves the close
//!   to the PU, because a PE that closes makes an RSerPool PU fail over (and report the PE
//!   unreachable) rather than end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use asap::session::{ServerEvent, ServerSession, SessionError};

/// The service a `rsp serve` PE offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Echo every message.
    Echo,
    /// Drop every message.
    Discard,
    /// Send the time.
    Daytime,
}

impl Service {
    /// Lower-case name (`echo`, `discard`, `daytime`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Daytime => "daytime",
        }
    }
}

/// Counters of a serving PE (shown in its CSP status and its log).
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Sessions now open.
    pub sessions: AtomicU64,
    /// Sessions accepted since the start.
    pub sessions_total: AtomicU64,
    /// Messages received.
    pub messages: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
}

impl ServeStats {
    /// The status text sent in CSP reports, e.g. `echo: 1 session, 3 messages`.
    pub fn status(&self, service: Service) -> String {
        let s = self.sessions.load(Ordering::Relaxed);
        let m = self.messages.load(Ordering::Relaxed);
        format!(
            "{}: {s} session{}, {m} message{}",
            service.name(),
            if s == 1 { "" } else { "s" },
            if m == 1 { "" } else { "s" }
        )
    }
}

const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `t` as rsplib's daytime service prints it (`%A, %d-%B-%Y %H:%M:%S.uuuuuu\n`), in UTC.
pub fn daytime(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02}-{}-{} {:02}:{:02}:{:02}.{:06}\n",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Serves one session with `service`, counting into `stats`.
pub async fn session(
    mut s: ServerSession,
    service: Service,
    stats: Arc<ServeStats>,
) -> Result<(), SessionError> {
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.sessions_total.fetch_add(1, Ordering::Relaxed);
    let peer = s.peer_addrs().to_vec();
    tracing::info!(?peer, service = service.name(), "session opened");
    let r = async {
        if service == Service::Daytime {
            s.send(daytime(SystemTime::now()).into_bytes()).await?;
        }
        while let Some(ev) = s.recv().await? {
            match ev {
                ServerEvent::Data(d) => {
                    stats.messages.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                    tracing::debug!(len = d.len(), service = service.name(), "message");
                    match service {
                        Service::Echo => s.send(d).await?,
                        Service::Discard => {}
                        Service::Daytime => s.send(daytime(SystemTime::now()).into_bytes()).await?,
                    }
                }
                other => tracing::debug!(?other, "session event ignored"),
            }
        }
        Ok(())
    }
    .await;
    stats.sessions.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(?peer, "session closed");
    r
}

/// A selection policy from rsplib's `-policy=` names (RFC 5356 §3): `rr`/`roundrobin`,
/// `rand`/`random`, `lu`/`leastused`; weighted ones as `wrr:W`, `wrand:W`, `prio:P`
/// (`weightedroundrobin:W` ...). Adaptive policies start at load 0.
pub fn parse_policy(s: &str) -> Result<asap::wire::Policy, String> {
    use asap::wire::Policy;
    let lower = s.to_ascii_lowercase();
    let (name, arg) = match lower.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (lower.as_str(), None),
    };
    let num = |default: u32| -> Result<u32, String> {
        arg.map_or(Ok(default), |a| {
            a.parse()
                .map_err(|_| format!("--policy {s}: `{a}` is not a number"))
        })
    };
    Ok(match name {
        "rr" | "roundrobin" => Policy::RoundRobin,
        "wrr" | "weightedroundrobin" => Policy::WeightedRoundRobin { weight: num(1)? },
        "rand" | "random" => Policy::Random,
        "wrand" | "weightedrandom" => Policy::WeightedRandom { weight: num(1)? },
        "prio" | "priority" => Policy::Priority { priority: num(0)? },
        "lu" | "leastused" => Policy::LeastUsed { load: 0 },
        "rlu" | "randomizedleastused" => Policy::RandomizedLeastUsed { load: 0 },
        other => {
            return Err(format!(
                "--policy {other}: unknown (rr, wrr[:W], rand, wrand[:W], prio[:P], lu, rlu)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn daytime_format_matches_rsplib() {
        // 2026-12-06 04:05:06.000007 UTC is a Sunday.
        let t = UNIX_EPOCH + Duration::from_secs(1_796_529_906) + Duration::from_micros(7);
        assert_eq!(daytime(t), "Sunday, 06-December-2026 04:05:06.000007\n");
        assert_eq!(
            daytime(UNIX_EPOCH),
            "Thursday, 01-January-1970 00:00:00.000000\n"
        );
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(daytime(leap), "Tuesday, 29-February-2000 00:00:00.000000\n");
    }

    #[test]
    fn policies_by_short_and_rsplib_names() {
        use asap::wire::Policy;
        assert_eq!(parse_policy("rr"), Ok(Policy::RoundRobin));
        assert_eq!(parse_policy("RoundRobin"), Ok(Policy::RoundRobin));
        assert_eq!(
            parse_policy("wrr:3"),
            Ok(Policy::WeightedRoundRobin { weight: 3 })
        );
        assert_eq!(
            parse_policy("priority:7"),
            Ok(Policy::Priority { priority: 7 })
        );
        assert_eq!(parse_policy("lu"), Ok(Policy::LeastUsed { load: 0 }));
        assert!(parse_policy("wrr:x").unwrap_err().contains("not a number"));
        assert!(parse_policy("fancy").unwrap_err().contains("unknown"));
    }

    #[test]
    fn status_text() {
        let s = ServeStats::default();
        s.sessions.store(1, Ordering::Relaxed);
        s.messages.store(3, Ordering::Relaxed);
        assert_eq!(s.status(Service::Echo), "echo: 1 session, 3 messages");
    }
}
