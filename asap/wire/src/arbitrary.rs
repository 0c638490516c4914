//! proptest strategies for every wire type (feature `arbitrary`).
//!
//! Every generated value has a canonical encoding that decodes back to an equal value:
//! unknown codes are never generated with a known value, `Policy::Unknown` never carries a
//! known policy code with that policy's exact value length, and sizes stay far below the
//! 16-bit Length limit. Use [`message`] for whole messages, e.g. to write a fuzz corpus:
//!
//! ```
//! use rserpool_wire::arbitrary;
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//! let mut runner = TestRunner::deterministic();
//! let m = arbitrary::message().new_tree(&mut runner).unwrap().current();
//! assert!(m.to_bytes().is_ok());
//! ```

use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::asap_msg::{self, AsapMessage};
use super::cause::{ErrorCause, OperationError};
use super::codes::CauseCode;
use super::enrp_msg::{self, EnrpMessage, PoolEntry, UpdateAction};
use super::message::Message;
use super::param::{
    PoolElementInfo, PoolHandle, ServerInformation, TransportParameter, TransportUse,
};
use super::policy::{Policy, PolicyType};
use super::tlv::{HandleResolutionOption, Parameter};

/// IPv4 or IPv6 address.
pub fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// Transport Use, including unassigned values.
pub fn transport_use() -> impl Strategy<Value = TransportUse> {
    prop_oneof![
        Just(TransportUse::DataOnly),
        Just(TransportUse::DataPlusControl),
        (2u16..).prop_map(TransportUse::Other),
    ]
}

/// Any transport parameter (SCTP with 1–4 addresses).
pub fn transport() -> impl Strategy<Value = TransportParameter> {
    prop_oneof![
        (any::<u16>(), transport_use(), vec(ip(), 1..4)).prop_map(
            |(port, transport_use, addresses)| {
                TransportParameter::Sctp {
                    port,
                    transport_use,
                    addresses,
                }
            }
        ),
        (any::<u16>(), transport_use(), ip()).prop_map(|(port, transport_use, address)| {
            TransportParameter::Tcp {
                port,
                transport_use,
                address,
            }
        }),
        (any::<u16>(), any::<u16>(), ip()).prop_map(|(port, reserved, address)| {
            TransportParameter::Udp {
                port,
                reserved,
                address,
            }
        }),
        (any::<u16>(), any::<u16>(), ip()).prop_map(|(port, reserved, address)| {
            TransportParameter::UdpLite {
                port,
                reserved,
                address,
            }
        }),
        (any::<u16>(), any::<u16>(), any::<u32>(), ip()).prop_map(
            |(port, reserved, service_code, address)| {
                TransportParameter::Dccp {
                    port,
                    reserved,
                    service_code,
                    address,
                }
            }
        ),
        vec(any::<u8>(), 0..12).prop_map(|data| TransportParameter::Opaque { data }),
    ]
}

/// Any of the 16 known policies (each equally likely) or an unknown one.
pub fn policy() -> impl Strategy<Value = Policy> {
    let known = (
        proptest::sample::select(PolicyType::ALL.to_vec()),
        proptest::array::uniform4(any::<u32>()),
    )
        .prop_map(|(t, values)| {
            let mut values = values.into_iter();
            Policy::from_fields(t, |_| values.next().unwrap_or_default())
        });
    let unknown = (any::<u32>(), vec(any::<u8>(), 0..20))
        .prop_filter(
            "a known code with its exact length decodes as the known policy",
            |(c, d)| PolicyType::from_code(*c).is_none_or(|t| t.value_len() != d.len()),
        )
        .prop_map(|(policy_type, data)| Policy::Unknown { policy_type, data });
    prop_oneof![PolicyType::ALL.len() as u32 => known, 1 => unknown]
}

/// A pool handle of 0–40 bytes (mostly printable).
pub fn pool_handle() -> impl Strategy<Value = PoolHandle> {
    prop_oneof![
        "[A-Za-z0-9]{1,32}".prop_map(|s| PoolHandle::from(s.as_str())),
        vec(any::<u8>(), 0..40).prop_map(PoolHandle),
    ]
}

/// A Pool Element parameter.
pub fn pool_element() -> impl Strategy<Value = PoolElementInfo> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<i32>(),
        transport(),
        policy(),
        proptest::option::of(transport()),
    )
        .prop_map(
            |(id, home_server_id, registration_life, user_transport, policy, asap_transport)| {
                PoolElementInfo {
                    id,
                    home_server_id,
                    registration_life,
                    user_transport,
                    policy,
                    asap_transport,
                }
            },
        )
}

/// A Server Information parameter.
pub fn server_information() -> impl Strategy<Value = ServerInformation> {
    (any::<u32>(), transport()).prop_map(|(server_id, transport)| ServerInformation {
        server_id,
        transport,
    })
}

