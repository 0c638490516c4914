//! `rsp-transport-test`: exercise the rserpool-rs transports (kernel SCTP, TCP) end to end.
//!
//! * `server` accepts associations and echoes every message back with the same PPID and stream.
//! * `client` sends `--count` messages of `--size` bytes, checks each echo byte for byte
//!   (including PPID and stream), prints one JSON line with the results and exits with status 1
//!   on any mismatch, loss or timeout.
//! * `bench` measures messages per second and round-trip latency against a `server`.
//!
//! Logs (tracing) go to stderr, results (JSON) to stdout. Example, as used by the VM tests:
//!
//! ```text
//! rsp-transport-test server --transport sctp --listen 10.0.0.1,10.0.1.1:5000
//! rsp-transport-test client --transport sctp --connect 10.0.0.1,10.0.1.1:5000 \
//!     --bind 10.0.0.2,10.0.1.2 --ppid 11 --stream 3 --size 262144 --count 3
//! ```

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use asap::transport::{
    parse_addr_list, parse_ip_list, Association, Event, Msg, PathConfig, RtoConfig, Transport,
    TransportConfig, TransportKind,
};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use tracing::{info, warn};

/// Test client, echo server and benchmark for the rserpool-rs message transports.
///
/// Over TCP, messages are framed by the RSerPool common header, so the client builds each test
/// message with a 4-byte header (type 0xFF, flags = sequence number, length = size); TCP
/// carries no stream id (echoes come back on stream 0) and at most 65535 bytes per message.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Accept associations and echo every message back (same PPID and stream).
    Server(ServerArgs),
    /// Send messages, verify the echoes, print one JSON result line.
    Client(ClientArgs),
    /// Ping-pong benchmark against a server: messages/s and round-trip percentiles as JSON.
    Bench(BenchArgs),
}

/// Options shared by all commands.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Transport: sctp (kernel SCTP), sctp-udp (userspace SCTP over UDP, RFC 6951), tcp
    /// (RSerPool-header framing) or auto (SCTP if the kernel has it, else TCP with a warning).
    #[arg(long, default_value = "auto")]
    transport: TransportKind,
    /// Largest message accepted, in bytes (TCP is limited to 65538 by the 16-bit length).
    #[arg(long, default_value_t = 256 * 1024 + 4)]
    max_size: usize,
    /// SCTP RTO.Initial in ms (default: rsplib's PE value). 0 keeps the kernel default (3000).
    #[arg(long, default_value_t = 750)]
    rto_initial_ms: u32,
    /// SCTP RTO.Min in ms (default: rsplib's PE value). 0 keeps the kernel default (1000).
    #[arg(long, default_value_t = 500)]
    rto_min_ms: u32,
    /// SCTP RTO.Max in ms (default: rsplib's PE value). 0 keeps the kernel default (60000).
    #[arg(long, default_value_t = 1000)]
    rto_max_ms: u32,
    /// SCTP heartbeat interval in ms, so an idle failed path is noticed quickly
    /// (0 keeps the kernel default of 30000).
    #[arg(long, default_value_t = 500)]
    hb_interval_ms: u32,
    /// SCTP Path.Max.Retrans: failures before a path is reported unreachable (0 keeps the
    /// kernel default of 5).
    #[arg(long, default_value_t = 2)]
    path_max_retrans: u16,
    /// Connect timeout in ms.
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// sctp-udp: local UDP port (0 = any).
    #[arg(long, default_value_t = asap::transport::defaults::SCTP_UDP_PORT)]
    sctp_udp_port: u16,
    /// sctp-udp: UDP port of the peer [default: the local --sctp-udp-port].
    #[arg(long)]
    sctp_udp_remote_port: Option<u16>,
}

