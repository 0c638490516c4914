//! Helpers shared by the handlespace integration tests.
#![allow(dead_code)]

use asap::wire::{
    PeIdentifier, Policy, PoolElementInfo, PoolHandle, TransportParameter, TransportUse,
};
use std::net::{IpAddr, Ipv4Addr};

pub fn ph(s: &str) -> PoolHandle {
    PoolHandle::from(s)
}

pub fn sctp(port: u16, transport_use: TransportUse) -> TransportParameter {
    TransportParameter::Sctp {
        port,
        transport_use,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
    }
}

pub fn tcp(port: u16) -> TransportParameter {
    TransportParameter::Tcp {
        port,
        transport_use: TransportUse::DataOnly,
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    }
}

/// A PE with an SCTP data-only transport and a 30 s registration life.
pub fn pe(id: PeIdentifier, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 30_000,
        user_transport: sctp(7, TransportUse::DataOnly),
        policy,
        asap_transport: None,
    }
}

pub fn pe_life(id: PeIdentifier, life_ms: i32) -> PoolElementInfo {
    PoolElementInfo {
        registration_life: life_ms,
        ..pe(id, Policy::RoundRobin)
    }
}
