//! Round Robin (RFC 5356 §4.1) and Weighted Round Robin (RFC 5356 §4.2).
//!
//! * **RR**: PEs are ordered by sequence number only. Each selection gives the first PE
//!   returned a new, highest sequence number, so it moves to the back of the circle: with
//!   A, B, C four single selections give A, B, C, A. Also the fallback for pools whose
//!   policy type is unknown.
//! * **WRR** (rsplib realisation): key = (round counter, virtual counter, sequence number).
//!   A PE starts in the pool's current round with virtual counter = weight. Each selection
//!   decrements the virtual counter; when it would reach 0 the PE moves to the next round
//!   and its counter is refilled with its weight. Over a round a PE of weight w is thus
//!   returned w times, and PEs with fewer selections left in the round come first, which
//!   spreads a heavy PE's turns instead of returning it w times in a row.
//!   Weight 0 means "cannot serve" (RFC 5356 §4.2): such a PE is never returned (rsplib
//!   treats it like weight 1 — a deliberate deviation).

use super::SelectionInfo;

/// WRR: sets up a PE joining (or re-joining) the pool in round `current_round`.
pub(crate) fn wrr_init(info: &mut SelectionInfo, current_round: u64) {
    info.round = current_round;
    info.virtual_counter = info.values.weight;
}

/// WRR: a re-registration changed the weight; keep the round, cap the remaining count.
pub(crate) fn wrr_reweight(info: &mut SelectionInfo) {
    let w = info.values.weight;
    if info.virtual_counter > w || info.virtual_counter == 0 {
        info.virtual_counter = w;
    }
}

/// WRR sort key (round, virtual counter); `None` for weight 0 (not selectable).
pub(crate) fn wrr_key(info: &SelectionInfo) -> Option<(u64, u64)> {
    if info.values.weight == 0 {
        return None;
    }
    Some((info.round, u64::from(info.virtual_counter)))
}

/// WRR update after a selection.
pub(crate) fn wrr_selected(info: &mut SelectionInfo) {
    if info.virtual_counter > 1 {
        info.virtual_counter -= 1;
    } else {
        info.round += 1;
        info.virtual_counter = info.values.weight;
    }
}
