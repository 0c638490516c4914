//! Settings of the `enrp-server` binary: command line (clap) and TOML file (serde) share one
//! struct, [`Options`]. Every field is optional so that a value given on the command line
//! overrides the file, and the file overrides the built-in default
//! ([`Options::merged_with`], [`Options::resolve`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use asap::handlespace::HandlespaceLimits;
use asap::reg_auth::RegistrationKey;
use asap::transport::tls::{self, ClientAuth, TlsContext};
use asap::transport::{defaults, TransportKind};
use asap::wire::PoolHandle;
use clap::Parser;
use serde::Deserialize;

use crate::core::{
    parse_server_id, AddressScope, CoreConfig, EnrpSecurity, IpNet, PeerAllow, PoolAuth, Rate,
    ServerIdError, UnreachableCounting,
};
use crate::driver::DriverConfig;
use asap::selection::MaxIncrement;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What counts towards --max-bad-pe-reports (README "Deviations from rsplib").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnreachableCountingArg {
    /// Distinct reporter addresses (forgery from one host does not add up).
    Distinct,
    /// Every report (rsplib): a single PU can remove a PE.
    Raw,
}

/// RSerPool registrar (ENRP server, RFC 5351-5353): accepts ASAP registrations from pool
/// elements, answers handle resolutions from pool users, monitors PEs with keep-alives and
/// announces itself by UDP. Every option can also be given in the TOML file of --config
/// (same names, e.g. `keep-alive-interval = 5000`); the command line wins.
#[derive(Debug, Clone, Default, Parser, Deserialize)]
#[command(name = "enrp-server", version, about, long_about = None)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// TOML configuration file with the same keys as the long options.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// ASAP listener: ADDR:PORT[,ADDR...] (all addresses share the port; SCTP binds them to
    /// one multi-homed endpoint). [default: 0.0.0.0:3863]
    #[arg(long, value_name = "ADDR:PORT[,ADDR...]")]
    pub asap: Option<String>,

    /// ENRP listener (peers, and tools such as hsdump): ADDR:PORT[,ADDR...] or `off`.
    /// [default: 0.0.0.0:9901]
    #[arg(long, value_name = "ADDR:PORT[,ADDR...]")]
    pub enrp: Option<String>,

    /// Our 32-bit ENRP server identifier (decimal or 0x-hex). [default: random]
    #[arg(long, value_name = "ID")]
    pub identifier: Option<String>,

    /// Where ASAP_SERVER_ANNOUNCEs go: `auto` (239.0.0.50:3863), `off`, or
    /// ADDR:PORT[,ADDR:PORT...] (multicast or unicast). [default: auto]
    #[arg(long, value_name = "auto|off|ADDR:PORT")]
    pub asap_announce: Option<String>,

    /// ENRP PRESENCE multicast group for peering: `auto` (239.0.0.51:9901), `off` or
    /// ADDR:PORT; giving a group (not `off`) turns peering on. [default: auto]
    #[arg(long, value_name = "auto|off|ADDR:PORT")]
    pub enrp_announce: Option<String>,

    /// Static ENRP peer ADDR:PORT (repeatable; its ENRP address); turns peering on.
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    #[serde(rename = "peer")]
    pub peers: Vec<String>,

    /// ENRP peering on/off (RFC 5353; peer messages over ENRP associations, see the
    /// README). [default: on when --peer or --enrp-announce is given]
    #[arg(long, value_name = "on|off")]
    pub peering: Option<String>,

    /// PEER-HEARTBEAT-CYCLE: PRESENCE period to each peer, ms (RFC 30000; rsplib 2444).
    /// [default: 2444]
    #[arg(long, value_name = "MS")]
    pub peer_heartbeat_cycle: Option<u64>,

    /// MAX-TIME-LAST-HEARD: silence before a peer is probed, ms (RFC 61000; rsplib 5000).
    /// [default: 5000]
    #[arg(long, value_name = "MS")]
    pub peer_max_time_last_heard: Option<u64>,

    /// MAX-TIME-NO-RESPONSE: wait for the probe's answer before takeover, ms (RFC and
    /// rsplib 5000). [default: 5000]
    #[arg(long, value_name = "MS")]
    pub peer_max_time_no_response: Option<u64>,

    /// Start-up phase in which the first peer heard becomes mentor, ms (rsplib 5000).
    /// [default: 5000]
    #[arg(long, value_name = "MS")]
    pub mentor_discovery_timeout: Option<u64>,

    /// Wait for all INIT_TAKEOVER_ACKs, ms (rsplib 5000). [default: 5000]
    #[arg(long, value_name = "MS")]
    pub takeover_expiry_interval: Option<u64>,

    /// Takeover suggestion (HANDLE_UPDATE T bit, draft-dreibholz-rserpool-enrp-takeover;
    /// rsplib -supporttakeoversuggestion; PEERING.md): `on` suggests to the better peer
    /// that it take over PEs registering here, and follows peers' suggestions with an
    /// H-flag keep-alive to the PE. [default: off]
    #[arg(long, value_name = "on|off")]
    pub takeover_suggestion: Option<String>,

    /// Most ENRP peers kept in the peer table (asap/wire/INTEROP.md §5.5); messages from further
    /// unknown servers are ignored, so forged server IDs cannot grow it. [default: 256]
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,

    /// Peer admission (SECURITY.md): `allow-list` takes ENRP peer messages only from
    /// --peer addresses and --peer-allow entries; `open` from anyone who reaches the ENRP
    /// port (rsplib behaviour, warned at start-up); `tls` only from peers authenticated by
    /// mutual TLS with --tls-ca/--tls-cert/--tls-key (over TCP, kernel SCTP and sctp-udp;
    /// over SCTP one TLS session on stream 0, SECURITY.md "TLS over SCTP").
    /// [default: allow-list]
    #[arg(long, value_name = "allow-list|open|tls")]
    pub enrp_security: Option<String>,

    /// PEM file with the cluster CA certificate(s): every peer (and every TLS client on the
    /// ASAP port) must present a certificate chaining to it (SECURITY.md "Making a cluster
    /// CA").
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// PEM file with this registrar's certificate chain (leaf first).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// With --enrp-security tls: a peer's certificate must carry the DNS name
    /// `enrp-<8 hex digits of its server ID>.rserpool` (subject alternative name) for every
    /// server ID it sends as, so that one certificate cannot claim another registrar's ID.
    /// [default: on]
    #[arg(long, value_name = "on|off")]
    pub tls_server_id_binding: Option<String>,

    /// Time a TLS handshake may take (each runs in its own task), ms. [default: 10000]
    #[arg(long, value_name = "MS")]
    pub tls_handshake_timeout: Option<u64>,

    /// `[[pool_auth]] psk`: a signed REGISTRATION is taken only if its timestamp is within
    /// this many ms of the registrar's clock; its nonce is remembered as long (replays are
    /// refused). [default: 60000]
    #[arg(long, value_name = "MS")]
    pub registration_psk_window: Option<u64>,

    /// Offer TLS on the ASAP port (needs --tls-ca/--tls-cert/--tls-key): PEs may present a
    /// client certificate for [[pool_auth]] pools; plaintext PEs are still accepted (the
    /// first byte, over SCTP of the first user message, tells TLS from ASAP). Any transport.
    /// [default: off]
    #[arg(long, value_name = "on|off")]
    pub asap_tls: Option<String>,

    /// Pools whose registrations need a credential (TOML only: `[[pool_auth]]` tables with
    /// `handle`, `tls-names` and/or `addresses`; README "Security options").
    #[arg(skip)]
    #[serde(rename = "pool_auth", alias = "pool-auth")]
    pub pool_auth: Vec<PoolAuthOption>,

    /// Allowed ENRP peer: server ID (decimal or 0x-hex; weak, claimable by anyone),
    /// ADDR or ADDR/PREFIX (repeatable). The --peer addresses are always allowed.
    #[arg(long = "peer-allow", value_name = "ID|ADDR[/PREFIX]")]
    pub peer_allow: Vec<String>,

    /// Networks that may download the handle table (HANDLE_TABLE_REQUEST, e.g. rsplib's
    /// hsdump) without being allowed peers; read-only (repeatable). Giving it replaces the
    /// default. [default: 127.0.0.0/8 and ::1]
    #[arg(long = "hsdump-allow", value_name = "ADDR[/PREFIX]")]
    pub hsdump_allow: Vec<String>,

    /// Most PEs whose home is one peer registrar; further PEs of that home from
    /// HANDLE_UPDATE / HANDLE_TABLE_RESPONSE are refused (SECURITY.md). [default: 50000]
    #[arg(long, value_name = "N")]
    pub max_pes_per_peer: Option<usize>,

    /// Cap on the registration life of PEs learned from peers, ms (no infinite life from
    /// ENRP; the home refreshes it on re-registration, the audit re-downloads it).
    /// [default: 3600000]
    #[arg(long, value_name = "MS")]
    pub max_peer_registration_life: Option<u64>,

    /// PEs of a peer declared dead are removed if no takeover re-labelled them within this
    /// time, ms (SECURITY.md). [default: 30000]
    #[arg(long, value_name = "MS")]
    pub orphan_timeout: Option<u64>,

    /// Networks a takeover may connect to (adopted PEs' ASAP transports); repeatable
    /// ADDR/PREFIX. Giving it replaces the default. [default: addresses from
    /// --min-address-scope up to site-local, never global]
    #[arg(long = "takeover-scope", value_name = "ADDR/PREFIX")]
    pub takeover_scope: Vec<String>,

    /// ASAP transports a takeover connects to per second. [default: 100]
    #[arg(long, value_name = "PER_SEC")]
    pub takeover_probe_rate: Option<u32>,

    /// An ASAP association that neither registers a PE nor resolves a handle within this
    /// time is aborted, ms (SECURITY.md). [default: 30000]
    #[arg(long, value_name = "MS")]
    pub idle_timeout: Option<u64>,

    /// Most simultaneous associations from one host; more are aborted at once.
    /// [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_associations_per_host: Option<usize>,

    /// Resolutions answered with more PEs than this count as bulk (see
    /// --max-bulk-hr-rate). [default: 256]
    #[arg(long, value_name = "N")]
    pub bulk_hres_threshold: Option<usize>,

    /// Per-PU bulk resolutions per second (burst = 2 s worth, at least 1; -1 = unlimited);
    /// more are answered with Lack of Resources. [default: 2]
    #[arg(long, value_name = "PER_SEC", allow_negative_numbers = true)]
    pub max_bulk_hr_rate: Option<f64>,

    /// Transports for ASAP/ENRP associations, comma-separated: auto, sctp (kernel),
    /// sctp-udp (userspace SCTP over UDP, RFC 6951) or tcp. Several (e.g. `sctp,tcp` or
    /// `auto,tcp`) listen on all of them at once, on the same addresses and ports, and are
    /// all announced; the first is also used for associations we open to ENRP peers.
    /// `auto` = kernel SCTP if the kernel has it, else --auto-fallback. [default: auto]
    #[arg(long, value_name = "auto|sctp|sctp-udp|tcp[,...]")]
    pub transport: Option<TransportList>,

    /// What `--transport auto` becomes where the kernel has no SCTP: tcp or sctp-udp.
    /// [default: tcp]
    #[arg(long, value_name = "tcp|sctp-udp")]
    pub auto_fallback: Option<TransportKind>,

    /// Local UDP port of SCTP over UDP (`--transport sctp-udp`, RFC 6951; Linux
    /// `net.sctp.udp_port`), shared by all sctp-udp associations; 0 = any. [default: 9899]
    #[arg(long, value_name = "PORT")]
    pub sctp_udp_port: Option<u16>,

    /// UDP port of peers' SCTP over UDP that associations we open send to (Linux
    /// `net.sctp.encap_port`). [default: the local --sctp-udp-port]
    #[arg(long, value_name = "PORT")]
    pub sctp_udp_remote_port: Option<u16>,

    /// Interval between ENDPOINT_KEEP_ALIVEs to each PE, ms (jittered ±12.5 %). [default: 5000]
    #[arg(long, value_name = "MS")]
    pub keep_alive_interval: Option<u64>,

    /// Wait for ENDPOINT_KEEP_ALIVE_ACK before removing the PE, ms. [default: 5000]
    #[arg(long, value_name = "MS")]
    pub keep_alive_timeout: Option<u64>,

    /// ASAP_SERVER_ANNOUNCE cycle, ms (jittered ±12.5 %). [default: 1000]
    #[arg(long, value_name = "MS")]
    pub announce_cycle: Option<u64>,

    /// Multicast TTL of announces. [default: 1]
    #[arg(long, value_name = "TTL")]
    pub announce_ttl: Option<u32>,

    /// Distinct ENDPOINT_UNREACHABLE reporters after which a PE is verified with a
    /// keep-alive and removed if it does not answer (MAX-BAD-PE-REPORT, 1..64).
    /// [default: 3]
    #[arg(long, value_name = "N")]
    pub max_bad_pe_reports: Option<u32>,

    /// What counts towards --max-bad-pe-reports: distinct reporter addresses, or every
    /// report as rsplib does (README "Deviations from rsplib"). [default: distinct]
    #[arg(long, value_name = "HOW")]
    pub unreachable_counting: Option<UnreachableCountingArg>,

    /// PEs whose selection state a handle resolution updates (RFC 5356 §5.2): `rfc` (LUD,
    /// PLUD and LUD-DPF degrade every PE handed out), `rsplib` (only the first, rsplib's
    /// default), or a count N (rsplib's -maxincrement=N). [default: rfc]
    #[arg(long, value_name = "rfc|rsplib|N")]
    pub max_increment: Option<String>,

    /// ENDPOINT_UNREACHABLE counts only from an association that resolved the PE's pool
    /// within this time, ms (SECURITY.md). [default: 300000]
    #[arg(long, value_name = "MS")]
    pub unreachable_window: Option<u64>,

    /// At --max-bad-pe-reports the PE is sent a keep-alive and removed only if it does not
    /// answer within this time, ms (SECURITY.md). [default: 1000]
    #[arg(long, value_name = "MS")]
    pub unreachable_probe_timeout: Option<u64>,

    /// PEs returned per handle resolution without Handle Resolution Option. [default: 3]
    #[arg(long, value_name = "N")]
    pub max_hres_items: Option<u32>,

    /// Distance step of distance-sensitive policies (LU-DPF, LUD-DPF, WRAND-DPF), ms: half
    /// the association's RTT is rounded to a multiple of it (rsplib `-distancestep`).
    /// [default: 50]
    #[arg(long, value_name = "MS")]
    pub distance_step: Option<u64>,

    /// Cap on PEs per handle resolution response, also for "all" (0xFFFFFFFF); responses are
    /// cut further to fit 65535 bytes. [default: 4294967295 = no cap]
    #[arg(long, value_name = "N")]
    pub hres_items_cap: Option<u32>,

    /// PEs per HANDLE_TABLE_RESPONSE before the M bit continues the dump. [default: 128]
    #[arg(long, value_name = "N")]
    pub max_elements_per_ht_request: Option<usize>,

    /// Longest accepted pool handle, bytes (rsplib: 32). [default: 32]
    #[arg(long, value_name = "BYTES")]
    pub max_handle_length: Option<usize>,

    /// Narrowest accepted scope of PE user addresses: loopback, link-local, site-local,
    /// global. Narrower addresses pass only if the PE's own association uses such an
    /// address (e.g. everything on loopback). [default: site-local]
    #[arg(long, value_name = "SCOPE")]
    pub min_address_scope: Option<String>,

    /// Peers in this network may register user addresses other than their own
    /// (third-party registration, e.g. a proxy PE); repeatable ADDR/PREFIX.
    #[arg(long = "allow-third-party", value_name = "ADDR/PREFIX")]
    pub allow_third_party: Vec<String>,

    /// Per-PU handle resolutions per second (token bucket; burst = 2 s worth, at least 1).
    /// [default: unlimited]
    #[arg(long, value_name = "PER_SEC")]
    pub max_hr_rate: Option<f64>,

    /// Per-PU endpoint-unreachable reports per second. [default: unlimited]
    #[arg(long, value_name = "PER_SEC")]
    pub max_eu_rate: Option<f64>,

    /// Maximum number of pools. [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_pools: Option<usize>,

    /// Maximum PEs per pool. [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_pes_per_pool: Option<usize>,

    /// Maximum PEs registered over one association. [default: 4096]
    #[arg(long, value_name = "N")]
    pub max_pes_per_association: Option<usize>,

    /// Maximum PEs in total. [default: 1000000]
    #[arg(long, value_name = "N")]
    pub max_pes: Option<usize>,

    /// Maximum simultaneous associations; more are refused at accept. [default: 20000]
    #[arg(long, value_name = "N")]
    pub max_associations: Option<usize>,

    /// TCP: buffer memory for partial (incomplete) messages of all associations of one
    /// listener, bytes; an association whose partial message would exceed it is closed
    /// (SECURITY.md). At least 65538 (one maximum-size message). [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub max_partial_bytes: Option<usize>,

    /// Log format. [default: text]
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<LogFormat>,

    /// Serve Prometheus metrics over HTTP at ADDR:PORT (`/metrics`). [default: off]
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Send Component Status Protocol reports (rsplib `-cspserver=`; asap/wire/INTEROP.md §8)
    /// to this monitor (`rsp monitor`, rsplib `cspmonitor`); the port defaults to 2960.
    /// [default: off]
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub csp: Option<String>,

    /// Milliseconds between CSP reports (rsplib `-cspinterval=`; at least 250).
    /// [default: 1000]
    #[arg(long, value_name = "MS")]
    pub csp_interval: Option<u64>,

    /// Runtime threads. 1 runs everything (sockets, protocol core, timers) on one thread,
    /// the best choice on a single CPU; N > 1 uses a multi-threaded runtime with N workers
    /// (each association's requests are still decoded, handled and answered on its own
    /// task, without a cross-thread hand-off). [default: available parallelism]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    pub threads: Option<usize>,
}