impl Common {
    fn config(&self, tcp_ppid: u32) -> TransportConfig {
        let mut c = TransportConfig::asap(self.transport);
        c.tcp_ppid = tcp_ppid;
        c.max_message_size = self.max_size;
        c.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        c.sctp_udp.udp_port = self.sctp_udp_port;
        c.sctp_udp.remote_udp_port = self.sctp_udp_remote_port;
        if self.rto_initial_ms > 0 && self.rto_min_ms > 0 && self.rto_max_ms > 0 {
            c.sctp.rto = Some(RtoConfig {
                initial_ms: self.rto_initial_ms,
                max_ms: self.rto_max_ms,
                min_ms: self.rto_min_ms,
            });
        }
        if self.hb_interval_ms > 0 || self.path_max_retrans > 0 {
            c.sctp.paths = Some(PathConfig {
                heartbeat_interval_ms: self.hb_interval_ms,
                path_max_retrans: self.path_max_retrans,
            });
        }
        c
    }
}

#[derive(Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    common: Common,
    /// Local addresses and port: ADDR[,ADDR...]:PORT (one multi-homed SCTP endpoint; one TCP
    /// socket per address). IPv6 in brackets.
    #[arg(long)]
    listen: String,
    /// PPID implied for messages received over TCP (11 = ASAP, 12 = ENRP).
    #[arg(long, default_value_t = 11)]
    tcp_ppid: u32,
}

