//! The pool user API (RFC 5352 §3; RFC 5351 §2.3): resolve pool handles, select
//! PEs by the pool's policy from the PU cache, report unreachable PEs.
//!
//! [`core::PuCore`] is the sans-I/O logic; [`PoolUser`] is a cloneable handle to the tokio
//! task that drives it. The [session layer](crate::session) builds on it.
//! [`PoolUser::builder`] ([`PoolUserBuilder`]) starts one, or a session, in a few lines.
//! Every call is bounded by [`PoolUserConfig::call_timeout`] (10 s) and a failure names
//! the registrar's last error ([`PuError::Timeout`]).
//!
//! ```no_run
//! # async fn g() -> Result<(), Box<dyn std::error::Error>> {
//! use asap::pu::PoolUser;
//! let pu = PoolUser::builder("EchoPool").registrar("127.0.0.1:3863").start().await?;
//! let pes = pu.resolve("EchoPool").await?;
//! # let _ = pes; Ok(()) }
//! ```
//!
//! The configuration underneath:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use asap::pu::{PoolUser, PoolUserConfig};
//! let mut cfg = PoolUserConfig::tcp();
//! cfg.pu.link.static_registrars = vec![vec!["127.0.0.1:3863".parse()?]];
//! let pu = PoolUser::start(cfg).await?;
//! let pes = pu.resolve("EchoPool").await?;      // HANDLE_RESOLUTION (or the cache)
//! let pe = pu.select("EchoPool").await?;        // one PE by the pool's policy
//! pu.report_unreachable("EchoPool", pe.id);     // ENDPOINT_UNREACHABLE
//! # let _ = pes; Ok(()) }
//! ```

mod builder;
pub mod core;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

pub use self::builder::PoolUserBuilder;
pub use self::core::{PuConfig, PuCore, PuEvent, PuStats, RequestId, ResolveError};
use crate::registrar_client::driver::{ask, Net, NetEvent, Wake};
use crate::registrar_client::{LastFailure, RegistrarFailure};
use crate::transport::{defaults, TransportError, TransportKind};
use crate::wire::{PeIdentifier, PoolElementInfo, PoolHandle};

/// Driver configuration of a pool user.
#[derive(Debug, Clone)]
pub struct PoolUserConfig {
    /// Protocol configuration.
    pub pu: PuConfig,
    /// Transport towards registrars.
    pub registrar_transport: TransportKind,
    /// Where to listen for ASAP_SERVER_ANNOUNCE (`None` = static registrars only).
    pub announce: Option<SocketAddr>,
    /// Seed of the selection RNG (`None`: from the OS).
    pub seed: Option<u64>,
    /// Bound of every [`PoolUser::resolve`], [`refresh`](PoolUser::refresh) and
    /// [`select`](PoolUser::select) call (default [`DEFAULT_CALL_TIMEOUT`]); past it the
    /// call fails with [`PuError::Timeout`] naming the last registrar failure.
    pub call_timeout: Duration,
    /// TLS towards registrars (`asap::transport::tls`; TCP, kernel SCTP and `sctp-udp`,
    /// SECURITY.md "TLS over SCTP"): the registrar's certificate must chain to the
    /// context's CA; a context with a certificate presents it as client certificate.
    /// `None` (default): plaintext.
    pub registrar_tls: Option<crate::transport::tls::TlsContext>,
}

/// Default bound of a pool user call: 10 s (the protocol's own request deadline,
/// [`PuConfig::request_deadline`], is 120 s: T1 15 s with retransmissions and the hunt).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl PoolUserConfig {
    /// TCP towards registrars, no announce listener.
    pub fn tcp() -> Self {
        PoolUserConfig {
            pu: PuConfig::default(),
            registrar_transport: TransportKind::Tcp,
            announce: None,
            seed: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            registrar_tls: None,
        }
    }

    /// Kernel SCTP towards registrars and announces on 239.0.0.50:3863.
    pub fn sctp() -> Self {
        PoolUserConfig {
            registrar_transport: TransportKind::Sctp,
            announce: Some(defaults::ASAP_ANNOUNCE_ADDR),
            ..Self::tcp()
        }
    }
}

/// Errors of the pool user API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PuError {
    /// A socket could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Resolution failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The pool user task is gone.
    #[error("the pool user has stopped")]
    Stopped,
    /// No answer within the call timeout ([`PoolUserConfig::call_timeout`]) or the
    /// protocol's request deadline; `last` is the last registrar failure seen, e.g.
    /// "registrar 127.0.0.1:3863: connection refused".
    #[error(
        "pool {handle}: no answer from a registrar within {after:?}{}",
        LastFailure(last)
    )]
    Timeout {
        /// The pool asked for.
        handle: PoolHandle,
        /// The bound that expired.
        after: Duration,
        /// The last registrar failure, if any.
        last: Option<RegistrarFailure>,
    },
    /// A registrar address given to the [builder](PoolUser::builder) could not be
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
}

