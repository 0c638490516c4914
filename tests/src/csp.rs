//! A stand-in for a Component Status Protocol monitor (rsplib's `cspmonitor`,
//! asap/wire/INTEROP.md §8): a UDP socket the test owns, to which a daemon started with
//! `--csp ADDR` sends its reports. Used by the CSP tests of `enrp-server` and `proxy-pe`.

use std::net::UdpSocket;
use std::process::{Child, Command};
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

    /// The next report, decoded; fails the test after 10 s or on a report that does not
    /// decode.
    pub fn next(&self) -> CspReport {
        let mut buf = [0u8; 4096];
        let (n, _) = self
            .sock
            .recv_from(&mut buf)
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
