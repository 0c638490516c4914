//! TCP backend of `asap::transport`: framing by the RSerPool common header, PPID implied by the
//! endpoint, bad input closing only the offending association.
//!
//! Run: `cargo test -p asap --test transport transport_tcp`

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asap::transport::{
    Association, Event, FrameError, Listener, LostReason, Msg, Transport, TransportConfig,
    TransportError, TransportKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for any single wait, so a broken test fails instead of hanging.
use crate::assoc::{accept, listen, recv, recv_msg, LIMIT};

fn tcp(max: usize) -> Transport {
    let mut c = TransportConfig::asap(TransportKind::Tcp);
    c.max_message_size = max;
    Transport::new(c)
}

/// An RSerPool-framed message: type, flags, Message Length = `len`, then a pattern.
fn rmsg(ty: u8, len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![ty, seed, (len >> 8) as u8, len as u8];
    v.extend((4..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    v
}

#[tokio::test]
async fn roundtrip_preserves_ppid_bytes_and_reports_up_first() {
    let t = tcp(64 * 1024);
    let (l, addr) = listen(&t).await;
    let mut c = t.connect(&[addr], &[]).await.expect("connect");
    let mut s = accept(&l).await;
    assert_eq!(c.kind(), TransportKind::Tcp);
    assert_eq!(c.peer_addrs().expect("peer"), vec![addr]);
    assert_eq!(
        s.peer_addrs().expect("peer"),
        c.local_addrs().expect("local")
    );

    let body = rmsg(0x05, 1000, 1);
    c.send(&Msg::new(11, 3, body.clone())).await.expect("send");
    assert_eq!(
        recv(&mut s).await,
        Event::Up {
            outbound_streams: 1,
            inbound_streams: 1
        }
    );
    let m = recv_msg(&mut s).await;
    assert_eq!(m.ppid, 11, "PPID implied by the ASAP endpoint");
    assert_eq!(m.stream, 0, "TCP carries one stream");
    assert_eq!(&m.bytes[..], &body[..]);
    s.send(&m).await.expect("echo");
    let e = recv_msg(&mut c).await;
    assert_eq!(e, Msg::new(11, 0, body));
}

#[tokio::test]
async fn largest_message_intact_and_padding_added() {
    let t = tcp(usize::MAX);
    let (l, addr) = listen(&t).await;
    let mut c = t.connect(&[addr], &[]).await.expect("connect");
    let mut s = accept(&l).await;
    // 65535 bytes: the largest Message Length; the transport adds 1 byte of padding.
    let body = rmsg(0x03, 65535, 9);
    c.send(&Msg::new(11, 0, body.clone())).await.expect("send");
    let m = recv_msg(&mut s).await;
    assert_eq!(m.bytes.len(), 65536);
    assert_eq!(&m.bytes[..65535], &body[..]);
    assert_eq!(m.bytes[65535], 0);
    // A 256 KiB message cannot be expressed in a 16-bit Message Length.
    let big = Msg::new(11, 0, vec![0u8; 256 * 1024]);
    match c.send(&big).await {
        Err(TransportError::MessageTooLarge { len, max }) => {
            assert_eq!(len, 256 * 1024);
            assert_eq!(max, 65538);
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // The association still works afterwards.
    c.send(&Msg::new(11, 0, rmsg(1, 8, 2))).await.expect("send");
    assert_eq!(&recv_msg(&mut s).await.bytes[..], &rmsg(1, 8, 2)[..]);
}

#[tokio::test]
async fn many_small_messages_in_order() {
    let t = tcp(1024);
    let (l, addr) = listen(&t).await;
    let c = t.connect(&[addr], &[]).await.expect("connect");
    let mut s = accept(&l).await;
    let (_cr, mut cw) = c.into_split();
    let sender = tokio::spawn(async move {
        for i in 0..2000u32 {
            let mut b = vec![0x07, 0, 0, 8];
            b.extend_from_slice(&i.to_be_bytes());
            cw.send(&Msg::new(11, 0, b)).await.expect("send");
        }
        cw
    });
    for i in 0..2000u32 {
        let m = recv_msg(&mut s).await;
        assert_eq!(m.bytes.len(), 8);
        assert_eq!(&m.bytes[4..], &i.to_be_bytes());
    }
    let _cw = sender.await.expect("sender task");
}

/// A listener of `t`, a raw TCP client connected to it (`TCP_NODELAY`: each write goes out
/// as written) and the association the listener accepted for it.
async fn raw_client(t: &Transport) -> (Listener, TcpStream, Association) {
    let (l, addr) = listen(t).await;
    let raw = TcpStream::connect(addr).await.expect("raw connect");
    raw.set_nodelay(true).expect("nodelay");
    let s = accept(&l).await;
    (l, raw, s)
}

#[tokio::test]
async fn two_messages_in_one_write_and_one_message_split_over_writes() {
    let (_l, mut raw, mut s) = raw_client(&tcp(4096)).await;

    // Two messages (the first 6 bytes long, so 2 bytes of padding) in one write.
    let a = rmsg(1, 6, 1);
    let b = rmsg(2, 12, 2);
    let mut both = a.clone();
    both.extend_from_slice(&[0, 0]);
    both.extend_from_slice(&b);
    raw.write_all(&both).await.expect("write");
    let m1 = recv_msg(&mut s).await;
    assert_eq!(&m1.bytes[..], &[&a[..], &[0, 0]].concat()[..]);
    let m2 = recv_msg(&mut s).await;
    assert_eq!(&m2.bytes[..], &b[..]);

    // One message split over several writes, cutting inside the header too.
    let c = rmsg(3, 300, 3);
    for chunk in [&c[..1], &c[1..3], &c[3..100], &c[100..299], &c[299..]] {
        raw.write_all(chunk).await.expect("write");
        raw.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m3 = recv_msg(&mut s).await;
    assert_eq!(&m3.bytes[..], &c[..]);
}

/// Captures `tracing` output of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Captures this thread's DEBUG-and-above log lines until the guard drops.
    fn debug_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    /// Asserts that a WARN line "closing TCP association" names `peer` and `reason`.
    fn assert_closing_warned(&self, peer: SocketAddr, reason: &FrameError) {
        let text = String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf8");
        let line = text
            .lines()
            .find(|l| l.contains("WARN") && l.contains("closing TCP association"))
            .unwrap_or_else(|| panic!("no warn line in log:\n{text}"));
        assert!(line.contains(&peer.to_string()), "peer missing: {line}");
        assert!(line.contains(&reason.to_string()), "reason missing: {line}");
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A listener with a well-behaved association (`good`, accepted as `good_s`) and then a raw
/// TCP client (`raw`, from `raw_addr`): a peer that misbehaves next to one that does not.
struct RawBesideGood {
    _l: Listener,
    good: Association,
    good_s: Association,
    raw: TcpStream,
    raw_addr: SocketAddr,
}

impl RawBesideGood {
    /// Listens with `t` and connects both clients; also returns the raw client's association.
    async fn open(t: &Transport) -> (Self, Association) {
        let (l, addr) = listen(t).await;
        let good = t.connect(&[addr], &[]).await.expect("connect good");
        let good_s = accept(&l).await;
        let raw = TcpStream::connect(addr).await.expect("raw connect");
        let raw_addr = raw.local_addr().expect("raw local");
        let bad_s = accept(&l).await;
        let rig = RawBesideGood {
            _l: l,
            good,
            good_s,
            raw,
            raw_addr,
        };
        (rig, bad_s)
    }

    /// The raw client reads EOF (or a reset) within the limit: its connection was closed.
    async fn assert_raw_closed(&mut self, what: &str) {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(LIMIT, self.raw.read(&mut buf))
            .await
            .expect("read within limit")
            .unwrap_or(0);
        assert_eq!(n, 0, "{what}");
    }

    /// The well-behaved association is unaffected: a message goes both ways.
    async fn assert_good_works(&mut self) {
        let body = rmsg(5, 40, 4);
        self.good
            .send(&Msg::new(11, 0, body.clone()))
            .await
            .expect("send");
        let m = recv_msg(&mut self.good_s).await;
        assert_eq!(&m.bytes[..], &body[..]);
        self.good_s.send(&m).await.expect("echo");
        assert_eq!(&recv_msg(&mut self.good).await.bytes[..], &body[..]);
    }
}

/// Sends `bad` bytes (then optionally closes) on a raw connection and checks that (1) that
/// association ends with `Lost(Framing(expected))`, (2) a warn line names the peer and reason,
/// (3) a second association opened before keeps working.
async fn bad_input_case(bad: &[u8], close_after: bool, max: usize, expected: FrameError) {
    let (log, _guard) = Captured::debug_logs();

    let (mut rig, mut bad_s) = RawBesideGood::open(&tcp(max)).await;
    assert_eq!(bad_s.peer_addrs().expect("peer"), vec![rig.raw_addr]);

    rig.raw.write_all(bad).await.expect("write bad");
    if close_after {
        rig.raw.shutdown().await.expect("shutdown");
    }
    assert!(matches!(recv(&mut bad_s).await, Event::Up { .. }));
    assert_eq!(
        recv(&mut bad_s).await,
        Event::Lost(LostReason::Framing(expected.clone()))
    );
    assert!(matches!(bad_s.recv().await, Err(TransportError::Closed)));
    drop(bad_s);
    rig.assert_raw_closed("bad peer's connection must be closed")
        .await;
    rig.assert_good_works().await;
    log.assert_closing_warned(rig.raw_addr, &expected);
}

/// Each framing error a TCP peer can cause, through [`bad_input_case`]: the bytes sent, whether
/// the peer then closes, the maximum message size, the expected error.
#[tokio::test]
async fn bad_input_cases() {
    let mut partial = rmsg(1, 100, 1);
    partial.truncate(30);
    let cases: [(&str, &[u8], bool, usize, FrameError); 6] = [
        (
            "length below header",
            &[1, 0, 0, 2],
            false,
            4096,
            FrameError::LengthTooShort { length: 2 },
        ),
        (
            "zero length",
            &[1, 0, 0, 0],
            false,
            4096,
            FrameError::LengthTooShort { length: 0 },
        ),
        (
            "length above maximum",
            &[1, 0, 0x07, 0xD0, 1, 2, 3, 4],
            false,
            1024,
            FrameError::LengthTooLarge {
                length: 2000,
                max: 1024,
            },
        ),
        (
            // "GARBAGE!" reads as type 'G', flags 'A', Message Length 0x5242 = 21058.
            "garbage",
            b"GARBAGE!",
            false,
            1024,
            FrameError::LengthTooLarge {
                length: 0x5242,
                max: 1024,
            },
        ),
        (
            "close mid message",
            &partial,
            true,
            4096,
            FrameError::Truncated {
                have: 30,
                need: 100,
            },
        ),
        (
            "close inside header",
            &[1, 0],
            true,
            4096,
            FrameError::Truncated { have: 2, need: 4 },
        ),
    ];
    for (name, bad, close_after, max, expected) in cases {
        eprintln!("case: {name}");
        bad_input_case(bad, close_after, max, expected).await;
    }
}

#[tokio::test]
async fn send_rejects_foreign_ppid_and_unframed_bytes() {
    let t = tcp(4096);
    let (l, addr) = listen(&t).await;
    let mut c = t.connect(&[addr], &[]).await.expect("connect");
    let _s = accept(&l).await;
    match c.send(&Msg::new(12, 0, rmsg(1, 8, 0))).await {
        Err(TransportError::PpidMismatch { ppid, expected }) => {
            assert_eq!((ppid, expected), (12, 11))
        }
        other => panic!("expected PpidMismatch, got {other:?}"),
    }
    for bad in [
        vec![1u8, 0, 0],
        vec![1, 0, 0, 9, 1, 2, 3, 4],
        rmsg(1, 8, 0).repeat(2),
    ] {
        assert!(
            matches!(
                c.send(&Msg::new(11, 0, bad.clone())).await,
                Err(TransportError::Frame(FrameError::BadOutgoingHeader { .. }))
            ),
            "{bad:?} must be refused"
        );
    }
}

#[tokio::test]
async fn enrp_endpoint_implies_ppid_12() {
    let t = Transport::new(TransportConfig::enrp(TransportKind::Tcp));
    let (l, addr) = listen(&t).await;
    let mut c = t.connect(&[addr], &[]).await.expect("connect");
    let mut s = accept(&l).await;
    c.send(&Msg::new(12, 0, rmsg(1, 12, 0)))
        .await
        .expect("send");
    assert_eq!(recv_msg(&mut s).await.ppid, 12);
}

#[tokio::test]
async fn graceful_close_and_abort() {
    let t = tcp(4096);
    let (l, addr) = listen(&t).await;
    let mut c = t.connect(&[addr], &[]).await.expect("connect");
    let mut s = accept(&l).await;
    c.send(&Msg::new(11, 0, rmsg(1, 8, 0))).await.expect("send");
    c.close().await.expect("close");
    assert_eq!(
        recv_msg(&mut s).await.bytes.len(),
        8,
        "data before FIN arrives"
    );
    assert_eq!(recv(&mut s).await, Event::Lost(LostReason::PeerClosed));

    let c2 = t.connect(&[addr], &[]).await.expect("connect");
    let mut s2 = accept(&l).await;
    assert!(matches!(recv(&mut s2).await, Event::Up { .. }));
    c2.abort();
    assert_eq!(recv(&mut s2).await, Event::Lost(LostReason::Reset));
}

#[tokio::test]
async fn listen_on_two_addresses_and_connect_tries_in_order() {
    let t = tcp(4096);
    let l = t
        .listen(&[
            "127.0.0.1:0".parse().expect("literal"),
            "127.0.0.2:0".parse().expect("literal"),
        ])
        .await
        .expect("listen");
    let addrs = l.local_addrs().expect("local");
    assert_eq!(addrs.len(), 2);
    assert_eq!(
        addrs[0].port(),
        addrs[1].port(),
        "one port for all addresses"
    );
    // 127.0.0.3 has no listener: refused, then 127.0.0.2 is tried.
    let dead: SocketAddr = SocketAddr::new("127.0.0.3".parse().expect("literal"), addrs[0].port());
    let mut c = t.connect(&[dead, addrs[1]], &[]).await.expect("connect");
    assert_eq!(c.peer_addrs().expect("peer"), vec![addrs[1]]);
    let mut s = accept(&l).await;
    c.send(&Msg::new(11, 0, rmsg(1, 8, 0))).await.expect("send");
    assert_eq!(recv_msg(&mut s).await.bytes.len(), 8);
    // All addresses dead: a typed connect error naming the last address.
    match t.connect(&[dead], &[]).await {
        Err(TransportError::Connect { addrs, source }) => {
            assert_eq!(addrs, vec![dead]);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected Connect error, got {:?}", other.map(|_| ())),
    }
    // Mixed ports are refused.
    assert!(matches!(
        t.listen(&[
            "127.0.0.1:1".parse().expect("literal"),
            "127.0.0.2:2".parse().expect("literal")
        ])
        .await,
        Err(TransportError::BadAddresses(_))
    ));
}

/// Small deterministic generator (xorshift) so the chunking tests are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn random_message_sizes_over_random_write_chunks() {
    let (_l, mut raw, mut s) = raw_client(&tcp(4096)).await;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut expected = Vec::new();
    let mut stream = Vec::new();
    for i in 0..300 {
        let len = 4 + rng.below(4000);
        let mut m = rmsg((i % 15) as u8, len, i as u8);
        m.resize(len.div_ceil(4) * 4, 0);
        stream.extend_from_slice(&m);
        expected.push(m);
    }
    let writer = tokio::spawn(async move {
        let mut off = 0;
        while off < stream.len() {
            let n = (1 + rng.below(3000)).min(stream.len() - off);
            raw.write_all(&stream[off..off + n]).await.expect("write");
            raw.flush().await.expect("flush");
            off += n;
            if rng.below(4) == 0 {
                tokio::task::yield_now().await;
            }
        }
        raw
    });
    for (i, want) in expected.iter().enumerate() {
        let m = recv_msg(&mut s).await;
        assert_eq!(m.bytes.len(), want.len(), "message {i}");
        assert!(m.bytes[..] == want[..], "message {i} bytes");
    }
    let mut raw = writer.await.expect("writer");
    raw.shutdown().await.expect("shutdown");
    assert_eq!(recv(&mut s).await, Event::Lost(LostReason::PeerClosed));
}

#[tokio::test]
async fn random_garbage_never_panics_and_always_ends_the_association() {
    let t = tcp(2048);
    let (l, addr) = listen(&t).await;
    let mut rng = Rng(0xBAD_C0FFEE);
    for _ in 0..40 {
        let mut raw = TcpStream::connect(addr).await.expect("raw connect");
        let mut s = accept(&l).await;
        let len = 1 + rng.below(600);
        let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        raw.write_all(&junk).await.expect("write");
        raw.shutdown().await.expect("shutdown");
        let mut consumed = 0;
        loop {
            match recv(&mut s).await {
                Event::Up { .. } => {}
                Event::Message(m) => {
                    // Whatever was accepted as a message is a prefix of the junk, framed right.
                    assert!(m.bytes.len() >= 4 && m.bytes.len() % 4 == 0);
                    assert_eq!(&m.bytes[..], &junk[consumed..consumed + m.bytes.len()]);
                    consumed += m.bytes.len();
                }
                Event::Lost(LostReason::Framing(_)) => break,
                Event::Lost(LostReason::PeerClosed) => {
                    assert_eq!(consumed, junk.len(), "clean end only after whole messages");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(s.recv().await, Err(TransportError::Closed)));
    }
}

/// The TCP stall guards are on by default with the documented values: 30 s for an
/// incomplete message, 16 MiB of partial-message buffer per listener.
#[test]
fn tcp_stall_guards_have_the_documented_defaults() {
    use asap::transport::defaults::{TCP_INCOMPLETE_MESSAGE_TIMEOUT, TCP_MAX_PARTIAL_BYTES};
    let c = TransportConfig::asap(TransportKind::Tcp);
    assert_eq!(
        c.tcp_incomplete_message_timeout,
        Some(TCP_INCOMPLETE_MESSAGE_TIMEOUT)
    );
    assert_eq!(TCP_INCOMPLETE_MESSAGE_TIMEOUT, Duration::from_secs(30));
    assert_eq!(c.tcp_max_partial_bytes, Some(TCP_MAX_PARTIAL_BYTES));
    assert_eq!(TCP_MAX_PARTIAL_BYTES, 16 * 1024 * 1024);
}

/// The default ASAP endpoint over TCP (default maximum message size, 65535 + 3 on TCP) with a
/// short incomplete-message timeout.
fn tcp_default_max(incomplete: Duration) -> Transport {
    let mut c = TransportConfig::asap(TransportKind::Tcp);
    c.tcp_incomplete_message_timeout = Some(incomplete);
    Transport::new(c)
}

/// Sends `partial` on a raw connection and keeps it open: the association must end with
/// `Lost(Framing(IncompleteTimeout))` naming the raw peer, the pending type and byte counts,
/// the raw peer must see the connection closed while the association is still held, a warn line
/// must name the peer, and another association must keep working.
async fn stall_case(partial: &[u8], msg_type: Option<u8>, need: usize) {
    let (log, _guard) = Captured::debug_logs();

    let timeout = Duration::from_millis(300);
    let (mut rig, mut bad_s) = RawBesideGood::open(&tcp_default_max(timeout)).await;
    let raw_addr = rig.raw_addr;

    rig.raw.write_all(partial).await.expect("write partial");
    let started = tokio::time::Instant::now();
    assert!(matches!(recv(&mut bad_s).await, Event::Up { .. }));
    let expected = FrameError::IncompleteTimeout {
        peer: raw_addr,
        msg_type,
        have: partial.len(),
        need,
        after: timeout,
    };
    assert_eq!(
        recv(&mut bad_s).await,
        Event::Lost(LostReason::Framing(expected.clone()))
    );
    assert!(
        started.elapsed() >= timeout,
        "must not fire before the timeout"
    );
    assert!(matches!(bad_s.recv().await, Err(TransportError::Closed)));

    // Closed from our side although `bad_s` is still held.
    rig.assert_raw_closed("stalled peer's connection must be closed")
        .await;
    drop(bad_s);
    rig.assert_good_works().await;
    log.assert_closing_warned(raw_addr, &expected);
    let reason = expected.to_string();
    assert!(reason.contains(&raw_addr.to_string()), "{reason}");
    assert!(
        reason.contains(&format!("{} of {need} bytes", partial.len())),
        "{reason}"
    );
}

#[tokio::test]
async fn incomplete_timeout_header_announces_more_than_sent() {
    // Message Length 1000, only 100 bytes sent, connection kept open.
    let mut partial = rmsg(0x01, 1000, 3);
    partial.truncate(100);
    stall_case(&partial, Some(0x01), 1000).await;
}

#[tokio::test]
async fn incomplete_timeout_garbage_with_plausible_header() {
    // "GARBAGE!" reads as type 'G', Message Length 0x5242 = 21058 (padded 21060): below the
    // default TCP maximum of 65538, so only the timeout ends it.
    stall_case(b"GARBAGE!", Some(b'G'), 21060).await;
}

#[tokio::test]
async fn incomplete_timeout_inside_header() {
    stall_case(&[0x01, 0x00], None, 4).await;
}

#[tokio::test]
async fn slow_but_complete_messages_within_timeout_are_delivered() {
    // Each message arrives in pieces well within the timeout; all of them together take
    // longer than the timeout, so a clock that is not restarted per message would fire.
    let timeout = Duration::from_millis(1000);
    let (_l, mut raw, mut s) = raw_client(&tcp_default_max(timeout)).await;

    let msgs: Vec<Vec<u8>> = (0..12u8).map(|i| rmsg(0x07, 204, i)).collect();
    let stream: Vec<u8> = msgs.concat();
    // Pieces of 70 bytes: they cut headers and bodies and straddle message boundaries, and
    // (204 and 70 having no common multiple below 2448) the buffer never runs empty between
    // messages, so the clock must restart when a message completes.
    let started = tokio::time::Instant::now();
    let pieces: Vec<Vec<u8>> = stream.chunks(70).map(<[u8]>::to_vec).collect();
    let writer = tokio::spawn(async move {
        for p in pieces {
            raw.write_all(&p).await.expect("write");
            raw.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        raw
    });
    for (i, want) in msgs.iter().enumerate() {
        match recv(&mut s).await {
            Event::Up { .. } if i == 0 => {
                let m = recv_msg(&mut s).await;
                assert_eq!(&m.bytes[..], &want[..], "message {i}");
            }
            Event::Message(m) => assert_eq!(&m.bytes[..], &want[..], "message {i}"),
            other => panic!("message {i}: expected a message, got {other:?}"),
        }
    }
    let mut raw = writer.await.expect("writer task");
    assert!(
        started.elapsed() > timeout,
        "the test must span more than one timeout to check the per-message clock"
    );
    // Still open in both directions.
    s.send(&Msg::new(11, 0, rmsg(0x08, 8, 1)))
        .await
        .expect("send");
    let mut buf = [0u8; 8];
    tokio::time::timeout(LIMIT, raw.read_exact(&mut buf))
        .await
        .expect("read within limit")
        .expect("read");
    assert_eq!(&buf[..], &rmsg(0x08, 8, 1)[..]);
}

/// Issue 13 item 6: stalled partial messages of many connections cannot hold more buffer
/// memory than the listener's `tcp_max_partial_bytes`. 48 raw connections each send a header
/// announcing 65532 bytes plus 1000 bytes and stall; the accounted partial memory never
/// exceeds the cap, connections beyond the budget are closed (their peer sees the close), a
/// well-behaved client on the same listener still gets its answers, and the budget is given
/// back when the stalled connections go away.
#[tokio::test]
async fn stalled_partial_messages_are_bounded_by_the_listener_budget() {
    const CAP: usize = 32 * 1024;
    const N: usize = 48;
    let mut c = TransportConfig::asap(TransportKind::Tcp);
    c.tcp_max_partial_bytes = Some(CAP);
    let t = Transport::new(c);
    let (l, addr) = listen(&t).await;
    let l = Arc::new(l);
    // Server: every association echoes each message until it is lost.
    let server = {
        let l = l.clone();
        tokio::spawn(async move {
            loop {
                let Ok(mut a) = l.accept().await else { return };
                tokio::spawn(async move {
                    while let Ok(ev) = a.recv().await {
                        match ev {
                            Event::Message(m) if a.send(&m).await.is_err() => return,
                            Event::Lost(_) => return,
                            _ => {}
                        }
                    }
                });
            }
        })
    };

    let mut partial = rmsg(0x20, 65532, 3);
    partial.truncate(4 + 1000);
    let mut attackers = Vec::new();
    for _ in 0..N {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&partial).await.expect("write");
        attackers.push(s);
        assert!(l.partial_bytes() <= CAP, "{} > {CAP}", l.partial_bytes());
    }

    // Connections beyond the budget are closed by the server (EOF or reset).
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut closed = [false; N];
    while closed.iter().filter(|c| **c).count() < N / 2 && tokio::time::Instant::now() < deadline {
        for (i, s) in attackers.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let mut b = [0u8; 16];
            match tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => closed[i] = true,
                Ok(Ok(n)) => panic!("attacker {i} got {n} bytes"),
                Err(_) => {}
            }
        }
        assert!(l.partial_bytes() <= CAP, "{} > {CAP}", l.partial_bytes());
    }
    let n_closed = closed.iter().filter(|c| **c).count();
    assert!(
        n_closed >= N / 2,
        "only {n_closed} of {N} stalled connections were closed"
    );
    assert!(
        n_closed < N,
        "the budget must still hold some partial messages"
    );
    let held = l.partial_bytes();
    assert!(held > 0 && held <= CAP, "accounted {held} bytes, cap {CAP}");

    // A well-behaved client on the same listener still gets answers.
    let mut good = t.connect(&[addr], &[]).await.expect("connect");
    for i in 0..5u8 {
        let m = rmsg(0x05, 100 + 4 * usize::from(i), i);
        good.send(&Msg::new(11, 0, m.clone())).await.expect("send");
        let echo = recv_msg(&mut good).await;
        assert_eq!(&echo.bytes[..], &m[..], "echo {i}");
    }

    // The budget is given back when the stalled connections end.
    drop(attackers);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while l.partial_bytes() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(l.partial_bytes(), 0, "budget not released");
    server.abort();
}
