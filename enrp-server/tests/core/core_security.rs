//! Issue 13 (SECURITY.md): state that ENRP peers supply is bounded and expires. Driven
//! through the registrar core's public API with a fake clock, peers as static peers
//! (datagrams from their addresses), default settings unless a test says otherwise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asap::transport::TransportKind;
use asap::wire::enrp_msg::InitTakeoverAck;
use asap::wire::{
    Message, Policy, PoolElementInfo, Protocol, ServerId, TransportParameter, TransportUse,
    UpdateAction,
};
use enrp_server::core::{Action, ConnectPurpose, CoreConfig, Input, Registrar};
use rserpool_tests::enrp_msgs::{self, update};
use rserpool_tests::registrar::tcp_pe;

const ME: ServerId = 5;

fn addr(id: ServerId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 9901))
}

/// A registrar with peering on and static peers 7 and 9.
fn registrar() -> (Registrar, Instant) {
    let now = Instant::now();
    let mut c = CoreConfig::new(ME);
    c.asap_announce_targets = Vec::new();
    c.peering.enabled = true;
    c.peering.unicast = enrp_server::core::PeerTransport::Datagrams;
    c.peers = vec![addr(7), addr(9)];
    (Registrar::new(c, now), now)
}

/// [`registrar`] once it has heard a PRESENCE from each of `peers`.
fn registrar_hearing(peers: &[ServerId]) -> (Registrar, Instant) {
    let (mut r, now) = registrar();
    for &p in peers {
        presence(&mut r, now, p);
    }
    (r, now)
}

fn from(r: &mut Registrar, now: Instant, sender: ServerId, m: impl Into<Message>) -> Vec<Action> {
    r.handle_datagram(now, addr(sender), &m.into())
}

fn presence(r: &mut Registrar, now: Instant, sender: ServerId) {
    from(r, now, sender, enrp_msgs::presence(sender, 0xFFFF));
}

/// A registrar with default settings, no peering and no announces.
fn without_peering() -> (Registrar, Instant) {
    let now = Instant::now();
    let mut c = CoreConfig::new(ME);
    c.asap_announce_targets = Vec::new();
    (Registrar::new(c, now), now)
}

/// When PE `id` of pool P expires (it must be stored).
fn expiry(r: &Registrar, id: u32) -> Option<Instant> {
    r.handlespace()
        .get(&"P".into(), id)
        .expect("stored")
        .expiry()
}

/// PE `id` of home `home`, its ASAP transport at `asap` (TCP), registration life `life`.
fn element(id: u32, home: ServerId, asap: Option<SocketAddr>, life: i32) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: home,
        registration_life: life,
        user_transport: TransportParameter::Tcp {
            port: 7000,
            transport_use: TransportUse::DataOnly,
            address: "10.1.0.1".parse().expect("lit"),
        },
        policy: Policy::RoundRobin,
        asap_transport: asap.map(|a| TransportParameter::Tcp {
            port: a.port(),
            transport_use: TransportUse::DataOnly,
            address: a.ip(),
        }),
    }
}

fn add(r: &mut Registrar, now: Instant, sender: ServerId, el: PoolElementInfo) {
    from(r, now, sender, update(sender, ME, UpdateAction::AddPe, el));
}

/// Peer 7 goes silent while 9 stays: returns the time at which 7 was declared dead and
/// the takeover of its PEs began (INIT_TAKEOVER sent to 9).
fn seven_dies(r: &mut Registrar, now: Instant) -> Instant {
    for s in 1..=11u64 {
        let t = now + Duration::from_secs(s);
        presence(r, t, 9);
        r.handle_timeout(t);
    }
    assert_eq!(r.takeovers_running(), vec![7], "takeover of 7 running");
    now + Duration::from_secs(11)
}

