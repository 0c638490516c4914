//! The `rsp-decode` binary run as a user runs it, on the captures in `pcap-fixtures/`: the
//! JSON lines, `--summary` against the manifest's per-type counts, `--roundtrip` on real and
//! tampered captures, and unreadable input.
//!
//! Run: `cargo test -p rsp-capture --test capture rsp_decode_cli`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{fixture, manifest};
use rsp_capture::manifest::Manifest;
use rsp_capture::{read_capture, CaptureOptions, PcapWriter, Proto};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rsp-decode");

fn fixture_path(path: &str) -> PathBuf {
    Manifest::default_dir().join(path)
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("rsp-decode runs")
}

fn run_on(flags: &[&str], file: &Path) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_ref()).collect();
    args.push(file.as_os_str());
    run(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .expect("utf8 stdout")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A file in a per-test scratch directory (removed first if left over).
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rsp_decode_cli");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Asap => "asap",
        Proto::Enrp => "enrp",
    }
}

/// `by_type`-style array of the summary as (protocol, type) -> count.
fn counts(v: &Value) -> BTreeMap<(String, u8), u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                (
                    e["protocol"].as_str().expect("protocol").to_string(),
                    u8::try_from(e["type"].as_u64().expect("type")).expect("u8"),
                ),
                e["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

#[test]
fn json_lines_have_frame_protocol_type_and_name() {
    let m = manifest();
    let f = fixture(&m, "crafted/rserpool-mixed-sctp.pcap");
    let out = run_on(&["--hex"], &m.path_of(f));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let got: Vec<(u64, &str, u64, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["frame"].as_u64().expect("frame"),
                l["protocol"].as_str().expect("protocol"),
                l["type"].as_u64().expect("type"),
                l["name"].as_str().expect("name"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "asap", 1, "ASAP_REGISTRATION"),
            (2, "asap", 3, "ASAP_REGISTRATION_RESPONSE"),
            (3, "asap", 5, "ASAP_HANDLE_RESOLUTION"),
            (4, "asap", 6, "ASAP_HANDLE_RESOLUTION_RESPONSE"),
            (5, "enrp", 1, "ENRP_PRESENCE"),
            (6, "enrp", 4, "ENRP_HANDLE_UPDATE"),
        ]
    );
    // The bytes are tshark's (manifest oracle), and every line decoded.
    assert_eq!(f.oracle.len(), lines.len());
    for (l, o) in lines.iter().zip(&f.oracle) {
        assert_eq!(l["hex"].as_str(), Some(o.hex.as_str()), "frame {}", o.frame);
        assert!(
            l.get("message").is_some() && l.get("error").is_none(),
            "{l}"
        );
    }
}

#[test]
fn failed_messages_carry_type_name_error_and_unrecognized_bytes() {
    // Scenario C's probes: a Handle Resolution with an unknown stop-and-report parameter
    // 0x4321, an unknown ASAP type 0x7f, an ENRP Presence with the same parameter.
    let out = run_on(&[], &fixture_path("rsplib/scenario-c.pcap"));
    assert!(out.status.success(), "no --strict/--roundtrip: exit 0");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 153);
    let failed: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    /// (frame, protocol, type, name, error offset, unrecognized bytes)
    type Failure<'a> = (u64, &'a str, u64, Option<&'a str>, u64, &'a str);
    let summary: Vec<Failure<'_>> = failed
        .iter()
        .map(|l| {
            (
                l["frame"].as_u64().expect("frame"),
                l["protocol"].as_str().expect("protocol"),
                l["type"].as_u64().expect("type"),
                l["name"].as_str(),
                l["error_offset"].as_u64().expect("offset"),
                l["unrecognized"].as_str().expect("unrecognized"),
            )
        })
        .collect();
    assert_eq!(summary.len(), 3, "{failed:?}");
    assert_eq!(
        (
            summary[0].1,
            summary[0].2,
            summary[0].3,
            summary[0].4,
            summary[0].5
        ),
        ("asap", 5, Some("ASAP_HANDLE_RESOLUTION"), 4, "43210004")
    );
    assert_eq!(
        (summary[1].1, summary[1].2, summary[1].3),
        ("asap", 0x7f, None)
    );
    assert!(summary[1].5.starts_with("7f"), "{}", summary[1].5);
    assert_eq!(
        (summary[2].1, summary[2].2, summary[2].3, summary[2].5),
        ("enrp", 1, Some("ENRP_PRESENCE"), "43210004")
    );
    for l in &failed {
        assert!(l["error"].as_str().expect("error").contains("unrecognized"));
    }
}

