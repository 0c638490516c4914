//! Echo pool user: reads lines from stdin, sends each to the pool, prints the echoes.
//!
//! The session picks a PE by the pool's policy; when the PE fails (association lost, or no
//! reply within `--reply-timeout`) it fails over to another PE, echoing the old PE's last
//! cookie. Lines that had no echo yet are sent again after a failover (see
//! `asap::session` on `resend_from`), so every line is echoed exactly once.
//!
//! ```text
//! cargo run -p asap --example echo_pu -- --registrar 127.0.0.1:3863 --transport tcp
//! ```

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use asap::pu::{PoolUser, PoolUserConfig};
use asap::session::{Session, SessionConfig, SessionEvent};
use asap::transport::{defaults, TransportKind};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Echo pool user (RFC 5352 PU with the session layer).
#[derive(Parser, Debug)]
struct Args {
    /// Pool handle to use.
    #[arg(long, default_value = "EchoPool")]
    pool: String,
    /// Registrar `ADDR[,ADDR...]:PORT` (repeatable); none = announces only.
    #[arg(long)]
    registrar: Vec<String>,
    /// Transport towards registrars: auto, sctp, tcp.
    #[arg(long, default_value = "auto")]
    transport: TransportKind,
    /// Listen for ASAP_SERVER_ANNOUNCE on 239.0.0.50:3863.
    #[arg(long)]
    announce: bool,
    /// stale.cache.value in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    stale_ms: u64,
    /// Fail over when an echo takes longer than this (ms); 0 = only on association loss.
    #[arg(long, default_value_t = 3_000)]
    reply_timeout_ms: u64,
    /// SCTP PPID of application data.
    #[arg(long, default_value_t = 0)]
    data_ppid: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    let args = Args::parse();
    let mut cfg = PoolUserConfig::tcp();
    cfg.registrar_transport = args.transport;
    cfg.announce = args.announce.then_some(defaults::ASAP_ANNOUNCE_ADDR);
    cfg.pu.link.static_registrars = common::registrars(&args.registrar)?;
    cfg.pu.stale_cache_value = Duration::from_millis(args.stale_ms);
    let pu = PoolUser::start(cfg).await?;
    let scfg = SessionConfig {
        data_ppid: args.data_ppid,
        reply_timeout: (args.reply_timeout_ms > 0)
            .then(|| Duration::from_millis(args.reply_timeout_ms)),
        ..SessionConfig::default()
    };
    let mut session = Session::connect(&pu, args.pool.as_str(), scfg).await?;
    if let Some(pe) = session.current_pe() {
        eprintln!("connected to PE {:#010x}", pe.id);
    }
    // Lines sent and not echoed yet, oldest first: (index of last transmission, line).
    let mut outstanding: VecDeque<(u64, String)> = VecDeque::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        if !stdin_open && outstanding.is_empty() {
            break;
        }
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line? {
                Some(l) => {
                    let idx = session.send(l.clone().into_bytes()).await?;
                    outstanding.push_back((idx, l));
                }
                None => stdin_open = false,
            },
            ev = session.recv() => match ev {
                Some(SessionEvent::Data(d)) => {
                    outstanding.pop_front();
                    println!("{}", String::from_utf8_lossy(&d));
                }
                Some(SessionEvent::Failover(f)) => {
                    eprintln!(
                        "failover {:#010x} -> {:#010x} ({:?}, {} µs, cookie echoed: {})",
                        f.from, f.to, f.reason, f.took.as_micros(), f.cookie_echoed
                    );
                    let mut resend = Vec::new();
                    for (idx, l) in outstanding.iter_mut() {
                        if *idx < f.resend_from {
                            resend.push(l.clone());
                            *idx = u64::MAX;
                        }
                    }
                    // Keep FIFO order: re-sent lines go before the ones already on the new PE.
                    let rest: Vec<(u64, String)> =
                        outstanding.drain(..).filter(|(i, _)| *i != u64::MAX).collect();
                    for l in resend {
                        let idx = session.send(l.clone().into_bytes()).await?;
                        outstanding.push_back((idx, l));
                    }
                    // Lines already sent to the new PE were sent before the re-sent ones.
                    let resent: Vec<(u64, String)> = outstanding.drain(..).collect();
                    outstanding.extend(rest);
                    outstanding.extend(resent);
                }
                Some(SessionEvent::Failed(e)) => return Err(e.into()),
                None => break,
            },
        }
    }
    session.close().await;
    Ok(())
}
