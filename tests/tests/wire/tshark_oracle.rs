//! tshark as an independent decoder of what we encode (RFC 5352/5353/5354/5356).
//!
//! A corpus of messages — proptest values from `rserpool_wire::arbitrary` plus fixed edge
//! cases (long handles, 128 PEs, a message near 64 KiB, every policy, every cause) — is
//! encoded, written to a pcap (one SCTP DATA chunk per frame, PPID 11 for ASAP and 12 for
//! ENRP) and dissected by tshark. The test asserts that tshark sees no malformed frame and
//! no expert warning, and that every field tshark decodes (see [`FIELDS`]) carries, in
//! wire order, the values our decoded structures say it should.
//!
//! Without tshark the test prints SKIP and passes, unless `RSERPOOL_REQUIRE_TSHARK=1`
//! (set by scripts/test-all.sh when tshark is installed), which makes it fail.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use rserpool_tests::cmd::stdout_of;
use rserpool_wire::asap_msg::{self, AsapMessage};
use rserpool_wire::enrp_msg::{self, EnrpMessage};
use rserpool_wire::{
    arbitrary, AsapType, CauseCode, EnrpType, ErrorCause, HandleResolutionOption, Message,
    OperationError, ParamType, Parameter, Policy, PolicyType, PoolElementInfo, PoolEntry,
    PoolHandle, Protocol, ServerInformation, TransportParameter, TransportUse, UpdateAction,
};
use rsp_capture::PcapWriter;

/// True when tshark runs; otherwise SKIP, or panic under `RSERPOOL_REQUIRE_TSHARK=1`.
fn tshark_or_skip() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("RSERPOOL_REQUIRE_TSHARK").as_deref() != Ok("1"),
            "RSERPOOL_REQUIRE_TSHARK=1 but tshark is not installed or does not run"
        );
        eprintln!("SKIP: tshark is not installed (scripts/test-all.sh installs it)");
    }
    ok
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tshark-oracle");
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

// ---------------------------------------------------------------------------------------
// Corpus

fn pe(id: u32, user_transport: TransportParameter, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0x0102_0304,
        registration_life: -1,
        user_transport,
        policy,
        asap_transport: None,
    }
}

fn sctp(port: u16, addresses: Vec<IpAddr>) -> TransportParameter {
    TransportParameter::Sctp {
        port,
        transport_use: TransportUse::DataPlusControl,
        addresses,
    }
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
}

fn v6(i: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, i, 1))
}

/// One policy of every known type, with distinct values in every field.
fn every_policy() -> Vec<Policy> {
    let (a, b, c, d) = (0x8000_0000, 0x4000_0001, 0xFFFF_FFFF, 17);
    vec![
        Policy::RoundRobin,
        Policy::WeightedRoundRobin { weight: a },
        Policy::Random,
        Policy::WeightedRandom { weight: b },
        Policy::Priority { priority: d },
        Policy::LeastUsed { load: c },
        Policy::LeastUsedDegradation {
            load: a,
            degradation: b,
        },
        Policy::PriorityLeastUsed {
            load: b,
            degradation: c,
        },
        Policy::RandomizedLeastUsed { load: 0 },
        Policy::RandomizedPriorityLeastUsed {
            load: a,
            degradation: d,
        },
        Policy::RandomizedLeastUsedDegradation {
            load: b,
            degradation: a,
        },
        Policy::PriorityLeastUsedDegradation {
            load: c,
            degradation: b,
        },
        Policy::RandomizedPriorityLeastUsedDegradation {
            load: d,
            degradation: a,
        },
        Policy::WeightedRandomDpf {
            weight: a,
            weight_dpf: b,
            distance: d,
        },
        Policy::LeastUsedDpf {
            load: b,
            load_dpf: c,
            distance: 250,
        },
        Policy::LeastUsedDegradationDpf {
            load: a,
            degradation: b,
            load_dpf: c,
            distance: d,
        },
        Policy::Unknown {
            policy_type: 0x7000_0001,
            data: vec![1, 2, 3, 4, 5],
        },
    ]
}

