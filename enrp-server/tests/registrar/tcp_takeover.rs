//! Host integration test of the ENRP takeover end to end (RFC 5353 §3.6,
//! asap/wire/INTEROP.md §5.8) with the real pieces: two registrar drivers (ASAP/ENRP and peering over TCP) on
//! 127.0.0.31/32 and an `asap` [`PoolElement`] registered at registrar A, which knows no
//! other registrar. A is stopped; B takes A over, connects to the address and port A
//! recorded for the PE (its registrar association's, shared with a listener by
//! `SO_REUSEPORT`) and sends ENDPOINT_KEEP_ALIVE with the H flag: the PE answers, adopts B
//! as home and re-registers there; B keeps it past the keep-alive timeout
//! (`verify_adopted`) and monitors it over that association.
//!
//! Waits are polls with a generous upper bound; assertions are on PE events, the PE's
//! status, B's handle table dump and a handle resolution at B.

use rserpool_tests::registrar::{
    connect, handle_table, loopback_tcp, peer_core, recv_msg as recv, send, spawn_or_skip,
    tcp_driver, Running,
};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use asap::pe::{PeConfig, PeEvent, PoolElement, PoolElementConfig};
use asap::wire::asap_msg::HandleResolution;
use asap::wire::{AsapMessage, Message, Policy, Protocol, TransportParameter, TransportUse};

const A: u32 = 0x0000_0B01;
const B: u32 = 0x0000_0B02;
const POOL: &str = "TakeoverPool";
const KEEP_ALIVE: Duration = Duration::from_millis(400);

fn ip(i: usize) -> [u8; 4] {
    [127, 0, 0, 31 + i as u8]
}

fn enrp_addr(i: usize) -> SocketAddr {
    SocketAddr::from((ip(i), 19_911))
}

async fn start(i: usize, id: u32) -> Option<Running> {
    let mut core = peer_core(
        id,
        vec![enrp_addr(1 - i)],
        Duration::from_millis(600),
        Duration::from_millis(500),
    );
    core.keep_alive_interval = KEEP_ALIVE;
    core.keep_alive_timeout = KEEP_ALIVE;
    // The PEs are on loopback: in the takeover scope of this test (SECURITY.md).
    core.security.takeover_scope = vec!["127.0.0.0/8".parse().expect("lit")];
    core.peering.takeover_expiry = Duration::from_millis(1500);
    core.peering.verify_adopted = true;
    spawn_or_skip(
        core,
        tcp_driver(SocketAddr::from((ip(i), 0)), enrp_addr(i), 100),
    )
    .await
}

/// The handle table of a registrar (hsdump style): PE ID → (home, ASAP transport).
async fn dump(enrp: SocketAddr) -> BTreeMap<u32, (u32, Option<TransportParameter>)> {
    handle_table(enrp, 0x7001)
        .await
        .into_iter()
        .map(|(id, e)| (id, (e.home_server_id, e.asap_transport)))
        .collect()
}

async fn poll_dump(
    enrp: SocketAddr,
    what: &str,
    mut ok: impl FnMut(&BTreeMap<u32, (u32, Option<TransportParameter>)>) -> bool,
) -> BTreeMap<u32, (u32, Option<TransportParameter>)> {
    let mut last = BTreeMap::new();
    for _ in 0..100 {
        last = dump(enrp).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached; last dump {last:?}");
}

async fn next_event(pe: &mut PoolElement, what: &str) -> PeEvent {
    tokio::time::timeout(Duration::from_secs(20), pe.next_event())
        .await
        .unwrap_or_else(|_| panic!("{what}: no PE event within 20 s"))
        .expect("PE running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_reaches_the_pe_with_the_home_flag_and_keeps_it() {
    let Some(a) = start(0, A).await else { return };
    let Some(b) = start(1, B).await else {
        a.stop().await;
        return;
    };
    // The PE knows only registrar A: after A is gone it can only be reached by B.
    let user = loopback_tcp(7, TransportUse::DataPlusControl);
    let mut cfg = PeConfig::new(POOL, user, Policy::RoundRobin);
    cfg.link.static_registrars = vec![vec![a.asap]];
    cfg.link.hunt_initial_backoff = Duration::from_millis(100);
    cfg.link.hunt_max_backoff = Duration::from_millis(400);
    cfg.registration_life = Duration::from_secs(30);
    let mut pe = PoolElement::register(PoolElementConfig::tcp(cfg))
        .await
        .expect("PE starts");
    let id = pe.identifier();
    let shared = pe.registrar_listen_addrs().to_vec();
    assert_eq!(shared.len(), 1, "adoptable by default: one shared port");
    tokio::time::timeout(Duration::from_secs(10), pe.wait_registered())
        .await
        .expect("registered within 10 s")
        .expect("registration accepted");

    // B learns the PE from A, with A as home and the ASAP transport A recorded: the PE's
    // shared port.
    let at_b = poll_dump(b.enrp, "PE replicated to B", |d| {
        d.get(&id).is_some_and(|(home, _)| *home == A)
    })
    .await;
    match &at_b[&id].1 {
        Some(TransportParameter::Tcp { port, .. }) => assert_eq!(*port, shared[0].port()),
        other => panic!("ASAP transport of the PE at B: {other:?}"),
    }

    a.stop().await;
    // B takes A over and reaches the PE: H-flag keep-alive → ACK → home is B.
    let mut keep_alives_from_b = 0;
    loop {
        match next_event(&mut pe, "home change to B").await {
            PeEvent::KeepAlive {
                server_id,
                home_flag,
            } if server_id == B => {
                assert!(home_flag, "first keep-alive from B carries the H flag");
                keep_alives_from_b += 1;
            }
            PeEvent::HomeChanged { to, .. } => {
                assert_eq!(to, B);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(keep_alives_from_b, 1);
    // The PE re-registers at its new home over B's association.
    loop {
        if let PeEvent::Registered { identifier, .. } | PeEvent::Reregistered { identifier, .. } =
            next_event(&mut pe, "re-registration at B").await
        {
            assert_eq!(identifier, id);
            break;
        }
    }
    let status = pe.status();
    assert_eq!(status.home, Some(B));
    assert!(status.registered);

    // Past the keep-alive timeout (verify_adopted) B still has the PE, owned by B, and
    // monitors it over the association: plain keep-alives from B are answered.
    let mut plain = 0;
    while plain < 3 {
        if let PeEvent::KeepAlive {
            server_id: B,
            home_flag: false,
        } = next_event(&mut pe, "keep-alives from B").await
        {
            plain += 1;
        }
    }
    let at_b = dump(b.enrp).await;
    assert_eq!(
        at_b.get(&id).map(|e| e.0),
        Some(B),
        "B owns the PE: {at_b:?}"
    );
    assert_eq!(at_b.len(), 1);

    // And PUs asking B get it.
    let mut pu = connect(b.asap, Protocol::Asap).await;
    send(&mut pu, HandleResolution::new(POOL)).await;
    match recv(&mut pu, Protocol::Asap).await {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => {
            assert!(r.error.is_none(), "{r:?}");
            assert_eq!(
                r.pool_elements.iter().map(|p| p.id).collect::<Vec<_>>(),
                vec![id]
            );
        }
        other => panic!("expected HANDLE_RESOLUTION_RESPONSE, got {other:?}"),
    }

    assert!(pe.deregister().await.expect("deregistered at B"));
    poll_dump(b.enrp, "PE deregistered at B", |d| d.is_empty()).await;
    b.stop().await;
}
