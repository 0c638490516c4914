//! The sans-I/O pool element: registration, re-registration, keep-alive answers, home
//! registrar changes and deregistration (RFC 5352 §3; asap/wire/INTEROP.md §5.1,
//! §5.3).
//!
//! [`PeCore`] owns a [`RegistrarLink`] for registrar discovery and hunt. Inputs are
//! connection results, received ASAP messages and timeouts, each with the current time;
//! outputs are [`Action`]s (connect, send, close) and [`PeEvent`]s for the application.
//!
//! Timers (RFC 5352 §5, asap/wire/INTEROP.md §4):
//!
//! * T2-registration: wait for REGISTRATION_RESPONSE; after MAX-REG-ATTEMPT sends without
//!   answer the registrar is abandoned and another one hunted.
//! * T3-deregistration: wait for DEREGISTRATION_RESPONSE.
//! * T4-reregistration: min(10 min, registration life − 20 s) for lifes of 40 s or more,
//!   half the life below that (rsplib instead uses life = 3 × re-registration interval;
//!   [`PeConfig::reregistration_interval`] overrides).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, info, warn};

use crate::registrar_client::{Action, ConnId, LinkConfig, LinkEvent, RegistrarLink};
use crate::wire::asap_msg::{
    Deregistration, EndpointKeepAlive, EndpointKeepAliveAck, Registration, RegistrationResponse,
};
use crate::wire::{
    AsapMessage, CauseCode, OperationError, PeIdentifier, Policy, PoolElementInfo, PoolHandle,
    ServerId, TransportParameter,
};

/// RFC 5352 §5 T2-registration default.
pub const T2_REGISTRATION: Duration = Duration::from_secs(30);
/// RFC 5352 §5 T3-deregistration default.
pub const T3_DEREGISTRATION: Duration = Duration::from_secs(30);
/// RFC 5352 §5 MAX-REG-ATTEMPT default.
pub const MAX_REG_ATTEMPT: u32 = 2;
/// Upper bound of T4 (RFC 5352 §5: 10 minutes).
pub const T4_MAX: Duration = Duration::from_secs(600);
/// Most associations opened to the PE by registrars (takeover, RFC 5353 §3.6) kept open
/// while they have not (yet) sent an ENDPOINT_KEEP_ALIVE with the H flag.
pub const MAX_ACCEPTED: usize = 16;
/// First retry delay after a "Non-unique PE identifier" rejection of an identifier the PE
/// keeps (configured, or already registered once); it doubles with every further such
/// rejection, capped at T4 (see [`PeCore`]).
pub const NON_UNIQUE_RETRY_MIN: Duration = Duration::from_secs(1);

/// Configuration of one pool element registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeConfig {
    /// The pool to join.
    pub pool_handle: PoolHandle,
    /// PE Identifier; `None` picks a random non-zero one (RFC 5351 §3.1). It stays the same
    /// across re-registrations and registrar changes; a random one is only replaced when a
    /// registrar answers "Non-unique PE identifier" before the first successful
    /// registration.
    pub identifier: Option<PeIdentifier>,
    /// Where PUs reach this PE (the single User Transport, RFC 5354 §3.10).
    pub user_transport: TransportParameter,
    /// Selection policy and this PE's policy values (RFC 5356).
    pub policy: Policy,
    /// Registration life (sent in ms, asap/wire/INTEROP.md §7 item 1).
    pub registration_life: Duration,
    /// T4 override; `None` derives it from the life (see the module documentation).
    pub reregistration_interval: Option<Duration>,
    /// T2-registration.
    pub registration_timeout: Duration,
    /// T3-deregistration.
    pub deregistration_timeout: Duration,
    /// MAX-REG-ATTEMPT.
    pub max_registration_attempts: u32,
    /// Registrar discovery and hunt.
    pub link: LinkConfig,
}

impl PeConfig {
    /// A configuration with RFC defaults and a 90 s life (rsplib's default life).
    pub fn new(
        pool_handle: impl Into<PoolHandle>,
        user_transport: TransportParameter,
        policy: Policy,
    ) -> Self {
        PeConfig {
            pool_handle: pool_handle.into(),
            identifier: None,
            user_transport,
            policy,
            registration_life: Duration::from_secs(90),
            reregistration_interval: None,
            registration_timeout: T2_REGISTRATION,
            deregistration_timeout: T3_DEREGISTRATION,
            max_registration_attempts: MAX_REG_ATTEMPT,
            link: LinkConfig::default(),
        }
    }

