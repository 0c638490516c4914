//! The daemon configuration ("configuration file 147", seed 003 \[28\] step 173).
//!
//! TOML, parsed with serde into private "raw" structs that keep the source span of every
//! value that needs checking, then validated into [`Config`]. Every error, syntactic or
//! semantic, is a [`ConfigError`] naming the file, line, column and key, e.g.
//!
//! ```text
//! /etc/legacy-daemon.toml:12:11: key `app[1].cmdline`: invalid regex: unclosed group
//! ```
//!
//! Command-line patterns are regular expressions (`regex-lite`): a glob cannot anchor
//! or alternate over the whitespace-joined argument list (`^java .*-jar billing\.jar`),
//! and `regex-lite` keeps the linear-time guarantee of `regex` at a fraction of its
//! binary size (no Unicode tables), which matters for the footprint target.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use legacy_protocol::auth::{AuthMode, Key};
use legacy_protocol::LoadHints;

/// Default path of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/legacy-daemon.toml";
/// Default poll interval (our choice: seed 003 gives no timings).
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;
/// Upper bound of the default heartbeat interval (the default is the poll interval, at most
/// this). A proxy declares a daemon silent after 3 missed heartbeats (PROTOCOL.md §2) and
/// takes its servers out of selection (proxy-pe README "Failure declaration"): with 500 ms
/// that is 1.5 s, inside issue 19 item 4's 2 s for a frozen host with default settings.
pub const DEFAULT_MAX_HEARTBEAT_INTERVAL_MS: u64 = 500;
/// Default maximum age of the TCP socket table sample.
pub const DEFAULT_NET_INTERVAL_MS: u64 = 5000;
/// Default lower bound of the reconnect backoff.
pub const DEFAULT_RECONNECT_MIN_MS: u64 = 200;
/// Default upper bound of the reconnect backoff. It bounds how long a proxy that was
/// restarted stays without this daemon's report (and so without registrations for its
/// servers): with equal jitter the next attempt comes 2.5–5 s after the previous one at
/// worst. A higher cap saves almost nothing (one refused SYN per attempt). It was 30 s,
/// which kept a restarted proxy's servers "unknown" for up to 30 s.
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 5_000;
/// Default limit for establishing the TCP connection to a proxy.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default limit for the authentication handshake with a proxy (PROTOCOL.md §1.1).
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Default TCP keep-alive idle time before the first probe on a proxy connection.
pub const DEFAULT_KEEPALIVE_IDLE_MS: u64 = 10_000;
/// Default interval between TCP keep-alive probes on a proxy connection.
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 5_000;
/// Lower bound of the default write timeout (the default is max(this, 3 × heartbeat)).
pub const MIN_DEFAULT_WRITE_TIMEOUT_MS: u64 = 2_000;

/// A configuration error with its precise location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}{}: {message}", location(*.line, *.column), key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default())]
pub struct ConfigError {
    /// Where the text came from: the file path, or `config push vN`.
    pub origin: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
    /// Dotted key path (`app[0].cmdline`), if known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Version declared in the file (`version = N`), if any.
    pub declared_version: Option<u64>,
    /// `[daemon]` settings.
    pub daemon: DaemonSettings,
    /// `[[proxy]]` entries: each gets its own reporter task (seed 000 \[0007\]).
    pub proxies: Vec<ProxyTarget>,
    /// `[[app]]` entries, in file order.
    pub apps: Vec<AppSpec>,
}

