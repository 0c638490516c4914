//! Expiry, connection loss, takeover, dumps and index consistency of the handlespace
//! (asap/wire/INTEROP.md §5.1, §5.6, §5.8, §5.9).

use crate::common::*;
use asap::checksum::PeChecksum;
use asap::handlespace::{DumpCursor, Handlespace};
use asap::wire::{PoolHandle, ServerId};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn expiry_timer_index() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    let h = ph("P");
    hs.register(&h, pe_life(1, 1000), 1, Some(1), t0).unwrap();
    hs.register(&h, pe_life(2, 2000), 1, Some(1), t0).unwrap();
    hs.register(&h, pe_life(3, -1), 1, Some(1), t0).unwrap();
    assert_eq!(hs.next_expiry(), Some(t0 + ms(1000)));
    assert!(hs.expire(t0 + ms(999)).is_empty());
    // Re-registration pushes the expiry.
    hs.register(&h, pe_life(1, 1000), 1, Some(1), t0 + ms(500))
        .unwrap();
    assert_eq!(hs.next_expiry(), Some(t0 + ms(1500)));
    let gone = hs.expire(t0 + ms(2000));
    let ids: Vec<_> = gone.iter().map(|r| r.entry.element().id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(gone[0].handle, h);
    assert_eq!(hs.next_expiry(), None, "infinite life never expires");
    assert_eq!(hs.len(), 1);
    hs.verify().unwrap();
    assert!(hs.expire(t0 + ms(10_000_000)).is_empty());
}

#[test]
fn connection_loss_removes_its_pes_only() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    for id in 1..=5 {
        hs.register(&ph("A"), pe_life(id, 5000), 9, Some(u64::from(id % 2)), t0)
            .unwrap();
    }
    hs.register(&ph("B"), pe_life(1, 5000), 9, Some(1), t0)
        .unwrap();
    let on1: Vec<_> = hs
        .connection_elements(1)
        .map(|(h, id)| (h.clone(), id))
        .collect();
    assert_eq!(
        on1,
        vec![(ph("A"), 1), (ph("A"), 3), (ph("A"), 5), (ph("B"), 1)]
    );
    let gone = hs.remove_connection(1);
    assert_eq!(gone.len(), 4);
    assert_eq!(hs.len(), 2);
    assert!(hs.pool(&ph("B")).is_none(), "empty pools disappear");
    let a = ph("A");
    assert_eq!(
        hs.checksum(9),
        PeChecksum::from_pes([(&a, 2), (&a, 4)]).value()
    );
    assert!(hs.remove_connection(1).is_empty());
    hs.verify().unwrap();
    assert_eq!(hs.deregister(&a, 2).map(|r| r.entry.owner()), Some(9));
    assert!(hs.deregister(&a, 2).is_none());
    hs.verify().unwrap();
}

#[test]
fn takeover_relabels_and_moves_checksums() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    let (dead, me) = (0xDEAD, 0x1);
    for id in 1..=50 {
        let owner = if id % 3 == 0 { me } else { dead };
        hs.register(
            &ph(&format!("pool{}", id % 7)),
            pe_life(id, 5000),
            owner,
            None,
            t0,
        )
        .unwrap();
    }
    let mine_before = hs.owned_len(me);
    let dead_before = hs.owned_len(dead);
    assert_eq!(hs.change_owner(dead, me), dead_before);
    assert_eq!(hs.owned_len(dead), 0);
    assert_eq!(hs.checksum(dead), 0xFFFF);
    assert_eq!(hs.owned_len(me), mine_before + dead_before);
    let all: Vec<(PoolHandle, u32)> = hs.owned_by(me).cloned().collect();
    assert_eq!(
        hs.checksum(me),
        PeChecksum::from_pes(all.iter().map(|(h, i)| (h, *i))).value()
    );
    assert!(hs
        .pools()
        .flat_map(|p| p.iter())
        .all(|(_, e)| e.owner() == me && e.element().home_server_id == me));
    assert_eq!(hs.change_owner(dead, me), 0);
    hs.verify().unwrap();
}

