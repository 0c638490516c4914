//! Kernel SCTP backend of `asap::transport`.
//!
//! These tests need a kernel with SCTP. On a host without it each test prints `SKIPPED` and
//! passes (the build hosts have none); they are meant to run in the qemu VM, e.g. with
//! the VM rig's `cargo-tests` scenario (`tests/vm/run.sh cargo-tests`), which copies this test binary into the VM image and runs it there.
//!
//! Run (with SCTP): `cargo test -p asap --test transport_sctp -- --test-threads=1`
//!
//! A test binary of its own (not grouped with the other transport tests): the VM rig
//! (`tests/vm/run.sh`, `CARGO_TESTS`) copies whole test executables into the guest and runs
//! them under TCG, so this one carries only the tests that need kernel SCTP.

use std::net::SocketAddr;

use asap::transport::{
    sctp_probe, Association, Event, Listener, LostReason, Msg, Transport, TransportConfig,
    TransportError, TransportKind,
};

#[path = "transport/assoc.rs"]
mod assoc;
use assoc::{recv, recv_msg, LIMIT};

fn available() -> bool {
    let probe = sctp_probe();
    if !probe.is_available() {
        eprintln!("SKIPPED: kernel SCTP {probe}");
    }
    probe.is_available()
}

fn sctp(max: usize) -> Transport {
    let mut c = TransportConfig::asap(TransportKind::Sctp);
    c.max_message_size = max;
    Transport::new(c)
}

fn addrs(s: &[&str]) -> Vec<SocketAddr> {
    s.iter().map(|a| a.parse().expect("literal")).collect()
}

/// Next event that is not a peer address change.
async fn recv_non_path(a: &mut Association) -> Event {
    loop {
        match recv(a).await {
            Event::PeerAddrChange { .. } => continue,
            ev => return ev,
        }
    }
}

async fn pair(
    t: &Transport,
    listen: &[&str],
    bind: &[&str],
) -> (Listener, Association, Association) {
    let l = t.listen(&addrs(listen)).await.expect("listen");
    let port = l.local_addrs().expect("local")[0].port();
    let peers: Vec<SocketAddr> = addrs(listen)
        .into_iter()
        .map(|mut a| {
            a.set_port(port);
            a
        })
        .collect();
    let c = t.connect(&peers, &addrs(bind)).await.expect("connect");
    let s = tokio::time::timeout(LIMIT, l.accept())
        .await
        .expect("accept within limit")
        .expect("accept");
    (l, c, s)
}

/// A connected pair on 127.0.0.1 (listener, client, server) of endpoints with maximum message
/// size `max`; `None` (the test is skipped) without kernel SCTP.
async fn loopback(max: usize) -> Option<(Listener, Association, Association)> {
    if !available() {
        return None;
    }
    Some(pair(&sctp(max), &["127.0.0.1:0"], &[]).await)
}

#[tokio::test]
async fn large_message_whole_with_ppid_and_stream() {
    let Some((_l, mut c, mut s)) = loopback(256 * 1024 + 4).await else {
        return;
    };
    assert_eq!(c.kind(), TransportKind::Sctp);
    match recv(&mut c).await {
        Event::Up {
            outbound_streams, ..
        } => assert_eq!(outbound_streams, 10),
        other => panic!("expected Up, got {other:?}"),
    }
    let body: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    for (ppid, stream) in [(11u32, 3u16), (12, 0), (0xDEAD_BEEF, 9)] {
        c.send(&Msg::new(ppid, stream, body.clone()))
            .await
            .expect("send");
        let m = recv_msg(&mut s).await;
        assert_eq!((m.ppid, m.stream), (ppid, stream));
        assert_eq!(m.bytes.len(), body.len(), "delivered whole, not in pieces");
        assert!(m.bytes[..] == body[..], "bytes intact");
        s.send(&m).await.expect("echo");
        assert_eq!(recv_msg(&mut c).await, m);
    }
    // Many small messages keep their boundaries.
    for i in 0..500u32 {
        c.send(&Msg::new(11, (i % 10) as u16, i.to_be_bytes().to_vec()))
            .await
            .expect("send");
    }
    for i in 0..500u32 {
        let m = recv_msg(&mut s).await;
        assert_eq!(&m.bytes[..], &i.to_be_bytes());
        assert_eq!(m.stream, (i % 10) as u16);
    }
}

