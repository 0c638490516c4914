//! SCTP packets (RFC 9260 §3): chunk walking, DATA (§3.3.1) and I-DATA (RFC 8260 §2.1)
//! user-message reassembly, retransmission removal and CRC32c checking (§6.8).

use std::collections::{HashMap, HashSet};

use super::MalformedReason;
use rserpool_wire::header::padded as pad4;

/// SCTP common header size (RFC 9260 §3.1).
pub(crate) const COMMON_HEADER_LEN: usize = 12;
/// Chunk type of DATA (RFC 9260 §3.3.1).
pub(crate) const CHUNK_DATA: u8 = 0;
const CHUNK_IDATA: u8 = 64;
const FLAG_UNORDERED: u8 = 0x04;
/// B flag of DATA: first fragment of a user message.
pub(crate) const FLAG_BEGIN: u8 = 0x02;
/// E flag of DATA: last fragment of a user message.
pub(crate) const FLAG_END: u8 = 0x01;
/// Upper bound of fragments held per direction before giving up on it.
const MAX_PENDING_FRAGMENTS: usize = 65_536;

/// Whether the packet's CRC32c (RFC 9260 §6.8, Appendix A) is right. The checksum is
/// computed with the field set to zero and stored least significant byte first, as the
/// reflected CRC-32C algorithm produces it.
pub(crate) fn checksum_ok(packet: &[u8]) -> bool {
    if packet.len() < COMMON_HEADER_LEN {
        return false;
    }
    let stored = u32::from_le_bytes([packet[8], packet[9], packet[10], packet[11]]);
    stored == compute_checksum(packet)
}

/// CRC32c of an SCTP packet, computed as if its checksum field were zero.
pub(crate) fn compute_checksum(packet: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&packet[..8]);
    let crc = crc32c::crc32c_append(crc, &[0, 0, 0, 0]);
    crc32c::crc32c_append(crc, &packet[COMMON_HEADER_LEN..])
}

/// One direction of one association, as the receiver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Direction {
    src_port: u16,
    dst_port: u16,
    vtag: u32,
}

/// A complete SCTP user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserMessage {
    pub src_port: u16,
    pub dst_port: u16,
    pub stream: u16,
    pub ppid: u32,
    pub bytes: Vec<u8>,
}

impl UserMessage {
    fn new(dir: Direction, stream: u16, ppid: u32, bytes: Vec<u8>) -> Self {
        UserMessage {
            src_port: dir.src_port,
            dst_port: dir.dst_port,
            stream,
            ppid,
            bytes,
        }
    }
}

/// The fields DATA (RFC 9260 §3.3.1) and I-DATA (RFC 8260 §2.1) chunks share: flags, TSN
/// and stream; `word3`/`word4` are the last two 32-bit words of the header (DATA: stream +
/// SSN and PPID; I-DATA: MID and PPID or FSN), `data` the user data after the header.
struct ChunkHead<'c> {
    flags: u8,
    tsn: u32,
    stream: u16,
    word3: u32,
    word4: u32,
    data: &'c [u8],
}

impl<'c> ChunkHead<'c> {
    /// Reads the head of a chunk whose header is `header_len` bytes (16 or 20).
    fn parse(
        chunk: &'c [u8],
        header_len: usize,
        layer: &'static str,
    ) -> Result<Self, MalformedReason> {
        if chunk.len() < header_len {
            return Err(MalformedReason::TruncatedHeader {
                layer,
                need: header_len,
                have: chunk.len(),
            });
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([chunk[at], chunk[at + 1], chunk[at + 2], chunk[at + 3]])
        };
        Ok(ChunkHead {
            flags: chunk[1],
            tsn: be32(4),
            stream: u16::from_be_bytes([chunk[8], chunk[9]]),
            word3: be32(header_len - 8),
            word4: be32(header_len - 4),
            data: &chunk[header_len..],
        })
    }

    /// Both B and E set: the whole user message in one chunk.
    fn unfragmented(&self) -> bool {
        self.flags & (FLAG_BEGIN | FLAG_END) == FLAG_BEGIN | FLAG_END
    }
}

