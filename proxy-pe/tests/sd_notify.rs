//! The `proxy-pe` binary under a stand-in for systemd (`deploy/proxy-pe.service`,
//! `Type=notify`): `READY=1` only once its control port accepts connections, `WATCHDOG=1`
//! pings when `WATCHDOG_USEC` is set, SIGHUP reloads without stopping, `STOPPING=1` on
//! SIGTERM.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_proxy-pe");

/// A daemon started under a stand-in for systemd: `NOTIFY_SOCKET` is a Unix datagram socket
/// this test owns (sd_notify(3)).
struct Notified {
    sock: UnixDatagram,
    child: Child,
    dir: PathBuf,
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Notified {
    /// A fresh directory for one test's files.
    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Starts `bin args` with `NOTIFY_SOCKET` in `dir`; `watchdog_usec` sets `WATCHDOG_USEC`
    /// and `WATCHDOG_PID` to the daemon's PID (as systemd does; through `exec`).
    fn start(dir: PathBuf, bin: &str, args: &[&str], watchdog_usec: Option<u64>) -> Notified {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
            .arg(bin)
            .args(args)
            .env("NOTIFY_SOCKET", &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match watchdog_usec {
            Some(u) => cmd.env("WATCHDOG_USEC", u.to_string()),
            None => cmd.env_remove("WATCHDOG_USEC"),
        };
        let child = cmd.spawn().expect("daemon starts");
        Notified { sock, child, dir }
    }

    /// The next notification's lines, or `None` within `within`.
    fn next(&self, within: Duration) -> Option<Vec<String>> {
        self.sock.set_read_timeout(Some(within)).expect("timeout");
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string)
                .collect(),
        )
    }

    /// Waits (at most `within`) for a notification with the line `line`.
    fn wait_for(&self, line: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.next(left.max(Duration::from_millis(1))) {
                Some(lines) if lines.iter().any(|l| l == line) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
        false
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// READY=1 and at once SIGHUP (a reload right after start must find the handler in
    /// place), survived; three watchdog pings; STOPPING=1 and a clean exit on SIGTERM.
    fn check_lifecycle(mut self) {
        assert!(
            self.wait_for("READY=1", Duration::from_secs(20)),
            "no READY=1"
        );
        self.signal("-HUP");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            self.child.try_wait().expect("status").is_none(),
            "SIGHUP ended it"
        );
        for i in 0..3 {
            assert!(
                self.wait_for("WATCHDOG=1", Duration::from_secs(5)),
                "watchdog ping {i} missing"
            );
        }
        self.signal("-TERM");
        assert!(
            self.wait_for("STOPPING=1", Duration::from_secs(10)),
            "no STOPPING=1"
        );
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "clean exit on SIGTERM: {status}");
    }
}

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
    let text = format!(
        "mode = \"broker\"\nregistrar_transport = \"tcp\"\ndaemon_listen = \"127.0.0.1:{}\"\n\
         control_listen = \"{control}\"\nregistrars = [\"127.0.0.1:{}\"]\n\n\
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
