//! Zero-copy TCP → TCP forwarding with `splice(2)` through a kernel pipe, for the mode B
//! relay of plain TCP sessions (seed 003 FIG. 5; issue: "splice-class throughput").
//!
//! The bytes never enter user space: `splice(socket → pipe)` then `splice(pipe → socket)`.
//! Readiness comes from tokio ([`TcpStream::readable`], [`TcpStream::writable`]) and each
//! system call runs inside [`TcpStream::try_io`], so a `WouldBlock` clears the readiness
//! and the task sleeps until the socket changes.
//!
//! [`Pipe`] keeps the count of bytes it holds, so [`forward`] is **cancel-safe**: a relay
//! may drop the future in a `select!` (to move the session to another server) and the
//! bytes already taken from the client stay in the pipe; the next call, possibly with a
//! new destination, writes them first. [`Pipe::discard`] drops them instead.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked of one `splice(socket → pipe)` call: the default pipe capacity (64 KiB).
const CHUNK: usize = 64 * 1024;

/// A non-blocking kernel pipe used as the forwarding buffer of one direction.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    pending: usize,
}

impl Pipe {
    /// `pipe2(O_NONBLOCK | O_CLOEXEC)`.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, both descriptors are fresh and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read,
            write,
            pending: 0,
        })
    }

    /// Bytes read from the source and not yet written to a destination.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Drops the pending bytes (e.g. when they must not go to a new server).
    pub fn discard(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        while self.pending > 0 {
            let want = self.pending.min(buf.len());
            // SAFETY: reading into a valid local buffer of at least `want` bytes.
            let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
            if n <= 0 {
                let e = io::Error::last_os_error();
                // Nothing left although the count says so: trust the kernel.
                self.pending = 0;
                return if n == 0 || e.kind() == io::ErrorKind::WouldBlock {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            self.pending -= n as usize;
        }
        Ok(())
    }
}

/// `splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)`.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain system call on descriptors the caller keeps open; null offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What ended a [`forward`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The source reached end of stream and everything was delivered.
    Eof,
}

/// A failed [`forward`]: which side failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Reading the source (or moving its bytes into the pipe) failed.
    #[error("reading the source: {0}")]
    Read(#[source] io::Error),
    /// Writing the destination failed; the pipe keeps what was not delivered.
    #[error("writing the destination: {0}")]
    Write(#[source] io::Error),
}

/// Forwards bytes from `from` to `to` through `pipe` until `from` reaches end of stream
/// and the pipe is empty; adds the bytes delivered to `to` to `*delivered`. Pending bytes
/// from an earlier (cancelled) call are written first. Cancel-safe (see the module docs).
///
/// Errors say which side failed (a write error is the relay's signal to reselect; the pipe
/// still holds what was not delivered).
pub async fn forward(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &mut Pipe,
    delivered: &mut u64,
) -> Result<Ended, ForwardError> {
    let mut eof = false;
    loop {
        if pipe.pending > 0 {
            to.writable().await.map_err(ForwardError::Write)?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), to.as_raw_fd(), pipe.pending)
            }) {
                Ok(n) => {
                    pipe.pending -= n;
                    *delivered += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ForwardError::Write(e)),
            }
            continue;
        }
        if eof {
            return Ok(Ended::Eof);
        }
        from.readable().await.map_err(ForwardError::Read)?;
        match from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
        }) {
            Ok(0) => eof = true,
            Ok(n) => pipe.pending += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(ForwardError::Read(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected loopback pair (client, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[tokio::test]
    async fn forwards_every_byte_in_order_and_reports_eof() {
        let (mut client, relay_in) = pair().await;
        let (relay_out, mut server) = pair().await;
        let data = pattern(8 * 1024 * 1024 + 123);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let fwd = tokio::spawn(async move {
            let mut pipe = Pipe::new().unwrap();
            let mut n = 0;
            let end = forward(&relay_in, &relay_out, &mut pipe, &mut n).await;
            (end.unwrap(), n, pipe.pending())
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < data.len() {
            let n = server.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "early EOF at {}", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        let (end, n, pending) = fwd.await.unwrap();
        writer.await.unwrap();
        assert_eq!(end, Ended::Eof);
        assert_eq!(n, data.len() as u64);
        assert_eq!(pending, 0);
        assert!(got == data, "payload differs");
    }

    /// Cancelling `forward` (as a relay's `select!` does) loses nothing: the pipe keeps
    /// its bytes and a later call with a *different* destination delivers them first.
    #[tokio::test]
    async fn cancelled_forward_keeps_pipe_bytes_for_the_next_destination() {
        let (mut client, relay_in) = pair().await;
        let (relay_out1, mut server1) = pair().await;
        let (relay_out2, mut server2) = pair().await;
        let mut pipe = Pipe::new().unwrap();
        let mut delivered = 0u64;

        // server1 never reads: once its socket buffers fill, forward() blocks with bytes
        // in the pipe. Cancel it (repeatedly, as a select! would) until that state.
        let data = pattern(64 * 1024 * 1024);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
        });
        for _ in 0..400 {
            let r = tokio::time::timeout(
                std::time::Duration::from_millis(50),
                forward(&relay_in, &relay_out1, &mut pipe, &mut delivered),
            )
            .await;
            assert!(r.is_err(), "forward cannot finish: server1 never reads");
            if delivered > 0 && pipe.pending() > 0 {
                break;
            }
        }
        let to_first = delivered as usize;
        assert!(to_first > 0 && to_first < data.len());
        let in_pipe = pipe.pending();

        // The rest goes to server2, starting with what the pipe holds.
        let rest = tokio::spawn(async move {
            let mut got = Vec::new();
            server2.read_to_end(&mut got).await.unwrap();
            got
        });
        let end = forward(&relay_in, &relay_out2, &mut pipe, &mut delivered)
            .await
            .unwrap();
        assert_eq!(end, Ended::Eof);
        drop(relay_out2);
        writer.await.unwrap();
        let got2 = rest.await.unwrap();
        assert_eq!(delivered as usize, data.len());
        assert_eq!(got2.len(), data.len() - to_first);
        assert!(
            got2 == data[to_first..],
            "second destination got the wrong bytes"
        );
        assert!(in_pipe > 0, "the cancelled call left bytes in the pipe");

        // server1 got exactly the first `to_first` bytes.
        drop(relay_out1);
        let mut got1 = Vec::new();
        server1.read_to_end(&mut got1).await.unwrap();
        assert!(got1 == data[..to_first]);
    }

    #[tokio::test]
    async fn discard_empties_the_pipe() {
        let (mut client, relay_in) = pair().await;
        let (relay_out, _server) = pair().await;
        let mut pipe = Pipe::new().unwrap();
        let mut delivered = 0;
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&pattern(64 * 1024 * 1024)).await;
        });
        for _ in 0..400 {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(50),
                forward(&relay_in, &relay_out, &mut pipe, &mut delivered),
            )
            .await;
            if pipe.pending() > 0 {
                break;
            }
        }
        assert!(pipe.pending() > 0);
        pipe.discard().unwrap();
        assert_eq!(pipe.pending(), 0);
        writer.abort();
    }
}
