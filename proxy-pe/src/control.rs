//! Local control port: `proxy-pe status` connects, sends one command line and reads the
//! answer until EOF.
//!
//! Commands: `status` (the [`Report`] as one JSON line) and `table` (the pooling table in
//! the shape of seed 003 [30]). Bind it to loopback: it is unauthenticated.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::core::Status;
use crate::registrar::RegistrarState;

/// Everything `status --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Pooling table, daemons, sessions, events.
    pub proxy: Status,
    /// Registrar association.
    pub registrar: RegistrarState,
    /// Configuration file in use.
    pub config_path: String,
    /// Successful configuration loads (1 = the initial one).
    pub config_loads: u64,
    /// Error of the latest rejected reload (the previous configuration stays in force).
    pub last_config_error: Option<String>,
}

/// Control-port errors.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Cannot reach the running proxy.
    #[error("cannot reach proxy-pe control port {addr}: {source}")]
    Connect {
        /// The control address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// I/O error during the exchange.
    #[error("control port I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not a report.
    #[error("bad answer from the control port: {0}")]
    Decode(#[from] serde_json::Error),
    /// No answer in time.
    #[error("control port did not answer within 5 s")]
    Timeout,
}

/// Serves the control port; `reports` asks the driver for a fresh report.
pub async fn serve(listener: TcpListener, reports: mpsc::UnboundedSender<oneshot::Sender<Report>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let reports = reports.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, reports)).await;
        });
    }
}

async fn answer(
    stream: TcpStream,
    reports: mpsc::UnboundedSender<oneshot::Sender<Report>>,
) -> Result<(), ControlError> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(256)).read_line(&mut line).await?;
    let (tx, rx) = oneshot::channel();
    if reports.send(tx).is_err() {
        return Ok(());
    }
    let Ok(report) = rx.await else {
        return Ok(());
    };
    let out = match line.trim() {
        "table" => report.proxy.render_table(),
        "status" | "" => serde_json::to_string(&report)? + "\n",
        other => format!("-ERR unknown command `{other}` (status, table)\n"),
    };
    w.write_all(out.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

/// Asks a running proxy for its report (`proxy-pe status`).
pub async fn query(addr: SocketAddr) -> Result<Report, ControlError> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|source| ControlError::Connect { addr, source })?;
        s.write_all(b"status\n").await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, ControlError>(serde_json::from_slice(&buf)?)
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| ControlError::Timeout)?
}
