//! `legacy-daemon`: reports the status of legacy applications to RSerPool proxy pool
//! elements (seed 003 FIG. 3: boot 171 → read config 173 → poll 181 → report 183 → re-poll
//! 185).
//!
//! The binary is thin: parse the command line, set up logging, then either validate the
//! configuration (`--check-config`), poll once (`--once`), or run the daemon core on a
//! single-threaded tokio runtime (one thread keeps the resident size small; the work is
//! a few file reads per second).
//!
//! Under systemd (`NOTIFY_SOCKET` set; `deploy/legacy-daemon.service`, `Type=notify`):
//! `READY=1` once the configuration is loaded and the daemon runs (it listens on nothing:
//! it connects out to its proxies), `WATCHDOG=1` every half `WATCHDOG_USEC` from the
//! daemon's single-threaded event loop (the ping timer is polled in the same task as the
//! daemon core, so a stalled loop stops the pings), `STOPPING=1` when it ends.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, Parser, ValueEnum};
use legacy_daemon::config::{self, DEFAULT_CONFIG_PATH};
use legacy_daemon::daemon::{poll_once, Daemon};

/// `println!` that ignores a closed stdout (e.g. `| head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// Status daemon for legacy servers in reliable server pools.
///
/// Polls the process table for the applications listed in the configuration file and
/// reports their status (running, pids, CPU, RSS, port state) to every configured proxy
/// pool element over TCP. Reloads the configuration on SIGHUP and when the file changes;
/// stops on SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about,
    after_long_help = "Environment:\n  LEGACY_DAEMON_LOG  log filter in tracing EnvFilter syntax (default: info)\n\n\
                       Signals:\n  SIGHUP             reload the configuration file\n  \
                       SIGTERM, SIGINT    stop"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,

    /// Poll the process table once, print the status of every application as JSON on
    /// stdout and exit (CPU use is measured over 100 ms).
    #[arg(long, conflicts_with = "check_config")]
    once: bool,

    /// Validate the configuration file, print "OK" or the error (file:line:column: key)
    /// and exit: status 0 if valid, 1 if invalid or unreadable.
    #[arg(long)]
    check_config: bool,

    /// Log format on stderr: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Print a new random 32-byte pre-shared key (hex) for `daemon.key_file` here and the
    /// daemon's `key_file` in the proxy's `[[daemon]]` table, then exit (PROTOCOL.md §1.1).
    #[arg(long)]
    gen_key: bool,

    /// Serve Prometheus/OpenMetrics metrics over HTTP at ADDR:PORT (`GET /metrics`): poll
    /// duration, reports per proxy, link state (README "Metrics"). [default: off]
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,

    /// Benchmark: time N polls of the process table, print the mean per poll, exit.
    #[arg(long, value_name = "N", hide = true)]
    bench_poll: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEGACY_DAEMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// User + system CPU time of this process, microseconds.
fn cpu_time_us() -> (u64, u64) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0, 0);
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

fn main() -> ExitCode {
    // Packaging: `legacy-daemon --generate-assets DIR` writes man pages and completions.
    if let Some(code) = rserpool_cli_assets::handle(Cli::command) {
        return code;
    }
    let cli = Cli::parse();
    init_logging(cli.log_format);

    let loaded = config::load_file(&cli.config);
    if cli.gen_key {
        outln!("{}", legacy_protocol::auth::Key::generate().to_hex());
        return ExitCode::SUCCESS;
    }
    if cli.check_config {
        return match loaded {
            Ok((cfg, _)) => {
                outln!(
                    "OK: {}: {} application(s), {} proxy(ies), poll interval {} ms",
                    cli.config.display(),
                    cfg.apps.len(),
                    cfg.proxies.len(),
                    cfg.daemon.poll_interval.as_millis()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                outln!("ERROR: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (cfg, text) = match loaded {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            errln!("legacy-daemon: {e}");
            return ExitCode::FAILURE;
        }
    };

    if let Some(n) = cli.bench_poll {
        let mut p = legacy_daemon::poll::Poller::new();
        p.poll(&cfg);
        let n = n.max(1);
        let t = Instant::now();
        let cpu0 = cpu_time_us();
        let mut procs = 0;
        for _ in 0..n {
            procs = p.poll(&cfg).iter().map(|a| a.instances).sum::<u32>();
        }
        let per = t.elapsed() / n;
        let cpu1 = cpu_time_us();
        let user_per = (cpu1.0 - cpu0.0) / u64::from(n);
        let sys_per = (cpu1.1 - cpu0.1) / u64::from(n);
        let cpu_per = user_per + sys_per;
        let host = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|s| s.parse::<u32>().is_ok())
                    })
                    .count()
            })
            .unwrap_or(0);
        outln!(
            "{{\"polls\":{n},\"host_processes\":{host},\"wall_per_poll_us\":{},\"cpu_per_poll_us\":{cpu_per},\"user_us\":{user_per},\"sys_us\":{sys_per},\"matched_instances\":{procs}}}",
            per.as_micros()
        );
        return ExitCode::SUCCESS;
    }

    if cli.once {
        let v = poll_once(&cfg);
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("legacy-daemon: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let daemon = Daemon::new(cli.config, cfg, text);
        if let Some(addr) = cli.metrics {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "metrics endpoint listening");
                    tokio::spawn(legacy_daemon::metrics::serve(l, daemon.metrics()));
                }
                Err(e) => {
                    errln!(
                        "legacy-daemon: cannot listen on {addr} (--metrics): {e}; \
                         pick a free port or another address (`ss -ltnp 'sport = :{}'` shows the holder)",
                        addr.port()
                    );
                    return Err(None);
                }
            }
        }
        // Biased: the daemon's first poll installs its signal handlers, which must be in
        // place before READY=1 invites a `systemctl reload`.
        let result = tokio::select! {
            biased;
            r = daemon.run() => r.map_err(Some),
            never = systemd_notify() => match never {},
        };
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Some(e)) => {
            errln!("legacy-daemon: {e}");
            ExitCode::FAILURE
        }
        Err(None) => ExitCode::FAILURE,
    }
}

/// sd_notify(3) with systemd (no-op without `NOTIFY_SOCKET`): `READY=1`, then `WATCHDOG=1`
/// every half `WATCHDOG_USEC` if the service manager asked for it. Never completes.
async fn systemd_notify() -> std::convert::Infallible {
    rserpool_cli_assets::systemd::ready_then_watchdog().await
}
