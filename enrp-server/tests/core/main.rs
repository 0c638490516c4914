//! Tests of the sans-I/O registrar core (RFC 5353) without sockets, in one test binary:
//! the deterministic simulator ([`sim`]) and what runs on it (peering, cluster ownership,
//! peering measurements), random/mutated input (`core_fuzz`) and the security bounds
//! (`core_security`).
//!
//! Run one area with a filter, e.g. `cargo test -p enrp-server --test core sim_peering`.

mod core_fuzz;
mod core_security;
mod sim;
mod sim_bench;
mod sim_cluster;
mod sim_peering;
mod sim_takeover_suggestion;
