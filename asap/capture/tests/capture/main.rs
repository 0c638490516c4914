//! Tests of the capture reader/writer and `rsp-decode`, in one test binary: the fixture
//! manifest, capture formats, write/read round trips and the CLI.
//!
//! Run one area with a filter, e.g. `cargo test -p rsp-capture --test capture rsp_decode_cli`.

mod capture_fixtures;
mod capture_formats;
mod capture_roundtrip;
mod rsp_decode_cli;
