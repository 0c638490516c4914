//! TLS over SCTP associations, kernel SCTP and `sctp-udp` (RFC 3436 in the reduced form issue
//! 13 allows; the wire format is in `SECURITY.md` "TLS over SCTP" and `asap/wire/INTEROP.md`
//! §9).
//!
//! * **One TLS session per association, on stream 0.** After the SCTP association is up, the
//!   client (the side that connected) sends the ClientHello. Every TLS record of either side
//!   travels in SCTP user messages on stream 0, ordered, with the endpoint's PPID (11 ASAP,
//!   12 ENRP); one user message carries one or more *whole* records (at most
//!   [`MAX_RECORDS_MESSAGE`] bytes). A receiver treats the user messages of the association
//!   in order as one TLS byte stream (it does not rely on record boundaries), so a peer may
//!   also split records.
//! * **RSerPool messages inside TLS are framed as over TCP**: the plaintext is a byte stream
//!   of whole RSerPool messages cut at the common header's Message Length, padded to 4
//!   (RFC 5352/5353 §2.1, [`super::framing`]); the PPID of a message is the endpoint's
//!   ([`super::TransportConfig::tcp_ppid`]), as over TCP. Only that PPID may be sent; the
//!   stream given to `send` is ignored. This differs from RFC 3436 §3 (which keeps a TLS
//!   connection per stream pair and preserves user-message boundaries and PPIDs), and is
//!   enough for ASAP and ENRP, which use stream 0 and one PPID per port.
//! * Anything else on a TLS association (a user message on another stream, a message after
//!   the peer's close_notify, a TLS alert, bytes that do not frame) ends it: the reader
//!   reports [`Event::Lost`] with [`LostReason::Tls`] and the association is aborted.
//! * Listeners run each handshake in a task of its own within
//!   [`TlsContext::handshake_timeout`] and at most
//!   [`MAX_CONCURRENT_HANDSHAKES`](super::tls::MAX_CONCURRENT_HANDSHAKES) at a time; the
//!   first user message decides: a TLS handshake record (first byte 0x16) starts TLS, anything
//!   else is a plaintext association under [`ClientAuth::Optional`] (rsplib PEs on the TLS
//!   ASAP port, the message is delivered as usual) and refused under
//!   [`ClientAuth::Required`]. Refusals are logged at `warn` and counted like those of TLS
//!   over TCP ([`super::Listener::tls_refused`]).
//! * An SCTP restart (`SCTP_RESTART`) loses the peer's TLS state: on a TLS association it is
//!   reported as [`Event::Lost`] ([`LostReason::Tls`]).
//!
//! Events other than messages (`Up`, peer address changes) pass through unchanged; `Up` is
//! reported first as on every association.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::error::{LostReason, TransportError};
use super::framing::{frame_len, outgoing_padding, padded, HEADER_LEN};
use super::tls::{
    ClientAuth, Handshaker, PeerCertificate, TlsContext, TlsListener, TLS_HANDSHAKE_RECORD,
};
use super::{AssocReader, AssocWriter, Association, Event, Listener, Msg, TransportKind};

/// Most bytes of TLS records one SCTP user message carries (several whole records; a record
/// is at most 2^14 + 256 bytes in TLS 1.3, 2^14 + 2048 in TLS 1.2).
pub const MAX_RECORDS_MESSAGE: usize = 64 * 1024;

/// Largest RSerPool message inside TLS (as over TCP: the 16-bit Message Length).
const MAX_RSERPOOL_MESSAGE: usize = 65535 + 3;

/// State shared by the two halves of a TLS-over-SCTP association.
struct Shared {
    /// The SCTP writer. Whoever takes TLS records out of `conn` holds this lock while doing
    /// so and while sending them, so records leave in the order rustls produced them.
    out: Mutex<AssocWriter>,
    /// The TLS session; `None` for a plaintext association of an optional-TLS listener.
    conn: Option<std::sync::Mutex<Connection>>,
    /// The endpoint's PPID: of the messages inside TLS and of the SCTP user messages that
    /// carry the records.
    ppid: u32,
    peer: SocketAddr,
}

