//! ASAP messages (RFC 5352 §2.2), types 0x01–0x0E, with rsplib's extensions.
//!
//! Each struct carries the message's flags and parameters as typed fields, in the order
//! they are sent. Parameters the receiver does not bind to a field (unknown "skip" TLVs,
//! extra known ones) are kept in the [`Layout`](super::Layout) of the decode result.
//!
//! rsplib deviations accepted on input and reproducible on output (RSERPOOL-SPEC §12):
//! * [`EndpointKeepAlive::pe_identifier`]: rsplib's extra PE Identifier;
//! * [`BusinessCard::policy`]: rsplib's policy TLV before the Pool Elements;
//! * [`HandleResolution::option`]: the Handle Resolution Option 0x803F;
//! * Pool Element registration life in milliseconds, ASAP transport optional (see
//!   [`PoolElement`]).

use serde::Serialize;
use std::fmt;

use super::cause::OperationError;
use super::codes::AsapType;
use super::error::{DecodeError, EncodeError};
use super::layout::{Dec, Enc};
use super::message::{message_enum, top_children, Body};
use super::param::{PeIdentifier, PoolElement, PoolHandle, ServerId, TransportParameter};
use super::policy::Policy;
use super::tlv::*;

message_enum! {
    /// An ASAP message (RFC 5352).
    AsapMessage, AsapType, Asap, [
        Registration,
        Deregistration,
        RegistrationResponse,
        DeregistrationResponse,
        HandleResolution,
        HandleResolutionResponse,
        EndpointKeepAlive,
        EndpointKeepAliveAck,
        EndpointUnreachable,
        ServerAnnounce,
        Cookie,
        CookieEcho,
        BusinessCard,
        Error,
    ]
}

fn bit(flags: u8, mask: u8) -> bool {
    flags & mask != 0
}

fn flag(b: bool, mask: u8) -> u8 {
    if b {
        mask
    } else {
        0
    }
}

/// Decodes `PH, PE Identifier` bodies (Deregistration, Keep-Alive Ack, Unreachable).
fn ph_peid(
    d: &mut Dec<'_>,
    start: usize,
    end: usize,
    ctx: &'static str,
) -> Result<(PoolHandle, PeIdentifier), DecodeError> {
    let ch = top_children(start, end);
    let b = bind(
        d,
        ch,
        &[Slot::one(Kind::PoolHandle), Slot::one(Kind::PeId)],
        ctx,
        0,
    )?;
    Ok((dec_pool_handle(d, b.req(0)?), dec_pe_id(d, b.req(1)?)?))
}

fn write_ph_peid(e: &mut Enc<'_>, ph: &PoolHandle, id: PeIdentifier) -> Result<(), EncodeError> {
    enc_pool_handle(e, ph)?;
    enc_pe_id(e, id)
}

fn opt_error(
    d: &mut Dec<'_>,
    c: Option<&super::layout::Child>,
) -> Result<Option<OperationError>, DecodeError> {
    match c {
        Some(c) => Ok(Some(dec_op_error(d, c)?)),
        None => Ok(None),
    }
}

/// ASAP_REGISTRATION (0x01, RFC 5352 §2.2.1): a PE registers (or re-registers) with a PR.
/// Parameters: Pool Handle, Pool Element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// The pool to join.
    pub pool_handle: PoolHandle,
    /// The PE (ID, home PR, life in ms, user transport, policy[, ASAP transport]).
    pub pool_element: PoolElement,
}

impl Body for Registration {
    const FLAG_MASK: u8 = 0;
    fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
        let ch = top_children(start, end);
        let b = bind(
            d,
            ch,
            &[Slot::one(Kind::PoolHandle), Slot::one(Kind::PoolElement)],
            "ASAP_REGISTRATION",
            0,
        )?;
        Ok(Registration {
            pool_handle: dec_pool_handle(d, b.req(0)?),
            pool_element: dec_pool_element(d, b.req(1)?)?,
        })
    }
    fn flags(&self) -> u8 {
        0
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        enc_pool_handle(e, &self.pool_handle)?;
        enc_pool_element(e, &self.pool_element)
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " Pool Handle: {}, {}",
            self.pool_handle,
            PeSummary(&self.pool_element)
        )
    }
}

