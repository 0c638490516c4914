//! ENRP messages (RFC 5353 §2), types 0x01–0x0A.
//!
//! Every ENRP message starts, after the common header, with the Sending Server's ID and the
//! Receiving Server's ID (0 = not known / all, used for multicast):
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Flags     |        Message Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Sending Server's ID                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Receiving Server's ID                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \          message-specific fixed fields and parameters         \
//! ```

use bytes::BufMut;
use serde::Serialize;
use std::fmt;

use super::asap_msg::PeSummary;
use super::cause::OperationError;
use super::codes::EnrpType;
use super::error::{DecodeError, EncodeError};
use super::layout::{Dec, Enc};
use super::message::{message_enum, top_children, Body};
use super::param::{PoolElement, PoolHandle, ServerId, ServerInformation};
use super::tlv::*;

message_enum! {
    /// An ENRP message (RFC 5353).
    EnrpMessage, EnrpType, Enrp, [
        Presence,
        HandleTableRequest,
        HandleTableResponse,
        HandleUpdate,
        ListRequest,
        ListResponse,
        InitTakeover,
        InitTakeoverAck,
        TakeoverServer,
        Error,
    ]
}

impl EnrpMessage {
    /// The Sending Server's ID.
    pub fn sender(&self) -> ServerId {
        self.ids().0
    }
    /// The Receiving Server's ID (0 = unknown / multicast).
    pub fn receiver(&self) -> ServerId {
        self.ids().1
    }
    fn ids(&self) -> (ServerId, ServerId) {
        match self {
            EnrpMessage::Presence(m) => (m.sender, m.receiver),
            EnrpMessage::HandleTableRequest(m) => (m.sender, m.receiver),
            EnrpMessage::HandleTableResponse(m) => (m.sender, m.receiver),
            EnrpMessage::HandleUpdate(m) => (m.sender, m.receiver),
            EnrpMessage::ListRequest(m) => (m.sender, m.receiver),
            EnrpMessage::ListResponse(m) => (m.sender, m.receiver),
            EnrpMessage::InitTakeover(m) => (m.sender, m.receiver),
            EnrpMessage::InitTakeoverAck(m) => (m.sender, m.receiver),
            EnrpMessage::TakeoverServer(m) => (m.sender, m.receiver),
            EnrpMessage::Error(m) => (m.sender, m.receiver),
        }
    }
}

fn ids(d: &Dec<'_>, start: usize, end: usize) -> Result<(ServerId, ServerId), DecodeError> {
    Ok((
        d.u32_at(start, end, "sending server's ID")?,
        d.u32_at(start + 4, end, "receiving server's ID")?,
    ))
}

fn put_ids(e: &mut Enc<'_>, s: ServerId, r: ServerId) {
    e.buf().put_u32(s);
    e.buf().put_u32(r);
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

fn ids_summary(f: &mut fmt::Formatter<'_>, s: ServerId, r: ServerId) -> fmt::Result {
    write!(f, " Sender: 0x{s:08x}, Receiver: 0x{r:08x}")
}

/// ENRP_PRESENCE (0x01, RFC 5353 §2.1). Flag R (0x01): reply required. Parameters:
/// PE Checksum of the sender's owned PEs, Server Information (optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    /// R flag: the receiver must answer with a Presence.
    pub reply_required: bool,
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID (0 = multicast).
    pub receiver: ServerId,
    /// PE Checksum (RFC 5354 §3.15) over the PEs the sender owns.
    pub checksum: u16,
    /// The sender's ENRP transport.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_information: Option<ServerInformation>,
}

impl Body for Presence {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let ch = top_children(start + 8, end);
        let b = bind(
            d,
            ch,
            &[Slot::one(Kind::PeChecksum), Slot::opt(Kind::ServerInfo)],
            "ENRP_PRESENCE",
            0,
        )?;
        Ok(Presence {
            reply_required: bit(flags, 0x01),
            sender,
            receiver,
            checksum: dec_pe_checksum(d, b.req(0)?)?,
            server_information: match b.opt(1) {
                Some(c) => Some(dec_server_info(d, c)?),
                None => None,
            },
        })
    }
    fn flags(&self) -> u8 {
        flag(self.reply_required, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        enc_pe_checksum(e, self.checksum)?;
        if let Some(si) = &self.server_information {
            enc_server_info(e, si)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)?;
        write!(f, ", PE Checksum: 0x{:04x}", self.checksum)?;
        if self.reply_required {
            f.write_str(", R")?;
        }
        Ok(())
    }
}

/// ENRP_HANDLE_TABLE_REQUEST (0x02, RFC 5353 §2.2). Flag W (0x01): only PEs whose home
/// is the receiver ("own children only"). No parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandleTableRequest {
    /// W flag: own children only.
    pub own_children_only: bool,
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID.
    pub receiver: ServerId,
}

