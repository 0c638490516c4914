//! The sans-I/O pool user: handle resolution with retransmission, the PU cache with
//! stale.cache.value expiry, PU-side selection and ENDPOINT_UNREACHABLE reports
//! (RFC 5352 §3; RFC 5356 §4–5 PU side; asap/wire/INTEROP.md §5.2, §5.3).
//!
//! Requests are answered from the cache while it is fresh; otherwise a HANDLE_RESOLUTION
//! (with the Handle Resolution Option when [`PuConfig::resolution_items`] is set,
//! asap/wire/INTEROP.md §7 item 2) goes to the registrar. Without an answer within T1-ENRPrequest it is sent again
//! up to MAX-REQUEST-RETRANSMIT times, then the registrar is abandoned and the request moves
//! to the next one found by the hunt. A request fails only after
//! [`PuConfig::request_deadline`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{debug, info, warn};

use crate::handlespace::cache::{PoolUserCache, DEFAULT_STALE_CACHE_VALUE};
use crate::registrar_client::{Action, ConnId, LinkConfig, LinkEvent, RegistrarLink};
use crate::wire::asap_msg::{
    EndpointUnreachable, HandleResolution, HandleResolutionResponse, ServerAnnounce,
};
use crate::wire::{
    AsapMessage, CauseCode, HandleResolutionOption, OperationError, PeIdentifier, PoolElementInfo,
    PoolHandle,
};

/// RFC 5352 §5 T1-ENRPrequest default.
pub const T1_ENRP_REQUEST: Duration = Duration::from_secs(15);
/// RFC 5352 §5 MAX-REQUEST-RETRANSMIT default.
pub const MAX_REQUEST_RETRANSMIT: u32 = 2;

/// Configuration of a pool user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuConfig {
    /// Registrar discovery and hunt.
    pub link: LinkConfig,
    /// stale.cache.value: how long resolution results are served from the cache (30 s).
    pub stale_cache_value: Duration,
    /// T1-ENRPrequest: wait for a HANDLE_RESOLUTION_RESPONSE.
    pub request_timeout: Duration,
    /// MAX-REQUEST-RETRANSMIT.
    pub max_request_retransmit: u32,
    /// Overall time a resolution may take (registrar hunts included) before it fails.
    pub request_deadline: Duration,
    /// Items asked for with the Handle Resolution Option (`None`: no option, the registrar
    /// decides, rsplib style; `Some(HandleResolutionOption::ALL)`: all PEs).
    pub resolution_items: Option<u32>,
}

impl Default for PuConfig {
    fn default() -> Self {
        PuConfig {
            link: LinkConfig::default(),
            stale_cache_value: DEFAULT_STALE_CACHE_VALUE,
            request_timeout: T1_ENRP_REQUEST,
            max_request_retransmit: MAX_REQUEST_RETRANSMIT,
            request_deadline: Duration::from_secs(120),
            resolution_items: Some(HandleResolutionOption::ALL),
        }
    }
}

/// Identifier of one resolution request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Why a handle resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The registrar does not know the pool (cause 0x9 Unknown Pool Handle).
    #[error("pool {0} is unknown to the registrar")]
    UnknownPoolHandle(PoolHandle),
    /// The registrar answered with another Operation Error.
    #[error("handle resolution of pool {handle} failed: {cause:?}")]
    Rejected {
        /// The pool.
        handle: PoolHandle,
        /// The first cause.
        cause: Option<CauseCode>,
        /// The whole error.
        error: OperationError,
    },
    /// The pool exists but has no PE (or none left after unreachable reports).
    #[error("pool {0} has no pool element")]
    Empty(PoolHandle),
    /// No answer within the request deadline (no registrar reachable or none answering).
    #[error("handle resolution of pool {0} timed out")]
    Timeout(PoolHandle),
}

