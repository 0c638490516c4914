//! Tests of the sans-I/O PE and PU cores (RFC 5352 §3, RFC 5351 §2) with a virtual clock,
//! in one test binary: `api_core` (the single-PE and PU cores: T4, T2 retries, H flag,
//! rejections, T1, cache expiry) and `pe_multi` (the N-registration PE core,
//! `asap::pe::multi`). Both assert on the encoded messages and the cores' state.
//!
//! Run one area with a filter, e.g. `cargo test -p asap --test core pe_multi`.

mod api_core;
mod common;
mod pe_multi;
