//! The driver: owns the [`Core`] and connects it to sockets, timers and signals.
//!
//! One task owns the core; everything else talks to it over channels:
//! - daemon connections (legacy-daemon PROTOCOL.md, via `legacy_protocol::receiver`);
//! - mode B relay sessions ([`crate::relay`]);
//! - the registrar client ([`crate::registrar`]);
//! - the control port ([`crate::control`]), including configuration pushes to daemons
//!   (seed 003 [32]): the push is written on the daemon's connection by its task, and the
//!   `config_ack` arriving on that connection answers the waiting `push-config` request;
//! - a tick (`[detection] tick_ms`, default 100 ms), SIGHUP and a configuration-file watch
//!   (`config_watch_ms`, default 1 s) for reloads, the health checks ([`crate::check`]),
//!   SIGTERM/SIGINT
//!   (deregister everything, then exit).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use asap::session::SessionListener;
use asap::transport::TransportKind;
use legacy_protocol::auth::AuthMode;
use legacy_protocol::link::DaemonKeys;
use legacy_protocol::receiver::{DaemonConnection, DaemonListener};
use legacy_protocol::{ConfigPush, DaemonMessage, Hello};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, Mode};
use crate::control::{self, AdminAnswer, ControlRequest, PushAnswer, Report};
use crate::core::{Action, Core, SessionId};
use crate::now_ms;
use crate::registrar::{self, RegistrarCmd, RegistrarQuery, RegistrarState};
use crate::relay::{self, SessionCmd, SessionOrder};

/// Errors that stop the proxy at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}; {}", bind_hint(.source))]
    Bind {
        /// What the listener is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handler installation failed.
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    /// The control socket cannot be created safely.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The operator-state file cannot be read.
    #[error(transparent)]
    AdminState(#[from] crate::admin_state::StateFileError),
}

/// The fix for a failed bind, named in [`ProxyError::Bind`] (issue 16 item 6).
pub fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the address is in use: stop the process holding it (`ss -ltnp` shows it) or choose another address"
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: ports below 1024 need CAP_NET_BIND_SERVICE; choose a port >= 1024"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is not on this host: use one of its addresses, or 0.0.0.0 / [::]"
        }
        _ => "check the address in the configuration file or on the command line",
    }
}

enum DaemonEvent {
    Hello(
        u64,
        Hello,
        std::net::IpAddr,
        mpsc::UnboundedSender<ConfigPush>,
    ),
    Msg(u64, String, DaemonMessage, oneshot::Sender<bool>),
    Gone(u64, String),
}

struct Driver {
    core: Core,
    path: PathBuf,
    mtime: Option<SystemTime>,
    config_loads: u64,
    last_config_error: Option<String>,
    reg_tx: mpsc::UnboundedSender<RegistrarCmd>,
    reg_state: Arc<Mutex<RegistrarState>>,
    probe_tx: mpsc::UnboundedSender<(String, String, u64, bool)>,
    session_tx: mpsc::UnboundedSender<SessionCmd>,
    moves: BTreeMap<SessionId, mpsc::UnboundedSender<SessionOrder>>,
    /// Current connection of each daemon and the channel to push configurations on it.
    daemon_conn: BTreeMap<String, (u64, mpsc::UnboundedSender<ConfigPush>)>,
    /// Keys and timers of the daemon accept loop, replaced on reload.
    link_tx: watch::Sender<Arc<LinkSettings>>,
    /// The push-ack wait for the control port, replaced on reload.
    ack_tx: watch::Sender<Duration>,
    /// `push-config` requests waiting for the daemon's `config_ack`, by daemon.
    push_waiters: BTreeMap<String, Vec<(u64, oneshot::Sender<PushAnswer>)>>,
    /// Deadline of each waiting push (answered as unanswered when it passes).
    push_deadlines: Vec<(tokio::time::Instant, String, u64)>,
    listeners: BTreeMap<String, ((SocketAddr, TransportKind), JoinHandle<()>)>,
    /// The operator-state file and the core's admin sequence last written to it.
    admin_file: PathBuf,
    admin_saved: u64,
    /// Event counters of the `--metrics` endpoint.
    metrics: Arc<crate::metrics::Metrics>,
    /// The active/standby pair state (`[ha]`), and its settings for the peer poller.
    ha: Option<crate::ha::Ha>,
    ha_tx: watch::Sender<Option<crate::config::HaConfig>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Runs the proxy with the configuration file at `path` until SIGTERM/SIGINT.
pub async fn run(path: PathBuf) -> Result<(), ProxyError> {
    run_with(path, None).await
}

/// [`run`], serving OpenMetrics at `metrics` (`proxy-pe run --metrics ADDR`) if given.
pub async fn run_with(path: PathBuf, metrics: Option<SocketAddr>) -> Result<(), ProxyError> {
    run_opts(path, metrics, OnSigterm::Stop).await
}

/// What SIGTERM means (`proxy-pe run --on-sigterm`, issue 19 item 7). SIGINT is always a
/// stop; the control socket's `stop` and `restart` choose explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnSigterm {
    /// Deregister every PE, then exit (the default: no stale PEs after a real shutdown).
    #[default]
    Stop,
    /// Exit for a restart: hand the PEs over to the `[ha]` peer first; without one, exit
    /// without deregistering.
    Restart,
}

