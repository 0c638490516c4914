//! The pool user API (RFC 5352 §3; RFC 5351 §2.3): resolve pool handles, select
//! PEs by the pool's policy from the PU cache, report unreachable PEs.
//!
//! [`core::PuCore`] is the sans-I/O logic; [`PoolUser`] is a cloneable handle to the tokio
//! task that drives it. The [session layer](crate::session) builds on it.
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

pub mod core;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

pub use self::core::{PuConfig, PuCore, PuEvent, PuStats, RequestId, ResolveError};
use crate::registrar_client::driver::{Net, NetEvent};
use crate::transport::{defaults, TransportError, TransportKind};
use crate::wire::{PeIdentifier, PoolElement, PoolHandle};

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
}

impl PoolUserConfig {
    /// TCP towards registrars, no announce listener.
    pub fn tcp() -> Self {
        PoolUserConfig {
            pu: PuConfig::default(),
            registrar_transport: TransportKind::Tcp,
            announce: None,
            seed: None,
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
}

enum Cmd {
    Resolve(
        PoolHandle,
        bool,
        oneshot::Sender<Result<Vec<PoolElement>, ResolveError>>,
    ),
    Select(
        PoolHandle,
        oneshot::Sender<Result<PoolElement, ResolveError>>,
    ),
    Unreachable(PoolHandle, PeIdentifier),
    Forget(PoolHandle, PeIdentifier),
    Stats(oneshot::Sender<PuStats>),
}

/// A cloneable handle to a running pool user.
#[derive(Clone)]
pub struct PoolUser {
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl PoolUser {
    /// Starts the pool user task (the first request triggers the registrar hunt).
    pub async fn start(cfg: PoolUserConfig) -> Result<PoolUser, PuError> {
        let mut net = Net::new(cfg.registrar_transport);
        let mut pu = cfg.pu.clone();
        pu.link.protocol = net.protocol();
        if let Some(a) = cfg.announce {
            net.listen_announces(a).await?;
        }
        let core = PuCore::new(pu, cfg.seed.unwrap_or_else(rand::random));
        let (cmd, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(core, net, rx));
        Ok(PoolUser { cmd })
    }

    /// The PEs of a pool (RFC 5352 §3): from the cache if fresh, else by
    /// HANDLE_RESOLUTION.
    pub async fn resolve(
        &self,
        handle: impl Into<PoolHandle>,
    ) -> Result<Vec<PoolElement>, PuError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Resolve(handle.into(), false, tx))
            .map_err(|_| PuError::Stopped)?;
        Ok(rx.await.map_err(|_| PuError::Stopped)??)
    }

    /// Like [`resolve`](Self::resolve) but always asks a registrar (refreshing the cache).
    pub async fn refresh(
        &self,
        handle: impl Into<PoolHandle>,
    ) -> Result<Vec<PoolElement>, PuError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Resolve(handle.into(), true, tx))
            .map_err(|_| PuError::Stopped)?;
        Ok(rx.await.map_err(|_| PuError::Stopped)??)
    }

    /// One PE chosen by the pool's policy from the cache (resolving first if needed).
    pub async fn select(&self, handle: impl Into<PoolHandle>) -> Result<PoolElement, PuError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Select(handle.into(), tx))
            .map_err(|_| PuError::Stopped)?;
        Ok(rx.await.map_err(|_| PuError::Stopped)??)
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
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Stats(tx))
            .map_err(|_| PuError::Stopped)?;
        rx.await.map_err(|_| PuError::Stopped)
    }
}

enum Waiter {
    Resolve(oneshot::Sender<Result<Vec<PoolElement>, ResolveError>>),
    Select(oneshot::Sender<Result<PoolElement, ResolveError>>),
}

async fn run(mut core: PuCore, mut net: Net, mut cmd_rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut waiters: HashMap<RequestId, Waiter> = HashMap::new();
    let mut cmd_open = true;
    loop {
        while let Some(a) = core.poll_action() {
            net.execute(a).await;
        }
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
        let deadline = core.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = cmd_rx.recv(), if cmd_open => {
                let now = Instant::now();
                match cmd {
                    Some(Cmd::Resolve(h, force, tx)) => {
                        let r = if force { core.refresh(now, &h) } else { core.resolve(now, &h) };
                        waiters.insert(r, Waiter::Resolve(tx));
                    }
                    Some(Cmd::Select(h, tx)) => match core.select(now, &h) {
                        Some(pe) => {
                            let _ = tx.send(Ok(pe));
                        }
                        None => {
                            let r = core.resolve(now, &h);
                            waiters.insert(r, Waiter::Select(tx));
                        }
                    },
                    Some(Cmd::Unreachable(h, id)) => core.report_unreachable(now, &h, id),
                    Some(Cmd::Forget(h, id)) => core.forget(&h, id),
                    Some(Cmd::Stats(tx)) => {
                        let _ = tx.send(core.stats);
                    }
                    None => cmd_open = false,
                }
            }
            ev = net.next() => {
                let now = Instant::now();
                match ev {
                    Some(NetEvent::Connected { conn, assoc }) => {
                        net.attach(conn, assoc);
                        core.on_connected(now, conn);
                    }
                    Some(NetEvent::ConnectFailed { conn, error }) => {
                        debug!(%error, "registrar connect failed");
                        core.on_connect_failed(now, conn);
                    }
                    Some(NetEvent::Accepted { .. }) => {}
                    Some(NetEvent::Message { conn, message }) => core.on_message(now, conn, message),
                    Some(NetEvent::Lost { conn }) => core.on_lost(now, conn),
                    Some(NetEvent::Announce { from, message }) => core.on_announce(now, from, &message),
                    None => {
                        warn!("network event channel closed");
                        return;
                    }
                }
            }
            _ = sleep => core.handle_timeout(Instant::now()),
        }
    }
}
