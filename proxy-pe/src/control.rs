//! Local control port: `proxy-pe status` connects, sends one command line and reads the
//! answer until EOF.
//!
//! Commands: `status` (the [`Report`] as one JSON line), `table` (the pooling table in
//! the shape of seed 003 [30]) and `push-config DAEMON [VERSION]` followed by the
//! daemon's complete configuration file up to EOF of the client's sending side (answered
//! with one [`PushAnswer`] JSON line once the daemon acknowledged or rejected it). Bind it
//! to loopback: it is unauthenticated.

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

/// What the driver is asked for.
#[derive(Debug)]
pub enum ControlRequest {
    /// A fresh report.
    Report(oneshot::Sender<Report>),
    /// Push a configuration to a connected daemon and answer with its acknowledgement.
    PushConfig {
        /// Daemon identity.
        daemon: String,
        /// Version to push (default: one above the daemon's version in force).
        version: Option<u64>,
        /// The complete daemon configuration file.
        config_toml: String,
        /// The answer.
        reply: oneshot::Sender<PushAnswer>,
    },
}

/// Answer to `push-config` (`proxy-pe push-config`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushAnswer {
    /// The daemon.
    pub daemon: String,
    /// The version pushed (None: nothing was sent).
    pub version: Option<u64>,
    /// The daemon applied it (or already had it in force).
    pub accepted: bool,
    /// Version in force at the daemon after the push (from its `config_ack`).
    pub active_version: Option<u64>,
    /// Why it failed: unknown or unconnected daemon, the daemon's rejection, no answer.
    pub error: Option<String>,
}

impl PushAnswer {
    /// A push that could not be made or was not answered.
    pub fn failed(daemon: &str, version: Option<u64>, error: impl Into<String>) -> Self {
        Self {
            daemon: daemon.to_string(),
            version,
            accepted: false,
            active_version: None,
            error: Some(error.into()),
        }
    }
}

/// Largest configuration accepted for a push (the protocol's frame limit).
pub const MAX_PUSH_LEN: u64 = legacy_protocol::MAX_FRAME_LEN as u64 - 4096;

/// How long a control connection may stay open beyond the proxy's push-ack wait
/// (`[daemon_link] push_ack_timeout_ms`): the answer is written within it.
pub const CONTROL_GRACE: Duration = Duration::from_secs(5);

/// Default of `proxy-pe push-config --wait-ms`: how long the command waits for the proxy's
/// answer (the proxy answers within its `push_ack_timeout_ms`, default 10 s).
pub const DEFAULT_PUSH_WAIT_MS: u64 = 60_000;

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
    #[error("control port did not answer in time")]
    Timeout,
    /// The configuration file cannot be pushed.
    #[error("{0}")]
    Push(String),
}

/// Serves the control port; every command is a [`ControlRequest`] to the driver.
/// `push_ack_timeout` is the proxy's current push-ack wait (it changes on reload).
pub async fn serve(
    listener: TcpListener,
    requests: mpsc::UnboundedSender<ControlRequest>,
    push_ack_timeout: tokio::sync::watch::Receiver<Duration>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let requests = requests.clone();
        let push_ack_timeout = push_ack_timeout.clone();
        tokio::spawn(async move {
            // A push waits for the daemon's acknowledgement (at most push_ack_timeout).
            let limit = *push_ack_timeout.borrow() + CONTROL_GRACE;
            let _ = tokio::time::timeout(limit, answer(stream, requests)).await;
        });
    }
}

async fn answer(
    stream: TcpStream,
    requests: mpsc::UnboundedSender<ControlRequest>,
) -> Result<(), ControlError> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    (&mut r).take(256).read_line(&mut line).await?;
    let mut words = line.split_whitespace();
    let out = match words.next().unwrap_or("") {
        "push-config" => {
            let daemon = words.next().unwrap_or("").to_string();
            let version = match words.next().map(str::parse::<u64>) {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                Some(Err(e)) => Err(format!("bad version: {e}")),
            };
            let mut body = Vec::new();
            (&mut r)
                .take(MAX_PUSH_LEN + 1)
                .read_to_end(&mut body)
                .await?;
            let answer = match (daemon.is_empty(), version, String::from_utf8(body)) {
                (true, _, _) => PushAnswer::failed("", None, "usage: push-config DAEMON [VERSION]"),
                (_, Err(e), _) => PushAnswer::failed(&daemon, None, e),
                (_, _, Err(_)) => {
                    PushAnswer::failed(&daemon, None, "the configuration is not UTF-8 text")
                }
                (_, _, Ok(t)) if t.len() as u64 > MAX_PUSH_LEN => PushAnswer::failed(
                    &daemon,
                    None,
                    format!("the configuration exceeds {MAX_PUSH_LEN} bytes"),
                ),
                (_, Ok(version), Ok(config_toml)) => {
                    let (tx, rx) = oneshot::channel();
                    let req = ControlRequest::PushConfig {
                        daemon: daemon.clone(),
                        version,
                        config_toml,
                        reply: tx,
                    };
                    if requests.send(req).is_err() {
                        return Ok(());
                    }
                    match rx.await {
                        Ok(a) => a,
                        Err(_) => PushAnswer::failed(&daemon, None, "proxy shutting down"),
                    }
                }
            };
            serde_json::to_string(&answer)? + "\n"
        }
        cmd => {
            let (tx, rx) = oneshot::channel();
            if requests.send(ControlRequest::Report(tx)).is_err() {
                return Ok(());
            }
            let Ok(report) = rx.await else {
                return Ok(());
            };
            match cmd {
                "table" => report.proxy.render_table(),
                "status" | "" => serde_json::to_string(&report)? + "\n",
                other => format!("-ERR unknown command `{other}` (status, table, push-config)\n"),
            }
        }
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

/// Pushes `config_toml` to daemon `daemon` through a running proxy and waits for the
/// daemon's answer (`proxy-pe push-config`). A rejection is an `Ok` answer with
/// `accepted: false`.
pub async fn push_config(
    addr: SocketAddr,
    daemon: &str,
    version: Option<u64>,
    config_toml: &str,
    wait: Duration,
) -> Result<PushAnswer, ControlError> {
    if daemon.is_empty() || daemon.chars().any(char::is_whitespace) {
        return Err(ControlError::Push(format!(
            "bad daemon id `{daemon}` (empty or with white space)"
        )));
    }
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|source| ControlError::Connect { addr, source })?;
        let head = match version {
            Some(v) => format!("push-config {daemon} {v}\n"),
            None => format!("push-config {daemon}\n"),
        };
        s.write_all(head.as_bytes()).await?;
        s.write_all(config_toml.as_bytes()).await?;
        s.shutdown().await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, ControlError>(serde_json::from_slice(&buf)?)
    };
    tokio::time::timeout(wait, work)
        .await
        .map_err(|_| ControlError::Timeout)?
}
