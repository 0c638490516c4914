//! Tests of what the project ships besides code: systemd units, monitoring rules and
//! dashboards, Debian metadata, man pages and the Containerfile, in one test binary.
//!
//! Run one area with a filter, e.g. `cargo test -p rserpool-tests --test deploy packaging`.

use std::path::{Path, PathBuf};

mod deploy_monitoring;
mod deploy_units;
mod packaging;

/// The workspace root (this crate is `tests/` in it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
