//! File formats, link types, IP fragments and broken files. The reference captures are
//! classic little-endian Ethernet pcap; these tests rewrite them into every other format
//! and link type the reader claims to handle and require the same messages back.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{fixture_bytes, key};
use rsp_capture::{
    read_capture_bytes, read_capture_named, CaptureError, CaptureOptions, CapturedMessage, Carrier,
    PcapWriter,
};

/// One record of a classic pcap file.
struct Record {
    sec: u32,
    usec: u32,
    data: Vec<u8>,
}

fn records(file: &[u8]) -> Vec<Record> {
    assert_eq!(
        &file[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap"
    );
    let mut out = Vec::new();
    let mut at = 24;
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    while at < file.len() {
        let len = u32_at(at + 8) as usize;
        out.push(Record {
            sec: u32_at(at),
            usec: u32_at(at + 4),
            data: file[at + 16..at + 16 + len].to_vec(),
        });
        at += 16 + len;
    }
    out
}

/// A classic pcap file; `be` writes big-endian, `nanos` nanosecond timestamps.
fn pcap(linktype: u32, recs: &[Record], be: bool, nanos: bool) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = Vec::new();
    f.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&w32(262_144));
    f.extend_from_slice(&w32(linktype));
    for r in recs {
        f.extend_from_slice(&w32(r.sec));
        f.extend_from_slice(&w32(if nanos { r.usec * 1000 } else { r.usec }));
        f.extend_from_slice(&w32(r.data.len() as u32));
        f.extend_from_slice(&w32(r.data.len() as u32));
        f.extend_from_slice(&r.data);
    }
    f
}

/// A pcapng file with one section and one interface with nanosecond resolution.
fn pcapng(linktype: u16, recs: &[Record]) -> Vec<u8> {
    let mut f = Vec::new();
    let block = |f: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(body);
        f.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut f, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&linktype.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut f, 1, &idb);
    for r in recs {
        let ns = u64::from(r.sec) * 1_000_000_000 + u64::from(r.usec) * 1000;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ns as u32).to_le_bytes());
        epb.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&r.data);
        epb.resize(20 + r.data.len().div_ceil(4) * 4, 0);
        block(&mut f, 6, &epb);
    }
    f
}

/// Replace each frame's 14-byte Ethernet header by another link layer.
fn relink(recs: &[Record], f: impl Fn(u16, &[u8]) -> Vec<u8>) -> Vec<Record> {
    recs.iter()
        .map(|r| {
            let ethertype = u16::from_be_bytes([r.data[12], r.data[13]]);
            Record {
                sec: r.sec,
                usec: r.usec,
                data: f(ethertype, &r.data[14..]),
            }
        })
        .collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn opts() -> CaptureOptions {
    CaptureOptions::default()
}

const SOURCES: [&str; 5] = [
    "crafted/rserpool-mixed-sctp.pcap",
    "crafted/edge/asap-tcp-message-split-over-segments.pcap",
    "crafted/asap-registration-sctp-over-udp.pcap",
    "crafted/enrp-presence-udp.pcap",
    "rsplib/scenario-b-multicast.csum-fixed.pcap",
];

#[test]
fn every_format_and_link_type_gives_the_same_messages() {
    for src in SOURCES {
        let file = fixture_bytes(src);
        let want = read_capture_bytes(&file, &opts()).unwrap();
        assert!(!want.messages.is_empty(), "{src}");
        let recs = records(&file);
        // Only IP frames survive link types without an ethertype.
        let ip_only: Vec<Record> = relink(&recs, |t, p| {
            if t == 0x0800 || t == 0x86dd {
                p.to_vec()
            } else {
                Vec::new()
            }
        })
        .into_iter()
        .filter(|r| !r.data.is_empty())
        .collect();
        let null: Vec<Record> = relink(&recs, |t, p| match t {
            0x0800 => cat(&[&2u32.to_le_bytes(), p]),
            0x86dd => cat(&[&30u32.to_le_bytes(), p]),
            _ => Vec::new(),
        })
        .into_iter()
        .filter(|r| !r.data.is_empty())
        .collect();
        let variants: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "big-endian nanosecond pcap",
                pcap(1, &recs, true, true),
                true,
            ),
            ("pcapng", pcapng(1, &recs), true),
            (
                "802.1Q tagged Ethernet",
                pcap(
                    1,
                    &relink(&recs, |t, p| {
                        cat(&[&[0; 12], &[0x81, 0, 0, 7], &t.to_be_bytes(), p])
                    }),
                    false,
                    false,
                ),
                true,
            ),
            (
                "Linux SLL",
                pcap(
                    113,
                    &relink(&recs, |t, p| {
                        cat(&[&[0, 0, 3, 4, 0, 0], &[0; 8], &t.to_be_bytes(), p])
                    }),
                    false,
                    false,
                ),
                true,
            ),
            (
                "Linux SLL2 in pcapng",
                pcapng(
                    276,
                    &relink(&recs, |t, p| {
                        cat(&[
                            &t.to_be_bytes(),
                            &[0, 0, 0, 0, 0, 1, 3, 4, 0, 0],
                            &[0; 8],
                            p,
                        ])
                    }),
                ),
                true,
            ),
            ("raw IP", pcap(101, &ip_only, false, false), false),
            ("BSD null", pcap(0, &null, false, false), false),
        ];
        // Raw IP / null variants lose non-IP frames, so frame numbers shift; compare the rest.
        for (name, bytes, same_frames) in variants {
            let got = read_capture_named(name, &bytes, &opts())
                .unwrap_or_else(|e| panic!("{src} as {name}: {e}"));
            let keyed = |m: &CapturedMessage| (if same_frames { m.frame } else { 0 }, key(m));
            let a: Vec<_> = want.messages.iter().map(keyed).collect();
            let b: Vec<_> = got.messages.iter().map(keyed).collect();
            assert_eq!(a, b, "{src} as {name}");
            assert!(
                got.stats.malformed.is_empty(),
                "{src} as {name}: {:?}",
                got.stats.malformed
            );
        }
    }
}

