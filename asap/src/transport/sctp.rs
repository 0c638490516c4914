//! Kernel SCTP backend (RFC 4960/9260 transport, RFC 6458 socket API), one-to-one style.
//!
//! Each association is a `SOCK_STREAM`/`IPPROTO_SCTP` socket driven by tokio's [`AsyncFd`].
//! What this backend does on top of the plain socket:
//!
//! * **Whole messages of any size.** Linux delivers a large message in pieces (partial
//!   delivery); pieces are read until `MSG_EOR`, appending into one buffer, up to the
//!   configured maximum (default 256 KiB + 4). A bigger message ends the association
//!   ([`LostReason::MessageTooLarge`]): it is shut down at once and aborted (`SO_LINGER` 0)
//!   when dropped. One-to-one sockets cannot send ABORT otherwise (`SCTP_ABORT` in
//!   `sctp_sndinfo` is one-to-many only on Linux).
//! * **PPID and stream** travel in `SCTP_SNDINFO` ancillary data on `sendmsg`/`sendmmsg` and
//!   come back in `SCTP_RCVINFO` (enabled with `SCTP_RECVRCVINFO`) on `recvmmsg`, one slot per
//!   piece. The PPID is opaque to the kernel, so it is converted to network byte order here
//!   (RFC 6458 §5.3.4).
//! * **Multi-homing.** All local addresses are bound at once with `SCTP_SOCKOPT_BINDX_ADD`; the
//!   peer is reached with `SCTP_SOCKOPT_CONNECTX` listing all its addresses.
//! * **Notifications** `SCTP_ASSOC_CHANGE`, `SCTP_PEER_ADDR_CHANGE` and `SCTP_SHUTDOWN_EVENT`
//!   (subscribed with `SCTP_EVENT`) become [`Event`]s.
//! * `SCTP_NODELAY`, optional RTO (`SCTP_RTOINFO`) and heartbeat/path-retransmission
//!   (`SCTP_PEER_ADDR_PARAMS`) settings.
//!
//! ## Why not the `sctp-rs` crate
//!
//! `sctp-rs` 0.3.1 receives into a fixed 4 KiB buffer and hands back each partial-delivery
//! piece as if it were a message (a 256 KiB ASAP/application message arrives as 64 fragments);
//! it does not check the result of `socket()`, so a kernel without SCTP surfaces later as a
//! confusing `EBADF`; and it leaks the descriptor on some error paths. The API needed here is
//! small, so it is written directly on `libc`/`socket2` in [`super::sys`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, warn};

use super::error::{LostReason, TransportError};
use super::sys;
use super::{Event, Msg, PeerAddrState, TransportConfig};

/// Per-association SCTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctpOptions {
    /// Outbound streams requested and inbound streams accepted in INIT (`SCTP_INITMSG`).
    pub streams: u16,
    /// Retransmission timeout settings; `None` keeps the kernel defaults
    /// (initial 3 s, min 1 s, max 60 s, RFC 4960 §15).
    pub rto: Option<RtoConfig>,
    /// Heartbeat interval and path failure threshold; `None` keeps the kernel defaults
    /// (30 s, 5 retransmissions).
    pub paths: Option<PathConfig>,
    /// `SO_SNDBUF`/`SO_RCVBUF` in bytes; `None` sizes them for two maximum-size messages.
    pub buffer_size: Option<usize>,
}

impl Default for SctpOptions {
    fn default() -> Self {
        SctpOptions {
            streams: super::defaults::SCTP_STREAMS,
            rto: None,
            paths: None,
            buffer_size: None,
        }
    }
}

/// `SCTP_RTOINFO` values in milliseconds (RFC 6458 §8.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoConfig {
    /// RTO.Initial.
    pub initial_ms: u32,
    /// RTO.Max.
    pub max_ms: u32,
    /// RTO.Min.
    pub min_ms: u32,
}

impl RtoConfig {
    /// The values rsplib uses on PE↔PR associations (initial 750, max 1000, min 500 ms).
    pub const RSPLIB: RtoConfig = RtoConfig {
        initial_ms: super::defaults::RSPLIB_RTO_MS.0,
        max_ms: super::defaults::RSPLIB_RTO_MS.1,
        min_ms: super::defaults::RSPLIB_RTO_MS.2,
    };
}

