//! Pool Member Selection Policy parameter values (RFC 5356 §7, plus rsplib's private policies).
//!
//! This module is the data model only; the TLV encoding lives with the other parameters
//! in the codec. Every policy code is spelled once, in [`Policy::policy_type`] /
//! [`PolicyType`].

use serde::Serialize;

/// A 32-bit load, load degradation or DPF value: a fraction where `0x0000_0000` = 0 % and
/// `0xFFFF_FFFF` = 100 % (RFC 5356 §3.x).
pub type Fraction = u32;

/// Numeric policy type codes (RFC 5356 §7.1 IANA table; rsplib private codes 0xB000_xxxx).
///
/// One source of truth for the codes: everything else converts through this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[repr(u32)]
pub enum PolicyType {
    /// Round Robin, RFC 5356 §4.1.
    RoundRobin = 0x0000_0001,
    /// Weighted Round Robin, RFC 5356 §4.2.
    WeightedRoundRobin = 0x0000_0002,
    /// Random, RFC 5356 §4.3.
    Random = 0x0000_0003,
    /// Weighted Random, RFC 5356 §4.4.
    WeightedRandom = 0x0000_0004,
    /// Priority, RFC 5356 §4.5.
    Priority = 0x0000_0005,
    /// Least Used, RFC 5356 §5.1.
    LeastUsed = 0x4000_0001,
    /// Least Used with Degradation, RFC 5356 §5.2.
    LeastUsedDegradation = 0x4000_0002,
    /// Priority Least Used, RFC 5356 §5.3.
    PriorityLeastUsed = 0x4000_0003,
    /// Randomized Least Used, RFC 5356 §5.4.
    RandomizedLeastUsed = 0x4000_0004,
    /// rsplib: Randomized Priority Least Used.
    RandomizedPriorityLeastUsed = 0xB000_1001,
    /// rsplib: Randomized Least Used with Degradation.
    RandomizedLeastUsedDegradation = 0xB000_1002,
    /// rsplib: Priority Least Used with Degradation.
    PriorityLeastUsedDegradation = 0xB000_1003,
    /// rsplib: Randomized Priority Least Used with Degradation.
    RandomizedPriorityLeastUsedDegradation = 0xB000_1004,
    /// rsplib / draft-dreibholz-rserpool-delay: Weighted Random with Distance Penalty Factor.
    WeightedRandomDpf = 0xB000_2001,
    /// rsplib: Least Used with Distance Penalty Factor.
    LeastUsedDpf = 0xB000_2002,
    /// rsplib: Least Used with Degradation and Distance Penalty Factor.
    LeastUsedDegradationDpf = 0xB000_2003,
}

impl PolicyType {
    /// All known policy types, in code order.
    pub const ALL: [PolicyType; 16] = [
        PolicyType::RoundRobin,
        PolicyType::WeightedRoundRobin,
        PolicyType::Random,
        PolicyType::WeightedRandom,
        PolicyType::Priority,
        PolicyType::LeastUsed,
        PolicyType::LeastUsedDegradation,
        PolicyType::PriorityLeastUsed,
        PolicyType::RandomizedLeastUsed,
        PolicyType::RandomizedPriorityLeastUsed,
        PolicyType::RandomizedLeastUsedDegradation,
        PolicyType::PriorityLeastUsedDegradation,
        PolicyType::RandomizedPriorityLeastUsedDegradation,
        PolicyType::WeightedRandomDpf,
        PolicyType::LeastUsedDpf,
        PolicyType::LeastUsedDegradationDpf,
    ];

    /// The 32-bit code carried on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Looks a code up; `None` for codes without a known encoding.
    pub fn from_code(code: u32) -> Option<PolicyType> {
        PolicyType::ALL.iter().copied().find(|t| t.code() == code)
    }

