//! The SCTP packet shim between the UDP socket and `sctp-proto` (RFC 9260 §3, RFC 6951 §5).
//!
//! `sctp-proto` carries the Payload Protocol Identifier as a WebRTC-only enum (ASAP's 11 and
//! ENRP's 12 would become "unknown"), does not send HEARTBEATs and cannot send ABORT. This
//! module reads and rewrites whole SCTP packets so that the transport can:
//!
//! * put the real PPID into outgoing DATA chunks (keyed by stream and stream sequence number)
//!   and read it from incoming ones;
//! * send its own HEARTBEAT chunks and take the peer's HEARTBEAT ACKs out of the packet before
//!   `sctp-proto` sees them (it treats an unexpected chunk as a protocol violation);
//! * send ABORT.
//!
//! Every rewritten packet gets a new CRC32c (RFC 9260 §6.8, appendix B): RFC 6951 §5.4 keeps
//! the SCTP checksum inside UDP encapsulation.

/// SCTP common header length (RFC 9260 §3.1).
pub const COMMON_HEADER: usize = 12;
/// Chunk type DATA.
pub const CT_DATA: u8 = 0;
/// Chunk type INIT.
pub const CT_INIT: u8 = 1;
/// Chunk type INIT ACK.
pub const CT_INIT_ACK: u8 = 2;
/// Chunk type HEARTBEAT.
pub const CT_HEARTBEAT: u8 = 4;
/// Chunk type HEARTBEAT ACK.
pub const CT_HEARTBEAT_ACK: u8 = 5;
/// Chunk type ABORT.
pub const CT_ABORT: u8 = 6;
/// Chunk type SHUTDOWN.
pub const CT_SHUTDOWN: u8 = 7;
/// Chunk type SHUTDOWN COMPLETE.
pub const CT_SHUTDOWN_COMPLETE: u8 = 14;
/// Heartbeat Info parameter type (RFC 9260 §3.3.5).
const PARAM_HB_INFO: u16 = 1;
/// Marker in the first 4 bytes of our heartbeat info, so that only our own HEARTBEAT ACKs
/// are taken out.
const HB_MAGIC: [u8; 4] = *b"RSPH";

/// The common header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
    /// Verification tag.
    pub vtag: u32,
}

/// Reads the common header (`None` if the packet is shorter than 12 bytes).
pub fn header(pkt: &[u8]) -> Option<Header> {
    if pkt.len() < COMMON_HEADER {
        return None;
    }
    Some(Header {
        src: u16::from_be_bytes([pkt[0], pkt[1]]),
        dst: u16::from_be_bytes([pkt[2], pkt[3]]),
        vtag: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
    })
}

/// One chunk's position: offset of its header, type, and length without padding.
#[derive(Debug, Clone, Copy)]
struct ChunkPos {
    off: usize,
    ty: u8,
    len: usize,
}

/// Chunks of a packet; stops at the first malformed chunk.
fn chunks(pkt: &[u8]) -> impl Iterator<Item = ChunkPos> + '_ {
    let mut off = COMMON_HEADER;
    std::iter::from_fn(move || {
        if off + 4 > pkt.len() {
            return None;
        }
        let ty = pkt[off];
        let len = u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]) as usize;
        if len < 4 || off + len > pkt.len() {
            return None;
        }
        let c = ChunkPos { off, ty, len };
        off += (len + 3) & !3;
        Some(c)
    })
}

/// True if the packet has a chunk of type `ty`.
pub fn has_chunk(pkt: &[u8], ty: u8) -> bool {
    chunks(pkt).any(|c| c.ty == ty)
}

/// Type of the first chunk.
pub fn first_chunk_type(pkt: &[u8]) -> Option<u8> {
    chunks(pkt).next().map(|c| c.ty)
}

/// Writes the CRC32c of the packet into its checksum field (RFC 9260 appendix B: computed
/// with the field zeroed, stored in the byte order the reference code produces).
pub fn fix_checksum(pkt: &mut [u8]) {
    if pkt.len() < COMMON_HEADER {
        return;
    }
    pkt[8..12].fill(0);
    let crc = crc32c::crc32c(pkt);
    pkt[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// True if the checksum field holds the packet's CRC32c.
pub fn checksum_ok(pkt: &[u8]) -> bool {
    if pkt.len() < COMMON_HEADER {
        return false;
    }
    let mut want = [0u8; 4];
    want.copy_from_slice(&pkt[8..12]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&pkt[..8]), &[0; 4]);
    let crc = crc32c::crc32c_append(crc, &pkt[12..]);
    crc.to_le_bytes() == want
}

/// A DATA chunk's identification and PPID (RFC 9260 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInfo {
    /// Stream identifier.
    pub stream: u16,
    /// Stream sequence number.
    pub ssn: u16,
    /// U bit.
    pub unordered: bool,
    /// B bit (first fragment).
    pub beginning: bool,
    /// Payload protocol identifier.
    pub ppid: u32,
}

