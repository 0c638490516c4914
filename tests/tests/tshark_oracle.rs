//! tshark as an independent decoder of what we encode (RFC 5352/5353/5354/5356).
//!
//! A corpus of messages — every message type, every parameter and policy, edge sizes and
//! proptest-generated values from `asap::wire::arbitrary` — is encoded, written to a pcap
//! (one SCTP DATA chunk per frame, PPID 11 for ASAP and 12 for ENRP) and dissected by
//! tshark. The test asserts that tshark sees no malformed frame and no expert warning, and
//! that the fields tshark decodes agree with ours field by field.
//!
//! Without tshark on the machine the test prints why it is skipped (the suite script
//! installs it, so CI always runs it).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

use asap::capture::PcapWriter;
use asap::wire::{arbitrary, Message, PolicyType, Protocol};

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tshark-oracle");
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Whether tshark 4.0 knows every code in the message. It does not know the Opaque
/// Transport (0x0010), policies other than RFC 5356's and rsplib's 0xB0002001/0xB0002002,
/// cause codes outside 0x1–0xA, Transport Use values other than 0/1, or undefined
/// parameter types; messages with such values go to the robustness corpus, where only
/// "not malformed" is asserted.
fn tshark_knows(m: &Message) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(map) => {
                if map.get("transport").and_then(Value::as_str) == Some("Opaque") {
                    return false;
                }
                if let Some(p) = map.get("policy").and_then(Value::as_str) {
                    let known = [
                        "RoundRobin",
                        "WeightedRoundRobin",
                        "Random",
                        "WeightedRandom",
                        "Priority",
                        "LeastUsed",
                        "LeastUsedDegradation",
                        "PriorityLeastUsed",
                        "RandomizedLeastUsed",
                        "WeightedRandomDpf",
                        "LeastUsedDpf",
                    ];
                    if !known.contains(&p) {
                        return false;
                    }
                }
                if let Some(tu) = map.get("transport_use") {
                    if !matches!(tu.as_str(), Some("DataOnly") | Some("DataPlusControl")) {
                        return false;
                    }
                }
                if let Some(code) = map.get("code").and_then(Value::as_u64) {
                    if map.contains_key("cause") && !(1..=0xA).contains(&code) {
                        return false;
                    }
                }
                map.values().all(walk)
            }
            Value::Array(a) => a.iter().all(walk),
            _ => true,
        }
    }
    walk(&serde_json::to_value(m).expect("messages serialize"))
}

/// A deterministic corpus: proptest values from a fixed seed until every message type and
/// every policy type occurs, plus fixed edge cases.
fn corpus(count: usize) -> Vec<Message> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = arbitrary::message();
    let mut out: Vec<Message> = Vec::new();
    let mut types = BTreeSet::new();
    let mut policies = BTreeSet::new();
    let want_types = 14 + 10;
    let mut tries = 0;
    while (out.len() < count || types.len() < want_types || policies.len() < PolicyType::ALL.len())
        && tries < 100_000
    {
        tries += 1;
        let m = strategy
            .new_tree(&mut runner)
            .expect("strategy yields")
            .current();
        let bytes = match m.to_bytes() {
            Ok(b) => b,
            Err(_) => continue,
        };
        // One SCTP packet per message; stay below an IPv4 datagram.
        if bytes.len() > 60_000 {
            continue;
        }
        types.insert((m.protocol(), m.type_code()));
        collect_policies(&serde_json::to_value(&m).unwrap(), &mut policies);
        out.push(m);
    }
    assert_eq!(types.len(), want_types, "corpus covers every message type");
    assert_eq!(
        policies.len(),
        PolicyType::ALL.len(),
        "corpus covers every policy: {policies:?}"
    );
    out
}

fn collect_policies(v: &Value, into: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(p) = map.get("policy").and_then(Value::as_str) {
                if p != "Unknown" {
                    into.insert(p.to_string());
                }
            }
            map.values().for_each(|v| collect_policies(v, into));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_policies(v, into)),
        _ => {}
    }
}

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
fn tshark_problems(path: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Fields compared between tshark and us, per frame.
const FIELDS: &[&str] = &[
    "asap.message_type",
    "asap.message_length",
    "asap.pool_element_pe_identifier",
    "asap.pe_identifier",
    "asap.pool_member_selection_policy_type",
    "asap.ipv4_address",
    "asap.ipv6_address",
    "asap.cause_code",
    "enrp.message_type",
    "enrp.message_length",
    "enrp.sender_servers_id",
    "enrp.receiver_servers_id",
    "enrp.pool_element_pe_identifier",
    "enrp.pool_member_selection_policy_type",
    "enrp.ipv4_address",
    "enrp.ipv6_address",
    "enrp.cause_code",
];

fn tshark_fields(path: &Path) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Parses tshark's aggregated values ("0x1,0x2" or "1,2") into numbers.
fn numbers(s: &str) -> Vec<u64> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let x = x.trim();
            match x.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).expect("hex number"),
                None => x.parse().expect("decimal number"),
            }
        })
        .collect()
}

/// What we expect tshark to show for a message: derived from our own decoded structures.
struct Expected {
    type_code: u64,
    length: u64,
    pe_ids: Vec<u64>,
    policies: Vec<u64>,
    addresses: BTreeSet<String>,
    causes: Vec<u64>,
    sender: Option<u64>,
    receiver: Option<u64>,
}

