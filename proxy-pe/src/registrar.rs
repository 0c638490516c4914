//! ASAP client side towards the ENRP server (RFC 5352 §2.2, §3.1–3.3): registration and
//! deregistration of the PEs the core wants, and answers to the home registrar's Endpoint
//! Keep-Alives (RFC 5352 §3.6) — in mode A only while the core says the legacy server is
//! fresh and running.
//!
//! This uses the wire codec and transport of `asap` directly (the PE API of the `puapi`
//! branch was not ready when this was written). One association to the first reachable
//! registrar of the list; after a loss the next one is tried and **all** wanted
//! registrations are sent again (a full snapshot), so neither a registrar restart nor a
//! proxy restart loses a registration.

use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::{Association, Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::asap_msg::{Deregistration, EndpointKeepAliveAck, Registration};
use asap::wire::{AsapMessage, Message, PoolElement, PoolHandle, Protocol};
use tokio::sync::{mpsc, oneshot};

/// A request from the driver to the registrar task.
#[derive(Debug)]
pub enum RegistrarCmd {
    /// Register (or re-register) a PE.
    Register(String, PoolElement),
    /// Deregister a PE.
    Deregister(String, u32),
}

/// Questions the registrar task asks the driver (which owns the core).
#[derive(Debug)]
pub enum RegistrarQuery {
    /// All registrations wanted now (sent after every (re)connect).
    Snapshot(oneshot::Sender<Vec<(String, PoolElement)>>),
    /// May the keep-alive for this PE be answered?
    KeepAlive(u32, oneshot::Sender<bool>),
    /// PE ids of a pool whose keep-alive may be answered (keep-alive without PE id).
    KeepAlivePool(String, oneshot::Sender<Vec<u32>>),
}

/// Status of the registrar association, for the status output.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RegistrarState {
    /// Registrar in use.
    pub connected_to: Option<SocketAddr>,
    /// Registration responses accepted.
    pub accepted: u64,
    /// Registration responses rejected.
    pub rejected: u64,
    /// Keep-alives answered.
    pub keep_alives_answered: u64,
    /// Keep-alives left unanswered because the server was not fresh/running.
    pub keep_alives_refused: u64,
}

async fn send(a: &mut Association, m: impl Into<Message>) -> Result<(), String> {
    let m = m.into();
    let bytes = m.to_bytes().map_err(|e| e.to_string())?;
    a.send(&Msg::new(m.protocol().ppid(), 0, bytes))
        .await
        .map_err(|e| e.to_string())
}

/// Runs the registrar client until `cmds` closes.
pub async fn run(
    registrars: Vec<SocketAddr>,
    kind: TransportKind,
    mut cmds: mpsc::UnboundedReceiver<RegistrarCmd>,
    query: mpsc::UnboundedSender<RegistrarQuery>,
    state: std::sync::Arc<std::sync::Mutex<RegistrarState>>,
) {
    if registrars.is_empty() {
        // Nothing to talk to: drain commands so the driver never blocks.
        while cmds.recv().await.is_some() {}
        return;
    }
    let transport = Transport::new(TransportConfig::asap(kind));
    let mut next = 0usize;
    loop {
        let to = registrars[next % registrars.len()];
        next += 1;
        let mut assoc = match transport.connect(&[to], &[]).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(registrar = %to, error = %e, "registrar connect failed");
                if drain_for(&mut cmds, Duration::from_millis(500)).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(registrar = %to, "registrar association up");
        if let Ok(mut s) = state.lock() {
            s.connected_to = Some(to);
        }
        // Full snapshot of wanted registrations. Commands queued before this point are
        // superseded by it.
        while cmds.try_recv().is_ok() {}
        let (tx, rx) = oneshot::channel();
        if query.send(RegistrarQuery::Snapshot(tx)).is_err() {
            return;
        }
        let snapshot = rx.await.unwrap_or_default();
        let mut ok = true;
        for (h, pe) in snapshot {
            if let Err(e) = send(&mut assoc, reg(&h, pe)).await {
                tracing::warn!(error = %e, "registration send failed");
                ok = false;
                break;
            }
        }
        while ok {
            tokio::select! {
                c = cmds.recv() => {
                    let r = match c {
                        None => {
                            let _ = assoc.close().await;
                            return;
                        }
                        Some(RegistrarCmd::Register(h, pe)) => send(&mut assoc, reg(&h, pe)).await,
                        Some(RegistrarCmd::Deregister(h, id)) => send(&mut assoc, Deregistration {
                            pool_handle: PoolHandle::from(h.as_str()),
                            pe_identifier: id,
                        }).await,
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "send to registrar failed");
                        ok = false;
                    }
                }
                ev = assoc.recv() => match ev {
                    Ok(Event::Message(m)) => {
                        if let Err(e) = handle(&mut assoc, &m, &query, &state).await {
                            tracing::warn!(error = %e, "registrar message handling failed");
                            ok = false;
                        }
                    }
                    Ok(Event::Lost(r)) => {
                        tracing::warn!(reason = %r, "registrar association lost");
                        ok = false;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "registrar association error");
                        ok = false;
                    }
                }
            }
        }
        if let Ok(mut s) = state.lock() {
            s.connected_to = None;
        }
        assoc.abort();
        if drain_for(&mut cmds, Duration::from_millis(200)).await {
            return;
        }
    }
}

