//! Cross-crate tests of the public `asap` API against the real registrar (RFC 5351 §3):
//! the builders, the PE/PU API over TCP, the transport matrix and TLS, in one test binary.
//!
//! Run one area with a filter, e.g. `cargo test -p rserpool-tests --test api api_tcp`.

mod api_builder;
mod api_tcp;
mod psk_registration;
mod tls_sctp;
mod transport_matrix;
mod transport_mixed;
mod transport_tls;
