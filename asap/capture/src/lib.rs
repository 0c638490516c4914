//! # rsp-capture: RSerPool messages out of packet captures, and captures out of messages
//!
//! [`read_capture`] / [`read_capture_bytes`] walk a pcap or pcapng file and return every
//! ASAP (RFC 5352) and ENRP (RFC 5353) message it carries as a whole byte string, with the
//! frame it completed in, its carrier and its endpoints. The crate does not decode
//! messages (that is [`rserpool_wire`]'s job); it only needs the 4-byte common header
//! (RFC 5352 §2.1, RFC 5353 §2.1) to frame messages on TCP.
//!
//! What it understands:
//! * files: classic pcap (both byte orders, micro- and nanosecond, "modified" Kuznetzov
//!   records) and pcapng (several sections and interfaces), through `pcap-parser`;
//! * link types: Ethernet (1, with 802.1Q/802.1ad tags), Linux cooked SLL (113) and
//!   SLL2 (276), raw IP (101, 228, 229), BSD null/loopback (0) and OpenBSD loop (108);
//! * IPv4 with options and fragment reassembly, IPv6 with extension headers and fragment
//!   reassembly;
//! * SCTP (RFC 9260): bundled DATA chunks, fragment reassembly by B/E flags in TSN order,
//!   I-DATA (RFC 8260), retransmitted TSNs dropped, CRC32c checked (counted, never fatal);
//!   SCTP over UDP (RFC 6951, port 9899 by default);
//! * TCP: per-direction stream reassembly (retransmissions, overlaps, out-of-order
//!   segments, SYN/FIN/RST), then framing by the common header Length with padding to 4;
//! * UDP: one message per datagram (ASAP Server Announce, ENRP Presence).
//!
//! Classification (asap/wire/INTEROP.md §1): SCTP PPID 11 → ASAP, 12 → ENRP, the draft-era PPIDs
//! 0xFAEEB5D1 / 0xFAEEB5D2 likewise; any other PPID falls back to the well-known ports
//! (ASAP 3863, ENRP 9901, either side). TCP and UDP go by port.
//!
//! [`PcapWriter`] does the reverse: it writes classic pcap files (Ethernet, IPv4 or IPv6)
//! with SCTP, SCTP-over-UDP, UDP or TCP packets carrying messages we generate, with valid
//! checksums, so that tshark dissects them without warnings.
//!
//! [`manifest`] loads `pcap-fixtures/manifest.toml`, the list of reference captures with
//! tshark's message counts.

#![forbid(unsafe_code)]

#[cfg(feature = "cli")]
pub mod decode_cli;
mod extract;
mod file;
mod ip;
pub mod manifest;
mod sctp;
mod tcp;
mod writer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use writer::{DataChunk, PcapWriter, WriterError};

/// SCTP payload protocol identifiers of ASAP (11) and ENRP (12): see
/// the codec's code table [`rserpool_wire::codes`], where every well-known number is defined
/// once.
pub use rserpool_wire::codes::{PPID_ASAP, PPID_ENRP};
/// PPID rsplib used for ASAP before the RFCs (draft era).
pub const PPID_ASAP_DRAFT: u32 = 0xFAEE_B5D1;
/// PPID rsplib used for ENRP before the RFCs (draft era).
pub const PPID_ENRP_DRAFT: u32 = 0xFAEE_B5D2;
/// Well-known ASAP port (SCTP, TCP and UDP; RFC 5352 §5).
pub const PORT_ASAP: u16 = rserpool_wire::codes::ASAP_PORT;
/// Well-known ENRP port (SCTP, TCP and UDP; RFC 5353 §7).
pub const PORT_ENRP: u16 = rserpool_wire::codes::ENRP_PORT;
/// Default UDP port of SCTP over UDP encapsulation (RFC 6951 §5.1).
pub const PORT_SCTP_OVER_UDP: u16 = 9899;

/// Which RSerPool protocol a message belongs to: the codec's [`rserpool_wire::Protocol`]
/// (one definition for the whole crate).
pub use rserpool_wire::Protocol as Proto;

/// How a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    /// SCTP directly over IP (RFC 9260).
    Sctp,
    /// SCTP encapsulated in UDP (RFC 6951).
    SctpOverUdp,
    /// TCP, framed by the common header Length (the expired TCP-mapping draft's framing).
    Tcp,
    /// A UDP datagram holding one message (Server Announce, Presence).
    Udp,
}

impl std::fmt::Display for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Carrier::Sctp => "sctp",
            Carrier::SctpOverUdp => "sctp_over_udp",
            Carrier::Tcp => "tcp",
            Carrier::Udp => "udp",
        })
    }
}

