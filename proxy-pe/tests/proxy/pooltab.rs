//! Issue 19 items 2, 7 and 8 with real processes over TCP on loopback: the pooling table
//! fed by the daemons (`[application.join]`), two mode A proxies fronting the same legacy
//! servers (`proxy_id`), and the lifetime counted from the legacy process's own start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;

/// Daemon `i`'s configuration: reports to every proxy of the rig, advertises its echo
/// server's address (`[daemon] advertise`), watches the echo server as application
/// `app_name` (no `[[app]]` at all when `None`).
fn daemon_config(rig: &Rig, i: usize, app_name: Option<&str>) -> String {
    let a = rig.echo_addrs[i];
    let mut s = format!(
        "[daemon]\nid = \"d{}\"\nkey_file = \"{}\"\npoll_interval_ms = 100\nadvertise = \"{}\"\n\n",
        i + 1,
        rig.dir.join(format!("d{}.key", i + 1)).display(),
        a.ip()
    );
    for p in &rig.daemon_ports {
        s += &format!("[[proxy]]\naddress = \"127.0.0.1:{p}\"\nreconnect_max_ms = 500\n\n");
    }
    if let Some(name) = app_name {
        let re = format!("--listen={a}").replace('.', "\\.");
        s += &format!(
            "[[app]]\nname = \"{name}\"\nexe = \"legacy-echo\"\ncmdline = '{re}'\nports = [{}]\nrequire_listen = true\n",
            a.port()
        );
    }
    s
}

fn daemon_path(rig: &Rig, i: usize) -> PathBuf {
    rig.dir.join(format!("daemon-{i}.toml"))
}

/// Starts the three daemons with [`daemon_config`].
fn start_advertising_daemons(rig: &mut Rig) {
    for i in 0..3 {
        std::fs::write(daemon_path(rig, i), daemon_config(rig, i, Some("echo"))).expect("write");
        let p = spawn(
            &format!("d{}", i + 1),
            &bin("legacy-daemon"),
            &[format!("--config={}", daemon_path(rig, i).display())],
            &rig.dir.join(format!("daemon-{i}.log")),
        );
        rig.daemons.push(Some(p));
    }
}

/// A proxy configuration whose application has no `[[application.server]]` at all: d1
/// and d2 may join, d3 (which has a key and connects) may not.
fn join_proxy_config(rig: &Rig, k: usize) -> String {
    let mut s = format!(
        "mode = \"broker\"\nregistrar_transport = \"tcp\"\ndaemon_listen = \"127.0.0.1:{}\"\ncontrol_listen = \"{}\"\ncontrol_socket = \"ctl-{k}/control.sock\"\nadmin_state_file = \"admin-{k}.json\"\nregistrars = [\"{}\"]\n\n[detection]\nheartbeat_miss_factor = 20\nsuspect_grace_ms = 5000\nprobe_interval_ms = 200\n\n[[application]]\nname = \"echo\"\npool_handle = \"EchoPool\"\npolicy = \"round-robin\"\nlisten = \"{}\"\n\n[application.join]\ndaemons = [\"d1\", \"d2\"]\n",
        rig.daemon_ports[k], rig.controls[k], rig.registrar_addr, rig.listens[k]
    );
    for i in 1..=3 {
        s += &format!("\n[[daemon]]\nid = \"d{i}\"\nkey_file = \"d{i}.key\"\n");
    }
    s
}

fn names(r: &proxy_pe::control::Report) -> Vec<String> {
    r.proxy.applications[0]
        .servers
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

/// Item 2: the application the daemons report joins the pool without per-server entries,
/// only for the allowed daemons; the table follows a daemon's configuration change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_feed_the_pooling_table_and_unlisted_daemons_never_join() {
    let mut rig = Rig::new("pooltab-join");
    rig.add_proxy(|rig| join_proxy_config(rig, 0));
    start_advertising_daemons(&mut rig);
    // d3 is connected and reports `echo` too, but is not in the join list.
    let r = rig
        .until(0, "d1 and d2 joined and running, d3 connected", |r| {
            let s = &r.proxy.applications[0].servers;
            s.len() == 2
                && s.iter().all(|s| s.selectable && s.joined)
                && r.proxy.daemons.iter().any(|d| d.id == "d3" && d.synced)
        })
        .await;
    assert_eq!(names(&r), vec!["d1", "d2"]);
    assert_eq!(server(&r, "d1").address, rig.echo_addrs[0]);
    assert_eq!(server(&r, "d2").address, rig.echo_addrs[1]);
    assert!(r
        .proxy
        .events
        .iter()
        .any(|e| e.kind == "join-refused" && e.subject == "d3"));
    // Sessions go to IP1 and IP2 only, alternately.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (mut s, who) = session(rig.listens[0]).await;
        assert_eq!(s.echo("x").await, "x");
        s.close().await;
        seen.push(who);
    }
    seen.sort();
    assert_eq!(seen, vec!["IP1", "IP1", "IP2", "IP2"]);
    // d1's configuration no longer has the application (the daemon re-reads its file):
    // d1 leaves the table and gets no sessions.
    std::fs::write(daemon_path(&rig, 0), daemon_config(&rig, 0, None)).expect("write");
    let r = rig
        .until(0, "d1 left", |r| names(r) == vec!["d2".to_string()])
        .await;
    assert!(r
        .proxy
        .events
        .iter()
        .any(|e| e.kind == "server-left" && e.subject == "d1"));
    for _ in 0..2 {
        let (s, who) = session(rig.listens[0]).await;
        s.close().await;
        assert_eq!(who, "IP2");
    }
    // Added back: d1 joins again.
    std::fs::write(daemon_path(&rig, 0), daemon_config(&rig, 0, Some("echo"))).expect("write");
    rig.until(0, "d1 joined again", |r| {
        let s = &r.proxy.applications[0].servers;
        s.len() == 2 && s.iter().all(|s| s.selectable)
    })
    .await;
    // d3 never joined.
    let r = rig.report(0).await.expect("report");
    assert!(!names(&r).contains(&"d3".to_string()));
}

