//! Memory per PE of a registrar's handlespace (issue 15 target: < 1 KiB at 100 000 PEs).
//!
//! Fills a [`Handlespace`] the way a registrar does (one owner, PEs registered over ASAP
//! associations of 16 PEs each, a 30 s registration life, an SCTP user transport with one
//! address, 10 PEs per pool, the four policies in turn, as `benches/handlespace.rs`) and
//! reports the heap bytes the handlespace holds, counted by a global allocator that wraps the
//! system allocator. Bytes are what was requested from the allocator (malloc's own per-chunk
//! overhead, 8–16 bytes per allocation with glibc, comes on top; the allocation count is
//! printed so that it can be estimated).
//!
//! Run: `cargo run --release -p asap --example handlespace_memory -- [PES] [PES_PER_POOL]`
//! (defaults 100 000 and 10). BENCHMARKS.md "Handlespace memory" records the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use asap::handlespace::Handlespace;
use asap::wire::{Policy, PoolElementInfo, TransportParameter};

/// Counts live heap bytes and allocations, then delegates to [`System`].
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as for `System`; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "../benches/population/mod.rs"]
mod population;
use population::{element, handles, policy};

fn main() {
    sizes();
    let mut args = std::env::args().skip(1);
    let pes: u32 = args.next().map_or(100_000, |s| s.parse().expect("PES"));
    let per_pool: u32 = args.next().map_or(10, |s| s.parse().expect("PES_PER_POOL"));
    let pools = pes.div_ceil(per_pool);
    let handles = handles(pools);
    let now = Instant::now();

    let (b0, a0) = (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    );
    let mut hs = Handlespace::new();
    for i in 0..pes {
        let (pool, pe) = (i / per_pool, i % per_pool);
        let e = element(i + 1, pe, policy(pool, pe, pe * 1000));
        hs.register(
            &handles[pool as usize],
            e,
            0x5eed_0001,
            Some(u64::from(i / 16)),
            now,
        )
        .expect("registration");
    }
    let (b1, a1) = (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    );
    let bytes = (b1 - b0) as f64;
    let allocs = (a1 - a0) as f64;
    println!(
        "{} PEs in {} pools ({} per pool): {:.1} MiB on the heap, {:.0} bytes per PE, \
         {:.2} allocations per PE",
        hs.len(),
        hs.pool_count(),
        per_pool,
        bytes / 1_048_576.0,
        bytes / f64::from(pes),
        allocs / f64::from(pes)
    );
    println!(
        "{{\"pes\":{},\"pools\":{},\"heap_bytes\":{},\"bytes_per_pe\":{:.0},\"allocations_per_pe\":{:.2}}}",
        pes,
        pools,
        b1 - b0,
        bytes / f64::from(pes),
        allocs / f64::from(pes)
    );
    drop(hs);
}
/// Inline sizes of the per-PE and per-pool structs (stderr), to see where the bytes go.
fn sizes() {
    use std::mem::size_of;
    eprintln!(
        "sizes: PoolElementEntry {} PoolElementInfo {} TransportParameter {} Policy {} Selector {} Pool {}",
        size_of::<asap::handlespace::PoolElementEntry>(),
        size_of::<PoolElementInfo>(),
        size_of::<TransportParameter>(),
        size_of::<Policy>(),
        size_of::<asap::selection::Selector>(),
        size_of::<asap::handlespace::Pool>(),
    );
}
