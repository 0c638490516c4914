//! ASAP client side towards the ENRP server (RFC 5352 §2.2, §3.1–3.3, §3.6): registration
//! and deregistration of the PEs the core wants, and answers to the home registrar's
//! Endpoint Keep-Alives — in mode A only while the core says the legacy server is fresh and
//! running.
//!
//! This uses the wire codec and transport of `asap` directly, not `asap::pe::PoolElement`
//! (see the README, "Why not PoolElement"): every PE of the proxy rides on **one**
//! registrar association. It reuses the pieces of `asap::pe` that fit:
//!
//! * [`RegistrarLink`] (registrar hunt with back-off over the configured list, the lost or
//!   abandoned registrar tried last, adoption of an accepted association);
//! * the RFC 5352 §5 timer defaults (`asap::pe::core`);
//! * the network plumbing of the PE and PU drivers (`asap::registrar_client::driver::Net`:
//!   connections from the shared port, one reader task per association, ASAP encode/decode).
//!
//! [`RegClient`] is the sans-I/O protocol logic (virtual clock in the unit tests), [`run`]
//! its tokio driver:
//!
//! * **Full snapshot** after every (re)connect or adoption: the driver asks the core for all
//!   wanted registrations and sends them, so neither a registrar restart nor a proxy restart
//!   loses a registration. Between snapshots the client mirrors the wanted set from the
//!   Register/Deregister commands.
//! * **T2-registration:** a REGISTRATION without REGISTRATION_RESPONSE within
//!   [`ClientConfig::registration_timeout`] is sent again, at most
//!   [`ClientConfig::max_registration_attempts`] times in all; then the registrar is
//!   abandoned and the next one hunted (which gets the full snapshot).
//! * **T4-reregistration:** every accepted registration is sent again before its
//!   registration life ends ([`t4`]), even when nothing changed, so a registrar never drops
//!   a PE of the proxy by lifetime expiry.
//! * **Takeover (RFC 5352 §3, RFC 5353 §3.6):** registrar associations are opened from one
//!   local port on which the proxy also listens (`SO_REUSEPORT`, as
//!   `asap::pe::PoolElementConfig::adoptable`), so the registrar that takes over from a dead
//!   home reaches the proxy at the ASAP transport the home recorded. Its
//!   ENDPOINT_KEEP_ALIVE with the H flag is answered (gated by the core as always), its
//!   association becomes the registrar association, its server becomes the home, and all
//!   wanted registrations are sent there.
//! * The registrar list can be replaced at run time ([`RegistrarCmd::SetRegistrars`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asap::pe::core::{MAX_ACCEPTED, MAX_REG_ATTEMPT, T2_REGISTRATION, T4_MAX};
use asap::registrar_client::driver::{Net, NetEvent};
use asap::registrar_client::{
    Action, ConnId, LinkAction, LinkConfig, LinkEvent, LinkProtocol, RegistrarLink,
};
use asap::transport::TransportKind;
use asap::wire::asap_msg::{
    Deregistration, EndpointKeepAlive, EndpointKeepAliveAck, Registration, RegistrationResponse,
};
use asap::wire::{AsapMessage, PoolElementInfo, PoolHandle, ServerId};
use tokio::sync::{mpsc, oneshot};

/// A request from the driver to the registrar task.
#[derive(Debug)]
pub enum RegistrarCmd {
    /// Register (or re-register) a PE.
    Register(String, PoolElementInfo),
    /// Deregister a PE.
    Deregister(String, u32),
    /// Replace the configured registrar list (configuration reload).
    SetRegistrars(Vec<SocketAddr>),
    /// The proxy was stalled (SIGSTOP, swapped out, a hung host): send every wanted
    /// registration again at once, since the registrar may have dropped them for
    /// unanswered keep-alives meanwhile (issue 19 item 7).
    Resync,
}

/// Questions the registrar task asks the driver (which owns the core).
#[derive(Debug)]
pub enum RegistrarQuery {
    /// All registrations wanted now (sent after every (re)connect).
    Snapshot(oneshot::Sender<Vec<(String, PoolElementInfo)>>),
    /// May the keep-alive for this PE be answered?
    KeepAlive(u32, oneshot::Sender<bool>),
    /// PE ids of a pool whose keep-alive may be answered (keep-alive without PE id).
    KeepAlivePool(String, oneshot::Sender<Vec<u32>>),
}

/// Status of the registrar association, for the status output.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RegistrarState {
    /// Registrar in use (peer address of the registrar association; for an association a
    /// registrar opened after a takeover, the address it connected from).
    pub connected_to: Option<SocketAddr>,
    /// Registration responses accepted.
    pub accepted: u64,
    /// Registration responses rejected.
    pub rejected: u64,
    /// Keep-alives answered.
    pub keep_alives_answered: u64,
    /// Keep-alives left unanswered because the server was not fresh/running.
    pub keep_alives_refused: u64,
    /// Server Identifier of the home registrar, learned from keep-alives (the last one
    /// known while a new association waits for its first keep-alive).
    #[serde(default)]
    pub home: Option<ServerId>,
    /// Home registrar changes after the first (takeovers, RFC 5352 §3).
    #[serde(default)]
    pub home_changes: u64,
    /// REGISTRATIONs sent again because T2 expired.
    #[serde(default)]
    pub t2_retries: u64,
    /// Registrars abandoned after MAX-REG-ATTEMPT unanswered REGISTRATIONs.
    #[serde(default)]
    pub abandoned: u64,
    /// Periodic re-registrations sent (T4).
    #[serde(default)]
    pub reregistrations: u64,
    /// REGISTRATIONs sent again after a rejection (with back-off, see
    /// [`reject_backoff`]).
    #[serde(default)]
    pub reject_retries: u64,
    /// Full re-registrations after the proxy noticed it had been stalled.
    #[serde(default)]
    pub resyncs: u64,
    /// Per wanted PE, what the registrar in use answered (issue 19 item 7: the status
    /// shows what the registrar accepted, not only what the proxy wants).
    #[serde(default)]
    pub pes: Vec<PeRegistration>,
}

