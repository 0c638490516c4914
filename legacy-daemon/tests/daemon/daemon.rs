//! End-to-end tests: the real `legacy-daemon` binary, real watched processes, and the
//! library's proxy-side receiver standing in for proxy-pe.
//!
//! Assertions are on report contents and order (Hello, then Snapshot, then deltas with
//! consecutive `state_seq`, checked by `StatusTable::apply`), never on timing.

use crate::common::*;
use legacy_protocol::receiver::{DaemonConnection, DaemonListener, StatusTable};
use legacy_protocol::DaemonMessage;
use std::process::{Command, Stdio};

const POLL: &str = "poll_interval_ms = 200\nheartbeat_interval_ms = 200\nnet_interval_ms = 200\n";

fn proxies(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|a| {
            format!("[[proxy]]\naddress = \"{a}\"\nreconnect_min_ms = 50\nreconnect_max_ms = 400\n")
        })
        .collect()
}

/// `[daemon]` with the test key and the `extra` keys, the short intervals ([`POLL`]) and
/// the proxies at `addrs`.
fn head(extra: &str, addrs: &[String]) -> String {
    format!(
        "[daemon]\nkey = \"{TEST_KEY}\"\n{extra}{POLL}{}",
        proxies(addrs)
    )
}

/// The daemon started on `text` (written to `dir/d.toml`, its log in `dir/log`) and the
/// proxy side of its connection to `l`, synced.
async fn start(
    dir: &TempDir,
    l: &DaemonListener,
    text: &str,
) -> (Proc, DaemonConnection, StatusTable) {
    let cfg = dir.file("d.toml", text);
    let d = spawn_daemon(&cfg, &dir.path("log"));
    let (c, t) = accept_synced(l).await;
    (d, c, t)
}

fn sleep_app(name: &str, arg: &str) -> String {
    let re = arg.replace('.', "\\.");
    format!("[[app]]\nname = \"{name}\"\nexe = \"sleep\"\ncmdline = '^sleep {re}$'\n")
}

fn sleep_arg() -> String {
    format!("100000.{}", unique())
}

/// A scratch directory named after `tag`, a proxy-side listener with its address, and a
/// `sleep` argument of this test's own.
async fn setup(tag: &str) -> (TempDir, DaemonListener, String, String) {
    let (l, addr) = listener().await;
    (TempDir::new(tag), l, addr, sleep_arg())
}

#[tokio::test]
async fn kill_is_reported_down_and_restart_up() {
    let (dir, l, addr, arg) = setup("kill").await;
    let mut a1 = spawn_sleep(&arg);
    let a2 = spawn_sleep(&arg);
    let text = head("id = \"host-k\"\n", &[addr]) + &sleep_app("A", &arg);
    let (_d, mut c, mut t) = start(&dir, &l, &text).await;
    assert_eq!(c.hello().daemon_id, "host-k");
    assert_eq!(
        c.hello().protocol_version,
        legacy_protocol::PROTOCOL_VERSION
    );
    // The daemon polls before connecting, so the first snapshot already shows both.
    let mut want = vec![a1.pid(), a2.pid()];
    want.sort();
    until(&mut c, &mut t, |t| pids(t, "A") == want).await;
    assert!(running(&t, "A"));
    assert_eq!(t.apps["A"].instances, 2);

    // Kill one instance: still running with one pid.
    a1.kill();
    until(&mut c, &mut t, |t| pids(t, "A") == vec![a2.pid()]).await;
    assert!(running(&t, "A"));
    assert_eq!(t.apps["A"].instances, 1);

    // Kill the other: down.
    drop(a2);
    until(&mut c, &mut t, |t| {
        t.apps.get("A").is_some_and(|a| !a.running)
    })
    .await;
    assert_eq!(t.apps["A"].instances, 0);
    assert!(t.apps["A"].pids.is_empty());
    let seq_down = t.state_seq;

    // Restart: up again with the new pid, in a later state.
    let a3 = spawn_sleep(&arg);
    until(&mut c, &mut t, |t| pids(t, "A") == vec![a3.pid()]).await;
    assert!(running(&t, "A"));
    assert!(t.state_seq > seq_down);
}

