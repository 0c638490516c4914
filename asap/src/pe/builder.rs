//! [`PoolElementBuilder`]: a pool element in a few lines (issue 18), on top of
//! [`PoolElement`], [`SessionListener`] and [`ServerSession`].
//!
//! The builder binds the user transport, registers it (RFC 5352 §3), waits for the
//! registration (bounded), and [`serve`](PoolElementBuilder::serve) runs one task per
//! session; [`Serve::with_graceful_shutdown`] deregisters (RFC 5352 §3 DEREGISTRATION)
//! and drains the sessions when the signal fires, like hyper's and tonic's servers.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::{PeConfig, PeError, PeEvent, PoolElement, PoolElementConfig};
use crate::load::{policy_with_load, policy_with_priority, policy_with_weight};
use crate::load::{Load, Priority, Weight};
use crate::session::{ServerSession, SessionError, SessionListener};
use crate::transport::{defaults, TransportKind};
use crate::tune::Tunes;
use crate::wire::{PeIdentifier, Policy, PoolHandle};

/// Default bound on draining the sessions after a graceful shutdown: 10 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

type OnEvent = Arc<dyn Fn(&PeEvent) + Send + Sync>;

/// Builds and starts a pool element; made by [`PoolElement::builder`].
///
/// Defaults: TCP (towards registrars and for the user transport), policy Least Used with
/// load 0, the user transport bound to the wildcard address on an ephemeral port and
/// registered with the local address that reaches the first registrar, data PPID 0,
/// registration life 90 s, [`wait_registered`](PoolElement::wait_registered) bounded by
/// [`DEFAULT_REGISTER_WAIT`](super::DEFAULT_REGISTER_WAIT), drain bounded by
/// [`DEFAULT_DRAIN_TIMEOUT`].
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use asap::load::Load;
/// use asap::pe::PoolElement;
/// use asap::wire::Policy;
/// let (pe, listener) = PoolElement::builder("UpperPool")
///     .registrar("127.0.0.1:3863")
///     .policy(Policy::LeastUsed { load: 0 })
///     .load(Load::percent(25.0))
///     .start()
///     .await?;
/// # let _ = (pe, listener); Ok(()) }
/// ```
pub struct PoolElementBuilder {
    handle: PoolHandle,
    registrars: Vec<Vec<SocketAddr>>,
    bad: Option<PeError>,
    announce: Option<SocketAddr>,
    transport: TransportKind,
    listen: Vec<SocketAddr>,
    advertise: Option<IpAddr>,
    policy: Policy,
    load: Option<Load>,
    weight: Option<Weight>,
    priority: Option<Priority>,
    identifier: Option<PeIdentifier>,
    data_ppid: u32,
    register_wait: Option<Duration>,
    drain_timeout: Duration,
    tune: Tunes<PoolElementConfig>,
    on_event: Option<OnEvent>,
}

