//! Ownership conflicts between real registrar processes (issue 14 item 1; PEERING.md
//! "Ownership conflicts", `src/core/ownership.rs`): two `enrp-server` processes in network
//! namespaces ([`rserpool_tests::netns`]), ENRP over TCP, the ENRP traffic captured on the
//! bridge and decoded.
//!
//! * A PE moves from registrar A to B while its association to A stays open (A's
//!   keep-alive has not dropped it yet).
//! * Two PEs with the same identifier in one pool, one at A and one at B, re-registering
//!   alternately.
//!
//! Checked over the captured window: the HANDLE_UPDATEs for each PE are bounded (at most
//! one per registration plus one answer per registration; before the rule, each side
//! answered the other's ADD_PE with its own, forever: thousands per second), none in the
//! last seconds of the window, and both registrars' handle table dumps name the same owner —
//! the registrar of the latest registration. Needs root and `ip netns`; otherwise prints
//! `SKIP: <reason>` and passes (`RSERPOOL_REQUIRE_NETNS=1` makes that a failure).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use asap::wire::{EnrpMessage, Message, Protocol, UpdateAction};
use rserpool_tests::netns::{lab_or_skip, KEEP_ALIVES_OFF};
use rserpool_tests::registrar::{connect, dump_table, register_pes, resolve_all};

/// Server IDs of registrars A and B (A lower: it wins near-ties).
const IDS: [u32; 2] = [0x0000_0D01, 0x0000_0D02];
/// The PE that moves from A to B.
const MOVING: u32 = 0x100;
/// The identifier two PEs share, one at A and one at B.
const TWIN: u32 = 0x200;
/// A PE at A that shows peering is up.
const MARKER: u32 = 0x300;
/// Bounds every wait; not an expectation.
const DEADLINE: Duration = Duration::from_secs(60);

/// HANDLE_UPDATE ADD_PE / DEL_PE for `id` in the capture: (time, sender server ID).
fn updates(msgs: &[(Duration, std::net::SocketAddr, Message)], id: u32) -> Vec<(Duration, u32)> {
    msgs.iter()
        .filter_map(|(t, _, m)| match m {
            Message::Enrp(EnrpMessage::HandleUpdate(u)) if u.pool_element.id == id => {
                Some((*t, u.sender))
            }
            _ => None,
        })
        .collect()
}

async fn wait_owner(enrp: std::net::SocketAddr, id: u32, owner: u32) -> BTreeMap<u32, u32> {
    let start = std::time::Instant::now();
    loop {
        let t = dump_table(enrp).await;
        if t.get(&id) == Some(&owner) || start.elapsed() > DEADLINE {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_pe_and_twins_cost_bounded_updates_and_agree_on_the_owner() {
    let Some(mut lab) = lab_or_skip("rspow", 214, 2, Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    // The test's PE host does not answer keep-alives: keep them out of the window.
    lab.start_registrars(crate::BIN, &IDS, &KEEP_ALIVES_OFF, DEADLINE)
        .await;
    let user = IpAddr::V4(lab.root_ip());
    let mut marker = connect(lab.asap(0), Protocol::Asap).await;
    register_pes(&mut marker, user, [MARKER]).await;
    wait_owner(lab.enrp(1), MARKER, IDS[0]).await;
    lab.start_capture(rserpool_tests::netns::ENRP_PORT)
        .expect("tcpdump");

    // The moving PE: registered at A, 1.5 s later at B, the association to A left open.
    let mut moving_a = connect(lab.asap(0), Protocol::Asap).await;
    register_pes(&mut moving_a, user, [MOVING]).await;
    // The twins: one at A now, the other at B 1.5 s later.
    let mut twin_a = connect(lab.asap(0), Protocol::Asap).await;
    register_pes(&mut twin_a, user, [TWIN]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut moving_b = connect(lab.asap(1), Protocol::Asap).await;
    register_pes(&mut moving_b, user, [MOVING]).await;
    let mut twin_b = connect(lab.asap(1), Protocol::Asap).await;
    register_pes(&mut twin_b, user, [TWIN]).await;
    let mut twin_registrations = 2;
    // The twins re-register alternately, 2 s apart, B last.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        register_pes(&mut twin_a, user, [TWIN]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        register_pes(&mut twin_b, user, [TWIN]).await;
        twin_registrations += 2;
    }
    // Quiet window: nothing registers any more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let msgs = lab.stop_capture().expect("capture");
    let end = msgs
        .iter()
        .map(|m| m.0)
        .max()
        .expect("ENRP traffic captured");
    assert!(
        msgs.iter()
            .any(|(_, _, m)| matches!(m, Message::Enrp(EnrpMessage::Presence(_)))),
        "the capture sees the peering"
    );

    let moving = updates(&msgs, MOVING);
    let twin = updates(&msgs, TWIN);
    eprintln!(
        "HANDLE_UPDATEs: moving PE {} (2 registrations), twins {} ({twin_registrations} registrations)",
        moving.len(),
        twin.len()
    );
    // One ADD_PE per registration to the one peer, at most one answer each.
    assert!(
        (2..=3).contains(&moving.len()),
        "moving PE: {} HANDLE_UPDATEs, first {:?}",
        moving.len(),
        &moving[..moving.len().min(6)]
    );
    assert!(
        twin.len() >= twin_registrations && twin.len() <= 2 * twin_registrations,
        "twins: {} HANDLE_UPDATEs for {twin_registrations} registrations",
        twin.len()
    );
    for (what, u) in [("moving", &moving), ("twin", &twin)] {
        let late: Vec<_> = u
            .iter()
            .filter(|(t, _)| *t + Duration::from_secs(4) > end)
            .collect();
        assert!(
            late.is_empty(),
            "{what}: {} updates in the quiet window, first {:?}",
            late.len(),
            &late[..late.len().min(6)]
        );
    }
    // No DEL_PE: nothing was removed.
    assert!(!msgs.iter().any(|(_, _, m)| matches!(
        m,
        Message::Enrp(EnrpMessage::HandleUpdate(u)) if u.action == UpdateAction::DelPe
    )));

    // Both registrars agree: the latest registration (at B) owns both.
    let a = wait_owner(lab.enrp(0), TWIN, IDS[1]).await;
    let b = dump_table(lab.enrp(1)).await;
    for id in [MOVING, TWIN] {
        assert_eq!(a.get(&id), Some(&IDS[1]), "owner of {id:#x} at A");
        assert_eq!(b.get(&id), Some(&IDS[1]), "owner of {id:#x} at B");
    }
    for i in 0..2 {
        let r = resolve_all(lab.asap(i)).await;
        assert!(
            r.contains(&MOVING) && r.contains(&TWIN),
            "resolvable at {i}: {r:?}"
        );
    }
    lab.passed = true;
    drop((marker, moving_a, moving_b, twin_a, twin_b));
}
