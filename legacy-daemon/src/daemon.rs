//! The daemon core: one task that owns the configuration, the poller and the reported
//! state, and fans changes out to the reporters (seed 003 FIG. 3 steps 173–185).
//!
//! Events handled by the core loop:
//! - poll tick (every `poll_interval`) and pidfd exit notifications → poll, diff, report;
//! - SIGHUP, or a changed config file (mtime/size/inode checked every poll interval, but
//!   at least every [`WATCH_INTERVAL`]) → reload; a reload that changes `poll_interval_ms`
//!   restarts the poll timer with the new period, whatever triggered it;
//! - a [`PushRequest`] from a reporter → validate, apply, persist, acknowledge;
//! - SIGTERM/SIGINT → stop.
//!
//! A configuration that fails validation is logged with its precise location and the old
//! configuration stays in force. The file is watched by polling its metadata rather than
//! with inotify (`notify` crate): one `stat` per second costs nothing, works on NFS and
//! with editors that replace the file, and adds no thread or dependency.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config, ConfigError};
use crate::exitwatch::ExitWatcher;
use crate::poll::Poller;
use crate::reporter::{random_u64, HelloInfo, PushRequest, Reporter, ReporterShared};
use crate::state::StatusBook;
use legacy_protocol::auth::AuthMode;
use legacy_protocol::{ConfigAck, Snapshot};

