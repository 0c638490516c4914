//! The PE population of the handlespace benchmark (`benches/handlespace.rs`) and the memory
//! example (`examples/handlespace_memory.rs`, through `#[path]`): one place, so that both
//! measure the same handlespace (BENCHMARKS.md "Handlespace").

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use asap::wire::{Policy, PoolElementInfo, PoolHandle, TransportParameter, TransportUse};

/// The policy of pool `pool` (RR, LU, WRAND and LUD in turn), for its PE `pe` with `load`.
pub fn policy(pool: u32, pe: u32, load: u32) -> Policy {
    match pool % 4 {
        0 => Policy::RoundRobin,
        1 => Policy::LeastUsed { load },
        2 => Policy::WeightedRandom { weight: 1 + pe },
        _ => Policy::LeastUsedDegradation {
            load,
            degradation: 0x0100_0000,
        },
    }
}

/// PE `id`, the `pe`-th of its pool: SCTP user transport on 10.0.x.y port 7, 30 s life.
pub fn element(id: u32, pe: u32, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 30_000,
        user_transport: TransportParameter::Sctp {
            port: 7,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, (pe >> 8) as u8, pe as u8))],
        },
        policy,
        asap_transport: None,
    }
}

/// `n` pool handles, `pool-00000` …
pub fn handles(n: u32) -> Vec<PoolHandle> {
    (0..n)
        .map(|i| PoolHandle::from(format!("pool-{i:05}").as_str()))
        .collect()
}
