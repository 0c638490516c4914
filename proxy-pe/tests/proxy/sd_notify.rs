//! The `proxy-pe` binary under a stand-in for systemd (`deploy/proxy-pe.service`,
//! `Type=notify`): `READY=1` only once its control port accepts connections, `WATCHDOG=1`
//! pings when `WATCHDOG_USEC` is set, SIGHUP reloads without stopping, `STOPPING=1` on
//! SIGTERM.

use crate::common::lone_broker_config;
use rserpool_tests::sd_notify::Notified;
use std::net::TcpStream;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_proxy-pe");

#[test]
fn ready_only_once_the_control_port_listens() {
    let dir = Notified::dir("proxy-ready");
    let (cfg, control) = lone_broker_config(&dir);
    let n = Notified::start(dir, BIN, &["run", "--config", &cfg], None);
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    TcpStream::connect_timeout(&control, Duration::from_secs(1))
        .expect("control port listening when READY=1 arrives");
    assert_eq!(
        n.next(Duration::from_millis(800)),
        None,
        "no pings unless asked"
    );
}

#[test]
fn ready_watchdog_reload_and_stopping() {
    let dir = Notified::dir("proxy-life");
    let (cfg, _) = lone_broker_config(&dir);
    Notified::start(dir, BIN, &["run", "--config", &cfg], Some(200_000)).check_lifecycle();
}
