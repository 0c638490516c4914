//! `rsp-tools`: the library behind the `rsp` operator command (issue 16, README "Tools for
//! operators").
//!
//! * [`hsdump`]: the whole handlespace of a registrar through ENRP_HANDLE_TABLE_REQUEST
//!   (RFC 5353 §2.2/§2.3), following the M bit, as [`HandleTable`] rows.
//! * [`resolve`]: a handle resolution (RFC 5352 §2.2.5/§2.2.6) through the `asap` pool user
//!   API.
//! * [`render`]: both as an aligned table or JSON.
//!
//! * [`serve`]: the services of `rsp serve` (echo, discard, daytime; rsplib `rspserver`).
//! * [`monitor`]: the Component Status Protocol table of `rsp monitor` (rsplib
//!   `cspmonitor`; asap/wire/INTEROP.md §8).
//!
//! `rsp decode` is [`rsp_capture::decode_cli`], shared with `rsp-decode`.

#![forbid(unsafe_code)]

pub mod hsdump;
pub mod monitor;
pub mod render;
pub mod resolve;
pub mod serve;

use std::net::IpAddr;

use asap::wire::{PoolElementInfo, TransportParameter};
use serde::Serialize;

pub use hsdump::{hsdump, HandleTable, HsdumpError};
pub use resolve::{resolve, ResolveFailure};

pub use rserpool_cli_assets::parse_endpoint;

/// One transport of a PE as printed (RFC 5354 §3.3–§3.9 transport parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransportView {
    /// `sctp`, `tcp`, `udp`, `udp-lite`, `dccp` or `opaque`.
    pub protocol: &'static str,
    /// Its addresses (empty for opaque).
    pub addresses: Vec<IpAddr>,
    /// Its port (`None` for opaque).
    pub port: Option<u16>,
    /// `data`, `data+control` or `other` (RFC 5354 §3.4 Transport Use).
    pub transport_use: &'static str,
}

impl TransportView {
    /// The printable view of a transport parameter.
    pub fn of(t: &TransportParameter) -> Self {
        let protocol = match t {
            TransportParameter::Sctp { .. } => "sctp",
            TransportParameter::Tcp { .. } => "tcp",
            TransportParameter::Udp { .. } => "udp",
            TransportParameter::UdpLite { .. } => "udp-lite",
            TransportParameter::Dccp { .. } => "dccp",
            TransportParameter::Opaque { .. } => "opaque",
            _ => "unknown",
        };
        let transport_use = match t.transport_use() {
            asap::wire::TransportUse::DataOnly => "data",
            asap::wire::TransportUse::DataPlusControl => "data+control",
            asap::wire::TransportUse::Other(_) => "other",
            _ => "other",
        };
        TransportView {
            protocol,
            addresses: t.addresses(),
            port: t.port(),
            transport_use,
        }
    }
}

impl std::fmt::Display for TransportView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<String> = self
            .addresses
            .iter()
            .map(|a| match a {
                IpAddr::V6(_) => format!("[{a}]"),
                IpAddr::V4(_) => a.to_string(),
            })
            .collect();
        match self.port {
            Some(p) => write!(f, "{}:{}:{p}", self.protocol, addrs.join(",")),
            None => write!(f, "{}", self.protocol),
        }
    }
}

/// One pool element as printed by `rsp hsdump` and `rsp resolve` (RFC 5354 §3.13 Pool
/// Element parameter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeView {
    /// The pool handle (printable; non-UTF-8 bytes escaped).
    pub pool: String,
    /// PE Identifier.
    pub pe_id: u32,
    /// Home ENRP server ID (the owner; 0 = not yet determined).
    pub home_server_id: u32,
    /// The user transport.
    pub user_transport: TransportView,
    /// The PE's ASAP transport, when the registrar sends it (rsplib and ours in ENRP).
    pub asap_transport: Option<TransportView>,
    /// Policy name as rsplib prints it (RFC 5356 §3).
    pub policy: String,
    /// Policy type code.
    pub policy_code: u32,
    /// Load of adaptive policies, as a fraction of 0xFFFFFFFF (`None` otherwise).
    pub load: Option<u32>,
    /// Registration life, ms (−1 = infinite).
    pub registration_life_ms: i32,
}

impl PeView {
    /// The printable view of `pe` in `pool`.
    pub fn of(pool: &str, pe: &PoolElementInfo) -> Self {
        PeView {
            pool: pool.to_string(),
            pe_id: pe.id,
            home_server_id: pe.home_server_id,
            user_transport: TransportView::of(&pe.user_transport),
            asap_transport: pe.asap_transport.as_ref().map(TransportView::of),
            policy: pe.policy.known_type().map_or_else(
                || format!("unknown 0x{:x}", pe.policy.policy_type()),
                |t| t.name().to_string(),
            ),
            policy_code: pe.policy.policy_type(),
            load: pe.policy.load(),
            registration_life_ms: pe.registration_life,
        }
    }
}