/// Fixed edge cases that random generation reaches rarely or never.
fn edge_cases() -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let ph32 = PoolHandle(vec![b'h'; 32]);
    let ph300 = PoolHandle((0..300u32).map(|i| (i % 251) as u8).collect());
    let multi = sctp(9000, vec![v6(1), v6(2), v4(3), v6(4), v6(5)]);
    for ph in [&ph32, &ph300] {
        out.push(
            asap_msg::Registration {
                pool_handle: ph.clone(),
                pool_element: pe(7, multi.clone(), Policy::RoundRobin),
            }
            .into(),
        );
    }
    // Every policy, in a Business Card (policy + PEs) and in ENRP Handle Updates.
    let policies = every_policy();
    out.push(
        asap_msg::BusinessCard {
            pool_handle: "EveryPolicy".into(),
            policy: Some(Policy::RoundRobin),
            pool_elements: policies
                .iter()
                .enumerate()
                .map(|(i, p)| pe(i as u32 + 1, sctp(i as u16, vec![v4(i as u32)]), p.clone()))
                .collect(),
        }
        .into(),
    );
    for (i, p) in policies.iter().enumerate() {
        let mut e = pe(0x100 + i as u32, multi.clone(), p.clone());
        e.registration_life = 90_000;
        e.asap_transport = Some(sctp(3863, vec![v4(1), v6(1)]));
        out.push(
            enrp_msg::HandleUpdate {
                takeover_suggested: i % 2 == 0,
                sender: 1,
                receiver: 2,
                action: if i % 2 == 0 {
                    UpdateAction::AddPe
                } else {
                    UpdateAction::DelPe
                },
                reserved: 0,
                pool_handle: "EveryPolicy".into(),
                pool_element: e,
            }
            .into(),
        );
    }
    // A 128-PE Handle Resolution Response with a 32-byte handle.
    out.push(
        asap_msg::HandleResolutionResponse {
            accept_updates: true,
            pool_handle: ph32.clone(),
            policy: Some(Policy::LeastUsed { load: 0x1234_5678 }),
            pool_elements: (0..128u32)
                .map(|i| {
                    pe(
                        0xA000_0000 + i,
                        sctp(10_000 + i as u16, vec![v4(i), v6(i as u16)]),
                        Policy::LeastUsed { load: i << 24 },
                    )
                })
                .collect(),
            error: None,
        }
        .into(),
    );
    // Close to 64 KiB: a Handle Table Response whose PEs fill the 16-bit Length.
    let big_pe = pe(
        1,
        sctp(1, (0..20u16).map(v6).collect()),
        Policy::PriorityLeastUsedDegradation {
            load: 1,
            degradation: 2,
        },
    );
    let mut pools = vec![PoolEntry {
        pool_handle: ph300.clone(),
        pool_elements: Vec::new(),
    }];
    loop {
        let mut next = pools.clone();
        let mut e = big_pe.clone();
        e.id = next[0].pool_elements.len() as u32 + 1;
        next[0].pool_elements.push(e);
        let m: Message = enrp_msg::HandleTableResponse {
            reject: false,
            more: true,
            sender: 0xFFFF_FFFF,
            receiver: 0,
            pools: next.clone(),
        }
        .into();
        // Stay below what fits a 16-bit Length and one IPv4 datagram.
        if m.to_bytes().map(|b| b.len() > 65_000).unwrap_or(true) {
            break;
        }
        pools = next;
    }
    out.push(
        enrp_msg::HandleTableResponse {
            reject: false,
            more: true,
            sender: 0xFFFF_FFFF,
            receiver: 0,
            pools,
        }
        .into(),
    );
    // Empty and one-byte cookies.
    out.push(asap_msg::Cookie { cookie: Vec::new() }.into());
    out.push(asap_msg::CookieEcho { cookie: Vec::new() }.into());
    out.push(asap_msg::Cookie { cookie: vec![0xC0] }.into());
    // Handle Resolution with every kind of option value, and with none.
    for items in [None, Some(0), Some(1), Some(HandleResolutionOption::ALL)] {
        out.push(
            asap_msg::HandleResolution {
                subscribe: items.is_some(),
                pool_handle: "EchoPool".into(),
                option: items.map(|items| HandleResolutionOption { items }),
            }
            .into(),
        );
    }
    // Every error cause 0x0–0xA, with the information each carries.
    let reg: Message = asap_msg::Registration {
        pool_handle: "EchoPool".into(),
        pool_element: pe(9, sctp(7, vec![v4(9)]), Policy::Random),
    }
    .into();
    let presence: Message = enrp_msg::Presence {
        reply_required: true,
        sender: 5,
        receiver: 6,
        checksum: 0xBEEF,
        server_information: None,
    }
    .into();
    let unknown_tlv = [0x3F, 0x01, 0x00, 0x06, 0xAB, 0xCD, 0x00, 0x00];
    let causes = |message: &Message| -> OperationError {
        OperationError {
            causes: vec![
                ErrorCause::plain(CauseCode::UnspecifiedError),
                ErrorCause::unrecognized_parameter(&unknown_tlv),
                ErrorCause::unrecognized_message(&message.to_bytes().unwrap()),
                ErrorCause::invalid_values(&Parameter::PoolHandle(ph32.clone()).to_vec().unwrap()),
                ErrorCause::plain(CauseCode::NonUniquePeIdentifier),
                ErrorCause::inconsistent_policy(&Policy::WeightedRandom { weight: 3 }),
                ErrorCause::plain(CauseCode::LackOfResources),
                ErrorCause::inconsistent_transport(&multi),
                ErrorCause::plain(CauseCode::InconsistentDataControl),
                ErrorCause::plain(CauseCode::UnknownPoolHandle),
                ErrorCause::plain(CauseCode::RejectedSecurity),
                ErrorCause::new(CauseCode::RsplibInvalidId, vec![1, 2, 3]),
            ],
        }
    };
    out.push(
        asap_msg::Error {
            error: causes(&reg),
        }
        .into(),
    );
    out.push(
        enrp_msg::Error {
            sender: 1,
            receiver: 2,
            error: causes(&presence),
        }
        .into(),
    );
    // Parameters that a message of the other protocol carries, as Invalid Values.
    let invalid = |ps: &[Parameter]| OperationError {
        causes: ps
            .iter()
            .map(|p| ErrorCause::invalid_values(&p.to_vec().unwrap()))
            .collect(),
    };
    out.push(
        asap_msg::Error {
            error: invalid(&[Parameter::PeChecksum(0x1234)]),
        }
        .into(),
    );
    out.push(
        enrp_msg::Error {
            sender: 1,
            receiver: 2,
            error: invalid(&[
                Parameter::Cookie(vec![1, 2, 3, 4, 5]),
                Parameter::PeIdentifier(0xDEAD_BEEF),
            ]),
        }
        .into(),
    );
    out.push(
        asap_msg::RegistrationResponse {
            reject: true,
            pool_handle: "EchoPool".into(),
            pe_identifier: 9,
            error: Some(OperationError::single(ErrorCause::plain(
                CauseCode::RejectedSecurity,
            ))),
        }
        .into(),
    );
    // Every transport kind, as an ENRP server's transport and as a PE's user transport.
    let transports = vec![
        multi.clone(),
        TransportParameter::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            address: v6(7),
        },
        TransportParameter::Udp {
            port: 53,
            reserved: 0,
            address: v4(7),
        },
        TransportParameter::UdpLite {
            port: 54,
            reserved: 0,
            address: v6(8),
        },
        TransportParameter::Dccp {
            port: 55,
            reserved: 0,
            service_code: 0x1234_5678,
            address: v4(8),
        },
        TransportParameter::Opaque {
            data: b"opaque".to_vec(),
        },
    ];
    out.push(
        enrp_msg::ListResponse {
            reject: false,
            sender: 3,
            receiver: 4,
            servers: transports
                .iter()
                .enumerate()
                .map(|(i, t)| ServerInformation {
                    server_id: 0x5000 + i as u32,
                    transport: t.clone(),
                })
                .collect(),
        }
        .into(),
    );
    out.push(
        asap_msg::ServerAnnounce {
            server_id: 0xCAFE,
            transports: transports.clone(),
        }
        .into(),
    );
    // Causes whose information is not what their code promises: robustness corpus.
    for p in [Protocol::Asap, Protocol::Enrp] {
        let error = OperationError {
            causes: vec![
                ErrorCause::new(CauseCode::UnrecognizedParameter, vec![0xFF, 0x01, 0x00]),
                ErrorCause::new(CauseCode::UnrecognizedMessage, vec![0x01, 0x00, 0x00, 0x40]),
                ErrorCause::new(CauseCode::InvalidValues, Vec::new()),
            ],
        };
        out.push(match p {
            Protocol::Asap => asap_msg::Error { error }.into(),
            Protocol::Enrp => enrp_msg::Error {
                sender: 1,
                receiver: 2,
                error,
            }
            .into(),
        });
    }
    out.push(presence);
    out.push(reg);
    out
}

/// A deterministic corpus: proptest values from a fixed seed (at least `count`, and
/// until every message type occurs), then the fixed edge cases.
fn corpus(count: usize) -> Vec<Message> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = arbitrary::message();
    let mut out: Vec<Message> = Vec::new();
    let mut tries = 0;
    while (out.len() < count
        || message_types(&out).len() < AsapType::ALL.len() + EnrpType::ALL.len())
        && tries < 100_000
    {
        tries += 1;
        let m = strategy
            .new_tree(&mut runner)
            .expect("strategy yields")
            .current();
        match m.to_bytes() {
            // One SCTP packet per message; stay below an IPv4 datagram.
            Ok(b) if b.len() <= 65_000 => out.push(m),
            _ => {}
        }
    }
    out.extend(edge_cases());
    out
}

fn message_types(ms: &[Message]) -> BTreeSet<(Protocol, u8)> {
    ms.iter().map(|m| (m.protocol(), m.type_code())).collect()
}

// ---------------------------------------------------------------------------------------
// What tshark should show, derived from our decoded structures

