//! Message-oriented transports for ASAP and ENRP: kernel SCTP, userspace SCTP over UDP
//! (RFC 6951), TCP and UDP.
//!
//! RSerPool runs over SCTP (RFC 5351 §4, RFC 5352 §6, RFC 5353 §7): every ASAP/ENRP message is
//! one SCTP user message with PPID 11 (ASAP) or 12 (ENRP), on ports 3863 (ASAP) and 9901
//! (ENRP). Registrars also announce themselves over UDP (ASAP Server Announce, ENRP Presence),
//! by default to multicast groups 239.0.0.50:3863 and 239.0.0.51:9901. All these numbers live in
//! [`defaults`].
//!
//! | | [`TransportKind::Sctp`] | [`TransportKind::Tcp`] |
//! |---|---|---|
//! | message boundaries | SCTP user messages, any size (default max 256 KiB + 4) | RSerPool header Message Length, ≤ 65535 + padding |
//! | PPID | per message (`SCTP_SNDINFO`/`SCTP_RCVINFO`) | implied by the endpoint ([`TransportConfig::tcp_ppid`]) |
//! | streams | per message, `streams` configured in INIT | one; received stream is always 0 |
//! | multi-homing | `sctp_bindx` + `sctp_connectx`, peer address events | first reachable address |
//! | liveness | SCTP heartbeats (+ optional RTO/HB tuning) | TCP keep-alive |
//! | stalled peer | n/a (whole user messages) | partial message older than [`TransportConfig::tcp_incomplete_message_timeout`] (30 s) closes the association |
//! | memory of partial messages | n/a | per listener at most [`TransportConfig::tcp_max_partial_bytes`] (16 MiB); an association that would exceed it is closed |
//!
//! [`TransportKind::SctpUdp`] ([`sctp_udp`]) is SCTP without the kernel: the same SCTP
//! semantics as [`TransportKind::Sctp`] (whole messages, PPID and stream per message,
//! heartbeats), carried in UDP (RFC 6951, default port 9899), single-homed.
//!
//! [`TransportKind::Auto`] probes kernel SCTP once and otherwise uses
//! [`TransportConfig::auto_fallback`] (TCP by default, or `SctpUdp`) with one warning.
//!
//! Kernel SCTP is driven directly through `libc`/`socket2` (one-to-one style sockets on tokio's
//! `AsyncFd`), not through the `sctp-rs` crate: version 0.3.1 reads into a fixed 4 KiB buffer and
//! returns partial-delivery pieces of a large message as separate messages, does not check the
//! result of `socket()` (a kernel without SCTP then shows up as `EBADF`), and leaks descriptors
//! on error paths. Constants and structures come from `linux/sctp.h` (RFC 6458) and are checked
//! by unit tests for size and offsets.
//!
//! ## Shape
//!
//! [`Transport`] (a configuration) → [`Transport::listen`] → [`Listener::accept`] →
//! [`Association`]; or [`Transport::connect`] → [`Association`]. An association sends [`Msg`]
//! values and yields [`Event`]s: `Up`, `Message`, `PeerAddrChange`, `Restarted`, and finally one
//! `Lost` (after which `recv` returns [`TransportError::Closed`]). [`Association::into_split`]
//! gives a reader and a writer half for separate tasks.
//!
//! `Msg` and `Event` are plain data with no I/O in them: the sans-I/O protocol cores
//! (registrar, PE, PU) consume `Event`s and produce `Msg`s, so a driver can feed them from
//! these sockets or from a simulated network that produces the same values.
//!
//! ```no_run
//! # async fn f() -> Result<(), asap::transport::TransportError> {
//! use asap::transport::{Event, Msg, Transport, TransportConfig, TransportKind, defaults};
//! let t = Transport::new(TransportConfig::asap(TransportKind::Auto));
//! let mut assoc = t.connect(&["10.0.0.1:3863".parse().unwrap()], &[]).await?;
//! assoc.send(&Msg::new(defaults::PPID_ASAP, 0, vec![5, 0, 0, 4])).await?;
//! while let Ok(ev) = assoc.recv().await {
//!     if let Event::Message(m) = ev { println!("{} bytes, PPID {}", m.bytes.len(), m.ppid); }
//! }
//! # Ok(()) }
//! ```

pub mod blocking;
pub mod defaults;
mod error;
mod framing;
mod kind;
mod sctp;
pub mod sctp_udp;
// The one module of the crate allowed to use `unsafe` (its module doc gives the safety
// argument); the crate root denies it everywhere else.
#[allow(unsafe_code)]
mod sys;
mod tcp;
pub mod tls;
mod tls_sctp;
pub mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use error::{FrameError, LostReason, TransportError};
pub use kind::{sctp_probe, SctpProbe, TransportKind, UnknownTransportKind};
pub use sctp::{PathConfig, RtoConfig, SctpOptions};
pub use sctp_udp::SctpUdpOptions;