#[derive(Debug)]
struct Fragment {
    flags: u8,
    stream: u16,
    ppid: u32,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IDataKey {
    dir: Direction,
    stream: u16,
    unordered: bool,
    mid: u32,
}

/// SCTP state across packets: seen TSNs and pending fragments.
#[derive(Debug, Default)]
pub(crate) struct SctpLayer {
    seen: HashMap<Direction, HashSet<u32>>,
    fragments: HashMap<Direction, HashMap<u32, Fragment>>,
    ifragments: HashMap<IDataKey, HashMap<u32, Fragment>>,
    pub packets: u64,
    pub bad_checksums: u64,
    pub duplicates: u64,
}

impl SctpLayer {
    /// Take one SCTP packet apart; push every user message it completes to `out`.
    /// Problems with single chunks go to `problems` and the walk continues where possible.
    pub(crate) fn packet(
        &mut self,
        packet: &[u8],
        out: &mut Vec<UserMessage>,
        problems: &mut Vec<MalformedReason>,
    ) -> Result<(), MalformedReason> {
        if packet.len() < COMMON_HEADER_LEN {
            return Err(MalformedReason::TruncatedHeader {
                layer: "SCTP",
                need: COMMON_HEADER_LEN,
                have: packet.len(),
            });
        }
        self.packets += 1;
        if !checksum_ok(packet) {
            self.bad_checksums += 1;
        }
        let dir = Direction {
            src_port: u16::from_be_bytes([packet[0], packet[1]]),
            dst_port: u16::from_be_bytes([packet[2], packet[3]]),
            vtag: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        };
        let mut at = COMMON_HEADER_LEN;
        while at < packet.len() {
            let rest = &packet[at..];
            if rest.len() < 4 {
                return Err(MalformedReason::TruncatedHeader {
                    layer: "SCTP chunk",
                    need: 4,
                    have: rest.len(),
                });
            }
            let chunk_type = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            if len < 4 || len > rest.len() {
                return Err(MalformedReason::BadLength {
                    layer: "SCTP chunk",
                    length: len,
                    available: rest.len(),
                });
            }
            let chunk = &rest[..len];
            match chunk_type {
                CHUNK_DATA => {
                    if let Err(e) = self.data(dir, chunk, out) {
                        problems.push(e);
                    }
                }
                CHUNK_IDATA => {
                    if let Err(e) = self.idata(dir, chunk, out) {
                        problems.push(e);
                    }
                }
                _ => {}
            }
            at += pad4(len);
        }
        Ok(())
    }

    fn first_time(&mut self, dir: Direction, tsn: u32) -> bool {
        let fresh = self.seen.entry(dir).or_default().insert(tsn);
        if !fresh {
            self.duplicates += 1;
        }
        fresh
    }

    /// DATA chunk: TSN (4), stream (2), SSN (2), PPID (4), user data (RFC 9260 §3.3.1).
    fn data(
        &mut self,
        dir: Direction,
        chunk: &[u8],
        out: &mut Vec<UserMessage>,
    ) -> Result<(), MalformedReason> {
        let head = ChunkHead::parse(chunk, 16, "SCTP DATA chunk")?;
        let (flags, tsn, stream, ppid, data) =
            (head.flags, head.tsn, head.stream, head.word4, head.data);
        if !self.first_time(dir, tsn) {
            return Ok(());
        }
        if head.unfragmented() {
            out.push(UserMessage::new(dir, stream, ppid, data.to_vec()));
            return Ok(());
        }
        let pending = self.fragments.entry(dir).or_default();
        if pending.len() >= MAX_PENDING_FRAGMENTS {
            pending.clear();
            return Err(MalformedReason::Unsupported(
                "too many pending SCTP fragments; dropped them",
            ));
        }
        pending.insert(
            tsn,
            Fragment {
                flags,
                stream,
                ppid,
                data: data.to_vec(),
            },
        );
        // Fragments of one user message carry consecutive TSNs: find B at or before this
        // TSN and E at or after it, with nothing missing in between.
        // A fragment with the other end flag on the way belongs to another message.
        let mut first = tsn;
        loop {
            match pending.get(&first) {
                Some(f) if f.flags & FLAG_BEGIN != 0 => break,
                Some(f) if first != tsn && f.flags & FLAG_END != 0 => return Ok(()),
                Some(_) => first = first.wrapping_sub(1),
                None => return Ok(()),
            }
        }
        let mut last = tsn;
        loop {
            match pending.get(&last) {
                Some(f) if f.flags & FLAG_END != 0 => break,
                Some(f) if last != tsn && f.flags & FLAG_BEGIN != 0 => return Ok(()),
                Some(_) => last = last.wrapping_add(1),
                None => return Ok(()),
            }
        }
        let mut bytes = Vec::new();
        let mut head: Option<(u16, u32)> = None;
        let mut t = first;
        loop {
            if let Some(f) = pending.remove(&t) {
                head.get_or_insert((f.stream, f.ppid));
                if head.map(|h| h.0) != Some(f.stream) {
                    return Err(MalformedReason::Unsupported(
                        "SCTP fragments of one message on different streams",
                    ));
                }
                bytes.extend_from_slice(&f.data);
            }
            if t == last {
                break;
            }
            t = t.wrapping_add(1);
        }
        if let Some((stream, ppid)) = head {
            out.push(UserMessage::new(dir, stream, ppid, bytes));
        }
        Ok(())
    }

