//! The pool element API (RFC 5352 §3; RFC 5351 §2.2): register a server in a pool, keep
//! the registration alive, update its policy values, deregister on shutdown.
//!
//! [`core::PeCore`] is the sans-I/O protocol logic (deterministic, virtual clock in the
//! tests); [`PoolElement`] is its thin tokio driver: one task owning the core, the registrar
//! associations and the optional announce listener.
//!
//! Most servers want [`PoolElement::builder`] ([`PoolElementBuilder`]): it binds the user
//! transport, registers, waits (bounded), and [`serve`](PoolElementBuilder::serve)s one task
//! per session with graceful shutdown (see the [crate page](crate) for a complete PE).
//! [`PoolElementBuilder::start`] gives the [`PoolElement`] and the
//! [`SessionListener`](crate::session::SessionListener) to drive yourself.
//!
//! The lower-level configuration, for full control:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use asap::pe::{PeConfig, PoolElement, PoolElementConfig};
//! use asap::wire::{Policy, TransportParameter, TransportUse};
//! let user = TransportParameter::Tcp {
//!     port: 7000, transport_use: TransportUse::DataPlusControl,
//!     address: "127.0.0.1".parse()?,
//! };
//! let mut cfg = PeConfig::new("EchoPool", user, Policy::LeastUsed { load: 0 });
//! cfg.link.static_registrars = vec![vec!["127.0.0.1:3863".parse()?]];
//! let mut pe = PoolElement::register(PoolElementConfig::tcp(cfg)).await?;
//! pe.wait_registered().await?;
//! pe.set_load(asap::load::Load::percent(25.0)).await?; // re-registers at once
//! pe.deregister().await?;                // graceful DEREGISTRATION
//! # Ok(()) }
//! ```

mod builder;
pub mod core;
pub mod multi;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

pub use self::builder::{PoolElementBuilder, Serve, DEFAULT_DRAIN_TIMEOUT};
pub use self::core::{PeConfig, PeCore, PeEvent, RegistrationRejected};
pub use self::multi::{MultiConfig, MultiEvent, MultiPeCore, RegistrationSpec};
use crate::registrar_client::driver::{ask, Net, NetEvent, Wake};
use crate::registrar_client::{LastFailure, RegistrarFailure};
use crate::transport::{defaults, TransportError, TransportKind};
use crate::wire::{Fraction, PeIdentifier, Policy, ServerId};

/// Driver configuration: the protocol configuration plus the sockets to use.
#[derive(Debug, Clone)]
pub struct PoolElementConfig {
    /// Registration parameters and timers.
    pub pe: PeConfig,
    /// Transport towards registrars (SCTP per RFC 5352; TCP or Auto possible).
    pub registrar_transport: TransportKind,
    /// Where to listen for ASAP_SERVER_ANNOUNCE (e.g. [`defaults::ASAP_ANNOUNCE_ADDR`]);
    /// `None` = static registrars only.
    pub announce: Option<SocketAddr>,
    /// Additional addresses on which registrars may open associations to this PE
    /// (ENDPOINT_KEEP_ALIVE with the H flag after a takeover); `None` = none besides the
    /// shared port of [`adoptable`](Self::adoptable).
    pub accept_registrars: Option<Vec<SocketAddr>>,
    /// Be reachable where registrars record this PE (RFC 5353 §3.6, on by default): every
    /// registrar association is opened from one local port on which the PE also listens
    /// (`SO_REUSEPORT`, Linux; rsplib uses one one-to-many SCTP socket), so the registrar
    /// that takes over from a dead home connects to the address and port the home saw,
    /// sends ENDPOINT_KEEP_ALIVE with the H flag and becomes the new home (the PE answers
    /// with the ACK and re-registers there). Bound to
    /// [`registrar_local`](Self::registrar_local) (or the wildcard address of the
    /// registrars' family). Off: the registrar association uses an ephemeral port, and a
    /// registrar that takes the PE over cannot reach it (the PE is then removed after the
    /// keep-alive timeout and registers again once its hunt finds a registrar).
    pub adoptable: bool,
    /// Local addresses (port 0) for the registrar association; empty = kernel's choice.
    /// rsplib registrars accept only user transport addresses that are addresses of the
    /// ASAP association too, so bind it to the addresses you register.
    pub registrar_local: Vec<SocketAddr>,
    /// Seed of the PE identifier generator (`None`: from the OS).
    pub seed: Option<u64>,
    /// How long [`PoolElement::wait_registered`] waits (default
    /// [`DEFAULT_REGISTER_WAIT`]); the PE keeps hunting and registering after that.
    pub register_wait: Duration,
    /// TLS towards registrars (any transport; `asap::transport::tls`): the registrar's
    /// certificate must chain to the context's CA, and the context's certificate, if it has
    /// one, is presented as client certificate, e.g. for a pool whose registrations need a
    /// credential (enrp-server `[[pool_auth]]`). `None` (default): plaintext.
    pub registrar_tls: Option<crate::transport::tls::TlsContext>,
    /// The pool's pre-shared key: every REGISTRATION carries a Registration Authenticator
    /// made with it ([`crate::reg_auth`]; enrp-server `[[pool_auth]] psk`). `None`
    /// (default): none.
    pub registration_key: Option<crate::reg_auth::RegistrationKey>,
}

