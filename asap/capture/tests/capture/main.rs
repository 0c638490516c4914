//! Tests of the capture reader/writer and `rsp-decode`, in one test binary: the fixture
//! manifest, capture formats, write/read round trips and the CLI.
//!
//! Run one area with a filter, e.g. `cargo test -p rsp-capture --test capture rsp_decode_cli`.

use std::net::SocketAddr;
use std::time::Duration;

use rsp_capture::manifest::{Fixture, Manifest};
use rsp_capture::{CapturedMessage, Carrier, Proto};

mod capture_fixtures;
mod capture_formats;
mod capture_roundtrip;
mod rsp_decode_cli;

/// The fixture manifest (`pcap-fixtures/manifest.toml`).
fn manifest() -> Manifest {
    Manifest::load_default().expect("pcap-fixtures/manifest.toml loads")
}

/// The manifest's entry for `path`; fails the test if it has none.
fn fixture<'m>(m: &'m Manifest, path: &str) -> &'m Fixture {
    m.fixture(path)
        .unwrap_or_else(|| panic!("{path} is in the manifest"))
}

/// The bytes of `path` under `pcap-fixtures/`.
fn fixture_bytes(path: &str) -> Vec<u8> {
    std::fs::read(Manifest::default_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The crafted ASAP_REGISTRATION message (`pcap-fixtures/crafted/asap-registration.bin`).
fn registration_bin() -> Vec<u8> {
    fixture_bytes("crafted/asap-registration.bin")
}

/// What of a captured message survives a write/read round trip: everything but the frame
/// number.
type Key = (
    Duration,
    Proto,
    Carrier,
    SocketAddr,
    SocketAddr,
    Option<u32>,
    Option<u16>,
    Vec<u8>,
);

/// The [`Key`] of `m`.
fn key(m: &CapturedMessage) -> Key {
    (
        m.timestamp,
        m.protocol,
        m.carrier,
        m.src,
        m.dst,
        m.ppid,
        m.stream,
        m.bytes.clone(),
    )
}
