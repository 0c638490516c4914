//! Writing classic pcap files of messages we generate, for tshark and for tests.
//!
//! Every frame is Ethernet (all-zero MAC addresses, as `tcpdump -i lo` writes) carrying
//! IPv4 or IPv6 and then SCTP (RFC 9260, CRC32c), SCTP over UDP (RFC 6951), UDP or TCP
//! (with a synthetic three-way handshake per connection), all with valid checksums.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::ip::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use super::sctp::{compute_checksum, CHUNK_DATA, FLAG_BEGIN, FLAG_END};
use super::{CapturedMessage, Carrier, Proto, PORT_SCTP_OVER_UDP, PPID_ASAP, PPID_ENRP};
use rserpool_wire::header::padded as pad4;

const SNAPLEN: u32 = 262_144;
/// Largest transport-layer packet the writer produces (IPv4 total length is 16 bits).
const MAX_TRANSPORT: usize = 65_535 - 60;

/// Errors of [`PcapWriter`].
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Writing to the sink failed.
    #[error("writing pcap: {0}")]
    Io(#[from] io::Error),
    /// Source and destination must both be IPv4 or both IPv6.
    #[error("{src} and {dst} are not of the same IP family")]
    MixedFamilies {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
    },
    /// The packet would not fit one unfragmented IP datagram.
    #[error("packet of {len} bytes does not fit one IP datagram")]
    TooLarge {
        /// Transport-layer size.
        len: usize,
    },
    /// A DATA chunk bundle was empty.
    #[error("an SCTP packet needs at least one DATA chunk")]
    NoChunks,
}

/// One DATA chunk to write: a whole user message (B and E flags set).
#[derive(Debug, Clone, Copy)]
pub struct DataChunk<'a> {
    /// Payload protocol identifier (11 ASAP, 12 ENRP).
    pub ppid: u32,
    /// Stream identifier.
    pub stream: u16,
    /// The user message.
    pub bytes: &'a [u8],
}

#[derive(Debug)]
struct SctpDirection {
    next_tsn: u32,
    next_ssn: HashMap<u16, u16>,
}

#[derive(Debug)]
struct TcpConnection {
    /// Next sequence number of the client (the side that sent the first message).
    client_seq: u32,
    /// Next sequence number of the server.
    server_seq: u32,
}

