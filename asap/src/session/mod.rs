//! The session layer (RFC 5351 §2.5; RFC 5352 §3): a pool user talks to "the pool"
//! rather than to one server. [`Session`] picks a PE by the pool's policy, and when that PE
//! fails (connect error, association loss, reply timeout) reports it unreachable and moves
//! to another PE transparently, echoing the last ASAP_COOKIE the old PE sent
//! (ASAP_COOKIE_ECHO) so the new PE can take over the state, and preferring the PEs of the
//! last ASAP_BUSINESS_CARD. The PE side is [`SessionListener`] / [`ServerSession`].
//!
//! ## Control and data on one association
//!
//! The user transport of a PE registered with Transport Use *data plus control*
//! (RFC 5354 §3.3) carries both application data and ASAP session messages (COOKIE,
//! COOKIE_ECHO, BUSINESS_CARD). They are told apart as follows:
//!
//! * **SCTP**: by PPID — ASAP control messages use PPID 11, application data the configured
//!   [`SessionConfig::data_ppid`] (default 0; 11 and 12 are refused). This is RFC 5352 §6.
//! * **TCP** (no PPID on the wire): every message on the connection is framed with the
//!   RSerPool common header (the [`crate::transport`] TCP framing). ASAP control messages are
//!   sent as they are. Application data is wrapped in a *data frame*: Message Type
//!   [`TCP_DATA_FRAME_TYPE`] (0x30), flags 0, Message Length = 8 + payload length, then the
//!   32-bit data PPID, then the payload, zero-padded to a multiple of 4. A receiver tells the
//!   two apart by the first byte; ASAP defines no type 0x30, and its top bits `00` make an
//!   unaware ASAP receiver discard it silently (RFC 5354 §4). One data message carries at
//!   most [`MAX_TCP_DATA`] bytes. RFC 5354 says TCP transports are data only; like rsplib
//!   (asap/wire/INTEROP.md §7 item 4) we announce *data plus control* in the TCP transport's
//!   second word when the session layer is used. This is this crate's rule — the TCP mapping
//!   draft's shim header could not be verified (asap/wire/INTEROP.md §6).
//!
//! ## Request/response: [`Session::request`]
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use asap::pu::PoolUser;
//! let mut s = PoolUser::builder("EchoPool").registrar("127.0.0.1:3863").connect().await?;
//! let one = s.request("ping").await?;                       // re-sent after a failover
//! let many = s.request_pipelined(["a".into(), "b".into()]).await?; // replies in order
//! # let _ = (one, many); Ok(()) }
//! ```
//!
//! The request calls pair each reply with its request by order and re-send what the failed
//! PE left unanswered: **at least once**. See [`request`] — ids for
//! idempotency, state in the cookie (`examples/counter_pe.rs`). A session that cannot
//! continue ends with [`SessionEvent::Failed`] carrying a typed [`SessionFailure`]
//! (the request calls return its [`SessionError`]).
//!
//! ## Data across a failover with `send`/`recv`
//!
//! With [`Session::send`]/[`Session::recv`] the session never re-sends application data by
//! itself: it cannot know which messages the failed PE processed. Every [`Session::send`]
//! returns the message's index (0, 1, 2, …);
//! the [`Failover`] event carries [`Failover::resend_from`], the index of the first message
//! that went to the new PE. Messages with a smaller index that got no reply may be lost and
//! should be sent again by the application (the echo tests do exactly this and check by
//! sequence numbers that no message is lost or duplicated).

mod client;
pub mod request;
mod server;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

pub use client::{Failover, FailoverReason, Session, SessionEvent};
pub use request::SessionFailure;
pub use server::{
    ServerEvent, ServerSession, ServerSessionReader, ServerSessionWriter, SessionListener,
};

use crate::transport::{defaults, Msg, TransportError, TransportKind};
use crate::wire::{AsapMessage, Message, PeIdentifier, Protocol, TransportParameter};

/// Message Type of the TCP data frame (see the module documentation).
pub const TCP_DATA_FRAME_TYPE: u8 = 0x30;
/// Largest application message on TCP (16-bit Message Length minus the 8-byte frame header).
pub const MAX_TCP_DATA: usize = 65535 - 8;

