//! The sorted least-used family (RFC 5356 §5.1–5.3 and rsplib's private policies).
//!
//! All sort ascending by an *effective load*, ties broken round robin by sequence number
//! (the first returned PE gets a new sequence number). Sums saturate at 100 %
//! (`0xFFFF_FFFF`), as rsplib's `getSum` does.
//!
//! | Policy | effective load | update on selection |
//! |---|---|---|
//! | LU (§5.1) | load | – |
//! | LUD (§5.2) | load + degradation accumulator | accumulator += load degradation |
//! | PLU (§5.3) | load + load degradation | – |
//! | PLUD (rsplib 0xB0001003) | load + load degradation + accumulator | accumulator += load degradation |
//! | LU-DPF (rsplib 0xB0002002) | load + distance × load DPF | – |
//! | LUD-DPF (rsplib 0xB0002003) | load + accumulator + distance × load DPF | accumulator += load degradation |
//!
//! The degradation accumulator is RFC 5356 §5.2's "degradation counter × load degradation";
//! it is reset when the PE re-registers. rsplib computes the DPF term as
//! `distance × (DPF / 0xFFFFFFFF) × 0xFFFFFFFF`, i.e. exactly `distance × DPF`, which is what
//! is used here in integer arithmetic.

use super::{sat_sum, SelectionInfo, MAX_FRACTION};
use crate::wire::PolicyType;

fn dpf_term(info: &SelectionInfo) -> u64 {
    (u64::from(info.values.distance) * u64::from(info.values.dpf)).min(MAX_FRACTION)
}

/// Sort key for LU, LUD, PLU, PLUD, LU-DPF, LUD-DPF. Other types fall back to plain load.
pub(crate) fn key(p: PolicyType, info: &SelectionInfo) -> (u64, u64) {
    let v = &info.values;
    let load = u64::from(v.load);
    let ldeg = u64::from(v.load_degradation);
    let acc = u64::from(info.degradation);
    let eff = match p {
        PolicyType::LeastUsed => load,
        PolicyType::LeastUsedDegradation => sat_sum(&[load, acc]),
        PolicyType::PriorityLeastUsed => sat_sum(&[load, ldeg]),
        PolicyType::PriorityLeastUsedDegradation => sat_sum(&[load, ldeg, acc]),
        PolicyType::LeastUsedDpf => sat_sum(&[load, dpf_term(info)]),
        PolicyType::LeastUsedDegradationDpf => sat_sum(&[load, acc, dpf_term(info)]),
        _ => load,
    };
    (eff, 0)
}

/// Adds the load degradation to the accumulator (saturating) for the degradation policies.
pub(crate) fn selected(p: PolicyType, info: &mut SelectionInfo) {
    if matches!(
        p,
        PolicyType::LeastUsedDegradation
            | PolicyType::PriorityLeastUsedDegradation
            | PolicyType::LeastUsedDegradationDpf
    ) {
        degrade(info);
    }
}

/// accumulator += load degradation, saturating at 100 %.
pub(crate) fn degrade(info: &mut SelectionInfo) {
    info.degradation = info
        .degradation
        .saturating_add(info.values.load_degradation);
}
