//! The tokio driver: runs the sans-I/O [`Registrar`] over real sockets.
//!
//! Issue 15: a request is decoded, handled by the core and its answer written **on the
//! task that owns the association's socket** — no channel hop and no cross-thread wake-up
//! per request, whatever the runtime (`--threads`). Tasks:
//!
//! * one **accept task** per listener (ASAP, ENRP) numbers each new association, refuses it
//!   when `max_associations` are open, and spawns
//! * one **association task** per association ([`link_task`]). It owns both halves of the
//!   socket and runs to completion: it waits until its socket is readable (or it is
//!   woken, below), takes every message already readable (up to [`CORE_BATCH`]), locks
//!   the shared state, hands them to the core, takes what the core queued for this
//!   association (its own answers and anything other tasks queued for it before) and
//!   writes it all in one [`AssocWriter::send_batch`] (one `write` on TCP) after
//!   unlocking;
//! * the **timer loop** ([`Server::run`] itself) runs [`Registrar::handle_timeout`] at
//!   [`Registrar::poll_timeout`]; it is woken only when handling made the next deadline
//!   earlier than the one it sleeps until (not per request);
//! * one **connect task** per [`Action::Connect`] (the core decides whom to connect to:
//!   ENRP peers, ASAP transports of PEs adopted in a takeover; `crate::core::links`); the
//!   new association becomes an association task like an accepted one, handed to the core
//!   with [`Input::Connected`] under the core's ID, or [`Input::ConnectFailed`];
//! * the ENRP peering UDP socket's receive task.
//!
//! The [`Registrar`] and the per-association send queues live in one [`Shared`] behind a
//! mutex: held only while the core handles a batch and the resulting actions are sorted
//! (never across an `await`), so with one association per thread it is uncontended (an
//! atomic, no system call). A message the core sends to another association (keep-alives
//! from a timer, an ENRP update) is appended to that association's queue under the lock
//! and its task woken ([`Notify`]); queues are appended and taken under the lock, so each
//! association's messages leave in the order the core produced them. An association whose
//! queue exceeds the limit (a peer that does not read) is aborted instead of buffering
//! without limit. The core stays sans-I/O and deterministic: it sees the same inputs in the
//! same order as with a single core task.
//!
//! Shutdown: when the future given to [`Server::run`] completes (SIGINT/SIGTERM in the
//! binary), the timer loop stops, listeners close and every association is closed
//! gracefully (SCTP SHUTDOWN / TCP FIN) after the messages queued on it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use asap::transport::tls::TlsContext;
use asap::transport::udp::{UdpBind, UdpEndpoint};
use asap::transport::{
    AssocWriter, Event as TransportEvent, Listener, Msg, Transport, TransportConfig,
    TransportError, TransportKind,
};
use asap::wire::{Protocol, TransportParameter, TransportUse};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::core::{Action, AssocId, CoreConfig, Event, Input, Registrar};

/// Socket-level settings of the driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// ASAP listener addresses (one port).
    pub asap: Vec<SocketAddr>,
    /// ENRP listener addresses (one port); empty = no ENRP listener.
    pub enrp: Vec<SocketAddr>,
    /// The primary transport (SCTP, sctp-udp, TCP or automatic): listened on first, and
    /// used for associations we open when the core names none (ENRP peers).
    pub transport: TransportKind,
    /// Further transports listened on alongside [`transport`](Self::transport), each with
    /// an ASAP and (if configured) an ENRP listener on the same addresses and port
    /// (`--transport sctp-udp,tcp`; issue 17 item 4). Duplicates after resolving `Auto`
    /// are ignored.
    pub extra_transports: Vec<TransportKind>,
    /// What [`TransportKind::Auto`] becomes where the kernel has no SCTP:
    /// [`TransportKind::Tcp`] (default) or [`TransportKind::SctpUdp`] (`--auto-fallback`).
    pub auto_fallback: TransportKind,
    /// Multicast TTL of announces.
    pub announce_ttl: u32,
    /// ENRP_PRESENCE multicast targets (RFC 5353 §3.2; peering discovery).
    pub enrp_announce: Vec<SocketAddr>,
    /// Most simultaneous associations.
    pub max_associations: usize,
    /// TCP: buffer memory for partial messages per listener (ASAP and ENRP each), bytes
    /// ([`TransportConfig::tcp_max_partial_bytes`], issue 13 item 6; `--max-partial-bytes`).
    pub max_partial_bytes: usize,
    /// TLS for the ENRP listener and peer connections (`--enrp-security tls`; mutual, TCP
    /// only). The verified peer certificate of each association is handed to the core
    /// ([`Input::PeerCertificate`]).
    pub enrp_tls: Option<TlsContext>,
    /// TLS offered on the ASAP listener (client certificates optional, plaintext still
    /// accepted; for `[[pool_auth]]` credentials).
    pub asap_tls: Option<TlsContext>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A listener or socket could not be set up.
    #[error("{what}: {source}")]
    Transport {
        /// Which socket.
        what: &'static str,
        /// The transport error.
        #[source]
        source: TransportError,
    },
}

/// Messages queued per association before it is considered stuck and aborted, on top of
/// two per PE the association may carry (all its PEs' keep-alives can fall due in one
/// timer tick, e.g. a proxy PE that registered thousands of PEs at once).
const WRITE_QUEUE_BASE: usize = 1024;
/// Most messages an association task reads before it hands them to the core (and writes
/// the answers).
const CORE_BATCH: usize = 256;

/// What an association task does next with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Reading and writing.
    Open,
    /// The core closed it ([`Action::Close`]): write what is queued, then SHUTDOWN / FIN.
    Closing,
    /// Aborted by the core or by the driver (queue full): ABORT / RST at once.
    Aborting,
}