/// How the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Deregister everything, then exit.
    Stop,
    /// Exit without deregistering (no `[ha]` peer).
    Keep,
    /// The `[ha]` peer has the PEs: withdraw ours, then exit.
    HandedOver,
}

/// [`run_with`] with the meaning of SIGTERM.
pub async fn run_opts(
    path: PathBuf,
    metrics: Option<SocketAddr>,
    on_sigterm: OnSigterm,
) -> Result<(), ProxyError> {
    let cfg = Config::load(&path)?;
    let daemons = DaemonListener::bind(cfg.daemon_listen)
        .await
        .map_err(|e| ProxyError::Bind {
            what: "daemon listener, `daemon_listen` in the configuration",
            addr: cfg.daemon_listen,
            source: std::io::Error::other(e.to_string()),
        })?;
    let control_l = TcpListener::bind(cfg.control_listen)
        .await
        .map_err(|source| ProxyError::Bind {
            what: "control port, `control_listen` in the configuration",
            addr: cfg.control_listen,
            source,
        })?;
    // Relative paths are relative to the configuration file's directory.
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let control_sock = base.join(&cfg.control_socket);
    let admin_file = base.join(&cfg.admin_state_file);
    let admin_records = crate::admin_state::load(&admin_file)?;
    let control_u = control::bind_socket(&control_sock)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ProxyError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;

    let (reg_tx, reg_rx) = mpsc::unbounded_channel();
    let (query_tx, mut query_rx) = mpsc::unbounded_channel();
    let reg_state = Arc::new(Mutex::new(RegistrarState::default()));
    let reg_task = tokio::spawn(registrar::run(
        cfg.registrars.clone(),
        cfg.registrar_transport,
        reg_rx,
        query_tx,
        reg_state.clone(),
    ));
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let (session_tx, mut session_rx) = mpsc::unbounded_channel();
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let (daemon_tx, mut daemon_rx) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) =
        watch::channel(Duration::from_millis(cfg.daemon_link.push_ack_timeout_ms));
    tokio::spawn(control::serve_socket(
        control_u,
        report_tx.clone(),
        ack_rx.clone(),
    ));
    let counters = Arc::new(crate::metrics::Metrics::default());
    if let Some(addr) = metrics {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind {
                what: "metrics endpoint, --metrics",
                addr,
                source,
            })?;
        tracing::info!(%addr, "metrics endpoint listening");
        tokio::spawn(crate::metrics::serve(
            l,
            counters.clone(),
            report_tx.clone(),
        ));
    }
    tokio::spawn(control::serve(control_l, report_tx, ack_rx));
    let (link_tx, link_rx) = watch::channel(Arc::new(LinkSettings::of(&cfg, &path)?));
    if cfg.daemon_link.auth == AuthMode::None {
        tracing::warn!("daemon_link.auth = \"none\": daemons are not authenticated; any peer that reaches daemon_listen may speak for any daemon (legacy-daemon PROTOCOL.md §1.1)");
    }
    tokio::spawn(accept_daemons(daemons, link_rx, daemon_tx));
    let (ha_tx, ha_rx) = watch::channel(cfg.ha.clone());
    let (peer_tx, mut peer_rx) = mpsc::unbounded_channel();
    tokio::spawn(poll_peer(ha_rx, peer_tx));

    let mut d = Driver {
        core: Core::new(cfg.clone()),
        mtime: mtime(&path),
        path,
        config_loads: 1,
        last_config_error: None,
        reg_tx,
        reg_state,
        probe_tx,
        session_tx,
        moves: BTreeMap::new(),
        daemon_conn: BTreeMap::new(),
        link_tx,
        ack_tx,
        push_waiters: BTreeMap::new(),
        push_deadlines: Vec::new(),
        listeners: BTreeMap::new(),
        admin_file,
        admin_saved: 0,
        metrics: counters,
        ha: cfg
            .ha
            .clone()
            .map(|h| crate::ha::Ha::new(h, cfg.proxy_id.as_deref().unwrap_or_default(), now_ms())),
        ha_tx,
    };
    let acts = d.core.apply_config(now_ms(), cfg);
    d.dispatch(acts);
    if !admin_records.is_empty() {
        tracing::info!(file = %d.admin_file.display(), servers = admin_records.len(), "operator states restored");
        let acts = d.core.restore_admin(now_ms(), admin_records);
        d.dispatch(acts);
    }
    d.admin_saved = d.core.admin_seq();
    d.sync_listeners().await;
    tracing::info!(config = %d.path.display(), "proxy-pe running");

    let mut tick_ms = d.core.config().detection.tick_ms;
    let mut watch_ms = d.core.config().detection.config_watch_ms;
    let mut tick = tokio::time::interval(Duration::from_millis(tick_ms));
    let mut watch = tokio::time::interval(Duration::from_millis(watch_ms));
    let mut last_tick = now_ms();
    let exit = loop {
        tokio::select! {
            // The tick first: after a stall (SIGSTOP) it notices the gap before any daemon
            // frame is judged against clocks that ran while the proxy did not.
            biased;
            _ = tick.tick() => {
                // `[detection] tick_ms` / `config_watch_ms` changed by a reload.
                let det = &d.core.config().detection;
                if det.tick_ms != tick_ms {
                    tick_ms = det.tick_ms;
                    tick = tokio::time::interval(Duration::from_millis(tick_ms));
                }
                if det.config_watch_ms != watch_ms {
                    watch_ms = det.config_watch_ms;
                    watch = tokio::time::interval(Duration::from_millis(watch_ms));
                }
                let now = now_ms();
                if let Some(gap) = resync_after_stall(&d.reg_tx, last_tick, now, tick_ms) {
                    // Silence while the proxy itself was stopped is not the daemons'.
                    d.core.resume_after_stall(now, gap);
                }
                last_tick = now;
                let acts = d.core.tick(now_ms());
                d.dispatch(acts);
                if d.ha_decide() {
                    break Exit::HandedOver;
                }
                d.expire_pushes();
                // A drain that completed changes the operator state.
                if let Err(e) = d.save_admin() {
                    tracing::error!(error = %e, "operator state not saved");
                }
            }
            _ = watch.tick() => {
                let m = mtime(&d.path);
                if m != d.mtime {
                    d.mtime = m;
                    let _ = d.reload("file change").await;
                }
            }
            _ = hup.recv() => { let _ = d.reload("SIGHUP").await; }
            _ = term.recv() => match on_sigterm {
                OnSigterm::Stop => break Exit::Stop,
                OnSigterm::Restart => {
                    tracing::info!("SIGTERM: restart (--on-sigterm restart)");
                    if let Some(e) = d.restart() {
                        break e;
                    }
                }
            },
            _ = int.recv() => break Exit::Stop,
            Some(view) = peer_rx.recv() => {
                if let Some(ha) = d.ha.as_mut() {
                    ha.peer_answer(now_ms(), view);
                }
                if d.ha_decide() {
                    break Exit::HandedOver;
                }
            }
            Some(ev) = daemon_rx.recv() => d.daemon_event(ev),
            Some((app, server, epoch, ok)) = probe_rx.recv() => {
                let acts = d.core.check_result(now_ms(), &app, &server, epoch, ok);
                d.dispatch(acts);
            }
            Some(cmd) = session_rx.recv() => d.session_cmd(cmd),
            Some(q) = query_rx.recv() => match q {
                RegistrarQuery::Snapshot(tx) => { let _ = tx.send(d.core.registrations()); }
                RegistrarQuery::KeepAlive(id, tx) => { let _ = tx.send(d.core.keep_alive_ok(id)); }
                RegistrarQuery::KeepAlivePool(h, tx) => { let _ = tx.send(d.core.keep_alive_pool(&h)); }
            },
            Some(req) = report_rx.recv() => match req {
                ControlRequest::Report(tx) => { let _ = tx.send(d.report()); }
                ControlRequest::PushConfig { daemon, version, config_toml, reply } => {
                    d.push_config(daemon, version, config_toml, reply);
                }
                ControlRequest::Admin { target, cmd, by, reply } => {
                    let _ = reply.send(d.admin(&target, cmd, &by));
                }
                ControlRequest::Lifecycle { cmd, by, reply } => {
                    let (answer, exit) = d.lifecycle(cmd, &by).await;
                    let _ = reply.send(answer);
                    if let Some(e) = exit {
                        break e;
                    }
                }
            },
        }
    };
    match exit {
        Exit::Stop | Exit::HandedOver => {
            tracing::info!(?exit, "shutting down: deregistering");
            for (h, pe) in d.core.registrations() {
                let _ = d.reg_tx.send(RegistrarCmd::Deregister(h, pe.id));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Exit::Keep => tracing::info!(
            "shutting down for a restart: PEs not deregistered (a registrar that ends them with the association, as ours and rsplib's do, removes them now; run an [ha] pair for restarts without a gap)"
        ),
    }
    reg_task.abort();
    Ok(())
}

/// Polls the `[ha]` peer's control port every `poll_ms` and forwards its pair view (no
/// answer within `poll_ms`, or no `ha` in it: nothing is forwarded, and the peer's
/// silence is judged by [`crate::ha::Ha`]). Idles while no `[ha]` is configured.
async fn poll_peer(
    mut cfg: watch::Receiver<Option<crate::config::HaConfig>>,
    tx: mpsc::UnboundedSender<crate::ha::HaView>,
) {
    loop {
        let Some(ha) = cfg.borrow_and_update().clone() else {
            if cfg.changed().await.is_err() {
                return;
            }
            continue;
        };
        let poll = Duration::from_millis(ha.poll_ms);
        let started = tokio::time::Instant::now();
        // A hung peer completes the connect through its backlog and never answers.
        if let Ok(Ok(r)) = tokio::time::timeout(poll, control::query(ha.peer)).await {
            if let Some(view) = r.ha {
                if tx.send(view).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep_until(started + poll).await;
    }
}

/// What the daemon accept loop needs from the configuration (replaced on reload).
#[derive(Debug, Clone)]
struct LinkSettings {
    keys: DaemonKeys,
    handshake_timeout: Duration,
    max_pending: usize,
    push_write_timeout: Duration,
}

impl LinkSettings {
    fn of(cfg: &Config, path: &Path) -> Result<LinkSettings, ConfigError> {
        Ok(LinkSettings {
            keys: cfg.daemon_keys(path)?,
            handshake_timeout: Duration::from_millis(cfg.daemon_link.handshake_timeout_ms),
            max_pending: cfg.daemon_link.max_pending_handshakes,
            push_write_timeout: Duration::from_millis(cfg.daemon_link.push_write_timeout_ms),
        })
    }
}

/// One handshake in progress; frees its place when dropped (also if the task ends early).
struct PendingSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Accepts daemon connections. The loop only accepts: each connection's handshake runs in a
/// task of its own under `handshake_timeout`, so a silent or slow peer delays nobody
/// (issue 13 item 5: five silent connections used to delay a daemon by 45 s).
async fn accept_daemons(
    listener: DaemonListener,
    settings: watch::Receiver<Arc<LinkSettings>>,
    tx: mpsc::UnboundedSender<DaemonEvent>,
) {
    let mut next_conn = 0u64;
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept_tcp().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "daemon listener: accept failed");
                // E.g. out of descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let link = settings.borrow().clone();
        use std::sync::atomic::Ordering;
        if pending.fetch_add(1, Ordering::AcqRel) >= link.max_pending {
            pending.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, max_pending_handshakes = link.max_pending, "daemon connection refused: too many handshakes in progress");
            drop(stream);
            continue;
        }
        next_conn += 1;
        let id = next_conn;
        let tx = tx.clone();
        let slot = PendingSlot(pending.clone());
        tokio::spawn(async move {
            let hs = tokio::time::timeout(
                link.handshake_timeout,
                DaemonConnection::handshake(stream, peer, &link.keys),
            )
            .await;
            drop(slot);
            let conn = match hs {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "daemon connection refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, timeout_ms = link.handshake_timeout.as_millis() as u64, "daemon connection refused: no handshake within the timeout");
                    return;
                }
            };
            serve_daemon(id, conn, link.push_write_timeout, tx).await;
        });
    }
}

