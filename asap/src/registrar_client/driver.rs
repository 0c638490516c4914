//! Tokio plumbing shared by the PE and PU drivers (and proxy-pe's registrar client): runs
//! the [`Action`]s of a sans-I/O registrar-client core (RFC 5352 §3) against real
//! associations and turns socket activity into [`NetEvent`]s.
//!
//! Each association gets a reader task that decodes ASAP messages (PPID 11) and forwards
//! them; connection attempts run as tasks too, so the driver loop never blocks on the
//! network except for writes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Action, ConnId, LinkProtocol, RegistrarFailure};
use crate::transport::udp::{UdpBind, UdpEndpoint};
use crate::transport::{
    defaults, AssocReader, AssocWriter, Association, Event, Listener, Msg, Transport,
    TransportConfig, TransportError, TransportKind,
};
use crate::wire::asap_msg::ServerAnnounce;
use crate::wire::{AsapMessage, Message, Protocol};

/// What the network reports to a driver loop.
#[non_exhaustive]
pub enum NetEvent {
    /// [`Action::Connect`] succeeded: hand the association to [`Net::attach`].
    Connected {
        /// The connection identifier of the action.
        conn: ConnId,
        /// The new association.
        assoc: Association,
    },
    /// [`Action::Connect`] failed.
    ConnectFailed {
        /// The connection identifier of the action.
        conn: ConnId,
        /// Why.
        error: TransportError,
    },
    /// A registrar opened an association to us (takeover, RFC 5353 §3.6).
    Accepted {
        /// The association, not attached yet.
        assoc: Association,
    },
    /// An ASAP message (PPID 11) arrived.
    Message {
        /// On which association.
        conn: ConnId,
        /// The decoded message.
        message: AsapMessage,
    },
    /// The association ended (or a send on it failed).
    Lost {
        /// Which one.
        conn: ConnId,
    },
    /// An ASAP_SERVER_ANNOUNCE was heard ([`Net::listen_announces`]).
    Announce {
        /// The datagram's source.
        from: SocketAddr,
        /// The announce.
        message: ServerAnnounce,
    },
}

/// The inputs a sans-I/O registrar-client core (RFC 5352 §3) takes from the network, so
/// that one [`Net::deliver`] / [`Net::flush`] serves every driver loop (the PE's, the PU's
/// and proxy-pe's registrar client over [`MultiPeCore`](crate::pe::MultiPeCore)).
pub trait ClientCore {
    /// Next action for the driver.
    fn poll_action(&mut self) -> Option<Action>;
    /// A fresh connection identifier for an association the driver accepted.
    fn allocate_conn(&mut self) -> ConnId;
    /// The connection attempt `conn` succeeded.
    fn on_connected(&mut self, now: Instant, conn: ConnId);
    /// The connection attempt `conn` failed.
    fn on_connect_failed(&mut self, now: Instant, conn: ConnId);
    /// A registrar opened an association to us.
    fn on_accepted(&mut self, conn: ConnId, addrs: Vec<SocketAddr>);
    /// An association ended.
    fn on_lost(&mut self, now: Instant, conn: ConnId);
    /// An ASAP_SERVER_ANNOUNCE was heard.
    fn on_announce(&mut self, now: Instant, from: SocketAddr, msg: &ServerAnnounce);
    /// An ASAP message arrived on `conn`.
    fn on_message(&mut self, now: Instant, conn: ConnId, msg: AsapMessage);
}