/// One `[[pool_auth]]` table of the configuration file (issue 13 item 3; SECURITY.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PoolAuthOption {
    /// The pool handle (UTF-8).
    pub handle: String,
    /// TLS client certificates carrying one of these DNS names or IP addresses (subject
    /// alternative name) may register (needs `asap-tls = "on"`).
    pub tls_names: Vec<String>,
    /// Peer addresses (ADDR or ADDR/PREFIX) that may register without TLS (rsplib PEs).
    pub addresses: Vec<String>,
    /// Pre-shared keys (hex, at least 16 bytes, e.g. `openssl rand -hex 32`): a
    /// REGISTRATION signed with one of them (Registration Authenticator, SECURITY.md
    /// "Per-pool pre-shared keys") may register, over any transport. Several: rotation.
    pub psk: Vec<String>,
    /// Files each holding one such key in hex (keeps keys out of the main file).
    pub psk_file: Vec<PathBuf>,
}

fn on_off(option: &'static str, v: &Option<String>, default: bool) -> Result<bool, OptionsError> {
    match v.as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(o) => Err(invalid(option, format!("{o:?} is not on|off"))),
    }
}

/// A settings error, naming the option.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// A value could not be parsed.
    #[error("--{option}: {message}")]
    Invalid {
        /// The option's long name.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The configuration file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn invalid(option: &'static str, message: impl Into<String>) -> OptionsError {
    OptionsError::Invalid {
        option,
        message: message.into(),
    }
}

