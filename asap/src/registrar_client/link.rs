//! Sans-I/O registrar discovery and hunt (RFC 5352 §3: server announce and server hunt;
//! asap/wire/INTEROP.md §5.4).
//!
//! A [`RegistrarLink`] keeps one association to a registrar ("home" registrar of a PE, the
//! registrar a PU asks) alive:
//!
//! * candidates come from a static list and from ASAP_SERVER_ANNOUNCE messages, each announce
//!   being valid for T7-ENRPoutdate (5 s) after it was heard;
//! * a *hunt round* tries the candidates one by one (announced ones first, most recently heard
//!   first, then the static ones in configured order); the first association that comes up
//!   wins;
//! * when every candidate of a round failed, the next round starts after a back-off that
//!   doubles from [`LinkConfig::hunt_initial_backoff`] up to [`LinkConfig::hunt_max_backoff`];
//! * when the association is lost (or the owner [abandons](RegistrarLink::abandon) the
//!   registrar after request timeouts), a new hunt starts at once, trying the lost registrar
//!   last — the application does nothing.
//!
//! No socket and no clock: the driver reports connection results and passes `now`; the link
//! asks for connections through [`LinkAction`]s and tells when it wants to be woken through
//! [`RegistrarLink::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::transport::defaults;
use crate::wire::asap_msg::ServerAnnounce;
use crate::wire::{ServerId, TransportParameter};

/// RFC 5352 §5 T7-ENRPoutdate: how long a received ASAP_SERVER_ANNOUNCE stays valid.
pub const T7_ENRP_OUTDATE: Duration = Duration::from_secs(5);

/// Identifier of one registrar association attempt, assigned by the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Which transport the driver uses for registrar associations; decides which transport
/// parameters of a SERVER_ANNOUNCE are usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkProtocol {
    /// Kernel SCTP (RFC 5352 §6).
    Sctp,
    /// TCP with RSerPool framing (see [`crate::transport`]).
    Tcp,
}

/// Configuration of registrar discovery and hunt.
///
/// The transport towards registrars is not part of it: it belongs to whoever drives the
/// link ([`RegistrarLink::set_protocol`]; `PoolElement` and `PoolUser` take it from their
/// `registrar_transport`). A field `protocol: LinkProtocol` no longer exists:
///
/// ```compile_fail,E0560
/// use asap::registrar_client::{LinkConfig, LinkProtocol};
/// let _ = LinkConfig { protocol: LinkProtocol::Sctp, ..LinkConfig::default() };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Statically configured registrars; each entry is one (possibly multi-homed) registrar.
    pub static_registrars: Vec<Vec<SocketAddr>>,
    /// Validity of a heard SERVER_ANNOUNCE (T7-ENRPoutdate, default 5 s).
    pub announce_ttl: Duration,
    /// Wait before the second hunt round (doubles each failed round).
    pub hunt_initial_backoff: Duration,
    /// Upper bound of the back-off between hunt rounds.
    pub hunt_max_backoff: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            static_registrars: Vec::new(),
            announce_ttl: T7_ENRP_OUTDATE,
            hunt_initial_backoff: Duration::from_millis(250),
            hunt_max_backoff: Duration::from_secs(8),
        }
    }
}

/// What the link asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkAction {
    /// Open an association to these addresses (one registrar) and report the result with
    /// [`RegistrarLink::on_connected`] / [`RegistrarLink::on_connect_failed`].
    Connect {
        /// Identifier to report back.
        conn: ConnId,
        /// The registrar's addresses.
        addrs: Vec<SocketAddr>,
    },
    /// Close this association (it was abandoned or replaced).
    Close {
        /// The association.
        conn: ConnId,
    },
}

/// Events the link reports to its owner (via [`RegistrarLink::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// An association to a registrar is up.
    Up {
        /// The association.
        conn: ConnId,
        /// The registrar's addresses.
        addrs: Vec<SocketAddr>,
    },
    /// The association that was up is gone; a new hunt has started.
    Down {
        /// The association.
        conn: ConnId,
    },
    /// A whole hunt round failed; the next one starts after `backoff`.
    HuntRoundFailed {
        /// Number of consecutive failed rounds.
        rounds: u32,
        /// Wait before the next round.
        backoff: Duration,
    },
}

