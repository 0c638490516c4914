//! The tokio driver: runs the sans-I/O [`Registrar`] over real sockets.
//!
//! Tasks and channels (mini-redis style, one job each):
//!
//! * one **accept task** per listener (ASAP, ENRP) numbers each new association, refuses it
//!   when `max_associations` are open, and spawns
//! * one **reader task** per association, which turns transport [`Event`]s into
//!   [`Input::Message`] / [`Input::Disconnected`] on the core channel, and
//! * one **writer task** per association, fed through a bounded queue; an association whose
//!   queue is full (a peer that does not read) is aborted instead of buffering without limit;
//! * one **connect task** per [`Action::Connect`] (the core decides whom to connect to:
//!   ENRP peers, ASAP transports of PEs adopted in a takeover; `crate::core::links`): the
//!   new association gets its reader/writer tasks like an accepted one and is handed to the
//!   core with [`Input::Connected`] under the core's ID, or [`Input::ConnectFailed`];
//! * the **core task** owns the [`Registrar`]: it takes inputs from the channel, runs timers
//!   at [`Registrar::poll_timeout`], and executes the [`Action`]s (queue to a writer, send a
//!   UDP announce, connect, close, abort, log). It is the only place where the core is
//!   touched, so no locks. The driver keeps only sockets and task handles: the peer
//!   address table, connect queue and adoption state are the core's.
//!
//! Shutdown: when the future given to [`Server::run`] completes (SIGINT/SIGTERM in the
//! binary), the core task stops, listeners close and every association is closed
//! gracefully (SCTP SHUTDOWN / TCP FIN) by dropping its writer.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use asap::transport::tls::TlsContext;
use asap::transport::udp::{UdpBind, UdpEndpoint};
use asap::transport::{
    AssocWriter, Event as TransportEvent, Listener, Msg, Transport, TransportConfig,
    TransportError, TransportKind,
};
use asap::wire::{Protocol, TransportParameter, TransportUse};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
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
/// Inputs queued for the core task.
const CORE_QUEUE: usize = 8192;
/// Most inputs the core task handles before it carries out their actions.
const CORE_BATCH: usize = 256;

enum WriterCmd {
    Send(Msg),
    Abort,
}

struct Link {
    tx: mpsc::Sender<WriterCmd>,
    reader: JoinHandle<()>,
}

/// Opens the associations the core asks for ([`Action::Connect`]): sockets only; the
/// core keeps the peer address table, the connect queue and the adoption state
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
    tx: mpsc::Sender<(Input, Option<Link>)>,
    open: Arc<AtomicUsize>,
    write_queue: usize,
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

