//! Deterministic tests of the registrar core: every ASAP request, every refusal cause,
//! policy effects, timers (driven with a fake clock), ENRP tool requests and error handling.

use super::*;
use asap::handlespace::HandlespaceLimits;
use asap::wire::asap_msg::{
    Deregistration, EndpointKeepAliveAck, EndpointUnreachable, HandleResolution, Registration,
};
use asap::wire::enrp_msg::{HandleTableRequest, ListRequest};
use rserpool_tests::enrp_msgs::cut_short;

const ME: u32 = 0x5EC0_0001;
const T0_MS: u64 = 0;

struct H {
    r: Registrar,
    now: Instant,
}

fn config() -> CoreConfig {
    let mut c = CoreConfig::new(ME);
    c.asap_announce_targets = Vec::new();
    // Exact timer arithmetic in these tests; the jitter has its own test.
    c.keep_alive_jitter = false;
    c
}

/// [`config`] with one change.
fn config_with(tune: impl FnOnce(&mut CoreConfig)) -> CoreConfig {
    let mut c = config();
    tune(&mut c);
    c
}

/// A token bucket of `per_second` with `burst`.
fn rate(per_second: f64, burst: f64) -> Option<Rate> {
    Some(Rate { per_second, burst })
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

impl H {
    fn new(c: CoreConfig) -> Self {
        let now = Instant::now() + Duration::from_millis(T0_MS);
        H {
            r: Registrar::new(c, now),
            now,
        }
    }

    /// A registrar with PEs `ids` registered in `handle` (round robin, [`register_simple`]).
    fn with_pes(c: CoreConfig, handle: &str, ids: std::ops::RangeInclusive<u32>) -> Self {
        let mut h = H::new(c);
        for id in ids {
            register_simple(&mut h, handle, id, Policy::RoundRobin);
        }
        h
    }

    /// The pool user of these tests: association 50 from 10.0.1.1:6000 (ASAP).
    fn connect_pu(&mut self) {
        self.connect(50, "10.0.1.1:6000", Protocol::Asap);
    }

    fn connect(&mut self, assoc: AssocId, peer: &str, protocol: Protocol) {
        let out = self.r.handle(
            self.now,
            Input::Connected {
                assoc,
                protocol,
                peer_addrs: vec![sa(peer)],
                transport: TransportKind::Sctp,
            },
        );
        assert!(out.is_empty());
    }

    fn send(&mut self, assoc: AssocId, m: impl Into<Message>) -> Vec<Action> {
        let m = m.into();
        self.r.handle_message(self.now, assoc, &m)
    }

    fn raw(&mut self, assoc: AssocId, protocol: Protocol, bytes: Vec<u8>) -> Vec<Action> {
        self.r.handle(
            self.now,
            Input::Message {
                assoc,
                protocol,
                bytes: bytes.into(),
            },
        )
    }

    fn advance(&mut self, ms: u64) -> Vec<Action> {
        self.now += Duration::from_millis(ms);
        self.r.handle_timeout(self.now)
    }
}

fn sent(out: &[Action]) -> Vec<(AssocId, Message)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send {
                assoc,
                protocol,
                name,
                bytes,
            } => {
                // The bytes decode, canonically (re-encoding gives them back), under the name.
                let d = Message::decode(*protocol, bytes).expect("own encoding decodes");
                assert_eq!(&d.message.to_bytes().expect("re-encodes")[..], &bytes[..]);
                assert_eq!(d.message.tshark_name(), *name);
                Some((*assoc, d.message))
            }
            _ => None,
        })
        .collect()
}

fn events(out: &[Action]) -> Vec<Event> {
    out.iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// ENDPOINT_UNREACHABLE of PE 1 in pool P.
fn unreachable_of_1() -> EndpointUnreachable {
    EndpointUnreachable {
        pool_handle: "P".into(),
        pe_identifier: 1,
    }
}

/// Whether `out` reports PE `id` of `handle` removed for `reason`.
fn removed(out: &[Action], handle: &str, id: u32, reason: RemovalReason) -> bool {
    events(out).contains(&Event::Removed {
        handle: handle.into(),
        id,
        reason,
    })
}

/// Whether `out` aborts association `assoc`.
fn aborted(out: &[Action], assoc: AssocId) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Abort { assoc: x, .. } if *x == assoc))
}

fn only_reply(out: &[Action]) -> Message {
    let s = sent(out);
    assert_eq!(s.len(), 1, "expected one reply, got {s:?}");
    s[0].1.clone()
}

fn pe(id: u32, addr: &str, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 90_000,
        user_transport: TransportParameter::Sctp {
            port: 7,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![ip(addr)],
        },
        policy,
        asap_transport: None,
    }
}

fn registration(handle: &str, element: PoolElementInfo) -> Registration {
    Registration {
        pool_handle: handle.into(),
        pool_element: element,
    }
}

fn reg_response(m: &Message) -> &RegistrationResponse {
    match m {
        Message::Asap(AsapMessage::RegistrationResponse(r)) => r,
        other => panic!("expected REGISTRATION_RESPONSE, got {other:?}"),
    }
}

fn hres_response(m: &Message) -> &HandleResolutionResponse {
    match m {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => r,
        other => panic!("expected HANDLE_RESOLUTION_RESPONSE, got {other:?}"),
    }
}

fn cause(r: &RegistrationResponse) -> CauseCode {
    assert!(r.reject, "R flag must be set");
    r.error
        .as_ref()
        .and_then(OperationError::first_code)
        .expect("operation error present")
}

/// Registers `id` from a PE at 10.0.0.`id` over association `id`.
fn register_simple(h: &mut H, handle: &str, id: u32, policy: Policy) {
    let addr = format!("10.0.0.{id}");
    h.connect(u64::from(id), &format!("{addr}:5000"), Protocol::Asap);
    let out = h.send(u64::from(id), registration(handle, pe(id, &addr, policy)));
    let m = only_reply(&out);
    let r = reg_response(&m);
    assert!(!r.reject, "registration of {id} refused: {r:?}");
}

/// Sends DEREGISTRATION of PE `id` in `handle` on `assoc`; the actions and the response.
fn deregister(
    h: &mut H,
    assoc: AssocId,
    handle: &str,
    id: u32,
) -> (Vec<Action>, DeregistrationResponse) {
    let out = h.send(
        assoc,
        Deregistration {
            pool_handle: handle.into(),
            pe_identifier: id,
        },
    );
    match only_reply(&out) {
        Message::Asap(AsapMessage::DeregistrationResponse(r)) => (out, r),
        other => panic!("expected DEREGISTRATION_RESPONSE, got {other:?}"),
    }
}