/// Writes classic pcap (microsecond timestamps, little-endian, `LINKTYPE_ETHERNET`).
///
/// Per direction, SCTP TSNs and SSNs count up from 1 and 0; per TCP connection the first
/// message from a new (source, destination) pair is preceded by SYN, SYN-ACK, ACK.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    sctp: HashMap<(SocketAddr, SocketAddr), SctpDirection>,
    tcp: HashMap<(SocketAddr, SocketAddr), TcpConnection>,
    ip_id: u16,
    frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Start a file: writes the pcap global header.
    pub fn new(mut out: W) -> Result<Self, WriterError> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            sctp: HashMap::new(),
            tcp: HashMap::new(),
            ip_id: 1,
            frames: 0,
        })
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flush and return the sink.
    pub fn finish(mut self) -> Result<W, WriterError> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// One SCTP packet with one DATA chunk holding `message`.
    pub fn write_sctp(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        ppid: u32,
        stream: u16,
        message: &[u8],
    ) -> Result<(), WriterError> {
        self.write_sctp_bundle(
            ts,
            src,
            dst,
            &[DataChunk {
                ppid,
                stream,
                bytes: message,
            }],
        )
    }

    /// One SCTP packet with several DATA chunks bundled (RFC 9260 §6.10).
    pub fn write_sctp_bundle(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        chunks: &[DataChunk<'_>],
    ) -> Result<(), WriterError> {
        let packet = self.sctp_packet(src, dst, chunks)?;
        self.ip_frame(ts, src, dst, IPPROTO_SCTP, &packet)
    }

    /// One SCTP packet with one DATA chunk, encapsulated in UDP (RFC 6951) between
    /// `udp_port` on both sides (9899 is the IANA port).
    pub fn write_sctp_over_udp(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        udp_port: u16,
        chunks: &[DataChunk<'_>],
    ) -> Result<(), WriterError> {
        let packet = self.sctp_packet(src, dst, chunks)?;
        let usrc = SocketAddr::new(src.ip(), udp_port);
        let udst = SocketAddr::new(dst.ip(), udp_port);
        self.write_udp(ts, usrc, udst, &packet)
    }

    /// One UDP datagram with `payload`.
    pub fn write_udp(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), WriterError> {
        let len = 8 + payload.len();
        if len > MAX_TRANSPORT {
            return Err(WriterError::TooLarge { len });
        }
        let mut d = Vec::with_capacity(len);
        d.extend_from_slice(&src.port().to_be_bytes());
        d.extend_from_slice(&dst.port().to_be_bytes());
        d.extend_from_slice(&(len as u16).to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(payload);
        let sum = match transport_checksum(src.ip(), dst.ip(), IPPROTO_UDP, &d) {
            0 => 0xffff,
            s => s,
        };
        d[6..8].copy_from_slice(&sum.to_be_bytes());
        self.ip_frame(ts, src, dst, IPPROTO_UDP, &d)
    }

    /// One TCP segment with `message` padded with zeros to a multiple of 4. The first
    /// message between two endpoints opens a connection (SYN, SYN-ACK, ACK, each 1 µs
    /// before `ts`) with `src` as the client; later messages in either direction use it.
    pub fn write_tcp(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        message: &[u8],
    ) -> Result<(), WriterError> {
        if !same_family(src, dst) {
            return Err(WriterError::MixedFamilies { src, dst });
        }
        let mut payload = message.to_vec();
        payload.resize(pad4(payload.len()), 0);
        if 20 + payload.len() > MAX_TRANSPORT {
            return Err(WriterError::TooLarge {
                len: 20 + payload.len(),
            });
        }
        let (client, server, from_client) = if self.tcp.contains_key(&(src, dst)) {
            (src, dst, true)
        } else if self.tcp.contains_key(&(dst, src)) {
            (dst, src, false)
        } else {
            let isn_c: u32 = 0x1000_0000 ^ u32::from(src.port()) << 8;
            let isn_s: u32 = 0x2000_0000 ^ u32::from(dst.port()) << 8;
            let t0 = ts.saturating_sub(Duration::from_micros(3));
            let t1 = ts.saturating_sub(Duration::from_micros(2));
            let t2 = ts.saturating_sub(Duration::from_micros(1));
            self.tcp_segment(t0, src, dst, isn_c, 0, 0x02, &[])?;
            self.tcp_segment(t1, dst, src, isn_s, isn_c.wrapping_add(1), 0x12, &[])?;
            self.tcp_segment(
                t2,
                src,
                dst,
                isn_c.wrapping_add(1),
                isn_s.wrapping_add(1),
                0x10,
                &[],
            )?;
            self.tcp.insert(
                (src, dst),
                TcpConnection {
                    client_seq: isn_c.wrapping_add(1),
                    server_seq: isn_s.wrapping_add(1),
                },
            );
            (src, dst, true)
        };
        let Some(conn) = self.tcp.get_mut(&(client, server)) else {
            return Ok(());
        };
        let (seq, ack) = if from_client {
            (conn.client_seq, conn.server_seq)
        } else {
            (conn.server_seq, conn.client_seq)
        };
        if from_client {
            conn.client_seq = conn.client_seq.wrapping_add(payload.len() as u32);
        } else {
            conn.server_seq = conn.server_seq.wrapping_add(payload.len() as u32);
        }
        // PSH + ACK.
        self.tcp_segment(ts, src, dst, seq, ack, 0x18, &payload)
    }

    /// Write a message the way it was captured (carrier, endpoints, PPID, stream).
    /// SCTP messages without a PPID get the protocol's (11 or 12), and stream 0.
    pub fn write_message(&mut self, m: &CapturedMessage) -> Result<(), WriterError> {
        let ppid = m.ppid.unwrap_or(match m.protocol {
            Proto::Asap => PPID_ASAP,
            Proto::Enrp => PPID_ENRP,
        });
        let chunk = DataChunk {
            ppid,
            stream: m.stream.unwrap_or(0),
            bytes: &m.bytes,
        };
        match m.carrier {
            Carrier::Sctp => self.write_sctp_bundle(m.timestamp, m.src, m.dst, &[chunk]),
            Carrier::SctpOverUdp => {
                self.write_sctp_over_udp(m.timestamp, m.src, m.dst, PORT_SCTP_OVER_UDP, &[chunk])
            }
            Carrier::Tcp => self.write_tcp(m.timestamp, m.src, m.dst, &m.bytes),
            Carrier::Udp => self.write_udp(m.timestamp, m.src, m.dst, &m.bytes),
        }
    }

    fn sctp_packet(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        chunks: &[DataChunk<'_>],
    ) -> Result<Vec<u8>, WriterError> {
        if !same_family(src, dst) {
            return Err(WriterError::MixedFamilies { src, dst });
        }
        if chunks.is_empty() {
            return Err(WriterError::NoChunks);
        }
        let len = 12
            + chunks
                .iter()
                .map(|c| pad4(16 + c.bytes.len()))
                .sum::<usize>();
        if len > MAX_TRANSPORT {
            return Err(WriterError::TooLarge { len });
        }
        // The verification tag is the receiver's; any fixed non-zero value per
        // (source, destination) pair will do for a capture. Readers key TSNs by ports and
        // tag, so pairs that share ports must get different tags.
        let vtag = crc32c::crc32c(format!("{src}>{dst}").as_bytes()) | 1;
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(&src.port().to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&vtag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        let dir = self
            .sctp
            .entry((src, dst))
            .or_insert_with(|| SctpDirection {
                next_tsn: 1,
                next_ssn: HashMap::new(),
            });
        for c in chunks {
            let tsn = dir.next_tsn;
            dir.next_tsn = dir.next_tsn.wrapping_add(1);
            let ssn_slot = dir.next_ssn.entry(c.stream).or_insert(0);
            let ssn = *ssn_slot;
            *ssn_slot = ssn_slot.wrapping_add(1);
            let start = p.len();
            p.push(CHUNK_DATA);
            p.push(FLAG_BEGIN | FLAG_END); // an unfragmented, ordered message
            p.extend_from_slice(&((16 + c.bytes.len()) as u16).to_be_bytes());
            p.extend_from_slice(&tsn.to_be_bytes());
            p.extend_from_slice(&c.stream.to_be_bytes());
            p.extend_from_slice(&ssn.to_be_bytes());
            p.extend_from_slice(&c.ppid.to_be_bytes());
            p.extend_from_slice(c.bytes);
            p.resize(start + pad4(16 + c.bytes.len()), 0);
        }
        let crc = compute_checksum(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_segment(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Result<(), WriterError> {
        let mut s = Vec::with_capacity(20 + payload.len());
        s.extend_from_slice(&src.port().to_be_bytes());
        s.extend_from_slice(&dst.port().to_be_bytes());
        s.extend_from_slice(&seq.to_be_bytes());
        s.extend_from_slice(&ack.to_be_bytes());
        s.push(5 << 4);
        s.push(flags);
        s.extend_from_slice(&65_535u16.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 0]);
        s.extend_from_slice(payload);
        let sum = transport_checksum(src.ip(), dst.ip(), IPPROTO_TCP, &s);
        s[16..18].copy_from_slice(&sum.to_be_bytes());
        self.ip_frame(ts, src, dst, IPPROTO_TCP, &s)
    }

    fn ip_frame(
        &mut self,
        ts: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        payload: &[u8],
    ) -> Result<(), WriterError> {
        let mut f = vec![0u8; 12];
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let total = 20 + payload.len();
                if total > 65_535 {
                    return Err(WriterError::TooLarge { len: payload.len() });
                }
                let start = f.len();
                f.extend_from_slice(&[0x45, 0]);
                f.extend_from_slice(&(total as u16).to_be_bytes());
                f.extend_from_slice(&self.ip_id.to_be_bytes());
                self.ip_id = self.ip_id.wrapping_add(1);
                f.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
                f.extend_from_slice(&[64, proto, 0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                let sum = !fold(sum16(&f[start..], 0));
                f[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                f.extend_from_slice(&[proto, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => return Err(WriterError::MixedFamilies { src, dst }),
        }
        f.extend_from_slice(payload);
        let mut rec = Vec::with_capacity(16 + f.len());
        rec.extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        rec.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
        rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
        rec.extend_from_slice(&f);
        self.out.write_all(&rec)?;
        self.frames += 1;
        Ok(())
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// One's-complement sum of 16-bit words (RFC 1071), not yet folded.
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// TCP/UDP checksum with the IPv4 (RFC 768/9293) or IPv6 (RFC 8200 §8.1) pseudo-header.
fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(&s.octets(), acc);
            acc = sum16(&d.octets(), acc);
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            acc = sum16(&v6(s), acc);
            acc = sum16(&v6(d), acc);
        }
    }
    acc += u64::from(proto);
    acc += segment.len() as u64;
    !fold(sum16(segment, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        assert_eq!(
            fold(sum16(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0)),
            0xddf2
        );
    }

    #[test]
    fn mixed_families_are_rejected() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        assert!(matches!(
            w.write_udp(Duration::ZERO, a, b, b"x"),
            Err(WriterError::MixedFamilies { .. })
        ));
        assert!(matches!(
            w.write_tcp(Duration::ZERO, a, b, b"x"),
            Err(WriterError::MixedFamilies { .. })
        ));
        assert!(matches!(
            w.write_sctp_bundle(Duration::ZERO, a, a, &[]),
            Err(WriterError::NoChunks)
        ));
        assert_eq!(w.frames(), 0);
    }
}