/// Waits `d` while discarding commands (they are superseded by the next snapshot).
/// Returns true when the command channel closed.
async fn drain_for(cmds: &mut mpsc::UnboundedReceiver<RegistrarCmd>, d: Duration) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return false,
            c = cmds.recv() => if c.is_none() { return true },
        }
    }
}

fn reg(h: &str, pe: PoolElement) -> Registration {
    Registration {
        pool_handle: PoolHandle::from(h),
        pool_element: pe,
    }
}

async fn handle(
    assoc: &mut Association,
    m: &Msg,
    query: &mpsc::UnboundedSender<RegistrarQuery>,
    state: &std::sync::Arc<std::sync::Mutex<RegistrarState>>,
) -> Result<(), String> {
    let msg = match Message::decode(Protocol::Asap, &m.bytes) {
        Ok(d) => d.message,
        Err(e) => {
            tracing::warn!(error = %e, "undecodable message from registrar");
            return Ok(());
        }
    };
    match msg {
        Message::Asap(AsapMessage::RegistrationResponse(r)) => {
            if let Ok(mut s) = state.lock() {
                if r.reject {
                    s.rejected += 1;
                } else {
                    s.accepted += 1;
                }
            }
            if r.reject {
                tracing::error!(pool = %r.pool_handle, pe = format!("0x{:08x}", r.pe_identifier), error = ?r.error, "registration rejected");
            } else {
                tracing::debug!(pool = %r.pool_handle, pe = format!("0x{:08x}", r.pe_identifier), "registered");
            }
        }
        Message::Asap(AsapMessage::EndpointKeepAlive(k)) => {
            let ids = match k.pe_identifier {
                Some(id) => {
                    let (tx, rx) = oneshot::channel();
                    query
                        .send(RegistrarQuery::KeepAlive(id, tx))
                        .map_err(|_| "driver gone".to_string())?;
                    if rx.await.unwrap_or(false) {
                        vec![id]
                    } else {
                        Vec::new()
                    }
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    query
                        .send(RegistrarQuery::KeepAlivePool(k.pool_handle.to_string(), tx))
                        .map_err(|_| "driver gone".to_string())?;
                    rx.await.unwrap_or_default()
                }
            };
            if let Ok(mut s) = state.lock() {
                if ids.is_empty() {
                    s.keep_alives_refused += 1;
                } else {
                    s.keep_alives_answered += ids.len() as u64;
                }
            }
            for id in ids {
                send(
                    assoc,
                    EndpointKeepAliveAck {
                        pool_handle: k.pool_handle.clone(),
                        pe_identifier: id,
                    },
                )
                .await?;
            }
        }
        Message::Asap(other) => {
            tracing::debug!(
                msg = other.message_type().name().unwrap_or("?"),
                "from registrar"
            );
        }
        Message::Enrp(_) => {}
    }
    Ok(())
}
