//! `proxy-pe`: proxy pool element for legacy servers (seed 003).
//!
//! ```text
//! proxy-pe run --config /etc/proxy-pe.toml      # run the proxy
//! proxy-pe check --config /etc/proxy-pe.toml    # validate a configuration file
//! proxy-pe status [--control 127.0.0.1:7199 | --socket PATH] [--json]
//! proxy-pe push-config --daemon ID [--version N] [--socket /run/proxy-pe/control.sock] FILE
//! proxy-pe disable|enable SERVER [--socket /run/proxy-pe/control.sock]
//! proxy-pe drain SERVER [--timeout 30s] [--socket PATH]
//! proxy-pe maintenance on|off SERVER [--socket PATH]
//! proxy-pe reload|stop|restart [--socket PATH]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use proxy_pe::config::{Config, DEFAULT_CONTROL_SOCKET};
use proxy_pe::control::Endpoint;
use proxy_pe::core::AdminCommand;

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
    #[command(after_help = proxy_pe::config::timers_help())]
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/proxy-pe.toml")]
        config: PathBuf,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
        /// Serve Prometheus/OpenMetrics metrics over HTTP at ADDR:PORT (`GET /metrics`):
        /// sessions, selections and health per server, failovers, daemon links (README
        /// "Metrics"). [default: off]
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<SocketAddr>,
        /// Send Component Status Protocol reports (asap/wire/INTEROP.md §8) to this monitor
        /// (`rsp monitor`, rsplib `cspmonitor`); the port defaults to 2960. [default: off]
        #[arg(long, value_name = "ADDR[:PORT]")]
        csp: Option<String>,
        /// Milliseconds between CSP reports (at least 250).
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        csp_interval: u64,
        /// CSP component object ID (56 bits), decimal or 0x-hex. [default: from the
        /// process ID and start time]
        #[arg(long, value_name = "ID")]
        csp_id: Option<String>,
        /// What SIGTERM means. `stop`: deregister every PE, then exit (no stale PEs after
        /// a real shutdown). `restart`: as `proxy-pe restart` — with an `[ha]` peer, hand
        /// the PEs over to it first, then exit; without one, exit without deregistering
        /// (our registrar and rsplib's still drop the PEs with the association). SIGINT is
        /// always `stop`.
        #[arg(long, value_enum, default_value_t = SigtermMode::Stop)]
        on_sigterm: SigtermMode,
    },
    /// Re-read the configuration of a running proxy (as SIGHUP). Sessions, registrations
    /// and server states stay; an invalid file is rejected (status 1) and the old one
    /// stays in force.
    Reload {
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Stop a running proxy: deregister every PE at the registrar, then exit.
    Stop {
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Restart a running proxy: with an `[ha]` peer, the peer takes the PEs over (its PEs
    /// accepted before this proxy withdraws its own), then this proxy exits; without one,
    /// it exits without deregistering. The service manager starts it again.
    Restart {
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
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
        /// Ask over the proxy's control socket (`control_socket`) instead of the port.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
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
        /// The proxy's control socket (`control_socket` in its configuration); pushes are
        /// not accepted on the TCP control port.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        /// How long to wait for the proxy's answer, ms (the proxy itself answers within its
        /// `[daemon_link] push_ack_timeout_ms`, default 10000).
        #[arg(long, value_name = "MS", default_value_t = proxy_pe::control::DEFAULT_PUSH_WAIT_MS)]
        wait_ms: u64,
        /// The complete legacy-daemon configuration file (TOML) to push.
        file: PathBuf,
    },
    /// Operator: take SERVER out of selection. No new sessions; open ones keep running.
    /// Kept across proxy restarts (like haproxy's `disable server`).
    Disable {
        /// `SERVER` (that server in every application) or `APPLICATION/SERVER`.
        server: String,
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Operator: put SERVER back into service (from disabled, draining or maintenance).
    Enable {
        /// `SERVER` (that server in every application) or `APPLICATION/SERVER`.
        server: String,
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Operator: drain SERVER. No new sessions; open ones finish, then the server is
    /// disabled. With --timeout the sessions still open then are closed (like haproxy's
    /// `set server state drain`).
    Drain {
        /// `SERVER` (that server in every application) or `APPLICATION/SERVER`.
        server: String,
        /// Close the remaining sessions after this long: 500ms, 30s, 5m, 1h (a bare number
        /// is seconds). Default: wait for them however long they take.
        #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
        timeout: Option<u64>,
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Operator: maintenance on (no new sessions, open ones keep running, shown as
    /// maintenance, never as a failure) or off (back into service).
    Maintenance {
        /// `on` or `off`.
        switch: Switch,
        /// `SERVER` (that server in every application) or `APPLICATION/SERVER`.
        server: String,
        /// The proxy's control socket (`control_socket` in its configuration).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
}

/// `run --on-sigterm`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SigtermMode {
    /// Deregister every PE, then exit.
    Stop,
    /// Hand over to the `[ha]` peer (or keep the registrations), then exit.
    Restart,
}

/// Sends `reload`, `stop` or `restart` and prints the outcome.
fn run_lifecycle(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    cmd: proxy_pe::control::Lifecycle,
) -> ExitCode {
    print_outcome(
        match rt.block_on(proxy_pe::control::lifecycle(socket, cmd)) {
            Ok(a) if a.ok => Ok(a.message),
            Ok(a) => Err(refusal(a.error)),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// The outcome of a control-socket command: the line to print on success, or why it
/// failed (printed to stderr, exit status 1).
fn print_outcome(outcome: Result<String, String>) -> ExitCode {
    match outcome {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("proxy-pe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The reason the proxy gave for refusing a command.
fn refusal(error: Option<String>) -> String {
    error.unwrap_or_else(|| "refused, no reason given".into())
}

/// `maintenance on|off`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Switch {
    /// Enter maintenance.
    On,
    /// Leave maintenance.
    Off,
}

/// `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds, in milliseconds.
fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1_000)
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a duration (500ms, 30s, 5m, 1h)"))
}

/// `--csp ADDR[:PORT]`, `--csp-interval MS`, `--csp-id ID` as (target, interval, object).
fn csp_settings(
    csp: Option<&str>,
    interval_ms: u64,
    id: Option<&str>,
) -> Result<Option<(SocketAddr, std::time::Duration, u64)>, String> {
    let Some(s) = csp else {
        return Ok(None);
    };
    let target = rserpool_cli_assets::parse_endpoint(s, asap::wire::csp::CSP_PORT)
        .map_err(|e| format!("--csp: {e}"))?;
    let id = match id {
        // Unique enough to tell proxies apart in a monitor: process ID and start time.
        None => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            ((u64::from(std::process::id()) << 32) ^ u64::from(t.subsec_nanos()) ^ t.as_secs())
                & 0x00FF_FFFF_FFFF_FFFF
        }
        Some(t) => match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16),
            None => t.parse(),
        }
        .map_err(|e| format!("--csp-id {t}: {e}"))?,
    };
    Ok(Some((
        target,
        std::time::Duration::from_millis(interval_ms),
        id,
    )))
}

fn endpoint(control: SocketAddr, socket: Option<PathBuf>) -> Endpoint {
    socket.map_or(Endpoint::Tcp(control), Endpoint::Unix)
}

/// Sends an operator command and prints its outcome.
fn run_admin(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    cmd: AdminCommand,
    server: &str,
) -> ExitCode {
    print_outcome(
        match rt.block_on(proxy_pe::control::admin(socket, cmd, server)) {
            Ok(a) if a.ok => {
                let what = match cmd {
                    AdminCommand::Enable | AdminCommand::Maintenance(false) => "enabled",
                    AdminCommand::Disable => "disabled",
                    AdminCommand::Drain { .. } => "draining",
                    AdminCommand::Maintenance(true) => "in maintenance",
                };
                Ok(format!("{} {what} (by {})", a.servers.join(", "), a.by))
            }
            Ok(a) => Err(refusal(a.error)),
            Err(e) => Err(e.to_string()),
        },
    )
}

fn main() -> ExitCode {
    // Packaging: `proxy-pe --generate-assets DIR` writes man pages and completions.
    if let Some(code) = rserpool_cli_assets::handle(Args::command) {
        return code;
    }
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-pe: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.cmd {
        Cmd::Run {
            config,
            log_json,
            metrics,
            csp,
            csp_interval,
            csp_id,
            on_sigterm,
        } => {
            let on_sigterm = match on_sigterm {
                SigtermMode::Stop => proxy_pe::proxy::OnSigterm::Stop,
                SigtermMode::Restart => proxy_pe::proxy::OnSigterm::Restart,
            };
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
            let csp = match csp_settings(csp.as_deref(), csp_interval, csp_id.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("proxy-pe: {e}");
                    return ExitCode::from(2);
                }
            };
            let run = async {
                // CSP reports read the status snapshot over the control port.
                let (csp_stop, csp_stopped) = tokio::sync::oneshot::channel::<()>();
                let csp_task = match (csp, control) {
                    (Some((target, interval, id)), Some(mut ctl)) => {
                        if ctl.ip().is_unspecified() {
                            ctl.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                        }
                        Some(tokio::spawn(proxy_pe::csp::run(
                            target,
                            interval,
                            id,
                            Endpoint::Tcp(ctl),
                            async {
                                let _ = csp_stopped.await;
                            },
                        )))
                    }
                    _ => None,
                };
                // Biased: the proxy installs its signal handlers in the poll that binds the
                // control port, before READY=1 can invite a `systemctl reload`.
                let result = tokio::select! {
                    biased;
                    r = proxy_pe::proxy::run_opts(config, metrics, on_sigterm) => r,
                    never = systemd_notify(control) => match never {},
                };
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
                let _ = csp_stop.send(());
                if let Some(t) = csp_task {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
                }
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
        Cmd::Reload { socket } => run_lifecycle(&rt, &socket, proxy_pe::control::Lifecycle::Reload),
        Cmd::Stop { socket } => run_lifecycle(&rt, &socket, proxy_pe::control::Lifecycle::Stop),
        Cmd::Restart { socket } => {
            run_lifecycle(&rt, &socket, proxy_pe::control::Lifecycle::Restart)
        }
        Cmd::Disable { server, socket } => run_admin(&rt, &socket, AdminCommand::Disable, &server),
        Cmd::Enable { server, socket } => run_admin(&rt, &socket, AdminCommand::Enable, &server),
        Cmd::Drain {
            server,
            timeout,
            socket,
        } => run_admin(
            &rt,
            &socket,
            AdminCommand::Drain {
                timeout_ms: timeout,
            },
            &server,
        ),
        Cmd::Maintenance {
            switch,
            server,
            socket,
        } => run_admin(
            &rt,
            &socket,
            AdminCommand::Maintenance(matches!(switch, Switch::On)),
            &server,
        ),
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
        Cmd::Status {
            control,
            socket,
            json,
        } => match rt.block_on(proxy_pe::control::query_at(&endpoint(control, socket))) {
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
                    if let Some(h) = &r.ha {
                        println!(
                            "Pair: {:?} (priority {}, {} of {} PEs accepted), peer {}",
                            h.role,
                            h.priority,
                            h.accepted,
                            h.wanted,
                            if h.peer_alive { "answering" } else { "silent" }
                        );
                    }
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
            socket,
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
                &Endpoint::Unix(socket),
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
    rserpool_cli_assets::systemd::ready_then_watchdog().await
}
