//! Conformance replay of `pcap-fixtures/`: every capture listed in `manifest.toml` is read
//! with the capture reader and every message decoded with the codec.
//!
//! * message counts per protocol and type equal tshark's (stored in the manifest);
//! * every RFC-era message decodes, except the deliberately malformed probes rsplib's
//!   scenario C sends, which must fail with the RFC 5354 "report" action so a server can
//!   answer with an Operation Error;
//! * every decoded message re-encodes to exactly the captured bytes;
//! * the 2007 draft-era capture never panics and every failure is a precise error.

use std::collections::BTreeMap;

use rserpool_wire::{DecodeError, Message};
use rsp_capture::manifest::{Era, Manifest};
use rsp_capture::read_capture;

/// Decode failures expected in RFC-era fixtures: (fixture path, frame) → what the error
/// must be. These are rsplib's own malformed-message probes (scenario C) and the crafted
/// zero-length-parameter edge case.
/// (fixture path, frame) → check the decode error must pass.
type ExpectedFailures = BTreeMap<(&'static str, u64), fn(&DecodeError) -> bool>;

fn expected_failures() -> ExpectedFailures {
    fn unrecognized_param_reported(e: &DecodeError) -> bool {
        matches!(
            e,
            DecodeError::UnrecognizedParameter {
                param_type: 0x4321,
                report: true,
                ..
            }
        )
    }
    fn unrecognized_message_reported(e: &DecodeError) -> bool {
        matches!(
            e,
            DecodeError::UnrecognizedMessage {
                type_code: 0x7f,
                report: true,
                ..
            }
        )
    }
    fn zero_length(e: &DecodeError) -> bool {
        matches!(
            e,
            DecodeError::BadParamLength {
                length: 0,
                offset: 4,
                ..
            }
        )
    }
    let mut m = ExpectedFailures::new();
    for f in [
        "rsplib/scenario-c.pcap",
        "rsplib/scenario-c.csum-fixed.pcap",
    ] {
        m.insert((f, 522), unrecognized_param_reported);
        m.insert((f, 533), unrecognized_message_reported);
        m.insert((f, 542), unrecognized_param_reported);
    }
    m.insert(
        (
            "crafted/edge/asap-invalid-zero-length-parameter-udp.pcap",
            1,
        ),
        zero_length,
    );
    m
}

#[test]
fn fixtures_match_tshark_counts_decode_and_reencode_byte_exact() {
    let manifest = Manifest::load_default().expect("pcap-fixtures/manifest.toml loads");
    let expected_failures = expected_failures();
    let mut seen_failures = 0usize;
    let mut rfc_messages = 0usize;
    let mut problems = Vec::new();

    for fixture in &manifest.files {
        let path = manifest.path_of(fixture);
        let capture = read_capture(&path, &fixture.capture_options())
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.path));
        let expected = fixture
            .expected_counts()
            .by_type()
            .unwrap_or_else(|e| panic!("{}: bad manifest counts: {e}", fixture.path));
        assert_eq!(
            capture.count_by_type(),
            expected,
            "{}: message counts per (protocol, type) differ from the manifest",
            fixture.path
        );

        for m in &capture.messages {
            let result = Message::decode(m.protocol, &m.bytes);
            match fixture.era {
                Era::Rfc => {
                    rfc_messages += 1;
                    match result {
                        Ok(d) => {
                            let consumed = &m.bytes[..d.consumed.min(m.bytes.len())];
                            let again = d.reencode().expect("decoded message re-encodes");
                            if again.as_ref() != consumed {
                                problems.push(format!(
                                    "{} frame {}: re-encoding differs",
                                    fixture.path, m.frame
                                ));
                            }
                            // The captured unit holds exactly one message (plus padding).
                            assert!(
                                m.bytes.len() - d.consumed < 4,
                                "{} frame {}: {} bytes left after the message",
                                fixture.path,
                                m.frame,
                                m.bytes.len() - d.consumed
                            );
                        }
                        Err(e) => match expected_failures.get(&(fixture.path.as_str(), m.frame)) {
                            Some(check) if check(&e) => seen_failures += 1,
                            _ => problems.push(format!(
                                "{} frame {}: unexpected decode error: {e}",
                                fixture.path, m.frame
                            )),
                        },
                    }
                }
                Era::Draft2007 => {
                    // Pre-RFC parameter numbering: decoding must not panic, and a failure
                    // must name a byte offset inside the message.
                    if let Err(e) = result {
                        assert!(
                            e.offset() < m.bytes.len().max(1),
                            "{} frame {}: error offset {} outside the message: {e}",
                            fixture.path,
                            m.frame,
                            e.offset()
                        );
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "conformance problems:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        seen_failures,
        expected_failures.len(),
        "every expected malformed probe was seen and rejected as specified"
    );
    assert!(
        rfc_messages > 1000,
        "only {rfc_messages} RFC-era messages replayed"
    );
}

/// The draft-era capture: ENRP messages mostly decode (their header and type codes are
/// those of the RFC), ASAP messages carry the old parameter numbering and must fail with
/// a precise error rather than be misread.
#[test]
fn draft2007_capture_is_rejected_precisely() {
    let manifest = Manifest::load_default().expect("manifest loads");
    let fixture = manifest
        .files
        .iter()
        .find(|f| f.era == Era::Draft2007)
        .expect("a draft-era fixture is listed");
    let capture = read_capture(manifest.path_of(fixture), &fixture.capture_options())
        .expect("draft capture reads");
    let (mut ok, mut err) = (0, 0);
    for m in &capture.messages {
        match Message::decode(m.protocol, &m.bytes) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert_eq!(ok + err, capture.messages.len());
    assert_eq!(capture.messages.len(), 148 + 545);
    // The draft's Pool Handle is parameter 0x7 (RFC: UDP-Lite transport) and every ASAP
    // message starts with it, so no draft ASAP message may decode as RFC ASAP.
    let asap_ok = capture
        .messages
        .iter()
        .filter(|m| m.protocol == rserpool_wire::Protocol::Asap)
        .filter(|m| Message::decode(m.protocol, &m.bytes).is_ok())
        .count();
    assert_eq!(
        asap_ok, 0,
        "draft-era ASAP messages must not decode as RFC ASAP"
    );
    assert!(
        err >= 148,
        "at least every ASAP message fails ({err} failures)"
    );
}
