//! Takeover suggestion (HANDLE_UPDATE T bit, draft-dreibholz-rserpool-enrp-takeover;
//! issue 14 item 9; PEERING.md "Takeover suggestion") in the deterministic simulation:
//! registrars with `PeeringConfig::takeover_suggestion` mark the ADD_PE of a PE that
//! registered with them with T for the peer that is its better home (rsplib's
//! `server ID XOR PE identifier` metric); that peer sends the PE the H-flag keep-alive, the
//! PE re-registers there and the old home yields. Assertions are on state and message
//! counts, never on timing.

use std::time::Duration;

use crate::sim::{Sim, SimConfig};
use asap::wire::ServerId;
use enrp_server::core::Registrar;

/// A simulation whose registrars have takeover suggestion `on` (the slots are restarted
/// with that configuration before anything happened).
fn sim_with(seed: u64, on: bool) -> Sim {
    let mut sim = Sim::new(
        seed,
        SimConfig {
            registrars: 3,
            pes: 60,
            pools: 2,
            ..SimConfig::default()
        },
    );
    for slot in 0..sim.slots.len() {
        let mut c = sim.core_config(slot);
        c.peering.takeover_suggestion = on;
        sim.slots[slot].reg = Some(Registrar::new(c, sim.now));
    }
    sim
}

/// [`sim_with`] (seed 41) after 45 s, checked.
fn settled(suggestion: bool) -> Sim {
    let mut sim = sim_with(41, suggestion);
    let until = sim.now + Duration::from_secs(45);
    sim.run_until(until);
    sim.check().unwrap();
    sim
}

/// The slot whose registrar is the best home of PE `id` by the metric.
fn best_slot(sim: &Sim, id: u32) -> usize {
    (0..sim.slots.len())
        .max_by_key(|s| sim.reg(*s).server_id() ^ id)
        .expect("registrars")
}

/// Every PE ends at its best home: registered there, owned by it at every registrar; the
/// moves cost a bounded number of HANDLE_UPDATEs.
#[test]
fn pes_follow_suggestions_to_their_best_home() {
    let sim = settled(true);
    assert!(sim.adopt_connects > 0, "suggestions were followed");
    for pe in 0..sim.pes.len() {
        let id = sim.pes[pe].id;
        let best = best_slot(&sim, id);
        let best_id: ServerId = sim.reg(best).server_id();
        assert_eq!(sim.pes[pe].registered_at, Some(best), "PE {id:#x}");
        for s in sim.live_slots() {
            assert_eq!(sim.owner_at(s, pe), best_id, "PE {id:#x} at slot {s}");
        }
        // Each registration is announced to the 2 peers, the suggested one gets T on it;
        // a move adds the old home's one ADD_PE (no answers).
        let regs = sim.registrations.get(&id).copied().unwrap_or(0);
        let updates = sim.updates.get(&id).copied().unwrap_or(0);
        assert!(
            updates <= 2 * regs + 2,
            "PE {id:#x}: {updates} HANDLE_UPDATEs for {regs} registrations"
        );
    }
}

/// Control: without the option the PEs stay where they registered (a third of them happen
/// to be at their best home), and no registrar connects to a PE.
#[test]
fn without_the_option_pes_stay_where_they_registered() {
    let sim = settled(false);
    assert_eq!(sim.adopt_connects, 0);
    let elsewhere = (0..sim.pes.len())
        .filter(|pe| sim.pes[*pe].registered_at != Some(best_slot(&sim, sim.pes[*pe].id)))
        .count();
    assert!(
        elsewhere > 10,
        "{elsewhere} of 60 PEs not at their best home"
    );
}
