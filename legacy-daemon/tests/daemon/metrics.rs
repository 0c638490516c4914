//! `legacy-daemon --metrics ADDR` (issue 16 item 3): the real binary, a watched process, the
//! library's proxy-side receiver standing in for proxy-pe; the endpoint is scraped after
//! known events and the values asserted.

use crate::common::*;
use rserpool_tests::metrics::{address_in_use, free_addr, scrape_async, value};
use std::path::Path;

#[tokio::test]
async fn metrics_count_reports_and_show_link_and_app_state() {
    let dir = TempDir::new("metrics");
    let (l, addr) = listener().await;
    let arg = format!("100000.{}", unique());
    let app = spawn_sleep(&arg);
    let cfg = dir.path("d.toml");
    let re = arg.replace('.', "\\.");
    write_file(
        &cfg,
        &format!(
            "[daemon]\nkey = \"{TEST_KEY}\"\nid = \"host-k\"\npoll_interval_ms = 200\n\
             heartbeat_interval_ms = 100000\n\
             [[proxy]]\naddress = \"{addr}\"\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n\
             [[app]]\nname = \"A\"\nexe = \"sleep\"\ncmdline = '^sleep {re}$'\n"
        ),
    );
    let maddr = free_addr();
    let _d = legacy_protocol::test_support::spawn_logged(
        "legacy-daemon",
        Path::new(daemon_bin()),
        &[
            "--config".into(),
            cfg.display().to_string(),
            "--metrics".into(),
            maddr.to_string(),
        ],
        &[("LEGACY_DAEMON_LOG", "debug")],
        &dir.path("log"),
    );
    let (mut c, mut t) = accept_synced(&l).await;
    until(&mut c, &mut t, |t| running(t, "A")).await;

    let proxy = |name: &str, extra: &str| format!("{name}{{proxy=\"{addr}\"{extra}}}");
    let page = scrape_async(maddr).await;
    // One connection: one hello, one snapshot, link up, one successful connect.
    assert_eq!(
        value(
            &page,
            &proxy("legacy_daemon_reports_total", ",kind=\"hello\"")
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            &proxy("legacy_daemon_reports_total", ",kind=\"snapshot\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&page, &proxy("legacy_daemon_proxy_link_up", "")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &page,
            &proxy("legacy_daemon_proxy_connects_total", ",result=\"ok\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&page, "legacy_daemon_application_running{app=\"A\"}"),
        Some(1.0)
    );
    assert_eq!(value(&page, "legacy_daemon_config_version"), Some(1.0));
    let polls = value(&page, "legacy_daemon_poll_duration_seconds_count").expect("poll count");
    assert!(polls >= 1.0, "{page}");

    // Stop the application: a delta is reported and the gauge drops to 0.
    drop(app);
    until(&mut c, &mut t, |t| !running(t, "A")).await;
    let page = scrape_async(maddr).await;
    assert_eq!(
        value(&page, "legacy_daemon_application_running{app=\"A\"}"),
        Some(0.0),
        "{page}"
    );
    let deltas = value(
        &page,
        &proxy("legacy_daemon_reports_total", ",kind=\"delta\""),
    )
    .unwrap_or(0.0);
    assert!(deltas >= 1.0, "{page}");
    assert!(value(&page, "legacy_daemon_poll_duration_seconds_count").unwrap() > polls);

    // The proxy goes away: the link shows down.
    drop(c);
    drop(l);
    let mut down = false;
    for _ in 0..200 {
        let page = scrape_async(maddr).await;
        if value(&page, &proxy("legacy_daemon_proxy_link_up", "")) == Some(0.0) {
            down = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(down, "link never shown down");
}

/// Start-up error: the metrics address is taken; the message names it and the fix.
#[test]
fn metrics_address_in_use_is_named_with_the_fix() {
    let dir = TempDir::new("metrics-busy");
    let cfg = dir.file(
        "d.toml",
        &format!(
            "[daemon]\nkey = \"{TEST_KEY}\"\n[[proxy]]\naddress = \"127.0.0.1:{}\"\n\
             [[app]]\nname = \"A\"\nexe = \"nothing-here\"\n",
            dead_port()
        ),
    );
    let (addr, err) = address_in_use(daemon_bin(), &["--config", &cfg.display().to_string()]);
    assert_contains(&err, &format!("cannot listen on {addr} (--metrics)"));
    assert_contains(&err, "pick a free port");
}
