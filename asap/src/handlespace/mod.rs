//! The handlespace: all pools and their PEs as an ENRP server (registrar) holds them
//! (RFC 5351 §2–3; RFC 5353 handlespace; asap/wire/INTEROP.md §5.1–5.3, §5.6–5.9), and the
//! pool user's cache ([`cache`]).
//!
//! Sans-I/O: no clock is read and no socket touched. Time comes in as `now: Instant`
//! arguments; the caller (the registrar state machine) arms a timer for
//! [`Handlespace::next_expiry`] and calls [`Handlespace::expire`].
//!
//! Indexes, all kept consistent by every operation (each O(log n)):
//!
//! * pools by handle (`HashMap`, plus a `BTreeSet` of handles giving the order of
//!   HANDLE_TABLE_RESPONSE dumps), PEs by identifier within a pool (`BTreeMap`), the pool's
//!   [`Selector`](crate::selection::Selector);
//! * per owner (home ENRP server): the set of owned PEs and the incremental
//!   [`PeChecksum`] sent in ENRP_PRESENCE (handlespace audit, RFC 5353; asap/wire/INTEROP.md §5.9);
//! * per ASAP connection: the PEs registered over it, removed together when the association
//!   goes away (rsplib behaviour, asap/wire/INTEROP.md §5.1 step 6);
//! * expiry timers: `BTreeMap<(Instant, entry serial), (pool handle, PeIdentifier)>` (the
//!   serial makes keys unique and cheap to compare when many PEs share an expiry).
//!
//! The connection and timer indexes refer to the pool by the pool's own reference-counted
//! handle ([`SharedKey`]), so a PE costs no handle copy there (memory per PE: BENCHMARKS.md
//! "Handlespace memory").
//!
//! Registration rules (RFC 5352 registration; RFC 5354 §3.12 causes) are described at
//! [`Handlespace::register`]; the errors map to cause codes via
//! [`HandlespaceError::cause_code`].
//!
//! ```
//! use asap::handlespace::Handlespace;
//! use asap::wire::{Policy, PoolElementInfo, PoolHandle, TransportParameter, TransportUse};
//! use rand::SeedableRng;
//! use std::time::Instant;
//!
//! let (now, me) = (Instant::now(), 0x0102_0304);
//! let mut hs = Handlespace::new();
//! let h = PoolHandle::from("EchoPool");
//! for (id, load) in [(1, 30), (2, 10)] {
//!     let pe = PoolElementInfo {
//!         id, home_server_id: 0, registration_life: 30_000,
//!         user_transport: TransportParameter::Sctp {
//!             port: 7, transport_use: TransportUse::DataOnly, addresses: vec![],
//!         },
//!         policy: Policy::LeastUsed { load }, asap_transport: None,
//!     };
//!     hs.register(&h, pe, me, Some(42), now)?; // ASAP registration over association 42
//! }
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! assert_eq!(hs.select(&h, 3, &mut rng)?, vec![2, 1]); // least used first
//! assert_eq!(hs.remove_connection(42).len(), 2); // association lost
//! assert_eq!(hs.checksum(me), 0xFFFF);
//! # Ok::<(), asap::handlespace::HandlespaceError>(())
//! ```

pub mod cache;
mod dump;
mod entry;
mod error;
mod pool;

pub use dump::{DumpCursor, DumpItem, DumpPage};
pub use entry::{PoolElementEntry, UnreachableCount, MAX_TRACKED_REPORTERS};
pub use error::{cause, HandlespaceError, ResourceLimit};
pub use pool::Pool;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::checksum::PeChecksum;
use crate::selection::MaxIncrement;
use crate::wire::{PeIdentifier, PoolElementInfo, PoolHandle, ServerId};

/// Opaque identifier of the ASAP association (or TCP connection) a PE registered over;
/// assigned by the registrar's transport layer.
pub type ConnectionId = u64;

