//! TCP backend: RSerPool messages framed by their own common header.
//!
//! RFC 5352/5353 define ASAP and ENRP over SCTP only; the TCP mapping draft
//! (draft-ietf-rserpool-tcpmapping) expired without a published shim header. This backend
//! therefore writes the RSerPool messages back to back on the stream, exactly as they would be
//! carried in SCTP DATA chunks, and cuts the stream at the common header's Message Length
//! (rounded up to 4 for the padding). This is what Wireshark expects on TCP port 3863.
//!
//! Consequences, all documented on [`super::Transport`]:
//! * the PPID is not carried: it is implied by the endpoint ([`super::TransportConfig::tcp_ppid`],
//!   ASAP 11 on port 3863, ENRP 12 on 9901), received messages carry it, and sending another
//!   PPID is refused;
//! * there is one ordered stream: received messages have stream 0, the stream of sent messages
//!   is not transmitted;
//! * a message is at most 65535 bytes plus padding (16-bit Message Length);
//! * a Message Length below 4 or above the maximum, or EOF inside a message, closes the
//!   association with a `warn!` naming the peer and the reason;
//! * a partial message (header or body started) that is not completed within
//!   [`super::TransportConfig::tcp_incomplete_message_timeout`] (default 30 s) closes the
//!   association the same way with [`FrameError::IncompleteTimeout`]. With the default maximum
//!   (65535 + 3) any 4 bytes whose length field is 4..=65535 form a plausible header, so this
//!   timeout is also what ends an association on which garbage announced a long message that
//!   never comes, or a peer that stops partway through a message while keeping TCP alive;
//! * the buffer of a partial message grows only as its bytes arrive (at most doubling, never
//!   to the announced length up front), and the buffer memory held for partial messages by
//!   all associations of one listener is bounded by
//!   [`super::TransportConfig::tcp_max_partial_bytes`] (default 16 MiB, issue 13 item 6): an
//!   association whose partial message cannot get budget is closed the same way with
//!   [`FrameError::PartialBudgetExhausted`], the others keep working.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::{debug, warn};

use super::defaults::MAX_RSERPOOL_MESSAGE;
use super::error::{FrameError, LostReason, TransportError};
use super::framing::{frame_len, outgoing_padding, HEADER_LEN};
use super::tls::PeerCertificate;
use super::{Event, Msg, TransportConfig};

/// The byte stream under the framing: a plain TCP stream or a TLS session on one
/// ([`super::tls`]; the framing runs inside TLS).
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS on TCP, with a second descriptor of the socket (for shutdown and `SO_LINGER`) and
    /// the peer's verified certificate, if it presented one.
    Tls(
        Box<tokio_rustls::TlsStream<TcpStream>>,
        Arc<socket2::Socket>,
        Option<PeerCertificate>,
    ),
}

/// Read side of a [`Stream`].
enum Rd {
    Plain(OwnedReadHalf),
    Tls(
        tokio::io::ReadHalf<Box<tokio_rustls::TlsStream<TcpStream>>>,
        Arc<socket2::Socket>,
    ),
}

/// Write side of a [`Stream`].
enum Wr {
    Plain(OwnedWriteHalf),
    Tls(
        tokio::io::WriteHalf<Box<tokio_rustls::TlsStream<TcpStream>>>,
        Arc<socket2::Socket>,
    ),
}

impl Rd {
    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Rd::Plain(r) => socket2::SockRef::from(r.as_ref()),
            Rd::Tls(_, s) => socket2::SockRef::from(&**s),
        }
    }
}

impl Wr {
    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Wr::Plain(w) => socket2::SockRef::from(w.as_ref()),
            Wr::Tls(_, s) => socket2::SockRef::from(&**s),
        }
    }
}

