//! Mode B (session broker, seed 003 FIG. 5) with real processes: enrp-server, proxy-pe,
//! three legacy-daemons and three legacy-echo servers that know nothing of RSerPool.

use crate::common::*;

/// Waits until all three servers are selectable and the proxy's PE is registered.
async fn ready(rig: &Rig, k: usize) {
    rig.until(k, "all servers selectable and registered", |r| {
        all_selectable(r) && r.registrar.accepted >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_failover_and_step_197() {
    let mut rig = Rig::with_broker("rr", "round-robin");
    ready(&rig, 0).await;

    // The PU resolves the application pool: the proxy is its PE.
    let pes = resolve_until(rig.registrar_addr, "EchoPool", |v| v.len() == 1).await;
    assert_eq!(pes, vec![rig.listens[0]]);
    let via = pes[0];

    // Round robin in the seed's order: IP1, IP2, IP3, IP1 ... (003 [31]).
    let mut order = Vec::new();
    for _ in 0..4 {
        let (mut s, who) = session(via).await;
        assert_eq!(s.echo("ping").await, "ping");
        order.push(who);
        s.close().await;
    }
    assert_eq!(order, ["IP1", "IP2", "IP3", "IP1"]);

    // Kill IP3's application: the daemon reports it, the proxy removes it.
    rig.kill_echo(2);
    let r = rig
        .until(0, "IP3 not running", |r| !server(r, "IP3").running)
        .await;
    assert!(r.proxy.events.iter().any(|e| e.kind == "server-state"
        && e.subject == "IP3"
        && e.detail.starts_with("running -> not-running")));
    let mut order = Vec::new();
    for _ in 0..3 {
        let (s, who) = session(via).await;
        order.push(who);
        s.close().await;
    }
    // The last assignment was IP1, so IP2 follows; IP3 is skipped.
    assert_eq!(order, ["IP2", "IP1", "IP2"]);

    // Mid-session failure (step 203): the session continues on another server.
    let (mut s, who) = session(via).await;
    assert_eq!(who, "IP1");
    assert_eq!(s.echo("before").await, "before");
    rig.kill_echo(0);
    // The server's close is noticed, its port no longer answers: reselect → IP2, whose
    // greeting arrives first, then the echo continues.
    assert_eq!(s.server().await, "IP2");
    assert_eq!(s.echo("after").await, "after");
    s.close().await;
    let r = rig
        .until(0, "sessions released", |r| r.proxy.sessions == 0)
        .await;
    assert_eq!(server(&r, "IP2").active_sessions, 0);

    // Nothing running → the session fails with a clear error (step 197).
    rig.kill_echo(1);
    rig.until(0, "no server running", none_selectable).await;
    let mut s = Session::open(via).await;
    assert_eq!(
        s.line().await,
        "-ERR proxy-pe: application `echo` is not available: no server is running"
    );

    // Restart IP2's application: it comes back.
    rig.start_echo(1);
    rig.until(0, "IP2 back", |r| server(r, "IP2").selectable)
        .await;
    let (s, who) = session(via).await;
    assert_eq!(who, "IP2");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_serves_longest_idle_server() {
    let rig = Rig::with_broker("fifo", "fifo");
    ready(&rig, 0).await;

    // `proxy-pe status` prints the pooling table in the shape of seed 003 [30].
    let bin = env!("CARGO_BIN_EXE_proxy-pe");
    let control = format!("--control={}", rig.controls[0]);
    let out = std::process::Command::new(bin)
        .args(["status", &control])
        .output()
        .expect("status runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Application 'echo'\nIP1 is running\nIP2 is running\nIP3 is running\nFIFO Priority\n\n"
    );
    let out = std::process::Command::new(bin)
        .args(["status", &control, "--json"])
        .output()
        .expect("status --json runs");
    let report: proxy_pe::control::Report =
        serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report.proxy.applications[0].policy, "fifo");
    assert_eq!(report.proxy.daemons.len(), 3);
    // A proxy that is not running: a clear error and status 1.
    let out = std::process::Command::new(bin)
        .args(["status", "--control=127.0.0.1:1"])
        .output()
        .expect("status runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach proxy-pe control port"));
    let via = rig.listens[0];
    let (s1, a) = session(via).await;
    let (s2, b) = session(via).await;
    let (s3, c) = session(via).await;
    assert_eq!([a, b, c], ["IP1", "IP2", "IP3"]);
    s2.close().await;
    rig.until(0, "IP2 idle", |r| server(r, "IP2").active_sessions == 0)
        .await;
    // IP1 and IP3 are busy, IP2 has been idle longest: FIFO gives IP2 (round robin would
    // have given IP1).
    let (s4, d) = session(via).await;
    assert_eq!(d, "IP2");
    s1.close().await;
    rig.until(0, "IP1 idle", |r| server(r, "IP1").active_sessions == 0)
        .await;
    let (s5, e) = session(via).await;
    assert_eq!(e, "IP1");
    for s in [s3, s4, s5] {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_load_from_daemon_reports() {
    let rig = Rig::with_broker("ll", "least-load");
    ready(&rig, 0).await;
    // Load = established connections / capacity 10, as the daemons count them:
    // IP1 3, IP2 1, IP3 2 direct client connections.
    let mut hold = Vec::new();
    for (i, n) in [(0usize, 3usize), (1, 1), (2, 2)] {
        for _ in 0..n {
            hold.push(Session::open(rig.echo_addrs[i]).await);
        }
    }
    let r = rig
        .until(0, "loads reported", |r| {
            server(r, "IP1").load > 0.25
                && server(r, "IP2").load > 0.05
                && server(r, "IP3").load > 0.15
        })
        .await;
    assert_eq!(server(&r, "IP2").load, 0.1);
    let (s, who) = session(rig.listens[0]).await;
    assert_eq!(who, "IP2");
    s.close().await;
    drop(hold);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_and_maintenance_move_sessions_and_reload() {
    let mut rig = Rig::new("life");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let window = format!("maintenance = [\"{}-{}\"]", now - 10, now + 3600);
    rig.start_proxies(1, "broker", "round-robin", &["lifetime_s = 8", &window, ""]);
    rig.start_daemons();
    rig.until(0, "IP1 and IP3 selectable, IP2 in maintenance", |r| {
        server(r, "IP1").selectable
            && server(r, "IP3").selectable
            && server(r, "IP2").reason == "maintenance window"
    })
    .await;
    let via = rig.listens[0];
    let (mut s, who) = session(via).await;
    assert_eq!(who, "IP1");
    assert_eq!(s.echo("x").await, "x");
    // IP1's lifetime ends: the session moves to the next server by round robin, skipping
    // IP2 (maintenance) → IP3.
    rig.until(0, "IP1 expired", |r| {
        server(r, "IP1").reason == "lifetime expired"
    })
    .await;
    assert_eq!(s.server().await, "IP3");
    assert_eq!(s.echo("y").await, "y");

    // An invalid configuration is rejected precisely; the old one stays in force.
    let path = rig.config_paths[0].clone();
    let good = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        good.replace("policy = \"round-robin\"", "policy = \"fastest\""),
    )
    .expect("write");
    let r = rig
        .until(0, "reload rejected", |r| r.last_config_error.is_some())
        .await;
    let err = r.last_config_error.clone().expect("error");
    assert!(
        err.contains("proxy-0.toml:") && err.contains("fastest"),
        "{err}"
    );
    assert_eq!(r.config_loads, 1);
    assert_eq!(r.proxy.applications[0].policy, "round-robin");

    // Remove the maintenance window: after the reload IP2 is selectable again.
    std::fs::write(&path, good.replace(&window, "")).expect("write");
    let r = rig
        .until(0, "reloaded", |r| {
            r.config_loads == 2 && server(r, "IP2").selectable
        })
        .await;
    assert!(r.last_config_error.is_none());
    let (s2, who) = session(via).await;
    assert_eq!(who, "IP2");
    s2.close().await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_window_starting_mid_session_drains_it() {
    let rig = Rig::with_broker("maint", "round-robin");
    ready(&rig, 0).await;
    let (mut s, who) = session(rig.listens[0]).await;
    assert_eq!(who, "IP1");
    assert_eq!(s.echo("before").await, "before");
    // While the session is open, IP1 gets a maintenance window that starts a few seconds
    // from now (the reload is the only way to add one to a running proxy).
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3;
    let path = rig.config_paths[0].clone();
    let cfg = std::fs::read_to_string(&path).expect("read");
    let with_window = cfg.replacen(
        "daemon = \"d1\"\n",
        &format!(
            "daemon = \"d1\"\nmaintenance = [\"{start}-{}\"]\n",
            start + 3600
        ),
        1,
    );
    assert_ne!(with_window, cfg);
    std::fs::write(&path, with_window).expect("write");
    let r = rig
        .until(0, "IP1 in its maintenance window", |r| {
            r.config_loads == 2 && server(r, "IP1").reason == "maintenance window"
        })
        .await;
    // The window began by the clock, not with the reload.
    let ev = r
        .proxy
        .events
        .iter()
        .rev()
        .find(|e| e.kind == "server-state" && e.subject == "IP1")
        .expect("IP1 state event");
    assert!(ev.detail.ends_with("(maintenance window)"), "{ev:?}");
    assert!(ev.at_ms >= start * 1000, "{ev:?} before {start}");
    // The window drains IP1 (issue 19 item 1): the open session stays on IP1 (no new
    // greeting, the echo answers on the same server), new sessions go elsewhere.
    assert_eq!(s.echo("after").await, "after");
    let (s2, who2) = session(rig.listens[0]).await;
    assert_eq!(who2, "IP2");
    s2.close().await;
    assert_eq!(s.echo("still on IP1").await, "still on IP1");
    let r = rig.report(0).await.expect("report");
    assert_eq!(server(&r, "IP1").active_sessions, 1);
    assert!(!r
        .proxy
        .events
        .iter()
        .any(|e| e.kind == "server-state" && e.subject == "IP1" && e.detail.contains("down")));
    s.close().await;
    let r = rig
        .until(0, "the drained session released", |r| r.proxy.sessions == 0)
        .await;
    assert_eq!(server(&r, "IP1").active_sessions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_keep_serving_when_one_is_killed() {
    let mut rig = Rig::new("two");
    rig.start_proxies(2, "broker", "round-robin", &[]);
    rig.start_daemons();
    ready(&rig, 0).await;
    ready(&rig, 1).await;
    let mut both = vec![rig.listens[0], rig.listens[1]];
    both.sort();
    resolve_until(rig.registrar_addr, "EchoPool", |v| v == both.as_slice()).await;
    for k in 0..2 {
        let (s, _) = session(rig.listens[k]).await;
        s.close().await;
    }
    rig.kill_proxy(0);
    // The registrar's keep-alive removes the dead proxy; the other one still serves.
    let left = resolve_until(rig.registrar_addr, "EchoPool", |v| v.len() == 1).await;
    assert_eq!(left, vec![rig.listens[1]]);
    let (mut s, who) = session(left[0]).await;
    assert!(NAMES.contains(&who.as_str()));
    assert_eq!(s.echo("still here").await, "still here");
    s.close().await;
    // The daemons keep reporting to the survivor.
    let r = rig
        .until(1, "daemons connected", |r| {
            r.proxy.daemons.iter().all(|d| d.connected)
        })
        .await;
    assert_eq!(r.proxy.daemons.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_and_proxy_restarts_lose_nothing() {
    let mut rig = Rig::with_broker("restart", "round-robin");
    ready(&rig, 0).await;
    // Daemon d2 dies: IP2 is only suspect while its service port answers (two-channel
    // rule), so it stays selectable.
    rig.kill_daemon(1);
    let r = rig
        .until(0, "IP2 suspect", |r| {
            server(r, "IP2").health == proxy_pe::core::Health::Suspect
        })
        .await;
    assert!(server(&r, "IP2").selectable);
    // It restarts: a new instance, full snapshot, running again.
    rig.start_daemon(1);
    let r = rig
        .until(0, "d2 back", |r| {
            server(r, "IP2").health == proxy_pe::core::Health::Running
        })
        .await;
    assert!(r.proxy.events.iter().any(|e| e.kind == "daemon-connected"
        && e.subject == "d2"
        && e.detail.starts_with("restarted")));
    // Proxy restart: daemons reconnect with snapshots, the registration is re-created.
    rig.kill_proxy(0);
    rig.start_proxy(0);
    ready(&rig, 0).await;
    resolve_until(rig.registrar_addr, "EchoPool", |v| v == [rig.listens[0]]).await;
    let (s, who) = session(rig.listens[0]).await;
    assert_eq!(who, "IP1");
    s.close().await;
    // d2 silent and IP2's port closed: down (both channels failed).
    rig.kill_daemon(1);
    rig.kill_echo(1);
    let r = rig
        .until(0, "IP2 down", |r| {
            server(r, "IP2").health == proxy_pe::core::Health::Down
        })
        .await;
    assert_eq!(
        server(&r, "IP2").reason,
        "daemon silent and service probe failed"
    );
}

/// Reads session data until a complete line is buffered in `acc`; returns that line.
async fn asap_line(s: &mut asap::session::Session, acc: &mut String, what: &str) -> String {
    loop {
        if let Some(i) = acc.find('\n') {
            let line = acc[..i].to_string();
            acc.drain(..=i);
            return line;
        }
        let ev = tokio::time::timeout(std::time::Duration::from_secs(20), s.recv())
            .await
            .expect("data within 20 s")
            .expect("session open");
        match ev {
            asap::session::SessionEvent::Data(d) => acc.push_str(&String::from_utf8_lossy(&d)),
            other => panic!("{what}: unexpected session event {other:?} (buffered {acc:?})"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asap_aware_pool_user_session_with_failover() {
    use asap::pu::{PoolUser, PoolUserConfig};
    use asap::session::{Session, SessionConfig};
    let mut rig = Rig::with_proxy("asap", "broker", "round-robin", |r| r.with_asap = true);
    ready(&rig, 0).await;
    // The registered PE is the proxy's ASAP session endpoint.
    resolve_until(rig.registrar_addr, "EchoPool", |v| {
        v == [rig.asap_listens[0]]
    })
    .await;
    let mut cfg = PoolUserConfig::tcp();
    cfg.pu.link.static_registrars = vec![vec![rig.registrar_addr]];
    let pu = PoolUser::start(cfg).await.expect("pool user");
    let mut s = Session::connect(&pu, "EchoPool", SessionConfig::default())
        .await
        .expect("session");
    let mut acc = String::new();
    assert_eq!(
        asap_line(&mut s, &mut acc, "greeting").await,
        "hello from IP1"
    );
    s.send(&b"ping\n"[..]).await.expect("send");
    assert_eq!(asap_line(&mut s, &mut acc, "ping").await, "ping");
    // The legacy server dies mid-session: the proxy continues on IP2 (step 203); the
    // PU's ASAP association to the proxy is untouched.
    rig.kill_echo(0);
    assert_eq!(
        asap_line(&mut s, &mut acc, "failover greeting").await,
        "hello from IP2"
    );
    s.send(&b"after\n"[..]).await.expect("send");
    assert_eq!(asap_line(&mut s, &mut acc, "after").await, "after");
    s.close().await;
    let r = rig
        .until(0, "session released", |r| r.proxy.sessions == 0)
        .await;
    assert_eq!(server(&r, "IP2").assigned_total, 1);
    // Plain TCP clients still use the fixed `listen` address.
    let (c, who) = session(rig.listens[0]).await;
    assert_eq!(who, "IP3");
    c.close().await;
}