impl Body for HandleTableRequest {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let ch = top_children(start + 8, end);
        bind(d, ch, &[], "ENRP_HANDLE_TABLE_REQUEST", 0)?;
        Ok(HandleTableRequest {
            own_children_only: bit(flags, 0x01),
            sender,
            receiver,
        })
    }
    fn flags(&self) -> u8 {
        flag(self.own_children_only, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)?;
        if self.own_children_only {
            f.write_str(", W")?;
        }
        Ok(())
    }
}

/// One pool in a Handle Table Response: a Pool Handle followed by its Pool Elements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolEntry {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// Its PEs (rsplib includes each PE's ASAP transport).
    pub pool_elements: Vec<PoolElement>,
}

/// ENRP_HANDLE_TABLE_RESPONSE (0x03, RFC 5353 §2.3). Flags R (0x01) reject, M (0x02)
/// more to send. Parameters: repeated (Pool Handle, 1..n Pool Element).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandleTableResponse {
    /// R flag: rejected.
    pub reject: bool,
    /// M flag: more entries follow (ask again).
    pub more: bool,
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID.
    pub receiver: ServerId,
    /// The pools.
    pub pools: Vec<PoolEntry>,
}

impl Body for HandleTableResponse {
    const FLAG_MASK: u8 = 0x03;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let mut ch = top_children(start + 8, end);
        let mut pools: Vec<PoolEntry> = Vec::new();
        while let Some(c) = ch.next(d)? {
            let c = &c;
            match c.param() {
                super::codes::ParamType::PoolHandle => pools.push(PoolEntry {
                    pool_handle: dec_pool_handle(d, c),
                    pool_elements: Vec::new(),
                }),
                super::codes::ParamType::PoolElement if !pools.is_empty() => {
                    let pe = dec_pool_element(d, c)?;
                    if let Some(p) = pools.last_mut() {
                        p.pool_elements.push(pe);
                    }
                }
                _ => d.extra(c)?,
            }
        }
        Ok(HandleTableResponse {
            reject: bit(flags, 0x01),
            more: bit(flags, 0x02),
            sender,
            receiver,
            pools,
        })
    }
    fn flags(&self) -> u8 {
        flag(self.reject, 0x01) | flag(self.more, 0x02)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        for p in &self.pools {
            enc_pool_handle(e, &p.pool_handle)?;
            for pe in &p.pool_elements {
                enc_pool_element(e, pe)?;
            }
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)?;
        let n: usize = self.pools.iter().map(|p| p.pool_elements.len()).sum();
        write!(f, ", {} pool(s), {} PE(s)", self.pools.len(), n)?;
        if self.reject {
            f.write_str(", R")?;
        }
        if self.more {
            f.write_str(", M")?;
        }
        Ok(())
    }
}

/// Update Action of a Handle Update (RFC 5353 §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum UpdateAction {
    /// 0: ADD_PE.
    AddPe,
    /// 1: DEL_PE.
    DelPe,
    /// Any other value, kept for round-trip.
    Other(u16),
}

impl UpdateAction {
    /// The 16-bit wire value.
    pub fn code(self) -> u16 {
        match self {
            UpdateAction::AddPe => 0,
            UpdateAction::DelPe => 1,
            UpdateAction::Other(v) => v,
        }
    }
    /// Decodes the 16-bit wire value.
    pub fn from_code(v: u16) -> Self {
        match v {
            0 => UpdateAction::AddPe,
            1 => UpdateAction::DelPe,
            v => UpdateAction::Other(v),
        }
    }
}

/// ENRP_HANDLE_UPDATE (0x04, RFC 5353 §2.4). Flag T (0x01): takeover suggested
/// (draft-dreibholz-rserpool-enrp-takeover, not RFC 5353). Fixed fields: Update Action,
/// reserved. Parameters: Pool Handle, Pool Element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandleUpdate {
    /// T flag: takeover suggested.
    pub takeover_suggested: bool,
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID.
    pub receiver: ServerId,
    /// ADD_PE or DEL_PE.
    pub action: UpdateAction,
    /// The reserved 16 bits after the action (sent as 0; kept for round-trip).
    pub reserved: u16,
    /// The pool.
    pub pool_handle: PoolHandle,
    /// The PE (rsplib includes its ASAP transport).
    pub pool_element: PoolElement,
}

impl Body for HandleUpdate {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let action = UpdateAction::from_code(d.u16_at(start + 8, end, "update action")?);
        let reserved = d.u16_at(start + 10, end, "reserved")?;
        let ch = top_children(start + 12, end);
        let b = bind(
            d,
            ch,
            &[Slot::one(Kind::PoolHandle), Slot::one(Kind::PoolElement)],
            "ENRP_HANDLE_UPDATE",
            0,
        )?;
        Ok(HandleUpdate {
            takeover_suggested: bit(flags, 0x01),
            sender,
            receiver,
            action,
            reserved,
            pool_handle: dec_pool_handle(d, b.req(0)?),
            pool_element: dec_pool_element(d, b.req(1)?)?,
        })
    }
    fn flags(&self) -> u8 {
        flag(self.takeover_suggested, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        e.buf().put_u16(self.action.code());
        e.buf().put_u16(self.reserved);
        enc_pool_handle(e, &self.pool_handle)?;
        enc_pool_element(e, &self.pool_element)
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)?;
        let a = match self.action {
            UpdateAction::AddPe => "ADD_PE".to_string(),
            UpdateAction::DelPe => "DEL_PE".to_string(),
            UpdateAction::Other(v) => format!("0x{v:04x}"),
        };
        write!(
            f,
            ", Action: {a}, Pool Handle: {}, {}",
            self.pool_handle,
            PeSummary(&self.pool_element)
        )
    }
}

