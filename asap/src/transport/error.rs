//! Error types of the transports.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why an RSerPool byte stream (TCP) could not be cut into messages.
///
/// The framing uses the RSerPool common header (RFC 5352 §2.1, RFC 5353 §2.1): type (8 bits),
/// flags (8 bits), Message Length (16 bits, network order, counting the 4-byte header but not
/// the up to 3 bytes of padding that follow every message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Message Length below the 4 bytes of the header itself (RFC 5352 §2.1: minimum 4).
    #[error("message length {length} is shorter than the 4-byte header")]
    LengthTooShort {
        /// The Message Length field as read.
        length: u16,
    },
    /// Message Length above the configured maximum message size.
    #[error("message length {length} exceeds the maximum of {max} bytes")]
    LengthTooLarge {
        /// The Message Length field as read.
        length: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The peer closed the stream in the middle of a message.
    #[error("peer closed the stream after {have} of {need} bytes of a message")]
    Truncated {
        /// Bytes of the message received.
        have: usize,
        /// Bytes the header announced (with padding).
        need: usize,
    },
    /// A message (or its header) was started but not completed within the configured
    /// [`tcp_incomplete_message_timeout`](super::TransportConfig::tcp_incomplete_message_timeout):
    /// the peer stopped sending partway through, or sent bytes whose header announces more than
    /// it will ever send (e.g. garbage read as a plausible Message Length, RFC 5352 §2.1).
    #[error(
        "incomplete message from {peer}: {} {have} of {need} bytes received, nothing completed it within {after:?}",
        pending_what(*.msg_type)
    )]
    IncompleteTimeout {
        /// The peer that stopped sending.
        peer: SocketAddr,
        /// Type byte of the pending message, `None` while even the 4-byte header is incomplete.
        msg_type: Option<u8>,
        /// Bytes of the message received.
        have: usize,
        /// Bytes needed to complete it: the header's Message Length with padding, or 4 for the
        /// header itself.
        need: usize,
        /// The configured timeout.
        after: Duration,
    },
    /// The partial message of this association could not grow because the listener's
    /// budget for partial messages of all its associations
    /// ([`tcp_max_partial_bytes`](super::TransportConfig::tcp_max_partial_bytes), issue 13
    /// item 6) is used up: the association is closed so that stalled senders cannot make
    /// the server hold unbounded memory, while the others keep working.
    #[error(
        "partial-message budget of {budget} bytes exhausted: {peer} holds {have} of {need} bytes of a message"
    )]
    PartialBudgetExhausted {
        /// The peer whose partial message could not grow.
        peer: SocketAddr,
        /// Bytes of its partial message received.
        have: usize,
        /// Bytes needed to complete it (with padding; 4 while the header is incomplete).
        need: usize,
        /// The listener's budget.
        budget: usize,
    },
    /// A message given to `send` does not start with a consistent RSerPool header.
    #[error(
        "message of {len} bytes does not carry a valid RSerPool header (length field {length})"
    )]
    BadOutgoingHeader {
        /// Bytes handed to `send`.
        len: usize,
        /// The Message Length field found in them (0 if fewer than 4 bytes).
        length: u16,
    },
}

fn pending_what(msg_type: Option<u8>) -> String {
    match msg_type {
        Some(t) => format!("message of type 0x{t:02x},"),
        None => "header,".to_string(),
    }
}

