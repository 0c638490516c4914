//! The `rsp-decode` command (also `rsp decode` of the `rsp-tools` crate): decode every ASAP (RFC 5352) and ENRP (RFC 5353) message in pcap/pcapng
//! captures (or raw message files) and print one JSON object per message.
//!
//! The capture reader ([`rsp_capture`]) finds the messages (SCTP with bundling and
//! fragment reassembly, SCTP over UDP, TCP stream reassembly, UDP announces); the codec
//! ([`rserpool_wire`]) decodes them. `--roundtrip` re-encodes each decoded message with its
//! recorded layout and reports every message whose bytes differ, and every message that
//! does not decode at all; `--summary` prints counts per protocol and message type instead
//! of the messages, decoded messages and decode failures counted separately.
//!
//! Every JSON line has `file`, `frame`, `protocol`, `type` (the type byte, `null` for an
//! empty message) and `name` (the RFC 5352 §2.2 / RFC 5353 §2 type name, `null` for a type
//! the tables do not know). A decoded message adds `message`, and where the decoder
//! recorded them `extra_tlvs` (TLVs not bound to a typed field, RFC 5354 §3 action bits
//! `00`/`01`/`10`/`11`: kept raw with their position), `unused_flags`, `reports` (error
//! causes the receiver should send back) and `warnings`. A message that fails adds `error`,
//! `error_offset` and, for an unrecognised parameter or message, `unrecognized` (its bytes
//! in hex).
//!
//! Exit status: 0 on success; 1 if `--roundtrip` found a message that failed to decode or
//! re-encoded differently, or a message failed to decode under `--strict`; 2 if a file
//! could not be read.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use crate::{read_capture, CaptureOptions, CapturedMessage};
use rserpool_wire::{AsapType, DecodeError, EnrpType, Message, Protocol, QuirkKind};

/// Decode ASAP/ENRP messages from captures: one JSON object per message on stdout.
#[derive(Parser, Debug)]
#[command(name = "rsp-decode", version, about, long_about = None)]
pub struct DecodeArgs {
    /// Capture files (pcap or pcapng), or raw message files with `--raw`.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Re-encode every decoded message and compare with the captured bytes; list every
    /// message whose bytes differ or that fails to decode on stderr and exit 1 if there is
    /// any.
    #[arg(long)]
    roundtrip: bool,

    /// Print message counts per protocol and type instead of the messages: decoded messages
    /// in `by_type`, messages that failed to decode in `decode_errors_by_type`.
    #[arg(long)]
    summary: bool,

    /// Exit 1 if any message fails to decode (default: report it in the output and go on).
    #[arg(long)]
    strict: bool,

    /// Treat the files as one raw RSerPool message each (or several back to back) of this
    /// protocol instead of captures.
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    raw: Option<RawProtocol>,

    /// Extra UDP port carrying SCTP over UDP (RFC 6951); 9899 is always used.
    /// Repeatable.
    #[arg(long = "sctp-over-udp-port", value_name = "PORT")]
    sctp_over_udp_ports: Vec<u16>,

    /// Extra port (SCTP, TCP or UDP) whose payloads are ASAP; 3863 is always used.
    /// Repeatable.
    #[arg(long = "asap-port", value_name = "PORT")]
    asap_ports: Vec<u16>,

    /// Extra port (SCTP, TCP or UDP) whose payloads are ENRP; 9901 is always used.
    /// Repeatable.
    #[arg(long = "enrp-port", value_name = "PORT")]
    enrp_ports: Vec<u16>,

    /// Accept a capture file cut short in the middle of a record (decode what was read).
    #[arg(long)]
    allow_truncated: bool,

