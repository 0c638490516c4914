//! Host integration test of ENRP peering: three real registrars (tokio driver, ASAP/ENRP
//! over TCP, peering over ENRP associations) on distinct loopback addresses 127.0.0.{21,22,23}, 300 PEs.
//! One registrar is stopped: a survivor takes its PEs over and they stay resolvable at
//! every survivor. Assertions are on handle table dumps and resolutions; waits are polls
//! with a generous upper bound, never timing assertions.

mod common;
use common::{connect, send, Running};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::{Association, Event, TransportKind};
use asap::wire::asap_msg::{HandleResolution, Registration};
use asap::wire::enrp_msg::HandleTableRequest;
use asap::wire::{
    AsapMessage, EnrpMessage, HandleResolutionOption, Message, Policy, PoolElementInfo, Protocol,
    TransportParameter, TransportUse,
};
use enrp_server::core::{CoreConfig, PeeringConfig};
use enrp_server::driver::{DriverConfig, Server};
use tokio::sync::oneshot;

const IDS: [u32; 3] = [0x0000_0A01, 0x0000_0A02, 0x0000_0A03];
const PES_PER_REGISTRAR: u32 = 100;

fn enrp_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 21 + i as u8], 19_901))
}

async fn start(i: usize) -> Option<Running> {
    let mut core = CoreConfig::new(IDS[i]);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.peers = (0..3).filter(|j| *j != i).map(enrp_addr).collect();
    core.peering = PeeringConfig {
        enabled: true,
        multicast: None,
        heartbeat_cycle: Duration::from_millis(200),
        max_time_last_heard: Duration::from_millis(600),
        max_time_no_response: Duration::from_millis(600),
        mentor_discovery_timeout: Duration::from_millis(1000),
        takeover_expiry: Duration::from_millis(1500),
        verify_adopted: false,
        ..PeeringConfig::default()
    };
    let driver = DriverConfig {
        asap: vec![SocketAddr::from(([127, 0, 0, 21 + i as u8], 0))],
        enrp: vec![enrp_addr(i)],
        transport: TransportKind::Tcp,
        announce_ttl: 1,
        enrp_announce: Vec::new(),
        max_associations: 1000,
    };
    let server = match Server::bind(core, driver).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIP: cannot bind registrar {i} on 127.0.0.{}: {e}", 21 + i);
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

async fn recv(a: &mut Association, protocol: Protocol) -> Message {
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

/// The whole handle table of a registrar (hsdump style): PE ID → home server ID.
async fn dump(enrp: SocketAddr) -> BTreeMap<u32, u32> {
    let mut a = connect(enrp, Protocol::Enrp).await;
    let mut all = BTreeMap::new();
    loop {
        send(
            &mut a,
            HandleTableRequest {
                own_children_only: false,
                sender: 0x7001,
                receiver: 0,
            },
        )
        .await;
        match recv(&mut a, Protocol::Enrp).await {
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

async fn wait_for<F: FnMut(&[BTreeMap<u32, u32>]) -> bool>(
    enrps: &[SocketAddr],
    what: &str,
    mut ok: F,
) -> Vec<BTreeMap<u32, u32>> {
    let mut last = Vec::new();
    for _ in 0..150 {
        last = Vec::new();
        for e in enrps {
            last.push(dump(*e).await);
        }
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sizes: Vec<usize> = last.iter().map(BTreeMap::len).collect();
    let extra: Vec<(u32, u32)> = last
        .first()
        .map(|m| {
            m.iter()
                .filter(|(id, _)| **id >= 4000)
                .map(|(a, b)| (*a, *b))
                .collect()
        })
        .unwrap_or_default();
    panic!("{what}: not reached within 30 s; table sizes {sizes:?}; ids >= 4000 at the first: {extra:x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_registrars_replicate_and_take_over() {
    let mut regs = Vec::new();
    for i in 0..3 {
        match start(i).await {
            Some(r) => regs.push(r),
            None => return, // reason printed
        }
    }
    // 100 PEs per registrar, all over one association each (the PE host).
    let mut pe_assocs = Vec::new();
    for (i, r) in regs.iter().enumerate() {
        let mut a = connect(r.asap, Protocol::Asap).await;
        for n in 0..PES_PER_REGISTRAR {
            let id = (i as u32 + 1) * 1000 + n;
            send(
                &mut a,
                Registration {
                    pool_handle: "EchoPool".into(),
                    pool_element: PoolElementInfo {
                        id,
                        home_server_id: 0,
                        registration_life: 600_000,
                        user_transport: TransportParameter::Tcp {
                            port: 7000,
                            transport_use: TransportUse::DataOnly,
                            address: "127.0.0.1".parse().expect("lit"),
                        },
                        policy: Policy::RoundRobin,
                        asap_transport: None,
                    },
                },
            )
            .await;
            match recv(&mut a, Protocol::Asap).await {
                Message::Asap(AsapMessage::RegistrationResponse(x)) => {
                    assert!(!x.reject, "{x:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        pe_assocs.push(a);
    }
    let enrps: Vec<SocketAddr> = regs.iter().map(|r| r.enrp).collect();
    let total = 3 * PES_PER_REGISTRAR as usize;
    let tables = wait_for(&enrps, "full replication", |t| {
        t.iter().all(|m| m.len() == total) && t.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    for (id, home) in &tables[0] {
        assert_eq!(*home, IDS[(*id / 1000 - 1) as usize], "PE {id} home");
    }

    // Stop registrar 0 (the PE host keeps its association open; it is simply gone).
    let dead = regs.remove(0);
    dead.stop().await;
    let survivors: Vec<SocketAddr> = regs.iter().map(|r| r.enrp).collect();
    let tables = wait_for(&survivors, "takeover", |t| {
        t.iter()
            .all(|m| m.len() == total && m.values().all(|h| *h != IDS[0]))
            && t[0] == t[1]
    })
    .await;
    // One survivor adopted all 100 PEs of the dead one.
    let adopters: std::collections::BTreeSet<u32> = (1000..1000 + PES_PER_REGISTRAR)
        .map(|id| tables[0][&id])
        .collect();
    assert_eq!(adopters.len(), 1, "one winner: {adopters:?}");
    assert!(IDS[1..].contains(adopters.iter().next().expect("one")));

    // Still resolvable at every survivor.
    for r in &regs {
        let mut pu = connect(r.asap, Protocol::Asap).await;
        let mut hr = HandleResolution::new("EchoPool");
        hr.option = Some(HandleResolutionOption {
            items: HandleResolutionOption::ALL,
        });
        send(&mut pu, hr).await;
        match recv(&mut pu, Protocol::Asap).await {
            Message::Asap(AsapMessage::HandleResolutionResponse(x)) => {
                let ids: std::collections::BTreeSet<u32> =
                    x.pool_elements.iter().map(|p| p.id).collect();
                for id in 1000..1000 + PES_PER_REGISTRAR {
                    assert!(ids.contains(&id), "adopted PE {id} resolvable");
                }
            }
            other => panic!("{other:?}"),
        }
    }
    for r in regs {
        r.stop().await;
    }
    drop(pe_assocs);
}

/// A TCP relay between two registrars X and Y (peer messages travel over ENRP
/// associations): X connects to `x_side` (its view of Y), Y to `y_side` (its view of X);
/// each connection is piped to the other registrar's ENRP listener. Setting `blocked`
/// partitions the pair: piped connections are cut and new ones closed at once.
struct Relay {
    x_side: SocketAddr,
    y_side: SocketAddr,
    blocked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Piped connections now.
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    /// Partitions the pair; returns once no piped connection is left.
    async fn block(&self) {
        use std::sync::atomic::Ordering;
        self.blocked.store(true, Ordering::SeqCst);
        while self.live.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn heal(&self) {
        self.blocked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn relay(x: SocketAddr, y: SocketAddr) -> Relay {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let x_side = l1.local_addr().expect("addr");
    let y_side = l2.local_addr().expect("addr");
    let blocked = Arc::new(AtomicBool::new(false));
    let live = Arc::new(AtomicUsize::new(0));
    for (l, to) in [(l1, y), (l2, x)] {
        let blocked = blocked.clone();
        let live = live.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = l.accept().await {
                if blocked.load(Ordering::Relaxed) {
                    continue; // dropped: closed at once
                }
                let blocked = blocked.clone();
                let live = live.clone();
                live.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        live.fetch_sub(1, Ordering::SeqCst);
                        return;
                    };
                    {
                        let pipe = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                        let cut = async {
                            while !blocked.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        };
                        tokio::select! {
                            _ = pipe => {}
                            _ = cut => {}
                        }
                    }
                    drop((inbound, outbound));
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    Relay {
        x_side,
        y_side,
        blocked,
        live,
    }
}

async fn start_wildcard(i: usize, peers: Vec<SocketAddr>) -> Option<Running> {
    let mut core = CoreConfig::new(IDS[i]);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.peers = peers;
    core.peering = PeeringConfig {
        enabled: true,
        multicast: None,
        heartbeat_cycle: Duration::from_millis(200),
        max_time_last_heard: Duration::from_millis(600),
        max_time_no_response: Duration::from_millis(600),
        mentor_discovery_timeout: Duration::from_millis(1000),
        takeover_expiry: Duration::from_millis(1500),
        verify_adopted: false,
        ..PeeringConfig::default()
    };
    // Wildcard ENRP address: no Server Information, so LIST_RESPONSEs cannot route
    // around the relays.
    let driver = DriverConfig {
        asap: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        enrp: vec![wild(i)],
        transport: TransportKind::Tcp,
        announce_ttl: 1,
        enrp_announce: Vec::new(),
        max_associations: 1000,
    };
    let server = match Server::bind(core, driver).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIP: cannot bind registrar {i} on {}: {e}", wild(i));
            return None;
        }
    };
    let asap = server.asap_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Some(Running {
        asap,
        enrp: SocketAddr::from(([127, 0, 0, 1], wild(i).port())),
        stop: Some(tx),
        task,
    })
}

fn wild(i: usize) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 19_921 + i as u16))
}

async fn register_range(a: &mut Association, ids: impl Iterator<Item = u32>) {
    for id in ids {
        send(
            a,
            Registration {
                pool_handle: "EchoPool".into(),
                pool_element: PoolElementInfo {
                    id,
                    home_server_id: 0,
                    registration_life: 600_000,
                    user_transport: TransportParameter::Tcp {
                        port: 7000,
                        transport_use: TransportUse::DataOnly,
                        address: "127.0.0.1".parse().expect("lit"),
                    },
                    policy: Policy::RoundRobin,
                    asap_transport: None,
                },
            },
        )
        .await;
        match recv(a, Protocol::Asap).await {
            Message::Asap(AsapMessage::RegistrationResponse(x)) => assert!(!x.reject, "{x:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_and_handlespaces_converge() {
    let here = |i: usize| SocketAddr::from(([127, 0, 0, 1], wild(i).port()));
    // Relays for the pairs (0,1), (0,2), (1,2).
    let r01 = relay(here(0), here(1)).await;
    let r02 = relay(here(0), here(2)).await;
    let r12 = relay(here(1), here(2)).await;
    let peers = [
        vec![r01.x_side, r02.x_side],
        vec![r01.y_side, r12.x_side],
        vec![r02.y_side, r12.y_side],
    ];
    let mut regs = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        match start_wildcard(i, p.clone()).await {
            Some(r) => regs.push(r),
            None => return,
        }
    }
    let mut hosts = Vec::new();
    for (i, r) in regs.iter().enumerate() {
        let mut a = connect(r.asap, Protocol::Asap).await;
        let base = (i as u32 + 1) * 1000;
        register_range(&mut a, base..base + 100).await;
        hosts.push(a);
    }
    let enrps: Vec<SocketAddr> = regs.iter().map(|r| r.enrp).collect();
    wait_for(&enrps, "initial replication", |t| {
        t.iter().all(|m| m.len() == 300) && t.windows(2).all(|w| w[0] == w[1])
    })
    .await;

    // Cut registrar 2 off, long enough for failure detection and takeover on both sides.
    r02.block().await;
    r12.block().await;
    // Changes on both sides: 20 PEs leave registrar 0 (their host association closes),
    // 20 new ones register at registrar 2.
    let mut leaving = connect(regs[0].asap, Protocol::Asap).await;
    register_range(&mut leaving, 5000..5020).await;
    let mut extra = connect(regs[2].asap, Protocol::Asap).await;
    register_range(&mut extra, 6000..6020).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(leaving);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Heal.
    r02.heal();
    r12.heal();
    let expected: std::collections::BTreeSet<u32> = (1000..1100)
        .chain(2000..2100)
        .chain(3000..3100)
        .chain(6000..6020)
        .collect();
    let tables = wait_for(&enrps, "convergence after the partition", |t| {
        t.iter().all(|m| {
            m.keys()
                .copied()
                .collect::<std::collections::BTreeSet<u32>>()
                == expected
        }) && t.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    // Every PE is owned by the registrar holding its association.
    for (id, home) in &tables[0] {
        let want = match id {
            6000..=6019 => IDS[2],
            _ => IDS[(id / 1000 - 1) as usize],
        };
        assert_eq!(*home, want, "PE {id}");
    }
    for r in regs {
        r.stop().await;
    }
    drop((hosts, extra));
}