/// `[daemon]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Identity reported in Hello (default: the host name).
    pub id: String,
    /// Process-table poll interval (default 1 s).
    pub poll_interval: Duration,
    /// Heartbeat interval (default: the poll interval).
    pub heartbeat_interval: Duration,
    /// Maximum age of the `/proc/net/tcp{,6}` sample used for port state and connection
    /// counts (default 5 s). Walking the kernel's TCP hash tables costs milliseconds on
    /// large-memory hosts whatever the number of sockets, so it is not done on every poll;
    /// it is re-read at once when a process of an application with ports appears or exits.
    pub net_interval: Duration,
    /// Watch the config file's mtime and reload on change (default true).
    pub watch_config: bool,
    /// Accept configuration pushed by a proxy (default true).
    pub accept_push: bool,
    /// Write a pushed configuration back to the config file so it survives a restart
    /// (default true).
    pub persist_push: bool,
    /// File the last reported state is written to before it is sent (seed 000 \[0028\]).
    pub state_file: Option<PathBuf>,
    /// Link authentication (PROTOCOL.md §1.1): `hmac-sha256` (default) or `none`.
    pub auth: AuthMode,
    /// The daemon's pre-shared key (`key` or `key_file`); `None` only with `auth = "none"`.
    pub key: Option<Key>,
    /// Address on which this host's applications are reached, reported with each
    /// application (`AppStatus::host`) so a proxy can pool them without a per-server entry
    /// (issue 19 item 2). `None`: the proxy uses the address this daemon connects from.
    pub advertise: Option<std::net::IpAddr>,
}

/// One `[[proxy]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyTarget {
    /// `host:port` of the proxy pool element's daemon listener.
    pub address: String,
    /// Give up after this many failed connection attempts in a row (`None`: retry forever;
    /// seed 000 \[0024\]–\[0025\]).
    pub max_attempts: Option<u32>,
    /// First reconnect delay; doubles per failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Reconnect delay cap.
    pub reconnect_max: Duration,
    /// Limit for establishing the TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Limit for the authentication handshake after connecting (default 5 s).
    pub handshake_timeout: Duration,
    /// TCP keep-alive idle time (default 10 s).
    pub keepalive_idle: Duration,
    /// TCP keep-alive probe interval (default 5 s).
    pub keepalive_interval: Duration,
    /// A frame write that does not complete within this drops the connection (`None`:
    /// max(2 s, 3 × heartbeat interval)).
    pub write_timeout: Option<Duration>,
}

impl ProxyTarget {
    /// The write timeout in force with heartbeat interval `hb`.
    pub fn write_timeout(&self, hb: Duration) -> Duration {
        self.write_timeout
            .unwrap_or_else(|| (hb * 3).max(Duration::from_millis(MIN_DEFAULT_WRITE_TIMEOUT_MS)))
    }
}

/// One `[[app]]` entry: an application to watch.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Name reported to the proxy.
    pub name: String,
    /// How its processes are recognised.
    pub matcher: Matcher,
    /// TCP service ports it offers.
    pub ports: Vec<u16>,
    /// Count ESTABLISHED connections on `ports`.
    pub count_connections: bool,
    /// Report running only if some port is in LISTEN state.
    pub require_listen: bool,
    /// Static load hints passed to the proxy.
    pub load: LoadHints,
    /// Address of this application's service (default: `[daemon] advertise`).
    pub host: Option<std::net::IpAddr>,
}

/// Process match criteria; all given criteria must hold.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Executable name. Up to 15 bytes (the kernel's `comm` limit): `comm` equals it. Longer:
    /// `comm` equals its first 15 bytes and the base name of `/proc/PID/exe` or of `argv[0]`
    /// equals it (see [`crate::poll`]).
    pub exe: Option<String>,
    /// Regex searched in the command line (arguments joined by single spaces).
    pub cmdline: Option<regex_lite::Regex>,
    /// File holding the pid of the (single) instance.
    pub pid_file: Option<PathBuf>,
}

impl PartialEq for AppSpec {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.ports == o.ports
            && self.count_connections == o.count_connections
            && self.require_listen == o.require_listen
            && self.load == o.load
            && self.host == o.host
            && self.matcher.exe == o.matcher.exe
            && self.matcher.pid_file == o.matcher.pid_file
            && self.matcher.cmdline.as_ref().map(|r| r.as_str())
                == o.matcher.cmdline.as_ref().map(|r| r.as_str())
    }
}

