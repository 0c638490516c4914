//! The `legacy-daemon` binary under a stand-in for systemd (`deploy/legacy-daemon.service`,
//! `Type=notify`): `READY=1` once running, `WATCHDOG=1` pings when `WATCHDOG_USEC` is set,
//! none otherwise, SIGHUP reloads without stopping, `STOPPING=1` on SIGTERM.

use rserpool_tests::sd_notify::Notified;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_legacy-daemon");

/// A configuration with one application and no proxy (the daemon only polls).
fn config(dir: &std::path::Path) -> String {
    let path = dir.join("d.toml");
    std::fs::write(
        &path,
        "[daemon]\nkey = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n\
         id = \"sd-host\"\npoll_interval_ms = 100\n[[app]]\nname = \"A\"\nexe = \"no-such-binary-xyz\"\n",
    )
    .expect("write config");
    path.display().to_string()
}

#[test]
fn ready_watchdog_reload_and_stopping() {
    let dir = Notified::dir("legacy-life");
    let cfg = config(&dir);
    Notified::start(dir, BIN, &["--config", &cfg], Some(200_000)).check_lifecycle();
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let dir = Notified::dir("legacy-nowd");
    let cfg = config(&dir);
    let n = Notified::start(dir, BIN, &["--config", &cfg], None);
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    assert_eq!(
        n.next(Duration::from_millis(800)),
        None,
        "nothing after READY"
    );
}
