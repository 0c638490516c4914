//! `rsp`: the RSerPool operator command (issue 16; README "Tools for operators").
//!
//! * `rsp hsdump ADDR[:PORT]` — a registrar's handlespace (ENRP handle table, RFC 5353
//!   §2.2/§2.3), table or `--json`, `--watch SECONDS` to refresh.
//! * `rsp resolve POOL --registrar ADDR[:PORT]` — a handle resolution (RFC 5352 §2.2.5).
//! * `rsp decode FILE...` — the same as `rsp-decode`.
//! * `rsp serve POOL --echo|--discard|--daytime` — a PE (rsplib `rspserver`).
//! * `rsp term POOL` — a PU sending stdin lines, printing answers (rsplib `rspterminal`).
//! * `rsp monitor` — live Component Status Protocol reports (rsplib `cspmonitor`,
//!   asap/wire/INTEROP.md §8).
//!
//! Exit status: 0 on success, 1 when the registrar could not be asked or refused, 2 on a
//! bad command line; `rsp decode` keeps `rsp-decode`'s statuses.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use asap::transport::TransportKind;
use asap::wire::codes::{ASAP_PORT, ENRP_PORT};
use clap::{Args, CommandFactory, Parser, Subcommand};
use rsp_capture::decode_cli::DecodeArgs;
use rsp_tools::{hsdump, parse_endpoint, render, resolve, PeView};
use tracing_subscriber::EnvFilter;

/// RSerPool operator tools: dump a registrar's handlespace, resolve a pool, decode
/// captures, serve and use a pool for smoke tests, monitor component status reports.
#[derive(Parser, Debug)]
#[command(name = "rsp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dump a registrar's handlespace (ours or rsplib's) with ENRP handle table requests.
    /// Our registrar answers only its allowed peers and the hosts in its --hsdump-allow
    /// list (default: loopback only).
    Hsdump(HsdumpArgs),
    /// Resolve a pool handle at a registrar and print the PEs it selected.
    Resolve(ResolveArgs),
    /// Decode ASAP/ENRP messages from pcap/pcapng captures (the same as `rsp-decode`).
    Decode(DecodeArgs),
    /// Run a pool element with a standard service (rsplib `rspserver -echo|-discard|-daytime`).
    Serve(ServeArgs),
    /// A pool user: send each stdin line to the pool, print what comes back (rsplib
    /// `rspterminal`).
    Term(TermArgs),
    /// Show live Component Status Protocol reports (rsplib `cspmonitor`).
    Monitor(MonitorArgs),
}

/// How a `serve` or `term` finds registrars.
#[derive(Args, Debug)]
struct PoolNetArgs {
    /// A registrar's ASAP endpoint `ADDR[,ADDR...]:PORT` (several addresses: one multi-homed
    /// registrar). Repeat for more registrars. [default: none; then --announce is needed]
    #[arg(long, value_name = "ADDR[,ADDR...]:PORT")]
    registrar: Vec<String>,

    /// Also find registrars by their ASAP_SERVER_ANNOUNCEs on 239.0.0.50:3863.
    #[arg(long)]
    announce: bool,

    /// Transport to registrars and of the user sessions: sctp (kernel SCTP, what rsplib
    /// speaks), tcp (RSerPool framing over TCP) or auto (SCTP if the kernel has it, else TCP).
    #[arg(long, value_name = "auto|sctp|tcp", default_value = "auto")]
    transport: TransportKind,
}

/// Component Status Protocol reporting (asap/wire/INTEROP.md §8).
#[derive(Args, Debug)]
struct CspArgs {
    /// Send Component Status Protocol reports to this monitor (`rsp monitor`, rsplib
    /// `cspmonitor`); the port defaults to 2960. [default: off]
    #[arg(long, value_name = "ADDR[:PORT]", env = "CSP_SERVER")]
    csp: Option<String>,

    /// Milliseconds between CSP reports (at least 250).
    #[arg(long, value_name = "MS", default_value_t = 1000, env = "CSP_INTERVAL")]
    csp_interval: u64,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("service").required(true).args(["echo", "discard", "daytime"])))]
struct ServeArgs {
    /// The pool handle to register in.
    #[arg(value_name = "POOL")]
    pool: String,

    /// Echo service: every message comes back unchanged.
    #[arg(long)]
    echo: bool,

    /// Discard service: every message is dropped.
    #[arg(long)]
    discard: bool,

    /// Daytime service: the time (UTC, rsplib's format) when a session opens and for
    /// every message.
    #[arg(long)]
    daytime: bool,

    #[command(flatten)]
    net: PoolNetArgs,

    /// Local address of the user transport (port 0: any free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:0")]
    listen: SocketAddr,

    /// Address registered when listening on a wildcard address. [default: the local
    /// address towards the first registrar]
    #[arg(long, value_name = "ADDR")]
    advertise: Option<IpAddr>,

    /// PE identifier, decimal or 0x-hex. [default: random]
    #[arg(long, value_name = "ID", value_parser = parse_u32)]
    id: Option<u32>,