/// ASAP_DEREGISTRATION (0x02, RFC 5352 §2.2.2). Parameters: Pool Handle, PE Identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deregistration {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The PE leaving it.
    pub pe_identifier: PeIdentifier,
}

/// The messages that carry exactly a Pool Handle and a PE Identifier and define no flags
/// share one implementation.
macro_rules! ph_peid_body {
    ($T:ident, $name:literal) => {
        impl Body for $T {
            const FLAG_MASK: u8 = 0;
            fn decode_body(
                d: &mut Dec<'_>,
                _: u8,
                start: usize,
                end: usize,
            ) -> Result<Self, DecodeError> {
                let (pool_handle, pe_identifier) = ph_peid(d, start, end, $name)?;
                Ok($T {
                    pool_handle,
                    pe_identifier,
                })
            }
            fn flags(&self) -> u8 {
                0
            }
            fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
                write_ph_peid(e, &self.pool_handle, self.pe_identifier)
            }
            fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    " Pool Handle: {}, PE Identifier: 0x{:08x}",
                    self.pool_handle, self.pe_identifier
                )
            }
        }
    };
}

ph_peid_body!(Deregistration, "ASAP_DEREGISTRATION");

/// ASAP_REGISTRATION_RESPONSE (0x03, RFC 5352 §2.2.3). Flag R (0x01) = rejected.
/// Parameters: Pool Handle, PE Identifier, Operation Error (if rejected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationResponse {
    /// R flag: the registration was rejected.
    pub reject: bool,
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The PE.
    pub pe_identifier: PeIdentifier,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
}

/// The two responses share one layout (Pool Handle, PE Identifier, optional Operation
/// Error; flag R = rejected), so one implementation serves both.
macro_rules! response_body {
    ($T:ident, $name:literal) => {
        impl Body for $T {
            const FLAG_MASK: u8 = 0x01;
            fn decode_body(
                d: &mut Dec<'_>,
                flags: u8,
                start: usize,
                end: usize,
            ) -> Result<Self, DecodeError> {
                let ch = top_children(start, end);
                let b = bind(
                    d,
                    ch,
                    &[
                        Slot::one(Kind::PoolHandle),
                        Slot::one(Kind::PeId),
                        Slot::opt(Kind::OpError),
                    ],
                    $name,
                    0,
                )?;
                Ok($T {
                    reject: bit(flags, 0x01),
                    pool_handle: dec_pool_handle(d, b.req(0)?),
                    pe_identifier: dec_pe_id(d, b.req(1)?)?,
                    error: opt_error(d, b.opt(2))?,
                })
            }
            fn flags(&self) -> u8 {
                flag(self.reject, 0x01)
            }
            fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
                write_ph_peid(e, &self.pool_handle, self.pe_identifier)?;
                if let Some(oe) = &self.error {
                    enc_op_error(e, oe)?;
                }
                Ok(())
            }
            fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    " Pool Handle: {}, PE Identifier: 0x{:08x}",
                    self.pool_handle, self.pe_identifier
                )?;
                if self.reject {
                    f.write_str(", Rejected")?;
                }
                if let Some(oe) = &self.error {
                    write!(f, ", Error: {oe}")?;
                }
                Ok(())
            }
        }
    };
}

response_body!(RegistrationResponse, "ASAP_REGISTRATION_RESPONSE");

/// ASAP_DEREGISTRATION_RESPONSE (0x04, RFC 5352 §2.2.4). Flag R (0x01, rsplib's
/// "deregistration reject") = rejected. Parameters: Pool Handle, PE Identifier,
/// Operation Error (optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeregistrationResponse {
    /// R flag: rejected.
    pub reject: bool,
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The PE.
    pub pe_identifier: PeIdentifier,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
}

response_body!(DeregistrationResponse, "ASAP_DEREGISTRATION_RESPONSE");

