//! The sans-I/O pool element: registration, re-registration, keep-alive answers, home
//! registrar changes and deregistration (RFC 5352 §3; asap/wire/INTEROP.md §5.1,
//! §5.3).
//!
//! [`PeCore`] is the single-PE view of the N-registration core
//! [`MultiPeCore`](super::multi::MultiPeCore) with N = 1: that core owns the
//! [`RegistrarLink`] (registrar discovery and hunt) and the registration's timers; this type
//! keeps the PE's configuration and identifier and turns the core's events into
//! [`PeEvent`]s. Inputs are connection results, received ASAP messages and timeouts, each
//! with the current time; outputs are [`Action`]s (connect, send, close) and [`PeEvent`]s
//! for the application.
//!
//! Timers (RFC 5352 §5, asap/wire/INTEROP.md §4):
//!
//! * T2-registration: wait for REGISTRATION_RESPONSE; after MAX-REG-ATTEMPT sends without
//!   answer the registrar is abandoned and another one hunted.
//! * T3-deregistration: wait for DEREGISTRATION_RESPONSE.
//! * T4-reregistration: min(10 min, registration life − 20 s) for lifes of 40 s or more,
//!   half the life below that ([`t4_for_life`](super::multi::t4_for_life); rsplib instead uses life = 3 × re-registration interval;
//!   [`PeConfig::reregistration_interval`] overrides).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::multi::{MultiConfig, MultiEvent, MultiPeCore, RegKey, RegistrationSpec};
use crate::registrar_client::{Action, ConnId, LinkConfig, RegistrarLink};
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
        super::multi::t4_for_life(self.registration_life)
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
    /// The registration's key; the identifier changes only as described above.
    key: RegKey,
    core: MultiPeCore,
    events: VecDeque<PeEvent>,
}

impl PeCore {
    /// A pool element; `seed` feeds the random PE identifier (when not configured).
    pub fn new(cfg: PeConfig, seed: u64) -> Self {
        let mut core = MultiPeCore::new(
            MultiConfig {
                link: cfg.link.clone(),
                registration_timeout: cfg.registration_timeout,
                deregistration_timeout: cfg.deregistration_timeout,
                max_registration_attempts: cfg.max_registration_attempts,
            },
            seed,
        );
        let (id, random) = match cfg.identifier {
            Some(id) if id != 0 => (id, false),
            _ => (core.random_identifier(), true),
        };
        let key = (cfg.pool_handle.clone(), id);
        let mut pe = PeCore {
            cfg,
            key,
            core,
            events: VecDeque::new(),
        };
        let mut spec = pe.spec();
        spec.random_identifier = random;
        // No registrar yet: this only records the registration.
        pe.core.upsert(Instant::now(), spec);
        pe
    }

    /// The registration as the N-registration core keeps it.
    fn spec(&self) -> RegistrationSpec {
        let mut spec = RegistrationSpec::new(
            self.cfg.pool_handle.clone(),
            PoolElementInfo {
                id: self.key.1,
                home_server_id: 0,
                registration_life: self.cfg.life_ms(),
                user_transport: self.cfg.user_transport.clone(),
                policy: self.cfg.policy.clone(),
                asap_transport: None,
            },
        );
        spec.reregistration_interval = Some(self.cfg.t4());
        if let Some((s, _)) = self.core.registration(&self.key) {
            spec.random_identifier = s.random_identifier;
        }
        spec
    }

    /// The PE identifier: stable for the PE's life, except that a random one clashing
    /// before its first successful registration is replaced (see [`PeCore`]).
    pub fn identifier(&self) -> PeIdentifier {
        self.key.1
    }

    /// The configuration (policy reflects [`set_policy`](Self::set_policy)).
    pub fn config(&self) -> &PeConfig {
        &self.cfg
    }

    /// The home registrar's Server Identifier, once learned from a keep-alive.
    pub fn home(&self) -> Option<ServerId> {
        self.core.home()
    }

    /// True while a registration is confirmed on the current association.
    pub fn is_registered(&self) -> bool {
        self.core.is_registered(&self.key)
    }