enum Cmd {
    Resolve(
        PoolHandle,
        bool,
        oneshot::Sender<Result<Vec<PoolElementInfo>, ResolveError>>,
    ),
    Select(
        PoolHandle,
        oneshot::Sender<Result<PoolElementInfo, ResolveError>>,
    ),
    Unreachable(PoolHandle, PeIdentifier),
    Forget(PoolHandle, PeIdentifier),
    Stats(oneshot::Sender<PuStats>),
}

/// A cloneable handle to a running pool user.
#[derive(Clone)]
pub struct PoolUser {
    cmd: mpsc::UnboundedSender<Cmd>,
    last_failure: watch::Receiver<Option<RegistrarFailure>>,
    call_timeout: Duration,
    request_deadline: Duration,
    registrar_transport: TransportKind,
}

impl PoolUser {
    /// Starts the pool user task (the first request triggers the registrar hunt).
    pub async fn start(cfg: PoolUserConfig) -> Result<PoolUser, PuError> {
        let mut net = Net::new(cfg.registrar_transport);
        if let Some(tls) = &cfg.registrar_tls {
            net.set_tls(tls.clone());
        }
        let pu = cfg.pu.clone();
        if let Some(a) = cfg.announce {
            net.listen_announces(a).await?;
        }
        let request_deadline = pu.request_deadline;
        let mut core = PuCore::new(pu, cfg.seed.unwrap_or_else(rand::random));
        core.set_link_protocol(net.protocol());
        let (cmd, rx) = mpsc::unbounded_channel();
        let (fail_tx, last_failure) = watch::channel(None);
        tokio::spawn(run(core, net, rx, fail_tx));
        Ok(PoolUser {
            cmd,
            last_failure,
            call_timeout: cfg.call_timeout,
            request_deadline,
            registrar_transport: cfg.registrar_transport,
        })
    }

    /// A builder for a pool user of pool `pool_handle` with sensible defaults (TCP,
    /// [`DEFAULT_CALL_TIMEOUT`]); see [`PoolUserBuilder`].
    pub fn builder(pool_handle: impl Into<PoolHandle>) -> PoolUserBuilder {
        PoolUserBuilder::new(pool_handle.into())
    }

    /// The transport configured for registrar associations
    /// ([`PoolUserConfig::registrar_transport`]); sessions reach SCTP user transports over
    /// `sctp-udp` when it is [`TransportKind::SctpUdp`].
    pub fn registrar_transport(&self) -> TransportKind {
        self.registrar_transport
    }

    /// The last failure to reach or keep a registrar (cleared by a successful answer).
    pub fn last_registrar_failure(&self) -> Option<RegistrarFailure> {
        self.last_failure.borrow().clone()
    }

    /// Sends the command `make` builds for `handle` (with the reply channel) and waits for
    /// the reply at most the call timeout; a timeout (ours or the core's request deadline)
    /// becomes [`PuError::Timeout`] with the last registrar failure.
    async fn call<T>(
        &self,
        handle: impl Into<PoolHandle>,
        make: impl FnOnce(PoolHandle, oneshot::Sender<Result<T, ResolveError>>) -> Cmd,
    ) -> Result<T, PuError> {
        let handle = handle.into();
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(handle.clone(), tx))
            .map_err(|_| PuError::Stopped)?;
        let timeout = |after| PuError::Timeout {
            handle: handle.clone(),
            after,
            last: self.last_registrar_failure(),
        };
        match tokio::time::timeout(self.call_timeout, rx).await {
            Err(_) => Err(timeout(self.call_timeout)),
            Ok(Err(_)) => Err(PuError::Stopped),
            Ok(Ok(Err(ResolveError::Timeout(_)))) => Err(timeout(self.request_deadline)),
            Ok(Ok(r)) => Ok(r?),
        }
    }

    /// The PEs of a pool (RFC 5352 §3): from the cache if fresh, else by
    /// HANDLE_RESOLUTION.
    pub async fn resolve(
        &self,
        handle: impl Into<PoolHandle>,
    ) -> Result<Vec<PoolElementInfo>, PuError> {
        self.call(handle, |h, tx| Cmd::Resolve(h, false, tx)).await
    }

    /// Like [`resolve`](Self::resolve) but always asks a registrar (refreshing the cache).
    pub async fn refresh(
        &self,
        handle: impl Into<PoolHandle>,
    ) -> Result<Vec<PoolElementInfo>, PuError> {
        self.call(handle, |h, tx| Cmd::Resolve(h, true, tx)).await
    }

    /// One PE chosen by the pool's policy from the cache (resolving first if needed).
    pub async fn select(&self, handle: impl Into<PoolHandle>) -> Result<PoolElementInfo, PuError> {
        self.call(handle, Cmd::Select).await
    }

    /// Reports a failed PE (ENDPOINT_UNREACHABLE) and drops it from the cache.
    pub fn report_unreachable(&self, handle: impl Into<PoolHandle>, id: PeIdentifier) {
        let _ = self.cmd.send(Cmd::Unreachable(handle.into(), id));
    }

    /// Drops a PE from the cache without reporting it (e.g. a PE that is alive but refused
    /// service with an ASAP_ERROR); the next resolution may bring it back.
    pub fn forget(&self, handle: impl Into<PoolHandle>, id: PeIdentifier) {
        let _ = self.cmd.send(Cmd::Forget(handle.into(), id));
    }

    /// Protocol counters.
    pub async fn stats(&self) -> Result<PuStats, PuError> {
        ask(&self.cmd, Cmd::Stats).await.ok_or(PuError::Stopped)
    }
}

