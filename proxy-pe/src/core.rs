//! The sans-I/O core of the proxy pool element.
//!
//! Inputs are daemon reports (legacy-daemon PROTOCOL.md), probe results, timer ticks and
//! session events, each with the current time (Unix milliseconds) passed in. Outputs are
//! [`Action`]s for the driver: register or deregister a PE, probe a service port, move a
//! session. Nothing here touches a socket or a clock, so every rule is unit-tested with
//! exact times (see `tests` below).
//!
//! Rules:
//! - **Pooling table** (seed 003 [29]–[30]): one entry per configured (application,
//!   server); the server "is running" when its daemon reports the application running.
//! - **Failure declaration without flapping** (seed 002, FIG. 7A two-channel rule): two
//!   channels, the daemon (process level) and the check (application level,
//!   [`Action::Probe`] with the application's `[application.check]`, or a TCP connect when
//!   it has none). A server with exactly one failing channel is **suspect**: daemon silent
//!   (no frame for `heartbeat_miss_factor` × heartbeat interval, or disconnected) with the
//!   check passing keeps it selectable for at most `suspect_grace_ms` — for a *silent*
//!   (not disconnected) daemon only if the check is one a frozen process fails
//!   ([`Check::vouches_for_the_process`]) or `tcp_probe_vouches` is set, else it is out of
//!   selection at once (issue 19 item 4: ≤ 2 s for a frozen host with default settings),
//!   still not down; daemon reporting
//!   running with the check failing takes it out of selection without declaring it down.
//!   It is **down** only when both fail; an explicit "not running" report takes it out at
//!   once. The check verdict has rise/fall hysteresis; a failed relay connect counts as a
//!   failed check that takes the server out at once. Every result carries the server's
//!   check epoch from when it started; results of an older epoch are discarded.
//! - **Failover** (issue 19 item 5): sessions on a server that is down, expired or removed
//!   are closed ([`Action::CloseSession`], `on_server_failure = "close"`, the default) or
//!   moved ([`Action::MoveSession`], `"reconnect"`).
//! - **Lifetime and maintenance** (seed 003 [35]): a server is not selectable inside a
//!   maintenance window or once its lifetime (counted from when its application was last
//!   seen starting) has expired. Sessions on an expired server are moved (step 199
//!   again); a window start drains instead: open sessions stay until their clients end
//!   them (issue 19 item 1).
//! - **Mode A**: the set of registered PEs is reconciled with the set of selectable
//!   (application, server) pairs after every input, so a daemon reconnect (full snapshot)
//!   or a proxy restart re-creates exactly the right registrations; a load change of at
//!   least 1 % re-registers with the new policy value.
//! - **Configuration push** (seed 003 [32], "dynamic notification"): the core picks the
//!   version of a push to a daemon ([`Core::push_version`]), remembers it as pending
//!   ([`Core::config_push_sent`]) and records the daemon's `config_ack` (accepted, or
//!   rejected with the daemon's error) for the status output.
//! - **Admin states** (issue 19 item 1, like haproxy's `disable server` and `set server
//!   state drain|maint`): an operator puts a server into `disabled`, `draining` or
//!   `maintenance` ([`Core::admin`]). None of them takes new sessions and none moves or
//!   cuts the sessions already open; a drain ends in `disabled` once the last session is
//!   gone, and closes the rest when its timeout passes ([`Action::CloseSession`]). An
//!   operator stop is not a failure: the health stays what the daemon and probes say.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use asap::wire::{Policy, PoolElementInfo, TransportParameter, TransportUse};
use legacy_protocol::receiver::StatusTable;
use legacy_protocol::{AppStatus, ConfigAck, DaemonMessage, Hello};
use serde::Serialize;

use crate::config::{Application, Check, Config, Mode, OnServerFailure, Window};
use crate::policy::rfc::rfc_policy;
use crate::policy::{Candidate, SelectionPolicy};

/// Identifies a session brokered by the proxy (mode B).
pub type SessionId = u64;

/// Re-register in mode A when the load moves by at least this share (rsplib: 1 %).
const LOAD_REREGISTER_STEP: u32 = u32::MAX / 100;

/// How many recent events [`Core::status`] keeps.
const EVENT_LOG_LEN: usize = 256;

/// Errors of core inputs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// A message from a daemon that is not connected (no Hello seen).
    #[error("daemon `{0}` is not connected")]
    UnknownDaemon(String),
    /// The daemon broke the protocol's sequence rules (the driver drops the connection).
    #[error("daemon `{daemon}`: {message}")]
    Protocol {
        /// The daemon.
        daemon: String,
        /// What was wrong.
        message: String,
    },
}

/// Why a configuration push cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum PushError {
    /// Neither configured as a server's daemon nor ever connected.
    #[error("unknown daemon `{0}` (not referenced by the configuration and never connected)")]
    UnknownDaemon(String),
    /// Known, but no connection is open now.
    #[error("daemon `{0}` is not connected")]
    NotConnected(String),
}

/// State of a configuration push (seed 003 [32]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushState {
    /// Sent; no `config_ack` yet.
    Pending,
    /// The daemon applied it (or already had it in force).
    Accepted,
    /// The daemon rejected it; its previous configuration stays in force.
    Rejected,
    /// The connection closed before the daemon answered.
    Unanswered,
}

/// The latest configuration push to one daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PushView {
    /// Pushed version.
    pub version: u64,
    /// Outcome so far.
    pub state: PushState,
    /// The daemon's error (rejected) or why there is no answer.
    pub error: Option<String>,
    /// Version in force at the daemon according to its `config_ack`.
    pub active_version: Option<u64>,
    /// When it was sent (Unix ms).
    pub sent_at_ms: u64,
}

/// Administrative state of a server, set by an operator (`proxy-pe disable|enable|drain|
/// maintenance`, proxy-pe README "Operating servers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    /// In service (the default).
    #[default]
    Enabled,
    /// No new sessions; open sessions keep running.
    Disabled,
    /// No new sessions; open sessions finish, then the server is `disabled`. At the drain
    /// deadline the remaining sessions are closed.
    Draining,
    /// Operator maintenance: no new sessions, open sessions keep running (drained, never
    /// cut) and nothing is counted as a failure.
    Maintenance,
}

impl AdminState {
    /// The name used in status, commands and the state file.
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Disabled => "disabled",
            AdminState::Draining => "draining",
            AdminState::Maintenance => "maintenance",
        }
    }
}

/// An operator's command for one server (proxy-pe README "Operating servers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommand {
    /// Back to service.
    Enable,
    /// No new sessions; open ones keep running.
    Disable,
    /// No new sessions; open ones finish; after `timeout_ms` (if given) the rest are
    /// closed.
    Drain {
        /// Time until the remaining sessions are closed (None: wait for them).
        timeout_ms: Option<u64>,
    },
    /// Enter (true) or leave (false) operator maintenance.
    Maintenance(bool),
}

/// The administrative state of one server with who set it and when: the state file
/// entry (`admin_state_file`) and the `admin` part of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AdminRecord {
    /// Application.
    pub app: String,
    /// Server table name.
    pub server: String,
    /// The state.
    pub state: AdminState,
    /// Who set it (the control socket peer, e.g. `uid 0 (root)`).
    pub by: String,
    /// When it was set (Unix ms).
    pub since_ms: u64,
    /// Draining: when the remaining sessions are closed (Unix ms).
    #[serde(default)]
    pub drain_deadline_ms: Option<u64>,
}

/// Why an admin command was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AdminError {
    /// No configured server matches.
    #[error("no server `{0}` in the configuration (SERVER or APPLICATION/SERVER)")]
    UnknownServer(String),
    /// `maintenance off` for a server that is not in maintenance.
    #[error("server `{0}` is not in maintenance")]
    NotInMaintenance(String),
}

/// Why a session could not be given a server (seed 003 [33] step 197).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SessionError {
    /// No such application.
    #[error("unknown application `{0}`")]
    UnknownApplication(String),
    /// No server of the application is running (step 197).
    #[error("application `{0}` is not available: no server is running")]
    NotAvailable(String),
    /// No such session.
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
}

/// A server chosen for a session (seed 003 [34] step 199).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The session.
    pub session: SessionId,
    /// The application.
    pub app: String,
    /// The chosen server's table name.
    pub server: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// How the relay treats the session (timers and failover semantics in force).
    pub policy: SessionPolicy,
}

