//! Link layers, IPv4 (RFC 791) and IPv6 (RFC 8200), with fragment reassembly.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::MalformedReason;

/// EtherType of IPv4.
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IP protocol number of TCP.
pub(crate) const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub(crate) const IPPROTO_UDP: u8 = 17;
/// IP protocol number of SCTP.
pub(crate) const IPPROTO_SCTP: u8 = 132;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn need(layer: &'static str, data: &[u8], n: usize) -> Result<(), MalformedReason> {
    if data.len() < n {
        Err(MalformedReason::TruncatedHeader {
            layer,
            need: n,
            have: data.len(),
        })
    } else {
        Ok(())
    }
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Option<&[u8]> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Some(rest),
        _ => None,
    }
}

/// The IP packet inside a link-layer frame; `Ok(None)` for frames that carry no IP.
pub(crate) fn link_payload(linktype: u32, data: &[u8]) -> Result<Option<&[u8]>, MalformedReason> {
    match linktype {
        // Ethernet, with any number of 802.1Q / 802.1ad tags.
        1 => {
            need("Ethernet", data, 14)?;
            let mut ethertype = be16(data, 12);
            let mut at = 14;
            while ETHERTYPE_VLAN.contains(&ethertype) {
                need("802.1Q", data, at + 4)?;
                ethertype = be16(data, at + 2);
                at += 4;
            }
            Ok(by_ethertype(ethertype, &data[at..]))
        }
        // Linux cooked capture v1: protocol at 14, payload at 16.
        113 => {
            need("Linux SLL", data, 16)?;
            Ok(by_ethertype(be16(data, 14), &data[16..]))
        }
        // Linux cooked capture v2: protocol at 0, payload at 20.
        276 => {
            need("Linux SLL2", data, 20)?;
            Ok(by_ethertype(be16(data, 0), &data[20..]))
        }
        // Raw IP (101; 12 and 14 on some systems), IPv4 only (228), IPv6 only (229).
        12 | 14 | 101 | 228 | 229 => Ok(Some(data)),
        // BSD null (host byte order) and OpenBSD loop (network byte order): a 4-byte
        // address family. AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30.
        0 | 108 => {
            need("BSD loopback", data, 4)?;
            let le = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            let be = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let family = if le < 256 { le } else { be };
            Ok(match family {
                2 | 10 | 24 | 28 | 30 => Some(&data[4..]),
                _ => None,
            })
        }
        other => Err(MalformedReason::UnsupportedLinkType(other)),
    }
}

/// A transport-layer payload with its IP endpoints.
#[derive(Debug)]
pub(crate) struct Transport<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    pub payload: Cow<'a, [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    /// IPv4: the protocol; IPv6: 0 (the next header is in the first fragment).
    proto: u8,
}

#[derive(Debug, Default)]
struct FragBuf {
    /// (offset, bytes) of every fragment received.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Length of the whole payload, known once the last fragment arrived.
    total: Option<usize>,
    /// IPv6: next header taken from the first fragment.
    next_header: Option<u8>,
}

/// A reassembled payload with the IPv6 next header of its first fragment.
type Reassembled = (Option<u8>, Vec<u8>);

/// Largest IP payload a reassembled datagram may have.
const MAX_DATAGRAM: usize = 65_535;

/// Reassembles fragmented IPv4 and IPv6 datagrams.
#[derive(Debug, Default)]
pub(crate) struct IpLayer {
    pending: HashMap<FragKey, FragBuf>,
    pub fragments: u64,
    pub reassembled: u64,
}

