//! `rsp hsdump`: a registrar's whole handlespace through ENRP_HANDLE_TABLE_REQUEST
//! (RFC 5353 §2.2) on a fresh ENRP association, asked again while the
//! ENRP_HANDLE_TABLE_RESPONSE (§2.3) carries the M bit — what rsplib's `hsdump` does.
//!
//! The request carries Sending Server's ID 0 (we are no ENRP server). Our registrar answers
//! it only to allowed peers and to the read-only `--hsdump-allow` list (default: loopback;
//! SECURITY.md); anyone else gets a response with the R bit, reported as
//! [`HsdumpError::Rejected`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::{Association, Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::enrp_msg::{HandleTableRequest, Presence};
use asap::wire::{EnrpMessage, Message, Protocol};
use asap::wire::{ServerInformation, TransportParameter, TransportUse};
use serde::Serialize;

use crate::PeView;

/// At most this many request/response rounds: a registrar that always sets the M bit
/// cannot keep the tool looping for ever.
pub const MAX_ROUNDS: usize = 10_000;

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum HsdumpError {
    /// No ENRP association could be set up.
    #[error("cannot connect to the registrar's ENRP endpoint {addr} over {kind:?}: {reason} (is it an ENRP port, 9901 by default? try --transport tcp or sctp)")]
    Connect {
        /// The registrar.
        addr: SocketAddr,
        /// The transport tried.
        kind: TransportKind,
        /// The transport error.
        reason: String,
    },
    /// Sending or receiving failed, or the association closed.
    #[error("ENRP association with {addr} failed: {reason}")]
    Association {
        /// The registrar.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// No response within the timeout.
    #[error("no ENRP_HANDLE_TABLE_RESPONSE from {addr} within {timeout:?} (raise --timeout?)")]
    Timeout {
        /// The registrar.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The registrar set the R bit.
    #[error("the registrar at {addr} rejected the handle table request: this host must be an allowed ENRP peer or in its --hsdump-allow list (default: loopback only)")]
    Rejected {
        /// The registrar.
        addr: SocketAddr,
    },
    /// More than [`MAX_ROUNDS`] responses with the M bit.
    #[error("the registrar at {addr} kept setting the M bit for {MAX_ROUNDS} rounds")]
    Endless {
        /// The registrar.
        addr: SocketAddr,
    },
}

/// A registrar's handlespace as dumped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandleTable {
    /// Where it was asked.
    pub registrar: SocketAddr,
    /// Its server ID (Sending Server's ID of the responses).
    pub server_id: u32,
    /// Request/response rounds it took (M-bit continuations + 1).
    pub rounds: usize,
    /// Every PE, by pool handle then PE ID.
    pub pool_elements: Vec<PeView>,
}

async fn next_message(
    a: &mut Association,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Message, HsdumpError> {
    loop {
        let ev = tokio::time::timeout(timeout, a.recv())
            .await
            .map_err(|_| HsdumpError::Timeout { addr, timeout })?
            .map_err(|e| HsdumpError::Association {
                addr,
                reason: e.to_string(),
            })?;
        match ev {
            Event::Message(m) => match Message::decode(Protocol::Enrp, &m.bytes) {
                Ok(d) => return Ok(d.message),
                Err(e) => tracing::warn!(%addr, error = %e, "undecodable ENRP message skipped"),
            },
            Event::Lost(r) => {
                return Err(HsdumpError::Association {
                    addr,
                    reason: format!("association lost: {r}"),
                })
            }
            _ => {}
        }
    }
}

/// Sends a PRESENCE (RFC 5353 §2.1) with a random server ID and this end's addresses of
/// the association as its Server Information, so that a registrar that answers only known
/// peers (rsplib) takes us as one; returns the server ID to use as sender.
async fn introduce(
    a: &mut Association,
    addr: SocketAddr,
    receiver: u32,
) -> Result<u32, HsdumpError> {
    let id = rand::random::<u32>().max(1);
    let local = a.local_addrs().unwrap_or_default();
    let server_information = local.first().map(|first| ServerInformation {
        server_id: id,
        transport: TransportParameter::Sctp {
            port: first.port(),
            transport_use: TransportUse::DataOnly,
            addresses: local.iter().map(SocketAddr::ip).collect(),
        },
    });
    let presence = Message::from(Presence {
        reply_required: false,
        sender: id,
        receiver,
        checksum: 0xFFFF,
        server_information,
    });
    send(a, addr, &presence).await?;
    Ok(id)
}

/// Sends one ENRP message (PPID 12, stream 0) to the registrar at `addr`.
async fn send(a: &mut Association, addr: SocketAddr, m: &Message) -> Result<(), HsdumpError> {
    let bytes = m.to_bytes().map_err(|e| HsdumpError::Association {
        addr,
        reason: format!("encoding {}: {e}", m.name()),
    })?;
    a.send(&Msg::new(Protocol::Enrp.ppid(), 0, bytes))
        .await
        .map_err(|e| HsdumpError::Association {
            addr,
            reason: e.to_string(),
        })
}

/// Dumps the handlespace of the registrar whose ENRP endpoint is `addr` (RFC 5353 §2.2,
/// §2.3), following the M bit. `timeout` bounds the connection set-up and each response.
pub async fn hsdump(
    addr: SocketAddr,
    kind: TransportKind,
    timeout: Duration,
) -> Result<HandleTable, HsdumpError> {
    let transport = Transport::new(TransportConfig::enrp(kind));
    let targets = [addr];
    let mut a = tokio::time::timeout(timeout, transport.connect(&targets, &[]))
        .await
        .map_err(|_| HsdumpError::Timeout { addr, timeout })?
        .map_err(|e| HsdumpError::Connect {
            addr,
            kind,
            reason: e.to_string(),
        })?;
    // PE ID → view, per pool: a PE repeated across rounds is listed once.
    let mut pools: BTreeMap<String, BTreeMap<u32, PeView>> = BTreeMap::new();
    // Our registrar answers hosts on its --hsdump-allow list with sender ID 0. rsplib's
    // registrar answers only known peers: after its rejection we introduce ourselves with
    // a PRESENCE carrying a server ID and our ENRP addresses (what rsplib's own hsdump
    // does), then ask again under that ID.
    let mut sender = 0;
    let mut round = 0;
    while round < MAX_ROUNDS {
        round += 1;
        let req = Message::from(HandleTableRequest {
            own_children_only: false,
            sender,
            receiver: 0,
        });
        send(&mut a, addr, &req).await?;
        let r = loop {
            match next_message(&mut a, addr, timeout).await? {
                Message::Enrp(EnrpMessage::HandleTableResponse(r)) => break r,
                other => tracing::debug!(%addr, "ignoring {}", other.name()),
            }
        };
        if r.reject {
            if sender != 0 || round > 1 {
                return Err(HsdumpError::Rejected { addr });
            }
            sender = introduce(&mut a, addr, r.sender).await?;
            round = 0;
            continue;
        }
        for p in &r.pools {
            let pool = p.pool_handle.to_string();
            let entry = pools.entry(pool.clone()).or_default();
            for pe in &p.pool_elements {
                entry.insert(pe.id, PeView::of(&pool, pe));
            }
        }
        if !r.more {
            return Ok(HandleTable {
                registrar: addr,
                server_id: r.sender,
                rounds: round,
                pool_elements: pools.into_values().flat_map(|m| m.into_values()).collect(),
            });
        }
    }
    Err(HsdumpError::Endless { addr })
}