/// Session layer configuration (PU side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// SCTP PPID of application data (not 11 or 12).
    pub data_ppid: u32,
    /// Fail over when more data messages were sent than received and nothing arrived for
    /// this long (request/response applications); `None` disables.
    pub reply_timeout: Option<Duration>,
    /// PEs tried (connect attempts) per failover before giving up.
    pub max_failover_attempts: usize,
    /// Connect timeout towards a PE.
    pub connect_timeout: Duration,
    /// Wait before asking the registrar again when no usable PE is cached.
    pub retry_delay: Duration,
    /// Bound of one [`Session::request`] / [`Session::request_pipelined`] call, failovers
    /// included (default [`DEFAULT_REQUEST_TIMEOUT`]); `None` waits for ever.
    pub request_timeout: Option<Duration>,
}

/// Default bound of a request call: 30 s (room for a failover: connect timeout 5 s,
/// several PEs tried, a handle resolution).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            data_ppid: 0,
            reply_timeout: None,
            max_failover_attempts: 8,
            connect_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_millis(200),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

/// Errors of the session layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Socket error.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Handle resolution failed.
    #[error(transparent)]
    PoolUser(#[from] crate::pu::PuError),
    /// No PE of the pool could be reached.
    #[error("no pool element reachable after {attempts} attempts")]
    NoPoolElement {
        /// Connect attempts made.
        attempts: usize,
    },
    /// The PE's user transport is not one the session layer can use (SCTP or TCP).
    #[error("PE {0:#010x} has an unsupported user transport")]
    UnsupportedTransport(PeIdentifier),
    /// The data PPID collides with ASAP or ENRP.
    #[error("data PPID {0} is reserved for ASAP/ENRP")]
    ReservedPpid(u32),
    /// A data message is too large for the transport.
    #[error("data message of {0} bytes is too large for TCP (max {MAX_TCP_DATA})")]
    TooLarge(usize),
    /// An ASAP control message could not be encoded.
    #[error("cannot encode ASAP message: {0}")]
    Encode(#[from] crate::wire::EncodeError),
    /// The session ended.
    #[error("the session is closed")]
    Closed,
    /// The session had already failed (a shared [`SessionFailure`]).
    #[error(transparent)]
    Failed(SessionFailure),
    /// A request call got no complete answer within
    /// [`SessionConfig::request_timeout`]; its late replies are dropped.
    #[error("{unanswered} request(s) unanswered after {after:?}")]
    RequestTimeout {
        /// The bound.
        after: Duration,
        /// Requests of the call without a reply.
        unanswered: usize,
    },
}

/// One unit on a data-plus-control association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data(Bytes),
    Control(AsapMessage),
}

/// Encodes a frame for the given transport kind.
pub(crate) fn encode_frame(
    kind: TransportKind,
    data_ppid: u32,
    frame: &Frame,
) -> Result<Msg, SessionError> {
    match frame {
        Frame::Control(m) => {
            let bytes = Message::Asap(m.clone()).to_bytes()?;
            Ok(Msg::new(defaults::PPID_ASAP, 0, bytes))
        }
        Frame::Data(d) => match kind {
            TransportKind::Tcp => {
                if d.len() > MAX_TCP_DATA {
                    return Err(SessionError::TooLarge(d.len()));
                }
                let len = 8 + d.len();
                let mut b = BytesMut::with_capacity((len + 3) & !3);
                b.put_u8(TCP_DATA_FRAME_TYPE);
                b.put_u8(0);
                b.put_u16(len as u16);
                b.put_u32(data_ppid);
                b.put_slice(d);
                while !b.len().is_multiple_of(4) {
                    b.put_u8(0);
                }
                Ok(Msg::new(defaults::PPID_ASAP, 0, b.freeze()))
            }
            _ => Ok(Msg::new(data_ppid, 0, d.clone())),
        },
    }
}