fn resolve(h: &mut H, assoc: AssocId, handle: &str, items: Option<u32>) -> Vec<u32> {
    let mut hr = HandleResolution::new(handle);
    hr.option = items.map(|items| HandleResolutionOption { items });
    let out = h.send(assoc, hr);
    let m = only_reply(&out);
    let r = hres_response(&m);
    assert!(r.error.is_none(), "resolution failed: {r:?}");
    r.pool_elements.iter().map(|p| p.id).collect()
}

// ----------------------------------------------------------------------------------------
// Registration

#[test]
fn registration_accepted_sets_home_and_asap_transport() {
    let mut h = H::new(config());
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    let out = h.send(
        1,
        registration("EchoPool", pe(0x1234, "10.0.0.1", Policy::RoundRobin)),
    );
    let m = only_reply(&out);
    let r = reg_response(&m);
    assert!(!r.reject);
    assert_eq!(r.pe_identifier, 0x1234);
    assert_eq!(r.pool_handle, PoolHandle::from("EchoPool"));
    assert!(r.error.is_none());
    let e =
        h.r.handlespace()
            .get(&"EchoPool".into(), 0x1234)
            .expect("stored");
    assert_eq!(e.element().home_server_id, ME);
    assert_eq!(e.owner(), ME);
    assert_eq!(e.connection(), Some(1));
    assert_eq!(
        e.element().asap_transport,
        Some(TransportParameter::Sctp {
            port: 5000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![ip("10.0.0.1")]
        })
    );
    // Peering hook and log event.
    assert!(out.iter().any(|a| matches!(a, Action::Replicate(r) if r.action == UpdateAction::AddPe && r.element.id == 0x1234)));
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Registered {
            id: 0x1234,
            update: false,
            ..
        }
    )));
}

#[test]
fn registration_refused_pe_id_zero_with_tlv() {
    let mut h = H::new(config());
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    let out = h.send(1, registration("P", pe(0, "10.0.0.1", Policy::RoundRobin)));
    let m = only_reply(&out);
    let r = reg_response(&m);
    assert_eq!(cause(r), CauseCode::InvalidValues);
    // The cause carries the offending Pool Element TLV.
    let tlv = r
        .error
        .as_ref()
        .and_then(|e| e.causes[0].tlv())
        .expect("tlv");
    assert_eq!(tlv.param_type, 0x000A);
    assert!(h.r.handlespace().is_empty());
}

#[test]
fn registration_refused_handle_length() {
    let mut h = H::new(config_with(|c| c.max_handle_len = 8));
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    let out = h.send(
        1,
        registration("123456789", pe(1, "10.0.0.1", Policy::RoundRobin)),
    );
    let m = only_reply(&out);
    let r = reg_response(&m);
    assert_eq!(cause(r), CauseCode::InvalidValues);
    assert_eq!(
        r.error
            .as_ref()
            .and_then(|e| e.causes[0].tlv())
            .map(|t| t.param_type),
        Some(0x0009)
    );
    let out = h.send(
        1,
        registration("12345678", pe(1, "10.0.0.1", Policy::RoundRobin)),
    );
    assert!(!reg_response(&only_reply(&out)).reject);
}

#[test]
fn registration_refused_inconsistent_policy_transport_use() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    h.connect(2, "10.0.0.2:5000", Protocol::Asap);
    // Policy.
    let out = h.send(2, registration("P", pe(2, "10.0.0.2", Policy::Random)));
    let m = only_reply(&out);
    let r = reg_response(&m);
    assert_eq!(cause(r), CauseCode::InconsistentPoolingPolicy);
    assert_eq!(
        r.error.as_ref().and_then(|e| e.causes[0].policy()),
        Some(Policy::RoundRobin)
    );
    // Transport type.
    let mut e = pe(2, "10.0.0.2", Policy::RoundRobin);
    e.user_transport = TransportParameter::Tcp {
        port: 7,
        transport_use: TransportUse::DataOnly,
        address: ip("10.0.0.2"),
    };
    let m = only_reply(&h.send(2, registration("P", e)));
    let r = reg_response(&m);
    assert_eq!(cause(r), CauseCode::InconsistentTransportType);
    assert!(matches!(
        r.error.as_ref().and_then(|e| e.causes[0].transport()),
        Some(TransportParameter::Sctp { .. })
    ));
    // Transport use.
    let mut e = pe(2, "10.0.0.2", Policy::RoundRobin);
    e.user_transport = TransportParameter::Sctp {
        port: 7,
        transport_use: TransportUse::DataOnly,
        addresses: vec![ip("10.0.0.2")],
    };
    let m = only_reply(&h.send(2, registration("P", e)));
    assert_eq!(cause(reg_response(&m)), CauseCode::InconsistentDataControl);
    assert_eq!(h.r.handlespace().len(), 1);
}

