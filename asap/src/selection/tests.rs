//! Unit tests of the selection policies: exact orders for the sorted policies, frequencies
//! within tolerances (seeded rng) for the random ones, and "no duplicates ever".

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;

const PCT: u32 = 0xFFFF_FFFF / 100;

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

/// A policy parameter of type `pt` with the given values (fields the type lacks ignored).
fn policy(pt: PolicyType, weight: u32, load: u32, ldeg: u32, dpf: u32, distance: u32) -> Policy {
    let mut v = PolicyValues {
        weight,
        load,
        load_degradation: ldeg,
        dpf,
        distance,
    };
    Policy::from_fields(pt, |field| *v.slot(field))
}

fn selector(pt: PolicyType, pes: &[(PeIdentifier, Policy)]) -> Selector {
    let mut s = Selector::new(pt.code());
    for (id, p) in pes {
        s.insert(*id, p);
    }
    s
}

/// A selector of a policy with one field (weight, priority or load) whose PEs carry the
/// given values.
fn selector_of(pt: PolicyType, pes: &[(PeIdentifier, u32)]) -> Selector {
    let pes: Vec<(PeIdentifier, Policy)> = pes
        .iter()
        .map(|&(id, value)| (id, Policy::from_fields(pt, |_| value)))
        .collect();
    selector(pt, &pes)
}

fn singles(s: &mut Selector, count: usize) -> Vec<PeIdentifier> {
    let mut r = rng();
    (0..count)
        .flat_map(|_| s.select(1, MaxIncrement::PolicyDefault, &mut r))
        .collect()
}

fn frequencies(s: &mut Selector, draws: usize) -> std::collections::BTreeMap<PeIdentifier, f64> {
    let mut r = rng();
    let mut m = std::collections::BTreeMap::new();
    for _ in 0..draws {
        for id in s.select(1, MaxIncrement::PolicyDefault, &mut r) {
            *m.entry(id).or_insert(0.0) += 1.0 / draws as f64;
        }
    }
    m
}

fn assert_near(got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
}

#[test]
fn round_robin_single_selections_cycle() {
    let rr = Policy::RoundRobin;
    let mut s = selector(
        PolicyType::RoundRobin,
        &[(0xA, rr.clone()), (0xB, rr.clone()), (0xC, rr)],
    );
    assert_eq!(singles(&mut s, 4), vec![0xA, 0xB, 0xC, 0xA]);
}

#[test]
fn round_robin_multi_selection_advances_head_by_one() {
    let rr = Policy::RoundRobin;
    let pes = [(1, rr.clone()), (2, rr.clone()), (3, rr.clone())];
    let mut s = selector(PolicyType::RoundRobin, &pes);
    let mut r = rng();
    let d = MaxIncrement::PolicyDefault;
    assert_eq!(s.select(2, d, &mut r), vec![1, 2]);
    assert_eq!(s.select(2, d, &mut r), vec![2, 3]);
    assert_eq!(s.select(2, d, &mut r), vec![3, 1]);
    // All returned PEs updated: the whole window moves.
    let mut s = selector(PolicyType::RoundRobin, &pes);
    let all = MaxIncrement::Count(2);
    assert_eq!(s.select(2, all, &mut r), vec![1, 2]);
    assert_eq!(s.select(2, all, &mut r), vec![3, 1]);
    assert_eq!(s.select(2, all, &mut r), vec![2, 3]);
    // Count(0): no state change.
    assert_eq!(s.select(3, MaxIncrement::Count(0), &mut r), vec![1, 2, 3]);
    assert_eq!(s.select(3, MaxIncrement::Count(0), &mut r), vec![1, 2, 3]);
    assert_eq!(s.info(1).map(|i| i.selections), Some(2));
}

#[test]
fn round_robin_new_and_removed_pes() {
    let rr = Policy::RoundRobin;
    let mut s = selector(PolicyType::RoundRobin, &[(1, rr.clone()), (2, rr.clone())]);
    assert_eq!(singles(&mut s, 1), vec![1]);
    s.insert(3, &rr); // joins at the back, behind 1
    assert_eq!(singles(&mut s, 3), vec![2, 1, 3]);
    assert!(s.remove(1));
    assert!(!s.remove(1));
    assert_eq!(singles(&mut s, 3), vec![2, 3, 2]);
    assert_eq!(s.len(), 2);
}

