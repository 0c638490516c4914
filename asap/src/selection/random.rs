//! The value-tree family: random draws without replacement, each PE with probability
//! weight / Σ weights of the PEs not yet drawn (RFC 5356 §4.3, §4.4, §5.4; rsplib's
//! randomized policies).
//!
//! | Policy | weight |
//! |---|---|
//! | RAND (§4.3) | 1 |
//! | WRAND (§4.4) | weight (0 = never selected) |
//! | RLU (§5.4) | max(1, 0xFFFFFFFF − load) |
//! | RPLU (rsplib 0xB0001001) | max(1, 0xFFFFFFFF − load − load degradation) |
//! | RLUD (rsplib 0xB0001002) | max(1, 0xFFFFFFFF − load − accumulator) |
//! | RPLUD (rsplib 0xB0001004) | max(1, 0xFFFFFFFF − load − load degradation − accumulator) |
//! | WRAND-DPF (rsplib 0xB0002001) | weight − round(weight × distance × DPF / 0xFFFFFFFF), at least 1 for weight > 0 |
//!
//! Choice documented here: rsplib's RLUD/RPLUD update function only recomputes the weight
//! and never grows the degradation accumulator, so the "D" has no effect there. We add the
//! load degradation to the accumulator for each PE updated by a selection (default max
//! increment 1, like the sorted LUD) and reset it on re-registration, which is what the
//! policy names promise. WRAND-DPF follows rsplib except that a penalty larger than the
//! weight gives 1 rather than rsplib's discontinuous 0/1.

use super::least_used::degrade;
use super::{SelectionInfo, MAX_FRACTION};
use crate::wire::PolicyType;

fn inverse(parts: &[u64]) -> u64 {
    MAX_FRACTION.saturating_sub(parts.iter().sum()).max(1)
}

/// The draw weight of a PE.
pub(crate) fn weight(p: PolicyType, info: &SelectionInfo) -> u64 {
    let v = &info.values;
    let load = u64::from(v.load);
    let ldeg = u64::from(v.load_degradation);
    let acc = u64::from(info.degradation);
    match p {
        PolicyType::Random => 1,
        PolicyType::WeightedRandom => u64::from(v.weight),
        PolicyType::RandomizedLeastUsed => inverse(&[load]),
        PolicyType::RandomizedPriorityLeastUsed => inverse(&[load, ldeg]),
        PolicyType::RandomizedLeastUsedDegradation => inverse(&[load, acc]),
        PolicyType::RandomizedPriorityLeastUsedDegradation => inverse(&[load, ldeg, acc]),
        PolicyType::WeightedRandomDpf => {
            let w = u128::from(v.weight);
            if w == 0 {
                return 0;
            }
            let prod = w * u128::from(v.distance) * u128::from(v.dpf);
            let m = u128::from(MAX_FRACTION);
            let penalty = (prod + m / 2) / m;
            // penalty <= w here, or the weight is floored at 1.
            w.checked_sub(penalty).map(|x| x.max(1) as u64).unwrap_or(1)
        }
        _ => 1,
    }
}

/// State update of a drawn PE (degradation policies only).
pub(crate) fn selected(p: PolicyType, info: &mut SelectionInfo) {
    if matches!(
        p,
        PolicyType::RandomizedLeastUsedDegradation
            | PolicyType::RandomizedPriorityLeastUsedDegradation
    ) {
        degrade(info);
    }
}