#[tokio::test]
async fn multihomed_bind_and_connect() {
    if !available() {
        return;
    }
    let t = sctp(64 * 1024);
    let (l, mut c, mut s) = pair(
        &t,
        &["127.0.0.1:0", "127.0.0.2:0"],
        &["127.0.0.3:0", "127.0.0.4:0"],
    )
    .await;
    let la = l.local_addrs().expect("local");
    assert_eq!(la.len(), 2);
    assert_eq!(la[0].port(), la[1].port());
    let mut peers = c.peer_addrs().expect("peers");
    peers.sort();
    assert_eq!(peers, la);
    let mut from: Vec<_> = s
        .peer_addrs()
        .expect("peers")
        .iter()
        .map(|a| a.ip())
        .collect();
    from.sort();
    assert_eq!(
        from,
        vec![
            "127.0.0.3".parse::<std::net::IpAddr>().expect("literal"),
            "127.0.0.4".parse().expect("literal")
        ]
    );
    c.send(&Msg::new(11, 1, vec![1, 2, 3])).await.expect("send");
    assert_eq!(recv_msg(&mut s).await.bytes[..], [1, 2, 3]);
}

#[tokio::test]
async fn graceful_close_reports_both_sides() {
    let Some((_l, mut c, mut s)) = loopback(64 * 1024).await else {
        return;
    };
    c.send(&Msg::new(11, 0, vec![9; 100])).await.expect("send");
    assert_eq!(recv_msg(&mut s).await.bytes.len(), 100);
    assert!(matches!(recv(&mut c).await, Event::Up { .. }));
    c.close().await.expect("close");
    assert_eq!(
        recv_non_path(&mut s).await,
        Event::Lost(LostReason::PeerClosed)
    );
    assert_eq!(
        recv_non_path(&mut c).await,
        Event::Lost(LostReason::ShutdownComplete)
    );
    assert!(matches!(c.recv().await, Err(TransportError::Closed)));
}