/// Default bound of [`PoolElement::wait_registered`]: 10 s, enough for a registrar hunt
/// round and a registration (T2 is 30 s only for a registrar that accepted the association
/// and stays silent).
pub const DEFAULT_REGISTER_WAIT: Duration = Duration::from_secs(10);

impl PoolElementConfig {
    /// TCP towards registrars, no announce listener.
    pub fn tcp(pe: PeConfig) -> Self {
        PoolElementConfig {
            pe,
            registrar_transport: TransportKind::Tcp,
            announce: None,
            accept_registrars: None,
            adoptable: true,
            registrar_local: Vec::new(),
            seed: None,
            register_wait: DEFAULT_REGISTER_WAIT,
            registrar_tls: None,
            registration_key: None,
        }
    }

    /// Kernel SCTP towards registrars and announces heard on 239.0.0.50:3863.
    pub fn sctp(pe: PeConfig) -> Self {
        PoolElementConfig {
            registrar_transport: TransportKind::Sctp,
            announce: Some(defaults::ASAP_ANNOUNCE_ADDR),
            ..Self::tcp(pe)
        }
    }
}

/// Errors of the pool element API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeError {
    /// A socket could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The registrar refused the registration.
    #[error(transparent)]
    Rejected(#[from] RegistrationRejected),
    /// The PE task is gone (deregistered or panicked).
    #[error("the pool element has stopped")]
    Stopped,
    /// No registration was confirmed within [`PoolElementConfig::register_wait`]; `last`
    /// is the last registrar failure seen (e.g. "registrar 127.0.0.1:3863: connection
    /// refused"). The PE keeps hunting.
    #[error("not registered within {after:?}{}", LastFailure(last))]
    NotRegistered {
        /// The bound that expired.
        after: Duration,
        /// The last registrar failure, if any.
        last: Option<RegistrarFailure>,
    },
    /// A registrar address given to the [builder](PoolElement::builder) could not be
    /// resolved.
    #[error("registrar address {addr}: {source}")]
    BadRegistrar {
        /// The address as given.
        addr: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The builder was given neither a registrar nor an announce address.
    #[error("no registrar: give .registrar(addr) or .announces(..)")]
    NoRegistrar,
    /// The user transport could not be set up by the [builder](PoolElement::builder)
    /// (e.g. a reserved data PPID).
    #[error(transparent)]
    Session(Box<crate::session::SessionError>),
}

/// A snapshot of the PE's registration state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeStatus {
    /// The PE identifier.
    pub identifier: PeIdentifier,
    /// True while registered at the current registrar.
    pub registered: bool,
    /// Home registrar's Server Identifier, once known.
    pub home: Option<ServerId>,
    /// The connected registrar's addresses.
    pub registrar: Option<Vec<SocketAddr>>,
    /// Registrations accepted so far (first + re-registrations).
    pub registrations: u64,
    /// Keep-alives answered so far.
    pub keep_alives: u64,
    /// Last rejection, if the last registration attempt was refused.
    pub rejected: Option<RegistrationRejected>,
    /// True once stopped.
    pub stopped: bool,
    /// The last failure to reach or keep a registrar (cleared by a registration).
    pub last_failure: Option<RegistrarFailure>,
}

