//! The `proxy-pe` binary under a stand-in for systemd (`deploy/proxy-pe.service`,
//! `Type=notify`): `READY=1` only once its control port accepts connections, `WATCHDOG=1`
//! pings when `WATCHDOG_USEC` is set, SIGHUP reloads without stopping, `STOPPING=1` on
//! SIGTERM.

use rserpool_tests::sd_notify::Notified;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_proxy-pe");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A broker-mode configuration whose registrar is absent (the proxy keeps trying); the
/// control port address is returned with the path.
fn config(dir: &std::path::Path) -> (String, SocketAddr) {
    let control: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    std::fs::write(
        dir.join("d1.key"),
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .expect("key");
    // Each proxy its own control socket and state file (the defaults under /run and
    // /var/lib are one per host: a second proxy would refuse to start).
    let sock = dir.join("control.sock").display().to_string();
    let state = dir.join("admin-state.json").display().to_string();
    let text = format!(
        "mode = \"broker\"\nregistrar_transport = \"tcp\"\ndaemon_listen = \"127.0.0.1:{}\"\n\
         control_listen = \"{control}\"\nregistrars = [\"127.0.0.1:{}\"]\n\
         control_socket = \"{sock}\"\nadmin_state_file = \"{state}\"\n\n\
         [[application]]\nname = \"echo\"\npool_handle = \"EchoPool\"\npolicy = \"round-robin\"\n\
         listen = \"127.0.0.1:{}\"\n\n[[application.server]]\nname = \"S1\"\naddress = \"127.0.0.1\"\n\
         port = {}\ndaemon = \"d1\"\n\n[[daemon]]\nid = \"d1\"\nkey_file = \"d1.key\"\n",
        free_port(),
        free_port(),
        free_port(),
        free_port()
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).expect("write config");
    (path.display().to_string(), control)
}

#[test]
fn ready_only_once_the_control_port_listens() {
    let dir = Notified::dir("proxy-ready");
    let (cfg, control) = config(&dir);
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
    let (cfg, _) = config(&dir);
    Notified::start(dir, BIN, &["run", "--config", &cfg], Some(200_000)).check_lifecycle();
}
