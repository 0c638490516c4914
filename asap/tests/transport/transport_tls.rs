//! TLS over TCP associations (`asap::transport::tls`; issue 13): messages framed inside TLS,
//! the verified peer certificate and its names, refusal of foreign CAs, missing client
//! certificates, plaintext and silent clients (each counted), plaintext next to TLS on an
//! optional-TLS listener. Loopback only; certificates from throw-away rcgen CAs. TLS over
//! SCTP (`sctp-udp`) is tested in `tests/tests/tls_sctp.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::tls::{ClientAuth, PeerCertificate, TlsContext};
use asap::transport::{
    Event, Listener, Msg, Transport, TransportConfig, TransportError, TransportKind,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test CA");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("CA");
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM) with these SANs.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("EE");
        (cert.pem(), key.serialize_pem())
    }

    fn ctx(&self, id: Option<&(String, String)>, auth: ClientAuth) -> TlsContext {
        TlsContext::from_pem(
            self.cert.pem().as_bytes(),
            id.map(|(c, k)| (c.as_bytes(), k.as_bytes())),
            auth,
        )
        .expect("context")
    }
}

fn asap_tcp() -> Transport {
    Transport::new(TransportConfig::asap(TransportKind::Tcp))
}

/// The context of a registrar ("registrar.example") with a certificate from `ca`.
fn registrar_ctx(ca: &Ca, auth: ClientAuth) -> TlsContext {
    ca.ctx(Some(&ca.issue(&["registrar.example"])), auth)
}

async fn listen(ctx: TlsContext) -> (Listener, SocketAddr) {
    let l = asap_tcp()
        .with_tls(ctx)
        .listen(&["127.0.0.1:0".parse().expect("lit")])
        .await
        .expect("listen");
    let at = l.local_addrs().expect("addrs")[0];
    (l, at)
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

async fn next_message(a: &mut asap::transport::Association) -> Msg {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), a.recv())
            .await
            .expect("no event within 10 s")
            .expect("association open")
        {
            Event::Message(m) => return m,
            Event::Lost(r) => panic!("lost: {r}"),
            _ => {}
        }
    }
}

async fn wait_refused(l: &Listener, n: u64) {
    for _ in 0..200 {
        if l.tls_refused() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("refusals: {} (wanted {n})", l.tls_refused());
}

#[tokio::test]
async fn mutual_tls_carries_framed_messages_and_names_the_peer() {
    let ca = Ca::new();
    let client_id = ca.issue(&["pe1.example", "192.0.2.7"]);
    let (l, at) = listen(registrar_ctx(&ca, ClientAuth::Required)).await;
    let mut c = asap_tcp()
        .with_tls(ca.ctx(Some(&client_id), ClientAuth::Required))
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

/// Connects to `at` with a client context the server refuses. The handshake may still
/// finish on the client side (TLS 1.3: the client finishes first); then a message is sent
/// and the server's alert, which ends the association, awaited (at most 5 s).
async fn try_refused_client(ctx: TlsContext, at: SocketAddr) {
    if let Ok(mut a) = asap_tcp().with_tls(ctx).connect(&[at], &[]).await {
        let _ = a.send(&Msg::new(11, 0, message())).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), a.recv()).await;
    }
}

#[tokio::test]
async fn foreign_ca_missing_cert_plaintext_and_silence_are_refused_and_counted() {
    let ca = Ca::new();
    let (l, at) = listen_requiring_certs(&ca, Duration::from_millis(300)).await;

    // A client certificate from another CA.
    let other = Ca::new();
    let foreign = other.issue(&["pe1.example"]);
    let foreign_ctx = TlsContext::from_pem(
        // trusts the right CA, presents the foreign certificate
        ca.cert.pem().as_bytes(),
        Some((foreign.0.as_bytes(), foreign.1.as_bytes())),
        ClientAuth::Required,
    )
    .expect("ctx");
    try_refused_client(foreign_ctx, at).await;
    wait_refused(&l, 1).await;

    // No client certificate.
    try_refused_client(ca.ctx(None, ClientAuth::Required), at).await;
    wait_refused(&l, 2).await;

    // Plaintext ASAP.
    let mut p = asap_tcp().connect(&[at], &[]).await.expect("TCP connect");
    p.send(&Msg::new(11, 0, message())).await.expect("send");
    wait_refused(&l, 3).await;

    // A silent client: refused after the handshake timeout, and meanwhile a good client
    // gets through.
    let _silent = tokio::net::TcpStream::connect(at).await.expect("connect");
    let good = ca.issue(&["pe1.example"]);
    let _c = asap_tcp()
        .with_tls(ca.ctx(Some(&good), ClientAuth::Required))
        .connect(&[at], &[])
        .await
        .expect("good client");
    let s = tokio::time::timeout(Duration::from_secs(5), l.accept())
        .await
        .expect("accept not stalled by the silent client")
        .expect("accept");
    assert!(s.peer_certificate().is_some());
    wait_refused(&l, 4).await;

    // A server certificate from another CA is refused by the client.
    let rogue = other.issue(&["registrar.example"]);
    let (_l2, at2) = listen(other.ctx(Some(&rogue), ClientAuth::Required)).await;
    let e = asap_tcp()
        .with_tls(ca.ctx(Some(&good), ClientAuth::Required))
        .connect(&[at2], &[])
        .await
        .err()
        .expect("foreign server refused");
    assert!(matches!(e, TransportError::Tls { .. }), "{e}");
}

#[tokio::test]
async fn optional_tls_listener_takes_plaintext_and_tls() {
    let ca = Ca::new();
    let (l, at) = listen(registrar_ctx(&ca, ClientAuth::Optional)).await;

    let mut p = asap_tcp().connect(&[at], &[]).await.expect("plain");
    p.send(&Msg::new(11, 0, message())).await.expect("send");
    let mut s = l.accept().await.expect("accept plaintext");
    assert!(s.peer_certificate().is_none());
    assert_eq!(&next_message(&mut s).await.bytes[..], &message()[..]);

    let mut t = asap_tcp()
        .with_tls(ca.ctx(None, ClientAuth::Required))
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
    let ca = Ca::new();
    let (cert, _) = ca.issue(&["a.example"]);
    let e = TlsContext::from_pem(
        ca.cert.pem().as_bytes(),
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
    let ca = Ca::new();
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
    // The extra connection was closed by the listener: EOF.
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.peek(&mut b))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "extra connection closed");
    assert_eq!(l.tls_refused(), 1);
}
