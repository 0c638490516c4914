//! Hash maps keyed by identifiers the registrar assigns itself ([`AssocId`]): hashed with one
//! multiplication instead of the standard library's keyed SipHash.
//!
//! Every request looks up its association several times (peer address, idle timer, the
//! pools it resolved); with SipHash that was ≈ 2 % of the server's CPU on the host
//! benchmark (BENCHMARKS.md "Registrar hot path, part 5"). SipHash's key protects maps whose
//! keys a peer chooses (addresses, pool handles) from collision flooding; association IDs
//! come from the driver's counter, so a peer cannot pick them, and those maps keep SipHash.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::AssocId;

/// A map keyed by [`AssocId`] (see the module documentation).
pub(crate) type IdMap<V> = HashMap<AssocId, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a 64-bit identifier: the product with 2⁶⁴/φ spreads consecutive IDs
/// over the high bits (hashbrown's control tag) and keeps them distinct in the low bits
/// (its bucket index).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const PHI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(PHI);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(8) ^ n).wrapping_mul(PHI);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_ids_hash_apart_and_the_map_works() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let hashes: std::collections::HashSet<u64> =
            (0..10_000u64).map(|i| b.hash_one(i)).collect();
        assert_eq!(hashes.len(), 10_000);
        // The top 7 bits (hashbrown's tag) take many values over a run of IDs.
        let tags: std::collections::HashSet<u64> =
            (0..1_000u64).map(|i| b.hash_one(i) >> 57).collect();
        assert!(tags.len() > 100, "{}", tags.len());
        let mut m: IdMap<u64> = IdMap::default();
        for i in 0..1000 {
            m.insert(i, i * 2);
        }
        assert!((0..1000).all(|i| m.get(&i) == Some(&(i * 2))));
        assert_eq!(m.remove(&7), Some(14));
        assert_eq!(m.len(), 999);
    }
}
