//! Host integration test of ENRP peering across real network namespaces: three
//! `enrp-server` processes, each alone in its own namespace, peering over ENRP/TCP through a
//! Linux bridge; 300 PEs registered over TCP from the test process in the root namespace.
//!
//! Topology (N is picked per lab, see [`Lab::new`]; k numbers the labs of one process;
//! the lab is `rserpool_tests::netns`'s):
//!
//! ```text
//!  root ns: veth "rspnt<pid>-<k>" 10.213.N.254/24 ──┐
//!                                                 │ hub ns "rspnt-<pid>-<k>-hub":
//!  ns "rspnt-<pid>-<k>-r0": eth0 10.213.N.1/24 ─────┤   bridge br0 (ports up0, p0, p1, p2)
//!  ns "rspnt-<pid>-<k>-r1": eth0 10.213.N.2/24 ─────┤
//!  ns "rspnt-<pid>-<k>-r2": eth0 10.213.N.3/24 ─────┘
//! ```
//!
//! 1. 100 PEs register at each registrar; all three handle table dumps become equal, 300 PEs.
//! 2. Registrar 0 is killed with SIGKILL: both survivors list all 300 PEs, none owned by the
//!    dead one, its 100 owned by a single winner, all resolvable at both.
//! 3. The orphans find a new home (their host re-registers them at the survivor that did
//!    not adopt them): ownership moves there everywhere.
//! 4. Partition: the bridge ports of registrars 1 and 2 are isolated from each other (both
//!    stay reachable from the root namespace). Each side takes the other over; then the
//!    handlespace changes on both sides (new PEs at both, PEs registered and explicitly
//!    deregistered at one). Heal: the dumps converge to the exact expected PE ID set, each PE
//!    owned by the registrar holding its association, all resolvable at both.
//!    `link_down_partition_heals` instead sets registrar 2's link down and up again.
//!
//! `orphans_follow_the_takeover_or_are_removed` replaces step 3 with real `asap` pool
//! elements that the winner reaches with the H-flag keep-alive, and checks that orphans
//! nobody can reach are removed (`verify_adopted`).
//!
//! Waits are polls with a generous deadline that only turns a hang into a failure showing
//! the differing dumps; nothing is timed. Without root or `ip netns` the test prints
//! `SKIP: <reason>` and passes (set `RSERPOOL_REQUIRE_NETNS=1` to make that a failure).
//! Namespaces, the root veth and the registrar processes are removed by a drop guard, also
//! when an assertion fails; namespaces left behind by a killed earlier run are removed at
//! start.

use rserpool_tests::netns::{lab_or_skip, Lab, KEEP_ALIVES_OFF};
use rserpool_tests::registrar::{
    connect, deregister_pes, dump_table, register_pes, resolve_all, POOL,
};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use asap::wire::Protocol;

/// Server IDs of registrars 0, 1, 2.
const IDS: [u32; 3] = [0x0000_0B01, 0x0000_0B02, 0x0000_0B03];
const PES_PER_REGISTRAR: u32 = 100;
/// Upper bound of every wait: turns a hang into a failure; not an expectation.
const DEADLINE: Duration = Duration::from_secs(90);
/// Prefix of everything this test creates (namespaces, the root veth).
const PREFIX: &str = "rspnt";

/// The lab of this test: 3 registrar namespaces in 10.213.N.0/24, every registrar started
/// (the lab's usual arguments, keep-alives effectively off: the test's PE host does not
/// answer them) and listening; `None` after printing SKIP.
async fn started_lab() -> Option<Lab> {
    let mut lab = lab_or_skip(PREFIX, 213, 3, Path::new(env!("CARGO_TARGET_TMPDIR")))?;
    lab.start_registrars(crate::BIN, &IDS, &KEEP_ALIVES_OFF, DEADLINE)
        .await;
    Some(lab)
}

/// Partitions registrars 1 and 2 (`on`) or heals them, as `how` says:
/// [`Partition::Isolate`] isolates their bridge ports from each other ([`Lab::isolate`]);
/// [`Partition::LinkDown`] sets registrar 2's eth0 down / up.
fn isolate_1_2(lab: &Lab, how: Partition, on: bool) -> Result<(), String> {
    match how {
        Partition::Isolate => lab.isolate(&[1, 2], on),
        Partition::LinkDown => lab.link(2, !on),
    }
}