/// ASAP_HANDLE_RESOLUTION (0x05, RFC 5352 §2.2.5). Flag S (0x01): the PU asks for
/// updates of the pool. Parameters: Pool Handle [, rsplib Handle Resolution Option].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandleResolution {
    /// S flag: subscribe to updates.
    pub subscribe: bool,
    /// The pool to resolve.
    pub pool_handle: PoolHandle,
    /// rsplib's Handle Resolution Option (0x803F): how many PEs are wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub option: Option<HandleResolutionOption>,
}

impl HandleResolution {
    /// A plain resolution request for a pool.
    pub fn new(pool_handle: impl Into<PoolHandle>) -> Self {
        HandleResolution {
            subscribe: false,
            pool_handle: pool_handle.into(),
            option: None,
        }
    }
}

impl Body for HandleResolution {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let ch = top_children(start, end);
        let b = bind(
            d,
            ch,
            &[Slot::one(Kind::PoolHandle), Slot::opt(Kind::HrOption)],
            "ASAP_HANDLE_RESOLUTION",
            0,
        )?;
        Ok(HandleResolution {
            subscribe: bit(flags, 0x01),
            pool_handle: dec_pool_handle(d, b.req(0)?),
            option: match b.opt(1) {
                Some(c) => Some(dec_hr_option(d, c)?),
                None => None,
            },
        })
    }
    fn flags(&self) -> u8 {
        flag(self.subscribe, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        enc_pool_handle(e, &self.pool_handle)?;
        if let Some(o) = &self.option {
            enc_hr_option(e, o)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " Pool Handle: {}", self.pool_handle)?;
        if let Some(o) = &self.option {
            write!(f, ", Items: {}", o.items)?;
        }
        Ok(())
    }
}

/// ASAP_HANDLE_RESOLUTION_RESPONSE (0x06, RFC 5352 §2.2.6). Flag A (0x01): the PR
/// accepts the update subscription. Parameters: Pool Handle, overall policy (optional),
/// 0..n Pool Element, Operation Error (on failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandleResolutionResponse {
    /// A flag: updates accepted.
    pub accept_updates: bool,
    /// The pool.
    pub pool_handle: PoolHandle,
    /// Overall pool policy (rsplib: the first selected PE's policy settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The selected PEs.
    pub pool_elements: Vec<PoolElement>,
    /// Failure (e.g. Unknown Pool Handle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
}

impl Body for HandleResolutionResponse {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let ch = top_children(start, end);
        let b = bind(
            d,
            ch,
            &[
                Slot::one(Kind::PoolHandle),
                Slot::opt(Kind::Policy),
                Slot::many(Kind::PoolElement, 0),
                Slot::opt(Kind::OpError),
            ],
            "ASAP_HANDLE_RESOLUTION_RESPONSE",
            0,
        )?;
        let policy = match b.opt(1) {
            Some(c) => Some(dec_policy(d, c)?),
            None => None,
        };
        let mut pool_elements = Vec::with_capacity(b.many().len());
        for c in b.many() {
            pool_elements.push(dec_pool_element(d, c)?);
        }
        Ok(HandleResolutionResponse {
            accept_updates: bit(flags, 0x01),
            pool_handle: dec_pool_handle(d, b.req(0)?),
            policy,
            pool_elements,
            error: opt_error(d, b.opt(3))?,
        })
    }
    fn flags(&self) -> u8 {
        flag(self.accept_updates, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        enc_pool_handle(e, &self.pool_handle)?;
        if let Some(p) = &self.policy {
            enc_policy(e, p)?;
        }
        for pe in &self.pool_elements {
            enc_pool_element(e, pe)?;
        }
        if let Some(oe) = &self.error {
            enc_op_error(e, oe)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " Pool Handle: {}, {} PE(s)",
            self.pool_handle,
            self.pool_elements.len()
        )?;
        for pe in &self.pool_elements {
            write!(f, ", 0x{:08x}", pe.id)?;
        }
        if let Some(oe) = &self.error {
            write!(f, ", Error: {oe}")?;
        }
        Ok(())
    }
}