#[test]
fn unknown_policy_falls_back_to_round_robin() {
    let p = Policy::Unknown {
        policy_type: 0x8000_1234,
        data: vec![1, 2, 3, 4],
    };
    let mut s = Selector::new(0x8000_1234);
    for id in [7, 8, 9] {
        s.insert(id, &p);
    }
    assert_eq!(s.effective_policy(), PolicyType::RoundRobin);
    assert_eq!(s.policy_code(), 0x8000_1234);
    assert_eq!(singles(&mut s, 4), vec![7, 8, 9, 7]);
}

#[test]
fn weighted_round_robin_order_and_proportions() {
    let mut s = selector_of(
        PolicyType::WeightedRoundRobin,
        &[(0xA, 2), (0xB, 1), (0xC, 0)],
    );
    // rsplib order: (round, remaining virtual count, sequence).
    assert_eq!(singles(&mut s, 6), vec![0xB, 0xA, 0xA, 0xB, 0xA, 0xA]);
    let seq = singles(&mut s, 3000);
    let a = seq.iter().filter(|&&x| x == 0xA).count();
    let b = seq.iter().filter(|&&x| x == 0xB).count();
    assert_eq!((a, b), (2000, 1000));
    assert!(!seq.contains(&0xC), "weight 0 cannot serve");
    // Weight 0 -> 5: the PE joins the current round.
    s.update(0xC, &Policy::WeightedRoundRobin { weight: 5 });
    let seq = singles(&mut s, 800);
    let c = seq.iter().filter(|&&x| x == 0xC).count();
    assert_eq!(c, 500);
}

#[test]
fn random_uniform_frequencies() {
    let pes: Vec<_> = (1..=4).map(|i| (i, Policy::Random)).collect();
    let mut s = selector(PolicyType::Random, &pes);
    let f = frequencies(&mut s, 40_000);
    for id in 1..=4 {
        assert_near(f[&id], 0.25, 0.015);
    }
}

#[test]
fn weighted_random_frequencies_and_zero_weight() {
    let mut s = selector_of(
        PolicyType::WeightedRandom,
        &[(1, 1), (2, 2), (3, 7), (4, 0)],
    );
    let f = frequencies(&mut s, 40_000);
    assert_near(f[&1], 0.1, 0.01);
    assert_near(f[&2], 0.2, 0.015);
    assert_near(f[&3], 0.7, 0.015);
    assert!(!f.contains_key(&4));
    // A draw of more than the selectable PEs returns each selectable one once.
    let mut r = rng();
    let mut got = s.select(10, MaxIncrement::PolicyDefault, &mut r);
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    // The first PE drawn follows the weights, the second the remaining ones: P(3 first)
    // = 0.7; P(1 second | 3 first) = 1/3.
    let mut first3 = 0;
    let mut then1 = 0;
    for _ in 0..20_000 {
        let v = s.select(2, MaxIncrement::PolicyDefault, &mut r);
        if v[0] == 3 {
            first3 += 1;
            if v[1] == 1 {
                then1 += 1;
            }
        }
    }
    assert_near(first3 as f64 / 20_000.0, 0.7, 0.015);
    assert_near(then1 as f64 / first3 as f64, 1.0 / 3.0, 0.02);
}

#[test]
fn priority_highest_first_ties_round_robin() {
    let mut s = selector_of(
        PolicyType::Priority,
        &[(0xA, 5), (0xB, 10), (0xC, 1), (0xD, 10)],
    );
    let mut r = rng();
    assert_eq!(
        s.select(4, MaxIncrement::Count(0), &mut r),
        vec![0xB, 0xD, 0xA, 0xC]
    );
    assert_eq!(singles(&mut s, 4), vec![0xB, 0xD, 0xB, 0xD]);
    s.update(0xC, &Policy::Priority { priority: 11 });
    assert_eq!(singles(&mut s, 1), vec![0xC]);
}