#[tokio::test]
async fn exit_is_noticed_by_pidfd_long_before_the_next_poll() {
    let (dir, l, addr, arg) = setup("pidfd").await;
    let mut a = spawn_sleep(&arg);
    let cfg = dir.path("d.toml");
    // One poll at start-up, the next one only after 10 minutes: a down report before
    // the test deadline (30 s) can only come from the pidfd exit notification.
    write_file(
        &cfg,
        &format!(
            "[daemon]\nkey = \"{TEST_KEY}\"\npoll_interval_ms = 600000\nheartbeat_interval_ms = 200\n{}{}",
            proxies(&[addr]),
            sleep_app("A", &arg)
        ),
    );
    let log = dir.path("log");
    let _d = spawn_daemon(&cfg, &log);
    let (mut c, mut t) = accept_synced(&l).await;
    assert_eq!(pids(&t, "A"), vec![a.pid()]);
    if log_text(&log).contains("pidfd_open unavailable") {
        eprintln!("kernel without pidfd_open: skipping");
        return;
    }
    a.kill();
    until(&mut c, &mut t, |t| !running(t, "A")).await;
    assert!(log_text(&log).contains("watched process exited: polling now"));
}

#[tokio::test]
async fn file_rewrite_adds_and_removes_apps_and_bad_file_keeps_old_config() {
    let (dir, l, addr, arg_a) = setup("reload").await;
    let arg_b = sleep_arg();
    let _a = spawn_sleep(&arg_a);
    let b = spawn_sleep(&arg_b);
    let cfg = dir.path("d.toml");
    let log = dir.path("log");
    let head = head("", &[addr]);
    write_file(&cfg, &format!("{head}{}", sleep_app("A", &arg_a)));
    let _d = spawn_daemon(&cfg, &log);
    let (mut c, mut t) = accept_synced(&l).await;
    until(&mut c, &mut t, |t| running(t, "A")).await;
    let v1 = t.config_version;
    assert!(!t.apps.contains_key("B"));

    // Rewrite: B added, A removed. Both show up in deltas, with a new config version.
    write_file(&cfg, &format!("{head}{}", sleep_app("B", &arg_b)));
    let seen = until(&mut c, &mut t, |t| {
        !t.apps.contains_key("A") && pids(t, "B") == vec![b.pid()]
    })
    .await;
    assert!(t.config_version > v1);
    assert!(seen
        .iter()
        .any(|m| matches!(m, DaemonMessage::Delta(d) if d.removed == vec!["A".to_string()])));
    let v2 = t.config_version;

    // An invalid file is rejected with its location; the old configuration stays.
    write_file(
        &cfg,
        &format!("{head}[[app]]\nname = \"C\"\ncmdline = '(oops'\n"),
    );
    let text = wait_log(&log, "invalid configuration, keeping the previous one").await;
    assert_contains(&text, "cmdline");
    assert!(
        text.contains(":") && text.contains("invalid regex"),
        "{text}"
    );
    // Still alive and reporting with the old version: a few heartbeats arrive.
    let mut beats = 0;
    while beats < 3 {
        let m = next(&mut c).await;
        t.apply(&m).expect("continuity");
        if let DaemonMessage::Heartbeat(h) = m {
            assert_eq!(h.config_version, v2);
            beats += 1;
        }
    }
    assert!(running(&t, "B"));
    assert!(!t.apps.contains_key("C"));
}