/// ASAP_ENDPOINT_KEEP_ALIVE (0x07, RFC 5352 §2.2.7). Flag H (0x01): the sender wants to
/// be the PE's (new) home PR. Fixed field: Server Identifier. Parameters: Pool Handle
/// [, rsplib's extra PE Identifier].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointKeepAlive {
    /// H flag: the sender becomes the PE's home PR.
    pub home: bool,
    /// The sending PR's Server Identifier.
    pub server_id: ServerId,
    /// The pool.
    pub pool_handle: PoolHandle,
    /// rsplib's "custom" PE Identifier after the Pool Handle (not in RFC 5352).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pe_identifier: Option<PeIdentifier>,
}

impl Body for EndpointKeepAlive {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let server_id = d.u32_at(start, end, "server identifier")?;
        let ch = top_children(start + 4, end);
        let b = bind(
            d,
            ch,
            &[Slot::one(Kind::PoolHandle), Slot::opt(Kind::PeId)],
            "ASAP_ENDPOINT_KEEP_ALIVE",
            0,
        )?;
        Ok(EndpointKeepAlive {
            home: bit(flags, 0x01),
            server_id,
            pool_handle: dec_pool_handle(d, b.req(0)?),
            pe_identifier: match b.opt(1) {
                Some(c) => Some(dec_pe_id(d, c)?),
                None => None,
            },
        })
    }
    fn flags(&self) -> u8 {
        flag(self.home, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        bytes::BufMut::put_u32(e.buf(), self.server_id);
        enc_pool_handle(e, &self.pool_handle)?;
        if let Some(id) = self.pe_identifier {
            enc_pe_id(e, id)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " Server Identifier: 0x{:08x}, Pool Handle: {}",
            self.server_id, self.pool_handle
        )?;
        if let Some(id) = self.pe_identifier {
            write!(f, ", PE Identifier: 0x{id:08x}")?;
        }
        if self.home {
            f.write_str(", H")?;
        }
        Ok(())
    }
}

/// ASAP_ENDPOINT_KEEP_ALIVE_ACK (0x08, RFC 5352 §2.2.8). Parameters: Pool Handle,
/// PE Identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointKeepAliveAck {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The answering PE.
    pub pe_identifier: PeIdentifier,
}

ph_peid_body!(EndpointKeepAliveAck, "ASAP_ENDPOINT_KEEP_ALIVE_ACK");

/// ASAP_ENDPOINT_UNREACHABLE (0x09, RFC 5352 §2.2.9). Parameters: Pool Handle,
/// PE Identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointUnreachable {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The unreachable PE.
    pub pe_identifier: PeIdentifier,
}

ph_peid_body!(EndpointUnreachable, "ASAP_ENDPOINT_UNREACHABLE");

/// ASAP_SERVER_ANNOUNCE (0x0A, RFC 5352 §2.2.10). Fixed field: Server Identifier.
/// Parameters: 0..n transports where the PR can be reached (none: use the datagram's
/// source address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerAnnounce {
    /// The announcing PR's Server Identifier.
    pub server_id: ServerId,
    /// Its ASAP transports.
    pub transports: Vec<TransportParameter>,
}

impl Body for ServerAnnounce {
    const FLAG_MASK: u8 = 0;
    fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
        let server_id = d.u32_at(start, end, "server identifier")?;
        let ch = top_children(start + 4, end);
        let b = bind(
            d,
            ch,
            &[Slot::many(Kind::Transport, 0)],
            "ASAP_SERVER_ANNOUNCE",
            0,
        )?;
        let mut transports = Vec::with_capacity(b.many().len());
        for c in b.many() {
            transports.push(dec_transport(d, c)?);
        }
        Ok(ServerAnnounce {
            server_id,
            transports,
        })
    }
    fn flags(&self) -> u8 {
        0
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        bytes::BufMut::put_u32(e.buf(), self.server_id);
        for t in &self.transports {
            enc_transport(e, t)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " Server Identifier: 0x{:08x}, {} transport(s)",
            self.server_id,
            self.transports.len()
        )
    }
}

/// ASAP_COOKIE (0x0B, RFC 5352 §2.2.11). Parameter: Cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cookie {
    /// The opaque cookie (hex in JSON).
    #[serde(serialize_with = "ser_hex")]
    pub cookie: Vec<u8>,
}

