//! Mode B session relay (seed 003 FIG. 5, [33]–[35]) for plain TCP clients that know
//! nothing of RSerPool ([`serve`]) and for RSerPool-aware pool users speaking the
//! `asap::session` layer over TCP ([`serve_asap`]).
//!
//! Each accepted connection is one session: the driver's core selects a server (step 199)
//! or refuses (step 197: the client receives one line `-ERR proxy-pe: <reason>\r\n` and the
//! connection closes). Plain TCP sessions are relayed in both directions with one 64 KiB
//! buffer per direction, or with `splice(2)` through a kernel pipe per direction when
//! `PROXY_PE_RELAY=splice` is set ([`crate::splice`]). Either way, what was taken from one
//! side but not yet written survives a move to another server. ASAP sessions are framed
//! messages and are relayed through user space, with the same guarantee: the PU's session
//! writer runs in its own task, so no frame is ever half-written, and pending data of both
//! directions outlives a move. Half-closes are propagated. An ASAP PU refused at step 197
//! gets an ASAP_ERROR with the cause Lack of Resources before the close.
//!
//! A server fails mid-session (issue 19 item 5) when
//! - the core says so (server declared down, lifetime expired, removed);
//! - writing to the server fails;
//! - the server closes while the client is still sending and a TCP probe of the server's
//!   service port fails, immediately or `[detection] recheck_ms` later (a server that
//!   closes its side on purpose still accepts connections, so it ends the session normally
//!   instead).
//!
//! What happens then is the application's `on_server_failure`:
//! - `close` (the default): the client's connection is closed; the client reconnects
//!   through the pool and starts a new session, which is the only safe choice for a
//!   stateful protocol;
//! - `reconnect` (steps 203/205 → 199): the session continues on another server. Bytes in
//!   flight inside the failed server are lost; the new server continues with what the
//!   client sends next, after the replay of the client's first `replay_lines` lines (its
//!   login), with the new server's first `discard_lines` lines (its greeting and its answer
//!   to the login) dropped. Replay and discard apply to plain TCP sessions.
//!
//! In both modes a session whose client has already finished sending (its side is closed
//! and nothing of it is pending) is closed, not moved: nothing could reach a new server.
//! The first connect of a session, and a connect that times out
//! (`[detection] connect_timeout_ms`), go to another server in both modes: the client has
//! exchanged nothing with it yet.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use asap::session::{
    ServerEvent, ServerSession, ServerSessionReader, ServerSessionWriter, SessionListener,
};

use asap::wire::{CauseCode, ErrorCause, OperationError};

use crate::config::{OnServerFailure, MAX_PREAMBLE_BYTES};
use crate::core::{Assignment, SessionError, SessionId, SessionPolicy};
use crate::splice::{self, Ended, ForwardError, Pipe};

/// Relay buffer per direction.
const BUF: usize = 64 * 1024;

/// What the driver tells a session task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOrder {
    /// Leave server `from` and continue on another (a task already elsewhere ignores it).
    Move {
        /// The server to leave.
        from: String,
        /// Why.
        reason: String,
    },
    /// End the session: the client's connection is closed (a drain's timeout passed).
    Close {
        /// Why.
        reason: String,
    },
}

/// Requests of a session task to the driver.
#[derive(Debug)]
pub enum SessionCmd {
    /// Step 191: open a session of `app`; `moves` receives move requests.
    Open {
        /// Application.
        app: String,
        /// Move and close orders for this session.
        moves: mpsc::UnboundedSender<SessionOrder>,
        /// The answer.
        reply: oneshot::Sender<Result<Assignment, SessionError>>,
    },
    /// Steps 203/205 → 199: select another server.
    Reselect {
        /// The session.
        session: SessionId,
        /// The server could not be reached (service-channel failure).
        unreachable: bool,
        /// The answer.
        reply: oneshot::Sender<Result<Assignment, SessionError>>,
    },
    /// The session's server failed mid-session and the session closes instead of moving
    /// (`on_server_failure = "close"`): a service-channel failure for the core.
    Failed(SessionId),
    /// Step 209: the session ended.
    Close(SessionId),
}

/// TCP connect within `timeout`: the service-port probe of [`server_gone`].
pub async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The server closed a session while the client was still talking: did it fail, or end
/// the session on purpose? Two probes of its service port `recheck_ms` apart: failed if
/// either probe fails. (A killed server may still accept for a moment after its
/// connections were reset, so one immediate probe is not enough.)
async fn server_gone(addr: SocketAddr, p: &SessionPolicy) -> bool {
    let t = Duration::from_millis(p.connect_timeout_ms);
    if !probe(addr, t).await {
        return true;
    }
    tokio::time::sleep(Duration::from_millis(p.recheck_ms)).await;
    !probe(addr, t).await
}

/// Connect to a legacy server within the session's `connect_timeout_ms`.
async fn connect(a: &Assignment) -> Option<TcpStream> {
    let t = Duration::from_millis(a.policy.connect_timeout_ms);
    match tokio::time::timeout(t, TcpStream::connect(a.addr)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::info!(session = a.session, server = %a.server, error = %e, "connect failed");
            None
        }
        Err(_) => {
            tracing::info!(session = a.session, server = %a.server, timeout_ms = a.policy.connect_timeout_ms, "connect timed out");
            None
        }
    }
}

/// The client's first lines as written to a server (`replay_lines`), for the replay after
/// a reconnect.
#[derive(Debug, Default)]
struct Preamble {
    bytes: Vec<u8>,
    lines: u32,
    wanted: u32,
    /// Longer than [`MAX_PREAMBLE_BYTES`]: cannot be replayed.
    overflow: bool,
}

impl Preamble {
    fn new(wanted: u32) -> Preamble {
        Preamble {
            wanted,
            ..Preamble::default()
        }
    }

    /// Records `data` (just written to the server) until `wanted` lines are complete.
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if self.lines >= self.wanted || self.overflow {
                return;
            }
            if self.bytes.len() == MAX_PREAMBLE_BYTES {
                self.overflow = true;
                return;
            }
            self.bytes.push(b);
            if b == b'\n' {
                self.lines += 1;
            }
        }
    }
}

