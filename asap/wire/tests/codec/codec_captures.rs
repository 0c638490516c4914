//! Real rsplib 3.4.4 traffic (tests/data/rsplib-*.hex, extracted from
//! pcap-fixtures/rsplib/*.pcap) and crafted captures: every message decodes and
//! re-encodes to the identical bytes; selected messages are checked field by field.

use ::rserpool_wire::asap_msg::{self, AsapMessage};
use ::rserpool_wire::enrp_msg::{self, EnrpMessage};
use ::rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// (frame, protocol, bytes) of every line of a `tests/data/*.hex` file.
fn load(file: &str) -> Vec<(String, Protocol, Vec<u8>)> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read fixture");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let frame = it.next().expect("frame").to_string();
            let proto = match it.next().expect("proto") {
                "asap" => Protocol::Asap,
                _ => Protocol::Enrp,
            };
            (frame, proto, unhex(it.next().expect("hex")))
        })
        .collect()
}

fn find(file: &str, frame: &str) -> (Protocol, Vec<u8>) {
    load(file)
        .into_iter()
        .find(|(f, _, _)| f == frame)
        .map(|(_, p, b)| (p, b))
        .expect("frame in fixture")
}

/// One of scenario C's malformed-message probes: its bytes and the error decoding gives.
fn probe(frame: &str) -> (Vec<u8>, DecodeError) {
    let (p, b) = find("rsplib-scenario-c.hex", frame);
    let e = Message::decode(p, &b).expect_err("a probe does not decode");
    (b, e)
}

fn decode_exact(p: Protocol, b: &[u8]) -> Decoded {
    let d = Message::decode(p, b).expect("decode");
    assert_eq!(d.consumed, b.len());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(
        &d.reencode().expect("encode")[..],
        b,
        "re-encode of {}",
        d.message
    );
    d
}

const FILES: [&str; 5] = [
    "rsplib-scenario-a.hex",
    "rsplib-scenario-b.hex",
    "rsplib-scenario-b-multicast.hex",
    "rsplib-scenario-c.hex",
    "crafted-mixed.hex",
];

#[test]
fn all_capture_messages_round_trip_byte_exact() {
    let mut ok = 0;
    let mut types = std::collections::BTreeSet::new();
    let mut errs = Vec::new();
    for f in FILES {
        for (frame, proto, bytes) in load(f) {
            match Message::decode(proto, &bytes) {
                Ok(d) => {
                    assert!(d.warnings.is_empty(), "{f} frame {frame}: {:?}", d.warnings);
                    assert_eq!(d.consumed, bytes.len(), "{f} frame {frame}");
                    let re = d.reencode().expect("encode");
                    assert_eq!(&re[..], &bytes[..], "{f} frame {frame}: {}", d.message);
                    // rsplib's encoding is our canonical one: no layout needed.
                    assert!(d.layout.is_canonical(), "{f} frame {frame}: {:?}", d.layout);
                    assert_eq!(&d.message.to_bytes().expect("encode")[..], &bytes[..]);
                    types.insert(d.message.name());
                    ok += 1;
                }
                Err(e) => errs.push((f, frame, e)),
            }
        }
    }
    assert_eq!(ok, 399);
    // Every type rsplib sent in the scenarios.
    for t in [
        "ASAP_REGISTRATION",
        "ASAP_DEREGISTRATION",
        "ASAP_REGISTRATION_RESPONSE",
        "ASAP_DEREGISTRATION_RESPONSE",
        "ASAP_HANDLE_RESOLUTION",
        "ASAP_HANDLE_RESOLUTION_RESPONSE",
        "ASAP_ENDPOINT_KEEP_ALIVE",
        "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
        "ASAP_ENDPOINT_UNREACHABLE",
        "ASAP_SERVER_ANNOUNCE",
        "ASAP_COOKIE",
        "ASAP_COOKIE_ECHO",
        "ASAP_ERROR",
        "ENRP_PRESENCE",
        "ENRP_HANDLE_TABLE_REQUEST",
        "ENRP_HANDLE_TABLE_RESPONSE",
        "ENRP_HANDLE_UPDATE",
        "ENRP_LIST_REQUEST",
        "ENRP_LIST_RESPONSE",
        "ENRP_INIT_TAKEOVER",
        "ENRP_INIT_TAKEOVER_ACK",
        "ENRP_ERROR",
    ] {
        assert!(types.contains(t), "{t} not seen");
    }
    // The three malformed-message probes of scenario C, and nothing else, fail.
    let failed: Vec<_> = errs.iter().map(|(f, fr, _)| format!("{f}:{fr}")).collect();
    assert_eq!(
        failed,
        [
            "rsplib-scenario-c.hex:522",
            "rsplib-scenario-c.hex:533",
            "rsplib-scenario-c.hex:542"
        ]
    );
}

