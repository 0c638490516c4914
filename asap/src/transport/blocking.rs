//! Blocking associations for tools that drive one association from one thread without an
//! async runtime: kernel SCTP (one-to-one style) or TCP with the RSerPool framing (RFC 5354
//! §4: the common header's Message Length, padded to 4).
//!
//! Made for `rsp-loadgen --engine blocking` (issue 15): a load generator must be light
//! enough that the server, not the generator, is the bottleneck of a one-vCPU rig. So this
//! API does no per-message allocation in steady state and batches system calls: [`send`]
//! hands a whole batch to one `sendmmsg` (SCTP, each message with its own `SCTP_SNDINFO`)
//! or one `write` (TCP), and [`recv`] waits once (`poll`) and then takes up to
//! 16 messages with one `recvmmsg` (SCTP, one message per slot, `MSG_EOR` marking its end)
//! or one `read` of up to 64 KiB (TCP), handing each whole message to a callback as a
//! borrowed slice.
//!
//! What it does not do, unlike [`super::Transport`]: multi-homing, TLS, SCTP notifications
//! as events (they are skipped), per-message stream and PPID on receive, and the TCP
//! endpoint's PPID check (the PPID passed to [`send`] is used by SCTP only). The `unsafe`
//! system calls stay in `sys`.
//!
//! [`send`]: BlockingAssoc::send
//! [`recv`]: BlockingAssoc::recv

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::error::TransportError;
use super::framing;
use super::sys;
use super::TransportKind;

/// Receive buffer: 16 slots of 4 KiB for SCTP, the stream buffer for TCP.
const RECV_BUF: usize = 64 * 1024;

/// Largest message [`BlockingAssoc::recv`] reassembles (SCTP): the transport's default
/// maximum. A TCP frame is at most 65 536 bytes (16-bit length, padded), so it always fits
/// the receive buffer.
const MAX_MESSAGE: usize = super::defaults::MAX_SCTP_MESSAGE;

enum Inner {
    Sctp(OwnedFd),
    Tcp(TcpStream),
}

/// One blocking association (see the module doc).
pub struct BlockingAssoc {
    inner: Inner,
    /// Receive buffer (SCTP: `recvmmsg` slots; TCP: bytes `start..end` not yet handed out).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// SCTP: the slots of one `recvmmsg`.
    slots: Vec<sys::RecvSlot>,
    /// SCTP: pieces of a message larger than a slot, until `MSG_EOR`.
    partial: Vec<u8>,
    /// TCP: the padded batch of one `send`.
    out: Vec<u8>,
    /// TCP: the read timeout last set on the socket.
    read_timeout: Option<Duration>,
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> TransportError {
    move |e| TransportError::io(op, e)
}

fn ms(timeout: Option<Duration>) -> libc::c_int {
    timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
    })
}