impl Shared {
    /// Takes every pending TLS record out of the session (the caller holds `out`).
    fn take_records(&self) -> Result<Vec<u8>, String> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let mut conn = conn
            .lock()
            .map_err(|_| "TLS session poisoned".to_string())?;
        let mut v = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut v).map_err(|e| e.to_string())?;
        }
        Ok(v)
    }

    /// Sends pending TLS records (the caller holds `out`, passed in as `w`).
    async fn flush(&self, w: &mut AssocWriter) -> Result<(), TransportError> {
        let records = self.take_records().map_err(|detail| TransportError::Tls {
            peer: self.peer,
            detail,
        })?;
        send_records(w, self.ppid, &records).await
    }
}

/// Sends TLS records as SCTP user messages on stream 0: whole records, at most
/// [`MAX_RECORDS_MESSAGE`] bytes per message (a single larger record goes alone).
async fn send_records(
    w: &mut AssocWriter,
    ppid: u32,
    records: &[u8],
) -> Result<(), TransportError> {
    for chunk in record_chunks(records) {
        // Boxed: `AssocWriter::send` may itself be a TLS-over-SCTP send (recursive type).
        Box::pin(w.send(&Msg::new(ppid, 0, Bytes::copy_from_slice(chunk)))).await?;
    }
    Ok(())
}

/// Cuts a run of TLS records into pieces of whole records of at most [`MAX_RECORDS_MESSAGE`]
/// bytes (a record longer than that alone; trailing bytes that are not a whole record go
/// into the last piece, which cannot happen with rustls' output).
pub(crate) fn record_chunks(records: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < records.len() {
        let len = match records.get(at + 3..at + 5) {
            Some(l) => 5 + usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => records.len() - at,
        };
        let len = len.min(records.len() - at);
        if at > start && at + len - start > MAX_RECORDS_MESSAGE {
            out.push(&records[start..at]);
            start = at;
        }
        at += len;
    }
    if at > start {
        out.push(&records[start..at]);
    }
    out
}

