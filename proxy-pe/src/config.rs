//! The pooling configuration (seed 003 [29]–[31]): per application a pool handle, a
//! selection policy and the legacy servers offering it, plus the registrar list and the
//! listener addresses. TOML, parsed with serde and validated as a whole; an invalid file is
//! rejected with `file:line:column: key: reason` and the running configuration is kept.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::PolicyKind;

/// A configuration error, precise enough to fix the file without guessing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}{}", read_hint(.source))]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (unknown key, wrong type, missing field).
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// File name or other origin.
        origin: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A semantically invalid value.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        /// File name or other origin.
        origin: String,
        /// Dotted key path, e.g. `application[1].server[0].port`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// How the proxy brings the legacy servers into the pool (seed 003 \[27\]–\[28\]: the proxy generates the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Mode B: the proxy registers itself as the PE of each application pool and relays
    /// each session to a legacy server chosen by its own policy (seed 003 [33]–[35]).
    #[default]
    Broker,
    /// Mode A: each running (application, server) is registered at the registrar as a PE
    /// with the legacy server's own transport address (seed 003 [26]–[29]).
    Registration,
}

/// The whole proxy configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker (mode B, default) or registration proxy (mode A).
    #[serde(default)]
    pub mode: Mode,
    /// Where legacy daemons connect (legacy-daemon PROTOCOL.md). Default `0.0.0.0:7100`.
    #[serde(default = "default_daemon_listen")]
    pub daemon_listen: SocketAddr,
    /// Local control port queried by `proxy-pe status`. Default `127.0.0.1:7199`.
    #[serde(default = "default_control_listen")]
    pub control_listen: SocketAddr,
    /// Local control socket (Unix domain, mode 0600 in an owner-only directory) for the
    /// operator commands `disable`/`enable`/`drain`/`maintenance` and for `status` and
    /// `push-config` (issue 19 item 1). Relative paths are relative to this file's
    /// directory. Default `/run/proxy-pe/control.sock`. Changes only on restart.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// Where the operator states of the servers are kept across restarts (JSON, written
    /// atomically: temporary file, fsync, rename). Relative paths are relative to this
    /// file's directory. Default `/var/lib/proxy-pe/admin-state.json`. Changes only on
    /// restart.
    #[serde(default = "default_admin_state_file")]
    pub admin_state_file: PathBuf,
    /// ENRP servers (registrars), tried in order; ASAP over TCP. May be empty (no
    /// registration; mode B still relays on its listeners).
    #[serde(default)]
    pub registrars: Vec<SocketAddr>,
    /// Transport of the ASAP association to the registrars: `auto` (kernel SCTP if
    /// available, else TCP; the default), `sctp` (RFC 5352, needed for rsplib's registrar)
    /// or `tcp`.
    #[serde(default)]
    pub registrar_transport: asap::transport::TransportKind,
    /// Failure detection timers.
    #[serde(default)]
    pub detection: Detection,
    /// The daemon link: authentication mode and its timers (legacy-daemon PROTOCOL.md).
    #[serde(default)]
    pub daemon_link: DaemonLink,
    /// The daemons that may connect, with their pre-shared keys (`[[daemon]]` tables).
    #[serde(default, rename = "daemon")]
    pub daemons: Vec<DaemonEntry>,
    /// The applications (pools).
    #[serde(default, rename = "application")]
    pub applications: Vec<Application>,
    /// Mode A with several proxies (issue 19 item 7): this proxy's identity, part of every
    /// legacy PE identifier it registers (FNV-1a(application, server, proxy_id)). Two
    /// proxies fronting the same legacy servers with different `proxy_id`s register
    /// distinct PEs, so they never overwrite each other's registrations, and a stopped,
    /// restarted or hung proxy takes only its own PEs out of the pool. Unset: the ids of a
    /// single proxy, FNV-1a(application, server), as before.
    #[serde(default)]
    pub proxy_id: Option<String>,
    /// Active/standby pair (issue 19 item 7, `[ha]`): only one of two proxies fronting the
    /// same servers registers; the other takes over when it stops answering
    /// ([`crate::ha`]). Needs `proxy_id` (distinct in the two proxies). Unset: this proxy
    /// always registers, as before.
    #[serde(default)]
    pub ha: Option<HaConfig>,
}

/// `[ha]`: the active/standby pair ([`crate::ha`], proxy-pe README "Active/standby
/// pair"). Defaults in `proxy-pe run --help`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// The peer proxy's control port (its `control_listen`; read-only `status`).
    pub peer: SocketAddr,
    /// Tie-break when both are standby or both active: the higher wins (default 100);
    /// equal: the smaller `proxy_id`.
    #[serde(default = "default_ha_priority")]
    pub priority: u32,
    /// Interval of the peer's status queries, ms (default 200).
    #[serde(default = "default_ha_poll")]
    pub poll_ms: u64,
    /// The peer counts as dead after this long without an answer; a standby then takes
    /// over, ms (default 1000).
    #[serde(default = "default_ha_dead_after")]
    pub dead_after_ms: u64,
    /// `proxy-pe restart`: the longest wait for the peer to have every PE accepted before
    /// this proxy exits anyway, ms (default 10000).
    #[serde(default = "default_ha_handover_timeout")]
    pub handover_timeout_ms: u64,
}

fn default_ha_priority() -> u32 {
    100
}
fn default_ha_poll() -> u64 {
    200
}
fn default_ha_dead_after() -> u64 {
    1_000
}
fn default_ha_handover_timeout() -> u64 {
    10_000
}