/// Editing `poll_interval_ms` in the watched file takes effect: the poll timer restarts
/// with the new period. The daemon starts polling every 10 minutes; after the file is
/// rewritten with 200 ms, a process started afterwards can only be reported by a poll
/// (pidfd sees exits only), so its report arriving before the test deadline (30 s)
/// proves the short interval is in force. It also needs the file to be checked more often
/// than every 10 minutes.
#[tokio::test]
async fn file_edit_of_poll_interval_restarts_the_poll_timer() {
    let (dir, l, addr, arg) = setup("interval").await;
    let cfg = dir.path("d.toml");
    let log = dir.path("log");
    let body = format!("{}{}", proxies(&[addr]), sleep_app("A", &arg));
    let daemon = |poll_ms: u64| {
        format!("[daemon]\nkey = \"{TEST_KEY}\"\npoll_interval_ms = {poll_ms}\nheartbeat_interval_ms = 200\n")
    };
    write_file(&cfg, &format!("version = 1\n{}{body}", daemon(600_000)));
    let _d = spawn_daemon(&cfg, &log);
    let (mut c, mut t) = accept_synced(&l).await;
    assert_eq!(t.config_version, 1);
    assert!(!running(&t, "A"));

    write_file(&cfg, &format!("version = 2\n{}{body}", daemon(200)));
    // Heartbeats carry the version: once it is 2, the reload (and its one poll) is done.
    tokio::time::timeout(DEADLINE, until(&mut c, &mut t, |t| t.config_version == 2))
        .await
        .expect("file change not reloaded");
    assert!(!running(&t, "A"));
    let a = spawn_sleep(&arg);
    // Heartbeats keep arriving, so `until`'s per-message deadline never fires: bound the
    // whole wait (well under the old 10-minute period).
    tokio::time::timeout(
        DEADLINE,
        until(&mut c, &mut t, |t| pids(t, "A") == vec![a.pid()]),
    )
    .await
    .expect("new process not reported: the 200 ms poll interval is not in force");
    assert!(running(&t, "A"));
    assert!(log_text(&log).contains("poll interval changed"));
}