    /// Include the message bytes as hex in each JSON object.
    #[arg(long)]
    hex: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RawProtocol {
    Asap,
    Enrp,
}

/// Counts per (protocol, type code): (name, count), in protocol and type order.
type Counts = BTreeMap<(&'static str, u8), (Option<&'static str>, u64)>;

/// What one decoded (or undecodable) message contributes to the run.
#[derive(Default)]
struct Tally {
    /// Messages that decoded.
    counts: Counts,
    /// Messages that failed to decode, by the type byte they carry.
    error_counts: Counts,
    messages: u64,
    decoded: u64,
    /// One line per message that failed to decode.
    decode_failures: Vec<String>,
    roundtrip_mismatches: Vec<String>,
}

fn counts_json(counts: &Counts) -> Vec<Value> {
    counts
        .iter()
        .map(|((proto, code), (name, count))| {
            json!({ "protocol": proto, "type": code, "name": name, "count": count })
        })
        .collect()
}

/// Runs `rsp-decode` (and `rsp decode`) with parsed arguments; returns the exit status
/// described in the module documentation.
pub fn run(cli: &DecodeArgs) -> ExitCode {
    let options = capture_options(cli);
    let mut tally = Tally::default();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut unreadable = false;

    for file in &cli.files {
        let name = file.display().to_string();
        let messages = match cli.raw {
            Some(p) => match std::fs::read(file) {
                Ok(bytes) => Ok(raw_messages(&bytes, p)),
                Err(e) => Err(format!("{name}: {e}")),
            },
            None => read_capture(file, &options)
                .map(|c| c.messages)
                .map_err(|e| e.to_string()),
        };
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                eprintln!("rsp-decode: cannot read {e}");
                unreadable = true;
                continue;
            }
        };
        for m in &messages {
            let obj = decode_one(&name, m, cli, &mut tally);
            if !cli.summary {
                // A closed stdout (e.g. `| head`) ends the run quietly.
                if writeln!(out, "{obj}").is_err() {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }

    if cli.summary {
        let summary = json!({
            "messages": tally.messages,
            "decoded": tally.decoded,
            "decode_errors": tally.decode_failures.len(),
            "roundtrip_mismatches": tally.roundtrip_mismatches.len(),
            "by_type": counts_json(&tally.counts),
            "decode_errors_by_type": counts_json(&tally.error_counts),
        });
        let _ = writeln!(out, "{summary:#}");
    }
    if cli.roundtrip || cli.strict {
        for m in &tally.decode_failures {
            eprintln!("rsp-decode: decode failure: {m}");
        }
    }
    for m in &tally.roundtrip_mismatches {
        eprintln!("rsp-decode: roundtrip mismatch: {m}");
    }
    if cli.roundtrip {
        eprintln!(
            "rsp-decode: roundtrip: {} of {} messages ok, {} failed to decode, {} re-encoded differently",
            tally.decoded as usize - tally.roundtrip_mismatches.len(),
            tally.messages,
            tally.decode_failures.len(),
            tally.roundtrip_mismatches.len()
        );
    }

    if unreadable {
        ExitCode::from(2)
    } else if (cli.roundtrip
        && (!tally.roundtrip_mismatches.is_empty() || !tally.decode_failures.is_empty()))
        || (cli.strict && !tally.decode_failures.is_empty())
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn capture_options(cli: &DecodeArgs) -> CaptureOptions {
    let mut o = CaptureOptions {
        allow_truncated: cli.allow_truncated,
        ..CaptureOptions::default()
    };
    o.sctp_over_udp_ports.extend(&cli.sctp_over_udp_ports);
    for p in &cli.asap_ports {
        o.asap_sctp_ports.push(*p);
        o.asap_tcp_ports.push(*p);
        o.asap_udp_ports.push(*p);
    }
    for p in &cli.enrp_ports {
        o.enrp_sctp_ports.push(*p);
        o.enrp_tcp_ports.push(*p);
        o.enrp_udp_ports.push(*p);
    }
    o
}

/// Splits a raw file into messages by the common header's Length (RFC 5354 §4), padding
/// included; a trailing piece too short for a header is returned as is (and fails to
/// decode with a precise error).
fn raw_messages(bytes: &[u8], p: RawProtocol) -> Vec<CapturedMessage> {
    let protocol = match p {
        RawProtocol::Asap => Protocol::Asap,
        RawProtocol::Enrp => Protocol::Enrp,
    };
    let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = if rest.len() >= 4 {
            usize::from(u16::from_be_bytes([rest[2], rest[3]]))
        } else {
            rest.len()
        };
        let take = if len < 4 {
            rest.len()
        } else {
            len.div_ceil(4) * 4
        }
        .min(rest.len());
        out.push(CapturedMessage {
            frame: out.len() as u64 + 1,
            timestamp: std::time::Duration::ZERO,
            protocol,
            carrier: crate::Carrier::Sctp,
            src: unspecified,
            dst: unspecified,
            ppid: Some(protocol.ppid()),
            stream: None,
            bytes: rest[..take].to_vec(),
        });
        at += take;
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes one captured message into its JSON object and counts it.
fn decode_one(file: &str, m: &CapturedMessage, cli: &DecodeArgs, tally: &mut Tally) -> Value {
    let protocol = m.protocol;
    let type_code = m.message_type();
    let table_name = type_code.and_then(|t| type_name(protocol, t));
    let mut obj = json!({
        "file": file,
        "frame": m.frame,
        "protocol": protocol_name(protocol),
        "type": type_code,
        "name": table_name,
        "carrier": m.carrier.to_string(),
        "src": m.src.to_string(),
        "dst": m.dst.to_string(),
        "length": m.bytes.len(),
    });
    if let Some(ppid) = m.ppid {
        obj["ppid"] = json!(ppid);
    }
    if let Some(stream) = m.stream {
        obj["stream"] = json!(stream);
    }
    if cli.hex {
        obj["hex"] = json!(hex(&m.bytes));
    }
    tally.messages += 1;

    match Message::decode(protocol, &m.bytes) {
        Ok(d) => {
            tally.decoded += 1;
            let name = d.message.name();
            obj["name"] = json!(name);
            obj["message"] = serde_json::to_value(&d.message).unwrap_or(Value::Null);
            let extra: Vec<Value> = d
                .layout
                .quirks
                .iter()
                .filter_map(|q| match &q.kind {
                    QuirkKind::ExtraTlv(tlv) => {
                        let mut v = serde_json::to_value(tlv).unwrap_or(Value::Null);
                        v["path"] = json!(q.path);
                        Some(v)
                    }
                    QuirkKind::PaddingExcluded => None,
                    // Other recorded choices are layout, not TLVs: not listed here.
                    _ => None,
                })
                .collect();
            if !extra.is_empty() {
                obj["extra_tlvs"] = json!(extra);
            }
            if d.layout.unused_flags != 0 {
                obj["unused_flags"] = json!(d.layout.unused_flags);
            }
            if !d.reports.is_empty() {
                obj["reports"] = serde_json::to_value(&d.reports).unwrap_or(Value::Null);
            }
            if !d.warnings.is_empty() {
                obj["warnings"] = serde_json::to_value(&d.warnings).unwrap_or(Value::Null);
            }
            let entry = tally
                .counts
                .entry((protocol_name(protocol), d.message.type_code()))
                .or_insert_with(|| (Some(name), 0));
            entry.1 += 1;
            if cli.roundtrip {
                // The captured bytes may carry the final padding (SCTP) or not (TCP
                // framing stops at Length): compare what the decoder consumed.
                let consumed = &m.bytes[..d.consumed.min(m.bytes.len())];
                match d.reencode() {
                    Ok(b) if b.as_ref() == consumed => obj["roundtrip"] = json!("ok"),
                    Ok(b) => {
                        obj["roundtrip"] = json!("mismatch");
                        tally.roundtrip_mismatches.push(format!(
                            "{file} frame {} {name}: captured {} re-encoded {}",
                            m.frame,
                            hex(consumed),
                            hex(&b)
                        ));
                    }
                    Err(e) => {
                        obj["roundtrip"] = json!("encode-error");
                        tally.roundtrip_mismatches.push(format!(
                            "{file} frame {} {name}: re-encoding failed: {e}",
                            m.frame
                        ));
                    }
                }
            }
        }
        Err(e) => {
            obj["error"] = json!(e.to_string());
            obj["error_offset"] = json!(e.offset());
            match &e {
                DecodeError::UnrecognizedParameter { tlv: raw, .. }
                | DecodeError::UnrecognizedMessage { message: raw, .. } => {
                    obj["unrecognized"] = json!(hex(raw));
                }
                _ => {}
            }
            if cli.roundtrip {
                obj["roundtrip"] = json!("decode-error");
            }
            tally.decode_failures.push(format!(
                "{file} frame {} {} type {}: {e}",
                m.frame,
                protocol_name(protocol),
                type_code.map_or("(empty)".to_string(), |t| format!("0x{t:02x}")),
            ));
            let entry = tally
                .error_counts
                .entry((protocol_name(protocol), type_code.unwrap_or(0)))
                .or_insert_with(|| (table_name, 0));
            entry.1 += 1;
        }
    }
    obj
}

/// The type name from the RFC 5352 §2.2 / RFC 5353 §2 tables (`None` if unknown).
fn type_name(p: Protocol, code: u8) -> Option<&'static str> {
    match p {
        Protocol::Asap => AsapType::from_code(code).name(),
        Protocol::Enrp => EnrpType::from_code(code).name(),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Asap => "asap",
        Protocol::Enrp => "enrp",
    }
}