/// ASAP_COOKIE_ECHO (0x0C, RFC 5352 §2.2.12). Parameter: Cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CookieEcho {
    /// The echoed cookie (hex in JSON).
    #[serde(serialize_with = "ser_hex")]
    pub cookie: Vec<u8>,
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::layout::hex(v))
}

macro_rules! cookie_body {
    ($T:ident, $name:literal) => {
        impl Body for $T {
            const FLAG_MASK: u8 = 0;
            fn decode_body(
                d: &mut Dec<'_>,
                _: u8,
                start: usize,
                end: usize,
            ) -> Result<Self, DecodeError> {
                let ch = top_children(start, end);
                let b = bind(d, ch, &[Slot::one(Kind::Cookie)], $name, 0)?;
                Ok($T {
                    cookie: dec_bytes(d, b.req(0)?),
                })
            }
            fn flags(&self) -> u8 {
                0
            }
            fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
                enc_cookie(e, &self.cookie)
            }
            fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, " Cookie: {} bytes", self.cookie.len())
            }
        }
    };
}
cookie_body!(Cookie, "ASAP_COOKIE");
cookie_body!(CookieEcho, "ASAP_COOKIE_ECHO");

/// ASAP_BUSINESS_CARD (0x0D, RFC 5352 §2.2.13). Parameters: Pool Handle, [rsplib:
/// policy], 1..n Pool Element (the PEs to fail over to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BusinessCard {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// rsplib's policy TLV before the Pool Elements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Failover candidates.
    pub pool_elements: Vec<PoolElement>,
}

impl Body for BusinessCard {
    const FLAG_MASK: u8 = 0;
    fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
        let ch = top_children(start, end);
        let b = bind(
            d,
            ch,
            &[
                Slot::one(Kind::PoolHandle),
                Slot::opt(Kind::Policy),
                Slot::many(Kind::PoolElement, 1),
            ],
            "ASAP_BUSINESS_CARD",
            0,
        )?;
        let policy = match b.opt(1) {
            Some(c) => Some(dec_policy(d, c)?),
            None => None,
        };
        let mut pool_elements = Vec::with_capacity(b.many().len());
        for c in b.many() {
            pool_elements.push(dec_pool_element(d, c)?);
        }
        Ok(BusinessCard {
            pool_handle: dec_pool_handle(d, b.req(0)?),
            policy,
            pool_elements,
        })
    }
    fn flags(&self) -> u8 {
        0
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        enc_pool_handle(e, &self.pool_handle)?;
        if let Some(p) = &self.policy {
            enc_policy(e, p)?;
        }
        for pe in &self.pool_elements {
            enc_pool_element(e, pe)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " Pool Handle: {}, {} PE(s)",
            self.pool_handle,
            self.pool_elements.len()
        )
    }
}

/// ASAP_ERROR (0x0E, RFC 5352 §2.2.14). Parameter: Operation Error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Error {
    /// The error causes.
    pub error: OperationError,
}

impl Body for Error {
    const FLAG_MASK: u8 = 0;
    fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
        let ch = top_children(start, end);
        let b = bind(d, ch, &[Slot::one(Kind::OpError)], "ASAP_ERROR", 0)?;
        Ok(Error {
            error: dec_op_error(d, b.req(0)?)?,
        })
    }
    fn flags(&self) -> u8 {
        0
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        enc_op_error(e, &self.error)
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " Error: {}", self.error)
    }
}

/// tshark-style one-line summary of a Pool Element.
pub(crate) struct PeSummary<'a>(pub &'a PoolElement);

impl fmt::Display for PeSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pe = self.0;
        write!(
            f,
            "PE Identifier: 0x{:08x}, Home ENRP Server Identifier: 0x{:08x}, Registration Life: {} ms, Policy: {}",
            pe.id,
            pe.home_server_id,
            pe.registration_life,
            pe.policy.known_type().map_or("Unknown", |t| t.tshark_name())
        )?;
        for a in pe.user_transport.addresses() {
            write!(f, ", {a}")?;
        }
        if let Some(p) = pe.user_transport.port() {
            write!(f, " port {p}")?;
        }
        Ok(())
    }
}