/// How a tshark field's text is read.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Unsigned or signed integer, decimal or `0x` hex; booleans as 0/1.
    Int,
    /// A double (policy load values), compared with a relative tolerance.
    Float,
    /// Bytes as lowercase hex.
    Bytes,
    /// An IPv4 or IPv6 address.
    Ip,
}

/// Every ASAP and ENRP field tshark 4.0 decodes, without the `asap.` / `enrp.` prefix;
/// the third column names the one dissector that has the field (`None`: both).
/// `*_padding` fields are left out (padding bytes are zero by construction).
const FIELDS: &[(&str, Kind, Option<Protocol>)] = &[
    ("message_type", Kind::Int, None),
    ("message_flags", Kind::Int, None),
    ("message_length", Kind::Int, None),
    ("message_value", Kind::Bytes, Some(Protocol::Enrp)),
    ("r_bit", Kind::Int, None),
    ("h_bit", Kind::Int, Some(Protocol::Asap)),
    ("w_bit", Kind::Int, Some(Protocol::Enrp)),
    ("m_bit", Kind::Int, Some(Protocol::Enrp)),
    ("t_bit", Kind::Int, Some(Protocol::Enrp)),
    ("server_identifier", Kind::Int, Some(Protocol::Asap)),
    ("sender_servers_id", Kind::Int, Some(Protocol::Enrp)),
    ("receiver_servers_id", Kind::Int, Some(Protocol::Enrp)),
    ("target_servers_id", Kind::Int, Some(Protocol::Enrp)),
    ("update_action", Kind::Int, Some(Protocol::Enrp)),
    ("reserved", Kind::Int, Some(Protocol::Enrp)),
    (
        "server_information_server_identifier",
        Kind::Int,
        Some(Protocol::Enrp),
    ),
    ("cause_code", Kind::Int, None),
    ("cause_length", Kind::Int, None),
    ("cause_info", Kind::Bytes, None),
    ("parameter_type", Kind::Int, None),
    ("parameter_length", Kind::Int, None),
    ("parameter_value", Kind::Bytes, None),
    ("ipv4_address", Kind::Ip, None),
    ("ipv6_address", Kind::Ip, None),
    ("dccp_transport_port", Kind::Int, None),
    ("dccp_transport_reserved", Kind::Int, None),
    ("dccp_transport_service_code", Kind::Int, None),
    ("sctp_transport_port", Kind::Int, None),
    ("transport_use", Kind::Int, None),
    ("tcp_transport_port", Kind::Int, None),
    ("udp_transport_port", Kind::Int, None),
    ("udp_transport_reserved", Kind::Int, None),
    ("udp_lite_transport_port", Kind::Int, None),
    ("udp_lite_transport_reserved", Kind::Int, None),
    ("pool_member_selection_policy_type", Kind::Int, None),
    ("pool_member_selection_policy_weight", Kind::Int, None),
    ("pool_member_selection_policy_priority", Kind::Int, None),
    ("pool_member_selection_policy_load", Kind::Float, None),
    (
        "pool_member_selection_policy_degradation",
        Kind::Float,
        None,
    ),
    ("pool_member_selection_policy_load_dpf", Kind::Float, None),
    ("pool_member_selection_policy_weight_dpf", Kind::Float, None),
    ("pool_member_selection_policy_distance", Kind::Int, None),
    ("pool_member_selection_policy_value", Kind::Bytes, None),
    ("pool_handle_pool_handle", Kind::Bytes, None),
    ("pool_element_pe_identifier", Kind::Int, None),
    ("pool_element_home_enrp_server_identifier", Kind::Int, None),
    ("pool_element_registration_life", Kind::Int, None),
    ("cookie", Kind::Bytes, None),
    ("pe_identifier", Kind::Int, None),
    ("pe_checksum", Kind::Int, None),
    ("hropt_items", Kind::Int, Some(Protocol::Asap)),
];

fn field_exists(f: &(&str, Kind, Option<Protocol>), p: Protocol) -> bool {
    f.2.is_none_or(|only| only == p)
}

fn prefix(p: Protocol) -> &'static str {
    match p {
        Protocol::Asap => "asap",
        Protocol::Enrp => "enrp",
    }
}

#[derive(Debug, Clone)]
enum Val {
    I(i128),
    F(f64),
    B(String),
    Ip(IpAddr),
}