#[test]
fn extra_tlvs_are_listed_with_their_position() {
    // The 2007 draft-era capture has one message with a TLV the RFC codec does not bind.
    let out = run_on(
        &[],
        &fixture_path("third-party/rsplib-demo-2007-draft.asap-enrp-only.pcap"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let with_extra: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l.get("extra_tlvs").is_some())
        .collect();
    assert_eq!(with_extra.len(), 1);
    let tlvs = with_extra[0]["extra_tlvs"].as_array().expect("array");
    assert!(!tlvs.is_empty());
    for t in tlvs {
        assert!(t["path"].is_array(), "{t}");
        assert!(t["length"].as_u64().expect("length") >= 4, "{t}");
        assert!(t["value"].is_string(), "{t}");
        assert!(t.get("param_type").is_some(), "{t}");
    }
}

#[test]
fn summary_counts_equal_the_manifest_for_every_fixture() {
    let m = manifest();
    let mut checked = 0;
    for f in &m.files {
        let mut flags: Vec<String> = vec!["--summary".into()];
        for p in &f.sctp_over_udp_ports {
            flags.push("--sctp-over-udp-port".into());
            flags.push(p.to_string());
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = run_on(&flags, &m.path_of(f));
        assert!(out.status.success(), "{}: {}", f.path, stderr(&out));
        let s: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: summary is JSON: {e}", f.path));
        let good = counts(&s["by_type"]);
        let bad = counts(&s["decode_errors_by_type"]);
        let mut all = good.clone();
        for (k, v) in &bad {
            *all.entry(k.clone()).or_default() += v;
        }
        let want: BTreeMap<(String, u8), u64> = f
            .expected_counts()
            .by_type()
            .expect("numeric types")
            .into_iter()
            .map(|((p, t), n)| ((proto_name(p).to_string(), t), n))
            .collect();
        assert_eq!(all, want, "{}", f.path);
        let total: u64 = want.values().sum();
        assert_eq!(s["messages"].as_u64(), Some(total), "{}", f.path);
        assert_eq!(
            s["decoded"].as_u64(),
            Some(good.values().sum::<u64>()),
            "{}",
            f.path
        );
        assert_eq!(
            s["decode_errors"].as_u64(),
            Some(bad.values().sum::<u64>()),
            "{}",
            f.path
        );
        if f.notes
            .iter()
            .any(|n| n == "every message decodes without error")
        {
            assert!(bad.is_empty(), "{}: {bad:?}", f.path);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures");
}

#[test]
fn summary_counts_decode_failures_apart_from_good_messages() {
    let out = run_on(
        &["--summary"],
        &fixture_path("rsplib/scenario-c.csum-fixed.pcap"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["messages"].as_u64(), Some(153));
    assert_eq!(s["decoded"].as_u64(), Some(150));
    assert_eq!(s["decode_errors"].as_u64(), Some(3));
    let good = counts(&s["by_type"]);
    let bad = counts(&s["decode_errors_by_type"]);
    // Handle Resolution: 5 in the capture, 4 decode, the probe does not.
    assert_eq!(good.get(&("asap".into(), 5)), Some(&4));
    assert_eq!(bad.get(&("asap".into(), 5)), Some(&1));
    assert_eq!(good.get(&("asap".into(), 0x7f)), None);
    assert_eq!(bad.get(&("asap".into(), 0x7f)), Some(&1));
    assert_eq!(good.get(&("enrp".into(), 1)), Some(&4));
    assert_eq!(bad.get(&("enrp".into(), 1)), Some(&1));
    assert_eq!(bad.len(), 3);
}

#[test]
fn roundtrip_exits_zero_on_real_fixtures() {
    for path in [
        "rsplib/scenario-b.csum-fixed.pcap",
        "crafted/edge/asap-tcp-message-split-over-segments.pcap",
    ] {
        let out = run_on(&["--roundtrip"], &fixture_path(path));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{path}: {err}");
        assert!(
            err.contains("0 failed to decode, 0 re-encoded differently"),
            "{path}: {err}"
        );
        let lines = json_lines(&out);
        assert!(!lines.is_empty());
        assert!(lines.iter().all(|l| l["roundtrip"] == "ok"), "{path}");
    }
}

#[test]
fn roundtrip_counts_decode_failures_of_a_real_fixture() {
    let out = run_on(&["--roundtrip"], &fixture_path("rsplib/scenario-c.pcap"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let failures: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("rsp-decode: decode failure:"))
        .collect();
    assert_eq!(failures.len(), 3, "{err}");
    assert!(failures[1].contains("asap type 0x7f"), "{err}");
    assert!(
        err.contains("150 of 153 messages ok, 3 failed to decode, 0 re-encoded differently"),
        "{err}"
    );
}

/// Copies the crafted mixed capture with `tamper` applied to the bytes of message `index`.
fn tampered_copy(name: &str, index: usize, tamper: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let cap = read_capture(
        fixture_path("crafted/rserpool-mixed-sctp.pcap"),
        &CaptureOptions::default(),
    )
    .expect("read fixture");
    assert_eq!(cap.messages.len(), 6);
    let out = scratch(name);
    let file = std::fs::File::create(&out).expect("create");
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("writer");
    for (i, m) in cap.messages.iter().enumerate() {
        let mut m = m.clone();
        if i == index {
            tamper(&mut m.bytes);
        }
        w.write_message(&m).expect("write");
    }
    w.finish().expect("finish");
    out
}

/// Runs `--roundtrip` on `bad`, which must fail (exit 1) with `summary` on stderr; returns
/// stderr and the JSON lines.
fn failing_roundtrip(bad: &Path, summary: &str) -> (String, Vec<Value>) {
    let out = run_on(&["--roundtrip"], bad);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(summary), "{err}");
    (err, json_lines(&out))
}

#[test]
fn roundtrip_fails_on_a_message_that_no_longer_decodes() {
    // Registration (frame 1): its Pool Handle's type 0x0009 becomes 0x4321 (unknown,
    // action "stop and report").
    let bad = tampered_copy("undecodable.pcap", 0, |b| {
        assert_eq!(&b[4..6], &[0x00, 0x09]);
        b[4..6].copy_from_slice(&[0x43, 0x21]);
    });
    // The untampered copy passes, so the writer is not what fails.
    let good = tampered_copy("untouched.pcap", 0, |_| {});
    assert_eq!(run_on(&["--roundtrip"], &good).status.code(), Some(0));

    let (err, lines) = failing_roundtrip(
        &bad,
        "5 of 6 messages ok, 1 failed to decode, 0 re-encoded differently",
    );
    assert!(
        err.contains("rsp-decode: decode failure:")
            && err.contains("frame 1 asap type 0x01")
            && err.contains("0x4321"),
        "{err}"
    );
    assert_eq!(lines[0]["roundtrip"], "decode-error");
    assert_eq!(lines[0]["name"], "ASAP_REGISTRATION");
    // Without --roundtrip or --strict the failure is reported in the output only.
    assert_eq!(run_on(&[], &bad).status.code(), Some(0));
    assert_eq!(run_on(&["--strict"], &bad).status.code(), Some(1));
}

#[test]
fn roundtrip_fails_on_a_message_that_reencodes_differently() {
    // Handle Resolution (frame 3): Pool Handle "CalcAppPool" (11 bytes) is followed by one
    // padding byte (offset 19); a non-zero padding byte decodes (with a warning) but is
    // re-encoded as zero.
    let bad = tampered_copy("padding.pcap", 2, |b| {
        assert_eq!(b[0], 0x05);
        assert_eq!(b[19], 0);
        b[19] = 0xAA;
    });
    let (err, lines) = failing_roundtrip(
        &bad,
        "5 of 6 messages ok, 0 failed to decode, 1 re-encoded differently",
    );
    let mismatch: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("rsp-decode: roundtrip mismatch:"))
        .collect();
    assert_eq!(mismatch.len(), 1, "{err}");
    assert!(
        mismatch[0].contains("frame 3 ASAP_HANDLE_RESOLUTION"),
        "{err}"
    );
    assert_eq!(lines[2]["roundtrip"], "mismatch");
    assert!(lines[2].get("warnings").is_some(), "{}", lines[2]);
}

/// `out` is rsp-decode's refusal to read `file`: exit code 2 and a message naming the file
/// and saying `why`.
fn assert_cannot_read(out: &Output, file: &Path, why: &str) {
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(out);
    assert!(
        err.contains("rsp-decode: cannot read")
            && err.contains(&file.display().to_string())
            && err.contains(why),
        "{err}"
    );
}

#[test]
fn missing_file_exits_non_zero_with_a_message() {
    let missing = scratch("does-not-exist.pcap");
    let out = run_on(&[], &missing);
    assert_cannot_read(&out, &missing, "No such file");
    assert!(out.stdout.is_empty());
}

#[test]
fn garbage_file_exits_non_zero_with_a_message() {
    let garbage = scratch("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all\n").expect("write");
    let out = run_on(&["--summary"], &garbage);
    assert_cannot_read(&out, &garbage, "not a pcap or pcapng file");
}