#[tokio::test]
async fn sighup_reloads_when_file_watching_is_off() {
    let (dir, l, addr, arg) = setup("hup").await;
    let _a = spawn_sleep(&arg);
    let cfg = dir.path("d.toml");
    let head = head("watch_config = false\n", &[addr]);
    write_file(&cfg, &head);
    let d = spawn_daemon(&cfg, &dir.path("log"));
    let (mut c, mut t) = accept_synced(&l).await;
    assert!(t.apps.is_empty());
    write_file(
        &cfg,
        &format!("version = 7\n{head}{}", sleep_app("A", &arg)),
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    until(&mut c, &mut t, |t| running(t, "A")).await;
    assert_eq!(t.config_version, 7);
}

#[tokio::test]
async fn proxy_that_comes_back_gets_hello_and_full_snapshot() {
    let (dir, l, addr, arg) = setup("reconn").await;
    let a = spawn_sleep(&arg);
    let text = head("", std::slice::from_ref(&addr)) + &sleep_app("A", &arg);
    let (_d, mut c, mut t) = start(&dir, &l, &text).await;
    until(&mut c, &mut t, |t| running(t, "A")).await;
    let instance = c.hello().instance;

    // The proxy goes away entirely (connection and listener).
    drop(c);
    drop(l);
    // ... and comes back on the same address.
    let l = DaemonListener::bind(addr.as_str()).await.expect("rebind");
    let (mut c, t2) = accept_synced(&l).await;
    assert_eq!(c.hello().instance, instance, "same daemon run");
    // accept_synced checked frame seq 0 = hello and seq 1 = snapshot; the snapshot is
    // complete on its own: A running with its pid, no delta needed.
    assert!(t2.synced);
    assert_eq!(pids(&t2, "A"), vec![a.pid()]);
    let m = next(&mut c).await;
    assert!(
        matches!(m, DaemonMessage::Heartbeat(_) | DaemonMessage::Delta(_)),
        "{m:?}"
    );
}

#[tokio::test]
async fn two_proxies_losing_one_does_not_disturb_the_other() {
    let dir = TempDir::new("dual");
    let (l1, addr1) = listener().await;
    let (l2, addr2) = listener().await;
    let arg = sleep_arg();
    let mut a = spawn_sleep(&arg);
    let text = head("", &[addr1.clone(), addr2]) + &sleep_app("A", &arg);
    let (_d, c1, mut t1) = start(&dir, &l1, &text).await;
    let (mut c2, mut t2) = accept_synced(&l2).await;
    let _ = &mut t1;
    until(&mut c2, &mut t2, |t| running(t, "A")).await;

    // P1 dies (listener closed too, so the daemon's reconnects to it fail).
    drop(c1);
    drop(l1);

    // P2 keeps getting heartbeats with consecutive numbers on the same connection...
    let mut last_hb = None;
    let mut beats = 0;
    while beats < 5 {
        let m = next(&mut c2).await;
        assert!(
            !matches!(m, DaemonMessage::Hello(_)),
            "P2 must not be reset"
        );
        t2.apply(&m).expect("continuity");
        if let DaemonMessage::Heartbeat(h) = m {
            if let Some(prev) = last_hb {
                assert_eq!(h.heartbeat_seq, prev + 1);
            }
            last_hb = Some(h.heartbeat_seq);
            beats += 1;
        }
    }
    // ... and the status change, as a delta.
    a.kill();
    let seen = until(&mut c2, &mut t2, |t| !running(t, "A")).await;
    assert!(seen.iter().any(|m| matches!(m, DaemonMessage::Delta(_))));

    // P1 comes back: gets its own Hello + snapshot showing A down; P2 is not reset.
    let l1 = DaemonListener::bind(addr1.as_str()).await.expect("rebind");
    let (_c1, t1) = accept_synced(&l1).await;
    assert!(!running(&t1, "A"));
    for _ in 0..3 {
        let m = next(&mut c2).await;
        assert!(!matches!(
            m,
            DaemonMessage::Hello(_) | DaemonMessage::Snapshot(_)
        ));
        t2.apply(&m).expect("continuity");
    }
}

#[tokio::test]
async fn unreachable_proxy_is_retried_then_given_up_without_crash() {
    let (dir, l, addr, _) = setup("unreach").await;
    let dead = format!("127.0.0.1:{}", dead_port());
    let cfg = dir.file(
        "d.toml",
        &format!(
            "{}[[proxy]]\naddress = \"{dead}\"\nmax_attempts = 3\nreconnect_min_ms = 20\n{}",
            head("", &[]),
            proxies(&[addr])
        ),
    );
    let log = dir.path("log");
    let mut d = spawn_daemon(&cfg, &log);
    let (mut c, mut t) = accept_synced(&l).await;
    let text = wait_log(&log, "proxy_retries_exhausted").await;
    assert_contains(&text, "cannot connect to proxy");
    assert_contains(&text, &dead);
    assert_eq!(text.matches("cannot connect to proxy").count(), 3, "{text}");
    // The good proxy is still served.
    for _ in 0..3 {
        let m = next(&mut c).await;
        t.apply(&m).expect("continuity");
    }
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "daemon must still run"
    );
}