impl fmt::Debug for PoolElementBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolElementBuilder")
            .field("handle", &self.handle)
            .field("registrars", &self.registrars)
            .field("announce", &self.announce)
            .field("transport", &self.transport)
            .field("listen", &self.listen)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PoolElementBuilder {
    pub(super) fn new(handle: PoolHandle) -> Self {
        PoolElementBuilder {
            handle,
            registrars: Vec::new(),
            bad: None,
            announce: None,
            transport: TransportKind::Tcp,
            listen: Vec::new(),
            advertise: None,
            policy: Policy::LeastUsed { load: 0 },
            load: None,
            weight: None,
            priority: None,
            identifier: None,
            data_ppid: 0,
            register_wait: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            tune: Tunes::default(),
            on_event: None,
        }
    }

    /// Talks TLS to the registrars ([`PoolElementConfig::registrar_tls`]): with a context
    /// that has a certificate, the PE presents it as client certificate (registrations into
    /// pools that require one). Any registrar transport (over SCTP: one TLS session on
    /// stream 0, SECURITY.md "TLS over SCTP").
    pub fn registrar_tls(self, ctx: crate::transport::tls::TlsContext) -> Self {
        self.configure(move |c| c.registrar_tls = Some(ctx))
    }

    /// Signs every REGISTRATION with the pool's pre-shared key
    /// ([`PoolElementConfig::registration_key`], [`crate::reg_auth`]), for pools whose
    /// registrar requires it (enrp-server `[[pool_auth]] psk`). Works over any transport,
    /// with or without TLS.
    pub fn registration_key(self, key: crate::reg_auth::RegistrationKey) -> Self {
        self.configure(move |c| c.registration_key = Some(key))
    }

    /// Adds a registrar (static configuration, RFC 5352 §3): anything
    /// [`ToSocketAddrs`] accepts — `"10.0.0.5:3863"`, `"registrar.example:3863"`,
    /// `("10.0.0.5", 3863)`, a `SocketAddr`. All addresses a name resolves to are taken as
    /// the addresses of one (multi-homed) registrar. Call again for further registrars;
    /// they are hunted in order. A name that does not resolve is reported by
    /// [`start`](Self::start) as [`PeError::BadRegistrar`].
    pub fn registrar(mut self, addr: impl ToSocketAddrs + fmt::Debug) -> Self {
        match resolve_registrar(&addr) {
            Ok(a) => self.registrars.push(a),
            Err(e) => {
                if self.bad.is_none() {
                    self.bad = Some(e);
                }
            }
        }
        self
    }

    /// Adds a registrar known by several addresses (SCTP multi-homing).
    pub fn registrar_addrs(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.registrars.push(addrs.into_iter().collect());
        self
    }

    /// Also finds registrars by their ASAP_SERVER_ANNOUNCEs (RFC 5352 §3) on
    /// [`defaults::ASAP_ANNOUNCE_ADDR`] (239.0.0.50:3863).
    pub fn announces(self) -> Self {
        self.announce_addr(defaults::ASAP_ANNOUNCE_ADDR)
    }

    /// Finds registrars by ASAP_SERVER_ANNOUNCEs sent to `addr` (multicast group or
    /// unicast address and port).
    pub fn announce_addr(mut self, addr: SocketAddr) -> Self {
        self.announce = Some(addr);
        self
    }

    /// Transport towards registrars and of the user transport (default TCP; kernel SCTP
    /// is RFC 5352's transport; `Auto` = SCTP when the kernel has it).
    pub fn transport(mut self, kind: TransportKind) -> Self {
        self.transport = kind;
        self
    }

    /// Where the user transport listens (default: the wildcard address of the first
    /// registrar's family, ephemeral port). Call again to add addresses (SCTP
    /// multi-homing; one port for all).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// The address registered for a wildcard listen address (default: the local address
    /// the kernel uses towards the first registrar, else 127.0.0.1).
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self
    }

    /// Pool policy and this PE's policy values (RFC 5356; default Least Used, load 0).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The load registered with an adaptive policy (RFC 5356 §5); ignored by the others.
    pub fn load(mut self, load: Load) -> Self {
        self.load = Some(load);
        self
    }

    /// The weight registered with a weighted policy (RFC 5356 §4.2, §4.4).
    pub fn weight(mut self, weight: Weight) -> Self {
        self.weight = Some(weight);
        self
    }

    /// The priority registered with the Priority policy (RFC 5356 §4.5).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// A fixed PE identifier (default: random, RFC 5351 §3.1).
    pub fn identifier(mut self, id: PeIdentifier) -> Self {
        self.identifier = Some(id);
        self
    }

    /// SCTP PPID of application data (default 0; not 11 or 12).
    pub fn data_ppid(mut self, ppid: u32) -> Self {
        self.data_ppid = ppid;
        self
    }

    /// Bound of the wait for the first registration in [`start`](Self::start) (default
    /// [`DEFAULT_REGISTER_WAIT`](super::DEFAULT_REGISTER_WAIT)).
    pub fn register_wait(mut self, d: Duration) -> Self {
        self.register_wait = Some(d);
        self
    }

    /// Bound of the drain after a graceful shutdown (default [`DEFAULT_DRAIN_TIMEOUT`]);
    /// sessions still open after it are aborted.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }

    /// Called by [`serve`](Self::serve) with every protocol event of the pool element
    /// (registration, keep-alive, home change, ...; by default they are logged at DEBUG,
    /// rejections at WARN).
    pub fn on_event(mut self, f: impl Fn(&PeEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Adjusts anything else of the driver configuration (timers, life, adoption, ...)
    /// after the builder filled it in.
    pub fn configure(mut self, f: impl FnOnce(&mut PoolElementConfig) + Send + 'static) -> Self {
        self.tune.push(f);
        self
    }

    /// The policy with the load, weight and priority applied.
    fn effective_policy(&self) -> Policy {
        let mut p = self.policy.clone();
        if let Some(l) = self.load {
            p = policy_with_load(&p, l);
        }
        if let Some(w) = self.weight {
            p = policy_with_weight(&p, w);
        }
        if let Some(pr) = self.priority {
            p = policy_with_priority(&p, pr);
        }
        p
    }

    /// Binds the user transport, registers and waits for the registration (bounded).
    /// Returns the running pool element and the listener on which PUs arrive.
    pub async fn start(mut self) -> Result<(PoolElement, SessionListener), PeError> {
        if let Some(e) = self.bad.take() {
            return Err(e);
        }
        if self.registrars.is_empty() && self.announce.is_none() {
            return Err(PeError::NoRegistrar);
        }
        let first = self.registrars.first().and_then(|r| r.first()).copied();
        let listen = if self.listen.is_empty() {
            let any: IpAddr = match first {
                Some(a) if a.is_ipv6() => Ipv6Addr::UNSPECIFIED.into(),
                _ => Ipv4Addr::UNSPECIFIED.into(),
            };
            vec![SocketAddr::new(any, 0)]
        } else {
            self.listen.clone()
        };
        let listener = SessionListener::bind(self.transport, &listen, self.data_ppid)
            .await
            .map_err(session_to_pe)?;
        let advertise = self
            .advertise
            .or_else(|| first.and_then(local_ip_towards))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let user = listener
            .user_transport(Some(advertise))
            .map_err(session_to_pe)?;
        let mut pe = PeConfig::new(self.handle.clone(), user, self.effective_policy());
        pe.identifier = self.identifier;
        pe.link.static_registrars = self.registrars.clone();
        let mut cfg = PoolElementConfig::tcp(pe);
        cfg.registrar_transport = listener.kind();
        cfg.announce = self.announce;
        // rsplib registrars accept only user transport addresses that the registration
        // association uses too: bind it to the specific listen addresses, if any.
        if listen.iter().all(|a| !a.ip().is_unspecified()) {
            cfg.registrar_local = listen.iter().map(|a| SocketAddr::new(a.ip(), 0)).collect();
        }
        if let Some(w) = self.register_wait {
            cfg.register_wait = w;
        }
        self.tune.apply(&mut cfg);
        let mut pe = PoolElement::register(cfg).await?;
        pe.wait_registered().await?;
        info!(
            pool = %self.handle,
            pe = format_args!("{:#010x}", pe.identifier()),
            addrs = ?listener.local_addrs().unwrap_or_default(),
            "pool element registered"
        );
        Ok((pe, listener))
    }

    /// Serves sessions with `handler`, one task per session, once awaited: binds,
    /// registers, waits for the registration (bounded), then accepts until the pool
    /// element stops. Add [`Serve::with_graceful_shutdown`] to deregister and drain on a
    /// signal. The handler's errors are logged at DEBUG (a PU going away is normal).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use asap::pe::PoolElement;
    /// use asap::session::ServerEvent;
    /// PoolElement::builder("UpperPool")
    ///     .registrar("127.0.0.1:3863")
    ///     .serve(|mut s| async move {
    ///         while let Some(ev) = s.recv().await? {
    ///             if let ServerEvent::Data(d) = ev {
    ///                 s.send(d.to_ascii_uppercase()).await?;
    ///             }
    ///         }
    ///         Ok(())
    ///     })
    ///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn serve<F, Fut>(self, handler: F) -> Serve<F>
    where
        F: Fn(ServerSession) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), SessionError>> + Send + 'static,
    {
        Serve {
            builder: self,
            handler,
            shutdown: None,
        }
    }
}

