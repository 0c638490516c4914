//! Echo pool user: reads lines from stdin, sends each to the pool, prints the echoes.
//!
//! Built with `PoolUser::builder(..).connect()` and `Session::request`: the session picks
//! a PE by the pool's policy; when the PE fails (association lost, or no reply within
//! `--reply-timeout-ms`) it fails over to another PE, echoing the old PE's last cookie,
//! and `request` sends the unanswered line again (at least once, see `asap::session`), so
//! every line is echoed exactly once as long as the PEs answer every line once.
//!
//! Self-contained: copy it out and add `asap`, `tokio`, `clap` (derive), `tracing` and
//! `tracing-subscriber` (env-filter) to your dependencies.
//!
//! ```text
//! cargo run -p asap --example echo_pu -- --registrar 127.0.0.1:3863 --transport tcp
//! ```

use std::time::Duration;

use asap::pu::PoolUser;
use asap::session::SessionConfig;
use asap::transport::parse_addr_list;
use clap::Parser;

mod common;
use common::{PoolArgs, TlsArgs};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Echo pool user (RFC 5352 PU with the session layer).
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pool: PoolArgs,
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
    /// Give up on a line after this many seconds (failovers included).
    #[arg(long, default_value_t = 30)]
    request_timeout_s: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_tracing();
    let args = Args::parse();
    let stale = Duration::from_millis(args.stale_ms);
    let mut pu = PoolUser::builder(args.pool.pool.as_str())
        .transport(args.pool.transport)
        .session_config(SessionConfig {
            data_ppid: args.data_ppid,
            reply_timeout: (args.reply_timeout_ms > 0)
                .then(|| Duration::from_millis(args.reply_timeout_ms)),
            request_timeout: Some(Duration::from_secs(args.request_timeout_s)),
            ..SessionConfig::default()
        })
        .configure(move |c| c.pu.stale_cache_value = stale);
    for r in &args.pool.registrar {
        pu = pu.registrar_addrs(parse_addr_list(r)?);
    }
    if let Some(ctx) = args.tls.context()? {
        pu = pu.registrar_tls(ctx);
    }
    if args.announce {
        // Finding a registrar by its announces takes a few seconds.
        pu = pu.announces().call_timeout(Duration::from_secs(30));
    }
    let mut session = pu.connect().await?;
    if let Some(pe) = session.current_pe() {
        eprintln!("connected to PE {:#010x}", pe.id);
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = session.request(line.into_bytes()).await?;
        for f in session.take_failovers() {
            eprintln!(
                "failover {:#010x} -> {:#010x} ({:?}, {} µs, cookie echoed: {})",
                f.from,
                f.to,
                f.reason,
                f.took.as_micros(),
                f.cookie_echoed
            );
        }
        println!("{}", String::from_utf8_lossy(&reply));
    }
    session.close().await;
    Ok(())
}
