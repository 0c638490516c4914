//! The common message header (RFC 5354 §4), the [`Message`] enum over ASAP and ENRP, and
//! the decode/encode entry points.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Message Type  | Message Flags |        Message Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                                                               \
//! /                         Message Value                         /
//! \                                                               \
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! ASAP and ENRP number their types independently from 0x01, so decoding needs the
//! [`Protocol`] (from the SCTP PPID, or the port / socket for UDP).

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use std::fmt;

use super::asap_msg::AsapMessage;
use super::cause::ErrorCause;
use super::codes::{AsapType, EnrpType, ParamAction, ParamType};
use super::codes::{ASAP_PORT, ENRP_PORT, PPID_ASAP, PPID_ENRP};
use super::enrp_msg::EnrpMessage;
use super::error::{DecodeError, EncodeError, Warning};
use super::layout::{padded, Dec, Enc, Layout, Walk};

/// Which of the two RSerPool protocols a message belongs to. The type byte alone does not
/// tell: both protocols number their messages from 1, so the receiver knows the protocol
/// from the SCTP PPID or the port (asap/wire/INTEROP.md §1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Aggregate Server Access Protocol, RFC 5352.
    Asap,
    /// Endpoint Handlespace Redundancy Protocol, RFC 5353.
    Enrp,
}

impl Protocol {
    /// SCTP payload protocol identifier (ASAP 11, ENRP 12).
    pub const fn ppid(self) -> u32 {
        match self {
            Protocol::Asap => PPID_ASAP,
            Protocol::Enrp => PPID_ENRP,
        }
    }

    /// The protocol of an SCTP PPID.
    pub const fn from_ppid(ppid: u32) -> Option<Protocol> {
        match ppid {
            PPID_ASAP => Some(Protocol::Asap),
            PPID_ENRP => Some(Protocol::Enrp),
            _ => None,
        }
    }

    /// Well-known port (ASAP 3863, ENRP 9901).
    pub const fn port(self) -> u16 {
        match self {
            Protocol::Asap => ASAP_PORT,
            Protocol::Enrp => ENRP_PORT,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Asap => "ASAP",
            Protocol::Enrp => "ENRP",
        })
    }
}

/// Any ASAP or ENRP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An ASAP message (RFC 5352).
    Asap(AsapMessage),
    /// An ENRP message (RFC 5353).
    Enrp(EnrpMessage),
}

/// The result of [`Message::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decoded {
    /// The typed message.
    pub message: Message,
    /// Bytes consumed from the input: the message Length plus its padding (less if the
    /// input ends inside the padding, see [`Warning::MissingMessagePadding`]).
    pub consumed: usize,
    /// How the message was laid out beyond its typed content (unknown/extra TLVs, padding
    /// choices, undefined flag bits): `message.encode_with_layout(&layout)` reproduces the
    /// consumed bytes exactly unless `warnings` is non-empty.
    #[serde(skip_serializing_if = "Layout::is_canonical")]
    pub layout: Layout,
    /// Error causes the receiver should report to the sender in an Operation Error
    /// (Unrecognized Parameter for skipped TLVs with action bits `11`; RFC 5354 §3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ErrorCause>,
    /// Tolerated irregularities that re-encoding does not reproduce.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

impl Decoded {
    /// Re-encodes the message with its recorded layout.
    pub fn reencode(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        self.message.encode_with_layout(&self.layout, &mut b)?;
        Ok(b.freeze())
    }
}

/// What each message struct implements (crate-internal).
pub(crate) trait Body: Sized {
    /// Flag bits the message type defines.
    const FLAG_MASK: u8;
    /// Decodes the value (fixed fields and TLVs) in `start..end`.
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError>;
    /// The defined flag bits.
    fn flags(&self) -> u8;
    /// Writes the value after the header.
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError>;
    /// Key fields for `Display`, tshark style (`Pool Handle: EchoPool`).
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Walker over the message-level TLVs in `start..end`.
pub(crate) fn top_children(start: usize, end: usize) -> Walk {
    Walk::new(start, end, ParamType::Unknown(0))
}

/// Serializes a message struct with a leading `"type": "<NAME>"`.
#[derive(Serialize)]
pub(crate) struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(flatten)]
    pub body: &'a T,
}

