//! Resumable handle table dumps (ENRP HANDLE_TABLE_REQUEST / RESPONSE, RFC 5353; the M bit
//! continues a dump, the W bit restricts it to the responder's own PEs).

use crate::wire::{PeIdentifier, PoolHandle};

use super::{Pool, PoolElementEntry};

/// Where a dump stopped: the last (pool handle, PE ID) sent. The next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DumpCursor {
    /// Last pool handle sent.
    pub handle: PoolHandle,
    /// Last PE ID sent in that pool.
    pub id: PeIdentifier,
}

/// One PE of a dump with its pool.
#[derive(Debug, Clone, Copy)]
pub struct DumpItem<'a> {
    /// The pool (handle, policy).
    pub pool: &'a Pool,
    /// The PE.
    pub entry: &'a PoolElementEntry,
}

/// One page of a dump.
#[derive(Debug, Clone)]
pub struct DumpPage<'a> {
    /// PEs in (pool handle, PE ID) order.
    pub items: Vec<DumpItem<'a>>,
    /// `Some` if more PEs follow (M bit): pass it as the next cursor.
    pub next: Option<DumpCursor>,
}
