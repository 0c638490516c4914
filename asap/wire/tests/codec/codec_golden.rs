//! Golden vectors (message sizes from the layouts of RFC 5352 §2 and RFC 5353 §2), padding/layout edge cases, action
//! bits of unknown parameters, rsplib deviations, policies, causes and typed errors.

use ::rserpool_wire::asap_msg::{self, AsapMessage};
use ::rserpool_wire::enrp_msg::{self, EnrpMessage};
use ::rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Decodes, checks consumed/warnings and that re-encoding gives the same bytes.
fn exact(p: Protocol, b: &[u8]) -> Decoded {
    let d = Message::decode(p, b).expect("decode");
    assert_eq!(d.consumed, b.len());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(&d.reencode().unwrap()[..], b);
    d
}

fn echo_pe(policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id: 0x1234_5678,
        home_server_id: 0,
        registration_life: 90_000,
        user_transport: TransportParameter::Sctp {
            port: 7,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![v4(10, 0, 0, 1)],
        },
        policy,
        asap_transport: None,
    }
}

/// The Registration of [`echo_pe`] (round robin) into "EchoPool".
fn echo_registration() -> asap_msg::Registration {
    asap_msg::Registration {
        pool_handle: "EchoPool".into(),
        pool_element: echo_pe(Policy::RoundRobin),
    }
}

const ECHO_HR: [u8; 16] = [
    0x05, 0x00, 0x00, 0x10, 0x00, 0x09, 0x00, 0x0C, b'E', b'c', b'h', b'o', b'P', b'o', b'o', b'l',
];

#[test]
fn golden_handle_resolution() {
    let m: Message = asap_msg::HandleResolution::new("EchoPool").into();
    assert_eq!(&m.to_bytes().unwrap()[..], &ECHO_HR);
    assert_eq!(exact(Protocol::Asap, &ECHO_HR).message, m);
    assert_eq!(
        m.to_string(),
        "ASAP_HANDLE_RESOLUTION Pool Handle: EchoPool"
    );
}

#[test]
fn golden_handle_resolution_with_option() {
    let m: Message = asap_msg::HandleResolution {
        subscribe: false,
        pool_handle: "EchoPool".into(),
        option: Some(HandleResolutionOption { items: 3 }),
    }
    .into();
    let mut want = ECHO_HR.to_vec();
    want[3] = 0x18;
    want.extend_from_slice(&[0x80, 0x3F, 0x00, 0x08, 0, 0, 0, 3]);
    assert_eq!(&m.to_bytes().unwrap()[..], &want[..]);
    assert_eq!(exact(Protocol::Asap, &want).message, m);
}

#[test]
fn golden_registration_56_bytes() {
    let m: Message = echo_registration().into();
    let mut want = vec![0x01, 0x00, 0x00, 0x38, 0x00, 0x09, 0x00, 0x0C];
    want.extend_from_slice(b"EchoPool");
    want.extend_from_slice(&[
        0x00, 0x0A, 0x00, 0x28, // Pool Element, Length 40
        0x12, 0x34, 0x56, 0x78, // PE ID
        0x00, 0x00, 0x00, 0x00, // home
        0x00, 0x01, 0x5F, 0x90, // life 90000 ms
        0x00, 0x04, 0x00, 0x10, 0x00, 0x07, 0x00, 0x01, // SCTP, port 7, data+control
        0x00, 0x01, 0x00, 0x08, 10, 0, 0, 1, // IPv4
        0x00, 0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, // RR
    ]);
    assert_eq!(want.len(), 56);
    assert_eq!(&m.to_bytes().unwrap()[..], &want[..]);
    assert_eq!(exact(Protocol::Asap, &want).message, m);
}

#[test]
fn message_length_excluding_last_padding_is_preserved() {
    // rsplib / our default: Length covers the Pool Handle's padding (20).
    let m: Message = asap_msg::HandleResolution::new("CalcAppPool").into();
    let canon = m.to_bytes().unwrap();
    assert_eq!(&canon[..4], &[0x05, 0x00, 0x00, 0x14]);
    assert_eq!(canon.len(), 20);
    // RFC 5354 §2 wording: Length 19, the padding byte follows as message padding.
    let mut rfc = canon.to_vec();
    rfc[3] = 0x13;
    let d = exact(Protocol::Asap, &rfc);
    assert_eq!(d.message, m);
    assert_eq!(
        d.layout.quirks,
        vec![Quirk {
            path: vec![],
            kind: QuirkKind::PaddingExcluded
        }]
    );
    // Without its padding byte the input is still accepted, with a warning.
    let d = Message::decode(Protocol::Asap, &rfc[..19]).unwrap();
    assert_eq!(d.consumed, 19);
    assert_eq!(
        d.warnings,
        vec![Warning::MissingMessagePadding {
            offset: 19,
            missing: 1
        }]
    );
}