#[test]
fn probe_unknown_parameter_report_matches_rsplib_error() {
    // Frame 522: HANDLE_RESOLUTION with TLV type 0x4321 (action 01: stop and report).
    let (_, e) = probe("522");
    assert_eq!(
        e,
        DecodeError::UnrecognizedParameter {
            offset: 4,
            param_type: 0x4321,
            report: true,
            tlv: vec![0x43, 0x21, 0x00, 0x04],
        }
    );
    // Our ASAP Error answer is byte-identical to rsplib's (frame 524).
    let answer: Message = asap_msg::Error {
        error: OperationError::single(e.report().expect("report")),
    }
    .into();
    let (_, rsplib) = find("rsplib-scenario-c.hex", "524");
    assert_eq!(&answer.to_bytes().unwrap()[..], &rsplib[..]);

    // Frame 542: the same inside an ENRP Presence; rsplib answers with ENRP Error (544).
    let (_, e) = probe("542");
    assert_eq!(e.offset(), 12);
    let (_, rsplib) = find("rsplib-scenario-c.hex", "544");
    let d = decode_exact(Protocol::Enrp, &rsplib);
    match d.message {
        Message::Enrp(EnrpMessage::Error(m)) => {
            assert_eq!(m.error.causes, vec![e.report().unwrap()]);
        }
        m => panic!("{m}"),
    }
}

#[test]
fn probe_unknown_message_type() {
    let (b, e) = probe("533");
    assert_eq!(
        e,
        DecodeError::UnrecognizedMessage {
            protocol: Protocol::Asap,
            type_code: 0x7F,
            report: true,
            message: b.clone(),
        }
    );
    let cause = e.report().unwrap();
    assert_eq!(cause.code, CauseCode::UnrecognizedMessage);
    assert_eq!(cause.info, b);
}

#[test]
fn rsplib_registration_fields() {
    let (p, b) = find("rsplib-scenario-a.hex", "61");
    let d = decode_exact(p, &b);
    assert_eq!(d.message.name(), "ASAP_REGISTRATION");
    assert_eq!(d.message.tshark_name(), "ASAP Registration");
    let Message::Asap(AsapMessage::Registration(r)) = d.message else {
        panic!("not a registration")
    };
    assert_eq!(r.pool_handle, PoolHandle::from("EchoPool"));
    let pe = &r.pool_element;
    assert_eq!(pe.id, 0x2222_2222);
    assert_eq!(pe.home_server_id, 0);
    assert_eq!(pe.registration_life, 30_000);
    assert_eq!(
        pe.user_transport,
        TransportParameter::Sctp {
            port: 0xa52d,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 12))],
        }
    );
    assert_eq!(pe.policy, Policy::RoundRobin);
    // rsplib omits the ASAP transport in ASAP messages.
    assert_eq!(pe.asap_transport, None);
}

#[test]
fn rsplib_handle_resolution_response_and_unknown_pool() {
    let (p, b) = find("rsplib-scenario-a.hex", "131");
    let Message::Asap(AsapMessage::HandleResolutionResponse(r)) = decode_exact(p, &b).message
    else {
        panic!()
    };
    assert!(!r.accept_updates);
    assert_eq!(r.policy, Some(Policy::RoundRobin));
    assert_eq!(r.pool_elements.len(), 1);
    assert_eq!(r.pool_elements[0].id, 0x2222_2222);
    assert_eq!(r.pool_elements[0].home_server_id, 0xaaa1);
    assert_eq!(r.error, None);

    let (p, b) = find("rsplib-scenario-a.hex", "29");
    let Message::Asap(AsapMessage::HandleResolutionResponse(r)) = decode_exact(p, &b).message
    else {
        panic!()
    };
    assert_eq!(r.pool_handle, PoolHandle::from("NoSuchPool"));
    assert!(r.pool_elements.is_empty());
    let err = r.error.expect("operation error");
    assert_eq!(err.first_code(), Some(CauseCode::UnknownPoolHandle));
}