/// A pool element serving sessions; made by [`PoolElementBuilder::serve`], run by
/// awaiting it. Resolves to `Ok(())` after a graceful shutdown, or to the error that
/// stopped it.
pub struct Serve<F> {
    builder: PoolElementBuilder,
    handler: F,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<F> fmt::Debug for Serve<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> Serve<F>
where
    F: Fn(ServerSession) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), SessionError>> + Send + 'static,
{
    /// When `signal` completes: DEREGISTRATION (RFC 5352 §3, bounded by T3), then the
    /// listener closes (PUs that still try this PE fail over), then the running sessions
    /// get up to the [drain timeout](PoolElementBuilder::drain_timeout) to finish.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    async fn run(self) -> Result<(), PeError> {
        let drain = self.builder.drain_timeout;
        let on_event = self.builder.on_event.clone();
        let (mut pe, listener) = self.builder.start().await?;
        let handler = Arc::new(self.handler);
        let mut shutdown = self
            .shutdown
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                acc = listener.accept() => match acc {
                    Ok(s) => {
                        debug!(peer = ?s.peer_addrs(), "session accepted");
                        let h = Arc::clone(&handler);
                        sessions.spawn(async move {
                            if let Err(e) = h(s).await {
                                debug!(error = %e, "session ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        // Do not spin on a persistent error (e.g. out of file descriptors).
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                ev = pe.next_event() => match ev {
                    Some(ev) => {
                        match &ev {
                            PeEvent::Rejected(r) => warn!(%r, "registration rejected"),
                            ev => debug!(?ev, "pool element event"),
                        }
                        if let Some(f) = &on_event {
                            f(&ev);
                        }
                    }
                    None => return Err(PeError::Stopped),
                },
                Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            warn!("a session task panicked");
                        }
                    }
                }
            }
        }
        let open = sessions.len();
        let confirmed = pe.deregister().await?;
        drop(listener);
        info!(confirmed, open, "deregistered; draining sessions");
        let drained = tokio::time::timeout(drain, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                left = sessions.len(),
                "sessions still open after the drain timeout: aborted"
            );
            sessions.abort_all();
        }
        Ok(())
    }
}

impl<F, Fut> IntoFuture for Serve<F>
where
    F: Fn(ServerSession) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), SessionError>> + Send + 'static,
{
    type Output = Result<(), PeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), PeError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

fn resolve_registrar(addr: &(impl ToSocketAddrs + fmt::Debug)) -> Result<Vec<SocketAddr>, PeError> {
    let bad = |source| PeError::BadRegistrar {
        addr: format!("{addr:?}").trim_matches('"').to_string(),
        source,
    };
    let v: Vec<SocketAddr> = addr.to_socket_addrs().map_err(bad)?.collect();
    if v.is_empty() {
        return Err(bad(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "resolves to no address",
        )));
    }
    Ok(v)
}

/// The local address the kernel would use towards `peer` (a connected UDP socket sends
/// nothing), so that a PE listening on the wildcard address registers a reachable one.
pub(crate) fn local_ip_towards(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if peer.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(peer).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn session_to_pe(e: SessionError) -> PeError {
    match e {
        SessionError::Transport(t) => PeError::Transport(t),
        other => PeError::Session(Box::new(other)),
    }
}

impl fmt::Debug for PoolElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolElement")
            .field("status", &*self.status.borrow())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
