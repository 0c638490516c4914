//! Integration tests of `proxy-pe` with real processes over TCP on loopback (the host rig
//! in [`common`]: `enrp-server`, `proxy-pe`, `legacy-daemon`s and `legacy-echo` servers),
//! in one test binary.
//!
//! Run one area with a filter, e.g. `cargo test -p proxy-pe --test proxy health`.

mod admin;
mod broker;
mod common;
mod csp;
mod daemons;
mod health;
mod health_defaults;
mod metrics;
mod pair;
mod pooltab;
mod registrar_client;
mod registration;
mod sd_notify;
mod takeover;
