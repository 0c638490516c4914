//! ASAP client side towards the ENRP server (RFC 5352 §2.2, §3.1–3.3, §3.6): registration
//! and deregistration of the PEs the core wants, and answers to the home registrar's
//! Endpoint Keep-Alives — in mode A only while the core says the legacy server is fresh and
//! running.
//!
//! Every PE of the proxy rides on **one** registrar association, so this is not
//! `asap::pe::PoolElement` (one PE) but the N-registration core under it,
//! [`MultiPeCore`] (`asap::pe::multi`): it owns the registrations, the registrar link (hunt
//! with back-off over the configured list, the lost or abandoned registrar tried last,
//! adoption of an accepted association) and the RFC 5352 §5 timers. [`RegClient`] is a thin
//! sans-I/O adapter over it (virtual clock in the unit tests) that adds what only the proxy
//! has: the status counters and per-PE answers, the snapshot asked from the proxy core after
//! every new association, keep-alive answers gated by the proxy core, and the run-time
//! registrar list. [`run`] drives it with the shared tokio plumbing of the PE driver
//! (`asap::registrar_client::driver`: connections from the shared port, one reader task per
//! association, ASAP encode/decode, [`Net::deliver`]):
//!
//! * **Every registration on every new association** (hunted or adopted): the core sends
//!   all it keeps, and the driver then asks the proxy core for a full snapshot of the
//!   wanted registrations and reconciles ([`MultiPeCore::sync`]: new or changed ones sent,
//!   no longer wanted ones deregistered), so neither a registrar restart nor a proxy restart
//!   loses a registration. Between snapshots the client follows the Register/Deregister
//!   commands.
//! * **T2-registration:** a REGISTRATION without REGISTRATION_RESPONSE within
//!   [`ClientConfig::registration_timeout`] is sent again, at most
//!   [`ClientConfig::max_registration_attempts`] times in all; then the registrar is
//!   abandoned and the next one hunted (which gets every registration).
//! * **T4-reregistration:** every accepted registration is sent again before its
//!   registration life ends ([`t4`]), even when nothing changed, so a registrar never drops
//!   a PE of the proxy by lifetime expiry; a rejected one after [`reject_backoff`].
//! * **Takeover (RFC 5352 §3, RFC 5353 §3.6):** registrar associations are opened from one
//!   local port on which the proxy also listens (`SO_REUSEPORT`, as
//!   `asap::pe::PoolElementConfig::adoptable`), so the registrar that takes over from a dead
//!   home reaches the proxy at the ASAP transport the home recorded. Its
//!   ENDPOINT_KEEP_ALIVE with the H flag is answered (gated by the core as always), its
//!   association becomes the registrar association, its server becomes the home, and all
//!   wanted registrations are sent there.
//! * The registrar list can be replaced at run time ([`RegistrarCmd::SetRegistrars`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asap::pe::core::{MAX_REG_ATTEMPT, T2_REGISTRATION};
use asap::pe::multi::{
    backoff, t4_for_life, Answer, MultiConfig, MultiEvent, MultiPeCore, RegistrationSpec,
    RejectRetry,
};
use asap::registrar_client::driver::{Net, NetEvent, Wake};
use asap::registrar_client::{Action, ConnId, LinkConfig, LinkProtocol};
use asap::transport::TransportKind;
use asap::wire::asap_msg::{EndpointKeepAlive, RegistrationResponse, ServerAnnounce};
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
/// being fixed, sees the PE again soon, not only after T4). The core applies it through
/// [`RejectRetry::Backoff`].
pub fn reject_backoff(n: u32, life_ms: i32) -> Duration {
    backoff(REJECT_RETRY_INITIAL, REJECT_RETRY_MAX, n, t4(life_ms))
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

    /// Registrar discovery for this configuration: every registrar a candidate of its own.
    fn link(&self) -> LinkConfig {
        LinkConfig {
            static_registrars: self.registrars.iter().map(|a| vec![*a]).collect(),
            hunt_initial_backoff: self.hunt_initial_backoff,
            hunt_max_backoff: self.hunt_max_backoff,
            ..LinkConfig::default()
        }
    }
}

