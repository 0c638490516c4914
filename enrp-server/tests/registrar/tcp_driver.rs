//! The driver's per-association run-to-completion path (issue 15, `enrp-server/src/driver.rs`
//! module doc) over real TCP on 127.0.0.1, on a multi-threaded runtime so that the
//! association tasks run on different worker threads: a message the core produces for
//! another association than the one being handled is queued and that association's task
//! woken.

use rserpool_tests::registrar::{
    connect, loopback_tcp, recv_msg, register, send, spawn, tcp_driver, Running,
};

use std::time::Duration;

use asap::wire::asap_msg::{EndpointUnreachable, HandleResolution};
use asap::wire::{AsapMessage, Message, Policy, PoolElementInfo, Protocol, TransportUse};
use enrp_server::core::CoreConfig;

const ID: u32 = 0x7E57_0D01;

async fn start(tune: impl FnOnce(&mut CoreConfig)) -> Running {
    let mut core = CoreConfig::new(ID);
    core.asap_announce_targets = Vec::new();
    tune(&mut core);
    let lo = "127.0.0.1:0".parse().expect("lit");
    spawn(core, tcp_driver(lo, lo, 100)).await.expect("bind")
}

fn pe(id: u32) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 600_000,
        user_transport: loopback_tcp(7000, TransportUse::DataOnly),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// An ENDPOINT_UNREACHABLE from a PU's association makes the core send an
/// ENDPOINT_KEEP_ALIVE on the PE's association (RFC 5352 §3.5 verification, issue 13):
/// the PE's task is idle waiting for input and must be woken to write it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_for_another_association_wakes_its_task() {
    let srv = start(|c| {
        c.max_bad_pe_reports = 1;
        c.keep_alive_interval = Duration::from_secs(3600);
        c.keep_alive_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut pe_a = connect(srv.asap, Protocol::Asap).await;
    let r = register(&mut pe_a, "Wake", pe(0x51)).await;
    assert!(!r.reject, "{r:?}");
    let mut pu = connect(srv.asap, Protocol::Asap).await;
    send(&mut pu, HandleResolution::new("Wake")).await;
    match recv_msg(&mut pu, Protocol::Asap).await {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => {
            assert_eq!(r.pool_elements.len(), 1);
            assert_eq!(r.pool_elements[0].id, 0x51);
        }
        other => panic!("{other:?}"),
    }
    send(
        &mut pu,
        EndpointUnreachable {
            pool_handle: "Wake".into(),
            pe_identifier: 0x51,
        },
    )
    .await;
    // recv_msg waits at most 10 s; the keep-alive interval is an hour, so this keep-alive
    // can only be the verification probe.
    match recv_msg(&mut pe_a, Protocol::Asap).await {
        Message::Asap(AsapMessage::EndpointKeepAlive(k)) => {
            assert_eq!(k.pe_identifier, Some(0x51));
            assert_eq!(k.pool_handle.to_string(), "Wake");
            assert_eq!(k.server_id, ID);
        }
        other => panic!("expected ENDPOINT_KEEP_ALIVE, got {other:?}"),
    }
    srv.stop().await;
}