#[test]
fn registration_refused_non_unique_id_over_other_association() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    h.connect(9, "10.0.0.1:5001", Protocol::Asap);
    let m = only_reply(&h.send(9, registration("P", pe(1, "10.0.0.1", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::NonUniquePeIdentifier);
}

#[test]
fn registration_address_rules() {
    let mut h = H::new(config());
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    // Not the association's address.
    let m = only_reply(&h.send(1, registration("P", pe(1, "10.0.0.99", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::InvalidValues);
    // Multicast / unspecified.
    for bad in ["224.0.0.1", "0.0.0.0"] {
        let m = only_reply(&h.send(1, registration("P", pe(1, bad, Policy::RoundRobin))));
        assert_eq!(cause(reg_response(&m)), CauseCode::InvalidValues, "{bad}");
    }
    // Loopback announced over a site-local association: below the minimum scope.
    let m = only_reply(&h.send(1, registration("P", pe(1, "127.0.0.1", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::InvalidValues);
    // Multi-address SCTP transport: the foreign address is dropped, the own one kept.
    let mut e = pe(1, "10.0.0.1", Policy::RoundRobin);
    e.user_transport = TransportParameter::Sctp {
        port: 7,
        transport_use: TransportUse::DataPlusControl,
        addresses: vec![ip("10.0.0.1"), ip("10.9.9.9")],
    };
    let m = only_reply(&h.send(1, registration("P", e)));
    assert!(!reg_response(&m).reject);
    let stored = h.r.handlespace().get(&"P".into(), 1).expect("stored");
    assert_eq!(
        stored.element().user_transport.addresses(),
        vec![ip("10.0.0.1")]
    );
}

#[test]
fn loopback_everything_is_accepted() {
    let mut h = H::new(config());
    h.connect(1, "127.0.0.1:5000", Protocol::Asap);
    let m = only_reply(&h.send(1, registration("P", pe(1, "127.0.0.1", Policy::RoundRobin))));
    assert!(!reg_response(&m).reject);
}

#[test]
fn third_party_registration_needs_allow_list() {
    let mut h = H::new(config_with(|c| {
        c.allow_third_party = vec!["10.1.0.0/16".parse().expect("net")]
    }));
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    h.connect(2, "10.1.2.3:5000", Protocol::Asap);
    let m = only_reply(&h.send(1, registration("P", pe(1, "10.0.0.50", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::InvalidValues);
    let m = only_reply(&h.send(2, registration("P", pe(1, "10.0.0.50", Policy::RoundRobin))));
    assert!(!reg_response(&m).reject);
}

#[test]
fn registration_limits_give_lack_of_resources() {
    let mut h = H::new(config_with(|c| {
        c.limits = HandlespaceLimits {
            max_pools: 1,
            max_pes_per_pool: 2,
            max_pes_per_connection: 1,
            max_pes: 100,
        }
    }));
    register_simple(&mut h, "A", 1, Policy::RoundRobin);
    register_simple(&mut h, "A", 2, Policy::RoundRobin);
    // Pool full.
    h.connect(3, "10.0.0.3:5000", Protocol::Asap);
    let m = only_reply(&h.send(3, registration("A", pe(3, "10.0.0.3", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::LackOfResources);
    // Too many pools.
    let m = only_reply(&h.send(3, registration("B", pe(3, "10.0.0.3", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::LackOfResources);
    // Too many PEs on one association (a second PE over association 1).
    let m = only_reply(&h.send(1, registration("A", pe(11, "10.0.0.1", Policy::RoundRobin))));
    assert_eq!(cause(reg_response(&m)), CauseCode::LackOfResources);
    assert_eq!(h.r.handlespace().len(), 2);
}

#[test]
fn unknown_policy_refused() {
    let mut h = H::new(config());
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    let p = Policy::Unknown {
        policy_type: 0x8000_0077,
        data: vec![],
    };
    let m = only_reply(&h.send(1, registration("P", pe(1, "10.0.0.1", p))));
    assert_eq!(cause(reg_response(&m)), CauseCode::InvalidValues);
}

#[test]
fn reregistration_load_change_affects_next_resolution() {
    let mut h = H::new(config());
    register_simple(&mut h, "LU", 1, Policy::LeastUsed { load: 100 });
    register_simple(&mut h, "LU", 2, Policy::LeastUsed { load: 200 });
    h.connect_pu();
    assert_eq!(resolve(&mut h, 50, "LU", Some(1)), vec![1]);
    // PE 1 re-registers with a higher load: PE 2 is now the least used.
    let out = h.send(
        1,
        registration("LU", pe(1, "10.0.0.1", Policy::LeastUsed { load: 300 })),
    );
    assert!(!reg_response(&only_reply(&out)).reject);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Registered {
            id: 1,
            update: true,
            ..
        }
    )));
    assert_eq!(resolve(&mut h, 50, "LU", Some(1)), vec![2]);
    assert_eq!(resolve(&mut h, 50, "LU", Some(2)), vec![2, 1]);
}

#[test]
fn lud_degradation_reset_on_reregistration() {
    let mut h = H::new(config());
    let deg = 0x1000_0000;
    register_simple(
        &mut h,
        "LUD",
        1,
        Policy::LeastUsedDegradation {
            load: 0,
            degradation: deg,
        },
    );
    register_simple(
        &mut h,
        "LUD",
        2,
        Policy::LeastUsedDegradation {
            load: 0x0800_0000,
            degradation: deg,
        },
    );
    h.connect_pu();
    // PE 1 (load 0) wins first; its degradation then makes PE 2 the better one.
    assert_eq!(resolve(&mut h, 50, "LUD", Some(1)), vec![1]);
    assert_eq!(resolve(&mut h, 50, "LUD", Some(1)), vec![2]);
    assert_eq!(resolve(&mut h, 50, "LUD", Some(1)), vec![1]);
    // Now PE 1 carries degradation again; re-registration resets it to 0.
    let out = h.send(
        1,
        registration(
            "LUD",
            pe(
                1,
                "10.0.0.1",
                Policy::LeastUsedDegradation {
                    load: 0,
                    degradation: deg,
                },
            ),
        ),
    );
    assert!(!reg_response(&only_reply(&out)).reject);
    assert_eq!(resolve(&mut h, 50, "LUD", Some(1)), vec![1]);
}

#[test]
fn deregistration() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    register_simple(&mut h, "P", 2, Policy::RoundRobin);
    let (out, r) = deregister(&mut h, 1, "P", 1);
    assert!(!r.reject);
    assert_eq!(r.pe_identifier, 1);
    assert_eq!(r.pool_handle, PoolHandle::from("P"));
    assert!(removed(&out, "P", 1, RemovalReason::Deregistered));
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Replicate(r) if r.action == UpdateAction::DelPe)));
    assert!(h.r.handlespace().get(&"P".into(), 1).is_none());
    assert_eq!(h.r.handlespace().len(), 1);
    // No keep-alive is sent for the removed PE any more.
    let out = h.advance(5000);
    let ka: Vec<_> = sent(&out).into_iter().map(|(a, _)| a).collect();
    assert_eq!(ka, vec![2]);
}

/// RFC 5352 §3.3 + protection: only the PE's association or its own host may deregister it.
#[test]
fn deregistration_from_a_stranger_is_refused_and_the_pe_stays() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    // Association 9 comes from 10.9.9.9, which is none of PE 1's addresses (10.0.0.1).
    h.connect(9, "10.9.9.9:4000", Protocol::Asap);
    let (out, r) = deregister(&mut h, 9, "P", 1);
    assert!(r.reject, "{r:?}");
    assert_eq!(
        r.error.as_ref().and_then(OperationError::first_code),
        Some(CauseCode::RejectedSecurity)
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Replicate(_))));
    assert!(h.r.handlespace().get(&"P".into(), 1).is_some());
    // A second association from the PE's own host (e.g. after giving up a half-open one)
    // may deregister it.
    deregister_from(&mut h, 10, "10.0.0.1:4001");
}

/// A new association `assoc` from `at` deregisters PE 1 of pool P: accepted, PE gone.
fn deregister_from(h: &mut H, assoc: AssocId, at: &str) {
    h.connect(assoc, at, Protocol::Asap);
    let (_, r) = deregister(h, assoc, "P", 1);
    assert!(!r.reject, "{r:?}");
    assert!(h.r.handlespace().get(&"P".into(), 1).is_none());
}

/// An allow-listed third party (the proxy PE) may deregister what it registered elsewhere.
#[test]
fn deregistration_by_an_allow_listed_third_party() {
    let mut h = H::with_pes(
        config_with(|c| c.allow_third_party = vec!["10.9.9.0/24".parse().expect("net")]),
        "P",
        1..=1,
    );
    deregister_from(&mut h, 9, "10.9.9.9:4000");
}

// ----------------------------------------------------------------------------------------
// Handle resolution

#[test]
fn resolution_default_option_and_all() {
    let mut h = H::with_pes(config(), "RR", 1..=6);
    h.connect_pu();
    // No option: max_hres_items = 3.
    let a = resolve(&mut h, 50, "RR", None);
    assert_eq!(a.len(), 3);
    // Option 2.
    assert_eq!(resolve(&mut h, 50, "RR", Some(2)).len(), 2);
    // All.
    let mut all = resolve(&mut h, 50, "RR", Some(HandleResolutionOption::ALL));
    all.sort_unstable();
    assert_eq!(all, vec![1, 2, 3, 4, 5, 6]);
    // Round robin: consecutive single resolutions rotate through the pool.
    let seq: Vec<u32> = (0..6)
        .flat_map(|_| resolve(&mut h, 50, "RR", Some(1)))
        .collect();
    let mut sorted = seq.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 2, 3, 4, 5, 6], "{seq:?}");
    // The response carries the policy and no ASAP transport (rsplib style).
    let out = h.send(50, HandleResolution::new("RR"));
    let m = only_reply(&out);
    let r = hres_response(&m);
    assert_eq!(r.policy, Some(Policy::RoundRobin));
    assert!(r
        .pool_elements
        .iter()
        .all(|p| p.asap_transport.is_none() && p.home_server_id == ME));
}

/// Every policy the codec knows drives the registrar's selection with its values (RFC 5356
/// §4–5 and rsplib's private ones; the exact semantics are tested on the selector in
/// `asap::selection`): per policy a pool of PEs x1 (bad), x2 (good), x3 (bad), 300 single-PE
/// resolutions.
#[test]
fn resolution_follows_every_policy_and_its_values() {
    const BUSY: u32 = 0xE666_6666; // 90 %
    #[derive(Debug)]
    enum Want {
        /// All three are selected.
        All,
        /// Only the good one is ever selected.
        OnlyGood,
        /// The good one gets more than the two bad ones together.
        MostlyGood,
    }
    // (name, bad, good, expectation)
    let cases: Vec<(&str, Policy, Policy, Want)> = vec![
        ("rr", Policy::RoundRobin, Policy::RoundRobin, Want::All),
        ("rand", Policy::Random, Policy::Random, Want::All),
        (
            "wrr",
            Policy::WeightedRoundRobin { weight: 1 },
            Policy::WeightedRoundRobin { weight: 5 },
            Want::MostlyGood,
        ),
        (
            "wrand",
            Policy::WeightedRandom { weight: 0 },
            Policy::WeightedRandom { weight: 1 },
            Want::OnlyGood,
        ),
        (
            "prio",
            Policy::Priority { priority: 1 },
            Policy::Priority { priority: 9 },
            Want::OnlyGood,
        ),
        (
            "lu",
            Policy::LeastUsed { load: BUSY },
            Policy::LeastUsed { load: 0 },
            Want::OnlyGood,
        ),
        (
            "lud",
            Policy::LeastUsedDegradation {
                load: BUSY,
                degradation: 0,
            },
            Policy::LeastUsedDegradation {
                load: 0,
                degradation: 0,
            },
            Want::OnlyGood,
        ),
        (
            "plu",
            Policy::PriorityLeastUsed {
                load: 0,
                degradation: BUSY,
            },
            Policy::PriorityLeastUsed {
                load: 0,
                degradation: 0,
            },
            Want::OnlyGood,
        ),
        (
            "rlu",
            Policy::RandomizedLeastUsed { load: u32::MAX },
            Policy::RandomizedLeastUsed { load: 0 },
            Want::OnlyGood,
        ),
        (
            "rplu",
            Policy::RandomizedPriorityLeastUsed {
                load: u32::MAX,
                degradation: 0,
            },
            Policy::RandomizedPriorityLeastUsed {
                load: 0,
                degradation: 0,
            },
            Want::OnlyGood,
        ),
        (
            "rlud",
            Policy::RandomizedLeastUsedDegradation {
                load: u32::MAX,
                degradation: 0,
            },
            Policy::RandomizedLeastUsedDegradation {
                load: 0,
                degradation: 0,
            },
            Want::OnlyGood,
        ),
        (
            "plud",
            Policy::PriorityLeastUsedDegradation {
                load: BUSY,
                degradation: 0,
            },
            Policy::PriorityLeastUsedDegradation {
                load: 0,
                degradation: 0,
            },
            Want::OnlyGood,
        ),
        (
            "rplud",
            Policy::RandomizedPriorityLeastUsedDegradation {
                load: u32::MAX,
                degradation: 0,
            },
            Policy::RandomizedPriorityLeastUsedDegradation {
                load: 0,
                degradation: 0,
            },
            Want::OnlyGood,
        ),
        (
            "wrand-dpf",
            Policy::WeightedRandomDpf {
                weight: 0,
                weight_dpf: 0,
                distance: 0,
            },
            Policy::WeightedRandomDpf {
                weight: 1,
                weight_dpf: 0,
                distance: 0,
            },
            Want::OnlyGood,
        ),
        (
            "lu-dpf",
            Policy::LeastUsedDpf {
                load: BUSY,
                load_dpf: 0,
                distance: 0,
            },
            Policy::LeastUsedDpf {
                load: 0,
                load_dpf: 0,
                distance: 0,
            },
            Want::OnlyGood,
        ),
        (
            "lud-dpf",
            Policy::LeastUsedDegradationDpf {
                load: BUSY,
                degradation: 0,
                load_dpf: 0,
                distance: 0,
            },
            Policy::LeastUsedDegradationDpf {
                load: 0,
                degradation: 0,
                load_dpf: 0,
                distance: 0,
            },
            Want::OnlyGood,
        ),
    ];
    assert_eq!(cases.len(), 16, "every known policy type");
    let mut h = H::new(config());
    h.connect(250, "10.0.1.250:6000", Protocol::Asap);
    for (k, (name, bad, good, want)) in cases.into_iter().enumerate() {
        let base = 10 * (k as u32 + 1);
        for (id, p) in [(base + 1, &bad), (base + 2, &good), (base + 3, &bad)] {
            let addr = format!("10.0.0.{id}");
            h.connect(u64::from(id), &format!("{addr}:5000"), Protocol::Asap);
            let out = h.send(u64::from(id), registration(name, pe(id, &addr, p.clone())));
            assert!(!reg_response(&only_reply(&out)).reject, "{name}: {id}");
        }
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            let got = resolve(&mut h, 250, name, Some(1));
            assert_eq!(got.len(), 1, "{name}");
            counts[(got[0] - base - 1) as usize] += 1;
        }
        let ok = match want {
            Want::All => counts.iter().all(|c| *c > 0),
            Want::OnlyGood => counts == [0, 300, 0],
            Want::MostlyGood => counts[1] > counts[0] + counts[2] && counts[0] > 0,
        };
        assert!(
            ok,
            "{name}: selections (bad, good, bad) = {counts:?}, want {want:?}"
        );
    }
}

#[test]
fn resolution_cap() {
    let mut h = H::with_pes(config_with(|c| c.hres_items_cap = 4), "RR", 1..=6);
    h.connect_pu();
    assert_eq!(
        resolve(&mut h, 50, "RR", Some(HandleResolutionOption::ALL)).len(),
        4
    );
}

#[test]
fn resolution_unknown_handle() {
    let mut h = H::new(config());
    h.connect_pu();
    let out = h.send(50, HandleResolution::new("Nope"));
    let m = only_reply(&out);
    let r = hres_response(&m);
    assert!(r.pool_elements.is_empty());
    assert_eq!(
        r.error.as_ref().and_then(OperationError::first_code),
        Some(CauseCode::UnknownPoolHandle)
    );
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::ResolutionFailed {
            cause: CauseCode::UnknownPoolHandle,
            ..
        }
    )));
}

#[test]
fn resolution_rate_limit() {
    let mut h = H::with_pes(config_with(|c| c.hres_rate = rate(1.0, 2.0)), "P", 1..=1);
    h.connect_pu();
    h.connect(51, "10.0.1.2:6000", Protocol::Asap);
    assert_eq!(resolve(&mut h, 50, "P", None), vec![1]);
    assert_eq!(resolve(&mut h, 50, "P", None), vec![1]);
    let out = h.send(50, HandleResolution::new("P"));
    let m = only_reply(&out);
    assert_eq!(
        hres_response(&m)
            .error
            .as_ref()
            .and_then(OperationError::first_code),
        Some(CauseCode::LackOfResources)
    );
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::RateLimited {
            what: "handle-resolution",
            ..
        }
    )));
    // Another PU is not affected; after a second the first may ask again.
    assert_eq!(resolve(&mut h, 51, "P", None), vec![1]);
    h.advance(1000);
    assert_eq!(resolve(&mut h, 50, "P", None), vec![1]);
}