#[test]
fn ipv4_and_ipv6_fragments_are_reassembled() {
    let big: Vec<u8> = {
        let mut m = vec![1, 0, 0x0b, 0xb8]; // type 1, Length 3000
        m.extend((0..2996u32).map(|i| (i % 251) as u8));
        m
    };
    for (src, dst) in [
        ("10.0.0.1:3000", "10.0.0.2:3863"),
        ("[fd00::1]:3000", "[fd00::2]:3863"),
    ] {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_sctp(Duration::from_secs(7), src, dst, 11, 3, &big)
            .unwrap();
        let file = w.finish().unwrap();
        let rec = &records(&file)[0];
        let eth = &rec.data[..14];
        let ip = &rec.data[14..];
        let (hdr, payload) = ip.split_at(if src.is_ipv4() { 20 } else { 40 });
        let frags: Vec<Vec<u8>> = payload
            .chunks(1200)
            .enumerate()
            .map(|(i, part)| {
                let mut h = hdr.to_vec();
                let more = (i + 1) * 1200 < payload.len();
                let offset = (i * 1200 / 8) as u16; // in 8-byte units
                if src.is_ipv4() {
                    let off = offset | if more { 0x2000 } else { 0 };
                    h[6..8].copy_from_slice(&off.to_be_bytes());
                    h[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
                    cat(&[eth, &h, part])
                } else {
                    h[6] = 44; // Fragment header follows
                    h[4..6].copy_from_slice(&((8 + part.len()) as u16).to_be_bytes());
                    let off = offset << 3 | u16::from(more);
                    let fh = cat(&[&[132, 0], &off.to_be_bytes(), &0xabcd_u32.to_be_bytes()]);
                    cat(&[eth, &h, &fh, part])
                }
            })
            .collect();
        assert_eq!(frags.len(), 3);
        // Send them last, first, middle.
        let order = [2usize, 0, 1];
        let recs: Vec<Record> = order
            .iter()
            .map(|&i| Record {
                sec: 7,
                usec: i as u32,
                data: frags[i].clone(),
            })
            .collect();
        let cap = read_capture_bytes(&pcap(1, &recs, false, false), &opts()).unwrap();
        assert_eq!(cap.messages.len(), 1, "{src}");
        let m = &cap.messages[0];
        assert_eq!(
            (m.frame, m.bytes.len(), m.stream, m.ppid),
            (3, 3000, Some(3), Some(11))
        );
        assert_eq!(m.bytes, big);
        assert_eq!((m.src, m.dst), (src, dst));
        assert_eq!(
            (
                cap.stats.ip_fragments,
                cap.stats.ip_reassembled,
                cap.stats.sctp_bad_checksums
            ),
            (3, 1, 0)
        );
        // Without the last fragment the datagram is reported as incomplete.
        let cap = read_capture_bytes(&pcap(1, &recs[1..], false, false), &opts()).unwrap();
        assert!(cap.messages.is_empty());
        assert_eq!(cap.stats.incomplete_at_end, 1);
        assert_eq!(cap.stats.malformed.len(), 1, "{:?}", cap.stats.malformed);
    }
}

#[test]
fn truncated_file_is_an_error_naming_file_and_frame() {
    let file = fixture_bytes("crafted/rserpool-mixed-sctp.pcap");
    let cut = &file[..file.len() - 10];
    match read_capture_named("mixed.pcap", cut, &opts()) {
        Err(e @ CaptureError::Truncated { frame: 6, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("mixed.pcap") && text.contains("frame 6"),
                "{text}"
            );
        }
        other => panic!("expected Truncated at frame 6, got {other:?}"),
    }
    let lenient = CaptureOptions {
        allow_truncated: true,
        ..opts()
    };
    let cap = read_capture_named("mixed.pcap", cut, &lenient).unwrap();
    assert_eq!(cap.messages.len(), 5);
    assert!(cap
        .stats
        .truncated
        .as_deref()
        .is_some_and(|t| t.contains("frame 6")));
    // The same for pcapng.
    let ng = pcapng(1, &records(&file));
    assert!(matches!(
        read_capture_bytes(&ng[..ng.len() - 10], &opts()),
        Err(CaptureError::Truncated { frame: 6, .. })
    ));
}

#[test]
fn garbage_and_empty_files_are_clear_errors() {
    assert!(matches!(
        read_capture_bytes(b"", &opts()),
        Err(CaptureError::NotACapture { .. })
    ));
    let e = read_capture_named("notes.txt", b"hello world", &opts()).unwrap_err();
    assert!(matches!(e, CaptureError::NotACapture { .. }));
    assert!(e.to_string().starts_with("notes.txt: not a pcap"), "{e}");
    let e = read_capture_named("short.pcap", &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0], &opts()).unwrap_err();
    assert!(matches!(e, CaptureError::BadHeader { .. }), "{e:?}");
    let mut usb = pcap(189, &[], false, false);
    usb.truncate(24);
    assert!(matches!(
        read_capture_bytes(&usb, &opts()),
        Err(CaptureError::UnsupportedLinkType { linktype: 189, .. })
    ));
    let missing = rsp_capture::read_capture("/nonexistent/x.pcap", &opts()).unwrap_err();
    assert!(
        matches!(missing, CaptureError::Io { .. })
            && missing.to_string().contains("/nonexistent/x.pcap")
    );
}