impl IpLayer {
    /// Parse one IP packet. `Ok(None)` when it is a fragment that did not complete a
    /// datagram yet.
    pub(crate) fn packet<'a>(
        &mut self,
        data: &'a [u8],
    ) -> Result<Option<Transport<'a>>, MalformedReason> {
        need("IP", data, 1)?;
        match data[0] >> 4 {
            4 => self.ipv4(data),
            6 => self.ipv6(data),
            v => Err(MalformedReason::BadIpVersion(v)),
        }
    }

    fn ipv4<'a>(&mut self, data: &'a [u8]) -> Result<Option<Transport<'a>>, MalformedReason> {
        need("IPv4", data, 20)?;
        let ihl = usize::from(data[0] & 0x0f) * 4;
        if ihl < 20 || ihl > data.len() {
            return Err(MalformedReason::BadLength {
                layer: "IPv4 header length",
                length: ihl,
                available: data.len(),
            });
        }
        // A total length of 0 appears with TCP segmentation offload: use what was captured.
        let total = match usize::from(be16(data, 2)) {
            0 => data.len(),
            t => t,
        };
        if total < ihl || total > data.len() {
            return Err(MalformedReason::BadLength {
                layer: "IPv4 total length",
                length: total,
                available: data.len(),
            });
        }
        let src = IpAddr::V4(Ipv4Addr::new(data[12], data[13], data[14], data[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(data[16], data[17], data[18], data[19]));
        let proto = data[9];
        let frag = be16(data, 6);
        let more = frag & 0x2000 != 0;
        let offset = usize::from(frag & 0x1fff) * 8;
        let payload = &data[ihl..total];
        if !more && offset == 0 {
            return Ok(Some(Transport {
                src,
                dst,
                proto,
                payload: Cow::Borrowed(payload),
            }));
        }
        let key = FragKey {
            src,
            dst,
            id: u32::from(be16(data, 4)),
            proto,
        };
        Ok(self
            .fragment(key, offset, more, payload, None)?
            .map(|(_, payload)| Transport {
                src,
                dst,
                proto,
                payload: Cow::Owned(payload),
            }))
    }

    fn ipv6<'a>(&mut self, data: &'a [u8]) -> Result<Option<Transport<'a>>, MalformedReason> {
        need("IPv6", data, 40)?;
        let plen = match usize::from(be16(data, 4)) {
            0 => data.len() - 40,
            n => n,
        };
        if 40 + plen > data.len() {
            return Err(MalformedReason::BadLength {
                layer: "IPv6 payload length",
                length: plen,
                available: data.len() - 40,
            });
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&data[8..24]);
        let src = IpAddr::V6(Ipv6Addr::from(a));
        a.copy_from_slice(&data[24..40]);
        let dst = IpAddr::V6(Ipv6Addr::from(a));
        let payload = &data[40..40 + plen];
        match walk_extensions(data[6], payload)? {
            Walk::Done(proto, at) => Ok(Some(Transport {
                src,
                dst,
                proto,
                payload: Cow::Borrowed(&payload[at..]),
            })),
            Walk::Fragment {
                next,
                id,
                offset,
                more,
                at,
            } => {
                let key = FragKey {
                    src,
                    dst,
                    id,
                    proto: 0,
                };
                let first_next = (offset == 0).then_some(next);
                match self.fragment(key, offset, more, &payload[at..], first_next)? {
                    None => Ok(None),
                    Some((next, whole)) => {
                        let next = next.unwrap_or(next_or_none());
                        match walk_extensions(next, &whole)? {
                            Walk::Done(proto, at) => Ok(Some(Transport {
                                src,
                                dst,
                                proto,
                                payload: Cow::Owned(whole[at..].to_vec()),
                            })),
                            Walk::Fragment { .. } => Err(MalformedReason::Unsupported(
                                "IPv6 fragment header inside a fragment",
                            )),
                        }
                    }
                }
            }
        }
    }

    /// Store one fragment; return the whole payload once every piece is there.
    fn fragment(
        &mut self,
        key: FragKey,
        offset: usize,
        more: bool,
        payload: &[u8],
        next_header: Option<u8>,
    ) -> Result<Option<Reassembled>, MalformedReason> {
        self.fragments += 1;
        let end = offset + payload.len();
        if end > MAX_DATAGRAM {
            self.pending.remove(&key);
            return Err(MalformedReason::BadLength {
                layer: "IP fragment offset",
                length: end,
                available: MAX_DATAGRAM,
            });
        }
        let buf = self.pending.entry(key.clone()).or_default();
        if next_header.is_some() {
            buf.next_header = next_header;
        }
        if !more {
            buf.total = Some(end);
        }
        buf.pieces.push((offset, payload.to_vec()));
        let Some(total) = buf.total else {
            return Ok(None);
        };
        buf.pieces.sort_by_key(|(off, _)| *off);
        let mut covered = 0;
        for (off, bytes) in &buf.pieces {
            if *off > covered {
                return Ok(None);
            }
            covered = covered.max(off + bytes.len());
        }
        if covered < total {
            return Ok(None);
        }
        let Some(buf) = self.pending.remove(&key) else {
            return Ok(None);
        };
        let mut whole = vec![0u8; total];
        for (off, bytes) in &buf.pieces {
            let end = (off + bytes.len()).min(total);
            if *off < end {
                whole[*off..end].copy_from_slice(&bytes[..end - off]);
            }
        }
        self.reassembled += 1;
        Ok(Some((buf.next_header, whole)))
    }

    /// Datagrams whose fragments never completed: (source, id).
    pub(crate) fn incomplete(&self) -> Vec<(IpAddr, u32)> {
        let mut v: Vec<_> = self.pending.keys().map(|k| (k.src, k.id)).collect();
        v.sort();
        v
    }
}