/// Polls registrar `i`'s log until a line contains `needle` (the only view into a
/// registrar the test cannot reach).
async fn wait_log(lab: &Lab, i: usize, needle: &str) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&lab.logs[i]).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "registrar {i}: no {needle:?} in its log within {DEADLINE:?}; tail:\n{}",
            lab.log_tail(i)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Table = BTreeMap<u32, u32>;

/// Polls the handle table dumps of `regs` until `ok` holds; at the deadline fails showing
/// how the dumps differ from each other and from `expected` (if given).
async fn wait_for(
    lab: &Lab,
    regs: &[usize],
    what: &str,
    expected: Option<&Table>,
    mut ok: impl FnMut(&[Table]) -> bool,
) -> Vec<Table> {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < DEADLINE {
        last = Vec::new();
        for &i in regs {
            last.push(dump_table(lab.enrp(i)).await);
        }
        if ok(&last) {
            eprintln!(
                "{what}: reached after {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut msg = format!("{what}: not reached within {DEADLINE:?}\n");
    for (k, &i) in regs.iter().enumerate() {
        msg += &format!(
            "registrar {i} ({:#x}): {} PEs, owners {:x?}\n",
            IDS[i],
            last[k].len(),
            owner_counts(&last[k])
        );
        if let Some(exp) = expected {
            msg += &format!("  vs expected: {}\n", diff(exp, &last[k]));
        }
        if k > 0 {
            msg += &format!("  vs registrar {}: {}\n", regs[0], diff(&last[0], &last[k]));
        }
        msg += &format!(
            "  log tail ({}):\n{}\n",
            lab.logs[i].display(),
            lab.log_tail(i)
        );
    }
    panic!("{msg}");
}

fn owner_counts(t: &Table) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for h in t.values() {
        *m.entry(*h).or_default() += 1;
    }
    m
}

/// What differs between `a` and `b` (first few entries of each kind).
fn diff(a: &Table, b: &Table) -> String {
    let missing: Vec<u32> = a.keys().filter(|k| !b.contains_key(k)).copied().collect();
    let extra: Vec<u32> = b.keys().filter(|k| !a.contains_key(k)).copied().collect();
    let owner: Vec<(u32, u32, u32)> = a
        .iter()
        .filter_map(|(k, h)| b.get(k).filter(|g| *g != h).map(|g| (*k, *h, *g)))
        .collect();
    format!(
        "{} missing {:?}{}, {} extra {:?}{}, {} other owner (id, want, got) {:x?}{}",
        missing.len(),
        &missing[..missing.len().min(8)],
        if missing.len() > 8 { "…" } else { "" },
        extra.len(),
        &extra[..extra.len().min(8)],
        if extra.len() > 8 { "…" } else { "" },
        owner.len(),
        &owner[..owner.len().min(8)],
        if owner.len() > 8 { "…" } else { "" },
    )
}

fn ids(range: std::ops::Range<u32>, home: u32) -> impl Iterator<Item = (u32, u32)> {
    range.map(move |id| (id, home))
}

/// PE IDs of registrar `i`'s initial PEs.
fn initial(i: usize) -> std::ops::Range<u32> {
    let base = (i as u32 + 1) * 1000;
    base..base + PES_PER_REGISTRAR
}

/// How registrars 1 and 2 are cut apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partition {
    /// Their bridge ports are isolated from each other: packets between them are dropped
    /// silently (connections stall), both stay reachable from the root namespace.
    Isolate,
    /// Registrar 2's interface goes down in its namespace: its sends fail at once, and it
    /// is unreachable from everywhere (also from the test: changes only on registrar 1's side).
    LinkDown,
}

/// Variations of the partition step.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    partition: Partition,
    /// Before the partition, the dead registrar's PEs re-register at the survivor that did
    /// not adopt them (what a real PE does when its home is gone), so every PE has a
    /// registrar holding its association. Without it the adopted PEs enter the partition
    /// owned connection-less by the winner, and both sides take them over.
    rehome_orphans: bool,
    /// During the partition, 10 PEs registered before it (and taken over by the other side)
    /// are deregistered at their home.
    deregister_old: bool,
}

