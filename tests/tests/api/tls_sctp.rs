//! TLS over SCTP (issue 13 item 1; SECURITY.md "TLS over SCTP"), on the host over the
//! userspace `sctp-udp` transport (the same code path as kernel SCTP above the association;
//! kernel SCTP is covered by the VM scenario `tls-sctp`):
//!
//! * the transport: one TLS session on stream 0, RSerPool messages framed inside (small,
//!   multi-record and batched messages, both ways), the verified certificates, refusals of a
//!   foreign CA, a missing client certificate, plaintext and silence (each counted by the
//!   listener), an optional-TLS listener taking plaintext and TLS side by side;
//! * the registrar: two `enrp-server` drivers peering over mutual TLS on `sctp-udp`, a TLS PE
//!   (`PoolElementBuilder::registrar_tls`) registering into a `[[pool_auth]]` pool at one and
//!   a TLS PU (`PoolUserBuilder::registrar_tls`) resolving it at the other; a PE with a
//!   wrong certificate refused; a plaintext and a foreign-CA ENRP peer refused (counted in
//!   `enrp_tls_refused`, nothing injected).
//!
//! Run: `cargo test -p rserpool-tests --test api tls_sctp`

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use asap::transport::tls::{ClientAuth, TlsContext};
use asap::transport::{
    Association, Event, Listener, LostReason, Msg, Transport, TransportConfig, TransportError,
    TransportKind,
};
use enrp_server::core::{server_id_name, CoreConfig, EnrpSecurity, PoolAuth};
use enrp_server::driver::{Server, Stats};
use rserpool_tests::registrar::{inject, peer_core, resolve_ids, tcp_driver, POOL};
use rserpool_tests::tls::{listen, next_message, Ca, Identity};

const LIMIT: Duration = Duration::from_secs(10);
const KIND: TransportKind = TransportKind::SctpUdp;

fn init() {
    // Every sctp-udp association of this process on one ephemeral UDP port.
    asap::transport::sctp_udp::set_process_defaults(0, None);
}

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn asap_t() -> Transport {
    Transport::new(TransportConfig::asap(KIND))
}

fn enrp_t() -> Transport {
    Transport::new(TransportConfig::enrp(KIND))
}

/// An ASAP_HANDLE_RESOLUTION for pool "P": a 4-byte header plus a Pool Handle TLV.
fn message() -> Vec<u8> {
    vec![5, 0, 0, 12, 0, 9, 0, 5, b'P', 0, 0, 0]
}