/// The answer is encoded straight from the handlespace (no PE copied, no message built):
/// its bytes are exactly the codec's encoding of the HANDLE_RESOLUTION_RESPONSE built from
/// the stored entries without their ASAP transport (asap/wire/INTEROP.md §2), the first
/// PE's policy as the overall one. The PEs are multi-homed, each with its own weight and an
/// ASAP transport (which the answer leaves out).
#[test]
fn resolution_answer_bytes_are_the_codec_encoding_of_the_stored_pes() {
    let mut h = H::new(config());
    for id in 1..=3u32 {
        let addrs = [format!("10.0.0.{id}"), format!("10.0.1.{id}")];
        h.r.handle(
            h.now,
            Input::Connected {
                assoc: u64::from(id),
                protocol: Protocol::Asap,
                peer_addrs: addrs.iter().map(|a| sa(&format!("{a}:5000"))).collect(),
                transport: TransportKind::Sctp,
            },
        );
        let mut el = pe(
            id,
            &addrs[0],
            Policy::WeightedRoundRobin { weight: 10 * id },
        );
        el.user_transport = TransportParameter::Sctp {
            port: 7,
            transport_use: TransportUse::DataPlusControl,
            addresses: addrs.iter().map(|a| ip(a)).collect(),
        };
        let out = h.send(u64::from(id), registration("Multi", el));
        let m = only_reply(&out);
        assert!(!reg_response(&m).reject, "registration of {id}");
    }
    h.connect_pu();
    for items in [1, 2, 3] {
        let mut hr = HandleResolution::new("Multi");
        hr.option = Some(HandleResolutionOption { items });
        let out = h.send(50, hr);
        let bytes = out
            .iter()
            .find_map(|a| match a {
                Action::Send {
                    assoc: 50,
                    protocol: Protocol::Asap,
                    name,
                    bytes,
                } => {
                    assert_eq!(*name, "ASAP Handle Resolution Response");
                    Some(bytes.clone())
                }
                _ => None,
            })
            .expect("answer sent");
        let d = Message::decode(Protocol::Asap, &bytes).expect("decodes");
        let ids: Vec<u32> = hres_response(&d.message)
            .pool_elements
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids.len(), items as usize);
        let stored: Vec<PoolElementInfo> = ids
            .iter()
            .map(|id| {
                let e = h.r.handlespace().get(&"Multi".into(), *id).expect("stored");
                let el = e.element().clone();
                assert!(
                    el.asap_transport.is_some(),
                    "stored with its ASAP transport"
                );
                assert_eq!(el.home_server_id, ME);
                PoolElementInfo {
                    asap_transport: None,
                    ..el
                }
            })
            .collect();
        let expected: Message = HandleResolutionResponse {
            accept_updates: false,
            pool_handle: "Multi".into(),
            policy: Some(stored[0].policy.clone()),
            pool_elements: stored,
            error: None,
        }
        .into();
        assert_eq!(&bytes[..], &expected.to_bytes().expect("encodes")[..]);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Event(Event::Resolved { assoc: 50, returned, .. }) if *returned == ids.len()
        )));
    }
}

