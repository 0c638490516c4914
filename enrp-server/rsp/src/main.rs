//! `rsp`: the RSerPool operator command (issue 16; README "Tools for operators").
//!
//! * `rsp hsdump ADDR[:PORT]` — a registrar's handlespace (ENRP handle table, RFC 5353
//!   §2.2/§2.3), table or `--json`, `--watch SECONDS` to refresh.
//! * `rsp resolve POOL --registrar ADDR[:PORT]` — a handle resolution (RFC 5352 §2.2.5).
//! * `rsp decode FILE...` — the same as `rsp-decode`.
//!
//! Exit status: 0 on success, 1 when the registrar could not be asked or refused, 2 on a
//! bad command line; `rsp decode` keeps `rsp-decode`'s statuses.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use asap::transport::TransportKind;
use asap::wire::codes::{ASAP_PORT, ENRP_PORT};
use clap::{Args, CommandFactory, Parser, Subcommand};
use rsp_capture::decode_cli::DecodeArgs;
use rsp_tools::{hsdump, parse_endpoint, render, resolve, PeView};
use tracing_subscriber::EnvFilter;

/// RSerPool operator tools: dump a registrar's handlespace, resolve a pool, decode
/// captures.
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