    /// Short name as rsplib and Wireshark print it (e.g. `RoundRobin`, `LeastUsed`).
    pub fn name(self) -> &'static str {
        match self {
            PolicyType::RoundRobin => "Round Robin",
            PolicyType::WeightedRoundRobin => "Weighted Round Robin",
            PolicyType::Random => "Random",
            PolicyType::WeightedRandom => "Weighted Random",
            PolicyType::Priority => "Priority",
            PolicyType::LeastUsed => "Least Used",
            PolicyType::LeastUsedDegradation => "Least Used with Degradation",
            PolicyType::PriorityLeastUsed => "Priority Least Used",
            PolicyType::RandomizedLeastUsed => "Randomized Least Used",
            PolicyType::RandomizedPriorityLeastUsed => "Randomized Priority Least Used",
            PolicyType::RandomizedLeastUsedDegradation => "Randomized Least Used with Degradation",
            PolicyType::PriorityLeastUsedDegradation => "Priority Least Used with Degradation",
            PolicyType::RandomizedPriorityLeastUsedDegradation => {
                "Randomized Priority Least Used with Degradation"
            }
            PolicyType::WeightedRandomDpf => "Weighted Random with DPF",
            PolicyType::LeastUsedDpf => "Least Used with DPF",
            PolicyType::LeastUsedDegradationDpf => "Least Used with Degradation and DPF",
        }
    }

    /// Bytes of policy-specific data after the 32-bit policy type (TLV Length − 8), as
    /// RFC 5356 §7 and rsplib lay them out (asap/wire/INTEROP.md §3).
    pub fn value_len(self) -> usize {
        match self {
            PolicyType::RoundRobin | PolicyType::Random => 0,
            PolicyType::WeightedRoundRobin
            | PolicyType::WeightedRandom
            | PolicyType::Priority
            | PolicyType::LeastUsed
            | PolicyType::RandomizedLeastUsed => 4,
            PolicyType::LeastUsedDegradation
            | PolicyType::PriorityLeastUsed
            | PolicyType::RandomizedPriorityLeastUsed
            | PolicyType::RandomizedLeastUsedDegradation
            | PolicyType::PriorityLeastUsedDegradation
            | PolicyType::RandomizedPriorityLeastUsedDegradation => 8,
            PolicyType::WeightedRandomDpf | PolicyType::LeastUsedDpf => 12,
            PolicyType::LeastUsedDegradationDpf => 16,
        }
    }

    /// The whole TLV Length of this policy's parameter (8–24).
    pub fn tlv_len(self) -> usize {
        8 + self.value_len()
    }

    /// The name tshark 4.0 prints (`asap.pool_member_selection_policy_type`), or rsplib's
    /// name with its abbreviation for policies tshark does not know.
    pub fn tshark_name(self) -> &'static str {
        match self {
            PolicyType::RoundRobin => "Round Robin (RR)",
            PolicyType::WeightedRoundRobin => "Weighted Round Robin (WRR)",
            PolicyType::Random => "Random (RAND)",
            PolicyType::WeightedRandom => "Weighted Random (WRAND)",
            PolicyType::Priority => "Priority (PRI)",
            PolicyType::LeastUsed => "Least Used (LU)",
            PolicyType::LeastUsedDegradation => "Least Used with Degradation (LUD)",
            PolicyType::PriorityLeastUsed => "Priority Least Used (PLU)",
            PolicyType::RandomizedLeastUsed => "Randomized Least Used (RLU)",
            PolicyType::RandomizedPriorityLeastUsed => "Randomized Priority Least Used (RPLU)",
            PolicyType::RandomizedLeastUsedDegradation => {
                "Randomized Least Used with Degradation (RLUD)"
            }
            PolicyType::PriorityLeastUsedDegradation => {
                "Priority Least Used with Degradation (PLUD)"
            }
            PolicyType::RandomizedPriorityLeastUsedDegradation => {
                "Randomized Priority Least Used with Degradation (RPLUD)"
            }
            PolicyType::WeightedRandomDpf => {
                "Weighted Random with Delay Penalty Factor (WRAND-DPF)"
            }
            PolicyType::LeastUsedDpf => "Least Used with Delay Penalty Factor (LU-DPF)",
            PolicyType::LeastUsedDegradationDpf => {
                "Least Used with Degradation and Delay Penalty Factor (LUD-DPF)"
            }
        }
    }

    /// RFC 5356 §7.1: bit 30 (A) marks adaptive policies. rsplib's private codes do not
    /// follow that bit, so this answers from the policy's semantics.
    pub fn is_adaptive(self) -> bool {
        !matches!(
            self,
            PolicyType::RoundRobin
                | PolicyType::WeightedRoundRobin
                | PolicyType::Random
                | PolicyType::WeightedRandom
                | PolicyType::Priority
                | PolicyType::WeightedRandomDpf
        )
    }
}

