//! Pool member selection (RFC 5356 §4–5; asap/wire/INTEROP.md §3) as rsplib realises it.
//!
//! A [`Selector`] holds the selection state of one pool: per PE a copy of its policy values
//! plus the counters the policy needs (sequence number, WRR round/virtual counters, LUD
//! degradation accumulator). It is shared by the registrar's handlespace (handle
//! resolution, RFC 5352 and asap/wire/INTEROP.md §5.2) and the pool user's cache (PU side selection).
//!
//! Two families, both O(log n) per PE touched, never scanning a whole pool:
//!
//! * **Sorted** policies (RR, WRR, PRIO, LU, LUD, PLU, PLUD, LU-DPF, LUD-DPF) keep the PEs
//!   in a `BTreeSet` ordered by a policy key followed by a per-PE *sequence number*; a
//!   selection of `n` returns the first `n` entries in order. The first
//!   [`MaxIncrement`] of them get a new (highest) sequence number and their policy counters
//!   updated, which moves them behind their equals — that is the round-robin tie-break of
//!   RFC 5356 §4.1/§5.1. See [`round_robin`], [`priority`], [`least_used`].
//! * **Value tree** policies (RAND, WRAND, RLU, RPLU, RLUD, RPLUD, WRAND-DPF) keep one
//!   weight per PE in a Fenwick tree and draw `n` PEs without replacement, each with
//!   probability weight / Σ weights of the PEs not yet drawn. See [`random`].
//!
//! Pools whose policy type is unknown (a [`Policy::Unknown`] code) are served round robin:
//! RFC 5356 makes RR the mandatory default, and it needs no policy values.
//!
//! Everything is deterministic given the random number generator passed in.
//!
//! A round-robin pool of three PEs: each selection of one hands out the next PE, and the one
//! handed out moves behind its equals (RFC 5356 §4.1):
//!
//! ```
//! use asap::selection::{MaxIncrement, Selector};
//! use asap::wire::{Policy, PolicyType};
//! use rand::SeedableRng;
//!
//! let mut pool = Selector::new(PolicyType::RoundRobin.code());
//! for id in [1, 2, 3] {
//!     pool.insert(id, &Policy::RoundRobin);
//! }
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let picks: Vec<u32> = (0..4)
//!     .flat_map(|_| pool.select(1, MaxIncrement::PolicyDefault, &mut rng))
//!     .collect();
//! assert_eq!(picks, [1, 2, 3, 1]);
//! ```

mod fenwick;
pub mod least_used;
pub mod priority;
pub mod random;
pub mod round_robin;

use std::collections::{BTreeSet, HashMap};

use rand::Rng;

use crate::wire::{Fraction, PeIdentifier, Policy, PolicyField, PolicyType};
use fenwick::Fenwick;

/// Largest 32-bit fraction value (100 % load, degradation or DPF; RFC 5356 §5).
pub const MAX_FRACTION: u64 = 0xFFFF_FFFF;

/// How many of the PEs returned by one selection get their selection state updated
/// (rsplib's `MaxIncrement`, asap/wire/INTEROP.md §3).
///
/// With the default, sorted policies update only the first PE returned (so RR advances the
/// head by one per request, as RFC 5356 §4.1 describes) — except the degradation policies
/// LUD, PLUD and LUD-DPF, which degrade **every** PE handed out (RFC 5356 §5.2: each PE
/// "selected" gets its load degradation added) — and stateless random policies update
/// none; the degradation random policies (RLUD, RPLUD) update one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaxIncrement {
    /// The policy's default, RFC 5356 (see [`default_max_increment`]).
    #[default]
    PolicyDefault,
    /// rsplib's policy default (its setting 0, `DefaultMaxIncrement`): like
    /// [`PolicyDefault`](Self::PolicyDefault), but LUD, PLUD and LUD-DPF degrade only the
    /// first PE returned (see [`rsplib_default_max_increment`]).
    RsplibDefault,
    /// Update at most this many of the returned PEs.
    Count(usize),
}

impl MaxIncrement {
    /// rsplib's encoding: 0 = rsplib's policy default, otherwise a count.
    pub fn from_rsplib(value: u32) -> Self {
        match value {
            0 => MaxIncrement::RsplibDefault,
            v => MaxIncrement::Count(v as usize),
        }
    }

