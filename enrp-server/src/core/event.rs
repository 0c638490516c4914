//! What the core reports to its driver besides messages: [`Event`]s (for logs and metrics)
//! and [`Replication`]s (the hook for ENRP peering, RFC 5353 HANDLE_UPDATE).

use std::net::IpAddr;

use asap::wire::{CauseCode, PeIdentifier, PoolElementInfo, PoolHandle, Protocol, UpdateAction};
use serde::Serialize;

use super::AssocId;

/// Declares a fieldless enum whose variants each carry a fixed kebab-case label (metric
/// label, log text): the enum, `ALL` (every variant in declaration order), `as_str` and
/// `Display` all come from the one list of `Variant => "label"`.
macro_rules! labelled_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every variant, in declaration order (metrics label pre-registration).
            pub const ALL: [$name; [$(stringify!($variant)),*].len()] = [$($name::$variant),*];

            /// Short kebab-case name (metric label).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use labelled_enum;

labelled_enum! {
    /// Why a PE left the handlespace.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum RemovalReason {
        /// ASAP_DEREGISTRATION (RFC 5352).
        Deregistered => "deregistered",
        /// No ASAP_ENDPOINT_KEEP_ALIVE_ACK within the timeout.
        KeepAliveTimeout => "keep-alive-timeout",
        /// The association the PE registered over went away (rsplib;
        /// asap/wire/INTEROP.md §5.1).
        AssociationLost => "association-lost",
        /// MAX-BAD-PE-REPORT distinct ENDPOINT_UNREACHABLE reports
        /// (asap/wire/INTEROP.md §5.3).
        Unreachable => "unreachable",
        /// Registration life ended without re-registration.
        Expired => "expired",
        /// Purged by a handlespace audit: the home peer no longer lists it (RFC 5353).
        Audit => "audit",
        /// HANDLE_UPDATE DEL_PE from the PE's home peer (RFC 5353 §2.4).
        PeerDeleted => "peer-deleted",
        /// Its home peer vanished and no takeover re-labelled it within the orphan timeout
        /// (issue 13, SECURITY.md).
        Orphaned => "orphaned",
    }
}