/// An error cause: mostly one of RFC 5354's codes 0x0–0xA carrying the information that
/// code carries (0x1: an unrecognised TLV; 0x2: an unrecognised message, header only;
/// 0x3: a parameter TLV; 0x5: a policy TLV; 0x7: a transport TLV; none for the others),
/// sometimes any 16-bit code with raw information (rsplib's and unassigned codes).
pub fn error_cause() -> impl Strategy<Value = ErrorCause> {
    fn tlv(p: Parameter) -> Vec<u8> {
        p.to_vec().expect("generated parameters encode")
    }
    let known = prop_oneof![
        prop_oneof![
            Just(CauseCode::UnspecifiedError),
            Just(CauseCode::NonUniquePeIdentifier),
            Just(CauseCode::LackOfResources),
            Just(CauseCode::InconsistentDataControl),
            Just(CauseCode::UnknownPoolHandle),
            Just(CauseCode::RejectedSecurity),
        ]
        .prop_map(ErrorCause::plain),
        // A TLV of an unassigned type (between 0x0010 and 0x803F), padded.
        (0x0011u16..0x803F, vec(any::<u8>(), 0..12)).prop_map(|(t, v)| {
            let mut b = Vec::with_capacity(v.len() + 7);
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&(4 + v.len() as u16).to_be_bytes());
            b.extend_from_slice(&v);
            b.resize(b.len().div_ceil(4) * 4, 0);
            ErrorCause::unrecognized_parameter(&b)
        }),
        // A header-only message of a type neither protocol defines.
        (0x0Fu8.., any::<u8>()).prop_map(|(t, f)| ErrorCause::unrecognized_message(&[t, f, 0, 4])),
        prop_oneof![
            transport().prop_map(Parameter::Transport),
            policy().prop_map(Parameter::Policy),
            pool_handle().prop_map(Parameter::PoolHandle),
        ]
        .prop_map(|p| ErrorCause::invalid_values(&tlv(p))),
        policy().prop_map(|p| ErrorCause::inconsistent_policy(&p)),
        transport().prop_map(|t| ErrorCause::inconsistent_transport(&t)),
    ];
    let any_code = (any::<u16>(), vec(any::<u8>(), 0..16))
        .prop_map(|(c, info)| ErrorCause::new(CauseCode::from_code(c), info));
    prop_oneof![9 => known, 1 => any_code]
}

/// An Operation Error with 0–3 causes.
pub fn operation_error() -> impl Strategy<Value = OperationError> {
    vec(error_cause(), 0..4).prop_map(|causes| OperationError { causes })
}

fn pes(min: usize) -> impl Strategy<Value = Vec<PoolElementInfo>> {
    vec(pool_element(), min..4)
}

/// Any ASAP message.
pub fn asap_message() -> impl Strategy<Value = AsapMessage> {
    let ph = pool_handle;
    let u = any::<u32>;
    // The messages that share a table in `asap_msg` share a strategy.
    macro_rules! ph_peid {
        ($T:ident) => {
            (ph(), u()).prop_map(|(pool_handle, pe_identifier)| {
                asap_msg::$T {
                    pool_handle,
                    pe_identifier,
                }
                .into()
            })
        };
    }
    macro_rules! response {
        ($T:ident) => {
            (
                any::<bool>(),
                ph(),
                u(),
                proptest::option::of(operation_error()),
            )
                .prop_map(|(reject, pool_handle, pe_identifier, error)| {
                    asap_msg::$T {
                        reject,
                        pool_handle,
                        pe_identifier,
                        error,
                    }
                    .into()
                })
        };
    }
    prop_oneof![
        (ph(), pool_element()).prop_map(|(pool_handle, pool_element)| asap_msg::Registration {
            pool_handle,
            pool_element
        }
        .into()),
        ph_peid!(Deregistration),
        response!(RegistrationResponse),
        response!(DeregistrationResponse),
        (any::<bool>(), ph(), proptest::option::of(u())).prop_map(
            |(subscribe, pool_handle, items)| {
                asap_msg::HandleResolution {
                    subscribe,
                    pool_handle,
                    option: items.map(|items| HandleResolutionOption { items }),
                }
                .into()
            }
        ),
        (
            any::<bool>(),
            ph(),
            proptest::option::of(policy()),
            pes(0),
            proptest::option::of(operation_error())
        )
            .prop_map(
                |(accept_updates, pool_handle, policy, pool_elements, error)| {
                    asap_msg::HandleResolutionResponse {
                        accept_updates,
                        pool_handle,
                        policy,
                        pool_elements,
                        error,
                    }
                    .into()
                }
            ),
        (any::<bool>(), u(), ph(), proptest::option::of(u())).prop_map(
            |(home, server_id, pool_handle, pe_identifier)| asap_msg::EndpointKeepAlive {
                home,
                server_id,
                pool_handle,
                pe_identifier
            }
            .into()
        ),
        ph_peid!(EndpointKeepAliveAck),
        ph_peid!(EndpointUnreachable),
        (u(), vec(transport(), 0..4)).prop_map(|(server_id, transports)| {
            asap_msg::ServerAnnounce {
                server_id,
                transports,
            }
            .into()
        }),
        vec(any::<u8>(), 0..40).prop_map(|cookie| asap_msg::Cookie { cookie }.into()),
        vec(any::<u8>(), 0..40).prop_map(|cookie| asap_msg::CookieEcho { cookie }.into()),
        (ph(), proptest::option::of(policy()), pes(1)).prop_map(
            |(pool_handle, policy, pool_elements)| {
                asap_msg::BusinessCard {
                    pool_handle,
                    policy,
                    pool_elements,
                }
                .into()
            }
        ),
        operation_error().prop_map(|error| asap_msg::Error { error }.into()),
    ]
}

