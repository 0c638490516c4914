//! The RSerPool wire codec: every ASAP (RFC 5352) and ENRP (RFC 5353) message and every
//! parameter of RFC 5354 and RFC 5356, with rsplib's deviations.
//!
//! * [`codes`]: the one table per code space (message types, parameter types, causes).
//! * [`param`], [`policy`]: the shared data model of parameters and policies.
//! * [`asap_msg`], [`enrp_msg`]: one struct per message; [`Message`] wraps both.
//! * [`Message::decode`] / [`Message::encode`]: nom 8 parsers and `bytes` encoders;
//!   [`Decoded::layout`] makes re-encoding byte-exact (unknown TLVs, padding choices).
//!
//! ```
//! use rserpool_wire::{asap_msg::HandleResolution, Message, Protocol};
//! let m: Message = HandleResolution::new("EchoPool").into();
//! let bytes = m.to_bytes().unwrap();
//! assert_eq!(&bytes[..8], &[0x05, 0x00, 0x00, 0x10, 0x00, 0x09, 0x00, 0x0C]);
//! let d = Message::decode(Protocol::Asap, &bytes).unwrap();
//! assert_eq!(d.message, m);
//! assert_eq!(d.consumed, 16);
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "arbitrary")]
pub mod arbitrary;
pub mod asap_msg;
mod body;
pub mod cause;
pub mod codes;
pub mod csp;
pub mod enrp_msg;
pub mod error;
pub mod header;
pub mod layout;
pub mod message;
pub mod param;
pub mod policy;
pub mod tlv;

pub use asap_msg::AsapMessage;
pub use cause::{ErrorCause, OperationError};
pub use codes::{AsapType, CauseCode, EnrpType, ParamAction, ParamType};
pub use enrp_msg::EnrpMessage;
pub use enrp_msg::{PoolEntry, UpdateAction};
pub use error::{DecodeError, EncodeError, Warning};
pub use layout::{Layout, Quirk, QuirkKind, RawTlv};
pub use message::{Decoded, Message, Protocol};
pub use param::*;
pub use policy::*;
pub use tlv::{transport_param_type, HandleResolutionOption, Parameter};
