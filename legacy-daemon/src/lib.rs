//! legacy-daemon: a small status daemon for legacy hosts (seed 003 \[24\], \[28\]–\[32\]).
//!
//! It starts at boot, reads its configuration, polls the process table for the configured
//! applications and reports their status to one or more proxy pool elements (`proxy-pe`)
//! over a small TCP protocol (the `legacy-protocol` crate in `protocol/`, documented in
//! `PROTOCOL.md`), which also holds the proxy side of that protocol (`legacy_protocol::receiver`).
//!
//! Module map:
//! - [`config`]: TOML configuration, validation with file/line/column/key errors;
//! - [`poll`]: one pass over `/proc` per poll (procfs), CPU/RSS/port figures;
//! - [`state`]: sans-I/O change detection, snapshots and deltas with `state_seq`;
//! - [`exitwatch`]: pidfd-based immediate exit notification;
//! - [`reporter`]: one task per proxy with its own queue, backoff and jitter;
//! - [`daemon`]: the core loop (poll, reload on SIGHUP/file change, config push);
//! - [`metrics`]: the `--metrics` endpoint (OpenMetrics).

pub mod config;
pub mod daemon;
pub mod exitwatch;
pub mod metrics;
pub mod poll;
pub mod reporter;
pub mod state;
