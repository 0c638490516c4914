//! Registration rules of the handlespace (RFC 5352 registration, RFC 5354 §3.12 causes).

use crate::common::*;
use asap::checksum::PeChecksum;
use asap::handlespace::{
    cause, Handlespace, HandlespaceError, HandlespaceLimits, Registered, ResourceLimit,
};
use asap::wire::{Policy, PoolHandle, TransportUse};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;

const ME: u32 = 0x1111;
const PEER: u32 = 0x2222;

/// The start of most tests: a handlespace where we registered PE `id` with `policy` into
/// `pool` over connection 1, the time of that registration and the pool handle.
fn with_pe(pool: &str, id: u32, policy: Policy) -> (Instant, Handlespace, PoolHandle) {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    let h = ph(pool);
    hs.register(&h, pe(id, policy), ME, Some(1), t0).unwrap();
    (t0, hs, h)
}

#[test]
fn register_stores_element_with_owner_and_checksum() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    let h = ph("EchoPool");
    assert_eq!(
        hs.register(&h, pe(0x1234_5678, Policy::RoundRobin), ME, Some(1), t0),
        Ok(Registered::Added)
    );
    let e = hs.get(&h, 0x1234_5678).expect("stored");
    assert_eq!(e.owner(), ME);
    assert_eq!(e.element().home_server_id, ME);
    assert_eq!(e.connection(), Some(1));
    assert_eq!(
        e.expiry(),
        Some(t0 + std::time::Duration::from_millis(30_000))
    );
    assert_eq!(hs.checksum(ME), 0x29A5);
    assert_eq!(hs.checksum(PEER), 0xFFFF);
    hs.register(&h, pe(1, Policy::RoundRobin), ME, Some(1), t0)
        .unwrap();
    hs.register(
        &ph("CalcAppPool"),
        pe(0xDEAD_BEEF, Policy::RoundRobin),
        ME,
        None,
        t0,
    )
    .unwrap();
    assert_eq!(hs.checksum(ME), 0xE162);
    assert_eq!(hs.len(), 3);
    assert_eq!(hs.pool_count(), 2);
    assert_eq!(hs.owned_len(ME), 3);
    hs.verify().unwrap();
}

#[test]
fn inconsistent_policy_transport_and_transport_use() {
    let (t0, mut hs, h) = with_pe("P", 1, Policy::LeastUsed { load: 5 });

    let err = hs
        .register(&h, pe(2, Policy::RoundRobin), ME, Some(1), t0)
        .unwrap_err();
    assert_eq!(err.cause_code(), cause::INCONSISTENT_POOLING_POLICY);
    assert_eq!(
        err,
        HandlespaceError::InconsistentPoolingPolicy {
            pool_policy: Policy::LeastUsed { load: 5 },
            requested: 1
        }
    );

    let mut e = pe(2, Policy::LeastUsed { load: 0 });
    e.user_transport = tcp(7);
    let err = hs.register(&h, e, ME, Some(1), t0).unwrap_err();
    assert_eq!(err.cause_code(), 0x7);
    assert!(matches!(
        err,
        HandlespaceError::InconsistentTransportType { pool_transport } if pool_transport == sctp(7, TransportUse::DataOnly)
    ));

    let mut e = pe(2, Policy::LeastUsed { load: 0 });
    e.user_transport = sctp(9, TransportUse::DataPlusControl);
    let err = hs.register(&h, e, ME, Some(1), t0).unwrap_err();
    assert_eq!(err.cause_code(), 0x8);

    // Nothing changed by the refused registrations.
    assert_eq!(hs.len(), 1);
    assert_eq!(hs.connection_len(1), 1);
    hs.verify().unwrap();

    // A different port and address with the same protocol and use is fine.
    let mut e = pe(2, Policy::LeastUsed { load: 0 });
    e.user_transport = sctp(9, TransportUse::DataOnly);
    assert_eq!(hs.register(&h, e, ME, Some(1), t0), Ok(Registered::Added));
}

