//! `proxy-pe run --metrics ADDR` (issue 16 item 3) with real processes (enrp-server,
//! proxy-pe, three legacy-daemons, three legacy-echo servers): the endpoint is scraped after
//! known actions — sessions, a mid-session server failure, a refused session, a daemon
//! killed — and the values asserted.

use crate::common::*;
use rserpool_tests::metrics::{
    address_in_use, assert_value, free_addr, sample_names, scrape_async, value,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_sessions_failovers_and_daemon_links() {
    let maddr = free_addr();
    let mut rig = Rig::with_proxy("metrics", "broker", "round-robin", |r| {
        r.proxy_args = vec![vec![format!("--metrics={maddr}")]]
    });
    rig.until(0, "all servers selectable and registered", |r| {
        all_selectable(r) && r.registrar.accepted >= 1
    })
    .await;
    let via = rig.listens[0];
    let sel = |s: &str| {
        format!("proxy_pe_server_selections_total{{application=\"echo\",server=\"{s}\"}}")
    };
    let health = |s: &str, h: &str| {
        format!("proxy_pe_server_health{{application=\"echo\",server=\"{s}\",health=\"{h}\"}}")
    };

    let p = scrape_async(maddr).await;
    for s in NAMES {
        assert_value(&p, &sel(s), 0.0);
        assert_value(&p, &health(s, "running"), 1.0);
        assert_value(&p, &health(s, "down"), 0.0);
    }
    for d in ["d1", "d2", "d3"] {
        assert_value(
            &p,
            &format!("proxy_pe_daemon_connected{{daemon=\"{d}\"}}"),
            1.0,
        );
    }
    assert_value(&p, "proxy_pe_registrar_connected", 1.0);
    assert_value(&p, "proxy_pe_sessions_opened_total", 0.0);

    // Three sessions, round robin: one selection each; the last stays open.
    for _ in 0..2 {
        let (s, _) = session(via).await;
        s.close().await;
    }
    let (mut s, who) = session(via).await;
    assert_eq!(who, "IP3");
    rig.until(0, "one open session", |r| r.proxy.sessions == 1)
        .await;
    let p = scrape_async(maddr).await;
    assert_value(&p, "proxy_pe_sessions_opened_total", 3.0);
    assert_value(&p, "proxy_pe_sessions", 1.0);
    for s in NAMES {
        assert_value(&p, &sel(s), 1.0);
    }
    assert_value(
        &p,
        "proxy_pe_server_active_sessions{application=\"echo\",server=\"IP3\"}",
        1.0,
    );

    // IP3 dies mid-session: the session fails over to IP1.
    rig.kill_echo(2);
    assert_eq!(s.server().await, "IP1");
    assert_eq!(s.echo("after").await, "after");
    s.close().await;
    rig.until(0, "IP3 down, sessions released", |r| {
        r.proxy.sessions == 0 && !server(r, "IP3").running
    })
    .await;
    let p = scrape_async(maddr).await;
    // One failover: by the relay (server-failed) or by the core's move order after the
    // daemon reported the kill (moved), whichever comes first.
    let failed = value(&p, "proxy_pe_failovers_total{reason=\"server-failed\"}").unwrap();
    let moved = value(&p, "proxy_pe_failovers_total{reason=\"moved\"}").unwrap();
    assert_eq!(failed + moved, 1.0, "{p}");
    assert_value(&p, "proxy_pe_failovers_failed_total", 0.0);
    assert_value(&p, &sel("IP1"), 2.0);
    assert_value(
        &p,
        "proxy_pe_server_selectable{application=\"echo\",server=\"IP3\"}",
        0.0,
    );
    assert_value(&p, &health("IP3", "running"), 0.0);

    // Daemon d2 killed: its link shows down.
    rig.kill_daemon(1);
    rig.until(0, "d2 disconnected", |r| {
        r.proxy.daemons.iter().any(|d| d.id == "d2" && !d.connected)
    })
    .await;
    let p = scrape_async(maddr).await;
    assert_value(&p, "proxy_pe_daemon_connected{daemon=\"d2\"}", 0.0);
    assert_value(&p, "proxy_pe_daemon_connected{daemon=\"d1\"}", 1.0);

    // Nothing running: a session is refused (step 197).
    rig.kill_echo(0);
    rig.kill_echo(1);
    rig.until(0, "no server selectable", none_selectable).await;
    let mut s = Session::open(via).await;
    assert!(s.line().await.starts_with("-ERR"));
    let p = scrape_async(maddr).await;
    assert_value(&p, "proxy_pe_sessions_refused_total", 1.0);
    // Every family the README and deploy/ rules name is on the page.
    let names = sample_names(&p);
    for n in [
        "proxy_pe_server_load",
        "proxy_pe_daemon_last_frame_age_seconds",
        "proxy_pe_config_reload_failed",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
    }
}

/// Start-up error: the metrics address is taken; the message names it and the fix.
#[test]
fn metrics_address_in_use_is_named_with_the_fix() {
    let dir = std::env::temp_dir().join(format!("proxy-pe-metrics-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "mode = \"broker\"\ndaemon_listen = \"127.0.0.1:{}\"\ncontrol_listen = \"127.0.0.1:{}\"\n\
             control_socket = \"ctl/control.sock\"\nadmin_state_file = \"admin.json\"\n\
             registrars = [\"127.0.0.1:1\"]\nregistrar_transport = \"tcp\"\n",
            port(),
            port()
        ),
    )
    .unwrap();
    let (addr, err) = address_in_use(
        env!("CARGO_BIN_EXE_proxy-pe"),
        &["run", "--config", &cfg.display().to_string()],
    );
    assert!(
        err.contains(&format!(
            "cannot listen on {addr} (metrics endpoint, --metrics)"
        )),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
