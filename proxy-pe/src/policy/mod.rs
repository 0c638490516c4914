//! Server selection policies of the proxy (seed 003 \[30\], \[31\], \[34\]).
//!
//! A policy sees every server of one application in configuration order as a
//! [`Candidate`] and picks one that is `available`. The proxy (mode B) is the only selector
//! for its applications, so the orders below are global and exact. The RFC 5356 policies
//! (mode A) are run by registrars and pool users; [`rfc`] maps an application's policy and
//! a server's daemon figures onto the Pool Member Selection Policy parameter.
//!
//! Ties always break by configuration order (lowest index first).

pub mod fewest_apps;
pub mod fifo;
pub mod least_load;
pub mod least_transactions;
pub mod rfc;
pub mod round_robin;

use serde::{Deserialize, Serialize};

/// What a policy knows about one server of the application.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Candidate {
    /// Selectable now: the daemon reports the application running (or the server is only
    /// suspect with its service port answering), no maintenance window, lifetime not
    /// expired.
    pub available: bool,
    /// Load in 0.0..=1.0 from the daemon's report (see `core::ServerView::load`).
    pub load: f64,
    /// Sessions currently relayed to this server by this proxy.
    pub active_sessions: u32,
    /// Sessions ever assigned to this server by this proxy.
    pub assigned_total: u64,
    /// Configured applications running concurrently on the server's host (daemon report).
    pub apps_running: u32,
}

/// A server selection policy for one application.
pub trait SelectionPolicy: Send + std::fmt::Debug {
    /// Picks the index of an available candidate, or `None` when none is available
    /// (seed 003 [33] step 197). Called once per session assignment; the policy may update
    /// its own state (the assignment is then reported through [`Self::assigned`]).
    fn select(&mut self, candidates: &[Candidate]) -> Option<usize>;
    /// The proxy assigned a session to server `index`.
    fn assigned(&mut self, _index: usize) {}
    /// A session on server `index` ended (seed 003 [35] step 209) or moved away.
    fn released(&mut self, _index: usize, _now_idle: bool) {}
}

/// The configured policy name of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Strict rotation in configuration order, skipping servers not running
    /// ([`round_robin::RoundRobin`]).
    RoundRobin,
    /// Idle queue ([`fifo::Fifo`]).
    Fifo,
    /// Lowest daemon-reported load ([`least_load::LeastLoad`]).
    LeastLoad,
    /// Fewest active, then fewest assigned sessions
    /// ([`least_transactions::LeastTransactions`]).
    LeastTransactions,
    /// Fewest applications running concurrently on the host
    /// ([`fewest_apps::FewestApps`]).
    FewestApplications,
    /// RFC 5356 §4.1 Round Robin, run by the registrar/PU (mode A only).
    RfcRoundRobin,
    /// RFC 5356 §4.2 Weighted Round Robin (weight from `server.weight` or the daemon's
    /// load hint).
    RfcWeightedRoundRobin,
    /// RFC 5356 §4.3 Random.
    RfcRandom,
    /// RFC 5356 §4.4 Weighted Random.
    RfcWeightedRandom,
    /// RFC 5356 §4.5 Priority.
    RfcPriority,
    /// RFC 5356 §5.1 Least Used (load from the daemon).
    RfcLeastUsed,
    /// RFC 5356 §5.4 Randomized Least Used.
    RfcRandomizedLeastUsed,
}