/// `SCTP_PEER_ADDR_PARAMS` values (RFC 6458 §8.1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConfig {
    /// HB.interval in milliseconds (0 = leave heartbeats as they are).
    pub heartbeat_interval_ms: u32,
    /// Path.Max.Retrans: failures before a path is declared unreachable.
    pub path_max_retrans: u16,
}

fn domain_for(addrs: &[SocketAddr]) -> libc::c_int {
    if addrs.iter().any(SocketAddr::is_ipv6) {
        libc::AF_INET6
    } else {
        libc::AF_INET
    }
}

/// A new (non-blocking, one-to-one) SCTP socket for `addrs`' address family;
/// [`TransportError::SctpUnsupported`] when the kernel has no SCTP.
pub(super) fn open(addrs: &[SocketAddr]) -> Result<OwnedFd, TransportError> {
    sys::socket(domain_for(addrs)).map_err(|e| match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT) => {
            TransportError::SctpUnsupported { source: e }
        }
        _ => TransportError::io("socket(IPPROTO_SCTP)", e),
    })
}

/// Applies the socket options every SCTP socket of ours gets.
fn configure(fd: &OwnedFd, config: &TransportConfig) -> Result<(), TransportError> {
    let b = fd.as_fd();
    let on: libc::c_int = 1;
    let io = TransportError::io;
    if config.nodelay {
        sys::setsockopt(b, sys::SOL_SCTP, sys::SCTP_NODELAY, &on)
            .map_err(|e| io("setsockopt(SCTP_NODELAY)", e))?;
    }
    sys::setsockopt(b, sys::SOL_SCTP, sys::SCTP_RECVRCVINFO, &on)
        .map_err(|e| io("setsockopt(SCTP_RECVRCVINFO)", e))?;
    sys::subscribe_events(b).map_err(|e| io("setsockopt(SCTP_EVENT)", e))?;
    let init = sys::SctpInitmsg {
        sinit_num_ostreams: config.sctp.streams,
        sinit_max_instreams: config.sctp.streams,
        ..Default::default()
    };
    sys::setsockopt(b, sys::SOL_SCTP, sys::SCTP_INITMSG, &init)
        .map_err(|e| io("setsockopt(SCTP_INITMSG)", e))?;
    if let Some(rto) = config.sctp.rto {
        let v = sys::SctpRtoinfo {
            srto_assoc_id: 0,
            srto_initial: rto.initial_ms,
            srto_max: rto.max_ms,
            srto_min: rto.min_ms,
        };
        sys::setsockopt(b, sys::SOL_SCTP, sys::SCTP_RTOINFO, &v)
            .map_err(|e| io("setsockopt(SCTP_RTOINFO)", e))?;
    }
    if let Some(p) = config.sctp.paths {
        sys::set_path_params(b, p.heartbeat_interval_ms, p.path_max_retrans)
            .map_err(|e| io("setsockopt(SCTP_PEER_ADDR_PARAMS)", e))?;
    }
    let buf = config
        .sctp
        .buffer_size
        .unwrap_or((2 * config.max_message_size).max(256 * 1024));
    let sock = socket2::SockRef::from(fd);
    sock.set_send_buffer_size(buf)
        .map_err(|e| io("setsockopt(SO_SNDBUF)", e))?;
    sock.set_recv_buffer_size(buf)
        .map_err(|e| io("setsockopt(SO_RCVBUF)", e))?;
    Ok(())
}

/// A listening one-to-one SCTP socket bound to one or more local addresses.
pub(crate) struct SctpListener {
    fd: AsyncFd<OwnedFd>,
    config: Arc<TransportConfig>,
}

impl SctpListener {
    pub(crate) fn bind(
        addrs: &[SocketAddr],
        config: Arc<TransportConfig>,
        reuse_port: bool,
    ) -> Result<Self, TransportError> {
        let fd = open(addrs)?;
        socket2::SockRef::from(&fd)
            .set_reuse_address(true)
            .map_err(|e| TransportError::io("setsockopt(SO_REUSEADDR)", e))?;
        if reuse_port {
            socket2::SockRef::from(&fd)
                .set_reuse_port(true)
                .map_err(|e| TransportError::io("setsockopt(SO_REUSEPORT)", e))?;
        }
        configure(&fd, &config)?;
        sys::bindx_add(fd.as_fd(), addrs)
            .map_err(|e| TransportError::io("sctp_bindx(SCTP_BINDX_ADD_ADDR)", e))?;
        socket2::SockRef::from(&fd)
            .listen(128)
            .map_err(|e| TransportError::io("listen", e))?;
        let fd = sys::register(fd, Interest::READABLE)
            .map_err(|e| TransportError::io("register with tokio", e))?;
        Ok(SctpListener { fd, config })
    }

