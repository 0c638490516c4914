//! The pool user side of the session layer: [`Session`] (see the [module
//! documentation](super)).
//!
//! A session is a tokio task owning the association to the current PE. [`Session::send`]
//! queues a data message (FIFO, numbered); [`Session::recv`] yields [`SessionEvent`]s: data
//! from the PE and [`Failover`] notices, in the order they happened.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::{debug, info, warn};

use super::request::Pending;
use super::{
    check_ppid, decode_frame, encode_frame, user_endpoint, Frame, SessionConfig, SessionError,
    SessionFailure,
};
use crate::pu::PoolUser;
use crate::transport::{
    AssocReader, AssocWriter, Event, Transport, TransportConfig, TransportKind,
};
use crate::wire::asap_msg::CookieEcho;
use crate::wire::{AsapMessage, CauseCode, PeIdentifier, PoolElementInfo, PoolHandle};

/// Why the session left a PE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverReason {
    /// The association to the PE ended (peer closed, reset, SCTP COMM_LOST).
    AssociationLost,
    /// Writing to the PE failed.
    SendFailed,
    /// No reply within [`SessionConfig::reply_timeout`].
    Timeout,
    /// The PE sent an ASAP_ERROR (RFC 5352 §2.2.13) on the session, e.g. a proxy PE that
    /// has no server for the application (Lack of Resources): it cannot serve us, so the
    /// session moves on. The Operation Error's cause codes.
    PeError(Vec<CauseCode>),
}

/// A completed failover to another PE (RFC 5351 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The PE that failed.
    pub from: PeIdentifier,
    /// The PE now serving the session.
    pub to: PeIdentifier,
    /// The new PE's user transport addresses.
    pub to_addrs: Vec<SocketAddr>,
    /// Why.
    pub reason: FailoverReason,
    /// True if an ASAP_COOKIE_ECHO with the old PE's last cookie was sent to the new PE.
    pub cookie_echoed: bool,
    /// Index of the first data message sent to the new PE; unanswered messages with a
    /// smaller index may be lost and are the application's to re-send.
    pub resend_from: u64,
    /// PEs tried (including the successful one).
    pub attempts: usize,
    /// Time from detecting the failure to the new association being ready.
    pub took: std::time::Duration,
}

/// What a session delivers to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Application data from the current PE.
    Data(Bytes),
    /// The session moved to another PE.
    Failover(Failover),
    /// The session ended: no PE reachable. Last event. The typed cause is
    /// [`SessionFailure::error`]; `to_string()` gives the text this variant used to carry.
    Failed(SessionFailure),
}

enum Cmd {
    Data(Bytes),
    Close(oneshot::Sender<()>),
}

/// A session to a pool; see the [module documentation](super).
///
/// **Read what arrives.** Data, failover notices and the final failure are queued without
/// bound for [`recv`](Self::recv) (the [`request`](Self::request) calls read them for you);
/// a PE's replies that nobody reads stay in memory. Sending is bounded: [`send`](Self::send)
/// waits while the session's outgoing queue is full. Dropping the `Session` closes it.
pub struct Session {
    tx: Arc<Mutex<(u64, mpsc::Sender<Cmd>)>>,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    current: tokio::sync::watch::Receiver<Option<PoolElementInfo>>,
    /// Requests of [`Session::request`] awaiting replies, oldest first.
    pub(super) pending: VecDeque<Pending>,
    /// [`SessionConfig::request_timeout`].
    pub(super) request_timeout: Option<std::time::Duration>,
    /// Failovers seen by the request calls, for [`Session::take_failovers`].
    pub(super) failovers: Vec<Failover>,
}

struct Conn {
    pe: PoolElementInfo,
    kind: TransportKind,
    reader: AssocReader,
    writer: AssocWriter,
}

struct Actor {
    pu: PoolUser,
    handle: PoolHandle,
    cfg: SessionConfig,
    conn: Option<Conn>,
    cookie: Option<Vec<u8>>,
    card: Vec<PoolElementInfo>,
    sent: u64,
    outstanding: i64,
    last_activity: Instant,
    events: mpsc::UnboundedSender<SessionEvent>,
    current: tokio::sync::watch::Sender<Option<PoolElementInfo>>,
}

impl Session {
    /// Opens a session to the pool: resolves the handle (or uses the cache), selects a PE
    /// by the pool's policy and connects, trying further PEs if one cannot be reached.
    pub async fn connect(
        pu: &PoolUser,
        handle: impl Into<PoolHandle>,
        cfg: SessionConfig,
    ) -> Result<Session, SessionError> {
        check_ppid(cfg.data_ppid)?;
        let handle = handle.into();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (cur_tx, current) = tokio::sync::watch::channel(None);
        let request_timeout = cfg.request_timeout;
        let mut actor = Actor {
            pu: pu.clone(),
            handle,
            cfg,
            conn: None,
            cookie: None,
            card: Vec::new(),
            sent: 0,
            outstanding: 0,
            last_activity: Instant::now(),
            events: ev_tx,
            current: cur_tx,
        };
        let mut failed = HashSet::new();
        let (conn, _) = actor.connect_any(&mut failed, None).await?;
        actor.set_conn(conn);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(actor.run(rx));
        Ok(Session {
            tx: Arc::new(Mutex::new((0, tx))),
            events,
            current,
            pending: VecDeque::new(),
            request_timeout,
            failovers: Vec::new(),
        })
    }