enum Cmd {
    SetPolicy(Policy),
    Deregister(oneshot::Sender<bool>),
    Abort,
}

/// A registered pool element (tokio driver around [`PeCore`]).
///
/// **Events are queued without bound; read them.** Every registration, re-registration
/// (every T4, and at once after each load or policy change), keep-alive answered and home
/// change is queued for [`next_event`](Self::next_event) until read, so a long-lived PE
/// that never calls it grows that queue for as long as it runs. Read the events in a task
/// of their own, let [`PoolElementBuilder::serve`] do it (it logs them and hands them to
/// [`PoolElementBuilder::on_event`]); [`status`](Self::status) gives the current state
/// without reading events, but does not empty the queue. The queue is
/// unbounded on purpose: a bounded one would have to drop events (keep-alives, home
/// changes) or stall the protocol task that answers the registrar's keep-alives.
///
/// **Dropping the `PoolElement` deregisters it** (RFC 5352 §3 DEREGISTRATION,
/// asap/wire/INTEROP.md §5.1; best effort, in the background); [`deregister`](Self::deregister)
/// does the same and waits for the registrar's answer.
pub struct PoolElement {
    cmd: mpsc::UnboundedSender<Cmd>,
    events: mpsc::UnboundedReceiver<PeEvent>,
    status: watch::Receiver<PeStatus>,
    policy: Policy,
    accept_addrs: Vec<SocketAddr>,
    register_wait: Duration,
}

impl PoolElement {
    /// A builder for a pool element of pool `pool_handle` with sensible defaults (TCP,
    /// Least Used, load 0, listening on the wildcard address): see [`PoolElementBuilder`].
    pub fn builder(pool_handle: impl Into<crate::wire::PoolHandle>) -> PoolElementBuilder {
        PoolElementBuilder::new(pool_handle.into())
    }

    /// Starts the PE: hunts for a registrar and registers (RFC 5352 §3). Returns at once;
    /// see [`wait_registered`](Self::wait_registered) and [`next_event`](Self::next_event).
    pub async fn register(cfg: PoolElementConfig) -> Result<PoolElement, PeError> {
        let mut net = Net::new(cfg.registrar_transport);
        net.set_local(cfg.registrar_local.clone());
        if let Some(tls) = &cfg.registrar_tls {
            net.set_tls(tls.clone());
        }
        if let Some(key) = &cfg.registration_key {
            net.set_registration_key(key.clone());
        }
        let pe_cfg = cfg.pe.clone();
        if let Some(a) = cfg.announce {
            net.listen_announces(a).await?;
        }
        let mut accept_addrs = match &cfg.accept_registrars {
            Some(a) => net.listen_registrars(a).await?,
            None => Vec::new(),
        };
        if cfg.adoptable {
            let local = shared_port_addrs(&cfg);
            match net.listen_shared(&local).await {
                Ok(a) => {
                    debug!(addrs = ?a, "registrar associations share a listening port (adoptable)");
                    accept_addrs.extend(a);
                }
                // Not fatal: the PE works, only a registrar taking over cannot reach it.
                Err(e) => {
                    warn!(error = %e, ?local, "no shared registrar port: this PE cannot be adopted after a takeover")
                }
            }
        }
        let seed = cfg.seed.unwrap_or_else(rand::random);
        let policy = pe_cfg.policy.clone();
        let mut core = PeCore::new(pe_cfg, seed);
        core.set_link_protocol(net.protocol());
        let initial = PeStatus {
            identifier: core.identifier(),
            registered: false,
            home: None,
            registrar: None,
            registrations: 0,
            keep_alives: 0,
            rejected: None,
            stopped: false,
            last_failure: None,
        };
        let (status_tx, status) = watch::channel(initial);
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(run(core, net, cmd_rx, ev_tx, status_tx));
        Ok(PoolElement {
            cmd,
            events,
            status,
            policy,
            accept_addrs,
            register_wait: cfg.register_wait,
        })
    }

