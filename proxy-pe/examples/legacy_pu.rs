//! An RSerPool-aware pool user for a pool of legacy TCP servers registered by a mode A
//! proxy (seed 003 data link 81): it resolves the pool at a registrar with
//! `asap::pu::PoolUser` (RFC 5351 §2.2.3 HANDLE_RESOLUTION) and then talks to each PE's
//! TCP user transport directly, without the proxy and without any ASAP session layer.
//!
//! ```text
//! legacy_pu --registrar 10.0.0.2:3863 --transport sctp --pool LegacyPool [--line TEXT]
//! ```
//!
//! For every PE it prints one line:
//! `pe $00000001 10.0.0.41:7001/TCP greeting "hello from IP1" echo ok`.
//! Exit status 0 when the pool has at least one PE and every TCP PE greeted and echoed
//! the line; 1 otherwise (resolution failure, no PE, unreachable PE, wrong echo). Used
//! by the VM scenario `proxy-mode-a-rsplib`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use asap::pu::{PoolUser, PoolUserConfig};
use asap::transport::TransportKind;
use asap::wire::TransportParameter;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Pool user for legacy TCP pools.
#[derive(Debug, Parser)]
#[command(name = "legacy_pu")]
struct Args {
    /// Registrar `ADDR:PORT` (ASAP).
    #[arg(long)]
    registrar: SocketAddr,
    /// Transport towards the registrar: auto, sctp, tcp.
    #[arg(long, default_value = "auto")]
    transport: TransportKind,
    /// Pool handle.
    #[arg(long, default_value = "LegacyPool")]
    pool: String,
    /// Line sent to each PE; its echo must come back.
    #[arg(long, default_value = "legacy pu line")]
    line: String,
}

/// Greeting and echo of one legacy server.
async fn talk(addr: SocketAddr, line: &str) -> Result<String, String> {
    let work = async {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut greeting = String::new();
        r.read_line(&mut greeting)
            .await
            .map_err(|e| format!("greeting: {e}"))?;
        w.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut echo = String::new();
        r.read_line(&mut echo)
            .await
            .map_err(|e| format!("echo: {e}"))?;
        if echo.trim_end() != line {
            return Err(format!(
                "greeting {:?}, wrong echo {:?}",
                greeting.trim_end(),
                echo.trim_end()
            ));
        }
        Ok(greeting.trim_end().to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = PoolUserConfig::tcp();
    cfg.registrar_transport = args.transport;
    cfg.pu.link.static_registrars = vec![vec![args.registrar]];
    let pu = match PoolUser::start(cfg).await {
        Ok(pu) => pu,
        Err(e) => {
            eprintln!("legacy_pu: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pes =
        match tokio::time::timeout(Duration::from_secs(20), pu.refresh(args.pool.as_str())).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                eprintln!("legacy_pu: resolution of {} failed: {e}", args.pool);
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("legacy_pu: no resolution answer within 20 s");
                return ExitCode::FAILURE;
            }
        };
    println!("pool {}: {} PE(s)", args.pool, pes.len());
    let mut ok = !pes.is_empty();
    for pe in &pes {
        match &pe.user_transport {
            TransportParameter::Tcp { address, port, .. } => {
                let addr = SocketAddr::new(*address, *port);
                match talk(addr, &args.line).await {
                    Ok(g) => println!("pe ${:08x} {addr}/TCP greeting {g:?} echo ok", pe.id),
                    Err(e) => {
                        println!("pe ${:08x} {addr}/TCP FAILED: {e}", pe.id);
                        ok = false;
                    }
                }
            }
            other => {
                println!(
                    "pe ${:08x} {other:?}: not a TCP user transport, skipped",
                    pe.id
                );
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