#[derive(Args, Debug)]
struct ClientArgs {
    #[command(flatten)]
    common: Common,
    /// Server addresses and port: ADDR[,ADDR...]:PORT (all paths of one SCTP peer; tried in
    /// order over TCP).
    #[arg(long)]
    connect: String,
    /// Local addresses to bind: ADDR[,ADDR...] (SCTP multi-homing; TCP uses the first of the
    /// matching family). Default: chosen by the kernel.
    #[arg(long)]
    bind: Option<String>,
    /// PPID of the test messages (over TCP also the endpoint's implied PPID).
    #[arg(long, default_value_t = 11)]
    ppid: u32,
    /// SCTP stream id of the test messages (must be below the negotiated streams, 10 by
    /// default; TCP always echoes on stream 0).
    #[arg(long, default_value_t = 0)]
    stream: u16,
    /// Size of each message in bytes (at least 4; at most 65535 over TCP).
    #[arg(long, default_value_t = 1000)]
    size: usize,
    /// Number of messages (each is sent after the previous echo arrived).
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Pause between messages in ms.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// How long to wait for each echo before giving up, in ms.
    #[arg(long, default_value_t = 10000)]
    timeout_ms: u64,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Server addresses and port: ADDR[,ADDR...]:PORT.
    #[arg(long)]
    connect: String,
    /// Message size in bytes (at least 4).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// How long to measure, in ms.
    #[arg(long, default_value_t = 3000)]
    duration_ms: u64,
    /// Messages in flight at once (1 = strict ping-pong).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// PPID of the messages.
    #[arg(long, default_value_t = 11)]
    ppid: u32,
    /// Stream id of the messages.
    #[arg(long, default_value_t = 0)]
    stream: u16,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Server(a) => server(a).await,
            Command::Client(a) => client(a).await,
            Command::Bench(a) => bench(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rsp-transport-test: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn event_json(ev: &Event) -> Value {
    match ev {
        Event::Up {
            outbound_streams,
            inbound_streams,
        } => {
            json!({"event": "up", "outbound_streams": outbound_streams, "inbound_streams": inbound_streams})
        }
        Event::Message(m) => {
            json!({"event": "message", "ppid": m.ppid, "stream": m.stream, "len": m.bytes.len()})
        }
        Event::Restarted => json!({"event": "restarted"}),
        Event::PeerAddrChange { addr, state, error } => {
            json!({"event": "peer_addr_change", "addr": addr.to_string(), "state": state.as_str(), "error": error})
        }
        Event::Lost(r) => json!({"event": "lost", "reason": r.to_string()}),
        // Events added to the transport later: printed by their Debug form.
        other => json!({"event": "other", "debug": format!("{other:?}")}),
    }
}

fn addrs_json(v: Result<Vec<SocketAddr>, asap::transport::TransportError>) -> Value {
    match v {
        Ok(v) => json!(v.iter().map(ToString::to_string).collect::<Vec<_>>()),
        Err(e) => json!(format!("error: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// server

async fn server(a: ServerArgs) -> Result<ExitCode, AnyError> {
    let addrs = parse_addr_list(&a.listen)?;
    let transport = Transport::new(a.common.config(a.tcp_ppid));
    let listener = transport.listen(&addrs).await?;
    println!(
        "{}",
        json!({"event": "listening", "transport": listener.kind().as_str(),
               "local_addrs": addrs_json(listener.local_addrs())})
    );
    loop {
        let assoc = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(echo(assoc));
    }
}

async fn echo(mut assoc: Association) {
    let peers = addrs_json(assoc.peer_addrs());
    println!("{}", json!({"event": "accepted", "peer_addrs": peers}));
    let mut echoed = 0u64;
    loop {
        match assoc.recv().await {
            Ok(Event::Message(m)) => {
                if let Err(e) = assoc.send(&m).await {
                    warn!(error = %e, "echo failed");
                    break;
                }
                echoed += 1;
            }
            Ok(ev @ Event::Lost(_)) => {
                let mut j = event_json(&ev);
                j["peer_addrs"] = peers.clone();
                j["echoed"] = json!(echoed);
                println!("{j}");
                break;
            }
            Ok(ev) => {
                let mut j = event_json(&ev);
                j["peer_addrs"] = peers.clone();
                println!("{j}");
            }
            Err(e) => {
                info!(error = %e, "association ended");
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// client

/// Test message `seq` of `size` bytes: an RSerPool-style header (type 0xFF, flags = seq,
/// Message Length = size, saturated at 65535) and a pattern depending on `seq`.
fn test_message(seq: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.push(0xFF);
    v.push(seq as u8);
    v.extend_from_slice(&u16::try_from(size).unwrap_or(u16::MAX).to_be_bytes());
    let mut x = (seq as u32).wrapping_mul(2_654_435_761).wrapping_add(1);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v.truncate(size.max(4));
    v
}

async fn client(a: ClientArgs) -> Result<ExitCode, AnyError> {
    let peers = parse_addr_list(&a.connect)?;
    let local: Vec<SocketAddr> = match &a.bind {
        Some(b) => parse_ip_list(b)?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 0))
            .collect(),
        None => Vec::new(),
    };
    if a.size < 4 {
        return Err("--size must be at least 4 (the RSerPool header)".into());
    }
    let transport = Transport::new(a.common.config(a.ppid));
    let kind = transport.kind();
    if kind == TransportKind::Tcp && a.size > 65535 {
        return Err(format!(
            "--size {} is too large for TCP: the RSerPool Message Length is 16 bits (max 65535)",
            a.size
        )
        .into());
    }
    let mut assoc = transport.connect(&peers, &local).await?;
    let expect_stream = if kind == TransportKind::Tcp {
        0
    } else {
        a.stream
    };
    let (mut sent, mut received, mut mismatches) = (0u64, 0u64, 0u64);
    let mut ppids = BTreeSet::new();
    let mut streams = BTreeSet::new();
    let mut events: Vec<Value> = Vec::new();
    let mut lost: Option<String> = None;
    let mut timeouts = 0u64;
    let started = Instant::now();
    'outer: for seq in 0..a.count {
        if seq > 0 && a.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
        let body = test_message(seq, a.size);
        let msg = Msg::new(a.ppid, a.stream, body.clone());
        if let Err(e) = assoc.send(&msg).await {
            lost = Some(format!("send failed: {e}"));
            break;
        }
        sent += 1;
        let mut expected = body;
        if kind == TransportKind::Tcp {
            expected.resize(a.size.div_ceil(4) * 4, 0);
        }
        loop {
            let ev = tokio::time::timeout(Duration::from_millis(a.timeout_ms), assoc.recv()).await;
            match ev {
                Err(_) => {
                    timeouts += 1;
                    lost = Some(format!(
                        "no echo for message {seq} within {} ms",
                        a.timeout_ms
                    ));
                    break 'outer;
                }
                Ok(Err(e)) => {
                    lost = Some(e.to_string());
                    break 'outer;
                }
                Ok(Ok(Event::Message(m))) => {
                    received += 1;
                    ppids.insert(m.ppid);
                    streams.insert(m.stream);
                    if m.ppid != a.ppid || m.stream != expect_stream || m.bytes[..] != expected[..]
                    {
                        mismatches += 1;
                        warn!(
                            seq,
                            ppid = m.ppid,
                            stream = m.stream,
                            len = m.bytes.len(),
                            expected_len = expected.len(),
                            "echo mismatch"
                        );
                    }
                    break;
                }
                Ok(Ok(ev @ Event::Lost(_))) => {
                    events.push(event_json(&ev));
                    if let Event::Lost(r) = ev {
                        lost = Some(r.to_string());
                    }
                    break 'outer;
                }
                Ok(Ok(ev)) => {
                    let mut j = event_json(&ev);
                    j["at_ms"] = json!(started.elapsed().as_millis() as u64);
                    events.push(j);
                }
            }
        }
    }
    let peer_addrs = addrs_json(assoc.peer_addrs());
    let local_addrs = addrs_json(assoc.local_addrs());
    assoc.close().await.ok();
    let ok = lost.is_none() && mismatches == 0 && received == a.count && sent == a.count;
    println!(
        "{}",
        json!({
            "transport": kind.as_str(),
            "ok": ok,
            "sent": sent,
            "received": received,
            "mismatches": mismatches,
            "timeouts": timeouts,
            "size": a.size,
            "ppid_sent": a.ppid,
            "stream_sent": a.stream,
            "ppid_seen": ppids,
            "stream_seen": streams,
            "peer_addrs": peer_addrs,
            "local_addrs": local_addrs,
            "events": events,
            "error": lost,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------------
// bench

async fn bench(a: BenchArgs) -> Result<ExitCode, AnyError> {
    let peers = parse_addr_list(&a.connect)?;
    if a.size < 4 || a.window == 0 {
        return Err("--size must be at least 4 and --window at least 1".into());
    }
    let transport = Transport::new(a.common.config(a.ppid));
    let kind = transport.kind();
    let mut assoc = transport.connect(&peers, &[]).await?;
    let msg = Msg::new(a.ppid, a.stream, test_message(0, a.size));
    let duration = Duration::from_millis(a.duration_ms);
    let mut rtts: Vec<u32> = Vec::new();
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let start = Instant::now();
    let mut stop_sending = false;
    loop {
        while !stop_sending && in_flight.len() < a.window {
            // Stamp before sending: the echo may be back before `send` returns.
            in_flight.push_back(Instant::now());
            assoc.send(&msg).await?;
        }
        if in_flight.is_empty() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(10), assoc.recv()).await {
            Err(_) => return Err("no echo within 10 s".into()),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(Event::Message(_))) => {
                if let Some(t) = in_flight.pop_front() {
                    rtts.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            Ok(Ok(Event::Lost(r))) => return Err(format!("association lost: {r}").into()),
            Ok(Ok(_)) => {}
        }
        if start.elapsed() >= duration {
            stop_sending = true;
        }
    }
    let elapsed = start.elapsed();
    assoc.close().await.ok();
    rtts.sort_unstable();
    let pct = |p: f64| -> u32 {
        if rtts.is_empty() {
            return 0;
        }
        let i = ((rtts.len() as f64 - 1.0) * p).round() as usize;
        rtts[i.min(rtts.len() - 1)]
    };
    println!(
        "{}",
        json!({
            "transport": kind.as_str(),
            "size": a.size,
            "window": a.window,
            "duration_ms": elapsed.as_millis() as u64,
            "messages": rtts.len(),
            "msgs_per_s": (rtts.len() as f64 / elapsed.as_secs_f64()).round(),
            "rtt_us": {
                "min": pct(0.0), "p50": pct(0.5), "p90": pct(0.9),
                "p99": pct(0.99), "max": pct(1.0),
            },
        })
    );
    Ok(ExitCode::SUCCESS)
}