#[test]
fn least_used_lowest_load_and_immediate_update() {
    let mut s = selector_of(
        PolicyType::LeastUsed,
        &[(0xA, 30 * PCT), (0xB, 10 * PCT), (0xC, 20 * PCT)],
    );
    let mut r = rng();
    assert_eq!(
        s.select(3, MaxIncrement::PolicyDefault, &mut r),
        vec![0xB, 0xC, 0xA]
    );
    assert_eq!(singles(&mut s, 3), vec![0xB, 0xB, 0xB]);
    // Re-registration with a higher load: effective at once.
    assert!(s.update(0xB, &Policy::LeastUsed { load: 50 * PCT }));
    assert_eq!(singles(&mut s, 1), vec![0xC]);
    // Equal loads: round robin.
    s.update(0xA, &Policy::LeastUsed { load: 20 * PCT });
    assert_eq!(singles(&mut s, 4), vec![0xA, 0xC, 0xA, 0xC]);
}

#[test]
fn least_used_degradation_counter_and_reset() {
    let pt = PolicyType::LeastUsedDegradation;
    let a = policy(pt, 0, 0, 100, 0, 0);
    let b = policy(pt, 0, 250, 0, 0, 0);
    let mut s = selector(pt, &[(0xA, a.clone()), (0xB, b)]);
    // A: 0, 100, 200 < B's 250; then 300 > 250.
    assert_eq!(singles(&mut s, 5), vec![0xA, 0xA, 0xA, 0xB, 0xB]);
    assert_eq!(s.info(0xA).map(|i| i.degradation), Some(300));
    // Re-registration resets the counter.
    s.update(0xA, &a);
    assert_eq!(s.info(0xA).map(|i| i.degradation), Some(0));
    assert_eq!(singles(&mut s, 1), vec![0xA]);
}

#[test]
fn degradation_saturates() {
    let pt = PolicyType::LeastUsedDegradation;
    let mut s = selector(pt, &[(1, policy(pt, 0, u32::MAX - 5, u32::MAX, 0, 0))]);
    assert_eq!(singles(&mut s, 3), vec![1, 1, 1]);
    assert_eq!(s.info(1).map(|i| i.degradation), Some(u32::MAX));
}

#[test]
fn least_used_dpf_penalises_distance() {
    let pt = PolicyType::LeastUsedDpf;
    // A: load 0 + 100 ms × 1000 = 100 000; B: load 50 000.
    let mut s = selector(
        pt,
        &[
            (0xA, policy(pt, 0, 0, 0, 1000, 100)),
            (0xB, policy(pt, 0, 50_000, 0, 1000, 0)),
        ],
    );
    assert_eq!(singles(&mut s, 2), vec![0xB, 0xB]);
    s.update(0xA, &policy(pt, 0, 0, 0, 1000, 10));
    assert_eq!(singles(&mut s, 1), vec![0xA]);
}

/// Exact orders of single selections between PE 0xA and PE 0xB, each given as
/// `(weight, load, degradation, dpf, distance)` of the policy type.
#[test]
fn sorted_policy_orders_of_two_pes() {
    type Values = (u32, u32, u32, u32, u32);
    let cases: [(PolicyType, Values, Values, &[PeIdentifier]); 3] = [
        // Load + degradation: A 10 % + 50 % > B 40 %.
        (
            PolicyType::PriorityLeastUsed,
            (0, 10 * PCT, 50 * PCT, 0, 0),
            (0, 40 * PCT, 0, 0, 0),
            &[0xB, 0xB],
        ),
        // A: 0+100 -> selected, accumulator 100 -> 200 > B's 150.
        (
            PolicyType::PriorityLeastUsedDegradation,
            (0, 0, 100, 0, 0),
            (0, 150, 0, 0, 0),
            &[0xA, 0xB, 0xB],
        ),
        // A: 0 + acc + 10×10 = 100 (+ 100 per selection); B: 250 + 0 + 0.
        (
            PolicyType::LeastUsedDegradationDpf,
            (0, 0, 100, 10, 10),
            (0, 250, 0, 10, 0),
            &[0xA, 0xA, 0xB, 0xB],
        ),
    ];
    for (pt, a, b, expected) in cases {
        let p = |(w, l, d, dpf, dist): Values| policy(pt, w, l, d, dpf, dist);
        let mut s = selector(pt, &[(0xA, p(a)), (0xB, p(b))]);
        assert_eq!(singles(&mut s, expected.len()), expected, "{pt:?}");
    }
}