// ---- raw (serde) layer -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Option<u64>,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    proxy: Vec<RawProxy>,
    #[serde(default)]
    app: Vec<RawApp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    id: Option<Spanned<String>>,
    poll_interval_ms: Option<Spanned<u64>>,
    heartbeat_interval_ms: Option<Spanned<u64>>,
    net_interval_ms: Option<Spanned<u64>>,
    watch_config: Option<bool>,
    accept_push: Option<bool>,
    persist_push: Option<bool>,
    state_file: Option<PathBuf>,
    auth: Option<Spanned<AuthMode>>,
    key: Option<Spanned<String>>,
    key_file: Option<Spanned<PathBuf>>,
    advertise: Option<std::net::IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    address: Spanned<String>,
    max_attempts: Option<Spanned<u32>>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<Spanned<u64>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    keepalive_idle_ms: Option<Spanned<u64>>,
    keepalive_interval_ms: Option<Spanned<u64>>,
    write_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    exe: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    pid_file: Option<PathBuf>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    count_connections: bool,
    #[serde(default)]
    require_listen: bool,
    #[serde(default)]
    load: RawLoad,
    host: Option<std::net::IpAddr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    weight: Option<u32>,
    priority: Option<u32>,
    capacity: Option<u32>,
}

/// Reads and validates the file at `path`.
pub fn load_file(path: &std::path::Path) -> Result<(Config, String), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        line: None,
        column: None,
        key: None,
        message: match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "cannot read: {e}; create it (annotated example: legacy-daemon.toml.example, \
                 installed as /usr/share/doc/legacy-daemon/legacy-daemon.toml.example) or pass --config PATH"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot read: {e}; make it readable by the daemon's user (the unit runs as user legacy-daemon)"
            ),
            _ => format!("cannot read: {e}"),
        },
    })?;
    let cfg = parse(&text, &origin)?;
    Ok((cfg, text))
}

/// Parses and validates configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_checked(text, origin, None)
}

/// Parses and validates a configuration pushed by the proxy at `pushed_by` (its
/// `[[proxy]] address` here): on top of [`parse`], the text must keep at least one proxy and
/// the pusher itself, so a push can never cut the daemon off (PROTOCOL.md §3 `config_push`).
pub fn parse_push(text: &str, origin: &str, pushed_by: &str) -> Result<Config, ConfigError> {
    parse_checked(text, origin, Some(pushed_by))
}