#[test]
fn no_prefix_or_corruption_of_a_capture_panics() {
    for src in [
        "crafted/rserpool-mixed-sctp.pcap",
        "crafted/edge/asap-tcp-two-messages-one-segment.pcap",
    ] {
        let file = fixture_bytes(src);
        let ng = pcapng(1, &records(&file));
        for f in [&file, &ng] {
            for n in 0..f.len() {
                let _ = read_capture_bytes(&f[..n], &opts());
            }
            for i in 0..f.len() {
                for v in [0x00, 0xff, 0x41] {
                    let mut g = f.clone();
                    g[i] = v;
                    let _ = read_capture_bytes(&g, &opts());
                }
            }
        }
    }
}

#[test]
fn carriers_are_reported() {
    let cap = read_capture_bytes(
        &fixture_bytes("crafted/asap-registration-sctp-over-udp.pcap"),
        &opts(),
    )
    .unwrap();
    assert_eq!(cap.messages[0].carrier, Carrier::SctpOverUdp);
    assert_eq!(cap.messages[0].timestamp.as_secs(), 1_700_000_000);
}

/// A pcapng block.
fn ng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    cat(&[
        &kind.to_le_bytes(),
        &len.to_le_bytes(),
        body,
        &len.to_le_bytes(),
    ])
}