impl PartialEq for Val {
    fn eq(&self, o: &Val) -> bool {
        match (self, o) {
            (Val::I(a), Val::I(b)) => a == b,
            // tshark prints doubles with 15-17 significant digits.
            (Val::F(a), Val::F(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (Val::B(a), Val::B(b)) => a == b,
            (Val::Ip(a), Val::Ip(b)) => a == b,
            _ => false,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pad(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Length of a sequence of TLVs as counted by an enclosing Length (a message, Pool
/// Element, transport, Server Information, Operation Error): every child padded. RFC
/// 5354 §2 words it with the last child's padding left out; our encoder's default is
/// what rsplib emits, padding included (rserpool_wire::layout, `PaddingExcluded`), and
/// tshark reads the Length we wrote, so this is what both sides must agree on.
fn children(lens: &[usize]) -> usize {
    lens.iter().map(|l| pad(*l)).sum()
}

fn addr_len(a: &IpAddr) -> usize {
    if a.is_ipv4() {
        8
    } else {
        20
    }
}

fn transport_len(t: &TransportParameter) -> usize {
    match t {
        TransportParameter::Sctp { addresses, .. } => {
            8 + children(&addresses.iter().map(addr_len).collect::<Vec<_>>())
        }
        TransportParameter::Tcp { address, .. }
        | TransportParameter::Udp { address, .. }
        | TransportParameter::UdpLite { address, .. } => 8 + addr_len(address),
        TransportParameter::Dccp { address, .. } => 12 + addr_len(address),
        TransportParameter::Opaque { data } => 4 + data.len(),
        // A type the codec learnt later: the oracle must be taught its fields.
        other => panic!("tshark oracle: no expected length for {other:?}; add it"),
    }
}

/// The policy's value words after the type, in wire order (RFC 5356 §7, rsplib).
fn policy_words(p: &Policy) -> Vec<u32> {
    use Policy::*;
    match *p {
        RoundRobin | Random => vec![],
        WeightedRoundRobin { weight } | WeightedRandom { weight } => vec![weight],
        Priority { priority } => vec![priority],
        LeastUsed { load } | RandomizedLeastUsed { load } => vec![load],
        LeastUsedDegradation { load, degradation }
        | PriorityLeastUsed { load, degradation }
        | RandomizedPriorityLeastUsed { load, degradation }
        | RandomizedLeastUsedDegradation { load, degradation }
        | PriorityLeastUsedDegradation { load, degradation }
        | RandomizedPriorityLeastUsedDegradation { load, degradation } => vec![load, degradation],
        WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        } => vec![weight, weight_dpf, distance],
        LeastUsedDpf {
            load,
            load_dpf,
            distance,
        } => vec![load, load_dpf, distance],
        LeastUsedDegradationDpf {
            load,
            degradation,
            load_dpf,
            distance,
        } => vec![load, degradation, load_dpf, distance],
        Unknown { .. } => vec![],
    }
}

fn policy_len(p: &Policy) -> usize {
    match p {
        Policy::Unknown { data, .. } => 8 + data.len(),
        p => 8 + 4 * policy_words(p).len(),
    }
}

fn pe_len(pe: &PoolElementInfo) -> usize {
    let mut kids = vec![transport_len(&pe.user_transport), policy_len(&pe.policy)];
    kids.extend(pe.asap_transport.as_ref().map(transport_len));
    16 + children(&kids)
}

fn si_len(si: &ServerInformation) -> usize {
    8 + children(&[transport_len(&si.transport)])
}

fn op_error_len(oe: &OperationError) -> usize {
    4 + children(
        &oe.causes
            .iter()
            .map(|c| 4 + c.info.len())
            .collect::<Vec<_>>(),
    )
}

/// The expected tshark values of one frame: field name (without prefix) → values in
/// the order tshark meets them.
struct Expect {
    p: Protocol,
    f: BTreeMap<&'static str, Vec<Val>>,
    /// Parameter types seen (for the corpus coverage assertion).
    params: BTreeSet<u16>,
}

impl Expect {
    fn int(&mut self, k: &'static str, v: impl Into<i128>) {
        self.f.entry(k).or_default().push(Val::I(v.into()));
    }
    /// A byte string (tshark prints an empty one as `<MISSING>`).
    fn bytes(&mut self, k: &'static str, b: &[u8]) {
        self.f.entry(k).or_default().push(Val::B(hex(b)));
    }
    /// A byte string tshark shows only when it is not empty (cookie, policy value,
    /// unknown parameter value, cause information).
    fn nonempty_bytes(&mut self, k: &'static str, b: &[u8]) {
        if !b.is_empty() {
            self.bytes(k, b);
        }
    }
    fn float(&mut self, k: &'static str, v: f64) {
        self.f.entry(k).or_default().push(Val::F(v));
    }
    fn bit(&mut self, k: &'static str, b: bool) {
        self.int(k, u8::from(b));
    }

    fn tlv(&mut self, t: ParamType, len: usize) {
        self.params.insert(t.code());
        self.int("parameter_type", t.code());
        self.int("parameter_length", len as u32);
    }

    fn address(&mut self, a: &IpAddr) {
        match a {
            IpAddr::V4(_) => {
                self.tlv(ParamType::Ipv4Address, 8);
                self.f.entry("ipv4_address").or_default().push(Val::Ip(*a));
            }
            IpAddr::V6(_) => {
                self.tlv(ParamType::Ipv6Address, 20);
                self.f.entry("ipv6_address").or_default().push(Val::Ip(*a));
            }
        }
    }

    /// A transport parameter with addresses: its header, the integer `fields` in order,
    /// the addresses.
    fn address_transport(
        &mut self,
        t: ParamType,
        len: usize,
        fields: &[(&'static str, i128)],
        addresses: &[IpAddr],
    ) {
        self.tlv(t, len);
        for (k, v) in fields {
            self.int(k, *v);
        }
        addresses.iter().for_each(|a| self.address(a));
    }

    fn transport(&mut self, t: &TransportParameter) {
        let len = transport_len(t);
        match t {
            TransportParameter::Sctp {
                port,
                transport_use,
                addresses,
            } => self.address_transport(
                ParamType::SctpTransport,
                len,
                &[
                    ("sctp_transport_port", (*port).into()),
                    ("transport_use", transport_use.code().into()),
                ],
                addresses,
            ),
            // tshark names the TCP transport's second word Transport Use, as rsplib does.
            TransportParameter::Tcp {
                port,
                transport_use,
                address,
            } => self.address_transport(
                ParamType::TcpTransport,
                len,
                &[
                    ("tcp_transport_port", (*port).into()),
                    ("transport_use", transport_use.code().into()),
                ],
                std::slice::from_ref(address),
            ),
            TransportParameter::Udp {
                port,
                reserved,
                address,
            } => self.address_transport(
                ParamType::UdpTransport,
                len,
                &[
                    ("udp_transport_port", (*port).into()),
                    ("udp_transport_reserved", (*reserved).into()),
                ],
                std::slice::from_ref(address),
            ),
            TransportParameter::UdpLite {
                port,
                reserved,
                address,
            } => self.address_transport(
                ParamType::UdpLiteTransport,
                len,
                &[
                    ("udp_lite_transport_port", (*port).into()),
                    ("udp_lite_transport_reserved", (*reserved).into()),
                ],
                std::slice::from_ref(address),
            ),
            // RFC 5354 §3.2: a 32-bit Service Code. tshark 4.0 declares the field
            // FT_UINT16 (asap/wire/INTEROP.md §7 item 14) but reads and shows all 32 bits.
            TransportParameter::Dccp {
                port,
                reserved,
                service_code,
                address,
            } => self.address_transport(
                ParamType::DccpTransport,
                len,
                &[
                    ("dccp_transport_port", (*port).into()),
                    ("dccp_transport_reserved", (*reserved).into()),
                    ("dccp_transport_service_code", (*service_code).into()),
                ],
                std::slice::from_ref(address),
            ),
            // tshark 4.0 does not know the Opaque Transport (0x0010): it shows it as an
            // unknown parameter with its value bytes.
            TransportParameter::Opaque { data } => {
                self.tlv(ParamType::OpaqueTransport, len);
                self.nonempty_bytes("parameter_value", data);
            }
            // A type the codec learnt later: the oracle must be taught its fields.
            other => panic!("tshark oracle: no expected fields for {other:?}; add them"),
        }
    }

    /// Policy values as tshark 4.0 shows them: weight, priority and distance as integers;
    /// load and degradation as percentages (100 · value / 0xFFFFFFFF); load DPF and weight
    /// DPF as fractions (value / 0xFFFFFFFF). Policies tshark does not decode (rsplib's
    /// 0xB000100x and LU-D-DPF, unknown codes) show their value bytes.
    fn policy(&mut self, p: &Policy) {
        self.tlv(ParamType::PoolMemberSelectionPolicy, policy_len(p));
        self.int("pool_member_selection_policy_type", p.policy_type());
        let pct = |v: u32| 100.0 * f64::from(v) / f64::from(u32::MAX);
        let frac = |v: u32| f64::from(v) / f64::from(u32::MAX);
        const W: &str = "pool_member_selection_policy_weight";
        const LOAD: &str = "pool_member_selection_policy_load";
        const DEG: &str = "pool_member_selection_policy_degradation";
        const DIST: &str = "pool_member_selection_policy_distance";
        match *p {
            Policy::RoundRobin | Policy::Random => {}
            Policy::WeightedRoundRobin { weight } | Policy::WeightedRandom { weight } => {
                self.int(W, weight)
            }
            Policy::Priority { priority } => {
                self.int("pool_member_selection_policy_priority", priority)
            }
            Policy::LeastUsed { load } | Policy::RandomizedLeastUsed { load } => {
                self.float(LOAD, pct(load))
            }
            Policy::LeastUsedDegradation { load, degradation }
            | Policy::PriorityLeastUsed { load, degradation } => {
                self.float(LOAD, pct(load));
                self.float(DEG, pct(degradation));
            }
            Policy::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => {
                self.float(LOAD, pct(load));
                self.float("pool_member_selection_policy_load_dpf", frac(load_dpf));
                self.int(DIST, distance);
            }
            Policy::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => {
                self.int(W, weight);
                self.float("pool_member_selection_policy_weight_dpf", frac(weight_dpf));
                self.int(DIST, distance);
            }
            // tshark's value runs to the end of the TLV's padding.
            Policy::Unknown { ref data, .. } => {
                let mut b = data.clone();
                b.resize(pad(b.len()), 0);
                self.nonempty_bytes("pool_member_selection_policy_value", &b)
            }
            ref other => {
                let b: Vec<u8> = policy_words(other)
                    .iter()
                    .flat_map(|w| w.to_be_bytes())
                    .collect();
                self.nonempty_bytes("pool_member_selection_policy_value", &b);
            }
        }
    }

    fn pool_handle(&mut self, ph: &PoolHandle) {
        self.tlv(ParamType::PoolHandle, 4 + ph.len());
        self.bytes("pool_handle_pool_handle", ph.as_bytes());
    }

    /// Registration Life: our field is in ms (asap/wire/INTEROP.md §7 item 1), tshark shows the
    /// same signed number with unit "ms": no conversion.
    fn pool_element(&mut self, pe: &PoolElementInfo) {
        self.tlv(ParamType::PoolElement, pe_len(pe));
        self.int("pool_element_pe_identifier", pe.id);
        self.int(
            "pool_element_home_enrp_server_identifier",
            pe.home_server_id,
        );
        self.int("pool_element_registration_life", pe.registration_life);
        self.transport(&pe.user_transport);
        self.policy(&pe.policy);
        if let Some(t) = &pe.asap_transport {
            self.transport(t);
        }
    }

    fn server_info(&mut self, si: &ServerInformation) {
        self.tlv(ParamType::ServerInformation, si_len(si));
        match self.p {
            Protocol::Asap => self.int("server_identifier", si.server_id),
            Protocol::Enrp => self.int("server_information_server_identifier", si.server_id),
        }
        self.transport(&si.transport);
    }

    fn pe_id(&mut self, id: u32) {
        self.tlv(ParamType::PeIdentifier, 8);
        self.int("pe_identifier", id);
    }

    fn cookie(&mut self, c: &[u8]) {
        self.tlv(ParamType::Cookie, 4 + c.len());
        self.nonempty_bytes("cookie", c);
    }

    fn op_error(&mut self, oe: &OperationError) {
        self.tlv(ParamType::OperationError, op_error_len(oe));
        for c in &oe.causes {
            self.cause(c);
        }
    }

    /// tshark dissects the information of causes 0x1, 0x3, 0x5 and 0x7 as a parameter and
    /// of 0x2 as a message of the same protocol; it shows none for 0x4, 0x6, 0x8–0xA, and
    /// the raw bytes for codes it does not know (0x0, rsplib's, unassigned).
    fn cause(&mut self, c: &ErrorCause) {
        self.int("cause_code", c.code.code());
        self.int("cause_length", 4 + c.info.len() as u32);
        match c.code.code() {
            1 | 3 | 5 | 7 if tlv_ok(&c.info) => self.raw_parameter(&c.info),
            2 if msg_ok(self.p, &c.info) => self.raw_message(&c.info),
            // Not comparable (see tshark_comparable).
            1..=3 | 5 | 7 => {}
            4 | 6 | 8..=0xA => {}
            _ => self.nonempty_bytes("cause_info", &c.info),
        }
    }

    /// A parameter carried as bytes: through our own decoder, or as an unknown TLV.
    fn raw_parameter(&mut self, b: &[u8]) {
        match Parameter::decode(b) {
            Ok((p, _)) => self.parameter(&p),
            Err(_) => {
                let t = u16::from_be_bytes([b[0], b[1]]);
                let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
                self.params.insert(t);
                self.int("parameter_type", t);
                self.int("parameter_length", len as u32);
                self.nonempty_bytes("parameter_value", &b[4..len]);
            }
        }
    }

    fn parameter(&mut self, p: &Parameter) {
        match p {
            Parameter::Address(a) => self.address(a),
            Parameter::Transport(t) => self.transport(t),
            Parameter::Policy(p) => self.policy(p),
            Parameter::PoolHandle(ph) => self.pool_handle(ph),
            Parameter::PoolElement(pe) => self.pool_element(pe),
            Parameter::ServerInformation(si) => self.server_info(si),
            Parameter::OperationError(oe) => self.op_error(oe),
            Parameter::Cookie(c) => self.cookie(c),
            Parameter::PeIdentifier(id) => self.pe_id(*id),
            Parameter::PeChecksum(c) => self.checksum(*c),
            Parameter::HandleResolutionOption(o) => self.hropt(o),
            // A type the codec learnt later: the oracle must be taught its fields.
            other => panic!("tshark oracle: no expected fields for {other:?}; add them"),
        }
    }

    fn checksum(&mut self, c: u16) {
        // RFC 5354 §3.15: Length 6 (2 bytes of padding follow).
        self.tlv(ParamType::PeChecksum, 6);
        self.int("pe_checksum", c);
    }

    fn hropt(&mut self, o: &HandleResolutionOption) {
        self.tlv(ParamType::HandleResolutionOption, 8);
        self.int("hropt_items", o.items);
    }

    /// A message carried as bytes (cause 0x2): decoded by us, or (a type the protocol
    /// does not define) its header.
    fn raw_message(&mut self, b: &[u8]) {
        match Message::decode(self.p, b) {
            Ok(d) => self.message(&d.message),
            Err(_) => {
                self.int("message_type", b[0]);
                self.int("message_flags", b[1]);
                self.int("message_length", u16::from_be_bytes([b[2], b[3]]));
                if self.p == Protocol::Enrp {
                    // tshark's ENRP dissector shows an unknown message's (empty) value.
                    self.bytes("message_value", &b[4..]);
                }
            }
        }
    }

    fn header(&mut self, ty: u8, flags: u8, fixed: usize, params: &[usize]) {
        self.int("message_type", ty);
        self.int("message_flags", flags);
        self.int("message_length", (4 + fixed + children(params)) as u32);
    }

    fn message(&mut self, m: &Message) {
        match m {
            Message::Asap(a) => self.asap(a),
            Message::Enrp(e) => self.enrp(e),
        }
    }

    /// Flag bits per RFC 5352 §2.2: R (0x01) in (De)Registration Response, S (0x01) in
    /// Handle Resolution, A (0x01) in Handle Resolution Response, H (0x01) in Endpoint
    /// Keep-Alive. tshark shows r_bit only for Registration Response and h_bit for
    /// Keep-Alive; the whole flags byte is compared for every message.
    fn asap(&mut self, m: &AsapMessage) {
        let ty = m.message_type().code();
        let ph = |h: &PoolHandle| 4 + h.len();
        match m {
            AsapMessage::Registration(r) => {
                self.header(ty, 0, 0, &[ph(&r.pool_handle), pe_len(&r.pool_element)]);
                self.pool_handle(&r.pool_handle);
                self.pool_element(&r.pool_element);
            }
            AsapMessage::Deregistration(r) => {
                self.header(ty, 0, 0, &[ph(&r.pool_handle), 8]);
                self.pool_handle(&r.pool_handle);
                self.pe_id(r.pe_identifier);
            }
            AsapMessage::RegistrationResponse(r) => {
                let mut kids = vec![ph(&r.pool_handle), 8];
                kids.extend(r.error.as_ref().map(op_error_len));
                self.header(ty, u8::from(r.reject), 0, &kids);
                self.bit("r_bit", r.reject);
                self.pool_handle(&r.pool_handle);
                self.pe_id(r.pe_identifier);
                if let Some(e) = &r.error {
                    self.op_error(e);
                }
            }
            AsapMessage::DeregistrationResponse(r) => {
                let mut kids = vec![ph(&r.pool_handle), 8];
                kids.extend(r.error.as_ref().map(op_error_len));
                self.header(ty, u8::from(r.reject), 0, &kids);
                self.pool_handle(&r.pool_handle);
                self.pe_id(r.pe_identifier);
                if let Some(e) = &r.error {
                    self.op_error(e);
                }
            }
            AsapMessage::HandleResolution(r) => {
                let mut kids = vec![ph(&r.pool_handle)];
                kids.extend(r.option.map(|_| 8));
                self.header(ty, u8::from(r.subscribe), 0, &kids);
                self.pool_handle(&r.pool_handle);
                if let Some(o) = &r.option {
                    self.hropt(o);
                }
            }
            AsapMessage::HandleResolutionResponse(r) => {
                let mut kids = vec![ph(&r.pool_handle)];
                kids.extend(r.policy.as_ref().map(policy_len));
                kids.extend(r.pool_elements.iter().map(pe_len));
                kids.extend(r.error.as_ref().map(op_error_len));
                self.header(ty, u8::from(r.accept_updates), 0, &kids);
                self.pool_handle(&r.pool_handle);
                if let Some(p) = &r.policy {
                    self.policy(p);
                }
                r.pool_elements.iter().for_each(|e| self.pool_element(e));
                if let Some(e) = &r.error {
                    self.op_error(e);
                }
            }
            AsapMessage::EndpointKeepAlive(r) => {
                let mut kids = vec![ph(&r.pool_handle)];
                kids.extend(r.pe_identifier.map(|_| 8));
                self.header(ty, u8::from(r.home), 4, &kids);
                self.bit("h_bit", r.home);
                self.int("server_identifier", r.server_id);
                self.pool_handle(&r.pool_handle);
                if let Some(id) = r.pe_identifier {
                    self.pe_id(id);
                }
            }
            AsapMessage::EndpointKeepAliveAck(r) => {
                self.header(ty, 0, 0, &[ph(&r.pool_handle), 8]);
                self.pool_handle(&r.pool_handle);
                self.pe_id(r.pe_identifier);
            }
            AsapMessage::EndpointUnreachable(r) => {
                self.header(ty, 0, 0, &[ph(&r.pool_handle), 8]);
                self.pool_handle(&r.pool_handle);
                self.pe_id(r.pe_identifier);
            }
            AsapMessage::ServerAnnounce(r) => {
                let kids: Vec<usize> = r.transports.iter().map(transport_len).collect();
                self.header(ty, 0, 4, &kids);
                self.int("server_identifier", r.server_id);
                r.transports.iter().for_each(|t| self.transport(t));
            }
            AsapMessage::Cookie(r) => {
                self.header(ty, 0, 0, &[4 + r.cookie.len()]);
                self.cookie(&r.cookie);
            }
            AsapMessage::CookieEcho(r) => {
                self.header(ty, 0, 0, &[4 + r.cookie.len()]);
                self.cookie(&r.cookie);
            }
            AsapMessage::BusinessCard(r) => {
                let mut kids = vec![ph(&r.pool_handle)];
                kids.extend(r.policy.as_ref().map(policy_len));
                kids.extend(r.pool_elements.iter().map(pe_len));
                self.header(ty, 0, 0, &kids);
                self.pool_handle(&r.pool_handle);
                if let Some(p) = &r.policy {
                    self.policy(p);
                }
                r.pool_elements.iter().for_each(|e| self.pool_element(e));
            }
            AsapMessage::Error(r) => {
                self.header(ty, 0, 0, &[op_error_len(&r.error)]);
                self.op_error(&r.error);
            }
            // A type the codec learnt later: the oracle must be taught its fields.
            other => panic!("tshark oracle: no expected fields for {other:?}; add them"),
        }
    }

    /// Flag bits per RFC 5353 §2: R (0x01, reply required) in Presence, W (0x01) in
    /// Handle Table Request, M (0x02) and R (0x01, reject) in Handle Table Response, T
    /// (0x01) in Handle Update, R (0x01, reject) in List Response.
    fn enrp(&mut self, m: &EnrpMessage) {
        let ty = m.message_type().code();
        let ids = |s: &mut Self, sender: u32, receiver: u32| {
            s.int("sender_servers_id", sender);
            s.int("receiver_servers_id", receiver);
        };
        match m {
            EnrpMessage::Presence(r) => {
                let mut kids = vec![6];
                kids.extend(r.server_information.as_ref().map(si_len));
                self.header(ty, u8::from(r.reply_required), 8, &kids);
                self.bit("r_bit", r.reply_required);
                ids(self, r.sender, r.receiver);
                self.checksum(r.checksum);
                if let Some(si) = &r.server_information {
                    self.server_info(si);
                }
            }
            EnrpMessage::HandleTableRequest(r) => {
                self.header(ty, u8::from(r.own_children_only), 8, &[]);
                self.bit("w_bit", r.own_children_only);
                ids(self, r.sender, r.receiver);
            }
            EnrpMessage::HandleTableResponse(r) => {
                let mut kids = Vec::new();
                for p in &r.pools {
                    kids.push(4 + p.pool_handle.len());
                    kids.extend(p.pool_elements.iter().map(pe_len));
                }
                self.header(ty, u8::from(r.reject) | u8::from(r.more) << 1, 8, &kids);
                self.bit("m_bit", r.more);
                self.bit("r_bit", r.reject);
                ids(self, r.sender, r.receiver);
                for p in &r.pools {
                    self.pool_handle(&p.pool_handle);
                    p.pool_elements.iter().for_each(|e| self.pool_element(e));
                }
            }
            EnrpMessage::HandleUpdate(r) => {
                self.header(
                    ty,
                    u8::from(r.takeover_suggested),
                    12,
                    &[4 + r.pool_handle.len(), pe_len(&r.pool_element)],
                );
                self.bit("t_bit", r.takeover_suggested);
                ids(self, r.sender, r.receiver);
                let action = match r.action {
                    UpdateAction::AddPe => 0,
                    UpdateAction::DelPe => 1,
                    UpdateAction::Other(v) => v,
                    other => other.code(),
                };
                self.int("update_action", action);
                self.int("reserved", r.reserved);
                self.pool_handle(&r.pool_handle);
                self.pool_element(&r.pool_element);
            }
            EnrpMessage::ListRequest(r) => {
                self.header(ty, 0, 8, &[]);
                ids(self, r.sender, r.receiver);
            }
            EnrpMessage::ListResponse(r) => {
                let kids: Vec<usize> = r.servers.iter().map(si_len).collect();
                self.header(ty, u8::from(r.reject), 8, &kids);
                self.bit("r_bit", r.reject);
                ids(self, r.sender, r.receiver);
                r.servers.iter().for_each(|s| self.server_info(s));
            }
            EnrpMessage::InitTakeover(enrp_msg::InitTakeover {
                sender,
                receiver,
                target,
            })
            | EnrpMessage::InitTakeoverAck(enrp_msg::InitTakeoverAck {
                sender,
                receiver,
                target,
            })
            | EnrpMessage::TakeoverServer(enrp_msg::TakeoverServer {
                sender,
                receiver,
                target,
            }) => {
                self.header(ty, 0, 12, &[]);
                ids(self, *sender, *receiver);
                self.int("target_servers_id", *target);
            }
            EnrpMessage::Error(r) => {
                self.header(ty, 0, 8, &[op_error_len(&r.error)]);
                ids(self, r.sender, r.receiver);
                self.op_error(&r.error);
            }
            // A type the codec learnt later: the oracle must be taught its fields.
            other => panic!("tshark oracle: no expected fields for {other:?}; add them"),
        }
    }
}

fn expected(m: &Message) -> Expect {
    let mut e = Expect {
        p: m.protocol(),
        f: BTreeMap::new(),
        params: BTreeSet::new(),
    };
    e.message(m);
    e
}

/// A well-formed TLV filling `b` (cause 0x1, 0x3, 0x5, 0x7 information).
fn tlv_ok(b: &[u8]) -> bool {
    if b.len() < 4 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let t = ParamType::from_code(u16::from_be_bytes([b[0], b[1]]));
    len >= 4 && pad(len) == b.len() && (!t.is_known() || Parameter::decode(b).is_ok())
}
/// A message filling `b` that we decode, or a header-only one of an undefined type
/// (cause 0x2 information).
fn msg_ok(p: Protocol, b: &[u8]) -> bool {
    if b.len() < 4 || usize::from(u16::from_be_bytes([b[2], b[3]])) != b.len() {
        return false;
    }
    let known = match p {
        Protocol::Asap => AsapType::from_code(b[0]).is_known(),
        Protocol::Enrp => EnrpType::from_code(b[0]).is_known(),
    };
    if known {
        Message::decode(p, b).is_ok()
    } else {
        b.len() == 4
    }
}

/// Whether tshark 4.0 can be held to every field of the message: every cause whose code
/// makes tshark dissect its information (0x1, 0x3, 0x5, 0x7 as a parameter, 0x2 as a
/// message) carries what that code promises. Random information under those codes (from
/// the "any code" arm of the strategy) goes to the robustness corpus, where only "not
/// malformed" is asserted.
fn tshark_comparable(m: &Message) -> bool {
    let mut ok = true;
    visit_causes(m, &mut |c| {
        ok &= match c.code.code() {
            1 | 3 | 5 | 7 => tlv_ok(&c.info),
            2 => msg_ok(m.protocol(), &c.info),
            _ => true,
        }
    });
    ok
}

fn visit_causes(m: &Message, f: &mut dyn FnMut(&ErrorCause)) {
    let oe: Option<&OperationError> = match m {
        Message::Asap(AsapMessage::RegistrationResponse(r)) => r.error.as_ref(),
        Message::Asap(AsapMessage::DeregistrationResponse(r)) => r.error.as_ref(),
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => r.error.as_ref(),
        Message::Asap(AsapMessage::Error(r)) => Some(&r.error),
        Message::Enrp(EnrpMessage::Error(r)) => Some(&r.error),
        _ => None,
    };
    oe.into_iter().flat_map(|e| &e.causes).for_each(f);
}

// ---------------------------------------------------------------------------------------
// tshark

fn write_pcap(path: &Path, messages: &[Message]) {
    let file = std::fs::File::create(path).expect("create pcap");
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap header");
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
    for (i, m) in messages.iter().enumerate() {
        let bytes = m.to_bytes().expect("encodes");
        let dst_port = m.protocol().port();
        let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), dst_port);
        w.write_sctp(
            Duration::from_millis(i as u64),
            a,
            b,
            m.protocol().ppid(),
            0,
            &bytes,
        )
        .expect("write frame");
    }
    w.finish().expect("flush");
}

/// Frame numbers tshark marks malformed or with an expert warning or error.
fn tshark_problems(path: &Path, filter: &str) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "_ws.expert.message",
    ]);
    stdout_of(&mut cmd, "tshark")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Every field of both protocols, in `FIELDS` order (ASAP columns then ENRP columns).
fn columns() -> Vec<(Protocol, usize)> {
    let mut v = Vec::new();
    for p in [Protocol::Asap, Protocol::Enrp] {
        for (i, f) in FIELDS.iter().enumerate() {
            if field_exists(f, p) {
                v.push((p, i));
            }
        }
    }
    v
}

/// Per frame: (protocol, field index) → tshark's raw text (all occurrences, `;`-joined).
fn tshark_fields(path: &Path) -> Vec<BTreeMap<(Protocol, usize), String>> {
    let cols = columns();
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
    ]);
    for (p, i) in &cols {
        cmd.args(["-e", &format!("{}.{}", prefix(*p), FIELDS[*i].0)]);
    }
    stdout_of(&mut cmd, "tshark")
        .lines()
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            assert_eq!(cells.len(), cols.len(), "one cell per field: {l}");
            cols.iter()
                .zip(cells)
                .map(|(c, s)| (*c, s.to_string()))
                .collect()
        })
        .collect()
}