#[test]
fn randomized_least_used_weights() {
    let pt = PolicyType::RandomizedLeastUsed;
    // Weights 0xFFFFFFFF - load: 75 % vs 25 % of the capacity -> 3:1.
    let mut s = selector(
        pt,
        &[
            (1, policy(pt, 0, 25 * PCT, 0, 0, 0)),
            (2, policy(pt, 0, 75 * PCT, 0, 0, 0)),
        ],
    );
    let f = frequencies(&mut s, 40_000);
    assert_near(f[&1], 0.75, 0.015);
    assert_near(f[&2], 0.25, 0.015);
    // Full load still has weight 1 (min 1), so it is drawn when asked for all.
    let mut s = selector(
        pt,
        &[
            (1, policy(pt, 0, 0, 0, 0, 0)),
            (2, policy(pt, 0, u32::MAX, 0, 0, 0)),
        ],
    );
    let info = s.info(2).expect("present");
    assert_eq!(random::weight(pt, &info), 1);
    let mut r = rng();
    assert_eq!(s.select(2, MaxIncrement::PolicyDefault, &mut r), vec![1, 2]);
}

#[test]
fn randomized_priority_least_used_weights() {
    let pt = PolicyType::RandomizedPriorityLeastUsed;
    let s = selector(pt, &[(1, policy(pt, 0, 10 * PCT, 15 * PCT, 0, 0))]);
    let info = s.info(1).expect("present");
    assert_eq!(
        random::weight(pt, &info),
        MAX_FRACTION - u64::from(25 * PCT)
    );
}

#[test]
fn randomized_degradation_policies_accumulate_and_reset() {
    for pt in [
        PolicyType::RandomizedLeastUsedDegradation,
        PolicyType::RandomizedPriorityLeastUsedDegradation,
    ] {
        let p = policy(pt, 0, 0, 10 * PCT, 0, 0);
        let mut s = selector(pt, &[(1, p.clone())]);
        singles(&mut s, 3);
        let info = s.info(1).expect("present");
        assert_eq!(info.degradation, 30 * PCT, "{pt:?}");
        let extra = if pt == PolicyType::RandomizedPriorityLeastUsedDegradation {
            u64::from(10 * PCT)
        } else {
            0
        };
        assert_eq!(
            random::weight(pt, &info),
            MAX_FRACTION - u64::from(30 * PCT) - extra
        );
        s.update(1, &p);
        assert_eq!(s.info(1).map(|i| i.degradation), Some(0));
    }
}

#[test]
fn weighted_random_dpf_weight() {
    let pt = PolicyType::WeightedRandomDpf;
    // DPF = 1/200 per ms, distance 100 ms -> 50 % penalty.
    let s = selector(
        pt,
        &[
            (1, policy(pt, 1000, 0, 0, u32::MAX / 200, 100)),
            (2, policy(pt, 1000, 0, 0, u32::MAX / 200, 400)),
            (3, policy(pt, 0, 0, 0, 0, 0)),
        ],
    );
    let w = |id| random::weight(pt, &s.info(id).expect("present"));
    assert_eq!(w(1), 500);
    assert_eq!(w(2), 1, "penalty above the weight floors at 1");
    assert_eq!(w(3), 0, "weight 0 cannot serve");
}

