//! Mode A: the registrar and the pool users select (RFC 5356), so the proxy only has to
//! put the right Pool Member Selection Policy parameter into each PE registration. The
//! selection itself is `asap::selection` in the registrar and the PU library.
//!
//! Proxy policies are mapped onto their nearest RFC 5356 equivalent:
//! round-robin → Round Robin; fifo → Priority in configuration order (a fixed-order reading of seed 003's
//! FIFO, the closest a registrar can do); least-load → Least Used with the daemon load;
//! least-transactions → Least Used with established connections over capacity;
//! fewest-applications → Least Used with the share of the host's applications running.

use asap::wire::{Fraction, Policy};

use super::{Candidate, PolicyKind};

/// Converts 0.0..=1.0 into the 32-bit fraction of RFC 5356 §5.1 (0xFFFFFFFF = 100 %).
pub fn fraction(x: f64) -> Fraction {
    let x = if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        1.0
    };
    (x * f64::from(u32::MAX)).round() as u32
}

/// The policy parameter for server `index` (of `count`) with the daemon figures `c`.
/// `weight` is the configured weight or daemon hint (default 1).
pub fn rfc_policy(
    kind: PolicyKind,
    index: usize,
    count: usize,
    c: &Candidate,
    weight: u32,
) -> Policy {
    let weight = weight.max(1);
    match kind {
        PolicyKind::RoundRobin | PolicyKind::RfcRoundRobin => Policy::RoundRobin,
        PolicyKind::Fifo => Policy::Priority {
            // Larger = higher priority: the first configured server wins.
            priority: u32::try_from(count.saturating_sub(index)).unwrap_or(u32::MAX),
        },
        PolicyKind::RfcPriority => Policy::Priority { priority: weight },
        PolicyKind::RfcWeightedRoundRobin => Policy::WeightedRoundRobin { weight },
        PolicyKind::RfcRandom => Policy::Random,
        PolicyKind::RfcWeightedRandom => Policy::WeightedRandom { weight },
        PolicyKind::LeastLoad | PolicyKind::LeastTransactions | PolicyKind::RfcLeastUsed => {
            Policy::LeastUsed {
                load: fraction(c.load),
            }
        }
        PolicyKind::RfcRandomizedLeastUsed => Policy::RandomizedLeastUsed {
            load: fraction(c.load),
        },
        PolicyKind::FewestApplications => Policy::LeastUsed {
            load: fraction(f64::from(c.apps_running) / 16.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_mapping() {
        assert_eq!(fraction(0.0), 0);
        assert_eq!(fraction(1.0), u32::MAX);
        assert_eq!(fraction(2.0), u32::MAX);
        assert_eq!(fraction(f64::NAN), u32::MAX);
        assert_eq!(fraction(0.5), 0x8000_0000);
        let c = Candidate {
            load: 0.25,
            ..Candidate::default()
        };
        let cases = [
            (
                PolicyKind::LeastLoad,
                0,
                1,
                Policy::LeastUsed { load: 0x4000_0000 },
            ),
            (PolicyKind::Fifo, 0, 1, Policy::Priority { priority: 3 }),
            (PolicyKind::Fifo, 2, 1, Policy::Priority { priority: 1 }),
            (
                PolicyKind::RfcWeightedRoundRobin,
                0,
                0,
                Policy::WeightedRoundRobin { weight: 1 },
            ),
        ];
        for (kind, index, weight, want) in cases {
            assert_eq!(
                rfc_policy(kind, index, 3, &c, weight),
                want,
                "{kind:?} {index}"
            );
        }
    }
}
