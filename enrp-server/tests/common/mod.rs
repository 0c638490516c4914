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

/// Waits (at most 10 s) for the next message on `a` and decodes it as `protocol`.
pub async fn recv_msg(a: &mut Association, protocol: Protocol) -> Message {
    use asap::transport::Event;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), a.recv())
            .await
            .expect("no reply within 10 s")
            .expect("association alive");
        match ev {
            Event::Message(m) => {
                return Message::decode(protocol, &m.bytes)
                    .expect("decodes")
                    .message
            }
            Event::Lost(r) => panic!("association lost: {r}"),
            _ => {}
        }
    }
}

/// The pool every peering test registers in.
pub const POOL: &str = "EchoPool";

/// Registers each PE ID of `ids` in [`POOL`] over `a` (one ASAP_REGISTRATION after the
/// other, each answered before the next), user transport TCP `user:7000`, life 600 s.
/// Panics on a rejection.
pub async fn register_pes(
    a: &mut Association,
    user: std::net::IpAddr,
    ids: impl IntoIterator<Item = u32>,
) {
    use asap::wire::asap_msg::Registration;
    use asap::wire::{AsapMessage, Policy, PoolElementInfo, TransportParameter, TransportUse};
    for id in ids {
        send(
            a,
            Registration {
                pool_handle: POOL.into(),
                pool_element: PoolElementInfo {
                    id,
                    home_server_id: 0,
                    registration_life: 600_000,
                    user_transport: TransportParameter::Tcp {
                        port: 7000,
                        transport_use: TransportUse::DataOnly,
                        address: user,
                    },
                    policy: Policy::RoundRobin,
                    asap_transport: None,
                },
            },
        )
        .await;
        match recv_msg(a, Protocol::Asap).await {
            Message::Asap(AsapMessage::RegistrationResponse(x)) => {
                assert!(!x.reject, "registration of PE {id:#x} rejected: {x:?}");
                assert_eq!(x.pe_identifier, id);
            }
            other => panic!("expected REGISTRATION_RESPONSE for PE {id:#x}, got {other:?}"),
        }
    }
}

/// Deregisters each PE ID of `ids` from [`POOL`] with ASAP_DEREGISTRATION over `a`.
/// Panics on a rejection.
pub async fn deregister_pes(a: &mut Association, ids: impl IntoIterator<Item = u32>) {
    use asap::wire::asap_msg::Deregistration;
    use asap::wire::AsapMessage;
    for id in ids {
        send(
            a,
            Deregistration {
                pool_handle: POOL.into(),
                pe_identifier: id,
            },
        )
        .await;
        match recv_msg(a, Protocol::Asap).await {
            Message::Asap(AsapMessage::DeregistrationResponse(x)) => {
                assert!(!x.reject, "deregistration of PE {id:#x} rejected: {x:?}");
                assert_eq!(x.pe_identifier, id);
            }
            other => panic!("expected DEREGISTRATION_RESPONSE for PE {id:#x}, got {other:?}"),
        }
    }
}

/// The whole handle table of the registrar at `enrp` (hsdump style: HANDLE_TABLE_REQUEST
/// with sender ID 0 on a fresh ENRP association, repeated while the response has the M
/// bit): PE ID → home server ID.
pub async fn dump_table(enrp: SocketAddr) -> std::collections::BTreeMap<u32, u32> {
    use asap::wire::enrp_msg::HandleTableRequest;
    use asap::wire::EnrpMessage;
    let mut a = connect(enrp, Protocol::Enrp).await;
    let mut all = std::collections::BTreeMap::new();
    loop {
        send(
            &mut a,
            HandleTableRequest {
                own_children_only: false,
                sender: 0,
                receiver: 0,
            },
        )
        .await;
        match recv_msg(&mut a, Protocol::Enrp).await {
            Message::Enrp(EnrpMessage::HandleTableResponse(r)) => {
                for p in r.pools {
                    for e in p.pool_elements {
                        all.insert(e.id, e.home_server_id);
                    }
                }
                if !r.more {
                    return all;
                }
            }
            other => panic!("expected HANDLE_TABLE_RESPONSE, got {other:?}"),
        }
    }
}

/// The PE IDs a handle resolution of [`POOL`] asking for all PEs returns at `asap`.
pub async fn resolve_all(asap: SocketAddr) -> std::collections::BTreeSet<u32> {
    use asap::wire::asap_msg::HandleResolution;
    use asap::wire::{AsapMessage, HandleResolutionOption};
    let mut pu = connect(asap, Protocol::Asap).await;
    let mut hr = HandleResolution::new(POOL);
    hr.option = Some(HandleResolutionOption {
        items: HandleResolutionOption::ALL,
    });
    send(&mut pu, hr).await;
    match recv_msg(&mut pu, Protocol::Asap).await {
        Message::Asap(AsapMessage::HandleResolutionResponse(x)) => {
            x.pool_elements.iter().map(|p| p.id).collect()
        }
        other => panic!("expected HANDLE_RESOLUTION_RESPONSE, got {other:?}"),
    }
}
