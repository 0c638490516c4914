//! Peering measurements (BENCHMARKS.md "Peering"); ignored by default, run with
//! `cargo test -p enrp-server --release --test core sim_bench -- --ignored --nocapture`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sim::{Sim, SimConfig};
use asap::handlespace::HandlespaceLimits;
use asap::transport::TransportKind;
use asap::wire::asap_msg::Registration;
use asap::wire::{
    Message, Policy, PoolElementInfo, PoolHandle, Protocol, TransportParameter, TransportUse,
};
use enrp_server::core::{Action, CoreConfig, Event, Input, PeeringConfig, Registrar};

fn peering_config(id: u32, peers: Vec<SocketAddr>, chunk: usize) -> CoreConfig {
    let mut c = CoreConfig::new(id);
    c.keep_alive_interval = Duration::from_secs(3600);
    c.handle_table_chunk = chunk;
    c.limits = HandlespaceLimits {
        max_pes: 1_000_000,
        max_pes_per_pool: 1_000_000,
        max_pes_per_connection: 1_000_000,
        max_pools: 100_000,
    };
    c.peers = peers;
    c.peering = PeeringConfig {
        enabled: true,
        unicast: enrp_server::core::PeerTransport::Datagrams,
        ..PeeringConfig::default()
    };
    c
}

/// A new registrar downloads a 100 000-PE handlespace from its mentor (in memory, no
/// network delay): wall time of both cores' work, per chunk size.
#[test]
#[ignore]
fn bench_mentor_download_100k() {
    let a_addr: SocketAddr = "127.0.0.1:9901".parse().expect("lit");
    let b_addr: SocketAddr = "127.0.0.2:9901".parse().expect("lit");
    for chunk in [128usize, 1024] {
        let t0 = Instant::now();
        let mut a = Registrar::new(peering_config(1, vec![], chunk), t0);
        a.handle(
            t0,
            Input::Connected {
                assoc: 1,
                protocol: Protocol::Asap,
                peer_addrs: vec!["127.0.0.1:5000".parse().expect("lit")],
                transport: TransportKind::Sctp,
            },
        );
        for i in 0..100_000u32 {
            let m: Message = Registration {
                pool_handle: PoolHandle::from(format!("Pool{}", i % 100).as_str()),
                pool_element: PoolElementInfo {
                    id: i + 1,
                    home_server_id: 0,
                    registration_life: 3_600_000,
                    user_transport: TransportParameter::Sctp {
                        port: 7,
                        transport_use: TransportUse::DataPlusControl,
                        addresses: vec!["127.0.0.1".parse().expect("lit")],
                    },
                    policy: Policy::RoundRobin,
                    asap_transport: None,
                },
            }
            .into();
            a.handle_message(t0, 1, &m);
        }
        assert_eq!(a.handlespace().len(), 100_000);
        let mut b = Registrar::new(peering_config(2, vec![a_addr], chunk), t0);
        let start = Instant::now();
        let mut bytes = 0usize;
        let mut queue: Vec<(bool, SocketAddr, bytes::Bytes)> = Vec::new();
        let route = |from_b: bool, out: Vec<Action>, q: &mut Vec<_>| {
            for x in out {
                if let Action::PeerSend { bytes, .. } = x {
                    q.push((!from_b, if from_b { b_addr } else { a_addr }, bytes));
                }
            }
        };
        let out = b.handle_timeout(t0);
        route(true, out, &mut queue);
        let mut messages = 0;
        while let Some((to_b, from, data)) = queue.pop() {
            messages += 1;
            bytes += data.len();
            let input = Input::Datagram {
                from,
                protocol: Protocol::Enrp,
                bytes: data,
            };
            if to_b {
                let out = b.handle(t0, input);
                route(true, out, &mut queue);
            } else {
                let out = a.handle(t0, input);
                route(false, out, &mut queue);
            }
            if b.handlespace().len() == 100_000 {
                break;
            }
        }
        let took = start.elapsed();
        assert_eq!(b.handlespace().len(), 100_000);
        println!(
            "download 100000 PEs, chunk {chunk}: {:.3} s, {messages} ENRP messages, {:.1} MB",
            took.as_secs_f64(),
            bytes as f64 / 1e6
        );
    }
}

