//! `rsp hsdump`, `rsp resolve` and `rsp decode` run as an operator runs them, against the
//! real registrar driver on loopback over TCP with PEs registered by raw ASAP messages;
//! the JSON output is decoded and its fields checked.

use asap::transport::{Association, Transport, TransportConfig, TransportKind};
use asap::wire::{Policy, PoolElementInfo, TransportUse};
use enrp_server::core::CoreConfig;
use rserpool_tests::cmd::stdout_of;
use rserpool_tests::registrar::{self, Running};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rsp");
const ID: u32 = 0x7E57_0016;

/// A registrar (the real driver, TCP on loopback) with core `ID` tuned by `tune`.
async fn start(tune: impl FnOnce(&mut CoreConfig)) -> Running {
    registrar::local(ID, tune).await
}

/// Registers `pe` in `pool` over `a` and checks the registrar accepted it.
async fn register(a: &mut Association, pool: &str, pe: PoolElementInfo) {
    let id = pe.id;
    let r = registrar::register(a, pool, pe).await;
    assert!(!r.reject, "PE {id:#x} rejected: {r:?}");
}

/// PE `id` with policy `policy` and user transport TCP 127.0.0.1:`port` (life 600 s).
fn pe(id: u32, port: u16, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        user_transport: registrar::loopback_tcp(port, TransportUse::DataOnly),
        policy,
        ..registrar::tcp_pe(id, [127, 0, 0, 1].into())
    }
}

/// A registrar with PEs 0x11, 0x12 (EchoPool, Round Robin) and 0x21 (LoadPool, Least
/// Used at half load); the returned association keeps the PEs registered.
async fn populated() -> (Running, Association) {
    populated_with(|_| {}).await
}

async fn populated_with(tune: impl FnOnce(&mut CoreConfig)) -> (Running, Association) {
    let r = start(tune).await;
    let mut a = Transport::new(TransportConfig::asap(TransportKind::Tcp))
        .connect(&[r.asap], &[])
        .await
        .expect("connect");
    register(&mut a, "EchoPool", pe(0x11, 7011, Policy::RoundRobin)).await;
    register(&mut a, "EchoPool", pe(0x12, 7012, Policy::RoundRobin)).await;
    register(
        &mut a,
        "LoadPool",
        pe(0x21, 7021, Policy::LeastUsed { load: u32::MAX / 2 }),
    )
    .await;
    (r, a)
}

