//! Deterministic simulation tests of ENRP peering (RFC 5353): the sans-I/O registrar core
//! driven in memory with a virtual clock and a network that drops, delays, partitions and
//! kills. Invariants are checked after convergence (never timing).
//!
//! `RSERPOOL_SOAK=1` runs 200 chaos seeds instead of 20; `RSERPOOL_SEED=n` runs one seed.

use std::time::Duration;

use crate::sim::{Sim, SimConfig};
use enrp_server::core::Event;
use rand::Rng;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn run_for(sim: &mut Sim, d: Duration) {
    let until = sim.now + d;
    sim.run_until(until);
}

/// Runs `sim` for `d`; whether `count` grew meanwhile.
fn grows(sim: &mut Sim, d: Duration, count: impl Fn(&Sim) -> u64) -> bool {
    let before = count(sim);
    run_for(sim, d);
    count(sim) > before
}

#[test]
fn scope_replicates_every_registration() {
    let mut sim = Sim::new(1, SimConfig::cluster(3, 60));
    run_for(&mut sim, secs(30));
    for s in sim.live_slots() {
        assert_eq!(sim.reg(s).peers().len(), 2, "slot {s} peer table");
        assert_eq!(sim.reg(s).handlespace().len(), 60, "slot {s} handlespace");
    }
    sim.check().unwrap();
    // Every PE is owned by the registrar it registered at; owners are spread.
    let owners: std::collections::HashSet<_> =
        sim.pes.iter().filter_map(|p| p.registered_at).collect();
    assert!(owners.len() > 1);
}

#[test]
fn late_registrar_downloads_from_mentor_in_chunks() {
    let mut sim = Sim::new(
        2,
        SimConfig {
            chunk: 16,
            ..SimConfig::cluster(2, 300)
        },
    );
    sim.kill(1);
    run_for(&mut sim, secs(20));
    assert_eq!(sim.reg(0).handlespace().len(), 300);
    sim.start(1);
    // Shorter than a PE re-registration cycle would need: the table comes from the mentor.
    run_for(&mut sim, secs(3));
    let mentor = sim.reg(1).mentor();
    assert_eq!(mentor, Some(sim.reg(0).server_id()));
    assert_eq!(sim.reg(1).handlespace().len(), 300);
    run_for(&mut sim, secs(20));
    sim.check().unwrap();
}