// ----------------------------------------------------------------------------------------
// Keep-alive, association loss, unreachable reports

#[test]
fn keep_alive_ack_keeps_and_timeout_removes() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    register_simple(&mut h, "P", 2, Policy::RoundRobin);
    assert_eq!(
        h.r.poll_timeout(),
        Some(h.now + Duration::from_millis(5000))
    );
    assert!(h.advance(4999).is_empty());
    let out = h.advance(1);
    let s = sent(&out);
    assert_eq!(s.len(), 2);
    for (assoc, m) in &s {
        match m {
            Message::Asap(AsapMessage::EndpointKeepAlive(k)) => {
                assert_eq!(k.server_id, ME);
                assert!(!k.home);
                assert_eq!(k.pe_identifier, Some(u32::try_from(*assoc).expect("small")));
            }
            other => panic!("{other:?}"),
        }
    }
    // PE 1 answers, PE 2 does not.
    let out = h.send(
        1,
        EndpointKeepAliveAck {
            pool_handle: "P".into(),
            pe_identifier: 1,
        },
    );
    assert!(out.is_empty(), "{out:?}");
    let out = h.advance(5000);
    assert!(removed(&out, "P", 2, RemovalReason::KeepAliveTimeout));
    assert!(aborted(&out, 2));
    // PE 1 got its next keep-alive at the same time and is still there.
    assert!(sent(&out).iter().any(|(a, _)| *a == 1));
    assert!(h.r.handlespace().get(&"P".into(), 1).is_some());
    assert!(h.r.handlespace().get(&"P".into(), 2).is_none());
}