#[test]
fn nested_last_child_padding_both_ways() {
    // ASAP Error / Operation Error / cause 0x1 with a 5-byte info (odd length, last).
    let info = [0x80, 0x01, 0x00, 0x05, 0xAA];
    let m: Message = asap_msg::Error {
        error: OperationError::single(ErrorCause::unrecognized_parameter(&info)),
    }
    .into();
    let canon = m.to_bytes().unwrap();
    #[rustfmt::skip]
    let want = [
        0x0E, 0x00, 0x00, 0x14,
        0x00, 0x0C, 0x00, 0x10, // Operation Error covers the cause's padding (rsplib)
        0x00, 0x01, 0x00, 0x09, 0x80, 0x01, 0x00, 0x05, 0xAA, 0, 0, 0,
    ];
    assert_eq!(&canon[..], &want[..]);
    exact(Protocol::Asap, &want);
    // RFC wording: Operation Error Length 0x0D excludes the last cause's padding; message
    // Length either covers it (0x14) or not (0x11).
    for msg_len in [0x14u8, 0x11] {
        let mut b = want;
        b[3] = msg_len;
        b[7] = 0x0D;
        let d = exact(Protocol::Asap, &b);
        assert_eq!(d.message, m);
        assert!(d.layout.quirks.contains(&Quirk {
            path: vec![0],
            kind: QuirkKind::PaddingExcluded
        }));
        assert_eq!(d.layout.quirks.len(), if msg_len == 0x11 { 2 } else { 1 });
    }
}

#[test]
fn pool_element_with_odd_unknown_policy_last() {
    let pe = echo_pe(Policy::Unknown {
        policy_type: 0x8000_0001,
        data: vec![1, 2, 3],
    });
    let m: Message = asap_msg::Registration {
        pool_handle: "P".into(),
        pool_element: pe,
    }
    .into();
    let canon = m.to_bytes().unwrap();
    let d = exact(Protocol::Asap, &canon);
    assert_eq!(d.message, m);
    // Same with the PE's Length excluding the policy's padding byte (RFC wording).
    let mut rfc = canon.to_vec();
    assert_eq!(&rfc[12..14], &[0x00, 0x0A]);
    let pe_len = u16::from_be_bytes([rfc[14], rfc[15]]);
    rfc[14..16].copy_from_slice(&(pe_len - 1).to_be_bytes());
    let d = exact(Protocol::Asap, &rfc);
    assert_eq!(d.message, m);
    assert_eq!(d.layout.quirks[0].path, vec![1]);
}

#[test]
fn unknown_parameters_follow_action_bits() {
    let reg = echo_registration();
    let canon = Message::from(reg.clone()).to_bytes().unwrap().to_vec();
    // Insert an unknown TLV (5-byte value, so padded) between Pool Handle and Pool Element.
    let with = |ptype: u16| {
        let mut b = canon[..16].to_vec();
        b.extend_from_slice(&ptype.to_be_bytes());
        b.extend_from_slice(&[0x00, 0x09, 1, 2, 3, 4, 5, 0, 0, 0]);
        b.extend_from_slice(&canon[16..]);
        let l = b.len() as u16;
        b[2..4].copy_from_slice(&l.to_be_bytes());
        b
    };
    // 10: skip, no report.
    let b = with(0x8123);
    let d = exact(Protocol::Asap, &b);
    assert_eq!(d.message, Message::from(reg.clone()));
    assert!(d.reports.is_empty());
    let extras: Vec<_> = d.layout.extra_tlvs().collect();
    assert_eq!(extras.len(), 1);
    assert_eq!(extras[0].0, 1);
    assert_eq!(extras[0].1.param_type, 0x8123);
    assert_eq!(extras[0].1.value, vec![1, 2, 3, 4, 5]);
    // 11: skip and report with the complete TLV.
    let b = with(0xC123);
    let d = exact(Protocol::Asap, &b);
    assert_eq!(
        d.reports,
        vec![ErrorCause::unrecognized_parameter(&[
            0xC1, 0x23, 0x00, 0x09, 1, 2, 3, 4, 5
        ])]
    );
    // 00: stop silently; 01: stop and report.
    let e = Message::decode(Protocol::Asap, &with(0x0123)).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::UnrecognizedParameter {
            offset: 16,
            param_type: 0x0123,
            report: false,
            ..
        }
    ));
    assert_eq!(e.report(), None);
    let e = Message::decode(Protocol::Asap, &with(0x4123)).unwrap_err();
    assert_eq!(e.report().unwrap().code, CauseCode::UnrecognizedParameter);
}

