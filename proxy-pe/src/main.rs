//! `proxy-pe`: proxy pool element for legacy servers (seed 003).
//!
//! ```text
//! proxy-pe run --config /etc/proxy-pe.toml      # run the proxy
//! proxy-pe check --config /etc/proxy-pe.toml    # validate a configuration file
//! proxy-pe status [--control 127.0.0.1:7199] [--json]
//! proxy-pe push-config --daemon ID [--version N] [--control 127.0.0.1:7199] FILE
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use proxy_pe::config::Config;

/// Proxy pool element: brings legacy servers into RSerPool pools using legacy-daemon
/// status reports (mode B: session broker/relay; mode A: registration proxy).
#[derive(Debug, Parser)]
#[command(name = "proxy-pe", version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the proxy (reloads the configuration on SIGHUP and on file change).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/proxy-pe.toml")]
        config: PathBuf,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
    },
    /// Validate a configuration file and exit (status 1 and the precise error if invalid).
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/proxy-pe.toml")]
        config: PathBuf,
    },
    /// Print the live pooling table of a running proxy (seed 003 [30] shape).
    Status {
        /// The proxy's control port.
        #[arg(long, default_value = "127.0.0.1:7199")]
        control: SocketAddr,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Push a configuration file to a connected legacy-daemon through a running proxy
    /// (seed 003 [32]) and wait for its acknowledgement (status 1 if it is rejected).
    PushConfig {
        /// The daemon's id (`[daemon] id` in its configuration).
        #[arg(long)]
        daemon: String,
        /// Configuration version (default: one above the version in force at the daemon).
        #[arg(long)]
        version: Option<u64>,
        /// The proxy's control port.
        #[arg(long, default_value = "127.0.0.1:7199")]
        control: SocketAddr,
        /// How long to wait for the proxy's answer, ms (the proxy itself answers within its
        /// `[daemon_link] push_ack_timeout_ms`, default 10000).
        #[arg(long, value_name = "MS", default_value_t = proxy_pe::control::DEFAULT_PUSH_WAIT_MS)]
        wait_ms: u64,
        /// The complete legacy-daemon configuration file (TOML) to push.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-pe: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.cmd {
        Cmd::Run { config, log_json } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let b = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            if log_json {
                b.json().init();
            } else {
                b.init();
            }
            // The control port, probed to learn when the proxy listens (READY=1).
            let control = Config::load(&config).ok().map(|c| c.control_listen);
            let run = async {
                // Biased: the proxy installs its signal handlers in the poll that binds the
                // control port, before READY=1 can invite a `systemctl reload`.
                let result = tokio::select! {
                    biased;
                    r = proxy_pe::proxy::run(config) => r,
                    never = systemd_notify(control) => match never {},
                };
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
                result
            };
            match rt.block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("proxy-pe: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} applications, mode {:?})",
                    config.display(),
                    c.applications.len(),
                    c.mode
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Status { control, json } => match rt.block_on(proxy_pe::control::query(control)) {
            Ok(r) => {
                if json {
                    match serde_json::to_string_pretty(&r) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("proxy-pe: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    print!("{}", r.proxy.render_table());
                    print!("{}", r.proxy.render_pushes());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("proxy-pe: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::PushConfig {
            daemon,
            version,
            control,
            wait_ms,
            file,
        } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("proxy-pe: cannot read {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(proxy_pe::control::push_config(
                control,
                &daemon,
                version,
                &text,
                std::time::Duration::from_millis(wait_ms),
            )) {
                Ok(a) if a.accepted => {
                    println!(
                        "daemon {} acknowledged configuration version {} (version {} in force)",
                        a.daemon,
                        a.version.unwrap_or(0),
                        a.active_version.unwrap_or(0)
                    );
                    ExitCode::SUCCESS
                }
                Ok(a) => {
                    let why = a.error.as_deref().unwrap_or("no reason given");
                    match (a.version, a.active_version) {
                        (Some(v), Some(active)) => eprintln!(
                            "proxy-pe: daemon {} rejected configuration version {v} (version {active} stays in force): {why}",
                            a.daemon
                        ),
                        _ => eprintln!("proxy-pe: push to daemon {daemon} failed: {why}"),
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("proxy-pe: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// sd_notify(3) with systemd (nothing at all without `NOTIFY_SOCKET`): `READY=1` once the control
/// port accepts connections (the proxy binds it right after the daemon listener; `None`:
/// at once), then `WATCHDOG=1` every half `WATCHDOG_USEC` if the service manager asked for
/// it. Polled in the same task as the proxy's main loop, so a stalled loop stops the pings.
/// Never completes.
async fn systemd_notify(control: Option<SocketAddr>) -> std::convert::Infallible {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        // Not under a service manager: no probe of the control port, nothing to send.
        return std::future::pending().await;
    }
    if let Some(mut addr) = control {
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let mut tick = tokio::time::interval(std::time::Duration::from_micros(usec / 2));
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
    std::future::pending().await
}