/// IPv6 "No Next Header".
fn next_or_none() -> u8 {
    59
}

enum Walk {
    /// Upper-layer protocol and where its header starts.
    Done(u8, usize),
    /// A fragment header: the protocol after it, identification, offset, M flag and where
    /// the fragment data starts.
    Fragment {
        next: u8,
        id: u32,
        offset: usize,
        more: bool,
        at: usize,
    },
}

/// Skip IPv6 extension headers (RFC 8200 §4) until the upper-layer header.
fn walk_extensions(mut next: u8, payload: &[u8]) -> Result<Walk, MalformedReason> {
    let mut at = 0usize;
    loop {
        match next {
            // Hop-by-Hop, Routing, Destination Options, Mobility, HIP, Shim6: length in
            // 8-byte units minus 1.
            0 | 43 | 60 | 135 | 139 | 140 => {
                (next, at) = skip_extension("IPv6 extension header", payload, at, |n| (n + 1) * 8)?;
            }
            // Authentication Header: length in 4-byte units minus 2.
            51 => (next, at) = skip_extension("IPv6 AH", payload, at, |n| (n + 2) * 4)?,
            44 => {
                need("IPv6 fragment header", &payload[at.min(payload.len())..], 8)?;
                let h = &payload[at..at + 8];
                let off_flags = be16(h, 2);
                let offset = usize::from(off_flags >> 3) * 8;
                let more = off_flags & 1 != 0;
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                if offset == 0 && !more {
                    // An atomic fragment: nothing to reassemble.
                    next = h[0];
                    at += 8;
                    continue;
                }
                return Ok(Walk::Fragment {
                    next: h[0],
                    id,
                    offset,
                    more,
                    at: at + 8,
                });
            }
            proto => return Ok(Walk::Done(proto, at)),
        }
    }
}

