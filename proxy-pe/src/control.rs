//! Local control channels: a client connects, sends one command line and reads the
//! answer until EOF.
//!
//! Two listeners serve the same protocol:
//! - the **control socket** (`control_socket`, a Unix domain socket, mode 0600 in a
//!   directory owned by the proxy's user and writable by nobody else; every peer's
//!   credentials are checked too: only root and the proxy's own user). The peer's uid is
//!   the authenticated "who" of an operator command. Commands that change state
//!   (operator commands, `push-config`) are accepted **only** here (issue 19 item 1).
//! - the **control port** (`control_listen`, TCP, unauthenticated: bind it to loopback):
//!   read-only `status` and `table`, kept for monitoring scripts.
//!
//! Commands: `status` (the [`Report`] as one JSON line), `table` (the pooling table in
//! the shape of seed 003 [30]), `push-config DAEMON [VERSION]` followed by the
//! daemon's complete configuration file up to EOF of the client's sending side (answered
//! with one [`PushAnswer`] JSON line once the daemon acknowledged or rejected it), and
//! `admin enable|disable|drain|maintenance-on|maintenance-off TARGET [TIMEOUT_MS]`
//! (answered with one [`AdminAnswer`] JSON line), and `reload`, `stop`, `restart`
//! (answered with one [`LifecycleAnswer`] JSON line; issue 19 item 7).

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::core::{AdminCommand, Status};
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
    /// Role in an active/standby pair (`[ha]`; absent for a single proxy). The peer reads
    /// it from here ([`crate::ha`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<crate::ha::HaView>,
}

/// `proxy-pe reload|stop|restart` (issue 19 item 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Re-read the configuration (as SIGHUP); sessions and registrations stay.
    Reload,
    /// Deregister every PE, then exit.
    Stop,
    /// Exit for a restart: with an `[ha]` peer, hand the PEs over to it first; without
    /// one, exit without deregistering.
    Restart,
}

impl Lifecycle {
    fn word(self) -> &'static str {
        match self {
            Lifecycle::Reload => "reload",
            Lifecycle::Stop => "stop",
            Lifecycle::Restart => "restart",
        }
    }
}

/// Answer to `proxy-pe reload|stop|restart`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LifecycleAnswer {
    /// Done (reload) or started (stop, restart).
    pub ok: bool,
    /// What the proxy did or is doing.
    pub message: String,
    /// Why it failed (e.g. the configuration file is invalid; the old one stays).
    pub error: Option<String>,
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
    /// `reload`, `stop` or `restart` from the control socket.
    Lifecycle {
        /// The command.
        cmd: Lifecycle,
        /// The authenticated peer.
        by: String,
        /// The answer.
        reply: oneshot::Sender<LifecycleAnswer>,
    },
    /// An operator command from the control socket.
    Admin {
        /// `SERVER` or `APPLICATION/SERVER`.
        target: String,
        /// The command.
        cmd: AdminCommand,
        /// The authenticated peer (`uid N (name)`).
        by: String,
        /// The answer.
        reply: oneshot::Sender<AdminAnswer>,
    },
}

/// Answer to an operator command (`proxy-pe disable|enable|drain|maintenance`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdminAnswer {
    /// Applied (and saved to the state file).
    pub ok: bool,
    /// The servers it applied to, as `APPLICATION/SERVER`.
    pub servers: Vec<String>,
    /// Who the proxy recorded as the author.
    pub by: String,
    /// Why it failed (unknown server, not in maintenance, state file not written, not on
    /// the control socket).
    pub error: Option<String>,
}

impl AdminAnswer {
    /// A refused command.
    pub fn failed(by: &str, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            servers: Vec::new(),
            by: by.to_string(),
            error: Some(error.into()),
        }
    }
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
    #[error("cannot reach proxy-pe control {addr}: {source}")]
    Connect {
        /// The control port or socket.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The control socket cannot be created safely.
    #[error("control socket {path}: {why}")]
    Socket {
        /// The socket path.
        path: String,
        /// Why.
        why: String,
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
            let (r, w) = stream.into_split();
            let _ = tokio::time::timeout(limit, answer(r, w, requests, None)).await;
        });
    }
}