/// Failure-detection settings (seed 002's two-channel rule, FIG. 7A: down only if both channels say so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detection {
    /// A daemon is stale after this many heartbeat intervals without a frame (PROTOCOL.md
    /// §2 recommends 3).
    pub heartbeat_miss_factor: u32,
    /// How long a suspect server (daemon silent, service port still answering) stays
    /// selectable before it is declared down anyway, ms.
    pub suspect_grace_ms: u64,
    /// Interval between service-port probes of suspect servers, ms.
    pub probe_interval_ms: u64,
    /// TCP connect timeout of a probe, ms.
    pub probe_timeout_ms: u64,
    /// Registration life sent in mode A when the server has no lifetime, ms.
    pub registration_life_ms: u32,
    /// Connect timeout of the mode B relay towards a legacy server, ms. A server that does
    /// not accept within it is skipped (service-channel failure) and the session goes to
    /// another server before any byte was exchanged.
    pub connect_timeout_ms: u64,
    /// When a server closes a session while its client still talks, the relay probes the
    /// service port twice this far apart to tell a failure from an orderly close, ms.
    pub recheck_ms: u64,
    /// Period of the core's timer tick (freshness, grace periods, check scheduling,
    /// lifetimes, windows, drains), ms.
    pub tick_ms: u64,
    /// Period of the configuration-file change check, ms.
    pub config_watch_ms: u64,
    /// Whether a plain TCP connect may vouch for a server whose daemon went silent
    /// (connection open, no frame within `heartbeat_miss_factor` heartbeats). `false`
    /// (default, issue 19 item 4): only an `[application.check]` that a frozen process
    /// fails ([`Check::vouches_for_the_process`]) keeps such a server selectable; without
    /// one it leaves selection at once (not declared down: open sessions stay), because a
    /// frozen process still completes connects through its listen backlog. `true`: the
    /// behaviour before, selectable for up to `suspect_grace_ms`. A daemon that
    /// *disconnected* (its host's kernel closed the connection: a daemon restart) is not
    /// silence: its servers stay selectable while the TCP probe passes, as before.
    pub tcp_probe_vouches: bool,
}

/// Defaults of `[detection]` (one source of truth: the README table and `--help` print
/// these).
impl Default for Detection {
    fn default() -> Self {
        Detection {
            heartbeat_miss_factor: 3,
            suspect_grace_ms: 30_000,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 1_000,
            registration_life_ms: 300_000,
            connect_timeout_ms: 1_000,
            recheck_ms: 250,
            tick_ms: 100,
            config_watch_ms: 1_000,
            tcp_probe_vouches: false,
        }
    }
}

/// The failure-detection timers and check settings of the configuration file with their
/// defaults, for `proxy-pe run --help` (issue 19 item 3: every timer is configuration and
/// its default is shown).
pub fn timers_help() -> String {
    let d = Detection::default();
    let l = DaemonLink::default();
    format!(
        "Timers in the configuration file (defaults):
  [detection] heartbeat_miss_factor = {}   daemon silent after this many heartbeat intervals
  [detection] suspect_grace_ms = {}   daemon silent, check passing: selectable this long
  [detection] probe_interval_ms = {}   TCP probe interval when no [application.check]
  [detection] probe_timeout_ms = {}   TCP probe timeout when no [application.check]
  [detection] connect_timeout_ms = {}   relay connect timeout towards a legacy server
  [detection] recheck_ms = {}   pause between the two probes after a server closed mid-session
  [detection] tick_ms = {}   core timer tick
  [detection] config_watch_ms = {}   configuration file change check
  [detection] registration_life_ms = {}   mode A registration life
  [detection] tcp_probe_vouches = {}   a TCP connect keeps a server with a silent daemon selectable
  [daemon_link] handshake_timeout_ms = {}, push_write_timeout_ms = {}, push_ack_timeout_ms = {}
  [daemon_link] min_heartbeat_ms = {}, max_heartbeat_ms = {}
  [application.check] type = \"tcp\"|\"http\"|\"command\", interval_ms = {}, timeout_ms = {}, rise = {}, fall = {}
  [ha] peer = ADDR:PORT (none), priority = 100, poll_ms = 200, dead_after_ms = 1000, handover_timeout_ms = 10000
  [[application]] on_server_failure = \"close\"|\"reconnect\" (default close), replay_lines = 0, discard_lines = 0",
        d.heartbeat_miss_factor,
        d.suspect_grace_ms,
        d.probe_interval_ms,
        d.probe_timeout_ms,
        d.connect_timeout_ms,
        d.recheck_ms,
        d.tick_ms,
        d.config_watch_ms,
        d.registration_life_ms,
        d.tcp_probe_vouches,
        l.handshake_timeout_ms,
        l.push_write_timeout_ms,
        l.push_ack_timeout_ms,
        l.min_heartbeat_ms,
        l.max_heartbeat_ms,
        default_check_interval(),
        default_check_timeout(),
        default_rise_fall(),
        default_rise_fall(),
    )
}

/// What a health check does (`[application.check] type`, issue 19 item 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// TCP connect; with `send` and/or `expect`: write `send`, then read until the text
    /// `expect` has arrived (a banner or a reply). A frozen process whose port still
    /// accepts fails it when `expect` is given.
    #[default]
    Tcp,
    /// HTTP/1.0 `GET path`; the status code must equal `expect_status`.
    Http,
    /// Run `command` (argv, no shell) on the proxy host; exit status 0 is a pass. The
    /// server is passed in the environment (`PROXY_PE_CHECK_ADDR`, `PROXY_PE_CHECK_PORT`,
    /// `PROXY_PE_CHECK_APP`, `PROXY_PE_CHECK_SERVER`), like haproxy's external check.
    Command,
}