    /// The effective T4-reregistration interval.
    pub fn t4(&self) -> Duration {
        if let Some(t) = self.reregistration_interval {
            return t;
        }
        let life = self.registration_life;
        if life >= Duration::from_secs(40) {
            (life - Duration::from_secs(20)).min(T4_MAX)
        } else {
            life / 2
        }
    }

    /// The registration life in ms as sent (saturating at `i32::MAX`).
    pub fn life_ms(&self) -> i32 {
        i32::try_from(self.registration_life.as_millis()).unwrap_or(i32::MAX)
    }
}

/// A REGISTRATION_RESPONSE with the R flag (RFC 5352 §2.2.3) as a typed error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registration of PE {identifier:#010x} in pool {pool_handle} rejected: {}", cause_name(*.cause))]
pub struct RegistrationRejected {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The PE identifier that was rejected.
    pub identifier: PeIdentifier,
    /// The first cause code (`None` if the registrar sent no Operation Error).
    pub cause: Option<CauseCode>,
    /// The complete Operation Error, if any.
    pub error: Option<OperationError>,
}

fn cause_name(c: Option<CauseCode>) -> String {
    match c {
        Some(c) => format!("{c:?} ({:#06x})", u16::from(c)),
        None => "no cause given".into(),
    }
}

/// What the pool element reports to its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeEvent {
    /// The registration was accepted by a registrar (first time on this association).
    Registered {
        /// The PE identifier.
        identifier: PeIdentifier,
        /// The registrar's addresses.
        registrar: Vec<SocketAddr>,
    },
    /// A re-registration (periodic or after a policy update) was accepted.
    Reregistered {
        /// The PE identifier.
        identifier: PeIdentifier,
        /// The policy values now registered.
        policy: Policy,
    },
    /// The registrar refused the registration (R flag).
    Rejected(RegistrationRejected),
    /// An ENDPOINT_KEEP_ALIVE was answered.
    KeepAlive {
        /// The sender's Server Identifier.
        server_id: ServerId,
        /// Its H flag.
        home_flag: bool,
    },
    /// The home registrar changed (H flag, RFC 5352 §3; or first learned).
    HomeChanged {
        /// The previous home (`None` = not known yet).
        from: Option<ServerId>,
        /// The new home.
        to: ServerId,
    },
    /// The association to the registrar was lost; a hunt runs.
    RegistrarLost,
    /// A whole registrar hunt round failed.
    HuntFailed {
        /// Consecutive failed rounds.
        rounds: u32,
    },
    /// Deregistration finished (confirmed, timed out or without a registrar); the PE is
    /// stopped.
    Deregistered {
        /// True if the registrar confirmed.
        confirmed: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    conn: ConnId,
    deadline: Instant,
    attempts: u32,
}

/// The sans-I/O pool element; see the module documentation.
///
/// # PE identifier stability
///
/// The PE identifier names the PE for its whole life (RFC 5352 §2.2.1, §3.1; RFC 5351
/// §3.1): registrars, other ENRP servers and PUs key the pool entry by it. A random
/// identifier is therefore replaced on a "Non-unique PE identifier" rejection (RFC 5352
/// §3.1) only while it has never been registered. Once a registration succeeded (and always
/// for a configured identifier) the clash is most likely this PE's own stale entry — e.g.
/// a registrar still holding it from the old association after a takeover or a hunt
/// race. That entry disappears when the registrar notices the old association's loss or
/// the registration life expires, so the PE keeps its identifier and registers again after
/// [`NON_UNIQUE_RETRY_MIN`], doubling per consecutive rejection up to T4.
#[derive(Debug)]
pub struct PeCore {
    cfg: PeConfig,
    id: PeIdentifier,
    id_configured: bool,
    /// A registration with `id` succeeded at least once: the identifier is fixed.
    ever_registered: bool,
    /// Consecutive "Non-unique PE identifier" rejections of a kept identifier (backoff).
    non_unique_streak: u32,
    link: RegistrarLink,
    rng: StdRng,
    registered_on: Option<ConnId>,
    pending: Option<Pending>,
    dirty: bool,
    next_rereg: Option<Instant>,
    retry_at: Option<Instant>,
    home: Option<ServerId>,
    deregistering: Option<(ConnId, Instant)>,
    stopping: bool,
    stopped: bool,
    accepted: HashMap<ConnId, Vec<SocketAddr>>,
    actions: VecDeque<Action>,
    events: VecDeque<PeEvent>,
}