/// Opaque identifier of the sender of an ASAP_ENDPOINT_UNREACHABLE report (e.g. the PU's
/// association id); distinct reporters are counted separately.
pub type ReporterId = u64;

/// Configurable limits; exceeding one refuses the registration with
/// [`HandlespaceError::LackOfResources`] (cause 0x6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlespaceLimits {
    /// Maximum number of pools.
    pub max_pools: usize,
    /// Maximum number of PEs in one pool.
    pub max_pes_per_pool: usize,
    /// Maximum number of PEs registered over one ASAP connection.
    pub max_pes_per_connection: usize,
    /// Maximum number of PEs in the whole handlespace.
    pub max_pes: usize,
}

impl Default for HandlespaceLimits {
    fn default() -> Self {
        HandlespaceLimits {
            max_pools: 100_000,
            max_pes_per_pool: 100_000,
            max_pes_per_connection: 4_096,
            max_pes: 1_000_000,
        }
    }
}

/// What a successful [`Handlespace::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registered {
    /// A new PE was added.
    Added,
    /// An existing PE was updated (re-registration or a newer HANDLE_UPDATE).
    Updated {
        /// The owner before the update (differs from the new one when the PE moved home).
        previous_owner: ServerId,
    },
}

/// A PE removed from the handlespace (deregistration, expiry, connection loss, reports).
#[derive(Debug, Clone)]
pub struct RemovedElement {
    /// Its pool.
    pub handle: PoolHandle,
    /// The entry as it was.
    pub entry: PoolElementEntry,
}

/// A PE in the connection and timer indexes: its pool's shared handle and its ID.
type SharedKey = (Arc<PoolHandle>, PeIdentifier);

/// PEs owned by one ENRP server and their audit checksum.
#[derive(Debug, Clone, Default)]
struct Owned {
    pes: BTreeSet<(PoolHandle, PeIdentifier)>,
    checksum: PeChecksum,
}

/// The handlespace of an ENRP server; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Handlespace {
    /// Pools by handle (hashed: the hot path looks pools up by handle).
    pools: HashMap<PoolHandle, Pool>,
    /// Pool handles in order, for dumps.
    order: BTreeSet<PoolHandle>,
    owners: HashMap<ServerId, Owned>,
    connections: HashMap<ConnectionId, BTreeSet<SharedKey>>,
    timers: BTreeMap<(Instant, u64), SharedKey>,
    next_serial: u64,
    limits: HandlespaceLimits,
    max_increment: MaxIncrement,
    pes: usize,
}

/// Expiry of a registration: `registration_life` is in ms (asap/wire/INTEROP.md §2, rsplib and
/// Wireshark reading of RFC 5354 §3.10); negative = infinite.
fn expiry_of(now: Instant, life_ms: i32) -> Option<Instant> {
    let ms = u64::try_from(life_ms).ok()?;
    now.checked_add(Duration::from_millis(ms))
}

impl Handlespace {
    /// An empty handlespace with default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty handlespace with the given limits.
    pub fn with_limits(limits: HandlespaceLimits) -> Self {
        Handlespace {
            limits,
            ..Self::default()
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> HandlespaceLimits {
        self.limits
    }

    /// Sets rsplib's `MaxIncrement` used by [`select`](Self::select).
    pub fn set_max_increment(&mut self, m: MaxIncrement) {
        self.max_increment = m;
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.pes
    }

    /// True if there is no PE.
    pub fn is_empty(&self) -> bool {
        self.pes == 0
    }

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// One pool.
    pub fn pool(&self, handle: &PoolHandle) -> Option<&Pool> {
        self.pools.get(handle)
    }

    /// All pools in handle order.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.order.iter().filter_map(|h| self.pools.get(h))
    }

    /// One PE.
    pub fn get(&self, handle: &PoolHandle, id: PeIdentifier) -> Option<&PoolElementEntry> {
        self.pools.get(handle)?.elements.get(&id)
    }

    /// Number of PEs registered over a connection.
    pub fn connection_len(&self, conn: ConnectionId) -> usize {
        self.connections.get(&conn).map_or(0, BTreeSet::len)
    }

    /// The (pool handle, PE ID) pairs registered over a connection, in (handle, ID) order.
    pub fn connection_elements(
        &self,
        conn: ConnectionId,
    ) -> impl Iterator<Item = (&PoolHandle, PeIdentifier)> + '_ {
        self.connections
            .get(&conn)
            .into_iter()
            .flat_map(|s| s.iter().map(|(h, id)| (&**h, *id)))
    }