/// What [`inbound`] found in a received packet.
#[derive(Debug, Default)]
pub struct Inbound {
    /// DATA chunks (first fragments only).
    pub data: Vec<DataInfo>,
    /// Nonces of our own HEARTBEAT ACKs (removed from the packet).
    pub hb_acks: Vec<u64>,
    /// The packet has a SHUTDOWN chunk (the peer closes gracefully).
    pub shutdown: bool,
    /// The packet has an ABORT chunk.
    pub abort: bool,
    /// The packet without those chunks (`None` if nothing was removed); `Some(empty)` if
    /// nothing is left for `sctp-proto`.
    pub rewritten: Option<Vec<u8>>,
}

/// INIT/INIT ACK parameters `sctp-proto` cannot parse (it aborts the packet on any
/// parameter type with the high bit clear that it does not know): IPv4/IPv6 Address,
/// Unrecognized Parameter, Cookie Preservative, Host Name Address (RFC 9260 §3.3.2). This
/// transport is single-homed (it uses the packet's source address), so dropping the address
/// lists loses only the peer's other paths.
const STRIP_INIT_PARAMS: [u16; 5] = [5, 6, 8, 9, 11];

/// The INIT or INIT ACK chunk `c` without [`STRIP_INIT_PARAMS`] (`None` if it has none).
fn strip_init(c: &[u8]) -> Option<Vec<u8>> {
    const FIXED: usize = 20;
    if c.len() < FIXED {
        return None;
    }
    let mut out = c[..FIXED].to_vec();
    let mut off = FIXED;
    let mut changed = false;
    while off + 4 <= c.len() {
        let ty = u16::from_be_bytes([c[off], c[off + 1]]);
        let len = u16::from_be_bytes([c[off + 2], c[off + 3]]) as usize;
        if len < 4 || off + len > c.len() {
            // malformed: keep the rest as it is, sctp-proto rejects it
            out.extend_from_slice(&c[off..]);
            break;
        }
        let padded = ((len + 3) & !3).min(c.len() - off);
        if STRIP_INIT_PARAMS.contains(&ty) {
            changed = true;
        } else {
            out.extend_from_slice(&c[off..off + padded]);
        }
        off += padded;
    }
    if !changed {
        return None;
    }
    // Chunk length without the last parameter's padding (RFC 9260 §3.2).
    let mut len = out.len();
    let mut last = FIXED;
    let mut o = FIXED;
    while o + 4 <= out.len() {
        let l = u16::from_be_bytes([out[o + 2], out[o + 3]]) as usize;
        if l < 4 {
            break;
        }
        last = o + l;
        o += (l + 3) & !3;
    }
    if last <= out.len() {
        len = last;
    }
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    Some(out)
}

/// Scans a received packet: collects DATA PPIDs, takes out HEARTBEAT ACKs of our own
/// heartbeats and strips INIT/INIT ACK parameters `sctp-proto` cannot parse.
pub fn inbound(pkt: &[u8]) -> Inbound {
    let mut out = Inbound::default();
    let mut keep: Vec<Vec<u8>> = Vec::new();
    let mut removed = false;
    for c in chunks(pkt) {
        let body = &pkt[c.off..c.off + c.len];
        match c.ty {
            CT_SHUTDOWN => out.shutdown = true,
            CT_ABORT => out.abort = true,
            CT_DATA if c.len >= 16 => {
                let flags = body[1];
                if flags & 0x02 != 0 {
                    out.data.push(DataInfo {
                        stream: u16::from_be_bytes([body[8], body[9]]),
                        ssn: u16::from_be_bytes([body[10], body[11]]),
                        unordered: flags & 0x04 != 0,
                        beginning: true,
                        ppid: u32::from_be_bytes([body[12], body[13], body[14], body[15]]),
                    });
                }
            }
            CT_INIT | CT_INIT_ACK => {
                if let Some(stripped) = strip_init(body) {
                    keep.push(stripped);
                    removed = true;
                    continue;
                }
            }
            CT_HEARTBEAT_ACK if c.len == 4 + 4 + 12 && body[8..12] == HB_MAGIC => {
                // param header (type 1, len 16) then magic + nonce
                let mut n = [0u8; 8];
                n.copy_from_slice(&body[12..20]);
                out.hb_acks.push(u64::from_be_bytes(n));
                removed = true;
                continue;
            }
            _ => {}
        }
        keep.push(pkt[c.off..c.off + ((c.len + 3) & !3).min(pkt.len() - c.off)].to_vec());
    }
    if removed {
        let mut v = pkt[..COMMON_HEADER].to_vec();
        if !keep.is_empty() {
            for c in keep {
                v.extend_from_slice(&c);
                while v.len() & 3 != 0 {
                    v.push(0);
                }
            }
            fix_checksum(&mut v);
        } else {
            v.clear();
        }
        out.rewritten = Some(v);
    }
    out
}

