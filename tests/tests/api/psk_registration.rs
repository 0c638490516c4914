//! Per-pool pre-shared keys for registrations (issue 13 item 3; SECURITY.md "Per-pool
//! pre-shared keys"): a real registrar driver over TCP on loopback with `[[pool_auth]]
//! psk`; the `asap` PE API signs its REGISTRATIONs (`PoolElementBuilder::registration_key`)
//! and registers without TLS; a PE with the wrong key does not; a signed REGISTRATION sent
//! twice (a replay) is accepted once and refused the second time (cause 0xA).
//!
//! Run: `cargo test -p rserpool-tests --test api psk_registration`

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use asap::reg_auth::{sign, RegistrationKey};
use asap::transport::Msg;
use asap::wire::asap_msg::Registration;
use asap::wire::{
    AsapMessage, CauseCode, Message, Policy, PoolElementInfo, Protocol, TransportParameter,
    TransportUse,
};
use enrp_server::core::{CoreConfig, PoolAuth};
use enrp_server::driver::Server;
use rserpool_tests::registrar::{connect, recv_msg, resolve_ids, tcp_driver};

const POOL: &str = "KeyedPool";
/// A second protected pool for hand-made REGISTRATIONs (its own policy and transport use).
const RAW: &str = "KeyedRawPool";

fn key(b: u8) -> RegistrationKey {
    RegistrationKey::new(vec![b; 32]).expect("key")
}

async fn resolve(asap: SocketAddr, pool: &str) -> BTreeSet<u32> {
    let mut a = connect(asap, Protocol::Asap).await;
    resolve_ids(&mut a, pool).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_signed_registrations_accepted_wrong_key_and_replay_refused() {
    let mut core = CoreConfig::new(0x0000_5C11);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.security.pool_auth = [POOL, RAW]
        .into_iter()
        .map(|handle| PoolAuth {
            handle: handle.into(),
            tls_names: Vec::new(),
            addresses: Vec::new(),
            psk: vec![key(0x11)],
        })
        .collect();
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::bind(core, tcp_driver(lo, lo, 100))
        .await
        .expect("bind");
    let asap = server.asap_addrs()[0];
    let stats = server.stats();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));

    // The PE API with the pool key registers over plaintext TCP.
    let (pe, _listener) = asap::pe::PoolElement::builder(POOL)
        .registrar(asap)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .registration_key(key(0x11))
        .start()
        .await
        .expect("PE with the pool key registers");
    let id = pe.identifier();
    assert_eq!(resolve(asap, POOL).await, BTreeSet::from([id]));

    // The wrong key: refused (start fails), nothing added.
    let rejected = stats.registrations_rejected.load(Ordering::Relaxed);
    let wrong = asap::pe::PoolElement::builder(POOL)
        .registrar(asap)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .registration_key(key(0x12))
        .register_wait(Duration::from_secs(3))
        .start()
        .await;
    assert!(wrong.is_err(), "PE with the wrong key registered");
    assert!(stats.registrations_rejected.load(Ordering::Relaxed) > rejected);
    // No key at all: refused too.
    let none = asap::pe::PoolElement::builder(POOL)
        .registrar(asap)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .register_wait(Duration::from_secs(3))
        .start()
        .await;
    assert!(none.is_err(), "PE without a key registered");
    assert_eq!(resolve(asap, POOL).await, BTreeSet::from([id]));

    // A signed REGISTRATION captured and sent again: accepted once, then refused.
    let mut a = connect(asap, Protocol::Asap).await;
    let reg = Message::from(Registration {
        pool_handle: RAW.into(),
        pool_element: PoolElementInfo {
            id: 0x7777,
            home_server_id: 0,
            registration_life: 600_000,
            user_transport: TransportParameter::Tcp {
                port: 7000,
                transport_use: TransportUse::DataOnly,
                address: [127, 0, 0, 1].into(),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    })
    .to_bytes()
    .expect("encode");
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let signed = sign(&reg, &key(0x11), unix_ms, [9; 16]).expect("sign");
    let mut answers = Vec::new();
    for _ in 0..2 {
        a.send(&Msg::new(11, 0, signed.clone()))
            .await
            .expect("send");
        match recv_msg(&mut a, Protocol::Asap).await {
            Message::Asap(AsapMessage::RegistrationResponse(x)) => answers.push(x),
            other => panic!("expected REGISTRATION_RESPONSE, got {other:?}"),
        }
    }
    assert!(
        !answers[0].reject,
        "first signed REGISTRATION: {:?}",
        answers[0]
    );
    assert!(answers[1].reject, "replay accepted");
    assert_eq!(
        answers[1].error.as_ref().and_then(|e| e.first_code()),
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(resolve(asap, RAW).await, BTreeSet::from([0x7777]));
    assert_eq!(resolve(asap, POOL).await, BTreeSet::from([id]));
    drop(pe);
    let _ = stop.send(());
}