    /// Registers or updates a PE (ASAP REGISTRATION, RFC 5352; ENRP HANDLE_UPDATE ADD_PE,
    /// RFC 5353; asap/wire/INTEROP.md §5.1, §5.7).
    ///
    /// * `owner` is the home ENRP server: this registrar's ID for an ASAP registration,
    ///   the PE parameter's home ID for a HANDLE_UPDATE. The stored element's
    ///   `home_server_id` is set to it.
    /// * `connection` is the ASAP association for an ASAP registration, `None` for PEs
    ///   learned via ENRP.
    /// * The expiry is `now` + registration life (ms; negative = never).
    ///
    /// Rules: PE ID 0 and an empty handle are invalid. The first PE of a pool defines its
    /// policy type, user transport protocol and Transport Use; others must match
    /// ([`HandlespaceError::InconsistentPoolingPolicy`], `InconsistentTransportType`,
    /// `InconsistentDataControlConfiguration`) — re-registrations too, even of the pool's
    /// only PE (as rsplib: the pool is not redefined). An existing PE is updated in place — its new
    /// policy values (e.g. load) take effect for selection at once and the LUD degradation
    /// counter is reset (RFC 5356 §5.2) — unless it is registered over a *different* live
    /// connection than the new ASAP registration, which is
    /// [`HandlespaceError::NonUniquePeIdentifier`]. A PE learned from a peer (no
    /// connection) may re-register here (its home moves), and a HANDLE_UPDATE from the new
    /// home of a PE registered here moves it away (its connection link is dropped). Limits
    /// give `LackOfResources`. On error nothing changes.
    ///
    /// Whether to accept a peer's HANDLE_UPDATE about a PE this server owns is the
    /// registrar's policy decision: look at [`get`](Self::get)`(..).owner()` first.
    pub fn register(
        &mut self,
        handle: &PoolHandle,
        mut element: PoolElementInfo,
        owner: ServerId,
        connection: Option<ConnectionId>,
        now: Instant,
    ) -> Result<Registered, HandlespaceError> {
        if element.id == 0 {
            return Err(HandlespaceError::InvalidPeIdentifier);
        }
        if handle.is_empty() {
            return Err(HandlespaceError::InvalidPoolHandle);
        }
        let id = element.id;
        element.home_server_id = owner;
        let expiry = expiry_of(now, element.registration_life);

        // ---- validation only: nothing is changed before all checks passed ----
        let existing = self.get(handle, id);
        if let Some(e) = existing {
            if let (Some(old), Some(new)) = (e.connection, connection) {
                if old != new {
                    return Err(HandlespaceError::NonUniquePeIdentifier {
                        handle: handle.clone(),
                        id,
                    });
                }
            }
        }
        let old_connection = existing.and_then(|e| e.connection);
        match self.pools.get(handle) {
            Some(pool) => {
                pool.check(&element)?;
                if existing.is_none() && pool.len() >= self.limits.max_pes_per_pool {
                    return Err(HandlespaceError::LackOfResources(ResourceLimit::PesPerPool));
                }
            }
            None => {
                if self.pools.len() >= self.limits.max_pools {
                    return Err(HandlespaceError::LackOfResources(ResourceLimit::Pools));
                }
            }
        }
        if existing.is_none() && self.pes >= self.limits.max_pes {
            return Err(HandlespaceError::LackOfResources(ResourceLimit::Pes));
        }
        if let Some(c) = connection {
            if old_connection != Some(c)
                && self.connection_len(c) >= self.limits.max_pes_per_connection
            {
                return Err(HandlespaceError::LackOfResources(
                    ResourceLimit::PesPerConnection,
                ));
            }
        }

        // ---- apply ----
        let key = (handle.clone(), id);
        if !self.pools.contains_key(handle) {
            self.pools.insert(
                handle.clone(),
                Pool::new(Arc::new(handle.clone()), &element),
            );
            self.order.insert(handle.clone());
        }
        let Some(pool) = self.pools.get_mut(handle) else {
            return Err(HandlespaceError::UnknownPoolHandle(handle.clone()));
        };
        let shared: SharedKey = (pool.handle.clone(), id);
        let serial;
        let outcome = if let Some(entry) = pool.elements.get_mut(&id) {
            let previous_owner = entry.owner;
            let old_expiry = entry.expiry;
            serial = entry.serial;
            entry.set_element(element);
            entry.owner = owner;
            entry.connection = connection;
            entry.expiry = expiry;
            entry.last_update = now;
            entry.reports = None;
            if pool.elements.len() == 1 {
                // Same policy type (checked): the pool takes its only PE's values.
                if let Some(e) = pool.elements.get(&id) {
                    pool.policy = e.element.policy.clone();
                }
            }
            if let Some(e) = pool.elements.get(&id) {
                pool.selector.update(id, &e.element.policy);
            }
            // Re-index.
            if let Some(t) = old_expiry {
                self.timers.remove(&(t, serial));
            }
            if previous_owner != owner {
                self.unindex_owner(previous_owner, &key);
                self.index_owner(owner, &key);
            }
            if old_connection != connection {
                if let Some(c) = old_connection {
                    self.unindex_connection(c, &shared);
                }
                if let Some(c) = connection {
                    self.index_connection(c, &shared);
                }
            }
            tracing::debug!(%handle, id, owner, previous_owner, "PE updated");
            Registered::Updated { previous_owner }
        } else {
            serial = self.next_serial;
            self.next_serial += 1;
            pool.selector.insert(id, &element.policy);
            pool.elements.insert(
                id,
                PoolElementEntry {
                    answer: PoolElementEntry::encode_answer(&element),
                    element,
                    owner,
                    connection,
                    expiry,
                    serial,
                    last_update: now,
                    reports: None,
                },
            );
            self.pes += 1;
            self.index_owner(owner, &key);
            if let Some(c) = connection {
                self.index_connection(c, &shared);
            }
            tracing::debug!(%handle, id, owner, "PE added");
            Registered::Added
        };
        if let Some(t) = expiry {
            self.timers.insert((t, serial), shared);
        }
        Ok(outcome)
    }

