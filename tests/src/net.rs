//! Loopback addresses for the processes a test starts, and waiting until they listen.
//!
//! A port from [`free_port`] is bound once and released: another process may take it
//! before the daemon under test binds it, which the tests accept (it is rare on loopback and
//! fails loudly). Deadlines here only stop a hung test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long [`wait_listening`] waits before failing the test.
pub const LISTEN_DEADLINE: Duration = Duration::from_secs(20);

/// A free loopback port (bound once, then released); also a port nothing listens on.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A free loopback address, `127.0.0.1:PORT` (bound once, then released).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free loopback port")
}

/// Blocks until something accepts TCP on `127.0.0.1:port`; panics after
/// [`LISTEN_DEADLINE`].
pub fn wait_listening(port: u16) {
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < LISTEN_DEADLINE,
            "server on {port} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the blocking receive `recv` again while it fails with `EINTR`. A socket with a
/// receive timeout (`SO_RCVTIMEO`) is never restarted after a signal handler ran on the
/// receiving thread, even with `SA_RESTART` (signal(7)); in a test binary such handlers
/// are tokio's (e.g. `SIGCHLD` when another test's child exits). Each retry waits the full
/// timeout again, which only lengthens a wait that is failing anyway.
pub fn recv_retrying_eintr<T>(mut recv: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match recv() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Waits at most `within` until the peer closes `s` (EOF or reset) without sending
/// anything; fails the test, naming `what`, on data or when nothing happens in time.
pub async fn assert_closed_by_peer(s: &tokio::net::TcpStream, within: Duration, what: &str) {
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(within, s.peek(&mut b))
        .await
        .unwrap_or_else(|_| panic!("{what}: not closed within {within:?}"))
        .unwrap_or(0);
    assert_eq!(n, 0, "{what}: data instead of the close");
}