/// `[application.check]`: an application-level health check run by the proxy against every
/// server of the application, with haproxy's `check inter rise fall` semantics: the check
/// runs every `interval_ms` while the server's daemon reports the application running (or
/// is silent), each run must finish within `timeout_ms`, `fall` consecutive failures take
/// the server out of selection and `rise` consecutive passes put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// `tcp` (default), `http` or `command`.
    #[serde(default, rename = "type")]
    pub kind: CheckKind,
    /// Time between the starts of two checks, ms (default 500).
    #[serde(default = "default_check_interval")]
    pub interval_ms: u64,
    /// Time one check may take, ms (default 500).
    #[serde(default = "default_check_timeout")]
    pub timeout_ms: u64,
    /// Consecutive passes that put a failed server back into selection (default 2).
    #[serde(default = "default_rise_fall")]
    pub rise: u32,
    /// Consecutive failures that take a server out of selection (default 2).
    #[serde(default = "default_rise_fall")]
    pub fall: u32,
    /// `tcp`: text written after the connect (escapes `\r`, `\n` as in TOML strings).
    #[serde(default)]
    pub send: Option<String>,
    /// `tcp`: text that must arrive (a banner, or the answer to `send`).
    #[serde(default)]
    pub expect: Option<String>,
    /// `http`: the path requested (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// `http`: the Host header (default: the server's address).
    #[serde(default)]
    pub host: Option<String>,
    /// `http`: the status code that passes (default 200).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// `command`: program and arguments.
    #[serde(default)]
    pub command: Vec<String>,
}

impl Check {
    /// A check of `kind` every `interval_ms`, each allowed `timeout_ms`, rise and fall 1,
    /// with nothing sent or expected beyond what the kind itself does.
    pub fn plain(kind: CheckKind, interval_ms: u64, timeout_ms: u64) -> Check {
        Check {
            kind,
            interval_ms,
            timeout_ms,
            rise: 1,
            fall: 1,
            send: None,
            expect: None,
            path: None,
            host: None,
            expect_status: None,
            command: Vec::new(),
        }
    }

    /// Whether a pass of this check shows that the process itself works, not only that
    /// its kernel completes connects: `tcp` with `expect`, `http` and `command` checks fail
    /// for a frozen process (SIGSTOP, D state); a `tcp` connect (with or without `send`)
    /// succeeds through the listen backlog (issue 19 item 4).
    pub fn vouches_for_the_process(&self) -> bool {
        match self.kind {
            CheckKind::Tcp => self.expect.is_some(),
            CheckKind::Http | CheckKind::Command => true,
        }
    }
}

fn default_check_interval() -> u64 {
    500
}
fn default_check_timeout() -> u64 {
    500
}
fn default_rise_fall() -> u32 {
    2
}

/// What happens to a session whose server fails mid-session (`on_server_failure`,
/// issue 19 item 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnServerFailure {
    /// The client's connection is closed; it reconnects through the pool and starts a new
    /// session (right for stateful protocols; the default).
    #[default]
    Close,
    /// The relay connects the live client stream to another server (seed 003 [35]),
    /// optionally replaying the client's first `replay_lines` lines and dropping the new
    /// server's first `discard_lines` lines (its greeting and its answer to the replayed
    /// login). Only right for protocols whose state is in that preamble or nowhere.
    Reconnect,
}

/// Upper bound of `replay_lines` and `discard_lines`.
pub const MAX_PREAMBLE_LINES: u32 = 16;
/// Upper bound of the recorded preamble, bytes (longer preambles are not replayed whole:
/// the session closes instead of reconnecting).
pub const MAX_PREAMBLE_BYTES: usize = 4096;

/// `[daemon_link]`: how daemons connect (legacy-daemon PROTOCOL.md §1.1, issue 13 item 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonLink {
    /// `hmac-sha256` (default: every daemon must be listed in a `[[daemon]]` table with its
    /// key) or `none` (plaintext; any peer may speak for any daemon; a warning at start).
    pub auth: legacy_protocol::auth::AuthMode,
    /// Time an accepted connection has to complete its handshake (auth and Hello), ms.
    /// Each connection's handshake runs in its own task, so a slow peer delays nobody.
    pub handshake_timeout_ms: u64,
    /// Connections whose handshake is still running at the same time; beyond this a new
    /// connection is closed at once (logged), so a flood of silent connections costs at most
    /// this many sockets for `handshake_timeout_ms` each.
    pub max_pending_handshakes: usize,
    /// Time the proxy waits for a configuration push to be written to a daemon, ms.
    pub push_write_timeout_ms: u64,
    /// Time the proxy waits for the daemon's `config_ack` before answering `push-config`
    /// that the push is unanswered, ms.
    pub push_ack_timeout_ms: u64,
    /// Bounds of the heartbeat interval a daemon announces in its Hello, ms: the proxy
    /// judges staleness with the announced interval clamped into `[min, max]`, so a daemon
    /// cannot make itself unexpirable by announcing hours.
    pub min_heartbeat_ms: u64,
    /// Upper bound, see `min_heartbeat_ms`.
    pub max_heartbeat_ms: u64,
}

impl Default for DaemonLink {
    fn default() -> Self {
        DaemonLink {
            auth: legacy_protocol::auth::AuthMode::HmacSha256,
            handshake_timeout_ms: 5_000,
            max_pending_handshakes: 256,
            push_write_timeout_ms: 5_000,
            push_ack_timeout_ms: 10_000,
            min_heartbeat_ms: 10,
            max_heartbeat_ms: 10_000,
        }
    }
}