    /// True once deregistration finished.
    pub fn is_stopped(&self) -> bool {
        self.core.is_stopped()
    }

    /// The registrar link (discovery state).
    pub fn link(&self) -> &RegistrarLink {
        self.core.link()
    }

    /// Tells the registrar link which transport the driver uses towards registrars
    /// ([`RegistrarLink::set_protocol`]; default TCP).
    pub fn set_link_protocol(&mut self, protocol: crate::registrar_client::LinkProtocol) {
        self.core.set_link_protocol(protocol);
    }

    /// Starts: hunts for a registrar, then registers.
    pub fn start(&mut self, now: Instant) {
        self.core.start(now);
        self.pump();
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.core.poll_action()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<PeEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Runs expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.pump();
    }

    /// The driver's connection attempt succeeded.
    pub fn on_connected(&mut self, now: Instant, conn: ConnId) {
        self.core.on_connected(now, conn);
        self.pump();
    }

    /// The driver's connection attempt failed.
    pub fn on_connect_failed(&mut self, now: Instant, conn: ConnId) {
        self.core.on_connect_failed(now, conn);
        self.pump();
    }

    /// An association (ours or accepted) ended.
    pub fn on_lost(&mut self, now: Instant, conn: ConnId) {
        self.core.on_lost(now, conn);
        self.pump();
    }

    /// A registrar opened an association to us (the driver accepted it); it becomes the
    /// registrar link only if it sends an ENDPOINT_KEEP_ALIVE with the H flag.
    /// At most [`MAX_ACCEPTED`] such associations wait for their keep-alive; more are closed
    /// (anybody can connect to the PE's registrar port).
    pub fn on_accepted(&mut self, conn: ConnId, addrs: Vec<SocketAddr>) {
        self.core.on_accepted(conn, addrs);
    }

    /// A fresh connection identifier for an association the driver accepted.
    pub fn allocate_conn(&mut self) -> ConnId {
        self.core.allocate_conn()
    }

    /// An ASAP_SERVER_ANNOUNCE was heard.
    pub fn on_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &crate::wire::asap_msg::ServerAnnounce,
    ) {
        self.core.on_announce(now, from, msg);
        self.pump();
    }

    /// An ASAP message arrived on `conn`.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, msg: AsapMessage) {
        self.core.on_message(now, conn, msg);
        self.pump();
    }

    /// Changes the policy values (e.g. the load, RFC 5356 §5) and re-registers at once.
    pub fn set_policy(&mut self, now: Instant, policy: Policy) {
        self.cfg.policy = policy;
        let spec = self.spec();
        self.core.upsert(now, spec);
        self.pump();
    }

    /// Graceful shutdown: DEREGISTRATION (RFC 5352 §3), then stop.
    pub fn deregister(&mut self, now: Instant) {
        self.core.shutdown(now);
        self.pump();
    }

    /// Moves the core's events to the application's queue (the single-PE view).
    fn pump(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            let ev = match ev {
                MultiEvent::Registered {
                    identifier,
                    registrar,
                    ..
                } => PeEvent::Registered {
                    identifier,
                    registrar,
                },
                MultiEvent::Reregistered {
                    identifier, policy, ..
                } => PeEvent::Reregistered { identifier, policy },
                MultiEvent::Rejected(r) => PeEvent::Rejected(r),
                MultiEvent::IdentifierChanged { to, .. } => {
                    self.key.1 = to;
                    continue;
                }
                MultiEvent::KeepAlive {
                    server_id,
                    home_flag,
                    ..
                } => PeEvent::KeepAlive {
                    server_id,
                    home_flag,
                },
                MultiEvent::HomeChanged { from, to } => PeEvent::HomeChanged { from, to },
                MultiEvent::RegistrarLost => PeEvent::RegistrarLost,
                MultiEvent::HuntFailed { rounds } => PeEvent::HuntFailed { rounds },
                MultiEvent::Deregistered { confirmed } => PeEvent::Deregistered { confirmed },
                MultiEvent::LinkUp { .. } => continue,
            };
            self.events.push_back(ev);
        }
    }
}
