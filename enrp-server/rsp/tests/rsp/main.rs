//! Tests of the operator CLI `rsp` against a real registrar, in one test binary: the CLI
//! commands and `rsp serve`/`term`/`monitor`.
//!
//! Run one area with a filter, e.g. `cargo test -p rsp-tools --test rsp cli`.

mod cli;
mod serve_term_monitor;
