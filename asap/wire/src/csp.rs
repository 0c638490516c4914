//! Component Status Protocol (CSP): rsplib's private status reports to `cspmonitor`
//! (asap/wire/INTEROP.md §8), one UDP datagram per report, default port [`CSP_PORT`].
//!
//! Layout (all integers big-endian), as rsplib 3.4.4 sends it (checked against
//! `pcap-fixtures/rsplib/scenario-a.pcap`):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | Type ([`CSP_TYPE_REPORT`]) |
//! | 1 | Flags (bit 0 = [`CSP_FLAG_FINAL`]: the component is going away) |
//! | 2 | Length of the whole report |
//! | 4 | Version ([`CSP_VERSION`]) |
//! | 8 | Sender ID ([`ComponentId`]: 8-bit group, 56-bit object) |
//! | 8 | Sender timestamp, µs since the sender's first report |
//! | 4 | Report interval, **µs** (not ms; rsplib's `CSP_INTERVAL=1000` puts 1 000 000 on the wire) |
//! | 128 | Location text, NUL-padded |
//! | 128 | Status text, NUL-padded |
//! | 2 | Workload (`0xFFFF` = unknown, else fraction × `0xFFFE`) |
//! | 2 | Number of associations |
//! | 24 each | Receiver ID (8) · Duration µs (8) · Flags (2) · Protocol ID (2) · PPID (4) |
//!
//! ```
//! use rserpool_wire::csp::{ComponentGroup, ComponentId, CspReport};
//! let r = CspReport::new(ComponentId::new(ComponentGroup::Registrar, 0xaaa1), 1_000_000)
//!     .with_status("3 PEs in 1 Pools");
//! let bytes = r.encode();
//! assert_eq!(bytes.len(), 288);
//! assert_eq!(CspReport::decode(&bytes).unwrap(), r);
//! ```

use serde::Serialize;

/// Default UDP port of the CSP monitor (rsplib's `cspmonitor`).
pub const CSP_PORT: u16 = 2960;
/// The protocol version rsplib 3.x sends and expects.
pub const CSP_VERSION: u32 = 0x0200;
/// Message type of a status report (the only type).
pub const CSP_TYPE_REPORT: u8 = 0x01;
/// Flag: the final report of a component that is shutting down.
pub const CSP_FLAG_FINAL: u8 = 0x01;
/// Size of the location and of the status text fields.
pub const CSP_TEXT_SIZE: usize = 128;
/// Size of a report without associations.
pub const CSP_REPORT_SIZE: usize = 4 + 4 + 8 + 8 + 4 + CSP_TEXT_SIZE * 2 + 2 + 2;
/// Size of one association entry.
pub const CSP_ASSOCIATION_SIZE: usize = 24;
/// Workload value meaning "unknown".
pub const CSP_WORKLOAD_UNKNOWN: u16 = 0xFFFF;

/// The group in the top 8 bits of a [`ComponentId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ComponentGroup {
    /// A registrar (1).
    Registrar,
    /// A pool element (2).
    PoolElement,
    /// A pool user (3).
    PoolUser,
    /// Another group code.
    Other(u8),
}

impl ComponentGroup {
    /// The code in the ID's top 8 bits.
    pub fn code(self) -> u8 {
        match self {
            ComponentGroup::Registrar => 1,
            ComponentGroup::PoolElement => 2,
            ComponentGroup::PoolUser => 3,
            ComponentGroup::Other(c) => c,
        }
    }

    /// The group of a code.
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => ComponentGroup::Registrar,
            2 => ComponentGroup::PoolElement,
            3 => ComponentGroup::PoolUser,
            c => ComponentGroup::Other(c),
        }
    }

    /// Short name as printed (`registrar`, `pe`, `pu`, `group N`).
    pub fn name(self) -> String {
        match self {
            ComponentGroup::Registrar => "registrar".into(),
            ComponentGroup::PoolElement => "pe".into(),
            ComponentGroup::PoolUser => "pu".into(),
            ComponentGroup::Other(c) => format!("group {c}"),
        }
    }
}

/// A CSP component identifier: group (8 bits) and object (56 bits; a registrar's server
/// ID or a PE identifier for ours and rsplib's registrars and PEs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(pub u64);

impl ComponentId {
    /// The ID of `object` (low 56 bits kept) in `group`.
    pub fn new(group: ComponentGroup, object: u64) -> Self {
        ComponentId((u64::from(group.code()) << 56) | (object & 0x00FF_FFFF_FFFF_FFFF))
    }

