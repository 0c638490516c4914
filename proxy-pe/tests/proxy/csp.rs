//! `proxy-pe run --csp ADDR` (asap/wire/INTEROP.md §8): the proxy sends Component Status
//! Protocol reports built from its status snapshot (read over its control port) to a UDP
//! socket this test owns, and a final report when it stops on SIGTERM.

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use asap::wire::csp::{ComponentGroup, CspReport};

const BIN: &str = env!("CARGO_BIN_EXE_proxy-pe");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn next_report(sock: &UdpSocket) -> CspReport {
    let mut buf = [0u8; 4096];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("a CSP report within the timeout");
    CspReport::decode(&buf[..n]).expect("decodes")
}

#[test]
fn proxy_reports_its_pooling_table_and_says_goodbye() {
    let dir = std::env::temp_dir().join(format!("proxy-csp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("d1.key"),
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .expect("key");
    // Broker mode, one application with one server, the registrar absent.
    let text = format!(
        "mode = \"broker\"\nregistrar_transport = \"tcp\"\ndaemon_listen = \"127.0.0.1:{}\"\n\
         control_listen = \"127.0.0.1:{}\"\nregistrars = [\"127.0.0.1:{}\"]\n\
         control_socket = \"{}\"\nadmin_state_file = \"{}\"\n\n\
         [[application]]\nname = \"echo\"\npool_handle = \"EchoPool\"\npolicy = \"round-robin\"\n\
         listen = \"127.0.0.1:{}\"\n\n[[application.server]]\nname = \"S1\"\naddress = \"127.0.0.1\"\n\
         port = {}\ndaemon = \"d1\"\n\n[[daemon]]\nid = \"d1\"\nkey_file = \"d1.key\"\n",
        free_port(),
        free_port(),
        free_port(),
        dir.join("control.sock").display(),
        dir.join("admin-state.json").display(),
        free_port(),
        free_port()
    );
    let cfg = dir.join("proxy.toml");
    std::fs::write(&cfg, text).expect("config");

    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let target = sock.local_addr().expect("addr").to_string();
    let mut child = Command::new(BIN)
        .args(["run", "--config", &cfg.display().to_string()])
        .args([
            "--csp",
            &target,
            "--csp-interval",
            "250",
            "--csp-id",
            "0x9e0001",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy-pe starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = next_report(&sock);
        assert_eq!(r.sender.group(), ComponentGroup::PoolElement);
        assert_eq!(r.sender.object(), 0x9e0001);
        assert_eq!(r.report_interval_us, 250_000);
        if r.status.starts_with("mode B") {
            break r;
        }
        assert_eq!(r.status, "proxy starting", "before the first snapshot");
        assert!(Instant::now() < deadline, "no snapshot-based report");
    };
    // The daemon never connected: its server is not selectable; the proxy's own PE of the
    // application (mode B) is being registered at the absent registrar.
    assert_eq!(
        r.status,
        "mode B: 1 apps, 0/1 servers selectable, 0 sessions, 1 registrations"
    );
    assert_eq!(r.workload, 0xFFFF, "no selectable server: workload unknown");
    assert!(r.associations.is_empty(), "no registrar association");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let fin = loop {
        let r = next_report(&sock);
        if r.is_final() {
            break r;
        }
    };
    assert_eq!(fin.sender.object(), 0x9e0001);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
