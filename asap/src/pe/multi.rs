//! The sans-I/O pool element core for **N registrations over one registrar link** (RFC 5352
//! §3; asap/wire/INTEROP.md §5.1, §5.3): registration, T2 retransmission, T4
//! re-registration, back-off after a rejection, keep-alive answers per PE identifier, home
//! registrar changes and takeover adoption (RFC 5353 §3.6), deregistration.
//!
//! [`MultiPeCore`] owns one [`RegistrarLink`] (discovery, hunt, failover) and a table of
//! registrations keyed by (pool handle, PE identifier). Inputs are connection results,
//! received ASAP messages and timeouts, each with the current time; outputs are
//! [`Action`]s (connect, send, close) and [`MultiEvent`]s. Users:
//!
//! * [`PeCore`](super::PeCore), the single-PE API, with N = 1;
//! * proxy-pe's registrar client, which registers one PE per legacy server (mode A) and
//!   decides itself which keep-alives may be answered ([`MultiPeCore::on_keep_alive`]).
//!
//! Per registration (RFC 5352 §5 timers):
//!
//! * every registration is sent on a new association (hunted or adopted) unless it is
//!   already registered or pending there;
//! * T2-registration: a REGISTRATION without answer is sent again, at most
//!   [`MultiConfig::max_registration_attempts`] times in all; then the registrar is
//!   abandoned and another one hunted (which gets every registration);
//! * T4-reregistration ([`t4_for_life`] or the spec's override) after every acceptance;
//! * after a rejection the registration is sent again after the delay its
//!   [`RejectRetry`] gives; a random identifier that was never registered is replaced on
//!   "Non-unique PE identifier" (RFC 5352 §3.1, see [`PeCore`](super::PeCore)).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, info, warn};

use super::core::{
    RegistrationRejected, MAX_ACCEPTED, MAX_REG_ATTEMPT, NON_UNIQUE_RETRY_MIN, T2_REGISTRATION,
    T3_DEREGISTRATION, T4_MAX,
};
use crate::registrar_client::{
    Action, ConnId, LinkAction, LinkConfig, LinkEvent, LinkProtocol, RegistrarLink,
};
use crate::wire::asap_msg::{
    Deregistration, DeregistrationResponse, EndpointKeepAlive, EndpointKeepAliveAck, Registration,
    RegistrationResponse, ServerAnnounce,
};
use crate::wire::{
    AsapMessage, CauseCode, OperationError, PeIdentifier, Policy, PoolElementInfo, PoolHandle,
    ServerId,
};

/// A registration's key: (pool handle, PE identifier).
pub type RegKey = (PoolHandle, PeIdentifier);

/// Shortest T4 [`t4_for_life`] gives (a life of a few ms must not make a busy loop).
pub const T4_MIN: Duration = Duration::from_millis(100);

/// T4-reregistration for a registration life (RFC 5352 §5, asap/wire/INTEROP.md §4):
/// min(10 min, life − 20 s) for lifes of 40 s or more, half the life below that, at least
/// [`T4_MIN`]; a life of 0 (no expiry) gives the upper bound [`T4_MAX`].
pub fn t4_for_life(life: Duration) -> Duration {
    if life.is_zero() {
        return T4_MAX;
    }
    let t = if life >= Duration::from_secs(40) {
        (life - Duration::from_secs(20)).min(T4_MAX)
    } else {
        life / 2
    };
    t.max(T4_MIN)
}

/// The delay before the `n`-th (n ≥ 1) retry of a back-off: `initial` doubled n − 1 times
/// (at most 2¹⁶), capped at `max` and at `t4`.
pub fn backoff(initial: Duration, max: Duration, n: u32, t4: Duration) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    initial.saturating_mul(1 << exp).min(max).min(t4)
}

/// When a rejected registration is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectRetry {
    /// The pool element's rule (RFC 5352 §3.1, see [`PeCore`](super::PeCore)): a
    /// "Non-unique PE identifier" after [`NON_UNIQUE_RETRY_MIN`], doubling per consecutive
    /// such rejection up to T4; any other cause after T4.
    NonUniqueBackoff,
    /// Every rejection after `initial`, doubling per rejection in a row up to `max` and
    /// never later than T4 (proxy-pe: a registrar that rejects for a passing reason, e.g.
    /// an allow-list being fixed, sees the PE again soon).
    Backoff {
        /// Delay after the first rejection.
        initial: Duration,
        /// Upper bound of the delay.
        max: Duration,
    },
}