/// Parses `ADDR:PORT[,ADDR[:PORT]...]` (also `ADDR[,ADDR...]:PORT`; IPv6 in brackets):
/// items without a port take the port given elsewhere in the list, or `default_port`.
pub fn parse_listen(s: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut ips: Vec<(IpAddr, Option<u16>)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Ok(sa) = part.parse::<SocketAddr>() {
            ips.push((sa.ip(), Some(sa.port())));
        } else {
            let p = part
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .unwrap_or(part);
            let ip = p
                .parse::<IpAddr>()
                .map_err(|_| format!("{part:?} is neither ADDR:PORT nor ADDR"))?;
            ips.push((ip, None));
        }
    }
    if ips.is_empty() {
        return Err("empty address list".into());
    }
    let port = ips.iter().find_map(|(_, p)| *p).unwrap_or(default_port);
    if ips.iter().any(|(_, p)| p.is_some_and(|p| p != port)) {
        return Err("all addresses must use the same port".into());
    }
    Ok(ips
        .into_iter()
        .map(|(ip, _)| SocketAddr::new(ip, port))
        .collect())
}

fn parse_targets(
    option: &'static str,
    s: &str,
    auto: SocketAddr,
) -> Result<Vec<SocketAddr>, OptionsError> {
    match s.trim() {
        "auto" => Ok(vec![auto]),
        "off" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|t| {
                t.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| invalid(option, format!("{t:?} is not ADDR:PORT")))
            })
            .collect(),
    }
}

/// A list of `ADDR[/PREFIX]` networks of option `option`.
fn networks(option: &'static str, list: &[String]) -> Result<Vec<IpNet>, OptionsError> {
    list.iter()
        .map(|s| IpNet::from_str(s).map_err(|e| invalid(option, e.to_string())))
        .collect()
}

fn parse_id(s: &str) -> Result<u32, String> {
    parse_server_id(s).map_err(|e| match e {
        ServerIdError::NotANumber => format!("{:?} is not a 32-bit number", s.trim()),
        ServerIdError::Reserved => "0 is reserved (\"unknown server\")".into(),
    })
}

fn rate(option: &'static str, per_second: Option<f64>) -> Result<Option<Rate>, OptionsError> {
    match per_second {
        None => Ok(None),
        Some(r) if r < 0.0 => Ok(None), // rsplib: -1 = unlimited
        Some(r) if r == 0.0 || !r.is_finite() => Err(invalid(option, "must be > 0 (or -1)")),
        Some(r) => Ok(Some(Rate {
            per_second: r,
            burst: (2.0 * r).max(1.0),
        })),
    }
}

/// `--transport` / `transport =`: one or more [`TransportKind`]s, comma-separated on the
/// command line; in the TOML file a string (`"sctp,tcp"`) or an array (`["sctp", "tcp"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportList(pub Vec<TransportKind>);

impl FromStr for TransportList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s
            .split(',')
            .map(|k| k.trim().parse::<TransportKind>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err("no transport".into());
        }
        Ok(TransportList(v))
    }
}

impl<'de> Deserialize<'de> for TransportList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<TransportKind>),
        }
        match Form::deserialize(d)? {
            Form::One(s) => s.parse().map_err(serde::de::Error::custom),
            Form::Many(v) if v.is_empty() => Err(serde::de::Error::custom("no transport")),
            Form::Many(v) => Ok(TransportList(v)),
        }
    }
}

impl Options {
    /// The `--transport` list (default `auto`), not resolved.
    pub fn transports(&self) -> Vec<TransportKind> {
        self.transport
            .as_ref()
            .map(|l| l.0.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![TransportKind::Auto])
    }