    pub(crate) fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        sys::get_addrs(self.fd.get_ref().as_fd(), false)
    }

    pub(crate) async fn accept(&self) -> Result<SctpAssoc, TransportError> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| TransportError::io("accept", e))?;
            match guard.try_io(|fd| sys::accept(fd.get_ref().as_fd())) {
                Ok(Ok(nfd)) => {
                    // Options are inherited from the listener on Linux; set them again so the
                    // association does not depend on that.
                    configure(&nfd, &self.config)?;
                    return SctpAssoc::new(nfd, self.config.clone());
                }
                Ok(Err(e)) if is_transient_accept_error(&e) => {
                    debug!(error = %e, "transient accept error");
                    continue;
                }
                Ok(Err(e)) => return Err(TransportError::io("accept", e)),
                Err(_would_block) => continue,
            }
        }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM)
    )
}

/// Connects to a (multi-homed) peer, optionally from several bound local addresses.
pub(crate) async fn connect(
    peers: &[SocketAddr],
    local: &[SocketAddr],
    config: Arc<TransportConfig>,
    reuse_port: bool,
) -> Result<SctpAssoc, TransportError> {
    let all: Vec<SocketAddr> = peers.iter().chain(local).copied().collect();
    let fd = open(&all)?;
    configure(&fd, &config)?;
    if reuse_port {
        let s = socket2::SockRef::from(&fd);
        s.set_reuse_address(true)
            .map_err(|e| TransportError::io("setsockopt(SO_REUSEADDR)", e))?;
        s.set_reuse_port(true)
            .map_err(|e| TransportError::io("setsockopt(SO_REUSEPORT)", e))?;
    }
    if !local.is_empty() {
        sys::bindx_add(fd.as_fd(), local)
            .map_err(|e| TransportError::io("sctp_bindx(SCTP_BINDX_ADD_ADDR)", e))?;
    }
    match sys::connectx(fd.as_fd(), peers) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => {
            return Err(TransportError::Connect {
                addrs: peers.to_vec(),
                source: e,
            })
        }
    }
    let afd = sys::register(fd, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| TransportError::io("register with tokio", e))?;
    let wait = async {
        let mut guard = afd.writable().await?;
        guard.retain_ready();
        match sys::take_error(afd.get_ref().as_fd())? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    };
    match tokio::time::timeout(config.connect_timeout, wait).await {
        Err(_) => {
            return Err(TransportError::ConnectTimeout {
                addrs: peers.to_vec(),
                after: config.connect_timeout,
            })
        }
        Ok(Err(e)) => {
            return Err(TransportError::Connect {
                addrs: peers.to_vec(),
                source: e,
            })
        }
        Ok(Ok(())) => {}
    }
    Ok(SctpAssoc {
        fd: Arc::new(afd),
        config,
    })
}

/// An established one-to-one SCTP association (before splitting).
pub(crate) struct SctpAssoc {
    fd: Arc<AsyncFd<OwnedFd>>,
    config: Arc<TransportConfig>,
}

impl SctpAssoc {
    fn new(fd: OwnedFd, config: Arc<TransportConfig>) -> Result<Self, TransportError> {
        let fd = sys::register(fd, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| TransportError::io("register with tokio", e))?;
        Ok(SctpAssoc {
            fd: Arc::new(fd),
            config,
        })
    }

    pub(crate) fn split(self) -> (SctpReader, SctpWriter) {
        let peer = sys::get_addrs(self.fd.get_ref().as_fd(), true)
            .ok()
            .and_then(|v| v.first().copied());
        (
            SctpReader {
                fd: self.fd.clone(),
                max: self.config.max_message_size,
                buf: vec![0; 64 * 1024],
                slots: vec![sys::RecvSlot::default(); sys::RECVMMSG_MAX],
                slot_next: 0,
                slot_count: 0,
                pending: Vec::new(),
                pending_notification: false,
                pending_info: None,
                up_reported: false,
                peer_shutdown: false,
                queued: None,
                done: false,
                peer,
            },
            SctpWriter {
                fd: self.fd,
                max: self.config.max_message_size,
            },
        )
    }
}