impl Message {
    /// Decodes one message from the start of `input` (RFC 5354 §4). Trailing bytes after
    /// the message and its padding are not looked at (see [`Decoded::consumed`]).
    ///
    /// Unknown message types follow their action bits: the error
    /// [`DecodeError::UnrecognizedMessage`] says whether to report it
    /// ([`DecodeError::report`]). Unknown parameters: "stop" ones give
    /// [`DecodeError::UnrecognizedParameter`], "skip" ones are kept in the layout and,
    /// with the report bit, listed in [`Decoded::reports`].
    pub fn decode(protocol: Protocol, input: &[u8]) -> Result<Decoded, DecodeError> {
        let d0 = Dec::new(input);
        let type_code = d0.int_at::<u8>(0, input.len(), "message type")?;
        let flags = d0.int_at::<u8>(1, input.len(), "message flags")?;
        let length = d0.int_at::<u16>(2, input.len(), "message length")?;
        let end = usize::from(length);
        if end < 4 {
            return Err(DecodeError::BadMessageLength {
                offset: 0,
                length,
                reason: "below the 4-byte header",
                available: input.len(),
            });
        }
        if end > input.len() {
            return Err(DecodeError::BadMessageLength {
                offset: 0,
                length,
                reason: "beyond the end of the input",
                available: input.len(),
            });
        }
        let unknown = match protocol {
            Protocol::Asap => !AsapType::from_code(type_code).is_known(),
            Protocol::Enrp => !EnrpType::from_code(type_code).is_known(),
        };
        if unknown {
            return Err(DecodeError::UnrecognizedMessage {
                protocol,
                type_code,
                report: ParamAction::of_message(type_code) == ParamAction::StopAndReport,
                message: input[..end].to_vec(),
            });
        }
        let mut d = Dec::new(input);
        let (message, mask) = match protocol {
            Protocol::Asap => {
                let m =
                    AsapMessage::decode_typed(AsapType::from_code(type_code), &mut d, flags, end)?;
                let mask = m.flag_mask();
                (Message::Asap(m), mask)
            }
            Protocol::Enrp => {
                let m =
                    EnrpMessage::decode_typed(EnrpType::from_code(type_code), &mut d, flags, end)?;
                let mask = m.flag_mask();
                (Message::Enrp(m), mask)
            }
        };
        let full = padded(end);
        let consumed = full.min(input.len());
        d.check_padding(end, consumed);
        if consumed < full {
            d.warnings.push(Warning::MissingMessagePadding {
                offset: input.len(),
                missing: full - consumed,
            });
        }
        let mut quirks = d.quirks;
        quirks.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Decoded {
            message,
            consumed,
            layout: Layout {
                unused_flags: flags & !mask,
                quirks,
            },
            reports: d.reports,
            warnings: d.warnings,
        })
    }

    /// For stream framing (TCP): how many bytes the message starting at `input` occupies
    /// on the wire — its Length rounded up to 4 — once the 4-byte header is available.
    /// `None` if fewer than 4 bytes are given; a Length below 4 is returned as 4 so that a
    /// caller always makes progress (decoding it then reports the bad Length).
    pub fn peek_wire_len(input: &[u8]) -> Option<usize> {
        super::header::CommonHeader::peek(input).map(|h| h.padded_len().max(4))
    }

    /// Encodes the message canonically (rsplib-compatible padding, no extra TLVs),
    /// appending Length-many bytes plus padding to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with_layout(&Layout::default(), buf)
    }

    /// Encodes the message reproducing a recorded [`Layout`] (see [`Decoded::layout`]).
    pub fn encode_with_layout(
        &self,
        layout: &Layout,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = buf.len();
        let r = {
            let mut e = Enc::new(buf, layout);
            let (flags, mask) = self.flags_and_mask();
            e.begin_message(
                self.type_code(),
                flags | (layout.unused_flags & !mask),
                self.name(),
            );
            match self {
                Message::Asap(m) => m.encode_body(&mut e),
                Message::Enrp(m) => m.encode_body(&mut e),
            }
            .and_then(|()| e.end_message())
        };
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }

    /// The canonical encoding as bytes.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// The protocol of the message.
    pub fn protocol(&self) -> Protocol {
        match self {
            Message::Asap(_) => Protocol::Asap,
            Message::Enrp(_) => Protocol::Enrp,
        }
    }

    /// The on-wire type byte.
    pub fn type_code(&self) -> u8 {
        match self {
            Message::Asap(m) => m.message_type().code(),
            Message::Enrp(m) => m.message_type().code(),
        }
    }

    /// Symbolic name, e.g. `ASAP_REGISTRATION`, `ENRP_HANDLE_TABLE_REQUEST`.
    pub fn name(&self) -> &'static str {
        let n = match self {
            Message::Asap(m) => m.message_type().name(),
            Message::Enrp(m) => m.message_type().name(),
        };
        n.unwrap_or("UNKNOWN")
    }

    /// The name tshark prints, e.g. `ASAP Registration`.
    pub fn tshark_name(&self) -> &'static str {
        let n = match self {
            Message::Asap(m) => m.message_type().tshark_name(),
            Message::Enrp(m) => m.message_type().tshark_name(),
        };
        n.unwrap_or("Unknown")
    }

    fn flags_and_mask(&self) -> (u8, u8) {
        match self {
            Message::Asap(m) => (m.flags(), m.flag_mask()),
            Message::Enrp(m) => (m.flags(), m.flag_mask()),
        }
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Asap(m) => m.serialize(s),
            Message::Enrp(m) => m.serialize(s),
        }
    }
}