/// T4-reregistration for a registration life in ms ([`t4_for_life`], the rule of
/// `asap::pe::PeConfig::t4`): min(10 min, life − 20 s) for lifes of 40 s or more, half the
/// life below that; a life of 0 or less (no expiry) gives the upper bound, 10 min; T4 is
/// at least 100 ms.
pub fn t4(life_ms: i32) -> Duration {
    t4_for_life(Duration::from_millis(u64::try_from(life_ms).unwrap_or(0)))
}

/// The registration of `pe` in `pool` as the core keeps it: fixed identifier, retried
/// after [`reject_backoff`] when rejected.
fn spec(pool: &str, pe: PoolElementInfo) -> RegistrationSpec {
    let mut s = RegistrationSpec::new(PoolHandle::from(pool), pe);
    s.reject_retry = RejectRetry::Backoff {
        initial: REJECT_RETRY_INITIAL,
        max: REJECT_RETRY_MAX,
    };
    s
}

/// The proxy's registrar client: a thin adapter over [`MultiPeCore`] (which keeps the
/// registrations, the registrar link and every timer) that adds the proxy's counters, the
/// snapshot request after every new association and the gating of keep-alive answers by
/// the proxy core; see the module documentation.
#[derive(Debug)]
pub struct RegClient {
    cfg: ClientConfig,
    core: MultiPeCore,
    /// An association came up (or was adopted): the driver must fetch a snapshot.
    snapshot_due: bool,
    state: RegistrarState,
}

impl RegClient {
    /// A client; idle until [`start`](Self::start).
    pub fn new(cfg: ClientConfig) -> Self {
        let mut core = MultiPeCore::new(
            MultiConfig {
                registration_timeout: cfg.registration_timeout,
                max_registration_attempts: cfg.max_registration_attempts,
                ..MultiConfig::new(cfg.link())
            },
            0,
        );
        core.set_link_protocol(cfg.protocol);
        RegClient {
            cfg,
            core,
            snapshot_due: false,
            state: RegistrarState::default(),
        }
    }

    /// Starts hunting for a registrar (if any is configured).
    pub fn start(&mut self, now: Instant) {
        if !self.cfg.registrars.is_empty() {
            self.core.start(now);
        }
        self.pump();
    }

    /// Status counters and the registrar in use.
    pub fn state(&self) -> &RegistrarState {
        &self.state
    }

    /// The home registrar's Server Identifier, once learned.
    pub fn home(&self) -> Option<ServerId> {
        self.core.home()
    }

    /// The registrar association in use.
    pub fn current(&self) -> Option<ConnId> {
        self.core.link().current()
    }

    /// Registrations wanted now.
    pub fn wanted(&self) -> impl Iterator<Item = (&PoolHandle, &PoolElementInfo)> {
        self.core
            .registrations()
            .map(|(s, _)| (&s.pool_handle, &s.element))
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.core.poll_action()
    }

    /// True once after an association came up or was adopted: the driver must answer with
    /// [`set_snapshot`](Self::set_snapshot).
    pub fn take_snapshot_request(&mut self) -> bool {
        std::mem::take(&mut self.snapshot_due)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Runs expired timers: hunt back-off, T2, T4, rejection retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.pump();
    }

    /// Wants `pe` registered in `pool` (sent at once when a registrar is connected).
    pub fn register(&mut self, now: Instant, pool: String, pe: PoolElementInfo) {
        self.core.upsert(now, spec(&pool, pe));
        self.pump();
    }

    /// Deregisters a PE (sent at once when a registrar is connected).
    pub fn deregister(&mut self, pool: String, id: u32) {
        self.core.remove(&(PoolHandle::from(pool.as_str()), id));
        self.pump();
    }

