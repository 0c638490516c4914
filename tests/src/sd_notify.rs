//! A stand-in for systemd's notification socket (sd_notify(3)): a daemon is started with
//! `NOTIFY_SOCKET` pointing at a Unix datagram socket the test owns, so a test can assert on
//! `READY=1`, `WATCHDOG=1` and `STOPPING=1` as a `Type=notify` service manager would see
//! them (the units in each daemon's `deploy/`). Used by the `sd_notify` tests of
//! `enrp-server`, `proxy-pe` and `legacy-daemon`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon started under the stand-in; killed and its directory removed on drop.
pub struct Notified {
    sock: UnixDatagram,
    /// The daemon (through `sh -c exec`, so its PID is the daemon's).
    pub child: Child,
    /// The test's directory (holds the notification socket).
    pub dir: PathBuf,
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Notified {
    /// A fresh directory for one test's files, named after `name` and this process.
    pub fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Starts `bin args` with `NOTIFY_SOCKET` in `dir` and `RUST_LOG=warn`; `watchdog_usec`
    /// sets `WATCHDOG_USEC` and `WATCHDOG_PID` to the daemon's PID (as systemd does; through
    /// `exec`).
    pub fn start(dir: PathBuf, bin: &str, args: &[&str], watchdog_usec: Option<u64>) -> Notified {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
            .arg(bin)
            .args(args)
            .env("NOTIFY_SOCKET", &path)
            .env("RUST_LOG", "warn")
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
    pub fn next(&self, within: Duration) -> Option<Vec<String>> {
        self.sock.set_read_timeout(Some(within)).expect("timeout");
        let mut buf = [0u8; 4096];
        // EINTR (a signal handled on this thread; see `csp::CspMonitor::next`) is not the
        // end of the wait.
        let n = crate::net::recv_retrying_eintr(|| self.sock.recv(&mut buf)).ok()?;
        Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string)
                .collect(),
        )
    }

    /// Waits (at most `within`) for a notification with the line `line`.
    pub fn wait_for(&self, line: &str, within: Duration) -> bool {
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

    /// Sends `sig` (e.g. `-HUP`) to the daemon with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// READY=1 and at once SIGHUP (a reload right after start must find the handler in
    /// place), survived; three watchdog pings; STOPPING=1 and a clean exit on SIGTERM.
    pub fn check_lifecycle(mut self) {
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
        self.expect_watchdog_pings(3);
        self.expect_clean_stop(Duration::from_secs(10));
    }

    /// Waits for `count` `WATCHDOG=1` pings (at most 5 s for each).
    pub fn expect_watchdog_pings(&self, count: usize) {
        for i in 0..count {
            assert!(
                self.wait_for("WATCHDOG=1", Duration::from_secs(5)),
                "watchdog ping {i} missing"
            );
        }
    }

    /// SIGTERM: `STOPPING=1` within `within`, then a clean exit.
    pub fn expect_clean_stop(mut self, within: Duration) {
        self.signal("-TERM");
        assert!(self.wait_for("STOPPING=1", within), "no STOPPING=1");
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "clean exit on SIGTERM: {status}");
    }
}