#[test]
fn unknown_parameters_nested_in_pool_element_and_transport() {
    let reg = echo_registration();
    let canon = Message::from(reg.clone()).to_bytes().unwrap().to_vec();
    // Append a skip TLV inside the SCTP transport (after its address) and one at the end
    // of the Pool Element.
    let mut b = canon[..48].to_vec(); // up to the end of the IPv4 address TLV
    b.extend_from_slice(&[0x80, 0x77, 0x00, 0x06, 0xAB, 0xCD, 0, 0]);
    b.extend_from_slice(&canon[48..]);
    b.extend_from_slice(&[0xC0, 0x78, 0x00, 0x04]);
    // fix lengths: message, PE, SCTP transport
    let total = b.len() as u16;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    let pe_len = (b.len() - 16) as u16;
    b[18..20].copy_from_slice(&pe_len.to_be_bytes());
    b[34..36].copy_from_slice(&(16u16 + 8).to_be_bytes());
    let d = exact(Protocol::Asap, &b);
    assert_eq!(d.message, Message::from(reg));
    let paths: Vec<_> = d.layout.quirks.iter().map(|q| q.path.clone()).collect();
    assert_eq!(paths, vec![vec![1, 0, 1], vec![1, 2]]);
    assert_eq!(d.reports.len(), 1);
}

/// A Deregistration (PE 7) and its bytes with a second PE Identifier (9) appended: a known
/// parameter type with no slot left in the message.
fn deregistration_with_extra_pe_identifier() -> (Message, Vec<u8>) {
    let m: Message = asap_msg::Deregistration {
        pool_handle: "EchoPool".into(),
        pe_identifier: 7,
    }
    .into();
    let mut b = m.to_bytes().unwrap().to_vec();
    b.extend_from_slice(&[0x00, 0x0E, 0x00, 0x08, 0, 0, 0, 9]);
    b[3] += 8;
    (m, b)
}

#[test]
fn extra_known_parameters_are_kept() {
    let (m, b) = deregistration_with_extra_pe_identifier();
    let d = exact(Protocol::Asap, &b);
    assert_eq!(d.message, m);
    assert_eq!(d.layout.extra_tlvs().count(), 1);
    assert!(d.reports.is_empty());
}

#[test]
fn rsplib_keep_alive_with_and_without_pe_identifier() {
    for id in [None, Some(0x1111_1111)] {
        let m: Message = asap_msg::EndpointKeepAlive {
            home: true,
            server_id: 0xaaa1,
            pool_handle: "EchoPool".into(),
            pe_identifier: id,
        }
        .into();
        let b = m.to_bytes().unwrap();
        assert_eq!(b[1], 0x01, "H flag");
        assert_eq!(b.len(), if id.is_some() { 28 } else { 20 });
        assert_eq!(exact(Protocol::Asap, &b).message, m);
    }
}

#[test]
fn all_transports_and_business_card_with_policy() {
    let transports = vec![
        TransportParameter::Tcp {
            port: 80,
            transport_use: TransportUse::DataPlusControl,
            address: v4(1, 2, 3, 4),
        },
        TransportParameter::Udp {
            port: 53,
            reserved: 0,
            address: IpAddr::V6(Ipv6Addr::LOCALHOST),
        },
        TransportParameter::UdpLite {
            port: 54,
            reserved: 0x1234,
            address: v4(5, 6, 7, 8),
        },
        TransportParameter::Dccp {
            port: 55,
            reserved: 0,
            service_code: 0xDEAD_BEEF,
            address: v4(9, 9, 9, 9),
        },
        TransportParameter::Opaque {
            data: b"opaque!".to_vec(),
        },
        TransportParameter::Sctp {
            port: 3863,
            transport_use: TransportUse::Other(7),
            addresses: vec![
                v4(1, 1, 1, 1),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                v4(2, 2, 2, 2),
            ],
        },
    ];
    let pes: Vec<PoolElementInfo> = transports
        .iter()
        .map(|t| PoolElementInfo {
            user_transport: t.clone(),
            asap_transport: Some(transports[5].clone()),
            ..echo_pe(Policy::LeastUsed { load: 5 })
        })
        .collect();
    let m: Message = asap_msg::BusinessCard {
        pool_handle: "EchoPool".into(),
        policy: Some(Policy::LeastUsed { load: 5 }),
        pool_elements: pes,
    }
    .into();
    assert_eq!(exact(Protocol::Asap, &m.to_bytes().unwrap()).message, m);
    let sa: Message = asap_msg::ServerAnnounce {
        server_id: 1,
        transports,
    }
    .into();
    assert_eq!(exact(Protocol::Asap, &sa.to_bytes().unwrap()).message, sa);
}

