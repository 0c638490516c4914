//! Host integration tests of mutual TLS between registrars and of authenticated
//! registrations (issue 13 items 1 and 3, SECURITY.md) over TCP on loopback: real drivers on
//! 127.0.0.{71,72,73}, attackers on 127.0.0.76..78, certificates from throw-away CAs made
//! with rcgen ([`rserpool_tests::tls`]). Assertions are on resolutions and registration
//! responses; waits are polls with a generous bound, never timing assertions.

use rserpool_tests::registrar::{
    connect, inject, peer_core, register, register_pes, resolve_all, resolve_ids, spawn_or_skip,
    tcp_driver, tcp_pe, Running, POOL,
};
use rserpool_tests::tls::{Ca, Identity};

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use asap::transport::tls::ClientAuth;
use asap::transport::{Association, Transport, TransportConfig, TransportKind};
use asap::wire::{CauseCode, PoolElementInfo, Protocol};
use enrp_server::core::{server_id_name, CoreConfig, EnrpSecurity, IpNet, PoolAuth};

const IDS: [u32; 2] = [0x0000_0C01, 0x0000_0C02];

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn enrp_addr(i: usize) -> SocketAddr {
    SocketAddr::new(ip(71 + i as u8), 19_971)
}

/// Registrar `i` of a TLS pair: static peer the other one, `--enrp-security tls` with a
/// certificate from `ca` naming its server ID.
async fn start_tls(i: usize, ca: &Ca) -> Option<Running> {
    let mut core = peer_core(
        IDS[i],
        vec![enrp_addr(1 - i)],
        Duration::from_millis(2000),
        Duration::from_millis(500),
    );
    core.security.enrp_security = EnrpSecurity::Tls;
    let id = ca.issue(&[&server_id_name(IDS[i])]);
    let mut driver = tcp_driver(SocketAddr::new(ip(71 + i as u8), 0), enrp_addr(i), 100);
    driver.enrp_tls = Some(ca.context(Some(&id), ClientAuth::Required));
    spawn_or_skip(core, driver).await
}

/// An ENRP association from 127.0.0.`from` to `to`, with TLS context `tls` if given.
/// `None` if the connection (or its handshake) failed.
async fn rogue_connect(
    to: SocketAddr,
    from: u8,
    tls: Option<asap::transport::tls::TlsContext>,
) -> Option<Association> {
    let mut t = Transport::new(TransportConfig::enrp(TransportKind::Tcp));
    if let Some(ctx) = tls {
        t = t.with_tls(ctx);
    }
    t.connect(&[to], &[SocketAddr::new(ip(from), 0)]).await.ok()
}

/// Registrar B joins A ([`start_tls`] 1): PE `id` registers at B (user address 127.0.0.1)
/// and becomes resolvable at A over the TLS peering (asserted). B and the PE's
/// association, or `None` if B cannot start here.
async fn b_replicates_to(a: &Running, ca: &Ca, id: u32) -> Option<(Running, Association)> {
    let b = start_tls(1, ca).await?;
    let mut pe = connect(b.asap, Protocol::Asap).await;
    register_pes(&mut pe, ip(1), [id]).await;
    assert!(
        wait_resolvable(a.asap, id).await,
        "PE {id:#x} registered at B not resolvable at A over TLS peering"
    );
    Some((b, pe))
}

