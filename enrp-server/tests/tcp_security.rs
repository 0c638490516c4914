//! Host integration tests of the registrar's trust boundaries (issue 13, SECURITY.md) over
//! TCP on loopback: real drivers on 127.0.0.{41,42}, attackers on other loopback addresses.
//! Assertions are on resolutions and handle table dumps; waits are polls with a generous
//! bound, never timing assertions.

mod common;
use common::{connect, recv_msg, register_pes, resolve_all, send, Running, POOL};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use asap::transport::{Transport, TransportConfig, TransportKind};
use asap::wire::enrp_msg::{HandleUpdate, Presence};
use asap::wire::{
    EnrpMessage, Message, Policy, PoolElement, Protocol, TransportParameter, TransportUse,
    UpdateAction,
};
use enrp_server::core::{CoreConfig, PeeringConfig};
use enrp_server::driver::{DriverConfig, Server};
use tokio::sync::oneshot;

const IDS: [u32; 2] = [0x0000_0B01, 0x0000_0B02];
const ROGUE_ID: u32 = 0x0BAD_0001;

fn ip(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 41 + i as u8])
}

fn enrp_addr(i: usize) -> SocketAddr {
    SocketAddr::new(ip(i), 19_931)
}

/// Registrar `i` of a pair with static peers (the default peer admission: allow-list).
async fn start(i: usize) -> Option<Running> {
    let mut core = CoreConfig::new(IDS[i]);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.peers = vec![enrp_addr(1 - i)];
    core.peering = PeeringConfig {
        enabled: true,
        multicast: None,
        heartbeat_cycle: Duration::from_millis(200),
        max_time_last_heard: Duration::from_millis(2000),
        max_time_no_response: Duration::from_millis(2000),
        mentor_discovery_timeout: Duration::from_millis(500),
        ..PeeringConfig::default()
    };
    let driver = DriverConfig {
        asap: vec![SocketAddr::new(ip(i), 0)],
        enrp: vec![enrp_addr(i)],
        transport: TransportKind::Tcp,
        announce_ttl: 1,
        enrp_announce: Vec::new(),
        max_associations: 100,
    };
    let server = match Server::bind(core, driver).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIP: cannot bind registrar on {}: {e}", ip(i));
            return None;
        }
    };
    let asap = server.asap_addrs()[0];
    let enrp = server.enrp_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Some(Running {
        asap,
        enrp,
        stop: Some(tx),
        task,
    })
}

fn rogue_pe(id: u32) -> PoolElement {
    PoolElement {
        id,
        home_server_id: ROGUE_ID,
        // "infinite" registration life
        registration_life: -1,
        user_transport: TransportParameter::Tcp {
            port: 6666,
            transport_use: TransportUse::DataOnly,
            address: "127.0.0.66".parse().expect("lit"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// The attack of issue 13: a host that is not an allowed peer sends PRESENCE from an
/// unknown server ID, then HANDLE_UPDATE ADD_PE, over an ENRP association. The rogue PE
/// must never be resolvable; the association survives (a PRESENCE with R is still
/// answered); an allowed (static) peer still replicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_peer_cannot_inject_pes_but_allowed_peer_replicates() {
    let Some(a) = start(0).await else { return };
    let Some(b) = start(1).await else { return };

    // The allowed peer B replicates a PE registered there to A.
    let mut pe = connect(b.asap, Protocol::Asap).await;
    register_pes(&mut pe, "127.0.0.1".parse().expect("lit"), [0x100]).await;
    let mut replicated = false;
    for _ in 0..150 {
        if resolve_all(a.asap).await.contains(&0x100) {
            replicated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        replicated,
        "PE registered at the allowed peer B resolvable at A"
    );

    // The rogue, from 127.0.0.66 (not a static peer, not allow-listed).
    let rogue_local = SocketAddr::from(([127, 0, 0, 66], 0));
    let mut rogue = match Transport::new(TransportConfig::enrp(TransportKind::Tcp))
        .connect(&[a.enrp], &[rogue_local])
        .await
    {
        Ok(x) => x,
        Err(e) => {
            eprintln!("SKIP: cannot connect from 127.0.0.66: {e}");
            return;
        }
    };
    send(
        &mut rogue,
        Presence {
            reply_required: false,
            sender: ROGUE_ID,
            receiver: 0,
            checksum: 0xFFFF,
            server_information: None,
        },
    )
    .await;
    for id in [0x666, 0x667] {
        send(
            &mut rogue,
            HandleUpdate {
                takeover_suggested: false,
                sender: ROGUE_ID,
                receiver: IDS[0],
                action: UpdateAction::AddPe,
                reserved: 0,
                pool_handle: POOL.into(),
                pool_element: rogue_pe(id),
            },
        )
        .await;
    }
    // The association survives: a PRESENCE with R is answered.
    send(
        &mut rogue,
        Presence {
            reply_required: true,
            sender: ROGUE_ID,
            receiver: 0,
            checksum: 0xFFFF,
            server_information: None,
        },
    )
    .await;
    match recv_msg(&mut rogue, Protocol::Enrp).await {
        Message::Enrp(EnrpMessage::Presence(p)) => assert_eq!(p.sender, IDS[0]),
        other => panic!("expected PRESENCE, got {other:?}"),
    }
    // The messages before the answered PRESENCE were processed: the rogue PEs are not there.
    for _ in 0..10 {
        let ids = resolve_all(a.asap).await;
        assert!(
            !ids.contains(&0x666) && !ids.contains(&0x667),
            "rogue PE resolvable: {ids:x?}"
        );
        assert!(ids.contains(&0x100), "the allowed peer's PE stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let table = common::dump_table(a.enrp).await;
    assert!(!table.contains_key(&0x666), "rogue PE in the handle table");
    drop(rogue);
    drop(pe);
    a.stop().await;
    b.stop().await;
}
