//! The `enrp-server` binary under a stand-in for systemd: `NOTIFY_SOCKET` points at a Unix
//! datagram socket this test owns (sd_notify(3)). Checks `READY=1` once listening (and only
//! after the start-up phase with peering on), `WATCHDOG=1` pings when `WATCHDOG_USEC` is set,
//! that SIGHUP (`systemctl reload`) does not stop the registrar, and `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_enrp-server");

struct Notified {
    sock: UnixDatagram,
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Notified {
    /// Starts the registrar with `args`; `watchdog_usec` sets `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID` to the registrar's PID, as systemd does, through `exec`).
    fn start(name: &str, args: &[&str], watchdog_usec: Option<u64>) -> Notified {
        let dir = std::env::temp_dir().join(format!("enrp-sd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
            .arg(BIN)
            .args(args)
            .env("NOTIFY_SOCKET", &path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match watchdog_usec {
            Some(u) => cmd.env("WATCHDOG_USEC", u.to_string()),
            None => cmd.env_remove("WATCHDOG_USEC"),
        };
        let child = cmd.spawn().expect("enrp-server starts");
        Notified { sock, child, dir }
    }

    /// The next notification (its lines), or `None` within `within`.
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

    /// Waits (at most `within`) for a notification containing `line`.
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
}

const LOCAL: [&str; 10] = [
    "--transport",
    "tcp",
    "--asap",
    "127.0.0.1:0",
    "--enrp",
    "127.0.0.1:0",
    "--asap-announce",
    "off",
    "--enrp-announce",
    "off",
];

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let mut args = LOCAL.to_vec();
    args.extend(["--peering", "off"]);
    let mut n = Notified::start("ready", &args, Some(200_000));
    assert!(n.wait_for("READY=1", Duration::from_secs(20)), "no READY=1");
    for i in 0..3 {
        assert!(
            n.wait_for("WATCHDOG=1", Duration::from_secs(5)),
            "watchdog ping {i} missing"
        );
    }
    n.signal("-TERM");
    assert!(
        n.wait_for("STOPPING=1", Duration::from_secs(5)),
        "no STOPPING=1"
    );
    let status = n.child.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let mut args = LOCAL.to_vec();
    args.extend(["--peering", "off"]);
    let n = Notified::start("nowd", &args, None);
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
    let n = Notified::start("mentor", &args, None);
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
    let mut n = Notified::start("hup", &args, Some(200_000));
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
