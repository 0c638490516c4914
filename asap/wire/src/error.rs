//! Typed decode/encode errors and decode warnings of the wire codec.
//!
//! Every error says what was wrong, at which byte offset (counted from the first byte of
//! the message handed to [`Message::decode`](super::Message::decode)) and, where there is
//! one, in which parameter type.

use serde::Serialize;

use super::cause::ErrorCause;
use super::codes::{CauseCode, ParamType};
use super::message::Protocol;

/// Why a message could not be decoded (RFC 5354 §3–§4 length, padding and action rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before a field or header could be read.
    #[error("truncated at byte {offset}: {what} needs {needed} bytes, {available} available")]
    Truncated {
        /// Offset of the field.
        offset: usize,
        /// The field being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The message Length is below 4, below the fixed part, or beyond the input.
    #[error(
        "invalid message length {length} at byte {offset} ({reason}; {available} bytes available)"
    )]
    BadMessageLength {
        /// Offset of the message header.
        offset: usize,
        /// The Length field.
        length: u16,
        /// What is wrong with it.
        reason: &'static str,
        /// Bytes available from the message start.
        available: usize,
    },
    /// A parameter's Length is below 4, wrong for its type, or beyond its container.
    #[error("{param}: invalid parameter length {length} at byte {offset}: {reason}")]
    BadParamLength {
        /// Offset of the parameter header.
        offset: usize,
        /// The parameter type.
        param: ParamType,
        /// The Length field.
        length: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A parameter's value is structurally wrong (e.g. an SCTP transport without address).
    #[error("{param} at byte {offset}: {reason}")]
    InvalidValue {
        /// Offset of the parameter header.
        offset: usize,
        /// The parameter type.
        param: ParamType,
        /// What is wrong.
        reason: &'static str,
    },
    /// A mandatory parameter is missing (or not in the order the RFC gives).
    #[error("{context} at byte {offset}: missing mandatory {param}")]
    MissingParameter {
        /// Offset of the container (message or parameter) that lacks it.
        offset: usize,
        /// The message or parameter name.
        context: &'static str,
        /// The missing parameter type.
        param: ParamType,
    },
    /// An unrecognised parameter whose action bits say "stop processing" (`00`/`01`,
    /// RFC 5354 §3). The message must be discarded; if `report` is set the sender wants an
    /// Unrecognized Parameter error (see [`DecodeError::report`]).
    #[error("unrecognized parameter type 0x{param_type:04x} at byte {offset} (action: stop{})", if *report { " and report" } else { "" })]
    UnrecognizedParameter {
        /// Offset of the parameter header.
        offset: usize,
        /// The 16-bit type, action bits included.
        param_type: u16,
        /// Action bits `01`: report to the sender.
        report: bool,
        /// The complete TLV (without padding).
        tlv: Vec<u8>,
    },
    /// An unrecognised message type (RFC 5354 §4 action bits of the type byte). If
    /// `report` is set, the sender wants an Unrecognized Message error.
    #[error("unrecognized {protocol} message type 0x{type_code:02x}{}", if *report { " (report)" } else { "" })]
    UnrecognizedMessage {
        /// ASAP or ENRP.
        protocol: Protocol,
        /// The type byte.
        type_code: u8,
        /// Action bits `01`: report to the sender.
        report: bool,
        /// The message bytes (up to its Length, at most the input).
        message: Vec<u8>,
    },
}

impl DecodeError {
    /// The Operation Error cause the receiver should send back, if the action bits of an
    /// unrecognised message or parameter ask for a report (RFC 5354 §3, §3.12).
    pub fn report(&self) -> Option<ErrorCause> {
        match self {
            DecodeError::UnrecognizedParameter {
                report: true, tlv, ..
            } => Some(ErrorCause::new(
                CauseCode::UnrecognizedParameter,
                tlv.clone(),
            )),
            DecodeError::UnrecognizedMessage {
                report: true,
                message,
                ..
            } => Some(ErrorCause::new(
                CauseCode::UnrecognizedMessage,
                message.clone(),
            )),
            _ => None,
        }
    }

    /// Byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::BadMessageLength { offset, .. }
            | DecodeError::BadParamLength { offset, .. }
            | DecodeError::InvalidValue { offset, .. }
            | DecodeError::MissingParameter { offset, .. }
            | DecodeError::UnrecognizedParameter { offset, .. } => *offset,
            DecodeError::UnrecognizedMessage { .. } => 0,
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A message or parameter would exceed the 16-bit Length field.
    #[error("{what} too long: {length} bytes (maximum 65535)")]
    TooLong {
        /// Which message or parameter.
        what: &'static str,
        /// The length it would have.
        length: usize,
    },
    /// An SCTP Transport parameter without any address: RFC 5354 §3.3 requires one or more
    /// IPv4/IPv6 Address parameters, and the decoder rejects one without
    /// ([`DecodeError::InvalidValue`] "transport without an address").
    #[error("SCTP Transport (port {port}) has no address; RFC 5354 §3.3 requires at least one")]
    TransportWithoutAddress {
        /// The transport's port, to tell which one it was.
        port: u16,
    },
}

/// Something tolerated while decoding that the typed message does not record, so that
/// re-encoding is **not** byte-exact for the affected bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// Padding bytes that are not zero (RFC 5354 §2: receivers ignore padding; our encoder
    /// writes zeros).
    NonZeroPadding {
        /// Offset of the first non-zero padding byte.
        offset: usize,
    },
    /// The input ends inside the message's trailing padding (the padding is missing).
    MissingMessagePadding {
        /// Offset where the padding should start.
        offset: usize,
        /// How many padding bytes are missing.
        missing: usize,
    },
}