/// One whole ASAP or ENRP message found in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMessage {
    /// 1-based number of the frame that completed the message (as tshark numbers frames;
    /// for a reassembled message, the frame of its last piece).
    pub frame: u64,
    /// Capture timestamp of that frame, since the Unix epoch.
    pub timestamp: Duration,
    /// ASAP or ENRP.
    pub protocol: Proto,
    /// How it travelled.
    pub carrier: Carrier,
    /// Sender (IP address and SCTP/TCP/UDP port; for SCTP over UDP the SCTP port).
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// SCTP payload protocol identifier (SCTP carriers only).
    pub ppid: Option<u32>,
    /// SCTP stream identifier (SCTP carriers only).
    pub stream: Option<u16>,
    /// The message: the SCTP user message or UDP payload as carried; on TCP exactly
    /// `Length` bytes (the padding to 4 is consumed but not included).
    pub bytes: Vec<u8>,
}

impl CapturedMessage {
    /// The message type byte (RFC 5352 §2.1), if the message has one.
    pub fn message_type(&self) -> Option<u8> {
        self.bytes.first().copied()
    }
}

/// What the reader should treat as what. The defaults follow the IANA registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// UDP ports that carry SCTP (RFC 6951); default `[9899]`.
    pub sctp_over_udp_ports: Vec<u16>,
    /// SCTP ports whose DATA with an unknown PPID is ASAP; default `[3863]`.
    pub asap_sctp_ports: Vec<u16>,
    /// SCTP ports whose DATA with an unknown PPID is ENRP; default `[9901]`.
    pub enrp_sctp_ports: Vec<u16>,
    /// TCP ports that carry ASAP; default `[3863]`.
    pub asap_tcp_ports: Vec<u16>,
    /// TCP ports that carry ENRP; default `[9901]`.
    pub enrp_tcp_ports: Vec<u16>,
    /// UDP ports that carry ASAP (Server Announce); default `[3863]`.
    pub asap_udp_ports: Vec<u16>,
    /// UDP ports that carry ENRP (Presence); default `[9901]`.
    pub enrp_udp_ports: Vec<u16>,
    /// Whether a file cut short in the middle of a record still yields what was read
    /// before the cut (noted in [`CaptureStats::truncated`]) instead of an error.
    pub allow_truncated: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            sctp_over_udp_ports: vec![PORT_SCTP_OVER_UDP],
            asap_sctp_ports: vec![PORT_ASAP],
            enrp_sctp_ports: vec![PORT_ENRP],
            asap_tcp_ports: vec![PORT_ASAP],
            enrp_tcp_ports: vec![PORT_ENRP],
            asap_udp_ports: vec![PORT_ASAP],
            enrp_udp_ports: vec![PORT_ENRP],
            allow_truncated: false,
        }
    }
}

/// Why a packet (or a reassembled unit) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReason {
    /// A header is shorter than its layer needs.
    #[error("{layer}: truncated header ({have} of {need} bytes)")]
    TruncatedHeader {
        /// Layer name (e.g. "IPv4", "SCTP chunk").
        layer: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A length field does not fit the data.
    #[error("{layer}: bad length {length} (available {available})")]
    BadLength {
        /// Layer name.
        layer: &'static str,
        /// The length field's value.
        length: usize,
        /// Bytes available.
        available: usize,
    },
    /// The link type of this frame's interface is not supported.
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
    /// The IP version nibble is neither 4 nor 6.
    #[error("not an IP packet (version nibble {0})")]
    BadIpVersion(u8),
    /// IPv6 jumbograms and other oddities.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A TCP stream could not be framed into messages.
    #[error("TCP {src} -> {dst}: {what}")]
    TcpFraming {
        /// Sender.
        src: SocketAddr,
        /// Receiver.
        dst: SocketAddr,
        /// What went wrong.
        what: String,
    },
    /// An SCTP user message could not be reassembled.
    #[error("SCTP {src} -> {dst} stream {stream}: {what}")]
    SctpReassembly {
        /// Sender.
        src: SocketAddr,
        /// Receiver.
        dst: SocketAddr,
        /// Stream identifier.
        stream: u16,
        /// What went wrong.
        what: String,
    },
    /// An IP datagram's fragments never completed (reported at the end of the capture).
    #[error("IP fragments of datagram id {id:#x} from {src} never completed")]
    IncompleteIpDatagram {
        /// The source address.
        src: std::net::IpAddr,
        /// IP identification.
        id: u32,
    },
}

/// A packet that could not be used, with the frame it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based frame number.
    pub frame: u64,
    /// Why.
    pub reason: MalformedReason,
}