/// Why an association ended; carried by [`Event::Lost`](super::Event::Lost).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LostReason {
    /// The peer closed the association in an orderly way (TCP FIN, SCTP SHUTDOWN).
    #[error("peer closed the association")]
    PeerClosed,
    /// Our own graceful close completed (SCTP `SCTP_SHUTDOWN_COMP`).
    #[error("shutdown complete")]
    ShutdownComplete,
    /// SCTP `SCTP_COMM_LOST` (RFC 6458 §6.1.1): all paths failed or the peer aborted.
    #[error("communication lost (SCTP error cause {error})")]
    CommLost {
        /// `sac_error`: the SCTP error cause, 0 if none.
        error: u16,
    },
    /// SCTP `SCTP_CANT_STR_ASSOC` (RFC 6458 §6.1.1): the association could not be set up.
    #[error("association could not be started (SCTP error cause {error})")]
    CannotStart {
        /// `sac_error`.
        error: u16,
    },
    /// The peer reset the association (TCP RST, SCTP ABORT surfaced as `ECONNRESET`).
    #[error("association reset by peer")]
    Reset,
    /// The byte stream could not be framed (TCP only); the association was closed.
    #[error("framing error: {0}")]
    Framing(FrameError),
    /// A message larger than the configured maximum arrived (SCTP); the association was shut
    /// down (and is aborted when dropped).
    #[error("received message of more than {max} bytes")]
    MessageTooLarge {
        /// The configured maximum.
        max: usize,
    },
    /// TLS over SCTP failed after the handshake (alert, bad record, message on a stream other
    /// than 0, peer restart; [`super::tls_sctp`]); the association was aborted.
    #[error("TLS: {detail}")]
    Tls {
        /// What failed.
        detail: String,
    },
    /// Any other socket error.
    #[error("I/O error ({kind:?}): {message}")]
    Io {
        /// The error kind.
        kind: io::ErrorKind,
        /// The error text.
        message: String,
    },
}

impl LostReason {
    pub(crate) fn from_io(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => LostReason::Reset,
            kind => LostReason::Io {
                kind,
                message: err.to_string(),
            },
        }
    }
}

/// Errors returned by the transport API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// `socket(..., IPPROTO_SCTP)` failed: the kernel has no SCTP (module missing or blocked).
    #[error("kernel SCTP is not available on this host: {source}")]
    SctpUnsupported {
        /// The error of `socket()` (EPROTONOSUPPORT, ESOCKTNOSUPPORT or EAFNOSUPPORT).
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Connecting to the peer failed.
    #[error("connect to {addrs:?} failed: {source}")]
    Connect {
        /// The peer addresses tried.
        addrs: Vec<SocketAddr>,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// The connect timeout expired.
    #[error("connect to {addrs:?} timed out after {after:?}")]
    ConnectTimeout {
        /// The peer addresses tried.
        addrs: Vec<SocketAddr>,
        /// The timeout.
        after: Duration,
    },
    /// An address list was empty or mixed ports where one port is needed.
    #[error("invalid address list: {0}")]
    BadAddresses(String),
    /// The message is larger than the configured or protocol maximum.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Message size.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// TCP can only carry RSerPool-framed messages.
    #[error("cannot frame message for TCP: {0}")]
    Frame(#[from] FrameError),
    /// TCP carries one PPID per endpoint (the PPID is implied by the port).
    #[error("PPID {ppid} cannot be sent over this TCP endpoint, which carries PPID {expected}")]
    PpidMismatch {
        /// PPID of the message.
        ppid: u32,
        /// PPID of the endpoint.
        expected: u32,
    },
    /// The association is closed or lost; no more events.
    #[error("association closed")]
    Closed,
    /// A TLS handshake failed or timed out ([`super::tls`]).
    #[error("TLS with {peer}: {detail}")]
    Tls {
        /// The peer.
        peer: std::net::SocketAddr,
        /// What failed.
        detail: String,
    },
}

impl TransportError {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        TransportError::Io { op, source }
    }

    /// True when the local address could not be used (`EADDRINUSE`, `EADDRNOTAVAIL`): a
    /// caller that asked for a fixed local port may retry with an ephemeral one.
    pub fn is_local_address_error(&self) -> bool {
        let source = match self {
            TransportError::Io { source, .. } | TransportError::Connect { source, .. } => source,
            _ => return false,
        };
        matches!(
            source.kind(),
            io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
        )
    }
}
