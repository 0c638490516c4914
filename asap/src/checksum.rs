//! The PE checksum of the ENRP handlespace audit (RFC 5353; PE Checksum,
//! parameter 0x000F of RFC 5354 §3; see asap/wire/INTEROP.md §2, §5.9).
//!
//! An ENRP server advertises in every ENRP_PRESENCE a 16-bit checksum over the identities of
//! all PEs it owns; a peer compares it with the value it computes over the PEs it believes
//! the sender owns and resynchronises (HANDLE_TABLE_REQUEST with the W flag) on mismatch.
//!
//! For one PE the covered bytes are the Pool Handle, zero-padded to a multiple of 4, followed
//! by the PE Identifier in network byte order. They are added up as 16-bit big-endian words
//! with RFC 1071 ("Internet checksum") arithmetic. The sum is kept in a wide (`u64`)
//! accumulator so that adding and removing PEs is exact and O(handle length); only the
//! transmitted value folds the carries and takes the one's complement. An empty set gives
//! `0xFFFF`.
//!
//! Thanks to RFC 1071's byte-order independence this equals rsplib's value (which sums
//! native 16-bit loads) and the Tüxen/Volkmer server's value (which pads the handle first).
//!
//! Adding and removing PEs keeps the value exact, so a registrar updates it per
//! registration instead of recomputing it:
//!
//! ```
//! use asap::checksum::PeChecksum;
//! use asap::wire::PoolHandle;
//!
//! let pool = PoolHandle::from("EchoPool");
//! let mut owned = PeChecksum::default();
//! assert_eq!(owned.value(), 0xFFFF); // no PE
//! owned.add(&pool, 1);
//! owned.add(&pool, 2);
//! let two = owned.value();
//! owned.add(&pool, 3);
//! owned.remove(&pool, 3);
//! assert_eq!(owned.value(), two);
//! assert_eq!(owned.count(), 2);
//! assert_eq!(PeChecksum::from_pes([(&pool, 1), (&pool, 2)]).value(), two);
//! ```

use crate::wire::{PeIdentifier, PoolHandle};

/// The RFC 1071 word sum of one PE's audit bytes (handle padded to 4, then the PE ID),
/// unfolded.
///
/// ```
/// use asap::checksum::pe_word_sum;
/// use asap::wire::PoolHandle;
/// // "Ec" + "ho" + "Po" + "ol" + 0x1234 + 0x5678
/// let sum = pe_word_sum(&PoolHandle::from("EchoPool"), 0x1234_5678);
/// assert_eq!(sum, 0x4563 + 0x686f + 0x506f + 0x6f6c + 0x1234 + 0x5678);
/// ```
pub fn pe_word_sum(handle: &PoolHandle, id: PeIdentifier) -> u64 {
    let bytes = handle.as_bytes();
    let mut sum: u64 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        // The odd byte is the high byte of a word whose low byte is padding (zero). Padding
        // to a multiple of 4 only adds further zero words.
        sum += u64::from(*last) << 8;
    }
    sum += u64::from(id >> 16);
    sum += u64::from(id & 0xFFFF);
    sum
}

/// Folds a wide RFC 1071 sum into 16 bits and takes the one's complement: the value sent in
/// the PE Checksum parameter. `fold(0)` is `0xFFFF` (empty set).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // The loop leaves sum <= 0xFFFF.
    !(sum as u16)
}

/// An incrementally maintained PE checksum over a set of (pool handle, PE ID) pairs
/// (RFC 5353 handlespace audit; asap/wire/INTEROP.md §5.9).
///
/// The caller must only [`remove`](Self::remove) pairs it [`add`](Self::add)ed before; the
/// handlespace guarantees that through its owner index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeChecksum {
    sum: u64,
    count: usize,
}

impl PeChecksum {
    /// The checksum of the empty set (transmitted as `0xFFFF`).
    pub const fn new() -> Self {
        PeChecksum { sum: 0, count: 0 }
    }

