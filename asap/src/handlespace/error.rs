//! Errors of handlespace operations and their RFC 5354 §3.12 Operation Error cause codes.

use crate::wire::{PeIdentifier, Policy, PoolHandle, TransportParameter, TransportUse};

/// RFC 5354 §3.12 cause code values used by [`HandlespaceError::cause_code`].
pub mod cause {
    /// 0x3 Invalid Values.
    pub const INVALID_VALUES: u16 = 0x3;
    /// 0x4 Non-unique PE Identifier.
    pub const NON_UNIQUE_PE_IDENTIFIER: u16 = 0x4;
    /// 0x5 Inconsistent Pooling Policy.
    pub const INCONSISTENT_POOLING_POLICY: u16 = 0x5;
    /// 0x6 Lack of Resources.
    pub const LACK_OF_RESOURCES: u16 = 0x6;
    /// 0x7 Inconsistent Transport Type.
    pub const INCONSISTENT_TRANSPORT_TYPE: u16 = 0x7;
    /// 0x8 Inconsistent Data/Control Configuration.
    pub const INCONSISTENT_DATA_CONTROL_CONFIGURATION: u16 = 0x8;
    /// 0x9 Unknown Pool Handle.
    pub const UNKNOWN_POOL_HANDLE: u16 = 0x9;
}

/// Which configured limit a registration hit ([`HandlespaceError::LackOfResources`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceLimit {
    /// `HandlespaceLimits::max_pools`.
    Pools,
    /// `HandlespaceLimits::max_pes_per_pool`.
    PesPerPool,
    /// `HandlespaceLimits::max_pes_per_connection`.
    PesPerConnection,
    /// `HandlespaceLimits::max_pes`.
    Pes,
}

/// Why a handlespace operation was refused. [`cause_code`](Self::cause_code) gives the
/// RFC 5354 §3.12 cause to put into the Operation Error of a REGISTRATION_RESPONSE
/// (RFC 5352) or to log for an ENRP HANDLE_UPDATE (RFC 5353).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlespaceError {
    /// PE Identifier 0 (RFC 5354 §3.10: not a valid identifier). Cause 0x3 Invalid Values
    /// (rsplib sends its private 0xF000).
    #[error("PE identifier 0 is invalid")]
    InvalidPeIdentifier,
    /// Empty pool handle. Cause 0x3 Invalid Values (rsplib: private 0xF004).
    #[error("empty pool handle")]
    InvalidPoolHandle,
    /// The PE ID is already registered over another connection (another live PE uses it).
    /// Cause 0x4 Non-unique PE Identifier (rsplib: private 0xF002).
    #[error("PE identifier {id:#010x} already in use in pool {handle}")]
    NonUniquePeIdentifier {
        /// The pool.
        handle: PoolHandle,
        /// The clashing identifier.
        id: PeIdentifier,
    },
    /// The PE's policy type differs from the pool's (first PE defines it). Cause 0x5
    /// Inconsistent Pooling Policy; the cause carries `pool_policy`.
    #[error("policy type {requested:#010x} differs from the pool's {:#010x}", pool_policy.policy_type())]
    InconsistentPoolingPolicy {
        /// The pool's policy (the defining PE's parameter), for the cause TLV.
        pool_policy: Policy,
        /// The refused policy type code.
        requested: u32,
    },
    /// A configured limit was hit. Cause 0x6 Lack of Resources.
    #[error("lack of resources: {0:?} limit reached")]
    LackOfResources(ResourceLimit),
    /// The user transport protocol differs from the pool's. Cause 0x7 Inconsistent
    /// Transport Type (rsplib: private 0x100A); the cause carries `pool_transport`.
    #[error("user transport protocol differs from the pool's")]
    InconsistentTransportType {
        /// The pool's user transport (the defining PE's parameter), for the cause TLV.
        pool_transport: TransportParameter,
    },
    /// The Transport Use (data only / data plus control) differs from the pool's.
    /// Cause 0x8 Inconsistent Data/Control Configuration.
    #[error("transport use {requested:?} differs from the pool's {pool:?}")]
    InconsistentDataControlConfiguration {
        /// The pool's Transport Use.
        pool: TransportUse,
        /// The refused one.
        requested: TransportUse,
    },
    /// No such pool. Cause 0x9 Unknown Pool Handle.
    #[error("unknown pool handle {0}")]
    UnknownPoolHandle(PoolHandle),
}

impl HandlespaceError {
    /// The RFC 5354 §3.12 cause code for this error.
    pub fn cause_code(&self) -> u16 {
        match self {
            HandlespaceError::InvalidPeIdentifier | HandlespaceError::InvalidPoolHandle => {
                cause::INVALID_VALUES
            }
            HandlespaceError::NonUniquePeIdentifier { .. } => cause::NON_UNIQUE_PE_IDENTIFIER,
            HandlespaceError::InconsistentPoolingPolicy { .. } => {
                cause::INCONSISTENT_POOLING_POLICY
            }
            HandlespaceError::LackOfResources(_) => cause::LACK_OF_RESOURCES,
            HandlespaceError::InconsistentTransportType { .. } => {
                cause::INCONSISTENT_TRANSPORT_TYPE
            }
            HandlespaceError::InconsistentDataControlConfiguration { .. } => {
                cause::INCONSISTENT_DATA_CONTROL_CONFIGURATION
            }
            HandlespaceError::UnknownPoolHandle(_) => cause::UNKNOWN_POOL_HANDLE,
        }
    }
}