/// Any ENRP message.
pub fn enrp_message() -> impl Strategy<Value = EnrpMessage> {
    let u = any::<u32>;
    prop_oneof![
        (
            any::<bool>(),
            u(),
            u(),
            any::<u16>(),
            proptest::option::of(server_information())
        )
            .prop_map(
                |(reply_required, sender, receiver, checksum, server_information)| {
                    enrp_msg::Presence {
                        reply_required,
                        sender,
                        receiver,
                        checksum,
                        server_information,
                    }
                    .into()
                }
            ),
        (any::<bool>(), u(), u()).prop_map(|(own_children_only, sender, receiver)| {
            enrp_msg::HandleTableRequest {
                own_children_only,
                sender,
                receiver,
            }
            .into()
        }),
        (
            any::<bool>(),
            any::<bool>(),
            u(),
            u(),
            vec((pool_handle(), pes(0)), 0..3)
        )
            .prop_map(|(reject, more, sender, receiver, pools)| {
                enrp_msg::HandleTableResponse {
                    reject,
                    more,
                    sender,
                    receiver,
                    pools: pools
                        .into_iter()
                        .map(|(pool_handle, pool_elements)| PoolEntry {
                            pool_handle,
                            pool_elements,
                        })
                        .collect(),
                }
                .into()
            }),
        (
            any::<bool>(),
            u(),
            u(),
            prop_oneof![
                Just(UpdateAction::AddPe),
                Just(UpdateAction::DelPe),
                (2u16..).prop_map(UpdateAction::Other)
            ],
            any::<u16>(),
            pool_handle(),
            pool_element()
        )
            .prop_map(
                |(
                    takeover_suggested,
                    sender,
                    receiver,
                    action,
                    reserved,
                    pool_handle,
                    pool_element,
                )| {
                    enrp_msg::HandleUpdate {
                        takeover_suggested,
                        sender,
                        receiver,
                        action,
                        reserved,
                        pool_handle,
                        pool_element,
                    }
                    .into()
                }
            ),
        (u(), u()).prop_map(|(sender, receiver)| enrp_msg::ListRequest { sender, receiver }.into()),
        (any::<bool>(), u(), u(), vec(server_information(), 0..4)).prop_map(
            |(reject, sender, receiver, servers)| {
                enrp_msg::ListResponse {
                    reject,
                    sender,
                    receiver,
                    servers,
                }
                .into()
            }
        ),
        (u(), u(), u()).prop_map(|(sender, receiver, target)| enrp_msg::InitTakeover {
            sender,
            receiver,
            target
        }
        .into()),
        (u(), u(), u()).prop_map(|(sender, receiver, target)| enrp_msg::InitTakeoverAck {
            sender,
            receiver,
            target
        }
        .into()),
        (u(), u(), u()).prop_map(|(sender, receiver, target)| enrp_msg::TakeoverServer {
            sender,
            receiver,
            target
        }
        .into()),
        (u(), u(), operation_error()).prop_map(|(sender, receiver, error)| enrp_msg::Error {
            sender,
            receiver,
            error
        }
        .into()),
    ]
}

/// Any ASAP or ENRP message.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        asap_message().prop_map(Message::Asap),
        enrp_message().prop_map(Message::Enrp),
    ]
}

/// An arbitrary (possibly nonsensical) [`Layout`](super::Layout): random extra TLVs and
/// padding choices at random paths. Encoding with it must not panic; it need not decode.
pub fn layout() -> impl Strategy<Value = super::Layout> {
    use super::layout::{Layout, Quirk, QuirkKind, RawTlv};
    let kind = prop_oneof![
        Just(QuirkKind::PaddingExcluded),
        (any::<u16>(), vec(any::<u8>(), 0..9))
            .prop_map(|(param_type, value)| QuirkKind::ExtraTlv(RawTlv { param_type, value })),
    ];
    (any::<u8>(), vec((vec(0u16..5, 0..4), kind), 0..5)).prop_map(|(unused_flags, q)| Layout {
        unused_flags,
        quirks: q
            .into_iter()
            .map(|(path, kind)| Quirk { path, kind })
            .collect(),
    })
}
