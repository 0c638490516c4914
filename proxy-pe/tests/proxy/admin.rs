//! Operator admin states over the control socket (issue 19 item 1) with real processes:
//! enrp-server, proxy-pe (mode B), three legacy-daemons and three legacy-echo servers.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::*;
use proxy_pe::core::{AdminState, Health};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

async fn ready(rig: &Rig, k: usize) {
    rig.until(k, "all servers selectable and registered", |r| {
        all_selectable(r) && r.registrar.accepted >= 1
    })
    .await;
}

fn socket(rig: &Rig, k: usize) -> PathBuf {
    rig.dir.join(format!("ctl-{k}/control.sock"))
}

/// Runs `proxy-pe ARGS --socket SOCK` (as `uid` when given) and returns its output.
fn cli(sock: &std::path::Path, args: &[&str], uid: Option<u32>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proxy-pe"));
    c.args(args).arg(format!("--socket={}", sock.display()));
    if let Some(u) = uid {
        c.uid(u).gid(u);
    }
    c.output().expect("run proxy-pe")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}: {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `n` sessions through the relay; the servers that served them.
async fn serve_n(rig: &Rig, n: usize) -> Vec<String> {
    let mut who = Vec::new();
    for _ in 0..n {
        let (mut s, w) = session(rig.listens[0]).await;
        assert_eq!(s.echo("x").await, "x");
        who.push(w);
        s.close().await;
    }
    who
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_drain_maintenance_enable_over_the_control_socket() {
    let rig = Rig::with_broker("admin", "round-robin");
    ready(&rig, 0).await;
    let sock = socket(&rig, 0);
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only control socket");

    // A session on IP1 stays open across the disable.
    let (mut s1, who) = session(rig.listens[0]).await;
    assert_eq!(who, "IP1");
    let out = ok(&cli(&sock, &["disable", "IP1"], None));
    assert_eq!(out.trim(), "echo/IP1 disabled (by uid 0 (root))");
    let r = rig
        .until(0, "IP1 disabled", |r| {
            server(r, "IP1").admin_state() == AdminState::Disabled
        })
        .await;
    let v = server(&r, "IP1");
    assert!(!v.selectable);
    assert_eq!(
        v.health,
        Health::Running,
        "an operator stop is not a failure"
    );
    assert_eq!(v.admin.as_ref().expect("record").by, "uid 0 (root)");
    assert!(!r
        .proxy
        .events
        .iter()
        .any(|e| e.subject == "IP1" && e.kind == "server-state" && e.detail.contains("down")));
    assert_eq!(s1.echo("still here").await, "still here");
    let who = serve_n(&rig, 4).await;
    assert!(!who.contains(&"IP1".to_string()), "{who:?}");
    assert_eq!(s1.echo("and here").await, "and here");

    // The text status shows the operator state with who and when.
    let st = Command::new(env!("CARGO_BIN_EXE_proxy-pe"))
        .args(["status", &format!("--control={}", rig.controls[0])])
        .output()
        .expect("status");
    let table = ok(&st);
    assert!(
        table.contains("IP1 is running (disabled by uid 0 (root) at "),
        "{table}"
    );
    assert!(table.contains("1 sessions open)"), "{table}");
    // The same report over the socket.
    let st = ok(&cli(&sock, &["status", "--json"], None));
    assert!(st.contains("\"state\": \"disabled\""), "{st}");

    // The unauthenticated TCP control port does not take operator commands.
    let mut t = tokio::net::TcpStream::connect(rig.controls[0])
        .await
        .expect("control port");
    t.write_all(b"admin enable IP1\n").await.expect("write");
    let mut answer = String::new();
    t.read_to_string(&mut answer).await.expect("read");
    assert!(answer.contains("only on the control socket"), "{answer}");
    let r = rig.report(0).await.expect("report");
    assert_eq!(server(&r, "IP1").admin_state(), AdminState::Disabled);

    // Unknown servers and bad durations are refused with status 1.
    let o = cli(&sock, &["disable", "IP9"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no server `IP9`"));
    let o = cli(&sock, &["drain", "IP2", "--timeout=soon"], None);
    assert!(!o.status.success());

    // Drain IP2 with a session open and a 1 s timeout: no new sessions, then the session
    // is closed by the proxy and IP2 ends disabled.
    let (mut s2, w2) = loop {
        let (s, w) = session(rig.listens[0]).await;
        if w == "IP2" {
            break (s, w);
        }
        s.close().await;
    };
    assert_eq!(w2, "IP2");
    ok(&cli(&sock, &["drain", "IP2", "--timeout=1s"], None));
    let r = rig.report(0).await.expect("report");
    assert_eq!(server(&r, "IP2").admin_state(), AdminState::Draining);
    let who = serve_n(&rig, 2).await;
    assert_eq!(who, ["IP3", "IP3"]);
    // The drain timeout ends the session: the client sees EOF.
    let mut rest = String::new();
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s2.r.read_line(&mut rest),
    )
    .await
    .expect("closed within 20 s")
    .expect("read");
    assert_eq!((n, rest.as_str()), (0, ""));
    let r = rig
        .until(0, "IP2 drained", |r| {
            server(r, "IP2").admin_state() == AdminState::Disabled
        })
        .await;
    assert_eq!(server(&r, "IP2").active_sessions, 0);
    // IP1's session was never touched.
    assert_eq!(s1.echo("after the drain").await, "after the drain");

    // Maintenance on IP3: nothing selectable is left (step 197), off again serves.
    ok(&cli(&sock, &["maintenance", "on", "IP3"], None));
    let mut s = Session::open(rig.listens[0]).await;
    assert!(s.line().await.starts_with("-ERR proxy-pe:"));
    ok(&cli(&sock, &["maintenance", "off", "IP3"], None));
    let o = cli(&sock, &["maintenance", "off", "IP3"], None);
    assert!(!o.status.success(), "not in maintenance any more");

    // Enable: IP1 and IP2 serve again.
    ok(&cli(&sock, &["enable", "IP1"], None));
    ok(&cli(&sock, &["enable", "echo/IP2"], None));
    let mut who = serve_n(&rig, 3).await;
    who.sort();
    assert_eq!(who, ["IP1", "IP2", "IP3"]);
    s1.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_server_stays_disabled_after_a_proxy_restart() {
    let mut rig = Rig::with_broker("admin-restart", "round-robin");
    ready(&rig, 0).await;
    ok(&cli(&socket(&rig, 0), &["disable", "IP2"], None));
    let state = std::fs::read_to_string(rig.dir.join("admin-0.json")).expect("state file");
    assert!(state.contains("\"disabled\""), "{state}");

    rig.kill_proxy(0);
    rig.start_proxy(0);
    // Wait for the daemons' reports after the restart: IP1 and IP3 selectable again.
    let r = rig
        .until(0, "IP1 and IP3 back after the restart", |r| {
            server(r, "IP1").selectable
                && server(r, "IP3").selectable
                && server(r, "IP2").health == Health::Running
        })
        .await;
    let v = server(&r, "IP2");
    assert_eq!(v.admin_state(), AdminState::Disabled);
    assert!(!v.selectable);
    assert_eq!(v.admin.as_ref().expect("record").by, "uid 0 (root)");
    let who = serve_n(&rig, 6).await;
    assert!(!who.contains(&"IP2".to_string()), "{who:?}");
    assert_eq!(who.len(), 6);

    // A damaged state file stops the start with its path and reason: the proxy does not
    // guess operator states (IP2 would otherwise come back into service).
    rig.kill_proxy(0);
    std::fs::write(rig.dir.join("admin-0.json"), "{\"version\":1,\"servers\":[").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-pe"))
        .args([
            "run",
            &format!("--config={}", rig.config_paths[0].display()),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin state file") && err.contains("admin-0.json"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_cannot_give_operator_commands() {
    let rig = Rig::with_broker("admin-uid", "round-robin");
    ready(&rig, 0).await;
    let sock = socket(&rig, 0);
    let nobody = 65_534;
    // The directory (0700) keeps other users away from the socket.
    let o = cli(&sock, &["disable", "IP1"], Some(nobody));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach proxy-pe control"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Even with the file permissions opened by mistake, the peer check refuses them.
    for p in [rig.dir.clone(), rig.dir.join("ctl-0"), sock.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let o = cli(&sock, &["disable", "IP1"], Some(nobody));
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let r = rig.report(0).await.expect("report");
    assert_eq!(server(&r, "IP1").admin_state(), AdminState::Enabled);
    assert!(server(&r, "IP1").selectable);
    assert!(rig.logs().contains("neither root nor the proxy's user"));
}