/// The config file is checked at least this often, even with a longer poll interval
/// (with a shorter one, at every poll).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The initial configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Installing a signal handler failed.
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Identity of the config file contents on disk, to notice edits cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    // The inode catches editors and tools that replace the file by rename within one
    // timestamp tick and with the same length.
    std::fs::metadata(path).ok().map(|m| FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// The running daemon.
pub struct Daemon {
    path: PathBuf,
    cfg: Config,
    cfg_text: String,
    /// Text last read from (or written to) the file, to skip reloads of unchanged files.
    file_text: String,
    version: u64,
    file_stamp: Option<FileStamp>,
    poller: Poller,
    book: StatusBook,
    exits: ExitWatcher,
    exit_rx: mpsc::UnboundedReceiver<u32>,
    reporters: Vec<Reporter>,
    shared: ReporterShared,
    hello_tx: watch::Sender<HelloInfo>,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    push_rx: mpsc::Receiver<PushRequest>,
}

impl Daemon {
    /// Builds the daemon from an already validated configuration (`text` is its source).
    /// Must be called inside a tokio runtime.
    pub fn new(path: PathBuf, cfg: Config, text: String) -> Self {
        let version = cfg.declared_version.unwrap_or(1);
        let mut book = StatusBook::new();
        if let Some(sf) = &cfg.daemon.state_file {
            match std::fs::read(sf).map(|b| serde_json::from_slice::<Snapshot>(&b)) {
                Ok(Ok(snap)) => {
                    tracing::info!(state_file = %sf.display(), state_seq = snap.state_seq, "restored last reported state");
                    book = StatusBook::restore(snap);
                }
                Ok(Err(e)) => {
                    tracing::warn!(state_file = %sf.display(), error = %e, "ignoring unreadable state file")
                }
                Err(_) => {}
            }
        }
        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        let (hello_tx, hello_rx) = watch::channel(HelloInfo {
            daemon_id: cfg.daemon.id.clone(),
            config_version: version,
            poll_interval: cfg.daemon.poll_interval,
            heartbeat_interval: cfg.daemon.heartbeat_interval,
            key: cfg.daemon.key.clone(),
        });
        let (snap_tx, snap_rx) = watch::channel(Arc::new(book.snapshot()));
        let (push_tx, push_rx) = mpsc::channel(8);
        let shared = ReporterShared {
            instance: random_u64(std::process::id() as u64),
            started: Instant::now(),
            hello: hello_rx,
            snapshot: snap_rx,
            push_tx,
            metrics: Arc::new(crate::metrics::Metrics::new()),
        };
        shared.metrics.set_config_version(version);
        Self {
            file_stamp: stamp(&path),
            path,
            cfg,
            file_text: text.clone(),
            cfg_text: text,
            version,
            poller: Poller::new(),
            book,
            exits: ExitWatcher::new(exit_tx),
            exit_rx,
            reporters: Vec::new(),
            shared,
            hello_tx,
            snap_tx,
            push_rx,
        }
    }

    /// The daemon's metrics (for the `--metrics` endpoint).
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.shared.metrics.clone()
    }

    /// Runs until SIGTERM or SIGINT.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
        tracing::info!(
            daemon_id = %self.cfg.daemon.id,
            config = %self.path.display(),
            config_version = self.version,
            apps = self.cfg.apps.len(),
            proxies = self.cfg.proxies.len(),
            "legacy-daemon started"
        );
        if self.cfg.daemon.auth == AuthMode::None {
            tracing::warn!("daemon.auth = \"none\": the link to the proxies is not authenticated; anyone on the path can read and forge reports and pushes (PROTOCOL.md §1.1)");
        }
        // First poll before any reporter connects, so the first snapshot is real.
        self.poll_and_report();
        self.reconcile_reporters();
        let mut tick = self.new_ticker();
        let mut watch = self.new_watch_ticker();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if watch.is_none() {
                        let changed = self.check_file_change();
                        self.retime(changed, &mut tick, &mut watch);
                    }
                    self.poll_and_report();
                }
                _ = async { watch.as_mut().expect("guarded").tick().await }, if watch.is_some() => {
                    let changed = self.check_file_change();
                    self.retime(changed, &mut tick, &mut watch);
                }
                Some(pid) = self.exit_rx.recv() => {
                    while self.exit_rx.try_recv().is_ok() {}
                    tracing::debug!(pid, "watched process exited: polling now");
                    self.poll_and_report();
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading configuration");
                    let changed = self.reload_file();
                    self.retime(changed, &mut tick, &mut watch);
                }
                Some(req) = self.push_rx.recv() => {
                    let old = self.cfg.daemon.poll_interval;
                    self.handle_push(req);
                    let changed = self.cfg.daemon.poll_interval != old;
                    self.retime(changed, &mut tick, &mut watch);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("legacy-daemon stopping");
        Ok(())
    }

    fn new_ticker(&self) -> tokio::time::Interval {
        let p = self.cfg.daemon.poll_interval;
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    }

    /// After a configuration event: restarts the poll timer if the interval changed, and
    /// (re)creates or drops the file-watch timer if the interval or `watch_config` changed.
    fn retime(
        &self,
        interval_changed: bool,
        tick: &mut tokio::time::Interval,
        watch: &mut Option<tokio::time::Interval>,
    ) {
        if interval_changed {
            tracing::info!(
                poll_interval_ms = self.cfg.daemon.poll_interval.as_millis() as u64,
                "poll interval changed: timer restarted"
            );
            *tick = self.new_ticker();
        }
        if interval_changed || watch.is_some() != self.needs_watch_ticker() {
            *watch = self.new_watch_ticker();
        }
    }

    fn needs_watch_ticker(&self) -> bool {
        self.cfg.daemon.watch_config && self.cfg.daemon.poll_interval > WATCH_INTERVAL
    }

    /// A separate config-file timer, needed only when file watching is on and the poll
    /// interval is longer than [`WATCH_INTERVAL`] (otherwise the poll tick checks the file).
    fn new_watch_ticker(&self) -> Option<tokio::time::Interval> {
        if !self.needs_watch_ticker() {
            return None;
        }
        let p = WATCH_INTERVAL;
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(t)
    }

    /// Polls, updates the exit watcher, and reports a delta if something changed.
    fn poll_and_report(&mut self) {
        let started = Instant::now();
        let apps = self.poller.poll(&self.cfg);
        self.shared.metrics.polled(
            started.elapsed(),
            apps.iter().map(|a| (a.name.as_str(), a.running)),
        );
        // Give the poll's transient allocations back to the OS so the resident size stays
        // flat (glibc keeps freed heap otherwise; see BENCHMARKS.md).
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        let pids: Vec<u32> = apps.iter().flat_map(|a| a.pids.iter().copied()).collect();
        self.exits.sync(&pids);
        let Some(delta) = self.book.update(apps, self.version, now_ms()) else {
            return;
        };
        for a in &delta.changed {
            tracing::info!(
                event = "app_status",
                app = %a.name,
                running = a.running,
                instances = a.instances,
                pids = ?a.pids,
                state_seq = delta.state_seq,
                "application status changed"
            );
        }
        for r in &delta.removed {
            tracing::info!(event = "app_removed", app = %r, state_seq = delta.state_seq, "application no longer watched");
        }
        let snap = self.book.snapshot();
        // Persist before sending (seed 000 [0028]): a crash after this point cannot lose it.
        if let Some(sf) = &self.cfg.daemon.state_file {
            if let Err(e) = write_atomic(sf, &serde_json::to_vec(&snap).unwrap_or_default()) {
                tracing::warn!(state_file = %sf.display(), error = %e, "cannot write state file");
            }
        }
        self.snap_tx.send_replace(Arc::new(snap));
        let delta = Arc::new(delta);
        for r in &self.reporters {
            r.offer(delta.clone());
        }
    }

    /// Starts reporters for new proxies, stops those no longer configured.
    fn reconcile_reporters(&mut self) {
        let wanted = &self.cfg.proxies;
        self.reporters.retain(|r| {
            // A reporter that gave up (max_attempts) is restarted by any applied config.
            let keep = wanted.contains(r.target()) && !r.is_finished();
            if !wanted.contains(r.target()) {
                tracing::info!(proxy = %r.target().address, "proxy removed from configuration");
            }
            keep
        });
        for t in wanted {
            if !self.reporters.iter().any(|r| r.target() == t) {
                self.reporters
                    .push(Reporter::spawn(t.clone(), self.shared.clone()));
            }
        }
    }

    /// Reloads the file if it changed on disk; returns true if the poll interval changed.
    fn check_file_change(&mut self) -> bool {
        if !self.cfg.daemon.watch_config {
            return false;
        }
        let now = stamp(&self.path);
        if now.is_some() && now != self.file_stamp {
            tracing::info!(config = %self.path.display(), "configuration file changed: reloading");
            return self.reload_file();
        }
        false
    }

    /// Reloads the file; returns true if the poll interval changed.
    fn reload_file(&mut self) -> bool {
        self.file_stamp = stamp(&self.path);
        let (cfg, text) = match config::load_file(&self.path) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(event = "config_rejected", error = %e, config_version = self.version, "invalid configuration, keeping the previous one");
                return false;
            }
        };
        if text == self.file_text {
            tracing::debug!("configuration unchanged");
            return false;
        }
        self.file_text = text.clone();
        let version = match cfg.declared_version {
            Some(v) if v > self.version => v,
            _ => self.version + 1,
        };
        self.apply(cfg, text, version)
    }

    /// Installs a validated configuration; returns true if the poll interval changed.
    fn apply(&mut self, cfg: Config, text: String, version: u64) -> bool {
        let interval_changed = cfg.daemon.poll_interval != self.cfg.daemon.poll_interval;
        tracing::info!(
            event = "config_applied",
            config_version = version,
            apps = cfg.apps.len(),
            proxies = cfg.proxies.len(),
            "configuration applied"
        );
        self.cfg = cfg;
        self.cfg_text = text;
        self.version = version;
        self.shared.metrics.set_config_version(version);
        self.hello_tx.send_replace(HelloInfo {
            daemon_id: self.cfg.daemon.id.clone(),
            config_version: version,
            poll_interval: self.cfg.daemon.poll_interval,
            heartbeat_interval: self.cfg.daemon.heartbeat_interval,
            key: self.cfg.daemon.key.clone(),
        });
        self.reconcile_reporters();
        self.poll_and_report();
        interval_changed
    }

    fn handle_push(&mut self, req: PushRequest) {
        let PushRequest { push, from, reply } = req;
        let nack = |msg: String, active: u64| ConfigAck {
            version: push.version,
            accepted: false,
            active_version: active,
            error: Some(msg),
        };
        let ack = if !self.cfg.daemon.accept_push {
            nack(
                "configuration push disabled (daemon.accept_push = false)".into(),
                self.version,
            )
        } else if push.version < self.version {
            nack(
                format!(
                    "stale version {}: version {} is in force",
                    push.version, self.version
                ),
                self.version,
            )
        } else if push.version == self.version {
            if push.config_toml == self.cfg_text {
                ConfigAck {
                    version: push.version,
                    accepted: true,
                    active_version: self.version,
                    error: None,
                }
            } else {
                nack(
                    format!(
                        "version {} is already in force with different contents",
                        push.version
                    ),
                    self.version,
                )
            }
        } else {
            let origin = format!("config push v{} (from {from})", push.version);
            let checked = config::parse_push(&push.config_toml, &origin, &from).and_then(|cfg| {
                if self.cfg.daemon.auth != AuthMode::None && cfg.daemon.auth == AuthMode::None {
                    return Err(ConfigError {
                        origin: origin.clone(),
                        line: None,
                        column: None,
                        key: Some("daemon.auth".into()),
                        message: "a push cannot turn link authentication off; only a local \
                                  edit can"
                            .into(),
                    });
                }
                Ok(cfg)
            });
            match checked {
                Err(e) => {
                    tracing::error!(event = "config_rejected", error = %e, "pushed configuration rejected");
                    nack(e.to_string(), self.version)
                }
                Ok(cfg) => {
                    let persist = cfg.daemon.persist_push;
                    let text = push.config_toml.clone();
                    // Persist first: a push that cannot be written is not applied either, so
                    // what runs is what a restart would load.
                    if persist {
                        if let Err(e) = self.persist_pushed(&text, push.version) {
                            let _ = reply.send(nack(
                                format!(
                                    "cannot write {} (the configuration in force is unchanged): {e}",
                                    self.path.display()
                                ),
                                self.version,
                            ));
                            return;
                        }
                    }
                    self.apply(cfg, text.clone(), push.version);
                    ConfigAck {
                        version: push.version,
                        accepted: true,
                        active_version: self.version,
                        error: None,
                    }
                }
            }
        };
        let _ = reply.send(ack);
    }

    /// Writes a pushed configuration to the config file so a restart keeps it; the file it
    /// replaces is kept as `FILE.prev` for rollback.
    fn persist_pushed(&mut self, text: &str, version: u64) -> std::io::Result<()> {
        let body = if text.lines().any(|l| l.trim_start().starts_with("version")) {
            text.to_string()
        } else {
            format!("# pushed by proxy as version {version}\nversion = {version}\n{text}")
        };
        if let Err(e) = replace_keeping_previous(&self.path, body.as_bytes()) {
            tracing::error!(config = %self.path.display(), error = %e, "cannot persist pushed configuration");
            return Err(e);
        }
        tracing::info!(config = %self.path.display(), previous = %prev_path(&self.path).display(), "pushed configuration written; the previous file is kept");
        // Do not treat our own write as an external edit.
        self.file_stamp = stamp(&self.path);
        self.file_text = body;
        Ok(())
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Where [`replace_keeping_previous`] keeps the replaced file: `FILE.prev`.
pub fn prev_path(path: &Path) -> PathBuf {
    with_suffix(path, ".prev")
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same directory,
/// fsync, rename over `path`, fsync of the directory. A reader sees the old or the new file,
/// never a mix, and after a crash one of them is on disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = with_suffix(path, ".tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Like [`write_atomic`], and the file it replaces stays as `FILE.prev` (copied and synced
/// before the new file is renamed into place), so an operator can roll back with
/// `mv FILE.prev FILE`.
pub fn replace_keeping_previous(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::read(path) {
        Ok(old) => write_atomic(&prev_path(path), &old)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_atomic(path, bytes)
}

/// `--once`: polls (twice, 100 ms apart, so CPU use is meaningful) and returns the status.
pub fn poll_once(cfg: &Config) -> serde_json::Value {
    let mut p = Poller::new();
    p.poll(cfg);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let apps = p.poll(cfg);
    serde_json::json!({
        "daemon_id": cfg.daemon.id,
        "config_version": cfg.declared_version.unwrap_or(1),
        "taken_at_ms": now_ms(),
        "apps": apps,
    })
}