/// Receiving half: reassembles messages and notifications up to `MSG_EOR`.
pub(crate) struct SctpReader {
    fd: Arc<AsyncFd<OwnedFd>>,
    max: usize,
    /// Receive buffer, cut into [`sys::RECVMMSG_MAX`] slots of one `recvmmsg` call.
    buf: Vec<u8>,
    /// What each slot of the last `recvmmsg` received.
    slots: Vec<sys::RecvSlot>,
    /// The next slot to hand out, and how many the last call filled: pieces already read
    /// are taken from here before the socket is asked again (issue 15: one `recvmmsg` for
    /// a burst of requests instead of one `recvmsg` each).
    slot_next: usize,
    slot_count: usize,
    pending: Vec<u8>,
    pending_notification: bool,
    pending_info: Option<(u16, u32)>,
    up_reported: bool,
    /// The peer sent SHUTDOWN first (so SHUTDOWN_COMP means "peer closed").
    peer_shutdown: bool,
    queued: Option<Event>,
    done: bool,
    peer: Option<SocketAddr>,
}

enum Piece {
    /// A whole user message.
    Message(Msg),
    /// A whole notification (raw bytes).
    Notification(Vec<u8>),
    /// End of stream (a piece of 0 bytes that is no notification).
    Eof,
    /// More pieces needed.
    Partial,
    /// The message exceeded the maximum size; the association was shut down.
    TooLarge,
}

impl SctpReader {
    pub(crate) fn rtt(&self) -> io::Result<Option<Duration>> {
        srtt(&self.fd)
    }

    pub(crate) async fn recv(&mut self) -> Result<Event, TransportError> {
        if let Some(ev) = self.queued.take() {
            return Ok(ev);
        }
        if self.done {
            return Err(TransportError::Closed);
        }
        loop {
            let piece = self.read_piece().await;
            let ev = match piece {
                Err(e) => Some(self.lost(LostReason::from_io(&e))),
                Ok(Piece::Partial) => None,
                Ok(Piece::Eof) => Some(self.lost(LostReason::PeerClosed)),
                Ok(Piece::TooLarge) => {
                    Some(self.lost(LostReason::MessageTooLarge { max: self.max }))
                }
                Ok(Piece::Message(m)) => {
                    if !self.up_reported {
                        // The COMM_UP notification normally comes first; if the kernel did not
                        // deliver one, report Up before the first message anyway.
                        self.up_reported = true;
                        self.queued = Some(Event::Message(m));
                        Some(Event::Up {
                            outbound_streams: 0,
                            inbound_streams: 0,
                        })
                    } else {
                        Some(Event::Message(m))
                    }
                }
                Ok(Piece::Notification(n)) => self.notification(&n),
            };
            if let Some(ev) = ev {
                return Ok(ev);
            }
        }
    }

    fn lost(&mut self, reason: LostReason) -> Event {
        self.done = true;
        match &reason {
            LostReason::PeerClosed | LostReason::ShutdownComplete => {
                debug!(peer = ?self.peer, %reason, "SCTP association closed")
            }
            _ => warn!(peer = ?self.peer, %reason, "SCTP association lost"),
        }
        Event::Lost(reason)
    }