#[derive(Debug, Clone)]
struct Announced {
    server_id: ServerId,
    addrs: Vec<SocketAddr>,
    expires: Instant,
    heard: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nobody asked for a registrar yet (or the link was stopped).
    Idle,
    /// Waiting for the result of a connection attempt.
    Connecting {
        conn: ConnId,
        addrs: Vec<SocketAddr>,
    },
    /// Waiting before the next hunt round (an announce ends the wait early).
    Backoff { until: Instant },
    /// An association is up.
    Up {
        conn: ConnId,
        addrs: Vec<SocketAddr>,
    },
}

/// Registrar discovery, hunt and association tracking; see the module documentation.
#[derive(Debug)]
pub struct RegistrarLink {
    cfg: LinkConfig,
    /// The transport of the driver (TCP until [`set_protocol`](Self::set_protocol)).
    protocol: LinkProtocol,
    announced: Vec<Announced>,
    state: State,
    next_conn: u64,
    /// Candidates already tried in the current round.
    tried: Vec<Vec<SocketAddr>>,
    /// Registrar to try last in the next round (the one just lost).
    demoted: Option<Vec<SocketAddr>>,
    failed_rounds: u32,
    actions: VecDeque<LinkAction>,
    events: VecDeque<LinkEvent>,
    wanted: bool,
}