/// How the relay treats one session: `[detection]` timers and the application's failover
/// semantics (issue 19 items 3 and 5), copied into each [`Assignment`] so a reload applies
/// to the next session and the next reselection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Connect timeout towards a legacy server, ms (`detection.connect_timeout_ms`).
    pub connect_timeout_ms: u64,
    /// Pause between the two probes after a server closed mid-session, ms
    /// (`detection.recheck_ms`).
    pub recheck_ms: u64,
    /// Close the client's connection or reconnect it when its server fails.
    pub on_server_failure: OnServerFailure,
    /// `reconnect`: client lines replayed to the new server.
    pub replay_lines: u32,
    /// `reconnect`: lines of the new server's output dropped.
    pub discard_lines: u32,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        let d = crate::config::Detection::default();
        SessionPolicy {
            connect_timeout_ms: d.connect_timeout_ms,
            recheck_ms: d.recheck_ms,
            on_server_failure: OnServerFailure::default(),
            replay_lines: 0,
            discard_lines: 0,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an ASAP Registration (new or updated PE) to the registrar.
    Register {
        /// Pool handle.
        pool_handle: String,
        /// The PE parameter.
        pe: PoolElementInfo,
    },
    /// Send an ASAP Deregistration.
    Deregister {
        /// Pool handle.
        pool_handle: String,
        /// PE identifier.
        pe_id: u32,
    },
    /// Run `check` against a server's service port and report the result with
    /// [`Core::check_result`] and the same `epoch` (a result from an older epoch is
    /// discarded: issue 19 item 4).
    Probe {
        /// Application.
        app: String,
        /// Server name.
        server: String,
        /// Service address.
        addr: SocketAddr,
        /// The server's check epoch when the check started.
        epoch: u64,
        /// What to run (the application's `[application.check]`, or a TCP connect with
        /// `detection.probe_timeout_ms` when it has none).
        check: Check,
    },
    /// The session's server is no longer fit to keep it (failed, lifetime expired,
    /// removed; not for a maintenance window or an operator state, which drain): call [`Core::reselect`] and continue on the new server
    /// (seed 003 [35] → step 199).
    MoveSession {
        /// The session.
        session: SessionId,
        /// The server it must leave (a relay that has already moved ignores the request).
        server: String,
        /// Why.
        reason: String,
    },
    /// Close the session (the client's connection ends): a drain's timeout passed.
    CloseSession {
        /// The session.
        session: SessionId,
        /// Why.
        reason: String,
    },
}

/// Health of a server as the proxy declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// No report from its daemon yet.
    Unknown,
    /// The daemon reports the application running and its check passes.
    Running,
    /// The daemon reports it not running (an explicit process-exit report: down at once).
    NotRunning,
    /// Exactly one channel reports a failure (seed 002): either the daemon is silent while
    /// the check still passes (selectable, for at most `suspect_grace_ms`), or the daemon
    /// reports the application running while its check fails (out of selection, not
    /// declared down: open sessions stay).
    Suspect,
    /// Both channels agree (daemon silent and check failing), or suspect for longer than
    /// the grace period. Open sessions are closed or moved (`on_server_failure`).
    Down,
}

#[derive(Debug)]
struct ServerState {
    cfg: crate::config::Server,
    name: String,
    windows: Vec<Window>,
    pe_id: u32,
    health: Health,
    /// Why the server is not selectable (empty when selectable).
    reason: String,
    selectable: bool,
    /// Healthy enough that open sessions stay (may still refuse new ones: admin state).
    keeps_sessions: bool,
    suspect_since: Option<u64>,
    /// Verdict of the check after rise/fall hysteresis (None: no result since the last
    /// reset; counted as passing).
    probe_ok: Option<bool>,
    last_probe_sent: Option<u64>,
    /// Check epoch: bumped when the verdict changes or the application (re)starts or stops;
    /// results of checks and relay connects started in an older epoch are discarded.
    epoch: u64,
    /// A check of this epoch is running.
    check_in_flight: bool,
    /// Consecutive passes / failures of the current epoch.
    passes: u32,
    fails: u32,
    /// When the application was last seen starting (lifetime origin).
    running_since: Option<u64>,
    last_pids: Vec<u32>,
    last_running: bool,
    load: f64,
    apps_running: u32,
    weight: u32,
    active: u32,
    assigned: u64,
    /// Added from a daemon's report by `[application.join]` (issue 19 item 2), not
    /// declared in the file.
    joined: bool,
}

#[derive(Debug)]
struct AppState {
    cfg: Application,
    selector: Option<Box<dyn SelectionPolicy>>,
    servers: Vec<ServerState>,
}

#[derive(Debug)]
struct DaemonState {
    table: StatusTable,
    connected: bool,
    last_frame_ms: u64,
    connections: u64,
    last_push: Option<PushView>,
}

#[derive(Debug, Clone)]
struct SessionState {
    app: String,
    server: String,
    /// The server's check epoch when the session was assigned to it.
    epoch: u64,
    move_requested: bool,
    close_requested: bool,
}

/// One notable state change, for the status output and the tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CoreEvent {
    /// Unix ms.
    pub at_ms: u64,
    /// Short machine-readable kind (`server-state`, `daemon-connected`, ...).
    pub kind: String,
    /// Application (empty for daemon events).
    pub app: String,
    /// Server or daemon name.
    pub subject: String,
    /// Details.
    pub detail: String,
}

/// The proxy core. See the module documentation.
#[derive(Debug)]
pub struct Core {
    cfg: Config,
    apps: Vec<AppState>,
    daemons: BTreeMap<String, DaemonState>,
    sessions: BTreeMap<SessionId, SessionState>,
    next_session: SessionId,
    /// Mode A/B registrations currently wanted at the registrar (PE id → handle, PE).
    registered: BTreeMap<u32, (String, PoolElementInfo)>,
    events: VecDeque<CoreEvent>,
    event_seq: u64,
    /// Operator states by (application, server); kept over reloads (also for servers
    /// removed from the configuration, which get it back when they return).
    admin: BTreeMap<(String, String), AdminRecord>,
    /// Bumped on every change of `admin` (the driver saves the state file then).
    admin_seq: u64,
    /// Address each daemon's connection comes from (the joined servers' default address).
    daemon_peers: BTreeMap<String, IpAddr>,
    /// (application, daemon) pairs whose join was refused or impossible, logged once.
    join_refused: BTreeSet<(String, String)>,
    /// Standby of an active/standby pair ([`crate::ha`]): no registration is wanted and no
    /// keep-alive answered.
    standby: bool,
}

/// FNV-1a over the parts separated by 0 bytes: the stable PE identifier of
/// (application, server), so every proxy and every restart uses the same id.
pub fn stable_pe_id(parts: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // A 0 separator byte: XOR with 0 is the identity, only the multiply remains.
            h = h.wrapping_mul(0x0100_0193);
        }
        for b in p.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    // 0 is not a usable PE identifier for some implementations.
    if h == 0 {
        1
    } else {
        h
    }
}