/// Feeds one SCTP user message of TLS records to the session and appends the plaintext it
/// yields to `plain` (at most `limit` bytes in all). `Err` names a TLS failure; an alert
/// rustls wants to send is left in the session for the next flush.
fn feed(
    conn: &mut Connection,
    mut data: &[u8],
    plain: &mut BytesMut,
    limit: usize,
) -> Result<bool, String> {
    let mut closed = false;
    while !data.is_empty() {
        conn.read_tls(&mut data).map_err(|e| e.to_string())?;
        let state = conn.process_new_packets().map_err(|e| e.to_string())?;
        closed |= state.peer_has_closed();
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            if plain.len() + n > limit {
                return Err(format!(
                    "more than {limit} bytes of plaintext without a whole message"
                ));
            }
            let at = plain.len();
            plain.resize(at + n, 0);
            conn.reader()
                .read_exact(&mut plain[at..])
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(closed)
}

/// Receiving half of a TLS-over-SCTP association.
pub(crate) struct TlsSctpReader {
    inner: AssocReader,
    shared: Arc<Shared>,
    /// Events read during the handshake (`Up`, address changes), reported first.
    pending: VecDeque<Event>,
    /// Plaintext not yet cut into messages.
    plain: BytesMut,
    max: usize,
    done: bool,
}

impl TlsSctpReader {
    /// The smoothed round-trip time of the SCTP association underneath.
    pub(crate) fn rtt(&self) -> Result<Option<std::time::Duration>, TransportError> {
        self.inner.rtt()
    }

    pub(crate) async fn recv(&mut self) -> Result<Event, TransportError> {
        if let Some(ev) = self.pending.pop_front() {
            if matches!(ev, Event::Lost(_)) {
                self.done = true;
            }
            return Ok(ev);
        }
        if self.done {
            return Err(TransportError::Closed);
        }
        if self.shared.conn.is_none() {
            let ev = Box::pin(self.inner.recv()).await;
            if matches!(ev, Ok(Event::Lost(_)) | Err(_)) {
                self.done = true;
            }
            return ev;
        }
        loop {
            match self.next_plain() {
                Ok(Some(m)) => return Ok(Event::Message(m)),
                Ok(None) => {}
                Err(detail) => return Ok(self.fail(detail)),
            }
            let ev = match Box::pin(self.inner.recv()).await {
                Ok(ev) => ev,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            match ev {
                Event::Message(m) => {
                    if m.stream != 0 {
                        return Ok(self.fail(format!(
                            "user message on stream {} (TLS runs on stream 0 only)",
                            m.stream
                        )));
                    }
                    let res = {
                        let Some(conn) = &self.shared.conn else {
                            unreachable!("checked above")
                        };
                        match conn.lock() {
                            Ok(mut c) => {
                                let r = feed(&mut c, &m.bytes, &mut self.plain, self.max * 2);
                                let wants = c.wants_write();
                                r.map(|closed| (closed, wants))
                            }
                            Err(_) => Err("TLS session poisoned".into()),
                        }
                    };
                    match res {
                        Ok((closed, wants_write)) => {
                            if wants_write {
                                // Post-handshake answers (key updates): sent by a task of
                                // their own so that a cancelled `recv` cannot lose them.
                                let shared = self.shared.clone();
                                tokio::spawn(async move {
                                    let mut w = shared.out.lock().await;
                                    if let Err(e) = shared.flush(&mut w).await {
                                        debug!(error = %e, "TLS over SCTP: flush failed");
                                    }
                                });
                            }
                            if closed {
                                if let Ok(Some(m)) = self.next_plain() {
                                    self.pending.push_back(Event::Lost(LostReason::PeerClosed));
                                    return Ok(Event::Message(m));
                                }
                                self.done = true;
                                debug!(peer = %self.shared.peer, "TLS over SCTP: close_notify");
                                return Ok(Event::Lost(LostReason::PeerClosed));
                            }
                        }
                        Err(detail) => return Ok(self.fail(detail)),
                    }
                }
                Event::Restarted => {
                    return Ok(self.fail("the peer restarted the association".into()));
                }
                Event::Lost(r) => {
                    self.done = true;
                    return Ok(Event::Lost(r));
                }
                other => return Ok(other),
            }
        }
    }

    /// The next whole message in the plaintext, if any.
    fn next_plain(&mut self) -> Result<Option<Msg>, String> {
        if self.plain.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = [self.plain[0], self.plain[1], self.plain[2], self.plain[3]];
        let need = frame_len(header, self.max).map_err(|e| e.to_string())?;
        if self.plain.len() < need {
            return Ok(None);
        }
        Ok(Some(Msg {
            ppid: self.shared.ppid,
            stream: 0,
            bytes: self.plain.split_to(need).freeze(),
        }))
    }

    /// Ends the association after a TLS failure: a pending alert is sent, then the SCTP
    /// association is aborted.
    fn fail(&mut self, detail: String) -> Event {
        self.done = true;
        self.plain = BytesMut::new();
        warn!(peer = %self.shared.peer, %detail, "TLS over SCTP: closing association");
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut w = shared.out.lock().await;
            let _ = shared.flush(&mut w).await;
            w.abort_in_place();
        });
        Event::Lost(LostReason::Tls { detail })
    }
}

/// Sending half of a TLS-over-SCTP association.
pub(crate) struct TlsSctpWriter {
    shared: Arc<Shared>,
    peer_cert: Option<PeerCertificate>,
    peers: Vec<SocketAddr>,
    locals: Vec<SocketAddr>,
    kind: TransportKind,
    max: usize,
}

impl TlsSctpWriter {
    /// Checks a message for the framing inside TLS; returns its padding.
    fn check(&self, msg: &Msg) -> Result<usize, TransportError> {
        if msg.ppid != self.shared.ppid {
            return Err(TransportError::PpidMismatch {
                ppid: msg.ppid,
                expected: self.shared.ppid,
            });
        }
        if msg.bytes.len() > padded(self.max) {
            return Err(TransportError::MessageTooLarge {
                len: msg.bytes.len(),
                max: self.max,
            });
        }
        Ok(outgoing_padding(&msg.bytes)?)
    }