/// One message as carried by an association: SCTP PPID, stream id and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Payload Protocol Identifier in host order (11 ASAP, 12 ENRP, anything for data).
    pub ppid: u32,
    /// SCTP stream id (always 0 when received over TCP).
    pub stream: u16,
    /// The whole message.
    pub bytes: Bytes,
}

impl Msg {
    /// Builds a message.
    pub fn new(ppid: u32, stream: u16, bytes: impl Into<Bytes>) -> Self {
        Msg {
            ppid,
            stream,
            bytes: bytes.into(),
        }
    }

    /// [`TransportError::MessageTooLarge`] if the message is longer than `max` bytes (the
    /// check before a send).
    pub(crate) fn check_len(&self, max: usize) -> Result<(), TransportError> {
        if self.bytes.len() > max {
            return Err(TransportError::MessageTooLarge {
                len: self.bytes.len(),
                max,
            });
        }
        Ok(())
    }
}

/// State reported by an SCTP peer address change (RFC 6458 §6.1.2 `spc_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAddrState {
    /// `SCTP_ADDR_AVAILABLE`: the path is reachable again.
    Available,
    /// `SCTP_ADDR_UNREACHABLE`: the path failed.
    Unreachable,
    /// `SCTP_ADDR_REMOVED`.
    Removed,
    /// `SCTP_ADDR_ADDED`.
    Added,
    /// `SCTP_ADDR_MADE_PRIM`: now the primary path.
    MadePrimary,
    /// `SCTP_ADDR_CONFIRMED`: confirmed by a heartbeat.
    Confirmed,
    /// `SCTP_ADDR_POTENTIALLY_FAILED`.
    PotentiallyFailed,
    /// A value this code does not know.
    Other(i32),
}

impl PeerAddrState {
    fn from_raw(v: i32) -> Self {
        match v {
            0 => PeerAddrState::Available,
            1 => PeerAddrState::Unreachable,
            2 => PeerAddrState::Removed,
            3 => PeerAddrState::Added,
            4 => PeerAddrState::MadePrimary,
            5 => PeerAddrState::Confirmed,
            6 => PeerAddrState::PotentiallyFailed,
            other => PeerAddrState::Other(other),
        }
    }

    /// Short lower-case name (`available`, `unreachable`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerAddrState::Available => "available",
            PeerAddrState::Unreachable => "unreachable",
            PeerAddrState::Removed => "removed",
            PeerAddrState::Added => "added",
            PeerAddrState::MadePrimary => "made-primary",
            PeerAddrState::Confirmed => "confirmed",
            PeerAddrState::PotentiallyFailed => "potentially-failed",
            PeerAddrState::Other(_) => "other",
        }
    }
}

/// What an association reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The association is established (SCTP `SCTP_COMM_UP`; TCP: connected). Always first.
    Up {
        /// Outbound streams negotiated (1 for TCP, 0 if unknown).
        outbound_streams: u16,
        /// Inbound streams negotiated (1 for TCP, 0 if unknown).
        inbound_streams: u16,
    },
    /// A whole message arrived.
    Message(Msg),
    /// The peer restarted (SCTP `SCTP_RESTART`, RFC 9260 §5.2.2): its state is gone.
    Restarted,
    /// A peer path changed state (SCTP `SCTP_PEER_ADDR_CHANGE`).
    PeerAddrChange {
        /// The peer address concerned.
        addr: SocketAddr,
        /// Its new state.
        state: PeerAddrState,
        /// `spc_error` (0 if none).
        error: i32,
    },
    /// The association ended; this is the last event.
    Lost(LostReason),
}