/// An RSerPool-framed message of `len` bytes (type 0x42, Message Length = len).
fn big(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    v[0] = 0x42;
    v[1] = 0;
    v[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    v
}

/// The next association `l` accepts (the test fails after [`LIMIT`]: accept stalled).
async fn accept(l: &Listener, what: &str) -> Association {
    tokio::time::timeout(LIMIT, l.accept())
        .await
        .unwrap_or_else(|_| panic!("{what}: accept stalled"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn next_event(a: &mut Association) -> Event {
    tokio::time::timeout(LIMIT, a.recv())
        .await
        .expect("an event within 10 s")
        .expect("association open")
}

/// Mutual TLS over `sctp-udp`: messages of any size both ways (framed inside TLS, PPID of
/// the endpoint, stream 0), `Up` first, the certificates visible on both ends, a PPID other
/// than the endpoint's refused locally, and a graceful close seen by the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_over_sctp_udp_carries_framed_messages() {
    init();
    let ca = Ca::new("cluster CA");
    let server = ca.issue(&["registrar.example"]);
    let client = ca.issue(&["pe1.example"]);
    let (l, at) = listen(asap_t().with_tls(ca.context(Some(&server), ClientAuth::Required))).await;
    assert_eq!(l.kind(), TransportKind::SctpUdp);
    // The listener runs the handshake in a task of its own: connect returns before accept.
    let mut c = asap_t()
        .with_tls(ca.context(Some(&client), ClientAuth::Required))
        .connect(&[at], &[])
        .await
        .expect("TLS connect");
    let mut s = accept(&l, "accept").await;
    assert!(matches!(next_event(&mut c).await, Event::Up { .. }));
    assert!(matches!(next_event(&mut s).await, Event::Up { .. }));
    assert_eq!(c.kind(), TransportKind::SctpUdp);
    assert_eq!(s.kind(), TransportKind::SctpUdp);
    assert_eq!(c.peer_addrs().expect("peer")[0], at);

    // Small, padded (13 bytes → 16 on the wire), and larger than one TLS record (60 000
    // bytes → 4 records); then a batch.
    let odd = {
        let mut v = message();
        v[3] = 13;
        v.push(0x7f);
        v
    };
    let sent = [message(), odd.clone(), big(60_000), message()];
    for m in &sent {
        c.send(&Msg::new(11, 7, m.clone())).await.expect("send");
    }
    for m in &sent {
        let got = next_message(&mut s).await;
        assert_eq!(got.ppid, 11);
        assert_eq!(got.stream, 0, "messages inside TLS arrive on stream 0");
        let mut want = m.clone();
        want.resize(want.len().div_ceil(4) * 4, 0);
        assert_eq!(got.bytes.len(), want.len());
        assert_eq!(&got.bytes[..], &want[..]);
    }
    let (mut rd, mut wr) = s.into_split();
    let batch: Vec<Msg> = (0..5)
        .map(|i| {
            let mut m = message();
            m[8] = b'A' + i;
            Msg::new(11, 0, m)
        })
        .collect();
    wr.send_batch(&batch, &mut Vec::new()).await.expect("batch");
    for m in &batch {
        assert_eq!(next_message(&mut c).await.bytes, m.bytes);
    }

    // Certificates.
    let cert = wr.peer_certificate().expect("client certificate");
    assert!(cert.valid_for("pe1.example"));
    assert!(!cert.valid_for("registrar.example"));
    let cert = c.peer_certificate().expect("server certificate");
    assert!(cert.valid_for("registrar.example"));

    // Only the endpoint's PPID (as over TCP), and only RSerPool-framed bytes.
    let e = c
        .send(&Msg::new(12, 0, message()))
        .await
        .expect_err("ENRP PPID on an ASAP endpoint");
    assert!(matches!(e, TransportError::PpidMismatch { .. }), "{e}");
    let e = c
        .send(&Msg::new(11, 0, vec![1, 2, 3]))
        .await
        .expect_err("not framed");
    assert!(matches!(e, TransportError::Frame(_)), "{e}");

    // Graceful close: close_notify, then SHUTDOWN; the server reads Lost(PeerClosed).
    c.close().await.expect("close");
    loop {
        match tokio::time::timeout(LIMIT, rd.recv())
            .await
            .expect("end in time")
            .expect("event")
        {
            Event::Lost(r) => {
                assert_eq!(r, LostReason::PeerClosed);
                break;
            }
            Event::Message(m) => panic!("unexpected message {m:?}"),
            _ => {}
        }
    }
    assert_eq!(l.tls_refused(), 0);
}

/// A required-TLS listener over `sctp-udp` refuses (and counts) a client certificate from
/// another CA, a missing client certificate, plaintext and a silent association, and keeps
/// accepting; a client refuses a server certificate of another CA (the test of
/// `transport_tls` over TCP, on `sctp-udp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_sctp_udp_are_counted() {
    init();
    super::transport_tls::refusals_are_counted(KIND).await;
}

/// An optional-TLS listener over `sctp-udp` (the registrar's ASAP port with `--asap-tls
/// on`) takes a plaintext association (rsplib PEs; its first message is delivered) and a
/// TLS one side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_tls_over_sctp_udp_takes_plaintext_and_tls() {
    init();
    let ca = Ca::new("cluster CA");
    let server = ca.issue(&["registrar.example"]);
    let (l, at) = listen(asap_t().with_tls(ca.context(Some(&server), ClientAuth::Optional))).await;

    let mut p = asap_t().connect(&[at], &[]).await.expect("plain");
    p.send(&Msg::new(11, 0, message())).await.expect("send");
    let mut s = accept(&l, "accept plaintext").await;
    assert!(s.peer_certificate().is_none());
    assert!(matches!(next_event(&mut s).await, Event::Up { .. }));
    assert_eq!(&next_message(&mut s).await.bytes[..], &message()[..]);
    // Plaintext both ways, any PPID and stream (nothing is framed).
    s.send(&Msg::new(11, 2, vec![9, 9]))
        .await
        .expect("send back");
    let m = next_message(&mut p).await;
    assert_eq!((m.stream, &m.bytes[..]), (2, &[9u8, 9][..]));

    let mut t = asap_t()
        .with_tls(ca.context(None, ClientAuth::Required))
        .connect(&[at], &[])
        .await
        .expect("TLS without client certificate");
    let mut s2 = accept(&l, "accept TLS").await;
    assert!(s2.peer_certificate().is_none(), "no client certificate");
    t.send(&Msg::new(11, 0, message())).await.expect("send");
    assert_eq!(&next_message(&mut s2).await.bytes[..], &message()[..]);
    assert_eq!(l.tls_refused(), 0);
}

// ---------------------------------------------------------------------------------------
// Registrars

const IDS: [u32; 2] = [0x0000_5C01, 0x0000_5C02];
const SECURE: &str = "SecurePool";

struct Reg {
    asap: SocketAddr,
    enrp: SocketAddr,
    stats: Arc<Stats>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Registrar `i` over `sctp-udp` on 127.0.0.1: ENRP on SCTP port 19_990 + i (ports are the
/// process's own, inside its UDP socket), ENRP `tls` with a certificate naming its server
/// ID, the other registrar as static peer, TLS offered on ASAP, [`SECURE`] requiring a
/// client certificate naming `pe1.example`.
async fn start_registrar(i: usize, ca: &Ca) -> Reg {
    let mut core: CoreConfig = peer_core(
        IDS[i],
        vec![lo(19_990 + (1 - i) as u16)],
        Duration::from_millis(2000),
        Duration::from_millis(500),
    );
    core.security.enrp_security = EnrpSecurity::Tls;
    core.security.pool_auth = vec![PoolAuth {
        handle: SECURE.into(),
        tls_names: vec!["pe1.example".into()],
        addresses: Vec::new(),
        psk: Vec::new(),
    }];
    let id = ca.issue(&[&server_id_name(IDS[i])]);
    let mut driver = tcp_driver(lo(0), lo(19_990 + i as u16), 100);
    driver.transport = KIND;
    driver.enrp_tls = Some(ca.context(Some(&id), ClientAuth::Required));
    driver.asap_tls = Some(ca.context(Some(&id), ClientAuth::Optional));
    let server = Server::bind(core, driver).await.expect("bind registrar");
    let (asap, enrp) = (server.asap_addrs()[0], server.enrp_addrs()[0]);
    let stats = server.stats();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Reg {
        asap,
        enrp,
        stats,
        stop,
    }
}

/// Resolves `handle` (all items) over a fresh TLS (no client certificate) ASAP association.
async fn resolve_tls(asap: SocketAddr, ca: &Ca, handle: &str) -> BTreeSet<u32> {
    let mut a = asap_t()
        .with_tls(ca.context(None, ClientAuth::Required))
        .connect(&[asap], &[])
        .await
        .expect("TLS PU association");
    resolve_ids(&mut a, handle).await.unwrap_or_default()
}

async fn wait_resolvable(asap: SocketAddr, ca: &Ca, handle: &str, id: u32) -> bool {
    for _ in 0..150 {
        if resolve_tls(asap, ca, handle).await.contains(&id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Two registrars peer over mutual TLS on `sctp-udp`; a TLS PE (client certificate for
/// the protected pool) registers at B and a TLS PU resolves it at A; a PE with a
/// certificate of the wrong name or of another CA is not registered; a plaintext ENRP
/// sender and one with a foreign-CA certificate are refused at A's listener (counted) and
/// inject nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrars_peer_over_tls_on_sctp_udp_with_tls_pe_and_pu() {
    init();
    let ca = Ca::new("cluster CA");
    let a = start_registrar(0, &ca).await;
    let b = start_registrar(1, &ca).await;

    // TLS PE at B (the asap PE builder with a client certificate).
    let pe1 = ca.issue(&["pe1.example"]);
    let (pe, _listener) = asap::pe::PoolElement::builder(SECURE)
        .transport(KIND)
        .registrar(b.asap)
        .listen(lo(0))
        .registrar_tls(ca.context(Some(&pe1), ClientAuth::Required))
        .start()
        .await
        .expect("TLS PE with the allowed certificate registers over sctp-udp");
    let id = pe.identifier();
    assert!(resolve_tls(b.asap, &ca, SECURE).await.contains(&id));

    // Replicated to A over the TLS peering; a TLS PU (the asap PU API) resolves it there.
    assert!(
        wait_resolvable(a.asap, &ca, SECURE, id).await,
        "PE registered at B resolvable at A over TLS peering on sctp-udp"
    );
    let pu = asap::pu::PoolUser::builder(SECURE)
        .transport(KIND)
        .registrar(a.asap)
        .registrar_tls(ca.context(None, ClientAuth::Required))
        .start()
        .await
        .expect("TLS PU");
    let got = pu.resolve(SECURE).await.expect("PU resolves over TLS");
    assert!(got.iter().any(|p| p.id == id), "{got:?}");

    // Wrong certificates: another name (cause 0xA), another CA (handshake refused).
    let rejected_before = b.stats.registrations_rejected.load(Ordering::Relaxed);
    let pe2 = ca.issue(&["pe2.example"]);
    let wrong_name = asap::pe::PoolElement::builder(SECURE)
        .transport(KIND)
        .registrar(b.asap)
        .listen(lo(0))
        .registrar_tls(ca.context(Some(&pe2), ClientAuth::Required))
        .register_wait(Duration::from_secs(3))
        .start()
        .await;
    assert!(wrong_name.is_err(), "PE with the wrong name registered");
    assert!(b.stats.registrations_rejected.load(Ordering::Relaxed) > rejected_before);
    let refused_before = b.stats.tls_refused.load(Ordering::Relaxed);
    let other = Ca::new("rogue CA");
    let foreign: Identity = other.issue(&["pe1.example"]);
    let foreign_ctx = TlsContext::from_pem(
        ca.pem().as_bytes(),
        Some((foreign.cert_pem.as_bytes(), foreign.key_pem.as_bytes())),
        ClientAuth::Required,
    )
    .expect("ctx");
    let wrong_ca = asap::pe::PoolElement::builder(SECURE)
        .transport(KIND)
        .registrar(b.asap)
        .listen(lo(0))
        .registrar_tls(foreign_ctx)
        .register_wait(Duration::from_secs(3))
        .start()
        .await;
    assert!(
        wrong_ca.is_err(),
        "PE with a foreign-CA certificate registered"
    );
    assert!(
        b.stats.tls_refused.load(Ordering::Relaxed) > refused_before,
        "foreign-CA PE counted as a TLS refusal"
    );
    assert_eq!(resolve_tls(b.asap, &ca, SECURE).await, BTreeSet::from([id]));

    // Plaintext ENRP to A, and a foreign-CA certificate naming a well-formed server ID:
    // refused at the listener, nothing injected.
    let refused_before = a.stats.tls_refused.load(Ordering::Relaxed);
    let rogue = other.issue(&[&server_id_name(0x0BAD_5C02)]);
    let foreign = enrp_t().with_tls(other.context(Some(&rogue), ClientAuth::Required));
    for (sender, pe, t) in [
        (0x0BAD_5C01, 0x666, enrp_t()),
        (0x0BAD_5C02, 0x667, foreign),
    ] {
        if let Ok(mut r) = t.connect(&[a.enrp], &[]).await {
            inject(&mut r, sender, IDS[0], pe).await;
        }
    }
    for _ in 0..200 {
        if a.stats.tls_refused.load(Ordering::Relaxed) >= refused_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        a.stats.tls_refused.load(Ordering::Relaxed) >= refused_before + 2,
        "plaintext and foreign-CA ENRP senders counted as TLS refusals"
    );
    let ids = resolve_tls(a.asap, &ca, POOL).await;
    assert!(!ids.contains(&0x666) && !ids.contains(&0x667), "{ids:x?}");
    assert!(
        resolve_tls(a.asap, &ca, SECURE).await.contains(&id),
        "the TLS PE stays"
    );
    assert!(a.enrp != b.enrp);
    drop(pe);
    let _ = a.stop.send(());
    let _ = b.stop.send(());
}