impl fmt::Display for Message {
    /// `ASAP_REGISTRATION Pool Handle: EchoPool, PE Identifier: 0x12345678, ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Message::Asap(m) => m.summary(f),
            Message::Enrp(m) => m.summary(f),
        }
    }
}

/// Generates the per-protocol message enum and its dispatch from one list of message
/// structs (each named like its type-code variant).
macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        $Enum:ident, $Type:ident, $Proto:ident, [$($V:ident),* $(,)?]
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $Enum {
            $( #[doc = concat!("See [`", stringify!($V), "`].")] $V($V), )*
        }

        impl $Enum {
            /// The message type.
            pub fn message_type(&self) -> $Type {
                match self { $( $Enum::$V(_) => $Type::$V, )* }
            }

            pub(crate) fn decode_typed(
                t: $Type,
                d: &mut $crate::layout::Dec<'_>,
                flags: u8,
                end: usize,
            ) -> Result<Self, $crate::error::DecodeError> {
                use $crate::message::Body;
                match t {
                    $( $Type::$V => Ok($Enum::$V($V::decode_body(d, flags, 4, end)?)), )*
                    $Type::Unknown(c) => Err($crate::error::DecodeError::UnrecognizedMessage {
                        protocol: $crate::message::Protocol::$Proto,
                        type_code: c,
                        report: false,
                        message: Vec::new(),
                    }),
                }
            }

            pub(crate) fn flags(&self) -> u8 {
                use $crate::message::Body;
                match self { $( $Enum::$V(m) => m.flags(), )* }
            }

            pub(crate) fn flag_mask(&self) -> u8 {
                use $crate::message::Body;
                match self { $( $Enum::$V(_) => <$V as Body>::FLAG_MASK, )* }
            }

            pub(crate) fn encode_body(
                &self,
                e: &mut $crate::layout::Enc<'_>,
            ) -> Result<(), $crate::error::EncodeError> {
                use $crate::message::Body;
                match self { $( $Enum::$V(m) => m.encode_body(e), )* }
            }

            pub(crate) fn summary(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                use $crate::message::Body;
                match self { $( $Enum::$V(m) => m.summary(f), )* }
            }
        }

        impl serde::Serialize for $Enum {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let ty = self.message_type().name().unwrap_or("UNKNOWN");
                match self {
                    $( $Enum::$V(m) => $crate::message::Tagged { ty, body: m }.serialize(s), )*
                }
            }
        }

        $(
            impl From<$V> for $Enum {
                fn from(m: $V) -> Self {
                    $Enum::$V(m)
                }
            }
            impl From<$V> for $crate::message::Message {
                fn from(m: $V) -> Self {
                    $crate::message::Message::$Proto($Enum::$V(m))
                }
            }
        )*
    };
}
pub(crate) use message_enum;