async fn wait_resolvable(asap: SocketAddr, id: u32) -> bool {
    for _ in 0..150 {
        if resolve_all(asap).await.contains(&id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Two registrars with certificates from the cluster CA peer over mutual TLS and
/// replicate. Outsiders cannot inject a PE: plaintext, a certificate from another CA, no
/// client certificate, and a cluster certificate for one server ID claiming another (the
/// server-ID binding). A cluster certificate used with its own server ID does inject (the
/// control that shows the attack path works, so the refusals above are real).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peers_replicate_and_outsiders_cannot_inject() {
    let ca = Ca::new("cluster CA");
    let Some(a) = start_tls(0, &ca).await else {
        return;
    };
    // B's PE is replicated to A over the TLS peering.
    let Some((b, pe)) = b_replicates_to(&a, &ca, 0x100).await else {
        return;
    };

    // 1. Plaintext ENRP: closed before anything is read.
    const ROGUE: u32 = 0x0BAD_0C01;
    if let Some(mut r) = rogue_connect(a.enrp, 76, None).await {
        inject(&mut r, ROGUE, IDS[0], 0x666).await;
        // The registrar closes it: the association ends without any message.
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match r.recv().await {
                    Ok(asap::transport::Event::Message(m)) => {
                        panic!("plaintext ENRP association got an answer: {m:?}")
                    }
                    Ok(asap::transport::Event::Lost(_)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "plaintext ENRP association not closed");
    }

    // 2. A certificate from another CA (for a well-formed server-ID name).
    let other = Ca::new("rogue CA");
    let foreign = other.issue(&[&server_id_name(ROGUE + 1)]);
    if let Some(mut r) = rogue_connect(
        a.enrp,
        77,
        Some(other.context(Some(&foreign), ClientAuth::Required)),
    )
    .await
    {
        inject(&mut r, ROGUE + 1, IDS[0], 0x667).await;
    }

    // 3. TLS without a client certificate (trusting the right CA).
    if let Some(mut r) =
        rogue_connect(a.enrp, 77, Some(ca.context(None, ClientAuth::Required))).await
    {
        inject(&mut r, ROGUE + 2, IDS[0], 0x668).await;
    }

    // 4. A cluster certificate for server ID X claiming server ID Y.
    let x = ca.issue(&[&server_id_name(ROGUE + 3)]);
    let mut claim = rogue_connect(a.enrp, 78, Some(ca.context(Some(&x), ClientAuth::Required)))
        .await
        .expect("a cluster certificate completes the handshake");
    inject(&mut claim, ROGUE + 4, IDS[0], 0x669).await;

    // Control: the same certificate with its own server ID is a peer and injects.
    inject(&mut claim, ROGUE + 3, IDS[0], 0x66A).await;
    assert!(
        wait_resolvable(a.asap, 0x66A).await,
        "control: a cluster member speaking as its own server ID adds a PE"
    );
    // Everything sent before the control was processed by now.
    let ids = resolve_all(a.asap).await;
    for refused in [0x666, 0x667, 0x668, 0x669] {
        assert!(
            !ids.contains(&refused),
            "PE {refused:#x} injected by an unauthenticated sender: {ids:x?}"
        );
    }
    assert!(ids.contains(&0x100), "the TLS peer's PE stays");
    drop(claim);
    drop(pe);
    a.stop().await;
    b.stop().await;
}

/// A silent client on the TLS ENRP port does not stall accept: a real peer's association
/// (and its replication) gets through while the silent one holds its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_client_does_not_stall_accept() {
    let ca = Ca::new("cluster CA");
    let Some(a) = start_tls(0, &ca).await else {
        return;
    };
    // Five silent TCP connections to A's ENRP port, opened before B exists.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(
            tokio::net::TcpStream::connect(a.enrp)
                .await
                .expect("TCP connect"),
        );
    }
    // Replication to A works while the silent clients hold its ENRP port.
    let Some((b, pe)) = b_replicates_to(&a, &ca, 0x200).await else {
        return;
    };
    drop(silent);
    drop(pe);
    a.stop().await;
    b.stop().await;
}

const SECURE: &str = "SecurePool";

/// A lone registrar on 127.0.0.73 offering TLS on its ASAP port, with [`SECURE`] protected
/// by `[[pool_auth]]`: TLS client certificates naming `pe1.example`, or plaintext PEs
/// from 127.0.0.77.
async fn start_pool_auth(ca: &Ca) -> Option<Running> {
    let mut core = CoreConfig::new(0x0000_0C03);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.security.pool_auth = vec![PoolAuth {
        handle: SECURE.into(),
        tls_names: vec!["pe1.example".into()],
        addresses: vec![IpNet {
            addr: ip(77),
            prefix: 32,
        }],
        psk: Vec::new(),
    }];
    let at = SocketAddr::new(ip(73), 0);
    let mut driver = tcp_driver(at, at, 100);
    let id = ca.issue(&["registrar.example"]);
    driver.asap_tls = Some(ca.context(Some(&id), ClientAuth::Optional));
    spawn_or_skip(core, driver).await
}

/// PE `id` with user transport on 127.0.0.`at` (the registrar takes only user addresses
/// of the registering association).
fn pe(id: u32, at: u8) -> PoolElementInfo {
    tcp_pe(id, ip(at))
}

/// An ASAP association from 127.0.0.`from`, over TLS presenting `id` if given.
async fn asap_from(to: SocketAddr, from: u8, tls: Option<(&Ca, Option<&Identity>)>) -> Association {
    let mut t = Transport::new(TransportConfig::asap(TransportKind::Tcp));
    if let Some((ca, id)) = tls {
        t = t.with_tls(ca.context(id, ClientAuth::Required));
    }
    t.connect(&[to], &[SocketAddr::new(ip(from), 0)])
        .await
        .unwrap_or_else(|e| panic!("ASAP connect from 127.0.0.{from}: {e}"))
}