impl RegistrarLink {
    /// A link with the given configuration; idle until [`start`](Self::start).
    pub fn new(cfg: LinkConfig) -> Self {
        RegistrarLink {
            cfg,
            protocol: LinkProtocol::Tcp,
            announced: Vec::new(),
            state: State::Idle,
            next_conn: 1,
            tried: Vec::new(),
            demoted: None,
            failed_rounds: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            wanted: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Tells the link which transport its driver uses towards registrars (default TCP):
    /// it decides which transport parameters of a SERVER_ANNOUNCE are usable (RFC 5352
    /// §3.1). Set by the driver, which alone knows its transport.
    pub fn set_protocol(&mut self, protocol: LinkProtocol) {
        self.protocol = protocol;
    }

    /// The transport towards registrars ([`set_protocol`](Self::set_protocol)).
    pub fn protocol(&self) -> LinkProtocol {
        self.protocol
    }

    /// Starts hunting if not connected or hunting already.
    pub fn start(&mut self, now: Instant) {
        self.wanted = true;
        if self.state == State::Idle {
            self.next_attempt(now);
        }
    }

    /// Stops: closes the association (if any) and forgets hunt state.
    pub fn stop(&mut self) {
        self.wanted = false;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Connecting { conn, .. } | State::Up { conn, .. } => {
                self.actions.push_back(LinkAction::Close { conn })
            }
            _ => {}
        }
        self.tried.clear();
    }

    /// The association that is up, if any.
    pub fn current(&self) -> Option<ConnId> {
        match self.state {
            State::Up { conn, .. } => Some(conn),
            _ => None,
        }
    }

    /// The addresses of the registrar currently connected.
    pub fn current_addrs(&self) -> Option<&[SocketAddr]> {
        match &self.state {
            State::Up { addrs, .. } => Some(addrs),
            _ => None,
        }
    }

    /// True while a hunt is in progress (connecting or backing off).
    pub fn is_hunting(&self) -> bool {
        matches!(self.state, State::Connecting { .. } | State::Backoff { .. })
    }

    /// Number of consecutive failed hunt rounds (0 once connected).
    pub fn failed_rounds(&self) -> u32 {
        self.failed_rounds
    }

    /// Registrars learned from announces that are still valid at `now`: (ID, addresses).
    pub fn announced(&self, now: Instant) -> Vec<(ServerId, Vec<SocketAddr>)> {
        self.announced
            .iter()
            .filter(|a| a.expires > now)
            .map(|a| (a.server_id, a.addrs.clone()))
            .collect()
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<LinkAction> {
        self.actions.pop_front()
    }

    /// Next event for the owner.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let announce = self.announced.iter().map(|a| a.expires).min();
        let backoff = match self.state {
            State::Backoff { until } => Some(until),
            _ => None,
        };
        match (announce, backoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires announces and ends back-off.
    pub fn handle_timeout(&mut self, now: Instant) {
        let before = self.announced.len();
        self.announced.retain(|a| a.expires > now);
        if self.announced.len() != before {
            debug!(
                expired = before - self.announced.len(),
                "registrar announces expired (T7)"
            );
        }
        if let State::Backoff { until } = self.state {
            if now >= until {
                self.state = State::Idle;
                self.tried.clear();
                self.next_attempt(now);
            }
        }
    }

    /// Handles an ASAP_SERVER_ANNOUNCE (RFC 5352 §3) received from `from` (UDP). Without
    /// transport parameters the datagram's source address is the registrar's address
    /// (rsplib). A waiting hunt is resumed at once.
    pub fn on_announce(&mut self, now: Instant, from: SocketAddr, msg: &ServerAnnounce) {
        let addrs = self.usable_addrs(from, &msg.transports);
        if addrs.is_empty() {
            debug!(
                server_id = msg.server_id,
                "announce without a usable transport"
            );
            return;
        }
        let expires = now + self.cfg.announce_ttl;
        if let Some(a) = self
            .announced
            .iter_mut()
            .find(|a| a.server_id == msg.server_id || a.addrs == addrs)
        {
            a.server_id = msg.server_id;
            a.addrs = addrs;
            a.expires = expires;
            a.heard = now;
        } else {
            info!(
                server_id = format_args!("{:#010x}", msg.server_id),
                ?addrs,
                "registrar announced"
            );
            self.announced.push(Announced {
                server_id: msg.server_id,
                addrs,
                expires,
                heard: now,
            });
        }
        if self.wanted {
            if let State::Backoff { .. } = self.state {
                // A new candidate: no reason to keep waiting.
                self.state = State::Idle;
                self.tried.clear();
                self.next_attempt(now);
            }
        }
    }

    /// The driver's connection attempt `conn` succeeded.
    pub fn on_connected(&mut self, _now: Instant, conn: ConnId) {
        match &self.state {
            State::Connecting { conn: c, addrs } if *c == conn => {
                let addrs = addrs.clone();
                info!(?addrs, conn = conn.0, "registrar association up");
                self.failed_rounds = 0;
                self.tried.clear();
                self.events.push_back(LinkEvent::Up {
                    conn,
                    addrs: addrs.clone(),
                });
                self.state = State::Up { conn, addrs };
            }
            _ => self.actions.push_back(LinkAction::Close { conn }),
        }
    }

    /// The driver's connection attempt `conn` failed.
    pub fn on_connect_failed(&mut self, now: Instant, conn: ConnId) {
        if let State::Connecting { conn: c, addrs } = &self.state {
            if *c == conn {
                debug!(?addrs, "registrar connection attempt failed");
                self.state = State::Idle;
                self.next_attempt(now);
            }
        }
    }

    /// The association `conn` ended (driver saw it lost). Hunts again if it was current.
    pub fn on_lost(&mut self, now: Instant, conn: ConnId) {
        match &self.state {
            State::Up { conn: c, addrs } if *c == conn => {
                warn!(
                    ?addrs,
                    "registrar association lost; hunting for another registrar"
                );
                self.demoted = Some(addrs.clone());
                self.events.push_back(LinkEvent::Down { conn });
                self.state = State::Idle;
                self.tried.clear();
                if self.wanted {
                    self.next_attempt(now);
                }
            }
            State::Connecting { conn: c, .. } if *c == conn => self.on_connect_failed(now, conn),
            _ => {}
        }
    }

    /// Gives up the current registrar (e.g. it does not answer requests): closes the
    /// association and hunts for another one, trying this one last.
    pub fn abandon(&mut self, now: Instant) {
        if let State::Up { conn, addrs } = &self.state {
            let conn = *conn;
            warn!(?addrs, "abandoning unresponsive registrar");
            self.demoted = Some(addrs.clone());
            self.actions.push_back(LinkAction::Close { conn });
            self.events.push_back(LinkEvent::Down { conn });
            self.state = State::Idle;
            self.tried.clear();
            if self.wanted {
                self.next_attempt(now);
            }
        }
    }

    /// Makes an association the driver accepted (a registrar that connected to us, e.g. to
    /// send an ENDPOINT_KEEP_ALIVE with the H flag after a takeover) the current one; the
    /// previous one is closed.
    pub fn adopt(&mut self, conn: ConnId, addrs: Vec<SocketAddr>) {
        match std::mem::replace(
            &mut self.state,
            State::Up {
                conn,
                addrs: addrs.clone(),
            },
        ) {
            State::Up { conn: old, .. } | State::Connecting { conn: old, .. } if old != conn => {
                self.actions.push_back(LinkAction::Close { conn: old });
                self.events.push_back(LinkEvent::Down { conn: old });
            }
            _ => {}
        }
        self.failed_rounds = 0;
        self.tried.clear();
        self.events.push_back(LinkEvent::Up { conn, addrs });
    }

    /// A fresh identifier for an association the driver accepted itself.
    pub fn allocate_conn(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        c
    }

    fn usable_addrs(&self, from: SocketAddr, transports: &[TransportParameter]) -> Vec<SocketAddr> {
        if transports.is_empty() {
            return vec![from];
        }
        let mut sctp = Vec::new();
        let mut tcp = Vec::new();
        for t in transports {
            match t {
                TransportParameter::Sctp {
                    port, addresses, ..
                } => sctp.extend(addresses.iter().map(|a| SocketAddr::new(*a, *port))),
                TransportParameter::Tcp { port, address, .. } => {
                    tcp.push(SocketAddr::new(*address, *port))
                }
                _ => {}
            }
        }
        match self.protocol {
            LinkProtocol::Sctp => sctp,
            // Our TCP registrars listen where they would listen for SCTP when they announce
            // only SCTP transports; a TCP transport parameter wins if present.
            LinkProtocol::Tcp if !tcp.is_empty() => tcp,
            LinkProtocol::Tcp => sctp.into_iter().take(1).collect(),
        }
    }

    /// All candidates in hunt order: valid announces (newest first), then static entries;
    /// the demoted registrar last.
    fn candidates(&self, now: Instant) -> Vec<Vec<SocketAddr>> {
        let mut ann: Vec<&Announced> = self.announced.iter().filter(|a| a.expires > now).collect();
        ann.sort_by_key(|a| std::cmp::Reverse(a.heard));
        let mut out: Vec<Vec<SocketAddr>> = Vec::new();
        for a in ann {
            if !out.contains(&a.addrs) {
                out.push(a.addrs.clone());
            }
        }
        for s in &self.cfg.static_registrars {
            if !s.is_empty() && !out.contains(s) {
                out.push(s.clone());
            }
        }
        if let Some(d) = &self.demoted {
            if let Some(i) = out.iter().position(|c| c == d) {
                let c = out.remove(i);
                out.push(c);
            }
        }
        out
    }

    fn next_attempt(&mut self, now: Instant) {
        if !self.wanted {
            return;
        }
        let next = self
            .candidates(now)
            .into_iter()
            .find(|c| !self.tried.contains(c));
        match next {
            Some(addrs) => {
                let conn = self.allocate_conn();
                self.tried.push(addrs.clone());
                debug!(?addrs, conn = conn.0, "registrar hunt: trying");
                self.actions.push_back(LinkAction::Connect {
                    conn,
                    addrs: addrs.clone(),
                });
                self.state = State::Connecting { conn, addrs };
            }
            None => {
                self.failed_rounds = self.failed_rounds.saturating_add(1);
                let backoff = self.backoff();
                warn!(
                    rounds = self.failed_rounds,
                    ?backoff,
                    "registrar hunt round failed (no registrar reachable)"
                );
                self.events.push_back(LinkEvent::HuntRoundFailed {
                    rounds: self.failed_rounds,
                    backoff,
                });
                self.demoted = None;
                self.state = State::Backoff {
                    until: now + backoff,
                };
            }
        }
    }

    /// Back-off after `failed_rounds` failed rounds: initial × 2^(rounds−1), capped.
    fn backoff(&self) -> Duration {
        let shift = self.failed_rounds.saturating_sub(1).min(20);
        self.cfg
            .hunt_initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.cfg.hunt_max_backoff)
    }
}

/// The default ASAP port, for registrar addresses given without a port.
pub const DEFAULT_REGISTRAR_PORT: u16 = defaults::ASAP_PORT;

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    fn connect_action(l: &mut RegistrarLink) -> (ConnId, Vec<SocketAddr>) {
        match l.poll_action() {
            Some(LinkAction::Connect { conn, addrs }) => (conn, addrs),
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    /// A link with these static registrars, started (hunting) at `now`.
    fn started(static_: &[&str], now: Instant) -> RegistrarLink {
        let mut l = RegistrarLink::new(LinkConfig {
            static_registrars: static_.iter().map(|s| vec![sa(s)]).collect(),
            ..LinkConfig::default()
        });
        l.start(now);
        l
    }

    #[test]
    fn hunt_tries_each_static_then_backs_off_exponentially() {
        let t0 = Instant::now();
        let mut l = started(&["10.0.0.1:3863", "10.0.0.2:3863"], t0);
        let (c1, a1) = connect_action(&mut l);
        assert_eq!(a1, vec![sa("10.0.0.1:3863")]);
        l.on_connect_failed(t0, c1);
        let (c2, a2) = connect_action(&mut l);
        assert_eq!(a2, vec![sa("10.0.0.2:3863")]);
        l.on_connect_failed(t0, c2);
        assert_eq!(l.poll_action(), None);
        assert_eq!(
            l.poll_event(),
            Some(LinkEvent::HuntRoundFailed {
                rounds: 1,
                backoff: Duration::from_millis(250)
            })
        );
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_millis(250)));
        // Round 2 after 250 ms, round 3 after 500 ms more, ... capped at 8 s.
        let mut waits = Vec::new();
        for _ in 0..7 {
            let now = l.poll_timeout().expect("backoff timer");
            l.handle_timeout(now);
            let (c, _) = connect_action(&mut l);
            l.on_connect_failed(now, c);
            let (c, _) = connect_action(&mut l);
            l.on_connect_failed(now, c);
            waits.push(l.poll_timeout().expect("timer") - now);
        }
        let ms: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(l.failed_rounds(), 8);
    }

    #[test]
    fn lost_registrar_is_tried_last_and_up_resets_rounds() {
        let t0 = Instant::now();
        let mut l = started(&["10.0.0.1:3863", "10.0.0.2:3863"], t0);
        let (c1, _) = connect_action(&mut l);
        l.on_connected(t0, c1);
        assert_eq!(l.current(), Some(c1));
        assert!(matches!(l.poll_event(), Some(LinkEvent::Up { .. })));
        l.on_lost(t0, c1);
        assert_eq!(l.poll_event(), Some(LinkEvent::Down { conn: c1 }));
        let (c2, a2) = connect_action(&mut l);
        assert_eq!(
            a2,
            vec![sa("10.0.0.2:3863")],
            "the lost registrar goes last"
        );
        assert_ne!(c1, c2);
        l.on_connect_failed(t0, c2);
        let (_, a3) = connect_action(&mut l);
        assert_eq!(a3, vec![sa("10.0.0.1:3863")]);
    }

    #[test]
    fn announces_are_preferred_expire_after_t7_and_end_backoff() {
        let t0 = Instant::now();
        let mut l = started(&[], t0);
        assert_eq!(l.poll_action(), None);
        assert!(matches!(
            l.poll_event(),
            Some(LinkEvent::HuntRoundFailed { rounds: 1, .. })
        ));
        let ann = ServerAnnounce {
            server_id: 7,
            transports: vec![TransportParameter::Tcp {
                port: 4000,
                transport_use: crate::wire::TransportUse::DataOnly,
                address: "10.0.0.9".parse().expect("lit"),
            }],
        };
        l.on_announce(t0, sa("10.0.0.9:3863"), &ann);
        let (c, a) = connect_action(&mut l);
        assert_eq!(a, vec![sa("10.0.0.9:4000")]);
        assert_eq!(l.announced(t0).len(), 1);
        l.on_connect_failed(t0, c);
        // Expiry after T7.
        assert_eq!(l.announced(t0 + T7_ENRP_OUTDATE).len(), 0);
        l.handle_timeout(t0 + T7_ENRP_OUTDATE);
        assert!(l.announced.is_empty());
        // Source address used when the announce carries no transport.
        let bare = ServerAnnounce {
            server_id: 8,
            transports: vec![],
        };
        let t1 = t0 + Duration::from_secs(6);
        l.on_announce(t1, sa("10.0.0.8:3863"), &bare);
        l.handle_timeout(t1 + Duration::from_secs(10));
        let (_, a) = connect_action(&mut l);
        assert_eq!(a, vec![sa("10.0.0.8:3863")]);
    }

    #[test]
    fn sctp_link_uses_sctp_transports_of_announce() {
        let t0 = Instant::now();
        let mut l = RegistrarLink::new(LinkConfig::default());
        l.set_protocol(LinkProtocol::Sctp);
        let ann = ServerAnnounce {
            server_id: 1,
            transports: vec![TransportParameter::Sctp {
                port: 3863,
                transport_use: crate::wire::TransportUse::DataOnly,
                addresses: vec![
                    "10.0.0.1".parse().expect("l"),
                    "10.0.1.1".parse().expect("l"),
                ],
            }],
        };
        l.on_announce(t0, sa("10.0.0.1:3863"), &ann);
        l.start(t0);
        let (_, a) = connect_action(&mut l);
        assert_eq!(a, vec![sa("10.0.0.1:3863"), sa("10.0.1.1:3863")]);
    }
}
