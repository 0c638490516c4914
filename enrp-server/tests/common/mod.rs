//! Helpers shared by the registrar's host integration tests over TCP (`tcp.rs`,
//! `tcp_peering.rs`): a running driver and a client association that speaks messages.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::{Association, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::{Message, Protocol};
use tokio::sync::oneshot;

/// A registrar driver running in this test's runtime.
pub struct Running {
    pub asap: SocketAddr,
    pub enrp: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks the driver to shut down and waits (at most 5 s) for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// A TCP association to `to` carrying `protocol`.
pub async fn connect(to: SocketAddr, protocol: Protocol) -> Association {
    let cfg = match protocol {
        Protocol::Asap => TransportConfig::asap(TransportKind::Tcp),
        Protocol::Enrp => TransportConfig::enrp(TransportKind::Tcp),
    };
    Transport::new(cfg)
        .connect(&[to], &[])
        .await
        .expect("connect")
}

/// Encodes and sends one message with its protocol's PPID on stream 0.
pub async fn send(a: &mut Association, m: impl Into<Message>) {
    let m = m.into();
    let bytes = m.to_bytes().expect("encode");
    a.send(&Msg::new(m.protocol().ppid(), 0, bytes))
        .await
        .expect("send");
}