/// What the pool user reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PuEvent {
    /// A resolution request finished.
    Resolved {
        /// The request.
        request: RequestId,
        /// The pool.
        handle: PoolHandle,
        /// The PEs (all cached entries, in the registrar's response order) or the failure.
        result: Result<Vec<PoolElementInfo>, ResolveError>,
    },
    /// A registrar association came up.
    RegistrarUp {
        /// Its addresses.
        addrs: Vec<SocketAddr>,
    },
    /// The registrar association was lost (a new hunt runs).
    RegistrarLost,
}

#[derive(Debug)]
struct Pending {
    requests: Vec<RequestId>,
    sent_on: Option<ConnId>,
    retransmit_at: Option<Instant>,
    sends: u32,
    deadline: Instant,
}

/// The sans-I/O pool user; see the module documentation.
#[derive(Debug)]
pub struct PuCore {
    cfg: PuConfig,
    link: RegistrarLink,
    cache: PoolUserCache,
    rng: StdRng,
    pending: HashMap<PoolHandle, Pending>,
    next_request: u64,
    actions: VecDeque<Action>,
    events: VecDeque<PuEvent>,
    /// Counters for observability and tests.
    pub stats: PuStats,
}

/// Counters of a [`PuCore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PuStats {
    /// HANDLE_RESOLUTION messages sent (retransmissions included).
    pub resolutions_sent: u64,
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// ENDPOINT_UNREACHABLE messages sent.
    pub unreachable_sent: u64,
}

