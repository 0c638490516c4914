//! The codec against outside references, in one test binary: the pcap-fixtures replay
//! (`conformance`) and Wireshark's dissector (`tshark_oracle`).
//!
//! Run one with a filter, e.g. `cargo test -p rserpool-tests --test wire tshark_oracle`.

mod conformance;
mod tshark_oracle;