/// One registration the core keeps at the registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSpec {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The PE as registered (identifier, life in ms, transports, policy).
    pub element: PoolElementInfo,
    /// T4 override; `None` derives it from the life ([`t4_for_life`]).
    pub reregistration_interval: Option<Duration>,
    /// When a rejected registration is sent again.
    pub reject_retry: RejectRetry,
    /// The identifier was picked at random: it is replaced on "Non-unique PE identifier"
    /// as long as it was never registered (RFC 5352 §3.1).
    pub random_identifier: bool,
}

impl RegistrationSpec {
    /// A registration with a fixed identifier, the pool element's rejection rule and T4
    /// from the life.
    pub fn new(pool_handle: PoolHandle, element: PoolElementInfo) -> Self {
        RegistrationSpec {
            pool_handle,
            element,
            reregistration_interval: None,
            reject_retry: RejectRetry::NonUniqueBackoff,
            random_identifier: false,
        }
    }

    /// The key of this registration.
    pub fn key(&self) -> RegKey {
        (self.pool_handle.clone(), self.element.id)
    }

    /// The effective T4-reregistration interval.
    pub fn t4(&self) -> Duration {
        self.reregistration_interval.unwrap_or_else(|| {
            t4_for_life(Duration::from_millis(
                u64::try_from(self.element.registration_life).unwrap_or(0),
            ))
        })
    }
}

/// Timers and registrar discovery of a [`MultiPeCore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiConfig {
    /// Registrar discovery and hunt.
    pub link: LinkConfig,
    /// T2-registration.
    pub registration_timeout: Duration,
    /// T3-deregistration (graceful [`shutdown`](MultiPeCore::shutdown)).
    pub deregistration_timeout: Duration,
    /// MAX-REG-ATTEMPT: REGISTRATIONs sent per registration before the registrar is
    /// abandoned.
    pub max_registration_attempts: u32,
}

impl MultiConfig {
    /// RFC 5352 §5 defaults (T2 and T3 30 s, MAX-REG-ATTEMPT 2).
    pub fn new(link: LinkConfig) -> Self {
        MultiConfig {
            link,
            registration_timeout: T2_REGISTRATION,
            deregistration_timeout: T3_DEREGISTRATION,
            max_registration_attempts: MAX_REG_ATTEMPT,
        }
    }
}

/// What the registrar in use answered for one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No answer yet on the association in use (or no association).
    Pending,
    /// REGISTRATION_RESPONSE without the R flag.
    Accepted,
    /// REGISTRATION_RESPONSE with the R flag.
    Rejected,
}

/// The registrar's view of one registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationState {
    /// The last answer on the association in use.
    pub answer: Answer,
    /// Rejections in a row (0 once accepted).
    pub rejections: u32,
    /// The Operation Error of the last rejection, if the registrar sent one.
    pub error: Option<OperationError>,
    /// True while accepted on the association in use.
    pub registered: bool,
}

/// Counters of a [`MultiPeCore`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MultiStats {
    /// REGISTRATIONs sent again because T2 expired.
    pub t2_retries: u64,
    /// Registrars abandoned after MAX-REG-ATTEMPT unanswered REGISTRATIONs.
    pub abandoned: u64,
    /// Periodic re-registrations sent (T4).
    pub reregistrations: u64,
    /// REGISTRATIONs sent again after a rejection.
    pub reject_retries: u64,
}