    /// Its group.
    pub fn group(self) -> ComponentGroup {
        ComponentGroup::from_code((self.0 >> 56) as u8)
    }

    /// Its object part.
    pub fn object(self) -> u64 {
        self.0 & 0x00FF_FFFF_FFFF_FFFF
    }
}

impl std::fmt::Display for ComponentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for ComponentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One association a component reports (to a registrar, a PE, a PU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CspAssociation {
    /// The component at the other end (rsplib often sends only the group, object 0).
    pub receiver: ComponentId,
    /// How long the association has existed, µs.
    pub duration_us: u64,
    /// Flags (rsplib sends 0).
    pub flags: u16,
    /// IP protocol number of the association (132 = SCTP, 6 = TCP).
    pub protocol: u16,
    /// SCTP payload protocol identifier (11 = ASAP, 12 = ENRP, 0 = data).
    pub ppid: u32,
}

/// One status report (asap/wire/INTEROP.md §8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CspReport {
    /// Header flags ([`CSP_FLAG_FINAL`]).
    pub flags: u8,
    /// Who reports.
    pub sender: ComponentId,
    /// µs since the sender's first report.
    pub timestamp_us: u64,
    /// Time to the next report, µs (the monitor expires a silent component after a few).
    pub report_interval_us: u32,
    /// Where the component runs (rsplib: `host: addr, addr`).
    pub location: String,
    /// Free status text (rsplib's registrar: `N[M] PEs in P Pools, Q Peers`).
    pub status: String,
    /// Workload as sent (`0xFFFF` unknown, else fraction × `0xFFFE`).
    pub workload: u16,
    /// The component's associations.
    pub associations: Vec<CspAssociation>,
}

/// Why a datagram is not a CSP report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CspError {
    /// Shorter than a report without associations.
    #[error("CSP report too short: {0} bytes, need at least {CSP_REPORT_SIZE}")]
    TooShort(usize),
    /// Another message type.
    #[error("CSP message type {0:#04x} is not a report (0x01)")]
    Type(u8),
    /// Another protocol version.
    #[error("CSP version {0:#x} unsupported (expected 0x0200)")]
    Version(u32),
    /// The association count does not fit the datagram.
    #[error("CSP report claims {count} associations but has {len} bytes")]
    Associations {
        /// Associations claimed.
        count: u16,
        /// Datagram length.
        len: usize,
    },
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
fn put_text(out: &mut Vec<u8>, s: &str) {
    // At most 127 bytes and a NUL, cut on a character boundary.
    let mut end = s.len().min(CSP_TEXT_SIZE - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..end]);
    out.resize(out.len() + CSP_TEXT_SIZE - end, 0);
}

impl CspReport {
    /// A report from `sender` every `report_interval_us`, with empty texts, unknown
    /// workload, no associations.
    pub fn new(sender: ComponentId, report_interval_us: u32) -> Self {
        CspReport {
            flags: 0,
            sender,
            timestamp_us: 0,
            report_interval_us,
            location: String::new(),
            status: String::new(),
            workload: CSP_WORKLOAD_UNKNOWN,
            associations: Vec::new(),
        }
    }

    /// With this status text (cut to 127 bytes on encoding).
    pub fn with_status(mut self, status: impl Into<String>) -> Self {
        self.status = status.into();
        self
    }

    /// True for the final report of a component going away.
    pub fn is_final(&self) -> bool {
        self.flags & CSP_FLAG_FINAL != 0
    }

    /// The workload as a fraction 0..=1, `None` when unknown.
    pub fn workload_fraction(&self) -> Option<f64> {
        (self.workload != CSP_WORKLOAD_UNKNOWN).then(|| f64::from(self.workload) / 65534.0)
    }

    /// Encodes a workload fraction (`None` = unknown) as rsplib does.
    pub fn encode_workload(fraction: Option<f64>) -> u16 {
        match fraction {
            Some(f) if f >= 0.0 => (f.min(1.0) * 65534.0).round() as u16,
            _ => CSP_WORKLOAD_UNKNOWN,
        }
    }