/// A PE learned from a peer never lives forever: an infinite (negative) or huge
/// registration life is capped.
#[test]
fn peer_registration_life_is_capped() {
    let (mut r, now) = registrar_hearing(&[7]);
    add(&mut r, now, 7, element(1, 7, None, -1));
    add(&mut r, now, 7, element(2, 7, None, i32::MAX));
    for id in [1, 2] {
        let e = r.handlespace().get(&"P".into(), id).expect("stored");
        let expiry = e.expiry().expect("no infinite life from ENRP");
        assert!(
            expiry <= now + Duration::from_secs(3600),
            "PE {id}: capped at 1 h"
        );
    }
    // A sane life is kept as it is.
    add(&mut r, now, 7, element(3, 7, None, 30_000));
    assert_eq!(expiry(&r, 3), Some(now + Duration::from_secs(30)));
}

/// One peer cannot fill the handlespace: at most 50 000 PEs per home (default).
#[test]
fn pes_per_peer_are_capped() {
    let (mut r, now) = registrar_hearing(&[7]);
    for id in 1..=50_010u32 {
        add(&mut r, now, 7, element(id, 7, None, 60_000));
    }
    assert_eq!(r.handlespace().owned_len(7), 50_000);
    // Updates of known PEs still apply.
    add(&mut r, now, 7, element(1, 7, None, 90_000));
    assert_eq!(expiry(&r, 1), Some(now + Duration::from_secs(90)));
}

/// A takeover that cannot complete (a live peer never acknowledges) no longer leaves the
/// vanished peer's PEs forever: they are removed after the orphan timeout (30 s).
#[test]
fn pes_of_a_vanished_peer_expire_when_the_takeover_is_abandoned() {
    let (mut r, now) = registrar_hearing(&[7, 9]);
    for id in 1..=3 {
        add(&mut r, now, 7, element(id, 7, None, -1));
    }
    let dead_at = seven_dies(&mut r, now);
    // 9 stays alive but never acknowledges: the takeover is abandoned at expiry.
    let mut t = dead_at;
    while t < dead_at + Duration::from_secs(27) {
        t += Duration::from_secs(1);
        presence(&mut r, t, 9);
        r.handle_timeout(t);
    }
    assert!(r.takeovers_running().is_empty(), "abandoned");
    assert_eq!(
        r.handlespace().owned_len(7),
        3,
        "still there before the bound"
    );
    t = dead_at + Duration::from_secs(31);
    presence(&mut r, t, 9);
    r.handle_timeout(t);
    assert_eq!(r.handlespace().owned_len(7), 0, "orphans removed");
    assert!(r.handlespace().is_empty());
}

