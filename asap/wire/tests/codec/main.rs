//! Codec tests of `rserpool-wire` (RFC 5352 §2, RFC 5353 §2, RFC 5354, RFC 5525 CSP), in one
//! test binary: golden vectors, captured messages, property tests and rsplib's CSP.
//!
//! Run one area with a filter, e.g. `cargo test -p rserpool-wire --test codec codec_golden`.

mod codec_captures;
mod codec_golden;
mod codec_props;
mod csp_rsplib;