/// Configuration shared by all associations of a [`Transport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// SCTP, TCP or automatic choice.
    pub kind: TransportKind,
    /// PPID implied on TCP (received messages carry it; only it may be sent).
    pub tcp_ppid: u32,
    /// Largest message accepted in either direction (TCP: at most 65535 + 3).
    pub max_message_size: usize,
    /// Connect timeout (per address for TCP, for the whole `sctp_connectx` for SCTP).
    pub connect_timeout: Duration,
    /// TCP keep-alive idle time; `None` disables keep-alive.
    pub tcp_keepalive: Option<Duration>,
    /// TCP only: how long a partial message (header or body started but not complete) may
    /// wait for the rest before the association is reported [`Event::Lost`] with
    /// [`FrameError::IncompleteTimeout`] (naming the peer and what was pending) and closed.
    /// The clock starts when the first byte of the message arrives. `None` disables the check
    /// (a stalled peer then holds the association until TCP keep-alive or the peer ends it).
    /// Default [`defaults::TCP_INCOMPLETE_MESSAGE_TIMEOUT`] (30 s). SCTP delivers whole user
    /// messages and does not use it.
    pub tcp_incomplete_message_timeout: Option<Duration>,
    /// TCP only: budget of buffer memory (bytes) for partial messages, shared by all
    /// associations accepted by one [`Listener`]. A partial message grows its buffer only as
    /// its bytes arrive (never to the announced length up front), and only while the budget
    /// has room; an association whose partial message cannot get budget is reported
    /// [`Event::Lost`] with [`FrameError::PartialBudgetExhausted`] (naming the peer) and
    /// closed, the others keep working. Outgoing associations ([`Transport::connect`]) each
    /// have a budget of this size of their own. `None` = unbounded. Default
    /// [`defaults::TCP_MAX_PARTIAL_BYTES`] (16 MiB). Current use: [`Listener::partial_bytes`].
    pub tcp_max_partial_bytes: Option<usize>,
    /// `TCP_NODELAY` / `SCTP_NODELAY`.
    pub nodelay: bool,
    /// SCTP-specific settings (kernel SCTP and `sctp-udp`: streams, RTO, heartbeats).
    pub sctp: SctpOptions,
    /// `sctp-udp` (RFC 6951) settings: local and remote UDP encapsulation ports.
    pub sctp_udp: SctpUdpOptions,
    /// What [`TransportKind::Auto`] uses when the kernel has no SCTP: [`TransportKind::Tcp`]
    /// (default) or [`TransportKind::SctpUdp`].
    pub auto_fallback: TransportKind,
}

impl TransportConfig {
    /// ASAP endpoint defaults: PPID 11 on TCP (port 3863), 256 KiB + 4 maximum (TCP: 65535 +
    /// 3), TCP incomplete-message timeout 30 s.
    pub fn asap(kind: TransportKind) -> Self {
        TransportConfig {
            kind,
            tcp_ppid: defaults::PPID_ASAP,
            max_message_size: defaults::MAX_SCTP_MESSAGE,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            tcp_keepalive: Some(defaults::TCP_KEEPALIVE),
            tcp_incomplete_message_timeout: Some(defaults::TCP_INCOMPLETE_MESSAGE_TIMEOUT),
            tcp_max_partial_bytes: Some(defaults::TCP_MAX_PARTIAL_BYTES),
            nodelay: true,
            sctp: SctpOptions::default(),
            sctp_udp: SctpUdpOptions::default(),
            auto_fallback: TransportKind::Tcp,
        }
    }

    /// ENRP endpoint defaults: like [`TransportConfig::asap`] with PPID 12 (port 9901).
    pub fn enrp(kind: TransportKind) -> Self {
        TransportConfig {
            tcp_ppid: defaults::PPID_ENRP,
            ..Self::asap(kind)
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self::asap(TransportKind::Auto)
    }
}

/// A transport configuration from which listeners and associations are made.
#[derive(Debug, Clone)]
pub struct Transport {
    config: Arc<TransportConfig>,
    /// TLS for listeners and connections ([`tls`] over TCP, `tls_sctp` over SCTP).
    tls: Option<Arc<tls::TlsContext>>,
}

impl Transport {
    /// Makes a transport from its configuration.
    pub fn new(config: TransportConfig) -> Self {
        Transport {
            config: Arc::new(config),
            tls: None,
        }
    }

    /// The same transport with TLS ([`tls`]): listeners run a handshake on every accepted
    /// connection (in its own task, bounded by the context's handshake timeout) and
    /// connections run one before they are returned. Over TCP TLS wraps the byte stream;
    /// over kernel SCTP and `sctp-udp` one TLS session runs on stream 0 of each association
    /// (RFC 3436 in reduced form, `SECURITY.md` "TLS over SCTP"); in both cases RSerPool
    /// messages are framed inside TLS by their Message Length and carry the endpoint's PPID
    /// ([`TransportConfig::tcp_ppid`]).
    pub fn with_tls(mut self, ctx: tls::TlsContext) -> Self {
        self.tls = Some(Arc::new(ctx));
        self
    }