fn expected(m: &Message) -> Expected {
    let bytes = m.to_bytes().expect("encodes");
    let json = serde_json::to_value(m).unwrap();
    let mut e = Expected {
        type_code: u64::from(m.type_code()),
        length: u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        pe_ids: Vec::new(),
        policies: Vec::new(),
        addresses: BTreeSet::new(),
        causes: Vec::new(),
        sender: json.get("sender").and_then(Value::as_u64),
        receiver: json.get("receiver").and_then(Value::as_u64),
    };
    fn walk(v: &Value, key: &str, e: &mut Expected) {
        match v {
            Value::Object(map) => {
                if let Some(p) = map.get("policy").and_then(Value::as_str) {
                    let code = PolicyType::ALL
                        .iter()
                        .find(|t| format!("{t:?}") == p)
                        .map(|t| u64::from(t.code()))
                        .or_else(|| map.get("policy_type").and_then(Value::as_u64));
                    e.policies.extend(code);
                }
                if map.contains_key("user_transport") {
                    if let Some(id) = map.get("id").and_then(Value::as_u64) {
                        e.pe_ids.push(id);
                    }
                }
                if map.contains_key("cause") {
                    e.causes.extend(map.get("code").and_then(Value::as_u64));
                }
                for (k, v) in map {
                    walk(v, k, e);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, key, e)),
            Value::String(s) if key == "addresses" || key == "address" => {
                if let Ok(ip) = s.parse::<IpAddr>() {
                    e.addresses.insert(ip.to_string());
                }
            }
            _ => {}
        }
    }
    walk(&json, "", &mut e);
    e
}

#[test]
fn tshark_dissects_our_encoding_and_agrees_field_by_field() {
    if !tshark_available() {
        eprintln!("SKIPPED: tshark is not installed (scripts/test-all.sh installs it)");
        return;
    }
    let all = corpus(400);
    let (clean, extended): (Vec<Message>, Vec<Message>) = all.into_iter().partition(tshark_knows);
    assert!(
        clean.len() >= 100,
        "clean corpus too small: {}",
        clean.len()
    );
    eprintln!(
        "corpus: {} messages tshark fully knows, {} with values it does not",
        clean.len(),
        extended.len()
    );

    let dir = out_dir();
    let clean_pcap = dir.join("clean.pcap");
    write_pcap(&clean_pcap, &clean);
    let problems = tshark_problems(&clean_pcap);
    assert!(
        problems.is_empty(),
        "tshark flags frames of the clean corpus (frame, expert message):\n{}",
        problems.join("\n")
    );

    let rows = tshark_fields(&clean_pcap);
    assert_eq!(rows.len(), clean.len(), "one tshark row per message");
    let col = |name: &str| FIELDS.iter().position(|f| *f == name).unwrap();
    let mut mismatches = Vec::new();
    for (i, (m, row)) in clean.iter().zip(&rows).enumerate() {
        let p = match m.protocol() {
            Protocol::Asap => "asap",
            Protocol::Enrp => "enrp",
        };
        let get = |f: &str| {
            row.get(col(&format!("{p}.{f}")))
                .map(String::as_str)
                .unwrap_or("")
        };
        let e = expected(m);
        let mut check = |what: &str, ours: String, theirs: String| {
            if ours != theirs {
                mismatches.push(format!(
                    "frame {} {}: {what}: ours {ours} tshark {theirs}",
                    i + 1,
                    m.name()
                ));
            }
        };
        check(
            "type",
            format!("{:?}", vec![e.type_code]),
            format!("{:?}", numbers(get("message_type"))),
        );
        check(
            "length",
            format!("{:?}", vec![e.length]),
            format!("{:?}", numbers(get("message_length"))),
        );
        check(
            "PE ids",
            format!("{:?}", e.pe_ids),
            format!("{:?}", numbers(get("pool_element_pe_identifier"))),
        );
        check(
            "policies",
            format!("{:?}", e.policies),
            format!("{:?}", numbers(get("pool_member_selection_policy_type"))),
        );
        check(
            "causes",
            format!("{:?}", e.causes),
            format!("{:?}", numbers(get("cause_code"))),
        );
        let theirs: BTreeSet<String> = get("ipv4_address")
            .split(',')
            .chain(get("ipv6_address").split(','))
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or(s.to_string())
            })
            .collect();
        check(
            "addresses",
            format!("{:?}", e.addresses),
            format!("{theirs:?}"),
        );
        if p == "enrp" {
            check(
                "sender",
                format!("{:?}", e.sender.into_iter().collect::<Vec<_>>()),
                format!("{:?}", numbers(get("sender_servers_id"))),
            );
            check(
                "receiver",
                format!("{:?}", e.receiver.into_iter().collect::<Vec<_>>()),
                format!("{:?}", numbers(get("receiver_servers_id"))),
            );
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

    // Values tshark 4.0 does not know must still never make it call a frame malformed.
    let ext_pcap = dir.join("extended.pcap");
    write_pcap(&ext_pcap, &extended);
    let malformed = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&ext_pcap)
        .args(["-Y", "_ws.malformed", "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    let malformed = String::from_utf8_lossy(&malformed.stdout)
        .trim()
        .to_string();
    assert!(
        malformed.is_empty(),
        "tshark calls frames of the extended corpus malformed: {malformed}"
    );
}