/// What the registrar answered for one wanted PE.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PeRegistration {
    /// Pool handle.
    pub pool_handle: String,
    /// PE identifier.
    pub pe_id: u32,
    /// `pending` (sent, or waiting for an association), `accepted` or `rejected`.
    pub state: PeRegState,
    /// The registrar's Operation Error of the last rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rejections in a row (0 once accepted).
    #[serde(default)]
    pub rejections: u32,
}

/// State of one registration at the registrar.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PeRegState {
    /// No answer yet on the association in use (or no association).
    Pending,
    /// REGISTRATION_RESPONSE without the R flag.
    Accepted,
    /// REGISTRATION_RESPONSE with the R flag; sent again after [`reject_backoff`].
    Rejected,
}

/// First delay before a rejected REGISTRATION is sent again.
pub const REJECT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Upper bound of the delay before a rejected REGISTRATION is sent again.
pub const REJECT_RETRY_MAX: Duration = Duration::from_secs(60);

/// Delay before the `n`-th rejection in a row (n ≥ 1) is followed by another
/// REGISTRATION: 1 s, doubling up to 60 s, never later than T4 of the registration life
/// (issue 19 item 7: a registrar that rejects for a passing reason, e.g. an allow-list
/// being fixed, sees the PE again soon, not only after T4).
pub fn reject_backoff(n: u32, life_ms: i32) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    REJECT_RETRY_INITIAL
        .saturating_mul(1 << exp)
        .min(REJECT_RETRY_MAX)
        .min(t4(life_ms))
}

/// Timers and registrars of a [`RegClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Configured registrars, in hunt order.
    pub registrars: Vec<SocketAddr>,
    /// T2-registration.
    pub registration_timeout: Duration,
    /// MAX-REG-ATTEMPT: REGISTRATIONs sent per registration before the registrar is
    /// considered failed.
    pub max_registration_attempts: u32,
    /// Hunt back-off after the first failed round (doubles up to `hunt_max_backoff`).
    pub hunt_initial_backoff: Duration,
    /// Upper bound of the hunt back-off.
    pub hunt_max_backoff: Duration,
    /// Transport towards the registrars.
    pub protocol: LinkProtocol,
}

impl ClientConfig {
    /// RFC 5352 §5 defaults (T2 30 s, MAX-REG-ATTEMPT 2); hunt back-off 500 ms … 8 s.
    pub fn new(registrars: Vec<SocketAddr>, protocol: LinkProtocol) -> Self {
        ClientConfig {
            registrars,
            registration_timeout: T2_REGISTRATION,
            max_registration_attempts: MAX_REG_ATTEMPT,
            hunt_initial_backoff: Duration::from_millis(500),
            hunt_max_backoff: Duration::from_secs(8),
            protocol,
        }
    }

    /// A registrar link for this configuration, told the proxy's transport.
    fn link(&self) -> RegistrarLink {
        let mut link = RegistrarLink::new(LinkConfig {
            static_registrars: self.registrars.iter().map(|a| vec![*a]).collect(),
            hunt_initial_backoff: self.hunt_initial_backoff,
            hunt_max_backoff: self.hunt_max_backoff,
            ..LinkConfig::default()
        });
        link.set_protocol(self.protocol);
        link
    }
}

/// T4-reregistration for a registration life in ms, as `asap::pe::PeConfig::t4`:
/// min(10 min, life − 20 s) for lifes of 40 s or more, half the life below that.
/// A life of 0 or less (no expiry) gives the upper bound, 10 min; T4 is at least 100 ms.
pub fn t4(life_ms: i32) -> Duration {
    let Ok(ms) = u64::try_from(life_ms) else {
        return T4_MAX;
    };
    if ms == 0 {
        return T4_MAX;
    }
    let life = Duration::from_millis(ms);
    let t = if life >= Duration::from_secs(40) {
        (life - Duration::from_secs(20)).min(T4_MAX)
    } else {
        life / 2
    };
    t.max(Duration::from_millis(100))
}

type Key = (String, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    conn: ConnId,
    deadline: Instant,
    attempts: u32,
}

/// The sans-I/O registrar client; see the module documentation.
#[derive(Debug)]
pub struct RegClient {
    cfg: ClientConfig,
    link: RegistrarLink,
    /// Registrations wanted (mirror of the core's, refreshed by every snapshot).
    wanted: BTreeMap<Key, PoolElementInfo>,
    pending: BTreeMap<Key, Pending>,
    /// T4 deadlines of accepted registrations.
    rereg: BTreeMap<Key, Instant>,
    /// An association came up (or was adopted): the driver must fetch a snapshot.
    snapshot_due: bool,
    home: Option<ServerId>,
    /// Associations registrars opened to us, waiting for a keep-alive with the H flag.
    accepted: HashMap<ConnId, Vec<SocketAddr>>,
    /// Highest connection id handed out (kept unique across link replacements).
    last_conn: u64,
    actions: VecDeque<Action>,
    state: RegistrarState,
    /// What the registrar answered per wanted PE (mirrored into `state.pes`).
    answers: BTreeMap<Key, PeRegistration>,
}

impl RegClient {
    /// A client; idle until [`start`](Self::start).
    pub fn new(cfg: ClientConfig) -> Self {
        let link = cfg.link();
        RegClient {
            cfg,
            link,
            wanted: BTreeMap::new(),
            pending: BTreeMap::new(),
            rereg: BTreeMap::new(),
            snapshot_due: false,
            home: None,
            accepted: HashMap::new(),
            last_conn: 0,
            actions: VecDeque::new(),
            state: RegistrarState::default(),
            answers: BTreeMap::new(),
        }
    }