/// `[[daemon]]`: a daemon that may connect, and its pre-shared key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonEntry {
    /// The daemon identity (its `daemon.id`).
    pub id: String,
    /// The key in hex (prefer `key_file`: a file readable by the proxy only).
    #[serde(default, skip_serializing)]
    pub key: Option<String>,
    /// File holding the key in hex (`legacy-daemon --gen-key`); a relative path is relative
    /// to the directory of the configuration file.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
}

/// One application: a pool of legacy servers (seed 003 [30] "Application 'A'").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Name shown in the pooling table; also the default daemon application name.
    pub name: String,
    /// ASAP pool handle (UTF-8 text).
    pub pool_handle: String,
    /// Selection policy (see [`PolicyKind`]).
    pub policy: PolicyKind,
    /// Mode B: where PUs connect (the relay listener), e.g. `127.0.0.1:8000`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Mode B: the address registered at the registrar for plain TCP sessions (default:
    /// `listen`). Ignored when `asap_listen` is set.
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Mode B: ASAP session endpoint (TCP with the `asap::session` framing) for
    /// RSerPool-aware pool users. When set, this is the PE registered for the pool (data
    /// plus control); `listen` then stays a fixed address for RSerPool-unaware clients.
    #[serde(default)]
    pub asap_listen: Option<SocketAddr>,
    /// Mode B: transport of the ASAP session endpoint `asap_listen`: `tcp` (the default,
    /// `asap::session` TCP framing) or `sctp` (kernel SCTP, RFC 5351 §2.5: what rsplib pool
    /// users such as `rspterminal` speak; data with any non-ASAP PPID is relayed). The
    /// registered User Transport parameter (RFC 5352 §5.1.1 / RFC 5354 §3.3) follows it.
    #[serde(default = "default_asap_transport")]
    pub asap_transport: asap::transport::TransportKind,
    /// The legacy servers offering the application (may be empty with `join`).
    #[serde(default, rename = "server")]
    pub servers: Vec<Server>,
    /// Application-level health check (optional; without it a server is probed with a TCP
    /// connect only when one channel already reports a failure).
    #[serde(default)]
    pub check: Option<Check>,
    /// Mode B: `close` (default) or `reconnect` when a session's server fails.
    #[serde(default)]
    pub on_server_failure: OnServerFailure,
    /// `reconnect`: the first this many lines the client sent (its greeting or login) are
    /// replayed to the new server before the rest of the stream (at most 16 lines and
    /// 4096 bytes). Default 0.
    #[serde(default)]
    pub replay_lines: u32,
    /// `reconnect`: this many lines of the new server's output (its greeting and its answers
    /// to the replayed lines) are dropped, so the client does not see them twice. Default 0.
    #[serde(default)]
    pub discard_lines: u32,
    /// Servers that join from the daemons' reports (issue 19 item 2, seed 003 \[29\]).
    #[serde(default)]
    pub join: Option<Join>,
}

/// `[application.join]`: the pooling table fed by the daemons (issue 19 item 2, seed 003
/// \[29\] and \[32\]). Every listed daemon that reports the application running-or-not
/// joins the pool as a server named after the daemon, at the address it reports
/// (`AppStatus::host`, else the address its connection comes from) and the first port it
/// reports. When the daemon's configuration drops the application (a `removed` delta or a
/// snapshot without it), the server leaves the table; when it is added back, it joins
/// again. A daemon not listed here never adds a server, whatever it reports. A server
/// declared with `[[application.server]]` for the same daemon takes precedence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// Daemon identities (authenticated with their `[[daemon]]` key) allowed to join.
    pub daemons: Vec<String>,
    /// Name of the application in the daemons' reports (default: the application name).
    #[serde(default)]
    pub daemon_app: Option<String>,
    /// Work cycle of every joined server (see [`Server::lifetime_s`]).
    #[serde(default)]
    pub lifetime_s: Option<u64>,
    /// Maintenance windows of every joined server (see [`Server::maintenance`]).
    #[serde(default)]
    pub maintenance: Vec<String>,
    /// Mode A weight of every joined server (default: the daemon's load hint).
    #[serde(default)]
    pub weight: Option<u32>,
}

impl Join {
    /// The application name the daemons report.
    pub fn app_name<'a>(&'a self, app: &'a Application) -> &'a str {
        self.daemon_app.as_deref().unwrap_or(&app.name)
    }
}

/// One legacy server offering an application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Name in the pooling table (seed 003 [30] "IP1"); default: `address:port`.
    #[serde(default)]
    pub name: Option<String>,
    /// The legacy server's address.
    pub address: IpAddr,
    /// The application's TCP port on that server.
    pub port: u16,
    /// Identity of the legacy daemon on that host (its `hello.daemon_id`).
    pub daemon: String,
    /// Name of the application in that daemon's configuration (default: the application
    /// name).
    #[serde(default)]
    pub daemon_app: Option<String>,
    /// Work cycle (seed 003 [35]): seconds the server stays selectable after its
    /// application (re)starts; after that it is expired until the application restarts.
    #[serde(default)]
    pub lifetime_s: Option<u64>,
    /// Scheduled maintenance windows (drain at the start): `"daily HH:MM-HH:MM [TZ]"`,
    /// `"Sun 02:00-04:00 Europe/Berlin"`, `"cron M H DOM MON DOW DURATION [TZ]"` or
    /// `"FROM-TO"` in Unix seconds; see [`crate::window`].
    #[serde(default)]
    pub maintenance: Vec<String>,
    /// Mode A weight / priority for the RFC 5356 weighted and priority policies.
    #[serde(default)]
    pub weight: Option<u32>,
}