    fn index_owner(&mut self, owner: ServerId, key: &(PoolHandle, PeIdentifier)) {
        let o = self.owners.entry(owner).or_default();
        if o.pes.insert(key.clone()) {
            o.checksum.add(&key.0, key.1);
        }
    }

    fn unindex_owner(&mut self, owner: ServerId, key: &(PoolHandle, PeIdentifier)) {
        if let Some(o) = self.owners.get_mut(&owner) {
            if o.pes.remove(key) {
                o.checksum.remove(&key.0, key.1);
            }
            if o.pes.is_empty() {
                self.owners.remove(&owner);
            }
        }
    }

    fn index_connection(&mut self, conn: ConnectionId, key: &SharedKey) {
        self.connections
            .entry(conn)
            .or_default()
            .insert(key.clone());
    }

    fn unindex_connection(&mut self, conn: ConnectionId, key: &SharedKey) {
        if let Some(set) = self.connections.get_mut(&conn) {
            set.remove(key);
            if set.is_empty() {
                self.connections.remove(&conn);
            }
        }
    }

    /// Removes a PE from every index. Empty pools disappear.
    fn remove_pe(&mut self, handle: &PoolHandle, id: PeIdentifier) -> Option<RemovedElement> {
        let pool = self.pools.get_mut(handle)?;
        let entry = pool.elements.remove(&id)?;
        pool.selector.remove(id);
        let shared: SharedKey = (pool.handle.clone(), id);
        if pool.elements.is_empty() {
            self.pools.remove(handle);
            self.order.remove(handle);
        }
        self.pes -= 1;
        let key = (handle.clone(), id);
        self.unindex_owner(entry.owner, &key);
        if let Some(c) = entry.connection {
            self.unindex_connection(c, &shared);
        }
        if let Some(t) = entry.expiry {
            self.timers.remove(&(t, entry.serial));
        }
        tracing::debug!(%handle, id, "PE removed");
        Some(RemovedElement {
            handle: handle.clone(),
            entry,
        })
    }