/// rsplib (`poolNodeCheckPoolElementNodeCompatibility` on every registration): not even a
/// pool's only PE may change the pool's policy type or transport by re-registering; it
/// must deregister first. Before, the sole PE redefined the pool.
#[test]
fn only_pe_may_not_redefine_its_pool() {
    let (t0, mut hs, h) = with_pe("P", 1, Policy::RoundRobin);
    let err = hs
        .register(&h, pe(1, Policy::Priority { priority: 3 }), ME, Some(1), t0)
        .unwrap_err();
    assert_eq!(err.cause_code(), 0x5);
    let mut e = pe(1, Policy::RoundRobin);
    e.user_transport = sctp(7, TransportUse::DataPlusControl);
    let err = hs.register(&h, e, ME, Some(1), t0).unwrap_err();
    assert_eq!(err.cause_code(), 0x8);
    assert_eq!(hs.pool(&h).map(|p| p.policy_type()), Some(1));
    // New policy values of the same type are a normal update.
    let mut e = pe(1, Policy::RoundRobin);
    e.registration_life = 5;
    assert!(hs.register(&h, e, ME, Some(1), t0).is_ok());
    // After deregistration the pool is gone and may come back with another policy.
    hs.deregister(&h, 1).expect("present");
    hs.register(&h, pe(1, Policy::Priority { priority: 3 }), ME, Some(1), t0)
        .unwrap();
    assert_eq!(hs.pool(&h).map(|p| p.policy_type()), Some(5));
    hs.verify().unwrap();
}

#[test]
fn invalid_values() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    for (pool, id, want) in [
        ("P", 0, HandlespaceError::InvalidPeIdentifier),
        ("", 1, HandlespaceError::InvalidPoolHandle),
    ] {
        let e = hs
            .register(&ph(pool), pe(id, Policy::RoundRobin), ME, None, t0)
            .unwrap_err();
        assert_eq!((e.clone(), e.cause_code()), (want, 0x3));
    }
    assert!(hs.is_empty());
}

#[test]
fn non_unique_pe_identifier_and_legitimate_moves() {
    let (t0, mut hs, h) = with_pe("P", 7, Policy::RoundRobin);
    // Same ID over another live association: a second PE claims the ID.
    let err = hs
        .register(&h, pe(7, Policy::RoundRobin), ME, Some(2), t0)
        .unwrap_err();
    assert_eq!(err.cause_code(), cause::NON_UNIQUE_PE_IDENTIFIER);
    // Same association: re-registration.
    assert_eq!(
        hs.register(&h, pe(7, Policy::RoundRobin), ME, Some(1), t0),
        Ok(Registered::Updated { previous_owner: ME })
    );
    // The PE moved its home to a peer, which tells us by HANDLE_UPDATE.
    assert_eq!(
        hs.register(&h, pe(7, Policy::RoundRobin), PEER, None, t0),
        Ok(Registered::Updated { previous_owner: ME })
    );
    assert_eq!(hs.connection_len(1), 0);
    assert_eq!(hs.owned_len(ME), 0);
    assert_eq!(hs.checksum(ME), 0xFFFF);
    assert_eq!(hs.checksum(PEER), PeChecksum::from_pes([(&h, 7)]).value());
    // ... and back to us over a new association.
    assert_eq!(
        hs.register(&h, pe(7, Policy::RoundRobin), ME, Some(3), t0),
        Ok(Registered::Updated {
            previous_owner: PEER
        })
    );
    assert_eq!(hs.get(&h, 7).map(|e| e.connection()), Some(Some(3)));
    hs.verify().unwrap();
}