/// Builds the lab and runs the scenario; SKIP (return) when namespaces are unavailable.
async fn run(scenario: Scenario) {
    let t0 = Instant::now();
    let Some(mut lab) = started_lab().await else {
        return;
    };
    eprintln!("{scenario:?}: lab 10.213.{}.0/24", lab.net);
    let user = IpAddr::V4(lab.root_ip());

    // 1. 100 PEs at each registrar, one PE host association each.
    let mut host0 = connect(lab.asap(0), Protocol::Asap).await;
    register_pes(&mut host0, user, initial(0)).await;
    let mut host1 = connect(lab.asap(1), Protocol::Asap).await;
    register_pes(&mut host1, user, initial(1)).await;
    let mut host2 = connect(lab.asap(2), Protocol::Asap).await;
    register_pes(&mut host2, user, initial(2)).await;
    let mut expected: Table = (0..3).flat_map(|i| ids(initial(i), IDS[i])).collect();
    let full = expected.clone();
    wait_for(&lab, &[0, 1, 2], "full replication", Some(&full), |t| {
        t.iter().all(|m| *m == full)
    })
    .await;

    // 2. SIGKILL registrar 0.
    lab.kill(0);
    let survivors = [1, 2];
    let tables = wait_for(&lab, &survivors, "takeover of registrar 0", None, |t| {
        t.iter()
            .all(|m| m.keys().eq(full.keys()) && m.values().all(|h| *h != IDS[0]))
            && t[0] == t[1]
    })
    .await;
    let adopters: BTreeSet<u32> = initial(0).map(|id| tables[0][&id]).collect();
    assert_eq!(adopters.len(), 1, "one winner adopts all: {adopters:x?}");
    let winner = *adopters.iter().next().expect("one adopter");
    assert!(IDS[1..].contains(&winner), "winner {winner:#x}");
    let want: BTreeSet<u32> = full.keys().copied().collect();
    for (k, i) in survivors.into_iter().enumerate() {
        for (id, h) in &tables[k] {
            if !initial(0).contains(id) {
                assert_eq!(*h, full[id], "PE {id} keeps its home at registrar {i}");
            }
        }
        assert_eq!(
            resolve_all(lab.asap(i)).await,
            want,
            "all 300 resolvable at {i}"
        );
    }
    for id in initial(0) {
        expected.insert(id, winner);
    }
    eprintln!("takeover done after {:.1} s", t0.elapsed().as_secs_f64());

    // 3. Optionally the orphans' host re-registers them at the survivor that did not adopt
    //    them.
    drop(host0); // its registrar is dead
    let mut orphans = None;
    if scenario.rehome_orphans {
        let loser = if winner == IDS[1] { 2 } else { 1 };
        let mut a = connect(lab.asap(loser), Protocol::Asap).await;
        register_pes(&mut a, user, initial(0)).await;
        orphans = Some(a);
        for id in initial(0) {
            expected.insert(id, IDS[loser]);
        }
        wait_for(&lab, &survivors, "orphans re-homed", Some(&expected), |t| {
            t.iter().all(|m| *m == expected)
        })
        .await;
    }

    // 4. Partition registrar 1 | registrar 2.
    isolate_1_2(&lab, scenario.partition, true).expect("partition");
    let visible: &[usize] = match scenario.partition {
        Partition::Isolate => &survivors,
        Partition::LinkDown => &[1],
    };
    // Failure detection and takeover on both sides: each owns everything it knows.
    wait_for(&lab, visible, "takeover on both sides", None, |t| {
        t.iter()
            .zip(visible)
            .all(|(m, i)| m.values().all(|h| *h == IDS[*i]))
    })
    .await;
    if scenario.partition == Partition::LinkDown {
        // Registrar 2 took registrar 1 over too.
        wait_log(&lab, 2, &format!("TakeoverDone {{ target: {}", IDS[1])).await;
    }
    // Changes on both sides: at registrar 1, 20 new PEs stay and 20 new ones leave again by
    // explicit deregistration; at registrar 2 (when reachable), 20 new PEs.
    let mut side1 = connect(lab.asap(1), Protocol::Asap).await;
    register_pes(&mut side1, user, 7000..7020).await;
    let mut leaving = connect(lab.asap(1), Protocol::Asap).await;
    register_pes(&mut leaving, user, 5000..5020).await;
    let mut side2 = None;
    if scenario.partition == Partition::Isolate {
        let mut a = connect(lab.asap(2), Protocol::Asap).await;
        register_pes(&mut a, user, 6000..6020).await;
        side2 = Some(a);
        expected.extend(ids(6000..6020, IDS[2]));
    }
    deregister_pes(&mut leaving, 5000..5020).await;
    expected.extend(ids(7000..7020, IDS[1]));
    if scenario.deregister_old {
        deregister_pes(&mut host1, 2000..2010).await;
        for id in 2000..2010 {
            expected.remove(&id);
        }
    }
    // Registrar 1's own view during the partition.
    let during = dump_table(lab.enrp(1)).await;
    assert!(during.contains_key(&7000) && !during.contains_key(&5000));
    assert!(!during.contains_key(&6000), "partitioned: {during:?}");

    // Heal: the dumps converge, each PE owned by the registrar holding its association. PEs
    // nobody holds (adopted orphans) must stay, with one survivor as owner everywhere.
    isolate_1_2(&lab, scenario.partition, false).expect("heal");
    let orphan_owner_free = !scenario.rehome_orphans;
    let tables = wait_for(
        &lab,
        &survivors,
        "convergence after the partition",
        Some(&expected),
        |t| {
            t[0] == t[1]
                && t[0].keys().eq(expected.keys())
                && t[0].iter().all(|(id, h)| {
                    *h == expected[id] || (orphan_owner_free && initial(0).contains(id))
                })
        },
    )
    .await;
    let orphan_owners: BTreeSet<u32> = initial(0).map(|id| tables[0][&id]).collect();
    assert_eq!(orphan_owners.len(), 1, "one owner of the orphans");
    let want: BTreeSet<u32> = expected.keys().copied().collect();
    for i in survivors {
        assert_eq!(resolve_all(lab.asap(i)).await, want, "resolvable at {i}");
    }
    eprintln!("whole scenario {:.1} s", t0.elapsed().as_secs_f64());
    lab.passed = true;
    drop((host1, host2, orphans, side1, side2, leaving));
}

