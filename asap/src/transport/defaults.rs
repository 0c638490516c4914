//! Well-known numbers of the RSerPool transports, in one place.
//!
//! The ports, SCTP payload protocol identifiers and multicast groups belong to the wire
//! protocol and are defined in the codec's code table ([`crate::wire::codes`], RFC 5352 §6,
//! RFC 5353 §7); they are re-exported here so that transport code finds every number in one
//! module. The transport's own defaults:
//!
//! | what | value | source |
//! |---|---|---|
//! | TCP incomplete message timeout | 30 s | this implementation (no RFC value; see [`TCP_INCOMPLETE_MESSAGE_TIMEOUT`]) |
//! | TCP partial-message budget per listener | 16 MiB | this implementation (issue 13 item 6; see [`TCP_MAX_PARTIAL_BYTES`]) |
//! | RTO on PE↔PR associations | min 500, max 1000, initial 750 ms | rsplib's PE association setup |
//! | SCTP over UDP port | 9899 | RFC 6951 §5.1 ([`SCTP_UDP_PORT`]) |

use std::time::Duration;

pub use crate::wire::codes::{
    ASAP_ANNOUNCE_ADDR, ASAP_ANNOUNCE_GROUP, ASAP_PORT, ENRP_PORT, ENRP_PRESENCE_ADDR,
    ENRP_PRESENCE_GROUP, PPID_ASAP, PPID_ENRP,
};

/// Largest RSerPool message: the common header's Message Length is 16 bits (RFC 5352 §2.1),
/// plus up to 3 bytes of padding to a 4-byte boundary.
pub const MAX_RSERPOOL_MESSAGE: usize = 65535 + 3;

/// Default largest message accepted over kernel SCTP (256 KiB plus a header): application data
/// between PU and PE may be larger than any ASAP message.
pub const MAX_SCTP_MESSAGE: usize = 256 * 1024 + 4;

/// Default TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default TCP keep-alive idle time (the first probe is sent after this much silence).
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// Default time a partial RSerPool message (header or body started, not complete) may wait on
/// a TCP association before the association is closed as lost
/// ([`TransportConfig::tcp_incomplete_message_timeout`](super::TransportConfig::tcp_incomplete_message_timeout)).
///
/// The TCP framing cuts the stream at the common header's Message Length (RFC 5352 §2.1); a
/// peer that stops partway through a message, or garbage whose first 4 bytes read as a large
/// but allowed length, would otherwise hold the association (and its buffer) forever while
/// TCP keep-alive still succeeds. 30 s is far longer than any legitimate sender needs for a
/// message of at most 64 KiB.
pub const TCP_INCOMPLETE_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default budget of buffer memory for partial messages across all TCP associations accepted
/// by one listener
/// ([`TransportConfig::tcp_max_partial_bytes`](super::TransportConfig::tcp_max_partial_bytes)):
/// 16 MiB, i.e. 256 stalled maximum-size (64 KiB) messages at once, far more than legitimate
/// senders ever leave half-sent. Without a bound, 1 000 stalled 64 KiB messages held 65 MB
/// until the incomplete-message timeout (issue 13 item 6).
pub const TCP_MAX_PARTIAL_BYTES: usize = 16 * 1024 * 1024;

/// rsplib's RTO settings for PE↔PR associations: (initial, max, min) in milliseconds.
pub const RSPLIB_RTO_MS: (u32, u32, u32) = (750, 1000, 500);

/// Number of outbound SCTP streams requested in INIT (the Linux default is 10).
pub const SCTP_STREAMS: u16 = 10;

/// Default UDP port of SCTP over UDP encapsulation (RFC 6951 §5.1: IANA's
/// `sctp-tunneling` port 9899; Linux `net.sctp.udp_port`/`net.sctp.encap_port`).
pub const SCTP_UDP_PORT: u16 = 9899;

/// Multicast TTL used by rsplib for announces.
pub const MULTICAST_TTL: u32 = 1;