/// Something that happened in the core, for structured logs and metrics. The driver logs
/// every event; tests assert on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A PE registered (or re-registered, `update`).
    Registered {
        /// Association it registered over.
        assoc: AssocId,
        /// Pool.
        handle: PoolHandle,
        /// PE Identifier.
        id: PeIdentifier,
        /// Re-registration of a known PE.
        update: bool,
        /// Policy type code.
        policy: u32,
        /// User transport as registered (after address filtering).
        user_addresses: Vec<IpAddr>,
    },
    /// A REGISTRATION was refused with an Operation Error.
    RegistrationRejected {
        /// Association.
        assoc: AssocId,
        /// Pool.
        handle: PoolHandle,
        /// PE Identifier.
        id: PeIdentifier,
        /// The cause sent.
        cause: CauseCode,
        /// Human-readable reason.
        reason: String,
    },
    /// A PE left the handlespace.
    Removed {
        /// Pool.
        handle: PoolHandle,
        /// PE Identifier.
        id: PeIdentifier,
        /// Why.
        reason: RemovalReason,
    },
    /// A HANDLE_RESOLUTION was answered with PEs.
    Resolved {
        /// Association of the PU.
        assoc: AssocId,
        /// Pool.
        handle: PoolHandle,
        /// PEs returned.
        returned: usize,
    },
    /// A HANDLE_RESOLUTION was answered with an Operation Error.
    ResolutionFailed {
        /// Association of the PU.
        assoc: AssocId,
        /// Pool.
        handle: PoolHandle,
        /// The cause sent.
        cause: CauseCode,
    },
    /// An ENDPOINT_UNREACHABLE was counted.
    UnreachableReported {
        /// Association of the reporter.
        assoc: AssocId,
        /// Pool.
        handle: PoolHandle,
        /// PE Identifier.
        id: PeIdentifier,
        /// Distinct reporters so far.
        distinct_reporters: u32,
    },
    /// MAX-BAD-PE-REPORT reached: the PE was sent an ENDPOINT_KEEP_ALIVE and is removed
    /// only if it does not answer in time (issue 13, SECURITY.md).
    UnreachableProbe {
        /// Pool.
        handle: PoolHandle,
        /// PE Identifier.
        id: PeIdentifier,
    },
    /// A request was refused by a per-peer rate limit.
    RateLimited {
        /// Association.
        assoc: AssocId,
        /// Peer address.
        peer: Option<IpAddr>,
        /// `handle-resolution`, `endpoint-unreachable` or `bulk-handle-resolution`.
        what: &'static str,
    },
    /// An undecodable, unrecognised or unexpected message.
    ProtocolError {
        /// Association (`None` for UDP).
        assoc: Option<AssocId>,
        /// ASAP or ENRP.
        protocol: Protocol,
        /// What was wrong.
        error: String,
        /// Whether an ERROR with an Operation Error was sent back.
        replied: bool,
    },
    /// A well-formed message this single registrar does not act on (yet), e.g. ENRP peering
    /// messages before the peering task.
    Ignored {
        /// Association (`None` for UDP).
        assoc: Option<AssocId>,
        /// The message type name (tshark style).
        message: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A HANDLE_TABLE_RESPONSE was sent.
    HandleTableSent {
        /// Association.
        assoc: AssocId,
        /// PEs in this chunk.
        pes: usize,
        /// M bit set.
        more: bool,
    },
    /// A new ENRP peer was heard (RFC 5353 §3.1).
    PeerFound {
        /// Its server ID.
        server_id: u32,
        /// Its ENRP address.
        addr: std::net::SocketAddr,
    },
    /// A peer did not answer a PRESENCE with R flag within MAX-TIME-NO-RESPONSE.
    PeerLost {
        /// Its server ID.
        server_id: u32,
    },
    /// A peer's PRESENCE checksum differs from ours for its PEs: audit started.
    AuditMismatch {
        /// The peer.
        server_id: u32,
        /// Checksum it sent.
        theirs: u16,
        /// Checksum we compute for its PEs.
        ours: u16,
    },
    /// A handle table download (mentor or audit) finished.
    SyncDone {
        /// The peer.
        server_id: u32,
        /// Stale PEs purged (audit).
        purged: usize,
    },
    /// We sent INIT_TAKEOVER for a dead peer (RFC 5353 §3.6).
    TakeoverStarted {
        /// The dead peer.
        target: u32,
        /// Its PEs.
        pes: usize,
    },
    /// Our takeover completed: its PEs are ours now.
    TakeoverDone {
        /// The dead peer.
        target: u32,
        /// PEs adopted.
        pes: usize,
    },
    /// Our takeover was abandoned (target alive, or ACKs missing at expiry).
    TakeoverAbandoned {
        /// The target.
        target: u32,
        /// Peers whose ACK was missing.
        missing: usize,
    },
    /// Another registrar took a peer over (TAKEOVER_SERVER received).
    TakeoverSeen {
        /// The dead peer.
        target: u32,
        /// The new home.
        by: u32,
        /// PEs re-labelled.
        pes: usize,
    },
    /// Takeover (RFC 5353 §3.6): the association to an adopted PE's ASAP transport is up
    /// ([`Action::Connect`](super::Action::Connect), then
    /// [`Input::Connected`](super::Input::Connected)); the PE is now monitored over that
    /// association and was sent ENDPOINT_KEEP_ALIVE with the H flag. Also reported when a
    /// PE a peer suggested we take over (HANDLE_UPDATE T bit) was sent the H-flag
    /// keep-alive (it is ours once it re-registers over `assoc`).
    Adopted {
        /// The association the driver opened to the PE.
        assoc: AssocId,
        /// Pool.
        handle: PoolHandle,
        /// PE Identifier.
        id: PeIdentifier,
    },
    /// Input refused at a trust boundary (issue 13, `SECURITY.md`): always counted;
    /// `warn` is set at most once per sender address and log interval.
    Refused(super::trust::Refused),
    /// A message for a peer registrar was dropped before it reached an association
    /// ([`links`](super::links)): the connect queue was full, or no association may be
    /// opened. PRESENCE audits repair lost HANDLE_UPDATEs.
    PeerMessageDropped {
        /// The peer's ENRP address.
        to: std::net::SocketAddr,
        /// The message type name.
        message: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The association to a peer registrar could not be opened; the messages that waited
    /// for it are dropped (the next message tries again).
    PeerConnectFailed {
        /// The peer's ENRP address.
        to: std::net::SocketAddr,
        /// Messages dropped with it.
        dropped: usize,
    },
    /// Takeover: adopted PEs could not be reached at their ASAP transport (no usable
    /// transport, unreachable, association limit). With
    /// [`PeeringConfig::verify_adopted`](super::PeeringConfig::verify_adopted) they are
    /// removed after the keep-alive timeout.
    AdoptionFailed {
        /// The association that failed (`None`: none was opened).
        assoc: Option<AssocId>,
        /// PEs concerned.
        pes: usize,
        /// Why.
        reason: &'static str,
    },
    /// A message could not be encoded (too large even after trimming).
    EncodeFailed {
        /// The message type name.
        message: &'static str,
        /// The encoder error.
        error: String,
    },
}

/// A handlespace change to be propagated to ENRP peers as HANDLE_UPDATE (RFC 5353):
/// the hook for the peering task. A single registrar ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// ADD_PE on (re-)registration, DEL_PE on removal.
    pub action: UpdateAction,
    /// Pool.
    pub pool_handle: PoolHandle,
    /// The PE parameter as stored (home server ID = ours, ASAP transport included).
    pub element: PoolElementInfo,
}
