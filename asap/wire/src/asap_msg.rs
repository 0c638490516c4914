//! ASAP messages (RFC 5352 §2.2), types 0x01–0x0E, with rsplib's extensions.
//!
//! Each struct carries the message's flags and parameters as typed fields, in the order
//! they are sent. Parameters the receiver does not bind to a field (unknown "skip" TLVs,
//! extra known ones) are kept in the [`Layout`](super::Layout) of the decode result.
//!
//! rsplib deviations accepted on input and reproducible on output (asap/wire/INTEROP.md §7):
//! * [`EndpointKeepAlive::pe_identifier`]: rsplib's extra PE Identifier;
//! * [`BusinessCard::policy`]: rsplib's policy TLV before the Pool Elements;
//! * [`HandleResolution::option`]: the Handle Resolution Option 0x803F;
//! * Pool Element registration life in milliseconds, ASAP transport optional (see
//!   [`PoolElementInfo`]).

use std::fmt;

use super::body::{message_body, p};
use super::cause::OperationError;
use super::codes::AsapType;
use super::message::message_enum;
use super::param::{PeIdentifier, PoolElementInfo, PoolHandle, ServerId, TransportParameter};
use super::policy::Policy;
use super::tlv::HandleResolutionOption;
use bytes::BytesMut;

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

message_body! {
    /// ASAP_REGISTRATION (0x01, RFC 5352 §2.2.1): a PE registers (or re-registers) with a PR.
    /// Parameters: Pool Handle, Pool Element.
    pub struct Registration = "ASAP_REGISTRATION" {
        flags {}
        fixed {}
        params {
            /// The pool to join.
            pool_handle: PoolHandle = one p::PoolHandle,
            /// The PE (ID, home PR, life in ms, user transport, policy[, ASAP transport]).
            pool_element: PoolElementInfo = one p::PoolElement,
        }
    }
    summary(self, f) {
        write!(
            f,
            " Pool Handle: {}, {}",
            self.pool_handle,
            PeSummary(&self.pool_element)
        )
    }
}