#[tokio::test]
async fn config_push_is_versioned_and_acknowledged() {
    let (dir, l, addr, arg) = setup("push").await;
    let a = spawn_sleep(&arg);
    let cfg = dir.path("d.toml");
    let proxy_addr = addr.clone();
    let head = head("", &[addr]);
    write_file(&cfg, &format!("version = 3\n{head}"));
    let _d = spawn_daemon(&cfg, &dir.path("log"));
    let (mut c, mut t) = accept_synced(&l).await;
    assert_eq!(c.hello().config_version, 3);

    let new_cfg = format!("{head}{}", sleep_app("A", &arg));
    c.push_config(5, &new_cfg).await.expect("push");
    let seen = until(&mut c, &mut t, |t| pids(t, "A") == vec![a.pid()]).await;
    let ack = seen
        .iter()
        .find_map(|m| match m {
            DaemonMessage::ConfigAck(a) => Some(a.clone()),
            _ => None,
        })
        .expect("ack before the resulting delta");
    assert!(ack.accepted);
    assert_eq!((ack.version, ack.active_version), (5, 5));
    assert_eq!(t.config_version, 5);
    // Persisted so a restart keeps it.
    let on_disk = std::fs::read_to_string(&cfg).expect("read");
    assert!(on_disk.contains("version = 5") && on_disk.contains("name = \"A\""));
    // The replaced file is kept for rollback.
    let prev = std::fs::read_to_string(dir.path("d.toml.prev")).expect("FILE.prev");
    assert_eq!(prev, format!("version = 3\n{head}"));

    // Same version again (e.g. via a second proxy): acknowledged, nothing re-applied.
    c.push_config(5, &new_cfg).await.expect("push");
    let ack = next_ack(&mut c, &mut t).await;
    assert!(ack.accepted && ack.active_version == 5);

    // Stale version: rejected.
    c.push_config(4, &new_cfg).await.expect("push");
    let ack = next_ack(&mut c, &mut t).await;
    assert!(!ack.accepted);
    assert!(
        ack.error.as_deref().unwrap_or("").contains("stale"),
        "{ack:?}"
    );

    // Invalid contents: rejected with a precise location; version 5 stays.
    c.push_config(6, &format!("{head}[[app]]\nname = \"X\"\n"))
        .await
        .expect("push");
    let ack = next_ack(&mut c, &mut t).await;
    assert!(!ack.accepted);
    assert_eq!(ack.active_version, 5);
    let err = ack.error.unwrap_or_default();
    assert!(err.starts_with("config push v6 (from 127.0.0.1:"), "{err}");
    assert!(
        err.contains("key `app[0].name`") && err.contains("needs at least one"),
        "{err}"
    );
    assert!(running(&t, "A"));

    // Pushes that would cut the daemon off, or turn authentication off: rejected, and the
    // file on disk stays as it was.
    let before = std::fs::read_to_string(&cfg).expect("read");
    let other = format!("127.0.0.1:{}", dead_port());
    let no_auth = new_cfg.replace(&format!("key = \"{TEST_KEY}\""), "auth = \"none\"");
    for (v, text, want) in [
        (7, String::new(), "no [[proxy]]"),
        (
            8,
            new_cfg.replace(&proxy_addr, &other),
            "does not list the proxy",
        ),
        (9, no_auth, "cannot turn link authentication off"),
    ] {
        c.push_config(v, &text).await.expect("push");
        let ack = next_ack(&mut c, &mut t).await;
        assert!(!ack.accepted, "push v{v} accepted");
        assert_eq!(ack.active_version, 5);
        assert!(ack.error.as_deref().unwrap_or("").contains(want), "{ack:?}");
    }
    assert_eq!(std::fs::read_to_string(&cfg).expect("read"), before);
}

async fn next_ack(c: &mut DaemonConnection, t: &mut StatusTable) -> legacy_protocol::ConfigAck {
    loop {
        let m = next(c).await;
        t.apply(&m).expect("continuity");
        if let DaemonMessage::ConfigAck(a) = m {
            return a;
        }
    }
}