    /// Selection policy: rr, wrr[:W], rand, wrand[:W], prio[:P], lu, rlu (RFC 5356).
    #[arg(long, value_name = "POLICY", default_value = "rr")]
    policy: String,

    #[command(flatten)]
    csp: CspArgs,
}

#[derive(Args, Debug)]
struct TermArgs {
    /// The pool handle to use.
    #[arg(value_name = "POOL")]
    pool: String,

    #[command(flatten)]
    net: PoolNetArgs,

    /// After the end of input, wait this many milliseconds without data before closing
    /// (answers still on their way are printed).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    linger: u64,

    /// Seconds to find a registrar and a PE.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Args, Debug)]
struct MonitorArgs {
    /// UDP address to receive reports on; the port defaults to 2960.
    #[arg(long, value_name = "ADDR[:PORT]", default_value = "0.0.0.0:2960")]
    listen: String,

    /// Print each report as one JSON object per line instead of the table.
    #[arg(long)]
    json: bool,

    /// Seconds between table refreshes.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    refresh: f64,
}

/// A 32-bit number in decimal or `0x` hex.
fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

/// Options every network subcommand shares.
#[derive(Args, Debug)]
struct NetArgs {
    /// Transport to the registrar: sctp (kernel SCTP, what rsplib speaks), tcp (RSerPool
    /// framing over TCP) or auto (SCTP if the kernel has it, else TCP).
    #[arg(long, value_name = "auto|sctp|tcp", default_value = "auto")]
    transport: TransportKind,

    /// Seconds to wait for the connection and for each answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    timeout: f64,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct HsdumpArgs {
    /// The registrar's ENRP endpoint: ADDR or ADDR:PORT ([ADDR]:PORT for IPv6); the port
    /// defaults to 9901.
    #[arg(value_name = "ADDR[:PORT]")]
    registrar: String,

    /// Dump again every SECONDS until interrupted (default: dump once).
    #[arg(long, value_name = "SECONDS")]
    watch: Option<f64>,

    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args, Debug)]
struct ResolveArgs {
    /// The pool handle to resolve.
    #[arg(value_name = "POOL")]
    pool: String,

    /// The registrar's ASAP endpoint: ADDR or ADDR:PORT ([ADDR]:PORT for IPv6); the port
    /// defaults to 3863.
    #[arg(long, value_name = "ADDR[:PORT]")]
    registrar: String,

    #[command(flatten)]
    net: NetArgs,
}

fn timeout(net: &NetArgs) -> Result<Duration, String> {
    Duration::try_from_secs_f64(net.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "--timeout {}: give a positive number of seconds",
                net.timeout
            )
        })
}

fn print_pes(pes: &[PeView], json: Option<serde_json::Value>) {
    match json {
        Some(v) => println!("{v}"),
        None => print!("{}", render::table(pes)),
    }
}

async fn run_hsdump(args: &HsdumpArgs) -> Result<(), String> {
    let addr = parse_endpoint(&args.registrar, ENRP_PORT)?;
    let t = timeout(&args.net)?;
    let watch = match args.watch {
        None => None,
        Some(s) => Some(
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("--watch {s}: give a positive number of seconds"))?,
        ),
    };
    loop {
        let table = hsdump(addr, args.net.transport, t)
            .await
            .map_err(|e| e.to_string())?;
        if args.net.json {
            print_pes(&table.pool_elements, serde_json::to_value(&table).ok());
        } else {
            if watch.is_some() {
                // Clear the terminal like watch(1).
                print!("\x1b[H\x1b[2J");
            }
            println!(
                "registrar {} (server ID 0x{:08x}): {} PEs",
                table.registrar,
                table.server_id,
                table.pool_elements.len()
            );
            print_pes(&table.pool_elements, None);
        }
        match watch {
            Some(w) => tokio::time::sleep(w).await,
            None => return Ok(()),
        }
    }
}

async fn run_resolve(args: &ResolveArgs) -> Result<(), String> {
    let addr = parse_endpoint(&args.registrar, ASAP_PORT)?;
    let t = timeout(&args.net)?;
    let pes = resolve(&args.pool, addr, args.net.transport, t)
        .await
        .map_err(|e| e.to_string())?;
    let json = args.net.json.then(|| {
        serde_json::json!({
            "pool": args.pool,
            "registrar": addr,
            "pool_elements": pes,
        })
    });
    print_pes(&pes, json);
    Ok(())
}

mod cmd;

fn main() -> ExitCode {
    // Packaging: `rsp --generate-assets DIR` writes man pages and completions.
    if let Some(code) = rserpool_cli_assets::handle(Cli::command) {
        return code;
    }
    let cli = Cli::parse();
    if let Command::Decode(d) = &cli.command {
        return rsp_capture::decode_cli::run(d);
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rsp: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Command::Hsdump(a) => run_hsdump(a).await,
            Command::Resolve(a) => run_resolve(a).await,
            Command::Decode(_) => Ok(()),
            Command::Serve(a) => cmd::serve(a).await,
            Command::Term(a) => cmd::term(a).await,
            Command::Monitor(a) => cmd::monitor(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsp: {e}");
            ExitCode::from(1)
        }
    }
}
