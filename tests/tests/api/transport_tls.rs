//! TLS over TCP associations (`asap::transport::tls`; issue 13): messages framed inside TLS,
//! the verified peer certificate and its names, refusal of foreign CAs, missing client
//! certificates, plaintext and silent clients (each counted), plaintext next to TLS on an
//! optional-TLS listener. Loopback only; certificates from throw-away rcgen CAs
//! ([`rserpool_tests::tls`]). TLS over SCTP (`sctp-udp`) is tested in `tls_sctp.rs`.
//!
//! Run: `cargo test -p rserpool-tests --test api transport_tls`

use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::tls::{ClientAuth, PeerCertificate, TlsContext};
use asap::transport::{
    Event, Listener, Msg, Transport, TransportConfig, TransportError, TransportKind,
};
use rserpool_tests::net::assert_closed_by_peer;
use rserpool_tests::tls::{self, next_message, wait_refused, Ca};

const LIMIT: Duration = Duration::from_secs(10);

fn asap_tcp() -> Transport {
    Transport::new(TransportConfig::asap(TransportKind::Tcp))
}

/// The context of a registrar ("registrar.example") with a certificate from `ca`.
fn registrar_ctx(ca: &Ca, auth: ClientAuth) -> TlsContext {
    ca.context(Some(&ca.issue(&["registrar.example"])), auth)
}

/// A TLS-over-TCP listener with `ctx`.
async fn listen(ctx: TlsContext) -> (Listener, SocketAddr) {
    tls::listen(asap_tcp().with_tls(ctx)).await
}

/// A registrar listener that requires client certificates from `ca` and gives a handshake
/// at most `handshake_timeout`.
async fn listen_requiring_certs(ca: &Ca, handshake_timeout: Duration) -> (Listener, SocketAddr) {
    listen(registrar_ctx(ca, ClientAuth::Required).with_handshake_timeout(handshake_timeout)).await
}

/// An ASAP_HANDLE_RESOLUTION for pool "P": a 4-byte header plus a Pool Handle TLV.
fn message() -> Vec<u8> {
    vec![5, 0, 0, 12, 0, 9, 0, 5, b'P', 0, 0, 0]
}

#[tokio::test]
async fn mutual_tls_carries_framed_messages_and_names_the_peer() {
    let ca = Ca::new("test CA");
    let client_id = ca.issue(&["pe1.example", "192.0.2.7"]);
    let (l, at) = listen(registrar_ctx(&ca, ClientAuth::Required)).await;
    let mut c = asap_tcp()
        .with_tls(ca.context(Some(&client_id), ClientAuth::Required))
        .connect(&[at], &[])
        .await
        .expect("TLS connect");
    let mut s = l.accept().await.expect("accept");
    assert_eq!(s.kind(), TransportKind::Tcp);

    // Two messages in both directions, framed inside TLS (the 3-byte pad is added).
    for _ in 0..2 {
        c.send(&Msg::new(11, 0, message())).await.expect("send");
    }
    for _ in 0..2 {
        let m = next_message(&mut s).await;
        assert_eq!(m.ppid, 11);
        assert_eq!(&m.bytes[..], &message()[..]);
    }
    s.send(&Msg::new(11, 0, message()))
        .await
        .expect("send back");
    assert_eq!(&next_message(&mut c).await.bytes[..], &message()[..]);

    // Each side sees the other's verified certificate and its subject alternative names.
    let cert = s.peer_certificate().expect("client certificate");
    assert!(cert.valid_for("pe1.example"));
    assert!(cert.valid_for("192.0.2.7"));
    assert!(!cert.valid_for("pe2.example"));
    assert!(!cert.valid_for("not a name"));
    let cert = c.peer_certificate().expect("server certificate");
    assert!(cert.valid_for("registrar.example"));
    assert!(!cert.valid_for("pe1.example"));
    assert_eq!(l.tls_refused(), 0);

    // Garbage DER names nothing.
    assert!(!PeerCertificate::from_der(vec![0x30, 0x03, 1, 2, 3]).valid_for("pe1.example"));
}

/// Connects to `at` with a client the server refuses. The handshake may still finish on the
/// client side (TLS 1.3: the client finishes first); then a message is sent and the server's
/// alert, which ends the association, awaited (at most 10 s).
async fn try_refused_client(client: Transport, at: SocketAddr) {
    if let Ok(mut a) = client.connect(&[at], &[]).await {
        let _ = a.send(&Msg::new(11, 0, message())).await;
        let _ = tokio::time::timeout(LIMIT, async { while a.recv().await.is_ok() {} }).await;
    }
}

