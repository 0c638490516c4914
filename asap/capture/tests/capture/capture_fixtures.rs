//! The capture reader against every reference capture in `pcap-fixtures/`: message counts
//! per protocol and type equal tshark's (from the manifest; tshark is not run here), the
//! bytes equal tshark's `-x` output, the edge cases give exactly the right messages, and
//! the crafted captures are what `tools/make_crafted.py` writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{fixture, manifest, registration_bin};
use rsp_capture::manifest::Manifest;
use rsp_capture::{read_capture, Capture, CaptureOptions, CapturedMessage, Carrier, Proto};

/// The messages of the fixture `path`, read with its manifest options.
fn read(path: &str) -> Capture {
    let m = manifest();
    let f = fixture(&m, path);
    read_capture(m.path_of(f), &f.capture_options()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn manifest_lists_every_capture_in_the_fixtures_folder() {
    let m = manifest();
    assert!(m.files.len() >= 23, "only {} fixtures", m.files.len());
    let mut on_disk = Vec::new();
    let mut stack = vec![m.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p: PathBuf = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                on_disk.push(
                    p.strip_prefix(&m.dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    for p in &on_disk {
        assert!(
            m.files.iter().any(|f| &f.path == p),
            "{p} is not in the manifest"
        );
    }
    for f in &m.files {
        assert!(m.path_of(f).is_file(), "{} is missing", f.path);
        assert!(f.tshark.total() > 0, "{} has no messages", f.path);
    }
}

#[test]
fn counts_per_protocol_and_type_equal_tshark() {
    let m = manifest();
    let mut failures = Vec::new();
    for f in &m.files {
        let cap = match read_capture(m.path_of(f), &f.capture_options()) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{}: {e}", f.path));
                continue;
            }
        };
        let want = f.expected_counts().by_type().unwrap();
        let got = cap.count_by_type();
        if got != want {
            failures.push(format!(
                "{}: counts\n  want {want:?}\n  got  {got:?}",
                f.path
            ));
        }
        if f.agrees_with_tshark() {
            let got = cap.count_by_carrier();
            if got != f.tshark_by_carrier {
                failures.push(format!(
                    "{}: carriers want {:?} got {got:?}",
                    f.path, f.tshark_by_carrier
                ));
            }
        }
        for c in cap.count_by_carrier().keys() {
            if !f.carriers.contains(c) {
                failures.push(format!("{}: unexpected carrier {c}", f.path));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn extracted_bytes_equal_tsharks_hex() {
    let m = manifest();
    let mut checked = 0;
    for f in m.files.iter().filter(|f| !f.oracle.is_empty()) {
        let cap = read_capture(m.path_of(f), &f.capture_options()).unwrap();
        let oracle: Vec<(u64, Proto, Vec<u8>)> = f
            .oracle
            .iter()
            .map(|o| (o.frame, o.proto, o.bytes().expect("valid hex")))
            .collect();
        let ours: Vec<(u64, Proto, Vec<u8>)> = cap
            .messages
            .iter()
            .map(|m| (m.frame, m.protocol, m.bytes.clone()))
            .collect();
        if f.agrees_with_tshark() {
            assert_eq!(ours, oracle, "{}", f.path);
        } else {
            // tshark cannot frame ASAP over TCP; it shows the segments' bytes. Together they
            // must still be the same bytes.
            let cat = |v: &[(u64, Proto, Vec<u8>)]| {
                v.iter().flat_map(|x| x.2.clone()).collect::<Vec<u8>>()
            };
            assert_eq!(cat(&ours), cat(&oracle), "{}", f.path);
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} fixtures have oracle bytes");
}

#[test]
fn sctp_fragments_reassemble_into_the_whole_registration() {
    let cap = read("crafted/edge/asap-sctp-fragmented-user-message.pcap");
    assert_eq!(cap.messages.len(), 1);
    let msg = &cap.messages[0];
    assert_eq!(msg.frame, 2, "reported at the frame of the E fragment");
    assert_eq!(msg.bytes, registration_bin());
    assert_eq!(
        (msg.protocol, msg.carrier, msg.ppid),
        (Proto::Asap, Carrier::Sctp, Some(11))
    );
    assert_eq!(cap.stats.incomplete_at_end, 0);
}

#[test]
fn bundled_data_chunks_give_both_messages_of_one_frame() {
    let cap = read("crafted/edge/asap-sctp-two-data-chunks-bundled.pcap");
    let summary: Vec<_> = cap
        .messages
        .iter()
        .map(|m| (m.frame, m.message_type(), m.bytes.len()))
        .collect();
    assert_eq!(summary, vec![(1, Some(1), 100), (1, Some(5), 20)]);
    assert_eq!(cap.messages[0].bytes, registration_bin());
}

#[test]
fn tcp_two_messages_in_one_segment_are_split() {
    let cap = read("crafted/edge/asap-tcp-two-messages-one-segment.pcap");
    assert_eq!(cap.messages.len(), 2);
    let (a, b) = (&cap.messages[0], &cap.messages[1]);
    assert_eq!(a.bytes, registration_bin());
    assert_eq!(b.message_type(), Some(5));
    assert_eq!(b.bytes.len(), 20);
    assert_eq!(&b.bytes[2..4], &[0, 20]);
    assert_eq!((a.frame, b.frame), (4, 4));
    for msg in &cap.messages {
        assert_eq!(msg.carrier, Carrier::Tcp);
        assert_eq!(msg.dst.port(), 3863);
        assert_eq!((msg.ppid, msg.stream), (None, None));
    }
    assert!(cap.stats.malformed.is_empty(), "{:?}", cap.stats.malformed);
}

#[test]
fn tcp_message_split_over_segments_is_joined() {
    let cap = read("crafted/edge/asap-tcp-message-split-over-segments.pcap");
    assert_eq!(cap.messages.len(), 1);
    assert_eq!(cap.messages[0].bytes, registration_bin());
    assert_eq!(
        cap.messages[0].frame, 5,
        "completed by the second data segment"
    );
    assert!(cap.stats.malformed.is_empty(), "{:?}", cap.stats.malformed);
}

#[test]
fn enrp_over_tcp_and_udp_are_classified_by_port() {
    let cap = read("crafted/enrp-handle-update-tcp-port9901.pcap");
    assert_eq!(cap.messages.len(), 1);
    assert_eq!(
        (cap.messages[0].protocol, cap.messages[0].carrier),
        (Proto::Enrp, Carrier::Tcp)
    );
    let cap = read("crafted/enrp-presence-udp.pcap");
    assert_eq!(
        (cap.messages[0].protocol, cap.messages[0].carrier),
        (Proto::Enrp, Carrier::Udp)
    );
    assert_eq!(cap.messages[0].dst, "239.0.0.51:9901".parse().unwrap());
    let cap = read("crafted/asap-server-announce-udp.pcap");
    assert_eq!(
        (cap.messages[0].protocol, cap.messages[0].message_type()),
        (Proto::Asap, Some(10))
    );
}

#[test]
fn sctp_over_udp_needs_its_port() {
    let m = manifest();
    let f = fixture(&m, "crafted/asap-registration-sctp-over-udp-port19899.pcap");
    let plain = read_capture(m.path_of(f), &CaptureOptions::default()).unwrap();
    assert!(
        plain.messages.is_empty(),
        "UDP 19899 is not SCTP unless configured"
    );
    assert_eq!(plain.stats.non_rserpool_payloads, 1);
    let cap = read_capture(m.path_of(f), &f.capture_options()).unwrap();
    assert_eq!(cap.messages.len(), 1);
    assert_eq!(cap.messages[0].carrier, Carrier::SctpOverUdp);
    assert_eq!(cap.messages[0].bytes, registration_bin());
    let cap = read("crafted/asap-registration-sctp-over-udp.pcap");
    assert_eq!(cap.messages[0].carrier, Carrier::SctpOverUdp);
    assert_eq!(cap.stats.sctp_bad_checksums, 0);
}

#[test]
fn checksum_fixed_and_raw_rsplib_captures_give_the_same_messages() {
    for s in ["a", "b", "b-multicast", "c"] {
        let raw = read(&format!("rsplib/scenario-{s}.pcap"));
        let fixed = read(&format!("rsplib/scenario-{s}.csum-fixed.pcap"));
        assert_eq!(raw.messages, fixed.messages, "scenario {s}");
        assert!(
            raw.stats.sctp_bad_checksums > 0,
            "scenario {s}: lo offload leaves bad CRCs"
        );
        assert_eq!(fixed.stats.sctp_bad_checksums, 0, "scenario {s}");
        assert!(
            fixed.stats.malformed.is_empty(),
            "scenario {s}: {:?}",
            fixed.stats.malformed
        );
        assert_eq!(fixed.stats.incomplete_at_end, 0, "scenario {s}");
    }
}

#[test]
fn other_ppids_are_counted_not_returned() {
    let cap = read("rsplib/scenario-c.csum-fixed.pcap");
    // rsplib's CalcApp uses PPID 34; tshark counts 76 such DATA chunks.
    assert_eq!(cap.stats.non_rserpool_ppids.get(&34), Some(&76));
    assert!(cap.messages.iter().all(|m| matches!(m.ppid, Some(11 | 12))));
    let cap = read("rsplib/scenario-a.csum-fixed.pcap");
    assert!(
        cap.stats.non_rserpool_payloads > 0,
        "Component Status reports on UDP 2960"
    );
    assert!(cap.stats.non_ip_frames == 0 || cap.stats.frames > cap.stats.non_ip_frames);
}

#[test]
fn draft_era_capture_is_classified_by_ppid_on_other_ports() {
    let cap = read("third-party/rsplib-demo-2007-draft.asap-enrp-only.pcap");
    let by_proto = |p: Proto| cap.messages.iter().filter(|m| m.protocol == p).count();
    assert_eq!((by_proto(Proto::Asap), by_proto(Proto::Enrp)), (148, 545));
    assert!(cap
        .messages
        .iter()
        .all(|m| m.src.port() != 3863 && m.dst.port() != 3863));
    let frames: BTreeMap<u64, usize> =
        cap.messages
            .iter()
            .fold(BTreeMap::new(), |mut acc, m: &CapturedMessage| {
                *acc.entry(m.frame).or_default() += 1;
                acc
            });
    assert_eq!(frames.len(), 693, "one message per frame in this capture");
}

/// The crafted captures in the repository are exactly what `pcap-fixtures/tools/make_crafted.py`
/// writes (byte for byte), so they can be regenerated and reviewed. Needs python3 (skipped
/// with a message when it is missing, unless `REQUIRE_PYTHON` is set).
#[test]
fn crafted_captures_are_reproduced_by_make_crafted() {
    let dir = Manifest::default_dir();
    let out = std::env::temp_dir().join(format!("make-crafted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let status = std::process::Command::new("python3")
        .arg(dir.join("tools/make_crafted.py"))
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status();
    let status = match status {
        Ok(s) => s,
        Err(e) if std::env::var_os("REQUIRE_PYTHON").is_none() => {
            eprintln!("skipped: python3 not runnable ({e})");
            return;
        }
        Err(e) => panic!("python3: {e}"),
    };
    assert!(status.success(), "make_crafted.py failed: {status}");
    let mut compared = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(out.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel);
                continue;
            }
            let made = std::fs::read(out.join(&rel)).unwrap();
            let kept = std::fs::read(dir.join("crafted").join(&rel))
                .unwrap_or_else(|e| panic!("crafted/{} is in the repository: {e}", rel.display()));
            assert!(
                made == kept,
                "crafted/{} differs from make_crafted.py's output",
                rel.display()
            );
            compared += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(compared, 15, "make_crafted.py writes 15 files");
}
