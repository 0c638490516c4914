//! Transport integration tests on the host (RFC 5351 §4: the ASAP/ENRP transports): TCP
//! framing, UDP and SCTP over UDP, in one test binary (TLS: `tests/tests/api/transport_tls.rs`,
//! with the test PKI of `rserpool-tests`).
//!
//! The kernel-SCTP tests (`transport_sctp.rs`, `transport_kind.rs`) stay separate binaries:
//! the VM rig (`tests/vm/run.sh`, `CARGO_TESTS`) copies whole test executables into the
//! guest and runs them there under TCG, so they carry nothing the guest does not need.
//!
//! Run one transport with a filter, e.g. `cargo test -p asap --test transport transport_tcp`.

mod assoc;
mod transport_sctp_udp;
mod transport_tcp;
mod transport_udp;
