//! PcapWriter → reader round trips, and tshark's verdict on what the writer produces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{key, registration_bin, Key};
use rsp_capture::manifest::Manifest;
use rsp_capture::{
    read_capture, read_capture_bytes, CaptureOptions, CapturedMessage, Carrier, DataChunk,
    PcapWriter, Proto,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A message of `len` bytes (Length field `len`) of type `t`, filler after the header.
fn message(t: u8, len: u16) -> Vec<u8> {
    let mut m = vec![t, 0];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend((4..len).map(|i| (i % 7) as u8 + 1));
    m
}

#[test]
fn written_messages_read_back_identically() {
    let reg = registration_bin();
    let odd = message(5, 22); // Length not a multiple of 4: TCP padding
    let enrp = message(1, 44);
    let t = |s: u64| Duration::from_secs(1_700_000_000 + s);
    let (pe, pr) = (addr("10.0.0.11:40000"), addr("10.0.0.1:3863"));
    let (pr1, pr2) = (addr("10.0.0.1:9901"), addr("10.0.0.2:9901"));
    let (pe6, pr6) = (addr("[fd00::11]:40001"), addr("[fd00::1]:3863"));
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    w.write_sctp(t(1), pe, pr, 11, 0, &reg).unwrap();
    w.write_sctp(t(2), pr1, pr2, 12, 3, &enrp).unwrap();
    w.write_sctp_bundle(
        t(3),
        pr,
        pe,
        &[
            DataChunk {
                ppid: 11,
                stream: 0,
                bytes: &odd,
            },
            DataChunk {
                ppid: 11,
                stream: 1,
                bytes: &reg,
            },
            DataChunk {
                ppid: 0xFAEE_B5D1,
                stream: 2,
                bytes: &odd,
            },
        ],
    )
    .unwrap();
    w.write_sctp_over_udp(
        t(4),
        pe,
        pr,
        9899,
        &[DataChunk {
            ppid: 11,
            stream: 5,
            bytes: &reg,
        }],
    )
    .unwrap();
    w.write_udp(
        t(5),
        addr("10.0.0.1:3863"),
        addr("239.0.0.50:3863"),
        &message(10, 24),
    )
    .unwrap();
    w.write_udp(t(6), pr1, addr("239.0.0.51:9901"), &enrp)
        .unwrap();
    w.write_tcp(t(7), pe, pr, &odd).unwrap(); // handshake + data
    w.write_tcp(t(8), pr, pe, &reg).unwrap(); // the answer on the same connection
    w.write_tcp(t(9), pe, pr, &reg).unwrap();
    w.write_tcp(t(10), pr2, pr1, &enrp).unwrap();
    w.write_sctp(t(11), pe6, pr6, 11, 0, &reg).unwrap();
    w.write_tcp(t(12), pe6, pr6, &odd).unwrap();
    w.write_udp(t(13), pr6, addr("[ff05::50]:3863"), &message(10, 24))
        .unwrap();
    assert_eq!(w.frames(), 13 + 3 * 3);
    let file = w.finish().unwrap();

    let cap = read_capture_bytes(&file, &CaptureOptions::default()).unwrap();
    let (asap, enrp_p) = (Proto::Asap, Proto::Enrp);
    let (sctp, sudp, udp, tcp) = (
        Carrier::Sctp,
        Carrier::SctpOverUdp,
        Carrier::Udp,
        Carrier::Tcp,
    );
    let want: Vec<Key> = vec![
        (t(1), asap, sctp, pe, pr, Some(11), Some(0), reg.clone()),
        (
            t(2),
            enrp_p,
            sctp,
            pr1,
            pr2,
            Some(12),
            Some(3),
            enrp.clone(),
        ),
        (t(3), asap, sctp, pr, pe, Some(11), Some(0), odd.clone()),
        (t(3), asap, sctp, pr, pe, Some(11), Some(1), reg.clone()),
        (
            t(3),
            asap,
            sctp,
            pr,
            pe,
            Some(0xFAEE_B5D1),
            Some(2),
            odd.clone(),
        ),
        (t(4), asap, sudp, pe, pr, Some(11), Some(5), reg.clone()),
        (
            t(5),
            asap,
            udp,
            addr("10.0.0.1:3863"),
            addr("239.0.0.50:3863"),
            None,
            None,
            message(10, 24),
        ),
        (
            t(6),
            enrp_p,
            udp,
            pr1,
            addr("239.0.0.51:9901"),
            None,
            None,
            enrp.clone(),
        ),
        (t(7), asap, tcp, pe, pr, None, None, odd.clone()),
        (t(8), asap, tcp, pr, pe, None, None, reg.clone()),
        (t(9), asap, tcp, pe, pr, None, None, reg.clone()),
        (t(10), enrp_p, tcp, pr2, pr1, None, None, enrp.clone()),
        (t(11), asap, sctp, pe6, pr6, Some(11), Some(0), reg.clone()),
        (t(12), asap, tcp, pe6, pr6, None, None, odd.clone()),
        (
            t(13),
            asap,
            udp,
            pr6,
            addr("[ff05::50]:3863"),
            None,
            None,
            message(10, 24),
        ),
    ];
    let got: Vec<Key> = cap.messages.iter().map(key).collect();
    assert_eq!(got, want);
    assert_eq!(cap.stats.sctp_bad_checksums, 0);
    assert_eq!(cap.stats.sctp_duplicate_chunks, 0);
    assert!(cap.stats.malformed.is_empty(), "{:?}", cap.stats.malformed);
}

#[test]
fn every_fixture_survives_write_and_read() {
    let m = Manifest::load_default().unwrap();
    for f in &m.files {
        let options = f.capture_options();
        let original = read_capture(m.path_of(f), &options).unwrap();
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        for msg in &original.messages {
            w.write_message(msg).unwrap();
        }
        let file = w.finish().unwrap();
        let again = read_capture_bytes(&file, &options).unwrap();
        let a: Vec<Key> = original.messages.iter().map(key).collect();
        let b: Vec<Key> = again.messages.iter().map(key).collect();
        assert_eq!(a, b, "{}", f.path);
        assert_eq!(again.stats.sctp_bad_checksums, 0, "{}", f.path);
        assert_eq!(again.stats.sctp_duplicate_chunks, 0, "{}", f.path);
    }
}

/// Per (protocol, type) counts as tshark dissects `file`.
fn tshark_counts(
    file: &std::path::Path,
    lua: &std::path::Path,
) -> Result<BTreeMap<(Proto, u8), u64>, String> {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(file)
        .arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .args([
            "-T",
            "fields",
            "-e",
            "asap.message_type",
            "-e",
            "enrp.message_type",
        ])
        .args(["-E", "occurrence=a", "-E", "aggregator=,"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        for proto in [Proto::Asap, Proto::Enrp] {
            for v in cols
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|v| !v.is_empty())
            {
                let t = u8::from_str_radix(
                    v.trim_start_matches("0x"),
                    if v.starts_with("0x") { 16 } else { 10 },
                )
                .map_err(|e| format!("{v}: {e}"))?;
                *counts.entry((proto, t)).or_insert(0) += 1;
            }
        }
    }
    Ok(counts)
}

/// tshark must dissect what the writer produces without malformed packets or expert
/// warnings, and count the same messages. Skipped (with a message) without tshark, unless
/// `RSERPOOL_REQUIRE_TSHARK=1`.
#[test]
fn tshark_dissects_written_pcap_cleanly() {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(
            std::env::var("RSERPOOL_REQUIRE_TSHARK").as_deref() != Ok("1"),
            "RSERPOOL_REQUIRE_TSHARK=1 but tshark is not installed"
        );
        eprintln!("SKIP: tshark is not installed");
        return;
    }
    let m = Manifest::load_default().unwrap();
    let lua = m.dir.join("tools/enrp_tcp.lua");
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    let mut written: Vec<CapturedMessage> = Vec::new();
    // All messages of the rsplib captures (SCTP and UDP), as they were.
    for f in m
        .files
        .iter()
        .filter(|f| f.path.starts_with("rsplib/") && f.path.ends_with("csum-fixed.pcap"))
    {
        let cap = read_capture(m.path_of(f), &f.capture_options()).unwrap();
        written.extend(cap.messages);
    }
    let base = written.len();
    // One of every (protocol, type) again over TCP, SCTP over UDP and IPv6 SCTP.
    let mut seen = std::collections::BTreeSet::new();
    let samples: Vec<CapturedMessage> = written[..base]
        .iter()
        .filter(|m| seen.insert((m.protocol, m.message_type())))
        .cloned()
        .collect();
    for (i, s) in samples.iter().enumerate() {
        let port = if s.protocol == Proto::Asap {
            3863
        } else {
            9901
        };
        let ts = Duration::from_secs(1_800_000_000 + i as u64);
        let tcp = CapturedMessage {
            carrier: Carrier::Tcp,
            timestamp: ts,
            src: addr("192.0.2.1:45000"),
            dst: SocketAddr::new("192.0.2.2".parse().unwrap(), port),
            ppid: None,
            stream: None,
            ..s.clone()
        };
        let sudp = CapturedMessage {
            carrier: Carrier::SctpOverUdp,
            ..s.clone()
        };
        let v6 = CapturedMessage {
            carrier: Carrier::Sctp,
            src: addr("[2001:db8::1]:45001"),
            dst: SocketAddr::new("2001:db8::2".parse().unwrap(), port),
            ..s.clone()
        };
        written.extend([tcp, sudp, v6]);
    }
    // A Handle Resolution whose Length (19) excludes the last parameter's padding: the
    // TCP segment carries one zero byte of message padding after it.
    let mut hr = vec![0x05, 0, 0, 19, 0, 9, 0, 15];
    hr.extend_from_slice(b"CalcAppPool");
    for carrier in [Carrier::Tcp, Carrier::Sctp, Carrier::Udp] {
        written.push(CapturedMessage {
            frame: 0,
            timestamp: Duration::from_secs(1_900_000_000),
            protocol: Proto::Asap,
            carrier,
            src: addr("192.0.2.7:45002"),
            dst: addr("192.0.2.8:3863"),
            ppid: None,
            stream: None,
            bytes: hr.clone(),
        });
    }
    for msg in &written {
        w.write_message(msg).unwrap();
    }
    let bytes = w.finish().unwrap();
    let dir = std::env::temp_dir().join(format!("rserpool-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("written.pcap");
    std::fs::write(&file, &bytes).unwrap();

    let problems = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(&file)
        .arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= warning"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&problems.stdout).into_owned();
    assert!(
        problems.status.success(),
        "{}",
        String::from_utf8_lossy(&problems.stderr)
    );
    assert!(listing.trim().is_empty(), "tshark complains:\n{listing}");

    let mut want = BTreeMap::new();
    for msg in &written {
        *want
            .entry((msg.protocol, msg.message_type().unwrap()))
            .or_insert(0u64) += 1;
    }
    let got = tshark_counts(&file, &lua).unwrap();
    assert_eq!(got, want);
    // And our own reader agrees.
    let again = read_capture(&file, &CaptureOptions::default()).unwrap();
    assert_eq!(again.count_by_type(), want);
    let _ = std::fs::remove_dir_all(&dir);
}