    /// The TLS context, if any.
    pub fn tls(&self) -> Option<&tls::TlsContext> {
        self.tls.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The concrete kind used: `Auto` is kernel SCTP if the kernel has it (probed once),
    /// else [`TransportConfig::auto_fallback`] (TCP unless configured otherwise).
    pub fn kind(&self) -> TransportKind {
        self.config.kind.resolve_with(self.config.auto_fallback)
    }

    /// Listens on one or more local addresses (all with the same port; port 0 picks one for
    /// SCTP). SCTP binds them all to one multi-homed endpoint; TCP opens one socket each.
    pub async fn listen(&self, addrs: &[SocketAddr]) -> Result<Listener, TransportError> {
        self.listen_with(addrs, false).await
    }

    /// Like [`listen`](Self::listen), with `SO_REUSEPORT` set before binding, so that
    /// associations opened with [`connect_reuseport`](Self::connect_reuseport) can use the
    /// same local port. A pool element uses this to be reachable at the address and port a
    /// registrar records for it (its association's; RFC 5353 §3.6 takeover, where the new
    /// home registrar connects there). Linux allows it for sockets of the same user.
    pub async fn listen_reuseport(&self, addrs: &[SocketAddr]) -> Result<Listener, TransportError> {
        self.listen_with(addrs, true).await
    }

    async fn listen_with(
        &self,
        addrs: &[SocketAddr],
        reuse_port: bool,
    ) -> Result<Listener, TransportError> {
        check_addrs(addrs, "listen")?;
        if let Some(ctx) = &self.tls {
            if self.kind() != TransportKind::Tcp {
                let plain = Transport::new((*self.config).clone());
                let inner = Box::pin(plain.listen_with(addrs, reuse_port)).await?;
                return Ok(Listener {
                    inner: ListenerInner::TlsSctp(tls_sctp::TlsSctpListener::start(
                        inner,
                        (**ctx).clone(),
                        self.config.tcp_ppid,
                        self.config.max_message_size,
                    )?),
                });
            }
            let tcp = tcp::TcpListeners::bind(addrs, self.config.clone(), reuse_port)?;
            return Ok(Listener {
                inner: ListenerInner::Tls(tls::TlsListener::<tcp::TcpAssoc>::start(
                    tcp,
                    (**ctx).clone(),
                )?),
            });
        }
        let inner = match self.kind() {
            TransportKind::Tcp => ListenerInner::Tcp(tcp::TcpListeners::bind(
                addrs,
                self.config.clone(),
                reuse_port,
            )?),
            TransportKind::SctpUdp => ListenerInner::SctpUdp(
                sctp_udp::SctpUdpListener::bind(addrs, self.config.clone()).await?,
            ),
            _ => ListenerInner::Sctp(sctp::SctpListener::bind(
                addrs,
                self.config.clone(),
                reuse_port,
            )?),
        };
        Ok(Listener { inner })
    }

    /// Connects to a peer given by one or more addresses (SCTP: all paths of one multi-homed
    /// peer; TCP: tried in order), optionally bound to local addresses (`local` may be empty;
    /// ports in `local` are normally 0).
    pub async fn connect(
        &self,
        peers: &[SocketAddr],
        local: &[SocketAddr],
    ) -> Result<Association, TransportError> {
        self.connect_with(peers, local, false).await
    }

    /// Like [`connect`](Self::connect) from `local` addresses with a fixed port, with
    /// `SO_REUSEPORT` set before binding: the port may be shared with a
    /// [`listen_reuseport`](Self::listen_reuseport) listener and other such associations.
    /// If the port cannot be used (e.g. a TCP TIME_WAIT to the same peer), the error is one
    /// for which [`TransportError::is_local_address_error`] is true.
    pub async fn connect_reuseport(
        &self,
        peers: &[SocketAddr],
        local: &[SocketAddr],
    ) -> Result<Association, TransportError> {
        self.connect_with(peers, local, true).await
    }

    async fn connect_with(
        &self,
        peers: &[SocketAddr],
        local: &[SocketAddr],
        reuse_port: bool,
    ) -> Result<Association, TransportError> {
        check_addrs(peers, "connect")?;
        let kind = self.kind();
        if let Some(ctx) = &self.tls {
            if kind != TransportKind::Tcp {
                let plain = Transport::new((*self.config).clone());
                let a = Box::pin(plain.connect_with(peers, local, reuse_port)).await?;
                let (r, w) =
                    tls_sctp::client(ctx, a, self.config.tcp_ppid, self.config.max_message_size)
                        .await?;
                return Ok(Association::from_parts(
                    ReaderInner::TlsSctp(Box::new(r)),
                    WriterInner::TlsSctp(Box::new(w)),
                ));
            }
            let (r, w) = tls::connect(ctx, peers, local, self.config.clone(), reuse_port)
                .await?
                .split();
            return Ok(Association::from_parts(
                ReaderInner::Tcp(r),
                WriterInner::Tcp(w),
            ));
        }
        let (reader, writer) = match kind {
            TransportKind::Tcp => {
                let (r, w) = tcp::connect(peers, local, self.config.clone(), reuse_port)
                    .await?
                    .split();
                (ReaderInner::Tcp(r), WriterInner::Tcp(w))
            }
            TransportKind::SctpUdp => {
                let (r, w) = sctp_udp::connect(peers, local, self.config.clone()).await?;
                (ReaderInner::SctpUdp(r), WriterInner::SctpUdp(w))
            }
            _ => {
                let (r, w) = sctp::connect(peers, local, self.config.clone(), reuse_port)
                    .await?
                    .split();
                (ReaderInner::Sctp(r), WriterInner::Sctp(w))
            }
        };
        Ok(Association::from_parts(reader, writer))
    }
}

fn check_addrs(addrs: &[SocketAddr], what: &str) -> Result<(), TransportError> {
    let Some(first) = addrs.first() else {
        return Err(TransportError::BadAddresses(format!("{what}: no address")));
    };
    if addrs.iter().any(|a| a.port() != first.port()) {
        return Err(TransportError::BadAddresses(format!(
            "{what}: all addresses must use one port: {addrs:?}"
        )));
    }
    Ok(())
}

enum ListenerInner {
    Sctp(sctp::SctpListener),
    Tcp(tcp::TcpListeners),
    /// TCP with TLS handshakes in their own tasks ([`tls`]).
    Tls(tls::TlsListener),
    SctpUdp(sctp_udp::SctpUdpListener),
    /// Kernel SCTP or `sctp-udp` with TLS on stream 0 ([`tls_sctp`]).
    TlsSctp(tls_sctp::TlsSctpListener),
}

/// A listening endpoint.
pub struct Listener {
    inner: ListenerInner,
}

impl Listener {
    /// Waits for the next association.
    pub async fn accept(&self) -> Result<Association, TransportError> {
        let (r, w) = match &self.inner {
            ListenerInner::Sctp(l) => {
                let (r, w) = l.accept().await?.split();
                (ReaderInner::Sctp(r), WriterInner::Sctp(w))
            }
            ListenerInner::Tcp(l) => {
                let (r, w) = l.accept().await?.split();
                (ReaderInner::Tcp(r), WriterInner::Tcp(w))
            }
            ListenerInner::Tls(l) => {
                let (r, w) = l.accept().await?.split();
                (ReaderInner::Tcp(r), WriterInner::Tcp(w))
            }
            ListenerInner::SctpUdp(l) => {
                let (r, w) = l.accept().await?;
                (ReaderInner::SctpUdp(r), WriterInner::SctpUdp(w))
            }
            ListenerInner::TlsSctp(l) => {
                let (r, w) = l.accept().await?;
                (
                    ReaderInner::TlsSctp(Box::new(r)),
                    WriterInner::TlsSctp(Box::new(w)),
                )
            }
        };
        Ok(Association::from_parts(r, w))
    }