/// One authenticated daemon connection: its messages go to the driver, pushes go out.
async fn serve_daemon(
    id: u64,
    mut conn: DaemonConnection,
    push_write_timeout: Duration,
    tx: mpsc::UnboundedSender<DaemonEvent>,
) {
    let daemon = conn.hello().daemon_id.clone();
    tracing::info!(daemon, peer = %conn.peer(), "daemon connected");
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<ConfigPush>();
    if tx
        .send(DaemonEvent::Hello(
            id,
            conn.hello().clone(),
            conn.peer().ip(),
            push_tx,
        ))
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            // `next_message` is cancel-safe: a push may interrupt it.
            m = conn.next_message() => match m {
                Ok(Some(m)) => {
                    let (rtx, rrx) = oneshot::channel();
                    if tx
                        .send(DaemonEvent::Msg(id, daemon.clone(), m, rtx))
                        .is_err()
                    {
                        return;
                    }
                    if !rrx.await.unwrap_or(false) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(daemon, peer = %conn.peer(), error = %e, "daemon connection error");
                    break;
                }
            },
            Some(p) = push_rx.recv() => {
                let sent = tokio::time::timeout(
                    push_write_timeout,
                    conn.push_config(p.version, &p.config_toml),
                )
                .await;
                match sent {
                    Ok(Ok(())) => {
                        tracing::info!(daemon, version = p.version, "configuration pushed")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(daemon, error = %e, "configuration push failed");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(daemon, "configuration push: write timed out");
                        break;
                    }
                }
            }
        }
    }
    let _ = tx.send(DaemonEvent::Gone(id, daemon));
}

