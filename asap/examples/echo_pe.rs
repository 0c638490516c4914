//! Echo pool element: registers in a pool and echoes every message back.
//!
//! Built with `PoolElement::builder(..).serve(..)`: it listens on its user transport (SCTP
//! or TCP), registers it with a registrar (static `--registrar` list and/or ASAP
//! announces), answers keep-alives, and after every echo sends an ASAP_COOKIE with its
//! state (`pe=<id>;n=<count>`) so a PU that fails over can hand it to the next PE (printed
//! when a COOKIE_ECHO arrives). With `--cookie-state` the count is the session's
//! application state: every echo is prefixed with `#<count> `, and a COOKIE_ECHO
//! (`pe=<old id>;n=<count>`, from this or any other `echo_pe`) restores the count, so after
//! a failover the numbering continues where the failed PE stopped instead of restarting
//! at 1. Ctrl-C deregisters and drains the sessions (graceful shutdown). With `--csp
//! ADDR:PORT` it sends Component Status Protocol reports (open sessions) to `rsp monitor`
//! or rsplib's `cspmonitor`.
//!
//! Self-contained: copy it out and add `asap`, `tokio`, `clap` (derive), `rand`, `tracing`
//! and `tracing-subscriber` (env-filter) to your dependencies.
//!
//! ```text
//! cargo run -p asap --example echo_pe -- --registrar 127.0.0.1:3863 --transport tcp \
//!     --pool EchoPool --policy lu --load 20
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use asap::csp::{run_reporter, CspReporter, CspReporterConfig, CspStatus};
use asap::load::{Load, Priority, Weight};
use asap::session::{ServerEvent, ServerSession, SessionError};
use asap::wire::csp::{ComponentGroup, ComponentId};
use asap::wire::Policy;
use clap::Parser;

mod common;
use common::{PeArgs, TlsArgs};
use tracing::{debug, info, warn};