#[test]
fn dump_pages_resume_and_owner_filter() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    for p in ["a", "b", "c"] {
        for id in 1..=5u32 {
            let owner: ServerId = if id % 2 == 0 { 2 } else { 1 };
            hs.register(&ph(p), pe_life(id, 5000), owner, None, t0)
                .unwrap();
        }
    }
    let full: Vec<(PoolHandle, u32)> = hs
        .dump(None, None, usize::MAX)
        .items
        .iter()
        .map(|i| (i.pool.handle().clone(), i.entry.element().id))
        .collect();
    assert_eq!(full.len(), 15);
    assert!(full.windows(2).all(|w| w[0] < w[1]));

    for owner in [None, Some(1), Some(2)] {
        let mut cursor: Option<DumpCursor> = None;
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            let page = hs.dump(cursor.as_ref(), owner, 4);
            assert!(page.items.len() <= 4);
            got.extend(
                page.items
                    .iter()
                    .map(|i| (i.pool.handle().clone(), i.entry.element().id)),
            );
            pages += 1;
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let want: Vec<_> = full
            .iter()
            .filter(|(h, id)| owner.iter().all(|&o| hs.get(h, *id).unwrap().owner() == o))
            .cloned()
            .collect();
        assert_eq!(got, want, "owner filter {owner:?}");
        assert_eq!(pages, want.len().div_ceil(4).max(1));
    }
    // A zero-sized page still makes progress.
    let page = hs.dump(None, None, 0);
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.next,
        Some(DumpCursor {
            handle: ph("a"),
            id: 1
        })
    );
    // A cursor whose PE has gone in the meantime still resumes correctly.
    let c = DumpCursor {
        handle: ph("b"),
        id: 3,
    };
    hs.deregister(&ph("b"), 3);
    let page = hs.dump(Some(&c), None, 2);
    let ids: Vec<_> = page.items.iter().map(|i| i.entry.element().id).collect();
    assert_eq!(ids, vec![4, 5]);
    assert_eq!(
        page.next,
        Some(DumpCursor {
            handle: ph("b"),
            id: 5
        })
    );
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        pool: u8,
        id: u32,
        owner: u32,
        conn: Option<u64>,
        life: i32,
    },
    Deregister {
        pool: u8,
        id: u32,
    },
    DropConn(u64),
    Expire(u64),
    Takeover {
        from: u32,
        to: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 1u32..12, 1u32..4, proptest::option::of(0u64..3), -1i32..3000)
            .prop_map(|(pool, id, owner, conn, life)| Op::Register { pool, id, owner, conn, life }),
        1 => (0u8..4, 1u32..12).prop_map(|(pool, id)| Op::Deregister { pool, id }),
        1 => (0u64..3).prop_map(Op::DropConn),
        1 => (0u64..4000).prop_map(Op::Expire),
        1 => (1u32..4, 1u32..4).prop_map(|(from, to)| Op::Takeover { from, to }),
    ]
}

proptest! {
    #[test]
    fn indexes_stay_consistent(ops in proptest::collection::vec(op(), 1..120)) {
        let t0 = Instant::now();
        let mut hs = Handlespace::new();
        let mut now = t0;
        for op in ops {
            match op {
                Op::Register { pool, id, owner, conn, life } => {
                    let _ = hs.register(&ph(&format!("p{pool}")), pe_life(id, life), owner, conn, now);
                }
                Op::Deregister { pool, id } => { hs.deregister(&ph(&format!("p{pool}")), id); }
                Op::DropConn(c) => { hs.remove_connection(c); }
                Op::Expire(d) => {
                    now += ms(d);
                    for r in hs.expire(now) {
                        prop_assert!(r.entry.expiry().is_some_and(|t| t <= now));
                    }
                    prop_assert!(hs.next_expiry().iter().all(|&t| t > now));
                }
                Op::Takeover { from, to } => { hs.change_owner(from, to); }
            }
            prop_assert_eq!(hs.verify(), Ok(()));
            for owner in 1..4 {
                let owned: Vec<_> = hs.owned_by(owner).cloned().collect();
                let scratch = PeChecksum::from_pes(owned.iter().map(|(h, i)| (h, *i)));
                prop_assert_eq!(hs.checksum(owner), scratch.value());
            }
        }
    }
}

/// Every entry keeps its Pool Element encoded as a resolution answer carries it (no ASAP
/// transport): the bytes follow every change of the element — registration, re-registration
/// with other values, a new owner — and equal the codec's encoding at each step.
#[test]
fn answer_encoding_follows_every_change_of_the_element() {
    use asap::wire::asap_msg::HandleResolutionResponse;
    use asap::wire::{Policy, PoolElementInfo, TransportParameter, TransportUse};
    let t0 = Instant::now();
    let mut hs = Handlespace::new();
    let h = ph("cache");
    let expect = |hs: &Handlespace, el: &PoolElementInfo| {
        let mut b = bytes::BytesMut::new();
        let stripped = PoolElementInfo {
            asap_transport: None,
            ..el.clone()
        };
        HandleResolutionResponse::encode_answer_element(&stripped, &mut b).unwrap();
        let e = hs.get(&ph("cache"), el.id).unwrap();
        assert_eq!(e.answer_tlv(), Some(&b[..]), "{el:?}");
        hs.verify().unwrap();
    };
    let mut el = pe(7, Policy::WeightedRoundRobin { weight: 1 });
    el.asap_transport = Some(sctp(3863, TransportUse::DataOnly));
    hs.register(&h, el.clone(), 1, Some(1), t0).unwrap();
    el.home_server_id = 1;
    expect(&hs, &el);
    // Re-registration with a new weight, life and address.
    el.policy = Policy::WeightedRoundRobin { weight: 9 };
    el.registration_life = 5_000;
    el.user_transport = TransportParameter::Sctp {
        port: 8,
        transport_use: TransportUse::DataOnly,
        addresses: vec!["10.9.9.9".parse().unwrap(), "::1".parse().unwrap()],
    };
    hs.register(&h, el.clone(), 1, Some(1), t0).unwrap();
    expect(&hs, &el);
    // Takeover: the home server ID inside the parameter changes too.
    assert_eq!(hs.change_owner(1, 42), 1);
    el.home_server_id = 42;
    expect(&hs, &el);
}