    /// Starts hunting for a registrar (if any is configured).
    pub fn start(&mut self, now: Instant) {
        if !self.cfg.registrars.is_empty() {
            self.link.start(now);
        }
        self.process_link(now);
    }

    /// Status counters and the registrar in use.
    pub fn state(&self) -> &RegistrarState {
        &self.state
    }

    /// The home registrar's Server Identifier, once learned.
    pub fn home(&self) -> Option<ServerId> {
        self.home
    }

    /// The registrar association in use.
    pub fn current(&self) -> Option<ConnId> {
        self.link.current()
    }

    /// Registrations wanted now.
    pub fn wanted(&self) -> impl Iterator<Item = (&str, &PoolElementInfo)> {
        self.wanted.iter().map(|((h, _), pe)| (h.as_str(), pe))
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// True once after an association came up or was adopted: the driver must answer with
    /// [`set_snapshot`](Self::set_snapshot).
    pub fn take_snapshot_request(&mut self) -> bool {
        std::mem::take(&mut self.snapshot_due)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.link.poll_timeout(),
            self.pending.values().map(|p| p.deadline).min(),
            self.rereg.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs expired timers: hunt back-off, T2, T4.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.process_link(now);
        let expired: Vec<(Key, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        for (k, p) in expired {
            if self.link.current() != Some(p.conn) {
                self.pending.remove(&k);
                continue;
            }
            if p.attempts < self.cfg.max_registration_attempts {
                tracing::debug!(pool = %k.0, pe = format_args!("{:#010x}", k.1), attempt = p.attempts + 1, "T2 expired: registering again");
                self.state.t2_retries += 1;
                self.send_registration(now, p.conn, &k, p.attempts + 1);
            } else {
                tracing::warn!(
                    pool = %k.0,
                    pe = format_args!("{:#010x}", k.1),
                    attempts = p.attempts,
                    "no REGISTRATION_RESPONSE (MAX-REG-ATTEMPT reached): hunting another registrar"
                );
                self.state.abandoned += 1;
                self.pending.clear();
                self.link.abandon(now);
                self.process_link(now);
                return;
            }
        }
        let due: Vec<Key> = self
            .rereg
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.rereg.remove(&k);
            if let Some(conn) = self.link.current() {
                if !self.pending.contains_key(&k) && self.wanted.contains_key(&k) {
                    if self
                        .answers
                        .get(&k)
                        .is_some_and(|a| a.state == PeRegState::Rejected)
                    {
                        self.state.reject_retries += 1;
                    } else {
                        self.state.reregistrations += 1;
                    }
                    self.send_registration(now, conn, &k, 1);
                }
            }
        }
    }

    /// Wants `pe` registered in `pool` (sent at once when a registrar is connected).
    pub fn register(&mut self, now: Instant, pool: String, pe: PoolElementInfo) {
        let k = (pool, pe.id);
        self.wanted.insert(k.clone(), pe);
        if let Some(conn) = self.link.current() {
            self.send_registration(now, conn, &k, 1);
        }
    }

    /// Deregisters a PE (sent at once when a registrar is connected).
    pub fn deregister(&mut self, pool: String, id: u32) {
        let k = (pool, id);
        self.wanted.remove(&k);
        self.pending.remove(&k);
        self.rereg.remove(&k);
        self.answers.remove(&k);
        self.publish_answers();
        if let Some(conn) = self.link.current() {
            self.actions.push_back(Action::Send {
                conn,
                message: Deregistration {
                    pool_handle: PoolHandle::from(k.0.as_str()),
                    pe_identifier: id,
                }
                .into(),
            });
        }
    }

    /// The full set of wanted registrations (the driver's answer to a snapshot request):
    /// replaces the mirror and registers all of them on the current association.
    pub fn set_snapshot(&mut self, now: Instant, snapshot: Vec<(String, PoolElementInfo)>) {
        self.wanted = snapshot
            .into_iter()
            .map(|(h, pe)| ((h, pe.id), pe))
            .collect();
        self.pending.clear();
        self.rereg.clear();
        let wanted = &self.wanted;
        self.answers.retain(|k, _| wanted.contains_key(k));
        for a in self.answers.values_mut() {
            a.state = PeRegState::Pending;
        }
        self.publish_answers();
        if let Some(conn) = self.link.current() {
            let keys: Vec<Key> = self.wanted.keys().cloned().collect();
            for k in keys {
                self.send_registration(now, conn, &k, 1);
            }
        }
    }

    /// Sends every wanted registration again on the association in use (after the proxy
    /// was stalled: the registrar may have removed its PEs for unanswered keep-alives, and
    /// nothing else would bring them back before T4).
    pub fn resync(&mut self, now: Instant) {
        let snapshot: Vec<(String, PoolElementInfo)> = self
            .wanted
            .iter()
            .map(|((h, _), pe)| (h.clone(), pe.clone()))
            .collect();
        self.state.resyncs += 1;
        self.set_snapshot(now, snapshot);
    }

    /// Replaces the configured registrar list. The association in use is kept unless it
    /// goes to a registrar that was configured before and is not any more.
    pub fn set_registrars(&mut self, now: Instant, registrars: Vec<SocketAddr>) {
        if registrars == self.cfg.registrars {
            return;
        }
        let removed = self.link.current_addrs().is_some_and(|cur| {
            cur.iter().any(|a| self.cfg.registrars.contains(a))
                && !cur.iter().any(|a| registrars.contains(a))
        });
        tracing::info!(?registrars, "registrar list replaced");
        self.cfg.registrars = registrars;
        let mut link = self.cfg.link();
        // Connection ids stay unique across links.
        while link.allocate_conn().0 <= self.last_conn {}
        let old = std::mem::replace(&mut self.link, link);
        match (old.current(), old.current_addrs()) {
            (Some(conn), Some(addrs)) if !removed => {
                self.link.adopt(conn, addrs.to_vec());
                // The association is the same: no new snapshot.
                while self.link.poll_event().is_some() {}
                self.start(now);
            }
            (cur, _) => {
                if let Some(conn) = cur {
                    tracing::info!("registrar in use no longer configured: hunting");
                    self.actions.push_back(Action::Close { conn });
                    self.on_down(conn);
                }
                // A connection attempt of the old link that still reports is closed (its
                // id is unknown to the new link).
                self.start(now);
            }
        }
        self.process_link(now);
    }

    /// A fresh id for an association the driver accepted.
    pub fn allocate_conn(&mut self) -> ConnId {
        let c = self.link.allocate_conn();
        self.last_conn = self.last_conn.max(c.0);
        c
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
        self.link.on_lost(now, conn);
        self.process_link(now);
    }

    /// A registrar opened an association to us; it becomes the registrar association only
    /// if it sends an ENDPOINT_KEEP_ALIVE with the H flag. At most [`MAX_ACCEPTED`] wait.
    pub fn on_accepted(&mut self, conn: ConnId, addrs: Vec<SocketAddr>) {
        if self.accepted.len() >= MAX_ACCEPTED {
            tracing::debug!(
                ?addrs,
                "incoming registrar association refused (too many waiting)"
            );
            self.actions.push_back(Action::Close { conn });
            return;
        }
        self.accepted.insert(conn, addrs);
    }

    /// A REGISTRATION_RESPONSE arrived on `conn`.
    pub fn on_registration_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        r: &RegistrationResponse,
    ) {
        let k = (r.pool_handle.to_string(), r.pe_identifier);
        if r.reject {
            self.state.rejected += 1;
            tracing::error!(pool = %r.pool_handle, pe = format!("0x{:08x}", r.pe_identifier), error = ?r.error, "registration rejected");
        } else {
            self.state.accepted += 1;
            tracing::debug!(pool = %r.pool_handle, pe = format!("0x{:08x}", r.pe_identifier), "registered");
        }
        if self.pending.get(&k).is_some_and(|p| p.conn == conn) {
            self.pending.remove(&k);
        }
        if self.link.current() != Some(conn) {
            return;
        }
        let Some(pe) = self.wanted.get(&k) else {
            return;
        };
        let life = pe.registration_life;
        let a = self.answers.entry(k.clone()).or_insert(PeRegistration {
            pool_handle: k.0.clone(),
            pe_id: k.1,
            state: PeRegState::Pending,
            error: None,
            rejections: 0,
        });
        // Registered: again before the life ends (T4). Rejected: again after a back-off
        // that grows with the rejections in a row.
        let next = if r.reject {
            a.state = PeRegState::Rejected;
            a.rejections = a.rejections.saturating_add(1);
            a.error = Some(
                r.error
                    .as_ref()
                    .map_or_else(|| "no cause given".to_string(), |e| e.to_string()),
            );
            let wait = reject_backoff(a.rejections, life);
            tracing::warn!(pool = %k.0, pe = format_args!("{:#010x}", k.1), rejections = a.rejections, retry_in_ms = wait.as_millis() as u64, "registration rejected: retrying after a back-off");
            wait
        } else {
            a.state = PeRegState::Accepted;
            a.rejections = 0;
            a.error = None;
            t4(life)
        };
        self.rereg.insert(k, now + next);
        self.publish_answers();
    }