/// Counters of everything the reader saw but did not turn into a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packet records in the file (pcap records, pcapng EPB/SPB blocks).
    pub frames: u64,
    /// Frames that are not IPv4/IPv6 (ARP, ...).
    pub non_ip_frames: u64,
    /// IP packets whose protocol is not SCTP, TCP or UDP (ICMP, IGMP, ...).
    pub other_ip_protocols: u64,
    /// IP fragments seen.
    pub ip_fragments: u64,
    /// IP datagrams rebuilt from fragments.
    pub ip_reassembled: u64,
    /// SCTP packets seen (direct and over UDP).
    pub sctp_packets: u64,
    /// SCTP packets whose CRC32c does not verify (RFC 9260 §6.8). Such packets are still
    /// used: captures on `lo` carry zero checksums because of offloading.
    pub sctp_bad_checksums: u64,
    /// DATA/I-DATA chunks dropped as retransmissions (TSN already seen).
    pub sctp_duplicate_chunks: u64,
    /// Payloads that are not RSerPool: SCTP user messages with other PPIDs and ports, UDP
    /// datagrams and TCP segments with data on other ports.
    pub non_rserpool_payloads: u64,
    /// Per PPID, the SCTP user messages that were not RSerPool.
    pub non_rserpool_ppids: BTreeMap<u32, u64>,
    /// TCP segments whose data had all been seen before.
    pub tcp_retransmissions: u64,
    /// TCP segments that arrived ahead of a gap and were held back.
    pub tcp_out_of_order: u64,
    /// Messages or fragments left incomplete at the end of the capture.
    pub incomplete_at_end: u64,
    /// Packets that could not be used, with reasons.
    pub malformed: Vec<Malformed>,
    /// Set when the file ended in the middle of a record and
    /// [`CaptureOptions::allow_truncated`] was on.
    pub truncated: Option<String>,
}

/// The messages of a capture, in the order they were completed, with statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Every ASAP and ENRP message found.
    pub messages: Vec<CapturedMessage>,
    /// What else was seen.
    pub stats: CaptureStats,
}

impl Capture {
    /// Message counts per protocol and type byte.
    pub fn count_by_type(&self) -> BTreeMap<(Proto, u8), u64> {
        let mut counts = BTreeMap::new();
        for m in &self.messages {
            if let Some(t) = m.message_type() {
                *counts.entry((m.protocol, t)).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Message counts per carrier.
    pub fn count_by_carrier(&self) -> BTreeMap<Carrier, u64> {
        let mut counts = BTreeMap::new();
        for m in &self.messages {
            *counts.entry(m.carrier).or_insert(0) += 1;
        }
        counts
    }
}

/// Errors that stop the reading of a whole file. Problems with single packets are not
/// errors; they are collected in [`CaptureStats::malformed`].
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither pcap nor pcapng.
    #[error("{file}: not a pcap or pcapng file (first bytes {magic:02x?})")]
    NotACapture {
        /// File name.
        file: String,
        /// Its first (up to 4) bytes.
        magic: Vec<u8>,
    },
    /// The file header could not be parsed.
    #[error("{file}: bad file header: {reason}")]
    BadHeader {
        /// File name.
        file: String,
        /// Why.
        reason: String,
    },
    /// A classic pcap file whose link type this reader does not handle.
    #[error("{file}: unsupported link type {linktype}")]
    UnsupportedLinkType {
        /// File name.
        file: String,
        /// The link type.
        linktype: u32,
    },
    /// The file ends in the middle of a record.
    #[error("{file}: truncated at frame {frame}: {reason}")]
    Truncated {
        /// File name.
        file: String,
        /// 1-based number of the frame that was cut.
        frame: u64,
        /// What was cut.
        reason: String,
    },
    /// A record or block could not be parsed.
    #[error("{file}: bad record at frame {frame}: {reason}")]
    BadRecord {
        /// File name.
        file: String,
        /// 1-based number of the frame (the next frame number for non-packet blocks).
        frame: u64,
        /// Why.
        reason: String,
    },
}

/// Read a pcap or pcapng file and extract every ASAP and ENRP message.
pub fn read_capture(
    path: impl AsRef<Path>,
    options: &CaptureOptions,
) -> Result<Capture, CaptureError> {
    let (name, data) = read_named(path.as_ref(), std::fs::read)
        .map_err(|(file, source)| CaptureError::Io { file, source })?;
    read_capture_named(&name, &data, options)
}

/// Reads the file `path` with `read`, naming it by its display form: the name with the
/// contents, or the name with the I/O error (for the `Io { file, source }` errors).
pub(crate) fn read_named<'p, T>(
    path: &'p Path,
    read: impl FnOnce(&'p Path) -> std::io::Result<T>,
) -> Result<(String, T), (String, std::io::Error)> {
    let name = path.display().to_string();
    match read(path) {
        Ok(contents) => Ok((name, contents)),
        Err(e) => Err((name, e)),
    }
}

/// Extract every ASAP and ENRP message from a pcap or pcapng file held in memory.
pub fn read_capture_bytes(data: &[u8], options: &CaptureOptions) -> Result<Capture, CaptureError> {
    read_capture_named("<memory>", data, options)
}

/// Like [`read_capture_bytes`], naming the data `name` in errors.
pub fn read_capture_named(
    name: &str,
    data: &[u8],
    options: &CaptureOptions,
) -> Result<Capture, CaptureError> {
    let mut extractor = extract::Extractor::new(options);
    file::for_each_frame(name, data, options.allow_truncated, &mut extractor)?;
    Ok(extractor.finish())
}