/// Not a test on its own: the body of the "legacy TCP server" child process used by
/// `ports_connections_and_pid_file` (the test binary re-executes itself with this filter).
#[test]
#[ignore = "helper process, run by ports_connections_and_pid_file"]
fn helper_tcp_server() {
    let Ok(port_file) = std::env::var("LD_TEST_PORT_FILE") else {
        return;
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::fs::write(&port_file, port.to_string()).expect("port file");
    let mut held = Vec::new();
    for s in l.incoming().flatten() {
        held.push(s);
    }
}

#[tokio::test]
async fn ports_connections_and_pid_file() {
    let (dir, l, addr, _) = setup("tcp").await;
    let token = format!("tcpsrv{}", unique());
    let port_file = dir.path("port");
    let server = Proc::new(
        "helper",
        die_with_parent(&mut Command::new(std::env::current_exe().expect("exe")))
            .args([
                "--exact",
                "daemon::helper_tcp_server",
                "--ignored",
                "--nocapture",
                &token,
            ])
            .env("LD_TEST_PORT_FILE", &port_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server"),
    );
    let port: u16 = loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            if let Ok(p) = s.trim().parse() {
                break p;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let pid_file = dir.path("srv.pid");
    std::fs::write(&pid_file, format!("{}\n", server.pid())).expect("pid file");
    let text = format!(
        "{}\
             [[app]]\nname = \"srv\"\ncmdline = '{token}'\nports = [{port}]\ncount_connections = true\nrequire_listen = true\n[app.load]\nweight = 3\n\
             [[app]]\nname = \"bypid\"\npid_file = \"{}\"\n",
        head("", &[addr]),
        pid_file.display()
    );
    let (_d, mut c, mut t) = start(&dir, &l, &text).await;
    until(&mut c, &mut t, |t| running(t, "srv") && running(t, "bypid")).await;
    assert_eq!(pids(&t, "srv"), vec![server.pid()]);
    assert_eq!(pids(&t, "bypid"), vec![server.pid()]);
    assert_eq!(t.apps["srv"].load_hints.weight, Some(3));
    let p = &t.apps["srv"].ports[0];
    assert_eq!((p.port, p.listening), (port, Some(true)));

    // Two clients connect: the established count on the service port becomes 2.
    let _c1 = std::net::TcpStream::connect(("127.0.0.1", port)).expect("c1");
    let _c2 = std::net::TcpStream::connect(("127.0.0.1", port)).expect("c2");
    until(&mut c, &mut t, |t| {
        t.apps["srv"].ports[0].connections == Some(2)
    })
    .await;

    // A stale pid file (process gone) means not running.
    std::fs::write(&pid_file, "999999999\n").expect("pid file");
    until(&mut c, &mut t, |t| !running(t, "bypid")).await;
    assert!(running(&t, "srv"));
}

#[tokio::test]
async fn state_file_survives_daemon_restart() {
    let (dir, l, addr, arg) = setup("state").await;
    let mut a = spawn_sleep(&arg);
    let state = dir.path("state.json");
    let cfg = dir.file(
        "d.toml",
        &format!(
            "{}{}",
            head(&format!("state_file = \"{}\"\n", state.display()), &[addr]),
            sleep_app("A", &arg)
        ),
    );
    let mut d = spawn_daemon(&cfg, &dir.path("log1"));
    let (mut c, mut t) = accept_synced(&l).await;
    until(&mut c, &mut t, |t| running(t, "A")).await;
    let (seq_before, instance) = (t.state_seq, c.hello().instance);
    // The state was written before it was sent.
    let on_disk: legacy_protocol::Snapshot =
        serde_json::from_slice(&std::fs::read(&state).expect("state file")).expect("json");
    assert!(on_disk.state_seq >= seq_before);
    assert_eq!(on_disk.apps[0].pids, vec![a.pid()]);

    // Daemon crashes; the application dies while the daemon is down.
    d.kill();
    a.kill();
    let _d2 = spawn_daemon(&cfg, &dir.path("log2"));
    let (c2, t2) = accept_synced(&l).await;
    assert_ne!(c2.hello().instance, instance, "a new daemon run");
    // Numbering continues from the persisted state and the change made while down is a
    // new state, not a silent reset.
    assert!(t2.state_seq > seq_before, "{} > {seq_before}", t2.state_seq);
    assert!(!running(&t2, "A"));
}

#[tokio::test]
async fn config_push_refused_when_disabled() {
    let (dir, l, addr, _) = setup("nopush").await;
    let text = head("accept_push = false\n", &[addr]);
    let (_d, mut c, mut t) = start(&dir, &l, &text).await;
    c.push_config(9, &format!("[daemon]\nkey = \"{TEST_KEY}\"\n"))
        .await
        .expect("push");
    let ack = next_ack(&mut c, &mut t).await;
    assert!(!ack.accepted);
    assert_eq!((ack.version, ack.active_version), (9, 1));
    assert!(ack
        .error
        .unwrap_or_default()
        .contains("accept_push = false"));
    assert_eq!(
        std::fs::read_to_string(dir.path("d.toml")).expect("read"),
        text,
        "file untouched"
    );
}