/// tshark's text of one field → values. Integers come as decimal or `0x` hex, booleans
/// as 1/0 or True/False, bytes as hex (with or without `:`), doubles as decimal text.
fn parse(kind: Kind, s: &str) -> Vec<Val> {
    s.split(';')
        .filter(|x| !x.is_empty())
        .map(|x| match kind {
            Kind::Int => Val::I(match x {
                "True" => 1,
                "False" => 0,
                _ => match x.strip_prefix("0x") {
                    Some(h) => i128::from_str_radix(h, 16).expect("hex number"),
                    None => x.parse().unwrap_or_else(|_| panic!("number: {x}")),
                },
            }),
            Kind::Float => Val::F(x.parse().unwrap_or_else(|_| panic!("double: {x}"))),
            Kind::Bytes if x.eq_ignore_ascii_case("<missing>") => Val::B(String::new()),
            Kind::Bytes => Val::B(x.replace(':', "").to_lowercase()),
            Kind::Ip => Val::Ip(x.parse().unwrap_or_else(|_| panic!("address: {x}"))),
        })
        .collect()
}

fn show(v: &[Val]) -> String {
    let s = format!("{v:?}");
    if s.len() > 300 {
        format!("{}… ({} values)", &s[..300], v.len())
    } else {
        s
    }
}