#[test]
fn policies_have_the_spec_tlv_lengths() {
    let table: [(Policy, u32, usize); 16] = [
        (Policy::RoundRobin, 0x1, 8),
        (Policy::WeightedRoundRobin { weight: 1 }, 0x2, 12),
        (Policy::Random, 0x3, 8),
        (Policy::WeightedRandom { weight: 2 }, 0x4, 12),
        (Policy::Priority { priority: 3 }, 0x5, 12),
        (Policy::LeastUsed { load: 4 }, 0x4000_0001, 12),
        (
            Policy::LeastUsedDegradation {
                load: 5,
                degradation: 6,
            },
            0x4000_0002,
            16,
        ),
        (
            Policy::PriorityLeastUsed {
                load: 7,
                degradation: 8,
            },
            0x4000_0003,
            16,
        ),
        (Policy::RandomizedLeastUsed { load: 9 }, 0x4000_0004, 12),
        (
            Policy::RandomizedPriorityLeastUsed {
                load: 1,
                degradation: 2,
            },
            0xB000_1001,
            16,
        ),
        (
            Policy::RandomizedLeastUsedDegradation {
                load: 1,
                degradation: 2,
            },
            0xB000_1002,
            16,
        ),
        (
            Policy::PriorityLeastUsedDegradation {
                load: 1,
                degradation: 2,
            },
            0xB000_1003,
            16,
        ),
        (
            Policy::RandomizedPriorityLeastUsedDegradation {
                load: 1,
                degradation: 2,
            },
            0xB000_1004,
            16,
        ),
        (
            Policy::WeightedRandomDpf {
                weight: 1,
                weight_dpf: 2,
                distance: 3,
            },
            0xB000_2001,
            20,
        ),
        (
            Policy::LeastUsedDpf {
                load: 1,
                load_dpf: 2,
                distance: 3,
            },
            0xB000_2002,
            20,
        ),
        (
            Policy::LeastUsedDegradationDpf {
                load: 1,
                degradation: 2,
                load_dpf: 3,
                distance: 4,
            },
            0xB000_2003,
            24,
        ),
    ];
    for (p, code, len) in table {
        assert_eq!(p.policy_type(), code);
        assert_eq!(p.known_type().unwrap().tlv_len(), len);
        let m: Message = asap_msg::HandleResolutionResponse {
            accept_updates: true,
            pool_handle: "PH".into(),
            policy: Some(p.clone()),
            pool_elements: vec![],
            error: None,
        }
        .into();
        let b = m.to_bytes().unwrap();
        // header 4 + PH 8, then the policy TLV
        assert_eq!(&b[12..14], &[0x00, 0x08]);
        assert_eq!(usize::from(u16::from_be_bytes([b[14], b[15]])), len);
        assert_eq!(&b[16..20], &code.to_be_bytes());
        assert_eq!(b.len(), 12 + len);
        assert_eq!(exact(Protocol::Asap, &b).message, m);
    }
}

#[test]
fn policy_with_known_code_but_wrong_length_decodes_as_unknown() {
    // Round Robin with 4 bytes of data: kept as Unknown (documented choice), round-trips.
    let mut b = ECHO_HR.to_vec();
    b[0] = 0x06;
    b.extend_from_slice(&[0x00, 0x08, 0x00, 0x0C, 0, 0, 0, 1, 0xFF, 0xEE, 0xDD, 0xCC]);
    b[3] = b.len() as u8;
    let d = exact(Protocol::Asap, &b);
    let Message::Asap(AsapMessage::HandleResolutionResponse(r)) = d.message else {
        panic!()
    };
    assert_eq!(
        r.policy,
        Some(Policy::Unknown {
            policy_type: 1,
            data: vec![0xFF, 0xEE, 0xDD, 0xCC]
        })
    );
}

