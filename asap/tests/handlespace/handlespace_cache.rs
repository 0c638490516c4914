//! The pool user's cache (RFC 5352 stale.cache.value; PU-side selection, RFC 5356).

use crate::common::*;
use asap::handlespace::cache::{PoolUserCache, DEFAULT_STALE_CACHE_VALUE};
use asap::wire::{Policy, PoolHandle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::{Duration, Instant};

fn ids(v: Option<Vec<asap::wire::PoolElementInfo>>) -> Vec<u32> {
    v.unwrap_or_default().iter().map(|e| e.id).collect()
}

/// Every test's start: a time and the rng with the same seed, so the same sequence.
fn start() -> (Instant, StdRng) {
    (Instant::now(), StdRng::seed_from_u64(3))
}

/// `n` selections of one PE each at `now` (a PU asking for one PE per request).
fn one_by_one(
    c: &mut PoolUserCache,
    h: &PoolHandle,
    now: Instant,
    rng: &mut StdRng,
    n: usize,
) -> Vec<u32> {
    (0..n).flat_map(|_| ids(c.select(h, 1, now, rng))).collect()
}

#[test]
fn round_robin_over_cached_entries_until_stale() {
    let (t0, mut rng) = start();
    let mut c = PoolUserCache::default();
    let h = ph("EchoPool");
    c.store(&h, (1..=3).map(|i| pe(i, Policy::RoundRobin)).collect(), t0);
    assert!(c.is_fresh(&h, t0));
    assert_eq!(one_by_one(&mut c, &h, t0, &mut rng, 4), vec![1, 2, 3, 1]);
    let stale = t0 + DEFAULT_STALE_CACHE_VALUE;
    assert!(!c.is_fresh(&h, stale));
    assert!(c.select(&h, 1, stale, &mut rng).is_none());
    assert_eq!(c.purge(stale), 1);
    assert_eq!(c.len(&h), 0);
}

#[test]
fn refresh_keeps_round_robin_position_and_drops_vanished() {
    let (t0, mut rng) = start();
    let mut c = PoolUserCache::new(Duration::from_secs(5));
    let h = ph("P");
    c.store(&h, (1..=3).map(|i| pe(i, Policy::RoundRobin)).collect(), t0);
    assert_eq!(ids(c.select(&h, 1, t0, &mut rng)), vec![1]);
    let t1 = t0 + Duration::from_secs(4);
    c.store(
        &h,
        [2, 3, 4].map(|i| pe(i, Policy::RoundRobin)).to_vec(),
        t1,
    );
    assert_eq!(one_by_one(&mut c, &h, t1, &mut rng, 4), vec![2, 3, 4, 2]);
    assert!(
        c.is_fresh(&h, t0 + Duration::from_secs(8)),
        "refresh restarted the timer"
    );
}

#[test]
fn failed_pes_are_not_selected_again() {
    let (t0, mut rng) = start();
    let mut c = PoolUserCache::default();
    let h = ph("P");
    let lu = |load| Policy::LeastUsed { load };
    c.store(&h, vec![pe(1, lu(1)), pe(2, lu(2)), pe(3, lu(3))], t0);
    assert_eq!(ids(c.select(&h, 3, t0, &mut rng)), vec![1, 2, 3]);
    assert!(c.mark_failed(&h, 1));
    assert!(!c.mark_failed(&h, 1));
    assert_eq!(ids(c.select(&h, 3, t0, &mut rng)), vec![2, 3]);
    c.mark_failed(&h, 2);
    c.mark_failed(&h, 3);
    assert!(
        c.select(&h, 1, t0, &mut rng).is_none(),
        "empty: ask a registrar"
    );
    // Empty response removes the entry; a policy change replaces it.
    c.store(&h, vec![pe(5, Policy::RoundRobin)], t0);
    c.store(&h, vec![pe(6, Policy::Random)], t0);
    assert_eq!(ids(c.select(&h, 3, t0, &mut rng)), vec![6]);
    c.store(&h, vec![], t0);
    assert!(!c.is_fresh(&h, t0));
}

/// The registrar's order is kept (RFC 5356 §4.1.2: it rotates the head so that PUs
/// spread): a fresh cache lists and round-robins in response order, not by identifier.
#[test]
fn response_order_is_kept() {
    let (t0, mut rng) = start();
    let mut c = PoolUserCache::default();
    let h = ph("P");
    c.store(
        &h,
        [3, 1, 2, 1].map(|i| pe(i, Policy::RoundRobin)).to_vec(),
        t0,
    );
    assert_eq!(ids(Some(c.elements(&h))), vec![3, 1, 2]);
    assert_eq!(one_by_one(&mut c, &h, t0, &mut rng, 4), vec![3, 1, 2, 3]);
    c.mark_failed(&h, 1);
    assert_eq!(ids(Some(c.elements(&h))), vec![3, 2]);
}
