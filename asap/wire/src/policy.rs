//! Pool Member Selection Policy parameter values (RFC 5356 §7, plus rsplib's private policies).
//!
//! This module is the data model only; the TLV encoding lives with the other parameters
//! in the codec. Every policy is spelled once, in the `policy_table!` below: its code, its
//! names and the 32-bit fields of its value in wire order ([`PolicyField`]). The codec,
//! the selection code and the tests read and build values through that table
//! ([`Policy::fields`], [`Policy::from_fields`]).

use serde::Serialize;

/// A 32-bit load, load degradation or DPF value: a fraction where `0x0000_0000` = 0 % and
/// `0xFFFF_FFFF` = 100 % (RFC 5356 §3.x).
pub type Fraction = u32;

/// The most fields a policy value carries (LUD-DPF: load, degradation, load DPF, distance).
pub const MAX_POLICY_FIELDS: usize = 4;

/// One 32-bit field of a policy value (RFC 5356 §7; rsplib for the DPF policies): what
/// [`PolicyType::fields`] lists and [`Policy::fields`] gives with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyField {
    /// Weight: a larger weight is chosen more often (WRR, WRAND, WRAND-DPF).
    Weight,
    /// Priority: larger is preferred (PRIO).
    Priority,
    /// Current load, the fraction of capacity in use (RFC 5356 §5; a [`Fraction`]).
    Load,
    /// Load degradation: the load one more session adds (RFC 5356 §5.2; a [`Fraction`]).
    Degradation,
    /// Distance penalty factor applied to the weight (WRAND-DPF; a [`Fraction`]).
    WeightDpf,
    /// Distance penalty factor applied to the load (LU-DPF, LUD-DPF; a [`Fraction`]).
    LoadDpf,
    /// Distance (delay) to the PE in ms (DPF policies).
    Distance,
}