/// One association as the shared state sees it.
struct LinkEntry {
    /// Messages the core produced for it, not yet taken by its task (core order).
    out: Vec<Msg>,
    state: LinkState,
    /// Wakes its task (messages queued by another task, close, abort).
    wake: Arc<Notify>,
}

/// Everything the tasks share, behind [`Ctx::lock`]: the core and the send queues.
struct Shared {
    registrar: Registrar,
    links: HashMap<AssocId, LinkEntry>,
    /// The deadline the timer loop sleeps until (`None`: none).
    armed: Option<Instant>,
}

/// The running server's context, shared (`Arc`) by all its tasks.
struct Ctx {
    shared: Mutex<Shared>,
    /// Wakes the timer loop when the core's next deadline moved earlier.
    timer: Notify,
    udp: Option<UdpEndpoint>,
    peer_udp: Option<Arc<UdpEndpoint>>,
    connector: Connector,
    /// Associations open (accepted or connected, not yet closed by the driver).
    open: AtomicUsize,
    next_id: AtomicU64,
    max_associations: usize,
    write_queue: usize,
    stats: Arc<Stats>,
}

/// How the associations the core asks for ([`Action::Connect`]) are opened: sockets only;
/// the core keeps the peer address table, the connect queue and the adoption state
/// ([`crate::core::links`]).
struct Connector {
    /// The transports listened on ([`DriverConfig::listen_transports`], primary first):
    /// the first is used when the core names none; an SCTP request uses the SCTP flavour
    /// among them ([`connect_kind`]).
    listening: Vec<TransportKind>,
    /// Mutual TLS for the ENRP associations we open (`--enrp-security tls`).
    enrp_tls: Option<TlsContext>,
    /// Local addresses our ENRP connections are bound to (the ENRP listener's IPs, port 0).
    enrp_local: Vec<SocketAddr>,
    /// Local addresses of our ASAP connections (the ASAP listener's IPs, port 0).
    asap_local: Vec<SocketAddr>,
}

/// The transport of an association we open: `requested` by the core (`None`: the primary
/// listening transport). SCTP (an adopted PE's SCTP transport parameter) means the SCTP
/// flavour we listen on: kernel SCTP if listened on, else sctp-udp if listened on, else
/// kernel SCTP where the kernel has it and sctp-udp otherwise.
fn connect_kind(requested: Option<TransportKind>, listening: &[TransportKind]) -> TransportKind {
    match requested {
        None => listening.first().copied().unwrap_or_default(),
        Some(TransportKind::Sctp) | Some(TransportKind::SctpUdp) => {
            if listening.contains(&TransportKind::Sctp) {
                TransportKind::Sctp
            } else if listening.contains(&TransportKind::SctpUdp) {
                TransportKind::SctpUdp
            } else {
                TransportKind::Auto.resolve_with(TransportKind::SctpUdp)
            }
        }
        Some(k) => k,
    }
}

impl Ctx {
    /// The shared state. A panic while it was held (a bug) leaves it usable: the core's
    /// state is still consistent per input, and one bad input must not stop the server.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `inputs` to the core at `now` and sorts the resulting actions
    /// ([`Ctx::dispatch`]); `me` is the calling association task, if any.
    fn handle(
        self: &Arc<Self>,
        sh: &mut Shared,
        now: Instant,
        inputs: impl IntoIterator<Item = Input>,
        me: Option<AssocId>,
        later: &mut Vec<Action>,
    ) {
        for input in inputs {
            let actions = sh.registrar.handle(now, input);
            self.dispatch(sh, actions, me, later);
        }
        self.after(sh);
    }

    /// Carries out what can be done under the lock: queues messages (waking the
    /// association's task unless it is `me`), closes and aborts associations, starts
    /// connects. Datagrams and log events go to `later` (after the lock is released).
    fn dispatch(
        self: &Arc<Self>,
        sh: &mut Shared,
        actions: Vec<Action>,
        me: Option<AssocId>,
        later: &mut Vec<Action>,
    ) {
        let mut gone = Vec::new();
        for a in actions {
            match a {
                Action::Send {
                    assoc,
                    protocol,
                    bytes,
                    name,
                } => {
                    let Some(l) = sh.links.get_mut(&assoc) else {
                        continue;
                    };
                    if l.state != LinkState::Open {
                        continue;
                    }
                    if l.out.len() >= self.write_queue {
                        warn!(
                            assoc,
                            message = name,
                            "send queue full: aborting association"
                        );
                        if self.end(sh, assoc, LinkState::Aborting) {
                            gone.push(assoc);
                        }
                        continue;
                    }
                    l.out.push(Msg::new(protocol.ppid(), 0, bytes));
                    if l.out.len() == 1 && me != Some(assoc) {
                        l.wake.notify_one();
                    }
                }
                Action::Abort { assoc, reason } => {
                    info!(assoc, reason, "aborting association");
                    self.end(sh, assoc, LinkState::Aborting);
                }
                Action::Close { assoc, reason } => {
                    info!(assoc, reason, "closing association");
                    self.end(sh, assoc, LinkState::Closing);
                }
                Action::Connect {
                    assoc,
                    protocol,
                    transport,
                    to,
                    timeout,
                    purpose,
                } => {
                    debug!(assoc, %protocol, ?to, ?purpose, "connecting");
                    self.connect(assoc, protocol, transport, to, timeout);
                }
                other => later.push(other),
            }
        }
        // Associations the driver aborted itself (a peer that does not read): the core
        // learns that they are gone (it forgets the ones it aborts on its own).
        for assoc in gone {
            let actions = sh
                .registrar
                .handle(Instant::now(), Input::Disconnected { assoc });
            self.dispatch(sh, actions, me, later);
        }
    }