/// Takeover in the simulation: 5 registrars, 1 000 PEs, one killed. Virtual time from the
/// failure to TAKEOVER done and until all its PEs re-registered at the winner; wall time.
#[test]
#[ignore]
fn bench_takeover() {
    let mut sim = Sim::new(
        77,
        SimConfig {
            pe_rereg: Duration::from_secs(600),
            pe_life_ms: 1_800_000,
            ..SimConfig::default()
        },
    );
    let until = sim.now + Duration::from_secs(15);
    sim.run_until(until);
    let victims: Vec<usize> = (0..sim.pes.len())
        .filter(|i| sim.pes[*i].registered_at == Some(0))
        .collect();
    sim.kill(0);
    let killed = sim.now;
    let wall = Instant::now();
    let mut adopted_at = None;
    for _ in 0..400 {
        let until = sim.now + Duration::from_millis(100);
        sim.run_until(until);
        if adopted_at.is_none()
            && victims
                .iter()
                .all(|i| matches!(sim.pes[*i].registered_at, Some(s) if s != 0))
        {
            adopted_at = Some(sim.now);
            break;
        }
    }
    let wall = wall.elapsed();
    let (lost, done) = sim
        .log
        .iter()
        .fold((None, None), |(l, d), (t, _, e)| match e {
            Event::PeerLost { .. } if l.is_none() => (Some(*t), d),
            Event::TakeoverDone { .. } if d.is_none() => (l, Some(*t)),
            _ => (l, d),
        });
    let base = killed - sim.t0;
    println!(
        "takeover of {} PEs: detected (peer lost) +{:?}, TAKEOVER_SERVER +{:?}, all re-registered +{:?} after the kill (virtual); {:.3} s wall for {:?} simulated",
        victims.len(),
        lost.map(|t| t - base),
        done.map(|t| t - base),
        adopted_at.map(|t| t - killed),
        wall.as_secs_f64(),
        sim.now - killed
    );
    sim.check().expect("converged");
}

/// Steady state: ENRP bytes per peer per second (presence + updates + audits) with 5
/// registrars and 1 000 PEs re-registering every 10 s.
#[test]
#[ignore]
fn bench_presence_overhead() {
    let mut sim = Sim::new(5, SimConfig::default());
    let until = sim.now + Duration::from_secs(30);
    sim.run_until(until);
    let (m0, b0) = (sim.enrp_sent, sim.enrp_bytes);
    let syncs0 = sim.log.len();
    let span = 60u64;
    let until = sim.now + Duration::from_secs(span);
    sim.run_until(until);
    let pairs = (sim.cfg.registrars * (sim.cfg.registrars - 1)) as u64;
    let audits = sim.log[syncs0..]
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::SyncDone { .. }))
        .count();
    println!(
        "audits (W-flag table downloads after a checksum mismatch) in {span} s: {audits} ({:.3} per peer pair per second)",
        audits as f64 / (pairs * span) as f64
    );
    let msgs = sim.enrp_sent - m0;
    let bytes = sim.enrp_bytes - b0;
    println!(
        "steady state, 5 registrars, 1000 PEs: {:.1} ENRP messages and {:.0} bytes per directed peer pair per second (incl. HANDLE_UPDATEs for 100 re-registrations/s)",
        msgs as f64 / (pairs * span) as f64,
        bytes as f64 / (pairs * span) as f64
    );
    let presence_len = Message::from(asap::wire::enrp_msg::Presence {
        reply_required: false,
        sender: 1,
        receiver: 2,
        checksum: 0,
        server_information: None,
    })
    .to_bytes()
    .expect("encodes")
    .len();
    println!(
        "PRESENCE without Server Information: {presence_len} bytes; at rsplib's 2.444 s cycle {:.1} B/s per peer",
        presence_len as f64 / 2.444
    );
    sim.check().expect("converged");
}