impl Core {
    /// A core for a validated configuration.
    pub fn new(cfg: Config) -> Core {
        let mut c = Core {
            cfg: cfg.clone(),
            apps: Vec::new(),
            daemons: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_session: 1,
            registered: BTreeMap::new(),
            events: VecDeque::new(),
            event_seq: 0,
            admin: BTreeMap::new(),
            admin_seq: 0,
            daemon_peers: BTreeMap::new(),
            join_refused: BTreeSet::new(),
            // A pair member starts as standby (crate::ha); a single proxy registers.
            standby: cfg.ha.is_some(),
        };
        c.apps = cfg
            .applications
            .iter()
            .map(|a| new_app(a, cfg.proxy_id.as_deref()))
            .collect();
        c
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the configuration (reload). State of servers that keep their (application,
    /// name) is kept, and so is the policy state when the policy did not change. Sessions
    /// whose server disappeared are moved; mode A registrations are reconciled. The policy
    /// state (round-robin position, FIFO queue) is kept when policy and server list are
    /// unchanged, otherwise the policy starts afresh.
    pub fn apply_config(&mut self, now: u64, cfg: Config) -> Vec<Action> {
        let mut old: BTreeMap<String, AppState> = self
            .apps
            .drain(..)
            .map(|a| (a.cfg.name.clone(), a))
            .collect();
        let mut apps = Vec::new();
        for a in &cfg.applications {
            let mut fresh = new_app(a, cfg.proxy_id.as_deref());
            if let Some(mut prev) = old.remove(&a.name) {
                // Policies keep positions by index: keep their state only when the server
                // list is unchanged.
                let same_servers = prev.servers.len() == fresh.servers.len()
                    && prev
                        .servers
                        .iter()
                        .zip(&fresh.servers)
                        .all(|(p, f)| p.name == f.name);
                if prev.cfg.policy == a.policy && same_servers {
                    fresh.selector = prev.selector.take();
                }
                for s in &mut fresh.servers {
                    if let Some(p) = prev.servers.iter_mut().find(|p| p.name == s.name) {
                        s.health = p.health;
                        s.suspect_since = p.suspect_since;
                        s.probe_ok = p.probe_ok;
                        s.epoch = p.epoch;
                        s.passes = p.passes;
                        s.fails = p.fails;
                        s.running_since = p.running_since;
                        s.last_pids = std::mem::take(&mut p.last_pids);
                        s.last_running = p.last_running;
                        s.active = p.active;
                        s.assigned = p.assigned;
                    }
                }
                keep_joined(&mut fresh, &mut prev, cfg.proxy_id.as_deref());
            }
            apps.push(fresh);
        }
        self.apps = apps;
        self.cfg = cfg;
        self.log(
            now,
            "config-applied",
            "",
            "",
            format!("{} applications", self.apps.len()),
        );
        self.evaluate(now)
    }

    /// A daemon connected and sent its Hello. A new `instance` means the daemon restarted;
    /// either way its Snapshot follows and replaces the table (PROTOCOL.md §2).
    pub fn daemon_connected(&mut self, now: u64, hello: &Hello) -> Vec<Action> {
        let id = hello.daemon_id.clone();
        let prev = self.daemons.get(&id).map(|d| d.table.hello.instance);
        let mut table = StatusTable::new(hello.clone());
        // Keep the last known applications until the snapshot arrives, so a reconnect does
        // not briefly look like "everything stopped".
        let mut conns = 1;
        let mut last_push = None;
        if let Some(d) = self.daemons.remove(&id) {
            table.apps = d.table.apps;
            conns = d.connections + 1;
            last_push = d.last_push;
        }
        self.daemons.insert(
            id.clone(),
            DaemonState {
                table,
                connected: true,
                last_frame_ms: now,
                connections: conns,
                last_push,
            },
        );
        let detail = match prev {
            Some(i) if i != hello.instance => format!("restarted (instance {})", hello.instance),
            Some(_) => "reconnected".to_string(),
            None => format!("instance {}", hello.instance),
        };
        self.log(now, "daemon-connected", "", &id, detail);
        self.evaluate(now)
    }

    /// One message from a connected daemon.
    pub fn daemon_message(
        &mut self,
        now: u64,
        daemon: &str,
        msg: &DaemonMessage,
    ) -> Result<Vec<Action>, CoreError> {
        let d = self
            .daemons
            .get_mut(daemon)
            .filter(|d| d.connected)
            .ok_or_else(|| CoreError::UnknownDaemon(daemon.to_string()))?;
        if let DaemonMessage::Snapshot(_) = msg {
            // A snapshot replaces everything, including apps kept over a reconnect.
            d.table.apps.clear();
        }
        d.table.apply(msg).map_err(|e| CoreError::Protocol {
            daemon: daemon.to_string(),
            message: e.to_string(),
        })?;
        d.last_frame_ms = now;
        if let DaemonMessage::ConfigAck(ack) = msg {
            self.config_acked(now, daemon, ack);
        }
        Ok(self.evaluate(now))
    }

    /// The version for the next configuration push to `daemon`: one above both the version
    /// in force there and a push still waiting for its answer. Fails when the daemon is
    /// unknown or not connected (the push could not be delivered).
    pub fn push_version(&self, daemon: &str) -> Result<u64, PushError> {
        let Some(d) = self.daemons.get(daemon) else {
            let configured = self
                .apps
                .iter()
                .flat_map(|a| a.servers.iter())
                .any(|s| s.cfg.daemon == daemon);
            return Err(if configured {
                PushError::NotConnected(daemon.to_string())
            } else {
                PushError::UnknownDaemon(daemon.to_string())
            });
        };
        if !d.connected {
            return Err(PushError::NotConnected(daemon.to_string()));
        }
        let pending = d
            .last_push
            .as_ref()
            .filter(|p| p.state == PushState::Pending)
            .map_or(0, |p| p.version);
        Ok(d.table.config_version.max(pending) + 1)
    }

    /// A configuration push of `version` was sent to `daemon`; its `config_ack` arrives as
    /// a [`DaemonMessage::ConfigAck`] through [`Core::daemon_message`].
    pub fn config_push_sent(&mut self, now: u64, daemon: &str, version: u64) {
        if let Some(d) = self.daemons.get_mut(daemon) {
            d.last_push = Some(PushView {
                version,
                state: PushState::Pending,
                error: None,
                active_version: None,
                sent_at_ms: now,
            });
            self.log(
                now,
                "config-push",
                "",
                daemon,
                format!("version {version} sent"),
            );
        }
    }

    fn config_acked(&mut self, now: u64, daemon: &str, ack: &ConfigAck) {
        let Some(d) = self.daemons.get_mut(daemon) else {
            return;
        };
        if let Some(p) = d.last_push.as_mut().filter(|p| p.version == ack.version) {
            p.state = if ack.accepted {
                PushState::Accepted
            } else {
                PushState::Rejected
            };
            p.error.clone_from(&ack.error);
            p.active_version = Some(ack.active_version);
        }
        let (kind, detail) = if ack.accepted {
            (
                "config-ack",
                format!(
                    "version {} accepted, {} in force",
                    ack.version, ack.active_version
                ),
            )
        } else {
            (
                "config-rejected",
                format!(
                    "version {} rejected, {} stays in force: {}",
                    ack.version,
                    ack.active_version,
                    ack.error.as_deref().unwrap_or("no reason given")
                ),
            )
        };
        self.log(now, kind, "", daemon, detail);
    }

    /// The daemon's connection closed or broke. Its servers become suspect (not down) until
    /// a probe fails or the grace period ends.
    pub fn daemon_disconnected(&mut self, now: u64, daemon: &str) -> Vec<Action> {
        if let Some(d) = self.daemons.get_mut(daemon) {
            d.connected = false;
            if let Some(p) = d
                .last_push
                .as_mut()
                .filter(|p| p.state == PushState::Pending)
            {
                p.state = PushState::Unanswered;
                p.error = Some("connection closed before the daemon answered".into());
            }
            self.log(now, "daemon-disconnected", "", daemon, String::new());
        }
        self.evaluate(now)
    }

    /// A check result of the server's current epoch (tests and callers that do not track
    /// epochs); see [`Core::check_result`].
    pub fn probe_result(&mut self, now: u64, app: &str, server: &str, ok: bool) -> Vec<Action> {
        let epoch = self.server_mut(app, server).map_or(0, |s| s.epoch);
        self.check_result(now, app, server, epoch, ok)
    }

    /// Result of an [`Action::Probe`] started in `epoch`. Results of an older epoch (the
    /// verdict changed, or the application restarted, since the check started) are
    /// discarded, so a failure that began before a recovery cannot undo it. Otherwise the
    /// rise/fall counters advance: `fall` consecutive failures take the server out, `rise`
    /// consecutive passes put it back (issue 19 items 3 and 4).
    pub fn check_result(
        &mut self,
        now: u64,
        app: &str,
        server: &str,
        epoch: u64,
        ok: bool,
    ) -> Vec<Action> {
        let (rise, fall) = self.rise_fall(app);
        let Some(s) = self.server_mut(app, server) else {
            return Vec::new();
        };
        if epoch != s.epoch {
            tracing::debug!(
                app,
                server,
                epoch,
                current = s.epoch,
                ok,
                "stale check result discarded"
            );
            return Vec::new();
        }
        s.check_in_flight = false;
        let flipped = if ok {
            s.fails = 0;
            s.passes = s.passes.saturating_add(1);
            match s.probe_ok {
                Some(false) if s.passes >= rise => Some(true),
                None => {
                    s.probe_ok = Some(true);
                    None
                }
                _ => None,
            }
        } else {
            s.passes = 0;
            s.fails = s.fails.saturating_add(1);
            (s.probe_ok != Some(false) && s.fails >= fall).then_some(false)
        };
        if let Some(v) = flipped {
            s.probe_ok = Some(v);
            s.new_epoch();
            let detail = if v {
                format!("check passed {rise} times: back in")
            } else {
                format!("check failed {fall} times: out")
            };
            self.log(now, "check", app, server, detail);
        }
        self.evaluate(now)
    }

    /// (rise, fall) of the application's check; (1, 1) for the implicit TCP probe.
    fn rise_fall(&self, app: &str) -> (u32, u32) {
        self.apps
            .iter()
            .find(|a| a.cfg.name == app)
            .and_then(|a| a.cfg.check.as_ref())
            .map_or((1, 1), |c| (c.rise.max(1), c.fall.max(1)))
    }

    /// Active/standby pair ([`crate::ha`]): `true` withdraws every registration (the
    /// returned deregistrations) and stops answering keep-alives; `false` registers what is
    /// wanted. Health, sessions and the pooling table are kept either way.
    pub fn set_standby(&mut self, now: u64, standby: bool) -> Vec<Action> {
        if self.standby == standby {
            return Vec::new();
        }
        self.standby = standby;
        let role = if standby { "standby" } else { "active" };
        self.log(now, "ha-role", "", role, String::new());
        let mut actions = Vec::new();
        self.reconcile(now, &mut actions);
        actions
    }

    /// Whether this proxy is the standby of a pair (registers nothing).
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Timer tick: freshness, grace periods, lifetimes, maintenance windows, probes.
    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        self.evaluate(now)
    }

    /// The proxy itself was stopped for `gap_ms` until `now` (SIGSTOP, a hung host; the
    /// driver sees its tick that late): the daemons' silence during that time is not
    /// theirs, so their last-frame times move forward by the gap (at most to `now`). Without
    /// this every server would leave selection (mode A: be deregistered) at the first
    /// evaluation after the stall, before the daemons' queued frames are read.
    pub fn resume_after_stall(&mut self, now: u64, gap_ms: u64) {
        for d in self.daemons.values_mut() {
            d.last_frame_ms = d.last_frame_ms.saturating_add(gap_ms).min(now);
        }
    }

    /// An operator command for `target` (`SERVER`: that server in every application;
    /// `APPLICATION/SERVER`: one), recorded with `by` and `now`. Returns the servers it
    /// applied to as (application, server) and the resulting actions. Open sessions are
    /// never moved by it; see [`AdminState`].
    #[allow(clippy::type_complexity)]
    pub fn admin(
        &mut self,
        now: u64,
        target: &str,
        cmd: AdminCommand,
        by: &str,
    ) -> Result<(Vec<(String, String)>, Vec<Action>), AdminError> {
        let (app_f, server_f) = match target.split_once('/') {
            Some((a, s)) => (Some(a), s),
            None => (None, target),
        };
        let matched: Vec<(String, String)> = self
            .apps
            .iter()
            .filter(|a| app_f.is_none_or(|f| f == a.cfg.name))
            .flat_map(|a| {
                a.servers
                    .iter()
                    .filter(|s| s.name == server_f)
                    .map(|s| (a.cfg.name.clone(), s.name.clone()))
            })
            .collect();
        if matched.is_empty() {
            return Err(AdminError::UnknownServer(target.to_string()));
        }
        if cmd == AdminCommand::Maintenance(false)
            && !matched.iter().all(|k| {
                self.admin
                    .get(k)
                    .is_some_and(|r| r.state == AdminState::Maintenance)
            })
        {
            return Err(AdminError::NotInMaintenance(target.to_string()));
        }
        let (state, deadline) = match cmd {
            AdminCommand::Enable | AdminCommand::Maintenance(false) => (AdminState::Enabled, None),
            AdminCommand::Disable => (AdminState::Disabled, None),
            AdminCommand::Drain { timeout_ms } => (
                AdminState::Draining,
                timeout_ms.map(|t| now.saturating_add(t)),
            ),
            AdminCommand::Maintenance(true) => (AdminState::Maintenance, None),
        };
        for (app, server) in &matched {
            self.admin.insert(
                (app.clone(), server.clone()),
                AdminRecord {
                    app: app.clone(),
                    server: server.clone(),
                    state,
                    by: by.to_string(),
                    since_ms: now,
                    drain_deadline_ms: deadline,
                },
            );
            let detail = match deadline {
                Some(d) => format!("{} by {by}, deadline {d}", state.name()),
                None => format!("{} by {by}", state.name()),
            };
            self.log(now, "admin", app, server, detail);
        }
        self.admin_seq += 1;
        Ok((matched, self.evaluate(now)))
    }

    /// Operator states restored from the state file at start (entries in the enabled
    /// state are kept too: they record who enabled the server).
    pub fn restore_admin(&mut self, now: u64, records: Vec<AdminRecord>) -> Vec<Action> {
        for r in records {
            self.admin.insert((r.app.clone(), r.server.clone()), r);
        }
        self.evaluate(now)
    }

    /// Every operator state, for the state file.
    pub fn admin_records(&self) -> Vec<AdminRecord> {
        self.admin.values().cloned().collect()
    }

    /// Changes whenever an operator state changes (a command, or a drain that completed).
    pub fn admin_seq(&self) -> u64 {
        self.admin_seq
    }

    /// A PU asks for a session of `app` (seed 003 [33] step 191): check the pooling
    /// configuration (193) and select a server by the application's policy (199), or fail
    /// (197).
    pub fn open_session(&mut self, now: u64, app: &str) -> Result<Assignment, SessionError> {
        let _ = now;
        let id = self.next_session;
        let (server, addr, epoch) = self.pick(app)?;
        self.next_session += 1;
        self.sessions.insert(
            id,
            SessionState {
                app: app.to_string(),
                server: server.clone(),
                epoch,
                move_requested: false,
                close_requested: false,
            },
        );
        Ok(Assignment {
            session: id,
            app: app.to_string(),
            server,
            addr,
            policy: self.session_policy(app),
        })
    }

    /// The session's server failed (203) or its lifetime expired (205): release it and
    /// select another running server (199). On error the session is closed.
    pub fn reselect(&mut self, now: u64, session: SessionId) -> Result<Assignment, SessionError> {
        let _ = now;
        let s = self
            .sessions
            .remove(&session)
            .ok_or(SessionError::UnknownSession(session))?;
        self.release(&s.app, &s.server);
        let (server, addr, epoch) = self.pick(&s.app)?;
        self.sessions.insert(
            session,
            SessionState {
                app: s.app.clone(),
                server: server.clone(),
                epoch,
                move_requested: false,
                close_requested: false,
            },
        );
        let policy = self.session_policy(&s.app);
        Ok(Assignment {
            session,
            app: s.app,
            server,
            addr,
            policy,
        })
    }

    /// The relay could not reach the session's server: a service-channel failure. The
    /// server is skipped until a probe succeeds (its daemon may not have noticed yet).
    pub fn session_server_unreachable(&mut self, now: u64, session: SessionId) -> Vec<Action> {
        let Some(s) = self.sessions.get(&session).cloned() else {
            return Vec::new();
        };
        if let Some(st) = self.server_mut(&s.app, &s.server) {
            if st.epoch != s.epoch {
                // The connect started before the server's verdict changed (e.g. it has
                // recovered since): stale, ignored.
                return Vec::new();
            }
            // A refused or timed-out connect is a failed check that takes the server out
            // at once (haproxy's `observe layer4` with `on-error mark-down`).
            if st.probe_ok != Some(false) {
                st.probe_ok = Some(false);
                st.new_epoch();
            }
        }
        self.log(
            now,
            "service-unreachable",
            &s.app,
            &s.server,
            format!("session {session}"),
        );
        self.evaluate(now)
    }

    /// The PU ended the session (seed 003 [35] step 209): release its bookkeeping.
    pub fn close_session(&mut self, now: u64, session: SessionId) {
        let _ = now;
        if let Some(s) = self.sessions.remove(&session) {
            self.release(&s.app, &s.server);
        }
    }

    /// Mode A: may the proxy answer the registrar's keep-alive for this PE? Only while the
    /// server is selectable (daemon status fresh and running, or suspect with its service
    /// port answering). Mode B: the proxy's own PEs always answer.
    pub fn keep_alive_ok(&self, pe_id: u32) -> bool {
        match self.cfg.mode {
            Mode::Broker => self.registered.contains_key(&pe_id),
            Mode::Registration if self.standby => false,
            Mode::Registration => self
                .apps
                .iter()
                .flat_map(|a| a.servers.iter())
                .any(|s| s.pe_id == pe_id && s.selectable),
        }
    }

    /// PE identifiers of `pool_handle` whose keep-alive may be answered (a keep-alive
    /// without PE identifier).
    pub fn keep_alive_pool(&self, pool_handle: &str) -> Vec<u32> {
        self.registered
            .iter()
            .filter(|(id, (h, _))| h == pool_handle && self.keep_alive_ok(**id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The registrations currently wanted (the driver re-sends them all after a registrar
    /// reconnect).
    pub fn registrations(&self) -> Vec<(String, PoolElementInfo)> {
        self.registered.values().cloned().collect()
    }

    /// Sessions currently open.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The server a session is on.
    pub fn session_server(&self, session: SessionId) -> Option<&str> {
        self.sessions.get(&session).map(|s| s.server.as_str())
    }

    fn server_mut(&mut self, app: &str, server: &str) -> Option<&mut ServerState> {
        self.apps
            .iter_mut()
            .find(|a| a.cfg.name == app)?
            .servers
            .iter_mut()
            .find(|s| s.name == server)
    }

    fn release(&mut self, app: &str, server: &str) {
        let Some(a) = self.apps.iter_mut().find(|a| a.cfg.name == app) else {
            return;
        };
        let Some(i) = a.servers.iter().position(|s| s.name == server) else {
            return;
        };
        let s = &mut a.servers[i];
        s.active = s.active.saturating_sub(1);
        let idle = s.active == 0;
        if let Some(p) = a.selector.as_mut() {
            p.released(i, idle);
        }
    }

    /// The relay settings of a session of `app`.
    fn session_policy(&self, app: &str) -> SessionPolicy {
        let d = &self.cfg.detection;
        let a = self.apps.iter().find(|a| a.cfg.name == app);
        SessionPolicy {
            connect_timeout_ms: d.connect_timeout_ms,
            recheck_ms: d.recheck_ms,
            on_server_failure: a.map_or_else(OnServerFailure::default, |a| a.cfg.on_server_failure),
            replay_lines: a.map_or(0, |a| a.cfg.replay_lines),
            discard_lines: a.map_or(0, |a| a.cfg.discard_lines),
        }
    }

    fn pick(&mut self, app: &str) -> Result<(String, SocketAddr, u64), SessionError> {
        let a = self
            .apps
            .iter_mut()
            .find(|a| a.cfg.name == app)
            .ok_or_else(|| SessionError::UnknownApplication(app.to_string()))?;
        let cands: Vec<Candidate> = a.servers.iter().map(candidate).collect();
        let sel = a
            .selector
            .as_mut()
            .ok_or_else(|| SessionError::NotAvailable(app.to_string()))?;
        let i = sel
            .select(&cands)
            .filter(|&i| cands.get(i).is_some_and(|c| c.available))
            .ok_or_else(|| SessionError::NotAvailable(app.to_string()))?;
        sel.assigned(i);
        let s = &mut a.servers[i];
        s.active += 1;
        s.assigned += 1;
        Ok((s.name.clone(), s.cfg.service_addr(), s.epoch))
    }

    fn log(&mut self, now: u64, kind: &str, app: &str, subject: &str, detail: String) {
        tracing::info!(kind, app, subject, %detail, "event");
        self.event_seq += 1;
        if self.events.len() == EVENT_LOG_LEN {
            self.events.pop_front();
        }
        self.events.push_back(CoreEvent {
            at_ms: now,
            kind: kind.to_string(),
            app: app.to_string(),
            subject: subject.to_string(),
            detail,
        });
    }

    /// Recomputes every server's state and returns the resulting actions.
    fn evaluate(&mut self, now: u64) -> Vec<Action> {
        self.sync_joined(now);
        let mut actions = Vec::new();
        let mut logs = Vec::new();
        let det = self.cfg.detection.clone();
        let (hb_min, hb_max) = (
            self.cfg.daemon_link.min_heartbeat_ms.max(1),
            self.cfg.daemon_link.max_heartbeat_ms.max(1),
        );
        for a in &mut self.apps {
            for s in &mut a.servers {
                let daemon = self.daemons.get(&s.cfg.daemon);
                let status: Option<&AppStatus> = daemon.and_then(|d| {
                    d.table
                        .apps
                        .get(s.cfg.daemon_app.as_deref().unwrap_or(&a.cfg.name))
                });
                let fresh = daemon.is_some_and(|d| {
                    // The interval the daemon announced, bounded by `[daemon_link]`: a daemon
                    // cannot make itself unexpirable by announcing hours.
                    let hb = d
                        .table
                        .hello
                        .heartbeat_interval_ms
                        .clamp(hb_min, hb_max.max(hb_min));
                    d.connected
                        && d.table.synced
                        && now.saturating_sub(d.last_frame_ms)
                            <= hb.saturating_mul(u64::from(det.heartbeat_miss_factor))
                });
                // Figures from the report.
                if let Some(st) = status {
                    if st.running && (!s.last_running || st.pids != s.last_pids) {
                        s.running_since = Some(now);
                        // A new process: earlier check verdicts and results in flight are
                        // about the old one.
                        s.probe_ok = None;
                        s.new_epoch();
                    }
                    lifetime_origin_from_report(s, st);
                    s.last_running = st.running;
                    s.last_pids = st.pids.clone();
                    s.load = load_of(st);
                    s.weight = s.cfg.weight.or(st.load_hints.weight).unwrap_or(1);
                }
                s.apps_running = daemon.map_or(0, |d| {
                    u32::try_from(d.table.apps.values().filter(|x| x.running).count())
                        .unwrap_or(u32::MAX)
                });
                // Silence (connection open, no frame: a frozen or cut-off host) is not a
                // disconnect (the host's kernel closed it: a daemon restart). During
                // silence only a check that a frozen process fails may keep the server
                // selectable (issue 19 item 4).
                // (A reconnected daemon before its snapshot is not silent either.)
                let silent = daemon.is_some_and(|d| d.connected && d.table.synced) && !fresh;
                let vouched = det.tcp_probe_vouches
                    || a.cfg
                        .check
                        .as_ref()
                        .is_some_and(crate::config::Check::vouches_for_the_process);
                let prev = s.health;
                let prev_reason = s.reason.clone();
                let health = match (status, fresh) {
                    (None, true) => Health::NotRunning,
                    (None, false) => Health::Unknown,
                    (Some(st), true) => {
                        s.suspect_since = None;
                        if !st.running {
                            // An explicit exit report: down at once, whatever the check.
                            if s.probe_ok.is_some() || s.check_in_flight {
                                s.probe_ok = None;
                                s.new_epoch();
                            }
                            Health::NotRunning
                        } else if s.probe_ok == Some(false) {
                            // One channel only (seed 002): out of selection, not down.
                            Health::Suspect
                        } else {
                            Health::Running
                        }
                    }
                    (Some(st), false) => {
                        let since = *s.suspect_since.get_or_insert(now);
                        if !st.running {
                            Health::NotRunning
                        } else if s.probe_ok == Some(false)
                            || now.saturating_sub(since) >= det.suspect_grace_ms
                        {
                            Health::Down
                        } else {
                            Health::Suspect
                        }
                    }
                };
                s.health = health;
                let in_window = s.windows.iter().any(|w| w.contains(now));
                let expired = match (s.cfg.lifetime_s, s.running_since) {
                    (Some(l), Some(since)) => now >= since.saturating_add(l.saturating_mul(1000)),
                    _ => false,
                };
                s.reason = match health {
                    Health::Suspect if s.probe_ok == Some(false) => {
                        "check failing; daemon reports running".into()
                    }
                    Health::Suspect if silent && !vouched => {
                        "daemon silent; no application check vouches for the process".into()
                    }
                    Health::Running | Health::Suspect if in_window => "maintenance window".into(),
                    Health::Running | Health::Suspect if expired => "lifetime expired".into(),
                    Health::Running | Health::Suspect => String::new(),
                    Health::Unknown => "no daemon report".into(),
                    Health::NotRunning => "not running".into(),
                    Health::Down => {
                        if s.probe_ok == Some(false) {
                            "daemon silent and service probe failed".into()
                        } else {
                            "daemon silent beyond grace period".into()
                        }
                    }
                };
                let admin = self
                    .admin
                    .get(&(a.cfg.name.clone(), s.name.clone()))
                    .map_or(AdminState::Enabled, |r| r.state);
                // Health decides whether open sessions must move; the operator state only
                // whether new ones may come.
                s.selectable = s.reason.is_empty() && admin == AdminState::Enabled;
                // A maintenance window drains: its open sessions stay (issue 19 item 1).
                // Failures, an expired lifetime and removal move them.
                // A single failing channel (Suspect) takes the server out of selection but
                // does not declare it down: open sessions stay (like haproxy without
                // `on-marked-down shutdown-sessions`).
                s.keeps_sessions = s.reason.is_empty()
                    || (matches!(health, Health::Running | Health::Suspect)
                        && (in_window || !expired));
                if prev != health || prev_reason != s.reason {
                    logs.push((
                        a.cfg.name.clone(),
                        s.name.clone(),
                        format!(
                            "{} -> {}{}",
                            health_name(prev),
                            health_name(health),
                            if s.reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", s.reason)
                            }
                        ),
                    ));
                }
                // Checks: with `[application.check]` every interval while the application
                // runs (or its daemon is silent); without one, a TCP connect only while one
                // channel reports a failure (suspect, or the service channel failed).
                let running = status.is_some_and(|x| x.running);
                let (check, periodic) = match &a.cfg.check {
                    Some(c) => (c.clone(), true),
                    None => (implicit_check(&det), false),
                };
                let wants_probe = running
                    && (periodic || matches!(health, Health::Suspect) || s.probe_ok == Some(false));
                let due = s.last_probe_sent.is_none_or(|t| {
                    let since = now.saturating_sub(t);
                    since >= check.interval_ms
                        && (!s.check_in_flight
                            || since >= check.timeout_ms.saturating_add(check.interval_ms))
                });
                if wants_probe && due {
                    s.last_probe_sent = Some(now);
                    s.check_in_flight = true;
                    actions.push(Action::Probe {
                        app: a.cfg.name.clone(),
                        server: s.name.clone(),
                        addr: s.cfg.service_addr(),
                        epoch: s.epoch,
                        check,
                    });
                }
            }
        }
        for (app, server, detail) in logs {
            self.log(now, "server-state", &app, &server, detail);
        }
        self.advance_drains(now, &mut actions);
        // Sessions on servers that are no longer selectable move (seed 003 [35]).
        for (id, sess) in self.sessions.iter_mut() {
            if sess.move_requested {
                continue;
            }
            let st = self
                .apps
                .iter()
                .find(|a| a.cfg.name == sess.app)
                .and_then(|a| a.servers.iter().find(|s| s.name == sess.server));
            let reason = match st {
                None => Some("server removed from configuration".to_string()),
                Some(s) if !s.keeps_sessions => Some(s.reason.clone()),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                sess.move_requested = true;
                let close = self
                    .apps
                    .iter()
                    .find(|a| a.cfg.name == sess.app)
                    .is_none_or(|a| a.cfg.on_server_failure == OnServerFailure::Close);
                if close {
                    // `on_server_failure = "close"`: the client's connection ends and it
                    // reconnects through the pool (issue 19 item 5).
                    sess.close_requested = true;
                    actions.push(Action::CloseSession {
                        session: *id,
                        reason,
                    });
                } else {
                    actions.push(Action::MoveSession {
                        session: *id,
                        server: sess.server.clone(),
                        reason,
                    });
                }
            }
        }
        self.reconcile(now, &mut actions);
        actions
    }

    /// Draining servers: closed once empty (→ `disabled`); at the deadline their remaining
    /// sessions are closed.
    fn advance_drains(&mut self, now: u64, actions: &mut Vec<Action>) {
        let draining: Vec<(String, String, Option<u64>)> = self
            .admin
            .values()
            .filter(|r| r.state == AdminState::Draining)
            .map(|r| (r.app.clone(), r.server.clone(), r.drain_deadline_ms))
            .collect();
        for (app, server, deadline) in draining {
            let open: Vec<SessionId> = self
                .sessions
                .iter()
                .filter(|(_, x)| x.app == app && x.server == server)
                .map(|(id, _)| *id)
                .collect();
            if open.is_empty() {
                if let Some(r) = self.admin.get_mut(&(app.clone(), server.clone())) {
                    r.state = AdminState::Disabled;
                    r.drain_deadline_ms = None;
                    let by = r.by.clone();
                    self.admin_seq += 1;
                    self.log(
                        now,
                        "admin",
                        &app,
                        &server,
                        format!("drained (by {by}): disabled"),
                    );
                }
                continue;
            }
            if deadline.is_some_and(|d| now >= d) {
                for id in open {
                    let Some(sess) = self.sessions.get_mut(&id) else {
                        continue;
                    };
                    if sess.close_requested {
                        continue;
                    }
                    sess.close_requested = true;
                    actions.push(Action::CloseSession {
                        session: id,
                        reason: "drain timeout".into(),
                    });
                }
            }
        }
    }

    /// Desired registrations versus current ones.
    fn reconcile(&mut self, now: u64, actions: &mut Vec<Action>) {
        let mut want: BTreeMap<u32, (String, PoolElementInfo)> = BTreeMap::new();
        let life_default =
            i32::try_from(self.cfg.detection.registration_life_ms).unwrap_or(i32::MAX);
        for a in &self.apps {
            match self.cfg.mode {
                Mode::Broker => {
                    let (addr, tu) = match (a.cfg.asap_listen, a.cfg.advertise.or(a.cfg.listen)) {
                        (Some(asap), _) => (asap, TransportUse::DataPlusControl),
                        (None, Some(plain)) => (plain, TransportUse::DataOnly),
                        (None, None) => continue,
                    };
                    let id = stable_pe_id(&[&a.cfg.name, "proxy", &addr.to_string()]);
                    let mut p = pe(id, life_default, addr, Policy::RoundRobin);
                    p.user_transport = if a.cfg.asap_listen.is_some()
                        && a.cfg.asap_transport == asap::transport::TransportKind::Sctp
                    {
                        TransportParameter::Sctp {
                            port: addr.port(),
                            transport_use: tu,
                            addresses: vec![addr.ip()],
                        }
                    } else {
                        TransportParameter::Tcp {
                            port: addr.port(),
                            transport_use: tu,
                            address: addr.ip(),
                        }
                    };
                    want.insert(id, (a.cfg.pool_handle.clone(), p));
                }
                Mode::Registration => {
                    let n = a.servers.len();
                    for (i, s) in a.servers.iter().enumerate() {
                        if !s.selectable {
                            continue;
                        }
                        let life = match (s.cfg.lifetime_s, s.running_since) {
                            (Some(l), Some(since)) => {
                                let end = since.saturating_add(l.saturating_mul(1000));
                                i32::try_from(end.saturating_sub(now))
                                    .unwrap_or(i32::MAX)
                                    .min(life_default)
                            }
                            _ => life_default,
                        };
                        let policy = rfc_policy(a.cfg.policy, i, n, &candidate(s), s.weight);
                        want.insert(
                            s.pe_id,
                            (
                                a.cfg.pool_handle.clone(),
                                pe(s.pe_id, life, s.cfg.service_addr(), policy),
                            ),
                        );
                    }
                }
            }
        }
        if self.standby {
            want.clear();
        }
        let gone: Vec<u32> = self
            .registered
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for id in gone {
            if let Some((h, _)) = self.registered.remove(&id) {
                actions.push(Action::Deregister {
                    pool_handle: h,
                    pe_id: id,
                });
            }
        }
        for (id, (h, p)) in want {
            let send = match self.registered.get(&id) {
                None => true,
                Some((oh, op)) => oh != &h || registration_differs(op, &p),
            };
            if send {
                actions.push(Action::Register {
                    pool_handle: h.clone(),
                    pe: p.clone(),
                });
                self.registered.insert(id, (h, p));
            }
        }
    }

    /// The live pooling table (seed 003 [30]) with the details behind it.
    pub fn status(&self, now: u64) -> Status {
        Status {
            mode: self.cfg.mode,
            now_ms: now,
            applications: self
                .apps
                .iter()
                .map(|a| AppView {
                    name: a.cfg.name.clone(),
                    pool_handle: a.cfg.pool_handle.clone(),
                    policy: a.cfg.policy.name().to_string(),
                    policy_label: a.cfg.policy.table_label().to_string(),
                    listen: a.cfg.listen,
                    servers: a
                        .servers
                        .iter()
                        .map(|s| ServerView {
                            name: s.name.clone(),
                            address: s.cfg.service_addr(),
                            daemon: s.cfg.daemon.clone(),
                            running: matches!(s.health, Health::Running | Health::Suspect),
                            health: s.health,
                            selectable: s.selectable,
                            reason: s.reason.clone(),
                            load: s.load,
                            apps_running: s.apps_running,
                            active_sessions: s.active,
                            assigned_total: s.assigned,
                            pe_id: s.pe_id,
                            registered: self.registered.contains_key(&s.pe_id),
                            joined: s.joined,
                            running_since_ms: s.running_since,
                            registrar_state: None,
                            admin: self
                                .admin
                                .get(&(a.cfg.name.clone(), s.name.clone()))
                                .cloned(),
                            lifetime_remaining_ms: match (s.cfg.lifetime_s, s.running_since) {
                                (Some(l), Some(since)) => Some(
                                    since
                                        .saturating_add(l.saturating_mul(1000))
                                        .saturating_sub(now),
                                ),
                                _ => None,
                            },
                        })
                        .collect(),
                })
                .collect(),
            daemons: self
                .daemons
                .iter()
                .map(|(id, d)| DaemonView {
                    id: id.clone(),
                    connected: d.connected,
                    synced: d.table.synced,
                    instance: d.table.hello.instance,
                    state_seq: d.table.state_seq,
                    last_frame_age_ms: now.saturating_sub(d.last_frame_ms),
                    connections: d.connections,
                    config_version: d.table.config_version,
                    last_push: d.last_push.clone(),
                })
                .collect(),
            sessions: self.sessions.len(),
            registrations: self.registered.len(),
            events: self.events.iter().cloned().collect(),
            event_seq: self.event_seq,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix milliseconds (proleptic Gregorian; the calendar
/// arithmetic is jiff's, as for the maintenance windows). Beyond jiff's range (after
/// 9999) the raw milliseconds.
pub fn utc_time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || format!("{ms} ms UTC"),
            |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Unknown => "unknown",
        Health::Running => "running",
        Health::NotRunning => "not-running",
        Health::Suspect => "suspect",
        Health::Down => "down",
    }
}

fn registration_differs(old: &PoolElementInfo, new: &PoolElementInfo) -> bool {
    if old.user_transport != new.user_transport {
        return true;
    }
    match (old.policy.load(), new.policy.load()) {
        (Some(a), Some(b)) => a.abs_diff(b) >= LOAD_REREGISTER_STEP,
        _ => old.policy != new.policy,
    }
}

fn pe(id: u32, life: i32, addr: SocketAddr, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: life,
        user_transport: TransportParameter::Tcp {
            port: addr.port(),
            transport_use: TransportUse::DataOnly,
            address: addr.ip(),
        },
        policy,
        asap_transport: None,
    }
}

/// Load of a server in 0..=1 from its daemon report: established connections over the
/// `capacity` hint when both are reported, else CPU (% of one CPU / 100).
fn load_of(st: &AppStatus) -> f64 {
    let conns: u32 = st.ports.iter().filter_map(|p| p.connections).sum();
    let has_conns = st.ports.iter().any(|p| p.connections.is_some());
    match st.load_hints.capacity {
        Some(cap) if cap > 0 && has_conns => (f64::from(conns) / f64::from(cap)).min(1.0),
        _ => (f64::from(st.cpu_percent) / 100.0).clamp(0.0, 1.0),
    }
}

/// The check run when an application configures none: a TCP connect with
/// `detection.probe_timeout_ms`, every `probe_interval_ms`, rise and fall 1.
fn implicit_check(d: &crate::config::Detection) -> Check {
    Check::plain(
        crate::config::CheckKind::Tcp,
        d.probe_interval_ms,
        d.probe_timeout_ms,
    )
}

impl ServerState {
    /// Starts a new check epoch: results of older checks and connects are discarded.
    fn new_epoch(&mut self) {
        self.epoch += 1;
        self.check_in_flight = false;
        self.passes = 0;
        self.fails = 0;
    }
}

fn candidate(s: &ServerState) -> Candidate {
    Candidate {
        available: s.selectable,
        load: s.load,
        active_sessions: s.active,
        assigned_total: s.assigned,
        apps_running: s.apps_running,
    }
}

fn new_app(a: &Application, proxy_id: Option<&str>) -> AppState {
    AppState {
        cfg: a.clone(),
        selector: a.policy.selector(),
        servers: a
            .servers
            .iter()
            .map(|s| new_server(&a.name, s, proxy_id))
            .collect(),
    }
}

fn new_server(app: &str, s: &crate::config::Server, proxy_id: Option<&str>) -> ServerState {
    let name = s.display_name();
    ServerState {
        pe_id: legacy_pe_id(proxy_id, app, &name),
        name,
        windows: s.windows(),
        cfg: s.clone(),
        health: Health::Unknown,
        reason: "no daemon report".into(),
        selectable: false,
        keeps_sessions: false,
        suspect_since: None,
        probe_ok: None,
        last_probe_sent: None,
        epoch: 0,
        check_in_flight: false,
        passes: 0,
        fails: 0,
        running_since: None,
        last_pids: Vec::new(),
        last_running: false,
        load: 0.0,
        apps_running: 0,
        weight: 1,
        active: 0,
        assigned: 0,
        joined: false,
    }
}

// ---- pooling table fed by the daemons (issue 19 item 2), proxy identity (item 7),
// ---- lifetime from the process start (item 8)

/// Mode A: a registration the proxy wants but the registrar has not accepted, for the
/// text table (` [registrar: rejected: ...]`). Accepted registrations add nothing, so the
/// table keeps the seed's shape.
fn registrar_note(s: &ServerView) -> String {
    use crate::registrar::PeRegState;
    match (&s.registrar_state, s.registered) {
        (Some(r), true) if r.state == PeRegState::Rejected => format!(
            " [registrar: rejected {} times: {}]",
            r.rejections,
            r.error.as_deref().unwrap_or("no cause given")
        ),
        (Some(r), true) if r.state == PeRegState::Pending => {
            " [registrar: not accepted yet]".to_string()
        }
        _ => String::new(),
    }
}

/// The mode A PE identifier of (application, server): FNV-1a(application, server), with
/// this proxy's `proxy_id` as a third part when set, so two proxies fronting the same
/// legacy servers never register the same PE (issue 19 item 7).
pub fn legacy_pe_id(proxy_id: Option<&str>, app: &str, server: &str) -> u32 {
    match proxy_id {
        Some(p) => stable_pe_id(&[app, server, p]),
        None => stable_pe_id(&[app, server]),
    }
}

/// The lifetime (seed 003 [35]) counts from the legacy process's own start time when the
/// daemon reports it (issue 19 item 8): a proxy restart does not start a new work cycle.
fn lifetime_origin_from_report(s: &mut ServerState, st: &AppStatus) {
    if let Some(t) = st.started_at_ms.filter(|_| st.running) {
        s.running_since = Some(t);
    }
}

/// Joined servers of the previous configuration stay over a reload while the application
/// still has `[application.join]` (the next evaluation drops those no longer allowed).
fn keep_joined(fresh: &mut AppState, prev: &mut AppState, proxy_id: Option<&str>) {
    let Some(join) = fresh.cfg.join.clone() else {
        return;
    };
    let joined: Vec<ServerState> = prev
        .servers
        .drain(..)
        .filter(|p| p.joined && !fresh.servers.iter().any(|s| s.name == p.name))
        .collect();
    if joined.is_empty() {
        return;
    }
    for mut j in joined {
        j.pe_id = legacy_pe_id(proxy_id, &fresh.cfg.name, &j.name);
        // The new `[application.join]` settings apply to the servers already joined.
        j.cfg.daemon_app = join.daemon_app.clone();
        j.cfg.lifetime_s = join.lifetime_s;
        j.cfg.maintenance = join.maintenance.clone();
        j.cfg.weight = join.weight;
        j.windows = j.cfg.windows();
        fresh.servers.push(j);
    }
    fresh.selector = fresh.cfg.policy.selector();
}

impl Core {
    /// A daemon connected from `peer` (the default address of the servers it joins; see
    /// [`crate::config::Join`]) and sent its Hello; see [`Core::daemon_connected`].
    pub fn daemon_connected_from(&mut self, now: u64, hello: &Hello, peer: IpAddr) -> Vec<Action> {
        self.daemon_peers.insert(hello.daemon_id.clone(), peer);
        self.daemon_connected(now, hello)
    }

    /// Brings the joined servers in line with the daemons' reports (issue 19 item 2): a
    /// listed daemon reporting the application joins, one whose report no longer has it
    /// leaves, a changed address or port is taken over. Daemons not listed never join.
    fn sync_joined(&mut self, now: u64) {
        let mut logs: Vec<(String, String, String, String)> = Vec::new();
        let proxy_id = self.cfg.proxy_id.clone();
        for a in &mut self.apps {
            let app_name = a.cfg.name.clone();
            let Some(join) = a.cfg.join.clone() else {
                continue;
            };
            let report_name = join.app_name(&a.cfg).to_string();
            // What the daemons report now: daemon -> (address, port).
            let mut want: BTreeMap<String, SocketAddr> = BTreeMap::new();
            for (id, d) in &self.daemons {
                let Some(st) = d.table.apps.get(&report_name) else {
                    continue;
                };
                let key = (app_name.clone(), id.clone());
                if !join.daemons.contains(id) {
                    if self.join_refused.insert(key) {
                        logs.push((
                            "join-refused".into(),
                            app_name.clone(),
                            id.clone(),
                            "daemon not in the application's join list".into(),
                        ));
                    }
                    continue;
                }
                // A declared server of the same daemon and application wins.
                if a.servers.iter().any(|s| {
                    !s.joined
                        && s.cfg.daemon == *id
                        && s.cfg.daemon_app.as_deref().unwrap_or(&app_name) == report_name
                }) {
                    continue;
                }
                let host = st.host.or_else(|| self.daemon_peers.get(id).copied());
                let port = st.ports.first().map(|p| p.port).filter(|p| *p != 0);
                match (host, port) {
                    (Some(h), Some(p)) => {
                        self.join_refused.remove(&key);
                        want.insert(id.clone(), SocketAddr::new(h, p));
                    }
                    _ => {
                        if self.join_refused.insert(key) {
                            logs.push((
                                "join-refused".into(),
                                app_name.clone(),
                                id.clone(),
                                "the daemon reports no port (or no address) for the application"
                                    .into(),
                            ));
                        }
                    }
                }
            }
            let before = a.servers.len();
            let mut changed = false;
            a.servers.retain(|s| {
                let keep = !s.joined || want.contains_key(&s.name);
                if !keep {
                    logs.push((
                        "server-left".into(),
                        app_name.clone(),
                        s.name.clone(),
                        "no longer in its daemon's report".into(),
                    ));
                }
                keep
            });
            changed |= a.servers.len() != before;
            for (daemon, addr) in want {
                if let Some(s) = a.servers.iter_mut().find(|s| s.joined && s.name == daemon) {
                    if s.cfg.service_addr() != addr {
                        logs.push((
                            "server-moved".into(),
                            app_name.clone(),
                            daemon.clone(),
                            format!("{} -> {addr}", s.cfg.service_addr()),
                        ));
                        s.cfg.address = addr.ip();
                        s.cfg.port = addr.port();
                    }
                    continue;
                }
                if a.servers.iter().any(|s| s.name == daemon) {
                    // A declared server already has this name.
                    continue;
                }
                let cfg = crate::config::Server {
                    name: Some(daemon.clone()),
                    address: addr.ip(),
                    port: addr.port(),
                    daemon: daemon.clone(),
                    daemon_app: join.daemon_app.clone(),
                    lifetime_s: join.lifetime_s,
                    maintenance: join.maintenance.clone(),
                    weight: join.weight,
                };
                let mut st = new_server(&app_name, &cfg, proxy_id.as_deref());
                st.joined = true;
                a.servers.push(st);
                changed = true;
                logs.push((
                    "server-joined".into(),
                    app_name.clone(),
                    daemon.clone(),
                    addr.to_string(),
                ));
            }
            if changed {
                // Declared servers first in file order, then the joined ones by name, so
                // the table does not depend on which daemon reported first.
                a.servers.sort_by(|x, y| match (x.joined, y.joined) {
                    (true, true) => x.name.cmp(&y.name),
                    (a, b) => a.cmp(&b),
                });
                // Policies keep positions by index.
                a.selector = a.cfg.policy.selector();
            }
        }
        for (kind, app, subject, detail) in logs {
            self.log(now, &kind, &app, &subject, detail);
        }
    }
}

/// The proxy's state as `proxy-pe status --json` prints it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Status {
    /// Mode in force.
    pub mode: Mode,
    /// Time of the snapshot (Unix ms).
    pub now_ms: u64,
    /// The pooling table.
    pub applications: Vec<AppView>,
    /// Connected and remembered daemons.
    pub daemons: Vec<DaemonView>,
    /// Open sessions (mode B).
    pub sessions: usize,
    /// PEs registered (or being registered) at the registrar.
    pub registrations: usize,
    /// Recent events, oldest first.
    pub events: Vec<CoreEvent>,
    /// Number of events ever logged.
    pub event_seq: u64,
}

/// One application of the pooling table.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AppView {
    /// Application name.
    pub name: String,
    /// Pool handle.
    pub pool_handle: String,
    /// Policy configuration name.
    pub policy: String,
    /// Policy label as in seed 003 [30].
    pub policy_label: String,
    /// Mode B relay listener.
    pub listen: Option<SocketAddr>,
    /// Servers in configuration order.
    pub servers: Vec<ServerView>,
}

/// One server of an application.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ServerView {
    /// Table name.
    pub name: String,
    /// Service address.
    pub address: SocketAddr,
    /// Daemon identity.
    pub daemon: String,
    /// "is running" in the seed's table.
    pub running: bool,
    /// Declared health.
    pub health: Health,
    /// May be given sessions / is registered now.
    pub selectable: bool,
    /// Why not selectable.
    pub reason: String,
    /// Load 0..=1.
    pub load: f64,
    /// Applications running on the host.
    pub apps_running: u32,
    /// Sessions open on it.
    pub active_sessions: u32,
    /// Sessions ever assigned.
    pub assigned_total: u64,
    /// Stable PE identifier (mode A).
    pub pe_id: u32,
    /// Registered at the registrar (mode A).
    pub registered: bool,
    /// Remaining lifetime.
    pub lifetime_remaining_ms: Option<u64>,
    /// Operator state, who set it and when (None: never set, enabled).
    #[serde(default)]
    pub admin: Option<AdminRecord>,
    /// Joined from its daemon's report (`[application.join]`), not declared in the file.
    #[serde(default)]
    pub joined: bool,
    /// Start of the current work cycle (lifetime origin), Unix ms: the legacy process's
    /// own start time when its daemon reports it, else when the proxy saw it start.
    #[serde(default)]
    pub running_since_ms: Option<u64>,
    /// What the registrar answered for this PE (mode A), filled in by the driver from the
    /// registrar client: `registered` above is what the proxy wants.
    #[serde(default)]
    pub registrar_state: Option<crate::registrar::PeRegistration>,
}

impl ServerView {
    /// The operator state (enabled when never set).
    pub fn admin_state(&self) -> AdminState {
        self.admin.as_ref().map_or(AdminState::Enabled, |r| r.state)
    }
}

/// One daemon.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DaemonView {
    /// Daemon identity.
    pub id: String,
    /// Connection open.
    pub connected: bool,
    /// Snapshot received on this connection.
    pub synced: bool,
    /// Daemon process instance.
    pub instance: u64,
    /// Last state sequence applied.
    pub state_seq: u64,
    /// Age of the last frame.
    pub last_frame_age_ms: u64,
    /// Connections accepted from it so far.
    pub connections: u64,
    /// Configuration version in force at the daemon (Hello, heartbeats, deltas, acks).
    #[serde(default)]
    pub config_version: u64,
    /// The latest configuration push to it (`proxy-pe push-config`).
    #[serde(default)]
    pub last_push: Option<PushView>,
}

impl Status {
    /// The pooling table in the shape of seed 003 [30].
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        for a in &self.applications {
            out.push_str(&format!("Application '{}'\n", a.name));
            for s in &a.servers {
                let state = if s.running {
                    "is running"
                } else {
                    "is not running"
                };
                let extra =
                    if let Some(r) = s.admin.as_ref().filter(|r| r.state != AdminState::Enabled) {
                        let mut t = format!(
                            " ({} by {} at {}",
                            r.state.name(),
                            r.by,
                            utc_time(r.since_ms)
                        );
                        if let Some(d) = r.drain_deadline_ms {
                            t += &format!(", sessions closed at {}", utc_time(d));
                        }
                        if s.active_sessions > 0 {
                            t += &format!(", {} sessions open", s.active_sessions);
                        }
                        if s.running && !s.reason.is_empty() {
                            t += &format!("; {}", s.reason);
                        }
                        t + ")"
                    } else if s.running && !s.selectable {
                        format!(" ({})", s.reason)
                    } else if s.health == Health::Suspect {
                        if s.reason.is_empty() {
                            " (suspect: daemon silent)".to_string()
                        } else {
                            format!(" (suspect: {})", s.reason)
                        }
                    } else {
                        String::new()
                    };
                out.push_str(&format!(
                    "{} {}{}{}\n",
                    s.name,
                    state,
                    extra,
                    registrar_note(s)
                ));
            }
            out.push_str(&a.policy_label);
            out.push_str("\n\n");
        }
        out
    }

    /// Daemon configuration versions and pushes, one line per daemon that was pushed to
    /// (empty when no push was made, so the plain table stays in the seed's shape).
    pub fn render_pushes(&self) -> String {
        let mut out = String::new();
        for d in &self.daemons {
            let Some(p) = &d.last_push else { continue };
            if out.is_empty() {
                out.push_str("Daemon configuration\n");
            }
            let outcome = match p.state {
                PushState::Pending => "pending".to_string(),
                PushState::Accepted => "acknowledged".to_string(),
                PushState::Rejected => format!(
                    "rejected: {}",
                    p.error.as_deref().unwrap_or("no reason given")
                ),
                PushState::Unanswered => {
                    format!("unanswered: {}", p.error.as_deref().unwrap_or("no answer"))
                }
            };
            out.push_str(&format!(
                "{} version {} in force; push of version {} {}\n",
                d.id, d.config_version, p.version, outcome
            ));
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests;