/// ENRP_LIST_REQUEST (0x05, RFC 5353 §2.5). No parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListRequest {
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID.
    pub receiver: ServerId,
}

impl Body for ListRequest {
    const FLAG_MASK: u8 = 0;
    fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let ch = top_children(start + 8, end);
        bind(d, ch, &[], "ENRP_LIST_REQUEST", 0)?;
        Ok(ListRequest { sender, receiver })
    }
    fn flags(&self) -> u8 {
        0
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)
    }
}

/// ENRP_LIST_RESPONSE (0x06, RFC 5353 §2.6). Flag R (0x01) reject. Parameters: 0..n
/// Server Information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListResponse {
    /// R flag: rejected.
    pub reject: bool,
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID.
    pub receiver: ServerId,
    /// The peers the sender knows.
    pub servers: Vec<ServerInformation>,
}

impl Body for ListResponse {
    const FLAG_MASK: u8 = 0x01;
    fn decode_body(
        d: &mut Dec<'_>,
        flags: u8,
        start: usize,
        end: usize,
    ) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let ch = top_children(start + 8, end);
        let b = bind(
            d,
            ch,
            &[Slot::many(Kind::ServerInfo, 0)],
            "ENRP_LIST_RESPONSE",
            0,
        )?;
        let mut servers = Vec::with_capacity(b.many().len());
        for c in b.many() {
            servers.push(dec_server_info(d, c)?);
        }
        Ok(ListResponse {
            reject: bit(flags, 0x01),
            sender,
            receiver,
            servers,
        })
    }
    fn flags(&self) -> u8 {
        flag(self.reject, 0x01)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        for s in &self.servers {
            enc_server_info(e, s)?;
        }
        Ok(())
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)?;
        write!(f, ", {} server(s)", self.servers.len())
    }
}

macro_rules! takeover {
    ($(#[$m:meta])* $T:ident, $name:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        pub struct $T {
            /// Sending Server's ID.
            pub sender: ServerId,
            /// Receiving Server's ID.
            pub receiver: ServerId,
            /// Target Server's ID: the PR being taken over.
            pub target: ServerId,
        }

        impl Body for $T {
            const FLAG_MASK: u8 = 0;
            fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
                let (sender, receiver) = ids(d, start, end)?;
                let target = d.u32_at(start + 8, end, "target server's ID")?;
                let ch = top_children(start + 12, end);
                bind(d, ch, &[], $name, 0)?;
                Ok($T { sender, receiver, target })
            }
            fn flags(&self) -> u8 {
                0
            }
            fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
                put_ids(e, self.sender, self.receiver);
                e.buf().put_u32(self.target);
                Ok(())
            }
            fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                ids_summary(f, self.sender, self.receiver)?;
                write!(f, ", Target: 0x{:08x}", self.target)
            }
        }
    };
}

takeover!(
    /// ENRP_INIT_TAKEOVER (0x07, RFC 5353 §2.7). Fixed field: Target Server's ID.
    InitTakeover,
    "ENRP_INIT_TAKEOVER"
);
takeover!(
    /// ENRP_INIT_TAKEOVER_ACK (0x08, RFC 5353 §2.8). Fixed field: Target Server's ID.
    InitTakeoverAck,
    "ENRP_INIT_TAKEOVER_ACK"
);
takeover!(
    /// ENRP_TAKEOVER_SERVER (0x09, RFC 5353 §2.9). Fixed field: Target Server's ID.
    TakeoverServer,
    "ENRP_TAKEOVER_SERVER"
);

/// ENRP_ERROR (0x0A, RFC 5353 §2.10). Parameter: Operation Error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Error {
    /// Sending Server's ID.
    pub sender: ServerId,
    /// Receiving Server's ID.
    pub receiver: ServerId,
    /// The error causes.
    pub error: OperationError,
}

impl Body for Error {
    const FLAG_MASK: u8 = 0;
    fn decode_body(d: &mut Dec<'_>, _: u8, start: usize, end: usize) -> Result<Self, DecodeError> {
        let (sender, receiver) = ids(d, start, end)?;
        let ch = top_children(start + 8, end);
        let b = bind(d, ch, &[Slot::one(Kind::OpError)], "ENRP_ERROR", 0)?;
        Ok(Error {
            sender,
            receiver,
            error: dec_op_error(d, b.req(0)?)?,
        })
    }
    fn flags(&self) -> u8 {
        0
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        put_ids(e, self.sender, self.receiver);
        enc_op_error(e, &self.error)
    }
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ids_summary(f, self.sender, self.receiver)?;
        write!(f, ", Error: {}", self.error)
    }
}
