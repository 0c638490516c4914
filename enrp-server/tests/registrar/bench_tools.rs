//! The benchmark tools work end to end over TCP on loopback (BENCHMARKS.md "Issue 15"):
//! `rsp-loadgen` against `rsp-fixed-responder` and against `enrp-server`, with the counts
//! of every phase checked in the JSON line it prints last, with each of its engines
//! (`--engine tokio`, `--engine blocking`); refused registrations and failed resolutions
//! are counted alike by both. Figures are not asserted.

use rserpool_tests::net::{free_port, wait_listening};
use std::process::{Child, Command, Stdio};

/// Kills the child when dropped.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs rsp-loadgen and returns the value of each `"key":N` of its last line.
fn loadgen(port: u16, extra: &[&str]) -> std::collections::HashMap<String, u64> {
    let (ok, j) = loadgen_status(port, extra);
    assert!(ok, "rsp-loadgen failed: {j:?}");
    j
}

/// Runs rsp-loadgen; returns whether it exited 0 and the values of its last line.
fn loadgen_status(port: u16, extra: &[&str]) -> (bool, std::collections::HashMap<String, u64>) {
    let out = Command::new(env!("CARGO_BIN_EXE_rsp-loadgen"))
        .args([
            "--registrar",
            &format!("127.0.0.1:{port}"),
            "--pes",
            "40",
            "--pools",
            "4",
            "--pe-connections",
            "2",
            "--pu-connections",
            "1",
            "--window",
            "4",
            "--duration-ms",
            "300",
            "--reregistrations",
            "2",
            "--label",
            "test",
        ])
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .expect("run rsp-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("summary: test"), "no summary:\n{stdout}");
    assert_eq!(
        stdout.matches("re-registrations:").count(),
        2,
        "two re-registration rounds:\n{stdout}"
    );
    let json = stdout.lines().last().expect("JSON line");
    assert!(json.starts_with("{\"label\":\"test\""), "{json}");
    let j = json
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim_matches('"').to_string(), v.parse().ok()?))
        })
        .collect();
    (out.status.success(), j)
}

fn check_counts(j: &std::collections::HashMap<String, u64>) {
    assert_eq!(j["pes"], 40);
    assert_eq!(j["registrations_ok"], 40);
    assert_eq!(j["registrations_failed"], 0);
    // The JSON has one key set per phase; the last re-registration round wins.
    assert_eq!(j["reregistrations_ok"], 40);
    assert_eq!(j["reregistrations_failed"], 0);
    assert!(j["resolutions_ok"] > 0, "{j:?}");
    assert_eq!(j["resolutions_failed"], 0);
    assert!(j["resolutions_p50_us"] <= j["resolutions_p99_us"], "{j:?}");
}

#[test]
fn loadgen_against_fixed_responder() {
    let port = free_port();
    let _srv = Guard(
        Command::new(env!("CARGO_BIN_EXE_rsp-fixed-responder"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rsp-fixed-responder"),
    );
    wait_listening(port);
    check_counts(&loadgen(port, &[]));
    check_counts(&loadgen(port, &["--engine", "blocking"]));
}

#[test]
fn loadgen_against_enrp_server_with_sctp_user_transport() {
    let (_srv, asap) = enrp_server();
    let j = loadgen(asap, &["--user-transport", "sctp"]);
    check_counts(&j);
}

/// The blocking engine against a real registrar: every registration accepted, every
/// resolution answered with PEs, same counts as the tokio engine.
#[test]
fn blocking_loadgen_against_enrp_server() {
    let (_srv, asap) = enrp_server();
    let j = loadgen(asap, &["--engine", "blocking", "--user-transport", "sctp"]);
    check_counts(&j);
    // the registered PEs answer: 40 PEs in 4 pools, the default answer has up to 3 of them
    let tokio = loadgen(asap, &["--user-transport", "sctp"]);
    check_counts(&tokio);
}

/// Refusals are counted, not hidden: PEs whose user address is not the association's
/// (192.0.2.1, no `--allow-third-party`) are refused with the R flag, so every
/// registration fails and every resolution then finds an empty pool. Both engines report
/// the same counts and exit non-zero.
#[test]
fn loadgen_counts_refusals_with_both_engines() {
    let (_srv, asap) = enrp_server();
    for engine in ["tokio", "blocking"] {
        let (ok, j) = loadgen_status(asap, &["--engine", engine, "--pe-address", "192.0.2.1"]);
        assert!(!ok, "{engine}: exit status must say that requests failed");
        assert_eq!(j["registrations_ok"], 0, "{engine}: {j:?}");
        assert_eq!(j["registrations_failed"], 40, "{engine}: {j:?}");
        assert_eq!(j["reregistrations_failed"], 40, "{engine}: {j:?}");
        assert_eq!(j["resolutions_ok"], 0, "{engine}: {j:?}");
        assert!(j["resolutions_failed"] > 0, "{engine}: {j:?}");
    }
}

/// An `enrp-server` on TCP on loopback; returns it and its ASAP port.
fn enrp_server() -> (Guard, u16) {
    let (asap, enrp) = (free_port(), free_port());
    let srv = Guard(
        Command::new(env!("CARGO_BIN_EXE_enrp-server"))
            .args([
                "--transport",
                "tcp",
                "--asap",
                &format!("127.0.0.1:{asap}"),
                "--enrp",
                &format!("127.0.0.1:{enrp}"),
                "--asap-announce",
                "off",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn enrp-server"),
    );
    wait_listening(asap);
    (srv, asap)
}