    /// Copies the per-PE answers into the status.
    fn publish_answers(&mut self) {
        self.state.pes = self.answers.values().cloned().collect();
    }

    /// An ENDPOINT_KEEP_ALIVE arrived on `conn`; `answer` are the PE ids the core allows to
    /// answer for. A keep-alive with the H flag on an association a registrar opened to us
    /// makes that registrar the home (RFC 5352 §3) and gets all registrations re-sent there.
    pub fn on_keep_alive(
        &mut self,
        now: Instant,
        conn: ConnId,
        k: &EndpointKeepAlive,
        answer: &[u32],
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
        if answer.is_empty() {
            self.state.keep_alives_refused += 1;
        } else {
            self.state.keep_alives_answered += answer.len() as u64;
        }
        let on_current = self.link.current() == Some(conn);
        if !(k.home || (on_current && self.home.is_none())) {
            return;
        }
        if k.home && !on_current {
            let Some(addrs) = self.accepted.remove(&conn) else {
                tracing::debug!(conn = conn.0, "H-flag keep-alive on an unknown association");
                return;
            };
            tracing::info!(
                ?addrs,
                server_id = format_args!("{:#010x}", k.server_id),
                "adopting the registrar that took over as home"
            );
            self.link.adopt(conn, addrs);
            self.process_link(now);
        }
        // Compared with the last home known, also across a hunt or an adoption.
        let previous = self.state.home;
        if previous != Some(k.server_id) {
            tracing::info!(
                from = ?previous.map(|h| format!("{h:#010x}")),
                to = format_args!("{:#010x}", k.server_id),
                "home registrar changed"
            );
            if previous.is_some() {
                self.state.home_changes += 1;
            }
        }
        self.home = Some(k.server_id);
        self.state.home = self.home;
    }