/// Creates the control socket at `path`: its directory is created (mode 0700) when
/// missing, and must otherwise be owned by the proxy's user (or root) and not writable by
/// group or others; a stale socket is replaced (anything else at `path` is refused); the
/// socket gets mode 0600.
pub fn bind_socket(path: &Path) -> Result<UnixListener, ControlError> {
    let bad = |why: String| ControlError::Socket {
        path: path.display().to_string(),
        why,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| bad(format!("cannot set mode 0700 on {}: {e}", dir.display())))?;
    }
    let meta = std::fs::metadata(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err(bad(format!("{} is not a directory", dir.display())));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(bad(format!(
            "directory {} is owned by uid {}, not by this user (uid {euid}) or root",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "directory {} is writable by group or others (mode {:o}): anyone could replace the socket",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(bad(
                    "in use: another proxy-pe answers on it (give each proxy its own control_socket)".into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| bad(format!("cannot remove stale socket: {e}")))?;
        }
        Ok(_) => return Err(bad("exists and is not a socket".into())),
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(|e| bad(format!("cannot bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| bad(format!("cannot set mode 0600: {e}")))?;
    Ok(l)
}

/// Serves the control socket: like [`serve`], plus operator commands, from peers whose
/// uid is root or the proxy's own (checked with `SO_PEERCRED` on every connection).
pub async fn serve_socket(
    listener: UnixListener,
    requests: mpsc::UnboundedSender<ControlRequest>,
    push_ack_timeout: tokio::sync::watch::Receiver<Duration>,
) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let uid = match stream.peer_cred() {
            Ok(c) => c.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "control socket: no peer credentials; closed");
                continue;
            }
        };
        if uid != 0 && uid != euid {
            tracing::warn!(
                uid,
                "control socket: peer is neither root nor the proxy's user; refused"
            );
            continue;
        }
        let who = peer_name(uid);
        let requests = requests.clone();
        let push_ack_timeout = push_ack_timeout.clone();
        tokio::spawn(async move {
            let limit = *push_ack_timeout.borrow() + CONTROL_GRACE;
            let (r, w) = stream.into_split();
            let _ = tokio::time::timeout(limit, answer(r, w, requests, Some(who))).await;
        });
    }
}

/// `uid N (name)` with the name from `/etc/passwd` when there is one.
fn peer_name(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse::<u32>().ok()?;
            (id == uid).then(|| name.to_string())
        })
    });
    match name {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// Parses `admin CMD TARGET [TIMEOUT_MS]` after the word `admin`.
fn parse_admin<'a>(
    mut words: impl Iterator<Item = &'a str>,
) -> Result<(AdminCommand, String), String> {
    const USAGE: &str =
        "usage: admin enable|disable|drain|maintenance-on|maintenance-off TARGET [TIMEOUT_MS]";
    let cmd = words.next().ok_or(USAGE)?;
    let target = words.next().ok_or(USAGE)?.to_string();
    let timeout = words.next();
    let cmd = match (cmd, timeout) {
        ("enable", None) => AdminCommand::Enable,
        ("disable", None) => AdminCommand::Disable,
        ("drain", t) => AdminCommand::Drain {
            timeout_ms: t
                .map(|t| {
                    t.parse::<u64>()
                        .map_err(|e| format!("bad timeout `{t}`: {e}"))
                })
                .transpose()?,
        },
        ("maintenance-on", None) => AdminCommand::Maintenance(true),
        ("maintenance-off", None) => AdminCommand::Maintenance(false),
        _ => return Err(USAGE.into()),
    };
    Ok((cmd, target))
}

