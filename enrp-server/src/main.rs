//! `enrp-server`: the RSerPool registrar binary.
//!
//! 1. Parse the command line; read the `--config` TOML file; the command line wins.
//! 2. Set up logging (`--log-format text|json`; filter with `RUST_LOG`, default `info`).
//! 3. Bind the ASAP and ENRP listeners and the announce socket ([`Server::bind`]).
//! 4. Run until SIGINT or SIGTERM, then close every association gracefully.

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

    let (core, driver) = options.resolve(rand::random::<u32>())?;
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
    server.run(shutdown_signal()).await;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
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
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