#[test]
fn error_causes_round_trip_including_rsplib_codes() {
    let mut causes: Vec<ErrorCause> = [
        0x0000u16, 0x0004, 0x0006, 0x0008, 0x0009, 0x000A, 0x0010, 0x0011, 0x100A, 0xF000, 0xF001,
        0xF002, 0xF003, 0xF004, 0xF005, 0xF006, 0xF007, 0xF008, 0x1234,
    ]
    .iter()
    .map(|&c| ErrorCause::plain(CauseCode::from_code(c)))
    .collect();
    causes.push(ErrorCause::inconsistent_policy(&Policy::WeightedRandom {
        weight: 9,
    }));
    causes.push(ErrorCause::inconsistent_transport(
        &TransportParameter::Tcp {
            port: 1,
            transport_use: TransportUse::DataOnly,
            address: v4(1, 2, 3, 4),
        },
    ));
    causes.push(ErrorCause::invalid_values(&[
        0x00, 0x0E, 0x00, 0x08, 0, 0, 0, 0,
    ]));
    causes.push(ErrorCause::unrecognized_message(&[0x7F, 0, 0, 4]));
    let m: Message = enrp_msg::Error {
        sender: 1,
        receiver: 2,
        error: OperationError { causes },
    }
    .into();
    let d = exact(Protocol::Enrp, &m.to_bytes().unwrap());
    assert_eq!(d.message, m);
    let Message::Enrp(EnrpMessage::Error(e)) = d.message else {
        panic!()
    };
    let n = e.error.causes.len();
    assert_eq!(e.error.causes[6].code, CauseCode::RsplibInvalidMessage);
    assert_eq!(e.error.causes[18].code, CauseCode::Unknown(0x1234));
    assert_eq!(
        e.error.causes[n - 4].policy(),
        Some(Policy::WeightedRandom { weight: 9 })
    );
    assert_eq!(
        e.error.causes[n - 3].transport().and_then(|t| t.port()),
        Some(1)
    );
    assert_eq!(e.error.causes[n - 2].tlv().unwrap().param_type, 0x000E);
    let j = serde_json::to_value(&e.error.causes[n - 4]).unwrap();
    assert_eq!(j["cause"], "INCONSISTENT_POOLING_POLICY");
    assert_eq!(j["policy"]["weight"], 9);
}

#[test]
fn flags_of_every_message_with_flags() {
    let pe = echo_pe(Policy::RoundRobin);
    let cases: Vec<(Message, u8)> = vec![
        (
            asap_msg::RegistrationResponse {
                reject: true,
                pool_handle: "P".into(),
                pe_identifier: 1,
                error: Some(OperationError::single(ErrorCause::plain(
                    CauseCode::LackOfResources,
                ))),
            }
            .into(),
            0x01,
        ),
        (
            asap_msg::DeregistrationResponse {
                reject: true,
                pool_handle: "P".into(),
                pe_identifier: 1,
                error: None,
            }
            .into(),
            0x01,
        ),
        (
            asap_msg::HandleResolution {
                subscribe: true,
                pool_handle: "P".into(),
                option: Some(HandleResolutionOption {
                    items: HandleResolutionOption::ALL,
                }),
            }
            .into(),
            0x01,
        ),
        (
            enrp_msg::Presence {
                reply_required: true,
                sender: 1,
                receiver: 2,
                checksum: 0xABCD,
                server_information: None,
            }
            .into(),
            0x01,
        ),
        (
            enrp_msg::HandleTableRequest {
                own_children_only: true,
                sender: 1,
                receiver: 2,
            }
            .into(),
            0x01,
        ),
        (
            enrp_msg::HandleTableResponse {
                reject: true,
                more: true,
                sender: 1,
                receiver: 2,
                pools: vec![PoolEntry {
                    pool_handle: "P".into(),
                    pool_elements: vec![pe.clone(), pe.clone()],
                }],
            }
            .into(),
            0x03,
        ),
        (
            enrp_msg::HandleUpdate {
                takeover_suggested: true,
                sender: 1,
                receiver: 2,
                action: UpdateAction::DelPe,
                reserved: 0,
                pool_handle: "P".into(),
                pool_element: pe,
            }
            .into(),
            0x01,
        ),
        (
            enrp_msg::ListResponse {
                reject: true,
                sender: 1,
                receiver: 2,
                servers: vec![],
            }
            .into(),
            0x01,
        ),
    ];
    for (m, flags) in cases {
        let b = m.to_bytes().unwrap();
        assert_eq!(b[1], flags, "{m}");
        assert_eq!(exact(m.protocol(), &b).message, m);
    }
}

