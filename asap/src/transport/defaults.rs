//! Well-known numbers of the RSerPool transports, in one place.
//!
//! | what | value | source |
//! |---|---|---|
//! | ASAP port (SCTP, TCP, UDP) | 3863 | IANA, RFC 5352 §6 |
//! | ENRP port (SCTP, UDP) | 9901 | IANA, RFC 5353 §7 |
//! | ASAP SCTP payload protocol identifier | 11 | RFC 5352 §6 |
//! | ENRP SCTP payload protocol identifier | 12 | RFC 5353 §7 |
//! | ASAP Server Announce multicast group | 239.0.0.50 | rsplib default (RFC 5352 §3.2 leaves the group to configuration) |
//! | ENRP Presence multicast group | 239.0.0.51 | rsplib default (RFC 5353 §3.1) |
//! | TCP incomplete message timeout | 30 s | this implementation (no RFC value; see [`TCP_INCOMPLETE_MESSAGE_TIMEOUT`]) |
//! | RTO on PE↔PR associations | min 500, max 1000, initial 750 ms | rsplib's PE association setup |

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// SCTP/TCP/UDP port of ASAP (RFC 5352 §6).
pub const ASAP_PORT: u16 = 3863;
/// SCTP/UDP port of ENRP (RFC 5353 §7).
pub const ENRP_PORT: u16 = 9901;

/// SCTP Payload Protocol Identifier of ASAP (RFC 5352 §6).
pub const PPID_ASAP: u32 = 11;
/// SCTP Payload Protocol Identifier of ENRP (RFC 5353 §7).
pub const PPID_ENRP: u32 = 12;

/// Multicast group on which registrars send ASAP Server Announce (RFC 5352 §3.2; value as rsplib).
pub const ASAP_ANNOUNCE_GROUP: Ipv4Addr = Ipv4Addr::new(239, 0, 0, 50);
/// Multicast group on which registrars send ENRP Presence (RFC 5353 §3.1; value as rsplib).
pub const ENRP_PRESENCE_GROUP: Ipv4Addr = Ipv4Addr::new(239, 0, 0, 51);

/// `239.0.0.50:3863`: where PEs and PUs listen for ASAP Server Announce.
pub const ASAP_ANNOUNCE_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(ASAP_ANNOUNCE_GROUP, ASAP_PORT));
/// `239.0.0.51:9901`: where registrars listen for ENRP Presence.
pub const ENRP_PRESENCE_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(ENRP_PRESENCE_GROUP, ENRP_PORT));

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

/// rsplib's RTO settings for PE↔PR associations: (initial, max, min) in milliseconds.
pub const RSPLIB_RTO_MS: (u32, u32, u32) = (750, 1000, 500);

/// Number of outbound SCTP streams requested in INIT (the Linux default is 10).
pub const SCTP_STREAMS: u16 = 10;

/// Multicast TTL used by rsplib for announces.
pub const MULTICAST_TTL: u32 = 1;
