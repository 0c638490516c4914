//! A stand-in for a Component Status Protocol monitor (rsplib's `cspmonitor`,
//! asap/wire/INTEROP.md §8): a UDP socket the test owns, to which a daemon started with
//! `--csp ADDR` sends its reports. Used by the CSP tests of `enrp-server` and `proxy-pe`.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rserpool_wire::csp::CspReport;

/// The monitor's socket; each receive waits at most 10 s.
pub struct CspMonitor {
    sock: UdpSocket,
}

impl CspMonitor {
    /// Binds the monitor on an ephemeral loopback port.
    pub fn bind() -> CspMonitor {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        CspMonitor { sock }
    }

    /// The `--csp` argument that points a daemon here (`127.0.0.1:PORT`).
    pub fn target(&self) -> String {
        self.sock.local_addr().expect("addr").to_string()
    }

    /// Starts `daemon` (its own arguments given) with `--csp` pointing here and
    /// `--csp-interval interval_ms`, output discarded; fails the test if it cannot start.
    pub fn spawn_reporter(&self, daemon: &mut Command, interval_ms: u32) -> Child {
        daemon
            .args(["--csp", &self.target()])
            .args(["--csp-interval", &interval_ms.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{daemon:?} does not start: {e}"))
    }

    /// The next report, decoded; fails the test after 10 s or on a report that does not
    /// decode.
    ///
    /// A signal caught by the test process while waiting is not a failure: a socket with a
    /// receive timeout is never restarted after a signal handler, even with `SA_RESTART`
    /// (signal(7)), so `recv` fails with `EINTR` whenever a handler runs on this thread
    /// (e.g. tokio's `SIGCHLD` handler while another test's child exits); wait again.
    pub fn next(&self) -> CspReport {
        let mut buf = [0u8; 4096];
        let n = crate::net::recv_retrying_eintr(|| self.sock.recv(&mut buf))
            .expect("a CSP report within the timeout");
        CspReport::decode(&buf[..n]).expect("decodes")
    }

    /// Sends SIGTERM to `child` and returns the final report it sends while stopping (the
    /// reports before it are skipped).
    pub fn final_after_sigterm(&self, child: &Child) -> CspReport {
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        loop {
            let r = self.next();
            if r.is_final() {
                return r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserpool_wire::csp::{ComponentGroup, ComponentId};
    use std::os::unix::thread::JoinHandleExt;

    /// A signal handled on the thread waiting in [`CspMonitor::next`] does not fail the
    /// wait (the CSP test of the registrar failed once with "Interrupted system call").
    #[test]
    fn next_survives_a_signal_while_waiting() {
        // A handler for SIGUSR1 (tokio's, as in the test binaries), so that the signal
        // interrupts the receive instead of being ignored or killing the process.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _usr1 = rt.block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .expect("handler")
        });
        let m = CspMonitor::bind();
        let to = m.target();
        let waiter = std::thread::spawn(move || m.next());
        let report = CspReport::new(ComponentId::new(ComponentGroup::Registrar, 7), 1_000);
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: the thread has not been joined, so its pthread_t is valid.
            let rc = unsafe { libc::pthread_kill(waiter.as_pthread_t(), libc::SIGUSR1) };
            assert_eq!(rc, 0, "pthread_kill");
        }
        UdpSocket::bind("127.0.0.1:0")
            .expect("udp")
            .send_to(&report.encode(), &to)
            .expect("send");
        let got = waiter.join().expect("the wait survived the signals");
        assert_eq!(got.sender, report.sender);
    }
}