    fn send_registration(&mut self, now: Instant, conn: ConnId, k: &Key, attempts: u32) {
        let Some(pe) = self.wanted.get(k) else { return };
        if !self.answers.contains_key(k) {
            self.answers.insert(
                k.clone(),
                PeRegistration {
                    pool_handle: k.0.clone(),
                    pe_id: k.1,
                    state: PeRegState::Pending,
                    error: None,
                    rejections: 0,
                },
            );
            self.state.pes = self.answers.values().cloned().collect();
        }
        self.actions.push_back(Action::Send {
            conn,
            message: Registration {
                pool_handle: PoolHandle::from(k.0.as_str()),
                pool_element: pe.clone(),
            }
            .into(),
        });
        self.rereg.remove(k);
        self.pending.insert(
            k.clone(),
            Pending {
                conn,
                deadline: now + self.cfg.registration_timeout,
                attempts,
            },
        );
    }

    fn on_down(&mut self, conn: ConnId) {
        self.pending.retain(|_, p| p.conn != conn);
        self.rereg.clear();
        self.state.connected_to = None;
        // The registrar drops the PEs of a lost association: nothing is accepted now.
        for a in self.answers.values_mut() {
            a.state = PeRegState::Pending;
        }
        self.publish_answers();
    }

    fn process_link(&mut self, _now: Instant) {
        while let Some(a) = self.link.poll_action() {
            if let LinkAction::Connect { conn, .. } | LinkAction::Close { conn } = &a {
                self.last_conn = self.last_conn.max(conn.0);
            }
            self.actions.push_back(a.into());
        }
        while let Some(ev) = self.link.poll_event() {
            match ev {
                LinkEvent::Up { addrs, .. } => {
                    self.state.connected_to = addrs.first().copied();
                    self.home = None;
                    self.pending.clear();
                    self.rereg.clear();
                    self.snapshot_due = true;
                }
                LinkEvent::Down { conn } => self.on_down(conn),
                LinkEvent::HuntRoundFailed { .. } => {}
                // Link events added to asap later carry nothing the proxy acts on.
                other => tracing::debug!(?other, "registrar link event ignored"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// tokio driver

/// Asks the driver which PE ids of keep-alive `k` may be answered.
async fn keep_alive_answer(
    query: &mpsc::UnboundedSender<RegistrarQuery>,
    k: &EndpointKeepAlive,
) -> Option<Vec<u32>> {
    match k.pe_identifier {
        Some(id) => {
            let (tx, rx) = oneshot::channel();
            query.send(RegistrarQuery::KeepAlive(id, tx)).ok()?;
            Some(if rx.await.unwrap_or(false) {
                vec![id]
            } else {
                Vec::new()
            })
        }
        None => {
            let (tx, rx) = oneshot::channel();
            query
                .send(RegistrarQuery::KeepAlivePool(k.pool_handle.to_string(), tx))
                .ok()?;
            Some(rx.await.unwrap_or_default())
        }
    }
}

/// Runs the registrar client until `cmds` closes.
pub async fn run(
    registrars: Vec<SocketAddr>,
    kind: TransportKind,
    mut cmds: mpsc::UnboundedReceiver<RegistrarCmd>,
    query: mpsc::UnboundedSender<RegistrarQuery>,
    state: std::sync::Arc<std::sync::Mutex<RegistrarState>>,
) {
    let mut net = Net::new(kind);
    let protocol = net.protocol();
    // Listen with SO_REUSEPORT on a wildcard address of the registrars' family; registrar
    // associations are opened from that port from now on (adoptable after a takeover).
    let any: std::net::IpAddr = if registrars.first().is_some_and(SocketAddr::is_ipv6) {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    };
    match net.listen_shared(&[SocketAddr::new(any, 0)]).await {
        Ok(a) => {
            tracing::info!(addrs = ?a, "registrar associations share a listening port (adoptable after a takeover)")
        }
        Err(e) => {
            tracing::warn!(error = %e, "no shared registrar port: a registrar taking over cannot reach the proxy")
        }
    }
    let mut c = RegClient::new(ClientConfig::new(registrars, protocol));
    c.start(Instant::now());
    loop {
        while let Some(a) = c.poll_action() {
            net.execute(a).await;
        }
        if c.take_snapshot_request() {
            let (tx, rx) = oneshot::channel();
            if query.send(RegistrarQuery::Snapshot(tx)).is_err() {
                return;
            }
            let snapshot = rx.await.unwrap_or_default();
            c.set_snapshot(Instant::now(), snapshot);
            continue;
        }
        if let Ok(mut s) = state.lock() {
            if *s != *c.state() {
                *s = c.state().clone();
            }
        }
        let deadline = c.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = cmds.recv() => {
                let now = Instant::now();
                match cmd {
                    None => {
                        // Let queued deregistrations go out, then close.
                        if let Some(conn) = c.current() {
                            net.execute(Action::Close { conn }).await;
                        }
                        return;
                    }
                    Some(RegistrarCmd::Register(h, pe)) => c.register(now, h, pe),
                    Some(RegistrarCmd::Deregister(h, id)) => c.deregister(h, id),
                    Some(RegistrarCmd::SetRegistrars(r)) => c.set_registrars(now, r),
                    Some(RegistrarCmd::Resync) => c.resync(now),
                }
            }
            ev = net.next() => {
                let now = Instant::now();
                match ev {
                    Some(NetEvent::Connected { conn, assoc }) => {
                        net.attach(conn, assoc);
                        c.on_connected(now, conn);
                    }
                    Some(NetEvent::ConnectFailed { conn, error }) => {
                        tracing::warn!(%error, "registrar connect failed");
                        c.on_connect_failed(now, conn);
                    }
                    Some(NetEvent::Accepted { assoc }) => {
                        let addrs = assoc.peer_addrs().unwrap_or_default();
                        tracing::debug!(?addrs, "a registrar connected to the proxy");
                        let conn = c.allocate_conn();
                        net.attach(conn, assoc);
                        c.on_accepted(conn, addrs);
                    }
                    Some(NetEvent::Lost { conn }) => {
                        tracing::warn!(conn = conn.0, "registrar association lost");
                        net.execute(Action::Close { conn }).await;
                        c.on_lost(now, conn);
                    }
                    Some(NetEvent::Announce { .. }) => {}
                    Some(NetEvent::Message { conn, message: m }) => match m {
                        AsapMessage::RegistrationResponse(r) => c.on_registration_response(now, conn, &r),
                        AsapMessage::EndpointKeepAlive(k) => {
                            let Some(ids) = keep_alive_answer(&query, &k).await else { return };
                            c.on_keep_alive(Instant::now(), conn, &k, &ids);
                        }
                        other => tracing::debug!(msg = other.message_type().name().unwrap_or("?"), "from registrar"),
                    },
                    // Network events added to asap later: nothing the proxy acts on.
                    Some(_) => tracing::debug!("registrar network event ignored"),
                    None => return,
                }
            }
            _ = sleep => c.handle_timeout(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asap::wire::{Policy, TransportParameter, TransportUse};

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    fn pe(id: u32, life: i32) -> PoolElementInfo {
        PoolElementInfo {
            id,
            home_server_id: 0,
            registration_life: life,
            user_transport: TransportParameter::Tcp {
                port: 7000 + id as u16,
                transport_use: TransportUse::DataOnly,
                address: "127.0.0.11".parse().expect("lit"),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        }
    }

    fn client(registrars: &[&str]) -> RegClient {
        let mut cfg = ClientConfig::new(
            registrars.iter().map(|s| sa(s)).collect(),
            LinkProtocol::Tcp,
        );
        cfg.registration_timeout = Duration::from_secs(5);
        cfg.max_registration_attempts = 2;
        RegClient::new(cfg)
    }

    fn actions(c: &mut RegClient) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    /// (conn, pool, PE id) of the REGISTRATIONs among `acts`.
    fn registrations(acts: &[Action]) -> Vec<(ConnId, String, u32)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Send {
                    conn,
                    message: AsapMessage::Registration(r),
                } => Some((*conn, r.pool_handle.to_string(), r.pool_element.id)),
                _ => None,
            })
            .collect()
    }

    fn connect(acts: &[Action]) -> (ConnId, Vec<SocketAddr>) {
        acts.iter()
            .find_map(|a| match a {
                Action::Connect { conn, addrs } => Some((*conn, addrs.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Connect in {acts:?}"))
    }

    fn response(pool: &str, id: u32, reject: bool) -> RegistrationResponse {
        RegistrationResponse {
            pool_handle: PoolHandle::from(pool),
            pe_identifier: id,
            reject,
            error: None,
        }
    }

    fn keep_alive(server_id: ServerId, home: bool, id: u32) -> EndpointKeepAlive {
        EndpointKeepAlive {
            home,
            server_id,
            pool_handle: PoolHandle::from("P"),
            pe_identifier: Some(id),
        }
    }

    /// Connects to the first registrar and answers the snapshot request with `wanted`.
    fn up(c: &mut RegClient, t0: Instant, wanted: Vec<(String, PoolElementInfo)>) -> ConnId {
        c.start(t0);
        let (conn, _) = connect(&actions(c));
        c.on_connected(t0, conn);
        assert!(c.take_snapshot_request(), "snapshot asked after connect");
        c.set_snapshot(t0, wanted);
        conn
    }

    #[test]
    fn t2_resends_then_abandons_and_registers_everything_at_the_next_registrar() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863", "10.0.0.2:3863"]);
        let c1 = up(
            &mut c,
            t0,
            vec![("P".into(), pe(1, 60_000)), ("P".into(), pe(2, 60_000))],
        );
        assert_eq!(
            registrations(&actions(&mut c)),
            vec![(c1, "P".into(), 1), (c1, "P".into(), 2)]
        );
        // PE 1 answered, PE 2 not: only PE 2 is sent again when T2 expires.
        c.on_registration_response(t0, c1, &response("P", 1, false));
        let t2 = t0 + Duration::from_secs(5);
        c.handle_timeout(t2 - Duration::from_millis(1));
        assert!(actions(&mut c).is_empty(), "nothing before T2");
        c.handle_timeout(t2);
        assert_eq!(registrations(&actions(&mut c)), vec![(c1, "P".into(), 2)]);
        assert_eq!(c.state().t2_retries, 1);
        // Second attempt unanswered too (MAX-REG-ATTEMPT = 2): the registrar is abandoned
        // and the next one hunted.
        let t3 = t2 + Duration::from_secs(5);
        c.handle_timeout(t3);
        let acts = actions(&mut c);
        assert!(acts.contains(&Action::Close { conn: c1 }), "{acts:?}");
        let (c2, addrs) = connect(&acts);
        assert_eq!(addrs, vec![sa("10.0.0.2:3863")]);
        assert_eq!(c.state().abandoned, 1);
        assert_eq!(c.current(), None);
        c.on_connected(t3, c2);
        assert!(c.take_snapshot_request());
        c.set_snapshot(
            t3,
            vec![("P".into(), pe(1, 60_000)), ("P".into(), pe(2, 60_000))],
        );
        assert_eq!(
            registrations(&actions(&mut c)),
            vec![(c2, "P".into(), 1), (c2, "P".into(), 2)]
        );
    }

    #[test]
    fn t4_reregisters_before_the_life_ends_even_without_change() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863"]);
        // Lifes of 60 s (T4 = 40 s) and 10 s (T4 = 5 s).
        let conn = up(
            &mut c,
            t0,
            vec![("P".into(), pe(1, 60_000)), ("Q".into(), pe(2, 10_000))],
        );
        assert_eq!(registrations(&actions(&mut c)).len(), 2);
        c.on_registration_response(t0, conn, &response("P", 1, false));
        c.on_registration_response(t0, conn, &response("Q", 2, false));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        c.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(registrations(&actions(&mut c)), vec![(conn, "Q".into(), 2)]);
        let t1 = t0 + Duration::from_secs(6);
        c.on_registration_response(t1, conn, &response("Q", 2, false));
        c.handle_timeout(t0 + Duration::from_secs(39));
        assert_eq!(registrations(&actions(&mut c)), vec![(conn, "Q".into(), 2)]);
        c.on_registration_response(t0 + Duration::from_secs(39), conn, &response("Q", 2, false));
        c.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(registrations(&actions(&mut c)), vec![(conn, "P".into(), 1)]);
        assert_eq!(c.state().reregistrations, 3);
        // A deregistered PE is not re-registered any more.
        c.deregister("P".into(), 1);
        c.on_registration_response(t0 + Duration::from_secs(40), conn, &response("P", 1, false));
        c.handle_timeout(t0 + Duration::from_secs(200));
        assert!(registrations(&actions(&mut c))
            .iter()
            .all(|(_, p, _)| p == "Q"));
    }

    /// Issue 19 item 7: a rejected REGISTRATION is sent again after 1 s, 2 s, 4 s ...
    /// (not only at T4), and the status shows per PE what the registrar answered.
    #[test]
    fn rejected_registration_is_retried_with_backoff_and_shown_per_pe() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863"]);
        let conn = up(
            &mut c,
            t0,
            vec![("P".into(), pe(1, 300_000)), ("P".into(), pe(2, 300_000))],
        );
        assert_eq!(registrations(&actions(&mut c)).len(), 2);
        let pes = |c: &RegClient| {
            c.state()
                .pes
                .iter()
                .map(|p| (p.pe_id, p.state, p.rejections))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pes(&c),
            vec![(1, PeRegState::Pending, 0), (2, PeRegState::Pending, 0)]
        );
        c.on_registration_response(t0, conn, &response("P", 1, false));
        let mut rej = response("P", 2, true);
        rej.error = Some(asap::wire::OperationError::single(
            asap::wire::ErrorCause::new(asap::wire::CauseCode::InvalidValues, Vec::new()),
        ));
        c.on_registration_response(t0, conn, &rej);
        assert_eq!(
            pes(&c),
            vec![(1, PeRegState::Accepted, 0), (2, PeRegState::Rejected, 1)]
        );
        let err = c.state().pes[1].error.clone().expect("cause kept");
        assert!(err.contains("0x3"), "{err}");
        // Retried after 1 s, then 2 s, then 4 s (each rejected again).
        let mut t = t0;
        for (n, wait) in [(1u32, 1u64), (2, 2), (3, 4)] {
            assert_eq!(
                c.poll_timeout(),
                Some(t + Duration::from_secs(wait)),
                "rejection {n}"
            );
            c.handle_timeout(t + Duration::from_secs(wait) - Duration::from_millis(1));
            assert!(registrations(&actions(&mut c)).is_empty());
            t += Duration::from_secs(wait);
            c.handle_timeout(t);
            assert_eq!(registrations(&actions(&mut c)), vec![(conn, "P".into(), 2)]);
            if n < 3 {
                c.on_registration_response(t, conn, &rej);
            }
        }
        assert_eq!(c.state().reject_retries, 3);
        // Accepted at last: back to T4 (280 s for a 300 s life), rejections reset.
        c.on_registration_response(t, conn, &response("P", 2, false));
        assert_eq!(
            pes(&c),
            vec![(1, PeRegState::Accepted, 0), (2, PeRegState::Accepted, 0)]
        );
        assert_eq!(c.state().pes[1].error, None);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(280)));
        // The association is lost: nothing counts as accepted any more.
        c.on_lost(t, conn);
        assert_eq!(
            pes(&c),
            vec![(1, PeRegState::Pending, 0), (2, PeRegState::Pending, 0)]
        );
        // Deregistered PEs leave the list.
        c.deregister("P".into(), 1);
        assert_eq!(pes(&c), vec![(2, PeRegState::Pending, 0)]);
    }

    #[test]
    fn resync_sends_every_wanted_registration_again_at_once() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863"]);
        let conn = up(
            &mut c,
            t0,
            vec![("P".into(), pe(1, 300_000)), ("Q".into(), pe(2, 300_000))],
        );
        assert_eq!(registrations(&actions(&mut c)).len(), 2);
        c.on_registration_response(t0, conn, &response("P", 1, false));
        c.on_registration_response(t0, conn, &response("Q", 2, false));
        // Long before T4 (280 s): both at once, shown as pending until answered.
        let t = t0 + Duration::from_secs(10);
        c.resync(t);
        assert_eq!(
            registrations(&actions(&mut c)),
            vec![(conn, "P".into(), 1), (conn, "Q".into(), 2)]
        );
        assert_eq!(c.state().resyncs, 1);
        assert!(c.state().pes.iter().all(|p| p.state == PeRegState::Pending));
        // Without an association there is nothing to send (the next one gets a snapshot).
        c.on_lost(t, conn);
        let _ = actions(&mut c);
        c.resync(t);
        assert!(registrations(&actions(&mut c)).is_empty());
    }

    #[test]
    fn reject_backoff_doubles_up_to_a_minute_and_never_beyond_t4() {
        assert_eq!(reject_backoff(1, 300_000), Duration::from_secs(1));
        assert_eq!(reject_backoff(4, 300_000), Duration::from_secs(8));
        assert_eq!(reject_backoff(7, 300_000), Duration::from_secs(60));
        assert_eq!(reject_backoff(40, 300_000), Duration::from_secs(60));
        // A 4 s life: T4 is 2 s.
        assert_eq!(reject_backoff(5, 4_000), Duration::from_secs(2));
    }

    #[test]
    fn t4_of_lifes() {
        assert_eq!(t4(90_000), Duration::from_secs(70));
        assert_eq!(t4(300_000), Duration::from_secs(280));
        assert_eq!(t4(3_600_000), T4_MAX);
        assert_eq!(t4(2_000), Duration::from_secs(1));
        assert_eq!(t4(0), T4_MAX);
        assert_eq!(t4(-1), T4_MAX);
    }

    #[test]
    fn h_flag_keep_alive_on_an_accepted_association_adopts_the_new_home() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863"]);
        let c1 = up(
            &mut c,
            t0,
            vec![("P".into(), pe(1, 60_000)), ("P".into(), pe(2, 60_000))],
        );
        actions(&mut c);
        c.on_registration_response(t0, c1, &response("P", 1, false));
        c.on_registration_response(t0, c1, &response("P", 2, false));
        // The home's plain keep-alive: answered, home learned.
        c.on_keep_alive(t0, c1, &keep_alive(0xA, false, 1), &[1]);
        assert_eq!(c.home(), Some(0xA));
        assert_eq!(c.state().home_changes, 0);
        actions(&mut c);
        // A connects again? No: A died; B connects to our shared port.
        c.on_lost(t0, c1);
        let acts = actions(&mut c);
        let (hunt, _) = connect(&acts);
        c.on_connect_failed(t0, hunt);
        actions(&mut c);
        let c2 = c.allocate_conn();
        c.on_accepted(c2, vec![sa("10.0.0.2:40000")]);
        // A plain keep-alive on the accepted association is answered but adopts nothing.
        c.on_keep_alive(t0, c2, &keep_alive(0xB, false, 1), &[1]);
        assert_eq!(c.current(), None);
        assert_eq!(c.home(), Some(0xA));
        actions(&mut c);
        // PE 2's server is not fresh: its keep-alive is not answered, the home changes.
        c.on_keep_alive(t0, c2, &keep_alive(0xB, true, 2), &[]);
        assert_eq!(c.state().keep_alives_refused, 1);
        assert_eq!(c.current(), Some(c2));
        assert_eq!(c.home(), Some(0xB));
        assert_eq!(c.state().home, Some(0xB));
        assert_eq!(c.state().home_changes, 1);
        assert_eq!(c.state().connected_to, Some(sa("10.0.0.2:40000")));
        let acts = actions(&mut c);
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Send { .. })),
            "refused keep-alive not answered: {acts:?}"
        );
        assert!(
            c.take_snapshot_request(),
            "adoption re-registers everything"
        );
        c.set_snapshot(
            t0,
            vec![("P".into(), pe(1, 60_000)), ("P".into(), pe(2, 60_000))],
        );
        assert_eq!(
            registrations(&actions(&mut c)),
            vec![(c2, "P".into(), 1), (c2, "P".into(), 2)]
        );
        // The hunt stopped: no connection attempts to A any more.
        c.handle_timeout(t0 + Duration::from_secs(20));
        assert!(!actions(&mut c)
            .iter()
            .any(|a| matches!(a, Action::Connect { .. })));
        // An answered H-flag keep-alive from B on its association: ACK there.
        c.on_keep_alive(t0, c2, &keep_alive(0xB, true, 1), &[1]);
        let acts = actions(&mut c);
        assert!(
            matches!(&acts[..], [Action::Send { conn, message: AsapMessage::EndpointKeepAliveAck(a) }] if *conn == c2 && a.pe_identifier == 1),
            "{acts:?}"
        );
        assert_eq!(c.state().home_changes, 1);
    }

    #[test]
    fn h_flag_keep_alive_while_connected_replaces_the_association() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863"]);
        let c1 = up(&mut c, t0, vec![("P".into(), pe(1, 60_000))]);
        actions(&mut c);
        let c2 = c.allocate_conn();
        assert_ne!(c1, c2);
        c.on_accepted(c2, vec![sa("10.0.0.2:40000")]);
        c.on_keep_alive(t0, c2, &keep_alive(0xB, true, 1), &[1]);
        let acts = actions(&mut c);
        assert!(acts.contains(&Action::Close { conn: c1 }), "{acts:?}");
        assert_eq!(c.current(), Some(c2));
        assert!(c.take_snapshot_request());
    }

    #[test]
    fn registrar_list_replaced_at_run_time() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863"]);
        let c1 = up(&mut c, t0, vec![("P".into(), pe(1, 60_000))]);
        actions(&mut c);
        // Still listed: the association stays, no new snapshot.
        c.set_registrars(t0, vec![sa("10.0.0.2:3863"), sa("10.0.0.1:3863")]);
        assert!(actions(&mut c).is_empty());
        assert_eq!(c.current(), Some(c1));
        assert!(!c.take_snapshot_request());
        c.register(t0, "P".into(), pe(2, 60_000));
        assert_eq!(registrations(&actions(&mut c)), vec![(c1, "P".into(), 2)]);
        // Removed: closed, and the new list is hunted with fresh connection ids.
        c.set_registrars(t0, vec![sa("10.0.0.3:3863")]);
        let acts = actions(&mut c);
        assert!(acts.contains(&Action::Close { conn: c1 }), "{acts:?}");
        let (c3, addrs) = connect(&acts);
        assert_eq!(addrs, vec![sa("10.0.0.3:3863")]);
        assert!(c3.0 > c1.0);
        c.on_connected(t0, c3);
        assert!(c.take_snapshot_request());
        // The mirror kept both wanted PEs meanwhile.
        assert_eq!(c.wanted().count(), 2);
    }
}