    async fn read_piece(&mut self) -> io::Result<Piece> {
        if self.slot_next >= self.slot_count {
            let mut guard = self.fd.readable().await?;
            let res = guard
                .try_io(|fd| sys::recvmmsg(fd.get_ref().as_fd(), &mut self.buf, &mut self.slots));
            self.slot_count = match res {
                Ok(r) => r?,
                Err(_would_block) => return Ok(Piece::Partial),
            };
            self.slot_next = 0;
        }
        let slot_len = self.buf.len() / self.slots.len();
        let start = self.slot_next * slot_len;
        let sys::RecvSlot {
            len: n,
            flags,
            info,
        } = self.slots[self.slot_next];
        self.slot_next += 1;
        let notification = flags & sys::MSG_NOTIFICATION != 0;
        if n == 0 && !notification {
            // End of stream; a partially delivered message, if any, can never complete.
            if !self.pending.is_empty() {
                debug!(peer = ?self.peer, bytes = self.pending.len(), "EOF inside a partially delivered message");
                self.pending.clear();
                self.pending_info = None;
            }
            self.slot_next = self.slot_count;
            return Ok(Piece::Eof);
        }
        if !self.pending.is_empty() && notification != self.pending_notification {
            // Linux does not interleave notifications with a partially delivered message;
            // if it ever did, the half-read piece cannot be trusted.
            warn!(peer = ?self.peer, "SCTP notification interleaved with a partial message; dropping the partial data");
            self.pending.clear();
            self.pending_info = None;
        }
        self.pending_notification = notification;
        if self.pending_info.is_none() {
            self.pending_info = info.info;
        }
        if self.pending.len() + n > self.max {
            self.pending.clear();
            self.slot_next = self.slot_count;
            // Drop the association: the rest of the message cannot be skipped safely.
            self.abort_socket();
            return Ok(Piece::TooLarge);
        }
        self.pending
            .extend_from_slice(&self.buf[start..start + n.min(slot_len)]);
        if flags & libc::MSG_EOR == 0 {
            return Ok(Piece::Partial);
        }
        let data = std::mem::take(&mut self.pending);
        let info = self.pending_info.take();
        if notification {
            return Ok(Piece::Notification(data));
        }
        let (stream, ppid) = info.unwrap_or((0, 0));
        Ok(Piece::Message(Msg {
            ppid,
            stream,
            bytes: data.into(),
        }))
    }

    fn abort_socket(&self) {
        let sock = socket2::SockRef::from(self.fd.get_ref());
        let _ = sock.set_linger(Some(Duration::ZERO));
        let _ = sys::shutdown(self.fd.get_ref().as_fd(), libc::SHUT_RDWR);
    }

