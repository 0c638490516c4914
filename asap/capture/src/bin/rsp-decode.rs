//! `rsp-decode`: decode every ASAP (RFC 5352) and ENRP (RFC 5353) message in pcap/pcapng
//! captures (or raw message files) and print one JSON object per message. The logic is
//! [`rsp_capture::decode_cli`], shared with `rsp decode` (crate `rsp-tools`).

#![forbid(unsafe_code)]

use clap::Parser;
use rsp_capture::decode_cli::{run, DecodeArgs};

fn main() -> std::process::ExitCode {
    run(&DecodeArgs::parse())
}
