//! Codec throughput: decode and encode of a registration, a 128-PE
//! ASAP_HANDLE_RESOLUTION_RESPONSE and a 1000-PE ENRP_HANDLE_TABLE_RESPONSE.
//!
//! Run: `cargo bench -p rserpool-wire --bench codec` (add `-- --quick` for a short run).

// `criterion_main!` generates an undocumented `main`.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rserpool_wire::asap_msg::{HandleResolutionResponse, Registration};
use rserpool_wire::enrp_msg::HandleTableResponse;
use rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr};

fn pe(i: u32, asap: bool) -> PoolElementInfo {
    let a = |x: u32| IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (x & 0xFFFF)));
    PoolElementInfo {
        id: 0x1000_0000 + i,
        home_server_id: 0xaaa1,
        registration_life: 90_000,
        user_transport: TransportParameter::Sctp {
            port: 7000 + (i % 1000) as u16,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![a(i)],
        },
        policy: Policy::LeastUsed { load: i * 1000 },
        asap_transport: asap.then(|| TransportParameter::Sctp {
            port: 3863,
            transport_use: TransportUse::DataOnly,
            addresses: vec![a(i)],
        }),
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    let reg: Message = Registration {
        pool_handle: "EchoPool".into(),
        pool_element: PoolElementInfo {
            policy: Policy::RoundRobin,
            ..pe(1, false)
        },
    }
    .into();
    let hrr: Message = HandleResolutionResponse {
        accept_updates: false,
        pool_handle: "EchoPool".into(),
        policy: Some(Policy::LeastUsed { load: 0 }),
        pool_elements: (0..128).map(|i| pe(i, false)).collect(),
        error: None,
    }
    .into();
    let htr: Message = HandleTableResponse {
        reject: false,
        more: false,
        sender: 0xaaa1,
        receiver: 0xaaa2,
        pools: (0..10)
            .map(|p| PoolEntry {
                pool_handle: format!("Pool{p:04}").as_str().into(),
                pool_elements: (0..100).map(|i| pe(p * 100 + i, true)).collect(),
            })
            .collect(),
    }
    .into();
    vec![
        ("registration", reg),
        ("hrr_128_pe", hrr),
        ("htr_1000_pe", htr),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, m) in messages() {
        let bytes = m.to_bytes().expect("encode");
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("decode", |b| {
            b.iter(|| Message::decode(m.protocol(), black_box(&bytes)).expect("decode"))
        });
        let mut buf = BytesMut::with_capacity(bytes.len());
        g.bench_function("encode", |b| {
            b.iter(|| {
                buf.clear();
                black_box(&m).encode(&mut buf).expect("encode");
            })
        });
        g.finish();
        eprintln!("{name}: {} bytes", bytes.len());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