#[test]
fn association_loss_removes_its_pes() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    let m = only_reply(&h.send(1, registration("Q", pe(7, "10.0.0.1", Policy::Random))));
    assert!(!reg_response(&m).reject);
    register_simple(&mut h, "P", 2, Policy::RoundRobin);
    let out = h.r.handle(h.now, Input::Disconnected { assoc: 1 });
    let mut removed: Vec<_> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Removed {
                id,
                reason: RemovalReason::AssociationLost,
                ..
            } => Some(id),
            _ => None,
        })
        .collect();
    removed.sort_unstable();
    assert_eq!(removed, vec![1, 7]);
    assert_eq!(h.r.handlespace().len(), 1);
    assert_eq!(h.r.association_count(), 1);
    assert!(h.r.handlespace().verify().is_ok());
}

#[test]
fn unreachable_counts_distinct_reporters() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    h.connect_pu();
    h.connect(51, "10.0.1.1:6001", Protocol::Asap); // same PU host, new association
    h.connect(52, "10.0.1.2:6000", Protocol::Asap);
    h.connect(53, "10.0.1.3:6000", Protocol::Asap);
    // Reports count only from associations that resolved the pool (issue 13).
    for assoc in [50, 51, 52, 53] {
        resolve(&mut h, assoc, "P", None);
    }
    for assoc in [50, 50, 51, 52] {
        let out = h.send(assoc, unreachable_of_1());
        assert!(sent(&out).is_empty(), "ENDPOINT_UNREACHABLE has no reply");
    }
    // Duplicates from one reporter count once: 2 distinct so far.
    assert!(h.r.handlespace().get(&"P".into(), 1).is_some());
    // The third reporter: verified first with a keep-alive to the PE (association 1).
    let out = h.send(53, unreachable_of_1());
    assert!(events(&out).contains(&Event::UnreachableProbe {
        handle: "P".into(),
        id: 1
    }));
    assert!(matches!(
        &sent(&out)[..],
        [(1, Message::Asap(AsapMessage::EndpointKeepAlive(k)))] if k.pe_identifier == Some(1)
    ));
    assert!(h.r.handlespace().get(&"P".into(), 1).is_some(), "not yet");
    // No ACK within the probe timeout (1 s): removed, its association aborted.
    let out = h.advance(1000);
    assert!(removed(&out, "P", 1, RemovalReason::Unreachable));
    assert!(aborted(&out, 1));
    assert!(h.r.handlespace().is_empty());
    // Its keep-alive is gone too.
    assert!(h.advance(10_000).is_empty());
}

/// Issue 13: forged reports cannot remove a PE that answers the verification keep-alive,
/// and reports from associations that never resolved the pool do not count at all.
#[test]
fn unreachable_reports_are_verified_and_need_a_resolution() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    for (assoc, at) in [
        (50, "10.0.1.1:6000"),
        (51, "10.0.1.2:6000"),
        (52, "10.0.1.3:6000"),
    ] {
        h.connect(assoc, at, Protocol::Asap);
    }
    // Never resolved: refused, not counted.
    for assoc in [50, 51, 52] {
        let out = h.send(assoc, unreachable_of_1());
        assert!(events(&out).iter().any(|e| matches!(
            e,
            Event::Refused(r) if r.what == Refusal::UnreachableReport
        )));
        assert!(!events(&out)
            .iter()
            .any(|e| matches!(e, Event::UnreachableReported { .. })));
    }
    assert!(h.r.handlespace().get(&"P".into(), 1).is_some());
    // Resolved: the three reports lead to a probe; the PE answers and stays, repeatedly.
    for assoc in [50, 51, 52] {
        resolve(&mut h, assoc, "P", None);
    }
    for round in 0..5 {
        let mut probes = 0;
        for assoc in [50, 51, 52] {
            let out = h.send(assoc, unreachable_of_1());
            probes += events(&out)
                .iter()
                .filter(|e| matches!(e, Event::UnreachableProbe { .. }))
                .count();
        }
        assert_eq!(probes, 1, "round {round}: one verification at a time");
        h.advance(300);
        let out = h.send(
            1,
            EndpointKeepAliveAck {
                pool_handle: "P".into(),
                pe_identifier: 1,
            },
        );
        assert!(events(&out).is_empty(), "{out:?}");
        let out = h.advance(1000);
        assert!(
            !events(&out)
                .iter()
                .any(|e| matches!(e, Event::Removed { .. })),
            "round {round}: {out:?}"
        );
        assert!(h.r.handlespace().get(&"P".into(), 1).is_some());
    }
    // Reports older than the window no longer count.
    h.advance(301_000);
    let out = h.send(50, unreachable_of_1());
    assert!(events(&out).iter().any(|e| matches!(e, Event::Refused(_))));
}

#[test]
fn unreachable_rate_limit() {
    let mut h = H::with_pes(config_with(|c| c.eu_rate = rate(1.0, 1.0)), "P", 1..=1);
    h.connect_pu();
    resolve(&mut h, 50, "P", None);
    let eu = EndpointUnreachable {
        pool_handle: "P".into(),
        pe_identifier: 1,
    };
    let out = h.send(50, eu.clone());
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::UnreachableReported { .. })));
    let out = h.send(50, eu);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::RateLimited {
            what: "endpoint-unreachable",
            ..
        }
    )));
}

#[test]
fn registration_life_expiry() {
    let mut h = H::new(config());
    h.connect(1, "10.0.0.1:5000", Protocol::Asap);
    let mut e = pe(1, "10.0.0.1", Policy::RoundRobin);
    e.registration_life = 3000;
    assert!(!reg_response(&only_reply(&h.send(1, registration("P", e)))).reject);
    let out = h.advance(3000);
    assert!(removed(&out, "P", 1, RemovalReason::Expired));
}

// ----------------------------------------------------------------------------------------
// Errors: unrecognised and malformed input never lose the association or registrations