    fn resolve(self, policy: PolicyType) -> usize {
        match self {
            MaxIncrement::PolicyDefault => default_max_increment(policy),
            MaxIncrement::RsplibDefault => rsplib_default_max_increment(policy),
            MaxIncrement::Count(c) => c,
        }
    }
}

/// The policy values of one PE, extracted from its [`Policy`] parameter. Fields a policy
/// does not carry are 0, so a PE whose parameter does not match its pool's policy type
/// (possible in a PU cache fed by a buggy server) is still selectable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyValues {
    /// Weight (WRR, WRAND, WRAND-DPF) or priority (PRIO).
    pub weight: u32,
    /// Load (adaptive policies).
    pub load: Fraction,
    /// Load degradation (LUD, PLU, PLUD, RPLU, RLUD, RPLUD, LUD-DPF).
    pub load_degradation: Fraction,
    /// Weight DPF (WRAND-DPF) or load DPF (LU-DPF, LUD-DPF).
    pub dpf: Fraction,
    /// Distance in ms (DPF policies).
    pub distance: u32,
}

impl PolicyValues {
    /// Extracts the values of a policy parameter.
    pub fn of(policy: &Policy) -> Self {
        let mut v = PolicyValues::default();
        for (field, value) in policy.fields() {
            *v.slot(field) = value;
        }
        v
    }

    /// Where a policy field's value is kept (priority as weight, either DPF as `dpf`).
    fn slot(&mut self, field: PolicyField) -> &mut u32 {
        match field {
            PolicyField::Weight | PolicyField::Priority => &mut self.weight,
            PolicyField::Load => &mut self.load,
            PolicyField::Degradation => &mut self.load_degradation,
            PolicyField::WeightDpf | PolicyField::LoadDpf => &mut self.dpf,
            PolicyField::Distance => &mut self.distance,
        }
    }
}

/// Selection state of one PE (read-only view, see [`Selector::info`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectionInfo {
    /// The PE's policy values.
    pub values: PolicyValues,
    /// Sequence number: lower = earlier in the round-robin tie-break.
    pub seq: u64,
    /// WRR round counter.
    pub round: u64,
    /// WRR virtual counter (selections left in the current round).
    pub virtual_counter: u32,
    /// Degradation accumulator (LUD family): load degradation added per selection, reset on
    /// re-registration (RFC 5356 §5.2), saturating at 100 %.
    pub degradation: Fraction,
    /// How often the PE was selected with a state update.
    pub selections: u64,
}

/// Position of a PE inside the selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Sorted(SortKey),
    Slot(usize),
    /// Not selectable (WRR weight 0 = "cannot serve", RFC 5356 §4.2).
    Parked,
}

#[derive(Debug, Clone, Copy)]
struct PeState {
    info: SelectionInfo,
    pos: Pos,
}

/// Ordering key of the sorted policies: (policy key, secondary key, sequence number, PE ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    primary: u64,
    secondary: u64,
    seq: u64,
    id: PeIdentifier,
}

/// True for the policies drawn from the value tree.
fn is_value_tree(p: PolicyType) -> bool {
    matches!(
        p,
        PolicyType::Random
            | PolicyType::WeightedRandom
            | PolicyType::WeightedRandomDpf
            | PolicyType::RandomizedLeastUsed
            | PolicyType::RandomizedPriorityLeastUsed
            | PolicyType::RandomizedLeastUsedDegradation
            | PolicyType::RandomizedPriorityLeastUsedDegradation
    )
}

/// The default number of returned PEs whose state a selection updates (RFC 5356): every
/// one for the sorted degradation policies LUD, PLUD and LUD-DPF (§5.2: each PE handed out
/// is degraded), otherwise [`rsplib_default_max_increment`].
pub fn default_max_increment(p: PolicyType) -> usize {
    match p {
        PolicyType::LeastUsedDegradation
        | PolicyType::PriorityLeastUsedDegradation
        | PolicyType::LeastUsedDegradationDpf => usize::MAX,
        p => rsplib_default_max_increment(p),
    }
}