    /// Turns a notification (RFC 6458 §6.1) into an event; `None` for ones not surfaced.
    fn notification(&mut self, n: &[u8]) -> Option<Event> {
        let u16_at = |o: usize| n.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        let i32_at = |o: usize| {
            n.get(o..o + 4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        match u16_at(0)? {
            sys::SCTP_ASSOC_CHANGE => {
                // struct sctp_assoc_change: type@0 flags@2 length@4 state@8 error@10
                // outbound_streams@12 inbound_streams@14 assoc_id@16
                let state = u16_at(8)?;
                let error = u16_at(10).unwrap_or(0);
                match state {
                    sys::SCTP_COMM_UP => {
                        if self.up_reported {
                            return None;
                        }
                        self.up_reported = true;
                        Some(Event::Up {
                            outbound_streams: u16_at(12).unwrap_or(0),
                            inbound_streams: u16_at(14).unwrap_or(0),
                        })
                    }
                    sys::SCTP_RESTART => Some(Event::Restarted),
                    sys::SCTP_COMM_LOST => Some(self.lost(LostReason::CommLost { error })),
                    sys::SCTP_SHUTDOWN_COMP if self.peer_shutdown => {
                        Some(self.lost(LostReason::PeerClosed))
                    }
                    sys::SCTP_SHUTDOWN_COMP => Some(self.lost(LostReason::ShutdownComplete)),
                    sys::SCTP_CANT_STR_ASSOC => Some(self.lost(LostReason::CannotStart { error })),
                    _ => None,
                }
            }
            sys::SCTP_PEER_ADDR_CHANGE => {
                // struct sctp_paddr_change (packed, aligned 4): type@0 flags@2 length@4
                // spc_aaddr@8 (sockaddr_storage, 128) spc_state@136 spc_error@140
                let (addr, _) = sys::parse_sockaddr(n.get(8..136)?)?;
                let state = PeerAddrState::from_raw(i32_at(136)?);
                let error = i32_at(140).unwrap_or(0);
                debug!(%addr, ?state, error, "SCTP peer address change");
                Some(Event::PeerAddrChange { addr, state, error })
            }
            sys::SCTP_SHUTDOWN_EVENT => {
                debug!(peer = ?self.peer, "peer sent SHUTDOWN");
                self.peer_shutdown = true;
                None
            }
            _ => None,
        }
    }
}

/// Sending half.
pub(crate) struct SctpWriter {
    fd: Arc<AsyncFd<OwnedFd>>,
    max: usize,
}

impl SctpWriter {
    pub(crate) async fn send(&self, msg: &Msg) -> Result<(), TransportError> {
        msg.check_len(self.max)?;
        loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|e| TransportError::io("sendmsg", e))?;
            match guard
                .try_io(|fd| sys::sendmsg(fd.get_ref().as_fd(), &msg.bytes, msg.stream, msg.ppid))
            {
                Ok(Ok(n)) if n == msg.bytes.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(TransportError::io(
                        "sendmsg",
                        io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("short SCTP send: {n} of {} bytes", msg.bytes.len()),
                        ),
                    ))
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(TransportError::MessageTooLarge {
                        len: msg.bytes.len(),
                        max: self.max,
                    })
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(TransportError::io("sendmsg", e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `msgs` in as few `sendmmsg` calls as possible (issue 15: one system call for a
    /// burst of answers instead of one `sendmsg` each), each message with its own stream and
    /// PPID, in order. A message over the maximum size (or refused with `EMSGSIZE`) is left
    /// out and the first such error returned after the others went out; an I/O error ends
    /// the batch at once.
    pub(crate) async fn send_batch(&self, msgs: &[Msg]) -> Result<(), TransportError> {
        let mut first_err = None;
        let mut rest = msgs;
        while !rest.is_empty() {
            // The run of sendable messages at the head of `rest`.
            let ok = rest
                .iter()
                .position(|m| m.bytes.len() > self.max)
                .unwrap_or(rest.len());
            if ok == 0 {
                first_err.get_or_insert(TransportError::MessageTooLarge {
                    len: rest[0].bytes.len(),
                    max: self.max,
                });
                rest = &rest[1..];
                continue;
            }
            let run = &rest[..ok];
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|e| TransportError::io("sendmmsg", e))?;
            let res = guard.try_io(|fd| sys::sendmmsg(fd.get_ref().as_fd(), run, msg_parts, true));
            match res {
                Ok(Ok((_, Some((i, n))))) => {
                    return Err(TransportError::io(
                        "sendmmsg",
                        io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("short SCTP send: {n} of {} bytes", run[i].bytes.len()),
                        ),
                    ))
                }
                Ok(Ok((sent, None))) => rest = &rest[sent..],
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    first_err.get_or_insert(TransportError::MessageTooLarge {
                        len: run[0].bytes.len(),
                        max: self.max,
                    });
                    rest = &rest[1..];
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(TransportError::io("sendmmsg", e)),
                Err(_would_block) => {}
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub(crate) fn close(&self) -> Result<(), TransportError> {
        sys::shutdown(self.fd.get_ref().as_fd(), libc::SHUT_WR)
            .map_err(|e| TransportError::io("shutdown", e))
    }

    /// Sets `SO_LINGER` to zero so that closing the socket sends ABORT (RFC 6458 §8.1.4).
    pub(crate) fn set_abort_on_close(&self) {
        let sock = socket2::SockRef::from(self.fd.get_ref());
        if let Err(e) = sock.set_linger(Some(Duration::ZERO)) {
            warn!(error = %e, "cannot set SO_LINGER for abort");
        }
    }

    pub(crate) fn peer_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        sys::get_addrs(self.fd.get_ref().as_fd(), true)
    }

    pub(crate) fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        sys::get_addrs(self.fd.get_ref().as_fd(), false)
    }
    pub(crate) fn rtt(&self) -> io::Result<Option<Duration>> {
        srtt(&self.fd)
    }
}

/// A message's bytes, stream and PPID for [`sys::sendmmsg`].
fn msg_parts(m: &Msg) -> (&[u8], u16, u32) {
    (&m.bytes[..], m.stream, m.ppid)
}

/// The primary path's smoothed RTT from `SCTP_STATUS` ([`sys::sctp_primary_srtt`]). Linux
/// reports it in jiffies, converted here with the kernel tick ([`sys::jiffy`]); rsplib
/// takes the raw number as ms, which is right only with `CONFIG_HZ=1000` (a Debian kernel
/// has 250: rsplib's distances are then 4 times too small).
fn srtt(fd: &AsyncFd<OwnedFd>) -> io::Result<Option<Duration>> {
    let Some(ticks) = sys::sctp_primary_srtt(fd.get_ref().as_fd())? else {
        return Ok(None);
    };
    Ok(Some(sys::jiffy()? * ticks))
}