    /// The PE identifier.
    pub fn identifier(&self) -> PeIdentifier {
        self.status.borrow().identifier
    }

    /// Current registration state.
    pub fn status(&self) -> PeStatus {
        self.status.borrow().clone()
    }

    /// Where registrars may connect to us: the [`PoolElementConfig::accept_registrars`]
    /// addresses, then the shared port of the registrar associations
    /// ([`PoolElementConfig::adoptable`]).
    pub fn registrar_listen_addrs(&self) -> &[SocketAddr] {
        &self.accept_addrs
    }

    /// A watch on the status, for waiting on changes.
    pub fn watch_status(&self) -> watch::Receiver<PeStatus> {
        self.status.clone()
    }

    /// Waits until a registration is confirmed, at most
    /// [`PoolElementConfig::register_wait`]; a rejection is returned as an error, the bound
    /// as [`PeError::NotRegistered`] with the last registrar failure.
    pub async fn wait_registered(&mut self) -> Result<PeStatus, PeError> {
        let mut rx = self.status.clone();
        let waited = tokio::time::timeout(
            self.register_wait,
            rx.wait_for(|s| s.registered || s.rejected.is_some() || s.stopped),
        )
        .await;
        let s = match waited {
            Ok(r) => r.map_err(|_| PeError::Stopped)?.clone(),
            Err(_) => {
                let last = self.status.borrow().last_failure.clone();
                return Err(PeError::NotRegistered {
                    after: self.register_wait,
                    last,
                });
            }
        };
        if let Some(r) = s.rejected.clone() {
            if !s.registered {
                return Err(r.into());
            }
        }
        if s.stopped {
            return Err(PeError::Stopped);
        }
        Ok(s)
    }

    /// Next protocol event (registration, keep-alive, home change, ...). The events queue
    /// up without bound until read (see [`PoolElement`]): a long-lived PE must read them, as
    /// [`PoolElementBuilder::serve`] does. Dropping the `PoolElement` deregisters it.
    pub async fn next_event(&mut self) -> Option<PeEvent> {
        self.events.recv().await
    }

    /// Replaces the policy values and re-registers at once (RFC 5352 §3 re-registration).
    pub async fn set_policy(&mut self, policy: Policy) -> Result<(), PeError> {
        self.policy = policy.clone();
        self.cmd
            .send(Cmd::SetPolicy(policy))
            .map_err(|_| PeError::Stopped)
    }

    /// Sets the load of an adaptive policy (RFC 5356 §5) and re-registers; for
    /// non-adaptive policies nothing changes. Takes a [`Load`](crate::load::Load)
    /// (`Load::percent(25.0)`) or the raw wire fraction.
    pub async fn set_load(&mut self, load: impl Into<crate::load::Load>) -> Result<(), PeError> {
        let p = with_load(&self.policy, load.into().fraction());
        if p == self.policy {
            return Ok(());
        }
        self.set_policy(p).await
    }

    /// Graceful shutdown: DEREGISTRATION and wait for the answer (T3 at most). Returns true
    /// if the registrar confirmed.
    pub async fn deregister(self) -> Result<bool, PeError> {
        ask(&self.cmd, Cmd::Deregister)
            .await
            .ok_or(PeError::Stopped)
    }
}

impl PoolElement {
    /// Stops at once **without** deregistering, closing the registrar association(s) as a
    /// crashed process would; the registrar notices by association loss or keep-alive
    /// timeout. For failure tests and benchmarks.
    pub fn abort(self) {
        let _ = self.cmd.send(Cmd::Abort);
    }
}