/// Runs `rsp ARGS` off the runtime; (exit code, stdout, stderr).
async fn rsp(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .expect("rsp runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `rsp hsdump` of `r`'s ENRP address over TCP, then `extra`.
async fn hsdump(r: &Running, extra: &[&str]) -> (i32, String, String) {
    let enrp = r.enrp.to_string();
    let head = ["hsdump", &enrp, "--transport", "tcp"];
    rsp(args(&[&head[..], extra].concat())).await
}

/// `rsp resolve pool` at `r`'s ASAP address over TCP, then `extra`.
async fn resolve(r: &Running, pool: &str, extra: &[&str]) -> (i32, String, String) {
    let asap = r.asap.to_string();
    let head = ["resolve", pool, "--registrar", &asap, "--transport", "tcp"];
    rsp(args(&[&head[..], extra].concat())).await
}

fn by_id(pes: &Value, id: u32) -> &Value {
    pes.as_array()
        .expect("pool_elements array")
        .iter()
        .find(|p| p["pe_id"] == id)
        .unwrap_or_else(|| panic!("PE {id:#x} missing in {pes}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsdump_json_lists_every_pe_with_owner_transport_policy_and_load() {
    let (r, _pe_assoc) = populated().await;
    let enrp = r.enrp.to_string();
    let (code, out, err) = hsdump(&r, &["--json"]).await;
    assert_eq!(code, 0, "stderr: {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert_eq!(v["server_id"], ID);
    assert_eq!(v["registrar"], enrp);
    let pes = &v["pool_elements"];
    assert_eq!(pes.as_array().expect("array").len(), 3, "{v}");
    for (id, pool, port) in [(0x11, "EchoPool", 7011), (0x12, "EchoPool", 7012)] {
        let p = by_id(pes, id);
        assert_eq!(p["pool"], pool);
        assert_eq!(p["home_server_id"], ID, "owner is the registrar");
        assert_eq!(p["user_transport"]["protocol"], "tcp");
        assert_eq!(p["user_transport"]["port"], port);
        assert_eq!(p["user_transport"]["addresses"][0], "127.0.0.1");
        assert_eq!(p["policy"], "Round Robin");
        assert_eq!(p["load"], Value::Null);
    }
    let lu = by_id(pes, 0x21);
    assert_eq!(lu["pool"], "LoadPool");
    assert_eq!(lu["policy"], "Least Used");
    assert_eq!(lu["load"], u32::MAX / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsdump_follows_the_m_bit_until_the_last_chunk() {
    // One PE per HANDLE_TABLE_RESPONSE: three PEs need several requests (M bit set).
    let (r, _pe_assoc) = populated_with(|c| c.handle_table_chunk = 1).await;
    let (code, out, err) = hsdump(&r, &["--json"]).await;
    assert_eq!(code, 0, "stderr: {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert!(v["rounds"].as_u64().expect("rounds") >= 3, "{v}");
    let mut ids: Vec<u64> = v["pool_elements"]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["pe_id"].as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0x11, 0x12, 0x21]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsdump_watch_prints_one_dump_per_period() {
    let (r, _pe_assoc) = populated().await;
    let enrp = r.enrp.to_string();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut child = std::process::Command::new(BIN)
            .args([
                "hsdump",
                &enrp,
                "--transport",
                "tcp",
                "--json",
                "--watch",
                "0.2",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("rsp runs");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut l = String::new();
            out.read_line(&mut l).expect("line");
            lines.push(l);
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    })
    .await
    .expect("join");
    for l in lines {
        let v: Value = serde_json::from_str(l.trim()).expect("one JSON document per dump");
        assert_eq!(v["pool_elements"].as_array().expect("array").len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsdump_table_has_a_row_per_pe() {
    let (r, _pe_assoc) = populated().await;
    let (code, out, err) = hsdump(&r, &[]).await;
    assert_eq!(code, 0, "stderr: {err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("Pool  0x")).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows
        .iter()
        .any(|l| l.starts_with("LoadPool") && l.contains("50.0%")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsdump_refused_by_the_allow_list_is_an_error_naming_the_fix() {
    // Only 192.0.2.0/24 may dump: loopback is refused.
    let r = start(|c| {
        c.security.hsdump_allow = vec!["192.0.2.0/24".parse().expect("net")];
    })
    .await;
    let (code, out, err) = hsdump(&r, &["--json", "--timeout", "3"]).await;
    assert_eq!(code, 1, "stdout: {out}");
    assert!(out.is_empty(), "no table on a refusal: {out}");
    assert!(
        err.starts_with("rsp: ") && err.contains("--hsdump-allow"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_json_prints_the_selected_pes() {
    let (r, _pe_assoc) = populated().await;
    let (code, out, err) = resolve(&r, "EchoPool", &["--json"]).await;
    assert_eq!(code, 0, "stderr: {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert_eq!(v["pool"], "EchoPool");
    let pes = v["pool_elements"].as_array().expect("array");
    assert!(!pes.is_empty(), "{v}");
    for p in pes {
        let id = p["pe_id"].as_u64().expect("id");
        assert!(id == 0x11 || id == 0x12, "only EchoPool PEs: {v}");
        assert_eq!(p["pool"], "EchoPool");
        assert_eq!(p["user_transport"]["protocol"], "tcp");
        assert_eq!(p["user_transport"]["port"], 7010 + (id - 0x10));
        assert_eq!(p["policy"], "Round Robin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_of_an_unknown_pool_fails_with_the_pool_named() {
    let (r, _pe_assoc) = populated().await;
    let (code, out, err) = resolve(&r, "NoSuchPool", &["--timeout", "5"]).await;
    assert_eq!(code, 1, "stdout: {out}");
    assert!(err.contains("NoSuchPool"), "{err}");
}

#[test]
fn decode_is_rsp_decode() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../pcap-fixtures/rsplib/scenario-a.pcap"
    );
    let out = stdout_of(
        std::process::Command::new(BIN).args(["decode", "--summary", fixture]),
        "rsp decode",
    );
    let v: Value = serde_json::from_str(&out).expect("summary JSON");
    assert!(v["messages"].as_u64().expect("count") > 0, "{v}");
    assert_eq!(v["messages"], v["decoded"]);
    assert!(v["by_type"]
        .as_array()
        .expect("by_type")
        .iter()
        .any(|t| t["protocol"] == "enrp"));
}

#[test]
fn help_shows_the_defaults() {
    for sub in ["hsdump", "resolve", "decode"] {
        let out = std::process::Command::new(BIN)
            .args([sub, "--help"])
            .output()
            .expect("rsp runs");
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage: rsp"), "{sub}: {help}");
        if sub != "decode" {
            assert!(
                help.contains("[default: auto]"),
                "{sub} shows the transport default"
            );
            assert!(
                help.contains("[default: 5]"),
                "{sub} shows the timeout default"
            );
        }
    }
}