/// Skips the extension header at `at` whose length `len_of` computes from its Hdr Ext Len
/// byte; returns its Next Header and where the following header starts.
fn skip_extension(
    layer: &'static str,
    payload: &[u8],
    at: usize,
    len_of: impl Fn(usize) -> usize,
) -> Result<(u8, usize), MalformedReason> {
    need(layer, &payload[at.min(payload.len())..], 2)?;
    let len = len_of(usize::from(payload[at + 1]));
    if at + len > payload.len() {
        return Err(MalformedReason::BadLength {
            layer,
            length: len,
            available: payload.len() - at,
        });
    }
    Ok((payload[at], at + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45,
            0,
            0,
            0,
            (id >> 8) as u8,
            id as u8,
            (frag >> 8) as u8,
            frag as u8,
            64,
            proto,
            0,
            0,
        ];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let total = (p.len() + payload.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv4_fragments_reassemble_out_of_order() {
        let mut ip = IpLayer::default();
        let data: Vec<u8> = (0..40u8).collect();
        let second = ipv4(17, 7, 2, &data[16..]); // offset 16 bytes, last
        let first = ipv4(17, 7, 0x2000, &data[..16]); // MF
        assert!(ip.packet(&second).unwrap().is_none());
        let t = ip.packet(&first).unwrap().unwrap();
        assert_eq!(t.proto, 17);
        assert_eq!(&t.payload[..], &data[..]);
        assert_eq!(ip.reassembled, 1);
        assert!(ip.incomplete().is_empty());
    }

    #[test]
    fn ipv4_ethernet_padding_is_cut_by_total_length() {
        let mut ip = IpLayer::default();
        let mut p = ipv4(132, 1, 0x4000, &[1, 2, 3]);
        p.extend_from_slice(&[0; 10]);
        let t = ip.packet(&p).unwrap().unwrap();
        assert_eq!(&t.payload[..], &[1, 2, 3]);
    }

    #[test]
    fn ipv6_skips_extension_headers() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        p.extend_from_slice(&[0; 32]);
        // Hop-by-hop (next = 60), Destination options (next = 17), then 3 bytes.
        let ext = [60u8, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&ext);
        p.extend_from_slice(&[9, 9, 9]);
        p[4..6].copy_from_slice(&((ext.len() + 3) as u16).to_be_bytes());
        let mut ip = IpLayer::default();
        let t = ip.packet(&p).unwrap().unwrap();
        assert_eq!(t.proto, 17);
        assert_eq!(&t.payload[..], &[9, 9, 9]);
    }

    #[test]
    fn ipv6_skips_authentication_header_and_rejects_overlong_extension() {
        // AH (next = 17) with Payload Len 1: (1 + 2) × 4 = 12 bytes, then 2 bytes of UDP data.
        let ext = [17u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let packet = |next: u8, ext: &[u8]| {
            let mut p = vec![0x60, 0, 0, 0, 0, 0, next, 64];
            p.extend_from_slice(&[0; 32]);
            p.extend_from_slice(ext);
            p.extend_from_slice(&[7, 7]);
            p[4..6].copy_from_slice(&((ext.len() + 2) as u16).to_be_bytes());
            p
        };
        let mut ip = IpLayer::default();
        let with_ah = packet(51, &ext);
        let t = ip.packet(&with_ah).unwrap().unwrap();
        assert_eq!((t.proto, &t.payload[..]), (17, &[7u8, 7][..]));
        // A Destination Options header claiming (2 + 1) × 8 = 24 bytes of the 14 there.
        let long = [17u8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ip.packet(&packet(60, &long)).map(|t| t.map(|t| t.proto)),
            Err(MalformedReason::BadLength {
                layer: "IPv6 extension header",
                length: 24,
                available: 14,
            })
        );
    }

    #[test]
    fn truncated_headers_are_errors_not_panics() {
        let mut ip = IpLayer::default();
        for n in 0..60 {
            let p = ipv4(6, 1, 0, &[0; 40]);
            let _ = ip.packet(&p[..n.min(p.len())]);
            let mut v6 = vec![0x60u8; n];
            v6.resize(n, 0x2c);
            let _ = ip.packet(&v6);
        }
        for lt in [0u32, 1, 101, 108, 113, 228, 229, 276, 999] {
            for n in 0..24 {
                let _ = link_payload(lt, &vec![0x81; n]);
            }
        }
    }
}