impl Driver {
    fn dispatch(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Register { pool_handle, pe } => {
                    let _ = self.reg_tx.send(RegistrarCmd::Register(pool_handle, pe));
                }
                Action::Deregister { pool_handle, pe_id } => {
                    let _ = self
                        .reg_tx
                        .send(RegistrarCmd::Deregister(pool_handle, pe_id));
                }
                Action::Probe {
                    app,
                    server,
                    addr,
                    epoch,
                    check,
                } => {
                    let tx = self.probe_tx.clone();
                    tokio::spawn(async move {
                        let ok = crate::check::run(&check, addr, &app, &server).await;
                        tracing::debug!(app, server, %addr, epoch, kind = ?check.kind, ok, "service check");
                        let _ = tx.send((app, server, epoch, ok));
                    });
                }
                Action::MoveSession {
                    session,
                    server,
                    reason,
                } => {
                    if let Some(tx) = self.moves.get(&session) {
                        let _ = tx.send(SessionOrder::Move {
                            from: server,
                            reason,
                        });
                    }
                }
                Action::CloseSession { session, reason } => {
                    if let Some(tx) = self.moves.get(&session) {
                        let _ = tx.send(SessionOrder::Close { reason });
                    }
                }
            }
        }
    }

    fn daemon_event(&mut self, ev: DaemonEvent) {
        let now = now_ms();
        match ev {
            DaemonEvent::Hello(conn, hello, peer, push_tx) => {
                self.daemon_conn
                    .insert(hello.daemon_id.clone(), (conn, push_tx));
                let acts = self.core.daemon_connected_from(now, &hello, peer);
                self.dispatch(acts);
            }
            DaemonEvent::Msg(conn, daemon, msg, reply) => {
                if self.daemon_conn.get(&daemon).map(|c| c.0) != Some(conn) {
                    // An older connection of a daemon that has reconnected meanwhile.
                    let _ = reply.send(false);
                    return;
                }
                match self.core.daemon_message(now, &daemon, &msg) {
                    Ok(acts) => {
                        let _ = reply.send(true);
                        self.dispatch(acts);
                        if let DaemonMessage::ConfigAck(ack) = &msg {
                            self.answer_pushes(&daemon, ack.version, |d, v| PushAnswer {
                                daemon: d.to_string(),
                                version: Some(v),
                                accepted: ack.accepted,
                                active_version: Some(ack.active_version),
                                error: ack.error.clone(),
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping daemon connection");
                        let _ = reply.send(false);
                    }
                }
            }
            DaemonEvent::Gone(conn, daemon) => {
                if self.daemon_conn.get(&daemon).map(|c| c.0) == Some(conn) {
                    self.daemon_conn.remove(&daemon);
                    let acts = self.core.daemon_disconnected(now, &daemon);
                    self.dispatch(acts);
                    let waiting: Vec<u64> = self
                        .push_waiters
                        .get(&daemon)
                        .map(|w| w.iter().map(|(v, _)| *v).collect())
                        .unwrap_or_default();
                    for v in waiting {
                        self.answer_pushes(&daemon, v, |d, v| {
                            PushAnswer::failed(
                                d,
                                Some(v),
                                format!("daemon `{d}` disconnected before answering the push of version {v}"),
                            )
                        });
                    }
                }
            }
        }
    }

    /// `proxy-pe push-config`: checks the daemon, picks the version, hands the push to the
    /// daemon's connection task and keeps `reply` until the `config_ack` arrives.
    fn push_config(
        &mut self,
        daemon: String,
        version: Option<u64>,
        config_toml: String,
        reply: oneshot::Sender<PushAnswer>,
    ) {
        let next = match self.core.push_version(&daemon) {
            Ok(v) => v,
            Err(e) => {
                let _ = reply.send(PushAnswer::failed(&daemon, None, e.to_string()));
                return;
            }
        };
        let version = version.unwrap_or(next);
        let Some((_, tx)) = self.daemon_conn.get(&daemon) else {
            let _ = reply.send(PushAnswer::failed(
                &daemon,
                None,
                format!("daemon `{daemon}` is not connected"),
            ));
            return;
        };
        if tx
            .send(ConfigPush {
                version,
                config_toml,
            })
            .is_err()
        {
            let _ = reply.send(PushAnswer::failed(
                &daemon,
                None,
                format!("daemon `{daemon}` is not connected"),
            ));
            return;
        }
        self.core.config_push_sent(now_ms(), &daemon, version);
        self.push_deadlines.push((
            tokio::time::Instant::now() + self.push_ack_timeout(),
            daemon.clone(),
            version,
        ));
        self.push_waiters
            .entry(daemon)
            .or_default()
            .push((version, reply));
    }

    /// Answers every waiting push of `version` to `daemon`.
    fn answer_pushes(
        &mut self,
        daemon: &str,
        version: u64,
        answer: impl Fn(&str, u64) -> PushAnswer,
    ) {
        if let Some(w) = self.push_waiters.get_mut(daemon) {
            let (done, rest): (Vec<_>, Vec<_>) = w.drain(..).partition(|(v, _)| *v == version);
            *w = rest;
            for (v, tx) in done {
                let _ = tx.send(answer(daemon, v));
            }
            if w.is_empty() {
                self.push_waiters.remove(daemon);
            }
        }
        self.push_deadlines
            .retain(|(_, d, v)| !(d == daemon && *v == version));
    }

    fn push_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.core.config().daemon_link.push_ack_timeout_ms)
    }

    /// Pushes without an answer within `[daemon_link] push_ack_timeout_ms` are answered as such
    /// (the daemon's late answer still shows in `status`).
    fn expire_pushes(&mut self) {
        let now = tokio::time::Instant::now();
        let wait_ms = self.push_ack_timeout().as_millis();
        let due: Vec<(String, u64)> = self
            .push_deadlines
            .iter()
            .filter(|(t, _, _)| *t <= now)
            .map(|(_, d, v)| (d.clone(), *v))
            .collect();
        for (d, v) in due {
            self.answer_pushes(&d, v, |d, v| {
                PushAnswer::failed(
                    d,
                    Some(v),
                    format!(
                        "no answer from daemon `{d}` to the push of version {v} within {wait_ms} ms; see `proxy-pe status`"

                    ),
                )
            });
        }
    }

    fn session_cmd(&mut self, cmd: SessionCmd) {
        let now = now_ms();
        match cmd {
            SessionCmd::Open { app, moves, reply } => {
                let r = self.core.open_session(now, &app);
                self.metrics.session_opened(r.is_ok());
                match &r {
                    Ok(a) => {
                        tracing::info!(session = a.session, app, server = %a.server, "session assigned");
                        self.moves.insert(a.session, moves);
                    }
                    Err(e) => tracing::warn!(app, error = %e, "session refused (step 197)"),
                }
                let _ = reply.send(r);
            }
            SessionCmd::Reselect {
                session,
                unreachable,
                reply,
            } => {
                if unreachable {
                    let acts = self.core.session_server_unreachable(now, session);
                    self.dispatch(acts);
                }
                let r = self.core.reselect(now, session);
                let why = if unreachable {
                    crate::metrics::FailoverReason::ServerFailed
                } else {
                    crate::metrics::FailoverReason::Moved
                };
                self.metrics.failover(why, r.is_ok());
                match &r {
                    Ok(a) => tracing::info!(session, server = %a.server, "session reselected"),
                    Err(e) => {
                        tracing::warn!(session, error = %e, "reselection failed");
                        self.moves.remove(&session);
                    }
                }
                let _ = reply.send(r);
            }
            SessionCmd::Failed(session) => {
                let acts = self.core.session_server_unreachable(now, session);
                self.dispatch(acts);
            }
            SessionCmd::Close(session) => {
                self.core.close_session(now, session);
                self.moves.remove(&session);
            }
        }
    }

    /// Re-reads the configuration file. `Ok(true)`: a changed configuration is in force;
    /// `Ok(false)`: unchanged; `Err`: rejected, the previous one stays.
    async fn reload(&mut self, why: &str) -> Result<bool, String> {
        let loaded = Config::load(&self.path)
            .and_then(|cfg| LinkSettings::of(&cfg, &self.path).map(|l| (cfg, l)));
        match loaded {
            Ok((cfg, link)) => {
                // Key files may change without the configuration text changing.
                self.link_tx.send_replace(Arc::new(link));
                if &cfg == self.core.config() {
                    return Ok(false);
                }
                if cfg.ha.is_some() != self.core.config().ha.is_some()
                    || cfg.proxy_id != self.core.config().proxy_id
                {
                    let e = "`[ha]` and `proxy_id` change only on restart (they decide which PEs this proxy owns)".to_string();
                    tracing::error!(why, error = %e, "configuration rejected; the previous one stays in force");
                    self.last_config_error = Some(e.clone());
                    return Err(e);
                }
                let old = self.core.config().clone();
                if cfg.daemon_listen != old.daemon_listen
                    || cfg.control_listen != old.control_listen
                    || cfg.control_socket != old.control_socket
                    || cfg.admin_state_file != old.admin_state_file
                    || cfg.registrar_transport != old.registrar_transport
                {
                    tracing::warn!(
                        "daemon_listen, control_listen, control_socket, admin_state_file and registrar_transport change only on restart"
                    );
                }
                if cfg.registrars != old.registrars {
                    let _ = self
                        .reg_tx
                        .send(RegistrarCmd::SetRegistrars(cfg.registrars.clone()));
                }
                tracing::info!(why, "configuration reloaded");
                self.config_loads += 1;
                self.last_config_error = None;
                self.ack_tx
                    .send_replace(Duration::from_millis(cfg.daemon_link.push_ack_timeout_ms));
                if let (Some(ha), Some(h)) = (self.ha.as_mut(), cfg.ha.clone()) {
                    ha.set_config(h);
                }
                self.ha_tx.send_replace(cfg.ha.clone());
                let acts = self.core.apply_config(now_ms(), cfg);
                self.dispatch(acts);
                self.sync_listeners().await;
                Ok(true)
            }
            Err(e) => {
                tracing::error!(why, error = %e, "configuration rejected; the previous one stays in force");
                self.last_config_error = Some(e.to_string());
                Err(e.to_string())
            }
        }
    }

    /// Applies the pair's decision at this moment; `true`: the planned restart's hand-over
    /// is done, exit.
    fn ha_decide(&mut self) -> bool {
        let now = now_ms();
        let wanted = self.core.registrations().len();
        let Some(ha) = self.ha.as_mut() else {
            return false;
        };
        match ha.decide(now, wanted) {
            None => false,
            Some(crate::ha::Decision::Exit) => true,
            Some(dec) => {
                let standby = dec == crate::ha::Decision::BecomeStandby;
                tracing::warn!(
                    role = if standby { "standby" } else { "active" },
                    "active/standby pair: role changed"
                );
                let acts = self.core.set_standby(now, standby);
                self.dispatch(acts);
                false
            }
        }
    }

    /// `restart` (control socket, or SIGTERM with `--on-sigterm restart`): with an `[ha]`
    /// peer, start the hand-over (the loop exits when the peer has the PEs); a standby or a
    /// single proxy exits at once (`None`: keep running until the hand-over is done).
    fn restart(&mut self) -> Option<Exit> {
        match self.ha.as_mut() {
            Some(ha) if ha.registers() => {
                ha.leave(now_ms());
                tracing::info!("restart: handing the PEs over to the [ha] peer");
                None
            }
            Some(_) => Some(Exit::Stop),
            None => Some(Exit::Keep),
        }
    }

    /// `proxy-pe reload|stop|restart` from the control socket.
    async fn lifecycle(
        &mut self,
        cmd: control::Lifecycle,
        by: &str,
    ) -> (control::LifecycleAnswer, Option<Exit>) {
        tracing::info!(?cmd, by, "lifecycle command");
        let ok = |message: String| control::LifecycleAnswer {
            ok: true,
            message,
            error: None,
        };
        match cmd {
            control::Lifecycle::Reload => match self.reload("control command").await {
                Ok(true) => (
                    ok(format!("configuration reloaded ({})", self.path.display())),
                    None,
                ),
                Ok(false) => (ok("configuration unchanged".into()), None),
                Err(e) => (
                    control::LifecycleAnswer {
                        ok: false,
                        message: String::new(),
                        error: Some(format!(
                            "configuration rejected, the previous one stays in force: {e}"
                        )),
                    },
                    None,
                ),
            },
            control::Lifecycle::Stop => {
                let n = self.core.registrations().len();
                (
                    ok(format!("stopping: deregistering {n} PEs")),
                    Some(Exit::Stop),
                )
            }
            control::Lifecycle::Restart => match self.restart() {
                None => (
                    ok("restarting: handing the PEs over to the [ha] peer, then exiting".into()),
                    None,
                ),
                Some(Exit::Keep) => (
                    ok("restarting: exiting without deregistering (no [ha] peer)".into()),
                    Some(Exit::Keep),
                ),
                Some(e) => (
                    ok("restarting: standby, nothing registered".into()),
                    Some(e),
                ),
            },
        }
    }

    /// Binds relay listeners (plain TCP and ASAP sessions) of new applications (mode B) and
    /// stops removed ones.
    async fn sync_listeners(&mut self) {
        let cfg = self.core.config().clone();
        // Keyed by name ("asap:" prefix for ASAP session endpoints); the transport kind is
        // part of the value so that a changed `asap_transport` rebinds the listener.
        let wanted: BTreeMap<String, (SocketAddr, TransportKind)> = if cfg.mode == Mode::Broker {
            let plain = cfg
                .applications
                .iter()
                .filter_map(|a| a.listen.map(|l| (a.name.clone(), (l, TransportKind::Tcp))));
            let asap = cfg.applications.iter().filter_map(|a| {
                a.asap_listen
                    .map(|l| (format!("asap:{}", a.name), (l, a.asap_transport)))
            });
            plain.chain(asap).collect()
        } else {
            BTreeMap::new()
        };
        let stale: Vec<String> = self
            .listeners
            .iter()
            .filter(|(n, (at, _))| wanted.get(*n) != Some(at))
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            if let Some((_, h)) = self.listeners.remove(&n) {
                h.abort();
            }
        }
        for (name, (addr, kind)) in wanted {
            if self.listeners.contains_key(&name) {
                continue;
            }
            if let Some(app) = name.strip_prefix("asap:") {
                // Data PPID 0 towards the PU: what rsplib PUs and PEs use (rspterminal,
                // rspserver -echo); data from the PU is accepted with any non-ASAP PPID.
                match SessionListener::bind(kind, &[addr], 0).await {
                    Ok(l) => {
                        tracing::info!(app, %addr, ?kind, "ASAP session listener up");
                        let h = tokio::spawn(relay::serve_asap(
                            l,
                            app.to_string(),
                            self.session_tx.clone(),
                        ));
                        self.listeners.insert(name, ((addr, kind), h));
                    }
                    Err(e) => {
                        tracing::error!(app, %addr, error = %e, "cannot bind ASAP session listener")
                    }
                }
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(app = name, %addr, "relay listener up");
                    let h = tokio::spawn(relay::serve(l, name.clone(), self.session_tx.clone()));
                    self.listeners.insert(name, ((addr, kind), h));
                }
                Err(e) => {
                    tracing::error!(app = name, %addr, error = %e, "cannot bind relay listener")
                }
            }
        }
    }

    /// An operator command: applied, then saved to the state file before it is answered.
    fn admin(&mut self, target: &str, cmd: crate::core::AdminCommand, by: &str) -> AdminAnswer {
        match self.core.admin(now_ms(), target, cmd, by) {
            Ok((servers, acts)) => {
                tracing::info!(target, ?cmd, by, "operator command");
                self.dispatch(acts);
                let servers = servers.iter().map(|(a, s)| format!("{a}/{s}")).collect();
                match self.save_admin() {
                    Ok(()) => AdminAnswer {
                        ok: true,
                        servers,
                        by: by.to_string(),
                        error: None,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "operator state not saved");
                        AdminAnswer {
                            ok: false,
                            servers,
                            by: by.to_string(),
                            error: Some(format!("applied, but not saved (lost on restart): {e}")),
                        }
                    }
                }
            }
            Err(e) => AdminAnswer::failed(by, e.to_string()),
        }
    }

    /// Writes the operator-state file when the core's admin state changed since the last
    /// write.
    fn save_admin(&mut self) -> Result<(), crate::admin_state::StateFileError> {
        let seq = self.core.admin_seq();
        if seq == self.admin_saved {
            return Ok(());
        }
        crate::admin_state::save(&self.admin_file, &self.core.admin_records())?;
        self.admin_saved = seq;
        Ok(())
    }

    fn report(&self) -> Report {
        let registrar = self.reg_state.lock().map(|s| s.clone()).unwrap_or_default();
        let mut proxy = self.core.status(now_ms());
        with_registrar_answers(&mut proxy, &registrar);
        let ha = self.ha.as_ref().map(|ha| {
            let wanted = self.core.registrations().len();
            let accepted = registrar
                .pes
                .iter()
                .filter(|p| p.state == crate::registrar::PeRegState::Accepted)
                .count();
            ha.view(now_ms(), wanted, accepted)
        });
        Report {
            proxy,
            registrar,
            config_path: self.path.display().to_string(),
            config_loads: self.config_loads,
            last_config_error: self.last_config_error.clone(),
            ha,
        }
    }
}

