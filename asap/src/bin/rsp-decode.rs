//! `rsp-decode`: decode every ASAP (RFC 5352) and ENRP (RFC 5353) message in pcap/pcapng
//! captures (or raw message files) and print one JSON object per message.
//!
//! The capture reader ([`asap::capture`]) finds the messages (SCTP with bundling and
//! fragment reassembly, SCTP over UDP, TCP stream reassembly, UDP announces); the codec
//! ([`asap::wire`]) decodes them. `--roundtrip` re-encodes each decoded message with its
//! recorded layout and reports every message whose bytes differ; `--summary` prints counts
//! per protocol and message type instead of the messages.
//!
//! Exit status: 0 on success; 1 if `--roundtrip` found a difference or a message failed
//! to decode under `--strict`; 2 if a file could not be read.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use asap::capture::{read_capture, CaptureOptions, CapturedMessage};
use asap::wire::{Message, Protocol};

/// Decode ASAP/ENRP messages from captures: one JSON object per message on stdout.
#[derive(Parser, Debug)]
#[command(name = "rsp-decode", version, about, long_about = None)]
struct Cli {
    /// Capture files (pcap or pcapng), or raw message files with `--raw`.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Re-encode every decoded message and compare with the captured bytes; list every
    /// message whose bytes differ on stderr and exit 1 if there is any.
    #[arg(long)]
    roundtrip: bool,

    /// Print message counts per protocol and type (and decode errors) instead of the
    /// messages.
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

/// What one decoded (or undecodable) message contributes to the run.
#[derive(Default)]
struct Tally {
    /// (protocol, type code) -> (name, count), in protocol and type order.
    counts: BTreeMap<(&'static str, u8), (String, u64)>,
    messages: u64,
    decode_errors: u64,
    roundtrip_mismatches: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = capture_options(&cli);
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
            let obj = decode_one(&name, m, &cli, &mut tally);
            if !cli.summary {
                // A closed stdout (e.g. `| head`) ends the run quietly.
                if writeln!(out, "{obj}").is_err() {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }

    if cli.summary {
        let by_type: Vec<Value> = tally
            .counts
            .iter()
            .map(|((proto, code), (name, count))| {
                json!({ "protocol": proto, "type": code, "name": name, "count": count })
            })
            .collect();
        let summary = json!({
            "messages": tally.messages,
            "decode_errors": tally.decode_errors,
            "roundtrip_mismatches": tally.roundtrip_mismatches.len(),
            "by_type": by_type,
        });
        let _ = writeln!(out, "{summary:#}");
    }
    for m in &tally.roundtrip_mismatches {
        eprintln!("rsp-decode: roundtrip mismatch: {m}");
    }

    if unreadable {
        ExitCode::from(2)
    } else if (cli.roundtrip && !tally.roundtrip_mismatches.is_empty())
        || (cli.strict && tally.decode_errors > 0)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn capture_options(cli: &Cli) -> CaptureOptions {
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
            carrier: asap::capture::Carrier::Sctp,
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
fn decode_one(file: &str, m: &CapturedMessage, cli: &Cli, tally: &mut Tally) -> Value {
    let protocol = m.protocol;
    let type_code = m.message_type();
    let mut obj = json!({
        "file": file,
        "frame": m.frame,
        "protocol": protocol_name(protocol),
        "carrier": m.carrier.to_string(),
        "src": m.src.to_string(),
        "dst": m.dst.to_string(),
        "length": m.bytes.len(),
    });
    if let Some(t) = type_code {
        obj["type"] = json!(t);
    }
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
            let name = d.message.name();
            obj["name"] = json!(name);
            obj["message"] = serde_json::to_value(&d.message).unwrap_or(Value::Null);
            if !d.reports.is_empty() {
                obj["reports"] = serde_json::to_value(&d.reports).unwrap_or(Value::Null);
            }
            if !d.warnings.is_empty() {
                obj["warnings"] = serde_json::to_value(&d.warnings).unwrap_or(Value::Null);
            }
            let entry = tally
                .counts
                .entry((protocol_name(protocol), d.message.type_code()))
                .or_insert_with(|| (name.to_string(), 0));
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
            tally.decode_errors += 1;
            obj["error"] = json!(e.to_string());
            let entry = tally
                .counts
                .entry((protocol_name(protocol), type_code.unwrap_or(0)))
                .or_insert_with(|| ("UNDECODABLE".to_string(), 0));
            entry.1 += 1;
        }
    }
    obj
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Asap => "asap",
        Protocol::Enrp => "enrp",
    }
}
