//! The Distance of distance-sensitive policies (LU-DPF, LUD-DPF, WRAND-DPF; rsplib private
//! codes 0xB0002001–3, draft-dreibholz-rserpool-delay; RSERPOOL-SPEC §8.2), filled in from
//! the transport's round-trip time as rsplib's registrar does (`registrarUpdateDistance` in
//! `rspregistrar-global.c`).
//!
//! * **Unit:** milliseconds of one-way delay: half the smoothed RTT of the association the
//!   message came over, rounded to the nearest multiple of
//!   [`CoreConfig::distance_step`](super::CoreConfig::distance_step) (rsplib
//!   `-distancestep`, default 50 ms; halves round up).
//! * **REGISTRATION** (RFC 5352 §3.1): the PE's own Distance is replaced by ours to it.
//! * **HANDLE_UPDATE ADD_PE / HANDLE_TABLE_RESPONSE** from a peer (RFC 5353 §2.3–2.4): our
//!   distance to that peer is **added** to the Distance the peer sent (its distance to the
//!   PE), so a PE registered far away looks far here too. Saturates at `u32::MAX`.
//! * The RTT comes from the driver as [`Input::Rtt`](super::Input::Rtt) (kernel SCTP
//!   `SCTP_STATUS` primary path `spinfo_srtt` converted from jiffies, TCP `TCP_INFO`
//!   `tcpi_rtt`; `asap::transport::Association::rtt`). An association without a measurement
//!   (SCTP over UDP; kernel SCTP before its first acknowledged DATA, so a PE's very first
//!   REGISTRATION; a driver that sends none) gives distance 0, as rsplib does when
//!   `SCTP_STATUS` fails or has no sample yet.
//!
//! Other policies are left untouched.

use std::time::Duration;

use asap::wire::{AsapType, EnrpType, Policy, Protocol};

/// Whether the core uses the association's RTT for this message ([`Input::Rtt`](super::Input::Rtt)):
/// ASAP_REGISTRATION, ENRP_HANDLE_UPDATE, ENRP_HANDLE_TABLE_RESPONSE (by the type byte of
/// the common header). A driver measures the RTT only for these, right before passing the
/// message on.
pub fn wants_rtt(protocol: Protocol, bytes: &[u8]) -> bool {
    let Some(&t) = bytes.first() else {
        return false;
    };
    match protocol {
        Protocol::Asap => AsapType::from_code(t) == AsapType::Registration,
        Protocol::Enrp => matches!(
            EnrpType::from_code(t),
            EnrpType::HandleUpdate | EnrpType::HandleTableResponse
        ),
    }
}