    /// Bytes of buffer memory held now for partial messages by the associations accepted
    /// from this listener (TCP; always 0 for SCTP, which delivers whole messages). Never more
    /// than [`TransportConfig::tcp_max_partial_bytes`].
    pub fn partial_bytes(&self) -> usize {
        match &self.inner {
            ListenerInner::Sctp(_) | ListenerInner::SctpUdp(_) | ListenerInner::TlsSctp(_) => 0,
            ListenerInner::Tcp(l) => l.partial_bytes(),
            ListenerInner::Tls(l) => l.partial_bytes(),
        }
    }

    /// TLS listeners: connections closed so far because their handshake failed, timed out
    /// or was plaintext where TLS is required (each also logged at `warn`). 0 otherwise.
    pub fn tls_refused(&self) -> u64 {
        match &self.inner {
            ListenerInner::Tls(l) => l.refused(),
            ListenerInner::TlsSctp(l) => l.refused(),
            _ => 0,
        }
    }

    /// The bound local addresses (with the actual port).
    pub fn local_addrs(&self) -> Result<Vec<SocketAddr>, TransportError> {
        match &self.inner {
            ListenerInner::Sctp(l) => l.local_addrs(),
            ListenerInner::Tcp(l) => l.local_addrs(),
            ListenerInner::Tls(l) => Ok(l.local_addrs()),
            ListenerInner::SctpUdp(l) => Ok(l.local_addrs()),
            ListenerInner::TlsSctp(l) => Ok(l.local_addrs()),
        }
        .map_err(|e| TransportError::io("getsockname", e))
    }

