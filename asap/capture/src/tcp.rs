//! TCP (RFC 9293): per-direction byte-stream reassembly and framing of RSerPool messages
//! by their common header Length, each message padded to a multiple of 4.
//!
//! RFC 5352 defines no TCP mapping (the TCP-mapping draft expired); this follows the
//! framing rsplib's adaptation layer and Wireshark assume: messages back to back, each
//! `Length` bytes plus zero padding to 4. Non-zero "padding" is taken as the start of the
//! next message, so a sender that does not pad is still framed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::{MalformedReason, Proto};
use rserpool_wire::header::{CommonHeader, HEADER_LEN};

const FLAG_SYN: u8 = 0x02;
const FLAG_RST: u8 = 0x04;
/// Out-of-order bytes held per direction before the stream is given up.
const MAX_HELD_BYTES: usize = 16 << 20;

/// The parts of a TCP segment the reassembly needs.
#[derive(Debug)]
pub(crate) struct Segment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

/// Parse a TCP header (RFC 9293 §3.1).
pub(crate) fn parse(segment: &[u8]) -> Result<Segment<'_>, MalformedReason> {
    if segment.len() < 20 {
        return Err(MalformedReason::TruncatedHeader {
            layer: "TCP",
            need: 20,
            have: segment.len(),
        });
    }
    let offset = usize::from(segment[12] >> 4) * 4;
    if offset < 20 || offset > segment.len() {
        return Err(MalformedReason::BadLength {
            layer: "TCP data offset",
            length: offset,
            available: segment.len(),
        });
    }
    Ok(Segment {
        src_port: u16::from_be_bytes([segment[0], segment[1]]),
        dst_port: u16::from_be_bytes([segment[2], segment[3]]),
        seq: u32::from_be_bytes([segment[4], segment[5], segment[6], segment[7]]),
        flags: segment[13],
        payload: &segment[offset..],
    })
}

#[derive(Debug)]
struct Stream {
    proto: Proto,
    /// Sequence number of the next byte expected, once known.
    next_seq: Option<u32>,
    /// In-order bytes not yet framed.
    buf: Vec<u8>,
    /// Padding bytes still to skip after the last message.
    pad_skip: usize,
    /// Segments beyond a gap, by their distance from `next_seq` at the time they came.
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
    /// Stream offset of `next_seq` (bytes delivered so far).
    delivered: u64,
    /// Framing was lost; the rest of the stream is ignored.
    desynced: bool,
    last_frame: u64,
}

impl Stream {
    fn new(proto: Proto) -> Stream {
        Stream {
            proto,
            next_seq: None,
            buf: Vec::new(),
            pad_skip: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            delivered: 0,
            desynced: false,
            last_frame: 0,
        }
    }

    fn leftover(&self) -> usize {
        self.buf.len().saturating_sub(self.pad_skip) + self.held_bytes
    }
}

/// A message framed out of a TCP stream.
#[derive(Debug)]
pub(crate) struct TcpMessage {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: Proto,
    pub bytes: Vec<u8>,
}

/// All TCP streams of a capture.
#[derive(Debug, Default)]
pub(crate) struct TcpLayer {
    streams: HashMap<(SocketAddr, SocketAddr), Stream>,
    pub retransmissions: u64,
    pub out_of_order: u64,
}

impl TcpLayer {
    /// Feed one segment of a connection already classified as `proto`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn segment(
        &mut self,
        frame: u64,
        src: SocketAddr,
        dst: SocketAddr,
        proto: Proto,
        seg: &Segment<'_>,
        out: &mut Vec<TcpMessage>,
        problems: &mut Vec<MalformedReason>,
    ) {
        let key = (src, dst);
        if seg.flags & FLAG_RST != 0 {
            if let Some(old) = self.streams.remove(&key) {
                if old.leftover() > 0 && !old.desynced {
                    problems.push(framing(
                        src,
                        dst,
                        format!("reset inside a message ({} bytes pending)", old.leftover()),
                    ));
                }
            }
            return;
        }
        let stream = self
            .streams
            .entry(key)
            .or_insert_with(|| Stream::new(proto));
        stream.last_frame = frame;
        let mut seq = seg.seq;
        if seg.flags & FLAG_SYN != 0 {
            let isn_next = seg.seq.wrapping_add(1);
            if stream.next_seq.is_some_and(|n| n != isn_next) {
                // A new connection on the same ports.
                if stream.leftover() > 0 && !stream.desynced {
                    problems.push(framing(
                        src,
                        dst,
                        format!(
                            "new SYN inside a message ({} bytes pending)",
                            stream.leftover()
                        ),
                    ));
                }
                *stream = Stream::new(proto);
                stream.last_frame = frame;
            }
            if stream.next_seq.is_none() {
                stream.next_seq = Some(isn_next);
            }
            seq = isn_next;
        }
        let payload = seg.payload;
        if payload.is_empty() {
            return;
        }
        let next = *stream.next_seq.get_or_insert(seq);
        let distance = seq.wrapping_sub(next) as i32;
        if distance <= 0 {
            let skip = distance.unsigned_abs() as usize;
            if skip >= payload.len() {
                self.retransmissions += 1;
                return;
            }
            append(stream, &payload[skip..]);
        } else {
            self.out_of_order += 1;
            let at = stream.delivered + distance as u64;
            if stream.held_bytes + payload.len() > MAX_HELD_BYTES {
                if !stream.desynced {
                    problems.push(framing(
                        src,
                        dst,
                        "too much data beyond a gap; giving up on this stream".to_string(),
                    ));
                }
                stream.desynced = true;
                stream.held.clear();
                stream.held_bytes = 0;
                return;
            }
            let old = stream.held.insert(at, payload.to_vec());
            stream.held_bytes += payload.len() - old.map_or(0, |o| o.len());
            return;
        }
        // Segments held beyond the gap may now fit.
        while let Some((&at, _)) = stream.held.first_key_value() {
            if at > stream.delivered {
                break;
            }
            let Some((_, bytes)) = stream.held.pop_first() else {
                break;
            };
            stream.held_bytes -= bytes.len();
            let skip = (stream.delivered - at) as usize;
            if skip < bytes.len() {
                append(stream, &bytes[skip..]);
            }
        }
        frame_messages(stream, src, dst, out, problems);
    }

    /// Report the streams that end inside a message: (frame, problem).
    pub(crate) fn finish(&mut self) -> Vec<(u64, MalformedReason)> {
        let mut v: Vec<_> = self
            .streams
            .iter()
            .filter(|(_, s)| s.leftover() > 0 && !s.desynced)
            .map(|((src, dst), s)| {
                (
                    s.last_frame,
                    framing(
                        *src,
                        *dst,
                        format!(
                            "capture ends inside a message ({} bytes pending)",
                            s.leftover()
                        ),
                    ),
                )
            })
            .collect();
        v.sort_by_key(|(frame, _)| *frame);
        v
    }
}