    pub(crate) async fn send(&self, msg: &Msg) -> Result<(), TransportError> {
        self.send_batch(std::slice::from_ref(msg)).await
    }

    /// Several messages: all written into the session, then their records sent.
    pub(crate) async fn send_batch(&self, msgs: &[Msg]) -> Result<(), TransportError> {
        let mut w = self.shared.out.lock().await;
        let Some(conn) = &self.shared.conn else {
            // Plaintext association of an optional-TLS listener.
            let mut first_err = None;
            for m in msgs {
                if let Err(e) = Box::pin(w.send(m)).await {
                    first_err.get_or_insert(e);
                }
            }
            return first_err.map_or(Ok(()), Err);
        };
        let mut first_err = None;
        {
            let mut c = conn.lock().map_err(|_| TransportError::Tls {
                peer: self.shared.peer,
                detail: "TLS session poisoned".into(),
            })?;
            for m in msgs {
                match self.check(m) {
                    Ok(pad) => {
                        let mut wr = c.writer();
                        let res = wr
                            .write_all(&m.bytes)
                            .and_then(|_| wr.write_all(&[0u8; 3][..pad]));
                        if let Err(e) = res {
                            return Err(TransportError::io("TLS write", e));
                        }
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        self.shared.flush(&mut w).await?;
        first_err.map_or(Ok(()), Err)
    }

    /// Sends close_notify, then closes the SCTP association gracefully.
    pub(crate) async fn close(&self) -> Result<(), TransportError> {
        let mut w = self.shared.out.lock().await;
        if let Some(conn) = &self.shared.conn {
            if let Ok(mut c) = conn.lock() {
                c.send_close_notify();
            }
            let _ = self.shared.flush(&mut w).await;
        }
        Box::pin(w.close()).await
    }

    /// Abort when the association closes (SCTP ABORT).
    pub(crate) fn set_abort_on_close(&self) {
        match self.shared.out.try_lock() {
            Ok(w) => w.abort_in_place(),
            Err(_) => {
                // The writer is busy (a send in progress): mark it once that ends.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let shared = self.shared.clone();
                    rt.spawn(async move { shared.out.lock().await.abort_in_place() });
                }
            }
        }
    }

    pub(crate) fn peer_certificate(&self) -> Option<&PeerCertificate> {
        self.peer_cert.as_ref()
    }

    pub(crate) fn peer_addrs(&self) -> Vec<SocketAddr> {
        match self.shared.out.try_lock() {
            Ok(w) => w.peer_addrs().unwrap_or_else(|_| self.peers.clone()),
            Err(_) => self.peers.clone(),
        }
    }

    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        match self.shared.out.try_lock() {
            Ok(w) => w.local_addrs().unwrap_or_else(|_| self.locals.clone()),
            Err(_) => self.locals.clone(),
        }
    }

    pub(crate) fn kind(&self) -> TransportKind {
        self.kind
    }
}

/// An SCTP association whose TLS handshake is under way: its halves, the endpoint's PPID,
/// the events that came before the handshake finished and the plaintext that arrived with
/// the last flight.
struct Opening {
    r: AssocReader,
    w: AssocWriter,
    ppid: u32,
    pending: VecDeque<Event>,
    plain: BytesMut,
}

impl Opening {
    fn new(a: Association, ppid: u32) -> Self {
        let (r, w) = a.into_split();
        Opening {
            r,
            w,
            ppid,
            pending: VecDeque::new(),
            plain: BytesMut::new(),
        }
    }

    /// Reads events until the first user message; the others are kept in `pending`.
    async fn first_message(&mut self) -> Result<Msg, String> {
        loop {
            match Box::pin(self.r.recv()).await.map_err(|e| e.to_string())? {
                Event::Message(m) => return Ok(m),
                Event::Lost(reason) => return Err(format!("association lost: {reason}")),
                other => self.pending.push_back(other),
            }
        }
    }

    /// Runs the handshake: sends what the session has to send, feeds it the peer's user
    /// messages (`first`: one already read), until the handshake is complete. Non-message
    /// events go to `pending`; plaintext that arrived with the last flight to `plain`.
    async fn handshake(
        &mut self,
        conn: &mut Connection,
        first: Option<Bytes>,
    ) -> Result<(), String> {
        let Opening {
            r,
            w,
            ppid,
            pending,
            plain,
        } = self;
        let ppid = *ppid;
        let mut next = first;
        loop {
            let mut records = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut records).map_err(|e| e.to_string())?;
            }
            send_records(w, ppid, &records)
                .await
                .map_err(|e| e.to_string())?;
            if !conn.is_handshaking() {
                return Ok(());
            }
            let data = match next.take() {
                Some(d) => d,
                None => loop {
                    match Box::pin(r.recv()).await.map_err(|e| e.to_string())? {
                        Event::Message(m) if m.stream == 0 => break m.bytes,
                        Event::Message(m) => {
                            return Err(format!("handshake message on stream {}", m.stream))
                        }
                        Event::Lost(reason) => return Err(format!("association lost: {reason}")),
                        Event::Restarted => return Err("peer restarted".into()),
                        other => pending.push_back(other),
                    }
                },
            };
            if let Err(e) = feed(conn, &data, plain, MAX_RSERPOOL_MESSAGE * 2) {
                // Send the alert rustls queued, then give up.
                let mut records = Vec::new();
                while conn.wants_write() {
                    if conn.write_tls(&mut records).is_err() {
                        break;
                    }
                }
                let _ = send_records(w, ppid, &records).await;
                return Err(e);
            }
        }
    }