    /// `Sctp` or `Tcp`.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            ListenerInner::Sctp(_) => TransportKind::Sctp,
            ListenerInner::Tcp(_) | ListenerInner::Tls(_) => TransportKind::Tcp,
            ListenerInner::SctpUdp(_) => TransportKind::SctpUdp,
            ListenerInner::TlsSctp(l) => l.kind(),
        }
    }
}

enum ReaderInner {
    Sctp(sctp::SctpReader),
    Tcp(tcp::TcpReader),
    SctpUdp(sctp_udp::SctpUdpReader),
    TlsSctp(Box<tls_sctp::TlsSctpReader>),
}

enum WriterInner {
    Sctp(sctp::SctpWriter),
    Tcp(tcp::TcpWriter),
    SctpUdp(sctp_udp::SctpUdpWriter),
    TlsSctp(Box<tls_sctp::TlsSctpWriter>),
}

/// An established association (SCTP association or TCP connection).
///
/// Dropping it closes the socket gracefully (SCTP SHUTDOWN, TCP FIN).
pub struct Association {
    reader: AssocReader,
    writer: AssocWriter,
}

/// Receiving half of an [`Association`].
pub struct AssocReader {
    inner: ReaderInner,
}

/// Sending half of an [`Association`].
pub struct AssocWriter {
    inner: WriterInner,
}

impl Association {
    fn from_parts(r: ReaderInner, w: WriterInner) -> Self {
        Association {
            reader: AssocReader { inner: r },
            writer: AssocWriter { inner: w },
        }
    }

    /// Sends one whole message.
    pub async fn send(&mut self, msg: &Msg) -> Result<(), TransportError> {
        self.writer.send(msg).await
    }

    /// Waits for the next event; after [`Event::Lost`] returns [`TransportError::Closed`].
    pub async fn recv(&mut self) -> Result<Event, TransportError> {
        self.reader.recv().await
    }

    /// Starts a graceful close (SCTP SHUTDOWN, TCP FIN); keep calling `recv` to see the end.
    pub async fn close(&mut self) -> Result<(), TransportError> {
        self.writer.close().await
    }

    /// Aborts the association at once (SCTP ABORT, TCP RST).
    pub fn abort(self) {
        self.writer.abort();
        drop(self.reader);
    }

    /// Splits into halves that can be moved to different tasks.
    pub fn into_split(self) -> (AssocReader, AssocWriter) {
        (self.reader, self.writer)
    }

    /// `Sctp` or `Tcp`.
    pub fn kind(&self) -> TransportKind {
        self.writer.kind()
    }

    /// Peer addresses (all paths for SCTP).
    pub fn peer_addrs(&self) -> Result<Vec<SocketAddr>, TransportError> {
        self.writer.peer_addrs()
    }

    /// Local addresses (all bound addresses for SCTP).
    pub fn local_addrs(&self) -> Result<Vec<SocketAddr>, TransportError> {
        self.writer.local_addrs()
    }

    /// The transport's smoothed round-trip time to the peer: kernel SCTP the primary path's
    /// `spinfo_srtt` (`SCTP_STATUS`, RFC 6458 §8.2.1; Linux reports jiffies, converted with
    /// the kernel tick), TCP `tcpi_rtt` (`TCP_INFO`, µs).
    /// `Ok(None)` before the first measurement and for SCTP over UDP (sctp-proto exposes only
    /// the RTO, not the SRTT). Registrars turn it into the Distance of distance-sensitive
    /// policies (README "Deviations", `enrp-server` `distance`).
    pub fn rtt(&self) -> Result<Option<Duration>, TransportError> {
        self.writer.rtt()
    }

    /// The peer's certificate, verified against the CA by the TLS handshake ([`tls`]);
    /// `None` without TLS or when the peer presented none.
    pub fn peer_certificate(&self) -> Option<&tls::PeerCertificate> {
        self.writer.peer_certificate()
    }
}

impl AssocReader {
    /// Waits for the next event; after [`Event::Lost`] returns [`TransportError::Closed`].
    pub async fn recv(&mut self) -> Result<Event, TransportError> {
        match &mut self.inner {
            ReaderInner::Sctp(r) => r.recv().await,
            ReaderInner::Tcp(r) => r.recv().await,
            ReaderInner::SctpUdp(r) => r.recv().await,
            ReaderInner::TlsSctp(r) => r.recv().await,
        }
    }