#[tokio::test]
async fn abort_is_seen_as_comm_lost() {
    let Some((_l, c, mut s)) = loopback(64 * 1024).await else {
        return;
    };
    assert!(matches!(recv(&mut s).await, Event::Up { .. }));
    c.abort();
    match recv_non_path(&mut s).await {
        Event::Lost(LostReason::CommLost { .. }) | Event::Lost(LostReason::Reset) => {}
        other => panic!("expected CommLost/Reset, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_message_drops_only_that_association() {
    if !available() {
        return;
    }
    let small = sctp(1024);
    let big = sctp(256 * 1024);
    let l = small
        .listen(&addrs(&["127.0.0.1:0"]))
        .await
        .expect("listen");
    let addr = l.local_addrs().expect("local")[0];
    let mut good = big.connect(&[addr], &[]).await.expect("connect");
    let mut good_s = l.accept().await.expect("accept");
    let mut bad = big.connect(&[addr], &[]).await.expect("connect");
    let mut bad_s = l.accept().await.expect("accept");
    bad.send(&Msg::new(11, 0, vec![0; 4096]))
        .await
        .expect("send");
    assert_eq!(
        recv_non_path(&mut bad_s).await,
        Event::Up {
            outbound_streams: 10,
            inbound_streams: 10
        }
    );
    assert_eq!(
        recv_non_path(&mut bad_s).await,
        Event::Lost(LostReason::MessageTooLarge { max: 1024 })
    );
    // The sender sees its association end.
    loop {
        match recv(&mut bad).await {
            Event::Lost(_) => break,
            Event::Up { .. } | Event::PeerAddrChange { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    good.send(&Msg::new(11, 0, vec![1; 1000]))
        .await
        .expect("send");
    assert_eq!(recv_msg(&mut good_s).await.bytes.len(), 1000);
    // Sending more than the local maximum is refused before the kernel sees it.
    assert!(matches!(
        good_s.send(&Msg::new(11, 0, vec![0; 2000])).await,
        Err(TransportError::MessageTooLarge {
            len: 2000,
            max: 1024
        })
    ));
}

#[tokio::test]
async fn stream_beyond_negotiated_is_an_error_not_a_hang() {
    let Some((_l, mut c, mut s)) = loopback(64 * 1024).await else {
        return;
    };
    assert!(c.send(&Msg::new(11, 100, vec![1])).await.is_err());
    c.send(&Msg::new(11, 9, vec![2])).await.expect("send");
    assert_eq!(recv_msg(&mut s).await.stream, 9);
}

/// `send_batch` over kernel SCTP (issue 15: `sendmmsg`, up to 64 messages per call): every
/// message arrives whole, in order, with its own PPID and stream, also across the 64-message
/// boundary and with large messages in between; an oversized message is left out and
/// reported after the others went out.
#[tokio::test]
async fn send_batch_keeps_boundaries_ppid_and_stream() {
    let Some((_l, c, mut s)) = loopback(64 * 1024).await else {
        return;
    };
    let (_cr, mut cw) = c.into_split();
    let batch: Vec<Msg> = (0..150u32)
        .map(|i| {
            let len = if i % 50 == 7 {
                40_000
            } else {
                4 + (i as usize % 13)
            };
            let mut b = vec![(i % 251) as u8; len];
            b[..4].copy_from_slice(&i.to_be_bytes());
            Msg::new(if i % 2 == 0 { 11 } else { 12 }, (i % 10) as u16, b)
        })
        .collect();
    let mut buf = Vec::new();
    cw.send_batch(&batch, &mut buf).await.expect("send_batch");
    for (i, want) in batch.iter().enumerate() {
        let m = recv_msg(&mut s).await;
        assert_eq!((m.ppid, m.stream), (want.ppid, want.stream), "message {i}");
        assert_eq!(m.bytes, want.bytes, "message {i} whole and in order");
    }
    // A message over the maximum is left out; the ones around it still go, in order.
    let mixed = vec![
        Msg::new(11, 1, vec![1; 10]),
        Msg::new(11, 2, vec![2; 64 * 1024 + 1]),
        Msg::new(12, 3, vec![3; 20]),
    ];
    assert!(matches!(
        cw.send_batch(&mixed, &mut buf).await,
        Err(TransportError::MessageTooLarge { len: 65537, .. })
    ));
    let a = recv_msg(&mut s).await;
    assert_eq!((a.ppid, a.stream, a.bytes.len()), (11, 1, 10));
    let b = recv_msg(&mut s).await;
    assert_eq!((b.ppid, b.stream, b.bytes.len()), (12, 3, 20));
}

/// One counter of the kernel's SCTP MIB (`/proc/net/sctp/snmp`, RFC 3873), e.g.
/// `SctpOutSCTPPacks`.
fn sctp_mib(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/sctp/snmp").expect("/proc/net/sctp/snmp");
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().and_then(|v| v.parse().ok()))?
        })
        .unwrap_or_else(|| panic!("{name} not in /proc/net/sctp/snmp"))
}

/// `send_batch` bundles (issue 15): a batch of small messages leaves in a few SCTP packets,
/// not one packet each (all but the last are sent with `MSG_MORE`, RFC 9260 §6.10). Counted
/// with the kernel's own MIB over both ends of a loopback association: the 32 DATA chunks
/// and the SACKs for them fit in far fewer than 32 packets. Without bundling (one packet
/// per message, `SCTP_NODELAY`) the count is at least 32.
#[tokio::test]
async fn send_batch_bundles_small_messages_into_few_packets() {
    let Some((_l, c, mut s)) = loopback(64 * 1024).await else {
        return;
    };
    let (_cr, mut cw) = c.into_split();
    // Settle: the set-up's packets (INIT ... COOKIE ACK, first SACKs) are counted before.
    let mut buf = Vec::new();
    cw.send_batch(&[Msg::new(11, 0, vec![0; 8])], &mut buf)
        .await
        .expect("warm-up");
    recv_msg(&mut s).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (packets0, chunks0) = (sctp_mib("SctpOutSCTPPacks"), sctp_mib("SctpOutOrderChunks"));
    let batch: Vec<Msg> = (0..32u32)
        .map(|i| {
            let mut b = vec![0u8; 40];
            b[..4].copy_from_slice(&i.to_be_bytes());
            Msg::new(11, 0, b)
        })
        .collect();
    cw.send_batch(&batch, &mut buf).await.expect("send_batch");
    for (i, want) in batch.iter().enumerate() {
        assert_eq!(recv_msg(&mut s).await.bytes, want.bytes, "message {i}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let packets = sctp_mib("SctpOutSCTPPacks") - packets0;
    let chunks = sctp_mib("SctpOutOrderChunks") - chunks0;
    eprintln!("32 messages: {chunks} ordered DATA chunks in {packets} SCTP packets (both ends)");
    assert!(chunks >= 32, "{chunks} DATA chunks counted");
    assert!(
        packets <= 8,
        "{packets} packets for 32 small messages and their SACKs: not bundled"
    );
}