/// A takeover connects only to ASAP transports within the scope (default: at least
/// site-local addresses) and to at most 100 transports per second.
#[test]
fn takeover_probes_are_scoped_and_rate_bounded() {
    let (mut r, now) = registrar_hearing(&[7, 9]);
    // 250 PEs of 7 at distinct site-local transports, 50 at global addresses.
    for id in 0..250u32 {
        let a = SocketAddr::from(([10, 2, (id / 200) as u8, (id % 200) as u8 + 1], 4000));
        add(&mut r, now, 7, element(0x100 + id, 7, Some(a), 600_000));
    }
    for id in 0..50u32 {
        let a = SocketAddr::from(([8, 8, 0, id as u8 + 1], 4000));
        add(&mut r, now, 7, element(0x1000 + id, 7, Some(a), 600_000));
    }
    let t = seven_dies(&mut r, now);
    let out = from(
        &mut r,
        t,
        9,
        InitTakeoverAck {
            sender: 9,
            receiver: ME,
            target: 7,
        },
    );
    let adopts = |out: &[Action]| -> Vec<u32> {
        out.iter()
            .filter_map(|a| match a {
                Action::Connect {
                    purpose: ConnectPurpose::Adopt { pes },
                    ..
                } => Some(pes.iter().map(|p| p.1).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let mut probed = adopts(&out);
    assert!(probed.len() <= 100, "first second: {} probes", probed.len());
    let mut at = t;
    for _ in 0..10 {
        at += Duration::from_millis(500);
        let out = r.handle_timeout(at);
        let n = adopts(&out);
        assert!(n.len() <= 100, "{} probes at once", n.len());
        probed.extend(n);
    }
    probed.sort_unstable();
    assert_eq!(
        probed,
        (0x100..0x100 + 250).collect::<Vec<u32>>(),
        "every site-local transport probed once, no global one"
    );
}

fn connect(r: &mut Registrar, now: Instant, assoc: u64, peer: &str) -> Vec<Action> {
    let peer = peer.parse().expect("lit");
    r.handle(
        now,
        Input::connected(assoc, Protocol::Asap, peer, TransportKind::Tcp),
    )
}

fn aborted(out: &[Action]) -> Vec<u64> {
    out.iter()
        .filter_map(|a| match a {
            Action::Abort { assoc, .. } => Some(*assoc),
            _ => None,
        })
        .collect()
}

/// An ASAP association that never registers nor resolves is aborted after the idle
/// timeout (30 s); one that resolved stays.
#[test]
fn idle_associations_are_aborted() {
    let (mut r, now) = without_peering();
    connect(&mut r, now, 1, "10.3.0.1:5000");
    connect(&mut r, now, 2, "10.3.0.2:5000");
    let hr: Message = asap::wire::asap_msg::HandleResolution::new("P").into();
    r.handle_message(now, 2, &hr);
    assert!(aborted(&r.handle_timeout(now + Duration::from_secs(29))).is_empty());
    let t = r.poll_timeout().expect("idle timer");
    assert!(t <= now + Duration::from_secs(30));
    let out = r.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(aborted(&out), vec![1], "the idle one only");
}

/// One host cannot take every association: the 1001st from one address is aborted at once.
#[test]
fn associations_per_host_are_capped() {
    let (mut r, now) = without_peering();
    for i in 0..1000u64 {
        let out = connect(&mut r, now, i, &format!("10.4.0.1:{}", 10_000 + i));
        assert!(aborted(&out).is_empty(), "association {i}");
    }
    let out = connect(&mut r, now, 1000, "10.4.0.1:20000");
    assert_eq!(aborted(&out), vec![1000]);
    // Another host is not affected; a closed association frees a slot.
    assert!(aborted(&connect(&mut r, now, 1001, "10.4.0.2:20000")).is_empty());
    r.handle(now, Input::Disconnected { assoc: 1000 });
    r.handle(now, Input::Disconnected { assoc: 0 });
    assert!(aborted(&connect(&mut r, now, 1002, "10.4.0.1:20001")).is_empty());
}

/// "All items" resolutions of a huge pool are rate-limited per PU (default: more than 256
/// PEs count as bulk, 2 per second, burst 4); small answers are not.
#[test]
fn bulk_resolutions_are_rate_limited() {
    use asap::wire::asap_msg::{HandleResolution, Registration};
    use asap::wire::{AsapMessage, CauseCode, HandleResolutionOption};
    let (mut r, now) = without_peering();
    connect(&mut r, now, 1, "10.5.0.1:5000");
    for id in 1..=300u32 {
        let reg: Message = Registration {
            pool_handle: "Huge".into(),
            pool_element: tcp_pe(id, "10.5.0.1".parse().expect("lit")),
        }
        .into();
        r.handle_message(now, 1, &reg);
    }
    assert_eq!(r.handlespace().len(), 300);
    connect(&mut r, now, 2, "10.5.0.9:6000");
    let resolve = |r: &mut Registrar, items: u32| -> (usize, Option<CauseCode>) {
        let mut hr = HandleResolution::new("Huge");
        hr.option = Some(HandleResolutionOption { items });
        let out = r.handle_message(now, 2, &hr.into());
        out.iter()
            .find_map(|a| match a.sent() {
                Some((_, Message::Asap(AsapMessage::HandleResolutionResponse(x)))) => Some((
                    x.pool_elements.len(),
                    x.error.as_ref().and_then(|e| e.first_code()),
                )),
                _ => None,
            })
            .expect("a response")
    };
    let answers: Vec<_> = (0..6)
        .map(|_| resolve(&mut r, HandleResolutionOption::ALL))
        .collect();
    assert_eq!(answers[..4], [(300, None); 4], "burst of 4");
    assert_eq!(answers[4], (0, Some(CauseCode::LackOfResources)));
    // Small resolutions are not affected.
    assert_eq!(resolve(&mut r, 10), (10, None));
}
