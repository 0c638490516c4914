//! The proxy and its legacy-daemons with real processes: configuration push (seed 003
//! [32], "dynamic notification") through `proxy-pe push-config`, and a proxy restart by
//! SIGTERM with the daemons' default reconnect backoff.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::*;
use proxy_pe::core::{Health, PushState};

/// Runs the `proxy-pe` binary with `args` (off the async workers: it blocks).
async fn cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_proxy-pe"))
            .args(&args)
            .output()
            .expect("run proxy-pe")
    })
    .await
    .expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn push(rig: &Rig, daemon: &str, file: &std::path::Path) -> Output {
    cli(vec![
        "push-config".into(),
        format!("--daemon={daemon}"),
        format!("--control={}", rig.controls[0]),
        file.display().to_string(),
    ])
    .await
}

fn extra_server(r: &proxy_pe::control::Report) -> proxy_pe::core::ServerView {
    r.proxy
        .applications
        .iter()
        .find(|a| a.name == "extra")
        .expect("application extra")
        .servers[0]
        .clone()
}

fn daemon(r: &proxy_pe::control::Report, id: &str) -> proxy_pe::core::DaemonView {
    r.proxy
        .daemons
        .iter()
        .find(|d| d.id == id)
        .expect("daemon")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_push_is_acknowledged_and_rejection_keeps_old_config() {
    let mut rig = Rig::new("push");
    // A second application served by IP1's process, which d1 does not watch yet.
    rig.proxy_extra = format!(
        "\n[[application]]\nname = \"extra\"\npool_handle = \"ExtraPool\"\npolicy = \"round-robin\"\nlisten = \"127.0.0.1:{}\"\n\n[[application.server]]\nname = \"X1\"\naddress = \"{}\"\nport = {}\ndaemon = \"d1\"\n",
        port(),
        rig.echo_addrs[0].ip(),
        rig.echo_addrs[0].port()
    );
    rig.start_proxies(1, "broker", "round-robin", &[]);
    rig.start_daemons();
    let r = rig
        .until(0, "echo servers selectable, extra not reported", |r| {
            all_selectable(r) && extra_server(r).health == Health::NotRunning
        })
        .await;
    assert_eq!(daemon(&r, "d1").config_version, 1);
    assert!(daemon(&r, "d1").last_push.is_none());

    // d1's configuration plus the application `extra`.
    let old = std::fs::read_to_string(rig.dir.join("daemon-0.toml")).expect("daemon config");
    let re = format!("--listen={}", rig.echo_addrs[0]).replace('.', "\\.");
    let good =
        format!("{old}\n[[app]]\nname = \"extra\"\nexe = \"legacy-echo\"\ncmdline = '{re}'\n");
    let good_path = rig.dir.join("push-good.toml");
    std::fs::write(&good_path, &good).expect("write");
    let out = push(&rig, "d1", &good_path).await;
    assert!(
        out.status.success(),
        "push failed: {}\n{}",
        text(&out.stderr),
        rig.logs()
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "daemon d1 acknowledged configuration version 2 (version 2 in force)"
    );
    // The proxy shows the acknowledged version, and the new application's status arrives.
    let r = rig
        .until(0, "push acknowledged and `extra` running on X1", |r| {
            extra_server(r).selectable
        })
        .await;
    let d1 = daemon(&r, "d1");
    assert_eq!(d1.config_version, 2);
    let p = d1.last_push.expect("push recorded");
    assert_eq!((p.version, p.state), (2, PushState::Accepted));
    assert_eq!(p.active_version, Some(2));
    assert!(r.proxy.events.iter().any(|e| e.kind == "config-ack"));
    let (s, who) = session(r.proxy.applications[1].listen.expect("listen")).await;
    assert_eq!(who, "IP1");
    s.close().await;
    let out = cli(vec![
        "status".into(),
        format!("--control={}", rig.controls[0]),
    ])
    .await;
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(
        table.contains("Application 'extra'\nX1 is running\n"),
        "{table}"
    );
    assert!(
        table.contains(
            "Daemon configuration\nd1 version 2 in force; push of version 2 acknowledged\n"
        ),
        "{table}"
    );
    let out = cli(vec![
        "status".into(),
        "--json".into(),
        format!("--control={}", rig.controls[0]),
    ])
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let d1 = json["proxy"]["daemons"]
        .as_array()
        .expect("daemons")
        .iter()
        .find(|d| d["id"] == "d1")
        .expect("d1")
        .clone();
    assert_eq!(d1["config_version"], 2);
    assert_eq!(d1["last_push"]["state"], "accepted");

    // An invalid configuration: rejected with the daemon's message, version 2 stays.
    let bad_path = rig.dir.join("push-bad.toml");
    std::fs::write(&bad_path, format!("{good}\n[[app]]\nname = 5\n")).expect("write");
    let out = push(&rig, "d1", &bad_path).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "daemon d1 rejected configuration version 3 (version 2 stays in force): config push v3"
        ),
        "{err}"
    );
    assert!(err.contains("app[2].name"), "{err}");
    let r = rig.report(0).await.expect("report");
    let d1 = daemon(&r, "d1");
    let p = d1.last_push.expect("push recorded");
    assert_eq!((p.version, p.state), (3, PushState::Rejected));
    assert!(p.error.expect("error").contains("app[2].name"));
    assert_eq!(d1.config_version, 2);
    assert!(r.proxy.events.iter().any(|e| e.kind == "config-rejected"));
    // The old configuration (with `extra`) stays in force at the daemon and on its disk.
    assert!(extra_server(&r).selectable);
    let on_disk = std::fs::read_to_string(rig.dir.join("daemon-0.toml")).expect("read");
    assert!(on_disk.contains("name = \"extra\"") && !on_disk.contains("name = 5"));
    let out = cli(vec![
        "status".into(),
        format!("--control={}", rig.controls[0]),
    ])
    .await;
    let table = text(&out.stdout);
    assert!(
        table.contains("d1 version 2 in force; push of version 3 rejected: config push v3"),
        "{table}"
    );

    // Unknown daemon and a daemon that is not connected: clear errors, status 1.
    let out = push(&rig, "nobody", &good_path).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown daemon `nobody`"),
        "{}",
        text(&out.stderr)
    );
    rig.kill_daemon(2);
    rig.until(0, "d3 disconnected", |r| !daemon(r, "d3").connected)
        .await;
    let out = push(&rig, "d3", &good_path).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("daemon `d3` is not connected"),
        "{}",
        text(&out.stderr)
    );
    // A missing file is reported before anything is sent.
    let out = push(&rig, "d1", &PathBuf::from("/nonexistent/x.toml")).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read /nonexistent/x.toml"));
}

