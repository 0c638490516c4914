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
//! * one **connect task** per ENRP peer address we must reach (`PeerNet::send`) and per
//!   ASAP transport of PEs adopted in a takeover (`PeerNet::adopt`, RFC 5353 §3.6): the new
//!   association gets its reader/writer tasks like an accepted one and is handed to the
//!   core ([`Input::Connected`], then [`Input::Adopted`] for adopted PEs);
//! * the **core task** owns the [`Registrar`]: it takes inputs from the channel, runs timers
//!   at [`Registrar::poll_timeout`], and executes the [`Action`]s (queue to a writer, send a
//!   UDP announce, abort, log). It is the only place where the core is touched, so no locks.
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
use asap::wire::{PeIdentifier, PoolHandle, Protocol, TransportParameter, TransportUse};
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
    /// SCTP, TCP or automatic.
    pub transport: TransportKind,
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

enum WriterCmd {
    Send(Msg),
    Abort,
}

struct Link {
    tx: mpsc::Sender<WriterCmd>,
    reader: JoinHandle<()>,
}

/// Unicast ENRP peer messages go over associations (RFC 5353 §2: SCTP, PPID 12, port
/// 9901), one per peer address, connected on demand; only multicast PRESENCE uses UDP.
struct PeerNet {
    /// ENRP association by peer address (accepted ones by each of their remote
    /// addresses, our connections by the address we connected to).
    by_addr: HashMap<SocketAddr, AssocId>,
    /// Connections in progress: their association ID and the messages waiting for them.
    connecting: HashMap<SocketAddr, (AssocId, Vec<Msg>)>,
    transport: Transport,
    /// Local address our connections are bound to (the ENRP listener's IP, port 0).
    local: Vec<SocketAddr>,
    /// Local addresses of our connections to adopted PEs (the ASAP listener's IPs, port 0).
    asap_local: Vec<SocketAddr>,
    /// Connect timeout towards adopted PEs (at most the keep-alive timeout: a PE not
    /// reached by then is removed by the core anyway).
    adopt_timeout: std::time::Duration,
    max_associations: usize,
    tx: mpsc::Sender<(Input, Option<Link>)>,
    next_id: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
    write_queue: usize,
}

/// The PEs of one takeover that share an ASAP transport (one PE process), collected from
/// the [`Action::Adopt`]s of one batch so that it gets one association.
type AdoptGroups = Vec<(
    TransportKind,
    Vec<SocketAddr>,
    Vec<(PoolHandle, PeIdentifier)>,
)>;

/// Where an adopted PE's ASAP transport is (RSERPOOL-SPEC §4: the registrar records the
/// PE's association address and port; rsplib carries it in HANDLE_UPDATE).
fn adopt_target(t: &TransportParameter) -> Option<(TransportKind, Vec<SocketAddr>)> {
    match t {
        TransportParameter::Sctp {
            port, addresses, ..
        } if !addresses.is_empty() && *port != 0 => Some((
            TransportKind::Sctp,
            addresses
                .iter()
                .map(|a| SocketAddr::new(*a, *port))
                .collect(),
        )),
        TransportParameter::Tcp { port, address, .. } if *port != 0 => {
            Some((TransportKind::Tcp, vec![SocketAddr::new(*address, *port)]))
        }
        _ => None,
    }
}