    /// Ends an open association's life in the driver: `Closing` (after its queue) or
    /// `Aborting` (queue dropped); its task is woken to do it. False if it was not open.
    fn end(&self, sh: &mut Shared, assoc: AssocId, to: LinkState) -> bool {
        let Some(l) = sh.links.get_mut(&assoc) else {
            return false;
        };
        if l.state != LinkState::Open {
            return false;
        }
        l.state = to;
        if to == LinkState::Aborting {
            l.out = Vec::new();
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        l.wake.notify_one();
        true
    }

    /// After the core handled something: gauges for the metrics, the start-up flag, and
    /// the timer loop woken if the next deadline moved earlier than the one it sleeps to.
    fn after(&self, sh: &mut Shared) {
        let r = &sh.registrar;
        let stats = &self.stats;
        stats
            .pools
            .store(r.handlespace().pool_count() as u64, Ordering::Relaxed);
        stats
            .pes
            .store(r.handlespace().len() as u64, Ordering::Relaxed);
        stats
            .associations
            .store(r.association_count() as u64, Ordering::Relaxed);
        if !stats.startup_complete.load(Ordering::Relaxed) && r.startup_complete(Instant::now()) {
            stats.startup_complete.store(true, Ordering::Relaxed);
        }
        if let Some(d) = r.poll_timeout() {
            if sh.armed.is_none_or(|a| d < a) {
                sh.armed = Some(d);
                self.timer.notify_one();
            }
        }
    }

    /// The actions [`Ctx::dispatch`] left for outside the lock: datagrams and logs.
    async fn run_later(&self, later: &mut Vec<Action>) {
        for a in later.drain(..) {
            match a {
                Action::SendDatagram { to, bytes, .. } => {
                    if let Some(u) = &self.udp {
                        if let Err(e) = u.send_to(&bytes, to).await {
                            debug!(%to, error = %e, "announce not sent");
                        }
                    }
                }
                // Multicast PRESENCE (unicast peer messages arrive as Send on an association).
                Action::PeerSend { to, bytes, message } => {
                    if let Some(u) = &self.peer_udp {
                        if let Err(e) = u.send_to(&bytes, to).await {
                            debug!(%to, message = message.name(), error = %e, "ENRP peer send failed");
                        }
                    }
                }
                Action::Replicate(r) => {
                    debug!(action = ?r.action, handle = %r.pool_handle, id = r.element.id, "replicated");
                }
                Action::Event(e) => log_event(&e, &self.stats),
                // Sorted out under the lock by `dispatch`.
                Action::Send { .. }
                | Action::Abort { .. }
                | Action::Close { .. }
                | Action::Connect { .. } => {}
            }
        }
    }

    /// Handles one input outside any association task (timer loop, UDP, connect tasks)
    /// and carries out the actions.
    async fn input(self: &Arc<Self>, input: Input) {
        let mut later = Vec::new();
        {
            let mut sh = self.lock();
            self.handle(&mut sh, Instant::now(), [input], None, &mut later);
        }
        self.run_later(&mut later).await;
    }

    /// Connects in a task; the association becomes an association task reporting
    /// [`Input::Connected`], or [`Input::ConnectFailed`] is reported for `assoc`.
    fn connect(
        self: &Arc<Self>,
        assoc: AssocId,
        protocol: Protocol,
        kind: Option<TransportKind>,
        to: Vec<SocketAddr>,
        timeout: std::time::Duration,
    ) {
        let c = &self.connector;
        let kind = connect_kind(kind, &c.listening);
        let mut cfg = match protocol {
            Protocol::Enrp => TransportConfig::enrp(kind),
            Protocol::Asap => TransportConfig::asap(kind),
        };
        cfg.connect_timeout = timeout;
        let local: Vec<SocketAddr> = match protocol {
            Protocol::Enrp => &c.enrp_local,
            Protocol::Asap => &c.asap_local,
        }
        .iter()
        .filter(|l| kind == TransportKind::Sctp || to.iter().any(|a| a.is_ipv4() == l.is_ipv4()))
        .copied()
        .collect();
        let tls = match protocol {
            Protocol::Enrp => c.enrp_tls.clone(),
            Protocol::Asap => None,
        };
        let ctx = self.clone();
        tokio::spawn(async move {
            let t = match tls {
                Some(t) => Transport::new(cfg).with_tls(t),
                None => Transport::new(cfg),
            };
            let a = match tokio::time::timeout(timeout, t.connect(&to, &local)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    debug!(assoc, ?to, %protocol, error = %e, "connect failed");
                    ctx.input(Input::ConnectFailed { assoc }).await;
                    return;
                }
                Err(_) => {
                    debug!(assoc, ?to, %protocol, "connect timed out");
                    ctx.input(Input::ConnectFailed { assoc }).await;
                    return;
                }
            };
            let kind = a.kind();
            let mut addrs = to.clone();
            addrs.extend(
                a.peer_addrs()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| !to.contains(x)),
            );
            debug!(assoc, ?to, %protocol, "association up");
            ctx.open.fetch_add(1, Ordering::Relaxed);
            link_task(ctx, a, assoc, protocol, kind, addrs).await;
        });
    }
}

