//! [`PoolUserBuilder`]: a pool user, or a session to a pool, in a few lines (issue 18).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{PoolUser, PoolUserConfig, PuError};
use crate::session::{Session, SessionConfig, SessionError};
use crate::transport::{defaults, TransportKind};
use crate::tune::Tunes;
use crate::wire::PoolHandle;

/// Builds a [`PoolUser`] (RFC 5352 §3) and, with [`connect`](Self::connect), a
/// [`Session`] to its pool (RFC 5351 §2.5); made by [`PoolUser::builder`].
///
/// Defaults: TCP towards registrars, no announce listener, every call bounded by
/// [`DEFAULT_CALL_TIMEOUT`](super::DEFAULT_CALL_TIMEOUT), [`SessionConfig::default`].
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use asap::pu::PoolUser;
/// let mut session = PoolUser::builder("UpperPool")
///     .registrar("127.0.0.1:3863")
///     .connect()
///     .await?;
/// let reply = session.request(&b"hello"[..]).await?; // re-sent after a failover
/// assert_eq!(&reply[..], b"HELLO");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PoolUserBuilder {
    handle: PoolHandle,
    cfg: PoolUserConfig,
    bad: Option<PuError>,
    session: SessionConfig,
    tune: Tunes<PoolUserConfig>,
}

impl PoolUserBuilder {
    pub(super) fn new(handle: PoolHandle) -> Self {
        PoolUserBuilder {
            handle,
            cfg: PoolUserConfig::tcp(),
            bad: None,
            session: SessionConfig::default(),
            tune: Tunes::default(),
        }
    }

    /// Adds a registrar (static configuration, RFC 5352 §3): anything [`ToSocketAddrs`]
    /// accepts (`"10.0.0.5:3863"`, `"registrar.example:3863"`, a `SocketAddr`). All
    /// addresses a name resolves to are taken as one (multi-homed) registrar. A name that
    /// does not resolve is reported as [`PuError::BadRegistrar`].
    pub fn registrar(mut self, addr: impl ToSocketAddrs + fmt::Debug) -> Self {
        let bad = |source| PuError::BadRegistrar {
            addr: format!("{addr:?}").trim_matches('"').to_string(),
            source,
        };
        match addr.to_socket_addrs() {
            Ok(a) => {
                let a: Vec<SocketAddr> = a.collect();
                if a.is_empty() {
                    self.bad.get_or_insert(bad(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "resolves to no address",
                    )));
                } else {
                    self.cfg.pu.link.static_registrars.push(a);
                }
            }
            Err(e) => {
                self.bad.get_or_insert(bad(e));
            }
        }
        self
    }

    /// Adds a registrar known by several addresses (SCTP multi-homing).
    pub fn registrar_addrs(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.cfg
            .pu
            .link
            .static_registrars
            .push(addrs.into_iter().collect());
        self
    }

    /// Also finds registrars by their ASAP_SERVER_ANNOUNCEs on 239.0.0.50:3863.
    pub fn announces(self) -> Self {
        self.announce_addr(defaults::ASAP_ANNOUNCE_ADDR)
    }

    /// Finds registrars by ASAP_SERVER_ANNOUNCEs sent to `addr`.
    pub fn announce_addr(mut self, addr: SocketAddr) -> Self {
        self.cfg.announce = Some(addr);
        self
    }

    /// Talks TLS to the registrars ([`PoolUserConfig::registrar_tls`]; any transport).
    pub fn registrar_tls(mut self, ctx: crate::transport::tls::TlsContext) -> Self {
        self.cfg.registrar_tls = Some(ctx);
        self
    }

    /// Transport towards registrars (default TCP).
    pub fn transport(mut self, kind: TransportKind) -> Self {
        self.cfg.registrar_transport = kind;
        self
    }

    /// Bound of each resolution (default [`DEFAULT_CALL_TIMEOUT`](super::DEFAULT_CALL_TIMEOUT)).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.cfg.call_timeout = d;
        self
    }

    /// The session configuration used by [`connect`](Self::connect).
    pub fn session_config(mut self, cfg: SessionConfig) -> Self {
        self.session = cfg;
        self
    }

    /// Adjusts anything else of the pool user configuration (timers, seed, ...).
    pub fn configure(mut self, f: impl FnOnce(&mut PoolUserConfig) + Send + 'static) -> Self {
        self.tune.push(f);
        self
    }

    /// Starts the pool user (its task hunts for a registrar on the first request).
    pub async fn start(self) -> Result<PoolUser, PuError> {
        Ok(self.start_with_handle().await?.0)
    }

    async fn start_with_handle(mut self) -> Result<(PoolUser, PoolHandle, SessionConfig), PuError> {
        if let Some(e) = self.bad.take() {
            return Err(e);
        }
        if self.cfg.pu.link.static_registrars.is_empty() && self.cfg.announce.is_none() {
            return Err(PuError::NoRegistrar);
        }
        self.tune.apply(&mut self.cfg);
        let pu = PoolUser::start(self.cfg).await?;
        Ok((pu, self.handle, self.session))
    }

    /// Starts a pool user and opens a session to the pool (resolve, select by the pool's
    /// policy, connect; each bounded).
    pub async fn connect(self) -> Result<Session, SessionError> {
        let (pu, handle, cfg) = self.start_with_handle().await?;
        Session::connect(&pu, handle, cfg).await
    }
}

impl fmt::Debug for PoolUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolUser")
            .field("call_timeout", &self.call_timeout)
            .field("last_failure", &*self.last_failure.borrow())
            .finish_non_exhaustive()
    }
}