/// The PE IDs a resolution of `handle` (all items) returns.
async fn resolve(asap: SocketAddr, handle: &str) -> BTreeSet<u32> {
    let mut a = connect(asap, Protocol::Asap).await;
    // An Operation Error (unknown pool) counts as no PE.
    resolve_ids(&mut a, handle).await.unwrap_or_default()
}

/// Issue 13 item 3: a protected pool takes a registration only with a credential. Allowed
/// certificate registers; a certificate from the right CA with another name, plaintext from
/// an address outside the allow-list and a certificate from another CA do not (cause 0xA,
/// nothing resolvable); a plaintext PE from the allow-listed address registers; other pools
/// are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_auth_admits_only_credentials() {
    let ca = Ca::new("cluster CA");
    let Some(r) = start_pool_auth(&ca).await else {
        return;
    };
    let refused = |x: &asap::wire::asap_msg::RegistrationResponse, what: &str| {
        assert!(x.reject, "{what}: registration accepted");
        assert_eq!(
            x.error.as_ref().and_then(|e| e.first_code()),
            Some(CauseCode::RejectedSecurity),
            "{what}: cause"
        );
    };

    // Allowed certificate over TLS.
    let pe1 = ca.issue(&["pe1.example"]);
    let mut good = asap_from(r.asap, 76, Some((&ca, Some(&pe1)))).await;
    assert!(good.peer_certificate().is_some(), "registrar certificate");
    let x = register(&mut good, SECURE, pe(0x301, 76)).await;
    assert!(!x.reject, "allowed certificate refused: {x:?}");

    // Certificate from the cluster CA with another name.
    let pe2 = ca.issue(&["pe2.example"]);
    let mut wrong = asap_from(r.asap, 76, Some((&ca, Some(&pe2)))).await;
    refused(
        &register(&mut wrong, SECURE, pe(0x302, 76)).await,
        "wrong name",
    );

    // TLS without a client certificate, from an address not allowed.
    let mut anon = asap_from(r.asap, 76, Some((&ca, None))).await;
    refused(
        &register(&mut anon, SECURE, pe(0x303, 76)).await,
        "no certificate",
    );

    // Plaintext from 127.0.0.78 (not allowed) and from 127.0.0.77 (allowed).
    let mut plain_bad = asap_from(r.asap, 78, None).await;
    refused(
        &register(&mut plain_bad, SECURE, pe(0x304, 78)).await,
        "plaintext, address not allowed",
    );
    let mut plain_ok = asap_from(r.asap, 77, None).await;
    let x = register(&mut plain_ok, SECURE, pe(0x305, 77)).await;
    assert!(!x.reject, "allow-listed address refused: {x:?}");

    // An unprotected pool takes anyone.
    register_pes(&mut plain_bad, ip(78), [0x306]).await;

    assert_eq!(
        resolve(r.asap, SECURE).await,
        BTreeSet::from([0x301, 0x305]),
        "only the PEs with a credential are in the protected pool"
    );
    assert!(resolve(r.asap, POOL).await.contains(&0x306));
    drop((good, wrong, anon, plain_bad, plain_ok));
    r.stop().await;
}

/// The `asap` pool element API presents a client certificate to the registrar
/// (`PoolElementBuilder::registrar_tls`) and registers into a protected pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pe_api_registers_with_client_certificate() {
    let ca = Ca::new("cluster CA");
    let Some(r) = start_pool_auth(&ca).await else {
        return;
    };
    let pe1 = ca.issue(&["pe1.example"]);
    let (pe, _listener) = asap::pe::PoolElement::builder(SECURE)
        .registrar(r.asap)
        .listen(SocketAddr::new(ip(1), 0))
        .registrar_tls(ca.context(Some(&pe1), ClientAuth::Required))
        .start()
        .await
        .expect("PE with the allowed certificate registers");
    let id = pe.identifier();
    assert!(resolve(r.asap, SECURE).await.contains(&id));

    // The same PE without the certificate is refused (start fails, nothing resolvable).
    let refused = asap::pe::PoolElement::builder(SECURE)
        .registrar(r.asap)
        .listen(SocketAddr::new(ip(1), 0))
        .register_wait(Duration::from_secs(3))
        .start()
        .await;
    assert!(refused.is_err(), "plaintext PE from 127.0.0.1 registered");
    assert_eq!(resolve(r.asap, SECURE).await, BTreeSet::from([id]));
    drop(pe);
    r.stop().await;
}