fn parse_checked(text: &str, origin: &str, pushed_by: Option<&str>) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let mut msg = e.message().trim().replace('\n', "; ");
        if msg.is_empty() {
            msg = e.to_string();
        }
        match e.span() {
            Some(span) => err_at(text, origin, span.start, msg),
            None => ConfigError {
                origin: origin.into(),
                line: None,
                column: None,
                key: None,
                message: msg,
            },
        }
    })?;
    let e = |span: std::ops::Range<usize>, msg: String| err_at(text, origin, span.start, msg);

    let d = raw.daemon;
    let id = match d.id {
        Some(s) if s.get_ref().trim().is_empty() => {
            return Err(e(s.span(), "daemon id must not be empty".into()))
        }
        Some(s) => s.into_inner(),
        None => default_identity(),
    };
    let poll_ms = match d.poll_interval_ms {
        Some(s) if *s.get_ref() < 10 || *s.get_ref() > 3_600_000 => {
            return Err(e(
                s.span(),
                format!("poll interval {} ms out of range 10..=3600000", s.get_ref()),
            ))
        }
        Some(s) => s.into_inner(),
        None => DEFAULT_POLL_INTERVAL_MS,
    };
    let hb_ms = match d.heartbeat_interval_ms {
        Some(s) if *s.get_ref() < 10 || *s.get_ref() > 3_600_000 => {
            return Err(e(
                s.span(),
                format!(
                    "heartbeat interval {} ms out of range 10..=3600000",
                    s.get_ref()
                ),
            ))
        }
        Some(s) => s.into_inner(),
        None => poll_ms.min(DEFAULT_MAX_HEARTBEAT_INTERVAL_MS),
    };
    let net_ms = match d.net_interval_ms {
        Some(s) if *s.get_ref() > 3_600_000 => {
            return Err(e(
                s.span(),
                format!("net interval {} ms out of range 0..=3600000", s.get_ref()),
            ))
        }
        Some(s) => s.into_inner(),
        None => DEFAULT_NET_INTERVAL_MS,
    };
    let auth = d.auth.as_ref().map(|a| *a.get_ref()).unwrap_or_default();
    let auth_span = d.auth.as_ref().map(|a| a.span());
    let key = match (&d.key, &d.key_file) {
        (Some(k), Some(_)) => {
            return Err(e(k.span(), "give either key or key_file, not both".into()))
        }
        (Some(k), None) => Some(
            Key::from_hex(k.get_ref()).map_err(|err| e(k.span(), format!("daemon key: {err}")))?,
        ),
        (None, Some(f)) => {
            Some(Key::load(f.get_ref()).map_err(|err| e(f.span(), err.to_string()))?)
        }
        (None, None) => None,
    };
    let daemon = DaemonSettings {
        id,
        poll_interval: Duration::from_millis(poll_ms),
        heartbeat_interval: Duration::from_millis(hb_ms),
        net_interval: Duration::from_millis(net_ms),
        watch_config: d.watch_config.unwrap_or(true),
        accept_push: d.accept_push.unwrap_or(true),
        persist_push: d.persist_push.unwrap_or(true),
        state_file: d.state_file,
        auth,
        key,
        advertise: d.advertise,
    };

    let mut proxies: Vec<ProxyTarget> = Vec::new();
    for p in raw.proxy {
        let addr = p.address.get_ref().trim().to_string();
        let port_ok = addr
            .rsplit_once(':')
            .map(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
            .unwrap_or(false);
        if !port_ok {
            return Err(e(
                p.address.span(),
                format!("proxy address `{addr}` is not host:port"),
            ));
        }
        if proxies.iter().any(|q| q.address == addr) {
            return Err(e(
                p.address.span(),
                format!("proxy address `{addr}` listed twice"),
            ));
        }
        if let Some(m) = &p.max_attempts {
            if *m.get_ref() == 0 {
                return Err(e(m.span(), "max_attempts must be at least 1".into()));
            }
        }
        let min = p
            .reconnect_min_ms
            .unwrap_or(DEFAULT_RECONNECT_MIN_MS)
            .max(1);
        let max = match p.reconnect_max_ms {
            Some(s) if *s.get_ref() < min => {
                return Err(e(
                    s.span(),
                    format!(
                        "reconnect_max_ms {} below reconnect_min_ms {min}",
                        s.get_ref()
                    ),
                ))
            }
            Some(s) => s.into_inner(),
            None => DEFAULT_RECONNECT_MAX_MS.max(min),
        };
        let timeout = |v: Option<Spanned<u64>>, default: u64, what: &str| match v {
            Some(s) if *s.get_ref() < 1 || *s.get_ref() > 600_000 => Err(e(
                s.span(),
                format!("{what} {} ms out of range 1..=600000", s.get_ref()),
            )),
            Some(s) => Ok(Duration::from_millis(s.into_inner())),
            None => Ok(Duration::from_millis(default)),
        };
        let connect_timeout = timeout(
            p.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS,
            "connect_timeout_ms",
        )?;
        let handshake_timeout = timeout(
            p.handshake_timeout_ms,
            DEFAULT_HANDSHAKE_TIMEOUT_MS,
            "handshake_timeout_ms",
        )?;
        let keepalive_idle = timeout(
            p.keepalive_idle_ms,
            DEFAULT_KEEPALIVE_IDLE_MS,
            "keepalive_idle_ms",
        )?;
        let keepalive_interval = timeout(
            p.keepalive_interval_ms,
            DEFAULT_KEEPALIVE_INTERVAL_MS,
            "keepalive_interval_ms",
        )?;
        let write_timeout = match p.write_timeout_ms {
            Some(v) => Some(timeout(Some(v), 0, "write_timeout_ms")?),
            None => None,
        };
        proxies.push(ProxyTarget {
            address: addr,
            max_attempts: p.max_attempts.map(Spanned::into_inner),
            reconnect_min: Duration::from_millis(min),
            reconnect_max: Duration::from_millis(max),
            connect_timeout,
            handshake_timeout,
            keepalive_idle,
            keepalive_interval,
            write_timeout,
        });
    }

    if let Some(from) = pushed_by {
        if proxies.is_empty() {
            return Err(ConfigError {
                origin: origin.into(),
                line: None,
                column: None,
                key: Some("proxy".into()),
                message: "no [[proxy]]: the pushed configuration would cut this daemon off from \
                          every proxy"
                    .into(),
            });
        }
        if !proxies.iter().any(|p| p.address == from) {
            return Err(ConfigError {
                origin: origin.into(),
                line: None,
                column: None,
                key: Some("proxy".into()),
                message: format!(
                    "the pushed configuration does not list the proxy that pushed it ({from}): \
                     it would cut this daemon off from that proxy"
                ),
            });
        }
    }

    let mut apps: Vec<AppSpec> = Vec::new();
    for a in raw.app {
        let name = a.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(e(
                a.name.span(),
                "application name must not be empty".into(),
            ));
        }
        if apps.iter().any(|x| x.name == name) {
            return Err(e(
                a.name.span(),
                format!("application `{name}` defined twice"),
            ));
        }
        if a.exe.is_none() && a.cmdline.is_none() && a.pid_file.is_none() {
            return Err(e(
                a.name.span(),
                format!("application `{name}` needs at least one of exe, cmdline, pid_file"),
            ));
        }
        let exe = match a.exe {
            Some(s) if s.get_ref().is_empty() || s.get_ref().contains('/') => {
                return Err(e(
                    s.span(),
                    "exe must be a bare executable name (no `/`)".into(),
                ))
            }
            Some(s) => Some(s.into_inner()),
            None => None,
        };
        let cmdline = match a.cmdline {
            Some(s) => Some(
                regex_lite::Regex::new(s.get_ref())
                    .map_err(|err| e(s.span(), format!("invalid regex: {err}")))?,
            ),
            None => None,
        };
        if a.ports.contains(&0) {
            return Err(e(
                a.name.span(),
                format!("application `{name}`: port 0 is invalid"),
            ));
        }
        if (a.count_connections || a.require_listen) && a.ports.is_empty() {
            return Err(e(
                a.name.span(),
                format!("application `{name}`: count_connections/require_listen need `ports`"),
            ));
        }
        apps.push(AppSpec {
            name,
            matcher: Matcher {
                exe,
                cmdline,
                pid_file: a.pid_file,
            },
            ports: a.ports,
            count_connections: a.count_connections,
            require_listen: a.require_listen,
            load: LoadHints {
                weight: a.load.weight,
                priority: a.load.priority,
                capacity: a.load.capacity,
            },
            host: a.host,
        });
    }

    match (daemon.auth, &daemon.key) {
        (AuthMode::HmacSha256, None) => {
            return Err(ConfigError {
                origin: origin.into(),
                line: None,
                column: None,
                key: Some("daemon.key".into()),
                message: "the link to the proxies is authenticated (PROTOCOL.md §1.1): set \
                          daemon.key_file (or daemon.key), or choose plaintext with \
                          daemon.auth = \"none\""
                    .into(),
            })
        }
        (AuthMode::None, Some(_)) => {
            let span = auth_span.clone().unwrap_or(0..0);
            return Err(e(
                span,
                "auth = \"none\" with a key: remove one of them".into(),
            ));
        }
        _ => {}
    }
    Ok(Config {
        declared_version: raw.version,
        daemon,
        proxies,
        apps,
    })
}