#[test]
fn dead_registrar_is_taken_over_and_its_pes_adopted() {
    let mut sim = Sim::new(
        3,
        SimConfig {
            // PEs would only hunt after 60 s: the takeover must move them.
            pe_rereg: secs(60),
            pe_life_ms: 180_000,
            ..SimConfig::cluster(3, 300)
        },
    );
    run_for(&mut sim, secs(15));
    sim.check().unwrap();
    let victim_id = sim.reg(0).server_id();
    let victims: Vec<usize> = (0..sim.pes.len())
        .filter(|i| sim.pes[*i].registered_at == Some(0))
        .collect();
    assert!(!victims.is_empty());
    sim.kill(0);
    run_for(&mut sim, secs(20));
    let done: Vec<_> = sim
        .log
        .iter()
        .filter_map(|(_, s, e)| match e {
            Event::TakeoverDone { target, pes } if *target == victim_id => Some((*s, *pes)),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1, "exactly one winner: {:?}", sim.log);
    let (winner, n) = done[0];
    assert_eq!(n, victims.len());
    // The loser saw TAKEOVER_SERVER.
    assert!(sim.log.iter().any(|(_, s, e)| *s != winner
        && matches!(e, Event::TakeoverSeen { target, .. } if *target == victim_id)));
    for i in &victims {
        assert_eq!(sim.pes[*i].registered_at, Some(winner), "PE {i} adopted");
    }
    // The core asked for one association per adopted PE process (RFC 5353 §3.6), and
    // the PEs moved over it (each simulated PE has its own address).
    assert_eq!(sim.adopt_connects as usize, victims.len());
    sim.check().unwrap();
}

/// Unicast ENRP runs over associations the cores ask for (RFC 5353 §2): every registrar
/// connects to each peer, the HANDLE_UPDATEs travel on them, a dead registrar's
/// associations close and connecting to it fails, and a restarted one is connected again.
#[test]
fn peers_connect_over_associations() {
    let mut sim = Sim::new(11, SimConfig::cluster(3, 60));
    run_for(&mut sim, secs(20));
    sim.check().unwrap();
    assert!(sim.peer_connects >= 3, "connects: {}", sim.peer_connects);
    assert!(sim.peer_links_up() >= 3);
    for s in sim.live_slots() {
        for o in sim.live_slots() {
            if o != s {
                let r = sim.reg(s);
                let a = r.peers().values().map(|p| p.addr).collect::<Vec<_>>();
                assert!(
                    a.iter().any(|x| r.peer_association(*x).is_some()),
                    "slot {s} reaches its peers over associations: {a:?}"
                );
            }
        }
    }
    sim.kill(2);
    let failed = grows(&mut sim, secs(20), |s| s.peer_connect_failures);
    assert!(failed, "connects to the dead slot fail");
    for s in [0, 1] {
        assert!(
            sim.reg(s).peer_association(sim.slots[2].addr).is_none(),
            "slot {s} has no association to the dead slot"
        );
    }
    sim.start(2);
    let connected = grows(&mut sim, secs(20), |s| s.peer_connects);
    assert!(connected, "the restarted slot is connected again");
    assert_eq!(sim.reg(2).handlespace().len(), 60);
    sim.check().unwrap();
}

/// The associations between two registrars are reset and connecting takes 4 s while the
/// PEs re-register (a burst of ≈ 1000 HANDLE_UPDATEs each way): at most PEER_CONNECT_QUEUE messages
/// wait, the rest are dropped and reported, and the scope converges again anyway.
#[test]
fn slow_reconnect_overflows_the_connect_queue_and_the_scope_recovers() {
    let mut sim = Sim::new(
        12,
        SimConfig {
            pools: 20,
            ..SimConfig::cluster(2, 2000)
        },
    );
    // The PEs re-register in a burst every 10 s (first at 6–8 s): reset just before one.
    run_for(&mut sim, secs(25));
    sim.check().unwrap();
    assert_eq!(sim.peer_dropped, 0);
    sim.cfg.connect_delay = (4_000_000, 4_500_000);
    sim.sever(0, 1);
    assert_eq!(sim.peer_links_up(), 0);
    sim.max_connect_flush = 0;
    run_for(&mut sim, secs(6));
    assert!(sim.peer_dropped > 0, "queue overflow reported");
    assert_eq!(
        sim.max_connect_flush,
        enrp_server::core::PEER_CONNECT_QUEUE,
        "exactly the queue is sent when the association comes up"
    );
    sim.cfg.connect_delay = SimConfig::default().connect_delay;
    run_for(&mut sim, secs(30));
    sim.check().unwrap();
}

#[test]
fn partition_heals_by_audit() {
    let mut sim = Sim::new(
        4,
        SimConfig {
            // Lifetimes far beyond the test: only the audit can remove stale entries.
            pe_life_ms: 600_000,
            ..SimConfig::cluster(3, 200)
        },
    );
    run_for(&mut sim, secs(15));
    sim.check().unwrap();
    // Kill a few PEs, and partition slot 2 away while their homes notice (keep-alive
    // timeout) and send DEL_PE: the partition is shorter than failure detection (10 s),
    // so no takeover happens and only the audit can repair the other side.
    for i in 0..20 {
        sim.pes[i * 7].alive = false;
    }
    run_for(&mut sim, secs(2));
    sim.slots[2].group = 1;
    run_for(&mut sim, secs(8));
    assert!(
        !sim.log
            .iter()
            .any(|(_, _, e)| matches!(e, Event::TakeoverStarted { .. })),
        "partition shorter than failure detection"
    );
    sim.slots[2].group = 0;
    run_for(&mut sim, secs(30));
    sim.check().unwrap();
    let purged = sim
        .log
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::SyncDone { purged, .. } if *purged > 0))
        .count();
    assert!(purged > 0, "the audit purged stale entries");
}

fn chaos(seed: u64) -> Result<(), String> {
    let mut sim = Sim::new(seed, SimConfig::default());
    run_for(&mut sim, secs(12));
    sim.chaos = true;
    let n = sim.slots.len();
    for _ in 0..12 {
        match sim.rng.gen_range(0..5) {
            0 | 1 => {
                sim.kill_random();
            }
            2 => {
                sim.start_random();
            }
            3 => sim.partition_randomly(),
            _ => {
                sim.heal_partition();
                for _ in 0..10 {
                    let p = sim.rng.gen_range(0..sim.pes.len());
                    sim.pes[p].alive = false;
                }
            }
        }
        let d = Duration::from_millis(sim.rng.gen_range(2000..8000));
        run_for(&mut sim, d);
    }
    // Heal: no loss, no partition, restart one dead slot (mentor download under load).
    sim.chaos = false;
    sim.heal_partition();
    if let Some(s) = (0..n).find(|i| sim.slots[*i].reg.is_none()) {
        sim.start(s);
    }
    run_for(&mut sim, secs(90));
    let restarts = sim.slots.iter().map(|s| s.incarnation).sum::<u32>();
    eprintln!(
        "seed {seed}: {} takeovers, {} slot incarnation changes, {} ENRP datagrams ({} lost)",
        sim.takeovers_done, restarts, sim.enrp_sent, sim.enrp_dropped
    );
    sim.check()
}

#[test]
fn chaos_seeds_converge() {
    let seeds: Vec<u64> = match std::env::var("RSERPOOL_SEED") {
        Ok(s) => vec![s.parse().expect("RSERPOOL_SEED is a number")],
        Err(_) => {
            let n = if std::env::var("RSERPOOL_SOAK").is_ok_and(|v| v == "1") {
                200
            } else {
                20
            };
            (1000..1000 + n).collect()
        }
    };
    // Seeds are independent: spread them over the cores.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let mut failed: Vec<u64> = std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                sc.spawn(move || {
                    let mut failed = Vec::new();
                    for seed in chunk {
                        if let Err(e) = chaos(*seed) {
                            eprintln!("seed {seed} FAILED: {e} (rerun: RSERPOOL_SEED={seed})");
                            failed.push(*seed);
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("seed thread"))
            .collect()
    });
    failed.sort_unstable();
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