    /// The full set of wanted registrations (the driver's answer to a snapshot request):
    /// the core's registrations become exactly these (new and changed ones are sent).
    pub fn set_snapshot(&mut self, now: Instant, snapshot: Vec<(String, PoolElementInfo)>) {
        let specs = snapshot.into_iter().map(|(h, pe)| spec(&h, pe)).collect();
        self.core.sync(now, specs);
        self.pump();
    }

    /// Sends every wanted registration again on the association in use (after the proxy
    /// was stalled: the registrar may have removed its PEs for unanswered keep-alives, and
    /// nothing else would bring them back before T4).
    pub fn resync(&mut self, now: Instant) {
        self.state.resyncs += 1;
        self.core.resend_all(now);
        self.pump();
    }

    /// Replaces the configured registrar list. The association in use is kept unless it
    /// goes to a registrar that was configured before and is not any more.
    pub fn set_registrars(&mut self, now: Instant, registrars: Vec<SocketAddr>) {
        if registrars == self.cfg.registrars {
            return;
        }
        let removed = self.core.link().current_addrs().is_some_and(|cur| {
            cur.iter().any(|a| self.cfg.registrars.contains(a))
                && !cur.iter().any(|a| registrars.contains(a))
        });
        tracing::info!(?registrars, "registrar list replaced");
        self.cfg.registrars = registrars;
        let start = !self.cfg.registrars.is_empty();
        self.core
            .replace_link(now, self.cfg.link(), !removed, start);
        self.pump();
    }

    /// A fresh id for an association the driver accepted.
    pub fn allocate_conn(&mut self) -> ConnId {
        self.core.allocate_conn()
    }

    /// The driver's connection attempt succeeded.
    pub fn on_connected(&mut self, now: Instant, conn: ConnId) {
        self.core.on_connected(now, conn);
        self.pump();
    }

    /// The driver's connection attempt failed.
    pub fn on_connect_failed(&mut self, now: Instant, conn: ConnId) {
        tracing::warn!(conn = conn.0, "registrar connect failed");
        self.core.on_connect_failed(now, conn);
        self.pump();
    }

    /// An association (ours or accepted) ended.
    pub fn on_lost(&mut self, now: Instant, conn: ConnId) {
        if self.current() == Some(conn) {
            tracing::warn!(conn = conn.0, "registrar association lost");
        }
        self.core.on_lost(now, conn);
        self.pump();
    }

    /// An ASAP_SERVER_ANNOUNCE: ignored, the proxy uses its configured registrars only.
    pub fn on_announce(&mut self, _now: Instant, _from: SocketAddr, _msg: &ServerAnnounce) {}

    /// A registrar opened an association to us; it becomes the registrar association only
    /// if it sends an ENDPOINT_KEEP_ALIVE with the H flag. At most
    /// `asap::pe::core::MAX_ACCEPTED` wait.
    pub fn on_accepted(&mut self, conn: ConnId, addrs: Vec<SocketAddr>) {
        self.core.on_accepted(conn, addrs);
    }