/// The host name (`/proc/sys/kernel/hostname`), or `localhost` if it cannot be read.
pub fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Builds a [`ConfigError`] for byte offset `at` of `text`, with the key path found there.
fn err_at(text: &str, origin: &str, at: usize, message: String) -> ConfigError {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text
        .get(line_start..at)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    ConfigError {
        origin: origin.into(),
        line: Some(line),
        column: Some(column),
        key: key_path_at(text, line),
        message,
    }
}

/// Reconstructs the dotted key path (`app[1].cmdline`) of line `line` (1-based) from the
/// table headers above it. Good enough for the flat layout of this file format.
fn key_path_at(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut key = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if i + 1 > line {
            break;
        }
        if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let h = h.trim().to_string();
            let n = match counts.iter_mut().find(|(k, _)| *k == h) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((h.clone(), 0));
                    0
                }
            };
            table = format!("{h}[{n}]");
            key = None;
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            let h = h.trim();
            // A sub-table of the latest array element, e.g. [app.load] after [[app]].
            table = match h.split_once('.') {
                Some((parent, child)) if table.starts_with(&format!("{parent}[")) => {
                    let base = table.split('.').next().unwrap_or(&table).to_string();
                    format!("{base}.{child}")
                }
                _ => h.to_string(),
            };
            key = None;
        } else if i + 1 == line {
            key = t
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string());
        }
    }
    match (table.is_empty(), key) {
        (true, Some(k)) => Some(k),
        (false, Some(k)) => Some(format!("{table}.{k}")),
        (false, None) => Some(table),
        (true, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 4
[daemon]
id = "legacy-1"
poll_interval_ms = 500
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

[[proxy]]
address = "127.0.0.1:7100"
max_attempts = 3

[[app]]
name = "A"
exe = "sleep"
cmdline = '^sleep 4242$'
ports = [8080]
count_connections = true
[app.load]
weight = 5

[[app]]
name = "B"
pid_file = "/run/b.pid"
"#;

    #[test]
    fn parses_full_example() {
        let c = parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.declared_version, Some(4));
        assert_eq!(c.daemon.id, "legacy-1");
        assert_eq!(c.daemon.poll_interval, Duration::from_millis(500));
        assert_eq!(c.daemon.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(c.proxies[0].max_attempts, Some(3));
        assert_eq!(c.apps.len(), 2);
        assert_eq!(c.apps[0].load.weight, Some(5));
        assert!(c.apps[0]
            .matcher
            .cmdline
            .as_ref()
            .unwrap()
            .is_match("sleep 4242"));
        assert_eq!(
            c.apps[1].matcher.pid_file,
            Some(PathBuf::from("/run/b.pid"))
        );
    }

    #[test]
    fn defaults() {
        // The link is authenticated unless plaintext is chosen explicitly.
        let err = parse("", "t").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("daemon.key"));
        let c = parse("[daemon]\nauth = \"none\"\n", "t").unwrap();
        assert_eq!(c.daemon.auth, AuthMode::None);
        assert_eq!(c.daemon.key, None);
        assert_eq!(c.daemon.poll_interval, Duration::from_secs(1));
        // Heartbeat: the poll interval, at most 500 ms (issue 19 item 4: a proxy sees a
        // frozen host after 3 × 500 ms with default settings).
        assert_eq!(c.daemon.heartbeat_interval, Duration::from_millis(500));
        let c100 = parse("[daemon]\nauth = \"none\"\npoll_interval_ms = 100\n", "t").unwrap();
        assert_eq!(c100.daemon.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.daemon.id, default_identity());
        assert!(c.daemon.watch_config && c.daemon.accept_push);
        assert!(c.proxies.is_empty() && c.apps.is_empty());
        // A restarted proxy gets this daemon back within a few seconds (PROTOCOL.md §4).
        let c = parse(
            "[daemon]\nauth = \"none\"\n[[proxy]]\naddress = \"127.0.0.1:7100\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.proxies[0].reconnect_min, Duration::from_millis(200));
        assert_eq!(c.proxies[0].connect_timeout, Duration::from_secs(5));
        assert_eq!(c.proxies[0].handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.proxies[0].keepalive_idle, Duration::from_secs(10));
        assert_eq!(c.proxies[0].keepalive_interval, Duration::from_secs(5));
        let hb = Duration::from_millis(100);
        assert_eq!(c.proxies[0].write_timeout(hb), Duration::from_secs(2));
        let c = parse(
            "[daemon]\nauth = \"none\"\n[[proxy]]\naddress = \"h:1\"\nwrite_timeout_ms = 700\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.proxies[0].write_timeout(hb), Duration::from_millis(700));
        assert_eq!(c.proxies[0].reconnect_max, Duration::from_secs(5));
    }

    #[test]
    fn bad_regex_names_line_column_and_key() {
        let t = GOOD.replace("'^sleep 4242$'", "'(unclosed'");
        let err = parse(&t, "t.toml").unwrap_err();
        assert_eq!(err.line, Some(15));
        assert_eq!(err.column, Some(11));
        assert_eq!(err.key.as_deref(), Some("app[0].cmdline"));
        assert!(err
            .to_string()
            .starts_with("t.toml:15:11: key `app[0].cmdline`: invalid regex"));
    }

    #[test]
    fn type_error_and_unknown_key_are_located() {
        let t = GOOD.replace("weight = 5", "weight = \"heavy\"");
        let err = parse(&t, "t.toml").unwrap_err();
        assert_eq!(err.line, Some(19));
        assert_eq!(err.key.as_deref(), Some("app[0].load.weight"));
        let t = GOOD.replace("exe = \"sleep\"", "exe = \"sleep\"\nexec = 1");
        let err = parse(&t, "t.toml").unwrap_err();
        assert_eq!(err.line, Some(15));
        assert_eq!(err.key.as_deref(), Some("app[0].exec"));
        assert!(
            err.message.contains("unknown field `exec`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn semantic_errors() {
        let cases = [
            (GOOD.replace("127.0.0.1:7100", "nowhere"), "not host:port"),
            (
                GOOD.replace("max_attempts = 3", "max_attempts = 0"),
                "at least 1",
            ),
            (
                GOOD.replace("pid_file = \"/run/b.pid\"", ""),
                "needs at least one",
            ),
            (
                GOOD.replace("name = \"B\"", "name = \"A\""),
                "defined twice",
            ),
            (
                GOOD.replace("poll_interval_ms = 500", "poll_interval_ms = 1"),
                "out of range",
            ),
            (
                GOOD.replace("exe = \"sleep\"", "exe = \"/bin/sleep\""),
                "bare executable",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text, "t").unwrap_err();
            assert!(err.message.contains(want), "{want}: {err}");
            assert!(err.line.is_some(), "{err}");
        }
    }

    #[test]
    fn keys_are_checked() {
        let c = parse(GOOD, "t").unwrap();
        assert_eq!(c.daemon.auth, AuthMode::HmacSha256);
        assert!(c.daemon.key.is_some());
        let short = GOOD.replace(
            "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "01",
        );
        assert!(parse(&short, "t")
            .unwrap_err()
            .message
            .contains("at least 16"));
        let both = GOOD.replace("poll_interval_ms = 500", "key_file = \"/x\"");
        assert!(parse(&both, "t").unwrap_err().message.contains("not both"));
        let missing = GOOD.replace("key = ", "key_file = ");
        let err = parse(&missing, "t").unwrap_err();
        assert!(err.message.contains("cannot read key file"), "{err}");
        let plain_with_key = GOOD.replace("poll_interval_ms = 500", "auth = \"none\"");
        assert!(parse(&plain_with_key, "t")
            .unwrap_err()
            .message
            .contains("remove one"));
    }

    /// A pushed configuration must keep a proxy, and the pusher (issue 13 item 5).
    #[test]
    fn push_must_keep_the_pushing_proxy() {
        let e = parse_push("", "push", "127.0.0.1:7100").unwrap_err();
        assert!(e.message.starts_with("no [[proxy]]"), "{e}");
        let e = parse_push(GOOD, "push", "127.0.0.1:7101").unwrap_err();
        assert!(e.message.contains("does not list the proxy"), "{e}");
        parse_push(GOOD, "push", "127.0.0.1:7100").unwrap();
        // Local files are not subject to it.
        parse("[daemon]\nauth = \"none\"\n", "t").unwrap();
    }

    #[test]
    fn syntax_error_is_located() {
        let err = parse("[daemon]\nid = \"x\n", "f").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.origin, "f");
    }
}
