//! Priority (RFC 5356 §4.5): the PEs with the highest priority are returned first, in
//! decreasing order of priority; PEs of equal priority are served round robin (sequence
//! number), as rsplib does.

use super::SelectionInfo;

/// Sort key: descending priority (the priority travels in [`super::PolicyValues::weight`]).
pub(crate) fn key(info: &SelectionInfo) -> (u64, u64) {
    (u64::from(u32::MAX - info.values.weight), 0)
}