/// rsplib's `DefaultMaxIncrement`: 1 for sorted policies, 0 for the stateless random ones.
/// RLUD and RPLUD keep a degradation accumulator and default to 1 here (see [`random`]).
pub fn rsplib_default_max_increment(p: PolicyType) -> usize {
    match p {
        PolicyType::Random
        | PolicyType::WeightedRandom
        | PolicyType::WeightedRandomDpf
        | PolicyType::RandomizedLeastUsed
        | PolicyType::RandomizedPriorityLeastUsed => 0,
        _ => 1,
    }
}

/// Sum of fractions, saturating at 100 % (rsplib `getSum`).
pub(crate) fn sat_sum(parts: &[u64]) -> u64 {
    parts.iter().sum::<u64>().min(MAX_FRACTION)
}

/// The selection state of one pool (RFC 5356 §4–5), see the module documentation.
#[derive(Debug, Clone)]
pub struct Selector {
    policy_code: u32,
    policy: PolicyType,
    states: HashMap<PeIdentifier, PeState>,
    sorted: BTreeSet<SortKey>,
    tree: Fenwick,
    slots: Vec<PeIdentifier>,
    next_seq: u64,
}

impl Selector {
    /// A selector for a pool with the given 32-bit policy type code (RFC 5356 §7.1).
    /// Unknown codes select round robin.
    pub fn new(policy_code: u32) -> Self {
        Selector {
            policy_code,
            policy: PolicyType::from_code(policy_code).unwrap_or(PolicyType::RoundRobin),
            states: HashMap::new(),
            sorted: BTreeSet::new(),
            tree: Fenwick::new(),
            slots: Vec::new(),
            next_seq: 0,
        }
    }

    /// The pool's policy type code as registered.
    pub fn policy_code(&self) -> u32 {
        self.policy_code
    }

    /// The policy actually applied (round robin for unknown codes).
    pub fn effective_policy(&self) -> PolicyType {
        self.policy
    }

    /// Number of PEs (including non-selectable ones such as WRR weight 0).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True if the selector holds no PE.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// True if `id` is known.
    pub fn contains(&self, id: PeIdentifier) -> bool {
        self.states.contains_key(&id)
    }

    /// The selection state of one PE.
    pub fn info(&self, id: PeIdentifier) -> Option<SelectionInfo> {
        self.states.get(&id).map(|s| s.info)
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Adds a PE (registration). A PE already present is updated as by
    /// [`update`](Self::update).
    pub fn insert(&mut self, id: PeIdentifier, policy: &Policy) {
        if self.states.contains_key(&id) {
            self.update(id, policy);
            return;
        }
        let seq = self.take_seq();
        let mut info = SelectionInfo {
            values: PolicyValues::of(policy),
            seq,
            ..SelectionInfo::default()
        };
        if self.policy == PolicyType::WeightedRoundRobin {
            round_robin::wrr_init(&mut info, self.current_round());
        }
        let pos = self.link(id, &info);
        self.states.insert(id, PeState { info, pos });
    }

    /// Re-registration (RFC 5352; asap/wire/INTEROP.md §5.1 step 4): new policy values take
    /// effect at once; the degradation accumulator is reset (RFC 5356 §5.2); the sequence
    /// number is kept. Returns false if `id` is unknown.
    pub fn update(&mut self, id: PeIdentifier, policy: &Policy) -> bool {
        let Some(mut st) = self.states.get(&id).copied() else {
            return false;
        };
        self.unlink(id, st.pos);
        let was_parked = st.pos == Pos::Parked;
        st.info.values = PolicyValues::of(policy);
        st.info.degradation = 0;
        if self.policy == PolicyType::WeightedRoundRobin {
            if was_parked {
                round_robin::wrr_init(&mut st.info, self.current_round());
            } else {
                round_robin::wrr_reweight(&mut st.info);
            }
        }
        st.pos = self.link(id, &st.info);
        self.states.insert(id, st);
        true
    }

    /// Removes a PE. Returns false if `id` is unknown.
    pub fn remove(&mut self, id: PeIdentifier) -> bool {
        match self.states.remove(&id) {
            Some(st) => {
                self.unlink(id, st.pos);
                true
            }
            None => false,
        }
    }

    /// Lowest WRR round in the pool (new PEs join the current round, as rsplib does).
    fn current_round(&self) -> u64 {
        self.sorted.first().map(|k| k.primary).unwrap_or(0)
    }

    fn link(&mut self, id: PeIdentifier, info: &SelectionInfo) -> Pos {
        if is_value_tree(self.policy) {
            let slot = self.tree.push(random::weight(self.policy, info));
            self.slots.push(id);
            Pos::Slot(slot)
        } else {
            match self.sort_key(id, info) {
                Some(key) => {
                    self.sorted.insert(key);
                    Pos::Sorted(key)
                }
                None => Pos::Parked,
            }
        }
    }

    fn unlink(&mut self, id: PeIdentifier, pos: Pos) {
        match pos {
            Pos::Sorted(key) => {
                self.sorted.remove(&key);
            }
            Pos::Slot(slot) => {
                let last = self.slots.len().saturating_sub(1);
                if slot != last {
                    if let Some(&moved) = self.slots.get(last) {
                        let v = self.tree.value(last);
                        self.tree.set(slot, v);
                        self.slots[slot] = moved;
                        if let Some(ms) = self.states.get_mut(&moved) {
                            ms.pos = Pos::Slot(slot);
                        }
                    }
                }
                self.tree.pop();
                self.slots.pop();
                debug_assert!(slot == last || self.slots.get(slot) != Some(&id));
            }
            Pos::Parked => {}
        }
    }

    fn sort_key(&self, id: PeIdentifier, info: &SelectionInfo) -> Option<SortKey> {
        let (primary, secondary) = match self.policy {
            PolicyType::RoundRobin => (0, 0),
            PolicyType::WeightedRoundRobin => round_robin::wrr_key(info)?,
            PolicyType::Priority => priority::key(info),
            p => least_used::key(p, info),
        };
        Some(SortKey {
            primary,
            secondary,
            seq: info.seq,
            id,
        })
    }

    /// Selects up to `n` distinct PEs by the pool's policy (handle resolution, RFC 5356
    /// §4–5) and updates the selection state of the first `max_increment` of them.
    ///
    /// Sorted policies return the PEs in policy order (e.g. ascending load for LU,
    /// descending priority for PRIO); value-tree policies return them in draw order.
    pub fn select<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        max_increment: MaxIncrement,
        rng: &mut R,
    ) -> Vec<PeIdentifier> {
        let updates = max_increment.resolve(self.policy);
        if n == 0 {
            return Vec::new();
        }
        if is_value_tree(self.policy) {
            self.select_value_tree(n, updates, rng)
        } else {
            self.select_sorted(n, updates)
        }
    }