    /// The datagram. Texts longer than 127 bytes are cut; more than 65535 associations
    /// or a length over 65535 bytes are cut to what fits.
    pub fn encode(&self) -> Vec<u8> {
        let max = (usize::from(u16::MAX) - CSP_REPORT_SIZE) / CSP_ASSOCIATION_SIZE;
        let assocs = &self.associations[..self.associations.len().min(max)];
        let len = CSP_REPORT_SIZE + assocs.len() * CSP_ASSOCIATION_SIZE;
        let mut out = Vec::with_capacity(len);
        out.push(CSP_TYPE_REPORT);
        out.push(self.flags);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&CSP_VERSION.to_be_bytes());
        out.extend_from_slice(&self.sender.0.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.report_interval_us.to_be_bytes());
        put_text(&mut out, &self.location);
        put_text(&mut out, &self.status);
        out.extend_from_slice(&self.workload.to_be_bytes());
        out.extend_from_slice(&(assocs.len() as u16).to_be_bytes());
        for a in assocs {
            out.extend_from_slice(&a.receiver.0.to_be_bytes());
            out.extend_from_slice(&a.duration_us.to_be_bytes());
            out.extend_from_slice(&a.flags.to_be_bytes());
            out.extend_from_slice(&a.protocol.to_be_bytes());
            out.extend_from_slice(&a.ppid.to_be_bytes());
        }
        out
    }

    /// Decodes one datagram. The Length field is not trusted (some rsplib builds write
    /// it wrongly): the association count must fit the datagram, bytes after the
    /// last association are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, CspError> {
        if b.len() < CSP_REPORT_SIZE {
            return Err(CspError::TooShort(b.len()));
        }
        if b[0] != CSP_TYPE_REPORT {
            return Err(CspError::Type(b[0]));
        }
        let version = be_u32(b, 4);
        if version != CSP_VERSION {
            return Err(CspError::Version(version));
        }
        let t0 = 28;
        let count = be_u16(b, t0 + 2 * CSP_TEXT_SIZE + 2);
        if b.len() < CSP_REPORT_SIZE + usize::from(count) * CSP_ASSOCIATION_SIZE {
            return Err(CspError::Associations {
                count,
                len: b.len(),
            });
        }
        let associations = (0..usize::from(count))
            .map(|i| {
                let a = CSP_REPORT_SIZE + i * CSP_ASSOCIATION_SIZE;
                CspAssociation {
                    receiver: ComponentId(be_u64(b, a)),
                    duration_us: be_u64(b, a + 8),
                    flags: be_u16(b, a + 16),
                    protocol: be_u16(b, a + 18),
                    ppid: be_u32(b, a + 20),
                }
            })
            .collect();
        Ok(CspReport {
            flags: b[1],
            sender: ComponentId(be_u64(b, 8)),
            timestamp_us: be_u64(b, 16),
            report_interval_us: be_u32(b, 24),
            location: text(&b[t0..t0 + CSP_TEXT_SIZE]),
            status: text(&b[t0 + CSP_TEXT_SIZE..t0 + 2 * CSP_TEXT_SIZE]),
            workload: be_u16(b, t0 + 2 * CSP_TEXT_SIZE),
            associations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_associations_and_long_texts() {
        let mut r = CspReport::new(
            ComponentId::new(ComponentGroup::PoolElement, 0x1234),
            250_000,
        );
        r.flags = CSP_FLAG_FINAL;
        r.timestamp_us = 77;
        r.location = "h".repeat(200);
        r.status = "é".repeat(100); // 200 bytes: cut to 126 on a char boundary
        r.workload = CspReport::encode_workload(Some(0.5));
        r.associations.push(CspAssociation {
            receiver: ComponentId::new(ComponentGroup::Registrar, 0xaaa1),
            duration_us: 5,
            flags: 0,
            protocol: 132,
            ppid: 11,
        });
        let b = r.encode();
        assert_eq!(b.len(), CSP_REPORT_SIZE + CSP_ASSOCIATION_SIZE);
        assert_eq!(&b[..4], &[1, 1, 0x01, 0x38]);
        let d = CspReport::decode(&b).unwrap();
        assert!(d.is_final());
        assert_eq!(d.location.len(), 127);
        assert_eq!(d.status.len(), 126);
        assert_eq!(d.workload, 32767);
        assert_eq!(d.associations, r.associations);
        assert_eq!(d.sender.group(), ComponentGroup::PoolElement);
        assert_eq!(d.sender.object(), 0x1234);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(CspReport::decode(&[1; 10]), Err(CspError::TooShort(10)));
        let mut b = CspReport::new(ComponentId(1), 1).encode();
        b[0] = 2;
        assert_eq!(CspReport::decode(&b), Err(CspError::Type(2)));
        b[0] = 1;
        b[7] = 1;
        assert_eq!(CspReport::decode(&b), Err(CspError::Version(0x0201)));
        b[7] = 0;
        b[CSP_REPORT_SIZE - 1] = 3;
        assert!(matches!(
            CspReport::decode(&b),
            Err(CspError::Associations { count: 3, .. })
        ));
    }
}