    /// The association after the handshake (`conn`; `None`: plaintext), for messages of at
    /// most `max` bytes.
    fn finish(self, conn: Option<Connection>, max: usize) -> (TlsSctpReader, TlsSctpWriter) {
        let Opening {
            r,
            w,
            ppid,
            pending,
            plain,
        } = self;
        let peers = w.peer_addrs().unwrap_or_default();
        let locals = w.local_addrs().unwrap_or_default();
        let kind = w.kind();
        let peer_cert = conn.as_deref().and_then(PeerCertificate::of);
        let shared = Arc::new(Shared {
            out: Mutex::new(w),
            conn: conn.map(std::sync::Mutex::new),
            ppid,
            peer: peers
                .first()
                .copied()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        });
        (
            TlsSctpReader {
                inner: r,
                shared: shared.clone(),
                pending,
                plain,
                max,
                done: false,
            },
            TlsSctpWriter {
                shared,
                peer_cert,
                peers,
                locals,
                kind,
                max,
            },
        )
    }
}

/// Client side: runs the handshake on a connected SCTP association (within the context's
/// handshake timeout).
pub(crate) async fn client(
    ctx: &TlsContext,
    a: Association,
    ppid: u32,
    max_message_size: usize,
) -> Result<(TlsSctpReader, TlsSctpWriter), TransportError> {
    let peer = a
        .peer_addrs()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let err = |detail: String| TransportError::Tls { peer, detail };
    let conn = ClientConnection::new(ctx.client_config(), ServerName::IpAddress(peer.ip().into()))
        .map_err(|e| err(e.to_string()))?;
    let mut conn = Connection::Client(conn);
    let mut o = Opening::new(a, ppid);
    match tokio::time::timeout(ctx.handshake_timeout, o.handshake(&mut conn, None)).await {
        Ok(Ok(())) => {}
        Ok(Err(detail)) => {
            o.w.abort_in_place();
            return Err(err(detail));
        }
        Err(_) => {
            o.w.abort_in_place();
            return Err(err(format!(
                "handshake timed out after {:?}",
                ctx.handshake_timeout
            )));
        }
    }
    Ok(o.finish(Some(conn), max_message_size.min(MAX_RSERPOOL_MESSAGE)))
}