    /// I-DATA chunk: TSN (4), stream (2), reserved (2), MID (4), PPID or FSN (4), user
    /// data (RFC 8260 §2.1). The first fragment (B) carries the PPID and has FSN 0.
    fn idata(
        &mut self,
        dir: Direction,
        chunk: &[u8],
        out: &mut Vec<UserMessage>,
    ) -> Result<(), MalformedReason> {
        let head = ChunkHead::parse(chunk, 20, "SCTP I-DATA chunk")?;
        let (flags, stream, mid, ppid_or_fsn, data) =
            (head.flags, head.stream, head.word3, head.word4, head.data);
        if !self.first_time(dir, head.tsn) {
            return Ok(());
        }
        if head.unfragmented() {
            out.push(UserMessage::new(dir, stream, ppid_or_fsn, data.to_vec()));
            return Ok(());
        }
        let key = IDataKey {
            dir,
            stream,
            unordered: flags & FLAG_UNORDERED != 0,
            mid,
        };
        let (fsn, ppid) = if flags & FLAG_BEGIN != 0 {
            (0, ppid_or_fsn)
        } else {
            (ppid_or_fsn, 0)
        };
        if self.ifragments.len() >= MAX_PENDING_FRAGMENTS {
            self.ifragments.clear();
            return Err(MalformedReason::Unsupported(
                "too many pending SCTP I-DATA messages; dropped them",
            ));
        }
        let pending = self.ifragments.entry(key).or_default();
        pending.insert(
            fsn,
            Fragment {
                flags,
                stream,
                ppid,
                data: data.to_vec(),
            },
        );
        let mut last = 0u32;
        loop {
            match pending.get(&last) {
                Some(f) if f.flags & FLAG_END != 0 => break,
                Some(_) => last = last.wrapping_add(1),
                None => return Ok(()),
            }
            if last == 0 {
                return Ok(());
            }
        }
        let Some(pending) = self.ifragments.remove(&key) else {
            return Ok(());
        };
        let mut pending = pending;
        let mut bytes = Vec::new();
        let mut ppid = 0;
        for fsn in 0..=last {
            if let Some(f) = pending.remove(&fsn) {
                if fsn == 0 {
                    ppid = f.ppid;
                }
                bytes.extend_from_slice(&f.data);
            }
        }
        out.push(UserMessage::new(dir, stream, ppid, bytes));
        Ok(())
    }

    /// Fragments still waiting for their message at the end of the capture.
    pub(crate) fn pending_fragments(&self) -> u64 {
        let data: usize = self.fragments.values().map(HashMap::len).sum();
        let idata: usize = self.ifragments.values().map(HashMap::len).sum();
        (data + idata) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_chunk(flags: u8, tsn: u32, stream: u16, ppid: u32, data: &[u8]) -> Vec<u8> {
        let mut c = vec![CHUNK_DATA, flags, 0, 0];
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&0u16.to_be_bytes());
        c.extend_from_slice(&ppid.to_be_bytes());
        c.extend_from_slice(data);
        let len = c.len() as u16;
        c[2..4].copy_from_slice(&len.to_be_bytes());
        c.resize(pad4(c.len()), 0);
        c
    }