/// A required-TLS listener of `kind` refuses (and counts) a client certificate from another
/// CA, a missing client certificate, plaintext (aborted without an answer) and a silent
/// client, and meanwhile keeps accepting; a client refuses a server certificate of another
/// CA. Over TCP here, over `sctp-udp` in `tls_sctp::refusals_over_sctp_udp_are_counted`.
pub(crate) async fn refusals_are_counted(kind: TransportKind) {
    let t = || Transport::new(TransportConfig::asap(kind));
    let ca = Ca::new("cluster CA");
    let server = ca.issue(&["registrar.example"]);
    let ctx = ca
        .context(Some(&server), ClientAuth::Required)
        .with_handshake_timeout(Duration::from_millis(500));
    let (l, at) = tls::listen(t().with_tls(ctx)).await;

    // A client certificate from another CA (trusting the right one).
    let other = Ca::new("rogue CA");
    let foreign = other.issue(&["pe1.example"]);
    try_refused_client(
        t().with_tls(ca.context(Some(&foreign), ClientAuth::Required)),
        at,
    )
    .await;
    wait_refused(&l, 1).await;

    // No client certificate.
    try_refused_client(t().with_tls(ca.context(None, ClientAuth::Required)), at).await;
    wait_refused(&l, 2).await;

    // Plaintext ASAP: the association ends, no answer.
    let mut p = t().connect(&[at], &[]).await.expect("plain connect");
    p.send(&Msg::new(11, 0, message())).await.expect("send");
    wait_refused(&l, 3).await;
    loop {
        match tokio::time::timeout(LIMIT, p.recv())
            .await
            .expect("an event within 10 s")
        {
            Ok(Event::Message(m)) => panic!("plaintext got an answer: {m:?}"),
            Ok(Event::Lost(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }

    // Silent: refused after the handshake timeout, while a good client gets through.
    let _silent = t().connect(&[at], &[]).await.expect("silent connect");
    let good = ca.issue(&["pe1.example"]);
    let _c = t()
        .with_tls(ca.context(Some(&good), ClientAuth::Required))
        .connect(&[at], &[])
        .await
        .expect("good client");
    let s = tokio::time::timeout(LIMIT, l.accept())
        .await
        .expect("accept not stalled by the silent client")
        .expect("accept");
    assert!(s.peer_certificate().is_some());
    wait_refused(&l, 4).await;

    // The client refuses a server certificate of another CA.
    let rogue = other.issue(&["registrar.example"]);
    let (_l2, at2) =
        tls::listen(t().with_tls(other.context(Some(&rogue), ClientAuth::Required))).await;
    let e = t()
        .with_tls(ca.context(Some(&good), ClientAuth::Required))
        .connect(&[at2], &[])
        .await
        .err()
        .expect("foreign server refused");
    assert!(matches!(e, TransportError::Tls { .. }), "{e}");
}

#[tokio::test]
async fn foreign_ca_missing_cert_plaintext_and_silence_are_refused_and_counted() {
    refusals_are_counted(TransportKind::Tcp).await;
}

#[tokio::test]
async fn optional_tls_listener_takes_plaintext_and_tls() {
    let ca = Ca::new("test CA");
    let (l, at) = listen(registrar_ctx(&ca, ClientAuth::Optional)).await;

    let mut p = asap_tcp().connect(&[at], &[]).await.expect("plain");
    p.send(&Msg::new(11, 0, message())).await.expect("send");
    let mut s = l.accept().await.expect("accept plaintext");
    assert!(s.peer_certificate().is_none());
    assert_eq!(&next_message(&mut s).await.bytes[..], &message()[..]);

    let mut t = asap_tcp()
        .with_tls(ca.context(None, ClientAuth::Required))
        .connect(&[at], &[])
        .await
        .expect("TLS without client certificate");
    t.send(&Msg::new(11, 0, message())).await.expect("send");
    let mut s = l.accept().await.expect("accept TLS");
    assert!(s.peer_certificate().is_none(), "no client certificate");
    assert_eq!(&next_message(&mut s).await.bytes[..], &message()[..]);
    assert_eq!(l.tls_refused(), 0);
}

#[test]
fn bad_pem_is_a_clear_error() {
    let e = TlsContext::from_pem(b"not pem", None, ClientAuth::Required).expect_err("no CA");
    assert!(e.to_string().contains("CA"), "{e}");
    let ca = Ca::new("test CA");
    let cert = ca.issue(&["a.example"]).cert_pem;
    let e = TlsContext::from_pem(
        ca.pem().as_bytes(),
        Some((cert.as_bytes(), cert.as_bytes())),
        ClientAuth::Required,
    )
    .expect_err("no key");
    assert!(e.to_string().contains("key"), "{e}");
}

/// A flood of silent connections holds at most `MAX_CONCURRENT_HANDSHAKES` handshake tasks:
/// the next connection is closed at once and counted, long before any handshake timeout.
#[tokio::test]
async fn concurrent_handshakes_are_bounded() {
    use asap::transport::tls::MAX_CONCURRENT_HANDSHAKES;
    let ca = Ca::new("test CA");
    let (l, at) = listen_requiring_certs(&ca, Duration::from_secs(60)).await;
    let mut silent = Vec::new();
    for _ in 0..MAX_CONCURRENT_HANDSHAKES {
        silent.push(tokio::net::TcpStream::connect(at).await.expect("connect"));
    }
    // Let the listener take them all before the one too many.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        l.tls_refused(),
        0,
        "all within the bound wait for their handshake"
    );
    let extra = tokio::net::TcpStream::connect(at).await.expect("connect");
    wait_refused(&l, 1).await;
    // The extra connection was closed by the listener at once.
    assert_closed_by_peer(&extra, Duration::from_secs(5), "extra connection").await;
    assert_eq!(l.tls_refused(), 1);
}