    /// A REGISTRATION_RESPONSE arrived on `conn`.
    pub fn on_registration_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        r: &RegistrationResponse,
    ) {
        if r.reject {
            self.state.rejected += 1;
        } else {
            self.state.accepted += 1;
        }
        self.core.on_message(now, conn, r.clone().into());
        self.pump();
    }

    /// An ASAP message other than a keep-alive arrived on `conn`. Keep-alives are answered
    /// only through [`on_keep_alive`](Self::on_keep_alive), with the PE ids the proxy core
    /// allows.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, msg: AsapMessage) {
        match msg {
            AsapMessage::RegistrationResponse(r) => self.on_registration_response(now, conn, &r),
            AsapMessage::EndpointKeepAlive(k) => {
                tracing::debug!(?k, "keep-alive not asked through the proxy core: ignored")
            }
            other => {
                self.core.on_message(now, conn, other);
                self.pump();
            }
        }
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
        if answer.is_empty() {
            self.state.keep_alives_refused += 1;
        } else {
            self.state.keep_alives_answered += answer.len() as u64;
        }
        self.core.on_keep_alive(now, conn, k, answer);
        self.pump();
    }

    /// Takes the core's events and mirrors the core into the status.
    fn pump(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                MultiEvent::LinkUp { .. } => self.snapshot_due = true,
                // Compared with the last home known, also across a hunt or an adoption.
                MultiEvent::HomeChanged { to, .. } => {
                    if self.state.home.is_some_and(|h| h != to) {
                        self.state.home_changes += 1;
                    }
                    self.state.home = Some(to);
                }
                _ => {}
            }
        }
        let stats = self.core.stats();
        let s = &mut self.state;
        s.connected_to = self
            .core
            .link()
            .current_addrs()
            .and_then(|a| a.first().copied());
        s.t2_retries = stats.t2_retries;
        s.abandoned = stats.abandoned;
        s.reregistrations = stats.reregistrations;
        s.reject_retries = stats.reject_retries;
        s.pes = self
            .core
            .registrations()
            .map(|(spec, st)| PeRegistration {
                pool_handle: spec.pool_handle.to_string(),
                pe_id: spec.element.id,
                state: match st.answer {
                    Answer::Pending => PeRegState::Pending,
                    Answer::Accepted => PeRegState::Accepted,
                    Answer::Rejected => PeRegState::Rejected,
                },
                error: match (&st.error, st.answer) {
                    (Some(e), _) => Some(e.to_string()),
                    (None, Answer::Rejected) => Some("no cause given".to_string()),
                    (None, _) => None,
                },
                rejections: st.rejections,
            })
            .collect();
    }
}

asap::impl_client_core!(RegClient);

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