/// A Pool Member Selection Policy parameter value (RFC 5356 §7, parameter 0x0008 of
/// RFC 5354 §3.8): the policy type and the policy-specific values of one PE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "policy")]
pub enum Policy {
    /// RFC 5356 §4.1, TLV length 8.
    RoundRobin,
    /// RFC 5356 §4.2, TLV length 12.
    WeightedRoundRobin {
        /// Weight: a larger weight is chosen more often.
        weight: u32,
    },
    /// RFC 5356 §4.3, TLV length 8.
    Random,
    /// RFC 5356 §4.4, TLV length 12.
    WeightedRandom {
        /// Weight: a larger weight is chosen more often.
        weight: u32,
    },
    /// RFC 5356 §4.5, TLV length 12. Larger = higher priority.
    Priority {
        /// Priority: larger is preferred.
        priority: u32,
    },
    /// RFC 5356 §5.1, TLV length 12.
    LeastUsed {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
    },
    /// RFC 5356 §5.2, TLV length 16.
    LeastUsedDegradation {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
    },
    /// RFC 5356 §5.3, TLV length 16.
    PriorityLeastUsed {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
    },
    /// RFC 5356 §5.4, TLV length 12.
    RandomizedLeastUsed {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
    },
    /// rsplib 0xB0001001, TLV length 16.
    RandomizedPriorityLeastUsed {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
    },
    /// rsplib 0xB0001002, TLV length 16.
    RandomizedLeastUsedDegradation {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
    },
    /// rsplib 0xB0001003, TLV length 16.
    PriorityLeastUsedDegradation {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
    },
    /// rsplib 0xB0001004, TLV length 16.
    RandomizedPriorityLeastUsedDegradation {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
    },
    /// rsplib 0xB0002001, TLV length 20. `distance` is a delay in ms.
    WeightedRandomDpf {
        /// Weight: a larger weight is chosen more often.
        weight: u32,
        /// Distance penalty factor applied to the weight (rsplib DPF policies).
        weight_dpf: Fraction,
        /// Distance (delay) to the PE in ms (rsplib DPF policies).
        distance: u32,
    },
    /// rsplib 0xB0002002, TLV length 20.
    LeastUsedDpf {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Distance penalty factor applied to the load (rsplib DPF policies).
        load_dpf: Fraction,
        /// Distance (delay) to the PE in ms (rsplib DPF policies).
        distance: u32,
    },
    /// rsplib 0xB0002003, TLV length 24.
    LeastUsedDegradationDpf {
        /// Current load, the fraction of capacity in use (RFC 5356 §5).
        load: Fraction,
        /// Load degradation: the load one more session adds (RFC 5356 §5.2).
        degradation: Fraction,
        /// Distance penalty factor applied to the load (rsplib DPF policies).
        load_dpf: Fraction,
        /// Distance (delay) to the PE in ms (rsplib DPF policies).
        distance: u32,
    },
    /// Any other policy code (or a known code with an unexpected value length): the raw
    /// value bytes after the policy type word, kept so that re-encoding is byte-exact.
    Unknown {
        /// The 32-bit policy type code.
        policy_type: u32,
        /// The value bytes after the policy type word.
        data: Vec<u8>,
    },
}