impl Connector {
    /// Connects in a task; reports [`Input::Connected`] (with the reader/writer tasks
    /// started) or [`Input::ConnectFailed`] for `assoc`.
    fn connect(
        &self,
        assoc: AssocId,
        protocol: Protocol,
        kind: Option<TransportKind>,
        to: Vec<SocketAddr>,
        timeout: std::time::Duration,
    ) {
        let kind = connect_kind(kind, &self.listening);
        let mut cfg = match protocol {
            Protocol::Enrp => TransportConfig::enrp(kind),
            Protocol::Asap => TransportConfig::asap(kind),
        };
        cfg.connect_timeout = timeout;
        let local: Vec<SocketAddr> = match protocol {
            Protocol::Enrp => &self.enrp_local,
            Protocol::Asap => &self.asap_local,
        }
        .iter()
        .filter(|l| kind == TransportKind::Sctp || to.iter().any(|a| a.is_ipv4() == l.is_ipv4()))
        .copied()
        .collect();
        let tx = self.tx.clone();
        let open = self.open.clone();
        let write_queue = self.write_queue;
        let tls = match protocol {
            Protocol::Enrp => self.enrp_tls.clone(),
            Protocol::Asap => None,
        };
        tokio::spawn(async move {
            let t = match tls {
                Some(ctx) => Transport::new(cfg).with_tls(ctx),
                None => Transport::new(cfg),
            };
            let a = match tokio::time::timeout(timeout, t.connect(&to, &local)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    debug!(assoc, ?to, %protocol, error = %e, "connect failed");
                    let _ = tx.send((Input::ConnectFailed { assoc }, None)).await;
                    return;
                }
                Err(_) => {
                    debug!(assoc, ?to, %protocol, "connect timed out");
                    let _ = tx.send((Input::ConnectFailed { assoc }, None)).await;
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
            open.fetch_add(1, Ordering::Relaxed);
            if !start_link(a, assoc, protocol, kind, addrs, &tx, write_queue).await {
                open.fetch_sub(1, Ordering::Relaxed);
            }
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
/// the listeners after the first try the port the first one got (one port for every
/// transport, as with fixed ports), and take any free port if it is taken.
async fn bind_all(
    kinds: &[TransportKind],
    addrs: &[SocketAddr],
    make: impl Fn(TransportKind) -> Transport,
    what: &'static str,
) -> Result<Vec<Listener>, DriverError> {
    let mut out: Vec<Listener> = Vec::new();
    for kind in kinds {
        let t = make(*kind);
        let shared_port = match out.first() {
            Some(first) if addrs.iter().all(|a| a.port() == 0) => first
                .local_addrs()
                .ok()
                .and_then(|v| v.first().map(SocketAddr::port)),
            _ => None,
        };
        let l = match shared_port {
            Some(port) => {
                let same: Vec<SocketAddr> = addrs
                    .iter()
                    .map(|a| SocketAddr::new(a.ip(), port))
                    .collect();
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
            mut registrar,
            listeners,
            udp,
            peer_udp,
            config,
            stats,
            write_queue,
        } = self;
        let (tx, mut rx) = mpsc::channel::<(Input, Option<Link>)>(CORE_QUEUE);
        let next_id = Arc::new(AtomicU64::new(1));
        let open = Arc::new(AtomicUsize::new(0));
        let connector = Connector {
            listening: config.listen_transports(),
            enrp_tls: config.enrp_tls.clone(),
            enrp_local: config
                .enrp
                .iter()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| SocketAddr::new(a.ip(), 0))
                .collect(),
            asap_local: config
                .asap
                .iter()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| SocketAddr::new(a.ip(), 0))
                .collect(),
            tx: tx.clone(),
            open: open.clone(),
            write_queue,
        };
        let mut accepts: Vec<JoinHandle<()>> = listeners
            .into_iter()
            .map(|b| {
                tokio::spawn(accept_loop(
                    b.listener,
                    b.protocol,
                    tx.clone(),
                    next_id.clone(),
                    open.clone(),
                    config.max_associations,
                    write_queue,
                ))
            })
            .collect();
        if let Some(ep) = peer_udp.clone() {
            let tx = tx.clone();
            accepts.push(tokio::spawn(async move {
                loop {
                    match ep.recv_from().await {
                        Ok((bytes, from)) => {
                            let input = Input::Datagram {
                                from,
                                protocol: Protocol::Enrp,
                                bytes,
                            };
                            if tx.send((input, None)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => debug!(error = %e, "ENRP peering socket"),
                    }
                }
            }));
        }
        drop(tx);
        let mut links: HashMap<AssocId, Link> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            let deadline = registrar.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            let actions = tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep => registrar.handle_timeout(Instant::now()),
                input = rx.recv() => match input {
                    Some(first) => {
                        // Everything already queued is handled before the actions are
                        // carried out, so that a burst of requests on one association
                        // leaves as one flush (issue 15).
                        let now = Instant::now();
                        let mut actions = Vec::new();
                        let mut next = Some(first);
                        let mut n = 0;
                        while let Some((input, link)) = next.take() {
                            if let (Input::Connected { assoc, .. }, Some(l)) = (&input, link) {
                                links.insert(*assoc, l);
                            }
                            if let Input::Disconnected { assoc } = &input {
                                if links.remove(assoc).is_some() {
                                    open.fetch_sub(1, Ordering::Relaxed);
                                }
                            }
                            actions.extend(registrar.handle(now, input));
                            n += 1;
                            if n < CORE_BATCH {
                                next = rx.try_recv().ok();
                            }
                        }
                        actions
                    }
                    None => break,
                },
            };
            let mut aborted = execute(
                actions,
                &mut links,
                udp.as_ref(),
                peer_udp.as_deref(),
                &connector,
                &open,
                &stats,
            )
            .await;
            // Associations the driver aborted itself (a peer that does not read): the
            // core learns that they are gone (it forgets the ones it aborts on its own).
            while let Some(assoc) = aborted.pop() {
                let actions = registrar.handle(Instant::now(), Input::Disconnected { assoc });
                aborted.extend(
                    execute(
                        actions,
                        &mut links,
                        udp.as_ref(),
                        peer_udp.as_deref(),
                        &connector,
                        &open,
                        &stats,
                    )
                    .await,
                );
            }
            stats.pools.store(
                registrar.handlespace().pool_count() as u64,
                Ordering::Relaxed,
            );
            stats
                .pes
                .store(registrar.handlespace().len() as u64, Ordering::Relaxed);
            stats
                .associations
                .store(registrar.association_count() as u64, Ordering::Relaxed);
            if !stats.startup_complete.load(Ordering::Relaxed)
                && registrar.startup_complete(Instant::now())
            {
                stats.startup_complete.store(true, Ordering::Relaxed);
            }
        }
        info!(
            pes = registrar.handlespace().len(),
            associations = links.len(),
            "registrar shutting down"
        );
        for a in accepts {
            a.abort();
        }
        for (_, l) in links.drain() {
            l.reader.abort();
            // Dropping the sender ends the writer task, which closes the association.
            drop(l.tx);
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

async fn accept_loop(
    listener: Listener,
    protocol: Protocol,
    tx: mpsc::Sender<(Input, Option<Link>)>,
    next_id: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
    max: usize,
    write_queue: usize,
) {
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
        if open.load(Ordering::Relaxed) >= max {
            warn!(%protocol, peer = ?peer_addrs, max, "too many associations: refused");
            assoc.abort();
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        debug!(assoc = id, %protocol, peer = ?peer_addrs, "association up");
        if !start_link(assoc, id, protocol, transport, peer_addrs, &tx, write_queue).await {
            return;
        }
    }
}

/// Spawns the reader and writer tasks of a new association and hands it to the core task
/// ([`Input::Connected`] with its [`Link`], before anything read on it). False when the
/// core task is gone.
async fn start_link(
    assoc: asap::transport::Association,
    id: AssocId,
    protocol: Protocol,
    transport: TransportKind,
    peer_addrs: Vec<SocketAddr>,
    tx: &mpsc::Sender<(Input, Option<Link>)>,
    write_queue: usize,
) -> bool {
    {
        let certificate = assoc.peer_certificate().cloned();
        let (mut reader, writer) = assoc.into_split();
        let (wtx, wrx) = mpsc::channel(write_queue);
        tokio::spawn(writer_task(writer, wrx));
        let rtx = tx.clone();
        // The Connected input is queued before the reader can queue anything.
        let (start_tx, start_rx) = tokio::sync::oneshot::channel::<()>();
        let reader_task = tokio::spawn(async move {
            if start_rx.await.is_err() {
                return;
            }
            loop {
                match reader.recv().await {
                    Ok(TransportEvent::Message(m)) => {
                        let p = Protocol::from_ppid(m.ppid).unwrap_or(protocol);
                        // Distance of DPF policies (core/distance.rs): the RTT goes first.
                        if crate::core::distance::wants_rtt(p, &m.bytes) {
                            if let Ok(Some(rtt)) = reader.rtt() {
                                let input = Input::Rtt { assoc: id, rtt };
                                if rtx.send((input, None)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        let input = Input::Message {
                            assoc: id,
                            protocol: p,
                            bytes: m.bytes,
                        };
                        if rtx.send((input, None)).await.is_err() {
                            return;
                        }
                    }
                    Ok(TransportEvent::Restarted) => {
                        debug!(assoc = id, "peer restarted the association");
                        if rtx
                            .send((Input::Restarted { assoc: id }, None))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(TransportEvent::Lost(reason)) => {
                        debug!(assoc = id, %reason, "association lost");
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(assoc = id, error = %e, "association ended");
                        break;
                    }
                }
            }
            let _ = rtx.send((Input::Disconnected { assoc: id }, None)).await;
        });
        let input = Input::Connected {
            assoc: id,
            protocol,
            peer_addrs,
            transport,
        };
        let link = Link {
            tx: wtx,
            reader: reader_task,
        };
        if tx.send((input, Some(link))).await.is_err() {
            return false;
        }
        if let Some(certificate) = certificate {
            let input = Input::PeerCertificate {
                assoc: id,
                certificate,
            };
            if tx.send((input, None)).await.is_err() {
                return false;
            }
        }
        let _ = start_tx.send(());
        true
    }
}

/// Most messages one writer flush takes from its queue (one `write` on TCP).
const WRITE_BATCH: usize = 256;

/// Writes what the core queued for one association: every message queued by the time it
/// runs goes out in one [`AssocWriter::send_batch`] (one `write` on TCP; issue 15: no
/// syscall per response), from a buffer reused across flushes.
async fn writer_task(mut w: AssocWriter, mut rx: mpsc::Receiver<WriterCmd>) {
    let mut batch: Vec<Msg> = Vec::with_capacity(16);
    let mut buf: Vec<u8> = Vec::new();
    while let Some(cmd) = rx.recv().await {
        let mut abort = false;
        match cmd {
            WriterCmd::Send(m) => batch.push(m),
            WriterCmd::Abort => abort = true,
        }
        while !abort && batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(WriterCmd::Send(m)) => batch.push(m),
                Ok(WriterCmd::Abort) => abort = true,
                Err(_) => break,
            }
        }
        if abort {
            w.abort();
            return;
        }
        if let Err(e) = w.send_batch(&batch, &mut buf).await {
            debug!(error = %e, "send failed");
        }
        batch.clear();
        if buf.capacity() > 1 << 20 {
            buf = Vec::new(); // a one-off large flush (handle table) does not stay resident
        }
    }
    let _ = w.close().await;
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    actions: Vec<Action>,
    links: &mut HashMap<AssocId, Link>,
    udp: Option<&UdpEndpoint>,
    peer_udp: Option<&UdpEndpoint>,
    connector: &Connector,
    open: &AtomicUsize,
    stats: &Stats,
) -> Vec<AssocId> {
    let mut aborted = Vec::new();
    for a in actions {
        match a {
            Action::Send {
                assoc,
                protocol,
                bytes,
                message,
            } => {
                let Some(link) = links.get(&assoc) else {
                    continue;
                };
                let msg = Msg::new(protocol.ppid(), 0, bytes);
                // A closed queue means the association is already going away.
                if let Err(mpsc::error::TrySendError::Full(_)) =
                    link.tx.try_send(WriterCmd::Send(msg))
                {
                    warn!(
                        assoc,
                        message = message.tshark_name(),
                        "send queue full: aborting association"
                    );
                    abort(links, assoc, open);
                    aborted.push(assoc);
                }
            }
            Action::SendDatagram { to, bytes, .. } => {
                if let Some(u) = udp {
                    if let Err(e) = u.send_to(&bytes, to).await {
                        debug!(%to, error = %e, "announce not sent");
                    }
                }
            }
            Action::Abort { assoc, reason } => {
                info!(assoc, reason, "aborting association");
                abort(links, assoc, open);
            }
            Action::Close { assoc, reason } => {
                info!(assoc, reason, "closing association");
                if let Some(l) = links.remove(&assoc) {
                    open.fetch_sub(1, Ordering::Relaxed);
                    l.reader.abort();
                    // Dropping the sender ends the writer after the queued messages and
                    // closes the association gracefully.
                }
            }
            Action::Replicate(r) => {
                debug!(action = ?r.action, handle = %r.pool_handle, id = r.element.id, "replicated");
            }
            // Multicast PRESENCE (unicast peer messages arrive as Send on an association).
            Action::PeerSend { to, bytes, message } => {
                if let Some(u) = peer_udp {
                    if let Err(e) = u.send_to(&bytes, to).await {
                        debug!(%to, message = message.name(), error = %e, "ENRP peer send failed");
                    }
                }
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
                connector.connect(assoc, protocol, transport, to, timeout);
            }
            Action::Event(e) => log_event(&e, stats),
        }
    }
    aborted
}

/// Aborts an association: the reader task stops (dropping its half of the socket), the
/// writer sends ABORT / RST, and the link is forgotten.
fn abort(links: &mut HashMap<AssocId, Link>, assoc: AssocId, open: &AtomicUsize) {
    if let Some(l) = links.remove(&assoc) {
        open.fetch_sub(1, Ordering::Relaxed);
        l.reader.abort();
        if l.tx.try_send(WriterCmd::Abort).is_err() {
            // Queue full: the writer ends when the sender is dropped with the link.
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
        Event::Refused {
            what,
            assoc,
            from,
            server_id,
            message,
            warn,
            suppressed,
        } => {
            if let Some(i) = crate::core::Refusal::ALL.iter().position(|r| r == what) {
                if let Some(c) = stats.refusals.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            if *warn {
                warn!(
                    what = what.as_str(),
                    ?assoc,
                    ?from,
                    server_id = format_args!("{server_id:#010x}"),
                    message,
                    suppressed,
                    "refused (not allowed; see SECURITY.md)"
                );
            } else {
                debug!(what = what.as_str(), ?assoc, ?from, message, "refused");
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
