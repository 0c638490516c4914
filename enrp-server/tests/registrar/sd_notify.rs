//! The `enrp-server` binary under a stand-in for systemd: `NOTIFY_SOCKET` points at a Unix
//! datagram socket this test owns (sd_notify(3)). Checks `READY=1` once listening (and only
//! after the start-up phase with peering on), `WATCHDOG=1` pings when `WATCHDOG_USEC` is set,
//! that SIGHUP (`systemctl reload`) does not stop the registrar, and `STOPPING=1` on SIGTERM.

use rserpool_tests::sd_notify::Notified;
use std::time::{Duration, Instant};

use crate::{BIN, LOCAL};

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let mut args = LOCAL.to_vec();
    args.extend(["--peering", "off"]);
    let n = Notified::start(Notified::dir("enrp-ready"), BIN, &args, Some(200_000));
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    n.expect_watchdog_pings(3);
    n.expect_clean_stop(Duration::from_secs(5));
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let mut args = LOCAL.to_vec();
    args.extend(["--peering", "off"]);
    let n = Notified::start(Notified::dir("enrp-nowd"), BIN, &args, None);
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    assert_eq!(
        n.next(Duration::from_millis(800)),
        None,
        "nothing after READY"
    );
}

#[test]
fn with_peering_ready_waits_for_the_mentor_phase() {
    let mut args = LOCAL.to_vec();
    args.extend(["--peering", "on", "--mentor-discovery-timeout", "2000"]);
    let started = Instant::now();
    let n = Notified::start(Notified::dir("enrp-mentor"), BIN, &args, None);
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "READY=1 before the start-up phase ended ({:?})",
        started.elapsed()
    );
}

#[test]
fn sighup_reload_keeps_the_registrar_running() {
    let mut args = LOCAL.to_vec();
    args.extend(["--peering", "off"]);
    let mut n = Notified::start(Notified::dir("enrp-hup"), BIN, &args, Some(200_000));
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    n.signal("-HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        n.child.try_wait().expect("status").is_none(),
        "SIGHUP ended the registrar"
    );
    assert!(
        n.wait_for("WATCHDOG=1", Duration::from_secs(5)),
        "event loop still pinging after SIGHUP"
    );
}
