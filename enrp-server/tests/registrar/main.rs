//! Tests of the real registrar (the tokio driver and the `enrp-server` binary) over sockets
//! on loopback or network namespaces, in one test binary: TCP and TLS service, peering,
//! takeover, security, CSP, sd_notify, start-up errors and the benchmark tools.
//!
//! The kernel-SCTP test (`sctp.rs`) stays a separate binary: the VM rig
//! (`tests/vm/run.sh`, `CARGO_TESTS`) copies whole test executables into the guest.
//!
//! Run one area with a filter, e.g. `cargo test -p enrp-server --test registrar tcp_peering`.

mod bench_tools;
mod csp;
mod netns_chaos;
mod netns_dpf;
mod netns_ownership;
mod netns_peering;
mod sd_notify;
mod startup_errors;
mod tcp;
mod tcp_driver;
mod tcp_peering;
mod tcp_security;
mod tcp_takeover;
mod tcp_tls;

/// The `enrp-server` binary cargo built for these tests.
const BIN: &str = env!("CARGO_BIN_EXE_enrp-server");

/// `enrp-server` arguments of a registrar alone on loopback: TCP, ephemeral ASAP and ENRP
/// ports, no announcements.
const LOCAL: [&str; 10] = [
    "--transport",
    "tcp",
    "--asap",
    "127.0.0.1:0",
    "--enrp",
    "127.0.0.1:0",
    "--asap-announce",
    "off",
    "--enrp-announce",
    "off",
];