fn ng_shb() -> Vec<u8> {
    ng_block(
        0x0a0d_0d0a,
        &cat(&[
            &0x1a2b_3c4du32.to_le_bytes(),
            &[1, 0, 0, 0],
            &(-1i64).to_le_bytes(),
        ]),
    )
}

/// Interface with microsecond timestamps (no options).
fn ng_idb(linktype: u16) -> Vec<u8> {
    ng_block(
        1,
        &cat(&[&linktype.to_le_bytes(), &[0, 0], &0u32.to_le_bytes()]),
    )
}

fn ng_epb(if_id: u32, r: &Record) -> Vec<u8> {
    let us = u64::from(r.sec) * 1_000_000 + u64::from(r.usec);
    let mut data = r.data.clone();
    data.resize(r.data.len().div_ceil(4) * 4, 0);
    let len = (r.data.len() as u32).to_le_bytes();
    ng_block(
        6,
        &cat(&[
            &if_id.to_le_bytes(),
            &((us >> 32) as u32).to_le_bytes(),
            &(us as u32).to_le_bytes(),
            &len,
            &len,
            &data,
        ]),
    )
}

#[test]
fn pcapng_with_several_interfaces_and_sections() {
    let file = fixture_bytes("crafted/rserpool-mixed-sctp.pcap");
    let want = read_capture_bytes(&file, &opts()).unwrap();
    let recs = records(&file);
    let raw = relink(&recs, |_, p| p.to_vec());
    // Section 1: Ethernet (if 0) and raw IP (if 1), alternating; section 2: raw IP only, so
    // its interface 0 is raw IP.
    let mut ng = cat(&[&ng_shb(), &ng_idb(1), &ng_idb(101)]);
    for i in 0..4 {
        ng.extend(if i % 2 == 0 {
            ng_epb(0, &recs[i])
        } else {
            ng_epb(1, &raw[i])
        });
    }
    ng.extend(cat(&[
        &ng_shb(),
        &ng_idb(101),
        &ng_epb(0, &raw[4]),
        &ng_epb(0, &raw[5]),
    ]));
    let got = read_capture_named("multi.pcapng", &ng, &opts()).unwrap();
    assert_eq!(got.messages, want.messages);
    // A packet naming an interface that was never described is a clear error.
    let bad = cat(&[&ng_shb(), &ng_idb(1), &ng_epb(3, &recs[0])]);
    let e = read_capture_named("bad.pcapng", &bad, &opts()).unwrap_err();
    assert!(
        matches!(e, CaptureError::BadRecord { frame: 1, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("bad.pcapng") && e.to_string().contains("interface 3"),
        "{e}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary frame contents under every supported link type never panic, and whatever
    /// comes out is a message with at least its common header.
    #[test]
    fn arbitrary_frames_never_panic(
        linktype in proptest::sample::select(vec![0u32, 1, 101, 113, 228, 229, 276]),
        frames in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 0..8),
        ip_prefix in proptest::bool::ANY,
    ) {
        let recs: Vec<Record> = frames
            .into_iter()
            .map(|mut data| {
                if ip_prefix && data.len() > 40 {
                    // Make the IP/transport layers plausible so deeper code is reached.
                    let start = match linktype { 0 => 4, 1 => 14, 113 => 16, 276 => 20, _ => 0 };
                    if linktype == 1 { data[12] = 0x08; data[13] = 0; }
                    if linktype == 113 { data[14] = 0x08; data[15] = 0; }
                    if linktype == 276 { data[0] = 0x08; data[1] = 0; }
                    if linktype == 0 { data[..4].copy_from_slice(&2u32.to_le_bytes()); }
                    if data.len() > start + 20 {
                        data[start] = 0x45;
                        data[start + 9] = [6u8, 17, 132][data.len() % 3];
                    }
                }
                Record { sec: 1, usec: 2, data }
            })
            .collect();
        let options = CaptureOptions::default();
        if let Ok(cap) = read_capture_bytes(&pcap(linktype, &recs, false, false), &options) {
            for m in &cap.messages {
                proptest::prop_assert!(m.bytes.len() >= 4 || m.carrier != Carrier::Udp);
            }
        }
    }
}