enum Waiter {
    Resolve(oneshot::Sender<Result<Vec<PoolElementInfo>, ResolveError>>),
    Select(oneshot::Sender<Result<PoolElementInfo, ResolveError>>),
}

async fn run(
    mut core: PuCore,
    mut net: Net,
    mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    fail_tx: watch::Sender<Option<RegistrarFailure>>,
) {
    let mut waiters: HashMap<RequestId, Waiter> = HashMap::new();
    let mut cmd_open = true;
    loop {
        net.flush(&mut core).await;
        while let Some(ev) = core.poll_event() {
            if let PuEvent::Resolved {
                request,
                handle,
                result,
            } = ev
            {
                match waiters.remove(&request) {
                    Some(Waiter::Resolve(tx)) => {
                        let _ = tx.send(result);
                    }
                    Some(Waiter::Select(tx)) => {
                        let r = result.and_then(|_| {
                            core.select(Instant::now(), &handle)
                                .ok_or_else(|| ResolveError::Empty(handle.clone()))
                        });
                        let _ = tx.send(r);
                    }
                    None => {}
                }
            }
        }
        if !cmd_open && waiters.is_empty() {
            debug!("pool user stopped");
            return;
        }
        let commands = cmd_open.then_some(&mut cmd_rx);
        let (now, wake) = net.wait(commands, core.poll_timeout()).await;
        let cmd = match wake {
            Wake::Command(Some(cmd)) => cmd,
            Wake::Command(None) => {
                cmd_open = false;
                continue;
            }
            Wake::Network(Some(ev)) => {
                if let NetEvent::Message { .. } = &ev {
                    fail_tx.send_if_modified(|f| f.take().is_some());
                }
                if let Some(failure) = net.deliver(&mut core, now, ev) {
                    note_failure(&fail_tx, failure);
                }
                continue;
            }
            Wake::Network(None) => {
                warn!("network event channel closed");
                return;
            }
            Wake::Timer => {
                core.handle_timeout(now);
                continue;
            }
        };
        match cmd {
            Cmd::Resolve(h, force, tx) => {
                let r = if force {
                    core.refresh(now, &h)
                } else {
                    core.resolve(now, &h)
                };
                waiters.insert(r, Waiter::Resolve(tx));
            }
            Cmd::Select(h, tx) => match core.select(now, &h) {
                Some(pe) => {
                    let _ = tx.send(Ok(pe));
                }
                None => {
                    let r = core.resolve(now, &h);
                    waiters.insert(r, Waiter::Select(tx));
                }
            },
            Cmd::Unreachable(h, id) => core.report_unreachable(now, &h, id),
            Cmd::Forget(h, id) => core.forget(&h, id),
            Cmd::Stats(tx) => {
                let _ = tx.send(core.stats);
            }
        }
    }
}

/// Records a registrar failure; a WARN names it when it differs from the last one (a
/// registrar that keeps refusing is reported once, then at DEBUG).
fn note_failure(fail_tx: &watch::Sender<Option<RegistrarFailure>>, failure: RegistrarFailure) {
    if fail_tx.borrow().as_ref() == Some(&failure) {
        debug!(%failure, "pool user: registrar failure (again)");
    } else {
        warn!(%failure, "pool user cannot use registrar");
    }
    fail_tx.send_replace(Some(failure));
}