    fn select_sorted(&mut self, n: usize, updates: usize) -> Vec<PeIdentifier> {
        let keys: Vec<SortKey> = self.sorted.iter().take(n).copied().collect();
        for key in keys.iter().take(updates) {
            let Some(mut st) = self.states.get(&key.id).copied() else {
                continue;
            };
            self.sorted.remove(key);
            st.info.seq = self.take_seq();
            st.info.selections += 1;
            match self.policy {
                PolicyType::WeightedRoundRobin => round_robin::wrr_selected(&mut st.info),
                p => least_used::selected(p, &mut st.info),
            }
            st.pos = self.link(key.id, &st.info);
            self.states.insert(key.id, st);
        }
        keys.into_iter().map(|k| k.id).collect()
    }

    fn select_value_tree<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        updates: usize,
        rng: &mut R,
    ) -> Vec<PeIdentifier> {
        let mut chosen: Vec<(PeIdentifier, usize, u64)> = Vec::new();
        while chosen.len() < n {
            let total = self.tree.total();
            if total == 0 {
                break;
            }
            let r = rng.gen_range(0..total);
            let Some(slot) = self.tree.find(r) else { break };
            let Some(&id) = self.slots.get(slot) else {
                break;
            };
            chosen.push((id, slot, self.tree.value(slot)));
            // Drawn without replacement: hide the PE until the draw is complete.
            self.tree.set(slot, 0);
        }
        for &(_, slot, w) in &chosen {
            self.tree.set(slot, w);
        }
        for &(id, slot, _) in chosen.iter().take(updates) {
            if let Some(st) = self.states.get_mut(&id) {
                st.info.seq = self.next_seq;
                self.next_seq += 1;
                st.info.selections += 1;
                random::selected(self.policy, &mut st.info);
                let w = random::weight(self.policy, &st.info);
                self.tree.set(slot, w);
            }
        }
        chosen.into_iter().map(|(id, _, _)| id).collect()
    }
}

#[cfg(test)]
mod tests;