/// Replaces the rig's registrar with one that returns up to 10 PEs per resolution (the
/// default is 3), on the same address.
fn registrar_with_all_items(rig: &mut Rig) {
    rig.replace_registrar(
        500,
        &["--enrp=off", "--max-hres-items=10"],
        "enrp-server.log",
    );
}

/// Item 7: two mode A proxies with their own `proxy_id` in front of the same three legacy
/// servers register six distinct PEs (no collision), each proxy's status shows the
/// registrar's acceptance, and a hung proxy (SIGSTOP: its keep-alives go unanswered)
/// takes only its own PEs out: every legacy server stays in the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mode_a_proxies_do_not_collide_and_a_hung_one_is_no_outage() {
    let mut rig = Rig::new("pooltab-dual");
    registrar_with_all_items(&mut rig);
    for k in 0..2 {
        rig.add_proxy(|rig| {
            // The default registration life (300 s, T4 = 280 s): a resumed proxy's PEs
            // come back by its stall detection, not by T4.
            format!(
                "proxy_id = \"proxy-{k}\"\n{}",
                rig.proxy_config(k, "registration", "round-robin", &[])
            )
        });
    }
    rig.start_daemons();
    let mut ids = Vec::new();
    for k in 0..2 {
        let r = rig
            .until(k, "three registrations accepted by the registrar", |r| {
                r.proxy.applications[0].servers.iter().all(|s| {
                    s.registered
                        && s.registrar_state
                            .as_ref()
                            .is_some_and(|a| a.state == proxy_pe::registrar::PeRegState::Accepted)
                })
            })
            .await;
        ids.extend(r.proxy.applications[0].servers.iter().map(|s| s.pe_id));
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "PE ids of both proxies: {ids:x?}");
    let mut want: Vec<SocketAddr> = rig
        .echo_addrs
        .iter()
        .chain(rig.echo_addrs.iter())
        .copied()
        .collect();
    want.sort();
    resolve_until(rig.registrar_addr, "EchoPool", |v| v == want.as_slice()).await;

    // Proxy 0 hangs: the registrar's keep-alives to it go unanswered (500 ms interval and
    // timeout here) and its three PEs are removed; proxy 1's stay, so every legacy server
    // is still in the pool.
    signal(&rig.proxies[0], libc::SIGSTOP);
    let mut once: Vec<SocketAddr> = rig.echo_addrs.clone();
    once.sort();
    let left = resolve_until(rig.registrar_addr, "EchoPool", |v| v.len() == 3).await;
    assert_eq!(left, once);
    // Still so a while later (several keep-alive rounds).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(resolve(rig.registrar_addr, "EchoPool").await, once);
    let r = rig.report(1).await.expect("proxy 1 answers");
    assert!(r.proxy.applications[0].servers.iter().all(|s| s.registered));
    // Proxy 0 resumes: it notices it was stalled (its 200 ms tick came seconds late) and
    // sends every registration again at once, long before T4: six again.
    signal(&rig.proxies[0], libc::SIGCONT);
    resolve_until(rig.registrar_addr, "EchoPool", |v| v == want.as_slice()).await;
    let r = rig
        .until(0, "proxy 0 resynced", |r| r.registrar.resyncs >= 1)
        .await;
    assert!(r.proxy.applications[0].servers.iter().all(|s| s.registered));
}

/// Item 8: the lifetime counts from the legacy process's own start time (reported by the
/// daemon), so a proxy restart does not give the server a fresh work cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_is_not_reset_by_a_proxy_restart() {
    let mut rig = Rig::new("pooltab-life");
    rig.start_proxies(1, "broker", "round-robin", &["lifetime_s = 3600"]);
    rig.start_daemons();
    let r = rig
        .until(0, "IP1 running with its start time", |r| {
            server(r, "IP1").selectable && server(r, "IP1").running_since_ms.is_some()
        })
        .await;
    let origin = server(&r, "IP1").running_since_ms.expect("origin");
    // The echo server was started before the proxy and the daemons.
    assert!(origin < r.proxy.now_ms, "{origin} vs {}", r.proxy.now_ms);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    rig.kill_proxy(0);
    rig.start_proxy(0);
    let r = rig
        .until(0, "IP1 running again after the proxy restart", |r| {
            server(r, "IP1").selectable
        })
        .await;
    let v = server(&r, "IP1");
    // Same origin (the daemon's boot-time estimate is stable), so the remaining lifetime
    // went on shrinking across the restart.
    assert_eq!(v.running_since_ms, Some(origin));
    let remaining = v.lifetime_remaining_ms.expect("lifetime");
    assert!(
        remaining <= 3_600_000 - 1_500,
        "remaining {remaining} ms: the work cycle restarted with the proxy"
    );
}