impl AsyncRead for Rd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Rd::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Rd::Tls(r, _) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wr {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wr::Plain(w) => Pin::new(w).poll_write(cx, buf),
            Wr::Tls(w, _) => Pin::new(w).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wr::Plain(w) => Pin::new(w).poll_flush(cx),
            Wr::Tls(w, _) => Pin::new(w).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wr::Plain(w) => Pin::new(w).poll_shutdown(cx),
            Wr::Tls(w, _) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Largest message this TCP endpoint accepts (configured maximum, at most 65535 + 3).
fn max_len(config: &TransportConfig) -> usize {
    config.max_message_size.min(MAX_RSERPOOL_MESSAGE)
}

pub(crate) fn configure(stream: &TcpStream, config: &TransportConfig) -> io::Result<()> {
    stream.set_nodelay(config.nodelay)?;
    if let Some(idle) = config.tcp_keepalive {
        let ka = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(idle / 3 + Duration::from_millis(1))
            .with_retries(3);
        socket2::SockRef::from(stream).set_tcp_keepalive(&ka)?;
    }
    Ok(())
}

/// Bytes read at once into an empty buffer, and the smallest growth of a partial message's
/// buffer.
const READ_CHUNK: usize = 4096;

/// Budget of buffer memory for partial messages, shared by the associations of one listener
/// ([`TransportConfig::tcp_max_partial_bytes`]).
#[derive(Debug)]
pub(crate) struct PartialBudget {
    used: AtomicUsize,
    cap: Option<usize>,
}

impl PartialBudget {
    pub(crate) fn new(cap: Option<usize>) -> Arc<Self> {
        Arc::new(PartialBudget {
            used: AtomicUsize::new(0),
            cap,
        })
    }

    /// Takes `n` more bytes if the budget has room for them.
    fn try_take(&self, n: usize) -> bool {
        let Some(cap) = self.cap else {
            self.used.fetch_add(n, Ordering::Relaxed);
            return true;
        };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= cap)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Listening TCP sockets, one per local address.
pub(crate) struct TcpListeners {
    listeners: Vec<TcpListener>,
    config: Arc<TransportConfig>,
    /// Shared by every association accepted here.
    budget: Arc<PartialBudget>,
}

impl TcpListeners {
    pub(crate) fn bind(
        addrs: &[SocketAddr],
        config: Arc<TransportConfig>,
        reuse_port: bool,
    ) -> Result<Self, TransportError> {
        let mut listeners: Vec<TcpListener> = Vec::with_capacity(addrs.len());
        for a in addrs {
            // With port 0, every address gets the port chosen for the first one.
            let mut a = *a;
            if a.port() == 0 {
                if let Some(first) = listeners.first() {
                    let port = first
                        .local_addr()
                        .map_err(|e| TransportError::io("getsockname", e))?
                        .port();
                    a.set_port(port);
                }
            }
            let sock = if a.is_ipv6() {
                TcpSocket::new_v6()
            } else {
                TcpSocket::new_v4()
            }
            .map_err(|e| TransportError::io("socket(TCP)", e))?;
            sock.set_reuseaddr(true)
                .map_err(|e| TransportError::io("setsockopt(SO_REUSEADDR)", e))?;
            if reuse_port {
                sock.set_reuseport(true)
                    .map_err(|e| TransportError::io("setsockopt(SO_REUSEPORT)", e))?;
            }
            sock.bind(a).map_err(|e| TransportError::io("bind", e))?;
            listeners.push(
                sock.listen(128)
                    .map_err(|e| TransportError::io("listen", e))?,
            );
        }
        let budget = PartialBudget::new(config.tcp_max_partial_bytes);
        Ok(TcpListeners {
            listeners,
            config,
            budget,
        })
    }

    /// Bytes now held for partial messages by the associations accepted here.
    pub(crate) fn partial_bytes(&self) -> usize {
        self.budget.used()
    }

    pub(crate) fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(TcpListener::local_addr).collect()
    }