async fn answer<R, W>(
    r: R,
    mut w: W,
    requests: mpsc::UnboundedSender<ControlRequest>,
    who: Option<String>,
) -> Result<(), ControlError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
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
                // A push changes a daemon's configuration: only from an authenticated peer.
                _ if who.is_none() => PushAnswer::failed(
                    &daemon,
                    None,
                    "push-config is accepted only on the control socket (control_socket)",
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
        word @ ("reload" | "stop" | "restart") => {
            let cmd = match word {
                "reload" => Lifecycle::Reload,
                "stop" => Lifecycle::Stop,
                _ => Lifecycle::Restart,
            };
            let answer = match &who {
                None => LifecycleAnswer {
                    ok: false,
                    message: String::new(),
                    error: Some(format!(
                        "`{word}` is accepted only on the control socket (control_socket)"
                    )),
                },
                Some(by) => {
                    let (tx, rx) = oneshot::channel();
                    let req = ControlRequest::Lifecycle {
                        cmd,
                        by: by.clone(),
                        reply: tx,
                    };
                    if requests.send(req).is_err() {
                        return Ok(());
                    }
                    match rx.await {
                        Ok(a) => a,
                        Err(_) => LifecycleAnswer {
                            ok: false,
                            message: String::new(),
                            error: Some("proxy shutting down".into()),
                        },
                    }
                }
            };
            serde_json::to_string(&answer)? + "\n"
        }
        "admin" => {
            let answer = match (&who, parse_admin(words)) {
                (None, _) => AdminAnswer::failed(
                    "",
                    "operator commands are accepted only on the control socket (control_socket)",
                ),
                (Some(by), Err(e)) => AdminAnswer::failed(by, e),
                (Some(by), Ok((cmd, target))) => {
                    let (tx, rx) = oneshot::channel();
                    let req = ControlRequest::Admin {
                        target,
                        cmd,
                        by: by.clone(),
                        reply: tx,
                    };
                    if requests.send(req).is_err() {
                        return Ok(());
                    }
                    match rx.await {
                        Ok(a) => a,
                        Err(_) => AdminAnswer::failed(by, "proxy shutting down"),
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
                other => {
                    format!("-ERR unknown command `{other}` (status, table, push-config, admin, reload, stop, restart)\n")
                }
            }
        }
    };
    w.write_all(out.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

/// Where a command-line client reaches the running proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The TCP control port (`control_listen`).
    Tcp(SocketAddr),
    /// The control socket (`control_socket`).
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "port {a}"),
            Endpoint::Unix(p) => write!(f, "socket {}", p.display()),
        }
    }
}

/// Sends `head` and `body`, closes the sending side and reads the answer to EOF.
async fn exchange(to: &Endpoint, head: &[u8], body: &[u8]) -> Result<Vec<u8>, ControlError> {
    let connect_err = |source| ControlError::Connect {
        addr: to.to_string(),
        source,
    };
    /// The exchange on a connected stream.
    async fn on<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        head: &[u8],
        body: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        s.write_all(head).await?;
        s.write_all(body).await?;
        s.shutdown().await?;
        s.read_to_end(&mut buf).await?;
        Ok(buf)
    }
    Ok(match to {
        Endpoint::Tcp(a) => {
            let s = TcpStream::connect(a).await.map_err(connect_err)?;
            on(s, head, body).await?
        }
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p).await.map_err(connect_err)?;
            on(s, head, body).await?
        }
    })
}

/// [`exchange`] with a JSON answer, bounded by `wait`.
async fn request<T: serde::de::DeserializeOwned>(
    to: &Endpoint,
    head: &[u8],
    body: &[u8],
    wait: Duration,
) -> Result<T, ControlError> {
    let work = async {
        let buf = exchange(to, head, body).await?;
        Ok::<_, ControlError>(serde_json::from_slice(&buf)?)
    };
    tokio::time::timeout(wait, work)
        .await
        .map_err(|_| ControlError::Timeout)?
}

/// Asks a running proxy for its report over the TCP control port (`proxy-pe status`).
pub async fn query(addr: SocketAddr) -> Result<Report, ControlError> {
    query_at(&Endpoint::Tcp(addr)).await
}

/// Asks a running proxy for its report (`proxy-pe status`).
pub async fn query_at(to: &Endpoint) -> Result<Report, ControlError> {
    request(to, b"status\n", b"", Duration::from_secs(5)).await
}

