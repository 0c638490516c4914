//! ENRP messages, PE entries and malformed encodings for tests of the registrar, most of
//! them driving its core (`enrp_server::core::Registrar`) directly: the `enrp-server` unit
//! tests and its integration tests build their peers' messages here instead of each
//! spelling the same struct literals out again.
//!
//! Only `asap::wire` types cross this module, so the unit tests of `enrp-server` (which
//! see their own build of the crate) can use it as well.

use std::net::{IpAddr, Ipv4Addr};

use asap::wire::enrp_msg::{HandleUpdate, Presence};
use asap::wire::{
    Message, Policy, PoolElementInfo, ServerId, TransportParameter, TransportUse, UpdateAction,
};

/// The pool all these messages are about.
pub const POOL: &str = "P";

/// A PRESENCE from `sender` to everyone (receiver 0) that asks for no reply and carries
/// no server information; `checksum` 0xFFFF says "unknown" (no audit is triggered).
pub fn presence(sender: ServerId, checksum: u16) -> Presence {
    Presence {
        reply_required: false,
        sender,
        receiver: 0,
        checksum,
        server_information: None,
    }
}

/// PE `id` of home `home`: SCTP user transport 10.0.0.1 port 7 (data and control),
/// round robin, registration life 60 s, no ASAP transport.
pub fn sctp_pe(id: u32, home: ServerId) -> PoolElementInfo {
    sctp_pe_at(
        id,
        home,
        Ipv4Addr::new(10, 0, 0, 1).into(),
        Policy::RoundRobin,
    )
}

/// PE `id` of home `home` with `policy`: SCTP user transport `user` port 7 (data and
/// control), registration life 60 s, no ASAP transport.
pub fn sctp_pe_at(id: u32, home: ServerId, user: IpAddr, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: home,
        registration_life: 60_000,
        user_transport: TransportParameter::Sctp {
            port: 7,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![user],
        },
        policy,
        asap_transport: None,
    }
}

/// A HANDLE_UPDATE from `sender` to `receiver` on [`POOL`], without takeover suggestion:
/// `action` of `pe`.
pub fn update(
    sender: ServerId,
    receiver: ServerId,
    action: UpdateAction,
    pe: PoolElementInfo,
) -> HandleUpdate {
    HandleUpdate {
        takeover_suggested: false,
        sender,
        receiver,
        action,
        reserved: 0,
        pool_handle: POOL.into(),
        pool_element: pe,
    }
}

/// `m` (any ASAP or ENRP message) encoded, then cut short by `by` bytes with the header's
/// Length fixed to match: well framed, but its last TLV is incomplete (a malformed message
/// a registrar must answer with an ERROR, not drop the association for).
pub fn cut_short(m: impl Into<Message>, by: usize) -> Vec<u8> {
    let good = m.into().to_bytes().expect("encodes");
    let mut cut = good[..good.len() - by].to_vec();
    let len = u16::try_from(cut.len()).expect("fits the Length field");
    cut[2..4].copy_from_slice(&len.to_be_bytes());
    cut
}