#[test]
fn presence_checksum_is_length_6_plus_padding() {
    let m: Message = enrp_msg::Presence {
        reply_required: false,
        sender: 0xaaa1,
        receiver: 0,
        checksum: 0x29A5,
        server_information: None,
    }
    .into();
    let b = m.to_bytes().unwrap();
    assert_eq!(&b[12..], &[0x00, 0x0F, 0x00, 0x06, 0x29, 0xA5, 0x00, 0x00]);
    assert_eq!(&b[..4], &[0x01, 0x00, 0x00, 0x14]);
}

#[test]
fn undefined_flag_bits_are_kept() {
    let mut b = ECHO_HR.to_vec();
    b[1] = 0x81; // S + an undefined bit
    let d = exact(Protocol::Asap, &b);
    assert_eq!(d.layout.unused_flags, 0x80);
    let Message::Asap(AsapMessage::HandleResolution(h)) = &d.message else {
        panic!()
    };
    assert!(h.subscribe);
    assert_eq!(d.message.to_bytes().unwrap()[1], 0x01);
}

#[test]
fn nonzero_padding_is_a_warning() {
    let m: Message = asap_msg::HandleResolution::new("CalcAppPool").into();
    let mut b = m.to_bytes().unwrap().to_vec();
    b[19] = 0xEE;
    let d = Message::decode(Protocol::Asap, &b).unwrap();
    assert_eq!(d.message, m);
    assert_eq!(d.warnings, vec![Warning::NonZeroPadding { offset: 19 }]);
}

#[test]
fn typed_errors_with_offsets() {
    use DecodeError::*;
    let d = |b: &[u8]| Message::decode(Protocol::Asap, b).unwrap_err();
    assert!(matches!(
        d(&[0x05, 0x00, 0x00]),
        Truncated { offset: 2, .. }
    ));
    assert!(matches!(
        d(&[0x05, 0x00, 0x00, 0x03]),
        BadMessageLength { length: 3, .. }
    ));
    assert!(matches!(
        d(&[0x05, 0x00, 0x00, 0x10, 0, 9]),
        BadMessageLength { length: 16, .. }
    ));
    // Pool Handle Length beyond the message.
    let mut b = ECHO_HR.to_vec();
    b[7] = 0x10;
    assert_eq!(
        d(&b),
        BadParamLength {
            offset: 4,
            param: ParamType::PoolHandle,
            length: 16,
            reason: "beyond the message length"
        }
    );
    // Missing Pool Handle.
    assert_eq!(
        d(&[0x05, 0, 0, 4]),
        MissingParameter {
            offset: 0,
            context: "ASAP_HANDLE_RESOLUTION",
            param: ParamType::PoolHandle
        }
    );
    // IPv4 address with Length 12 inside the registration's SCTP transport.
    let reg: Message = echo_registration().into();
    let mut b = reg.to_bytes().unwrap().to_vec();
    b[43] = 12;
    let e = d(&b);
    assert!(
        matches!(
            e,
            BadParamLength {
                offset: 40,
                param: ParamType::Ipv4Address,
                ..
            }
        ),
        "{e}"
    );
    // SCTP transport without address.
    let mut b = reg.to_bytes().unwrap().to_vec();
    b.drain(40..48);
    b[35] -= 8;
    b[19] -= 8;
    b[3] -= 8;
    let e = d(&b);
    assert_eq!(
        e,
        InvalidValue {
            offset: 32,
            param: ParamType::SctpTransport,
            reason: "transport without an address"
        }
    );
    assert_eq!(
        e.to_string(),
        "SCTP_TRANSPORT at byte 32: transport without an address"
    );
    // TCP transport with two addresses.
    let mut b = reg.to_bytes().unwrap().to_vec();
    b[33] = 0x05;
    b.splice(48..48, [0x00, 0x01, 0x00, 0x08, 1, 1, 1, 1]);
    b[35] += 8;
    b[19] += 8;
    b[3] += 8;
    assert!(matches!(
        d(&b),
        InvalidValue {
            offset: 48,
            param: ParamType::TcpTransport,
            ..
        }
    ));
    // PE checksum with Length 8.
    let e = Message::decode(
        Protocol::Enrp,
        &[
            1, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x0F, 0, 8, 0, 0, 0, 0,
        ],
    )
    .unwrap_err();
    assert!(matches!(
        e,
        BadParamLength {
            offset: 12,
            param: ParamType::PeChecksum,
            length: 8,
            ..
        }
    ));
    // ENRP message too short for its server IDs.
    let e = Message::decode(Protocol::Enrp, &[5, 0, 0, 8, 0, 0, 0, 1]).unwrap_err();
    assert!(matches!(e, Truncated { offset: 8, .. }));
}