    /// Deregistration (ASAP DEREGISTRATION, ENRP HANDLE_UPDATE DEL_PE) or removal after
    /// keep-alive failure / too many unreachable reports. `None` if unknown.
    pub fn deregister(&mut self, handle: &PoolHandle, id: PeIdentifier) -> Option<RemovedElement> {
        self.remove_pe(handle, id)
    }

    /// Removes every PE registered over a connection (association lost; rsplib,
    /// asap/wire/INTEROP.md §5.1 step 6).
    pub fn remove_connection(&mut self, conn: ConnectionId) -> Vec<RemovedElement> {
        let keys = self.connections.remove(&conn).unwrap_or_default();
        keys.into_iter()
            .filter_map(|(h, id)| self.remove_pe(&h, id))
            .collect()
    }

    /// Removes every PE owned by a server (e.g. a peer dropped without takeover).
    pub fn remove_owner(&mut self, owner: ServerId) -> Vec<RemovedElement> {
        let keys = self
            .owners
            .remove(&owner)
            .map(|o| o.pes)
            .unwrap_or_default();
        keys.into_iter()
            .filter_map(|(h, id)| self.remove_pe(&h, id))
            .collect()
    }

    /// The earliest registration expiry, for the caller's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(k, _)| k.0)
    }

    /// Removes all PEs whose registration life ended at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<RemovedElement> {
        let mut out = Vec::new();
        while let Some((&(t, serial), _)) = self.timers.first_key_value() {
            if t > now {
                break;
            }
            let Some((h, id)) = self.timers.remove(&(t, serial)) else {
                break;
            };
            if let Some(r) = self.remove_pe(&h, id) {
                out.push(r);
            }
        }
        out
    }

    /// Selects up to `n` PEs of a pool by its policy (handle resolution, RFC 5356 §4–5;
    /// asap/wire/INTEROP.md §5.2) and updates selection state per the configured max increment.
    pub fn select<R: Rng + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        n: usize,
        rng: &mut R,
    ) -> Result<Vec<PeIdentifier>, HandlespaceError> {
        let mi = self.max_increment;
        let pool = self
            .pools
            .get_mut(handle)
            .ok_or_else(|| HandlespaceError::UnknownPoolHandle(handle.clone()))?;
        Ok(pool.selector.select(n, mi, rng))
    }

    /// [`select`](Self::select) returning the selected entries (for the
    /// HANDLE_RESOLUTION_RESPONSE) together with the pool.
    pub fn resolve<R: Rng + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        n: usize,
        rng: &mut R,
    ) -> Result<(&Pool, Vec<&PoolElementEntry>), HandlespaceError> {
        let ids = self.select(handle, n, rng)?;
        let pool = self
            .pools
            .get(handle)
            .ok_or_else(|| HandlespaceError::UnknownPoolHandle(handle.clone()))?;
        let entries = ids.iter().filter_map(|id| pool.elements.get(id)).collect();
        Ok((pool, entries))
    }

    /// Counts an ASAP_ENDPOINT_UNREACHABLE report (asap/wire/INTEROP.md §5.3). The caller compares
    /// the result with MAX-BAD-PE-REPORT and calls [`deregister`](Self::deregister).
    /// Counters reset on re-registration. `None` if the PE is unknown.
    pub fn report_unreachable(
        &mut self,
        handle: &PoolHandle,
        id: PeIdentifier,
        reporter: ReporterId,
    ) -> Option<UnreachableCount> {
        let e = self.pools.get_mut(handle)?.elements.get_mut(&id)?;
        Some(e.report(reporter))
    }

    /// The PE checksum of the PEs owned by `owner` as sent in / expected from ENRP_PRESENCE
    /// (RFC 5353 audit; asap/wire/INTEROP.md §5.9). `0xFFFF` for an owner with no PE.
    pub fn checksum(&self, owner: ServerId) -> u16 {
        self.owners
            .get(&owner)
            .map_or(PeChecksum::new().value(), |o| o.checksum.value())
    }

    /// Number of PEs owned by `owner`.
    pub fn owned_len(&self, owner: ServerId) -> usize {
        self.owners.get(&owner).map_or(0, |o| o.pes.len())
    }

    /// The (pool handle, PE ID) pairs owned by `owner`, in dump order.
    ///
    /// Audit resynchronisation (asap/wire/INTEROP.md §5.6): collect these for the peer into a set
    /// before sending HANDLE_TABLE_REQUEST (W flag), strike every PE the responses carry,
    /// then [`deregister`](Self::deregister) what is left.
    pub fn owned_by(
        &self,
        owner: ServerId,
    ) -> impl Iterator<Item = &(PoolHandle, PeIdentifier)> + '_ {
        self.owners
            .get(&owner)
            .into_iter()
            .flat_map(|o| o.pes.iter())
    }

    /// Takeover (RFC 5353; asap/wire/INTEROP.md §5.8 step 4): every PE owned by `from` is
    /// re-labelled as owned by `to`, checksums follow. Returns the number of PEs moved.
    pub fn change_owner(&mut self, from: ServerId, to: ServerId) -> usize {
        if from == to {
            return self.owned_len(from);
        }
        let Some(moved) = self.owners.remove(&from) else {
            return 0;
        };
        for (h, id) in &moved.pes {
            if let Some(e) = self.pools.get_mut(h).and_then(|p| p.elements.get_mut(id)) {
                e.owner = to;
                e.set_home(to);
            }
        }
        let n = moved.pes.len();
        let target = self.owners.entry(to).or_default();
        target.checksum.merge(&moved.checksum);
        let mut pes = moved.pes;
        if target.pes.len() < pes.len() {
            std::mem::swap(&mut target.pes, &mut pes);
        }
        target.pes.extend(pes);
        tracing::info!(from, to, n, "PE ownership changed");
        n
    }

    /// One page of a handle table dump (ENRP HANDLE_TABLE_RESPONSE, RFC 5353): up to
    /// `max_items` PEs after `cursor` (exclusive; `None` = from the start), in (pool handle,
    /// PE ID) order, optionally only those owned by `owner` (the W flag of the request).
    /// [`DumpPage::next`] is `Some` when more remain (set the M bit and resume from it).
    /// `max_items` 0 is treated as 1.
    pub fn dump(
        &self,
        cursor: Option<&DumpCursor>,
        owner: Option<ServerId>,
        max_items: usize,
    ) -> DumpPage<'_> {
        // A page always makes progress.
        let max_items = max_items.max(1);
        let mut items = Vec::new();
        let mut more = false;
        match owner {
            Some(o) => {
                if let Some(owned) = self.owners.get(&o) {
                    let start = match cursor {
                        Some(c) => Bound::Excluded((c.handle.clone(), c.id)),
                        None => Bound::Unbounded,
                    };
                    for (h, id) in owned.pes.range((start, Bound::Unbounded)) {
                        if items.len() == max_items {
                            more = true;
                            break;
                        }
                        if let Some((pool, entry)) = self
                            .pools
                            .get(h)
                            .and_then(|p| p.elements.get(id).map(|e| (p, e)))
                        {
                            items.push(DumpItem { pool, entry });
                        }
                    }
                }
            }
            None => {
                let start = match cursor {
                    Some(c) => Bound::Included(&c.handle),
                    None => Bound::Unbounded,
                };
                'pools: for h in self.order.range::<PoolHandle, _>((start, Bound::Unbounded)) {
                    let Some(pool) = self.pools.get(h) else {
                        continue;
                    };
                    let from = match cursor {
                        Some(c) if &c.handle == h => Bound::Excluded(c.id),
                        _ => Bound::Unbounded,
                    };
                    for (_, entry) in pool.elements.range((from, Bound::Unbounded)) {
                        if items.len() == max_items {
                            more = true;
                            break 'pools;
                        }
                        items.push(DumpItem { pool, entry });
                    }
                }
            }
        }
        let next = if more {
            items.last().map(|i| DumpCursor {
                handle: PoolHandle::clone(&i.pool.handle),
                id: i.entry.element.id,
            })
        } else {
            None
        };
        DumpPage { items, next }
    }

    /// Checks all indexes against the pools (for tests and debugging; O(n log n)).
    /// Returns a description of the first inconsistency.
    pub fn verify(&self) -> Result<(), String> {
        let mut count = 0;
        let mut owners: HashMap<ServerId, PeChecksum> = HashMap::new();
        let mut conns: HashMap<ConnectionId, usize> = HashMap::new();
        let mut timers = 0;
        if self.order.len() != self.pools.len()
            || self.order.iter().any(|h| !self.pools.contains_key(h))
        {
            return Err("pool order index mismatch".into());
        }
        for (h, pool) in &self.pools {
            if pool.elements.is_empty() {
                return Err(format!("empty pool {h}"));
            }
            if pool.selector.len() != pool.elements.len() {
                return Err(format!("selector size mismatch in {h}"));
            }
            for (id, e) in &pool.elements {
                count += 1;
                if *id != e.element.id || e.element.home_server_id != e.owner {
                    return Err(format!("entry {h}/{id} inconsistent"));
                }
                if *e.answer != *PoolElementEntry::encode_answer(&e.element) {
                    return Err(format!("{h}/{id}: stale answer encoding"));
                }
                if !pool.selector.contains(*id) {
                    return Err(format!("{h}/{id} missing in selector"));
                }
                owners.entry(e.owner).or_default().add(h, *id);
                if let Some(c) = e.connection {
                    *conns.entry(c).or_default() += 1;
                    if !self
                        .connections
                        .get(&c)
                        .is_some_and(|s| s.contains(&(pool.handle.clone(), *id)))
                    {
                        return Err(format!("{h}/{id} missing in connection index"));
                    }
                }
                if let Some(t) = e.expiry {
                    timers += 1;
                    if self.timers.get(&(t, e.serial)) != Some(&(pool.handle.clone(), *id)) {
                        return Err(format!("{h}/{id} missing in timer index"));
                    }
                }
            }
        }
        if count != self.pes {
            return Err(format!("count {} != {}", self.pes, count));
        }
        if timers != self.timers.len() {
            return Err("stale timers".into());
        }
        if owners.len() != self.owners.len() {
            return Err("owner index has stale owners".into());
        }
        for (o, c) in &owners {
            let idx = self.owners.get(o).ok_or("owner missing")?;
            if idx.checksum != *c || idx.pes.len() != c.count() {
                return Err(format!("owner {o} checksum/index mismatch"));
            }
        }
        if conns.len() != self.connections.len()
            || conns
                .iter()
                .any(|(c, n)| self.connections.get(c).map(BTreeSet::len) != Some(*n))
        {
            return Err("connection index mismatch".into());
        }
        Ok(())
    }
}