/// `reconnect`: replays the recorded preamble to the new server and drops its first
/// `discard` lines. Bytes after the last dropped line are returned for the client.
async fn resume_on(
    server: &mut TcpStream,
    pre: &Preamble,
    discard: u32,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let work = async {
        if !pre.bytes.is_empty() {
            server.write_all(&pre.bytes).await?;
        }
        let mut seen = 0;
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while seen < discard {
            let n = server.read(&mut b).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed during the preamble",
                ));
            }
            for (i, &x) in b[..n].iter().enumerate() {
                if seen < discard {
                    if x == b'\n' {
                        seen += 1;
                    }
                } else {
                    got.extend_from_slice(&b[i..n]);
                    break;
                }
            }
        }
        Ok(got)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "preamble timed out"))?
}

/// Accepts PU connections for `app` until the listener task is aborted.
pub async fn serve(listener: TcpListener, app: String, driver: mpsc::UnboundedSender<SessionCmd>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let _ = client.set_nodelay(true);
                let driver = driver.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(client, app.clone(), driver).await {
                        tracing::info!(%peer, app, reason = %e, "session ended with error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

enum End {
    /// Reader saw EOF (writer side was shut down).
    Eof,
    /// Reading failed.
    ReadErr,
    /// Writing failed.
    WriteErr,
}

/// The forwarding buffer of one direction. Both kinds are cancel-safe: bytes taken from
/// the source and not yet written stay in the buffer, so when the relay drops a pump to
/// move the session, they go to the next server (client → server) or still reach the
/// client (server → client).
enum Buffer {
    /// User-space buffer: one `read` into it, `write`s out of it (the copies
    /// `tokio::io::copy` makes). The default: on loopback it used less CPU than splice
    /// (BENCHMARKS.md "proxy-pe").
    Memory {
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
    /// Kernel pipe for `splice(2)` ([`crate::splice`]): the bytes never enter user space.
    /// Chosen with the environment variable `PROXY_PE_RELAY=splice`.
    Pipe(Pipe),
}

impl Buffer {
    /// `memory`: user space even with `PROXY_PE_RELAY=splice` (a preamble must be seen).
    fn new(memory_only: bool) -> Buffer {
        let memory = || Buffer::Memory {
            buf: vec![0u8; BUF],
            start: 0,
            end: 0,
        };
        if memory_only || std::env::var_os("PROXY_PE_RELAY").is_none_or(|v| v != "splice") {
            return memory();
        }
        match Pipe::new() {
            Ok(p) => Buffer::Pipe(p),
            Err(e) => {
                tracing::warn!(error = %e, "no pipe for splice: relaying through user space");
                memory()
            }
        }
    }
}

/// Moves `r` to `w` until EOF or an error. On EOF the write side is shut down when
/// `propagate_eof` (client → server); server → client EOF is not propagated here because the
/// session may continue on another server. Cancel-safe (see [`Buffer`]).
async fn pump(
    r: &mut OwnedReadHalf,
    w: &mut OwnedWriteHalf,
    buf: &mut Buffer,
    propagate_eof: bool,
    mut record: Option<&mut Preamble>,
) -> End {
    let end = match buf {
        Buffer::Pipe(pipe) => {
            let mut delivered = 0;
            match splice::forward(r.as_ref(), w.as_ref(), pipe, &mut delivered).await {
                Ok(Ended::Eof) => End::Eof,
                Err(ForwardError::Read(_)) => return End::ReadErr,
                Err(ForwardError::Write(_)) => return End::WriteErr,
            }
        }
        Buffer::Memory { buf, start, end } => loop {
            // `write` and `read` are cancel-safe; the cursors live outside this future.
            if *start < *end {
                match w.write(&buf[*start..*end]).await {
                    Ok(0) | Err(_) => return End::WriteErr,
                    Ok(n) => {
                        if let Some(p) = record.as_deref_mut() {
                            p.feed(&buf[*start..*start + n]);
                        }
                        *start += n;
                    }
                }
                continue;
            }
            match r.read(buf).await {
                Ok(0) => break End::Eof,
                Ok(n) => {
                    *start = 0;
                    *end = n;
                }
                Err(_) => return End::ReadErr,
            }
        },
    };
    if propagate_eof {
        let _ = w.shutdown().await;
    }
    end
}

async fn ask(
    driver: &mpsc::UnboundedSender<SessionCmd>,
    make: impl FnOnce(oneshot::Sender<Result<Assignment, SessionError>>) -> SessionCmd,
) -> Result<Assignment, String> {
    let (tx, rx) = oneshot::channel();
    driver
        .send(make(tx))
        .map_err(|_| "proxy shutting down".to_string())?;
    match rx.await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("proxy shutting down".to_string()),
    }
}

/// Opens a session of `app` with the driver: its first assignment, and the channel on
/// which the driver orders it to move.
async fn open(
    driver: &mpsc::UnboundedSender<SessionCmd>,
    app: &str,
) -> Result<(Assignment, mpsc::UnboundedReceiver<SessionOrder>), String> {
    let (mtx, moves) = mpsc::unbounded_channel();
    let a = ask(driver, |reply| SessionCmd::Open {
        app: app.to_string(),
        moves: mtx,
        reply,
    })
    .await?;
    Ok((a, moves))
}

async fn refuse(mut client_w: OwnedWriteHalf, reason: &str) -> String {
    let _ = client_w
        .write_all(format!("-ERR proxy-pe: {reason}\r\n").as_bytes())
        .await;
    let _ = client_w.shutdown().await;
    reason.to_string()
}

async fn session(
    client: TcpStream,
    app: String,
    driver: mpsc::UnboundedSender<SessionCmd>,
) -> Result<(), String> {
    let (mut cr, mut cw) = client.into_split();
    let (mut a, mut moves) = match open(&driver, &app).await {
        Ok(x) => x,
        Err(e) => return Err(refuse(cw, &e).await),
    };
    let session = a.session;
    let result = run_session(&mut a, &mut cr, &mut cw, &mut moves, &driver).await;
    let _ = driver.send(SessionCmd::Close(session));
    match result {
        Ok(()) => {
            let _ = cw.shutdown().await;
            Ok(())
        }
        Err(e) => Err(refuse(cw, &e).await),
    }
}

async fn run_session(
    a: &mut Assignment,
    cr: &mut OwnedReadHalf,
    cw: &mut OwnedWriteHalf,
    moves: &mut mpsc::UnboundedReceiver<SessionOrder>,
    driver: &mpsc::UnboundedSender<SessionCmd>,
) -> Result<(), String> {
    let replay = a.policy.on_server_failure == OnServerFailure::Reconnect
        && (a.policy.replay_lines > 0 || a.policy.discard_lines > 0);
    let mut cbuf = Buffer::new(replay);
    let mut sbuf = Buffer::new(replay);
    let mut pre = Preamble::new(a.policy.replay_lines);
    let mut client_eof = false;
    // A server leg has carried this session (later legs are reconnects).
    let mut resumed = false;
    loop {
        tracing::debug!(session = a.session, server = %a.server, addr = %a.addr, "relaying");
        let Some(mut server) = connect(a).await else {
            *a = reselect(driver, a.session, true)
                .await
                .map_err(|e| e + " (reselection)")?;
            continue;
        };
        let _ = server.set_nodelay(true);
        if resumed && replay {
            if pre.overflow {
                return Err("preamble too long to replay: session closed".into());
            }
            // What the old server sent and the client has not received yet goes first.
            if let Buffer::Memory { buf, start, end } = &mut sbuf {
                if *start < *end {
                    cw.write_all(&buf[*start..*end])
                        .await
                        .map_err(|_| "client gone".to_string())?;
                    *start = 0;
                    *end = 0;
                }
            }
            let t = Duration::from_millis(a.policy.connect_timeout_ms);
            match resume_on(&mut server, &pre, a.policy.discard_lines, t).await {
                Ok(rest) => {
                    if let Buffer::Memory { buf, start, end } = &mut sbuf {
                        buf[..rest.len()].copy_from_slice(&rest);
                        *start = 0;
                        *end = rest.len();
                    }
                }
                Err(e) => {
                    tracing::info!(session = a.session, server = %a.server, error = %e, "preamble replay failed");
                    *a = reselect(driver, a.session, true)
                        .await
                        .map_err(|e| e + " (reselection)")?;
                    continue;
                }
            }
        }
        resumed = true;
        let (mut sr, mut sw) = server.into_split();
        if client_eof {
            let _ = sw.shutdown().await;
        }
        // What ended this server's part of the session.
        let outcome = {
            let c2s = pump(cr, &mut sw, &mut cbuf, true, replay.then_some(&mut pre));
            let s2c = pump(&mut sr, cw, &mut sbuf, false, None);
            tokio::pin!(c2s);
            tokio::pin!(s2c);
            let mut c_done = client_eof;
            loop {
                tokio::select! {
                    e = &mut c2s, if !c_done => match e {
                        End::Eof => { c_done = true; client_eof = true; }
                        End::ReadErr => break Outcome::Done, // client gone
                        End::WriteErr => break Outcome::Failed, // server failed (203)
                    },
                    e = &mut s2c => match e {
                        End::WriteErr => break Outcome::Done, // client gone
                        End::Eof | End::ReadErr if c_done => break Outcome::Done, // 209
                        End::Eof | End::ReadErr => {
                            // The server closed while the client still talks: failed or
                            // finished on purpose? Ask the service port (two-channel rule).
                            if server_gone(a.addr, &a.policy).await {
                                break Outcome::Failed;
                            }
                            break Outcome::Done;
                        }
                    },
                    m = moves.recv() => match m {
                        // A request for a server this session already left: stale.
                        Some(SessionOrder::Move { from, .. }) if from != a.server => {}
                        Some(SessionOrder::Close { reason }) => {
                            tracing::info!(session = a.session, server = %a.server, reason, "closing session");
                            break Outcome::Done;
                        }
                        m => {
                            tracing::info!(session = a.session, server = %a.server, reason = ?m, "moving session");
                            break Outcome::Move;
                        }
                    },
                }
            }
        };
        match outcome {
            Outcome::Done => return Ok(()),
            Outcome::Failed | Outcome::Move => {
                if a.policy.on_server_failure == OnServerFailure::Close {
                    tracing::info!(session = a.session, server = %a.server, ?outcome, "server failed: closing the client's connection (on_server_failure = close)");
                    if outcome == Outcome::Failed {
                        // Still report the failed service channel to the core.
                        let _ = driver.send(SessionCmd::Failed(a.session));
                    }
                    return Ok(());
                }
                if client_eof && !buffer_pending(&cbuf) {
                    tracing::info!(session = a.session, server = %a.server, "client already finished: session closed, not moved");
                    return Ok(());
                }
                *a = reselect(driver, a.session, outcome == Outcome::Failed)
                    .await
                    .map_err(|e| e + " (reselection)")?;
            }
        }
    }
}

/// Bytes taken from one side and not yet written to the other.
fn buffer_pending(b: &Buffer) -> bool {
    match b {
        Buffer::Memory { start, end, .. } => start < end,
        Buffer::Pipe(p) => p.pending() > 0,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The session is over (client ended it, step 209, or the server closed on purpose).
    Done,
    /// The server failed (step 203).
    Failed,
    /// The core moved the session (lifetime, maintenance, declared down: 203/205).
    Move,
}

async fn reselect(
    driver: &mpsc::UnboundedSender<SessionCmd>,
    session: SessionId,
    unreachable: bool,
) -> Result<Assignment, String> {
    ask(driver, |reply| SessionCmd::Reselect {
        session,
        unreachable,
        reply,
    })
    .await
}

/// Largest application payload per ASAP data frame over TCP (`asap::session`).
const ASAP_CHUNK: usize = 32 * 1024;
/// Data frames queued for the PU writer task (each at most [`ASAP_CHUNK`] bytes).
const ASAP_QUEUE: usize = 4;

/// The Operation Error an ASAP PU receives in an ASAP_ERROR before its session is closed
/// because no legacy server runs the application (step 197): one cause, Lack of Resources
/// (0x6, RFC 5352 §5 / RFC 5354 §3.10), without cause-specific information.
pub fn unavailable_error() -> OperationError {
    OperationError::single(ErrorCause::plain(CauseCode::LackOfResources))
}

/// Accepts ASAP sessions of RSerPool-aware pool users (`asap::session`, TCP framing) for
/// `app` and relays their data to legacy servers with the same selection and reselection
/// rules as plain TCP sessions. A COOKIE_ECHO (the PU failed over from another proxy) just
/// starts a new legacy session: legacy servers keep no shareable state.
pub async fn serve_asap(
    listener: SessionListener,
    app: String,
    driver: mpsc::UnboundedSender<SessionCmd>,
) {
    loop {
        match listener.accept().await {
            Ok(s) => {
                let peer = s.peer_addrs().first().copied();
                let driver = driver.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(e) = asap_session(s, app.clone(), driver).await {
                        tracing::info!(?peer, app, reason = %e, "ASAP session ended with error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "ASAP session accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the PU writer task sends.
enum PuOut {
    /// Application data: one data frame.
    Data(Bytes),
    /// An ASAP_ERROR (sent before the close).
    Error(OperationError),
}

/// Owns the PU's session writer for the whole session, so every frame is written whole:
/// moving the session to another server never drops a send half-way (the writer's sends
/// are not cancel-safe). Closes the session when the queue ends.
async fn pu_writer(mut w: ServerSessionWriter, mut rx: mpsc::Receiver<PuOut>) {
    while let Some(out) = rx.recv().await {
        let r = match out {
            PuOut::Data(d) => w.send(d).await,
            PuOut::Error(e) => w.send_error(e).await,
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "ASAP session write failed");
            // Dropping `rx` tells the relay that the PU is gone.
            return;
        }
    }
    let _ = w.close().await;
}

/// PU → server. `pending` holds what was received from the PU and not yet written to a
/// server; it survives a dropped call (a move) and goes to the next server first. On the
/// PU's close the server's write side is shut down. Cancel-safe: `recv` and `write` are.
async fn asap_up(r: &mut ServerSessionReader, w: &mut OwnedWriteHalf, pending: &mut Bytes) -> End {
    loop {
        if !pending.is_empty() {
            match w.write(pending).await {
                Ok(0) | Err(_) => return End::WriteErr,
                Ok(n) => pending.advance(n),
            }
            continue;
        }
        match r.recv().await {
            Ok(Some(ServerEvent::Data(d))) => *pending = d,
            Ok(Some(ServerEvent::CookieEcho(_))) | Ok(Some(ServerEvent::BusinessCard(_))) => {}
            // Session events added to asap later carry no data for the server: ignored.
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            Err(e) => {
                tracing::debug!(error = %e, "ASAP session read failed");
                return End::ReadErr;
            }
        }
    }
}

/// Server → PU, in data frames of at most [`ASAP_CHUNK`] bytes, read straight into `buf`
/// and handed to the PU writer task without a copy. `pending` holds a chunk read from a
/// server and not yet queued; it survives a dropped call (a move) and still reaches the PU.
/// Cancel-safe: `read_buf` and `reserve` are.
async fn asap_down(
    r: &mut OwnedReadHalf,
    to_pu: &mpsc::Sender<PuOut>,
    buf: &mut BytesMut,
    pending: &mut Option<Bytes>,
) -> End {
    loop {
        if pending.is_some() {
            match to_pu.reserve().await {
                Ok(permit) => permit.send(PuOut::Data(pending.take().unwrap_or_default())),
                Err(_) => return End::WriteErr,
            }
            continue;
        }
        if buf.capacity() < ASAP_CHUNK {
            // The earlier chunks still live in queued frames: start a new block.
            *buf = BytesMut::with_capacity(8 * ASAP_CHUNK);
        }
        match r.read_buf(&mut (&mut *buf).limit(ASAP_CHUNK)).await {
            Ok(0) => return End::Eof,
            Ok(_) => *pending = Some(buf.split().freeze()),
            Err(_) => return End::ReadErr,
        }
    }
}

async fn asap_session(
    s: ServerSession,
    app: String,
    driver: mpsc::UnboundedSender<SessionCmd>,
) -> Result<(), String> {
    let (mut pr, mut pw) = s.into_split();
    let (mut a, mut moves) = match open(&driver, &app).await {
        Ok(x) => x,
        Err(e) => {
            // Step 197: the PU learns why (ASAP_ERROR, Lack of Resources), then its session
            // layer sees the association end and fails over to another PE of the pool (e.g.
            // a second proxy), or reports the failure.
            let _ = pw.send_error(unavailable_error()).await;
            let _ = pw.close().await;
            return Err(e);
        }
    };
    let session = a.session;
    let (to_pu, rx) = mpsc::channel(ASAP_QUEUE);
    let writer = tokio::spawn(pu_writer(pw, rx));
    // Per-direction state that outlives each server's leg of the session.
    let mut up_pending = Bytes::new();
    let mut down_buf = BytesMut::new();
    let mut down_pending: Option<Bytes> = None;
    let mut pu_eof = false;
    let result: Result<(), String> = loop {
        let server = match connect(&a).await {
            Some(s) => s,
            None => match reselect(&driver, session, true).await {
                Ok(n) => {
                    a = n;
                    continue;
                }
                Err(e) => break Err(e + " (reselection)"),
            },
        };
        let _ = server.set_nodelay(true);
        let (mut sr, mut sw) = server.into_split();
        if pu_eof {
            let _ = sw.shutdown().await;
        }
        let outcome = {
            let up = asap_up(&mut pr, &mut sw, &mut up_pending);
            let down = asap_down(&mut sr, &to_pu, &mut down_buf, &mut down_pending);
            tokio::pin!(up);
            tokio::pin!(down);
            let mut u_done = pu_eof;
            loop {
                tokio::select! {
                    e = &mut up, if !u_done => match e {
                        End::Eof => { u_done = true; pu_eof = true; }
                        End::ReadErr => break Outcome::Done,
                        End::WriteErr => break Outcome::Failed,
                    },
                    e = &mut down => match e {
                        End::WriteErr => break Outcome::Done,
                        End::Eof | End::ReadErr if u_done => break Outcome::Done,
                        End::Eof | End::ReadErr => {
                            let gone = server_gone(a.addr, &a.policy).await;
                            tracing::debug!(session, server = %a.server, gone, "server closed mid-session; probed");
                            if gone {
                                break Outcome::Failed;
                            }
                            break Outcome::Done;
                        }
                    },
                    m = moves.recv() => match m {
                        Some(SessionOrder::Move { from, .. }) if from != a.server => {}
                        Some(SessionOrder::Close { reason }) => {
                            tracing::info!(session, server = %a.server, reason, "closing ASAP session");
                            break Outcome::Done;
                        }
                        m => {
                            tracing::info!(session, server = %a.server, reason = ?m, "moving ASAP session");
                            break Outcome::Move;
                        }
                    },
                }
            }
        };
        tracing::debug!(session, server = %a.server, ?outcome, pu_eof, "ASAP session leg ended");
        match outcome {
            Outcome::Done => break Ok(()),
            Outcome::Failed | Outcome::Move
                if a.policy.on_server_failure == OnServerFailure::Close
                    || (pu_eof && up_pending.is_empty()) =>
            {
                tracing::info!(session, server = %a.server, ?outcome, pu_eof, "server failed: closing the ASAP session");
                if outcome == Outcome::Failed {
                    let _ = driver.send(SessionCmd::Failed(session));
                }
                break Ok(());
            }
            Outcome::Failed | Outcome::Move => {
                match reselect(&driver, session, outcome == Outcome::Failed).await {
                    Ok(n) => a = n,
                    Err(e) => break Err(e + " (reselection)"),
                }
            }
        }
    };
    let _ = driver.send(SessionCmd::Close(session));
    // What was read from the last server still reaches the PU; then, if no server is left
    // (step 197 during reselection), the error; then the writer closes the session.
    if let Some(d) = down_pending.take() {
        let _ = to_pu.send(PuOut::Data(d)).await;
    }
    if result.is_err() {
        let _ = to_pu.send(PuOut::Error(unavailable_error())).await;
    }
    drop(to_pu);
    let _ = writer.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded preamble keeps exactly the first `replay_lines` lines written, across
    /// writes split anywhere, and marks a preamble beyond the byte limit as unreplayable.
    #[test]
    fn preamble_records_the_first_lines_only() {
        let mut p = Preamble::new(2);
        p.feed(b"LOGIN al");
        p.feed(b"ice\r\nPASS x\nWHO\n");
        assert_eq!(p.bytes, b"LOGIN alice\r\nPASS x\n");
        assert_eq!(p.lines, 2);
        assert!(!p.overflow);
        let mut p = Preamble::new(1);
        p.feed(&vec![b'a'; MAX_PREAMBLE_BYTES + 1]);
        assert!(p.overflow);
    }

    /// After a reconnect the new server gets the preamble first; its first `discard` lines
    /// are dropped and what follows them in the same read is kept for the client.
    #[tokio::test]
    async fn resume_replays_and_discards_exactly() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"+HELLO\n").await.unwrap();
            let mut got = vec![0u8; 12];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(b"OK alice\nnews\n").await.unwrap();
            got
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut p = Preamble::new(1);
        p.feed(b"LOGIN alice\nWHO\n");
        let rest = resume_on(&mut c, &p, 2, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(server.await.unwrap(), b"LOGIN alice\n");
        // "news\n" may come in the same read as the discarded lines or after it.
        let mut all = rest;
        while !all.ends_with(b"news\n") {
            let mut b = [0u8; 16];
            let n = c.read(&mut b).await.unwrap();
            assert!(n > 0);
            all.extend_from_slice(&b[..n]);
        }
        assert_eq!(all, b"news\n");
        // A server that never greets fails within the timeout.
        let quiet = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(quiet.local_addr().unwrap())
            .await
            .unwrap();
        let e = resume_on(&mut c, &Preamble::new(0), 1, Duration::from_millis(100))
            .await
            .expect_err("timeout");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    /// The relay tests move sessions: `on_server_failure = "reconnect"`.
    pub(super) fn reconnect_policy() -> SessionPolicy {
        SessionPolicy {
            on_server_failure: OnServerFailure::Reconnect,
            ..SessionPolicy::default()
        }
    }

    /// A connected loopback pair, split: (client side, relay side).
    pub(super) async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Both buffer kinds: a pump dropped while the first server stalls (as the session
    /// loop drops it to move the session) keeps what it read; the next pump delivers it
    /// to the second server first, so first + second = exactly what the client sent.
    async fn move_loses_nothing(kind: &str) {
        let mut buf = match kind {
            "splice" => Buffer::Pipe(Pipe::new().unwrap()),
            _ => Buffer::Memory {
                buf: vec![0u8; BUF],
                start: 0,
                end: 0,
            },
        };
        let (mut client, relay_in) = pair().await;
        let (mut server1, relay_out1) = pair().await;
        let (mut server2, relay_out2) = pair().await;
        let (mut r, _rw) = relay_in.into_split();
        let (_w1r, mut w1) = relay_out1.into_split();
        let (_w2r, mut w2) = relay_out2.into_split();
        let data: Vec<u8> = (0..48 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
        });
        // server1 reads nothing: its buffers fill and the pump blocks holding bytes.
        let holding = |b: &Buffer| match b {
            Buffer::Pipe(p) => p.pending() > 0,
            Buffer::Memory { start, end, .. } => start < end,
        };
        for _ in 0..400 {
            let r = tokio::time::timeout(
                Duration::from_millis(50),
                pump(&mut r, &mut w1, &mut buf, true, None),
            )
            .await;
            assert!(r.is_err(), "cannot finish while server1 stalls");
            if holding(&buf) {
                break;
            }
        }
        assert!(
            holding(&buf),
            "{kind}: the dropped pump left no bytes behind"
        );
        drop(w1);
        drop(_w1r);
        let first = tokio::spawn(async move {
            let mut v = Vec::new();
            server1.read_to_end(&mut v).await.unwrap();
            v
        });
        let second = tokio::spawn(async move {
            let mut v = Vec::new();
            server2.read_to_end(&mut v).await.unwrap();
            v
        });
        assert!(matches!(
            pump(&mut r, &mut w2, &mut buf, true, None).await,
            End::Eof
        ));
        drop(w2);
        drop(_w2r);
        writer.await.unwrap();
        let (a, b) = (first.await.unwrap(), second.await.unwrap());
        assert!(
            !a.is_empty() && !b.is_empty(),
            "{kind}: both servers got bytes"
        );
        assert_eq!(
            a.len() + b.len(),
            data.len(),
            "{kind}: bytes lost or doubled"
        );
        assert!(
            a == data[..a.len()] && b == data[a.len()..],
            "{kind}: order"
        );
    }

    #[tokio::test]
    async fn memory_buffer_move_loses_nothing() {
        move_loses_nothing("memory").await;
    }

    #[tokio::test]
    async fn splice_move_loses_nothing() {
        move_loses_nothing("splice").await;
    }
}

/// The ASAP session relay: cancel safety across moves and the step-197 error, with a fake
/// driver, test-controlled legacy servers and a PU speaking `asap::session`'s TCP framing
/// on a raw association (separate reader and writer tasks, so it can keep reading while a
/// send is blocked, and it sees every frame and control message as it arrives).
#[cfg(test)]
mod asap_tests {
    use super::tests::pair;
    use super::*;
    use crate::core::SessionError as CoreError;
    use asap::session::TCP_DATA_FRAME_TYPE;
    use asap::transport::defaults::PPID_ASAP;
    use asap::transport::{
        AssocReader, Event, LostReason, Msg, Transport, TransportConfig, TransportKind,
    };
    use asap::wire::{AsapMessage, Message, Protocol};
    use std::os::fd::AsRawFd;
    use tokio::sync::watch;

    /// Turns hangs into failures; never decides a result by itself.
    const DEADLINE: Duration = Duration::from_secs(120);

    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(DEADLINE, f)
            .await
            .unwrap_or_else(|_| panic!("hung: {what}"))
    }

    /// The byte at stream offset `i` (no short period, so a shift shows).
    fn pattern(i: usize) -> u8 {
        ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8
    }

    /// Open → `servers[0]`, each Reselect → the next one; none left → NotAvailable (197).
    /// The session's move sender goes to the returned receiver.
    fn fake_driver(
        servers: Vec<SocketAddr>,
    ) -> (
        mpsc::UnboundedSender<SessionCmd>,
        mpsc::UnboundedReceiver<mpsc::UnboundedSender<SessionOrder>>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (mtx, mrx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut next = 0;
            let assign = |i: usize| match servers.get(i) {
                Some(addr) => Ok(Assignment {
                    session: 7,
                    app: "A".into(),
                    server: format!("S{i}"),
                    addr: *addr,
                    policy: super::tests::reconnect_policy(),
                }),
                None => Err(CoreError::NotAvailable("A".into())),
            };
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    SessionCmd::Open { moves, reply, .. } => {
                        let _ = mtx.send(moves);
                        let _ = reply.send(assign(next));
                    }
                    SessionCmd::Reselect { reply, .. } => {
                        next += 1;
                        let _ = reply.send(assign(next));
                    }
                    SessionCmd::Close(_) | SessionCmd::Failed(_) => {}
                }
            }
        });
        (tx, mrx)
    }

    /// The proxy's ASAP endpoint (TCP) for app "A", relaying by `driver`.
    async fn asap_endpoint(driver: mpsc::UnboundedSender<SessionCmd>) -> SocketAddr {
        let l = SessionListener::bind(TransportKind::Tcp, &["127.0.0.1:0".parse().unwrap()], 0)
            .await
            .unwrap();
        let addr = l.local_addrs().unwrap()[0];
        tokio::spawn(serve_asap(l, "A".into(), driver));
        addr
    }

    async fn pu_connect(addr: SocketAddr) -> asap::transport::Association {
        Transport::new(TransportConfig::asap(TransportKind::Tcp))
            .connect(&[addr], &[])
            .await
            .unwrap()
    }

    /// One application message in the session layer's TCP data frame.
    fn data_frame(payload: &[u8]) -> Msg {
        let len = 8 + payload.len();
        let mut b = BytesMut::with_capacity((len + 3) & !3);
        b.put_u8(TCP_DATA_FRAME_TYPE);
        b.put_u8(0);
        b.put_u16(len as u16);
        b.put_u32(0);
        b.put_slice(payload);
        while !b.len().is_multiple_of(4) {
            b.put_u8(0);
        }
        Msg::new(PPID_ASAP, 0, b.freeze())
    }

    /// What the PU received until its association ended.
    struct Received {
        data: Vec<u8>,
        control: Vec<AsapMessage>,
        end: LostReason,
    }

    /// Reads until the association ends; `progress` counts data bytes.
    async fn pu_read(mut r: AssocReader, progress: watch::Sender<usize>) -> Received {
        let mut data = Vec::new();
        let mut control = Vec::new();
        loop {
            match r.recv().await {
                Ok(Event::Message(m)) if m.bytes.first() == Some(&TCP_DATA_FRAME_TYPE) => {
                    let len = usize::from(u16::from_be_bytes([m.bytes[2], m.bytes[3]]));
                    data.extend_from_slice(&m.bytes[8..len]);
                    progress.send_replace(data.len());
                }
                Ok(Event::Message(m)) => match Message::decode(Protocol::Asap, &m.bytes) {
                    Ok(d) => match d.message {
                        Message::Asap(a) => control.push(a),
                        other => panic!("not ASAP: {other:?}"),
                    },
                    Err(e) => panic!("undecodable control message: {e}"),
                },
                Ok(Event::Lost(end)) => return Received { data, control, end },
                Ok(_) => {}
                Err(e) => panic!("PU read: {e}"),
            }
        }
    }

    /// Unread bytes in a socket's receive queue (FIONREAD).
    fn unread(s: &TcpStream) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `n`; the descriptor is open.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "FIONREAD");
        n as usize
    }

    /// Many messages in flight from an ASAP PU while the session moves from S0 to S1.
    /// S0 echoes exactly its first `K1` bytes, then stops reading, so the relay's write to
    /// S0 blocks part-way through a message; then the core moves the session. Afterwards S0
    /// reads what reached it (its unanswered requests, lost with it by design); S1 echoes
    /// all it gets. Exactly: S0's bytes + S1's bytes = the PU's stream (what the relay took
    /// from the PU and had not yet written goes to S1), the PU gets the echo of S0's first
    /// `K1` bytes and then of all S1 bytes, each once, in whole frames, and the association
    /// survives the move (it ends normally after the PU's close).
    #[tokio::test]
    async fn asap_session_move_loses_nothing() {
        const MSG: usize = 3001;
        const N: usize = 6000;
        const K1: usize = 100_000;
        let stream: Vec<u8> = (0..MSG * N).map(pattern).collect();
        let l0 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (driver, mut moves) =
            fake_driver(vec![l0.local_addr().unwrap(), l1.local_addr().unwrap()]);
        let addr = asap_endpoint(driver).await;

        let (stalled_tx, stalled_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let s0 = tokio::spawn(async move {
            let (mut s, _) = l0.accept().await.unwrap();
            let mut first = vec![0u8; K1];
            s.read_exact(&mut first).await.unwrap();
            s.write_all(&first).await.unwrap();
            // Stalled: wait until the relay has filled our receive queue and it stopped
            // growing (the window is closed, so the relay's write to us blocks). This only
            // makes the move likelier to hit a write part-way; the checks below hold for
            // any moment of the move.
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = unread(&s);
                if now >= 32 * 1024 && now == last {
                    break;
                }
                last = now;
            }
            let _ = stalled_tx.send(());
            go_rx.await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            (first, rest)
        });
        let (accepted_tx, accepted_rx) = oneshot::channel();
        let s1 = tokio::spawn(async move {
            let (mut s, _) = l1.accept().await.unwrap();
            let _ = accepted_tx.send(());
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.shutdown().await.unwrap();
            got
        });

        let (r, mut w) = pu_connect(addr).await.into_split();
        let (ptx, mut prx) = watch::channel(0);
        let reader = tokio::spawn(pu_read(r, ptx));
        let sent = stream.clone();
        let writer = tokio::spawn(async move {
            for m in sent.chunks(MSG) {
                w.send(&data_frame(m)).await.unwrap();
            }
            w.close().await.unwrap();
            w
        });

        within("S0's echo at the PU", prx.wait_for(|n| *n >= K1))
            .await
            .unwrap();
        within("S0 stalled", stalled_rx).await.unwrap();
        let moves = within("the session's move channel", moves.recv())
            .await
            .unwrap();
        moves
            .send(SessionOrder::Move {
                from: "S0".into(),
                reason: "test move".into(),
            })
            .unwrap();
        // S1 connected: the relay has dropped its connection to S0.
        within("S1 accepted", accepted_rx).await.unwrap();
        go_tx.send(()).unwrap();

        let (first, rest) = within("S0", s0).await.unwrap();
        let got1 = within("S1", s1).await.unwrap();
        let _w = within("PU writer", writer).await.unwrap();
        let pu = within("PU reader", reader).await.unwrap();

        assert_eq!(first, stream[..K1]);
        assert!(!rest.is_empty(), "S0 received more than it echoed");
        assert!(!got1.is_empty(), "S1 received the rest");
        assert_eq!(
            K1 + rest.len() + got1.len(),
            stream.len(),
            "bytes from the PU lost or doubled across the move"
        );
        assert!(
            rest == stream[K1..K1 + rest.len()] && got1 == stream[K1 + rest.len()..],
            "bytes from the PU reordered or corrupted across the move"
        );
        let mut want = stream[..K1].to_vec();
        want.extend_from_slice(&got1);
        assert_eq!(pu.data.len(), want.len(), "echo bytes lost or doubled");
        assert!(pu.data == want, "echo corrupted or reordered");
        assert!(
            pu.control.is_empty(),
            "no control messages: {:?}",
            pu.control
        );
        assert_eq!(pu.end, LostReason::PeerClosed, "association ended badly");
    }

    /// The server → PU half on its own, like `memory_buffer_move_loses_nothing`: the PU
    /// does not read, so the PU writer blocks inside a frame and the pump holds a chunk;
    /// the pump is dropped (a move) and resumed with another server. The PU then gets
    /// exactly what the pump took from server 1 followed by all of server 2, in whole frames.
    #[tokio::test]
    async fn asap_down_move_loses_nothing() {
        let l = SessionListener::bind(TransportKind::Tcp, &["127.0.0.1:0".parse().unwrap()], 0)
            .await
            .unwrap();
        let addr = l.local_addrs().unwrap()[0];
        let (pu, session) = tokio::join!(pu_connect(addr), l.accept());
        let (_pr, pw) = session.unwrap().into_split();
        let (to_pu, rx) = mpsc::channel(ASAP_QUEUE);
        let writer = tokio::spawn(pu_writer(pw, rx));

        let d1: Vec<u8> = (0..16 * 1024 * 1024).map(pattern).collect();
        let d2: Vec<u8> = (0..1024 * 1024).map(|i| pattern(i + 7)).collect();
        let (mut server1, relay1) = pair().await;
        let (mut server2, relay2) = pair().await;
        let (mut r1, _w1) = relay1.into_split();
        let (mut r2, _w2) = relay2.into_split();
        let sent1 = d1.clone();
        let feeder1 = tokio::spawn(async move {
            server1.write_all(&sent1).await.unwrap();
            server1.shutdown().await.unwrap();
            server1
        });
        let mut buf = BytesMut::new();
        let mut pending = None;
        for _ in 0..400 {
            let r = tokio::time::timeout(
                Duration::from_millis(50),
                asap_down(&mut r1, &to_pu, &mut buf, &mut pending),
            )
            .await;
            assert!(r.is_err(), "cannot finish while the PU does not read");
            if pending.is_some() {
                break;
            }
        }
        assert!(pending.is_some(), "the dropped pump holds no chunk");
        // The move: server 1 is left; what the pump did not take stays in its socket.
        let left = tokio::spawn(async move {
            let mut v = Vec::new();
            r1.read_to_end(&mut v).await.unwrap();
            v
        });
        let (ptx, _prx) = watch::channel(0);
        let (pr, _pw) = pu.into_split();
        let reader = tokio::spawn(pu_read(pr, ptx));
        let sent2 = d2.clone();
        let feeder2 = tokio::spawn(async move {
            server2.write_all(&sent2).await.unwrap();
            server2.shutdown().await.unwrap();
            server2
        });
        assert!(matches!(
            within(
                "pump from server 2",
                asap_down(&mut r2, &to_pu, &mut buf, &mut pending)
            )
            .await,
            End::Eof
        ));
        drop(to_pu);
        within("PU writer", writer).await.unwrap();
        let left = within("server 1 rest", left).await.unwrap();
        let _ = within("feeder 1", feeder1).await.unwrap();
        let _ = within("feeder 2", feeder2).await.unwrap();
        let pu = within("PU reader", reader).await.unwrap();
        let taken = d1.len() - left.len();
        assert!(taken > 0 && !left.is_empty(), "the move came mid-stream");
        assert_eq!(d1[taken..], left[..]);
        let mut want = d1[..taken].to_vec();
        want.extend_from_slice(&d2);
        assert_eq!(pu.data.len(), want.len(), "bytes lost or doubled");
        assert!(pu.data == want, "bytes corrupted or reordered");
        assert_eq!(pu.end, LostReason::PeerClosed);
    }

    fn lack_of_resources(control: &[AsapMessage]) -> bool {
        matches!(control, [AsapMessage::Error(e)]
            if e.error.first_code() == Some(CauseCode::LackOfResources))
    }

    /// Step 197: no server runs the application; the PU gets an ASAP_ERROR whose Operation
    /// Error has the cause Lack of Resources, then the association closes.
    #[tokio::test]
    async fn asap_pu_gets_error_cause_when_no_server_runs() {
        let (driver, _moves) = fake_driver(vec![]);
        let addr = asap_endpoint(driver).await;
        let (r, _w) = pu_connect(addr).await.into_split();
        let (ptx, _prx) = watch::channel(0);
        let pu = within("PU reader", pu_read(r, ptx)).await;
        assert!(pu.data.is_empty());
        assert!(
            lack_of_resources(&pu.control),
            "want one ASAP_ERROR (Lack of Resources), got {:?}",
            pu.control
        );
        assert_eq!(pu.end, LostReason::PeerClosed);
    }

    /// A close order (drain timeout, issue 19 item 1) ends an ASAP session: the PU gets
    /// what the server sent, then the association closes, without an ASAP_ERROR and
    /// without a move to another server.
    #[tokio::test]
    async fn asap_close_order_ends_the_session_without_a_move() {
        let l0 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (driver, mut moves) = fake_driver(vec![l0.local_addr().unwrap()]);
        let addr = asap_endpoint(driver).await;
        let (r, mut w) = pu_connect(addr).await.into_split();
        let (ptx, mut prx) = watch::channel(0);
        let reader = tokio::spawn(pu_read(r, ptx));
        w.send(&data_frame(b"ping")).await.unwrap();
        let (mut s, _) = within("accept", l0.accept()).await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(b"pong").await.unwrap();
        within("pong at the PU", prx.wait_for(|n| *n == 4))
            .await
            .unwrap();
        let order = within("the session's order channel", moves.recv())
            .await
            .unwrap();
        order
            .send(SessionOrder::Close {
                reason: "drain timeout".into(),
            })
            .unwrap();
        let pu = within("PU reader", reader).await.unwrap();
        assert_eq!(pu.data, b"pong");
        assert!(pu.control.is_empty(), "{:?}", pu.control);
        assert_eq!(pu.end, LostReason::PeerClosed);
        // The relay let go of the server too.
        let mut rest = Vec::new();
        within("server side closed", s.read_to_end(&mut rest))
            .await
            .unwrap();
        drop(w);
    }

    /// Step 197 during reselection: the only server dies mid-session; the PU gets what the
    /// server sent, then the ASAP_ERROR, then the close.
    #[tokio::test]
    async fn asap_pu_gets_error_cause_when_last_server_dies() {
        let l0 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (driver, _moves) = fake_driver(vec![l0.local_addr().unwrap()]);
        let addr = asap_endpoint(driver).await;
        let (r, mut w) = pu_connect(addr).await.into_split();
        let (ptx, _prx) = watch::channel(0);
        let reader = tokio::spawn(pu_read(r, ptx));
        w.send(&data_frame(b"ping")).await.unwrap();
        let (mut s, _) = within("accept", l0.accept()).await.unwrap();
        drop(l0);
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(b"pong").await.unwrap();
        drop(s); // killed: the port refuses now, so the relay's probe fails
        let pu = within("PU reader", reader).await.unwrap();
        assert_eq!(pu.data, b"pong");
        assert!(
            lack_of_resources(&pu.control),
            "want one ASAP_ERROR (Lack of Resources), got {:?}",
            pu.control
        );
        assert_eq!(pu.end, LostReason::PeerClosed);
        drop(w);
    }
}