#[test]
fn no_duplicates_ever_for_every_policy() {
    let mut r = rng();
    for pt in PolicyType::ALL {
        let mut s = Selector::new(pt.code());
        let mut present = HashSet::new();
        for step in 0u32..400 {
            let id = 1 + (step * 7919) % 37;
            match step % 5 {
                0 | 1 => {
                    let p = policy(pt, 1 + step % 9, step * 1000, step * 10, step, step % 50);
                    s.insert(id, &p);
                    present.insert(id);
                }
                2 => {
                    s.remove(id);
                    present.remove(&id);
                }
                _ => {
                    let n = (step % 11) as usize;
                    let mi = MaxIncrement::Count((step % 4) as usize);
                    let got = s.select(n, mi, &mut r);
                    let uniq: HashSet<_> = got.iter().copied().collect();
                    assert_eq!(uniq.len(), got.len(), "{pt:?} duplicate in {got:?}");
                    assert!(uniq.is_subset(&present), "{pt:?} returned removed PE");
                    assert_eq!(got.len(), n.min(present.len()), "{pt:?} short selection");
                }
            }
            assert_eq!(s.len(), present.len());
        }
    }
}

#[test]
fn empty_selector_and_zero_request() {
    let mut r = rng();
    for pt in PolicyType::ALL {
        let mut s = Selector::new(pt.code());
        assert!(s.select(3, MaxIncrement::PolicyDefault, &mut r).is_empty());
        s.insert(1, &policy(pt, 1, 0, 0, 0, 0));
        assert!(s.select(0, MaxIncrement::PolicyDefault, &mut r).is_empty());
        assert_eq!(s.select(3, MaxIncrement::PolicyDefault, &mut r), vec![1]);
    }
}

#[test]
fn deterministic_under_seed() {
    let pes: Vec<_> = (1..=50)
        .map(|i| (i, Policy::WeightedRandom { weight: i }))
        .collect();
    let mut a = selector(PolicyType::WeightedRandom, &pes);
    let mut b = selector(PolicyType::WeightedRandom, &pes);
    let (mut ra, mut rb) = (rng(), rng());
    for _ in 0..100 {
        assert_eq!(
            a.select(5, MaxIncrement::PolicyDefault, &mut ra),
            b.select(5, MaxIncrement::PolicyDefault, &mut rb)
        );
    }
}

#[test]
fn accepts_dyn_rng_core() {
    let mut s = selector(
        PolicyType::Random,
        &[(1, Policy::Random), (2, Policy::Random)],
    );
    let mut r = rng();
    let dynr: &mut dyn rand::RngCore = &mut r;
    let mut got = s.select(2, MaxIncrement::PolicyDefault, dynr);
    got.sort_unstable();
    assert_eq!(got, vec![1, 2]);
}

/// RFC 5356 §5.2: every PE handed out by a LUD-family selection is degraded (default);
/// rsplib's default degrades only the first one (`MaxIncrement::RsplibDefault`).
#[test]
fn degradation_policies_degrade_every_returned_pe_by_default() {
    for pt in [
        PolicyType::LeastUsedDegradation,
        PolicyType::PriorityLeastUsedDegradation,
        PolicyType::LeastUsedDegradationDpf,
    ] {
        let pes: Vec<(PeIdentifier, Policy)> =
            (1..=4).map(|i| (i, policy(pt, 0, 0, 100, 0, 0))).collect();
        let mut r = rng();
        let mut s = selector(pt, &pes);
        let got = s.select(3, MaxIncrement::PolicyDefault, &mut r);
        assert_eq!(got.len(), 3);
        for id in 1..=4 {
            let want = if got.contains(&id) { 100 } else { 0 };
            assert_eq!(
                s.info(id).map(|i| i.degradation),
                Some(want),
                "{pt:?} PE {id}"
            );
        }
        // The next answer starts with the one PE not handed out.
        assert_eq!(s.select(1, MaxIncrement::PolicyDefault, &mut r), vec![4]);

        let mut s = selector(pt, &pes);
        let got = s.select(3, MaxIncrement::RsplibDefault, &mut r);
        let degraded: Vec<PeIdentifier> = (1..=4)
            .filter(|id| s.info(*id).is_some_and(|i| i.degradation > 0))
            .collect();
        assert_eq!(
            degraded,
            vec![got[0]],
            "{pt:?}: rsplib degrades the first only"
        );
    }
    assert_eq!(MaxIncrement::from_rsplib(0), MaxIncrement::RsplibDefault);
}