/// What the core reports to its user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiEvent {
    /// A registration was accepted for the first time on this association.
    Registered {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE identifier.
        identifier: PeIdentifier,
        /// The registrar's addresses.
        registrar: Vec<SocketAddr>,
    },
    /// A re-registration (periodic or after an update) was accepted.
    Reregistered {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE identifier.
        identifier: PeIdentifier,
        /// The policy values now registered.
        policy: Policy,
    },
    /// The registrar refused a registration (R flag).
    Rejected(RegistrationRejected),
    /// A random identifier clashed before its first registration and was replaced.
    IdentifierChanged {
        /// The pool.
        pool_handle: PoolHandle,
        /// The old identifier.
        from: PeIdentifier,
        /// The new one.
        to: PeIdentifier,
    },
    /// An ENDPOINT_KEEP_ALIVE arrived (answered for `answered`).
    KeepAlive {
        /// The association.
        conn: ConnId,
        /// The sender's Server Identifier.
        server_id: ServerId,
        /// Its H flag.
        home_flag: bool,
        /// The PE identifiers an ENDPOINT_KEEP_ALIVE_ACK was sent for.
        answered: Vec<PeIdentifier>,
    },
    /// The home registrar changed (H flag, RFC 5352 §3; or first learned on this
    /// association).
    HomeChanged {
        /// The previous home on this association (`None` = not known yet).
        from: Option<ServerId>,
        /// The new home.
        to: ServerId,
    },
    /// A registrar association came up (hunted or adopted); every registration was sent
    /// on it.
    LinkUp {
        /// The association.
        conn: ConnId,
        /// The registrar's addresses.
        addrs: Vec<SocketAddr>,
    },
    /// The association carrying registrations was lost; a hunt runs.
    RegistrarLost,
    /// A whole registrar hunt round failed.
    HuntFailed {
        /// Consecutive failed rounds.
        rounds: u32,
    },
    /// [`shutdown`](MultiPeCore::shutdown) finished (confirmed, timed out or without a
    /// registrar); the core is stopped.
    Deregistered {
        /// True if the registrar confirmed every deregistration.
        confirmed: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    conn: ConnId,
    deadline: Instant,
    attempts: u32,
}

/// Why a registration is sent again without an outside cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// T4 after an acceptance.
    Reregister,
    /// After a rejection.
    Retry,
}

#[derive(Debug)]
struct Entry {
    spec: RegistrationSpec,
    state: RegistrationState,
    registered_on: Option<ConnId>,
    /// Accepted at least once: a random identifier is fixed from now on.
    ever_registered: bool,
    /// Consecutive rejections that used the back-off.
    streak: u32,
    pending: Option<Pending>,
    /// Changed while a REGISTRATION was pending: send again after the answer.
    dirty: bool,
    next_send: Option<(Instant, Resend)>,
}

#[derive(Debug)]
struct Shutdown {
    conn: ConnId,
    deadline: Instant,
    waiting: Vec<RegKey>,
    confirmed: bool,
}

/// The sans-I/O N-registration pool element core; see the module documentation.
#[derive(Debug)]
pub struct MultiPeCore {
    cfg: MultiConfig,
    link: RegistrarLink,
    entries: BTreeMap<RegKey, Entry>,
    rng: StdRng,
    home: Option<ServerId>,
    /// Associations registrars opened to us, waiting for a keep-alive with the H flag.
    accepted: HashMap<ConnId, Vec<SocketAddr>>,
    /// Highest connection id handed out (kept unique across link replacements).
    last_conn: u64,
    stopping: bool,
    stopped: bool,
    deregistering: Option<Shutdown>,
    stats: MultiStats,
    actions: VecDeque<Action>,
    events: VecDeque<MultiEvent>,
}

