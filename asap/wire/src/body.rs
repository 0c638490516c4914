//! One table per message: the [`message_body!`] macro turns a message's field table —
//! flag bits, fixed fields, parameters with their cardinality — into the message struct and
//! its [`Body`](crate::message::Body) implementation (decode, flags, encode).
//!
//! Every ASAP (RFC 5352 §2.2) and ENRP (RFC 5353 §2) message has the same shape after the
//! common header (RFC 5354 §4): flag bits in the header's flags byte, zero or more fixed
//! fields (ENRP's Sending and Receiving Server's IDs, a Server Identifier, an Update Action,
//! ...), then parameters (TLVs, RFC 5354 §2) in the order the RFC gives, each mandatory,
//! optional or repeated. The table states exactly that, once per message:
//!
//! ```text
//! message_body! {
//!     /// ASAP_HANDLE_RESOLUTION (0x05, RFC 5352 §2.2.5) ...
//!     pub struct HandleResolution = "ASAP_HANDLE_RESOLUTION" {
//!         flags { /// S flag ...
//!                 subscribe = 0x01 }
//!         fixed { }
//!         params {
//!             /// The pool to resolve.
//!             pool_handle: PoolHandle = one p::PoolHandle,
//!             /// rsplib's Handle Resolution Option (0x803F).
//!             option: Option<HandleResolutionOption> = opt p::HrOption,
//!         }
//!     }
//!     summary(self, f) { ... }
//! }
//! ```
//!
//! * decoding reads the fixed fields in order (their names are the `what` of a
//!   [`DecodeError::Truncated`](crate::DecodeError::Truncated)), binds the TLVs after them to
//!   the parameter slots (`one`, `opt`, `many(min)`; [`bind`](crate::tlv) keeps extra and
//!   unknown TLVs in the layout) and decodes each slot in table order;
//! * encoding writes the fixed fields and then the parameters in the same order;
//! * the struct's fields are, in order, the flags, the fixed fields and the parameters: the
//!   order of the JSON output (`serde::Serialize`).
//!
//! The wire format is the tables' only input, so the bytes are the same as the hand-written
//! decode/encode pairs the macro replaced (the golden vectors, the capture replay and the
//! tshark oracle check it). ENRP_HANDLE_TABLE_RESPONSE, whose parameters are repeated
//! groups (Pool Handle, Pool Elements), keeps a hand-written body.

use bytes::BufMut;

use crate::error::{DecodeError, EncodeError};
use crate::layout::{Child, Dec, Enc};
use crate::tlv::Kind;