/// Implements [`ClientCore`] for a type by calling its inherent methods of the same names
/// (`asap::impl_client_core!(MyCore);`).
#[macro_export]
macro_rules! impl_client_core {
    (@forward $t:ty; $($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        impl $crate::registrar_client::driver::ClientCore for $t {
            $(
                fn $name(&mut self, $($arg: $ty),*) $(-> $ret)? {
                    <$t>::$name(self, $($arg),*)
                }
            )*
        }
    };
    ($t:ty) => {
        $crate::impl_client_core!(@forward $t;
            poll_action() -> Option<$crate::registrar_client::Action>;
            allocate_conn() -> $crate::registrar_client::ConnId;
            on_connected(now: ::std::time::Instant, conn: $crate::registrar_client::ConnId);
            on_connect_failed(now: ::std::time::Instant, conn: $crate::registrar_client::ConnId);
            on_accepted(conn: $crate::registrar_client::ConnId, addrs: Vec<::std::net::SocketAddr>);
            on_lost(now: ::std::time::Instant, conn: $crate::registrar_client::ConnId);
            on_announce(
                now: ::std::time::Instant,
                from: ::std::net::SocketAddr,
                msg: &$crate::wire::asap_msg::ServerAnnounce
            );
            on_message(
                now: ::std::time::Instant,
                conn: $crate::registrar_client::ConnId,
                msg: $crate::wire::AsapMessage
            );
        );
    };
}

crate::impl_client_core!(crate::pe::MultiPeCore);
crate::impl_client_core!(crate::pe::PeCore);
crate::impl_client_core!(crate::pu::PuCore);

/// Associations to registrars and the announce listener of one driver.
pub struct Net {
    transport: Transport,
    tx: mpsc::UnboundedSender<NetEvent>,
    rx: mpsc::UnboundedReceiver<NetEvent>,
    writers: HashMap<ConnId, AssocWriter>,
    tasks: HashMap<ConnId, JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    local: Vec<SocketAddr>,
    /// Local addresses with the port shared with the adoption listener
    /// ([`listen_shared`](Net::listen_shared)); registrar associations are opened from it.
    shared: Option<Vec<SocketAddr>>,
    /// Signs every ASAP_REGISTRATION with this pool key ([`crate::reg_auth`]).
    registration_key: Option<crate::reg_auth::RegistrationKey>,
    /// The registrar's addresses per connection (connecting, connected or accepted), for
    /// the [`RegistrarFailure`]s [`deliver`](Net::deliver) reports.
    addrs: HashMap<ConnId, Vec<SocketAddr>>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
        for t in self.background.drain(..) {
            t.abort();
        }
    }
}