    /// Queues one application message for the current PE; returns its index (see
    /// [`Failover::resend_from`]).
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<u64, SessionError> {
        let mut g = self.tx.lock().await;
        let idx = g.0;
        g.1.send(Cmd::Data(data.into()))
            .await
            .map_err(|_| SessionError::Closed)?;
        g.0 += 1;
        Ok(idx)
    }

    /// Next event: data, a failover notice, or the final failure. `None` once closed.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// The PE currently serving the session.
    pub fn current_pe(&self) -> Option<PoolElementInfo> {
        self.current.borrow().clone()
    }

    /// Closes the association to the current PE and ends the session.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        let g = self.tx.lock().await;
        if g.1.send(Cmd::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

impl Actor {
    fn set_conn(&mut self, c: Conn) {
        let _ = self.current.send(Some(c.pe.clone()));
        self.outstanding = 0;
        self.last_activity = Instant::now();
        self.conn = Some(c);
    }

    /// Picks and connects a PE not in `failed`: business-card PEs first, then the pool's
    /// policy over the PU cache (resolving when needed). Returns the connection and the
    /// number of attempts.
    async fn connect_any(
        &mut self,
        failed: &mut HashSet<PeIdentifier>,
        refused: Option<PeIdentifier>,
    ) -> Result<(Conn, usize), SessionError> {
        let mut attempts = 0;
        let mut refreshed = false;
        while attempts < self.cfg.max_failover_attempts {
            let candidate = match self.card.iter().find(|p| !failed.contains(&p.id)).cloned() {
                Some(p) => p,
                None => match self.pu.select(self.handle.clone()).await {
                    Ok(p) if !failed.contains(&p.id) => p,
                    Ok(p) => {
                        // The cache (or the registrar) still offers a PE that just failed:
                        // drop it (reported, unless it refused us with an ASAP_ERROR).
                        if refused == Some(p.id) {
                            self.pu.forget(self.handle.clone(), p.id);
                        } else {
                            self.pu.report_unreachable(self.handle.clone(), p.id);
                        }
                        if refreshed {
                            tokio::time::sleep(self.cfg.retry_delay).await;
                        }
                        refreshed = true;
                        let _ = self.pu.refresh(self.handle.clone()).await;
                        attempts += 1;
                        continue;
                    }
                    Err(e) => {
                        debug!(error = %e, "no PE available");
                        // A timed-out resolution already waited its bound (and names the
                        // registrar's failure): do not multiply it by the attempts.
                        if matches!(e, crate::pu::PuError::Timeout { .. })
                            || attempts + 1 >= self.cfg.max_failover_attempts
                        {
                            return Err(e.into());
                        }
                        tokio::time::sleep(self.cfg.retry_delay).await;
                        attempts += 1;
                        continue;
                    }
                },
            };
            attempts += 1;
            let Some((kind, addrs)) = user_endpoint(&candidate) else {
                failed.insert(candidate.id);
                continue;
            };
            // An SCTP user transport is reached over sctp-udp (RFC 6951) if the PU uses
            // sctp-udp, else over kernel SCTP where the kernel has it, else over sctp-udp,
            // the only other way to speak SCTP.
            let mut tc = match kind {
                TransportKind::Sctp if self.pu.registrar_transport() == TransportKind::SctpUdp => {
                    TransportConfig::asap(TransportKind::SctpUdp)
                }
                TransportKind::Sctp => {
                    let mut tc = TransportConfig::asap(TransportKind::Auto);
                    tc.auto_fallback = TransportKind::SctpUdp;
                    tc
                }
                k => TransportConfig::asap(k),
            };
            tc.connect_timeout = self.cfg.connect_timeout;
            match Transport::new(tc).connect(&addrs, &[]).await {
                Ok(assoc) => {
                    let kind = assoc.kind();
                    let (reader, writer) = assoc.into_split();
                    info!(
                        pe = format_args!("{:#010x}", candidate.id),
                        ?addrs,
                        "session connected"
                    );
                    return Ok((
                        Conn {
                            pe: candidate,
                            kind,
                            reader,
                            writer,
                        },
                        attempts,
                    ));
                }
                Err(e) => {
                    warn!(pe = format_args!("{:#010x}", candidate.id), error = %e, "cannot reach PE");
                    failed.insert(candidate.id);
                    self.card.retain(|p| p.id != candidate.id);
                    self.pu
                        .report_unreachable(self.handle.clone(), candidate.id);
                }
            }
        }
        Err(SessionError::NoPoolElement { attempts })
    }

    async fn failover(&mut self, reason: FailoverReason) -> Result<(), SessionError> {
        let started = Instant::now();
        let Some(old) = self.conn.take() else {
            return Err(SessionError::Closed);
        };
        let from = old.pe.id;
        warn!(
            pe = format_args!("{from:#010x}"),
            ?reason,
            "PE failed; failing over"
        );
        drop(old);
        let _ = self.current.send(None);
        // A PE that answered with ASAP_ERROR is alive: it is only left (not selected again
        // by this failover), not reported unreachable to the registrar (RFC 5352 §3.5 is
        // about PEs that cannot be reached).
        let refused = matches!(reason, FailoverReason::PeError(_)).then_some(from);
        if refused.is_some() {
            self.pu.forget(self.handle.clone(), from);
        } else {
            self.pu.report_unreachable(self.handle.clone(), from);
        }
        self.card.retain(|p| p.id != from);
        let mut failed = HashSet::from([from]);
        let (mut conn, attempts) = self.connect_any(&mut failed, refused).await?;
        let mut cookie_echoed = false;
        if let Some(c) = &self.cookie {
            let m = encode_frame(
                conn.kind,
                self.cfg.data_ppid,
                &Frame::Control(CookieEcho { cookie: c.clone() }.into()),
            )?;
            match conn.writer.send(&m).await {
                Ok(()) => cookie_echoed = true,
                Err(e) => warn!(error = %e, "cannot send COOKIE_ECHO"),
            }
        }
        let ev = Failover {
            from,
            to: conn.pe.id,
            to_addrs: user_endpoint(&conn.pe).map(|x| x.1).unwrap_or_default(),
            reason,
            cookie_echoed,
            resend_from: self.sent,
            attempts,
            took: started.elapsed(),
        };
        info!(
            from = format_args!("{from:#010x}"),
            to = format_args!("{:#010x}", ev.to),
            took_us = ev.took.as_micros() as u64,
            "failover complete"
        );
        self.set_conn(conn);
        let _ = self.events.send(SessionEvent::Failover(ev));
        Ok(())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let deadline = match self.cfg.reply_timeout {
                Some(t) if self.outstanding > 0 => Some(self.last_activity + t),
                _ => None,
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let outcome: Option<FailoverReason> = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Data(d)) => {
                        self.sent += 1;
                        if self.outstanding <= 0 {
                            self.last_activity = Instant::now();
                        }
                        self.outstanding += 1;
                        match encode_frame(conn.kind, self.cfg.data_ppid, &Frame::Data(d)) {
                            Ok(m) => match conn.writer.send(&m).await {
                                Ok(()) => None,
                                Err(e) => {
                                    debug!(error = %e, "session write failed");
                                    Some(FailoverReason::SendFailed)
                                }
                            },
                            Err(e) => {
                                warn!(error = %e, "data message dropped");
                                None
                            }
                        }
                    }
                    Some(Cmd::Close(done)) => {
                        let _ = conn.writer.close().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        let _ = conn.writer.close().await;
                        return;
                    }
                },
                ev = conn.reader.recv() => match ev {
                    Ok(Event::Message(m)) => {
                        match decode_frame(conn.kind, m) {
                            Some(Frame::Data(d)) => {
                                self.outstanding -= 1;
                                self.last_activity = Instant::now();
                                let _ = self.events.send(SessionEvent::Data(d));
                                None
                            }
                            Some(Frame::Control(AsapMessage::Cookie(c))) => {
                                debug!(len = c.cookie.len(), "cookie stored");
                                self.cookie = Some(c.cookie);
                                None
                            }
                            Some(Frame::Control(AsapMessage::BusinessCard(b))) => {
                                debug!(pes = b.pool_elements.len(), "business card stored");
                                self.card = b.pool_elements;
                                None
                            }
                            Some(Frame::Control(AsapMessage::Error(e))) => {
                                let causes: Vec<CauseCode> =
                                    e.error.causes.iter().map(|c| c.code).collect();
                                warn!(?causes, "PE sent ASAP_ERROR: leaving it");
                                Some(FailoverReason::PeError(causes))
                            }
                            Some(Frame::Control(other)) => {
                                debug!(
                                    msg = other.message_type().name().unwrap_or("?"),
                                    "ignoring control message on session"
                                );
                                None
                            }
                            None => None,
                        }
                    }
                    Ok(Event::Lost(reason)) => {
                        debug!(%reason, "PE association lost");
                        Some(FailoverReason::AssociationLost)
                    }
                    Ok(_) => None,
                    Err(_) => Some(FailoverReason::AssociationLost),
                },
                _ = sleep => Some(FailoverReason::Timeout),
            };
            if let Some(reason) = outcome {
                if let Err(e) = self.failover(reason).await {
                    warn!(error = %e, "session failed");
                    let _ = self
                        .events
                        .send(SessionEvent::Failed(SessionFailure::new(e)));
                    return;
                }
            }
        }
    }
}
