//! One pool: its defining settings, its PEs by identifier, and its selection state.

use std::collections::BTreeMap;
use std::mem::discriminant;
use std::sync::Arc;

use crate::selection::Selector;
use crate::wire::{PeIdentifier, Policy, PoolElementInfo, PoolHandle, TransportParameter};

use super::entry::PoolElementEntry;
use super::error::HandlespaceError;

/// A pool of the handlespace (RFC 5351 §2.1).
///
/// The first PE defines the pool's policy type, user transport protocol and Transport Use
/// (RFC 5352 registration consistency rules; asap/wire/INTEROP.md §3 last bullet); later PEs
/// must match them.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Shared with the connection and timer indexes (one allocation per pool, not per PE).
    pub(super) handle: Arc<PoolHandle>,
    pub(super) policy: Policy,
    pub(super) transport: TransportParameter,
    pub(super) elements: BTreeMap<PeIdentifier, PoolElementEntry>,
    pub(super) selector: Selector,
}

impl Pool {
    pub(super) fn new(handle: Arc<PoolHandle>, defining: &PoolElementInfo) -> Self {
        Pool {
            handle,
            policy: defining.policy.clone(),
            transport: defining.user_transport.clone(),
            elements: BTreeMap::new(),
            selector: Selector::new(defining.policy.policy_type()),
        }
    }

    /// The pool handle.
    pub fn handle(&self) -> &PoolHandle {
        &self.handle
    }

    /// The defining PE's policy parameter (sent in Inconsistent Pooling Policy causes).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The pool's policy type code.
    pub fn policy_type(&self) -> u32 {
        self.selector.policy_code()
    }

    /// The defining PE's user transport (protocol and Transport Use of the pool).
    pub fn user_transport(&self) -> &TransportParameter {
        &self.transport
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// True if the pool has no PE (never the case for a pool held by a handlespace).
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// One PE.
    pub fn get(&self, id: PeIdentifier) -> Option<&PoolElementEntry> {
        self.elements.get(&id)
    }

    /// All PEs in ascending PE ID order.
    pub fn iter(&self) -> impl Iterator<Item = (PeIdentifier, &PoolElementEntry)> {
        self.elements.iter().map(|(k, v)| (*k, v))
    }

    /// The pool's selection state.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Checks a (re-)registering PE against the pool settings (RFC 5354 causes 0x5, 0x7,
    /// 0x8). As rsplib, this applies to every registration, also to a re-registration of
    /// the pool's only PE: a pool's policy type and transport change only by
    /// deregistering all its PEs (the pool disappears) and registering anew.
    pub(super) fn check(&self, e: &PoolElementInfo) -> Result<(), HandlespaceError> {
        if e.policy.policy_type() != self.policy_type() {
            return Err(HandlespaceError::InconsistentPoolingPolicy {
                pool_policy: self.policy.clone(),
                requested: e.policy.policy_type(),
            });
        }
        if discriminant(&e.user_transport) != discriminant(&self.transport) {
            return Err(HandlespaceError::InconsistentTransportType {
                pool_transport: self.transport.clone(),
            });
        }
        let (pool, requested) = (
            self.transport.transport_use(),
            e.user_transport.transport_use(),
        );
        if pool != requested {
            return Err(HandlespaceError::InconsistentDataControlConfiguration { pool, requested });
        }
        Ok(())
    }
}
