//! The pool user's cache of handle resolution results (RFC 5352 PU side, stale.cache.value
//! = 30 s by default, asap/wire/INTEROP.md §4, §5.2; PU side selection of RFC 5356 §4–5).
//!
//! Stores, per pool handle, the PEs returned by the last HANDLE_RESOLUTION_RESPONSE **in
//! the registrar's order** and selects among them with the same [`Selector`] code the
//! registrar uses. The order matters: the registrar rotates the head of its answers so
//! that many pool users spread over the pool (RFC 5356 §4.1.2, RFC 5352 §3.5; a PRIO
//! answer lists the highest priority first); PEs new to the cache join the selector in
//! response order, so a fresh PU's first choice is the registrar's first PE (as rsplib's
//! PU cache, whose round robin is insertion order). Entries older
//! than the stale value are not served (the PU must ask a registrar again). A PE that fails
//! is removed with [`PoolUserCache::mark_failed`] (and reported with
//! ASAP_ENDPOINT_UNREACHABLE by the caller). No clock is read: `now` is an argument.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::selection::{MaxIncrement, Selector};
use crate::wire::{PeIdentifier, PoolElementInfo, PoolHandle};

/// RFC 5352 default of stale.cache.value.
pub const DEFAULT_STALE_CACHE_VALUE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct CachedPool {
    /// In the order of the last response (first occurrence of an identifier wins).
    elements: Vec<PoolElementInfo>,
    selector: Selector,
    expires: Instant,
}

/// The PU-side cache; see the module documentation.
#[derive(Debug, Clone)]
pub struct PoolUserCache {
    pools: HashMap<PoolHandle, CachedPool>,
    stale_after: Duration,
    max_increment: MaxIncrement,
}

impl Default for PoolUserCache {
    fn default() -> Self {
        Self::new(DEFAULT_STALE_CACHE_VALUE)
    }
}

impl PoolUserCache {
    /// A cache whose entries go stale `stale_cache_value` after they were stored.
    pub fn new(stale_cache_value: Duration) -> Self {
        PoolUserCache {
            pools: HashMap::new(),
            stale_after: stale_cache_value,
            max_increment: MaxIncrement::PolicyDefault,
        }
    }

    /// Sets the max increment used by [`select`](Self::select).
    pub fn set_max_increment(&mut self, m: MaxIncrement) {
        self.max_increment = m;
    }

    /// Stores a handle resolution result. PEs already cached keep their selection state
    /// (so round robin continues where it was) but take the new policy values; PEs missing
    /// from the result are dropped. The pool's policy is the first PE's (all PEs of a pool
    /// share it, RFC 5356). An empty result removes the entry.
    pub fn store(&mut self, handle: &PoolHandle, elements: Vec<PoolElementInfo>, now: Instant) {
        let Some(first) = elements.first() else {
            self.pools.remove(handle);
            return;
        };
        let code = first.policy.policy_type();
        let expires = now.checked_add(self.stale_after).unwrap_or(now);
        let cp = match self.pools.get_mut(handle) {
            Some(cp) if cp.selector.policy_code() == code => cp,
            _ => {
                self.pools.insert(
                    handle.clone(),
                    CachedPool {
                        elements: Vec::new(),
                        selector: Selector::new(code),
                        expires,
                    },
                );
                match self.pools.get_mut(handle) {
                    Some(cp) => cp,
                    None => return,
                }
            }
        };
        cp.expires = expires;
        let mut seen: HashSet<PeIdentifier> = HashSet::new();
        let fresh: Vec<PoolElementInfo> =
            elements.into_iter().filter(|e| seen.insert(e.id)).collect();
        for old in &cp.elements {
            if !seen.contains(&old.id) {
                cp.selector.remove(old.id);
            }
        }
        // In response order: new PEs get their sequence numbers in that order.
        for e in &fresh {
            cp.selector.insert(e.id, &e.policy);
        }
        cp.elements = fresh;
    }

    /// True if a non-stale entry exists for `handle`.
    pub fn is_fresh(&self, handle: &PoolHandle, now: Instant) -> bool {
        self.pools.get(handle).is_some_and(|cp| now < cp.expires)
    }

    /// Number of cached PEs for `handle` (stale or not).
    pub fn len(&self, handle: &PoolHandle) -> usize {
        self.pools.get(handle).map_or(0, |cp| cp.elements.len())
    }

    /// All cached PEs of `handle` (stale or not), in the order of the registrar's last
    /// response, without touching the selection state.
    pub fn elements(&self, handle: &PoolHandle) -> Vec<PoolElementInfo> {
        self.pools
            .get(handle)
            .map(|cp| cp.elements.clone())
            .unwrap_or_default()
    }

    /// Selects up to `n` cached PEs by the pool's policy. `None` if there is no fresh entry
    /// with at least one PE: the PU must send a HANDLE_RESOLUTION.
    pub fn select<R: Rng + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        n: usize,
        now: Instant,
        rng: &mut R,
    ) -> Option<Vec<PoolElementInfo>> {
        let cp = self.pools.get_mut(handle)?;
        if now >= cp.expires || cp.elements.is_empty() {
            return None;
        }
        let ids = cp.selector.select(n, self.max_increment, rng);
        Some(
            ids.iter()
                .filter_map(|id| cp.elements.iter().find(|e| e.id == *id).cloned())
                .collect(),
        )
    }

    /// Removes a PE the PU found unreachable. Returns true if it was cached.
    pub fn mark_failed(&mut self, handle: &PoolHandle, id: PeIdentifier) -> bool {
        let Some(cp) = self.pools.get_mut(handle) else {
            return false;
        };
        let before = cp.elements.len();
        cp.elements.retain(|e| e.id != id);
        let found = cp.elements.len() < before;
        cp.selector.remove(id);
        if cp.elements.is_empty() {
            self.pools.remove(handle);
        }
        found
    }

    /// Forgets a pool.
    pub fn remove(&mut self, handle: &PoolHandle) -> bool {
        self.pools.remove(handle).is_some()
    }

    /// Drops all stale entries; returns how many pools were dropped.
    pub fn purge(&mut self, now: Instant) -> usize {
        let before = self.pools.len();
        self.pools.retain(|_, cp| now < cp.expires);
        before - self.pools.len()
    }
}