impl PolicyKind {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::RoundRobin => "round-robin",
            PolicyKind::Fifo => "fifo",
            PolicyKind::LeastLoad => "least-load",
            PolicyKind::LeastTransactions => "least-transactions",
            PolicyKind::FewestApplications => "fewest-applications",
            PolicyKind::RfcRoundRobin => "rfc-round-robin",
            PolicyKind::RfcWeightedRoundRobin => "rfc-weighted-round-robin",
            PolicyKind::RfcRandom => "rfc-random",
            PolicyKind::RfcWeightedRandom => "rfc-weighted-random",
            PolicyKind::RfcPriority => "rfc-priority",
            PolicyKind::RfcLeastUsed => "rfc-least-used",
            PolicyKind::RfcRandomizedLeastUsed => "rfc-randomized-least-used",
        }
    }

    /// The label of the pooling table (seed 003 [30]: "Round-robin Priority").
    pub fn table_label(self) -> &'static str {
        match self {
            PolicyKind::RoundRobin => "Round-robin Priority",
            PolicyKind::Fifo => "FIFO Priority",
            PolicyKind::LeastLoad => "Least-load Priority",
            PolicyKind::LeastTransactions => "Transaction-count Priority",
            PolicyKind::FewestApplications => "Concurrent-applications Priority",
            PolicyKind::RfcRoundRobin => "RFC 5356 Round Robin",
            PolicyKind::RfcWeightedRoundRobin => "RFC 5356 Weighted Round Robin",
            PolicyKind::RfcRandom => "RFC 5356 Random",
            PolicyKind::RfcWeightedRandom => "RFC 5356 Weighted Random",
            PolicyKind::RfcPriority => "RFC 5356 Priority",
            PolicyKind::RfcLeastUsed => "RFC 5356 Least Used",
            PolicyKind::RfcRandomizedLeastUsed => "RFC 5356 Randomized Least Used",
        }
    }

    /// True for the policies the proxy runs itself (mode B).
    pub fn broker_capable(self) -> bool {
        matches!(
            self,
            PolicyKind::RoundRobin
                | PolicyKind::Fifo
                | PolicyKind::LeastLoad
                | PolicyKind::LeastTransactions
                | PolicyKind::FewestApplications
        )
    }

    /// A fresh selector for a broker-capable policy (`None` for RFC 5356 ones, which the
    /// proxy never runs itself).
    pub fn selector(self) -> Option<Box<dyn SelectionPolicy>> {
        Some(match self {
            PolicyKind::RoundRobin => Box::new(round_robin::RoundRobin::default()),
            PolicyKind::Fifo => Box::new(fifo::Fifo::default()),
            PolicyKind::LeastLoad => Box::new(least_load::LeastLoad),
            PolicyKind::LeastTransactions => Box::new(least_transactions::LeastTransactions),
            PolicyKind::FewestApplications => Box::new(fewest_apps::FewestApps),
            _ => return None,
        })
    }
}

/// Defines a stateless policy that picks the available candidate with the smallest key
/// (ties by configuration order, see [`min_by_key`]).
macro_rules! min_key_policy {
    ($(#[$doc:meta])* $name:ident, |$c:ident| $key:expr) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, Copy)]
        pub struct $name;

        impl $crate::policy::SelectionPolicy for $name {
            fn select(&mut self, candidates: &[$crate::policy::Candidate]) -> Option<usize> {
                $crate::policy::min_by_key(candidates, |$c: &$crate::policy::Candidate| $key)
            }
        }
    };
}
use min_key_policy;

/// Index of the available candidate with the smallest key; ties by lowest index.
pub(crate) fn min_by_key<K: PartialOrd>(
    candidates: &[Candidate],
    key: impl Fn(&Candidate) -> K,
) -> Option<usize> {
    let mut best: Option<(usize, K)> = None;
    for (i, c) in candidates.iter().enumerate() {
        if !c.available {
            continue;
        }
        let k = key(c);
        match &best {
            Some((_, bk)) if k.partial_cmp(bk) != Some(std::cmp::Ordering::Less) => {}
            _ => best = Some((i, k)),
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
pub(crate) fn up(n: usize) -> Vec<Candidate> {
    vec![
        Candidate {
            available: true,
            ..Candidate::default()
        };
        n
    ]
}

/// Available candidates, one a value, each with that value set by `set`.
#[cfg(test)]
pub(crate) fn up_with<T: Copy>(values: &[T], set: impl Fn(&mut Candidate, T)) -> Vec<Candidate> {
    let mut c = up(values.len());
    for (c, v) in c.iter_mut().zip(values) {
        set(c, *v);
    }
    c
}

/// Asserts that `policy`, over the [`up_with`] candidates of `values`, picks `best`, and
/// `next` once `best` is unavailable; returns those candidates (`best` unavailable).
#[cfg(test)]
pub(crate) fn assert_picks<T: Copy + std::fmt::Debug>(
    policy: &mut dyn SelectionPolicy,
    values: &[T],
    set: impl Fn(&mut Candidate, T),
    [best, next]: [usize; 2],
) -> Vec<Candidate> {
    let mut c = up_with(values, set);
    assert_eq!(policy.select(&c), Some(best), "{values:?}");
    c[best].available = false;
    assert_eq!(policy.select(&c), Some(next), "{values:?} without {best}");
    c
}