/// The issue's scenario: replication, takeover of a killed registrar, re-homing of its
/// PEs, partition with changes on both sides, convergence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_registrars_in_namespaces_take_over_and_heal() {
    run(Scenario {
        partition: Partition::Isolate,
        rehome_orphans: true,
        deregister_old: false,
    })
    .await;
}

/// The same with a harder cut: registrar 2's link goes down (sends fail at once instead of
/// stalling) and comes back up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_partition_heals() {
    run(Scenario {
        partition: Partition::LinkDown,
        rehome_orphans: true,
        deregister_old: false,
    })
    .await;
}

/// The dead registrar's PEs as they really behave: 10 are `asap` pool elements (adoptable:
/// they listen on their registrar association's port), 90 are registrations whose host
/// listens nowhere. After SIGKILL of registrar 0 the winner reaches the 10 with the H-flag
/// keep-alive (they make it their home) and removes the 90 when the keep-alive timeout
/// passes unanswered (`verify_adopted`). Then a partition: each side takes the other over,
/// the 10 follow whichever side reached them last. After the heal both registrars agree on
/// every PE, and each of the 10 is owned by the registrar the PE itself calls home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_follow_the_takeover_or_are_removed() {
    use asap::pe::{PeConfig, PoolElement, PoolElementConfig};
    use asap::wire::{Policy, TransportParameter, TransportUse};

    let Some(mut lab) = started_lab().await else {
        return;
    };
    let user = IpAddr::V4(lab.root_ip());
    let fake0 = 1000..1090;
    let real0 = 1090..1100;

    let mut host0 = connect(lab.asap(0), Protocol::Asap).await;
    register_pes(&mut host0, user, fake0.clone()).await;
    let mut pes = Vec::new();
    for id in real0.clone() {
        let mut cfg = PeConfig::new(
            POOL,
            TransportParameter::Tcp {
                port: 7000,
                transport_use: TransportUse::DataOnly,
                address: user,
            },
            Policy::RoundRobin,
        );
        cfg.identifier = Some(id);
        cfg.registration_life = Duration::from_secs(600);
        cfg.link.static_registrars = vec![vec![lab.asap(0)]];
        cfg.link.hunt_initial_backoff = Duration::from_millis(200);
        cfg.link.hunt_max_backoff = Duration::from_millis(1000);
        let mut pe = PoolElement::register(PoolElementConfig::tcp(cfg))
            .await
            .expect("PE starts");
        tokio::time::timeout(DEADLINE, pe.wait_registered())
            .await
            .expect("registered in time")
            .expect("registered");
        pes.push(pe);
    }
    let mut host1 = connect(lab.asap(1), Protocol::Asap).await;
    register_pes(&mut host1, user, initial(1)).await;
    let mut host2 = connect(lab.asap(2), Protocol::Asap).await;
    register_pes(&mut host2, user, initial(2)).await;
    let full: Table = (0..3).flat_map(|i| ids(initial(i), IDS[i])).collect();
    wait_for(&lab, &[0, 1, 2], "full replication", Some(&full), |t| {
        t.iter().all(|m| *m == full)
    })
    .await;

    // SIGKILL registrar 0: the 10 reachable orphans are adopted by one winner, the 90
    // unreachable ones are removed everywhere.
    lab.kill(0);
    drop(host0);
    let survivors = [1, 2];
    let mut expected: Table = (1..3).flat_map(|i| ids(initial(i), IDS[i])).collect();
    let tables = wait_for(&lab, &survivors, "takeover of registrar 0", None, |t| {
        t[0] == t[1]
            && t[0].len() == expected.len() + real0.len()
            && expected.iter().all(|(id, h)| t[0].get(id) == Some(h))
            && real0
                .clone()
                .all(|id| t[0].get(&id).is_some_and(|h| *h != IDS[0]))
    })
    .await;
    let winners: BTreeSet<u32> = real0.clone().map(|id| tables[0][&id]).collect();
    assert_eq!(winners.len(), 1, "one winner adopts all: {winners:x?}");
    let winner = *winners.iter().next().expect("a winner");
    assert!(IDS[1..].contains(&winner), "winner {winner:#x}");
    // Each adopted PE took the H-flag keep-alive: the winner is its home now.
    for pe in &pes {
        let start = Instant::now();
        while pe.status().home != Some(winner) && start.elapsed() < DEADLINE {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let st = pe.status();
        assert_eq!(st.home, Some(winner), "PE {:#x}: {st:?}", st.identifier);
        assert!(
            st.registered,
            "PE {:#x} registered at the winner",
            st.identifier
        );
    }

    // Partition registrar 1 | registrar 2, both reachable from here. Each side takes the
    // other over; the real PEs end up at whichever side reached them last.
    isolate_1_2(&lab, Partition::Isolate, true).expect("partition");
    wait_for(&lab, &survivors, "takeover on both sides", None, |t| {
        t.iter()
            .zip(survivors)
            .all(|(m, i)| m.values().all(|h| *h == IDS[i]))
    })
    .await;
    isolate_1_2(&lab, Partition::Isolate, false).expect("heal");
    let tables = wait_for(
        &lab,
        &survivors,
        "convergence after the partition",
        None,
        |t| {
            t[0] == t[1]
                && t[0].len() == expected.len() + real0.len()
                && expected.iter().all(|(id, h)| t[0].get(id) == Some(h))
                && pes.iter().all(|pe| {
                    pe.status().home.is_some()
                        && t[0].get(&pe.identifier()) == pe.status().home.as_ref()
                })
        },
    )
    .await;
    for pe in &pes {
        let st = pe.status();
        assert!(
            st.registered,
            "PE {:#x} registered after the heal: {st:?}",
            st.identifier
        );
        expected.insert(st.identifier, tables[0][&st.identifier]);
    }
    let want: BTreeSet<u32> = expected.keys().copied().collect();
    for i in survivors {
        assert_eq!(resolve_all(lab.asap(i)).await, want, "resolvable at {i}");
    }
    lab.passed = true;
    for pe in pes {
        pe.abort();
    }
    drop((host1, host2));
}

/// A PE deregistered at its home during a partition was taken over by the other side; that
/// side's copy must not come back after the heal. It does not, because the taking-over side
/// verifies adopted PEs (`verify_adopted`): the H-flag keep-alive goes unanswered and the
/// copy is removed, as rsplib does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pes_deregistered_during_a_partition_stay_gone() {
    run(Scenario {
        partition: Partition::Isolate,
        rehome_orphans: true,
        deregister_old: true,
    })
    .await;
}
