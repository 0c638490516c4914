//! Data model of the RSerPool parameters shared by ASAP and ENRP (RFC 5354 §3).
//!
//! These types are what the rest of the stack (handlespace, registrar, PE/PU APIs) works
//! with. The TLV encoding and decoding lives in the codec modules beside this file.

use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

use super::policy::Policy;

/// A 32-bit Pool Element Identifier (RFC 5354 §3.14). 0 is invalid for registration.
pub type PeIdentifier = u32;

/// A 32-bit ENRP Server Identifier (RFC 5353 §3; RFC 5351 §3.1). 0 = "not known".
pub type ServerId = u32;

/// A Pool Handle (RFC 5354 §3.9): an opaque byte string naming a pool.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PoolHandle(pub Vec<u8>);

impl PoolHandle {
    /// The handle's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The handle's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True for the empty handle.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for PoolHandle {
    fn from(s: &str) -> Self {
        PoolHandle(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for PoolHandle {
    fn from(s: &[u8]) -> Self {
        PoolHandle(s.to_vec())
    }
}

impl fmt::Display for PoolHandle {
    /// Printable handles as text (as tshark shows them), others as hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => f.write_str(s),
            _ => {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolHandle({self})")
    }
}

impl Serialize for PoolHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Transport Use field of an SCTP transport (RFC 5354 §3.3) and — as rsplib writes it —
/// of a TCP transport's second 16-bit word (see the crate README on deviations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum TransportUse {
    /// 0x0000: data only.
    DataOnly,
    /// 0x0001: data plus control (ASAP session-layer messages on the same transport).
    DataPlusControl,
    /// Any other value, kept for byte-exact re-encoding.
    Other(u16),
}

impl TransportUse {
    /// The 16-bit wire value.
    pub fn code(self) -> u16 {
        match self {
            TransportUse::DataOnly => 0,
            TransportUse::DataPlusControl => 1,
            TransportUse::Other(v) => v,
        }
    }
    /// Decodes a 16-bit wire value.
    pub fn from_code(v: u16) -> Self {
        match v {
            0 => TransportUse::DataOnly,
            1 => TransportUse::DataPlusControl,
            v => TransportUse::Other(v),
        }
    }
}

/// A transport parameter (RFC 5354 §3.2–3.7, 3.16): where a PE's user data, a PE's ASAP
/// endpoint or an ENRP server can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "transport")]
#[non_exhaustive]
pub enum TransportParameter {
    /// 0x0004 SCTP Transport: port, Transport Use, one or more addresses (v4/v6 mixed).
    Sctp {
        /// Port.
        port: u16,
        /// Transport Use (RFC 5354 §3.4): data only, or data plus control.
        transport_use: TransportUse,
        /// One or more IPv4/IPv6 addresses.
        addresses: Vec<IpAddr>,
    },
    /// 0x0005 TCP Transport: port, second word (RFC: reserved; rsplib: Transport Use),
    /// exactly one address.
    Tcp {
        /// Port.
        port: u16,
        /// Transport Use (RFC 5354 §3.4): data only, or data plus control.
        transport_use: TransportUse,
        /// The one address.
        address: IpAddr,
    },
    /// 0x0006 UDP Transport: port, reserved word (kept verbatim), exactly one address.
    Udp {
        /// Port.
        port: u16,
        /// The reserved word, kept verbatim for round-trip.
        reserved: u16,
        /// The one address.
        address: IpAddr,
    },
    /// 0x0007 UDP-Lite Transport: port, reserved word, exactly one address.
    UdpLite {
        /// Port.
        port: u16,
        /// The reserved word, kept verbatim for round-trip.
        reserved: u16,
        /// The one address.
        address: IpAddr,
    },
    /// 0x0003 DCCP Transport: port, reserved word, service code, exactly one address.
    Dccp {
        /// Port.
        port: u16,
        /// The reserved word, kept verbatim for round-trip.
        reserved: u16,
        /// DCCP service code.
        service_code: u32,
        /// The one address.
        address: IpAddr,
    },
    /// 0x0010 Opaque Transport: opaque bytes replacing the user transport.
    Opaque {
        /// The opaque bytes.
        data: Vec<u8>,
    },
}

impl TransportParameter {
    /// The transport's port (`None` for Opaque).
    pub fn port(&self) -> Option<u16> {
        match *self {
            TransportParameter::Sctp { port, .. }
            | TransportParameter::Tcp { port, .. }
            | TransportParameter::Udp { port, .. }
            | TransportParameter::UdpLite { port, .. }
            | TransportParameter::Dccp { port, .. } => Some(port),
            TransportParameter::Opaque { .. } => None,
        }
    }

    /// All addresses the transport names (empty for Opaque).
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.address_slice().to_vec()
    }

    /// The addresses without copying them (the encoder writes them in this order).
    pub(crate) fn address_slice(&self) -> &[IpAddr] {
        match self {
            TransportParameter::Sctp { addresses, .. } => addresses,
            TransportParameter::Tcp { address, .. }
            | TransportParameter::Udp { address, .. }
            | TransportParameter::UdpLite { address, .. }
            | TransportParameter::Dccp { address, .. } => std::slice::from_ref(address),
            TransportParameter::Opaque { .. } => &[],
        }
    }

    /// The Transport Use of SCTP (and rsplib-style TCP) transports; others are data only.
    pub fn transport_use(&self) -> TransportUse {
        match self {
            TransportParameter::Sctp { transport_use, .. }
            | TransportParameter::Tcp { transport_use, .. } => *transport_use,
            _ => TransportUse::DataOnly,
        }
    }
}

/// Pool Element parameter (RFC 5354 §3.10).
///
/// `registration_life` is in **milliseconds**, as rsplib, the Tüxen/Volkmer ENRP server
/// and Wireshark interpret it (RFC 5354 says seconds); −1 means infinite.
///
/// Formerly `PoolElement` (still a deprecated alias); renamed so that each name means one
/// thing: the pool element *driver* is `asap::pe::PoolElement`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PoolElementInfo {
    /// PE Identifier (RFC 5354 §3.10).
    pub id: PeIdentifier,
    /// Home ENRP Server Identifier; 0 = not yet determined.
    pub home_server_id: ServerId,
    /// Registration life in ms (signed; −1 = infinite).
    pub registration_life: i32,
    /// The single User Transport (DCCP/SCTP/TCP/UDP/UDP-Lite/Opaque).
    pub user_transport: TransportParameter,
    /// Member selection policy and this PE's policy values.
    pub policy: Policy,
    /// ASAP transport of the PE (an SCTP Transport); rsplib omits it in ASAP messages and
    /// includes it in ENRP ones.
    pub asap_transport: Option<TransportParameter>,
}

/// The old name of [`PoolElementInfo`], kept for existing users: the same type.
///
/// ```
/// #[allow(deprecated)]
/// fn old_to_new(pe: rserpool_wire::PoolElement) -> rserpool_wire::PoolElementInfo {
///     pe
/// }
/// ```
#[deprecated(
    note = "renamed to `PoolElementInfo` (the pool element driver is `asap::pe::PoolElement`)"
)]
pub type PoolElement = PoolElementInfo;

/// Server Information parameter (RFC 5354 §3.11): an ENRP server's ID and its ENRP
/// transport (SCTP Transport).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ServerInformation {
    /// The ENRP server's identifier.
    pub server_id: ServerId,
    /// Where to reach its ENRP endpoint.
    pub transport: TransportParameter,
}