pub use crate::window::Window;

fn default_daemon_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7100))
}

fn default_asap_transport() -> asap::transport::TransportKind {
    asap::transport::TransportKind::Tcp
}

/// Default of `control_socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/proxy-pe/control.sock";

fn default_control_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}

fn default_admin_state_file() -> PathBuf {
    PathBuf::from("/var/lib/proxy-pe/admin-state.json")
}

fn default_control_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7199))
}

impl Server {
    /// The name shown in the pooling table.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| SocketAddr::new(self.address, self.port).to_string())
    }

    /// The application name in the daemon's reports.
    pub fn daemon_app_name<'a>(&'a self, app: &'a Application) -> &'a str {
        self.daemon_app.as_deref().unwrap_or(&app.name)
    }

    /// The service address.
    pub fn service_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Parsed maintenance windows (validated by [`Config::parse`]).
    pub fn windows(&self) -> Vec<Window> {
        self.maintenance
            .iter()
            .filter_map(|w| Window::parse(w).ok())
            .collect()
    }
}

impl Config {
    /// Reads and validates a file, including the daemons' key files.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let cfg = Config::parse(&text, &path.display().to_string())?;
        cfg.daemon_keys(path)?;
        Ok(cfg)
    }

    /// The daemons allowed to connect and their keys; `config_path` is the file the
    /// configuration came from (relative `key_file`s are relative to its directory).
    pub fn daemon_keys(
        &self,
        config_path: &Path,
    ) -> Result<legacy_protocol::link::DaemonKeys, ConfigError> {
        use legacy_protocol::auth::{AuthMode, Key};
        if self.daemon_link.auth == AuthMode::None {
            return Ok(legacy_protocol::link::DaemonKeys::plaintext());
        }
        let base = config_path.parent().unwrap_or(Path::new("."));
        let mut keys = Vec::new();
        for (i, d) in self.daemons.iter().enumerate() {
            let key = match (&d.key, &d.key_file) {
                (Some(k), _) => Key::from_hex(k).map_err(|e| e.to_string()),
                (None, Some(f)) => Key::load(&base.join(f)).map_err(|e| e.to_string()),
                (None, None) => Err("no key".to_string()),
            }
            .map_err(|message| ConfigError::Invalid {
                origin: config_path.display().to_string(),
                key: format!("daemon[{i}]"),
                message,
            })?;
            keys.push((d.id.clone(), key));
        }
        Ok(legacy_protocol::link::DaemonKeys::hmac(keys))
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                origin: origin.to_string(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let link = &self.daemon_link;
        if link.handshake_timeout_ms == 0
            || link.push_write_timeout_ms == 0
            || link.push_ack_timeout_ms == 0
            || link.max_pending_handshakes == 0
        {
            return Err(bad(
                "daemon_link".into(),
                "handshake_timeout_ms, max_pending_handshakes, push_write_timeout_ms and push_ack_timeout_ms must be at least 1"
                    .into(),
            ));
        }
        if link.min_heartbeat_ms == 0 || link.min_heartbeat_ms > link.max_heartbeat_ms {
            return Err(bad(
                "daemon_link.min_heartbeat_ms".into(),
                "must be at least 1 and not above max_heartbeat_ms".into(),
            ));
        }
        if let Some(ha) = &self.ha {
            if self.proxy_id.as_deref().is_none_or(str::is_empty) {
                return Err(bad(
                    "ha".into(),
                    "an active/standby pair needs `proxy_id` (a different one in each proxy: the new owner's PEs are registered before the old owner's are withdrawn)".into(),
                ));
            }
            if ha.poll_ms == 0 || ha.dead_after_ms <= ha.poll_ms {
                return Err(bad(
                    "ha.dead_after_ms".into(),
                    format!(
                        "must be above poll_ms ({} ms) and poll_ms at least 1",
                        ha.poll_ms
                    ),
                ));
            }
            if ha.peer == self.control_listen {
                return Err(bad(
                    "ha.peer".into(),
                    "is this proxy's own control_listen; give the other proxy's".into(),
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for (i, d) in self.daemons.iter().enumerate() {
            if d.id.is_empty() || !ids.insert(d.id.clone()) {
                return Err(bad(
                    format!("daemon[{i}].id"),
                    format!("empty or duplicate daemon id `{}`", d.id),
                ));
            }
            let auth = link.auth == legacy_protocol::auth::AuthMode::HmacSha256;
            match (&d.key, &d.key_file) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        format!("daemon[{i}]"),
                        "give either key or key_file, not both".into(),
                    ))
                }
                (None, None) if auth => {
                    return Err(bad(
                        format!("daemon[{i}].key_file"),
                        format!("daemon `{}` needs key_file (or key) with daemon_link.auth = \"hmac-sha256\"", d.id),
                    ))
                }
                (Some(k), None) => {
                    legacy_protocol::auth::Key::from_hex(k)
                        .map_err(|e| bad(format!("daemon[{i}].key"), e.to_string()))?;
                }
                _ => {}
            }
        }
        if self.detection.heartbeat_miss_factor == 0 {
            return Err(bad(
                "detection.heartbeat_miss_factor".into(),
                "must be at least 1".into(),
            ));
        }
        self.validate_timers(origin)?;
        let mut names = BTreeSet::new();
        let mut handles = BTreeSet::new();
        for (i, app) in self.applications.iter().enumerate() {
            let k = format!("application[{i}]");
            if app.name.is_empty() {
                return Err(bad(format!("{k}.name"), "must not be empty".into()));
            }
            if !names.insert(app.name.clone()) {
                return Err(bad(
                    format!("{k}.name"),
                    format!("duplicate application `{}`", app.name),
                ));
            }
            if app.pool_handle.is_empty() || app.pool_handle.len() > 32 {
                return Err(bad(
                    format!("{k}.pool_handle"),
                    "must be 1..=32 bytes (rsplib's limit)".into(),
                ));
            }
            if !handles.insert(app.pool_handle.clone()) {
                return Err(bad(
                    format!("{k}.pool_handle"),
                    format!("pool handle `{}` used twice", app.pool_handle),
                ));
            }
            match self.mode {
                Mode::Broker => {
                    if app.listen.is_none() && app.asap_listen.is_none() {
                        return Err(bad(
                            format!("{k}.listen"),
                            "broker mode needs a relay listener address (listen and/or asap_listen)"
                                .into(),
                        ));
                    }
                    if app.asap_transport == asap::transport::TransportKind::Auto {
                        return Err(bad(
                            format!("{k}.asap_transport"),
                            "must be `tcp` or `sctp` (the registered transport must be known)"
                                .into(),
                        ));
                    }
                    if !app.policy.broker_capable() {
                        return Err(bad(
                            format!("{k}.policy"),
                            format!(
                                "`{}` is an RFC 5356 policy run by registrars/PUs; use it with mode = \"registration\"",
                                app.policy.name()
                            ),
                        ));
                    }
                }
                Mode::Registration => {}
            }
            Self::validate_failover(app, &k, origin)?;
            if app.servers.is_empty() && app.join.is_none() {
                return Err(bad(
                    format!("{k}.server"),
                    "at least one server (or [application.join])".into(),
                ));
            }
            self.validate_join(i, app, &ids, &bad)?;
            let mut snames = BTreeSet::new();
            for (j, s) in app.servers.iter().enumerate() {
                let sk = format!("{k}.server[{j}]");
                if !snames.insert(s.display_name()) {
                    return Err(bad(
                        format!("{sk}.name"),
                        format!("duplicate server `{}` in `{}`", s.display_name(), app.name),
                    ));
                }
                if s.port == 0 {
                    return Err(bad(format!("{sk}.port"), "must not be 0".into()));
                }
                if s.daemon.is_empty() {
                    return Err(bad(format!("{sk}.daemon"), "must not be empty".into()));
                }
                if self.daemon_link.auth == legacy_protocol::auth::AuthMode::HmacSha256
                    && !ids.contains(&s.daemon)
                {
                    return Err(bad(
                        format!("{sk}.daemon"),
                        format!(
                            "daemon `{}` has no [[daemon]] table with its key (it could never connect)",
                            s.daemon
                        ),
                    ));
                }
                if s.lifetime_s == Some(0) {
                    return Err(bad(format!("{sk}.lifetime_s"), "must be > 0".into()));
                }
                for (w, text) in s.maintenance.iter().enumerate() {
                    Window::parse(text).map_err(|m| bad(format!("{sk}.maintenance[{w}]"), m))?;
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Timers of `[detection]` and the application checks must be at least 1 ms (issue 19
    /// item 3).
    fn validate_timers(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: String, message: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message: message.to_string(),
        };
        let d = &self.detection;
        for (k, v) in [
            ("probe_interval_ms", d.probe_interval_ms),
            ("probe_timeout_ms", d.probe_timeout_ms),
            ("connect_timeout_ms", d.connect_timeout_ms),
            ("recheck_ms", d.recheck_ms),
            ("tick_ms", d.tick_ms),
            ("config_watch_ms", d.config_watch_ms),
        ] {
            if v == 0 {
                return Err(bad(format!("detection.{k}"), "must be at least 1"));
            }
        }
        for (i, app) in self.applications.iter().enumerate() {
            let Some(c) = &app.check else { continue };
            let k = format!("application[{i}].check");
            if c.interval_ms == 0 || c.timeout_ms == 0 {
                return Err(bad(k, "interval_ms and timeout_ms must be at least 1"));
            }
            if c.rise == 0 || c.fall == 0 {
                return Err(bad(k, "rise and fall must be at least 1"));
            }
            match c.kind {
                CheckKind::Command if c.command.is_empty() => {
                    return Err(bad(
                        format!("{k}.command"),
                        "type = \"command\" needs command = [\"program\", ...]",
                    ))
                }
                CheckKind::Tcp | CheckKind::Http if !c.command.is_empty() => {
                    return Err(bad(format!("{k}.command"), "only for type = \"command\""))
                }
                _ => {}
            }
            if c.kind != CheckKind::Tcp && (c.send.is_some() || c.expect.is_some()) {
                return Err(bad(k, "send and expect are for type = \"tcp\""));
            }
            if c.kind != CheckKind::Http
                && (c.path.is_some() || c.host.is_some() || c.expect_status.is_some())
            {
                return Err(bad(
                    k,
                    "path, host and expect_status are for type = \"http\"",
                ));
            }
            if c.expect.as_ref().is_some_and(String::is_empty) {
                return Err(bad(format!("{k}.expect"), "must not be empty"));
            }
            if let Some(p) = &c.path {
                if !p.starts_with('/') || p.chars().any(|ch| ch.is_whitespace() || ch.is_control())
                {
                    return Err(bad(
                        format!("{k}.path"),
                        "must start with / and contain no spaces or control characters",
                    ));
                }
            }
            if c.host
                .as_ref()
                .is_some_and(|h| h.chars().any(|ch| ch.is_whitespace() || ch.is_control()))
            {
                return Err(bad(
                    format!("{k}.host"),
                    "must contain no spaces or control characters",
                ));
            }
        }
        Ok(())
    }

    fn validate_failover(app: &Application, k: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        for (name, v) in [
            ("replay_lines", app.replay_lines),
            ("discard_lines", app.discard_lines),
        ] {
            if v > MAX_PREAMBLE_LINES {
                return Err(bad(
                    format!("{k}.{name}"),
                    format!("at most {MAX_PREAMBLE_LINES}"),
                ));
            }
            if v > 0 && app.on_server_failure != OnServerFailure::Reconnect {
                return Err(bad(
                    format!("{k}.{name}"),
                    "only with on_server_failure = \"reconnect\"".into(),
                ));
            }
        }
        Ok(())
    }

    /// `[application.join]` (issue 19 item 2): a non-empty allow-list of daemons that can
    /// authenticate, valid lifetime and windows.
    fn validate_join(
        &self,
        i: usize,
        app: &Application,
        ids: &BTreeSet<String>,
        bad: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.proxy_id.as_deref() == Some("") {
            return Err(bad("proxy_id".into(), "must not be empty".into()));
        }
        let Some(j) = &app.join else { return Ok(()) };
        let k = format!("application[{i}].join");
        if j.daemons.is_empty() {
            return Err(bad(
                format!("{k}.daemons"),
                "list the daemons allowed to join (by their [daemon] id)".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (n, d) in j.daemons.iter().enumerate() {
            if d.is_empty() || !seen.insert(d) {
                return Err(bad(
                    format!("{k}.daemons[{n}]"),
                    format!("empty or duplicate daemon `{d}`"),
                ));
            }
            if self.daemon_link.auth == legacy_protocol::auth::AuthMode::HmacSha256
                && !ids.contains(d)
            {
                return Err(bad(
                    format!("{k}.daemons[{n}]"),
                    format!("daemon `{d}` has no [[daemon]] table with its key (it could never connect)"),
                ));
            }
        }
        if j.lifetime_s == Some(0) {
            return Err(bad(format!("{k}.lifetime_s"), "must be > 0".into()));
        }
        for (w, text) in j.maintenance.iter().enumerate() {
            Window::parse(text).map_err(|m| bad(format!("{k}.maintenance[{w}]"), m))?;
        }
        Ok(())
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The fix for an unreadable configuration file (issue 16 item 6).
fn read_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            "; create it (annotated example: proxy-pe/deploy/proxy-pe.toml.example, installed as /usr/share/doc/proxy-pe/proxy-pe.toml.example) or pass --config PATH"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; make it readable by the proxy (its unit runs with DynamicUser=yes: mode 0644 or group-readable)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
mode = "broker"
daemon_listen = "127.0.0.1:7100"
control_listen = "127.0.0.1:7199"
registrars = ["127.0.0.1:3863"]

[[application]]
name = "A"
pool_handle = "AppA"
policy = "round-robin"
listen = "127.0.0.1:8000"

[[application.server]]
name = "IP1"
address = "127.0.0.11"
port = 7000
daemon = "legacy-1"

[[application.server]]
name = "IP2"
address = "127.0.0.12"
port = 7000
daemon = "legacy-2"
lifetime_s = 3600
maintenance = ["daily 02:00-03:00", "1700000000-1700003600"]

[[daemon]]
id = "legacy-1"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

[[daemon]]
id = "legacy-2"
key_file = "legacy-2.key"
"#;

    #[test]
    fn daemons_need_keys_unless_auth_is_none() {
        let c = Config::parse(EXAMPLE, "t").expect("valid");
        assert_eq!(
            c.daemon_link.auth,
            legacy_protocol::auth::AuthMode::HmacSha256
        );
        assert_eq!(c.daemons.len(), 2);
        // A server whose daemon has no [[daemon]] table could never connect.
        let text = EXAMPLE.replace("id = \"legacy-2\"", "id = \"other\"");
        let e = Config::parse(&text, "p").expect_err("invalid");
        assert!(e.to_string().contains("server[1].daemon"), "{e}");
        // Plaintext only when chosen; then no tables are needed.
        let cut = &EXAMPLE[..EXAMPLE.find("[[daemon]]").expect("tables")];
        let e = Config::parse(cut, "p").expect_err("invalid");
        assert!(e.to_string().contains("no [[daemon]] table"), "{e}");
        let plain = format!("{cut}\n[daemon_link]\nauth = \"none\"\n");
        Config::parse(&plain, "p").expect("plaintext by choice");
        // A malformed key is reported with its table.
        let text = EXAMPLE.replace("key = \"0001", "key = \"zz01");
        let e = Config::parse(&text, "p").expect_err("invalid");
        assert!(e.to_string().contains("daemon[0].key"), "{e}");
        // Relative key files are read next to the configuration file.
        let dir = std::env::temp_dir().join(format!("proxy-pe-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let e = c
            .daemon_keys(&dir.join("proxy.toml"))
            .expect_err("missing key file");
        assert!(e.to_string().contains("legacy-2.key"), "{e}");
        let k = legacy_protocol::auth::Key::generate();
        std::fs::write(dir.join("legacy-2.key"), k.to_hex()).expect("write");
        let keys = c.daemon_keys(&dir.join("proxy.toml")).expect("keys");
        assert_eq!(keys.keys.get("legacy-2"), Some(&k));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn example_parses() {
        let c = Config::parse(EXAMPLE, "t").expect("valid");
        assert_eq!(c.applications.len(), 1);
        assert_eq!(c.applications[0].servers[1].windows().len(), 2);
        assert_eq!(c.applications[0].policy, PolicyKind::RoundRobin);
        assert_eq!(c.detection.heartbeat_miss_factor, 3);
        assert_eq!(c.registrar_transport, asap::transport::TransportKind::Auto);
        let c = Config::parse(&format!("registrar_transport = \"sctp\"\n{EXAMPLE}"), "t")
            .expect("valid");
        assert_eq!(c.registrar_transport, asap::transport::TransportKind::Sctp);
    }

    #[test]
    fn unknown_key_has_line_and_column() {
        let text = EXAMPLE.replace(
            "port = 7000\ndaemon = \"legacy-1\"",
            "prot = 7000\ndaemon = \"legacy-1\"",
        );
        let e = Config::parse(&text, "p.toml").expect_err("invalid");
        let s = e.to_string();
        assert!(s.starts_with("p.toml:16:1:"), "{s}");
        assert!(s.contains("prot"), "{s}");
    }

    #[test]
    fn bad_window_names_key() {
        let text = EXAMPLE.replace("daily 02:00-03:00", "daily 25:00-03:00");
        let e = Config::parse(&text, "p.toml").expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "p.toml: key `application[0].server[1].maintenance[0]`: `25:00` is not HH:MM"
        );
    }

    #[test]
    fn broker_needs_listen_and_broker_policy() {
        let text = EXAMPLE.replace("listen = \"127.0.0.1:8000\"\n", "");
        let e = Config::parse(&text, "p").expect_err("invalid");
        assert!(e.to_string().contains("application[0].listen"), "{e}");
        let text = EXAMPLE.replace("\"round-robin\"", "\"rfc-random\"");
        let e = Config::parse(&text, "p").expect_err("invalid");
        assert!(e.to_string().contains("application[0].policy"), "{e}");
        let text = text.replace("mode = \"broker\"", "mode = \"registration\"");
        Config::parse(&text, "p").expect("rfc policy fine in mode A");
    }

    #[test]
    fn asap_transport_defaults_to_tcp_and_rejects_auto() {
        let c = Config::parse(EXAMPLE, "t").expect("valid");
        assert_eq!(
            c.applications[0].asap_transport,
            asap::transport::TransportKind::Tcp
        );
        let sctp = EXAMPLE.replace(
            "listen = \"127.0.0.1:8000\"\n",
            "asap_listen = \"127.0.0.1:8001\"\nasap_transport = \"sctp\"\n",
        );
        let c = Config::parse(&sctp, "t").expect("valid");
        assert_eq!(
            c.applications[0].asap_transport,
            asap::transport::TransportKind::Sctp
        );
        let auto = sctp.replace("\"sctp\"", "\"auto\"");
        let e = Config::parse(&auto, "p").expect_err("invalid");
        assert!(
            e.to_string()
                .starts_with("p: key `application[0].asap_transport`: must be `tcp` or `sctp`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_policy_rejected_with_position() {
        let text = EXAMPLE.replace("\"round-robin\"", "\"fastest\"");
        let e = Config::parse(&text, "p").expect_err("invalid");
        assert!(e.to_string().starts_with("p:10:"), "{e}");
    }

    #[test]
    fn join_needs_an_allow_list_of_daemons_that_can_connect() {
        let join = |daemons: &str| {
            format!(
                "{}\n[[application]]\nname = \"B\"\npool_handle = \"AppB\"\npolicy = \"round-robin\"\nlisten = \"127.0.0.1:8100\"\n[application.join]\ndaemons = {daemons}\nmaintenance = [\"Sun 02:00-04:00 Europe/Berlin\"]\n",
                EXAMPLE
            )
        };
        let c = Config::parse(&join("[\"legacy-1\"]"), "p").expect("valid");
        let j = c.applications[1].join.as_ref().expect("join");
        assert!(c.applications[1].servers.is_empty());
        assert_eq!(j.daemons, vec!["legacy-1"]);
        assert_eq!(j.app_name(&c.applications[1]), "B");
        let e = Config::parse(&join("[]"), "p").expect_err("empty list");
        assert!(e.to_string().contains("application[1].join.daemons"), "{e}");
        // With authentication, a daemon without a key could never connect.
        let e = Config::parse(&join("[\"stranger\"]"), "p").expect_err("no key");
        assert!(
            e.to_string().contains("application[1].join.daemons[0]")
                && e.to_string().contains("no [[daemon]] table"),
            "{e}"
        );
        let e = Config::parse(&join("[\"legacy-1\", \"legacy-1\"]"), "p").expect_err("dup");
        assert!(e.to_string().contains("duplicate daemon"), "{e}");
        let bad = join("[\"legacy-1\"]").replace("Europe/Berlin", "Europe/Atlantis");
        let e = Config::parse(&bad, "p").expect_err("zone");
        assert!(
            e.to_string()
                .contains("application[1].join.maintenance[0]`: unknown time zone"),
            "{e}"
        );
        // Neither servers nor join: rejected as before.
        let none = format!("{EXAMPLE}\n[[application]]\nname = \"B\"\npool_handle = \"AppB\"\npolicy = \"round-robin\"\nlisten = \"127.0.0.1:8100\"\n");
        let e = Config::parse(&none, "p").expect_err("no servers");
        assert!(e.to_string().contains("application[1].server"), "{e}");
    }
}