#[test]
fn tshark_dissects_our_encoding_and_agrees_field_by_field() {
    if !tshark_or_skip() {
        return;
    }
    let all = corpus(400);

    // The corpus covers what it claims, so that it cannot shrink silently.
    let types = message_types(&all);
    for t in AsapType::ALL {
        assert!(
            types.contains(&(Protocol::Asap, t.code())),
            "no {t} in the corpus"
        );
    }
    for t in EnrpType::ALL {
        assert!(
            types.contains(&(Protocol::Enrp, t.code())),
            "no {t} in the corpus"
        );
    }
    let mut params = BTreeSet::new();
    let mut policies = BTreeSet::new();
    let mut causes = BTreeSet::new();
    for m in &all {
        params.extend(expected(m).params);
        visit_causes(m, &mut |c| {
            causes.insert(c.code.code());
        });
        let e = expected(m);
        for v in
            e.f.get("pool_member_selection_policy_type")
                .into_iter()
                .flatten()
        {
            if let Val::I(c) = v {
                policies.insert(*c as u32);
            }
        }
    }
    for t in ParamType::ALL {
        assert!(params.contains(&t.code()), "no parameter {t} in the corpus");
    }
    for t in PolicyType::ALL {
        assert!(
            policies.contains(&t.code()),
            "no policy {t:?} in the corpus"
        );
    }
    for c in 0..=0xA {
        assert!(causes.contains(&c), "no cause 0x{c:x} in the corpus");
    }
    let unknown_causes = causes.iter().filter(|c| **c > 0xA).count();
    assert!(
        unknown_causes >= 3,
        "too few unknown cause codes: {causes:?}"
    );
    let sizes: Vec<usize> = all.iter().map(|m| m.to_bytes().unwrap().len()).collect();
    assert!(sizes.iter().any(|s| *s > 60_000), "no message near 64 KiB");

    let (clean, extended): (Vec<Message>, Vec<Message>) =
        all.into_iter().partition(tshark_comparable);
    assert!(
        clean.len() >= 400,
        "comparable corpus too small: {}",
        clean.len()
    );

    let dir = out_dir();
    let clean_pcap = dir.join("clean.pcap");
    write_pcap(&clean_pcap, &clean);
    let problems = tshark_problems(
        &clean_pcap,
        "_ws.malformed || _ws.expert.severity >= warning",
    );
    assert!(
        problems.is_empty(),
        "tshark flags frames of the corpus (frame, expert message):\n{}",
        problems.join("\n")
    );

    let rows = tshark_fields(&clean_pcap);
    assert_eq!(rows.len(), clean.len(), "one tshark row per message");
    let mut mismatches = Vec::new();
    let mut compared = 0usize;
    let mut used = BTreeSet::new();
    for (i, (m, row)) in clean.iter().zip(&rows).enumerate() {
        let p = m.protocol();
        let e = expected(m);
        for name in e.f.keys() {
            assert!(
                FIELDS.iter().any(|f| f.0 == *name && field_exists(f, p)),
                "test bug: {name} is no {p} field"
            );
        }
        for (fi, f) in FIELDS.iter().enumerate() {
            if !field_exists(f, p) {
                continue;
            }
            let ours = e.f.get(f.0).cloned().unwrap_or_default();
            let theirs = parse(f.1, &row[&(p, fi)]);
            compared += ours.len();
            if !ours.is_empty() {
                used.insert(format!("{}.{}", prefix(p), f.0));
            }
            if ours != theirs {
                mismatches.push(format!(
                    "frame {} {}: {}.{}: ours {} tshark {}",
                    i + 1,
                    m.name(),
                    prefix(p),
                    f.0,
                    show(&ours),
                    show(&theirs)
                ));
            }
        }
        // The other protocol's dissector must not have run on this frame.
        let q = match p {
            Protocol::Asap => Protocol::Enrp,
            Protocol::Enrp => Protocol::Asap,
        };
        for (fi, f) in FIELDS.iter().enumerate() {
            if field_exists(f, q) && !row[&(q, fi)].is_empty() {
                mismatches.push(format!("frame {}: {} field {} set", i + 1, q, f.0));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} field mismatches between tshark and our codec:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every field of the table was checked against a value at least once.
    let never: Vec<String> = [Protocol::Asap, Protocol::Enrp]
        .into_iter()
        .flat_map(|p| {
            FIELDS
                .iter()
                .filter(move |f| field_exists(f, p))
                .map(move |f| format!("{}.{}", prefix(p), f.0))
        })
        .filter(|n| !used.contains(n))
        .collect();
    assert!(never.is_empty(), "fields never compared: {never:?}");
    eprintln!(
        "compared {compared} values in {} fields over {} messages ({} more in the \
         robustness corpus)",
        used.len(),
        clean.len(),
        extended.len()
    );

    // Causes whose information contradicts their code are ours to carry verbatim; tshark
    // rightly calls such frames malformed (it parses the information as the code says),
    // but must still see the message and its first cause code (where it stops) as we
    // wrote them.
    assert!(
        extended.len() >= 2,
        "robustness corpus lost its fixed cases"
    );
    let ext_pcap = dir.join("extended.pcap");
    write_pcap(&ext_pcap, &extended);
    let rows = tshark_fields(&ext_pcap);
    assert_eq!(rows.len(), extended.len(), "one tshark row per message");
    for (i, (m, row)) in extended.iter().zip(&rows).enumerate() {
        let p = m.protocol();
        let col = |name: &str| FIELDS.iter().position(|f| f.0 == name).unwrap();
        let types = parse(Kind::Int, &row[&(p, col("message_type"))]);
        assert_eq!(
            types.first(),
            Some(&Val::I(m.type_code().into())),
            "robustness frame {}",
            i + 1
        );
        let mut ours = Vec::new();
        visit_causes(m, &mut |c| ours.push(Val::I(c.code.code().into())));
        let theirs = parse(Kind::Int, &row[&(p, col("cause_code"))]);
        assert_eq!(
            theirs.first(),
            ours.first(),
            "robustness frame {}: cause codes",
            i + 1
        );
    }
}

#[test]
fn the_oracle_can_fail() {
    // A wrong expectation must show up as a mismatch: the comparison is not vacuous.
    let m: Message = asap_msg::Deregistration {
        pool_handle: "EchoPool".into(),
        pe_identifier: 0x1234_5678,
    }
    .into();
    let e = expected(&m);
    assert_eq!(
        e.f["pe_identifier"],
        vec![Val::I(0x1234_5678)],
        "expected PE id"
    );
    assert_ne!(e.f["pe_identifier"], parse(Kind::Int, "0x12345679"));
    assert_eq!(e.f["message_length"], vec![Val::I(4 + 12 + 8)]);
    assert_eq!(
        e.f["pool_handle_pool_handle"],
        parse(Kind::Bytes, "45:63:68:6f:50:6f:6f:6c")
    );
}