/// The messages that carry exactly a Pool Handle and a PE Identifier and define no flags
/// share one table.
macro_rules! ph_peid_message {
    ($(#[$m:meta])* $T:ident, $name:literal, $peid_doc:literal) => {
        message_body! {
            $(#[$m])*
            pub struct $T = $name {
                flags {}
                fixed {}
                params {
                    /// The pool.
                    pool_handle: PoolHandle = one p::PoolHandle,
                    #[doc = $peid_doc]
                    pe_identifier: PeIdentifier = one p::PeId,
                }
            }
            summary(self, f) {
                write!(
                    f,
                    " Pool Handle: {}, PE Identifier: 0x{:08x}",
                    self.pool_handle, self.pe_identifier
                )
            }
        }
    };
}

ph_peid_message!(
    /// ASAP_DEREGISTRATION (0x02, RFC 5352 §2.2.2). Parameters: Pool Handle, PE Identifier.
    Deregistration,
    "ASAP_DEREGISTRATION",
    "The PE leaving it."
);

/// Flag R (rejected) of ASAP_REGISTRATION_RESPONSE and ASAP_DEREGISTRATION_RESPONSE
/// (RFC 5352 §2.2.3, §2.2.4), for tools that read a response's header without decoding it.
pub const RESPONSE_REJECT: u8 = 0x01;

/// The two responses share one table (Pool Handle, PE Identifier, optional Operation
/// Error; flag R = rejected).
macro_rules! response_message {
    ($(#[$m:meta])* $T:ident, $name:literal, $err_doc:literal) => {
        message_body! {
            $(#[$m])*
            pub struct $T = $name {
                flags {
                    /// R flag: rejected.
                    reject = RESPONSE_REJECT,
                }
                fixed {}
                params {
                    /// The pool.
                    pool_handle: PoolHandle = one p::PoolHandle,
                    /// The PE.
                    pe_identifier: PeIdentifier = one p::PeId,
                    #[doc = $err_doc]
                    #[serde(skip_serializing_if = "Option::is_none")]
                    error: Option<OperationError> = opt p::OpError,
                }
            }
            summary(self, f) {
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

response_message!(
    /// ASAP_REGISTRATION_RESPONSE (0x03, RFC 5352 §2.2.3). Flag R (0x01) = rejected.
    /// Parameters: Pool Handle, PE Identifier, Operation Error (if rejected).
    RegistrationResponse,
    "ASAP_REGISTRATION_RESPONSE",
    "Why it was rejected."
);

response_message!(
    /// ASAP_DEREGISTRATION_RESPONSE (0x04, RFC 5352 §2.2.4). Flag R (0x01, rsplib's
    /// "deregistration reject") = rejected. Parameters: Pool Handle, PE Identifier,
    /// Operation Error (optional).
    DeregistrationResponse,
    "ASAP_DEREGISTRATION_RESPONSE",
    "Why it failed."
);

message_body! {
    /// ASAP_HANDLE_RESOLUTION (0x05, RFC 5352 §2.2.5). Flag S (0x01): the PU asks for
    /// updates of the pool. Parameters: Pool Handle [, rsplib Handle Resolution Option].
    pub struct HandleResolution = "ASAP_HANDLE_RESOLUTION" {
        flags {
            /// S flag: subscribe to updates.
            subscribe = 0x01,
        }
        fixed {}
        params {
            /// The pool to resolve.
            pool_handle: PoolHandle = one p::PoolHandle,
            /// rsplib's Handle Resolution Option (0x803F): how many PEs are wanted.
            #[serde(skip_serializing_if = "Option::is_none")]
            option: Option<HandleResolutionOption> = opt p::HrOption,
        }
    }
    summary(self, f) {
        write!(f, " Pool Handle: {}", self.pool_handle)?;
        if let Some(o) = &self.option {
            write!(f, ", Items: {}", o.items)?;
        }
        Ok(())
    }
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

/// Flag A (updates accepted) of ASAP_HANDLE_RESOLUTION_RESPONSE (RFC 5352 §2.2.6).
pub const RESOLUTION_ACCEPT_UPDATES: u8 = 0x01;

message_body! {
    /// ASAP_HANDLE_RESOLUTION_RESPONSE (0x06, RFC 5352 §2.2.6). Flag A (0x01): the PR
    /// accepts the update subscription. Parameters: Pool Handle, overall policy (optional),
    /// 0..n Pool Element, Operation Error (on failure).
    pub struct HandleResolutionResponse = "ASAP_HANDLE_RESOLUTION_RESPONSE" {
        flags {
            /// A flag: updates accepted.
            accept_updates = RESOLUTION_ACCEPT_UPDATES,
        }
        fixed {}
        params {
            /// The pool.
            pool_handle: PoolHandle = one p::PoolHandle,
            /// Overall pool policy (rsplib: the first selected PE's policy settings).
            #[serde(skip_serializing_if = "Option::is_none")]
            policy: Option<Policy> = opt p::Policy,
            /// The selected PEs.
            pool_elements: Vec<PoolElementInfo> = many(0) p::PoolElement,
            /// Failure (e.g. Unknown Pool Handle).
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<OperationError> = opt p::OpError,
        }
    }
    summary(self, f) {
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

/// One Pool Element of a resolution answer
/// ([`HandleResolutionResponse::encode_answer`]): a PE, written without its ASAP transport,
/// or its parameter already encoded by
/// [`encode_answer_element`](HandleResolutionResponse::encode_answer_element) (a registrar
/// keeps that with its handlespace entries), copied as it is. Both give the same bytes.
#[derive(Debug, Clone, Copy)]
pub enum AnswerElement<'a> {
    /// A PE, encoded now.
    Element(&'a PoolElementInfo),
    /// A PE's Pool Element parameter, encoded beforehand.
    Encoded(&'a [u8]),
}

impl<'a> From<&'a PoolElementInfo> for AnswerElement<'a> {
    fn from(pe: &'a PoolElementInfo) -> Self {
        AnswerElement::Element(pe)
    }
}

impl<'a> From<&'a [u8]> for AnswerElement<'a> {
    fn from(tlv: &'a [u8]) -> Self {
        AnswerElement::Encoded(tlv)
    }
}

impl HandleResolutionResponse {
    /// Appends the canonical encoding of the successful answer
    /// `HandleResolutionResponse { accept_updates, pool_handle, policy, pool_elements, error:
    /// None }` to `buf` **without building that message**: the PEs are borrowed (a
    /// registrar encodes them straight from its handlespace, or copies each one's
    /// [encoded parameter](AnswerElement::Encoded)) and each is written without its ASAP
    /// transport, as rsplib answers (asap/wire/INTEROP.md §2). Returns the number
    /// of Pool Elements written; on error nothing is appended.
    ///
    /// The bytes are those of [`Message::encode`](crate::Message::encode) of the equivalent
    /// message whose PEs have `asap_transport: None`: the parameters are written in the
    /// table's order above (Pool Handle, policy, Pool Elements) by the same TLV encoders.
    ///
    /// ```
    /// use rserpool_wire::asap_msg::HandleResolutionResponse;
    /// use rserpool_wire::{Message, PoolHandle};
    /// let handle = PoolHandle::from("EchoPool");
    /// let mut fast = bytes::BytesMut::new();
    /// let none: [&rserpool_wire::PoolElementInfo; 0] = [];
    /// let n = HandleResolutionResponse::encode_answer(&mut fast, false, &handle, None, none)
    ///     .unwrap();
    /// assert_eq!(n, 0);
    /// let m: Message = HandleResolutionResponse {
    ///     accept_updates: false,
    ///     pool_handle: handle,
    ///     policy: None,
    ///     pool_elements: Vec::new(),
    ///     error: None,
    /// }
    /// .into();
    /// assert_eq!(&fast[..], &m.to_bytes().unwrap()[..]);
    /// ```
    pub fn encode_answer<'a, E: Into<AnswerElement<'a>>>(
        buf: &mut BytesMut,
        accept_updates: bool,
        pool_handle: &PoolHandle,
        policy: Option<&Policy>,
        pool_elements: impl IntoIterator<Item = E>,
    ) -> Result<usize, crate::EncodeError> {
        Self::write_answer(
            buf,
            accept_updates,
            pool_handle,
            policy,
            pool_elements,
            |e, pe| match pe.into() {
                AnswerElement::Element(pe) => crate::tlv::enc_pool_element_with(e, pe, false),
                AnswerElement::Encoded(tlv) => e.leaf(tlv, "Pool Element"),
            },
        )
    }

    /// Appends the Pool Element parameter of `pe` as a resolution answer carries it
    /// (without the ASAP transport, asap/wire/INTEROP.md §2; with its padding), for
    /// [`AnswerElement::Encoded`]. On error nothing is appended.
    pub fn encode_answer_element(
        pe: &PoolElementInfo,
        buf: &mut BytesMut,
    ) -> Result<(), crate::EncodeError> {
        let start = buf.len();
        let layout = crate::layout::Layout::default();
        let r = crate::tlv::enc_pool_element_with(
            &mut crate::layout::Enc::new(buf, &layout),
            pe,
            false,
        );
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }

    /// The answer's frame: header, Pool Handle, policy, then `write_pe` for each PE, in the
    /// table's order; on error nothing is appended.
    fn write_answer<T>(
        buf: &mut BytesMut,
        accept_updates: bool,
        pool_handle: &PoolHandle,
        policy: Option<&Policy>,
        pool_elements: impl IntoIterator<Item = T>,
        mut write_pe: impl FnMut(&mut crate::layout::Enc<'_>, T) -> Result<(), crate::EncodeError>,
    ) -> Result<usize, crate::EncodeError> {
        use crate::layout::{Enc, Layout};
        use crate::tlv::{enc_policy, enc_pool_handle};
        let start = buf.len();
        let layout = Layout::default();
        let mut e = Enc::new(buf, &layout);
        let flags = if accept_updates {
            RESOLUTION_ACCEPT_UPDATES
        } else {
            0
        };
        let t = AsapType::HandleResolutionResponse;
        e.begin_message(t.code(), flags, t.name().unwrap_or_default());
        let write = || -> Result<usize, crate::EncodeError> {
            enc_pool_handle(&mut e, pool_handle)?;
            if let Some(p) = policy {
                enc_policy(&mut e, p)?;
            }
            let mut written = 0;
            for pe in pool_elements {
                write_pe(&mut e, pe)?;
                written += 1;
            }
            e.end_message()?;
            Ok(written)
        };
        let r = write();
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }
}

message_body! {
    /// ASAP_ENDPOINT_KEEP_ALIVE (0x07, RFC 5352 §2.2.7). Flag H (0x01): the sender wants to
    /// be the PE's (new) home PR. Fixed field: Server Identifier. Parameters: Pool Handle
    /// [, rsplib's extra PE Identifier].
    pub struct EndpointKeepAlive = "ASAP_ENDPOINT_KEEP_ALIVE" {
        flags {
            /// H flag: the sender becomes the PE's home PR.
            home = 0x01,
        }
        fixed {
            /// The sending PR's Server Identifier.
            server_id: ServerId = "server identifier",
        }
        params {
            /// The pool.
            pool_handle: PoolHandle = one p::PoolHandle,
            /// rsplib's "custom" PE Identifier after the Pool Handle (not in RFC 5352).
            #[serde(skip_serializing_if = "Option::is_none")]
            pe_identifier: Option<PeIdentifier> = opt p::PeId,
        }
    }
    summary(self, f) {
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

ph_peid_message!(
    /// ASAP_ENDPOINT_KEEP_ALIVE_ACK (0x08, RFC 5352 §2.2.8). Parameters: Pool Handle,
    /// PE Identifier.
    EndpointKeepAliveAck,
    "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
    "The answering PE."
);

ph_peid_message!(
    /// ASAP_ENDPOINT_UNREACHABLE (0x09, RFC 5352 §2.2.9). Parameters: Pool Handle,
    /// PE Identifier.
    EndpointUnreachable,
    "ASAP_ENDPOINT_UNREACHABLE",
    "The unreachable PE."
);

message_body! {
    /// ASAP_SERVER_ANNOUNCE (0x0A, RFC 5352 §2.2.10). Fixed field: Server Identifier.
    /// Parameters: 0..n transports where the PR can be reached (none: use the datagram's
    /// source address).
    pub struct ServerAnnounce = "ASAP_SERVER_ANNOUNCE" {
        flags {}
        fixed {
            /// The announcing PR's Server Identifier.
            server_id: ServerId = "server identifier",
        }
        params {
            /// Its ASAP transports.
            transports: Vec<TransportParameter> = many(0) p::Transport,
        }
    }
    summary(self, f) {
        write!(
            f,
            " Server Identifier: 0x{:08x}, {} transport(s)",
            self.server_id,
            self.transports.len()
        )
    }
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::layout::hex(v))
}

/// ASAP_COOKIE and ASAP_COOKIE_ECHO share one table: one Cookie parameter.
macro_rules! cookie_message {
    ($(#[$m:meta])* $T:ident, $name:literal, $doc:literal) => {
        message_body! {
            $(#[$m])*
            pub struct $T = $name {
                flags {}
                fixed {}
                params {
                    #[doc = $doc]
                    #[serde(serialize_with = "ser_hex")]
                    cookie: Vec<u8> = one p::Cookie,
                }
            }
            summary(self, f) {
                write!(f, " Cookie: {} bytes", self.cookie.len())
            }
        }
    };
}

cookie_message!(
    /// ASAP_COOKIE (0x0B, RFC 5352 §2.2.11). Parameter: Cookie.
    Cookie,
    "ASAP_COOKIE",
    "The opaque cookie (hex in JSON)."
);
cookie_message!(
    /// ASAP_COOKIE_ECHO (0x0C, RFC 5352 §2.2.12). Parameter: Cookie.
    CookieEcho,
    "ASAP_COOKIE_ECHO",
    "The echoed cookie (hex in JSON)."
);

message_body! {
    /// ASAP_BUSINESS_CARD (0x0D, RFC 5352 §2.2.13). Parameters: Pool Handle, [rsplib:
    /// policy], 1..n Pool Element (the PEs to fail over to).
    pub struct BusinessCard = "ASAP_BUSINESS_CARD" {
        flags {}
        fixed {}
        params {
            /// The pool.
            pool_handle: PoolHandle = one p::PoolHandle,
            /// rsplib's policy TLV before the Pool Elements.
            #[serde(skip_serializing_if = "Option::is_none")]
            policy: Option<Policy> = opt p::Policy,
            /// Failover candidates.
            pool_elements: Vec<PoolElementInfo> = many(1) p::PoolElement,
        }
    }
    summary(self, f) {
        write!(
            f,
            " Pool Handle: {}, {} PE(s)",
            self.pool_handle,
            self.pool_elements.len()
        )
    }
}

message_body! {
    /// ASAP_ERROR (0x0E, RFC 5352 §2.2.14). Parameter: Operation Error.
    pub struct Error = "ASAP_ERROR" {
        flags {}
        fixed {}
        params {
            /// The error causes.
            error: OperationError = one p::OpError,
        }
    }
    summary(self, f) {
        write!(f, " Error: {}", self.error)
    }
}

/// tshark-style one-line summary of a Pool Element.
pub(crate) struct PeSummary<'a>(pub &'a PoolElementInfo);

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