#[test]
fn too_long_messages_fail_to_encode() {
    let m: Message = asap_msg::Cookie {
        cookie: vec![0; 70_000],
    }
    .into();
    let mut buf = bytes::BytesMut::new();
    assert!(matches!(
        m.encode(&mut buf),
        Err(EncodeError::TooLong { .. })
    ));
    assert!(buf.is_empty());
}

#[test]
fn peek_wire_len_for_stream_framing() {
    assert_eq!(Message::peek_wire_len(&[0x05, 0x00, 0x00]), None);
    assert_eq!(Message::peek_wire_len(&ECHO_HR[..4]), Some(16));
    assert_eq!(Message::peek_wire_len(&[0x05, 0x00, 0x00, 0x13]), Some(20));
    assert_eq!(Message::peek_wire_len(&[0x05, 0x00, 0x00, 0x00]), Some(4));
    // Two messages back to back in one buffer (as in a TCP segment).
    let mut two = ECHO_HR.to_vec();
    two.extend_from_slice(&ECHO_HR);
    let n = Message::peek_wire_len(&two).unwrap();
    let d = Message::decode(Protocol::Asap, &two[..n]).unwrap();
    assert_eq!(d.consumed, n);
    let d2 = Message::decode(Protocol::Asap, &two[d.consumed..]).unwrap();
    assert_eq!(d2.message, d.message);
}

#[test]
fn standalone_parameters_and_extra_tlv_json() {
    let pe = echo_pe(Policy::RoundRobin);
    let tlv = Parameter::PoolElement(pe.clone()).to_vec().unwrap();
    assert_eq!(&tlv[..4], &[0x00, 0x0A, 0x00, 0x28]);
    // 0x3 Invalid Values carrying the offending Pool Element TLV.
    let cause = ErrorCause::invalid_values(&tlv);
    assert_eq!(
        cause.tlv().unwrap().decode_known(),
        Some(Parameter::PoolElement(pe))
    );
    assert_eq!(
        Parameter::decode(&[0x00, 0x0E, 0x00, 0x08, 0, 0, 0, 5]).unwrap(),
        (Parameter::PeIdentifier(5), 8)
    );
    assert!(matches!(
        Parameter::decode(&[0x80, 0x0E, 0x00, 0x04]),
        Err(DecodeError::UnrecognizedParameter {
            param_type: 0x800E,
            ..
        })
    ));
    // An extra known TLV kept in the layout shows its typed view in JSON.
    let (_, b) = deregistration_with_extra_pe_identifier();
    let j = serde_json::to_value(exact(Protocol::Asap, &b)).unwrap();
    let q = &j["layout"]["quirks"][0];
    assert_eq!(q["path"], serde_json::json!([2]));
    assert_eq!(q["kind"]["extra_tlv"]["param_type"], "PE_IDENTIFIER");
    assert_eq!(q["kind"]["extra_tlv"]["decoded"]["value"], 9);
}

