//! Handlespace integration tests (RFC 5351 §2.2, RFC 5352 §3): one test binary for the
//! registration, cache and index tests, sharing the PE fixtures in [`common`].
//!
//! Run one area with a filter, e.g. `cargo test -p asap --test handlespace handlespace_cache`.

mod common;
mod handlespace_cache;
mod handlespace_indexes;
mod handlespace_registration;