/// Puts what the registrar answered for each server's PE next to it (issue 19 item 7:
/// `status` shows what the registrar accepted, not only what the proxy wants).
fn with_registrar_answers(status: &mut crate::core::Status, reg: &RegistrarState) {
    for a in &mut status.applications {
        for s in &mut a.servers {
            s.registrar_state = reg
                .pes
                .iter()
                .find(|p| p.pe_id == s.pe_id && p.pool_handle == a.pool_handle)
                .cloned();
        }
    }
}

/// A 200 ms tick that comes this much late means the proxy was stalled (SIGSTOP, a hung
/// or overloaded host): long enough for the registrar to drop its PEs for unanswered
/// keep-alives (issue 19 item 7).
pub const STALL_RESYNC_MS: u64 = 2_000;

/// Asks the registrar client to send every registration again when the tick at `now`
/// comes more than [`STALL_RESYNC_MS`] after the one at `last`, and returns the gap then.
/// A spurious resync (a merely slow machine) only re-sends registrations.
fn resync_after_stall(
    reg_tx: &mpsc::UnboundedSender<RegistrarCmd>,
    last: u64,
    now: u64,
    tick_ms: u64,
) -> Option<u64> {
    let gap = now.saturating_sub(last);
    // A long `[detection] tick_ms` is not a stall.
    if gap > STALL_RESYNC_MS.max(tick_ms.saturating_mul(4)) {
        tracing::warn!(
            stalled_ms = gap,
            "the proxy was stalled: sending every registration again"
        );
        let _ = reg_tx.send(RegistrarCmd::Resync);
        return Some(gap);
    }
    None
}