/// Distance in ms for a path with smoothed round-trip time `rtt`: `rtt / 2` rounded to the
/// nearest multiple of `step` (a zero step counts as 1 ms, like rsplib's minimum). `None`
/// (no measurement) is 0.
pub fn distance_ms(rtt: Option<Duration>, step: Duration) -> u32 {
    let Some(rtt) = rtt else {
        return 0;
    };
    let half_us = rtt.as_micros() / 2;
    let step_us = step.as_micros().max(1000);
    let steps = (half_us + step_us / 2) / step_us;
    let ms = steps * (step_us / 1000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// The Distance field of a distance-sensitive policy (`None` for other policies).
pub fn distance_of(policy: &Policy) -> Option<u32> {
    match policy {
        Policy::WeightedRandomDpf { distance, .. }
        | Policy::LeastUsedDpf { distance, .. }
        | Policy::LeastUsedDegradationDpf { distance, .. } => Some(*distance),
        _ => None,
    }
}

fn distance_mut(policy: &mut Policy) -> Option<&mut u32> {
    match policy {
        Policy::WeightedRandomDpf { distance, .. }
        | Policy::LeastUsedDpf { distance, .. }
        | Policy::LeastUsedDegradationDpf { distance, .. } => Some(distance),
        _ => None,
    }
}

/// REGISTRATION: replaces the Distance of a distance-sensitive policy with `d` (rsplib
/// `addDistance = false`). Other policies are unchanged.
pub fn set_distance(policy: &mut Policy, d: u32) {
    if let Some(x) = distance_mut(policy) {
        *x = d;
    }
}

/// HANDLE_UPDATE / HANDLE_TABLE_RESPONSE: adds our distance `d` to the peer to the
/// Distance the peer sent (rsplib `addDistance = true`), saturating.
pub fn add_distance(policy: &mut Policy, d: u32) {
    if let Some(x) = distance_mut(policy) {
        *x = x.saturating_add(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn half_rtt_rounded_to_the_step() {
        // rsplib default step 50 ms: half of 100 ms is one step; half of 50 ms is 25 ms,
        // exactly half a step, which rounds up.
        assert_eq!(distance_ms(Some(MS(100)), MS(50)), 50);
        assert_eq!(distance_ms(Some(MS(49)), MS(50)), 0);
        assert_eq!(distance_ms(Some(MS(50)), MS(50)), 50);
        assert_eq!(distance_ms(Some(MS(149)), MS(50)), 50);
        assert_eq!(distance_ms(Some(MS(151)), MS(50)), 100);
        // 1 ms step: plain rounding of half the RTT.
        assert_eq!(distance_ms(Some(MS(5)), MS(1)), 3);
        assert_eq!(distance_ms(Some(Duration::from_micros(5_200)), MS(1)), 3);
        assert_eq!(distance_ms(Some(MS(50)), MS(1)), 25);
        assert_eq!(distance_ms(Some(Duration::from_micros(900)), MS(1)), 0);
        // Step 0 counts as 1 ms; no measurement is 0.
        assert_eq!(distance_ms(Some(MS(20)), Duration::ZERO), 10);
        assert_eq!(distance_ms(None, MS(1)), 0);
        // Absurd RTTs saturate instead of wrapping.
        assert_eq!(
            distance_ms(Some(Duration::from_secs(u64::MAX / 4)), MS(1)),
            u32::MAX
        );
    }

    #[test]
    fn rtt_wanted_for_registration_and_peer_tables_only() {
        assert!(wants_rtt(Protocol::Asap, &[0x01, 0, 0, 4]));
        assert!(!wants_rtt(Protocol::Asap, &[0x03, 0, 0, 4])); // HANDLE_RESOLUTION
        assert!(wants_rtt(Protocol::Enrp, &[0x03, 0, 0, 4]));
        assert!(wants_rtt(Protocol::Enrp, &[0x04, 0, 0, 4]));
        assert!(!wants_rtt(Protocol::Enrp, &[0x01, 0, 0, 4])); // PRESENCE
        assert!(!wants_rtt(Protocol::Enrp, &[]));
    }

    #[test]
    fn only_distance_sensitive_policies_change() {
        let mut lu = Policy::LeastUsedDpf {
            load: 7,
            load_dpf: 9,
            distance: 1234,
        };
        set_distance(&mut lu, 25);
        assert_eq!(
            lu,
            Policy::LeastUsedDpf {
                load: 7,
                load_dpf: 9,
                distance: 25
            }
        );
        add_distance(&mut lu, 10);
        assert_eq!(distance_of(&lu), Some(35));
        let mut lud = Policy::LeastUsedDegradationDpf {
            load: 1,
            degradation: 2,
            load_dpf: 3,
            distance: u32::MAX - 1,
        };
        add_distance(&mut lud, 10);
        assert_eq!(distance_of(&lud), Some(u32::MAX));
        let mut wr = Policy::WeightedRandomDpf {
            weight: 5,
            weight_dpf: 6,
            distance: 0,
        };
        set_distance(&mut wr, 40);
        assert_eq!(distance_of(&wr), Some(40));
        let mut rr = Policy::RoundRobin;
        set_distance(&mut rr, 40);
        add_distance(&mut rr, 40);
        assert_eq!(rr, Policy::RoundRobin);
        assert_eq!(distance_of(&rr), None);
    }

    // ------------------------------------------------------------------------------------
    // The registrar core fills the distance (REGISTRATION, HANDLE_UPDATE, table response)

    use crate::core::{CoreConfig, Input, PeerAllow, Registrar};
    use asap::transport::TransportKind;
    use asap::wire::asap_msg::{HandleResolution, Registration};
    use asap::wire::enrp_msg::{HandleTableResponse, PoolEntry};
    use asap::wire::{
        AsapMessage, HandleResolutionOption, Message, PoolElementInfo, Protocol, UpdateAction,
    };
    use rserpool_tests::enrp_msgs::{presence, sctp_pe_at, update};
    use std::net::SocketAddr;
    use std::time::Instant;

    const ME: u32 = 0x0D15_0001;
    const PEER: u32 = 0x0D15_0007;
    /// A small load DPF: each ms of distance weighs like 1/4295 of full load.
    const DPF: u32 = 1_000_000;

    fn lu_dpf(distance: u32) -> Policy {
        Policy::LeastUsedDpf {
            load: 0,
            load_dpf: DPF,
            distance,
        }
    }

    /// PE `id` at 10.0.0.`id`.
    fn element(id: u32, home: u32, policy: Policy) -> PoolElementInfo {
        let user = std::net::Ipv4Addr::new(10, 0, 0, (id & 0xFF) as u8);
        sctp_pe_at(id, home, user.into(), policy)
    }

    fn registrar(step_ms: u64) -> (Registrar, Instant) {
        let now = Instant::now();
        let mut c = CoreConfig::new(ME);
        c.distance_step = MS(step_ms);
        c.peering.enabled = true;
        c.peering.unicast = crate::core::PeerTransport::Datagrams;
        c.security.peer_allow = vec![PeerAllow::Net("10.0.0.0/8".parse().expect("lit"))];
        (Registrar::new(c, now), now)
    }

    fn connect(r: &mut Registrar, now: Instant, assoc: u64, at: &str, protocol: Protocol) {
        let at: SocketAddr = at.parse().expect("lit");
        r.handle(
            now,
            Input::connected(assoc, protocol, at, TransportKind::Tcp),
        );
    }

    /// Registers PE `id` (at 10.0.0.`id`) over association `id`, with `rtt` measured first.
    fn register(r: &mut Registrar, now: Instant, id: u32, rtt: Option<u64>, policy: Policy) {
        let assoc = u64::from(id);
        connect(r, now, assoc, &format!("10.0.0.{id}:5000"), Protocol::Asap);
        if let Some(ms) = rtt {
            assert!(r.handle(now, Input::Rtt { assoc, rtt: MS(ms) }).is_empty());
        }
        let reg: Message = Registration {
            pool_handle: "P".into(),
            pool_element: element(id, 0, policy),
        }
        .into();
        let out = r.handle_message(now, assoc, &reg);
        assert!(
            out.iter().any(|a| matches!(a.sent(), Some((_,
                Message::Asap(AsapMessage::RegistrationResponse(x))
            )) if !x.reject)),
            "registration of {id} refused: {out:?}"
        );
    }

    fn stored(r: &Registrar, id: u32) -> Policy {
        r.handlespace
            .get(&"P".into(), id)
            .expect("PE stored")
            .element()
            .policy
            .clone()
    }

    /// HANDLE_RESOLUTION for all PEs of "P" from a PU on association 900: the PEs in the
    /// order returned, with their Distance.
    fn resolve(r: &mut Registrar, now: Instant) -> Vec<(u32, Option<u32>)> {
        connect(r, now, 900, "10.9.9.9:6000", Protocol::Asap);
        let mut hr = HandleResolution::new("P");
        hr.option = Some(HandleResolutionOption {
            items: HandleResolutionOption::ALL,
        });
        let out = r.handle_message(now, 900, &hr.into());
        out.iter()
            .find_map(|a| match a.sent() {
                Some((_, Message::Asap(AsapMessage::HandleResolutionResponse(x)))) => Some(
                    x.pool_elements
                        .iter()
                        .map(|p| (p.id, distance_of(&p.policy)))
                        .collect(),
                ),
                _ => None,
            })
            .expect("HANDLE_RESOLUTION_RESPONSE")
    }

    #[test]
    fn registration_distance_is_half_the_rtt_and_replaces_the_pes_own() {
        let (mut r, now) = registrar(50);
        // 120 ms RTT → 60 ms → nearest 50 ms step: 50. The PE's own 999 is not kept.
        register(&mut r, now, 1, Some(120), lu_dpf(999));
        assert_eq!(distance_of(&stored(&r, 1)), Some(50));
        // 160 ms → 80 → 100.
        register(&mut r, now, 2, Some(160), lu_dpf(0));
        assert_eq!(distance_of(&stored(&r, 2)), Some(100));
        // No measurement: 0 (as rsplib when SCTP_STATUS fails).
        register(&mut r, now, 3, None, lu_dpf(777));
        assert_eq!(distance_of(&stored(&r, 3)), Some(0));
        // The resolution carries the stored distances.
        let got: std::collections::BTreeMap<_, _> = resolve(&mut r, now).into_iter().collect();
        assert_eq!(got.get(&1), Some(&Some(50)));
        assert_eq!(got.get(&2), Some(&Some(100)));
        assert_eq!(got.get(&3), Some(&Some(0)));
    }

    #[test]
    fn lud_dpf_and_wrand_dpf_get_the_distance_too() {
        for policy in [
            Policy::LeastUsedDegradationDpf {
                load: 0,
                degradation: 0,
                load_dpf: DPF,
                distance: 5,
            },
            Policy::WeightedRandomDpf {
                weight: 1,
                weight_dpf: DPF,
                distance: 5,
            },
        ] {
            let (mut r, now) = registrar(1);
            register(&mut r, now, 1, Some(64), policy);
            assert_eq!(distance_of(&stored(&r, 1)), Some(32));
        }
    }

    #[test]
    fn other_policies_keep_their_values() {
        let (mut r, now) = registrar(1);
        register(&mut r, now, 1, Some(80), Policy::LeastUsed { load: 0x1234 });
        assert_eq!(stored(&r, 1), Policy::LeastUsed { load: 0x1234 });
    }

    #[test]
    fn lu_dpf_hands_out_the_near_pe_first() {
        let (mut r, now) = registrar(1);
        // The far PE has the lower ID, which wins every tie without distances.
        register(&mut r, now, 1, Some(50), lu_dpf(0));
        register(&mut r, now, 2, Some(5), lu_dpf(0));
        for _ in 0..5 {
            let order = resolve(&mut r, now);
            assert_eq!(order, vec![(2, Some(3)), (1, Some(25))]);
        }
    }

    #[test]
    fn wrand_dpf_prefers_the_near_pe() {
        let (mut r, now) = registrar(1);
        // Weight DPF: 25 ms of distance take 25 × 0x0800_0000 / 2^32 ≈ 78 % of the weight,
        // 3 ms ≈ 9 %.
        let wr = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: 0x0800_0000,
            distance: 0,
        };
        register(&mut r, now, 1, Some(50), wr.clone());
        register(&mut r, now, 2, Some(5), wr);
        let mut near_first = 0;
        for _ in 0..400 {
            if resolve(&mut r, now)[0].0 == 2 {
                near_first += 1;
            }
        }
        // Expected share 910 / (910 + 220) ≈ 80 %; equal weights would give 50 %.
        assert!(near_first > 280, "near PE first in {near_first} of 400");
    }

    fn peer_up(r: &mut Registrar, now: Instant, rtt: Option<u64>) {
        connect(r, now, 50, "10.0.0.2:9901", Protocol::Enrp);
        if let Some(ms) = rtt {
            r.handle(
                now,
                Input::Rtt {
                    assoc: 50,
                    rtt: MS(ms),
                },
            );
        }
        // A new peer during start-up becomes the mentor: a table download starts.
        r.handle_message(now, 50, &presence(PEER, 0).into());
        assert!(r.peers().contains_key(&PEER));
    }

    /// The peer's ADD_PE of its PE 0x70 (LU-DPF, distance 7 ms), over association 50.
    fn add_70_from_peer(r: &mut Registrar, now: Instant) {
        let u = update(
            PEER,
            ME,
            UpdateAction::AddPe,
            element(0x70, PEER, lu_dpf(7)),
        );
        r.handle_message(now, 50, &u.into());
    }

    #[test]
    fn handle_update_adds_our_distance_to_the_peer() {
        let (mut r, now) = registrar(1);
        peer_up(&mut r, now, Some(40));
        add_70_from_peer(&mut r, now);
        // The peer's 7 ms to the PE plus our 20 ms to the peer.
        assert_eq!(distance_of(&stored(&r, 0x70)), Some(27));
        // A later RTT is used for the next update.
        r.handle(
            now,
            Input::Rtt {
                assoc: 50,
                rtt: MS(100),
            },
        );
        add_70_from_peer(&mut r, now);
        assert_eq!(distance_of(&stored(&r, 0x70)), Some(57));
    }

    #[test]
    fn handle_table_response_adds_our_distance_to_the_peer() {
        let (mut r, now) = registrar(1);
        peer_up(&mut r, now, Some(30));
        let t: Message = HandleTableResponse {
            reject: false,
            more: false,
            sender: PEER,
            receiver: ME,
            pools: vec![
                PoolEntry {
                    pool_handle: "P".into(),
                    pool_elements: vec![element(0x71, PEER, lu_dpf(4))],
                },
                PoolEntry {
                    pool_handle: "Q".into(),
                    pool_elements: vec![element(0x72, PEER, Policy::RoundRobin)],
                },
            ],
        }
        .into();
        r.handle_message(now, 50, &t);
        // The peer's 4 ms plus our 15 ms; the round-robin PE (pool Q) unchanged.
        assert_eq!(distance_of(&stored(&r, 0x71)), Some(19));
        let q = r.handlespace.get(&"Q".into(), 0x72).expect("PE in Q");
        assert_eq!(q.element().policy, Policy::RoundRobin);
    }

    #[test]
    fn peer_without_rtt_passes_its_distance_on() {
        let (mut r, now) = registrar(1);
        peer_up(&mut r, now, None);
        add_70_from_peer(&mut r, now);
        assert_eq!(distance_of(&stored(&r, 0x70)), Some(7));
    }
}