/// Rewrites the PPID of every DATA chunk of an outgoing packet with `lookup(stream, ssn)`
/// (chunks for which it returns `None` are left alone) and fixes the checksum if anything
/// changed. Returns the common header (for learning the peer's tag).
pub fn outbound(pkt: &mut [u8], mut lookup: impl FnMut(u16, u16) -> Option<u32>) -> bool {
    let mut changed = false;
    let pos: Vec<ChunkPos> = chunks(pkt)
        .filter(|c| c.ty == CT_DATA && c.len >= 16)
        .collect();
    for c in pos {
        let b = &mut pkt[c.off..c.off + c.len];
        let stream = u16::from_be_bytes([b[8], b[9]]);
        let ssn = u16::from_be_bytes([b[10], b[11]]);
        if let Some(ppid) = lookup(stream, ssn) {
            let new = ppid.to_be_bytes();
            if b[12..16] != new {
                b[12..16].copy_from_slice(&new);
                changed = true;
            }
        }
    }
    if changed {
        fix_checksum(pkt);
    }
    changed
}

fn with_header(h: Header, chunk: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(COMMON_HEADER + chunk.len());
    v.extend_from_slice(&h.src.to_be_bytes());
    v.extend_from_slice(&h.dst.to_be_bytes());
    v.extend_from_slice(&h.vtag.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(chunk);
    fix_checksum(&mut v);
    v
}

/// A HEARTBEAT packet (RFC 9260 §3.3.5) whose Heartbeat Info carries `nonce`.
pub fn heartbeat(h: Header, nonce: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(20);
    c.extend_from_slice(&[CT_HEARTBEAT, 0]);
    c.extend_from_slice(&20u16.to_be_bytes());
    c.extend_from_slice(&PARAM_HB_INFO.to_be_bytes());
    c.extend_from_slice(&16u16.to_be_bytes());
    c.extend_from_slice(&HB_MAGIC);
    c.extend_from_slice(&nonce.to_be_bytes());
    with_header(h, &c)
}

/// An ABORT packet without error causes (RFC 9260 §3.3.7, T bit clear).
pub fn abort(h: Header) -> Vec<u8> {
    with_header(h, &[CT_ABORT, 0, 0, 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_chunk(stream: u16, ssn: u16, ppid: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut c = vec![CT_DATA, 0x03];
        c.extend_from_slice(&(len as u16).to_be_bytes());
        c.extend_from_slice(&7u32.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&ssn.to_be_bytes());
        c.extend_from_slice(&ppid.to_be_bytes());
        c.extend_from_slice(payload);
        while c.len() & 3 != 0 {
            c.push(0);
        }
        c
    }

    const H: Header = Header {
        src: 3863,
        dst: 40000,
        vtag: 0xdead_beef,
    };

    #[test]
    fn checksum_matches_rfc_vector() {
        // RFC 9260 appendix B / RFC 3720 B.4: CRC32c of 32 zero bytes is 0x8a9136aa.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        let p = heartbeat(H, 1);
        assert!(checksum_ok(&p));
        let mut bad = p.clone();
        bad[20] ^= 1;
        assert!(!checksum_ok(&bad));
    }

    #[test]
    fn outbound_rewrites_ppid_and_checksum() {
        let mut chunk = data_chunk(3, 9, 53, b"hello");
        chunk.extend(data_chunk(4, 1, 53, b"x"));
        let mut p = with_header(H, &chunk);
        assert!(outbound(&mut p, |s, n| (s == 3 && n == 9).then_some(11)));
        assert!(checksum_ok(&p));
        let i = inbound(&p);
        assert_eq!(
            i.data,
            vec![
                DataInfo {
                    stream: 3,
                    ssn: 9,
                    unordered: false,
                    beginning: true,
                    ppid: 11
                },
                DataInfo {
                    stream: 4,
                    ssn: 1,
                    unordered: false,
                    beginning: true,
                    ppid: 53
                }
            ]
        );
        assert!(i.rewritten.is_none());
        // no change: no rewrite
        assert!(!outbound(&mut p, |_, _| Some(11).filter(|_| false)));
    }

    #[test]
    fn heartbeat_ack_is_taken_out() {
        let hb = heartbeat(H, 0x1122_3344_5566_7788);
        assert_eq!(first_chunk_type(&hb), Some(CT_HEARTBEAT));
        // the peer echoes the info in a HEARTBEAT ACK, bundled with a DATA chunk
        let mut ack = hb[COMMON_HEADER..].to_vec();
        ack[0] = CT_HEARTBEAT_ACK;
        let mut chunks = data_chunk(0, 0, 12, b"abcd");
        chunks.extend(&ack);
        let p = with_header(H, &chunks);
        let i = inbound(&p);
        assert_eq!(i.hb_acks, vec![0x1122_3344_5566_7788]);
        let rest = i.rewritten.expect("rewritten");
        assert!(checksum_ok(&rest));
        assert_eq!(&rest[COMMON_HEADER..], &data_chunk(0, 0, 12, b"abcd")[..]);
        // alone: nothing left
        let p = with_header(H, &ack);
        assert_eq!(inbound(&p).rewritten, Some(Vec::new()));
        // a foreign HEARTBEAT ACK (not our magic) stays
        let mut foreign = ack.clone();
        foreign[8] = b'X';
        assert!(inbound(&with_header(H, &foreign)).rewritten.is_none());
    }

    #[test]
    fn init_address_parameters_are_stripped() {
        // INIT as Linux sends it: fixed part, IPv4 Address (5), Supported Address Types
        // (12, 6 bytes + 2 padding), ECN capable (0x8000), IPv6 Address (6).
        let mut c = vec![CT_INIT, 0, 0, 0];
        c.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // initiate tag
        c.extend_from_slice(&106_496u32.to_be_bytes()); // a_rwnd
        c.extend_from_slice(&[0, 10, 0, 10]); // streams
        c.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
        c.extend_from_slice(&[0, 5, 0, 8, 10, 0, 1, 1]);
        c.extend_from_slice(&[0, 12, 0, 6, 0, 5, 0, 0]);
        c.extend_from_slice(&[0x80, 0, 0, 4]);
        c.extend_from_slice(&[0, 6, 0, 20]);
        c.extend_from_slice(&[0x20, 1, 0x0d, 0xb8]);
        c.extend_from_slice(&[0; 12]);
        let len = c.len() as u16;
        c[2..4].copy_from_slice(&len.to_be_bytes());
        let p = with_header(Header { vtag: 0, ..H }, &c);
        let i = inbound(&p);
        let q = i.rewritten.expect("rewritten");
        assert!(checksum_ok(&q));
        let mut want = c[..20].to_vec();
        want.extend_from_slice(&[0, 12, 0, 6, 0, 5, 0, 0]);
        want.extend_from_slice(&[0x80, 0, 0, 4]);
        let wl = want.len() as u16;
        want[2..4].copy_from_slice(&wl.to_be_bytes());
        assert_eq!(&q[COMMON_HEADER..], &want[..]);
        // An INIT without such parameters is left alone.
        assert!(inbound(&with_header(H, &want)).rewritten.is_none());
    }

    #[test]
    fn truncated_input_is_harmless() {
        for n in 0..40 {
            let p = heartbeat(H, 5);
            let p = &p[..n.min(p.len())];
            let _ = inbound(p);
            let _ = header(p);
            let mut q = p.to_vec();
            let _ = outbound(&mut q, |_, _| Some(1));
        }
        let a = abort(H);
        assert_eq!(first_chunk_type(&a), Some(CT_ABORT));
        assert_eq!(header(&a), Some(H));
    }
}