    fn packet(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0x0f, 0x17, 0x0f, 0x17, 0, 0, 0, 1, 0, 0, 0, 0];
        for c in chunks {
            p.extend_from_slice(c);
        }
        let crc = compute_checksum(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        p
    }

    #[test]
    fn fragments_reassemble_in_tsn_order_and_duplicates_drop() {
        let mut sctp = SctpLayer::default();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        // Middle, end, then begin: the message completes with the B fragment.
        sctp.packet(
            &packet(&[data_chunk(0, 11, 2, 11, b"bbbb")]),
            &mut out,
            &mut problems,
        )
        .unwrap();
        sctp.packet(
            &packet(&[data_chunk(FLAG_END, 12, 2, 11, b"cc")]),
            &mut out,
            &mut problems,
        )
        .unwrap();
        assert!(out.is_empty());
        sctp.packet(
            &packet(&[data_chunk(FLAG_BEGIN, 10, 2, 11, b"aaaa")]),
            &mut out,
            &mut problems,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, b"aaaabbbbcc");
        assert_eq!(out[0].stream, 2);
        assert_eq!(out[0].ppid, 11);
        // A retransmission of TSN 12 must not produce anything.
        sctp.packet(
            &packet(&[data_chunk(FLAG_END, 12, 2, 11, b"cc")]),
            &mut out,
            &mut problems,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(sctp.duplicates, 1);
        assert_eq!(sctp.bad_checksums, 0);
        assert_eq!(sctp.pending_fragments(), 0);
        assert!(problems.is_empty());
    }

    #[test]
    fn bundled_chunks_and_truncation() {
        let mut sctp = SctpLayer::default();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let p = packet(&[
            data_chunk(3, 1, 0, 12, b"x"),
            data_chunk(3, 2, 1, 11, b"yz"),
        ]);
        sctp.packet(&p, &mut out, &mut problems).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].ppid, out[1].ppid, out[1].stream), (12, 11, 1));
        for n in 0..p.len() {
            let _ = SctpLayer::default().packet(&p[..n], &mut Vec::new(), &mut Vec::new());
        }
    }

    fn idata_chunk(
        flags: u8,
        tsn: u32,
        stream: u16,
        mid: u32,
        ppid_or_fsn: u32,
        data: &[u8],
    ) -> Vec<u8> {
        let mut c = vec![CHUNK_IDATA, flags, 0, 0];
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c.extend_from_slice(&mid.to_be_bytes());
        c.extend_from_slice(&ppid_or_fsn.to_be_bytes());
        c.extend_from_slice(data);
        let len = c.len() as u16;
        c[2..4].copy_from_slice(&len.to_be_bytes());
        c.resize(pad4(c.len()), 0);
        c
    }

    #[test]
    fn idata_fragments_of_interleaved_messages_reassemble_by_mid_and_fsn() {
        let mut sctp = SctpLayer::default();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        // Message 7 (PPID 12) and message 8 (PPID 11) interleaved on stream 1.
        let p = packet(&[
            idata_chunk(FLAG_BEGIN, 100, 1, 7, 12, b"a1"),
            idata_chunk(FLAG_BEGIN, 101, 1, 8, 11, b"b1"),
            idata_chunk(0, 102, 1, 8, 1, b"b2"),
            idata_chunk(FLAG_END, 103, 1, 7, 1, b"a2"),
        ]);
        sctp.packet(&p, &mut out, &mut problems).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ppid, out[0].bytes.as_slice()), (12, &b"a1a2"[..]));
        sctp.packet(
            &packet(&[idata_chunk(FLAG_END, 104, 1, 8, 2, b"b3")]),
            &mut out,
            &mut problems,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[1].ppid, out[1].stream, out[1].bytes.as_slice()),
            (11, 1, &b"b1b2b3"[..])
        );
        // An unfragmented I-DATA message.
        sctp.packet(
            &packet(&[idata_chunk(3, 105, 0, 9, 11, b"whole")]),
            &mut out,
            &mut problems,
        )
        .unwrap();
        assert_eq!(out[2].bytes, b"whole");
        assert_eq!(sctp.pending_fragments(), 0);
        assert!(problems.is_empty());
    }
}