impl MultiPeCore {
    /// A core without registrations; `seed` feeds random identifiers
    /// ([`random_identifier`](Self::random_identifier)). Idle until [`start`](Self::start).
    pub fn new(cfg: MultiConfig, seed: u64) -> Self {
        let link = RegistrarLink::new(cfg.link.clone());
        MultiPeCore {
            cfg,
            link,
            entries: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            home: None,
            accepted: HashMap::new(),
            last_conn: 0,
            stopping: false,
            stopped: false,
            deregistering: None,
            stats: MultiStats::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A random non-zero PE identifier (RFC 5351 §3.1) from the core's generator.
    pub fn random_identifier(&mut self) -> PeIdentifier {
        self.rng.gen_range(1..=u32::MAX)
    }

    /// The configuration.
    pub fn config(&self) -> &MultiConfig {
        &self.cfg
    }

    /// The registrar link (discovery state).
    pub fn link(&self) -> &RegistrarLink {
        &self.link
    }

    /// Tells the registrar link which transport the driver uses towards registrars.
    pub fn set_link_protocol(&mut self, protocol: LinkProtocol) {
        self.link.set_protocol(protocol);
    }

    /// The home registrar's Server Identifier, learned from keep-alives on the current
    /// association.
    pub fn home(&self) -> Option<ServerId> {
        self.home
    }

    /// Counters.
    pub fn stats(&self) -> MultiStats {
        self.stats
    }

    /// True once [`shutdown`](Self::shutdown) finished.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The registrations, in key order, with what the registrar answered.
    pub fn registrations(
        &self,
    ) -> impl Iterator<Item = (&RegistrationSpec, &RegistrationState)> + '_ {
        self.entries.values().map(|e| (&e.spec, &e.state))
    }

    /// One registration.
    pub fn registration(&self, key: &RegKey) -> Option<(&RegistrationSpec, &RegistrationState)> {
        self.entries.get(key).map(|e| (&e.spec, &e.state))
    }

    /// True while `key` is accepted on the current association.
    pub fn is_registered(&self, key: &RegKey) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.registered_on.is_some() && e.registered_on == self.link.current())
    }

    /// Starts: hunts for a registrar, then registers everything.
    pub fn start(&mut self, now: Instant) {
        self.link.start(now);
        self.process_link(now);
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<MultiEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let per_entry = self.entries.values().flat_map(|e| {
            [e.pending.map(|p| p.deadline), e.next_send.map(|n| n.0)]
                .into_iter()
                .flatten()
        });
        self.link
            .poll_timeout()
            .into_iter()
            .chain(per_entry)
            .chain(self.deregistering.as_ref().map(|d| d.deadline))
            .min()
    }

    /// Adds a registration, or replaces the one with the same key (e.g. new policy values,
    /// RFC 5356 §5): sent at once when a registrar is connected, or after the answer to a
    /// REGISTRATION still pending.
    pub fn upsert(&mut self, now: Instant, spec: RegistrationSpec) {
        let key = spec.key();
        let conn = self.link.current();
        let e = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            spec: spec.clone(),
            state: RegistrationState {
                answer: Answer::Pending,
                rejections: 0,
                error: None,
                registered: false,
            },
            registered_on: None,
            ever_registered: false,
            streak: 0,
            pending: None,
            dirty: false,
            next_send: None,
        });
        e.spec = spec;
        if self.stopping {
            return;
        }
        if e.pending.is_some() {
            e.dirty = true;
        } else if let Some(conn) = conn {
            self.send_registration(now, conn, &key, 1);
        }
    }

    /// Forgets a registration and sends its DEREGISTRATION (RFC 5352 §3) when a registrar
    /// is connected, without waiting for the answer.
    pub fn remove(&mut self, key: &RegKey) -> Option<RegistrationSpec> {
        let e = self.entries.remove(key)?;
        if let Some(conn) = self.link.current() {
            self.send_deregistration(conn, key);
        }
        Some(e.spec)
    }

    /// Makes the registrations exactly `specs`: removes (deregisters) the others, adds
    /// new ones and sends changed ones ([`upsert`](Self::upsert)); unchanged ones are left
    /// alone.
    pub fn sync(&mut self, now: Instant, specs: Vec<RegistrationSpec>) {
        let wanted: BTreeMap<RegKey, RegistrationSpec> =
            specs.into_iter().map(|s| (s.key(), s)).collect();
        let gone: Vec<RegKey> = self
            .entries
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k);
        }
        for (k, s) in wanted {
            if self.entries.get(&k).is_none_or(|e| e.spec != s) {
                self.upsert(now, s);
            }
        }
    }

    /// Sends every registration again at once on the association in use (e.g. after the
    /// process was stalled and the registrar may have dropped them); every answer is
    /// pending again.
    pub fn resend_all(&mut self, now: Instant) {
        let keys: Vec<RegKey> = self.entries.keys().cloned().collect();
        for e in self.entries.values_mut() {
            e.state.answer = Answer::Pending;
        }
        if self.stopping {
            return;
        }
        if let Some(conn) = self.link.current() {
            for k in keys {
                self.send_registration(now, conn, &k, 1);
            }
        }
    }

    /// Replaces the registrar discovery configuration (e.g. a reloaded registrar list).
    /// `keep_current`: the association in use stays (no re-registration); otherwise it is
    /// closed and the new configuration hunted. `start`: hunt with the new configuration.
    pub fn replace_link(
        &mut self,
        now: Instant,
        link_cfg: LinkConfig,
        keep_current: bool,
        start: bool,
    ) {
        let mut link = RegistrarLink::new(link_cfg.clone());
        link.set_protocol(self.link.protocol());
        // Connection ids stay unique across links.
        while link.allocate_conn().0 <= self.last_conn {}
        self.cfg.link = link_cfg;
        let old = std::mem::replace(&mut self.link, link);
        match (old.current(), old.current_addrs()) {
            (Some(conn), Some(addrs)) if keep_current => {
                self.link.adopt(conn, addrs.to_vec());
                // The association is the same: nothing to register again.
                while self.link.poll_event().is_some() {}
            }
            (cur, _) => {
                if let Some(conn) = cur {
                    info!("registrar in use no longer configured: hunting");
                    self.actions.push_back(Action::Close { conn });
                    self.on_down(conn);
                }
            }
        }
        if start {
            self.link.start(now);
        }
        self.process_link(now);
    }

    /// Graceful shutdown: DEREGISTRATION of every registration (RFC 5352 §3), then stop
    /// once all are answered, T3 expires or the association is lost.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        for e in self.entries.values_mut() {
            e.pending = None;
            e.next_send = None;
        }
        let Some(conn) = self.link.current() else {
            self.finish_stop(false);
            return;
        };
        let keys: Vec<RegKey> = self.entries.keys().cloned().collect();
        for k in &keys {
            info!(pool = %k.0, pe = format_args!("{:#010x}", k.1), "deregistering");
            self.send_deregistration(conn, k);
        }
        if keys.is_empty() {
            self.finish_stop(true);
            return;
        }
        self.deregistering = Some(Shutdown {
            conn,
            deadline: now + self.cfg.deregistration_timeout,
            waiting: keys,
            confirmed: true,
        });
    }

    /// Runs expired timers: hunt back-off, T3, T2, T4 and rejection retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.process_link(now);
        if self
            .deregistering
            .as_ref()
            .is_some_and(|d| now >= d.deadline)
        {
            warn!("no DEREGISTRATION_RESPONSE within T3");
            self.finish_stop(false);
            return;
        }
        let expired: Vec<(RegKey, Pending)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| {
                e.pending
                    .filter(|p| now >= p.deadline)
                    .map(|p| (k.clone(), p))
            })
            .collect();
        for (k, p) in expired {
            if self.link.current() != Some(p.conn) {
                if let Some(e) = self.entries.get_mut(&k) {
                    e.pending = None;
                }
                continue;
            }
            if p.attempts < self.cfg.max_registration_attempts {
                debug!(pool = %k.0, pe = format_args!("{:#010x}", k.1), attempt = p.attempts + 1, "T2 expired: registering again");
                self.stats.t2_retries += 1;
                self.send_registration(now, p.conn, &k, p.attempts + 1);
            } else {
                warn!(
                    pool = %k.0,
                    pe = format_args!("{:#010x}", k.1),
                    attempts = p.attempts,
                    "no REGISTRATION_RESPONSE (MAX-REG-ATTEMPT reached): hunting another registrar"
                );
                self.stats.abandoned += 1;
                for e in self.entries.values_mut() {
                    e.pending = None;
                }
                self.link.abandon(now);
                self.process_link(now);
                return;
            }
        }
        let due: Vec<(RegKey, Resend)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| e.next_send.filter(|n| now >= n.0).map(|n| (k.clone(), n.1)))
            .collect();
        for (k, why) in due {
            let Some(e) = self.entries.get_mut(&k) else {
                continue;
            };
            e.next_send = None;
            let Some(conn) = self.link.current() else {
                continue;
            };
            if e.pending.is_some() || self.stopping {
                continue;
            }
            match why {
                Resend::Reregister => self.stats.reregistrations += 1,
                Resend::Retry => self.stats.reject_retries += 1,
            }
            self.send_registration(now, conn, &k, 1);
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
        if self.deregistering.as_ref().is_some_and(|d| d.conn == conn) {
            self.finish_stop(false);
            return;
        }
        self.link.on_lost(now, conn);
        self.process_link(now);
    }

    /// A registrar opened an association to us (the driver accepted it); it becomes the
    /// registrar link only if it sends an ENDPOINT_KEEP_ALIVE with the H flag. At most
    /// [`MAX_ACCEPTED`] such associations wait; more are closed (anybody can connect).
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
        let c = self.link.allocate_conn();
        self.last_conn = self.last_conn.max(c.0);
        c
    }

    /// An ASAP_SERVER_ANNOUNCE was heard.
    pub fn on_announce(&mut self, now: Instant, from: SocketAddr, msg: &ServerAnnounce) {
        self.link.on_announce(now, from, msg);
        self.process_link(now);
    }

    /// An ASAP message arrived on `conn`. An ENDPOINT_KEEP_ALIVE is answered for every
    /// registration it names (all of the pool without a PE identifier); a user that gates
    /// the answers calls [`on_keep_alive`](Self::on_keep_alive) itself instead.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, msg: AsapMessage) {
        match msg {
            AsapMessage::RegistrationResponse(r) => self.on_registration_response(now, conn, r),
            AsapMessage::DeregistrationResponse(r) => self.on_deregistration_response(conn, r),
            AsapMessage::EndpointKeepAlive(k) => {
                let ids: Vec<PeIdentifier> = self
                    .entries
                    .keys()
                    .filter(|(h, id)| {
                        *h == k.pool_handle && k.pe_identifier.is_none_or(|i| i == *id)
                    })
                    .map(|(_, id)| *id)
                    .collect();
                if ids.is_empty() {
                    debug!(?k, "keep-alive for another PE");
                    return;
                }
                self.on_keep_alive(now, conn, &k, &ids);
            }
            AsapMessage::Error(e) => warn!(error = ?e.error, "ASAP_ERROR from registrar"),
            other => debug!(
                msg = other.message_type().name().unwrap_or("?"),
                "ignoring unexpected ASAP message at the PE"
            ),
        }
    }

    /// An ENDPOINT_KEEP_ALIVE arrived on `conn`; an ENDPOINT_KEEP_ALIVE_ACK is sent for each
    /// of `answer` (the PE identifiers the user allows to answer for). With the H flag on
    /// an association a registrar opened to us, that registrar becomes the home (RFC 5352
    /// §3, RFC 5353 §3.6): its association replaces the current one and every registration
    /// is sent there.
    pub fn on_keep_alive(
        &mut self,
        now: Instant,
        conn: ConnId,
        k: &EndpointKeepAlive,
        answer: &[PeIdentifier],
    ) {
        for id in answer {
            self.actions.push_back(Action::Send {
                conn,
                message: EndpointKeepAliveAck {
                    pool_handle: k.pool_handle.clone(),
                    pe_identifier: *id,
                }
                .into(),
            });
        }
        self.events.push_back(MultiEvent::KeepAlive {
            conn,
            server_id: k.server_id,
            home_flag: k.home,
            answered: answer.to_vec(),
        });
        let on_current = self.link.current() == Some(conn);
        if !(k.home || (on_current && self.home.is_none())) {
            return;
        }
        // Compared with the home before an adoption (which forgets the home).
        let previous = self.home;
        if k.home && !on_current {
            let Some(addrs) = self.accepted.remove(&conn) else {
                debug!(conn = conn.0, "H-flag keep-alive on an unknown association");
                return;
            };
            info!(
                ?addrs,
                server_id = format_args!("{:#010x}", k.server_id),
                "adopting the registrar that took over as home"
            );
            self.link.adopt(conn, addrs);
            self.process_link(now);
        }
        if previous != Some(k.server_id) {
            info!(
                from = ?previous.map(|h| format!("{h:#010x}")),
                to = format_args!("{:#010x}", k.server_id),
                "home registrar changed"
            );
            self.events.push_back(MultiEvent::HomeChanged {
                from: previous,
                to: k.server_id,
            });
        }
        self.home = Some(k.server_id);
    }

    fn on_deregistration_response(&mut self, conn: ConnId, r: DeregistrationResponse) {
        let Some(d) = self.deregistering.as_mut() else {
            return;
        };
        let key = (r.pool_handle, r.pe_identifier);
        let Some(i) = d.waiting.iter().position(|k| *k == key) else {
            return;
        };
        if d.conn != conn {
            return;
        }
        if r.reject {
            warn!(error = ?r.error, "deregistration rejected");
            d.confirmed = false;
        }
        d.waiting.remove(i);
        if d.waiting.is_empty() {
            let confirmed = d.confirmed;
            self.finish_stop(confirmed);
        }
    }

    fn finish_stop(&mut self, confirmed: bool) {
        self.deregistering = None;
        self.stopping = true;
        self.stopped = true;
        for e in self.entries.values_mut() {
            e.pending = None;
            e.registered_on = None;
            e.state.registered = false;
        }
        self.link.stop();
        while let Some(a) = self.link.poll_action() {
            self.actions.push_back(a.into());
        }
        for (conn, _) in self.accepted.drain() {
            self.actions.push_back(Action::Close { conn });
        }
        self.events
            .push_back(MultiEvent::Deregistered { confirmed });
    }

    fn send_deregistration(&mut self, conn: ConnId, key: &RegKey) {
        self.actions.push_back(Action::Send {
            conn,
            message: Deregistration {
                pool_handle: key.0.clone(),
                pe_identifier: key.1,
            }
            .into(),
        });
    }

    fn send_registration(&mut self, now: Instant, conn: ConnId, key: &RegKey, attempts: u32) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.dirty = false;
        e.next_send = None;
        self.actions.push_back(Action::Send {
            conn,
            message: Registration {
                pool_handle: key.0.clone(),
                pool_element: e.spec.element.clone(),
            }
            .into(),
        });
        e.pending = Some(Pending {
            conn,
            deadline: now + self.cfg.registration_timeout,
            attempts,
        });
    }

    fn on_registration_response(&mut self, now: Instant, conn: ConnId, r: RegistrationResponse) {
        let key = (r.pool_handle.clone(), r.pe_identifier);
        let Some(e) = self.entries.get_mut(&key) else {
            debug!(?r, "REGISTRATION_RESPONSE for something else");
            return;
        };
        if e.pending.is_none_or(|p| p.conn != conn) {
            debug!(?r, "REGISTRATION_RESPONSE without a pending registration");
            return;
        }
        e.pending = None;
        let t4 = e.spec.t4();
        if r.reject {
            let cause = r.error.as_ref().and_then(|x| x.first_code());
            e.state.answer = Answer::Rejected;
            e.state.rejections = e.state.rejections.saturating_add(1);
            e.state.error = r.error.clone();
            let rej = RegistrationRejected {
                pool_handle: r.pool_handle,
                identifier: key.1,
                cause,
                error: r.error,
            };
            warn!(%rej, "registration rejected");
            self.events.push_back(MultiEvent::Rejected(rej));
            let delay = match e.spec.reject_retry {
                RejectRetry::NonUniqueBackoff
                    if cause == Some(CauseCode::NonUniquePeIdentifier) =>
                {
                    if e.spec.random_identifier && !e.ever_registered {
                        // Our never-registered random identifier clashed with another
                        // PE's: pick another and try again at once.
                        self.replace_identifier(now, conn, &key);
                        return;
                    }
                    // Our identifier is fixed (RFC 5352 §3.1): most likely our own stale
                    // entry; retry with back-off until it is gone.
                    e.streak = e.streak.saturating_add(1);
                    let d = backoff(NON_UNIQUE_RETRY_MIN, t4, e.streak, t4);
                    info!(
                        pe = format_args!("{:#010x}", key.1),
                        ?d,
                        "PE identifier reported non-unique: keeping it, retrying"
                    );
                    d
                }
                RejectRetry::NonUniqueBackoff => t4,
                RejectRetry::Backoff { initial, max } => {
                    e.streak = e.streak.saturating_add(1);
                    let d = backoff(initial, max, e.streak, t4);
                    warn!(pool = %key.0, pe = format_args!("{:#010x}", key.1), rejections = e.state.rejections, retry_in_ms = d.as_millis() as u64, "registration rejected: retrying after a back-off");
                    d
                }
            };
            e.next_send = Some((now + delay, Resend::Retry));
            return;
        }
        let first = e.registered_on != Some(conn);
        e.registered_on = Some(conn);
        e.ever_registered = true;
        e.streak = 0;
        e.state = RegistrationState {
            answer: Answer::Accepted,
            rejections: 0,
            error: None,
            registered: true,
        };
        e.next_send = Some((now + t4, Resend::Reregister));
        let dirty = e.dirty;
        if first {
            let registrar = self
                .link
                .current_addrs()
                .map(|a| a.to_vec())
                .unwrap_or_default();
            info!(pool = %key.0, pe = format_args!("{:#010x}", key.1), ?registrar, "registered");
            self.events.push_back(MultiEvent::Registered {
                pool_handle: key.0.clone(),
                identifier: key.1,
                registrar,
            });
        } else {
            self.events.push_back(MultiEvent::Reregistered {
                pool_handle: key.0.clone(),
                identifier: key.1,
                policy: e.spec.element.policy.clone(),
            });
        }
        if dirty {
            self.send_registration(now, conn, &key, 1);
        }
    }

    fn replace_identifier(&mut self, now: Instant, conn: ConnId, key: &RegKey) {
        let Some(mut e) = self.entries.remove(key) else {
            return;
        };
        let new = loop {
            let id = self.random_identifier();
            if !self.entries.contains_key(&(key.0.clone(), id)) {
                break id;
            }
        };
        info!(pe = format_args!("{new:#010x}"), "new random PE identifier");
        e.spec.element.id = new;
        let new_key = (key.0.clone(), new);
        self.entries.insert(new_key.clone(), e);
        self.events.push_back(MultiEvent::IdentifierChanged {
            pool_handle: key.0.clone(),
            from: key.1,
            to: new,
        });
        self.send_registration(now, conn, &new_key, 1);
    }

    fn on_down(&mut self, conn: ConnId) {
        let mut lost = false;
        for e in self.entries.values_mut() {
            if e.registered_on == Some(conn) || e.pending.is_some_and(|p| p.conn == conn) {
                lost = true;
            }
            if e.registered_on == Some(conn) {
                e.registered_on = None;
            }
            if e.pending.is_some_and(|p| p.conn == conn) {
                e.pending = None;
            }
            e.next_send = None;
            // The registrar drops the PEs of a lost association.
            e.state.answer = Answer::Pending;
            e.state.registered = false;
        }
        if lost {
            self.events.push_back(MultiEvent::RegistrarLost);
        }
    }

    fn process_link(&mut self, now: Instant) {
        while let Some(a) = self.link.poll_action() {
            let (LinkAction::Connect { conn, .. } | LinkAction::Close { conn }) = &a;
            self.last_conn = self.last_conn.max(conn.0);
            self.actions.push_back(a.into());
        }
        while let Some(ev) = self.link.poll_event() {
            match ev {
                LinkEvent::Up { conn, addrs } => {
                    if self.stopping {
                        continue;
                    }
                    self.home = None;
                    self.events.push_back(MultiEvent::LinkUp { conn, addrs });
                    let keys: Vec<RegKey> = self
                        .entries
                        .iter_mut()
                        .filter(|(_, e)| {
                            e.registered_on != Some(conn)
                                && e.pending.is_none_or(|p| p.conn != conn)
                        })
                        .map(|(k, e)| {
                            e.registered_on = None;
                            e.state.answer = Answer::Pending;
                            e.state.registered = false;
                            k.clone()
                        })
                        .collect();
                    for k in keys {
                        self.send_registration(now, conn, &k, 1);
                    }
                }
                LinkEvent::Down { conn } => self.on_down(conn),
                LinkEvent::HuntRoundFailed { rounds, .. } => {
                    self.events.push_back(MultiEvent::HuntFailed { rounds })
                }
            }
        }
    }
}