/// Generates [`PolicyType`] (codes, names) and [`Policy`] (one variant per policy with its
/// fields in wire order, plus `Unknown`) from one row per policy, and the conversions that
/// only need the table: [`PolicyType::fields`], [`Policy::known_type`], [`Policy::fields`],
/// [`Policy::from_fields`].
macro_rules! policy_table {
    ($(
        $(#[$doc:meta])*
        $Var:ident = $code:literal, $name:literal, $tshark:literal $({ $($field:ident: $Kind:ident),* })?;
    )*) => {
        /// Numeric policy type codes (RFC 5356 §7.1 IANA table; rsplib private codes
        /// 0xB000_xxxx).
        ///
        /// One source of truth for the codes: everything else converts through this enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[repr(u32)]
        pub enum PolicyType {
            $( $(#[$doc])* $Var = $code, )*
        }

        impl PolicyType {
            /// All known policy types, in code order.
            pub const ALL: [PolicyType; [$(PolicyType::$Var),*].len()] = [$(PolicyType::$Var),*];

            /// Short name as rsplib and Wireshark print it (e.g. `Round Robin`, `Least Used`).
            pub fn name(self) -> &'static str {
                match self {
                    $( PolicyType::$Var => $name, )*
                }
            }

            /// The name tshark 4.0 prints (`asap.pool_member_selection_policy_type`), or
            /// rsplib's name with its abbreviation for policies tshark does not know.
            pub fn tshark_name(self) -> &'static str {
                match self {
                    $( PolicyType::$Var => $tshark, )*
                }
            }

            /// The 32-bit fields of this policy's value, in wire order (RFC 5356 §7 and
            /// rsplib's layout, asap/wire/INTEROP.md §3).
            pub fn fields(self) -> &'static [PolicyField] {
                match self {
                    $( PolicyType::$Var => &[$($(PolicyField::$Kind),*)?], )*
                }
            }
        }

        /// A Pool Member Selection Policy parameter value (RFC 5356 §7, parameter 0x0008 of
        /// RFC 5354 §3.8): the policy type and the policy-specific values of one PE.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(tag = "policy")]
        pub enum Policy {
            $(
                $(#[$doc])*
                $Var $({ $(
                    #[doc = concat!("The ", stringify!($Kind), " field ([`PolicyField::", stringify!($Kind), "`]).")]
                    $field: u32,
                )* })?,
            )*
            /// Any other policy code (or a known code with an unexpected value length): the
            /// raw value bytes after the policy type word, kept so that re-encoding is
            /// byte-exact.
            Unknown {
                /// The 32-bit policy type code.
                policy_type: u32,
                /// The value bytes after the policy type word.
                data: Vec<u8>,
            },
        }

        impl Policy {
            /// The known policy type, `None` for [`Policy::Unknown`].
            pub fn known_type(&self) -> Option<PolicyType> {
                match self {
                    $( Policy::$Var { .. } => Some(PolicyType::$Var), )*
                    Policy::Unknown { .. } => None,
                }
            }

            /// The value's fields with their values, in wire order (none for
            /// [`Policy::Unknown`], whose value is raw bytes).
            pub fn fields(&self) -> impl Iterator<Item = (PolicyField, u32)> {
                let mut values = [0; MAX_POLICY_FIELDS];
                let kinds = match *self {
                    $( Policy::$Var $({ $($field),* })? => {
                        let v: &[u32] = &[$($($field),*)?];
                        values[..v.len()].copy_from_slice(v);
                        PolicyType::$Var.fields()
                    } )*
                    Policy::Unknown { .. } => &[],
                };
                kinds.iter().copied().zip(values)
            }

            /// The policy of type `t` whose fields have the values `value` gives, asked in
            /// wire order ([`PolicyType::fields`]).
            pub fn from_fields(t: PolicyType, mut value: impl FnMut(PolicyField) -> u32) -> Policy {
                match t {
                    $( PolicyType::$Var => Policy::$Var $({ $($field: value(PolicyField::$Kind)),* })?, )*
                }
            }
        }
    };
}

policy_table! {
    /// Round Robin, RFC 5356 §4.1.
    RoundRobin = 0x0000_0001, "Round Robin", "Round Robin (RR)";
    /// Weighted Round Robin, RFC 5356 §4.2.
    WeightedRoundRobin = 0x0000_0002, "Weighted Round Robin", "Weighted Round Robin (WRR)" { weight: Weight };
    /// Random, RFC 5356 §4.3.
    Random = 0x0000_0003, "Random", "Random (RAND)";
    /// Weighted Random, RFC 5356 §4.4.
    WeightedRandom = 0x0000_0004, "Weighted Random", "Weighted Random (WRAND)" { weight: Weight };
    /// Priority, RFC 5356 §4.5. Larger = higher priority.
    Priority = 0x0000_0005, "Priority", "Priority (PRI)" { priority: Priority };
    /// Least Used, RFC 5356 §5.1.
    LeastUsed = 0x4000_0001, "Least Used", "Least Used (LU)" { load: Load };
    /// Least Used with Degradation, RFC 5356 §5.2.
    LeastUsedDegradation = 0x4000_0002, "Least Used with Degradation", "Least Used with Degradation (LUD)" { load: Load, degradation: Degradation };
    /// Priority Least Used, RFC 5356 §5.3.
    PriorityLeastUsed = 0x4000_0003, "Priority Least Used", "Priority Least Used (PLU)" { load: Load, degradation: Degradation };
    /// Randomized Least Used, RFC 5356 §5.4.
    RandomizedLeastUsed = 0x4000_0004, "Randomized Least Used", "Randomized Least Used (RLU)" { load: Load };
    /// rsplib: Randomized Priority Least Used.
    RandomizedPriorityLeastUsed = 0xB000_1001, "Randomized Priority Least Used", "Randomized Priority Least Used (RPLU)" { load: Load, degradation: Degradation };
    /// rsplib: Randomized Least Used with Degradation.
    RandomizedLeastUsedDegradation = 0xB000_1002, "Randomized Least Used with Degradation", "Randomized Least Used with Degradation (RLUD)" { load: Load, degradation: Degradation };
    /// rsplib: Priority Least Used with Degradation.
    PriorityLeastUsedDegradation = 0xB000_1003, "Priority Least Used with Degradation", "Priority Least Used with Degradation (PLUD)" { load: Load, degradation: Degradation };
    /// rsplib: Randomized Priority Least Used with Degradation.
    RandomizedPriorityLeastUsedDegradation = 0xB000_1004, "Randomized Priority Least Used with Degradation", "Randomized Priority Least Used with Degradation (RPLUD)" { load: Load, degradation: Degradation };
    /// rsplib / draft-dreibholz-rserpool-delay: Weighted Random with Distance Penalty
    /// Factor; `distance` is a delay in ms.
    WeightedRandomDpf = 0xB000_2001, "Weighted Random with DPF", "Weighted Random with Delay Penalty Factor (WRAND-DPF)" { weight: Weight, weight_dpf: WeightDpf, distance: Distance };
    /// rsplib: Least Used with Distance Penalty Factor.
    LeastUsedDpf = 0xB000_2002, "Least Used with DPF", "Least Used with Delay Penalty Factor (LU-DPF)" { load: Load, load_dpf: LoadDpf, distance: Distance };
    /// rsplib: Least Used with Degradation and Distance Penalty Factor.
    LeastUsedDegradationDpf = 0xB000_2003, "Least Used with Degradation and DPF", "Least Used with Degradation and Delay Penalty Factor (LUD-DPF)" { load: Load, degradation: Degradation, load_dpf: LoadDpf, distance: Distance };
}

impl PolicyType {
    /// The 32-bit code carried on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Looks a code up; `None` for codes without a known encoding.
    pub fn from_code(code: u32) -> Option<PolicyType> {
        PolicyType::ALL.iter().copied().find(|t| t.code() == code)
    }

    /// Bytes of policy-specific data after the 32-bit policy type (TLV Length − 8), as
    /// RFC 5356 §7 and rsplib lay them out (asap/wire/INTEROP.md §3): 4 per field.
    pub fn value_len(self) -> usize {
        4 * self.fields().len()
    }

    /// The whole TLV Length of this policy's parameter (8–24).
    pub fn tlv_len(self) -> usize {
        8 + self.value_len()
    }

    /// RFC 5356 §7.1: bit 30 (A) marks adaptive policies. rsplib's private codes do not
    /// follow that bit, so this answers from the policy's semantics: the adaptive policies
    /// are those that carry a load.
    pub fn is_adaptive(self) -> bool {
        self.fields().contains(&PolicyField::Load)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The table gives every policy the value length of RFC 5356 / rsplib
    /// (asap/wire/INTEROP.md §3) and marks exactly the load-carrying ones adaptive.
    #[test]
    fn table_lengths_and_adaptive_policies() {
        let lengths: Vec<usize> = PolicyType::ALL.iter().map(|t| t.value_len()).collect();
        assert_eq!(lengths, [0, 4, 0, 4, 4, 4, 8, 8, 4, 8, 8, 8, 8, 12, 12, 16]);
        let fixed: Vec<PolicyType> = PolicyType::ALL
            .into_iter()
            .filter(|t| !t.is_adaptive())
            .collect();
        assert_eq!(
            fixed,
            [
                PolicyType::RoundRobin,
                PolicyType::WeightedRoundRobin,
                PolicyType::Random,
                PolicyType::WeightedRandom,
                PolicyType::Priority,
                PolicyType::WeightedRandomDpf,
            ]
        );
    }

    /// `from_fields` asks for the fields in wire order and `fields` gives them back.
    #[test]
    fn fields_round_trip_in_wire_order() {
        for t in PolicyType::ALL {
            let mut asked = Vec::new();
            let p = Policy::from_fields(t, |f| {
                asked.push(f);
                100 + asked.len() as u32
            });
            assert_eq!(asked, t.fields(), "{t:?}");
            assert_eq!(p.known_type(), Some(t));
            let got: Vec<(PolicyField, u32)> = p.fields().collect();
            let want: Vec<(PolicyField, u32)> = t.fields().iter().copied().zip(101..).collect();
            assert_eq!(got, want, "{t:?}");
        }
        assert_eq!(
            Policy::from_fields(PolicyType::LeastUsedDegradationDpf, |f| f as u32),
            Policy::LeastUsedDegradationDpf {
                load: PolicyField::Load as u32,
                degradation: PolicyField::Degradation as u32,
                load_dpf: PolicyField::LoadDpf as u32,
                distance: PolicyField::Distance as u32,
            }
        );
        let unknown = Policy::Unknown {
            policy_type: 0x1234,
            data: vec![1, 2, 3, 4],
        };
        assert_eq!(unknown.fields().count(), 0);
        assert_eq!(unknown.known_type(), None);
    }
}