impl PeCore {
    /// A pool element; `seed` feeds the random PE identifier (when not configured).
    pub fn new(cfg: PeConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let (id, id_configured) = match cfg.identifier {
            Some(id) if id != 0 => (id, true),
            _ => (rng.gen_range(1..=u32::MAX), false),
        };
        let link = RegistrarLink::new(cfg.link.clone());
        PeCore {
            cfg,
            id,
            id_configured,
            ever_registered: false,
            non_unique_streak: 0,
            link,
            rng,
            registered_on: None,
            pending: None,
            dirty: false,
            next_rereg: None,
            retry_at: None,
            home: None,
            deregistering: None,
            stopping: false,
            stopped: false,
            accepted: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The PE identifier: stable for the PE's life, except that a random one clashing
    /// before its first successful registration is replaced (see [`PeCore`]).
    pub fn identifier(&self) -> PeIdentifier {
        self.id
    }

    /// The configuration (policy reflects [`set_policy`](Self::set_policy)).
    pub fn config(&self) -> &PeConfig {
        &self.cfg
    }

    /// The home registrar's Server Identifier, once learned from a keep-alive.
    pub fn home(&self) -> Option<ServerId> {
        self.home
    }

    /// True while a registration is confirmed on the current association.
    pub fn is_registered(&self) -> bool {
        self.registered_on.is_some() && self.registered_on == self.link.current()
    }

    /// True once deregistration finished.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The registrar link (discovery state).
    pub fn link(&self) -> &RegistrarLink {
        &self.link
    }

    /// Tells the registrar link which transport the driver uses towards registrars
    /// ([`RegistrarLink::set_protocol`]; default TCP).
    pub fn set_link_protocol(&mut self, protocol: crate::registrar_client::LinkProtocol) {
        self.link.set_protocol(protocol);
    }

    /// Starts: hunts for a registrar, then registers.
    pub fn start(&mut self, now: Instant) {
        self.link.start(now);
        self.process_link(now);
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<PeEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.link.poll_timeout(),
            self.pending.map(|p| p.deadline),
            self.next_rereg,
            self.retry_at,
            self.deregistering.map(|d| d.1),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.process_link(now);
        if let Some((_, deadline)) = self.deregistering {
            if now >= deadline {
                warn!("no DEREGISTRATION_RESPONSE within T3");
                self.finish_stop(false);
                return;
            }
        }
        if let Some(p) = self.pending {
            if now >= p.deadline {
                if p.attempts < self.cfg.max_registration_attempts {
                    debug!(attempt = p.attempts + 1, "T2 expired: registering again");
                    self.send_registration(now, p.conn, p.attempts + 1);
                } else {
                    warn!(
                        attempts = p.attempts,
                        "no REGISTRATION_RESPONSE (MAX-REG-ATTEMPT reached): hunting another registrar"
                    );
                    self.pending = None;
                    self.link.abandon(now);
                    self.process_link(now);
                }
            }
        }
        if self.next_rereg.is_some_and(|t| now >= t) || self.retry_at.is_some_and(|t| now >= t) {
            self.next_rereg = None;
            self.retry_at = None;
            if let Some(conn) = self.link.current() {
                if self.pending.is_none() && !self.stopping {
                    self.send_registration(now, conn, 1);
                }
            }
        }
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

    /// An association (ours or accepted) ended.
    pub fn on_lost(&mut self, now: Instant, conn: ConnId) {
        self.accepted.remove(&conn);
        if self.deregistering.is_some_and(|d| d.0 == conn) {
            self.finish_stop(false);
            return;
        }
        self.link.on_lost(now, conn);
        self.process_link(now);
    }

    /// A registrar opened an association to us (the driver accepted it); it becomes the
    /// registrar link only if it sends an ENDPOINT_KEEP_ALIVE with the H flag.
    /// At most [`MAX_ACCEPTED`] such associations wait for their keep-alive; more are closed
    /// (anybody can connect to the PE's registrar port).
    pub fn on_accepted(&mut self, conn: ConnId, addrs: Vec<SocketAddr>) {
        if self.stopping || self.accepted.len() >= MAX_ACCEPTED {
            debug!(
                ?addrs,
                "incoming registrar association refused (too many waiting)"
            );
            self.actions.push_back(Action::Close { conn });
            return;
        }
        self.accepted.insert(conn, addrs);
    }

    /// A fresh connection identifier for an association the driver accepted.
    pub fn allocate_conn(&mut self) -> ConnId {
        self.link.allocate_conn()
    }

    /// An ASAP_SERVER_ANNOUNCE was heard.
    pub fn on_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &crate::wire::asap_msg::ServerAnnounce,
    ) {
        self.link.on_announce(now, from, msg);
        self.process_link(now);
    }

    /// An ASAP message arrived on `conn`.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, msg: AsapMessage) {
        match msg {
            AsapMessage::RegistrationResponse(r) => self.on_registration_response(now, conn, r),
            AsapMessage::DeregistrationResponse(r) => {
                if self.deregistering.is_some_and(|d| d.0 == conn) && r.pe_identifier == self.id {
                    if r.reject {
                        warn!(error = ?r.error, "deregistration rejected");
                    }
                    self.finish_stop(!r.reject);
                }
            }
            AsapMessage::EndpointKeepAlive(k) => self.on_keep_alive(now, conn, k),
            AsapMessage::Error(e) => warn!(error = ?e.error, "ASAP_ERROR from registrar"),
            other => debug!(
                msg = other.message_type().name().unwrap_or("?"),
                "ignoring unexpected ASAP message at the PE"
            ),
        }
    }

    /// Changes the policy values (e.g. the load, RFC 5356 §5) and re-registers at once.
    pub fn set_policy(&mut self, now: Instant, policy: Policy) {
        self.cfg.policy = policy;
        if self.stopping {
            return;
        }
        if self.pending.is_some() {
            self.dirty = true;
        } else if let Some(conn) = self.link.current() {
            self.send_registration(now, conn, 1);
        }
    }

    /// Graceful shutdown: DEREGISTRATION (RFC 5352 §3), then stop.
    pub fn deregister(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.pending = None;
        self.next_rereg = None;
        self.retry_at = None;
        match self.link.current() {
            Some(conn) => {
                info!(pe = format_args!("{:#010x}", self.id), "deregistering");
                self.actions.push_back(Action::Send {
                    conn,
                    message: Deregistration {
                        pool_handle: self.cfg.pool_handle.clone(),
                        pe_identifier: self.id,
                    }
                    .into(),
                });
                self.deregistering = Some((conn, now + self.cfg.deregistration_timeout));
            }
            None => self.finish_stop(false),
        }
    }

    fn finish_stop(&mut self, confirmed: bool) {
        self.deregistering = None;
        self.stopping = true;
        self.stopped = true;
        self.pending = None;
        self.registered_on = None;
        self.link.stop();
        while let Some(a) = self.link.poll_action() {
            self.actions.push_back(a.into());
        }
        for (conn, _) in self.accepted.drain() {
            self.actions.push_back(Action::Close { conn });
        }
        self.events.push_back(PeEvent::Deregistered { confirmed });
    }

    fn element(&self) -> PoolElementInfo {
        PoolElementInfo {
            id: self.id,
            home_server_id: 0,
            registration_life: self.cfg.life_ms(),
            user_transport: self.cfg.user_transport.clone(),
            policy: self.cfg.policy.clone(),
            asap_transport: None,
        }
    }

    fn send_registration(&mut self, now: Instant, conn: ConnId, attempts: u32) {
        self.dirty = false;
        self.actions.push_back(Action::Send {
            conn,
            message: Registration {
                pool_handle: self.cfg.pool_handle.clone(),
                pool_element: self.element(),
            }
            .into(),
        });
        self.pending = Some(Pending {
            conn,
            deadline: now + self.cfg.registration_timeout,
            attempts,
        });
    }

    fn on_registration_response(&mut self, now: Instant, conn: ConnId, r: RegistrationResponse) {
        let Some(p) = self.pending else {
            debug!("REGISTRATION_RESPONSE without a pending registration");
            return;
        };
        if p.conn != conn || r.pe_identifier != self.id || r.pool_handle != self.cfg.pool_handle {
            debug!(?r, "REGISTRATION_RESPONSE for something else");
            return;
        }
        self.pending = None;
        if r.reject {
            let cause = r.error.as_ref().and_then(|e| e.first_code());
            let rej = RegistrationRejected {
                pool_handle: r.pool_handle,
                identifier: self.id,
                cause,
                error: r.error,
            };
            warn!(%rej, "registration rejected");
            self.events.push_back(PeEvent::Rejected(rej));
            if cause == Some(CauseCode::NonUniquePeIdentifier) {
                if !self.id_configured && !self.ever_registered {
                    // Our never-registered random identifier clashed with another PE's:
                    // pick another and try again at once.
                    self.id = self.rng.gen_range(1..=u32::MAX);
                    info!(
                        pe = format_args!("{:#010x}", self.id),
                        "new random PE identifier"
                    );
                    self.send_registration(now, conn, 1);
                } else {
                    // Our identifier is fixed (RFC 5352 §3.1): most likely our own stale
                    // entry; retry with backoff until it is gone.
                    let delay = self.non_unique_backoff();
                    self.non_unique_streak = self.non_unique_streak.saturating_add(1);
                    info!(
                        pe = format_args!("{:#010x}", self.id),
                        ?delay,
                        "PE identifier reported non-unique: keeping it, retrying"
                    );
                    self.retry_at = Some(now + delay);
                }
            } else {
                self.retry_at = Some(now + self.cfg.t4());
            }
            return;
        }
        let first = self.registered_on != Some(conn);
        self.registered_on = Some(conn);
        self.ever_registered = true;
        self.non_unique_streak = 0;
        self.next_rereg = Some(now + self.cfg.t4());
        if first {
            let registrar = self
                .link
                .current_addrs()
                .map(|a| a.to_vec())
                .unwrap_or_default();
            info!(
                pe = format_args!("{:#010x}", self.id),
                ?registrar,
                "registered"
            );
            self.events.push_back(PeEvent::Registered {
                identifier: self.id,
                registrar,
            });
        } else {
            self.events.push_back(PeEvent::Reregistered {
                identifier: self.id,
                policy: self.cfg.policy.clone(),
            });
        }
        if self.dirty {
            self.send_registration(now, conn, 1);
        }
    }

    /// [`NON_UNIQUE_RETRY_MIN`] doubled per earlier consecutive rejection, capped at T4.
    fn non_unique_backoff(&self) -> Duration {
        let t4 = self.cfg.t4();
        let factor = 1u32 << self.non_unique_streak.min(16);
        NON_UNIQUE_RETRY_MIN.saturating_mul(factor).min(t4)
    }

    fn on_keep_alive(&mut self, now: Instant, conn: ConnId, k: EndpointKeepAlive) {
        if k.pool_handle != self.cfg.pool_handle || k.pe_identifier.is_some_and(|i| i != self.id) {
            debug!(?k, "keep-alive for another PE");
            return;
        }
        self.actions.push_back(Action::Send {
            conn,
            message: EndpointKeepAliveAck {
                pool_handle: self.cfg.pool_handle.clone(),
                pe_identifier: self.id,
            }
            .into(),
        });
        self.events.push_back(PeEvent::KeepAlive {
            server_id: k.server_id,
            home_flag: k.home,
        });
        let on_current = self.link.current() == Some(conn);
        if !(k.home || (on_current && self.home.is_none())) {
            return;
        }
        let previous = self.home;
        if k.home && !on_current {
            // RFC 5352 §3: adopt the sender (e.g. after a takeover) as home registrar.
            // The adopted association gets a (harmless) re-registration at once.
            let addrs = self.accepted.remove(&conn).unwrap_or_default();
            self.link.adopt(conn, addrs);
            self.process_link(now);
        }
        if previous != Some(k.server_id) {
            info!(
                from = ?previous.map(|h| format!("{h:#010x}")),
                to = format_args!("{:#010x}", k.server_id),
                "home registrar changed"
            );
            self.events.push_back(PeEvent::HomeChanged {
                from: previous,
                to: k.server_id,
            });
        }
        self.home = Some(k.server_id);
    }

    fn process_link(&mut self, now: Instant) {
        while let Some(a) = self.link.poll_action() {
            self.actions.push_back(a.into());
        }
        while let Some(ev) = self.link.poll_event() {
            match ev {
                LinkEvent::Up { conn, .. } => {
                    if self.stopping {
                        continue;
                    }
                    if self.registered_on != Some(conn)
                        && self.pending.is_none_or(|p| p.conn != conn)
                    {
                        self.registered_on = None;
                        self.home = None;
                        self.send_registration(now, conn, 1);
                    }
                }
                LinkEvent::Down { conn } => {
                    if self.registered_on == Some(conn)
                        || self.pending.is_some_and(|p| p.conn == conn)
                    {
                        self.events.push_back(PeEvent::RegistrarLost);
                    }
                    if self.registered_on == Some(conn) {
                        self.registered_on = None;
                    }
                    if self.pending.is_some_and(|p| p.conn == conn) {
                        self.pending = None;
                    }
                    self.next_rereg = None;
                    self.retry_at = None;
                }
                LinkEvent::HuntRoundFailed { rounds, .. } => {
                    self.events.push_back(PeEvent::HuntFailed { rounds })
                }
            }
        }
    }
}
