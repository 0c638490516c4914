//! `rsp-fixed-responder`: a stateless stand-in for a registrar that answers every
//! ASAP_REGISTRATION with one fixed ASAP_REGISTRATION_RESPONSE and every
//! ASAP_HANDLE_RESOLUTION with one fixed ASAP_HANDLE_RESOLUTION_RESPONSE (3 PEs), both
//! encoded once at start-up (RFC 5352 §2.2.3, §2.2.6). It decodes nothing but the message
//! type byte and keeps no handlespace.
//!
//! It measures the ceiling of a benchmark rig: with the same transport stack as
//! `enrp-server` (asap::transport, tokio, kernel SCTP or TCP) and the same load from
//! `rsp-loadgen`, and the same burst handling (every ready message read, the answers sent as
//! one batch), the rate it reaches is what the machine can do when the registrar's own work
//! costs nothing. BENCHMARKS.md ("Registrar side by side in the VM") divides each registrar's
//! rate by it. Never use it as a registrar: it accepts anything and stores nothing.

#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::Context;
use asap::transport::{Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::asap_msg::{HandleResolutionResponse, RegistrationResponse};
use asap::wire::{
    AsapType, Message, Policy, PoolElementInfo, Protocol, TransportParameter, TransportUse,
};
use bytes::Bytes;
use clap::Parser;

/// Stateless fixed-reply ASAP responder (benchmark ceiling, not a registrar).
#[derive(Debug, Parser)]
#[command(name = "rsp-fixed-responder", version, about)]
struct Args {
    /// Address to listen on for ASAP associations.
    #[arg(long, default_value = "127.0.0.1:3863")]
    listen: SocketAddr,
    /// Transport (auto|sctp|tcp).
    #[arg(long, default_value = "tcp")]
    transport: TransportKind,
    /// Tokio worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The two replies, encoded once.
struct Replies {
    registration: Bytes,
    resolution: Bytes,
}

fn replies() -> anyhow::Result<Replies> {
    let registration = Message::from(RegistrationResponse {
        reject: false,
        pool_handle: "pool-00000".into(),
        pe_identifier: 1,
        error: None,
    })
    .to_bytes()?;
    let pe = |id: u32| PoolElementInfo {
        id,
        home_server_id: 0x5eed_0001,
        registration_life: 300_000,
        user_transport: TransportParameter::Tcp {
            port: 10_000 + id as u16,
            transport_use: TransportUse::DataOnly,
            address: "127.0.0.1".parse().expect("literal"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    };
    let resolution = Message::from(HandleResolutionResponse {
        accept_updates: false,
        pool_handle: "pool-00000".into(),
        policy: None,
        pool_elements: vec![pe(1), pe(2), pe(3)],
        error: None,
    })
    .to_bytes()?;
    Ok(Replies {
        registration,
        resolution,
    })
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let replies = std::sync::Arc::new(replies()?);
    let t = Transport::new(TransportConfig::asap(args.transport));
    let l = t
        .listen(&[args.listen])
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "rsp-fixed-responder listens on {} over {}",
        args.listen,
        l.kind()
    );
    let ppid = Protocol::Asap.ppid();
    loop {
        let a = match l.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let replies = replies.clone();
        tokio::spawn(async move {
            let (mut r, mut w) = a.into_split();
            // As enrp-server does: one wait, every message that is ready, one batch of
            // answers (one `sendmmsg` over kernel SCTP, one `write` over TCP).
            let (mut out, mut buf) = (Vec::new(), Vec::new());
            loop {
                let mut ev = r.recv().await;
                let lost = loop {
                    let m = match ev {
                        Ok(Event::Message(m)) => Some(m),
                        Ok(Event::Lost(_)) | Err(_) => break true,
                        Ok(_) => None,
                    };
                    let reply = match m.and_then(|m| m.bytes.first().map(|&b| AsapType::from(b))) {
                        Some(AsapType::Registration) => Some(&replies.registration),
                        Some(AsapType::HandleResolution) => Some(&replies.resolution),
                        _ => None,
                    };
                    if let Some(reply) = reply {
                        out.push(Msg::new(ppid, 0, reply.clone()));
                    }
                    match r.recv_ready() {
                        Some(next) => ev = next,
                        None => break false,
                    }
                };
                if !out.is_empty() && w.send_batch(&out, &mut buf).await.is_err() {
                    return;
                }
                out.clear();
                if lost {
                    return;
                }
            }
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    }
    .enable_all()
    .build()?;
    rt.block_on(serve(args))
}
