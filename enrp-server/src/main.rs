//! `enrp-server`: the RSerPool registrar binary.
//!
//! 1. Parse the command line; read the `--config` TOML file; the command line wins.
//! 2. Build the async runtime: `--threads 1` a current-thread runtime (everything on one
//!    thread, no cross-thread wake-up per request), else a multi-threaded one with that many
//!    workers; the default is the available parallelism.
//! 3. Set up logging (`--log-format text|json`; filter with `RUST_LOG`, default `info`).
//! 4. Bind the ASAP and ENRP listeners and the announce socket ([`Server::bind`]).
//! 5. Under systemd (`NOTIFY_SOCKET` set; `enrp-server/deploy/enrp-server.service`): send
//!    `READY=1` once listening and, with peering on, once the start-up phase is over: the
//!    mentor chosen within `--mentor-discovery-timeout` (asap/wire/INTEROP.md §5.5) has sent
//!    its whole handle table, or no mentor download is running at the timeout; send
//!    `WATCHDOG=1` every `WATCHDOG_USEC`/2 from the driver's event loop (the future below is
//!    polled by the driver's `select!`, so a stalled loop stops the pings).
//! 6. Run until SIGINT or SIGTERM, then close every association gracefully. SIGHUP
//!    (`systemctl reload`) re-reads and validates the command line and `--config` file and
//!    logs the result; settings take effect on the next restart.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use enrp_server::driver::Server;
use enrp_server::metrics;
use enrp_server::options::{LogFormat, Options};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // Packaging: `enrp-server --generate-assets DIR` writes man pages and completions.
    if let Some(code) = rserpool_cli_assets::handle(<Options as clap::CommandFactory>::command) {
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    let options = Options::parse().with_config_file()?;
    // `--threads`: one thread runs sockets, core and timers with no cross-thread wake-up
    // per request (the choice on one CPU); more use a multi-threaded runtime.
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;
    runtime.block_on(run(options, threads))
}

async fn run(options: Options, threads: usize) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal, so that log files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match options.log_format.unwrap_or_default() {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }

    tracing::debug!(threads, "runtime");
    // Process-wide SCTP-over-UDP ports (like Linux's net.sctp.udp_port / encap_port).
    asap::transport::sctp_udp::set_process_defaults(
        options
            .sctp_udp_port
            .unwrap_or(asap::transport::defaults::SCTP_UDP_PORT),
        options.sctp_udp_remote_port,
    );
    let (core, driver) = options.resolve(rand::random::<u32>())?;
    let csp = options.csp_target()?;
    let server_id = core.server_id;
    // The start-up phase (a mentor is chosen among the peers heard) exists only with peering.
    let startup_phase = core
        .peering
        .enabled
        .then_some(core.peering.mentor_discovery_timeout);
    if core.security.enrp_security == enrp_server::core::EnrpSecurity::Open && core.peering.enabled
    {
        tracing::warn!(
            "--enrp-security open: any host that reaches the ENRP port is accepted as a peer \
             and can change the handlespace (SECURITY.md)"
        );
    }
    if core.security.enrp_security == enrp_server::core::EnrpSecurity::Tls {
        tracing::info!(
            server_id_binding = core.security.tls_server_id_binding,
            own_name = %enrp_server::core::server_id_name(core.server_id),
            "--enrp-security tls: ENRP peers must present a certificate of the cluster CA"
        );
    }
    if !core.security.pool_auth.is_empty() {
        tracing::info!(
            pools = core.security.pool_auth.len(),
            asap_tls = driver.asap_tls.is_some(),
            "registrations into [[pool_auth]] pools need a credential"
        );
    }
    let listen = format!("ASAP {:?}, ENRP {:?}", driver.asap, driver.enrp);
    let server = Server::bind(core, driver).await.with_context(|| {
        format!(
            "starting the registrar ({listen}): if an address is in use, stop the process \
             holding it (`ss -ltnp` / `ss -lnp --sctp`) or choose another --asap/--enrp address"
        )
    })?;
    if let Some(addr) = options.metrics {
        let stats = server.stats();
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} (metrics endpoint, --metrics): stop the process \
                     holding it (`ss -ltnp` shows it) or choose another address"
            )
        })?;
        tracing::info!(%addr, "metrics endpoint listening");
        tokio::spawn(metrics::serve(listener, stats));
    }
    // Component Status Protocol reports (--csp): a task reading the driver's stats; the
    // final report goes out when the registrar stops.
    let (csp_stop, csp_stopped) = tokio::sync::oneshot::channel::<()>();
    let csp_task = csp.map(|(target, interval)| {
        let reporter = enrp_server::csp::reporter(server_id, &server.asap_addrs(), interval);
        tokio::spawn(enrp_server::csp::run(
            target,
            reporter,
            server.stats(),
            async {
                let _ = csp_stopped.await;
            },
        ))
    });
    let stats_for_ready = server.stats();
    server
        .run(async {
            // Biased: the first poll of shutdown_signal installs the SIGHUP/SIGTERM handlers,
            // which must be in place before READY=1 invites a `systemctl reload`.
            tokio::select! {
                biased;
                _ = shutdown_signal() => {}
                _ = systemd_notify(startup_phase, stats_for_ready) => {}
            }
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        })
        .await;
    let _ = csp_stop.send(());
    if let Some(t) = csp_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
    }
    Ok(())
}

/// sd_notify(3) protocol with systemd (no-op without `NOTIFY_SOCKET`): `READY=1` once the
/// start-up phase is over (`None`: no peering, at once; else when the core reports
/// [`Stats::startup_complete`](enrp_server::driver::Stats::startup_complete): the mentor's
/// handle table is loaded, or the mentor-discovery timeout passed with no download
/// running), then `WATCHDOG=1` every half `WATCHDOG_USEC` if the service manager asked for
/// it. Never completes.
async fn systemd_notify(
    startup_phase: Option<std::time::Duration>,
    stats: std::sync::Arc<enrp_server::driver::Stats>,
) {
    if let Some(d) = startup_phase {
        tracing::info!(
            ?d,
            "start-up phase: waiting for a mentor and its handle table before reporting ready"
        );
        while !stats
            .startup_complete
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::info!("start-up phase over: handlespace loaded");
    }
    match rserpool_cli_assets::systemd::ready_then_watchdog().await {}
}

/// SIGHUP: re-reads the command line and the `--config` file and validates them; the
/// running registrar keeps its settings (they take effect on restart).
fn reload_check() {
    let checked = Options::try_parse()
        .map_err(anyhow::Error::from)
        .and_then(|o| Ok(o.with_config_file()?))
        .and_then(|o| Ok(o.resolve(0).map(|_| ())?));
    match checked {
        Ok(()) => tracing::info!(
            "SIGHUP: configuration re-read and valid; changed settings take effect on restart"
        ),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: configuration invalid; fix it before restarting")
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM; SIGHUP runs [`reload_check`].
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    #[cfg(unix)]
    let hup = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut s) => {
                while s.recv().await.is_some() {
                    reload_check();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
        }
        std::future::pending::<()>().await
    };
    #[cfg(not(unix))]
    let hup = std::future::pending::<()>();
    tokio::select! {
        _ = hup => {}
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