    pub(crate) async fn accept(&self) -> Result<TcpAssoc, TransportError> {
        let stream = self.accept_stream().await?;
        TcpAssoc::new(
            Stream::Plain(stream),
            self.config.clone(),
            self.budget.clone(),
        )
    }

    /// The next accepted and configured TCP stream (no framing yet; [`super::tls`] runs the
    /// handshake on it first).
    pub(crate) async fn accept_stream(&self) -> Result<TcpStream, TransportError> {
        loop {
            let (stream, peer) = std::future::poll_fn(|cx| {
                for l in &self.listeners {
                    if let std::task::Poll::Ready(r) = l.poll_accept(cx) {
                        return std::task::Poll::Ready(r);
                    }
                }
                std::task::Poll::Pending
            })
            .await
            .map_err(|e| TransportError::io("accept", e))?;
            if let Err(e) = configure(&stream, &self.config) {
                debug!(%peer, error = %e, "dropping accepted TCP connection");
                continue;
            }
            return Ok(stream);
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Arc<TransportConfig> {
        &self.config
    }

    /// The partial-message budget shared by the associations accepted here.
    pub(crate) fn budget(&self) -> &Arc<PartialBudget> {
        &self.budget
    }
}

/// Connects to the first reachable address of `peers` (in order), from `local[0]` if given.
pub(crate) async fn connect(
    peers: &[SocketAddr],
    local: &[SocketAddr],
    config: Arc<TransportConfig>,
    reuse_port: bool,
) -> Result<TcpAssoc, TransportError> {
    let stream = connect_stream(peers, local, &config, reuse_port).await?;
    let budget = PartialBudget::new(config.tcp_max_partial_bytes);
    TcpAssoc::new(Stream::Plain(stream), config, budget)
}

/// Connects and configures a TCP stream (no framing yet), see [`connect`].
pub(crate) async fn connect_stream(
    peers: &[SocketAddr],
    local: &[SocketAddr],
    config: &Arc<TransportConfig>,
    reuse_port: bool,
) -> Result<TcpStream, TransportError> {
    let mut last: Option<TransportError> = None;
    for peer in peers {
        let attempt = async {
            let sock = if peer.is_ipv6() {
                TcpSocket::new_v6()
            } else {
                TcpSocket::new_v4()
            }?;
            if let Some(l) = local.iter().find(|l| l.is_ipv6() == peer.is_ipv6()) {
                if reuse_port {
                    sock.set_reuseaddr(true)?;
                    sock.set_reuseport(true)?;
                }
                sock.bind(*l)?;
            }
            sock.connect(*peer).await
        };
        match tokio::time::timeout(config.connect_timeout, attempt).await {
            Ok(Ok(stream)) => {
                configure(&stream, config).map_err(|e| TransportError::io("setsockopt", e))?;
                return Ok(stream);
            }
            Ok(Err(e)) => {
                last = Some(TransportError::Connect {
                    addrs: vec![*peer],
                    source: e,
                })
            }
            Err(_) => {
                last = Some(TransportError::ConnectTimeout {
                    addrs: vec![*peer],
                    after: config.connect_timeout,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| TransportError::BadAddresses("no peer address".into())))
}

/// An established TCP association (before splitting).
pub(crate) struct TcpAssoc {
    stream: Stream,
    peer: SocketAddr,
    local: SocketAddr,
    config: Arc<TransportConfig>,
    budget: Arc<PartialBudget>,
}

impl TcpAssoc {
    pub(crate) fn new(
        stream: Stream,
        config: Arc<TransportConfig>,
        budget: Arc<PartialBudget>,
    ) -> Result<Self, TransportError> {
        let tcp = match &stream {
            Stream::Plain(s) => s,
            Stream::Tls(s, _, _) => s.get_ref().0,
        };
        let peer = tcp
            .peer_addr()
            .map_err(|e| TransportError::io("getpeername", e))?;
        let local = tcp
            .local_addr()
            .map_err(|e| TransportError::io("getsockname", e))?;
        Ok(TcpAssoc {
            stream,
            peer,
            local,
            config,
            budget,
        })
    }

    pub(crate) fn split(self) -> (TcpReader, TcpWriter) {
        let (rd, wr, peer_cert) = match self.stream {
            Stream::Plain(s) => {
                let (rd, wr) = s.into_split();
                (Rd::Plain(rd), Wr::Plain(wr), None)
            }
            Stream::Tls(s, sock, cert) => {
                let (rd, wr) = tokio::io::split(s);
                (Rd::Tls(rd, sock.clone()), Wr::Tls(wr, sock), cert)
            }
        };
        let max = max_len(&self.config);
        (
            TcpReader {
                rd,
                buf: BytesMut::new(),
                ppid: self.config.tcp_ppid,
                max,
                peer: self.peer,
                incomplete_timeout: self.config.tcp_incomplete_message_timeout,
                partial_since: None,
                budget: self.budget,
                charged: 0,
                up_reported: false,
                done: false,
            },
            TcpWriter {
                wr,
                ppid: self.config.tcp_ppid,
                max,
                peer: self.peer,
                local: self.local,
                peer_cert,
            },
        )
    }
}

/// Receiving half: cuts the byte stream into messages.
pub(crate) struct TcpReader {
    rd: Rd,
    buf: BytesMut,
    ppid: u32,
    max: usize,
    peer: SocketAddr,
    /// See [`TransportConfig::tcp_incomplete_message_timeout`].
    incomplete_timeout: Option<Duration>,
    /// When the first byte of the message now partly in `buf` was seen (`None` if `buf` is
    /// empty).
    partial_since: Option<tokio::time::Instant>,
    /// The listener's partial-message budget ([`TransportConfig::tcp_max_partial_bytes`]).
    budget: Arc<PartialBudget>,
    /// Bytes of `budget` this reader holds: the capacity of `buf` while it holds a partial
    /// message, 0 otherwise.
    charged: usize,
    up_reported: bool,
    done: bool,
}

/// `tcpi_rtt` of `TCP_INFO` ([`sys::tcp_srtt_us`]), microseconds.
fn srtt(sock: socket2::SockRef<'_>) -> io::Result<Option<Duration>> {
    use std::os::fd::AsFd;
    Ok(super::sys::tcp_srtt_us(sock.as_fd())?.map(|us| Duration::from_micros(u64::from(us))))
}

impl TcpReader {
    pub(crate) fn rtt(&self) -> io::Result<Option<Duration>> {
        srtt(self.rd.sock())
    }

    pub(crate) async fn recv(&mut self) -> Result<Event, TransportError> {
        if self.done {
            return Err(TransportError::Closed);
        }
        if !self.up_reported {
            self.up_reported = true;
            return Ok(Event::Up {
                outbound_streams: 1,
                inbound_streams: 1,
            });
        }
        loop {
            if self.buf.len() >= HEADER_LEN {
                let header = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
                match frame_len(header, self.max) {
                    Err(e) => return Ok(self.lost(LostReason::Framing(e))),
                    Ok(need) if self.buf.len() >= need => {
                        let bytes = self.buf.split_to(need).freeze();
                        // The clock of a following partial message starts now, not when its
                        // bytes arrived together with this one.
                        self.partial_since = (!self.buf.is_empty()).then(tokio::time::Instant::now);
                        return Ok(Event::Message(Msg {
                            ppid: self.ppid,
                            stream: 0,
                            bytes,
                        }));
                    }
                    Ok(need) => self.grow(need),
                }
            } else if self.buf.is_empty() {
                if self.buf.capacity() < HEADER_LEN {
                    self.buf = BytesMut::with_capacity(READ_CHUNK);
                }
            } else {
                self.grow(HEADER_LEN);
            }
            if self.buf.is_empty() {
                self.partial_since = None;
                self.charge(0);
            } else {
                if self.partial_since.is_none() {
                    self.partial_since = Some(tokio::time::Instant::now());
                }
                if !self.charge(self.buf.capacity()) {
                    return Ok(self.budget_exhausted());
                }
            }
            let deadline = match (self.partial_since, self.incomplete_timeout) {
                (Some(since), Some(after)) => Some(since + after),
                _ => None,
            };
            let read = self.rd.read_buf(&mut self.buf);
            // `timeout_at` polls the read before the timer, so bytes already waiting in the
            // socket are taken even if the deadline has passed (e.g. `recv` not polled).
            let res = match deadline {
                Some(d) => match tokio::time::timeout_at(d, read).await {
                    Ok(r) => r,
                    Err(_elapsed) => return Ok(self.incomplete_timeout()),
                },
                None => read.await,
            };
            match res {
                Ok(0) if self.buf.is_empty() => return Ok(self.lost(LostReason::PeerClosed)),
                Ok(0) => {
                    let (have, need) = self.pending();
                    return Ok(self.lost(LostReason::Framing(FrameError::Truncated { have, need })));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(self.lost(LostReason::from_io(&e))),
            }
        }
    }

    /// Makes room in `buf` for more of a partial message that needs `need` bytes in all: when
    /// `buf` is full, a new buffer of exactly the current length plus
    /// `max(READ_CHUNK, length)` (at most what is still missing) — the buffer grows as the
    /// bytes arrive, never to the announced length before they do.
    fn grow(&mut self, need: usize) {
        let len = self.buf.len();
        if self.buf.capacity() > len || need <= len {
            return;
        }
        let more = (need - len).min(len.max(READ_CHUNK));
        let mut grown = BytesMut::with_capacity(len + more);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
    }

    /// Sets this reader's share of the listener budget to `bytes`; `false` (nothing changed)
    /// if the budget has no room for the increase.
    fn charge(&mut self, bytes: usize) -> bool {
        if bytes > self.charged {
            if !self.budget.try_take(bytes - self.charged) {
                return false;
            }
        } else {
            self.budget.give_back(self.charged - bytes);
        }
        self.charged = bytes;
        true
    }

    /// Ends the association because its partial message cannot get budget.
    fn budget_exhausted(&mut self) -> Event {
        let (have, need) = self.pending();
        let budget = self.budget.cap.unwrap_or(usize::MAX);
        self.lost(LostReason::Framing(FrameError::PartialBudgetExhausted {
            peer: self.peer,
            have,
            need,
            budget,
        }))
    }

    /// Bytes of the partial message in `buf` and bytes it needs (with padding; 4 while the
    /// header is incomplete).
    fn pending(&self) -> (usize, usize) {
        let need = if self.buf.len() >= HEADER_LEN {
            super::framing::padded(usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])))
        } else {
            HEADER_LEN
        };
        (self.buf.len(), need)
    }

    /// Ends the association because a partial message waited longer than the configured
    /// incomplete-message timeout.
    fn incomplete_timeout(&mut self) -> Event {
        let (have, need) = self.pending();
        let msg_type = (have >= HEADER_LEN).then(|| self.buf[0]);
        let after = self.incomplete_timeout.unwrap_or_default();
        self.lost(LostReason::Framing(FrameError::IncompleteTimeout {
            peer: self.peer,
            msg_type,
            have,
            need,
            after,
        }))
    }

    /// Reports the association lost. On a framing error (including the incomplete-message
    /// timeout) the socket is also shut down in both directions at once, so the peer sees the
    /// close even while the application still holds the association halves.
    fn lost(&mut self, reason: LostReason) -> Event {
        self.done = true;
        // Free the buffer and give its budget back.
        self.buf = BytesMut::new();
        self.charge(0);
        self.partial_since = None;
        if reason == LostReason::PeerClosed {
            debug!(peer = %self.peer, "TCP association closed by peer");
        } else {
            warn!(peer = %self.peer, %reason, "closing TCP association");
        }
        if matches!(reason, LostReason::Framing(_)) {
            if let Err(e) = self.rd.sock().shutdown(std::net::Shutdown::Both) {
                debug!(peer = %self.peer, error = %e, "shutdown after framing error failed");
            }
        }
        Event::Lost(reason)
    }
}

impl Drop for TcpReader {
    fn drop(&mut self) {
        self.charge(0);
    }
}

/// Sending half.
pub(crate) struct TcpWriter {
    wr: Wr,
    ppid: u32,
    max: usize,
    peer: SocketAddr,
    local: SocketAddr,
    peer_cert: Option<PeerCertificate>,
}

impl TcpWriter {
    pub(crate) fn rtt(&self) -> io::Result<Option<Duration>> {
        srtt(self.wr.sock())
    }

    pub(crate) async fn send(&mut self, msg: &Msg) -> Result<(), TransportError> {
        if msg.ppid != self.ppid {
            return Err(TransportError::PpidMismatch {
                ppid: msg.ppid,
                expected: self.ppid,
            });
        }
        if msg.bytes.len() > super::framing::padded(self.max) {
            return Err(TransportError::MessageTooLarge {
                len: msg.bytes.len(),
                max: self.max,
            });
        }
        let pad = outgoing_padding(&msg.bytes)?;
        let total = msg.bytes.len() + pad;
        let res = if pad == 0 {
            self.wr.write_all(&msg.bytes).await
        } else {
            let mut v = Vec::with_capacity(total);
            v.extend_from_slice(&msg.bytes);
            v.resize(total, 0);
            self.wr.write_all(&v).await
        };
        res.map_err(|e| TransportError::io("write", e))
    }

    /// Several messages in one write from `buf` (cleared and reused). A message that
    /// cannot be sent (PPID, size, length field) is left out; the first such error is
    /// returned after the others were written.
    pub(crate) async fn send_batch(
        &mut self,
        msgs: &[Msg],
        buf: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        buf.clear();
        let mut first_err = None;
        for msg in msgs {
            let checked = if msg.ppid != self.ppid {
                Err(TransportError::PpidMismatch {
                    ppid: msg.ppid,
                    expected: self.ppid,
                })
            } else if msg.bytes.len() > super::framing::padded(self.max) {
                Err(TransportError::MessageTooLarge {
                    len: msg.bytes.len(),
                    max: self.max,
                })
            } else {
                outgoing_padding(&msg.bytes).map_err(TransportError::from)
            };
            match checked {
                Ok(pad) => {
                    buf.extend_from_slice(&msg.bytes);
                    buf.resize(buf.len() + pad, 0);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !buf.is_empty() {
            self.wr
                .write_all(buf)
                .await
                .map_err(|e| TransportError::io("write", e))?;
        }
        first_err.map_or(Ok(()), Err)
    }

    pub(crate) async fn close(&mut self) -> Result<(), TransportError> {
        self.wr
            .shutdown()
            .await
            .map_err(|e| TransportError::io("shutdown", e))
    }

    /// Sets `SO_LINGER` to zero so that closing sends RST.
    pub(crate) fn set_abort_on_close(&self) {
        if let Err(e) = self.wr.sock().set_linger(Some(Duration::ZERO)) {
            warn!(error = %e, "cannot set SO_LINGER for abort");
        }
    }

    /// Drops the write half without sending FIN (used by abort).
    pub(crate) fn forget(self) {
        match self.wr {
            Wr::Plain(w) => w.forget(),
            // Dropping a TLS write half sends nothing (no close_notify, no FIN).
            Wr::Tls(..) => {}
        }
    }

    /// The peer's verified TLS certificate (TLS associations whose peer presented one).
    pub(crate) fn peer_certificate(&self) -> Option<&PeerCertificate> {
        self.peer_cert.as_ref()
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }
}
