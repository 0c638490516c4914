//! The `enrp-server` binary under a stand-in for systemd: `NOTIFY_SOCKET` points at a Unix
//! datagram socket this test owns (sd_notify(3)). Checks `READY=1` once listening (and only
//! after the start-up phase with peering on), `WATCHDOG=1` pings when `WATCHDOG_USEC` is set,
//! that SIGHUP (`systemctl reload`) does not stop the registrar, and `STOPPING=1` on SIGTERM.

use rserpool_tests::sd_notify::Notified;
use std::time::{Duration, Instant};

use crate::{BIN, LOCAL};

/// The registrar with the local test options and `extra` under a notification socket in a
/// scratch directory named after `dir` (watchdog at `watchdog_usec`, if given), once it
/// has sent `READY=1`.
fn ready(dir: &str, extra: &[&str], watchdog_usec: Option<u64>) -> Notified {
    let mut args = LOCAL.to_vec();
    args.extend(extra);
    let n = Notified::start(Notified::dir(dir), BIN, &args, watchdog_usec);
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    n
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let n = ready("enrp-ready", &["--peering", "off"], Some(200_000));
    n.expect_watchdog_pings(3);
    n.expect_clean_stop(Duration::from_secs(5));
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let n = ready("enrp-nowd", &["--peering", "off"], None);
    assert_eq!(
        n.next(Duration::from_millis(800)),
        None,
        "nothing after READY"
    );
}

#[test]
fn with_peering_ready_waits_for_the_mentor_phase() {
    let started = Instant::now();
    let _n = ready(
        "enrp-mentor",
        &["--peering", "on", "--mentor-discovery-timeout", "2000"],
        None,
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "READY=1 before the start-up phase ended ({:?})",
        started.elapsed()
    );
}

#[test]
fn sighup_reload_keeps_the_registrar_running() {
    let mut n = ready("enrp-hup", &["--peering", "off"], Some(200_000));
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