/// Matches the policies that carry a Load field (RFC 5356 §4 adaptive policies and rsplib's
/// load-based private ones), binds it to `$load` (by reference, following `$policy`'s
/// binding mode) and gives `Some($value)`, else `None`: one list for [`Policy::load`] and
/// [`Policy::load_mut`].
macro_rules! adaptive_load {
    ($policy:expr, $load:ident => $value:expr) => {
        match $policy {
            Policy::LeastUsed { $load }
            | Policy::RandomizedLeastUsed { $load }
            | Policy::LeastUsedDegradation { $load, .. }
            | Policy::PriorityLeastUsed { $load, .. }
            | Policy::RandomizedPriorityLeastUsed { $load, .. }
            | Policy::RandomizedLeastUsedDegradation { $load, .. }
            | Policy::PriorityLeastUsedDegradation { $load, .. }
            | Policy::RandomizedPriorityLeastUsedDegradation { $load, .. }
            | Policy::LeastUsedDpf { $load, .. }
            | Policy::LeastUsedDegradationDpf { $load, .. } => Some($value),
            _ => None,
        }
    };
}

impl Policy {
    /// The policy's 32-bit type code.
    pub fn policy_type(&self) -> u32 {
        match self.known_type() {
            Some(t) => t.code(),
            None => match self {
                Policy::Unknown { policy_type, .. } => *policy_type,
                _ => unreachable!("every known variant has a PolicyType"),
            },
        }
    }

    /// The known policy type, `None` for [`Policy::Unknown`].
    pub fn known_type(&self) -> Option<PolicyType> {
        Some(match self {
            Policy::RoundRobin => PolicyType::RoundRobin,
            Policy::WeightedRoundRobin { .. } => PolicyType::WeightedRoundRobin,
            Policy::Random => PolicyType::Random,
            Policy::WeightedRandom { .. } => PolicyType::WeightedRandom,
            Policy::Priority { .. } => PolicyType::Priority,
            Policy::LeastUsed { .. } => PolicyType::LeastUsed,
            Policy::LeastUsedDegradation { .. } => PolicyType::LeastUsedDegradation,
            Policy::PriorityLeastUsed { .. } => PolicyType::PriorityLeastUsed,
            Policy::RandomizedLeastUsed { .. } => PolicyType::RandomizedLeastUsed,
            Policy::RandomizedPriorityLeastUsed { .. } => PolicyType::RandomizedPriorityLeastUsed,
            Policy::RandomizedLeastUsedDegradation { .. } => {
                PolicyType::RandomizedLeastUsedDegradation
            }
            Policy::PriorityLeastUsedDegradation { .. } => PolicyType::PriorityLeastUsedDegradation,
            Policy::RandomizedPriorityLeastUsedDegradation { .. } => {
                PolicyType::RandomizedPriorityLeastUsedDegradation
            }
            Policy::WeightedRandomDpf { .. } => PolicyType::WeightedRandomDpf,
            Policy::LeastUsedDpf { .. } => PolicyType::LeastUsedDpf,
            Policy::LeastUsedDegradationDpf { .. } => PolicyType::LeastUsedDegradationDpf,
            Policy::Unknown { .. } => return None,
        })
    }

    /// The load value of adaptive policies (`None` for non-adaptive ones).
    pub fn load(&self) -> Option<Fraction> {
        adaptive_load!(self, load => *load)
    }

    /// The Load field of an adaptive policy, to change it in place (a PE's new load before
    /// a re-registration, RFC 5352 §3); `None` for the policies without one.
    pub fn load_mut(&mut self) -> Option<&mut Fraction> {
        adaptive_load!(self, load => load)
    }
}