#[test]
fn rsplib_presence_and_nonstandard_error_cause() {
    let (p, b) = find("rsplib-scenario-a.hex", "5");
    let Message::Enrp(EnrpMessage::Presence(m)) = decode_exact(p, &b).message else {
        panic!()
    };
    assert_eq!(m.sender, 0xb598aff0);
    assert_eq!(m.receiver, 0);
    assert_eq!(m.checksum, 0xffff);
    assert!(!m.reply_required);
    let si = m.server_information.expect("server information");
    assert_eq!(si.server_id, 0xb598aff0);
    assert_eq!(
        si.transport.addresses(),
        vec![
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        ]
    );
    // rsplib's answer to a loopback-only Presence: ENRP Error with non-IANA cause 0x0011.
    let (p, b) = find("rsplib-scenario-a.hex", "8");
    let Message::Enrp(EnrpMessage::Error(m)) = decode_exact(p, &b).message else {
        panic!()
    };
    assert_eq!(
        m.error.causes,
        vec![ErrorCause::plain(CauseCode::RsplibInvalidValue)]
    );
    assert_eq!(m.error.causes[0].code.code(), 0x0011);
}

#[test]
fn rsplib_handle_update_with_asap_transport() {
    let (p, b) = find("rsplib-scenario-b.hex", "121");
    let d = decode_exact(p, &b);
    let Message::Enrp(EnrpMessage::HandleUpdate(m)) = d.message else {
        panic!()
    };
    assert_eq!((m.sender, m.receiver), (0xaaa2, 0xaaa1));
    assert_eq!(m.action, UpdateAction::AddPe);
    assert!(!m.takeover_suggested);
    assert_eq!(m.pool_element.home_server_id, 0xaaa2);
    assert_eq!(m.pool_element.registration_life, 90_000);
    let asap = m
        .pool_element
        .asap_transport
        .expect("ASAP transport in ENRP");
    assert_eq!(asap.addresses().len(), 7);
    assert_eq!(asap.transport_use(), TransportUse::DataOnly);
}

#[test]
fn rsplib_handle_table_response_and_takeover() {
    let (p, b) = find("rsplib-scenario-a.hex", "118");
    let Message::Enrp(EnrpMessage::HandleTableResponse(m)) = decode_exact(p, &b).message else {
        panic!()
    };
    assert!(!m.reject && !m.more);
    assert_eq!(m.pools.len(), 1);
    let ids: Vec<u32> = m.pools[0].pool_elements.iter().map(|pe| pe.id).collect();
    assert_eq!(ids, [0x1111_1111, 0x2222_2222, 0x3333_3333]);

    // Reject flag in the loopback negative case.
    let (p, b) = find("rsplib-scenario-a.hex", "11");
    let Message::Enrp(EnrpMessage::HandleTableResponse(m)) = decode_exact(p, &b).message else {
        panic!()
    };
    assert!(m.reject);
    assert!(m.pools.is_empty());

    let (p, b) = find("rsplib-scenario-b.hex", "495");
    let d = decode_exact(p, &b);
    assert_eq!(
        d.message,
        Message::from(enrp_msg::InitTakeover {
            sender: 0xaaa2,
            receiver: 0xaaa1,
            target: 0xaaa3
        })
    );
    assert_eq!(
        d.message.to_string(),
        "ENRP_INIT_TAKEOVER Sender: 0x0000aaa2, Receiver: 0x0000aaa1, Target: 0x0000aaa3"
    );
}

