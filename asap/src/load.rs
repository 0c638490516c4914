//! Newtypes for the policy values a pool element registers (RFC 5356): [`Load`] for the
//! adaptive policies (§5), [`Weight`] for the weighted ones (§4.2, §4.4) and [`Priority`]
//! (§4.5). They say what a bare `u32` does not: a load is a fraction of full load, encoded
//! as `value / 0xFFFF_FFFF` (RFC 5356 §5.1).
//!
//! ```
//! use asap::load::{Load, Priority, Weight};
//! assert_eq!(Load::percent(25.0).fraction(), 0x4000_0000);
//! assert_eq!(Load::percent(100.0), Load::FULL);
//! assert!((Load::from_fraction(0x8000_0000).as_percent() - 50.0).abs() < 0.001);
//! assert_eq!(Weight::new(3).get(), 3);
//! assert_eq!(Priority::new(7).get(), 7);
//! ```

use std::fmt;

use crate::wire::{Fraction, Policy};

/// The load of a pool element as registered with an adaptive policy (RFC 5356 §5.1: a
/// 32-bit fraction, 0 = idle, `0xFFFF_FFFF` = fully loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Load(Fraction);

impl Load {
    /// No load.
    pub const IDLE: Load = Load(0);
    /// Full load (`0xFFFF_FFFF`).
    pub const FULL: Load = Load(u32::MAX);

    /// A load in percent (clamped to 0–100; NaN counts as 0).
    pub fn percent(p: f64) -> Load {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
        // 25 % is exactly 0x4000_0000 (rsplib rounds the same way: value = p/100 * 2^32).
        let v = (p / 100.0 * 4_294_967_296.0).round();
        Load(if v >= u32::MAX as f64 {
            u32::MAX
        } else {
            v as u32
        })
    }

    /// A load given as the raw wire fraction.
    pub const fn from_fraction(f: Fraction) -> Load {
        Load(f)
    }

    /// The raw wire fraction.
    pub const fn fraction(self) -> Fraction {
        self.0
    }

    /// The load in percent.
    pub fn as_percent(self) -> f64 {
        if self.0 == u32::MAX {
            return 100.0;
        }
        f64::from(self.0) / 4_294_967_296.0 * 100.0
    }
}

/// The raw wire fraction (what [`PoolElement::set_load`](crate::pe::PoolElement::set_load)
/// took before the newtype).
impl From<Fraction> for Load {
    fn from(f: Fraction) -> Load {
        Load(f)
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} %", self.as_percent())
    }
}

/// The weight of a pool element under Weighted Round Robin or Weighted Random
/// (RFC 5356 §4.2, §4.4): larger = chosen more often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u32);

impl Weight {
    /// A weight.
    pub const fn new(w: u32) -> Weight {
        Weight(w)
    }

    /// The wire value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for Weight {
    /// Weight 1.
    fn default() -> Self {
        Weight(1)
    }
}

/// The priority of a pool element under the Priority policy (RFC 5356 §4.5): larger =
/// preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Priority(u32);

impl Priority {
    /// A priority.
    pub const fn new(p: u32) -> Priority {
        Priority(p)
    }

    /// The wire value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// `policy` with its load replaced (adaptive policies, RFC 5356 §5); other policies are
/// returned unchanged.
pub fn policy_with_load(policy: &Policy, load: Load) -> Policy {
    crate::pe::with_load(policy, load.fraction())
}

/// `policy` with its weight replaced (Weighted Round Robin, Weighted Random and its DPF
/// variant); other policies are returned unchanged.
pub fn policy_with_weight(policy: &Policy, w: Weight) -> Policy {
    let mut p = policy.clone();
    match &mut p {
        Policy::WeightedRoundRobin { weight }
        | Policy::WeightedRandom { weight }
        | Policy::WeightedRandomDpf { weight, .. } => *weight = w.get(),
        _ => {}
    }
    p
}

/// `policy` with its priority replaced (Priority policy); other policies are returned
/// unchanged.
pub fn policy_with_priority(policy: &Policy, p: Priority) -> Policy {
    let mut out = policy.clone();
    if let Policy::Priority { priority } = &mut out {
        *priority = p.get();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_edges_and_round_trip() {
        assert_eq!(Load::percent(0.0), Load::IDLE);
        assert_eq!(Load::percent(-5.0), Load::IDLE);
        assert_eq!(Load::percent(f64::NAN), Load::IDLE);
        assert_eq!(Load::percent(150.0), Load::FULL);
        assert_eq!(Load::percent(50.0).fraction(), 0x8000_0000);
        assert_eq!(Load::percent(25.0).to_string(), "25.0 %");
    }

    #[test]
    fn setters_touch_only_matching_policies() {
        let lu = Policy::LeastUsed { load: 0 };
        assert_eq!(
            policy_with_load(&lu, Load::percent(25.0)),
            Policy::LeastUsed { load: 0x4000_0000 }
        );
        assert_eq!(
            policy_with_load(&Policy::RoundRobin, Load::FULL),
            Policy::RoundRobin
        );
        assert_eq!(
            policy_with_weight(&Policy::WeightedRandom { weight: 1 }, Weight::new(9)),
            Policy::WeightedRandom { weight: 9 }
        );
        assert_eq!(policy_with_weight(&lu, Weight::new(9)), lu);
        assert_eq!(
            policy_with_priority(&Policy::Priority { priority: 0 }, Priority::new(4)),
            Policy::Priority { priority: 4 }
        );
    }
}