/// Echo pool element (RFC 5352 PE with the session layer of RFC 5351 §2.5).
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pe: PeArgs,
    /// Selection policy: rr, wrr, rand, wrand, prio, lu, lud, plu, rlu.
    #[arg(long, default_value = "rr")]
    policy: String,
    /// Weight (wrr, wrand) or priority (prio).
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// Load in percent (adaptive policies).
    #[arg(long, default_value_t = 0.0)]
    load: f64,
    /// Load degradation in percent (lud, plu).
    #[arg(long, default_value_t = 0.0)]
    degradation: f64,
    /// Registration life in seconds (re-registration per RFC 5352 T4).
    #[arg(long, default_value_t = 90)]
    life: u64,
    /// Fixed PE identifier, decimal or 0x-hex [default: random].
    #[arg(long, value_parser = parse_u32)]
    id: Option<u32>,
    /// Listen for ASAP_SERVER_ANNOUNCE on 239.0.0.50:3863.
    #[arg(long)]
    announce: bool,
    /// SCTP PPID of application data.
    #[arg(long, default_value_t = 0)]
    data_ppid: u32,
    /// Keep the echo count as session state: prefix echoes with `#<count> ` and continue
    /// the count from a COOKIE_ECHO's `n=` (state failover, RFC 5351 §2.5).
    #[arg(long)]
    cookie_state: bool,
    /// Send Component Status Protocol reports to this monitor ADDR:PORT (`rsp monitor`,
    /// rsplib's `cspmonitor`; asap/wire/INTEROP.md §8).
    #[arg(long)]
    csp: Option<SocketAddr>,
    /// Milliseconds between CSP reports.
    #[arg(long, default_value_t = 1000)]
    csp_interval: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Policy from its short name (rsplib's `-policy=` names, RFC 5356).
fn policy(name: &str, degradation: f64) -> Result<Policy, String> {
    let degradation = Load::percent(degradation).fraction();
    Ok(match name.to_ascii_lowercase().as_str() {
        "rr" | "roundrobin" => Policy::RoundRobin,
        "wrr" | "weightedroundrobin" => Policy::WeightedRoundRobin { weight: 1 },
        "rand" | "random" => Policy::Random,
        "wrand" | "weightedrandom" => Policy::WeightedRandom { weight: 1 },
        "prio" | "priority" => Policy::Priority { priority: 0 },
        "lu" | "leastused" => Policy::LeastUsed { load: 0 },
        "lud" | "leastuseddegradation" => Policy::LeastUsedDegradation {
            load: 0,
            degradation,
        },
        "plu" | "priorityleastused" => Policy::PriorityLeastUsed {
            load: 0,
            degradation,
        },
        "rlu" | "randomizedleastused" => Policy::RandomizedLeastUsed { load: 0 },
        other => {
            return Err(format!(
                "unknown policy {other:?} (rr, wrr, rand, wrand, prio, lu, lud, plu, rlu)"
            ))
        }
    })
}

/// A 32-bit number in decimal or `0x` hex (PE identifiers).
fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

/// The count in a cookie this example sent (`pe=<id>;n=<count>`).
fn cookie_count(cookie: &[u8]) -> Option<u64> {
    std::str::from_utf8(cookie)
        .ok()?
        .split(';')
        .find_map(|kv| kv.strip_prefix("n="))?
        .parse()
        .ok()
}

/// One session: echo, cookie after every echo, state restored from a COOKIE_ECHO.
async fn session(
    mut s: ServerSession,
    id: u32,
    cookie_state: bool,
    open: Arc<AtomicU64>,
) -> Result<(), SessionError> {
    open.fetch_add(1, Ordering::Relaxed);
    let r = echo(&mut s, id, cookie_state).await;
    open.fetch_sub(1, Ordering::Relaxed);
    r
}

async fn echo(s: &mut ServerSession, id: u32, cookie_state: bool) -> Result<(), SessionError> {
    let peer = s.peer_addrs().to_vec();
    info!(?peer, "session opened");
    let mut count = 0u64;
    while let Some(ev) = s.recv().await? {
        match ev {
            ServerEvent::Data(d) => {
                count += 1;
                let reply = if cookie_state {
                    let mut r = format!("#{count} ").into_bytes();
                    r.extend_from_slice(&d);
                    r.into()
                } else {
                    d
                };
                s.send(reply).await?;
                s.send_cookie(format!("pe={id:08x};n={count}").into_bytes())
                    .await?;
            }
            ServerEvent::CookieEcho(c) => {
                info!(cookie = %String::from_utf8_lossy(&c), "session taken over (COOKIE_ECHO)");
                if cookie_state {
                    match cookie_count(&c) {
                        Some(n) => {
                            count = n;
                            info!(n, "state restored from cookie");
                        }
                        None => warn!("cookie without a count; state not restored"),
                    }
                }
            }
            ServerEvent::BusinessCard(b) => {
                info!(pes = b.pool_elements.len(), "business card received")
            }
            // `ServerEvent` is `#[non_exhaustive]`: events added later are ignored here.
            other => debug!(?other, "session event ignored"),
        }
    }
    info!(?peer, echoed = count, "session closed");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_tracing();
    let args = Args::parse();
    // A random non-zero identifier unless given (RFC 5351 §3.1); the cookies carry it.
    let id = args.id.unwrap_or_else(|| rand::random::<u32>().max(1));
    let mut pe = args
        .pe
        .builder()?
        .policy(policy(&args.policy, args.degradation)?)
        .load(Load::percent(args.load))
        .weight(Weight::new(args.weight))
        .priority(Priority::new(args.weight))
        .identifier(id)
        .data_ppid(args.data_ppid)
        .register_wait(Duration::from_secs(30))
        .on_event(|ev| info!(?ev, "PE event"));
    if args.announce {
        pe = pe.announces();
    }
    if let Some(ctx) = args.tls.context()? {
        pe = pe.registrar_tls(ctx);
    }
    let life = Duration::from_secs(args.life);
    let cookie_state = args.cookie_state;
    info!(pe = format_args!("{id:#010x}"), pool = %args.pe.pool.pool, "pool element starting");
    // Optional CSP reports: the number of open sessions, a final report on shutdown.
    let open = Arc::new(AtomicU64::new(0));
    let (csp_stop, csp_stopped) = tokio::sync::oneshot::channel::<()>();
    let csp = args.csp.map(|target| {
        let cfg = CspReporterConfig::new(
            ComponentId::new(ComponentGroup::PoolElement, id.into()),
            Duration::from_millis(args.csp_interval),
        );
        let open = open.clone();
        tokio::spawn(run_reporter(
            target,
            CspReporter::new(cfg),
            move || CspStatus::text(format!("{} sessions", open.load(Ordering::Relaxed))),
            async {
                let _ = csp_stopped.await;
            },
        ))
    });
    pe.configure(move |c| c.pe.registration_life = life)
        .serve(move |s| session(s, id, cookie_state, open.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            info!("deregistering");
        })
        .await?;
    let _ = csp_stop.send(());
    if let Some(t) = csp {
        let _ = t.await;
    }
    Ok(())
}
