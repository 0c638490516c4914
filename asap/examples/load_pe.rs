//! A pool element whose load changes over time (RFC 5356 §5 adaptive policies).
//!
//! It registers with a Least-Used-family policy, echoes like `echo_pe`, and every
//! `--interval-ms` updates its load: `base + per-session × open sessions`, plus a slow
//! triangle wave of `--swing` percent so the change is visible without clients. Each update
//! is an immediate re-registration; the registrar (and PUs after their cache expires) then
//! prefer the least-loaded PE.
//!
//! Self-contained: copy it out and add `asap`, `tokio`, `clap` (derive), `tracing` and
//! `tracing-subscriber` (env-filter) to your dependencies.
//!
//! ```text
//! cargo run -p asap --example load_pe -- --registrar 127.0.0.1:3863 --transport tcp --policy lu
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asap::load::Load;
use asap::session::ServerEvent;
use asap::wire::Policy;
use clap::Parser;

mod common;
use common::PeArgs;
use tracing::info;

/// Pool element with a time-varying load.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pe: PeArgs,
    /// Adaptive policy: lu, lud, plu, rlu.
    #[arg(long, default_value = "lu")]
    policy: String,
    /// Base load in percent.
    #[arg(long, default_value_t = 10.0)]
    base: f64,
    /// Load added per open session, in percent.
    #[arg(long, default_value_t = 10.0)]
    per_session: f64,
    /// Amplitude of the triangle wave, in percent.
    #[arg(long, default_value_t = 30.0)]
    swing: f64,
    /// Period of the triangle wave in seconds.
    #[arg(long, default_value_t = 60)]
    period: u64,
    /// Load update interval in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    interval_ms: u64,
}

/// Triangle wave in [0, 1] with the given period.
fn triangle(t: Duration, period: Duration) -> f64 {
    let p = period.as_secs_f64().max(0.001);
    let x = (t.as_secs_f64() % p) / p;
    if x < 0.5 {
        2.0 * x
    } else {
        2.0 - 2.0 * x
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_tracing();
    let args = Args::parse();
    let policy = match args.policy.as_str() {
        "lu" => Policy::LeastUsed { load: 0 },
        "lud" => Policy::LeastUsedDegradation {
            load: 0,
            degradation: 0,
        },
        "plu" => Policy::PriorityLeastUsed {
            load: 0,
            degradation: 0,
        },
        "rlu" => Policy::RandomizedLeastUsed { load: 0 },
        other => {
            return Err(format!("policy {other} is not adaptive (use lu, lud, plu, rlu)").into())
        }
    };
    let (mut pe, listener) = args
        .pe
        .builder()?
        .policy(policy)
        .load(Load::percent(args.base))
        .start()
        .await?;
    info!(
        pe = format_args!("{:#010x}", pe.identifier()),
        "load PE started"
    );

    let sessions = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(10)));
    loop {
        tokio::select! {
            s = listener.accept() => {
                let Ok(mut s) = s else { continue };
                let open = sessions.clone();
                open.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    while let Ok(Some(ev)) = s.recv().await {
                        if let ServerEvent::Data(d) = ev {
                            if s.send(d).await.is_err() {
                                break;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = tick.tick() => {
                let open = sessions.load(Ordering::Relaxed) as f64;
                let wave = triangle(started.elapsed(), Duration::from_secs(args.period));
                let pct = (args.base + args.per_session * open + args.swing * wave).min(100.0);
                pe.set_load(Load::percent(pct)).await?;
                info!(load_percent = format_args!("{pct:.1}"), sessions = open, "load updated");
            }
            ev = pe.next_event() => match ev {
                Some(ev) => tracing::debug!(?ev, "PE event"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                pe.deregister().await?;
                return Ok(());
            }
        }
    }
    Ok(())
}