    /// The next event if it is here already (read into the transport's buffer, or readable
    /// from the socket without waiting), `None` otherwise: [`recv`](Self::recv) polled once
    /// with a waker that does nothing. A server drains every ready message this way and
    /// answers the burst with one [`AssocWriter::send_batch`] (issue 15). Nothing is lost
    /// when it returns `None`: every transport's `recv` keeps what it read in the reader.
    pub fn recv_ready(&mut self) -> Option<Result<Event, TransportError>> {
        let f = std::pin::pin!(self.recv());
        match std::future::Future::poll(
            f,
            &mut std::task::Context::from_waker(std::task::Waker::noop()),
        ) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    /// The smoothed round-trip time to the peer ([`Association::rtt`]).
    pub fn rtt(&self) -> Result<Option<Duration>, TransportError> {
        match &self.inner {
            ReaderInner::Sctp(r) => r.rtt().map_err(|e| TransportError::io("SCTP_STATUS", e)),
            ReaderInner::Tcp(r) => r.rtt().map_err(|e| TransportError::io("TCP_INFO", e)),
            ReaderInner::SctpUdp(_) => Ok(None),
            ReaderInner::TlsSctp(r) => r.rtt(),
        }
    }
}

impl AssocWriter {
    /// The peer's verified TLS certificate ([`Association::peer_certificate`]).
    pub fn peer_certificate(&self) -> Option<&tls::PeerCertificate> {
        match &self.inner {
            WriterInner::Tcp(w) => w.peer_certificate(),
            WriterInner::TlsSctp(w) => w.peer_certificate(),
            _ => None,
        }
    }

    /// Sends one whole message.
    ///
    /// SCTP: any size up to the maximum, PPID and stream as given (the stream must be below the
    /// negotiated outbound streams). TCP: the bytes must be one RSerPool message (header Message
    /// Length consistent with the size; padding is added if missing) and the PPID must be the
    /// endpoint's [`TransportConfig::tcp_ppid`]; the stream is not transmitted.
    pub async fn send(&mut self, msg: &Msg) -> Result<(), TransportError> {
        match &mut self.inner {
            WriterInner::Sctp(w) => w.send(msg).await,
            WriterInner::Tcp(w) => w.send(msg).await,
            WriterInner::SctpUdp(w) => w.send(msg).await,
            WriterInner::TlsSctp(w) => w.send(msg).await,
        }
    }