/// Sends an operator command over the control socket (`proxy-pe disable|enable|drain|
/// maintenance`). A refused command is an `Ok` answer with `ok: false`.
pub async fn admin(
    socket: &Path,
    cmd: AdminCommand,
    target: &str,
) -> Result<AdminAnswer, ControlError> {
    if target.is_empty() || target.chars().any(char::is_whitespace) {
        return Err(ControlError::Push(format!(
            "bad server `{target}` (empty or with white space)"
        )));
    }
    let line = match cmd {
        AdminCommand::Enable => format!("admin enable {target}\n"),
        AdminCommand::Disable => format!("admin disable {target}\n"),
        AdminCommand::Drain { timeout_ms: None } => format!("admin drain {target}\n"),
        AdminCommand::Drain {
            timeout_ms: Some(t),
        } => format!("admin drain {target} {t}\n"),
        AdminCommand::Maintenance(true) => format!("admin maintenance-on {target}\n"),
        AdminCommand::Maintenance(false) => format!("admin maintenance-off {target}\n"),
    };
    let to = Endpoint::Unix(socket.to_path_buf());
    request(&to, line.as_bytes(), b"", Duration::from_secs(10)).await
}

/// Sends `reload`, `stop` or `restart` over the control socket (`proxy-pe reload|stop|
/// restart`).
pub async fn lifecycle(socket: &Path, cmd: Lifecycle) -> Result<LifecycleAnswer, ControlError> {
    let to = Endpoint::Unix(socket.to_path_buf());
    let line = format!("{}\n", cmd.word());
    request(&to, line.as_bytes(), b"", Duration::from_secs(10)).await
}

/// Pushes `config_toml` to daemon `daemon` through a running proxy and waits for the
/// daemon's answer (`proxy-pe push-config`). A rejection is an `Ok` answer with
/// `accepted: false`.
pub async fn push_config(
    to: &Endpoint,
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
    let head = match version {
        Some(v) => format!("push-config {daemon} {v}\n"),
        None => format!("push-config {daemon}\n"),
    };
    request(to, head.as_bytes(), config_toml.as_bytes(), wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_lines_parse_and_bad_ones_are_refused() {
        let p = |l: &str| parse_admin(l.split_whitespace());
        assert_eq!(p("disable IP1"), Ok((AdminCommand::Disable, "IP1".into())));
        assert_eq!(
            p("enable A/IP1"),
            Ok((AdminCommand::Enable, "A/IP1".into()))
        );
        assert_eq!(
            p("drain IP1 2500"),
            Ok((
                AdminCommand::Drain {
                    timeout_ms: Some(2500)
                },
                "IP1".into()
            ))
        );
        assert_eq!(
            p("maintenance-off IP2"),
            Ok((AdminCommand::Maintenance(false), "IP2".into()))
        );
        assert!(p("drain IP1 soon").is_err());
        assert!(p("disable IP1 5").is_err());
        assert!(p("reboot IP1").is_err());
        assert!(p("disable").is_err());
    }

    #[tokio::test]
    async fn socket_is_owner_only_and_unsafe_directories_are_refused() {
        let base = std::env::temp_dir().join(format!("proxy-pe-ctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // A missing directory is created owner-only.
        let sock = base.join("run/control.sock");
        let l = bind_socket(&sock).expect("bind");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").mode() & 0o777;
        assert_eq!(mode(&sock), 0o600);
        assert_eq!(mode(&base.join("run")), 0o700);
        // A live socket (another proxy) is not taken over.
        let e = bind_socket(&sock).expect_err("in use");
        assert!(e.to_string().contains("in use"), "{e}");
        drop(l);
        // A stale socket is replaced.
        bind_socket(&sock).expect("rebind over a stale socket");
        // A world-writable directory is refused.
        let open = base.join("open");
        std::fs::create_dir_all(&open).expect("dir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = bind_socket(&open.join("c.sock")).expect_err("must refuse");
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        // A regular file at the path is not removed.
        let file = base.join("run/file");
        std::fs::write(&file, "keep").expect("write");
        let e = bind_socket(&file).expect_err("must refuse");
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep");
        let _ = std::fs::remove_dir_all(&base);
    }
}