/// `poll` for `events`, retried on `EINTR`; `Ok(false)` when `timeout` ran out.
fn wait(
    fd: std::os::fd::BorrowedFd<'_>,
    events: libc::c_short,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    loop {
        match sys::poll_one(fd, events, ms(timeout)) {
            Ok(revents) => return Ok(revents != 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl BlockingAssoc {
    /// Connects to `peer` over `kind` ([`TransportKind::Sctp`]: kernel SCTP with
    /// `SCTP_NODELAY`; [`TransportKind::Tcp`]: `TCP_NODELAY`), waiting at most `timeout`.
    /// Other kinds are refused with [`TransportError::Io`] (`Unsupported`).
    pub fn connect(
        kind: TransportKind,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let inner = match kind {
            TransportKind::Sctp => Inner::Sctp(connect_sctp(peer, timeout)?),
            TransportKind::Tcp => {
                let s = TcpStream::connect_timeout(&peer, timeout).map_err(|source| {
                    TransportError::Connect {
                        addrs: vec![peer],
                        source,
                    }
                })?;
                s.set_nodelay(true)
                    .map_err(io_err("setsockopt(TCP_NODELAY)"))?;
                Inner::Tcp(s)
            }
            other => {
                return Err(TransportError::io(
                    "blocking connect",
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("the blocking API speaks sctp and tcp, not {other:?}"),
                    ),
                ))
            }
        };
        Ok(BlockingAssoc {
            inner,
            buf: vec![0; RECV_BUF],
            start: 0,
            end: 0,
            slots: vec![sys::RecvSlot::default(); sys::RECVMMSG_MAX],
            partial: Vec::new(),
            out: Vec::new(),
            read_timeout: None,
        })
    }

    /// Sends every message of `msgs`, in order, blocking until the kernel has taken them all.
    /// SCTP: up to 64 per `sendmmsg`, each one DATA message with `ppid` on stream 0. TCP: one
    /// `write` of the batch, each message padded to a multiple of 4 (`ppid` unused). Each
    /// message must start with an RSerPool common header.
    pub fn send(&mut self, msgs: &[&[u8]], ppid: u32) -> Result<(), TransportError> {
        match &self.inner {
            Inner::Sctp(fd) => {
                let mut rest = msgs;
                while !rest.is_empty() {
                    match sys::sendmmsg(fd.as_fd(), rest, |m| (m, 0, ppid), true) {
                        Ok((n, None)) => rest = &rest[n..],
                        Ok((_, Some((i, got)))) => {
                            return Err(TransportError::io(
                                "sendmmsg",
                                io::Error::new(
                                    io::ErrorKind::WriteZero,
                                    format!("message {i}: {got} of {} bytes sent", rest[i].len()),
                                ),
                            ))
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            wait(fd.as_fd(), libc::POLLOUT, None).map_err(io_err("poll"))?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(TransportError::io("sendmmsg", e)),
                    }
                }
                Ok(())
            }
            Inner::Tcp(s) => {
                self.out.clear();
                for m in msgs {
                    let pad = framing::outgoing_padding(m)?;
                    self.out.extend_from_slice(m);
                    self.out.resize(self.out.len() + pad, 0);
                }
                let mut s = s;
                s.write_all(&self.out).map_err(io_err("write"))
            }
        }
    }

    /// Waits until at least one whole message has arrived (at most `timeout`; `None` = no
    /// limit), then hands every whole message that one `recvmmsg` (SCTP) or one `read` (TCP)
    /// brought, in order, to `each`. Returns how many it handed out: 0 only when the time ran
    /// out. [`TransportError::Closed`] when the peer closed the association.
    pub fn recv(
        &mut self,
        timeout: Option<Duration>,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, TransportError> {
        match &self.inner {
            Inner::Sctp(fd) => {
                let fd = fd.as_fd();
                loop {
                    let got = match sys::recvmmsg(fd, &mut self.buf, &mut self.slots) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if !wait(fd, libc::POLLIN, timeout).map_err(io_err("poll"))? {
                                return Ok(0);
                            }
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(TransportError::io("recvmmsg", e)),
                    };
                    let slot_len = self.buf.len() / self.slots.len().min(sys::RECVMMSG_MAX);
                    let mut handed = 0;
                    for (i, s) in self.slots[..got].iter().enumerate() {
                        if s.flags & sys::MSG_NOTIFICATION != 0 {
                            continue;
                        }
                        if s.len == 0 {
                            return Err(TransportError::Closed);
                        }
                        let piece = &self.buf[i * slot_len..i * slot_len + s.len];
                        let eor = s.flags & libc::MSG_EOR != 0;
                        if !eor || !self.partial.is_empty() {
                            if self.partial.len() + piece.len() > MAX_MESSAGE {
                                return Err(TransportError::MessageTooLarge {
                                    len: self.partial.len() + piece.len(),
                                    max: MAX_MESSAGE,
                                });
                            }
                            self.partial.extend_from_slice(piece);
                            if eor {
                                each(&self.partial);
                                self.partial.clear();
                                handed += 1;
                            }
                        } else {
                            each(piece);
                            handed += 1;
                        }
                    }
                    if handed > 0 {
                        return Ok(handed);
                    }
                }
            }
            Inner::Tcp(s) => {
                let mut s = s;
                loop {
                    let handed = frames(&self.buf, &mut self.start, &mut self.end, &mut each)?;
                    if handed > 0 {
                        return Ok(handed);
                    }
                    // make room: move the incomplete frame to the front (a whole frame,
                    // ≤ 65 536 bytes, always fits the buffer then)
                    if self.start > 0 {
                        self.buf.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    if self.read_timeout != timeout {
                        s.set_read_timeout(timeout)
                            .map_err(io_err("setsockopt(SO_RCVTIMEO)"))?;
                        self.read_timeout = timeout;
                    }
                    match s.read(&mut self.buf[self.end..]) {
                        Ok(0) => return Err(TransportError::Closed),
                        Ok(n) => self.end += n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Ok(0)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(TransportError::io("read", e)),
                    }
                }
            }
        }
    }
}

/// TCP: hands out the whole frames in `buf[start..end]` and advances `start` past them.
fn frames(
    buf: &[u8],
    start: &mut usize,
    end: &mut usize,
    each: &mut impl FnMut(&[u8]),
) -> Result<usize, TransportError> {
    let mut handed = 0;
    while *end - *start >= framing::HEADER_LEN {
        let h = &buf[*start..*start + framing::HEADER_LEN];
        let len = framing::frame_len(
            [h[0], h[1], h[2], h[3]],
            super::defaults::MAX_RSERPOOL_MESSAGE,
        )?;
        if *end - *start < len {
            break;
        }
        each(&buf[*start..*start + len]);
        *start += len;
        handed += 1;
    }
    if *start == *end {
        *start = 0;
        *end = 0;
    }
    Ok(handed)
}

fn connect_sctp(peer: SocketAddr, timeout: Duration) -> Result<OwnedFd, TransportError> {
    let fd = super::sctp::open(&[peer])?;
    let on: libc::c_int = 1;
    sys::setsockopt(fd.as_fd(), sys::SOL_SCTP, sys::SCTP_NODELAY, &on)
        .map_err(io_err("setsockopt(SCTP_NODELAY)"))?;
    let failed = |source| TransportError::Connect {
        addrs: vec![peer],
        source,
    };
    match sys::connectx(fd.as_fd(), &[peer]) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(failed(e)),
    }
    if !wait(fd.as_fd(), libc::POLLOUT, Some(timeout)).map_err(failed)? {
        return Err(TransportError::ConnectTimeout {
            addrs: vec![peer],
            after: timeout,
        });
    }
    if let Some(e) = sys::take_error(fd.as_fd()).map_err(failed)? {
        return Err(failed(e));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// TCP: a batch goes out padded in one write; messages split across reads and several in
    /// one read come back whole and in order.
    #[test]
    fn tcp_batches_and_frames() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = [0u8; 16];
            s.read_exact(&mut got).unwrap();
            // an unpadded 5-byte message was padded to 8, the 8-byte one left as it is
            assert_eq!(got, [1, 0, 0, 5, 9, 0, 0, 0, 2, 0, 0, 8, 1, 2, 3, 4]);
            // two whole frames and the first half of a third in one write, then the rest
            s.write_all(&[3, 0, 0, 4, 6, 1, 0, 6, 7, 8, 0, 0, 5, 0])
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(&[0, 6, 0xaa, 0xbb, 0, 0]).unwrap();
        });
        let mut a =
            BlockingAssoc::connect(TransportKind::Tcp, addr, Duration::from_secs(5)).unwrap();
        a.send(&[&[1, 0, 0, 5, 9], &[2, 0, 0, 8, 1, 2, 3, 4]], 11)
            .unwrap();
        let mut seen: Vec<Vec<u8>> = Vec::new();
        while seen.len() < 3 {
            let n = a
                .recv(Some(Duration::from_secs(5)), |m| seen.push(m.to_vec()))
                .unwrap();
            assert!(n > 0, "timed out");
        }
        assert_eq!(
            seen,
            vec![
                vec![3, 0, 0, 4],
                vec![6, 1, 0, 6, 7, 8, 0, 0],
                vec![5, 0, 0, 6, 0xaa, 0xbb, 0, 0]
            ]
        );
        srv.join().unwrap();
        // the peer closed
        assert!(matches!(
            a.recv(Some(Duration::from_secs(5)), |_| {}),
            Err(TransportError::Closed)
        ));
    }

    /// TCP: `recv` returns 0 when nothing came within the timeout.
    #[test]
    fn tcp_recv_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut a =
            BlockingAssoc::connect(TransportKind::Tcp, addr, Duration::from_secs(5)).unwrap();
        let _peer = l.accept().unwrap();
        assert_eq!(
            a.recv(Some(Duration::from_millis(20)), |_| panic!("no message"))
                .unwrap(),
            0
        );
    }

    /// SCTP, where the kernel has it (the VM rig's `cargo-tests`); skipped otherwise.
    #[test]
    fn sctp_connect_refused_or_unsupported() {
        // nothing listens on port 1 of loopback: either no SCTP here, or the INIT is
        // answered with ABORT
        let r = BlockingAssoc::connect(
            TransportKind::Sctp,
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(5),
        );
        assert!(matches!(
            r,
            Err(TransportError::SctpUnsupported { .. }) | Err(TransportError::Connect { .. })
        ));
    }
}