fn framing(src: SocketAddr, dst: SocketAddr, what: String) -> MalformedReason {
    MalformedReason::TcpFraming { src, dst, what }
}

fn append(stream: &mut Stream, bytes: &[u8]) {
    stream.buf.extend_from_slice(bytes);
    stream.delivered += bytes.len() as u64;
    stream.next_seq = stream.next_seq.map(|n| n.wrapping_add(bytes.len() as u32));
}

fn frame_messages(
    stream: &mut Stream,
    src: SocketAddr,
    dst: SocketAddr,
    out: &mut Vec<TcpMessage>,
    problems: &mut Vec<MalformedReason>,
) {
    let mut at = 0usize;
    loop {
        if stream.desynced {
            at = stream.buf.len();
            break;
        }
        while stream.pad_skip > 0 && at < stream.buf.len() {
            if stream.buf[at] != 0 {
                // Not padding: the sender did not pad.
                stream.pad_skip = 0;
                break;
            }
            at += 1;
            stream.pad_skip -= 1;
        }
        if stream.pad_skip > 0 {
            break;
        }
        let Some(header) = CommonHeader::peek(&stream.buf[at..]) else {
            break;
        };
        let len = usize::from(header.length);
        if len < HEADER_LEN {
            problems.push(framing(
                src,
                dst,
                format!("message Length {len} < 4; framing lost"),
            ));
            stream.desynced = true;
            continue;
        }
        if stream.buf.len() - at < len {
            break;
        }
        out.push(TcpMessage {
            src,
            dst,
            proto: stream.proto,
            bytes: stream.buf[at..at + len].to_vec(),
        });
        at += len;
        stream.pad_skip = header.padded_len() - len;
    }
    stream.buf.drain(..at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, flags: u8, payload: &[u8]) -> Segment<'_> {
        Segment {
            src_port: 1,
            dst_port: 3863,
            seq,
            flags,
            payload,
        }
    }

    fn msg(t: u8, len: u16) -> Vec<u8> {
        let mut m = vec![t, 0];
        m.extend_from_slice(&len.to_be_bytes());
        m.resize(usize::from(len), 0xee);
        m
    }

    #[test]
    fn out_of_order_retransmitted_and_padded_segments_frame_exactly() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:3863".parse().unwrap();
        let mut stream = msg(1, 10); // padded to 12
        stream.extend_from_slice(&[0, 0]);
        stream.extend_from_slice(&msg(5, 8));
        stream.extend_from_slice(&msg(3, 7));
        stream.push(0);
        let mut tcp = TcpLayer::default();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        tcp.segment(
            1,
            a,
            b,
            Proto::Asap,
            &seg(99, FLAG_SYN, &[]),
            &mut out,
            &mut problems,
        );
        // bytes 0..5, then 12..28 (out of order), then 0..12 again (partly retransmitted).
        tcp.segment(
            2,
            a,
            b,
            Proto::Asap,
            &seg(100, 0, &stream[..5]),
            &mut out,
            &mut problems,
        );
        tcp.segment(
            3,
            a,
            b,
            Proto::Asap,
            &seg(112, 0, &stream[12..]),
            &mut out,
            &mut problems,
        );
        assert!(out.is_empty());
        tcp.segment(
            4,
            a,
            b,
            Proto::Asap,
            &seg(100, 0, &stream[..12]),
            &mut out,
            &mut problems,
        );
        tcp.segment(
            5,
            a,
            b,
            Proto::Asap,
            &seg(100, 0, &stream[..12]),
            &mut out,
            &mut problems,
        );
        let got: Vec<_> = out.iter().map(|m| m.bytes.clone()).collect();
        assert_eq!(got, vec![msg(1, 10), msg(5, 8), msg(3, 7)]);
        assert_eq!(tcp.out_of_order, 1);
        assert_eq!(tcp.retransmissions, 1);
        assert!(problems.is_empty());
        assert!(tcp.finish().is_empty());
    }

    #[test]
    fn zero_length_loses_framing_once() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:3863".parse().unwrap();
        let mut tcp = TcpLayer::default();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        tcp.segment(
            1,
            a,
            b,
            Proto::Asap,
            &seg(5, 0, &[1, 0, 0, 0, 9, 9]),
            &mut out,
            &mut problems,
        );
        tcp.segment(
            2,
            a,
            b,
            Proto::Asap,
            &seg(11, 0, &msg(1, 8)),
            &mut out,
            &mut problems,
        );
        assert!(out.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(parse(&[0; 19]).is_err());
    }
}
