//! Property tests: no input makes the registrar core panic, lose an association or corrupt
//! its handlespace; every reply it produces decodes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asap::transport::TransportKind;
use asap::wire::asap_msg::{HandleResolution, Registration};
use asap::wire::{Message, Policy, PoolElementInfo, Protocol, TransportParameter, TransportUse};
use enrp_server::core::{Action, CoreConfig, Input, Registrar};
use proptest::prelude::*;

fn registered() -> (Registrar, Instant) {
    let now = Instant::now();
    let mut r = Registrar::new(CoreConfig::new(42), now);
    let peer: SocketAddr = "10.0.0.1:5000".parse().expect("lit");
    r.handle(
        now,
        Input::connected(1, Protocol::Asap, peer, TransportKind::Sctp),
    );
    let reg = Registration {
        pool_handle: "P".into(),
        pool_element: PoolElementInfo {
            id: 7,
            home_server_id: 0,
            registration_life: 600_000,
            user_transport: TransportParameter::Sctp {
                port: 7,
                transport_use: TransportUse::DataOnly,
                addresses: vec![peer.ip()],
            },
            policy: Policy::LeastUsed { load: 5 },
            asap_transport: None,
        },
    };
    r.handle_message(now, 1, &reg.into());
    assert_eq!(r.handlespace().len(), 1);
    (r, now)
}

fn valid_messages() -> Vec<Vec<u8>> {
    let reg = Registration {
        pool_handle: "Q".into(),
        pool_element: PoolElementInfo {
            id: 9,
            home_server_id: 0,
            registration_life: 1000,
            user_transport: TransportParameter::Sctp {
                port: 9,
                transport_use: TransportUse::DataOnly,
                addresses: vec!["10.0.0.1".parse().expect("lit")],
            },
            policy: Policy::LeastUsedDegradation {
                load: 1,
                degradation: 2,
            },
            asap_transport: None,
        },
    };
    vec![
        Message::from(reg).to_bytes().expect("enc").to_vec(),
        Message::from(HandleResolution::new("P"))
            .to_bytes()
            .expect("enc")
            .to_vec(),
    ]
}

fn check(r: &mut Registrar, now: Instant, protocol: Protocol, bytes: Vec<u8>) {
    let out = r.handle(
        now,
        Input::Message {
            assoc: 1,
            protocol,
            bytes: bytes.into(),
        },
    );
    for a in &out {
        if let Action::Send {
            protocol, bytes, ..
        } = a
        {
            Message::decode(*protocol, bytes).expect("every reply decodes");
        }
    }
    r.handle_timeout(now + Duration::from_millis(1));
    assert!(r.handlespace().verify().is_ok());
    assert_eq!(r.association_count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), enrp in any::<bool>()) {
        let (mut r, now) = registered();
        let p = if enrp { Protocol::Enrp } else { Protocol::Asap };
        check(&mut r, now, p, bytes);
        prop_assert!(r.handlespace().get(&"P".into(), 7).is_some());
    }

    #[test]
    fn mutated_valid_messages(which in 0usize..2, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let (mut r, now) = registered();
        let mut m = valid_messages()[which].clone();
        let n = m.len();
        for (i, b) in flips {
            m[i % n] ^= b;
        }
        check(&mut r, now, Protocol::Asap, m);
    }
}