fn with_extra_tlv(m: impl Into<Message>, tlv: &[u8]) -> Vec<u8> {
    let mut b = m.into().to_bytes().expect("encodes").to_vec();
    b.extend_from_slice(tlv);
    let len = u16::try_from(b.len()).expect("small");
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

#[test]
fn unrecognized_parameter_reported_and_message_processed() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    h.connect_pu();
    // 0xC0FF: action bits 11 = skip and report.
    let tlv = [0xC0, 0xFF, 0x00, 0x08, 1, 2, 3, 4];
    let out = h.raw(
        50,
        Protocol::Asap,
        with_extra_tlv(HandleResolution::new("P"), &tlv),
    );
    let s = sent(&out);
    assert_eq!(s.len(), 2, "{s:?}");
    let err = s.iter().find_map(|(_, m)| match m {
        Message::Asap(AsapMessage::Error(e)) => Some(e.error.clone()),
        _ => None,
    });
    let err = err.expect("ERROR sent");
    assert_eq!(err.causes[0].code, CauseCode::UnrecognizedParameter);
    assert_eq!(err.causes[0].info, tlv.to_vec());
    assert!(s.iter().any(|(_, m)| matches!(m, Message::Asap(AsapMessage::HandleResolutionResponse(r)) if r.pool_elements.len() == 1)));
    // 0x40FF: stop and report — no resolution, only the error.
    let tlv = [0x40, 0xFF, 0x00, 0x04];
    let out = h.raw(
        50,
        Protocol::Asap,
        with_extra_tlv(HandleResolution::new("P"), &tlv),
    );
    let m = only_reply(&out);
    match m {
        Message::Asap(AsapMessage::Error(e)) => {
            assert_eq!(e.error.causes[0].code, CauseCode::UnrecognizedParameter);
            assert_eq!(e.error.causes[0].info, tlv.to_vec());
        }
        other => panic!("{other:?}"),
    }
    // 0x00FF: stop silently.
    let out = h.raw(
        50,
        Protocol::Asap,
        with_extra_tlv(HandleResolution::new("P"), &[0, 0xFF, 0, 4]),
    );
    assert!(sent(&out).is_empty());
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::ProtocolError { replied: false, .. })));
    assert_eq!(h.r.handlespace().len(), 1);
    assert_eq!(h.r.association_count(), 2);
}

#[test]
fn unrecognized_message_reported() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    // Type 0x7F: action bits 01 = report.
    let msg = vec![0x7F, 0x00, 0x00, 0x08, 0xAA, 0xBB, 0xCC, 0xDD];
    let out = h.raw(1, Protocol::Asap, msg.clone());
    match only_reply(&out) {
        Message::Asap(AsapMessage::Error(e)) => {
            assert_eq!(e.error.causes[0].code, CauseCode::UnrecognizedMessage);
            assert_eq!(e.error.causes[0].info, msg);
        }
        other => panic!("{other:?}"),
    }
    // Type 0x3F: action bits 00 = discard silently.
    let out = h.raw(1, Protocol::Asap, vec![0x3F, 0, 0, 4]);
    assert!(sent(&out).is_empty());
    // The PE and its association are intact; keep-alives continue.
    assert_eq!(h.r.handlespace().len(), 1);
    assert_eq!(sent(&h.advance(5000)).len(), 1);
    assert!(!h
        .advance(0)
        .iter()
        .any(|a| matches!(a, Action::Abort { .. })));
}

#[test]
fn malformed_message_invalid_values() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    // A REGISTRATION whose Pool Element TLV is cut short.
    let bad = cut_short(registration("P", pe(2, "10.0.0.1", Policy::RoundRobin)), 8);
    let out = h.raw(1, Protocol::Asap, bad);
    match only_reply(&out) {
        Message::Asap(AsapMessage::Error(e)) => {
            assert_eq!(e.error.causes[0].code, CauseCode::InvalidValues);
            assert!(!e.error.causes[0].info.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // A header whose Length claims more than the message holds (a whole SCTP message):
    // answered, not dropped, and nothing registered.
    // Also garbage inside a well-framed message (a TLV longer than the message).
    for bad in [
        vec![0x01, 0, 0, 0x40, 0, 9, 0, 5],
        vec![0x03, 0, 0, 0x0D, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 5],
    ] {
        let out = h.raw(1, Protocol::Asap, bad.clone());
        match only_reply(&out) {
            Message::Asap(AsapMessage::Error(e)) => {
                assert_eq!(
                    e.error.causes[0].code,
                    CauseCode::InvalidValues,
                    "{bad:02x?}"
                )
            }
            other => panic!("{bad:02x?}: {other:?}"),
        }
    }
    // Garbage shorter than a header.
    let out = h.raw(1, Protocol::Asap, vec![1, 2]);
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::ProtocolError { .. })));
    assert_eq!(h.r.handlespace().len(), 1);
    assert!(h.r.handlespace().verify().is_ok());
}

#[test]
fn datagrams_never_answered() {
    let mut h = H::new(config());
    let out = h.r.handle(
        h.now,
        Input::Datagram {
            from: sa("10.0.0.9:3863"),
            protocol: Protocol::Asap,
            bytes: vec![0x7F, 0, 0, 4].into(),
        },
    );
    assert!(sent(&out).is_empty());
}

// ----------------------------------------------------------------------------------------
// Server announce