/// Counters and gauges shared with the metrics endpoint (and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Accepted registrations (new + re-registrations).
    pub registrations: AtomicU64,
    /// Refused registrations.
    pub registrations_rejected: AtomicU64,
    /// Answered handle resolutions (with PEs).
    pub resolutions: AtomicU64,
    /// Handle resolutions answered with an error.
    pub resolutions_failed: AtomicU64,
    /// Removals by reason, indexed like [`crate::core::RemovalReason::ALL`].
    pub removals: [AtomicU64; crate::core::RemovalReason::ALL.len()],
    /// Protocol errors (malformed / unrecognised input).
    pub protocol_errors: AtomicU64,
    /// Requests refused by rate limits.
    pub rate_limited: AtomicU64,
    /// Input refused at a trust boundary, indexed like [`crate::core::Refusal::ALL`].
    pub refusals: [AtomicU64; crate::core::Refusal::ALL.len()],
    /// Pools now.
    pub pools: AtomicU64,
    /// PEs now.
    pub pes: AtomicU64,
    /// Associations now.
    pub associations: AtomicU64,
    /// Connections closed by a TLS listener (ENRP or ASAP) because the handshake failed or
    /// timed out, or plaintext where TLS is required.
    pub tls_refused: Arc<AtomicU64>,
    /// The start-up phase is over ([`Registrar::startup_complete`]): the mentor's handle
    /// table is loaded or there was none to load. systemd's `READY=1` waits for it.
    pub startup_complete: std::sync::atomic::AtomicBool,
}

/// A bound, not yet running registrar.
pub struct Server {
    registrar: Registrar,
    /// ASAP listeners (one per transport), then ENRP listeners.
    listeners: Vec<Bound>,
    udp: Option<UdpEndpoint>,
    /// ENRP peering socket (UDP on the ENRP address and port; see `core::peers`).
    peer_udp: Option<Arc<UdpEndpoint>>,
    config: DriverConfig,
    stats: Arc<Stats>,
    write_queue: usize,
}

fn transport_err(what: &'static str) -> impl FnOnce(TransportError) -> DriverError {
    move |source| DriverError::Transport { what, source }
}