/// Runs the registrar client until `cmds` closes: the shared driver of `asap`
/// ([`Net::flush`], [`Net::deliver`], [`Net::wait`]) around [`RegClient`], plus the two
/// questions only the proxy asks its core (snapshot, keep-alive gating).
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
        net.flush(&mut c).await;
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
        match net.wait(Some(&mut cmds), c.poll_timeout()).await {
            (_, Wake::Command(None)) => {
                // Queued deregistrations went out above; close.
                if let Some(conn) = c.current() {
                    net.execute(Action::Close { conn }).await;
                }
                return;
            }
            (now, Wake::Command(Some(cmd))) => match cmd {
                RegistrarCmd::Register(h, pe) => c.register(now, h, pe),
                RegistrarCmd::Deregister(h, id) => c.deregister(h, id),
                RegistrarCmd::SetRegistrars(r) => c.set_registrars(now, r),
                RegistrarCmd::Resync => c.resync(now),
            },
            // Keep-alives are answered only for what the proxy core allows.
            (
                _,
                Wake::Network(Some(NetEvent::Message {
                    conn,
                    message: AsapMessage::EndpointKeepAlive(k),
                })),
            ) => {
                let Some(ids) = keep_alive_answer(&query, &k).await else {
                    return;
                };
                c.on_keep_alive(Instant::now(), conn, &k, &ids);
            }
            (now, Wake::Network(Some(ev))) => {
                if let Some(failure) = net.deliver(&mut c, now, ev) {
                    tracing::debug!(%failure, "registrar failure");
                }
            }
            (_, Wake::Network(None)) => return,
            (now, Wake::Timer) => c.handle_timeout(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asap::pe::core::T4_MAX;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    /// The registrar tests' TCP PE (round robin, `127.0.0.11:7000`) with the life `life` ms.
    fn pe(id: u32, life: i32) -> PoolElementInfo {
        PoolElementInfo {
            registration_life: life,
            ..rserpool_tests::registrar::tcp_pe(id, [127, 0, 0, 11].into())
        }
    }

    /// PEs 1 and 2 of pool `P`, both with the life `life` ms.
    fn pool_p(life: i32) -> Vec<(String, PoolElementInfo)> {
        vec![("P".into(), pe(1, life)), ("P".into(), pe(2, life))]
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

    /// A client of the one registrar `10.0.0.1:3863`, connected at `t0` with `wanted` in
    /// its snapshot; its connection.
    fn single(t0: Instant, wanted: Vec<(String, PoolElementInfo)>) -> (RegClient, ConnId) {
        let mut c = client(&["10.0.0.1:3863"]);
        let conn = up(&mut c, t0, wanted);
        (c, conn)
    }

    /// A client of one registrar with PE 1 of pool `P` (life `life_p` ms) and PE 2 of pool
    /// `Q` (`life_q`) sent and accepted at `t0`; its connection.
    fn p_and_q_registered(t0: Instant, life_p: i32, life_q: i32) -> (RegClient, ConnId) {
        let (mut c, conn) = single(
            t0,
            vec![("P".into(), pe(1, life_p)), ("Q".into(), pe(2, life_q))],
        );
        assert_eq!(registrations(&actions(&mut c)).len(), 2);
        c.on_registration_response(t0, conn, &response("P", 1, false));
        c.on_registration_response(t0, conn, &response("Q", 2, false));
        (c, conn)
    }

    #[test]
    fn t2_resends_then_abandons_and_registers_everything_at_the_next_registrar() {
        let t0 = Instant::now();
        let mut c = client(&["10.0.0.1:3863", "10.0.0.2:3863"]);
        let c1 = up(&mut c, t0, pool_p(60_000));
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
        c.set_snapshot(t3, pool_p(60_000));
        assert_eq!(
            registrations(&actions(&mut c)),
            vec![(c2, "P".into(), 1), (c2, "P".into(), 2)]
        );
    }

    #[test]
    fn t4_reregisters_before_the_life_ends_even_without_change() {
        let t0 = Instant::now();
        // Lifes of 60 s (T4 = 40 s) and 10 s (T4 = 5 s).
        let (mut c, conn) = p_and_q_registered(t0, 60_000, 10_000);
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
        let (mut c, conn) = single(t0, pool_p(300_000));
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
        // Retried after 1 s through the adapter, and counted in the status. The back-off
        // schedule itself (1 s, 2 s, 4 s ...) is MultiPeCore's, tested in
        // asap/tests/core/pe_multi.rs.
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let t = t0 + Duration::from_secs(1);
        c.handle_timeout(t);
        assert_eq!(registrations(&actions(&mut c)), vec![(conn, "P".into(), 2)]);
        c.on_registration_response(t, conn, &rej);
        assert_eq!(
            pes(&c),
            vec![(1, PeRegState::Accepted, 0), (2, PeRegState::Rejected, 2)]
        );
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(2)));
        let t = t + Duration::from_secs(2);
        c.handle_timeout(t);
        assert_eq!(registrations(&actions(&mut c)), vec![(conn, "P".into(), 2)]);
        assert_eq!(c.state().reject_retries, 2);
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
        let (mut c, conn) = p_and_q_registered(t0, 300_000, 300_000);
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
        let (mut c, c1) = single(t0, pool_p(60_000));
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
            !acts.iter().any(|a| matches!(
                a,
                Action::Send {
                    message: AsapMessage::EndpointKeepAliveAck(_),
                    ..
                }
            )),
            "refused keep-alive not answered: {acts:?}"
        );
        // The adoption re-registers everything there at once ...
        assert_eq!(
            registrations(&acts),
            vec![(c2, "P".into(), 1), (c2, "P".into(), 2)]
        );
        // ... and the snapshot asked afterwards, unchanged, sends nothing twice.
        assert!(c.take_snapshot_request(), "snapshot asked after adoption");
        c.set_snapshot(t0, pool_p(60_000));
        assert!(registrations(&actions(&mut c)).is_empty());
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
        let (mut c, c1) = single(t0, vec![("P".into(), pe(1, 60_000))]);
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
        let (mut c, c1) = single(t0, vec![("P".into(), pe(1, 60_000))]);
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