/// Counts the daemon's failed attempts to reach the proxy in its log.
fn failed_attempts(rig: &Rig, i: usize) -> usize {
    std::fs::read_to_string(rig.dir.join(format!("daemon-{i}.log")))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("cannot connect to proxy"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sigterm_restart_with_default_daemon_backoff() {
    let mut rig = Rig::new("sigterm");
    rig.daemon_default_backoff = true;
    rig.start_proxies(1, "registration", "round-robin", &[]);
    rig.start_daemons();
    rig.until(0, "all registered", |r| {
        all_selectable(r) && r.proxy.applications[0].servers.iter().all(|s| s.registered)
    })
    .await;
    let mut want = rig.echo_addrs.clone();
    want.sort();
    resolve_until(rig.registrar_addr, "EchoPool", |v| v == want.as_slice()).await;

    // SIGTERM: the proxy deregisters every PE (a real shutdown must not leave stale PEs)
    // and exits cleanly.
    let mut p = rig.proxies[0].take().expect("proxy");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(p.pid() as i32, libc::SIGTERM) }, 0);
    let st = tokio::task::spawn_blocking(move || {
        let st = p.child.wait().expect("wait");
        (st, p)
    })
    .await
    .expect("join")
    .0;
    assert!(st.success(), "proxy exit status {st}");
    resolve_until(rig.registrar_addr, "EchoPool", |v| v.is_empty()).await;

    // Stay down until every daemon's backoff has grown (6 failed attempts: the next delay
    // is at the cap); the wait only ends on the daemons' logged state.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (0..3).any(|i| failed_attempts(&rig, i) < 6) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemons did not retry\n{}",
            rig.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back up: the daemons reconnect with the default backoff, every server is running and
    // registered again.
    rig.start_proxy(0);
    let r = rig
        .until(0, "servers running and registered after the restart", |r| {
            r.proxy.daemons.len() == 3
                && r.proxy.daemons.iter().all(|d| d.connected && d.synced)
                && r.proxy.applications[0]
                    .servers
                    .iter()
                    .all(|s| s.health == Health::Running && s.registered)
        })
        .await;
    assert!(all_selectable(&r));
    resolve_until(rig.registrar_addr, "EchoPool", |v| v == want.as_slice()).await;
}
