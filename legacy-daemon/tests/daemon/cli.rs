//! Command-line behaviour of the `legacy-daemon` binary: `--once`, `--check-config`,
//! start-up with a bad configuration, `--help`.

use crate::common::*;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(daemon_bin()).args(args).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--check-config -c PATH` that fails: its output (exit status 1 checked).
fn check_fails(path: &str) -> String {
    let (code, out, _) = run(&["--check-config", "-c", path]);
    assert_eq!(code, 1, "{out}");
    out
}

/// The daemon started with `--config PATH` exits at once: its stderr (exit status 1
/// checked).
fn start_fails(path: &std::path::Path) -> String {
    let (code, _, err) = run(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    err
}

#[test]
fn once_prints_status_json() {
    let dir = TempDir::new("once");
    let arg = format!("100000.{}", unique());
    let s = spawn_sleep(&arg);
    let cfg = dir.file(
        "d.toml",
        &format!(
            "[daemon]\nkey = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\nid = \"once-host\"\n[[app]]\nname = \"A\"\nexe = \"sleep\"\ncmdline = '{}'\n\
             [[app]]\nname = \"absent\"\nexe = \"no-such-binary-xyz\"\nports = [1]\ncount_connections = true\n",
            arg.replace('.', "\\.")
        ),
    );
    let (code, out, err) = run(&["--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["daemon_id"], "once-host");
    assert_eq!(v["config_version"], 1);
    assert!(v["taken_at_ms"].as_u64().unwrap() > 0);
    let a = &v["apps"][0];
    assert_eq!(a["name"], "A");
    assert_eq!(a["running"], true);
    assert_eq!(a["instances"], 1);
    assert_eq!(a["pids"][0].as_u64(), Some(s.pid() as u64));
    assert!(a["rss_bytes"].as_u64().unwrap() > 0);
    assert!(a["cpu_percent"].is_number());
    let b = &v["apps"][1];
    assert_eq!(b["running"], false);
    assert_eq!(b["pids"].as_array().unwrap().len(), 0);
    assert_eq!(b["ports"][0]["port"], 1);
    assert_eq!(b["ports"][0]["listening"], false);
    assert_eq!(b["ports"][0]["connections"], 0);
}

#[test]
fn check_config_exit_codes_and_messages() {
    let dir = TempDir::new("check");
    let good = dir.file(
        "good.toml",
        &format!("[daemon]\nkey = \"{TEST_KEY}\"\n[[app]]\nname = \"A\"\nexe = \"x\"\n[[proxy]]\naddress = \"p:7100\"\n"),
    );
    let (code, out, _) = run(&["--check-config", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("OK: ") && out.contains("1 application(s), 1 proxy(ies)"),
        "{out}"
    );

    let bad = dir.file("bad.toml", "[daemon]\npoll_interval_ms = \"fast\"\n");
    let out = check_fails(bad.to_str().unwrap());
    let want = format!(
        "ERROR: {}:2:20: key `daemon.poll_interval_ms`: ",
        bad.display()
    );
    assert!(out.starts_with(&want), "{out}");

    // Without a key and without `auth = "none"` the configuration is refused.
    let nokey = dir.file("nokey.toml", "[[proxy]]\naddress = \"p:7100\"\n");
    let out = check_fails(nokey.to_str().unwrap());
    assert!(
        out.contains("key `daemon.key`") && out.contains("auth = \"none\""),
        "{out}"
    );

    let out = check_fails("/nonexistent/legacy.toml");
    assert_contains(&out, "/nonexistent/legacy.toml: cannot read");
}

#[test]
fn daemon_refuses_to_start_with_bad_config() {
    let dir = TempDir::new("badstart");
    let bad = dir.file("bad.toml", "[[proxy]]\naddress = \"no-port\"\n");
    let err = start_fails(&bad);
    assert_contains(
        &err,
        ":2:11: key `proxy[0].address`: proxy address `no-port` is not host:port",
    );
}

/// Issue 16 item 6: a missing configuration file is named, with the fix.
#[test]
fn missing_config_file_names_the_path_and_the_fix() {
    let dir = TempDir::new("nofile");
    let missing = dir.path("absent.toml");
    let err = start_fails(&missing);
    assert_contains(&err, &format!("{}: cannot read:", missing.display()));
    assert_contains(&err, "legacy-daemon.toml.example");
    assert_contains(&err, "--config PATH");
}

#[test]
fn help_documents_every_option_and_default() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--config <PATH>",
        "[default: /etc/legacy-daemon.toml]",
        "--once",
        "--check-config",
        "--log-format <LOG_FORMAT>",
        "[default: text]",
        "--metrics <ADDR:PORT>",
        "[default: off]",
        "--version",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains("bench-poll"), "hidden option shown");
}