impl PuCore {
    /// A pool user; `seed` drives the random selection policies.
    pub fn new(cfg: PuConfig, seed: u64) -> Self {
        PuCore {
            link: RegistrarLink::new(cfg.link.clone()),
            cache: PoolUserCache::new(cfg.stale_cache_value),
            cfg,
            rng: StdRng::seed_from_u64(seed),
            pending: HashMap::new(),
            next_request: 1,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: PuStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PuConfig {
        &self.cfg
    }

    /// The registrar link.
    pub fn link(&self) -> &RegistrarLink {
        &self.link
    }

    /// Tells the registrar link which transport the driver uses towards registrars
    /// ([`RegistrarLink::set_protocol`]; default TCP).
    pub fn set_link_protocol(&mut self, protocol: crate::registrar_client::LinkProtocol) {
        self.link.set_protocol(protocol);
    }

    /// Starts looking for a registrar at once (otherwise the first request does).
    pub fn start(&mut self, now: Instant) {
        self.link.start(now);
        self.process_link(now);
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<PuEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let p = self
            .pending
            .values()
            .flat_map(|p| [p.retransmit_at, Some(p.deadline)])
            .flatten()
            .min();
        match (p, self.link.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs expired timers: retransmissions, registrar abandonment, request deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.process_link(now);
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        let mut abandon = false;
        for (h, p) in &mut self.pending {
            if now >= p.deadline {
                expired.push(h.clone());
            } else if p.retransmit_at.is_some_and(|t| now >= t) {
                if p.sends <= self.cfg.max_request_retransmit {
                    resend.push(h.clone());
                } else {
                    // MAX-REQUEST-RETRANSMIT exhausted: this registrar does not answer.
                    p.sent_on = None;
                    p.retransmit_at = None;
                    p.sends = 0;
                    abandon = true;
                }
            }
        }
        for h in expired {
            if let Some(p) = self.pending.remove(&h) {
                warn!(pool = %h, "handle resolution timed out");
                for r in p.requests {
                    self.events.push_back(PuEvent::Resolved {
                        request: r,
                        handle: h.clone(),
                        result: Err(ResolveError::Timeout(h.clone())),
                    });
                }
            }
        }
        for h in resend {
            debug!(pool = %h, "T1 expired: retransmitting HANDLE_RESOLUTION");
            self.send_resolution(now, &h);
        }
        if abandon {
            self.link.abandon(now);
            self.process_link(now);
        }
    }

    /// Asks for the PEs of a pool. Answered from the cache when fresh (the event is queued
    /// at once), else by a HANDLE_RESOLUTION.
    pub fn resolve(&mut self, now: Instant, handle: &PoolHandle) -> RequestId {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        if self.cache.is_fresh(handle, now) && self.cache.len(handle) > 0 {
            self.stats.cache_hits += 1;
            let all = self.cached(handle);
            self.events.push_back(PuEvent::Resolved {
                request,
                handle: handle.clone(),
                result: Ok(all),
            });
            return request;
        }
        self.force_resolve(now, handle, request);
        request
    }

    /// Asks a registrar even if the cache is fresh.
    pub fn refresh(&mut self, now: Instant, handle: &PoolHandle) -> RequestId {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.force_resolve(now, handle, request);
        request
    }

    fn force_resolve(&mut self, now: Instant, handle: &PoolHandle, request: RequestId) {
        if let Some(p) = self.pending.get_mut(handle) {
            p.requests.push(request);
            return;
        }
        self.pending.insert(
            handle.clone(),
            Pending {
                requests: vec![request],
                sent_on: None,
                retransmit_at: None,
                sends: 0,
                deadline: now + self.cfg.request_deadline,
            },
        );
        if self.link.current().is_some() {
            self.send_resolution(now, handle);
        } else {
            self.link.start(now);
            self.process_link(now);
        }
    }

    /// Selects one PE of a pool from the cache by the pool's policy (RFC 5356 PU side).
    /// `None` when the cache has no fresh PE: call [`resolve`](Self::resolve) first.
    pub fn select(&mut self, now: Instant, handle: &PoolHandle) -> Option<PoolElementInfo> {
        self.cache
            .select(handle, 1, now, &mut self.rng)
            .and_then(|v| v.into_iter().next())
    }

    /// The cached PEs of a pool (stale or not), in the registrar's response order
    /// (RFC 5356 §4.1.2: the registrar rotates the head for load sharing).
    pub fn cached(&self, handle: &PoolHandle) -> Vec<PoolElementInfo> {
        self.cache.elements(handle)
    }

    /// True if the cache holds a fresh entry for the pool.
    pub fn is_cached(&self, now: Instant, handle: &PoolHandle) -> bool {
        self.cache.is_fresh(handle, now) && self.cache.len(handle) > 0
    }

    /// Drops stale cache entries (optional housekeeping).
    pub fn purge_cache(&mut self, now: Instant) -> usize {
        self.cache.purge(now)
    }

    /// Reports a PE that failed (RFC 5352 §3): removes it from the cache and sends
    /// ENDPOINT_UNREACHABLE to the registrar (dropped if none is connected).
    pub fn report_unreachable(&mut self, now: Instant, handle: &PoolHandle, id: PeIdentifier) {
        let _ = now;
        self.cache.mark_failed(handle, id);
        if let Some(conn) = self.link.current() {
            self.stats.unreachable_sent += 1;
            info!(pool = %handle, pe = format_args!("{id:#010x}"), "reporting unreachable PE");
            self.actions.push_back(Action::Send {
                conn,
                message: EndpointUnreachable {
                    pool_handle: handle.clone(),
                    pe_identifier: id,
                }
                .into(),
            });
        }
    }

    /// Drops a PE from the cache without an ENDPOINT_UNREACHABLE (it is alive but does not
    /// serve us, see [`crate::session::FailoverReason::PeError`]).
    pub fn forget(&mut self, handle: &PoolHandle, id: PeIdentifier) {
        self.cache.mark_failed(handle, id);
    }

    /// An ASAP_SERVER_ANNOUNCE was heard.
    pub fn on_announce(&mut self, now: Instant, from: SocketAddr, msg: &ServerAnnounce) {
        self.link.on_announce(now, from, msg);
        self.process_link(now);
    }

    /// A fresh connection identifier (for [`on_accepted`](Self::on_accepted)).
    pub fn allocate_conn(&mut self) -> ConnId {
        self.link.allocate_conn()
    }

    /// A registrar opened an association to us: a PU serves no registrar, so it is closed
    /// (the PU driver does not listen for registrars; this completes the
    /// [`ClientCore`](crate::registrar_client::driver::ClientCore) inputs).
    pub fn on_accepted(&mut self, conn: ConnId, addrs: Vec<SocketAddr>) {
        debug!(?addrs, "incoming registrar association closed at the PU");
        self.actions.push_back(Action::Close { conn });
    }

    /// The driver's connection attempt succeeded.
    pub fn on_connected(&mut self, now: Instant, conn: ConnId) {
        self.link.on_connected(now, conn);
        self.process_link(now);
    }

    /// The driver's connection attempt failed.
    pub fn on_connect_failed(&mut self, now: Instant, conn: ConnId) {
        self.link.on_connect_failed(now, conn);
        self.process_link(now);
    }

    /// A registrar association ended.
    pub fn on_lost(&mut self, now: Instant, conn: ConnId) {
        self.link.on_lost(now, conn);
        self.process_link(now);
    }

    /// An ASAP message arrived from the registrar.
    pub fn on_message(&mut self, now: Instant, _conn: ConnId, msg: AsapMessage) {
        match msg {
            AsapMessage::HandleResolutionResponse(r) => self.on_response(now, r),
            AsapMessage::Error(e) => warn!(error = ?e.error, "ASAP_ERROR from registrar"),
            other => debug!(
                msg = other.message_type().name().unwrap_or("?"),
                "ignoring unexpected ASAP message at the PU"
            ),
        }
    }

    fn on_response(&mut self, now: Instant, r: HandleResolutionResponse) {
        let Some(p) = self.pending.remove(&r.pool_handle) else {
            debug!(pool = %r.pool_handle, "unsolicited HANDLE_RESOLUTION_RESPONSE");
            return;
        };
        let h = r.pool_handle.clone();
        let result = if let Some(err) = r.error {
            let cause = err.first_code();
            self.cache.remove(&h);
            if cause == Some(CauseCode::UnknownPoolHandle) {
                Err(ResolveError::UnknownPoolHandle(h.clone()))
            } else {
                Err(ResolveError::Rejected {
                    handle: h.clone(),
                    cause,
                    error: err,
                })
            }
        } else if r.pool_elements.is_empty() {
            self.cache.remove(&h);
            Err(ResolveError::Empty(h.clone()))
        } else {
            debug!(pool = %h, pes = r.pool_elements.len(), "handle resolved");
            self.cache.store(&h, r.pool_elements, now);
            Ok(self.cached(&h))
        };
        for request in p.requests {
            self.events.push_back(PuEvent::Resolved {
                request,
                handle: h.clone(),
                result: result.clone(),
            });
        }
    }

    fn send_resolution(&mut self, now: Instant, handle: &PoolHandle) {
        let Some(conn) = self.link.current() else {
            return;
        };
        let Some(p) = self.pending.get_mut(handle) else {
            return;
        };
        p.sent_on = Some(conn);
        p.sends += 1;
        p.retransmit_at = Some(now + self.cfg.request_timeout);
        self.stats.resolutions_sent += 1;
        let mut m = HandleResolution::new(handle.clone());
        m.option = self
            .cfg
            .resolution_items
            .map(|items| HandleResolutionOption { items });
        self.actions.push_back(Action::Send {
            conn,
            message: m.into(),
        });
    }

    fn process_link(&mut self, now: Instant) {
        while let Some(a) = self.link.poll_action() {
            self.actions.push_back(a.into());
        }
        while let Some(ev) = self.link.poll_event() {
            match ev {
                LinkEvent::Up { addrs, .. } => {
                    self.events.push_back(PuEvent::RegistrarUp { addrs });
                    let unsent: Vec<PoolHandle> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.sent_on.is_none())
                        .map(|(h, _)| h.clone())
                        .collect();
                    for h in unsent {
                        self.send_resolution(now, &h);
                    }
                }
                LinkEvent::Down { conn } => {
                    self.events.push_back(PuEvent::RegistrarLost);
                    for p in self.pending.values_mut() {
                        if p.sent_on == Some(conn) {
                            p.sent_on = None;
                            p.retransmit_at = None;
                            p.sends = 0;
                        }
                    }
                }
                LinkEvent::HuntRoundFailed { .. } => {}
            }
        }
    }
}