#[test]
fn limits_give_lack_of_resources() {
    let t0 = Instant::now();
    let mut hs = Handlespace::with_limits(HandlespaceLimits {
        max_pools: 2,
        max_pes_per_pool: 2,
        max_pes_per_connection: 3,
        max_pes: 4,
    });
    // (pool, PE, connection, the limit the registration hits or None if it succeeds).
    let steps = [
        ("A", 1, 1, None),
        ("A", 2, 1, None),
        ("A", 3, 2, Some(ResourceLimit::PesPerPool)),
        // Re-registration at the limit is fine.
        ("A", 2, 1, None),
        ("B", 3, 1, None),
        ("B", 4, 1, Some(ResourceLimit::PesPerConnection)),
        ("C", 4, 2, Some(ResourceLimit::Pools)),
        ("B", 4, 2, None),
        ("B", 5, 2, Some(ResourceLimit::PesPerPool)),
    ];
    for (pool, id, connection, limit) in steps {
        let got = hs.register(
            &ph(pool),
            pe(id, Policy::RoundRobin),
            ME,
            Some(connection),
            t0,
        );
        match limit {
            None => assert!(got.is_ok(), "{pool} PE {id}: {got:?}"),
            Some(limit) => {
                let e = got.unwrap_err();
                assert_eq!(
                    e,
                    HandlespaceError::LackOfResources(limit),
                    "{pool} PE {id}"
                );
                assert_eq!(e.cause_code(), 0x6);
            }
        }
    }
    assert_eq!(hs.len(), 4);
    hs.verify().unwrap();
}

#[test]
fn reregistration_changes_selection_at_once() {
    let lu = |load| Policy::LeastUsed { load };
    let (t0, mut hs, h) = with_pe("LU", 1, lu(100));
    hs.register(&h, pe(2, lu(200)), ME, Some(1), t0).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(hs.select(&h, 1, &mut rng).unwrap(), vec![1]);
    hs.register(&h, pe(1, lu(300)), ME, Some(1), t0).unwrap();
    assert_eq!(hs.select(&h, 2, &mut rng).unwrap(), vec![2, 1]);
    let (pool, entries) = hs.resolve(&h, 5, &mut rng).unwrap();
    assert_eq!(pool.policy_type(), 0x4000_0001);
    let loads: Vec<_> = entries.iter().map(|e| e.element().policy.load()).collect();
    assert_eq!(loads, vec![Some(200), Some(300)]);

    // LUD: the degradation counter resets on re-registration.
    let h = ph("LUD");
    let lud = Policy::LeastUsedDegradation {
        load: 0,
        degradation: 10,
    };
    hs.register(&h, pe(1, lud.clone()), ME, Some(1), t0)
        .unwrap();
    hs.select(&h, 1, &mut rng).unwrap();
    hs.select(&h, 1, &mut rng).unwrap();
    let deg = |hs: &Handlespace| {
        hs.pool(&h)
            .and_then(|p| p.selector().info(1))
            .map(|i| i.degradation)
    };
    assert_eq!(deg(&hs), Some(20));
    hs.register(&h, pe(1, lud), ME, Some(1), t0).unwrap();
    assert_eq!(deg(&hs), Some(0));

    let e = hs.select(&ph("nope"), 1, &mut rng).unwrap_err();
    assert_eq!(e.cause_code(), cause::UNKNOWN_POOL_HANDLE);
}

#[test]
fn unreachable_reports_count_distinct_reporters_and_reset() {
    let (t0, mut hs, h) = with_pe("P", 1, Policy::RoundRobin);
    hs.report_unreachable(&h, 1, 100).unwrap();
    hs.report_unreachable(&h, 1, 100).unwrap();
    let c = hs.report_unreachable(&h, 1, 200).unwrap();
    assert_eq!((c.reports, c.distinct_reporters), (3, 2));
    assert!(hs.report_unreachable(&h, 2, 100).is_none());
    hs.register(&h, pe(1, Policy::RoundRobin), ME, Some(1), t0)
        .unwrap();
    assert_eq!(hs.get(&h, 1).unwrap().unreachable().reports, 0);
    // Many reporters: memory stays bounded, the total keeps counting.
    for r in 0..1000 {
        hs.report_unreachable(&h, 1, r);
    }
    let c = hs.get(&h, 1).unwrap().unreachable();
    assert_eq!(c.reports, 1000);
    assert_eq!(
        c.distinct_reporters as usize,
        asap::handlespace::MAX_TRACKED_REPORTERS
    );
}
