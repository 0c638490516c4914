//! Operation Error parameter and its error causes (RFC 5354 §3.12).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type = 0x0C               |       Length                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Cause Code            |       Cause Length            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                    Cause-Specific Information                 \
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         ... more causes, each padded to 4 bytes ...           |
//! ```
//!
//! The cause-specific information is kept as the exact bytes received (so any cause
//! round-trips, including rsplib's non-IANA codes); typed views decode it on demand:
//! [`ErrorCause::policy`] for 0x5, [`ErrorCause::transport`] for 0x7 and
//! [`ErrorCause::tlv`] for 0x1 / 0x3.

use bytes::BytesMut;
use serde::Serialize;
use std::fmt;

use super::codes::CauseCode;
use super::layout::{hex, Layout, RawTlv};
use super::param::TransportParameter;
use super::policy::Policy;

/// One error cause (RFC 5354 §3.12.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorCause {
    /// The cause code (RFC or rsplib; unknown codes round-trip).
    pub code: CauseCode,
    /// The cause-specific information exactly as carried (Cause Length − 4 bytes).
    pub info: Vec<u8>,
}

impl ErrorCause {
    /// A cause with the given code and cause-specific information.
    pub fn new(code: CauseCode, info: Vec<u8>) -> Self {
        ErrorCause { code, info }
    }

    /// A cause without cause-specific information (0x0, 0x4, 0x6, 0x8, 0x9, 0xA, ...).
    pub fn plain(code: CauseCode) -> Self {
        ErrorCause {
            code,
            info: Vec::new(),
        }
    }

    /// 0x1 Unrecognized Parameter carrying the complete unrecognised TLV.
    pub fn unrecognized_parameter(tlv: &[u8]) -> Self {
        Self::new(CauseCode::UnrecognizedParameter, tlv.to_vec())
    }

    /// 0x2 Unrecognized Message carrying the unrecognised message.
    pub fn unrecognized_message(message: &[u8]) -> Self {
        Self::new(CauseCode::UnrecognizedMessage, message.to_vec())
    }

    /// 0x3 Invalid Values carrying the offending TLV.
    pub fn invalid_values(tlv: &[u8]) -> Self {
        Self::new(CauseCode::InvalidValues, tlv.to_vec())
    }

    /// 0x5 Inconsistent Pooling Policy carrying the pool's policy TLV.
    pub fn inconsistent_policy(policy: &Policy) -> Self {
        let mut b = BytesMut::new();
        // A policy TLV is at most 24 bytes: encoding cannot exceed the length field.
        let mut e = super::layout::Enc::new(&mut b, &EMPTY);
        let _ = super::tlv::enc_policy(&mut e, policy);
        Self::new(CauseCode::InconsistentPoolingPolicy, b.to_vec())
    }

    /// 0x7 Inconsistent Transport Type carrying a transport TLV of the pool.
    pub fn inconsistent_transport(transport: &TransportParameter) -> Self {
        let mut b = BytesMut::new();
        let mut e = super::layout::Enc::new(&mut b, &EMPTY);
        match super::tlv::enc_transport(&mut e, transport) {
            Ok(()) => Self::new(CauseCode::InconsistentTransportType, b.to_vec()),
            Err(_) => Self::plain(CauseCode::InconsistentTransportType),
        }
    }

    /// The TLV carried by 0x1 Unrecognized Parameter / 0x3 Invalid Values (or any cause
    /// whose information is a well-formed TLV).
    pub fn tlv(&self) -> Option<RawTlv> {
        if self.info.len() < 4 {
            return None;
        }
        let t = u16::from_be_bytes([self.info[0], self.info[1]]);
        let l = usize::from(u16::from_be_bytes([self.info[2], self.info[3]]));
        if l < 4 || l > self.info.len() {
            return None;
        }
        Some(RawTlv {
            param_type: t,
            value: self.info[4..l].to_vec(),
        })
    }

    /// The policy carried by 0x5 Inconsistent Pooling Policy.
    pub fn policy(&self) -> Option<Policy> {
        super::tlv::decode_policy_tlv(&self.info)
    }

    /// The transport carried by 0x7 Inconsistent Transport Type.
    pub fn transport(&self) -> Option<TransportParameter> {
        super::tlv::decode_transport_tlv(&self.info)
    }
}

static EMPTY: Layout = Layout {
    unused_flags: 0,
    quirks: Vec::new(),
};

impl Serialize for ErrorCause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("cause", &self.code)?;
        m.serialize_entry("code", &self.code.code())?;
        if !self.info.is_empty() {
            m.serialize_entry("info", &hex(&self.info))?;
        }
        match self.code {
            CauseCode::InconsistentPoolingPolicy => {
                if let Some(p) = self.policy() {
                    m.serialize_entry("policy", &p)?;
                }
            }
            CauseCode::InconsistentTransportType => {
                if let Some(t) = self.transport() {
                    m.serialize_entry("transport", &t)?;
                }
            }
            CauseCode::UnrecognizedParameter | CauseCode::InvalidValues => {
                if let Some(t) = self.tlv() {
                    m.serialize_entry("tlv", &t)?;
                }
            }
            _ => {}
        }
        m.end()
    }
}

impl fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code.tshark_name() {
            Some(n) => write!(f, "{n} (0x{:x})", self.code.code())?,
            None => write!(f, "Unknown cause 0x{:x}", self.code.code())?,
        }
        if !self.info.is_empty() {
            write!(f, " [{} bytes]", self.info.len())?;
        }
        Ok(())
    }
}

/// Operation Error parameter (RFC 5354 §3.12): one or more error causes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct OperationError {
    /// The causes, in wire order.
    pub causes: Vec<ErrorCause>,
}

impl OperationError {
    /// An Operation Error with one cause.
    pub fn single(cause: ErrorCause) -> Self {
        OperationError {
            causes: vec![cause],
        }
    }

    /// The first cause's code, if any.
    pub fn first_code(&self) -> Option<CauseCode> {
        self.causes.first().map(|c| c.code)
    }
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.causes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}
