//! Host integration test of ENRP peering: three real registrars (tokio driver, ASAP/ENRP
//! over TCP, peering over ENRP associations) on distinct loopback addresses 127.0.0.{21,22,23}, 300 PEs.
//! One registrar is stopped: a survivor takes its PEs over and they stay resolvable at
//! every survivor. Assertions are on handle table dumps and resolutions; waits are polls
//! with a generous upper bound, never timing assertions.

use rserpool_tests::registrar::{
    connect, handle_table, homes, peer_core, recv_msg as recv, register_pes, send, spawn_or_skip,
    tcp_driver, Running,
};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use asap::wire::asap_msg::HandleResolution;
use asap::wire::{AsapMessage, HandleResolutionOption, Message, Protocol};
use enrp_server::core::CoreConfig;

const IDS: [u32; 3] = [0x0000_0A01, 0x0000_0A02, 0x0000_0A03];
const PES_PER_REGISTRAR: u32 = 100;

fn enrp_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 21 + i as u8], 19_901))
}

/// Registrar `i`'s core: peering with `peers`, a peer silent for 600 ms is dead, its PEs
/// are taken over after 1.5 s without checking them first.
fn core(i: usize, peers: Vec<SocketAddr>) -> CoreConfig {
    let mut core = peer_core(
        IDS[i],
        peers,
        Duration::from_millis(600),
        Duration::from_millis(1000),
    );
    core.peering.takeover_expiry = Duration::from_millis(1500);
    core.peering.verify_adopted = false;
    core
}

async fn start(i: usize) -> Option<Running> {
    let core = core(i, (0..3).filter(|j| *j != i).map(enrp_addr).collect());
    let asap = SocketAddr::from(([127, 0, 0, 21 + i as u8], 0));
    spawn_or_skip(core, tcp_driver(asap, enrp_addr(i), 1000)).await
}

/// The whole handle table of a registrar (hsdump style): PE ID → home server ID.
async fn dump(enrp: SocketAddr) -> BTreeMap<u32, u32> {
    homes(handle_table(enrp, 0x7001).await)
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
        let base = (i as u32 + 1) * 1000;
        register_pes(&mut a, lo(), base..base + PES_PER_REGISTRAR).await;
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
    let core = core(i, peers);
    // Wildcard ENRP address: no Server Information, so LIST_RESPONSEs cannot route
    // around the relays.
    let mut r = spawn_or_skip(
        core,
        tcp_driver(SocketAddr::from(([127, 0, 0, 1], 0)), wild(i), 1000),
    )
    .await?;
    r.enrp = SocketAddr::from(([127, 0, 0, 1], wild(i).port()));
    Some(r)
}

fn lo() -> std::net::IpAddr {
    "127.0.0.1".parse().expect("lit")
}

fn wild(i: usize) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 19_921 + i as u16))
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
        register_pes(&mut a, lo(), base..base + 100).await;
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
    register_pes(&mut leaving, lo(), 5000..5020).await;
    let mut extra = connect(regs[2].asap, Protocol::Asap).await;
    register_pes(&mut extra, lo(), 6000..6020).await;
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
