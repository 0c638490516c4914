//! Handlespace benchmark: 100 000 PEs in 10 000 pools (10 per pool, policies RR, LU,
//! WRAND and LUD in turn), then handle resolutions (select 3) and re-registrations.
//!
//! Run: `cargo bench -p asap --bench handlespace -- --warm-up-time 1 --measurement-time 3`
//!
//! The `*_cpu` variants measure the benchmark thread's CPU time instead of wall time, so
//! they stay meaningful on a machine shared with other jobs.

// `criterion_main!` generates an undocumented `main`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use asap::handlespace::Handlespace;
use asap::wire::{PoolElementInfo, PoolHandle};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;

const POOLS: u32 = 10_000;
const PES_PER_POOL: u32 = 10;

mod population;
use population::policy;

fn element(pool: u32, pe: u32, load: u32) -> PoolElementInfo {
    population::element(pool * PES_PER_POOL + pe + 1, pe, policy(pool, pe, load))
}

fn handles() -> Vec<PoolHandle> {
    population::handles(POOLS)
}

/// Pre-built elements so that the insert benchmark measures the handlespace only.
fn elements() -> Vec<(usize, PoolElementInfo)> {
    (0..POOLS)
        .flat_map(|p| (0..PES_PER_POOL).map(move |e| (p as usize, element(p, e, e * 1000))))
        .collect()
}

fn build(handles: &[PoolHandle], els: Vec<(usize, PoolElementInfo)>, now: Instant) -> Handlespace {
    let mut hs = Handlespace::new();
    for (i, (p, e)) in els.into_iter().enumerate() {
        hs.register(&handles[p], e, 1, Some((i / 16) as u64), now)
            .expect("registration");
    }
    hs
}

/// CPU time consumed by the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn bench(c: &mut Criterion) {
    let handles = handles();
    let now = Instant::now();

    let mut g = c.benchmark_group("handlespace");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(POOLS * PES_PER_POOL)));
    g.bench_function("insert_100k_pes_10k_pools", |b| {
        b.iter_batched(
            elements,
            |els| black_box(build(&handles, els, now)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("insert_100k_pes_10k_pools_cpu", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let els = elements();
                let start = thread_cpu();
                let hs = build(&handles, els, now);
                total += thread_cpu() - start;
                drop(black_box(hs));
            }
            total
        })
    });
    g.finish();

    let mut hs = build(&handles, elements(), now);
    let mut g = c.benchmark_group("handlespace_100k");
    g.throughput(Throughput::Elements(1));
    let mut rng = StdRng::seed_from_u64(42);
    let mut i = 0usize;
    g.bench_function("handle_resolution_select3", |b| {
        b.iter(|| {
            i = (i + 7919) % handles.len();
            black_box(hs.select(&handles[i], 3, &mut rng).expect("pool"))
        })
    });
    let mut k = 0u32;
    g.bench_function("reregistration_new_load", |b| {
        b.iter(|| {
            k = (k + 7919) % (POOLS * PES_PER_POOL);
            let (p, e) = (k / PES_PER_POOL, k % PES_PER_POOL);
            let conn = Some(u64::from(k / 16));
            let el = element(p, e, k.wrapping_mul(2_654_435_761));
            black_box(
                hs.register(&handles[p as usize], el, 1, conn, now)
                    .expect("re-registration"),
            )
        })
    });
    g.bench_function("handle_resolution_select3_cpu", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                i = (i + 7919) % handles.len();
                black_box(hs.select(&handles[i], 3, &mut rng).expect("pool"));
            }
            thread_cpu() - start
        })
    });
    g.bench_function("reregistration_new_load_cpu", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                k = (k + 7919) % (POOLS * PES_PER_POOL);
                let (p, e) = (k / PES_PER_POOL, k % PES_PER_POOL);
                let el = element(p, e, k.wrapping_mul(2_654_435_761));
                let conn = Some(u64::from(k / 16));
                black_box(
                    hs.register(&handles[p as usize], el, 1, conn, now)
                        .expect("re-registration"),
                );
            }
            thread_cpu() - start
        })
    });
    g.bench_function("checksum_lookup", |b| b.iter(|| black_box(hs.checksum(1))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