/// How one parameter kind is decoded and encoded: `KIND` selects the TLV type(s) the slot
/// accepts (RFC 5354 §3), `Value` is the field's element type.
pub(crate) trait ParamCodec {
    /// The field's element type.
    type Value;
    /// The TLV type(s) the slot binds.
    const KIND: Kind;
    /// Decodes one bound TLV.
    fn decode(d: &mut Dec<'_>, c: &Child) -> Result<Self::Value, DecodeError>;
    /// Encodes one value as its TLV.
    fn encode(e: &mut Enc<'_>, v: &Self::Value) -> Result<(), EncodeError>;
}

/// A fixed field after the common header (and before the TLVs): big-endian, `LEN` bytes.
pub(crate) trait Fixed: Sized {
    /// Bytes on the wire.
    const LEN: usize;
    /// Reads the field at `at`, not beyond `end`; `what` names it in a truncation error.
    fn decode(d: &Dec<'_>, at: usize, end: usize, what: &'static str) -> Result<Self, DecodeError>;
    /// Appends the field.
    fn encode(&self, e: &mut Enc<'_>);
}

/// The integer fixed fields: `u32` (server IDs) and `u16` (reserved words).
macro_rules! fixed_int {
    ($($T:ty: $put:ident;)*) => {$(
        impl Fixed for $T {
            const LEN: usize = std::mem::size_of::<$T>();
            fn decode(
                d: &Dec<'_>,
                at: usize,
                end: usize,
                what: &'static str,
            ) -> Result<Self, DecodeError> {
                d.int_at(at, end, what)
            }
            fn encode(&self, e: &mut Enc<'_>) {
                e.buf().$put(*self);
            }
        }
    )*};
}

fixed_int! {
    u32: put_u32;
    u16: put_u16;
}

/// The parameter kinds of the message tables (marker types for [`ParamCodec`]).
pub(crate) mod p {
    use super::ParamCodec;
    use crate::cause::OperationError;
    use crate::error::{DecodeError, EncodeError};
    use crate::layout::{Child, Dec, Enc};
    use crate::param::{PoolElementInfo as PoolElementValue, PoolHandle as PoolHandleValue};
    use crate::param::{ServerInformation, TransportParameter};
    use crate::policy::Policy as PolicyValue;
    use crate::tlv::{self, HandleResolutionOption, Kind};

    macro_rules! codec {
        ($(#[$m:meta])* $M:ident: $V:ty = $K:ident,
         |$d:ident, $c:ident| $dec:expr, |$e:ident, $v:ident| $enc:expr) => {
            $(#[$m])*
            pub(crate) struct $M;
            impl ParamCodec for $M {
                type Value = $V;
                const KIND: Kind = Kind::$K;
                fn decode($d: &mut Dec<'_>, $c: &Child) -> Result<$V, DecodeError> {
                    $dec
                }
                fn encode($e: &mut Enc<'_>, $v: &$V) -> Result<(), EncodeError> {
                    $enc
                }
            }
        };
    }

    codec!(/// 0x0009 Pool Handle (RFC 5354 §3.9).
        PoolHandle: PoolHandleValue = PoolHandle,
        |d, c| Ok(tlv::dec_pool_handle(d, c)), |e, v| tlv::enc_pool_handle(e, v));
    codec!(/// 0x000A Pool Element (RFC 5354 §3.10).
        PoolElement: PoolElementValue = PoolElement,
        |d, c| tlv::dec_pool_element(d, c), |e, v| tlv::enc_pool_element(e, v));
    codec!(/// 0x000E PE Identifier (RFC 5354 §3.14).
        PeId: u32 = PeId,
        |d, c| tlv::dec_pe_id(d, c), |e, v| tlv::enc_pe_id(e, *v));
    codec!(/// 0x0008 Pool Member Selection Policy (RFC 5354 §3.8, RFC 5356).
        Policy: PolicyValue = Policy,
        |d, c| tlv::dec_policy(d, c), |e, v| tlv::enc_policy(e, v));
    codec!(/// 0x000C Operation Error (RFC 5354 §3.12).
        OpError: OperationError = OpError,
        |d, c| tlv::dec_op_error(d, c), |e, v| tlv::enc_op_error(e, v));
    codec!(/// 0x000D Cookie (RFC 5354 §3.13), opaque bytes.
        Cookie: Vec<u8> = Cookie,
        |d, c| Ok(tlv::dec_bytes(d, c)), |e, v| tlv::enc_cookie(e, v));
    codec!(/// 0x000F PE Checksum (RFC 5354 §3.15).
        PeChecksum: u16 = PeChecksum,
        |d, c| tlv::dec_pe_checksum(d, c), |e, v| tlv::enc_pe_checksum(e, *v));
    codec!(/// 0x000B Server Information (RFC 5354 §3.11).
        ServerInfo: ServerInformation = ServerInfo,
        |d, c| tlv::dec_server_info(d, c), |e, v| tlv::enc_server_info(e, v));
    codec!(/// 0x803F rsplib's Handle Resolution Option.
        HrOption: HandleResolutionOption = HrOption,
        |d, c| tlv::dec_hr_option(d, c), |e, v| tlv::enc_hr_option(e, v));
    codec!(/// Any transport parameter (0x0003–0x0007, 0x0010; RFC 5354 §3.3–§3.7, §3.16).
        Transport: TransportParameter = Transport,
        |d, c| tlv::dec_transport(d, c), |e, v| tlv::enc_transport(e, v));
}

/// Generates a message struct and its `Body` implementation from the message's field table
/// (see the module documentation for the syntax and what it guarantees).
macro_rules! message_body {
    (
        $(#[$meta:meta])*
        pub struct $T:ident = $name:literal {
            flags { $( $(#[$flm:meta])* $flag:ident = $mask:expr ),* $(,)? }
            fixed { $( $(#[$fim:meta])* $fixed:ident : $FTy:ty = $what:expr ),* $(,)? }
            params {
                $( $(#[$pm:meta])* $param:ident : $PTy:ty = $card:ident $(($min:literal))? $C:path ),* $(,)?
            }
        }
        summary($self:ident, $f:ident) $summary:block
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
        pub struct $T {
            $( $(#[$flm])* pub $flag: bool, )*
            $( $(#[$fim])* pub $fixed: $FTy, )*
            $( $(#[$pm])* pub $param: $PTy, )*
        }

        impl $crate::message::Body for $T {
            const FLAG_MASK: u8 = 0 $( | $mask )*;

            #[allow(unused_mut, unused_variables)]
            fn decode_body(
                d: &mut $crate::layout::Dec<'_>,
                flags: u8,
                start: usize,
                end: usize,
            ) -> Result<Self, $crate::error::DecodeError> {
                let mut at = start;
                $(
                    let $fixed = <$FTy as $crate::body::Fixed>::decode(d, at, end, $what)?;
                    at += <$FTy as $crate::body::Fixed>::LEN;
                )*
                let bound = $crate::tlv::bind(
                    d,
                    $crate::message::top_children(at, end),
                    &[ $( $crate::body::message_body!(@slot $card $(($min))? $C) ),* ],
                    $name,
                    0,
                )?;
                let mut slots = bound.slots();
                $( let $param = $crate::body::message_body!(@dec d, slots, $card $C); )*
                Ok($T {
                    $( $flag: (flags & $mask) != 0, )*
                    $( $fixed, )*
                    $( $param, )*
                })
            }

            fn flags(&self) -> u8 {
                0 $( | if self.$flag { $mask } else { 0 } )*
            }

            fn encode_body(
                &self,
                e: &mut $crate::layout::Enc<'_>,
            ) -> Result<(), $crate::error::EncodeError> {
                $( $crate::body::Fixed::encode(&self.$fixed, e); )*
                $( $crate::body::message_body!(@enc e, self.$param, $card $C); )*
                Ok(())
            }

            fn summary(&$self, $f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result $summary
        }
    };

    (@slot one $C:path) => {
        $crate::tlv::Slot::one(<$C as $crate::body::ParamCodec>::KIND)
    };
    (@slot opt $C:path) => {
        $crate::tlv::Slot::opt(<$C as $crate::body::ParamCodec>::KIND)
    };
    (@slot many ($min:literal) $C:path) => {
        $crate::tlv::Slot::many(<$C as $crate::body::ParamCodec>::KIND, $min)
    };

    (@dec $d:ident, $s:ident, one $C:path) => {
        <$C as $crate::body::ParamCodec>::decode($d, $s.one()?)?
    };
    (@dec $d:ident, $s:ident, opt $C:path) => {
        match $s.opt() {
            Some(c) => Some(<$C as $crate::body::ParamCodec>::decode($d, c)?),
            None => None,
        }
    };
    (@dec $d:ident, $s:ident, many $C:path) => {{
        let children = $s.many();
        let mut v = Vec::with_capacity(children.len());
        for c in children {
            v.push(<$C as $crate::body::ParamCodec>::decode($d, c)?);
        }
        v
    }};

    (@enc $e:ident, $v:expr, one $C:path) => {
        <$C as $crate::body::ParamCodec>::encode($e, &$v)?
    };
    (@enc $e:ident, $v:expr, opt $C:path) => {
        if let Some(x) = &$v {
            <$C as $crate::body::ParamCodec>::encode($e, x)?;
        }
    };
    (@enc $e:ident, $v:expr, many $C:path) => {
        for x in &$v {
            <$C as $crate::body::ParamCodec>::encode($e, x)?;
        }
    };
}
pub(crate) use message_body;