impl DriverConfig {
    /// The transports listened on, in order: [`transport`](Self::transport) first, then
    /// [`extra_transports`](Self::extra_transports); `Auto` resolved (kernel SCTP if the
    /// kernel has it, else [`auto_fallback`](Self::auto_fallback)); duplicates removed.
    pub fn listen_transports(&self) -> Vec<TransportKind> {
        let mut out: Vec<TransportKind> = Vec::new();
        for k in std::iter::once(self.transport).chain(self.extra_transports.iter().copied()) {
            let k = k.resolve_with(self.auto_fallback);
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }
}

/// One bound listener of the registrar.
struct Bound {
    protocol: Protocol,
    listener: Listener,
}

/// Binds one listener per transport in `kinds` on `addrs`. When `addrs` ask for port 0,
/// the listeners after the first take the port the first one got (one port for every
/// transport, as with fixed ports); if that port is taken for one of them, all are bound
/// again on a fresh port (up to [`BIND_SHARED_ATTEMPTS`] times), and only then does a
/// listener take any free port.
async fn bind_all(
    kinds: &[TransportKind],
    addrs: &[SocketAddr],
    make: impl Fn(TransportKind) -> Transport,
    what: &'static str,
) -> Result<Vec<Listener>, DriverError> {
    // Ephemeral ports (every address with port 0): the first transport's port is shared
    // by the others. A port free for the first may be taken for another transport (TCP
    // and UDP ports are separate spaces); then all are bound again on a fresh port, a few
    // times, before the others fall back to ports of their own.
    let ephemeral = addrs.iter().all(|a| a.port() == 0);
    for _ in 0..BIND_SHARED_ATTEMPTS {
        if !ephemeral || kinds.len() < 2 {
            break;
        }
        let first = make(kinds[0])
            .listen(addrs)
            .await
            .map_err(transport_err(what))?;
        let Some(port) = first_port(&first) else {
            break;
        };
        let same = with_port(addrs, port);
        let mut out = vec![first];
        for kind in &kinds[1..] {
            match make(*kind).listen(&same).await {
                Ok(l) => out.push(l),
                Err(_) => break,
            }
        }
        if out.len() == kinds.len() {
            return Ok(out);
        }
    }
    let mut out: Vec<Listener> = Vec::new();
    for kind in kinds {
        let t = make(*kind);
        let shared_port = out.first().filter(|_| ephemeral).and_then(first_port);
        let l = match shared_port {
            Some(port) => {
                let same = with_port(addrs, port);
                match t.listen(&same).await {
                    Ok(l) => l,
                    Err(_) => t.listen(addrs).await.map_err(transport_err(what))?,
                }
            }
            None => t.listen(addrs).await.map_err(transport_err(what))?,
        };
        out.push(l);
    }
    Ok(out)
}

/// The port `l` got (its first local address).
fn first_port(l: &Listener) -> Option<u16> {
    l.local_addrs()
        .ok()
        .and_then(|v| v.first().map(SocketAddr::port))
}

/// `addrs` with `port` instead of their own.
fn with_port(addrs: &[SocketAddr], port: u16) -> Vec<SocketAddr> {
    addrs
        .iter()
        .map(|a| SocketAddr::new(a.ip(), port))
        .collect()
}

/// How often [`bind_all`] binds every transport again on a fresh ephemeral port when one
/// of them could not share the first one's port.
const BIND_SHARED_ATTEMPTS: usize = 8;

impl Server {
    /// Binds the listeners (an ASAP and an ENRP one per transport of
    /// [`DriverConfig::listen_transports`]) and the announce socket, and fills the core's
    /// announce and Server Information transports from the bound addresses.
    pub async fn bind(mut core: CoreConfig, config: DriverConfig) -> Result<Server, DriverError> {
        let stats = Arc::new(Stats::default());
        let with_tls = |t: Transport, tls: &Option<TlsContext>| match tls {
            Some(ctx) => t.with_tls(ctx.clone().with_refusal_counter(stats.tls_refused.clone())),
            None => t,
        };
        let kinds = config.listen_transports();
        let protocol_cfg = |kind: TransportKind, protocol: Protocol| {
            let mut c = match protocol {
                Protocol::Asap => TransportConfig::asap(kind),
                Protocol::Enrp => TransportConfig::enrp(kind),
            };
            c.tcp_max_partial_bytes = Some(config.max_partial_bytes);
            c.auto_fallback = config.auto_fallback;
            c
        };
        let asap = bind_all(
            &kinds,
            &config.asap,
            |k| {
                with_tls(
                    Transport::new(protocol_cfg(k, Protocol::Asap)),
                    &config.asap_tls,
                )
            },
            "ASAP listener",
        )
        .await?;
        let enrp = if config.enrp.is_empty() {
            Vec::new()
        } else {
            bind_all(
                &kinds,
                &config.enrp,
                |k| {
                    with_tls(
                        Transport::new(protocol_cfg(k, Protocol::Enrp)),
                        &config.enrp_tls,
                    )
                },
                "ENRP listener",
            )
            .await?
        };
        core.max_associations = config.max_associations;
        // ASAP_SERVER_ANNOUNCE lists every listening transport in the configured order
        // (an SCTP parameter for kernel SCTP and sctp-udp alike, once if both listen).
        let mut asap_transports: Vec<TransportParameter> = Vec::new();
        for l in &asap {
            let addrs = l.local_addrs().map_err(transport_err("ASAP listener"))?;
            for t in announce_transports(l.kind(), &addrs) {
                if !asap_transports.contains(&t) {
                    asap_transports.push(t);
                }
            }
        }
        core.asap_transports = asap_transports;
        // Server Information carries one SCTP transport (RFC 5354 §2.2.2): the SCTP (or
        // sctp-udp) ENRP listener's addresses and port; a TCP-only registrar puts its TCP
        // ENRP address there (our TCP peers connect to it).
        let enrp_info = enrp
            .iter()
            .find(|l| l.kind() != TransportKind::Tcp)
            .or(enrp.first());
        if let Some(l) = enrp_info {
            let addrs = l.local_addrs().map_err(transport_err("ENRP listener"))?;
            core.enrp_transport = announce_transports(TransportKind::Sctp, &addrs)
                .into_iter()
                .next();
        }
        let asap_addrs = match asap.first() {
            Some(l) => l.local_addrs().map_err(transport_err("ASAP listener"))?,
            None => Vec::new(),
        };
        let listeners: Vec<Bound> = asap
            .into_iter()
            .map(|listener| Bound {
                protocol: Protocol::Asap,
                listener,
            })
            .chain(enrp.into_iter().map(|listener| Bound {
                protocol: Protocol::Enrp,
                listener,
            }))
            .collect();
        let udp = if core.asap_announce_targets.is_empty() {
            None
        } else {
            // Send from the first specific ASAP address so multicast leaves on its interface.
            let from = asap_addrs
                .iter()
                .find(|a| a.is_ipv4() && !a.ip().is_unspecified())
                .map(|a| SocketAddr::new(a.ip(), 0));
            let ep = UdpEndpoint::bind(match from {
                Some(a) => UdpBind::Addr(a),
                None => UdpBind::Port(0),
            })
            .await
            .map_err(transport_err("announce socket"))?;
            let _ = ep.set_multicast_ttl(config.announce_ttl);
            let _ = ep.set_multicast_loop(true);
            if let Some(SocketAddr::V4(a)) = from {
                let _ = ep.set_multicast_if(*a.ip());
            }
            Some(ep)
        };
        let peer_udp = if core.peering.enabled {
            let at = config
                .enrp
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9901)));
            let ep = UdpEndpoint::bind(UdpBind::Addr(at))
                .await
                .map_err(transport_err("ENRP peering socket"))?;
            if let (Some(SocketAddr::V4(g)), true) =
                (core.peering.multicast, at.ip().is_unspecified())
            {
                if let Err(e) = ep.join_multicast_v4(*g.ip(), std::net::Ipv4Addr::UNSPECIFIED) {
                    warn!(group = %g, error = %e, "cannot join the ENRP presence group");
                }
            }
            let _ = ep.set_multicast_loop(false);
            Some(Arc::new(ep))
        } else {
            None
        };
        for b in &listeners {
            info!(
                server_id = format_args!("{:#010x}", core.server_id),
                protocol = %b.protocol,
                transport = b.listener.kind().as_str(),
                addrs = ?b.listener.local_addrs().unwrap_or_default(),
                "listening"
            );
        }
        info!(
            server_id = format_args!("{:#010x}", core.server_id),
            transports = ?kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            asap = ?asap_addrs,
            announce = ?core.asap_announce_targets,
            announced_transports = ?core.asap_transports,
            peers = ?core.peers,
            "registrar listening"
        );
        let write_queue = WRITE_QUEUE_BASE
            .saturating_add(core.limits.max_pes_per_connection.saturating_mul(2))
            .min(1 << 20);
        Ok(Server {
            write_queue,
            registrar: Registrar::new(core, Instant::now()),
            listeners,
            udp,
            peer_udp,
            config,
            stats,
        })
    }

    /// Bound addresses of the first (primary transport's) ASAP listener.
    pub fn asap_addrs(&self) -> Vec<SocketAddr> {
        self.listen_addrs(Protocol::Asap, None)
    }

    /// Bound addresses of the first (primary transport's) ENRP listener (empty without
    /// ENRP listener).
    pub fn enrp_addrs(&self) -> Vec<SocketAddr> {
        self.listen_addrs(Protocol::Enrp, None)
    }

    /// Bound addresses of the `protocol` listener of transport `kind` (`None`: the first
    /// one); empty if there is none.
    pub fn listen_addrs(&self, protocol: Protocol, kind: Option<TransportKind>) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .find(|b| b.protocol == protocol && kind.is_none_or(|k| b.listener.kind() == k))
            .and_then(|b| b.listener.local_addrs().ok())
            .unwrap_or_default()
    }

    /// Every listener: protocol, concrete transport and bound addresses.
    pub fn listeners(&self) -> Vec<(Protocol, TransportKind, Vec<SocketAddr>)> {
        self.listeners
            .iter()
            .map(|b| {
                (
                    b.protocol,
                    b.listener.kind(),
                    b.listener.local_addrs().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Shared statistics (for the metrics endpoint).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            registrar,
            listeners,
            udp,
            peer_udp,
            config,
            stats,
            write_queue,
        } = self;
        let local = |addrs: &[SocketAddr]| -> Vec<SocketAddr> {
            addrs
                .iter()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| SocketAddr::new(a.ip(), 0))
                .collect()
        };
        let ctx = Arc::new(Ctx {
            shared: Mutex::new(Shared {
                registrar,
                links: HashMap::new(),
                armed: None,
            }),
            timer: Notify::new(),
            udp,
            peer_udp: peer_udp.clone(),
            connector: Connector {
                listening: config.listen_transports(),
                enrp_tls: config.enrp_tls.clone(),
                enrp_local: local(&config.enrp),
                asap_local: local(&config.asap),
            },
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            max_associations: config.max_associations,
            write_queue,
            stats,
        });
        let mut accepts: Vec<tokio::task::JoinHandle<()>> = listeners
            .into_iter()
            .map(|b| tokio::spawn(accept_loop(ctx.clone(), b.listener, b.protocol)))
            .collect();
        if let Some(ep) = peer_udp {
            let ctx = ctx.clone();
            accepts.push(tokio::spawn(async move {
                loop {
                    match ep.recv_from().await {
                        Ok((bytes, from)) => {
                            let input = Input::Datagram {
                                from,
                                protocol: Protocol::Enrp,
                                bytes,
                            };
                            ctx.input(input).await;
                        }
                        Err(e) => debug!(error = %e, "ENRP peering socket"),
                    }
                }
            }));
        }
        // The timer loop (on this task): sleeps until the core's next deadline; woken
        // early only when an association task made that deadline earlier.
        let mut shutdown = pin!(shutdown);
        let mut later = Vec::new();
        loop {
            let deadline = {
                let mut sh = ctx.lock();
                let d = sh.registrar.poll_timeout();
                sh.armed = d;
                d
            };
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep => {
                    {
                        let mut sh = ctx.lock();
                        let actions = sh.registrar.handle_timeout(Instant::now());
                        ctx.dispatch(&mut sh, actions, None, &mut later);
                        ctx.after(&mut sh);
                    }
                    ctx.run_later(&mut later).await;
                }
                _ = ctx.timer.notified() => {}
            }
        }
        for a in accepts {
            a.abort();
        }
        let mut sh = ctx.lock();
        info!(
            pes = sh.registrar.handlespace().len(),
            associations = sh.links.len(),
            "registrar shutting down"
        );
        // Each association task writes what is queued and closes gracefully.
        let ids: Vec<AssocId> = sh.links.keys().copied().collect();
        for id in ids {
            ctx.end(&mut sh, id, LinkState::Closing);
        }
    }
}