    /// Sends several whole messages with as few system calls as the transport allows (the
    /// same rules per message as [`send`](Self::send)): TCP writes them all from one buffer
    /// (`buf`, cleared and reused by the caller), so a server answering a burst of requests
    /// needs one `write`; kernel SCTP hands up to 64 messages to `sendmmsg`, each with
    /// its own stream and PPID (message boundaries kept), all but the last with `MSG_MORE`
    /// so that the kernel bundles their DATA chunks into few packets (RFC 9260 §6.10); SCTP
    /// over UDP sends each. A message that cannot be sent is left out and the first such
    /// error returned after the others went out.
    pub async fn send_batch(
        &mut self,
        msgs: &[Msg],
        buf: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if let WriterInner::Tcp(w) = &mut self.inner {
            return w.send_batch(msgs, buf).await;
        }
        if let WriterInner::TlsSctp(w) = &mut self.inner {
            return w.send_batch(msgs).await;
        }
        if let WriterInner::Sctp(w) = &mut self.inner {
            return w.send_batch(msgs).await;
        }
        // SCTP over UDP: one send per message, boundaries kept.
        let mut first_err = None;
        for m in msgs {
            if let Err(e) = self.send(m).await {
                if matches!(e, TransportError::Io { .. }) {
                    return Err(e);
                }
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Starts a graceful close (SCTP SHUTDOWN, TCP FIN).
    pub async fn close(&mut self) -> Result<(), TransportError> {
        match &mut self.inner {
            WriterInner::Sctp(w) => w.close(),
            WriterInner::Tcp(w) => w.close().await,
            WriterInner::SctpUdp(w) => w.close(),
            WriterInner::TlsSctp(w) => w.close().await,
        }
    }

    /// Aborts: ABORT/RST is sent when the socket closes, i.e. at once if the reader half is
    /// already dropped, otherwise when it is dropped.
    pub fn abort(self) {
        match self.inner {
            WriterInner::Sctp(w) => w.set_abort_on_close(),
            WriterInner::Tcp(w) => {
                w.set_abort_on_close();
                w.forget();
            }
            WriterInner::SctpUdp(w) => w.set_abort_on_close(),
            WriterInner::TlsSctp(w) => w.set_abort_on_close(),
        }
    }

    /// Like [`abort`](Self::abort) without giving up the half (SCTP kinds: ABORT when the
    /// socket closes; TCP: `SO_LINGER` 0). Used by [`tls_sctp`], which keeps the writer.
    pub(crate) fn abort_in_place(&self) {
        match &self.inner {
            WriterInner::Sctp(w) => w.set_abort_on_close(),
            WriterInner::Tcp(w) => w.set_abort_on_close(),
            WriterInner::SctpUdp(w) => w.set_abort_on_close(),
            WriterInner::TlsSctp(w) => w.set_abort_on_close(),
        }
    }

    /// `Sctp` or `Tcp`.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            WriterInner::Sctp(_) => TransportKind::Sctp,
            WriterInner::Tcp(_) => TransportKind::Tcp,
            WriterInner::SctpUdp(_) => TransportKind::SctpUdp,
            WriterInner::TlsSctp(w) => w.kind(),
        }
    }

    /// The smoothed round-trip time to the peer ([`Association::rtt`]).
    pub fn rtt(&self) -> Result<Option<Duration>, TransportError> {
        match &self.inner {
            WriterInner::Sctp(w) => w.rtt().map_err(|e| TransportError::io("SCTP_STATUS", e)),
            WriterInner::Tcp(w) => w.rtt().map_err(|e| TransportError::io("TCP_INFO", e)),
            WriterInner::SctpUdp(_) => Ok(None),
            // The SCTP writer sits behind the TLS session's lock; the reader half answers.
            WriterInner::TlsSctp(_) => Ok(None),
        }
    }

    /// Peer addresses (all paths for SCTP).
    pub fn peer_addrs(&self) -> Result<Vec<SocketAddr>, TransportError> {
        match &self.inner {
            WriterInner::Sctp(w) => w
                .peer_addrs()
                .map_err(|e| TransportError::io("sctp_getpaddrs", e)),
            WriterInner::Tcp(w) => Ok(vec![w.peer()]),
            WriterInner::SctpUdp(w) => Ok(vec![w.peer()]),
            WriterInner::TlsSctp(w) => Ok(w.peer_addrs()),
        }
    }

    /// Local addresses (all bound addresses for SCTP).
    pub fn local_addrs(&self) -> Result<Vec<SocketAddr>, TransportError> {
        match &self.inner {
            WriterInner::Sctp(w) => w
                .local_addrs()
                .map_err(|e| TransportError::io("sctp_getladdrs", e)),
            WriterInner::Tcp(w) => Ok(vec![w.local()]),
            WriterInner::SctpUdp(w) => Ok(vec![w.local()]),
            WriterInner::TlsSctp(w) => Ok(w.local_addrs()),
        }
    }
}

/// Parses `ADDR[,ADDR...]:PORT` (IPv6 in brackets: `[::1],[::2]:3863`) into socket addresses
/// sharing one port; a single `ADDR:PORT` works too.
pub fn parse_addr_list(s: &str) -> Result<Vec<SocketAddr>, TransportError> {
    let bad = || TransportError::BadAddresses(format!("{s:?}: expected ADDR[,ADDR...]:PORT"));
    let (hosts, port) = s.rsplit_once(':').ok_or_else(bad)?;
    // "::1:5000" without brackets is ambiguous: require brackets for IPv6.
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ips = parse_ip_list(hosts)?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// Parses `ADDR[,ADDR...]` (IPv6 optionally in brackets).
pub fn parse_ip_list(s: &str) -> Result<Vec<IpAddr>, TransportError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        let p = p
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(p);
        out.push(
            p.parse::<IpAddr>().map_err(|_| {
                TransportError::BadAddresses(format!("{part:?} is not an IP address"))
            })?,
        );
    }
    if out.is_empty() {
        return Err(TransportError::BadAddresses("empty address list".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_lists() {
        let v = parse_addr_list("10.0.0.1,10.0.1.1:5000").expect("valid");
        assert_eq!(
            v,
            vec![
                "10.0.0.1:5000".parse::<SocketAddr>().expect("lit"),
                "10.0.1.1:5000".parse().expect("lit")
            ]
        );
        let v = parse_addr_list("[::1],[2001:db8::2]:3863").expect("valid");
        assert_eq!(
            v[1],
            "[2001:db8::2]:3863".parse::<SocketAddr>().expect("lit")
        );
        assert!(parse_addr_list("10.0.0.1").is_err());
        assert!(parse_addr_list("10.0.0.1,:5").is_err());
        assert!(parse_addr_list("x:5").is_err());
        assert_eq!(parse_ip_list("10.0.0.2,10.0.1.2").expect("valid").len(), 2);
    }
}