/// The answer encoder (`HandleResolutionResponse::encode_answer`, the registrar's path that
/// encodes borrowed PEs without building a message) writes exactly the bytes of the codec's
/// encoding of the equivalent message whose PEs carry no ASAP transport: PEs with every
/// transport kind, multi-homed SCTP, policies with 0–4 fields and an unknown one, ASAP
/// transports (left out), the A flag, with and without the overall policy.
#[test]
fn resolution_answer_encoder_matches_the_message_encoding() {
    let asap = Some(TransportParameter::Sctp {
        port: 3863,
        transport_use: TransportUse::DataOnly,
        addresses: vec![v4(10, 0, 0, 9), IpAddr::V6(Ipv6Addr::LOCALHOST)],
    });
    let transports = [
        TransportParameter::Sctp {
            port: 7,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![
                v4(10, 0, 0, 1),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                v4(10, 0, 1, 1),
            ],
        },
        TransportParameter::Tcp {
            port: 8,
            transport_use: TransportUse::DataOnly,
            address: v4(192, 168, 1, 2),
        },
        TransportParameter::Udp {
            port: 9,
            reserved: 0x1234,
            address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
        TransportParameter::UdpLite {
            port: 10,
            reserved: 0,
            address: v4(10, 2, 3, 4),
        },
        TransportParameter::Dccp {
            port: 11,
            reserved: 7,
            service_code: 0xDEAD_BEEF,
            address: v4(10, 2, 3, 5),
        },
        TransportParameter::Opaque {
            data: b"opaque user transport".to_vec(),
        },
    ];
    let policies = [
        Policy::RoundRobin,
        Policy::WeightedRoundRobin { weight: 3 },
        Policy::LeastUsedDegradationDpf {
            load: 0x1000_0000,
            degradation: 7,
            load_dpf: 8,
            distance: 9,
        },
        Policy::Unknown {
            policy_type: 0x7777_0001,
            data: vec![1, 2, 3],
        },
    ];
    let pes: Vec<PoolElementInfo> = transports
        .iter()
        .enumerate()
        .map(|(i, t)| PoolElementInfo {
            id: 0x1000 + i as u32,
            home_server_id: 0xAB00_0000 + i as u32,
            registration_life: if i == 2 { -1 } else { 30_000 * i as i32 },
            user_transport: t.clone(),
            policy: policies[i % policies.len()].clone(),
            asap_transport: if i % 2 == 0 { asap.clone() } else { None },
        })
        .collect();
    let handle = PoolHandle::from("EchoPool");
    for accept_updates in [false, true] {
        for n in 0..=pes.len() {
            for policy in [None, Some(&policies[2])] {
                let mut fast = bytes::BytesMut::from(&b"head"[..]);
                let written = asap_msg::HandleResolutionResponse::encode_answer(
                    &mut fast,
                    accept_updates,
                    &handle,
                    policy,
                    &pes[..n],
                )
                .expect("encodes");
                assert_eq!(written, n);
                let m: Message = asap_msg::HandleResolutionResponse {
                    accept_updates,
                    pool_handle: handle.clone(),
                    policy: policy.cloned(),
                    pool_elements: pes[..n]
                        .iter()
                        .map(|pe| PoolElementInfo {
                            asap_transport: None,
                            ..pe.clone()
                        })
                        .collect(),
                    error: None,
                }
                .into();
                assert_eq!(&fast[..4], b"head", "appended after what was there");
                assert_eq!(&fast[4..], &m.to_bytes().expect("encodes")[..], "{n} PEs");
                // The same from Pool Elements encoded beforehand (a registrar's cache).
                let tlvs: Vec<Vec<u8>> = pes[..n]
                    .iter()
                    .map(|pe| {
                        let mut b = bytes::BytesMut::new();
                        asap_msg::HandleResolutionResponse::encode_answer_element(pe, &mut b)
                            .expect("encodes");
                        b.to_vec()
                    })
                    .collect();
                let mut cached = bytes::BytesMut::new();
                let written = asap_msg::HandleResolutionResponse::encode_answer(
                    &mut cached,
                    accept_updates,
                    &handle,
                    policy,
                    tlvs.iter().map(Vec::as_slice),
                )
                .expect("encodes");
                assert_eq!((written, &cached[..]), (n, &fast[4..]));
                // And it decodes to that message.
                let d = Message::decode(Protocol::Asap, &fast[4..]).expect("decodes");
                assert_eq!(d.message, m);
            }
        }
    }
    // An SCTP user transport without address cannot be encoded: an error, nothing appended.
    let mut bad = pes[0].clone();
    bad.user_transport = TransportParameter::Sctp {
        port: 1,
        transport_use: TransportUse::DataOnly,
        addresses: Vec::new(),
    };
    let mut buf = bytes::BytesMut::from(&b"keep"[..]);
    assert_eq!(
        asap_msg::HandleResolutionResponse::encode_answer(
            &mut buf,
            false,
            &handle,
            None,
            [&pes[1], &bad]
        ),
        Err(EncodeError::TransportWithoutAddress { port: 1 })
    );
    assert_eq!(&buf[..], b"keep");
}
