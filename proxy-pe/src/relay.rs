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
//! messages and are relayed through user space. Half-closes are propagated.
//!
//! Reselection (steps 203/205): the session moves to another server when
//! - the core says so (lifetime expired, maintenance window, server declared down);
//! - writing to the server fails;
//! - the server closes while the client is still sending and a TCP probe of the server's
//!   service port fails, immediately or 250 ms later (a server that closes its side on
//!   purpose still accepts connections, so it ends the session normally instead).
//!
//! Bytes in flight inside the failed server are lost: legacy servers share no session
//! state, so the new server continues with what the client sends next.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use asap::session::{
    ServerEvent, ServerSession, ServerSessionReader, ServerSessionWriter, SessionListener,
};

use crate::core::{Assignment, SessionError, SessionId};
use crate::splice::{self, Ended, ForwardError, Pipe};

/// Relay buffer per direction.
const BUF: usize = 64 * 1024;
/// Connect timeout towards legacy servers and for probes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests of a session task to the driver.
#[derive(Debug)]
pub enum SessionCmd {
    /// Step 191: open a session of `app`; `moves` receives move requests.
    Open {
        /// Application.
        app: String,
        /// Move notifications for this session: (server to leave, reason).
        moves: mpsc::UnboundedSender<(String, String)>,
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
    /// Step 209: the session ended.
    Close(SessionId),
}

/// TCP connect with [`CONNECT_TIMEOUT`]: the service-port probe of the two-channel rule.
pub async fn probe(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Pause between the two probes of [`server_gone`].
const RECHECK: Duration = Duration::from_millis(250);

/// The server closed a session while the client was still talking: did it fail, or end
/// the session on purpose? Two probes of its service port [`RECHECK`] apart: failed if
/// either probe fails. (A killed server may still accept for a moment after its
/// connections were reset, so one immediate probe is not enough.)
async fn server_gone(addr: SocketAddr) -> bool {
    if !probe(addr).await {
        return true;
    }
    tokio::time::sleep(RECHECK).await;
    !probe(addr).await
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
    fn new() -> Buffer {
        let memory = || Buffer::Memory {
            buf: vec![0u8; BUF],
            start: 0,
            end: 0,
        };
        if std::env::var_os("PROXY_PE_RELAY").is_none_or(|v| v != "splice") {
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
                    Ok(n) => *start += n,
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
    let (mtx, mut moves) = mpsc::unbounded_channel();
    let mut a = match ask(&driver, |reply| SessionCmd::Open {
        app: app.clone(),
        moves: mtx,
        reply,
    })
    .await
    {
        Ok(a) => a,
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
    moves: &mut mpsc::UnboundedReceiver<(String, String)>,
    driver: &mpsc::UnboundedSender<SessionCmd>,
) -> Result<(), String> {
    let mut cbuf = Buffer::new();
    let mut sbuf = Buffer::new();
    let mut client_eof = false;
    loop {
        tracing::debug!(session = a.session, server = %a.server, addr = %a.addr, "relaying");
        let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a.addr)).await {
            Ok(Ok(s)) => s,
            _ => {
                *a = reselect(driver, a.session, true)
                    .await
                    .map_err(|e| e + " (reselection)")?;
                continue;
            }
        };
        let _ = server.set_nodelay(true);
        let (mut sr, mut sw) = server.into_split();
        if client_eof {
            let _ = sw.shutdown().await;
        }
        // What ended this server's part of the session.
        let outcome = {
            let c2s = pump(cr, &mut sw, &mut cbuf, true);
            let s2c = pump(&mut sr, cw, &mut sbuf, false);
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
                            if server_gone(a.addr).await {
                                break Outcome::Failed;
                            }
                            break Outcome::Done;
                        }
                    },
                    m = moves.recv() => match m {
                        // A request for a server this session already left: stale.
                        Some((from, _)) if from != a.server => {}
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
                *a = reselect(driver, a.session, outcome == Outcome::Failed)
                    .await
                    .map_err(|e| e + " (reselection)")?;
            }
        }
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

/// PU → server. On the PU's close the server's write side is shut down.
async fn asap_up(r: &mut ServerSessionReader, w: &mut OwnedWriteHalf) -> End {
    loop {
        match r.recv().await {
            Ok(Some(ServerEvent::Data(d))) => {
                if w.write_all(&d).await.is_err() {
                    return End::WriteErr;
                }
            }
            Ok(Some(ServerEvent::CookieEcho(_))) | Ok(Some(ServerEvent::BusinessCard(_))) => {}
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

/// Server → PU, in data frames of at most [`ASAP_CHUNK`] bytes.
async fn asap_down(r: &mut OwnedReadHalf, w: &mut ServerSessionWriter, buf: &mut [u8]) -> End {
    loop {
        match r.read(buf).await {
            Ok(0) => return End::Eof,
            Ok(n) => {
                if let Err(e) = w.send(bytes::Bytes::copy_from_slice(&buf[..n])).await {
                    tracing::debug!(error = %e, "ASAP session write failed");
                    return End::WriteErr;
                }
            }
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
    let (mtx, mut moves) = mpsc::unbounded_channel();
    let mut a = match ask(&driver, |reply| SessionCmd::Open {
        app: app.clone(),
        moves: mtx,
        reply,
    })
    .await
    {
        Ok(a) => a,
        Err(e) => {
            // Step 197: the PU's session layer sees the association end and fails over
            // to another PE of the pool (e.g. a second proxy), or reports the failure.
            let _ = pw.close().await;
            return Err(e);
        }
    };
    let session = a.session;
    let mut sbuf = vec![0u8; ASAP_CHUNK];
    let mut pu_eof = false;
    let result: Result<(), String> = loop {
        let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a.addr)).await {
            Ok(Ok(s)) => s,
            _ => match reselect(&driver, session, true).await {
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
            let up = asap_up(&mut pr, &mut sw);
            let down = asap_down(&mut sr, &mut pw, &mut sbuf);
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
                            let gone = server_gone(a.addr).await;
                            tracing::debug!(session, server = %a.server, gone, "server closed mid-session; probed");
                            if gone {
                                break Outcome::Failed;
                            }
                            break Outcome::Done;
                        }
                    },
                    m = moves.recv() => match m {
                        Some((from, _)) if from != a.server => {}
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
            Outcome::Failed | Outcome::Move => {
                match reselect(&driver, session, outcome == Outcome::Failed).await {
                    Ok(n) => a = n,
                    Err(e) => break Err(e + " (reselection)"),
                }
            }
        }
    };
    let _ = driver.send(SessionCmd::Close(session));
    let _ = pw.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected loopback pair, split: (client side, relay side).
    async fn pair() -> (TcpStream, TcpStream) {
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
                pump(&mut r, &mut w1, &mut buf, true),
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
            pump(&mut r, &mut w2, &mut buf, true).await,
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