    /// Reads the TOML file named by `--config` (if any) and fills every option not given on
    /// the command line from it.
    pub fn with_config_file(self) -> Result<Options, OptionsError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| OptionsError::File {
            path: path.clone(),
            message: match e.kind() {
                // Issue 16 item 6: the error names the fix.
                std::io::ErrorKind::NotFound => format!(
                    "{e}; create it (annotated example: enrp-server/registrar.example.toml, \
                     installed as /etc/rserpool/enrp-server.toml) or fix --config"
                ),
                _ => e.to_string(),
            },
        })?;
        let file: Options = toml::from_str(&text).map_err(|e| OptionsError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(self.merged_with(file))
    }

    /// `self` (command line) over `file`.
    pub fn merged_with(self, file: Options) -> Options {
        // Options: the command line's if given. Lists: the command line's if not empty.
        macro_rules! pick {
            ($($f:ident),* ; $($list:ident),*) => { Options {
                $( $f: self.$f.or(file.$f), )*
                $( $list: if self.$list.is_empty() { file.$list } else { self.$list }, )*
            } };
        }
        pick!(
            config,
            threads,
            asap,
            enrp,
            identifier,
            asap_announce,
            enrp_announce,
            transport,
            auto_fallback,
            sctp_udp_port,
            sctp_udp_remote_port,
            peering,
            peer_heartbeat_cycle,
            peer_max_time_last_heard,
            peer_max_time_no_response,
            mentor_discovery_timeout,
            takeover_expiry_interval,
            takeover_suggestion,
            max_peers,
            enrp_security,
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_id_binding,
            tls_handshake_timeout,
            registration_psk_window,
            asap_tls,
            max_pes_per_peer,
            max_peer_registration_life,
            orphan_timeout,
            takeover_probe_rate,
            idle_timeout,
            max_associations_per_host,
            bulk_hres_threshold,
            max_bulk_hr_rate,
            keep_alive_interval,
            keep_alive_timeout,
            announce_cycle,
            announce_ttl,
            max_bad_pe_reports,
            unreachable_counting,
            max_increment,
            unreachable_window,
            unreachable_probe_timeout,
            max_hres_items,
            distance_step,
            hres_items_cap,
            max_elements_per_ht_request,
            max_handle_length,
            min_address_scope,
            max_hr_rate,
            max_eu_rate,
            max_pools,
            max_pes_per_pool,
            max_pes_per_association,
            max_pes,
            max_associations,
            max_partial_bytes,
            log_format,
            metrics,
            csp,
            csp_interval;
            peers,
            allow_third_party,
            peer_allow,
            hsdump_allow,
            takeover_scope,
            pool_auth
        )
    }

    /// The CSP monitor and report interval of `--csp`/`--csp-interval` (`None`: off).
    pub fn csp_target(&self) -> Result<Option<(SocketAddr, Duration)>, OptionsError> {
        let Some(s) = &self.csp else {
            return Ok(None);
        };
        let addr = rserpool_cli_assets::parse_endpoint(s, asap::wire::csp::CSP_PORT)
            .map_err(|m| invalid("csp", m))?;
        let interval =
            Duration::from_millis(self.csp_interval.unwrap_or(1000)).max(asap::csp::MIN_INTERVAL);
        Ok(Some((addr, interval)))
    }

    /// The core and driver settings, with defaults for everything not given. `random_id`
    /// is used when no identifier is configured.
    pub fn resolve(&self, random_id: u32) -> Result<(CoreConfig, DriverConfig), OptionsError> {
        let id = match &self.identifier {
            Some(s) => parse_id(s).map_err(|m| invalid("identifier", m))?,
            None => random_id.max(1),
        };
        let mut c = CoreConfig::new(id);
        c.seed = u64::from(id) ^ u64::from(random_id).rotate_left(32);
        let ms = Duration::from_millis;
        if let Some(v) = self.keep_alive_interval {
            c.keep_alive_interval = ms(v.max(1));
        }
        if let Some(v) = self.keep_alive_timeout {
            c.keep_alive_timeout = ms(v.max(1));
        }
        if let Some(v) = self.announce_cycle {
            c.announce_interval = ms(v.max(10));
        }
        if let Some(v) = self.max_bad_pe_reports {
            if !(1..=64).contains(&v) {
                return Err(invalid("max-bad-pe-reports", "must be 1..=64"));
            }
            c.max_bad_pe_reports = v;
        }
        if let Some(v) = self.unreachable_counting {
            c.unreachable_counting = match v {
                UnreachableCountingArg::Distinct => UnreachableCounting::DistinctReporters,
                UnreachableCountingArg::Raw => UnreachableCounting::Raw,
            };
        }
        if let Some(v) = &self.max_increment {
            c.max_increment = match v.as_str() {
                "rfc" => MaxIncrement::PolicyDefault,
                "rsplib" => MaxIncrement::RsplibDefault,
                n => match n.parse::<u32>() {
                    Ok(k) => MaxIncrement::from_rsplib(k),
                    Err(_) => {
                        return Err(invalid(
                            "max-increment",
                            "must be rfc, rsplib or a number (0 = rsplib's default)",
                        ))
                    }
                },
            };
        }
        if let Some(v) = self.unreachable_window {
            c.security.unreachable_window = ms(v.max(1));
        }
        if let Some(v) = self.unreachable_probe_timeout {
            c.security.unreachable_probe_timeout = ms(v.clamp(1, 60_000));
        }
        if let Some(v) = self.max_hres_items {
            c.max_hres_items = v.max(1);
        }
        if let Some(v) = self.distance_step {
            c.distance_step = ms(v.max(1));
        }
        if let Some(v) = self.hres_items_cap {
            c.hres_items_cap = v.max(1);
        }
        if let Some(v) = self.max_elements_per_ht_request {
            c.handle_table_chunk = v.max(1);
        }
        if let Some(v) = self.max_handle_length {
            c.max_handle_len = v.clamp(1, 65_000);
        }
        if let Some(s) = &self.min_address_scope {
            c.min_address_scope = AddressScope::from_str(s)
                .map_err(|e| invalid("min-address-scope", e.to_string()))?;
        }
        c.allow_third_party = networks("allow-third-party", &self.allow_third_party)?;
        c.hres_rate = rate("max-hr-rate", self.max_hr_rate)?;
        c.eu_rate = rate("max-eu-rate", self.max_eu_rate)?;
        let d = HandlespaceLimits::default();
        c.limits = HandlespaceLimits {
            max_pools: self.max_pools.unwrap_or(d.max_pools),
            max_pes_per_pool: self.max_pes_per_pool.unwrap_or(d.max_pes_per_pool),
            max_pes_per_connection: self
                .max_pes_per_association
                .unwrap_or(d.max_pes_per_connection),
            max_pes: self.max_pes.unwrap_or(d.max_pes),
        };
        c.asap_announce_targets = parse_targets(
            "asap-announce",
            self.asap_announce.as_deref().unwrap_or("auto"),
            defaults::ASAP_ANNOUNCE_ADDR,
        )?;
        c.peers = self
            .peers
            .iter()
            .map(|p| {
                p.parse::<SocketAddr>()
                    .map_err(|_| invalid("peer", format!("{p:?} is not ADDR:PORT")))
            })
            .collect::<Result<_, _>>()?;

        let asap = parse_listen(
            self.asap.as_deref().unwrap_or("0.0.0.0:3863"),
            defaults::ASAP_PORT,
        )
        .map_err(|m| invalid("asap", m))?;
        let enrp = match self.enrp.as_deref().unwrap_or("0.0.0.0:9901").trim() {
            "off" => Vec::new(),
            s => parse_listen(s, defaults::ENRP_PORT).map_err(|m| invalid("enrp", m))?,
        };
        let mut enrp_announce = parse_targets(
            "enrp-announce",
            self.enrp_announce.as_deref().unwrap_or("auto"),
            defaults::ENRP_PRESENCE_ADDR,
        )?;
        c.peering.multicast = enrp_announce.first().copied();
        c.peering.enabled = match self.peering.as_deref() {
            // A multicast group given (not `off`) turns peering on; `off` names none.
            None => {
                !c.peers.is_empty() || (self.enrp_announce.is_some() && !enrp_announce.is_empty())
            }
            Some("on") => true,
            Some("off") => false,
            Some(o) => return Err(invalid("peering", format!("{o:?} is not on|off"))),
        };
        for (v, slot) in [
            (self.peer_heartbeat_cycle, &mut c.peering.heartbeat_cycle),
            (
                self.peer_max_time_last_heard,
                &mut c.peering.max_time_last_heard,
            ),
            (
                self.peer_max_time_no_response,
                &mut c.peering.max_time_no_response,
            ),
            (
                self.takeover_expiry_interval,
                &mut c.peering.takeover_expiry,
            ),
        ] {
            if let Some(v) = v {
                *slot = ms(v.max(100));
            }
        }
        if let Some(v) = self.mentor_discovery_timeout {
            c.peering.mentor_discovery_timeout = ms(v.clamp(0, 60_000));
        }
        c.peering.takeover_suggestion = match self.takeover_suggestion.as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(o) => {
                return Err(invalid(
                    "takeover-suggestion",
                    format!("{o:?} is not on|off"),
                ))
            }
        };
        match self.max_peers {
            Some(0) => return Err(invalid("max-peers", "must be at least 1")),
            Some(v) => c.peering.max_peers = v,
            None => {}
        }
        if let Some(s) = &self.enrp_security {
            c.security.enrp_security =
                EnrpSecurity::from_str(s).map_err(|m| invalid("enrp-security", m))?;
        }
        let (enrp_tls, asap_tls) = self.resolve_tls(&mut c)?;
        if c.security.enrp_security == EnrpSecurity::Tls {
            // UDP PRESENCE cannot be authenticated: TLS peers are the --peer ones (and
            // those that connect with a cluster certificate).
            match self.enrp_announce.as_deref().map(str::trim) {
                None | Some("off") | Some("") => {
                    enrp_announce.clear();
                    c.peering.multicast = None;
                }
                Some(_) => {
                    return Err(invalid(
                        "enrp-announce",
                        "with --enrp-security tls peers are configured with --peer: UDP \
                         PRESENCE cannot be authenticated (use off)",
                    ))
                }
            }
        }
        c.security.peer_allow = self
            .peer_allow
            .iter()
            .map(|s| PeerAllow::from_str(s).map_err(|m| invalid("peer-allow", m)))
            .collect::<Result<_, _>>()?;
        if !self.hsdump_allow.is_empty() {
            c.security.hsdump_allow = networks("hsdump-allow", &self.hsdump_allow)?;
        }
        if let Some(v) = self.max_pes_per_peer {
            c.security.max_pes_per_peer = v;
        }
        if let Some(v) = self.max_peer_registration_life {
            c.security.max_peer_registration_life = ms(v.clamp(1000, i32::MAX as u64));
        }
        if let Some(v) = self.orphan_timeout {
            c.security.orphan_timeout = ms(v.max(100));
        }
        c.security.takeover_scope = networks("takeover-scope", &self.takeover_scope)?;
        if let Some(v) = self.idle_timeout {
            c.security.idle_timeout = ms(v.max(100));
        }
        match self.max_associations_per_host {
            Some(0) => return Err(invalid("max-associations-per-host", "must be at least 1")),
            Some(v) => c.security.max_associations_per_host = v,
            None => {}
        }
        if let Some(v) = self.bulk_hres_threshold {
            c.security.bulk_hres_threshold = v;
        }
        if self.max_bulk_hr_rate.is_some() {
            c.security.bulk_hres_rate = rate("max-bulk-hr-rate", self.max_bulk_hr_rate)?;
        }
        match self.takeover_probe_rate {
            Some(0) => return Err(invalid("takeover-probe-rate", "must be at least 1")),
            Some(v) => c.security.takeover_probe_rate = v,
            None => {}
        }
        let transports = self.transports();
        let auto_fallback = match self.auto_fallback {
            None | Some(TransportKind::Tcp) => TransportKind::Tcp,
            Some(TransportKind::SctpUdp) => TransportKind::SctpUdp,
            Some(other) => {
                return Err(invalid(
                    "auto-fallback",
                    format!("{other} is not tcp or sctp-udp"),
                ))
            }
        };
        let driver = DriverConfig {
            asap,
            enrp,
            transport: transports[0],
            extra_transports: transports[1..].to_vec(),
            auto_fallback,
            announce_ttl: self.announce_ttl.unwrap_or(1),
            enrp_announce,
            max_associations: self.max_associations.unwrap_or(20_000),
            max_partial_bytes: match self.max_partial_bytes {
                Some(v) if v < defaults::MAX_RSERPOOL_MESSAGE => {
                    return Err(invalid(
                        "max-partial-bytes",
                        format!(
                            "must be at least {} (one maximum-size message)",
                            defaults::MAX_RSERPOOL_MESSAGE
                        ),
                    ))
                }
                Some(v) => v,
                None => defaults::TCP_MAX_PARTIAL_BYTES,
            },
            enrp_tls,
            asap_tls,
        };
        Ok((c, driver))
    }

    /// TLS and `[[pool_auth]]` settings: the ENRP and ASAP TLS contexts for the driver
    /// (loaded from the PEM files), the core's binding and pool credentials.
    fn resolve_tls(
        &self,
        c: &mut CoreConfig,
    ) -> Result<(Option<TlsContext>, Option<TlsContext>), OptionsError> {
        let enrp_tls_on = c.security.enrp_security == EnrpSecurity::Tls;
        let asap_tls_on = on_off("asap-tls", &self.asap_tls, false)?;
        c.security.tls_server_id_binding =
            on_off("tls-server-id-binding", &self.tls_server_id_binding, true)?;
        for p in &self.pool_auth {
            if p.handle.is_empty() {
                return Err(invalid("pool_auth", "handle must not be empty"));
            }
            if p.tls_names.is_empty()
                && p.addresses.is_empty()
                && p.psk.is_empty()
                && p.psk_file.is_empty()
            {
                return Err(invalid(
                    "pool_auth",
                    format!(
                        "pool {:?}: give tls-names, addresses, psk and/or psk-file",
                        p.handle
                    ),
                ));
            }
            let mut psk = Vec::new();
            for hex in &p.psk {
                psk.push(
                    RegistrationKey::from_hex(hex).map_err(|e| {
                        invalid("pool_auth", format!("pool {:?}: psk: {e}", p.handle))
                    })?,
                );
            }
            for f in &p.psk_file {
                let hex = std::fs::read_to_string(f)
                    .map_err(|e| invalid("pool_auth", format!("psk-file {}: {e}", f.display())))?;
                psk.push(
                    RegistrationKey::from_hex(&hex).map_err(|e| {
                        invalid("pool_auth", format!("psk-file {}: {e}", f.display()))
                    })?,
                );
            }
            if !p.tls_names.is_empty() && !asap_tls_on {
                return Err(invalid(
                    "pool_auth",
                    format!("pool {:?}: tls-names need --asap-tls on", p.handle),
                ));
            }
            if let Some(bad) = p.tls_names.iter().find(|n| !tls::is_valid_name(n)) {
                return Err(invalid(
                    "pool_auth",
                    format!("{bad:?} is neither a DNS name nor an IP address"),
                ));
            }
            c.security.pool_auth.push(PoolAuth {
                handle: PoolHandle::from(p.handle.as_str()),
                tls_names: p.tls_names.clone(),
                addresses: networks("pool_auth", &p.addresses)?,
                psk,
            });
        }
        if let Some(ms) = self.registration_psk_window {
            c.security.psk_window = Duration::from_millis(ms.max(1));
        }
        if !enrp_tls_on && !asap_tls_on {
            return Ok((None, None));
        }
        let what = if enrp_tls_on {
            "enrp-security"
        } else {
            "asap-tls"
        };
        let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key)
        else {
            return Err(invalid(
                what,
                "TLS needs --tls-ca, --tls-cert and --tls-key",
            ));
        };
        let timeout = Duration::from_millis(self.tls_handshake_timeout.unwrap_or(10_000).max(1));
        let load = |auth: ClientAuth| {
            TlsContext::from_files(ca, Some((cert.as_path(), key.as_path())), auth)
                .map(|t| t.with_handshake_timeout(timeout))
                .map_err(|e| invalid(what, e.to_string()))
        };
        Ok((
            enrp_tls_on
                .then(|| load(ClientAuth::Required))
                .transpose()?,
            asap_tls_on
                .then(|| load(ClientAuth::Optional))
                .transpose()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 6: a missing --config file is named, with the fix.
    #[test]
    fn missing_config_file_names_path_and_fix() {
        let path = std::env::temp_dir().join("enrp-server-no-such-config.toml");
        let e = Options::parse_from(["enrp-server", "--config", path.to_str().expect("utf-8")])
            .with_config_file()
            .expect_err("missing file");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("config file {}: ", path.display())),
            "{text}"
        );
        assert!(text.contains("registrar.example.toml"), "{text}");
        assert!(text.contains("or fix --config"), "{text}");
    }

    #[test]
    fn listen_lists() {
        let v = parse_listen("10.0.0.1:3863,10.0.1.1", 1).expect("valid");
        assert_eq!(v[1], "10.0.1.1:3863".parse::<SocketAddr>().expect("lit"));
        let v = parse_listen("10.0.0.1,10.0.1.1:4000", 1).expect("valid");
        assert_eq!(v[0].port(), 4000);
        assert_eq!(parse_listen("[::1]", 9).expect("valid")[0].port(), 9);
        assert!(parse_listen("10.0.0.1:1,10.0.0.2:2", 1).is_err());
        assert!(parse_listen("x", 1).is_err());
    }

    #[test]
    fn cli_overrides_file() {
        let file: Options = toml::from_str(
            "keep-alive-interval = 1000\nmax-hres-items = 7\npeer = [\"10.0.0.9:9901\"]\n\
             identifier = \"0x10\"\nasap-announce = \"off\"\n",
        )
        .expect("valid toml");
        let cli = Options::parse_from(["enrp-server", "--keep-alive-interval", "2000"]);
        let o = cli.merged_with(file);
        let (c, d) = o.resolve(99).expect("valid");
        assert_eq!(c.keep_alive_interval, Duration::from_millis(2000));
        assert_eq!(c.max_hres_items, 7);
        assert_eq!(c.server_id, 0x10);
        assert_eq!(c.peers.len(), 1);
        assert!(c.asap_announce_targets.is_empty());
        assert_eq!(d.asap[0].port(), 3863);
        assert_eq!(c.keep_alive_timeout, Duration::from_millis(5000));
    }

    #[test]
    fn peering_timers_from_file_and_cli() {
        let file: Options = toml::from_str(
            "peer = [\"10.0.0.9:9901\"]\npeer-heartbeat-cycle = 30000\n\
             peer-max-time-last-heard = 61000\ntakeover-expiry-interval = 7000\n",
        )
        .expect("valid toml");
        let cli = Options::parse_from(["enrp-server", "--peer-max-time-no-response", "3000"]);
        let (c, _) = cli.merged_with(file).resolve(5).expect("valid");
        assert!(c.peering.enabled, "a static peer turns peering on");
        assert_eq!(c.peering.heartbeat_cycle, Duration::from_millis(30_000));
        assert_eq!(c.peering.max_time_last_heard, Duration::from_millis(61_000));
        assert_eq!(c.peering.max_time_no_response, Duration::from_millis(3000));
        assert_eq!(c.peering.takeover_expiry, Duration::from_millis(7000));
        assert_eq!(
            c.peering.mentor_discovery_timeout,
            Duration::from_millis(5000)
        );
        assert_eq!(
            c.peering.multicast,
            Some("239.0.0.51:9901".parse().expect("lit"))
        );
        let (c, _) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert!(
            !c.peering.enabled,
            "a lone registrar does not peer by default"
        );
        let o = Options::parse_from(["enrp-server", "--peering", "maybe"]);
        assert!(o.resolve(1).is_err());
    }

    /// `--enrp-announce off` names no multicast group: it must not turn peering on (a
    /// registrar meant to stand alone would otherwise listen to peers); a group does.
    #[test]
    fn rsplib_compatibility_switches_from_cli_and_file() {
        let (c, _) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert_eq!(
            c.unreachable_counting,
            UnreachableCounting::DistinctReporters
        );
        assert_eq!(c.max_increment, MaxIncrement::PolicyDefault);
        let (c, _) = Options::parse_from([
            "enrp-server",
            "--unreachable-counting",
            "raw",
            "--max-increment",
            "rsplib",
        ])
        .resolve(5)
        .expect("valid");
        assert_eq!(c.unreachable_counting, UnreachableCounting::Raw);
        assert_eq!(c.max_increment, MaxIncrement::RsplibDefault);
        let file: Options =
            toml::from_str("unreachable-counting = \"raw\"\nmax-increment = \"2\"\n")
                .expect("valid toml");
        let (c, _) = Options::parse_from(["enrp-server", "--unreachable-counting", "distinct"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        assert_eq!(
            c.unreachable_counting,
            UnreachableCounting::DistinctReporters
        );
        assert_eq!(c.max_increment, MaxIncrement::Count(2));
        let (c, _) = Options::parse_from(["enrp-server", "--max-increment", "0"])
            .resolve(5)
            .expect("valid");
        assert_eq!(c.max_increment, MaxIncrement::RsplibDefault, "rsplib's 0");
        let e = Options::parse_from(["enrp-server", "--max-increment", "most"])
            .resolve(5)
            .expect_err("refused");
        assert!(e.to_string().contains("max-increment"), "{e}");
    }

    #[test]
    fn enrp_announce_off_does_not_turn_peering_on() {
        let (c, _) = Options::parse_from(["enrp-server", "--enrp-announce", "off"])
            .resolve(5)
            .expect("valid");
        assert!(!c.peering.enabled, "--enrp-announce off turned peering on");
        assert_eq!(c.peering.multicast, None);
        let file: Options = toml::from_str("enrp-announce = \"off\"\n").expect("valid toml");
        let (c, _) = Options::parse_from(["enrp-server"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        assert!(
            !c.peering.enabled,
            "enrp-announce = \"off\" turned peering on"
        );
        for on in ["auto", "239.0.0.52:9901"] {
            let (c, _) = Options::parse_from(["enrp-server", "--enrp-announce", on])
                .resolve(5)
                .expect("valid");
            assert!(c.peering.enabled, "--enrp-announce {on} turns peering on");
        }
        let (c, _) = Options::parse_from([
            "enrp-server",
            "--enrp-announce",
            "off",
            "--peer",
            "10.0.0.9:9901",
        ])
        .resolve(5)
        .expect("valid");
        assert!(c.peering.enabled, "a static peer still turns peering on");
    }

    #[test]
    fn enrp_security_options() {
        let (c, _) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert_eq!(c.security.enrp_security, EnrpSecurity::AllowList, "default");
        assert!(c.security.peer_allow.is_empty());
        assert_eq!(c.security.hsdump_allow.len(), 2, "loopback by default");
        assert_eq!(c.security.unreachable_window, Duration::from_secs(300));
        assert_eq!(c.security.unreachable_probe_timeout, Duration::from_secs(1));
        assert_eq!(c.security.max_pes_per_peer, 50_000);
        assert_eq!(
            c.security.max_peer_registration_life,
            Duration::from_secs(3600)
        );
        assert_eq!(c.security.orphan_timeout, Duration::from_secs(30));
        assert!(c.security.takeover_scope.is_empty());
        assert_eq!(c.security.takeover_probe_rate, 100);
        assert_eq!(c.security.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.security.max_associations_per_host, 1000);
        assert_eq!(c.security.bulk_hres_threshold, 256);
        assert_eq!(c.security.bulk_hres_rate.map(|r| r.per_second), Some(2.0));
        let (c, _) = Options::parse_from([
            "enrp-server",
            "--idle-timeout",
            "5000",
            "--max-associations-per-host",
            "9",
            "--bulk-hres-threshold",
            "50",
            "--max-bulk-hr-rate",
            "-1",
        ])
        .resolve(5)
        .expect("valid");
        assert_eq!(c.security.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.security.max_associations_per_host, 9);
        assert_eq!(c.security.bulk_hres_threshold, 50);
        assert!(c.security.bulk_hres_rate.is_none(), "-1 = unlimited");
        let file: Options = toml::from_str(
            "max-pes-per-peer = 10\nmax-peer-registration-life = 60000\norphan-timeout = 9000\n\
             takeover-scope = [\"10.0.0.0/8\"]\ntakeover-probe-rate = 7\n",
        )
        .expect("valid toml");
        let (c, _) = Options::parse_from(["enrp-server"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        assert_eq!(c.security.max_pes_per_peer, 10);
        assert_eq!(
            c.security.max_peer_registration_life,
            Duration::from_secs(60)
        );
        assert_eq!(c.security.orphan_timeout, Duration::from_secs(9));
        assert_eq!(c.security.takeover_scope.len(), 1);
        assert_eq!(c.security.takeover_probe_rate, 7);
        assert!(
            Options::parse_from(["enrp-server", "--takeover-probe-rate", "0"])
                .resolve(5)
                .is_err()
        );
        let (c, _) = Options::parse_from([
            "enrp-server",
            "--unreachable-window",
            "60000",
            "--unreachable-probe-timeout",
            "500",
        ])
        .resolve(5)
        .expect("valid");
        assert_eq!(c.security.unreachable_window, Duration::from_secs(60));
        assert_eq!(
            c.security.unreachable_probe_timeout,
            Duration::from_millis(500)
        );
        let file: Options = toml::from_str(
            "enrp-security = \"open\"\npeer-allow = [\"10.1.0.0/16\", \"0x77\"]\n\
             hsdump-allow = [\"192.168.5.0/24\"]\n",
        )
        .expect("valid toml");
        let (c, _) = Options::parse_from(["enrp-server"])
            .merged_with(file.clone())
            .resolve(5)
            .expect("valid");
        assert_eq!(c.security.enrp_security, EnrpSecurity::Open);
        assert_eq!(c.security.peer_allow.len(), 2);
        assert_eq!(c.security.peer_allow[1], PeerAllow::ServerId(0x77));
        assert_eq!(c.security.hsdump_allow.len(), 1, "replaces the default");
        let (c, _) = Options::parse_from([
            "enrp-server",
            "--enrp-security",
            "allow-list",
            "--peer-allow",
            "10.9.9.9",
        ])
        .merged_with(file)
        .resolve(5)
        .expect("valid");
        assert_eq!(c.security.enrp_security, EnrpSecurity::AllowList);
        assert_eq!(c.security.peer_allow.len(), 1, "the command line wins");
        let e = Options::parse_from(["enrp-server", "--enrp-security", "tls"])
            .resolve(5)
            .expect_err("tls without certificate files");
        assert!(e.to_string().contains("--enrp-security"), "{e}");
        assert!(e.to_string().contains("--tls-ca"), "{e}");
        for (opt, bad) in [
            ("--enrp-security", "none"),
            ("--peer-allow", "x"),
            ("--hsdump-allow", "x"),
        ] {
            let e = Options::parse_from(["enrp-server", opt, bad])
                .resolve(5)
                .expect_err(bad);
            assert!(e.to_string().contains(opt), "{e}");
        }
    }

    #[test]
    fn max_peers_from_file_and_cli() {
        let (c, _) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert_eq!(c.peering.max_peers, 256, "documented default");
        let file: Options = toml::from_str("max-peers = 32\n").expect("valid toml");
        let (c, _) = Options::parse_from(["enrp-server"])
            .merged_with(file.clone())
            .resolve(5)
            .expect("valid");
        assert_eq!(c.peering.max_peers, 32);
        let (c, _) = Options::parse_from(["enrp-server", "--max-peers", "3"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        assert_eq!(c.peering.max_peers, 3, "the command line wins");
        let e = Options::parse_from(["enrp-server", "--max-peers", "0"])
            .resolve(5)
            .expect_err("0 peers");
        assert!(e.to_string().contains("--max-peers"), "{e}");
        assert!(Options::try_parse_from(["enrp-server", "--max-peers", "-1"]).is_err());
    }

    #[test]
    fn sctp_udp_transport_and_ports_from_cli_and_file() {
        let o = Options::parse_from([
            "enrp-server",
            "--transport",
            "sctp-udp",
            "--sctp-udp-port",
            "0",
        ]);
        assert_eq!(o.sctp_udp_port, Some(0));
        let (_, d) = o.resolve(5).expect("valid");
        assert_eq!(d.transport, TransportKind::SctpUdp);
        let file: Options = toml::from_str(
            "transport = \"sctp-udp\"\nsctp-udp-port = 9900\nsctp-udp-remote-port = 9899\n",
        )
        .expect("valid toml");
        assert_eq!(
            file.transport,
            Some(TransportList(vec![TransportKind::SctpUdp]))
        );
        assert_eq!(file.sctp_udp_port, Some(9900));
        assert_eq!(file.sctp_udp_remote_port, Some(9899));
    }

    /// Issue 17 item 4: several transports at once, from the command line and the file.
    #[test]
    fn several_transports_and_auto_fallback() {
        use TransportKind::*;
        let (_, d) = Options::parse_from(["enrp-server", "--transport", "sctp-udp,tcp"])
            .resolve(5)
            .expect("valid");
        assert_eq!(
            (d.transport, d.extra_transports.clone()),
            (SctpUdp, vec![Tcp])
        );
        assert_eq!(d.auto_fallback, Tcp, "documented default");
        assert_eq!(d.listen_transports(), vec![SctpUdp, Tcp]);
        let (_, d) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert_eq!((d.transport, d.extra_transports.len()), (Auto, 0));
        let (_, d) = Options::parse_from([
            "enrp-server",
            "--transport",
            "auto,tcp",
            "--auto-fallback",
            "sctp-udp",
        ])
        .resolve(5)
        .expect("valid");
        assert_eq!((d.transport, d.extra_transports.clone()), (Auto, vec![Tcp]));
        assert_eq!(d.auto_fallback, SctpUdp);
        assert_eq!(d.listen_transports()[1], Tcp);
        assert_ne!(
            d.listen_transports()[0],
            Tcp,
            "auto: kernel SCTP or sctp-udp"
        );
        let e = Options::parse_from(["enrp-server", "--auto-fallback", "sctp"])
            .resolve(5)
            .expect_err("sctp is no fallback");
        assert!(e.to_string().contains("--auto-fallback"), "{e}");
        assert!(Options::try_parse_from(["enrp-server", "--transport", "sctp,udp"]).is_err());
        for text in [
            "transport = \"sctp-udp, tcp\"\n",
            "transport = [\"sctp-udp\", \"tcp\"]\n",
        ] {
            let file: Options = toml::from_str(text).expect("valid toml");
            let (_, d) = Options::parse_from(["enrp-server"])
                .merged_with(file)
                .resolve(5)
                .expect("valid");
            assert_eq!(d.listen_transports(), vec![SctpUdp, Tcp], "{text}");
        }
        assert!(toml::from_str::<Options>("transport = []\n").is_err());
        let file: Options = toml::from_str("transport = \"tcp\"\n").expect("valid");
        let (_, d) = Options::parse_from(["enrp-server", "--transport", "sctp-udp"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        assert_eq!(
            d.listen_transports(),
            vec![SctpUdp],
            "the command line wins"
        );
    }

    #[test]
    fn max_partial_bytes_from_file_and_cli() {
        let (_, d) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert_eq!(d.max_partial_bytes, 16 * 1024 * 1024, "documented default");
        let file: Options = toml::from_str("max-partial-bytes = 1000000\n").expect("valid toml");
        let (_, d) = Options::parse_from(["enrp-server"])
            .merged_with(file.clone())
            .resolve(5)
            .expect("valid");
        assert_eq!(d.max_partial_bytes, 1_000_000);
        let (_, d) = Options::parse_from(["enrp-server", "--max-partial-bytes", "70000"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        assert_eq!(d.max_partial_bytes, 70_000, "the command line wins");
        let e = Options::parse_from(["enrp-server", "--max-partial-bytes", "1000"])
            .resolve(5)
            .expect_err("smaller than one message");
        assert!(e.to_string().contains("--max-partial-bytes"), "{e}");
    }

    #[test]
    fn unknown_keys_rejected() {
        assert!(toml::from_str::<Options>("no-such-option = 1").is_err());
    }

    #[test]
    fn bad_values_name_the_option() {
        let o = Options::parse_from(["enrp-server", "--identifier", "0"]);
        let e = o.resolve(1).expect_err("id 0");
        assert_eq!(
            e.to_string(),
            "--identifier: 0 is reserved (\"unknown server\")"
        );
        let o = Options::parse_from(["enrp-server", "--identifier", "0x"]);
        let e = o.resolve(1).expect_err("no digits");
        assert_eq!(e.to_string(), "--identifier: \"0x\" is not a 32-bit number");
        let o = Options::parse_from(["enrp-server", "--min-address-scope", "planet"]);
        assert!(o.resolve(1).is_err());
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../registrar.example.toml");
        let o: Options = toml::from_str(text).expect("example parses");
        let (c, d) = o.resolve(1).expect("example resolves");
        assert_eq!(c.server_id, 0x5eed_0001);
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.allow_third_party.len(), 1);
        assert_eq!(d.transport, TransportKind::Sctp);
        assert_eq!(c.asap_announce_targets, vec![defaults::ASAP_ANNOUNCE_ADDR]);
        assert!(d.enrp_announce.is_empty());
        assert!(c.hres_rate.is_some());
        assert_eq!(o.log_format, Some(LogFormat::Json));
        // Every peering key is present and shows its default.
        let p = &c.peering;
        let d = crate::core::PeeringConfig::default();
        assert!(p.enabled);
        assert_eq!(p.multicast, None, "enrp-announce = off");
        // The built-in default is 2444.444 ms (rsplib's 2444444 µs); the file says 2444.
        assert_eq!(p.heartbeat_cycle, Duration::from_millis(2444));
        assert_eq!(p.max_time_last_heard, d.max_time_last_heard);
        assert_eq!(p.max_time_no_response, d.max_time_no_response);
        assert_eq!(p.mentor_discovery_timeout, d.mentor_discovery_timeout);
        assert_eq!(p.takeover_expiry, d.takeover_expiry);
        assert_eq!(p.takeover_suggestion, d.takeover_suggestion);
        assert!(!p.takeover_suggestion, "off by default, like rsplib");
        assert_eq!(p.max_peers, d.max_peers);
        assert_eq!(p.max_peers, 256);
        assert_eq!(c.handle_table_chunk, 128);
        assert_eq!(
            c.security.enrp_security,
            crate::core::EnrpSecurity::AllowList
        );
        assert_eq!(c.security.peer_allow.len(), 1);
        assert_eq!(c.security.hsdump_allow.len(), 2);
        for key in [
            "enrp-announce",
            "peer",
            "peering",
            "peer-heartbeat-cycle",
            "peer-max-time-last-heard",
            "peer-max-time-no-response",
            "mentor-discovery-timeout",
            "takeover-expiry-interval",
            "takeover-suggestion",
            "max-peers",
            "enrp-security",
            "peer-allow",
            "hsdump-allow",
            "max-elements-per-ht-request",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))),
                "example sets {key}"
            );
        }
    }
}

/// `--enrp-security tls`, `--asap-tls` and `[[pool_auth]]` (issue 13; SECURITY.md).
#[cfg(test)]
mod tls_tests {
    use super::*;

    /// Writes a cluster CA, a registrar certificate and key to a fresh directory.
    fn pki(tag: &str) -> (PathBuf, [String; 3]) {
        let dir = std::env::temp_dir().join(format!("enrp-tls-opts-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = rserpool_tests::tls::Ca::new("cluster CA");
        let id = ca.issue(&[&crate::core::server_id_name(0x10)]);
        let files = ["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f));
        for (f, text) in files.iter().zip([ca.pem(), id.cert_pem, id.key_pem]) {
            std::fs::write(f, text).expect("write PEM");
        }
        let names = files.map(|f| f.display().to_string());
        (dir, names)
    }

    #[test]
    fn tls_options() {
        let (dir, [ca, cert, key]) = pki("tls");
        let tls = |extra: &[&str]| {
            let mut a = vec![
                "enrp-server",
                "--enrp-security",
                "tls",
                "--tls-ca",
                &ca,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ];
            a.extend_from_slice(extra);
            Options::parse_from(a).resolve(5)
        };
        let (c, d) = tls(&["--transport", "tcp"]).expect("valid TLS settings");
        assert_eq!(c.security.enrp_security, EnrpSecurity::Tls);
        assert!(c.security.tls_server_id_binding, "binding on by default");
        let ctx = d.enrp_tls.expect("ENRP TLS context");
        assert_eq!(ctx.client_auth(), ClientAuth::Required);
        assert_eq!(ctx.handshake_timeout, Duration::from_secs(10));
        assert!(d.asap_tls.is_none(), "ASAP TLS off by default");
        assert!(d.enrp_announce.is_empty(), "no UDP PRESENCE under TLS");
        assert_eq!(c.peering.multicast, None);
        let e = tls(&["--transport", "tcp", "--enrp-announce", "auto"])
            .expect_err("multicast PRESENCE under TLS");
        assert!(e.to_string().contains("--enrp-announce"), "{e}");
        let (c, d) = tls(&[
            "--transport",
            "tcp",
            "--tls-server-id-binding",
            "off",
            "--tls-handshake-timeout",
            "2500",
            "--asap-tls",
            "on",
        ])
        .expect("valid");
        assert!(!c.security.tls_server_id_binding);
        assert_eq!(
            d.enrp_tls.expect("ctx").handshake_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            d.asap_tls.expect("ASAP ctx").client_auth(),
            ClientAuth::Optional
        );
        // Kernel SCTP and sctp-udp: TLS on stream 0 (SECURITY.md "TLS over SCTP").
        for kind in ["sctp", "sctp-udp"] {
            let (c, d) = tls(&["--transport", kind, "--asap-tls", "on"]).expect("TLS over SCTP");
            assert_eq!(c.security.enrp_security, EnrpSecurity::Tls);
            assert_eq!(
                d.enrp_tls.expect("ENRP ctx").client_auth(),
                ClientAuth::Required
            );
            assert_eq!(
                d.asap_tls.expect("ASAP ctx").client_auth(),
                ClientAuth::Optional
            );
        }
        // Several transports: every listener gets TLS (issue 17 item 4 × TLS over SCTP).
        let (_, d) = tls(&["--transport", "tcp,sctp-udp", "--asap-tls", "on"])
            .expect("TLS on every listener");
        assert!(d.enrp_tls.is_some() && d.asap_tls.is_some());
        // A key that does not parse.
        let e = Options::parse_from([
            "enrp-server",
            "--transport",
            "tcp",
            "--enrp-security",
            "tls",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &ca,
        ])
        .resolve(5)
        .expect_err("CA file as key");
        assert!(e.to_string().contains("key"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn pool_auth_from_toml() {
        let (dir, [ca, cert, key]) = pki("pool-auth");
        let file: Options = toml::from_str(&format!(
            "transport = \"tcp\"\nasap-tls = \"on\"\ntls-ca = {ca:?}\ntls-cert = {cert:?}\n\
             tls-key = {key:?}\n\
             [[pool_auth]]\nhandle = \"SecurePool\"\ntls-names = [\"pe1.example\"]\n\
             addresses = [\"10.1.0.0/16\"]\n\
             [[pool_auth]]\nhandle = \"Legacy\"\naddresses = [\"192.0.2.7\"]\n"
        ))
        .expect("valid toml");
        let (c, d) = Options::parse_from(["enrp-server"])
            .merged_with(file.clone())
            .resolve(5)
            .expect("valid");
        assert!(d.asap_tls.is_some());
        assert_eq!(c.security.pool_auth.len(), 2);
        let p = &c.security.pool_auth[0];
        assert_eq!(p.handle, asap::wire::PoolHandle::from("SecurePool"));
        assert_eq!(p.tls_names, vec!["pe1.example".to_string()]);
        assert_eq!(p.addresses[0].prefix, 16);
        assert_eq!(c.security.pool_auth[1].addresses[0].prefix, 32);
        // tls-names without asap-tls, and an entry without any credential, are refused.
        let no_tls = Options {
            asap_tls: Some("off".into()),
            ..file.clone()
        };
        let e = no_tls.resolve(5).expect_err("tls-names need asap-tls");
        assert!(e.to_string().contains("asap-tls"), "{e}");
        let empty: Options = toml::from_str("[[pool_auth]]\nhandle = \"P\"\n").expect("valid toml");
        assert!(empty.resolve(5).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `[[pool_auth]] psk` / `psk-file` (plaintext, no TLS needed) and
    /// `--registration-psk-window`; short or non-hex keys are refused.
    #[test]
    fn pool_auth_psk_from_toml() {
        let dir = std::env::temp_dir().join(format!("enrp-psk-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let kf = dir.join("pool.key");
        std::fs::write(&kf, format!("{}\n", "cd".repeat(32))).expect("key file");
        let file: Options = toml::from_str(&format!(
            "transport = \"tcp\"\n[[pool_auth]]\nhandle = \"P\"\npsk = [\"{}\"]\npsk-file = [{:?}]\n",
            "ab".repeat(32),
            kf.display().to_string()
        ))
        .expect("valid toml");
        let (c, _) = Options::parse_from(["enrp-server", "--registration-psk-window", "5000"])
            .merged_with(file)
            .resolve(5)
            .expect("valid");
        let p = &c.security.pool_auth[0];
        assert_eq!(
            p.psk,
            vec![
                asap::reg_auth::RegistrationKey::new(vec![0xab; 32]).expect("key"),
                asap::reg_auth::RegistrationKey::new(vec![0xcd; 32]).expect("key"),
            ]
        );
        assert_eq!(c.security.psk_window, Duration::from_secs(5));
        let (c, _) = Options::parse_from(["enrp-server"])
            .resolve(5)
            .expect("valid");
        assert_eq!(c.security.psk_window, Duration::from_secs(60), "default");
        for bad in ["abcd", "zz"] {
            let o: Options = toml::from_str(&format!(
                "[[pool_auth]]\nhandle = \"P\"\npsk = [\"{bad}\"]\n"
            ))
            .expect("valid toml");
            let e = o.resolve(5).expect_err("bad key");
            assert!(e.to_string().contains("psk"), "{e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
