//! Host integration tests of the registrar's trust boundaries (issue 13, SECURITY.md) over
//! TCP on loopback: real drivers on 127.0.0.{41,42}, attackers on other loopback addresses.
//! Assertions are on resolutions and handle table dumps; waits are polls with a generous
//! bound, never timing assertions.

use rserpool_tests::registrar::{
    connect, dump_table, loopback_tcp, peer_core, presence, recv_msg, register_pes, resolve_all,
    resolve_on, send, spawn_or_skip, tcp_driver, Running, POOL,
};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use asap::transport::{Transport, TransportConfig, TransportKind};
use asap::wire::enrp_msg::{HandleUpdate, Presence};
use asap::wire::{
    EnrpMessage, Message, Policy, PoolElementInfo, Protocol, TransportParameter, TransportUse,
    UpdateAction,
};
use enrp_server::core::CoreConfig;

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
    let core = peer_core(
        IDS[i],
        vec![enrp_addr(1 - i)],
        Duration::from_millis(2000),
        Duration::from_millis(500),
    );
    spawn_or_skip(
        core,
        tcp_driver(SocketAddr::new(ip(i), 0), enrp_addr(i), 100),
    )
    .await
}

fn rogue_pe(id: u32) -> PoolElementInfo {
    PoolElementInfo {
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
    send(&mut rogue, presence(ROGUE_ID)).await;
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
            ..presence(ROGUE_ID)
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
    let table = dump_table(a.enrp).await;
    assert!(!table.contains_key(&0x666), "rogue PE in the handle table");
    drop(rogue);
    drop(pe);
    a.stop().await;
    b.stop().await;
}

/// A lone registrar on 127.0.0.43 (no peering) with slow regular keep-alives, so that only
/// the ENDPOINT_UNREACHABLE path can remove a PE within the test.
async fn start_single() -> Option<Running> {
    let mut core = CoreConfig::new(0x0000_0B03);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.max_bad_pe_reports = 3;
    let at = SocketAddr::from(([127, 0, 0, 43], 0));
    spawn_or_skip(core, tcp_driver(at, at, 100)).await
}

/// A PU association from `local` that resolved [`POOL`] (all items) once.
async fn reporter(asap: SocketAddr, local: IpAddr) -> Option<asap::transport::Association> {
    let mut a = Transport::new(TransportConfig::asap(TransportKind::Tcp))
        .connect(&[asap], &[SocketAddr::new(local, 0)])
        .await
        .ok()?;
    resolve_on(&mut a).await;
    Some(a)
}

async fn report(a: &mut asap::transport::Association, id: u32) {
    send(
        a,
        asap::wire::asap_msg::EndpointUnreachable {
            pool_handle: POOL.into(),
            pe_identifier: id,
        },
    )
    .await;
}

/// Issue 13: three PUs on three addresses that resolved the pool send forged
/// ENDPOINT_UNREACHABLEs for a live PE (the `asap` pool element API, which answers
/// keep-alives) over and over: the registrar verifies with a keep-alive before removal, so
/// the PE stays resolvable in at least 99 % of samples. A PE that really does not answer
/// (registered, then silent) is still removed after the configured three reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unreachable_reports_do_not_remove_a_live_pe() {
    use asap::pe::{PeConfig, PoolElement, PoolElementConfig};
    let Some(r) = start_single().await else {
        return;
    };

    let user = loopback_tcp(7000, TransportUse::DataOnly);
    let mut cfg = PeConfig::new(POOL, user, Policy::RoundRobin);
    cfg.identifier = Some(0x11);
    cfg.registration_life = Duration::from_secs(600);
    cfg.link.static_registrars = vec![vec![r.asap]];
    let mut live = PoolElement::register(PoolElementConfig::tcp(cfg))
        .await
        .expect("PE starts");
    live.wait_registered().await.expect("PE registered");

    let mut reporters = Vec::new();
    for last in [51u8, 52, 53] {
        match reporter(r.asap, IpAddr::from([127, 0, 0, last])).await {
            Some(a) => reporters.push(a),
            None => {
                eprintln!("SKIP: cannot connect from 127.0.0.{last}");
                return;
            }
        }
    }
    let mut sampler = connect(r.asap, Protocol::Asap).await;
    let (mut samples, mut present) = (0u32, 0u32);
    for round in 0..40 {
        // The attack: every reporter reports the live PE (several times a round; the
        // issue's attacker sent one batch every 0.5 s).
        for a in reporters.iter_mut() {
            if round % 10 == 0 {
                resolve_on(a).await; // stay "recent" askers
            }
            report(a, 0x11).await;
        }
        for _ in 0..5 {
            samples += 1;
            if resolve_on(&mut sampler).await.contains(&0x11) {
                present += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        u64::from(present) * 100 >= u64::from(samples) * 99,
        "live PE resolvable in only {present} of {samples} samples"
    );

    // A PE that does not answer keep-alives (registered over a raw association that never
    // reads again) is removed after three distinct reporters.
    let mut dead = connect(r.asap, Protocol::Asap).await;
    register_pes(&mut dead, "127.0.0.1".parse().expect("lit"), [0x22]).await;
    for a in reporters.iter_mut() {
        resolve_on(a).await;
        report(a, 0x22).await;
    }
    let mut gone = false;
    for _ in 0..100 {
        let ids = resolve_on(&mut sampler).await;
        if !ids.contains(&0x22) {
            assert!(ids.contains(&0x11), "the live PE is still there: {ids:x?}");
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "really dead PE not removed after 3 reports");
    drop(dead);
    drop(live);
    r.stop().await;
}