#[test]
fn server_announce_every_interval() {
    let mut c = config();
    c.asap_announce_targets = vec![sa("239.0.0.50:3863"), sa("10.0.0.200:3863")];
    c.asap_transports = vec![TransportParameter::Sctp {
        port: 3863,
        transport_use: TransportUse::DataOnly,
        addresses: vec![ip("10.0.0.254")],
    }];
    let mut h = H::new(c);
    let out = h.advance(0);
    let dgrams: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::SendDatagram { to, message, bytes } => {
                Some((*to, message.clone(), bytes.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(dgrams.len(), 2);
    match &dgrams[0].1 {
        Message::Asap(AsapMessage::ServerAnnounce(a)) => {
            assert_eq!(a.server_id, ME);
            assert_eq!(a.transports.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dgrams[0].2[0], 0x0A);
    // Next one within 1 s ± 12.5 %.
    let next = h.r.poll_timeout().expect("timer armed");
    let d = next - h.now;
    assert!(
        d >= Duration::from_millis(875) && d <= Duration::from_millis(1125),
        "{d:?}"
    );
}

// ----------------------------------------------------------------------------------------
// ENRP for tools

#[test]
fn presence_and_list() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    h.connect(70, "127.0.0.1:7000", Protocol::Enrp);
    let out = h.send(
        70,
        Presence {
            reply_required: true,
            sender: 77,
            receiver: 0,
            checksum: 0xFFFF,
            server_information: None,
        },
    );
    match only_reply(&out) {
        Message::Enrp(EnrpMessage::Presence(p)) => {
            assert_eq!(p.sender, ME);
            assert_eq!(p.receiver, 77);
            assert!(!p.reply_required);
            assert_eq!(
                p.checksum,
                asap::checksum::PeChecksum::from_pes([(&"P".into(), 1)]).value()
            );
        }
        other => panic!("{other:?}"),
    }
    let out = h.send(
        70,
        ListRequest {
            sender: 77,
            receiver: ME,
        },
    );
    assert!(
        matches!(only_reply(&out), Message::Enrp(EnrpMessage::ListResponse(l)) if !l.reject && l.servers.is_empty() && l.receiver == 77)
    );
}

#[test]
fn handle_table_m_bit_continuation() {
    let mut h = H::with_pes(config_with(|c| c.handle_table_chunk = 2), "A", 1..=3);
    for id in 4..=5 {
        register_simple(&mut h, "B", id, Policy::Random);
    }
    h.connect(70, "127.0.0.1:7000", Protocol::Enrp);
    let mut got = Vec::new();
    let mut flags = Vec::new();
    for _ in 0..3 {
        let out = h.send(
            70,
            HandleTableRequest {
                own_children_only: false,
                sender: 77,
                receiver: ME,
            },
        );
        match only_reply(&out) {
            Message::Enrp(EnrpMessage::HandleTableResponse(r)) => {
                flags.push(r.more);
                for p in r.pools {
                    for e in p.pool_elements {
                        // ENRP dumps carry the ASAP transport and our home ID.
                        assert!(e.asap_transport.is_some());
                        assert_eq!(e.home_server_id, ME);
                        got.push((p.pool_handle.to_string(), e.id));
                    }
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(flags, vec![true, true, false]);
    assert_eq!(
        got,
        vec![
            ("A".to_string(), 1),
            ("A".to_string(), 2),
            ("A".to_string(), 3),
            ("B".to_string(), 4),
            ("B".to_string(), 5)
        ]
    );
    // A new dump starts from the beginning; W (own children only) also lists ours.
    let out = h.send(
        70,
        HandleTableRequest {
            own_children_only: true,
            sender: 77,
            receiver: ME,
        },
    );
    match only_reply(&out) {
        Message::Enrp(EnrpMessage::HandleTableResponse(r)) => {
            assert!(r.more);
            assert_eq!(r.pools[0].pool_elements[0].id, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn peering_messages_ignored_not_fatal() {
    let mut h = H::new(config());
    h.connect(70, "10.0.2.1:7000", Protocol::Enrp);
    let out = h.send(
        70,
        asap::wire::enrp_msg::InitTakeover {
            sender: 5,
            receiver: ME,
            target: 6,
        },
    );
    assert!(sent(&out).is_empty());
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::Ignored { .. })));
}

#[test]
fn resolution_cut_to_fit_message_size() {
    let mut h = H::with_pes(config_with(|c| c.max_message_size = 300), "Big", 1..=20);
    h.connect_pu();
    let out = h.send(50, {
        let mut hr = HandleResolution::new("Big");
        hr.option = Some(HandleResolutionOption {
            items: HandleResolutionOption::ALL,
        });
        hr
    });
    let (bytes_len, n) = out
        .iter()
        .find_map(|a| match a {
            Action::Send { bytes, .. } => Some((
                bytes.len(),
                hres_response(&a.sent().expect("decodes").1)
                    .pool_elements
                    .len(),
            )),
            _ => None,
        })
        .expect("response sent");
    assert!(bytes_len <= 300, "{bytes_len}");
    assert!((1..20).contains(&n), "{n}");
}

#[test]
fn unrecognized_enrp_message_gets_enrp_error() {
    let mut h = H::new(config());
    h.connect(70, "10.0.2.1:7000", Protocol::Enrp);
    let msg = vec![0x4B, 0, 0, 4];
    let out = h.raw(70, Protocol::Enrp, msg.clone());
    match only_reply(&out) {
        Message::Enrp(EnrpMessage::Error(e)) => {
            assert_eq!(e.sender, ME);
            assert_eq!(e.error.causes[0].code, CauseCode::UnrecognizedMessage);
            assert_eq!(e.error.causes[0].info, msg);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reregistration_replicates_and_keeps_one_monitor() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    h.advance(1000);
    let out = h.send(1, registration("P", pe(1, "10.0.0.1", Policy::RoundRobin)));
    let rep: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Replicate(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0].action, UpdateAction::AddPe);
    assert_eq!(rep[0].element.home_server_id, ME);
    assert!(rep[0].element.asap_transport.is_some());
    // The keep-alive schedule restarted at the re-registration: one keep-alive 5 s later.
    assert!(h.advance(4000).is_empty());
    assert_eq!(sent(&h.advance(1000)).len(), 1);
}

#[test]
fn restarted_association_drops_its_registrations_but_stays() {
    let mut h = H::with_pes(config(), "P", 1..=1);
    let out = h.r.handle(h.now, Input::Restarted { assoc: 1 });
    assert!(removed(&out, "P", 1, RemovalReason::AssociationLost));
    assert!(h.r.handlespace().is_empty());
    assert_eq!(h.r.association_count(), 1);
    // The restarted PE registers again over the same association.
    let m = only_reply(&h.send(1, registration("P", pe(1, "10.0.0.1", Policy::RoundRobin))));
    assert!(!reg_response(&m).reject);
}

#[test]
fn keep_alive_jitter_spreads_a_burst() {
    let mut h = H::with_pes(config_with(|c| c.keep_alive_jitter = true), "P", 1..=20);
    // All 20 keep-alives fall within 5 s ± 12.5 %, and not all at the same instant.
    assert!(h.advance(4374).is_empty());
    let mut times = Vec::new();
    for ms in 0..=1250 {
        let n = sent(&h.advance(1)).len();
        if n > 0 {
            times.push((4375 + ms, n));
        }
    }
    assert_eq!(times.iter().map(|t| t.1).sum::<usize>(), 20);
    assert!(times.len() > 1, "{times:?}");
}

/// Issue 13: a HANDLE_TABLE_REQUEST (hsdump) from a host that is neither an allowed peer
/// nor in the read-only hsdump allow-list (default: loopback) is answered with the R flag
/// and no PE; the association stays usable.
#[test]
fn handle_table_request_from_a_stranger_is_refused() {
    let mut h = H::with_pes(config(), "A", 1..=1);
    // From a stranger: refused; from the registrar host itself (loopback) hsdump works.
    for (assoc, from, refused) in [(70, "10.0.2.9:40000", true), (71, "127.0.0.1:40001", false)] {
        h.connect(assoc, from, Protocol::Enrp);
        let request = HandleTableRequest {
            own_children_only: false,
            sender: 0,
            receiver: 0,
        };
        match only_reply(&h.send(assoc, request)) {
            Message::Enrp(EnrpMessage::HandleTableResponse(r)) if refused => {
                assert!(r.reject, "R flag: refused");
                assert!(r.pools.is_empty(), "no PE leaked: {:?}", r.pools);
            }
            Message::Enrp(EnrpMessage::HandleTableResponse(r)) => {
                assert!(!r.reject);
                assert_eq!(r.pools.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
