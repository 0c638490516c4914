//! The ASAP/ENRP host test matrix (issue 17): the same scenarios over TCP and over
//! userspace SCTP over UDP (`sctp-udp`, RFC 6951), so SCTP semantics (PPIDs 11/12, message
//! boundaries, streams) are exercised on hosts without kernel SCTP. Each scenario runs the
//! real registrar (`enrp-server` driver), PEs and PUs in this process on 127.0.0.1 and
//! asserts on decoded messages. sctp-udp uses one UDP port for the whole process (port 0:
//! any free one), demultiplexed by SCTP port.
//!
//! Run: `cargo test -p rserpool-tests --test api transport_matrix`

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use asap::pu::PoolUser;
use asap::transport::{Event, TransportKind};
use asap::wire::{AsapMessage, Message, Protocol};
use enrp_server::core::CoreConfig;
use rserpool_tests::api::POOL;
use rserpool_tests::registrar::{
    connect_over, deregister_pes, next_msg, peer_core, register_pes, resolve_on, send, spawn,
    tcp_driver, Running,
};

fn init(kind: TransportKind) {
    if kind == TransportKind::SctpUdp {
        asap::transport::sctp_udp::set_process_defaults(0, None);
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn registrar(kind: TransportKind, id: u32, core: Option<CoreConfig>, enrp: u16) -> Running {
    let mut core = core.unwrap_or_else(|| CoreConfig::new(id));
    core.asap_announce_targets = Vec::new();
    let lo: SocketAddr = "127.0.0.1:0".parse().expect("lit");
    let mut driver = tcp_driver(lo, SocketAddr::from(([127, 0, 0, 1], enrp)), 100);
    if enrp == 0 {
        driver.enrp = Vec::new();
    }
    driver.transport = kind;
    spawn(core, driver).await.expect("bind registrar")
}

/// Raw ASAP: registrations answered with PPID 11 and the PE's ID, resolution lists
/// exactly the registered PEs, deregistration removes one.
async fn raw_registration_resolution(kind: TransportKind) {
    init(kind);
    let r = registrar(kind, 0x2001, None, 0).await;
    let mut a = connect_over(kind, r.asap, Protocol::Asap).await;
    assert_eq!(a.kind(), kind);
    register_pes(&mut a, "127.0.0.1".parse().expect("lit"), [11, 12, 13]).await;
    assert_eq!(resolve_on(&mut a).await, BTreeSet::from([11, 12, 13]));
    // The registrar answers with PPID 11 on the wire's message (SCTP) or implied (TCP).
    send(&mut a, asap::wire::asap_msg::HandleResolution::new(POOL)).await;
    let m = next_msg(&mut a, Duration::from_secs(10)).await;
    assert_eq!(m.ppid, 11);
    assert_eq!(m.stream, 0);
    match Message::decode(Protocol::Asap, &m.bytes)
        .expect("decodes")
        .message
    {
        Message::Asap(AsapMessage::HandleResolutionResponse(x)) => {
            assert!(!x.pool_elements.is_empty());
            assert_eq!(x.pool_handle.as_bytes(), POOL.as_bytes());
        }
        other => panic!("expected HANDLE_RESOLUTION_RESPONSE, got {other:?}"),
    }
    deregister_pes(&mut a, [12]).await;
    assert_eq!(resolve_on(&mut a).await, BTreeSet::from([11, 13]));
    a.close().await.expect("close");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), a.recv()).await {
            Ok(Ok(Event::Lost(_))) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("no end of association after close"),
        }
    }
    r.stop().await;
}

/// The library PE registers over `kind`, a PU resolves it (user transport of the same
/// kind: SCTP parameter for sctp-udp) and a session echoes data through it.
async fn pe_pu_session_echo(kind: TransportKind) {
    init(kind);
    let r = registrar(kind, 0x2002, None, 0).await;
    // The same echo PE as the mixed-transport tests (PE and user transport of `kind`).
    let (_pe, id) = crate::transport_mixed::echo_pe(kind, r.asap).await;
    let mut pcfg = crate::transport_mixed::pu_config(kind, r.asap);
    pcfg.seed = Some(3);
    let pu = PoolUser::start(pcfg).await.expect("start PU");
    let data = (0..5u8).map(|i| vec![i; 1000 + i as usize * 3000]);
    crate::transport_mixed::resolve_and_echo(&pu, id, kind, data).await;
    r.stop().await;
}

/// Two peered registrars (ENRP over `kind`, PPID 12): PEs registered at the first are
/// resolvable at the second.
async fn peered_registrars_share_pes(kind: TransportKind) {
    init(kind);
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let e1 = SocketAddr::from(([127, 0, 0, 1], p1));
    let e2 = SocketAddr::from(([127, 0, 0, 1], p2));
    let c1 = peer_core(
        0x3001,
        vec![e2],
        Duration::from_secs(3),
        Duration::from_millis(500),
    );
    let c2 = peer_core(
        0x3002,
        vec![e1],
        Duration::from_secs(3),
        Duration::from_millis(500),
    );
    let r1 = registrar(kind, 0x3001, Some(c1), p1).await;
    let r2 = registrar(kind, 0x3002, Some(c2), p2).await;
    let mut a1 = connect_over(kind, r1.asap, Protocol::Asap).await;
    register_pes(&mut a1, "127.0.0.1".parse().expect("lit"), [101, 102]).await;
    let mut a2 = connect_over(kind, r2.asap, Protocol::Asap).await;
    let mut last = BTreeSet::new();
    for _ in 0..100 {
        last = resolve_on(&mut a2).await;
        if last == BTreeSet::from([101, 102]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last,
        BTreeSet::from([101, 102]),
        "PEs of r1 not visible at r2"
    );
    // A deregistration at r1 reaches r2 too.
    deregister_pes(&mut a1, [101]).await;
    for _ in 0..100 {
        last = resolve_on(&mut a2).await;
        if last == BTreeSet::from([102]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, BTreeSet::from([102]));
    r2.stop().await;
    r1.stop().await;
}

macro_rules! matrix {
    ($($name:ident),* $(,)?) => {
        mod tcp {
            $(#[tokio::test] async fn $name() { super::$name(asap::transport::TransportKind::Tcp).await })*
        }
        mod sctp_udp {
            $(#[tokio::test] async fn $name() { super::$name(asap::transport::TransportKind::SctpUdp).await })*
        }
    };
}

matrix!(
    raw_registration_resolution,
    pe_pu_session_echo,
    peered_registrars_share_pes,
);