#[test]
fn rsplib_cookie() {
    let (p, b) = find("rsplib-scenario-c.hex", "77");
    let Message::Asap(AsapMessage::Cookie(c)) = decode_exact(p, &b).message else {
        panic!()
    };
    assert_eq!(c.cookie.len(), 0x18 - 4);
}

#[test]
fn crafted_registration_bin() {
    // Copy of pcap-fixtures/crafted/asap-registration.bin.
    let b = std::fs::read(format!(
        "{}/tests/data/asap-registration.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let d = decode_exact(Protocol::Asap, &b);
    let Message::Asap(AsapMessage::Registration(r)) = d.message else {
        panic!()
    };
    assert_eq!(r.pool_handle, PoolHandle::from("CalcAppPool"));
    let pe = r.pool_element;
    assert_eq!(pe.id, 0x1234_5678);
    assert_eq!(pe.registration_life, 300_000);
    assert_eq!(pe.policy, Policy::WeightedRoundRobin { weight: 7 });
    assert_eq!(
        pe.user_transport,
        TransportParameter::Sctp {
            port: 5000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ],
        }
    );
    assert_eq!(pe.asap_transport.and_then(|t| t.port()), Some(5001));
}

#[test]
fn crafted_edge_zero_length_parameter_is_an_error() {
    // pcap-fixtures/crafted/edge/asap-invalid-zero-length-parameter-udp.pcap
    let b = unhex("0100000c0009000000000000");
    let e = Message::decode(Protocol::Asap, &b).unwrap_err();
    assert_eq!(
        e,
        DecodeError::BadParamLength {
            offset: 4,
            param: ParamType::PoolHandle,
            length: 0,
            reason: "below the 4-byte header"
        }
    );
    assert!(e.to_string().contains("POOL_HANDLE"));
    assert!(e.to_string().contains("byte 4"));
}

#[test]
fn json_of_a_registration() {
    let (p, b) = find("rsplib-scenario-a.hex", "61");
    let d = decode_exact(p, &b);
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["message"]["type"], "ASAP_REGISTRATION");
    assert_eq!(j["message"]["pool_handle"], "EchoPool");
    assert_eq!(j["message"]["pool_element"]["id"], 0x2222_2222);
    assert_eq!(
        j["message"]["pool_element"]["policy"]["policy"],
        "RoundRobin"
    );
    assert_eq!(j["consumed"], 56);
}

#[test]
fn crafted_server_announce_and_presence_match_tshark_oracle() {
    // Oracle: crafted/oracle/asap-server-announce-udp.json "asap.server_identifier": "0x0000beef".
    let (p, b) = find("crafted-single.hex", "1");
    let d = decode_exact(p, &b);
    assert_eq!(d.message.tshark_name(), "ASAP Server Announce");
    let Message::Asap(AsapMessage::ServerAnnounce(m)) = d.message else {
        panic!()
    };
    assert_eq!(m.server_id, 0xbeef);
    assert_eq!(
        m.transports,
        vec![TransportParameter::Sctp {
            port: 3863,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }]
    );
    // Oracle: enrp-presence-udp.json "enrp.sender_servers_id": "0x0000beef",
    // "enrp.pe_checksum": "0xabcd".
    let (p, b) = find("crafted-single.hex", "2");
    let d = decode_exact(p, &b);
    assert_eq!(d.message.tshark_name(), "ENRP Presence");
    let Message::Enrp(EnrpMessage::Presence(m)) = d.message else {
        panic!()
    };
    assert_eq!((m.sender, m.receiver, m.checksum), (0xbeef, 0, 0xabcd));
    assert_eq!(m.server_information.map(|s| s.server_id), Some(0xbeef));
}

#[test]
fn two_messages_in_one_tcp_segment() {
    let (p, b) = find("crafted-single.hex", "3");
    let mut names = Vec::new();
    let mut at = 0;
    while let Some(n) = Message::peek_wire_len(&b[at..]) {
        let d = decode_exact(p, &b[at..at + n]);
        names.push(d.message.name());
        at += n;
    }
    assert_eq!(at, b.len());
    assert_eq!(names, ["ASAP_REGISTRATION", "ASAP_HANDLE_RESOLUTION"]);
}