/// Messages kept for one peer while its association is being set up.
const PEER_CONNECT_QUEUE: usize = 256;
/// Give up connecting to a peer after this long (the core's MAX-TIME-NO-RESPONSE handles
/// the peer itself; the next message tries again).
const PEER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl PeerNet {
    /// A new association is up: remember it for its peer addresses and flush what waited.
    fn connected(
        &mut self,
        assoc: AssocId,
        peer_addrs: &[SocketAddr],
        links: &mut HashMap<AssocId, Link>,
    ) {
        for a in peer_addrs {
            self.by_addr.insert(*a, assoc);
        }
        let waiting: Vec<SocketAddr> = self
            .connecting
            .iter()
            .filter(|(_, (id, _))| *id == assoc)
            .map(|(a, _)| *a)
            .collect();
        for a in waiting {
            if let Some((_, msgs)) = self.connecting.remove(&a) {
                self.by_addr.insert(a, assoc);
                if let Some(l) = links.get(&assoc) {
                    for m in msgs {
                        let _ = l.tx.try_send(WriterCmd::Send(m));
                    }
                }
            }
        }
    }

    /// An association (or a connection attempt) is gone.
    fn gone(&mut self, assoc: AssocId) {
        self.by_addr.retain(|_, a| *a != assoc);
        self.connecting.retain(|_, (a, _)| *a != assoc);
    }

    /// Sends `msg` to the peer at `to` on its association, connecting first if needed.
    fn send(&mut self, to: SocketAddr, msg: Msg, links: &HashMap<AssocId, Link>) {
        if let Some(l) = self.by_addr.get(&to).and_then(|a| links.get(a)) {
            if l.tx.try_send(WriterCmd::Send(msg)).is_err() {
                debug!(%to, "ENRP peer association queue full: message dropped");
            }
            return;
        }
        if let Some((_, q)) = self.connecting.get_mut(&to) {
            if q.len() < PEER_CONNECT_QUEUE {
                q.push(msg);
            }
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.connecting.insert(to, (id, vec![msg]));
        let transport = self.transport.clone();
        let local = self.local.clone();
        let tx = self.tx.clone();
        let open = self.open.clone();
        let write_queue = self.write_queue;
        tokio::spawn(async move {
            let peers = [to];
            let r = tokio::time::timeout(PEER_CONNECT_TIMEOUT, transport.connect(&peers, &local));
            match r.await {
                Ok(Ok(assoc)) => {
                    let kind = assoc.kind();
                    let mut addrs = vec![to];
                    addrs.extend(
                        assoc
                            .peer_addrs()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|a| *a != to),
                    );
                    debug!(assoc = id, %to, "ENRP peer association up");
                    open.fetch_add(1, Ordering::Relaxed);
                    let started = start_link(
                        assoc,
                        id,
                        Protocol::Enrp,
                        kind,
                        addrs,
                        &tx,
                        write_queue,
                        None,
                    );
                    if !started.await {
                        open.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Ok(Err(e)) => {
                    debug!(%to, error = %e, "ENRP peer connect failed");
                    let _ = tx.send((Input::Disconnected { assoc: id }, None)).await;
                }
                Err(_) => {
                    debug!(%to, "ENRP peer connect timed out");
                    let _ = tx.send((Input::Disconnected { assoc: id }, None)).await;
                }
            }
        });
    }
}

impl PeerNet {
    /// Takeover (RFC 5353 §3.6): connects to the ASAP transport of adopted PEs and hands
    /// the association to the core ([`Input::Connected`], then [`Input::Adopted`], on which
    /// the core sends the H-flag keep-alive). A failed connection is only logged: the core
    /// removes the PEs when the keep-alive timeout passes without an answer.
    fn adopt(
        &self,
        kind: TransportKind,
        addrs: Vec<SocketAddr>,
        pes: Vec<(PoolHandle, PeIdentifier)>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let local: Vec<SocketAddr> = self
            .asap_local
            .iter()
            .filter(|l| {
                kind == TransportKind::Sctp || addrs.iter().any(|a| a.is_ipv4() == l.is_ipv4())
            })
            .copied()
            .collect();
        let tx = self.tx.clone();
        let open = self.open.clone();
        let (max, write_queue, timeout) =
            (self.max_associations, self.write_queue, self.adopt_timeout);
        tokio::spawn(async move {
            let mut cfg = TransportConfig::asap(kind);
            cfg.connect_timeout = timeout;
            let t = Transport::new(cfg);
            let assoc = match tokio::time::timeout(timeout, t.connect(&addrs, &local)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    info!(to = ?addrs, pes = pes.len(), error = %e, "adopted PE unreachable");
                    return;
                }
                Err(_) => {
                    info!(to = ?addrs, pes = pes.len(), "adopted PE: connect timed out");
                    return;
                }
            };
            if open.load(Ordering::Relaxed) >= max {
                warn!(to = ?addrs, max, "too many associations: adoption association dropped");
                assoc.abort();
                return;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let peer_addrs = assoc.peer_addrs().unwrap_or_else(|_| addrs.clone());
            debug!(assoc = id, to = ?addrs, pes = pes.len(), "association to adopted PE up");
            let then = Input::Adopted { assoc: id, pes };
            let started = start_link(
                assoc,
                id,
                Protocol::Asap,
                kind,
                peer_addrs,
                &tx,
                write_queue,
                Some(then),
            );
            if !started.await {
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
}

/// A bound, not yet running registrar.
pub struct Server {
    registrar: Registrar,
    asap: Listener,
    enrp: Option<Listener>,
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

impl Server {
    /// Binds the listeners and the announce socket, and fills the core's announce and
    /// Server Information transports from the bound addresses.
    pub async fn bind(mut core: CoreConfig, config: DriverConfig) -> Result<Server, DriverError> {
        let mut asap_cfg = TransportConfig::asap(config.transport);
        asap_cfg.tcp_max_partial_bytes = Some(config.max_partial_bytes);
        let stats = Arc::new(Stats::default());
        let with_tls = |t: Transport, tls: &Option<TlsContext>| match tls {
            Some(ctx) => t.with_tls(ctx.clone().with_refusal_counter(stats.tls_refused.clone())),
            None => t,
        };
        let asap_t = with_tls(Transport::new(asap_cfg), &config.asap_tls);
        let kind = asap_t.kind();
        let asap = asap_t
            .listen(&config.asap)
            .await
            .map_err(transport_err("ASAP listener"))?;
        let enrp = if config.enrp.is_empty() {
            None
        } else {
            let mut enrp_cfg = TransportConfig::enrp(config.transport);
            enrp_cfg.tcp_max_partial_bytes = Some(config.max_partial_bytes);
            let t = with_tls(Transport::new(enrp_cfg), &config.enrp_tls);
            Some(
                t.listen(&config.enrp)
                    .await
                    .map_err(transport_err("ENRP listener"))?,
            )
        };
        let asap_addrs = asap.local_addrs().map_err(transport_err("ASAP listener"))?;
        core.asap_transports = announce_transports(kind, &asap_addrs);
        if let Some(l) = &enrp {
            let addrs = l.local_addrs().map_err(transport_err("ENRP listener"))?;
            core.enrp_transport = announce_transports(TransportKind::Sctp, &addrs)
                .into_iter()
                .next();
        }
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
        info!(
            server_id = format_args!("{:#010x}", core.server_id),
            transport = kind.as_str(),
            asap = ?asap_addrs,
            enrp = ?enrp.as_ref().and_then(|l| l.local_addrs().ok()),
            announce = ?core.asap_announce_targets,
            peers = ?core.peers,
            "registrar listening"
        );
        let write_queue = WRITE_QUEUE_BASE
            .saturating_add(core.limits.max_pes_per_connection.saturating_mul(2))
            .min(1 << 20);
        Ok(Server {
            write_queue,
            registrar: Registrar::new(core, Instant::now()),
            asap,
            enrp,
            udp,
            peer_udp,
            config,
            stats,
        })
    }

    /// Bound ASAP listener addresses.
    pub fn asap_addrs(&self) -> Vec<SocketAddr> {
        self.asap.local_addrs().unwrap_or_default()
    }

    /// Bound ENRP listener addresses (empty without ENRP listener).
    pub fn enrp_addrs(&self) -> Vec<SocketAddr> {
        self.enrp
            .as_ref()
            .and_then(|l| l.local_addrs().ok())
            .unwrap_or_default()
    }

    /// Shared statistics (for the metrics endpoint).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            mut registrar,
            asap,
            enrp,
            udp,
            peer_udp,
            config,
            stats,
            write_queue,
        } = self;
        let (tx, mut rx) = mpsc::channel::<(Input, Option<Link>)>(CORE_QUEUE);
        let next_id = Arc::new(AtomicU64::new(1));
        let open = Arc::new(AtomicUsize::new(0));
        let mut peer_net = PeerNet {
            by_addr: HashMap::new(),
            connecting: HashMap::new(),
            transport: match &config.enrp_tls {
                Some(ctx) => {
                    Transport::new(TransportConfig::enrp(config.transport)).with_tls(ctx.clone())
                }
                None => Transport::new(TransportConfig::enrp(config.transport)),
            },
            local: config
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
            adopt_timeout: registrar
                .config()
                .keep_alive_timeout
                .min(PEER_CONNECT_TIMEOUT)
                .max(std::time::Duration::from_millis(100)),
            max_associations: config.max_associations,
            tx: tx.clone(),
            next_id: next_id.clone(),
            open: open.clone(),
            write_queue,
        };
        let mut accepts = vec![tokio::spawn(accept_loop(
            asap,
            Protocol::Asap,
            tx.clone(),
            next_id.clone(),
            open.clone(),
            config.max_associations,
            write_queue,
        ))];
        if let Some(l) = enrp {
            accepts.push(tokio::spawn(accept_loop(
                l,
                Protocol::Enrp,
                tx.clone(),
                next_id.clone(),
                open.clone(),
                config.max_associations,
                write_queue,
            )));
        }
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
                    Some((input, link)) => {
                        match &input {
                            Input::Connected { assoc, protocol, peer_addrs, .. } => {
                                if let Some(l) = link { links.insert(*assoc, l); }
                                if *protocol == Protocol::Enrp {
                                    peer_net.connected(*assoc, peer_addrs, &mut links);
                                }
                            }
                            Input::Disconnected { assoc } => {
                                peer_net.gone(*assoc);
                                if links.remove(assoc).is_some() {
                                    open.fetch_sub(1, Ordering::Relaxed);
                                }
                            }
                            _ => {}
                        }
                        registrar.handle(Instant::now(), input)
                    }
                    None => break,
                },
            };
            let mut aborted = execute(
                actions,
                &mut links,
                udp.as_ref(),
                peer_udp.as_deref(),
                &mut peer_net,
                &stats,
            )
            .await;
            // Aborted associations are gone now: tell the core (their readers were stopped).
            while let Some(assoc) = aborted.pop() {
                peer_net.gone(assoc);
                if links.remove(&assoc).is_some() {
                    open.fetch_sub(1, Ordering::Relaxed);
                }
                let actions = registrar.handle(Instant::now(), Input::Disconnected { assoc });
                aborted.extend(
                    execute(
                        actions,
                        &mut links,
                        udp.as_ref(),
                        peer_udp.as_deref(),
                        &mut peer_net,
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
        if !start_link(
            assoc,
            id,
            protocol,
            transport,
            peer_addrs,
            &tx,
            write_queue,
            None,
        )
        .await
        {
            return;
        }
    }
}

/// Spawns the reader and writer tasks of a new association and hands it to the core task
/// ([`Input::Connected`] with its [`Link`], then `then` if given, before anything read on
/// it). False when the core task is gone.
#[allow(clippy::too_many_arguments)]
async fn start_link(
    assoc: asap::transport::Association,
    id: AssocId,
    protocol: Protocol,
    transport: TransportKind,
    peer_addrs: Vec<SocketAddr>,
    tx: &mpsc::Sender<(Input, Option<Link>)>,
    write_queue: usize,
    then: Option<Input>,
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
        if let Some(then) = then {
            if tx.send((then, None)).await.is_err() {
                return false;
            }
        }
        let _ = start_tx.send(());
        true
    }
}

async fn writer_task(mut w: AssocWriter, mut rx: mpsc::Receiver<WriterCmd>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriterCmd::Send(m) => {
                if let Err(e) = w.send(&m).await {
                    debug!(error = %e, "send failed");
                }
            }
            WriterCmd::Abort => {
                w.abort();
                return;
            }
        }
    }
    let _ = w.close().await;
}

async fn execute(
    actions: Vec<Action>,
    links: &mut HashMap<AssocId, Link>,
    udp: Option<&UdpEndpoint>,
    peer_udp: Option<&UdpEndpoint>,
    peer_net: &mut PeerNet,
    stats: &Stats,
) -> Vec<AssocId> {
    let mut aborted = Vec::new();
    let mut adopt: AdoptGroups = Vec::new();
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
                    abort(links, assoc);
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
                abort(links, assoc);
                aborted.push(assoc);
            }
            Action::Replicate(r) => {
                // Peering hook: a single registrar has nobody to tell.
                debug!(action = ?r.action, handle = %r.pool_handle, id = r.element.id, "replication (no peers)");
            }
            // ENRP peering (RFC 5353 §2): unicast over an association to the peer (PPID
            // 12), multicast PRESENCE as a UDP datagram.
            Action::PeerSend { to, bytes, .. } if !to.ip().is_multicast() => {
                peer_net.send(to, Msg::new(Protocol::Enrp.ppid(), 0, bytes), links);
            }
            Action::PeerSend { to, bytes, message } => {
                if let Some(u) = peer_udp {
                    if let Err(e) = u.send_to(&bytes, to).await {
                        debug!(%to, message = message.name(), error = %e, "ENRP peer send failed");
                    }
                }
            }
            // Takeover: we have no association to a PE adopted from a dead peer; connect to
            // its ASAP transport (one association per transport, see PeerNet::adopt).
            Action::Adopt {
                pool_handle,
                element,
                ..
            } => match element.asap_transport.as_ref().and_then(adopt_target) {
                Some((kind, addrs)) => {
                    let pe = (pool_handle, element.id);
                    match adopt.iter_mut().find(|g| g.0 == kind && g.1 == addrs) {
                        Some(g) => g.2.push(pe),
                        None => adopt.push((kind, addrs, vec![pe])),
                    }
                }
                None => info!(
                    handle = %pool_handle,
                    id = element.id,
                    "adopted PE without a usable ASAP transport: cannot send the H-flag keep-alive"
                ),
            },
            Action::Event(e) => log_event(&e, stats),
        }
    }
    for (kind, addrs, pes) in adopt {
        peer_net.adopt(kind, addrs, pes);
    }
    aborted
}

/// Aborts an association: the reader task stops (dropping its half of the socket) and the
/// writer sends ABORT / RST. The caller tells the core with a synthesized
/// [`Input::Disconnected`], since the stopped reader cannot.
fn abort(links: &mut HashMap<AssocId, Link>, assoc: AssocId) {
    if let Some(l) = links.get(&assoc) {
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
        | Event::Adopted { .. } => info!(event = ?e, "peering"),
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
