//! `enrp-server`: the RSerPool registrar binary.
//!
//! 1. Parse the command line; read the `--config` TOML file; the command line wins.
//! 2. Set up logging (`--log-format text|json`; filter with `RUST_LOG`, default `info`).
//! 3. Bind the ASAP and ENRP listeners and the announce socket ([`Server::bind`]).
//! 4. Under systemd (`NOTIFY_SOCKET` set; `enrp-server/deploy/enrp-server.service`): send
//!    `READY=1` once listening and, with peering on, once the start-up phase in which a
//!    mentor is chosen (`--mentor-discovery-timeout`, RSERPOOL-SPEC §10.5) is over; send
//!    `WATCHDOG=1` every `WATCHDOG_USEC`/2 from the driver's event loop (the future below is
//!    polled by the driver's `select!`, so a stalled loop stops the pings).
//! 5. Run until SIGINT or SIGTERM, then close every association gracefully. SIGHUP
//!    (`systemctl reload`) re-reads and validates the command line and `--config` file and
//!    logs the result; settings take effect on the next restart.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use enrp_server::driver::Server;
use enrp_server::metrics;
use enrp_server::options::{LogFormat, Options};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse().with_config_file()?;

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

    // Process-wide SCTP-over-UDP ports (like Linux's net.sctp.udp_port / encap_port).
    asap::transport::sctp_udp::set_process_defaults(
        options
            .sctp_udp_port
            .unwrap_or(asap::transport::defaults::SCTP_UDP_PORT),
        options.sctp_udp_remote_port,
    );
    let (core, driver) = options.resolve(rand::random::<u32>())?;
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
    let server = Server::bind(core, driver)
        .await
        .context("starting the registrar")?;
    if let Some(addr) = options.metrics {
        let stats = server.stats();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics endpoint {addr}"))?;
        tracing::info!(%addr, "metrics endpoint listening");
        tokio::spawn(metrics::serve(listener, stats));
    }
    server
        .run(async {
            // Biased: the first poll of shutdown_signal installs the SIGHUP/SIGTERM handlers,
            // which must be in place before READY=1 invites a `systemctl reload`.
            tokio::select! {
                biased;
                _ = shutdown_signal() => {}
                _ = systemd_notify(startup_phase) => {}
            }
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        })
        .await;
    Ok(())
}

/// sd_notify(3) protocol with systemd (no-op without `NOTIFY_SOCKET`): `READY=1` after the
/// start-up phase (`None`: at once), then `WATCHDOG=1` every half `WATCHDOG_USEC` if the
/// service manager asked for it. Never completes.
async fn systemd_notify(startup_phase: Option<std::time::Duration>) {
    if let Some(d) = startup_phase {
        tracing::info!(
            ?d,
            "start-up phase: waiting for a mentor before reporting ready"
        );
        tokio::time::sleep(d).await;
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
    std::future::pending::<()>().await;
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