/// Local addresses (port 0) of the shared registrar port: the configured
/// [`PoolElementConfig::registrar_local`] addresses, else the wildcard address of the
/// family of the first static registrar (IPv4 without any).
fn shared_port_addrs(cfg: &PoolElementConfig) -> Vec<SocketAddr> {
    if !cfg.registrar_local.is_empty() {
        return cfg
            .registrar_local
            .iter()
            .map(|a| SocketAddr::new(a.ip(), 0))
            .collect();
    }
    let v6 = cfg
        .pe
        .link
        .static_registrars
        .first()
        .and_then(|r| r.first())
        .is_some_and(SocketAddr::is_ipv6);
    let any: std::net::IpAddr = if v6 {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    };
    vec![SocketAddr::new(any, 0)]
}

/// `policy` with its load field replaced (adaptive policies only).
pub fn with_load(policy: &Policy, new: Fraction) -> Policy {
    let mut p = policy.clone();
    if let Some(load) = p.load_mut() {
        *load = new;
    }
    p
}

async fn run(
    mut core: PeCore,
    mut net: Net,
    mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    ev_tx: mpsc::UnboundedSender<PeEvent>,
    status_tx: watch::Sender<PeStatus>,
) {
    core.start(Instant::now());
    let mut dereg_reply: Option<oneshot::Sender<bool>> = None;
    let mut cmd_open = true;
    loop {
        net.flush(&mut core).await;
        while let Some(ev) = core.poll_event() {
            status_tx.send_modify(|s| {
                s.identifier = core.identifier();
                s.home = core.home();
                s.registrar = core.link().current_addrs().map(|a| a.to_vec());
                match &ev {
                    PeEvent::Registered { .. } | PeEvent::Reregistered { .. } => {
                        s.registrations += 1;
                        s.rejected = None;
                        s.last_failure = None;
                    }
                    PeEvent::Rejected(r) => s.rejected = Some(r.clone()),
                    PeEvent::KeepAlive { .. } => s.keep_alives += 1,
                    PeEvent::Deregistered { .. } => s.stopped = true,
                    _ => {}
                }
                s.registered = core.is_registered();
            });
            if let PeEvent::Deregistered { confirmed } = ev {
                if let Some(r) = dereg_reply.take() {
                    let _ = r.send(confirmed);
                }
            }
            let _ = ev_tx.send(ev);
        }
        if core.is_stopped() {
            // Let queued closes run, then end.
            net.flush(&mut core).await;
            debug!("pool element stopped");
            return;
        }
        let commands = cmd_open.then_some(&mut cmd_rx);
        match net.wait(commands, core.poll_timeout()).await {
            (now, Wake::Command(Some(Cmd::SetPolicy(p)))) => core.set_policy(now, p),
            (_, Wake::Command(Some(Cmd::Abort))) => {
                debug!("pool element aborted without deregistration");
                return;
            }
            (now, Wake::Command(Some(Cmd::Deregister(r)))) => {
                dereg_reply = Some(r);
                core.deregister(now);
            }
            (now, Wake::Command(None)) => {
                // The handle was dropped: deregister gracefully.
                cmd_open = false;
                core.deregister(now);
            }
            (now, Wake::Network(Some(ev))) => {
                // A lost association counts only when it was the registrar link.
                let other =
                    matches!(&ev, NetEvent::Lost { conn } if core.link().current() != Some(*conn));
                match net.deliver(&mut core, now, ev) {
                    Some(RegistrarFailure::Lost { .. }) if other => {}
                    Some(failure) => note_failure(&status_tx, failure),
                    None => {}
                }
            }
            (_, Wake::Network(None)) => {
                warn!("network event channel closed");
                return;
            }
            (now, Wake::Timer) => core.handle_timeout(now),
        }
    }
}

/// Records a registrar failure in the status; a WARN names it when it differs from the
/// last one (a registrar that keeps refusing is reported once, then at DEBUG).
fn note_failure(status_tx: &watch::Sender<PeStatus>, failure: RegistrarFailure) {
    let repeated = status_tx.borrow().last_failure.as_ref() == Some(&failure);
    if repeated {
        debug!(%failure, "pool element: registrar failure (again)");
    } else {
        warn!(%failure, "pool element cannot use registrar");
    }
    status_tx.send_modify(|s| s.last_failure = Some(failure));
}