/// Decodes a received message; `None` for something to ignore (logged).
pub(crate) fn decode_frame(kind: TransportKind, msg: Msg) -> Option<Frame> {
    let control = match kind {
        TransportKind::Tcp => msg.bytes.first() != Some(&TCP_DATA_FRAME_TYPE),
        _ => msg.ppid == defaults::PPID_ASAP,
    };
    if !control {
        if kind == TransportKind::Tcp {
            let b = &msg.bytes;
            if b.len() < 8 {
                tracing::warn!(len = b.len(), "short TCP data frame");
                return None;
            }
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            if len < 8 || len > b.len() {
                tracing::warn!(len, have = b.len(), "bad TCP data frame length");
                return None;
            }
            return Some(Frame::Data(msg.bytes.slice(8..len)));
        }
        return Some(Frame::Data(msg.bytes));
    }
    match Message::decode(Protocol::Asap, &msg.bytes) {
        Ok(d) => match d.message {
            Message::Asap(m) => Some(Frame::Control(m)),
            Message::Enrp(_) => None,
        },
        Err(e) => {
            tracing::warn!(error = %e, "undecodable ASAP control message on a session");
            None
        }
    }
}

/// The transport kind and peer addresses of a PE's user transport.
pub(crate) fn user_endpoint(
    pe: &crate::wire::PoolElementInfo,
) -> Option<(TransportKind, Vec<std::net::SocketAddr>)> {
    match &pe.user_transport {
        TransportParameter::Sctp {
            port, addresses, ..
        } => Some((
            TransportKind::Sctp,
            addresses
                .iter()
                .map(|a| std::net::SocketAddr::new(*a, *port))
                .collect(),
        )),
        TransportParameter::Tcp { port, address, .. } => Some((
            TransportKind::Tcp,
            vec![std::net::SocketAddr::new(*address, *port)],
        )),
        _ => None,
    }
}

fn check_ppid(ppid: u32) -> Result<(), SessionError> {
    if ppid == defaults::PPID_ASAP || ppid == defaults::PPID_ENRP {
        return Err(SessionError::ReservedPpid(ppid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_data_frame_layout_and_round_trip() {
        let m = encode_frame(
            TransportKind::Tcp,
            0x1234_5678,
            &Frame::Data(Bytes::from_static(b"hello")),
        )
        .expect("encode");
        assert_eq!(m.ppid, 11);
        assert_eq!(
            &m.bytes[..],
            &[0x30, 0, 0, 13, 0x12, 0x34, 0x56, 0x78, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]
        );
        assert_eq!(
            decode_frame(TransportKind::Tcp, m),
            Some(Frame::Data(Bytes::from_static(b"hello")))
        );
    }

    #[test]
    fn control_told_apart_by_ppid_on_sctp_and_by_type_on_tcp() {
        use crate::wire::asap_msg::Cookie;
        let c = Frame::Control(
            Cookie {
                cookie: vec![1, 2, 3],
            }
            .into(),
        );
        for kind in [TransportKind::Sctp, TransportKind::Tcp] {
            let m = encode_frame(kind, 99, &c).expect("encode");
            assert_eq!(m.ppid, 11);
            assert_eq!(m.bytes[0], 0x0B, "ASAP_COOKIE type");
            assert_eq!(decode_frame(kind, m), Some(c.clone()));
        }
        let d = encode_frame(
            TransportKind::Sctp,
            99,
            &Frame::Data(Bytes::from_static(b"x")),
        )
        .expect("encode");
        assert_eq!((d.ppid, &d.bytes[..]), (99, &b"x"[..]));
        // SCTP data that happens to start with 0x30 stays data; PPID 11 bytes are control.
        let raw = Msg::new(99, 0, Bytes::from_static(&[0x0B, 0, 0, 4]));
        assert_eq!(
            decode_frame(TransportKind::Sctp, raw),
            Some(Frame::Data(Bytes::from_static(&[0x0B, 0, 0, 4])))
        );
        assert!(check_ppid(11).is_err() && check_ppid(12).is_err() && check_ppid(0).is_ok());
    }

    #[test]
    fn bad_tcp_data_frames_are_ignored() {
        let short = Msg::new(11, 0, Bytes::from_static(&[0x30, 0, 0, 6, 0, 0, 0, 0]));
        assert_eq!(decode_frame(TransportKind::Tcp, short), None);
        let long = Msg::new(11, 0, Bytes::from_static(&[0x30, 0, 0, 40, 0, 0, 0, 0]));
        assert_eq!(decode_frame(TransportKind::Tcp, long), None);
        assert!(matches!(
            encode_frame(
                TransportKind::Tcp,
                0,
                &Frame::Data(Bytes::from(vec![0; MAX_TCP_DATA + 1]))
            ),
            Err(SessionError::TooLarge(_))
        ));
    }
}
