//! Integration tests of the `legacy-daemon` binary with real child processes, in one test
//! binary: monitoring and reporting (`daemon`), the CLI, metrics and sd_notify.
//!
//! Run one area with a filter, e.g. `cargo test -p legacy-daemon --test daemon daemon::cli`.

mod cli;
mod common;
mod daemon;
mod metrics;
mod sd_notify;