/// Transports for ASAP_SERVER_ANNOUNCE / Server Information from bound addresses:
/// wildcard addresses are left out (receivers then use the datagram's source).
fn announce_transports(kind: TransportKind, addrs: &[SocketAddr]) -> Vec<TransportParameter> {
    let specific: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| !a.ip().is_unspecified())
        .collect();
    let Some(first) = specific.first() else {
        return Vec::new();
    };
    match kind {
        TransportKind::Tcp => specific
            .iter()
            .map(|a| TransportParameter::Tcp {
                port: a.port(),
                transport_use: TransportUse::DataOnly,
                address: a.ip(),
            })
            .collect(),
        _ => vec![TransportParameter::Sctp {
            port: first.port(),
            transport_use: TransportUse::DataOnly,
            addresses: specific.iter().map(SocketAddr::ip).collect(),
        }],
    }
}

async fn accept_loop(ctx: Arc<Ctx>, listener: Listener, protocol: Protocol) {
    let transport = listener.kind();
    loop {
        let assoc = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!(%protocol, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer_addrs = assoc.peer_addrs().unwrap_or_default();
        let max = ctx.max_associations;
        if ctx.open.load(Ordering::Relaxed) >= max {
            warn!(%protocol, peer = ?peer_addrs, max, "too many associations: refused");
            assoc.abort();
            continue;
        }
        ctx.open.fetch_add(1, Ordering::Relaxed);
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        debug!(assoc = id, %protocol, peer = ?peer_addrs, "association up");
        tokio::spawn(link_task(
            ctx.clone(),
            assoc,
            id,
            protocol,
            transport,
            peer_addrs,
        ));
    }
}

/// What one wait of an association task brought.
enum Got {
    /// Input for the core (messages, restart).
    Input(Input),
    /// The association ended (the last event).
    Lost,
    /// Nothing for the core (Up, address changes).
    Nothing,
}

fn got(ev: Result<TransportEvent, TransportError>, id: AssocId, protocol: Protocol) -> Got {
    match ev {
        Ok(TransportEvent::Message(m)) => Got::Input(Input::Message {
            assoc: id,
            protocol: Protocol::from_ppid(m.ppid).unwrap_or(protocol),
            bytes: m.bytes,
        }),
        Ok(TransportEvent::Restarted) => {
            debug!(assoc = id, "peer restarted the association");
            Got::Input(Input::Restarted { assoc: id })
        }
        Ok(TransportEvent::Lost(reason)) => {
            debug!(assoc = id, %reason, "association lost");
            Got::Lost
        }
        Ok(_) => Got::Nothing,
        Err(e) => {
            debug!(assoc = id, error = %e, "association ended");
            Got::Lost
        }
    }
}

/// One association, run to completion on the task that owns its socket (module doc):
/// read every readable message, let the core handle them under the lock, write the
/// answers (and whatever else is queued for it) in one batch.
async fn link_task(
    ctx: Arc<Ctx>,
    assoc: asap::transport::Association,
    id: AssocId,
    protocol: Protocol,
    transport: TransportKind,
    peer_addrs: Vec<SocketAddr>,
) {
    let certificate = assoc.peer_certificate().cloned();
    let (mut reader, mut writer) = assoc.into_split();
    let wake = Arc::new(Notify::new());
    let mut inputs: Vec<Input> = Vec::with_capacity(16);
    inputs.push(Input::Connected {
        assoc: id,
        protocol,
        peer_addrs,
        transport,
    });
    if let Some(certificate) = certificate {
        inputs.push(Input::PeerCertificate {
            assoc: id,
            certificate,
        });
    }
    ctx.lock().links.insert(
        id,
        LinkEntry {
            out: Vec::new(),
            state: LinkState::Open,
            wake: wake.clone(),
        },
    );
    let mut later: Vec<Action> = Vec::new();
    let mut batch: Vec<Msg> = Vec::with_capacity(16);
    let mut buf: Vec<u8> = Vec::new();
    let mut lost = false;
    loop {
        // Under the lock: the core handles what was read; take what is queued for us.
        let state = {
            let mut sh = ctx.lock();
            if !inputs.is_empty() {
                ctx.handle(
                    &mut sh,
                    Instant::now(),
                    inputs.drain(..),
                    Some(id),
                    &mut later,
                );
            }
            if lost {
                if sh
                    .links
                    .remove(&id)
                    .is_some_and(|l| l.state == LinkState::Open)
                {
                    ctx.open.fetch_sub(1, Ordering::Relaxed);
                    ctx.handle(
                        &mut sh,
                        Instant::now(),
                        [Input::Disconnected { assoc: id }],
                        Some(id),
                        &mut later,
                    );
                }
                None
            } else {
                take(&mut sh, id, &mut batch)
            }
        };
        ctx.run_later(&mut later).await;
        let Some(state) = state else {
            return; // lost: dropping the halves closes the socket
        };
        if state == LinkState::Aborting {
            drop(reader);
            writer.abort();
            return;
        }
        if !batch.is_empty() {
            if !write(&ctx, id, &mut writer, &wake, &batch, &mut buf).await {
                ctx.lock().links.remove(&id);
                drop(reader);
                writer.abort();
                return;
            }
            batch.clear();
            if buf.capacity() > 1 << 20 {
                buf = Vec::new(); // a one-off large flush (handle table) does not stay resident
            }
        }
        if state == LinkState::Closing {
            drop(reader);
            let _ = writer.close().await;
            return;
        }
        // Wait until the socket is readable or another task woke us.
        let first = tokio::select! {
            biased;
            _ = wake.notified() => continue,
            ev = reader.recv() => ev,
        };
        let mut next = Some(first);
        while let Some(ev) = next.take() {
            match got(ev, id, protocol) {
                Got::Input(i) => {
                    // Distance of DPF policies (core/distance.rs): the RTT goes first.
                    if let Input::Message {
                        protocol: p, bytes, ..
                    } = &i
                    {
                        if crate::core::distance::wants_rtt(*p, bytes) {
                            if let Ok(Some(rtt)) = reader.rtt() {
                                inputs.push(Input::Rtt { assoc: id, rtt });
                            }
                        }
                    }
                    inputs.push(i)
                }
                Got::Lost => {
                    lost = true;
                    break;
                }
                Got::Nothing => {}
            }
            if inputs.len() < CORE_BATCH {
                next = reader.recv_ready();
            }
        }
    }
}

/// Takes the messages queued for `id` into `batch` (empty; the two buffers are swapped, so
/// both keep their capacity) and its state; an association that is closing or aborted is
/// forgotten here.
fn take(sh: &mut Shared, id: AssocId, batch: &mut Vec<Msg>) -> Option<LinkState> {
    let Some(l) = sh.links.get_mut(&id) else {
        return Some(LinkState::Aborting);
    };
    std::mem::swap(&mut l.out, batch);
    let state = l.state;
    if state != LinkState::Open {
        sh.links.remove(&id);
    }
    Some(state)
}

/// Writes `batch` in one [`AssocWriter::send_batch`] (one `write` on TCP; issue 15: no
/// syscall per response). While the peer does not read, the write waits, and the task
/// is still woken by others: false if the association was aborted meanwhile (queue full).
async fn write(
    ctx: &Ctx,
    id: AssocId,
    writer: &mut AssocWriter,
    wake: &Notify,
    batch: &[Msg],
    buf: &mut Vec<u8>,
) -> bool {
    let mut send = pin!(writer.send_batch(batch, buf));
    loop {
        tokio::select! {
            biased;
            r = &mut send => {
                if let Err(e) = r {
                    debug!(assoc = id, error = %e, "send failed");
                }
                return true;
            }
            _ = wake.notified() => {
                let aborted = ctx
                    .lock()
                    .links
                    .get(&id)
                    .is_none_or(|l| l.state == LinkState::Aborting);
                if aborted {
                    return false;
                }
                // Anything else (more queued, closing) is taken after this write.
            }
        }
    }
}
/// Logs one core event with structured fields and counts it.
pub fn log_event(e: &Event, stats: &Stats) {
    use crate::core::RemovalReason;
    match e {
        Event::PeerFound { .. }
        | Event::PeerLost { .. }
        | Event::AuditMismatch { .. }
        | Event::SyncDone { .. }
        | Event::TakeoverStarted { .. }
        | Event::TakeoverDone { .. }
        | Event::TakeoverAbandoned { .. }
        | Event::TakeoverSeen { .. }
        | Event::Adopted { .. }
        | Event::PeerConnectFailed { .. }
        | Event::AdoptionFailed { .. } => info!(event = ?e, "peering"),
        Event::PeerMessageDropped { .. } => debug!(event = ?e, "peering"),
        Event::Registered {
            assoc,
            handle,
            id,
            update,
            policy,
            user_addresses,
        } => {
            stats.registrations.fetch_add(1, Ordering::Relaxed);
            info!(
                assoc,
                %handle,
                pe_id = format_args!("{id:#010x}"),
                policy = format_args!("{policy:#010x}"),
                addresses = ?user_addresses,
                "{}",
                if *update { "PE re-registered" } else { "PE registered" }
            );
        }
        Event::RegistrationRejected {
            assoc,
            handle,
            id,
            cause,
            reason,
        } => {
            stats.registrations_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(assoc, %handle, pe_id = format_args!("{id:#010x}"), cause = %cause, %reason, "registration rejected");
        }
        Event::Removed { handle, id, reason } => {
            if let Some(i) = RemovalReason::ALL.iter().position(|r| r == reason) {
                if let Some(c) = stats.removals.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            info!(%handle, pe_id = format_args!("{id:#010x}"), reason = reason.as_str(), "PE removed");
        }
        Event::Resolved {
            assoc,
            handle,
            returned,
        } => {
            stats.resolutions.fetch_add(1, Ordering::Relaxed);
            debug!(assoc, %handle, returned, "handle resolved");
        }
        Event::ResolutionFailed {
            assoc,
            handle,
            cause,
        } => {
            stats.resolutions_failed.fetch_add(1, Ordering::Relaxed);
            info!(assoc, %handle, cause = %cause, "handle resolution failed");
        }
        Event::UnreachableReported {
            assoc,
            handle,
            id,
            distinct_reporters,
        } => info!(
            assoc,
            %handle,
            pe_id = format_args!("{id:#010x}"),
            distinct_reporters,
            "endpoint unreachable reported"
        ),
        Event::UnreachableProbe { handle, id } => info!(
            %handle,
            pe_id = format_args!("{id:#010x}"),
            "endpoint unreachable threshold: verifying with a keep-alive"
        ),
        Event::RateLimited { assoc, peer, what } => {
            stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            info!(assoc, ?peer, what, "rate limited");
        }
        Event::ProtocolError {
            assoc,
            protocol,
            error,
            replied,
        } => {
            stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            warn!(?assoc, %protocol, %error, replied, "protocol error");
        }
        Event::Ignored {
            assoc,
            message,
            reason,
        } => debug!(?assoc, message, reason, "message ignored"),
        Event::HandleTableSent { assoc, pes, more } => {
            debug!(assoc, pes, more, "handle table response sent")
        }
        Event::Refused(r) => {
            if let Some(i) = crate::core::Refusal::ALL.iter().position(|w| *w == r.what) {
                if let Some(c) = stats.refusals.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            let (what, assoc, from) = (r.what.as_str(), r.assoc, r.from);
            if r.warn {
                warn!(
                    what,
                    ?assoc,
                    ?from,
                    server_id = format_args!("{:#010x}", r.server_id),
                    message = r.message,
                    suppressed = r.suppressed,
                    "refused (not allowed; see SECURITY.md)"
                );
            } else {
                debug!(what, ?assoc, ?from, message = r.message, "refused");
            }
        }
        Event::EncodeFailed { message, error } => {
            error!(message, %error, "message could not be encoded")
        }
    }
}

#[cfg(test)]
mod listen_tests {
    use super::*;

    /// Issue 17 item 4: an SCTP transport named by the core is reached over the SCTP
    /// flavour the registrar listens on (sctp-udp on a host without kernel SCTP).
    #[test]
    fn connect_kind_follows_the_listening_sctp_flavour() {
        use TransportKind::*;
        assert_eq!(connect_kind(None, &[SctpUdp, Tcp]), SctpUdp);
        assert_eq!(connect_kind(None, &[Tcp, SctpUdp]), Tcp);
        assert_eq!(connect_kind(Some(Sctp), &[Tcp, SctpUdp]), SctpUdp);
        assert_eq!(connect_kind(Some(Sctp), &[SctpUdp, Sctp]), Sctp);
        assert_eq!(connect_kind(Some(Tcp), &[SctpUdp]), Tcp);
        assert_eq!(
            connect_kind(Some(Sctp), &[Tcp]),
            Auto.resolve_with(SctpUdp),
            "no SCTP listener: kernel SCTP if present, else sctp-udp"
        );
    }

    #[test]
    fn listen_transports_resolve_auto_and_drop_duplicates() {
        use TransportKind::*;
        let mut d = DriverConfig {
            asap: Vec::new(),
            enrp: Vec::new(),
            transport: SctpUdp,
            extra_transports: vec![Tcp, SctpUdp, Tcp],
            auto_fallback: Tcp,
            announce_ttl: 1,
            enrp_announce: Vec::new(),
            max_associations: 1,
            max_partial_bytes: 1 << 20,
            enrp_tls: None,
            asap_tls: None,
        };
        assert_eq!(d.listen_transports(), vec![SctpUdp, Tcp]);
        d.transport = Auto;
        d.extra_transports = vec![Tcp];
        d.auto_fallback = SctpUdp;
        let first = Auto.resolve_with(SctpUdp);
        assert_eq!(d.listen_transports(), vec![first, Tcp]);
        d.auto_fallback = Tcp;
        let want = if Auto.resolve() == Tcp {
            vec![Tcp]
        } else {
            vec![Sctp, Tcp]
        };
        assert_eq!(
            d.listen_transports(),
            want,
            "auto,tcp without kernel SCTP is tcp once"
        );
    }
}