/// A listener of SCTP associations (kernel or `sctp-udp`) whose associations come out of
/// [`accept`](Self::accept) only after their TLS handshake (or as plaintext, see the module
/// documentation). Handshakes run in tasks of their own.
pub(crate) type TlsSctpListener = TlsListener<(TlsSctpReader, TlsSctpWriter)>;

/// TLS over SCTP: the plain SCTP or `sctp-udp` listener and the endpoint's PPID and
/// maximum message size.
struct SctpHandshaker {
    inner: Listener,
    ppid: u32,
    max_message_size: usize,
}

impl Handshaker for SctpHandshaker {
    type Incoming = Association;
    type Assoc = (TlsSctpReader, TlsSctpWriter);

    fn accept(&self) -> impl Future<Output = Result<Association, TransportError>> + Send {
        self.inner.accept()
    }

    fn peer(a: &Association) -> Option<SocketAddr> {
        a.peer_addrs().ok().and_then(|v| v.first().copied())
    }

    fn reject(a: Association) {
        a.abort();
    }

    /// The first user message decides (see the module documentation).
    async fn handshake(
        &self,
        ctx: &TlsContext,
        a: Association,
    ) -> Result<Option<(TlsSctpReader, TlsSctpWriter)>, String> {
        let server = ctx
            .server_config()
            .ok_or_else(|| "a TLS listener needs a certificate and key".to_string())?;
        let max = self.max_message_size.min(MAX_RSERPOOL_MESSAGE);
        let mut o = Opening::new(a, self.ppid);
        let first = match o.first_message().await {
            Ok(m) => m,
            Err(e) => {
                o.w.abort_in_place();
                return Err(e);
            }
        };
        if first.bytes.first() != Some(&TLS_HANDSHAKE_RECORD) || first.stream != 0 {
            match ctx.client_auth() {
                ClientAuth::Optional => {
                    o.pending.push_back(Event::Message(first));
                    return Ok(Some(o.finish(None, max)));
                }
                ClientAuth::Required => {
                    o.w.abort_in_place();
                    return Err(format!(
                        "plaintext (first byte {:#04x}, stream {}) where TLS is required",
                        first.bytes.first().copied().unwrap_or(0),
                        first.stream
                    ));
                }
            }
        }
        let server = ServerConnection::new(server).map_err(|e| e.to_string())?;
        let mut conn = Connection::Server(server);
        if let Err(e) = o.handshake(&mut conn, Some(first.bytes)).await {
            o.w.abort_in_place();
            return Err(format!("handshake failed: {e}"));
        }
        Ok(Some(o.finish(Some(conn), max)))
    }
}

impl TlsSctpListener {
    /// Starts accepting on `inner` (a plain SCTP or `sctp-udp` listener).
    pub(crate) fn start(
        inner: Listener,
        ctx: TlsContext,
        ppid: u32,
        max_message_size: usize,
    ) -> Result<Self, TransportError> {
        if !ctx.has_certificate() {
            return Err(TransportError::Tls {
                peer: SocketAddr::from(([0, 0, 0, 0], 0)),
                detail: "a TLS listener needs a certificate and key".into(),
            });
        }
        let addrs = inner.local_addrs()?;
        let kind = inner.kind();
        let source = SctpHandshaker {
            inner,
            ppid,
            max_message_size,
        };
        Ok(TlsListener::spawn(source, ctx, addrs, kind, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: usize) -> Vec<u8> {
        let mut v = vec![0x17, 3, 3];
        v.extend_from_slice(&(len as u16).to_be_bytes());
        v.resize(5 + len, 0xab);
        v
    }

    #[test]
    fn records_are_grouped_whole_into_messages() {
        let mut all = Vec::new();
        for _ in 0..10 {
            all.extend(record(16_000));
        }
        let chunks = record_chunks(&all);
        // 4 records of 16 005 bytes fit in 64 KiB, the 5th does not.
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![4 * 16_005, 4 * 16_005, 2 * 16_005]
        );
        for c in &chunks {
            assert_eq!(c[0], 0x17, "every message starts with a record header");
        }
        assert_eq!(record_chunks(&record(10)), vec![&record(10)[..]]);
        assert!(record_chunks(&[]).is_empty());
    }
}
