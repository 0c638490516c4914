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
use super::body::{message_body, p, Fixed};
use super::cause::OperationError;
use super::codes::EnrpType;
use super::error::{DecodeError, EncodeError};
use super::layout::{Dec, Enc};
use super::message::{message_enum, top_children, Body};
use super::param::{PoolElementInfo, PoolHandle, ServerId, ServerInformation};
use super::tlv::{dec_pool_element, dec_pool_handle, enc_pool_element, enc_pool_handle};

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

/// What a truncation error calls the two server IDs.
const SENDER: &str = "sending server's ID";
const RECEIVER: &str = "receiving server's ID";

/// Every ENRP message's table: the two server IDs (RFC 5353 §2) come first among the
/// fixed fields.
macro_rules! enrp_message {
    (
        $(#[$meta:meta])*
        pub struct $T:ident = $name:literal {
            flags { $($flags:tt)* }
            fixed { $($fixed:tt)* }
            params { $($params:tt)* }
        }
        summary($self:ident, $f:ident) $summary:block
    ) => {
        message_body! {
            $(#[$meta])*
            pub struct $T = $name {
                flags { $($flags)* }
                fixed {
                    /// Sending Server's ID.
                    sender: ServerId = SENDER,
                    /// Receiving Server's ID (0 = unknown / multicast).
                    receiver: ServerId = RECEIVER,
                    $($fixed)*
                }
                params { $($params)* }
            }
            summary($self, $f) $summary
        }
    };
}

fn ids_summary(f: &mut fmt::Formatter<'_>, s: ServerId, r: ServerId) -> fmt::Result {
    write!(f, " Sender: 0x{s:08x}, Receiver: 0x{r:08x}")
}

enrp_message! {
    /// ENRP_PRESENCE (0x01, RFC 5353 §2.1). Flag R (0x01): reply required. Parameters:
    /// PE Checksum of the sender's owned PEs, Server Information (optional).
    pub struct Presence = "ENRP_PRESENCE" {
        flags {
            /// R flag: the receiver must answer with a Presence.
            reply_required = 0x01,
        }
        fixed {}
        params {
            /// PE Checksum (RFC 5354 §3.15) over the PEs the sender owns.
            checksum: u16 = one p::PeChecksum,
            /// The sender's ENRP transport.
            #[serde(skip_serializing_if = "Option::is_none")]
            server_information: Option<ServerInformation> = opt p::ServerInfo,
        }
    }
    summary(self, f) {
        ids_summary(f, self.sender, self.receiver)?;
        write!(f, ", PE Checksum: 0x{:04x}", self.checksum)?;
        if self.reply_required {
            f.write_str(", R")?;
        }
        Ok(())
    }
}

enrp_message! {
    /// ENRP_HANDLE_TABLE_REQUEST (0x02, RFC 5353 §2.2). Flag W (0x01): only PEs whose home
    /// is the receiver ("own children only"). No parameters.
    pub struct HandleTableRequest = "ENRP_HANDLE_TABLE_REQUEST" {
        flags {
            /// W flag: own children only.
            own_children_only = 0x01,
        }
        fixed {}
        params {}
    }
    summary(self, f) {
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
    pub pool_elements: Vec<PoolElementInfo>,
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
        // Not a message_body! table: the parameters are repeated groups (a Pool Handle,
        // then its Pool Elements), which slot binding does not express.
        let sender = ServerId::decode(d, start, end, SENDER)?;
        let receiver = ServerId::decode(d, start + 4, end, RECEIVER)?;
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
            reject: flags & 0x01 != 0,
            more: flags & 0x02 != 0,
            sender,
            receiver,
            pools,
        })
    }
    fn flags(&self) -> u8 {
        u8::from(self.reject) | (u8::from(self.more) << 1)
    }
    fn encode_body(&self, e: &mut Enc<'_>) -> Result<(), EncodeError> {
        self.sender.encode(e);
        self.receiver.encode(e);
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
#[non_exhaustive]
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

impl Fixed for UpdateAction {
    const LEN: usize = 2;
    fn decode(d: &Dec<'_>, at: usize, end: usize, what: &'static str) -> Result<Self, DecodeError> {
        Ok(UpdateAction::from_code(d.int_at::<u16>(at, end, what)?))
    }
    fn encode(&self, e: &mut Enc<'_>) {
        e.buf().put_u16(self.code());
    }
}

enrp_message! {
    /// ENRP_HANDLE_UPDATE (0x04, RFC 5353 §2.4). Flag T (0x01): takeover suggested
    /// (draft-dreibholz-rserpool-enrp-takeover, not RFC 5353). Fixed fields: Update Action,
    /// reserved. Parameters: Pool Handle, Pool Element.
    pub struct HandleUpdate = "ENRP_HANDLE_UPDATE" {
        flags {
            /// T flag: takeover suggested.
            takeover_suggested = 0x01,
        }
        fixed {
            /// ADD_PE or DEL_PE.
            action: UpdateAction = "update action",
            /// The reserved 16 bits after the action (sent as 0; kept for round-trip).
            reserved: u16 = "reserved",
        }
        params {
            /// The pool.
            pool_handle: PoolHandle = one p::PoolHandle,
            /// The PE (rsplib includes its ASAP transport).
            pool_element: PoolElementInfo = one p::PoolElement,
        }
    }
    summary(self, f) {
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

enrp_message! {
    /// ENRP_LIST_REQUEST (0x05, RFC 5353 §2.5). No parameters.
    pub struct ListRequest = "ENRP_LIST_REQUEST" {
        flags {}
        fixed {}
        params {}
    }
    summary(self, f) {
        ids_summary(f, self.sender, self.receiver)
    }
}

enrp_message! {
    /// ENRP_LIST_RESPONSE (0x06, RFC 5353 §2.6). Flag R (0x01) reject. Parameters: 0..n
    /// Server Information.
    pub struct ListResponse = "ENRP_LIST_RESPONSE" {
        flags {
            /// R flag: rejected.
            reject = 0x01,
        }
        fixed {}
        params {
            /// The peers the sender knows.
            servers: Vec<ServerInformation> = many(0) p::ServerInfo,
        }
    }
    summary(self, f) {
        ids_summary(f, self.sender, self.receiver)?;
        write!(f, ", {} server(s)", self.servers.len())
    }
}

/// The three takeover messages share one table: the Target Server's ID, no parameters.
macro_rules! takeover {
    ($(#[$m:meta])* $T:ident, $name:literal) => {
        enrp_message! {
            $(#[$m])*
            pub struct $T = $name {
                flags {}
                fixed {
                    /// Target Server's ID: the PR being taken over.
                    target: ServerId = "target server's ID",
                }
                params {}
            }
            summary(self, f) {
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

enrp_message! {
    /// ENRP_ERROR (0x0A, RFC 5353 §2.10). Parameter: Operation Error.
    pub struct Error = "ENRP_ERROR" {
        flags {}
        fixed {}
        params {
            /// The error causes.
            error: OperationError = one p::OpError,
        }
    }
    summary(self, f) {
        ids_summary(f, self.sender, self.receiver)?;
        write!(f, ", Error: {}", self.error)
    }
}