impl Net {
    /// A driver for ASAP associations of `kind` to registrars.
    pub fn new(kind: TransportKind) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Net {
            transport: Transport::new(TransportConfig::asap(kind)),
            tx,
            rx,
            writers: HashMap::new(),
            tasks: HashMap::new(),
            background: Vec::new(),
            local: Vec::new(),
            shared: None,
            registration_key: None,
            addrs: HashMap::new(),
        }
    }

    /// Appends a Registration Authenticator made with `key` to every ASAP_REGISTRATION
    /// sent ([`crate::reg_auth`]; a fresh timestamp and nonce each time).
    pub fn set_registration_key(&mut self, key: crate::reg_auth::RegistrationKey) {
        self.registration_key = Some(key);
    }

    /// Registrar associations run TLS with `ctx` (any transport; `crate::transport::tls`).
    pub fn set_tls(&mut self, ctx: crate::transport::tls::TlsContext) {
        self.transport = self.transport.clone().with_tls(ctx);
    }

    /// Local addresses registrar associations are bound to (empty = kernel's choice).
    /// rsplib registrars accept only user transport addresses that are also addresses of
    /// the PE's ASAP association, so a PE binds it to the addresses it registers.
    pub fn set_local(&mut self, local: Vec<SocketAddr>) {
        self.local = local;
    }

    /// The protocol actually used (Auto resolved).
    pub fn protocol(&self) -> LinkProtocol {
        match self.transport.kind() {
            TransportKind::Tcp => LinkProtocol::Tcp,
            _ => LinkProtocol::Sctp,
        }
    }

    /// Listens for ASAP_SERVER_ANNOUNCE on `addr` (a multicast group is joined on all
    /// interfaces; a unicast address is bound as is).
    pub async fn listen_announces(&mut self, addr: SocketAddr) -> Result<(), TransportError> {
        let ep = if addr.ip().is_multicast() {
            let ep = UdpEndpoint::bind(UdpBind::Port(addr.port())).await?;
            if let std::net::IpAddr::V4(g) = addr.ip() {
                ep.join_multicast_v4(g, std::net::Ipv4Addr::UNSPECIFIED)?;
            }
            ep
        } else {
            UdpEndpoint::bind(UdpBind::Addr(addr)).await?
        };
        let tx = self.tx.clone();
        self.background.push(tokio::spawn(async move {
            loop {
                let (bytes, from) = match ep.recv_from().await {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "announce socket failed");
                        return;
                    }
                };
                match Message::decode(Protocol::Asap, &bytes) {
                    Ok(d) => {
                        if let Message::Asap(AsapMessage::ServerAnnounce(message)) = d.message {
                            if tx.send(NetEvent::Announce { from, message }).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, %from, "undecodable announce datagram"),
                }
            }
        }));
        Ok(())
    }

    /// Accepts associations (registrars contacting the PE) on `addrs`; returns the bound
    /// addresses.
    pub async fn listen_registrars(
        &mut self,
        addrs: &[SocketAddr],
    ) -> Result<Vec<SocketAddr>, TransportError> {
        let l: Listener = self.transport.listen(addrs).await?;
        self.accept_registrars(l)
    }

    /// Makes the PE reachable where registrars record it (RFC 5353 §3.6 takeover;
    /// asap/wire/INTEROP.md §2: a registrar takes a PE's ASAP transport from the address and port
    /// of its registration association): listens on `addrs` (port 0 picks one) with
    /// `SO_REUSEPORT`, and from now on opens every registrar association from that same
    /// port (rsplib uses one one-to-many SCTP socket for the same effect). A registrar that
    /// takes the PE over connects there and sends ENDPOINT_KEEP_ALIVE with the H flag.
    /// Returns the listening addresses.
    pub async fn listen_shared(
        &mut self,
        addrs: &[SocketAddr],
    ) -> Result<Vec<SocketAddr>, TransportError> {
        let l: Listener = self.transport.listen_reuseport(addrs).await?;
        let local = self.accept_registrars(l)?;
        let port = local.first().map(SocketAddr::port).unwrap_or(0);
        self.shared = Some(
            addrs
                .iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect(),
        );
        Ok(local)
    }

    fn accept_registrars(&mut self, l: Listener) -> Result<Vec<SocketAddr>, TransportError> {
        let local = l.local_addrs()?;
        let tx = self.tx.clone();
        self.background.push(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok(assoc) => {
                        if tx.send(NetEvent::Accepted { assoc }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        Ok(local)
    }

    /// Registers an established association under `conn` and starts its reader.
    pub fn attach(&mut self, conn: ConnId, assoc: Association) {
        let (reader, writer) = assoc.into_split();
        self.writers.insert(conn, writer);
        let tx = self.tx.clone();
        let task = tokio::spawn(read_loop(conn, reader, tx));
        if let Some(old) = self.tasks.insert(conn, task) {
            old.abort();
        }
    }

    /// Stops the reader of `conn` and closes it (in the background).
    fn close(&mut self, conn: ConnId) {
        self.addrs.remove(&conn);
        if let Some(t) = self.tasks.remove(&conn) {
            t.abort();
        }
        if let Some(mut w) = self.writers.remove(&conn) {
            tokio::spawn(async move {
                let _ = w.close().await;
            });
        }
    }

    /// Carries out every queued action of `core`.
    pub async fn flush(&mut self, core: &mut impl ClientCore) {
        while let Some(a) = core.poll_action() {
            self.execute(a).await;
        }
    }

    /// Hands one network event to `core`: a new association is attached (connected, or
    /// accepted under a fresh id), a lost one closed, a message or announce passed on. A
    /// driver that treats some events itself (keep-alives it must gate) matches those
    /// first and gives the rest to this.
    ///
    /// Returns the registrar failure the event is, for the driver's diagnostics: a failed
    /// connect, or a lost association (of a registrar whose addresses are known), each
    /// naming the registrar's addresses.
    pub fn deliver(
        &mut self,
        core: &mut impl ClientCore,
        now: Instant,
        ev: NetEvent,
    ) -> Option<RegistrarFailure> {
        match ev {
            NetEvent::Connected { conn, assoc } => {
                self.attach(conn, assoc);
                core.on_connected(now, conn);
            }
            NetEvent::ConnectFailed { conn, error } => {
                debug!(conn = conn.0, %error, "registrar connect failed");
                core.on_connect_failed(now, conn);
                return Some(RegistrarFailure::Connect {
                    addrs: self.addrs.remove(&conn).unwrap_or_default(),
                    cause: Arc::new(error),
                });
            }
            NetEvent::Accepted { assoc } => {
                let addrs = assoc.peer_addrs().unwrap_or_default();
                debug!(?addrs, "a registrar opened an association to us");
                let conn = core.allocate_conn();
                self.attach(conn, assoc);
                self.addrs.insert(conn, addrs.clone());
                core.on_accepted(conn, addrs);
            }
            NetEvent::Message { conn, message } => core.on_message(now, conn, message),
            NetEvent::Lost { conn } => {
                let addrs = self.addrs.remove(&conn);
                self.close(conn);
                core.on_lost(now, conn);
                return addrs.map(|addrs| RegistrarFailure::Lost { addrs });
            }
            NetEvent::Announce { from, message } => core.on_announce(now, from, &message),
        }
        None
    }

    /// Carries out one action of a core.
    pub async fn execute(&mut self, action: Action) {
        match action {
            Action::Connect { conn, addrs } => {
                self.addrs.insert(conn, addrs.clone());
                let t = self.transport.clone();
                let tx = self.tx.clone();
                let local = self.local.clone();
                // The shared port, for the address family of the registrar.
                let shared: Vec<SocketAddr> = self
                    .shared
                    .iter()
                    .flatten()
                    .filter(|l| addrs.iter().any(|a| a.is_ipv4() == l.is_ipv4()))
                    .copied()
                    .collect();
                tokio::spawn(async move {
                    let r = if shared.is_empty() {
                        t.connect(&addrs, &local).await
                    } else {
                        match t.connect_reuseport(&addrs, &shared).await {
                            // E.g. a TCP TIME_WAIT towards this registrar from that port.
                            Err(e) if e.is_local_address_error() => {
                                warn!(error = %e, ?shared, "registrar association not from the shared port: a registrar taking over cannot reach this PE through it");
                                t.connect(&addrs, &local).await
                            }
                            r => r,
                        }
                    };
                    let ev = match r {
                        Ok(assoc) => NetEvent::Connected { conn, assoc },
                        Err(error) => NetEvent::ConnectFailed { conn, error },
                    };
                    let _ = tx.send(ev);
                });
            }
            Action::Close { conn } => self.close(conn),
            Action::Send { conn, message } => {
                let Some(w) = self.writers.get_mut(&conn) else {
                    debug!(conn = conn.0, "send on a closed association dropped");
                    return;
                };
                let is_registration = matches!(message, AsapMessage::Registration(_));
                let mut bytes = match Message::Asap(message).to_bytes() {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(error = %e, "cannot encode ASAP message");
                        return;
                    }
                };
                if let (true, Some(key)) = (is_registration, &self.registration_key) {
                    let unix_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    match crate::reg_auth::sign(&bytes, key, unix_ms, rand::random()) {
                        Ok(v) => bytes = v.into(),
                        Err(e) => warn!(error = %e, "cannot sign ASAP_REGISTRATION"),
                    }
                }
                if let Err(e) = w.send(&Msg::new(defaults::PPID_ASAP, 0, bytes)).await {
                    warn!(conn = conn.0, error = %e, "send to registrar failed");
                    self.writers.remove(&conn);
                    if let Some(t) = self.tasks.remove(&conn) {
                        t.abort();
                    }
                    let _ = self.tx.send(NetEvent::Lost { conn });
                }
            }
        }
    }
}

async fn read_loop(conn: ConnId, mut reader: AssocReader, tx: mpsc::UnboundedSender<NetEvent>) {
    loop {
        match reader.recv().await {
            Ok(Event::Message(m)) => {
                if m.ppid != defaults::PPID_ASAP {
                    debug!(ppid = m.ppid, "ignoring non-ASAP message from registrar");
                    continue;
                }
                match Message::decode(Protocol::Asap, &m.bytes) {
                    Ok(d) => {
                        if let Message::Asap(message) = d.message {
                            if tx.send(NetEvent::Message { conn, message }).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "undecodable ASAP message from registrar"),
                }
            }
            Ok(Event::Lost(reason)) => {
                debug!(conn = conn.0, %reason, "registrar association lost");
                let _ = tx.send(NetEvent::Lost { conn });
                return;
            }
            Ok(_) => {}
            Err(_) => {
                let _ = tx.send(NetEvent::Lost { conn });
                return;
            }
        }
    }
}

/// What woke a driver loop in [`Net::wait`].
// Returned by value once per wake-up and matched at once, never stored: boxing the
// event would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
pub enum Wake<C> {
    /// A command from the API handle (`None`: every handle was dropped).
    Command(Option<C>),
    /// A network event (`None`: the event channel closed).
    Network(Option<NetEvent>),
    /// The core's timer ([`poll_timeout`](crate::pe::PeCore::poll_timeout)) expired: call
    /// its `handle_timeout`.
    Timer,
}

impl Net {
    /// The one wait of every driver loop (the PE's, the PU's, proxy-pe's registrar client):
    /// the next command from `commands` (not polled when `None`, e.g. after the handles
    /// were dropped), the next network event, or the core's `deadline`, whichever comes
    /// first; with the instant it woke. Each branch is cancel-safe.
    pub async fn wait<C>(
        &mut self,
        commands: Option<&mut mpsc::UnboundedReceiver<C>>,
        deadline: Option<std::time::Instant>,
    ) -> (Instant, Wake<C>) {
        let command = async {
            match commands {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            cmd = command => Wake::Command(cmd),
            ev = self.rx.recv() => Wake::Network(ev),
            () = sleep_until(deadline) => Wake::Timer,
        };
        (Instant::now(), wake)
    }
}

/// Sends the command `make(reply)` to a driver task over `commands` and waits for the
/// reply: the API handles' calls that need an answer (a PE's deregistration, a PU's
/// counters). `None` when the task is gone (the channel or the reply sender dropped).
pub(crate) async fn ask<C, T>(
    commands: &mpsc::UnboundedSender<C>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> C,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    commands.send(make(tx)).ok()?;
    rx.await.ok()
}

/// Sleeps until a sans-I/O core's next timer (its `poll_timeout()`), or forever when it has
/// none: the timer arm of [`Net::wait`] (quinn's `Connection::poll_timeout` pattern). The
/// core is then told with `handle_timeout`.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