    /// Computes the checksum of a whole set from scratch.
    pub fn from_pes<'a>(pes: impl IntoIterator<Item = (&'a PoolHandle, PeIdentifier)>) -> Self {
        let mut c = PeChecksum::new();
        for (h, id) in pes {
            c.add(h, id);
        }
        c
    }

    /// Adds one PE (on registration or when the PE's ownership moves to this set).
    pub fn add(&mut self, handle: &PoolHandle, id: PeIdentifier) {
        self.sum += pe_word_sum(handle, id);
        self.count += 1;
    }

    /// Removes one PE previously added (deregistration, expiry, ownership change).
    pub fn remove(&mut self, handle: &PoolHandle, id: PeIdentifier) {
        let w = pe_word_sum(handle, id);
        if w > self.sum || self.count == 0 {
            // Cannot happen when add/remove are paired; never panic, reset instead.
            tracing::error!(%handle, id, "PE checksum underflow: removing a PE never added");
            *self = PeChecksum::new();
            return;
        }
        self.sum -= w;
        self.count -= 1;
    }

    /// Merges another set into this one (takeover: the adopter's set grows by the dead
    /// server's set).
    pub fn merge(&mut self, other: &PeChecksum) {
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The 16-bit value carried in the PE Checksum parameter (folded, one's complement).
    pub fn value(&self) -> u16 {
        fold(self.sum)
    }

    /// The unfolded accumulator (for diagnostics and tests).
    pub fn raw_sum(&self) -> u64 {
        self.sum
    }

    /// How many PEs are covered.
    pub fn count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ph(s: &str) -> PoolHandle {
        PoolHandle::from(s)
    }

    #[test]
    fn spec_vectors() {
        let one = |h: &str, id| PeChecksum::from_pes([(&ph(h), id)]).value();
        assert_eq!(one("EchoPool", 0x1234_5678), 0x29A5);
        assert_eq!(one("EchoPool", 0x0000_0001), 0x9250);
        assert_eq!(one("CalcAppPool", 0xDEAD_BEEF), 0x256D);
        let echo = ph("EchoPool");
        let calc = ph("CalcAppPool");
        let all = PeChecksum::from_pes([(&echo, 0x1234_5678), (&echo, 1), (&calc, 0xDEAD_BEEF)]);
        assert_eq!(all.value(), 0xE162);
        assert_eq!(all.count(), 3);
    }

    #[test]
    fn empty_is_ffff() {
        assert_eq!(PeChecksum::new().value(), 0xFFFF);
        let mut c = PeChecksum::new();
        let h = ph("EchoPool");
        c.add(&h, 7);
        assert_ne!(c.value(), 0xFFFF);
        c.remove(&h, 7);
        assert_eq!(c.value(), 0xFFFF);
        assert_eq!(c.count(), 0);
    }

    #[test]
    fn odd_handle_equals_explicit_padding() {
        // Padding bytes are zeros, so "abc" and "abc\0" give the same value.
        let a = PeChecksum::from_pes([(&ph("abc"), 5)]);
        let b = PeChecksum::from_pes([(&PoolHandle(b"abc\0".to_vec()), 5)]);
        assert_eq!(a.value(), b.value());
    }

    #[test]
    fn remove_of_unknown_does_not_panic() {
        let mut c = PeChecksum::new();
        c.remove(&ph("x"), 1);
        assert_eq!(c.value(), 0xFFFF);
    }

    proptest! {
        #[test]
        fn incremental_equals_recompute(
            ops in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..20), any::<u32>(), any::<bool>()),
                0..200)
        ) {
            let mut set: std::collections::BTreeSet<(PoolHandle, u32)> = Default::default();
            let mut inc = PeChecksum::new();
            for (h, id, add) in ops {
                let h = PoolHandle(h);
                if add {
                    if set.insert((h.clone(), id)) {
                        inc.add(&h, id);
                    }
                } else if let Some(first) = set.iter().next().cloned() {
                    set.remove(&first);
                    inc.remove(&first.0, first.1);
                }
                let scratch = PeChecksum::from_pes(set.iter().map(|(h, i)| (h, *i)));
                prop_assert_eq!(inc.value(), scratch.value());
                prop_assert_eq!(inc.raw_sum(), scratch.raw_sum());
                prop_assert_eq!(inc.count(), set.len());
            }
        }
    }
}
