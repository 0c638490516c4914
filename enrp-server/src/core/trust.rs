//! Trust boundaries of the registrar (issue 13; RFC 5353 §11, RFC 5352 §6, RFC 5355): who
//! may act as an ENRP peer, who may download the handlespace, and the rate-limited report
//! of everything refused. The threat list and the defence for each threat are in the
//! repository's `SECURITY.md`.
//!
//! * **Peer admission** ([`EnrpSecurity`], [`PeerAllow`]): with `allow-list` (the default)
//!   ENRP messages that change state (PRESENCE creating a peer, HANDLE_UPDATE,
//!   HANDLE_TABLE_RESPONSE, INIT_TAKEOVER, TAKEOVER_SERVER, …) are taken only from senders
//!   whose address lies in an allowed network, whose server ID is allowed, or whose address
//!   is one of the static peers' ([`CoreConfig::peers`](super::CoreConfig::peers)).
//!   Everything else is dropped and reported as [`Event::Refused`]; read-only questions
//!   (PRESENCE with R, LIST_REQUEST) are still answered on an association, and an
//!   association is never closed for it.
//! * **hsdump** ([`SecurityConfig::hsdump_allow`]): a HANDLE_TABLE_REQUEST from a sender
//!   that is not an admitted peer is answered with a HANDLE_TABLE_RESPONSE with the R
//!   (reject) flag (RFC 5353 §2.3.6) unless its address is in the read-only allow-list
//!   (default: loopback, so `hsdump 127.0.0.1` on the registrar host works).
//! * **Mutual TLS** ([`EnrpSecurity::Tls`]): the driver's ENRP listener and connector run
//!   TLS with a cluster CA ([`asap::transport::tls`]) and hand the core each association's
//!   verified certificate ([`Input::PeerCertificate`](super::Input::PeerCertificate)). An
//!   ENRP message changes state only if it arrived on such an association and, with
//!   [`SecurityConfig::tls_server_id_binding`], only if the certificate carries the DNS
//!   name [`server_id_name`] of the server ID the message claims; a mismatch is refused as
//!   [`Refusal::TlsIdentity`].
//! * **Authenticated registrations** ([`PoolAuth`], `[[pool_auth]]`): a REGISTRATION into a
//!   protected pool is accepted only from an association whose TLS client certificate
//!   carries one of the pool's allowed names, or whose peer address lies in the pool's
//!   address allow-list (plaintext rsplib PEs); otherwise it is answered with a
//!   REGISTRATION_RESPONSE carrying cause 0xA "Rejected due to security considerations"
//!   (RFC 5354 §3.12, asap/wire/INTEROP.md §7), nothing changes, and it is reported as
//!   [`Refusal::Registration`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::idmap::IdMap;
use asap::reg_auth::RegistrationKey;
use asap::transport::tls::PeerCertificate;
use asap::wire::asap_msg::EndpointKeepAlive;
use asap::wire::enrp_msg::HandleTableResponse;
use asap::wire::{
    EnrpMessage, Message, PeIdentifier, PoolElementInfo, PoolHandle, Protocol, ServerId,
    TransportParameter,
};
use serde::Serialize;

use super::address::{canonical, is_unusable, AddressScope, IpNet};
use super::event::labelled_enum;
use super::{Action, AssocId, Event, PeKey, Registrar, RemovalReason};

/// How ENRP peers are admitted (`--enrp-security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnrpSecurity {
    /// Only allow-listed peers ([`SecurityConfig::peer_allow`]) and static peers; plaintext,
    /// so that rsplib registrars can still peer (the default).
    #[default]
    AllowList,
    /// Any host that reaches the ENRP port is a peer (rsplib behaviour; only by explicit
    /// choice, the binary warns at start-up).
    Open,
    /// Mutual TLS between registrars over TCP (RFC 5353 §11): only ENRP messages that
    /// arrived on an association whose peer certificate chains to the cluster CA (and, with
    /// [`SecurityConfig::tls_server_id_binding`], names the claimed server ID) are taken.
    Tls,
}

impl FromStr for EnrpSecurity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "allow-list" => Ok(EnrpSecurity::AllowList),
            "open" => Ok(EnrpSecurity::Open),
            "tls" => Ok(EnrpSecurity::Tls),
            o => Err(format!("{o:?} is not allow-list|open|tls")),
        }
    }
}

/// One entry of the peer allow-list (`--peer-allow ID|ADDR|ADDR/PREFIX`).
///
/// A server ID alone is a weak credential (anyone who reaches the ENRP port can claim it);
/// prefer addresses, which a TCP or SCTP peer cannot forge without being on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAllow {
    /// A server ID (decimal or 0x-hex).
    ServerId(ServerId),
    /// An address or network.
    Net(IpNet),
}

impl FromStr for PeerAllow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(n) = IpNet::from_str(s) {
            return Ok(PeerAllow::Net(n));
        }
        match parse_server_id(s) {
            Ok(id) => Ok(PeerAllow::ServerId(id)),
            Err(ServerIdError::NotANumber) => {
                Err(format!("{s:?} is neither a server ID nor ADDR[/PREFIX]"))
            }
            Err(ServerIdError::Reserved) => Err("server ID 0 is reserved".into()),
        }
    }
}

/// Why a server ID given as text was refused ([`parse_server_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServerIdError {
    /// Neither a decimal nor a 0x-hex 32-bit number.
    #[error("not a 32-bit number")]
    NotANumber,
    /// 0 stands for "unknown server" (RFC 5353) and is nobody's ID.
    #[error("0 is reserved")]
    Reserved,
}

/// A server ID as the options and the peer allow-list take it: a 32-bit number, decimal or
/// 0x-hex (surrounding white space ignored), not 0.
pub fn parse_server_id(s: &str) -> Result<ServerId, ServerIdError> {
    let s = s.trim();
    let id = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse::<u32>(),
    }
    .map_err(|_| ServerIdError::NotANumber)?;
    if id == 0 {
        return Err(ServerIdError::Reserved);
    }
    Ok(id)
}

impl fmt::Display for PeerAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAllow::ServerId(id) => write!(f, "{id:#x}"),
            PeerAllow::Net(n) => write!(f, "{n}"),
        }
    }
}

/// Security settings of the core (issue 13; `SECURITY.md`).
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Peer admission mode.
    pub enrp_security: EnrpSecurity,
    /// Allowed peers besides the static ones (`--peer-allow`).
    pub peer_allow: Vec<PeerAllow>,
    /// Networks whose HANDLE_TABLE_REQUESTs are answered although they are not peers
    /// (read-only; `--hsdump-allow`). Default: 127.0.0.0/8 and ::1.
    pub hsdump_allow: Vec<IpNet>,
    /// At most one WARN per sender address and this interval for refused input (the
    /// refusals in between are counted and reported with the next WARN).
    pub refusal_log_interval: Duration,
    /// ENDPOINT_UNREACHABLE counts only from an association that resolved the PE's pool
    /// within this time (`--unreachable-window`).
    pub unreachable_window: Duration,
    /// When the reports reach MAX-BAD-PE-REPORT the PE is sent an ENDPOINT_KEEP_ALIVE and
    /// removed only without ENDPOINT_KEEP_ALIVE_ACK within this time
    /// (`--unreachable-probe-timeout`).
    pub unreachable_probe_timeout: Duration,
    /// Most PEs whose home is one peer (`--max-pes-per-peer`); further HANDLE_UPDATE /
    /// table entries for that home are refused.
    pub max_pes_per_peer: usize,
    /// Registration life of a PE learned from a peer is capped to this (no infinite life
    /// from ENRP; `--max-peer-registration-life`).
    pub max_peer_registration_life: Duration,
    /// PEs of a peer that vanished are removed if, this long after it was declared dead,
    /// no takeover re-labelled them (`--orphan-timeout`).
    pub orphan_timeout: Duration,
    /// Networks a takeover may connect to (ASAP transports of adopted PEs;
    /// `--takeover-scope`). Empty: addresses from
    /// [`CoreConfig::min_address_scope`](super::CoreConfig::min_address_scope) up to
    /// site-local (default: site-local only, 10/8, 172.16/12, 192.168/16, fc00::/7), never
    /// global ones, so that a rogue table cannot make us probe the Internet.
    pub takeover_scope: Vec<IpNet>,
    /// ASAP transports a takeover connects to per second (`--takeover-probe-rate`).
    pub takeover_probe_rate: u32,
    /// An ASAP association that neither registered a PE nor resolved a handle within this
    /// time is aborted (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Most associations from one host (first peer address); more are aborted at once
    /// (`--max-associations-per-host`).
    pub max_associations_per_host: usize,
    /// A resolution answered with more PEs than this is a bulk one
    /// (`--bulk-hres-threshold`).
    pub bulk_hres_threshold: usize,
    /// Per-PU rate of bulk resolutions (`--max-bulk-hr-rate`; `None` = unlimited); more
    /// are answered with Lack of Resources, so that one client asking for "all" of a huge
    /// pool cannot keep the registrar busy for everyone else.
    pub bulk_hres_rate: Option<super::Rate>,
    /// With [`EnrpSecurity::Tls`]: a peer's certificate must carry the DNS name
    /// [`server_id_name`] of every server ID it sends as (`--tls-server-id-binding`,
    /// default on), so one cluster member cannot speak for another.
    pub tls_server_id_binding: bool,
    /// Pools whose registrations need a credential (`[[pool_auth]]`).
    pub pool_auth: Vec<PoolAuth>,
    /// A REGISTRATION signed with a pool's pre-shared key ([`PoolAuth::psk`]) is taken
    /// only if its timestamp is within this much of the registrar's clock, and its nonce
    /// was not seen within it (replays refused; `--registration-psk-window`, default 60 s).
    pub psk_window: Duration,
    /// The wall clock for [`psk_window`](Self::psk_window): an instant and the Unix time
    /// (ms) at it; the core derives the Unix time of every `now` it is given from it (time
    /// stays an input). `None` (default): read from the system clock at the first signed
    /// REGISTRATION.
    pub wall_clock_at: Option<(Instant, u64)>,
}

/// The DNS name (subject alternative name) a registrar's certificate carries for server
/// ID `id` when [`SecurityConfig::tls_server_id_binding`] is on: `enrp-<8 hex digits>.rserpool`,
/// e.g. `enrp-0000002a.rserpool` for server ID 42.
pub fn server_id_name(id: ServerId) -> String {
    format!("enrp-{id:08x}.rserpool")
}

/// Credential required to register into one pool (`[[pool_auth]]`; issue 13 item 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAuth {
    /// The protected pool.
    pub handle: PoolHandle,
    /// Accepted TLS client certificates: ones carrying one of these DNS names or IP
    /// addresses as subject alternative name (verified against the CA by the handshake).
    pub tls_names: Vec<String>,
    /// Accepted peer addresses (plaintext PEs such as rsplib's).
    pub addresses: Vec<IpNet>,
    /// Pre-shared keys: a REGISTRATION carrying a Registration Authenticator made with one
    /// of them ([`asap::reg_auth`]), fresh and not replayed, is accepted over any transport
    /// (several keys: rotation).
    pub psk: Vec<RegistrationKey>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            enrp_security: EnrpSecurity::AllowList,
            peer_allow: Vec::new(),
            hsdump_allow: default_hsdump_allow(),
            refusal_log_interval: Duration::from_secs(10),
            unreachable_window: Duration::from_secs(300),
            unreachable_probe_timeout: Duration::from_millis(1000),
            max_pes_per_peer: 50_000,
            max_peer_registration_life: Duration::from_secs(3600),
            orphan_timeout: Duration::from_secs(30),
            takeover_scope: Vec::new(),
            takeover_probe_rate: 100,
            idle_timeout: Duration::from_secs(30),
            max_associations_per_host: 1000,
            bulk_hres_threshold: 256,
            bulk_hres_rate: Some(super::Rate {
                per_second: 2.0,
                burst: 4.0,
            }),
            tls_server_id_binding: true,
            pool_auth: Vec::new(),
            psk_window: Duration::from_secs(60),
            wall_clock_at: None,
        }
    }
}

/// The default read-only hsdump allow-list: loopback only.
pub fn default_hsdump_allow() -> Vec<IpNet> {
    vec![
        IpNet {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        },
        IpNet {
            addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ]
}

/// One refused input ([`Event::Refused`](super::Event::Refused)): what, from whom, and
/// whether this one is logged at WARN (at most once per sender address and
/// `refusal_log_interval`, RFC 5353 §11 and `SECURITY.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// What was refused.
    pub what: Refusal,
    /// Association (`None` for UDP).
    pub assoc: Option<AssocId>,
    /// Sender address.
    pub from: Option<SocketAddr>,
    /// Server ID the sender claimed (ENRP; 0 if none).
    pub server_id: u32,
    /// The message type name (tshark style).
    pub message: &'static str,
    /// Log this one as WARN.
    pub warn: bool,
    /// Refusals from this sender not logged since the previous WARN.
    pub suppressed: u64,
}

labelled_enum! {
    /// What was refused, for logs and the `enrp_security_refusals_total` metric.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Refusal {
        /// An ENRP message from a sender that is not an admitted peer.
        PeerMessage => "peer-message",
        /// A HANDLE_TABLE_REQUEST from a non-peer outside `--hsdump-allow`.
        HandleTable => "handle-table",
        /// An ENDPOINT_UNREACHABLE from an association that did not resolve the pool recently.
        UnreachableReport => "unreachable-report",
        /// A PE from a peer beyond `--max-pes-per-peer` for its home.
        PeerPeCap => "peer-pe-cap",
        /// A takeover probe to an ASAP transport outside `--takeover-scope`.
        TakeoverScope => "takeover-scope",
        /// An association beyond `--max-associations-per-host`.
        HostAssociations => "host-associations",
        /// An ENRP message whose claimed server ID is not named by the peer's TLS certificate.
        TlsIdentity => "tls-identity",
        /// A REGISTRATION into a `[[pool_auth]]` pool without a matching credential.
        Registration => "registration",
    }
}

/// Most sender addresses whose last WARN time is remembered (the table is cleared when
/// full: at worst a few more WARN lines).
const LOG_TABLE: usize = 4096;

/// Most pools remembered per association as recently resolved (the oldest is forgotten).
const RESOLVED_PER_ASSOC: usize = 64;

/// Security state of the [`Registrar`].
#[derive(Debug, Default)]
pub(super) struct SecurityState {
    /// Per sender address: last WARN and refusals since.
    logged: HashMap<IpAddr, (Instant, u64)>,
    /// Per ASAP association: pools it resolved and when (ENDPOINT_UNREACHABLE admission).
    resolved: IdMap<HashMap<PoolHandle, Instant>>,
    /// PEs sent a verification keep-alive after MAX-BAD-PE-REPORT reports.
    pub(super) probing: HashSet<PeKey>,
    /// Peers declared dead: when their remaining PEs are purged.
    orphans: BTreeMap<ServerId, Instant>,
    /// Adopted PEs waiting for their takeover probe (rate bound), in order.
    adopt_queue: VecDeque<PeKey>,
    /// When the next batch of takeover probes may go out.
    next_adopt: Option<Instant>,
    /// ASAP associations that have not registered or resolved yet: abort deadline.
    idle: IdMap<Instant>,
    /// Their deadlines in order.
    idle_timers: BTreeSet<(Instant, AssocId)>,
    /// Host (first peer address) of every association, and associations per host.
    hosts: IdMap<IpAddr>,
    per_host: HashMap<IpAddr, usize>,
    /// Bulk resolution token buckets per PU address (created at first use).
    bulk: Option<super::RateLimiter>,
    /// Verified TLS certificates of associations ([`Input::PeerCertificate`](super::Input)).
    certs: IdMap<PeerCertificate>,
    /// The wall clock of [`SecurityConfig::wall_clock_at`] (set at first use).
    wall: Option<(Instant, u64)>,
    /// Nonces of accepted signed REGISTRATIONs and when they leave the window (Unix ms),
    /// in order of arrival; at most [`MAX_PSK_NONCES`].
    psk_nonces: HashSet<[u8; 16]>,
    psk_order: VecDeque<(u64, [u8; 16])>,
}

/// Most nonces of signed REGISTRATIONs remembered (each for the PSK window): a PE holding
/// the key could otherwise make the registrar remember unboundedly many. When full,
/// further signed REGISTRATIONs are refused until old nonces leave the window.
pub const MAX_PSK_NONCES: usize = 100_000;

impl Registrar {
    /// Whether an ENRP sender (server ID `sender` at address `from`) is an admitted peer
    /// ([`EnrpSecurity`]).
    pub fn peer_admitted(&self, sender: ServerId, from: SocketAddr) -> bool {
        let s = &self.config.security;
        match s.enrp_security {
            EnrpSecurity::Open => true,
            // Only an association's certificate authenticates (admit_enrp), never an
            // address.
            EnrpSecurity::Tls => false,
            EnrpSecurity::AllowList => {
                let ip = canonical(from.ip());
                self.config.peers.iter().any(|p| canonical(p.ip()) == ip)
                    || s.peer_allow.iter().any(|a| match a {
                        PeerAllow::ServerId(id) => *id == sender,
                        PeerAllow::Net(n) => n.contains(&ip),
                    })
            }
        }
    }

    /// Whether `from` may download the handle table without being a peer.
    fn hsdump_allowed(&self, from: Option<SocketAddr>) -> bool {
        let Some(from) = from else { return false };
        let ip = canonical(from.ip());
        self.config.security.enrp_security == EnrpSecurity::Open
            || self
                .config
                .security
                .hsdump_allow
                .iter()
                .any(|n| n.contains(&ip))
            || self.peer_admitted(0, from)
    }

    /// Gate in front of [`on_enrp_peer`](Self::on_enrp_peer): true if the message may
    /// drive peering. Otherwise it is reported ([`Event::Refused`]) and, on an
    /// association, read-only questions are still answered as for a tool.
    pub(super) fn admit_enrp(
        &mut self,
        now: Instant,
        assoc: Option<AssocId>,
        from: SocketAddr,
        m: &EnrpMessage,
        out: &mut Vec<Action>,
    ) -> bool {
        if self.config.security.enrp_security == EnrpSecurity::Tls {
            if let Some(cert) = assoc.and_then(|a| self.security.certs.get(&a)) {
                if !self.config.security.tls_server_id_binding
                    || cert.valid_for(&server_id_name(m.sender()))
                {
                    return true;
                }
                self.refused(
                    now,
                    Refusal::TlsIdentity,
                    assoc,
                    Some(from),
                    m.sender(),
                    Message::Enrp(m.clone()).tshark_name(),
                    out,
                );
                return false;
            }
        }
        // Any path of a multi-homed SCTP association may be the allowed address.
        let paths: Vec<SocketAddr> = match assoc.and_then(|a| self.assocs.get(&a)) {
            Some(a) => a.peer_addrs.clone(),
            None => vec![from],
        };
        if paths.iter().any(|p| self.peer_admitted(m.sender(), *p)) {
            return true;
        }
        let read_only = matches!(
            m,
            EnrpMessage::Presence(_)
                | EnrpMessage::ListRequest(_)
                | EnrpMessage::HandleTableRequest(_)
                | EnrpMessage::Error(_)
        );
        match assoc {
            Some(a) if read_only => self.on_enrp(now, a, m.clone(), out),
            _ => self.refused(
                now,
                Refusal::PeerMessage,
                assoc,
                Some(from),
                m.sender(),
                Message::Enrp(m.clone()).tshark_name(),
                out,
            ),
        }
        false
    }

    /// Gate in front of a HANDLE_TABLE_REQUEST from a non-peer (hsdump): false after
    /// answering with the R flag.
    pub(super) fn admit_handle_table(
        &mut self,
        now: Instant,
        assoc: AssocId,
        requester: ServerId,
        out: &mut Vec<Action>,
    ) -> bool {
        let paths = self
            .assocs
            .get(&assoc)
            .map(|a| a.peer_addrs.clone())
            .unwrap_or_default();
        // Under TLS, a holder of a cluster certificate may dump like a peer.
        let certified = self.config.security.enrp_security == EnrpSecurity::Tls
            && self.security.certs.contains_key(&assoc);
        if certified || paths.iter().any(|p| self.hsdump_allowed(Some(*p))) {
            return true;
        }
        let from = paths.first().copied();
        if let Some(a) = self.assocs.get_mut(&assoc) {
            a.dump = None;
        }
        self.refused(
            now,
            Refusal::HandleTable,
            Some(assoc),
            from,
            requester,
            "ENRP_HANDLE_TABLE_REQUEST",
            out,
        );
        let me = self.config.server_id;
        self.send(
            out,
            assoc,
            HandleTableResponse {
                reject: true,
                more: false,
                sender: me,
                receiver: requester,
                pools: Vec::new(),
            }
            .into(),
        );
        false
    }

    /// A HANDLE_RESOLUTION of `handle` was answered on `assoc`: its ENDPOINT_UNREACHABLE
    /// reports for that pool count for [`SecurityConfig::unreachable_window`].
    pub(super) fn note_resolution(&mut self, now: Instant, assoc: AssocId, handle: &PoolHandle) {
        self.mark_used(assoc);
        let pools = self.security.resolved.entry(assoc).or_default();
        // A pool resolved again (the common case): its time only, no copy of the handle.
        if let Some(t) = pools.get_mut(handle) {
            *t = now;
            return;
        }
        if pools.len() >= RESOLVED_PER_ASSOC {
            if let Some(oldest) = pools
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(h, _)| h.clone())
            {
                pools.remove(&oldest);
            }
        }
        pools.insert(handle.clone(), now);
    }

    /// Whether a resolution answered with `pes` PEs may go out (bulk rate per PU).
    pub(super) fn bulk_resolution_allowed(
        &mut self,
        now: Instant,
        peer: Option<IpAddr>,
        pes: usize,
    ) -> bool {
        let s = &self.config.security;
        if pes <= s.bulk_hres_threshold || s.bulk_hres_rate.is_none() {
            return true;
        }
        let Some(ip) = peer else { return true };
        let (rate, size) = (s.bulk_hres_rate, self.config.rate_table_size);
        self.security
            .bulk
            .get_or_insert_with(|| super::RateLimiter::new(rate, size))
            .allow(ip, now)
    }

    /// The driver verified the TLS certificate of `assoc` ([`Input::PeerCertificate`](super::Input)).
    pub(super) fn note_certificate(&mut self, assoc: AssocId, cert: PeerCertificate) {
        if self.assocs.contains_key(&assoc) {
            self.security.certs.insert(assoc, cert);
        }
    }

    /// Whether `assoc` may register into `handle` ([`PoolAuth`]): `Err` with the reason
    /// (after reporting [`Refusal::Registration`]) if the pool is protected and the
    /// association has no matching credential.
    pub(super) fn registration_authorized(
        &mut self,
        now: Instant,
        assoc: AssocId,
        handle: &PoolHandle,
        raw: &[u8],
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let Some(auth) = self
            .config
            .security
            .pool_auth
            .iter()
            .find(|p| &p.handle == handle)
            .cloned()
        else {
            return Ok(());
        };
        let paths = self
            .assocs
            .get(&assoc)
            .map(|a| a.peer_addrs.clone())
            .unwrap_or_default();
        let by_addr = paths.iter().any(|p| {
            auth.addresses
                .iter()
                .any(|n| n.contains(&canonical(p.ip())))
        });
        let cert = self.security.certs.get(&assoc);
        let by_cert = cert.is_some_and(|c| auth.tls_names.iter().any(|name| c.valid_for(name)));
        if by_addr || by_cert {
            return Ok(());
        }
        let had_cert = cert.is_some();
        let by_psk = (!auth.psk.is_empty()).then(|| self.psk_check(now, &auth.psk, raw));
        if let Some(Ok(())) = by_psk {
            return Ok(());
        }
        let why = match by_psk {
            Some(Err(e)) => e,
            _ if had_cert => {
                "TLS client certificate names none of the pool's allowed names".to_string()
            }
            _ => "no TLS client certificate and address not allowed for the pool".to_string(),
        };
        self.refused(
            now,
            Refusal::Registration,
            Some(assoc),
            paths.first().copied(),
            0,
            "ASAP_REGISTRATION",
            out,
        );
        Err(format!("pool {handle} requires a credential: {why}"))
    }

    /// Checks the Registration Authenticator of `raw` against `keys`, the PSK window and
    /// the nonces seen ([`PoolAuth::psk`]); remembers the nonce if accepted.
    fn psk_check(
        &mut self,
        now: Instant,
        keys: &[RegistrationKey],
        raw: &[u8],
    ) -> Result<(), String> {
        let v = asap::reg_auth::verify(raw, keys).map_err(|e| e.to_string())?;
        let (at, unix_at) = *self.security.wall.get_or_insert_with(|| {
            self.config.security.wall_clock_at.unwrap_or_else(|| {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                (now, ms)
            })
        });
        let since = now.saturating_duration_since(at).as_millis();
        let unix_now = unix_at.saturating_add(u64::try_from(since).unwrap_or(u64::MAX));
        let window = u64::try_from(self.config.security.psk_window.as_millis()).unwrap_or(u64::MAX);
        if v.unix_ms.abs_diff(unix_now) > window {
            return Err(format!(
                "registration authenticator timestamp {} ms off the registrar's clock (window {window} ms)",
                i128::from(v.unix_ms) - i128::from(unix_now)
            ));
        }
        // Forget nonces that left the window.
        let s = &mut self.security;
        while let Some(&(until, n)) = s.psk_order.front() {
            if until >= unix_now {
                break;
            }
            s.psk_order.pop_front();
            s.psk_nonces.remove(&n);
        }
        if s.psk_nonces.contains(&v.nonce) {
            return Err("registration authenticator replayed (nonce already seen)".into());
        }
        if s.psk_nonces.len() >= MAX_PSK_NONCES {
            return Err(format!(
                "{MAX_PSK_NONCES} signed registrations within the window: try again later"
            ));
        }
        s.psk_nonces.insert(v.nonce);
        // Kept until the timestamp itself leaves the window (a later replay is stale).
        s.psk_order
            .push_back((v.unix_ms.saturating_add(window).max(unix_now), v.nonce));
        Ok(())
    }

    /// The association is gone: forget what it resolved, its idle timer and host count.
    pub(super) fn forget_association(&mut self, assoc: AssocId) {
        self.security.certs.remove(&assoc);
        self.security.resolved.remove(&assoc);
        self.mark_used(assoc);
        if let Some(ip) = self.security.hosts.remove(&assoc) {
            if let Some(n) = self.security.per_host.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.security.per_host.remove(&ip);
                }
            }
        }
    }

    /// A new association: count it for its host (abort beyond
    /// [`SecurityConfig::max_associations_per_host`]) and, if it is an ASAP one, start its
    /// idle timer.
    pub(super) fn note_connected(
        &mut self,
        now: Instant,
        assoc: AssocId,
        protocol: Protocol,
        peer_addrs: &[SocketAddr],
        out: &mut Vec<Action>,
    ) {
        if let Some(ip) = peer_addrs.first().map(|a| canonical(a.ip())) {
            self.security.hosts.insert(assoc, ip);
            let n = self.security.per_host.entry(ip).or_default();
            *n += 1;
            if *n > self.config.security.max_associations_per_host {
                self.refused(
                    now,
                    Refusal::HostAssociations,
                    Some(assoc),
                    peer_addrs.first().copied(),
                    0,
                    "association",
                    out,
                );
                out.push(Action::Abort {
                    assoc,
                    reason: "too many associations from this host",
                });
                return;
            }
        }
        if protocol == Protocol::Asap {
            let due = now + self.config.security.idle_timeout;
            self.security.idle.insert(assoc, due);
            self.security.idle_timers.insert((due, assoc));
        }
    }

    /// The association registered a PE, resolved a handle or carries adopted PEs: no
    /// idle timeout any more.
    pub(super) fn mark_used(&mut self, assoc: AssocId) {
        if let Some(due) = self.security.idle.remove(&assoc) {
            self.security.idle_timers.remove(&(due, assoc));
        }
    }

    /// Whether an ENDPOINT_UNREACHABLE from `assoc` about a PE of `handle` counts: only if
    /// that association resolved the pool recently (the registrar knows who asked).
    /// Otherwise reported as [`Refusal::UnreachableReport`].
    pub(super) fn unreachable_report_counts(
        &mut self,
        now: Instant,
        assoc: AssocId,
        handle: &PoolHandle,
        out: &mut Vec<Action>,
    ) -> bool {
        let window = self.config.security.unreachable_window;
        let asked = self
            .security
            .resolved
            .get(&assoc)
            .and_then(|p| p.get(handle))
            .is_some_and(|t| now.saturating_duration_since(*t) <= window);
        if !asked {
            let from = self
                .assocs
                .get(&assoc)
                .and_then(|a| a.peer_addrs.first())
                .copied();
            self.refused(
                now,
                Refusal::UnreachableReport,
                Some(assoc),
                from,
                0,
                "ASAP_ENDPOINT_UNREACHABLE",
                out,
            );
        }
        asked
    }

    /// MAX-BAD-PE-REPORT reached for a PE: verify before removal. A PE registered here
    /// over a live association is sent an ENDPOINT_KEEP_ALIVE now and removed (reason
    /// `unreachable`, its association aborted, which tells a PE that is still there to
    /// register again) only if no ENDPOINT_KEEP_ALIVE_ACK arrives within
    /// [`SecurityConfig::unreachable_probe_timeout`]. A PE of another home (or not yet
    /// bound after a takeover) is left to its home's keep-alive monitoring.
    pub(super) fn unreachable_threshold(
        &mut self,
        now: Instant,
        handle: &PoolHandle,
        id: PeIdentifier,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        let Some(e) = self.handlespace.get(handle, id) else {
            return;
        };
        let key = (handle.clone(), id);
        let conn = match (e.owner() == me, e.connection()) {
            (true, Some(c)) => c,
            _ => {
                out.push(Action::Event(Event::Ignored {
                    assoc: None,
                    message: "ASAP_ENDPOINT_UNREACHABLE",
                    reason: "PE not monitored here: its home registrar's keep-alives decide",
                }));
                return;
            }
        };
        if !self.security.probing.insert(key.clone()) {
            return; // already being verified
        }
        out.push(Action::Event(Event::UnreachableProbe {
            handle: handle.clone(),
            id,
        }));
        self.send(
            out,
            conn,
            EndpointKeepAlive {
                home: false,
                server_id: me,
                pool_handle: handle.clone(),
                pe_identifier: Some(id),
            }
            .into(),
        );
        let mut due = now + self.config.security.unreachable_probe_timeout;
        if let Some(m) = self.monitors.get(&key) {
            if m.awaiting_ack {
                due = due.min(m.due);
            }
        }
        self.set_monitor(key, due, true);
    }

    /// Bounds on a PE learned from a peer (HANDLE_UPDATE, HANDLE_TABLE_RESPONSE): its
    /// registration life is capped, and a new PE beyond `max_pes_per_peer` for its home
    /// is refused (false).
    pub(super) fn bound_peer_pe(
        &mut self,
        now: Instant,
        from_peer: ServerId,
        handle: &PoolHandle,
        el: &mut PoolElementInfo,
        home: ServerId,
        out: &mut Vec<Action>,
    ) -> bool {
        let cap = i32::try_from(self.config.security.max_peer_registration_life.as_millis())
            .unwrap_or(i32::MAX);
        if el.registration_life < 0 || el.registration_life > cap {
            el.registration_life = cap;
        }
        let known = self.handlespace.get(handle, el.id).is_some();
        if known || self.handlespace.owned_len(home) < self.config.security.max_pes_per_peer {
            return true;
        }
        let from = self.peering.peers.get(&from_peer).map(|p| p.addr);
        self.refused(
            now,
            Refusal::PeerPeCap,
            None,
            from,
            from_peer,
            "ENRP_HANDLE_UPDATE",
            out,
        );
        false
    }

    /// A peer was declared dead: unless a takeover re-labels its PEs (or it comes back)
    /// within [`SecurityConfig::orphan_timeout`], they are removed.
    pub(super) fn note_vanished(&mut self, now: Instant, id: ServerId) {
        let at = now + self.config.security.orphan_timeout;
        self.security.orphans.entry(id).or_insert(at);
    }

    /// The earliest security timer (orphan purge, next takeover probe batch).
    pub(super) fn security_deadline(&self) -> Option<Instant> {
        let orphan = self.security.orphans.values().min().copied();
        let idle = self.security.idle_timers.first().map(|t| t.0);
        [orphan, self.security.next_adopt, idle]
            .into_iter()
            .flatten()
            .min()
    }

    /// Security timers: abort idle associations, purge orphaned PEs, release takeover
    /// probes.
    pub(super) fn security_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        while let Some(&(due, assoc)) = self.security.idle_timers.first() {
            if due > now {
                break;
            }
            self.mark_used(assoc);
            out.push(Action::Abort {
                assoc,
                reason: "idle: no registration or resolution",
            });
        }
        let due: Vec<ServerId> = self
            .security
            .orphans
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.security.orphans.remove(&id);
            if self.peering.peers.contains_key(&id) {
                continue; // it came back: its PEs are its own again
            }
            let keys: Vec<PeKey> = self.handlespace.owned_by(id).cloned().collect();
            for (h, pe) in keys {
                if let Some(r) = self.handlespace.deregister(&h, pe) {
                    self.removed(h, r.entry.element().clone(), RemovalReason::Orphaned, out);
                }
            }
        }
        if self.security.next_adopt.is_some_and(|t| t <= now) {
            self.release_adoptions(now, out);
        }
    }

    /// Takeover: queues an adopted PE for its probe (an [`Action::Connect`] to its ASAP
    /// transport, then ENDPOINT_KEEP_ALIVE with H), released at [`SecurityConfig::takeover_probe_rate`] ASAP
    /// transports per second.
    /// [`start_adoptions`](Self::start_adoptions) releases the first batch.
    pub(super) fn queue_adoption(&mut self, key: PeKey) {
        self.security.adopt_queue.push_back(key);
    }

    /// Releases the first batch of queued takeover probes now, unless a batch already went
    /// out within the last second (then the timer releases it).
    pub(super) fn start_adoptions(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.security.next_adopt.is_none() {
            self.release_adoptions(now, out);
        }
    }

    fn release_adoptions(&mut self, now: Instant, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        let rate = self.config.security.takeover_probe_rate.max(1);
        let mut budget = rate;
        while budget > 0 {
            let Some(first) = self.security.adopt_queue.pop_front() else {
                break;
            };
            let transport = match self.handlespace.get(&first.0, first.1) {
                // Still ours and not re-registered meanwhile.
                Some(e) if e.owner() == me && e.connection().is_none() => {
                    e.element().asap_transport.clone()
                }
                _ => continue,
            };
            budget -= 1;
            // Every queued PE of the same ASAP transport (one PE process) goes with it.
            let mut batch = vec![first];
            if transport.is_some() {
                let mut rest = VecDeque::new();
                for k in self.security.adopt_queue.drain(..) {
                    let same = self
                        .handlespace
                        .get(&k.0, k.1)
                        .is_some_and(|e| e.element().asap_transport == transport);
                    if same {
                        batch.push(k);
                    } else {
                        rest.push_back(k);
                    }
                }
                self.security.adopt_queue = rest;
            }
            // Without an ASAP transport there is nothing to connect to (reported below).
            let in_scope = match &transport {
                Some(t) => self.in_takeover_scope(t),
                None => true,
            };
            if !in_scope {
                self.refused(
                    now,
                    Refusal::TakeoverScope,
                    None,
                    None,
                    0,
                    "ASAP_ENDPOINT_KEEP_ALIVE",
                    out,
                );
            }
            let mut reach = Vec::new();
            for (h, id) in batch {
                if self.handlespace.get(&h, id).is_none() {
                    continue;
                }
                if self.config.peering.verify_adopted {
                    // Not reachable (out of scope) or no answer: removed after the timeout.
                    let due = now + self.config.keep_alive_timeout;
                    self.set_monitor((h.clone(), id), due, true);
                }
                if in_scope {
                    reach.push((h, id));
                }
            }
            // One association to the PE process; on Connected each gets the H keep-alive.
            if let (Some(t), false) = (&transport, reach.is_empty()) {
                let n = reach.len();
                if let Err(reason) = self.connect_adopted(t, reach, false, out) {
                    out.push(Action::Event(Event::AdoptionFailed {
                        assoc: None,
                        pes: n,
                        reason,
                    }));
                }
            } else if transport.is_none() {
                out.push(Action::Event(Event::AdoptionFailed {
                    assoc: None,
                    pes: reach.len(),
                    reason: "adopted PE without an ASAP transport",
                }));
            }
        }
        // The next batch (or the next takeover's first one) one second later.
        self.security.next_adopt = (budget < rate).then(|| now + Duration::from_secs(1));
    }

    /// Whether a takeover may connect to this ASAP transport.
    pub(super) fn in_takeover_scope(&self, t: &TransportParameter) -> bool {
        let addrs = t.addresses();
        let scope = &self.config.security.takeover_scope;
        !addrs.is_empty()
            && addrs.iter().all(|a| {
                let a = canonical(*a);
                !is_unusable(&a)
                    && if scope.is_empty() {
                        let sc = AddressScope::of(&a);
                        sc >= self.config.min_address_scope && sc <= AddressScope::SiteLocal
                    } else {
                        scope.iter().any(|n| n.contains(&a))
                    }
            })
    }

    /// Reports a refusal: always counted; logged as WARN at most once per sender address
    /// and [`SecurityConfig::refusal_log_interval`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refused(
        &mut self,
        now: Instant,
        what: Refusal,
        assoc: Option<AssocId>,
        from: Option<SocketAddr>,
        server_id: ServerId,
        message: &'static str,
        out: &mut Vec<Action>,
    ) {
        let interval = self.config.security.refusal_log_interval;
        let (warn, suppressed) = match from.map(|f| canonical(f.ip())) {
            None => (true, 0),
            Some(ip) => {
                if self.security.logged.len() >= LOG_TABLE
                    && !self.security.logged.contains_key(&ip)
                {
                    self.security.logged.clear();
                }
                match self.security.logged.get_mut(&ip) {
                    Some((last, n)) if now.saturating_duration_since(*last) < interval => {
                        *n += 1;
                        (false, 0)
                    }
                    Some((last, n)) => {
                        let s = *n;
                        *last = now;
                        *n = 0;
                        (true, s)
                    }
                    None => {
                        self.security.logged.insert(ip, (now, 0));
                        (true, 0)
                    }
                }
            }
        };
        let r = Refused {
            what,
            assoc,
            from,
            server_id,
            message,
            warn,
            suppressed,
        };
        out.push(Action::Event(Event::Refused(r)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoreConfig, Input};
    use asap::transport::TransportKind;
    use asap::wire::enrp_msg::HandleTableRequest;
    use asap::wire::{
        Policy, PoolElementInfo, Protocol, TransportParameter, TransportUse, UpdateAction,
    };
    use rserpool_tests::enrp_msgs::{presence, update};
    use rserpool_tests::registrar::tcp_pe;

    const ME: ServerId = 0x5EC0_0005;

    fn peering(f: impl FnOnce(&mut CoreConfig)) -> (Registrar, Instant) {
        let now = Instant::now();
        let mut c = CoreConfig::new(ME);
        c.peering.enabled = true;
        c.peering.unicast = crate::core::PeerTransport::Datagrams;
        f(&mut c);
        (Registrar::new(c, now), now)
    }

    fn datagram(r: &mut Registrar, now: Instant, from: &str, m: impl Into<Message>) -> Vec<Action> {
        r.handle_datagram(now, from.parse().expect("lit"), &m.into())
    }

    /// An attacker's PE `id` (TCP 10.6.6.6 port 1) claimed to be homed at `home`.
    fn rogue_pe(id: u32, home: ServerId, registration_life: i32) -> PoolElementInfo {
        PoolElementInfo {
            id,
            home_server_id: home,
            registration_life,
            user_transport: TransportParameter::Tcp {
                port: 1,
                transport_use: TransportUse::DataOnly,
                address: "10.6.6.6".parse().expect("lit"),
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        }
    }

    /// PE `id` registering from `from` (user transport TCP port 7000 at its address).
    fn pe_from(id: u32, from: &str) -> PoolElementInfo {
        let ip = from.parse::<SocketAddr>().expect("lit").ip();
        PoolElementInfo {
            registration_life: 60_000,
            ..tcp_pe(id, ip)
        }
    }

    fn attack(r: &mut Registrar, now: Instant, from: &str, sender: ServerId) -> Vec<Action> {
        let mut out = datagram(r, now, from, presence(sender, 0xFFFF));
        let pe = rogue_pe(0x666, sender, -1);
        out.extend(datagram(
            r,
            now,
            from,
            update(sender, ME, UpdateAction::AddPe, pe),
        ));
        out
    }

    fn refusals(out: &[Action]) -> Vec<(Refusal, bool, u64)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Event(Event::Refused(r)) => Some((r.what, r.warn, r.suppressed)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unknown_sender_is_refused_counted_and_logged_rate_limited() {
        let (mut r, now) = peering(|_| {});
        let out = attack(&mut r, now, "10.9.9.9:9901", 0xBAD);
        assert!(r.peers().is_empty(), "no peer created");
        assert!(r.handlespace().is_empty(), "no PE stored");
        assert_eq!(
            refusals(&out),
            vec![
                (Refusal::PeerMessage, true, 0),
                (Refusal::PeerMessage, false, 0)
            ],
            "both counted, one WARN"
        );
        assert!(!out
            .iter()
            .any(|a| matches!(a, Action::PeerSend { .. } | Action::Send { .. })));
        // After the log interval the next WARN reports the suppressed count.
        let later = now + Duration::from_secs(11);
        let out = attack(&mut r, later, "10.9.9.9:9901", 0xBAD);
        assert_eq!(refusals(&out)[0], (Refusal::PeerMessage, true, 1));
        assert!(r.handlespace().is_empty());
    }

    #[test]
    fn allowed_by_prefix_id_static_peer_or_open() {
        type Setup = Box<dyn Fn(&mut CoreConfig)>;
        let cases: Vec<(&str, Setup)> = vec![
            (
                "prefix",
                Box::new(|c| c.security.peer_allow = vec!["10.9.0.0/16".parse().expect("lit")]),
            ),
            (
                "server id",
                Box::new(|c| c.security.peer_allow = vec![PeerAllow::ServerId(0xBAD)]),
            ),
            (
                "static peer (any port)",
                Box::new(|c| c.peers = vec!["10.9.9.9:9901".parse().expect("lit")]),
            ),
            (
                "open",
                Box::new(|c| c.security.enrp_security = EnrpSecurity::Open),
            ),
        ];
        for (what, f) in cases {
            let (mut r, now) = peering(f);
            let out = attack(&mut r, now, "10.9.9.9:40000", 0xBAD);
            assert!(refusals(&out).is_empty(), "{what}");
            assert!(r.peers().contains_key(&0xBAD), "{what}: peer");
            assert!(
                r.handlespace().get(&"P".into(), 0x666).is_some(),
                "{what}: PE"
            );
        }
        // Another prefix / another ID are not enough.
        let (mut r, now) = peering(|c| {
            c.security.peer_allow = vec![
                "10.8.0.0/16".parse().expect("lit"),
                PeerAllow::ServerId(0xB0B),
            ]
        });
        attack(&mut r, now, "10.9.9.9:9901", 0xBAD);
        assert!(r.handlespace().is_empty());
        // tls: an address (even a static peer's) admits nobody; only a certificate does.
        let (mut r, now) = peering(|c| {
            c.peers = vec!["10.9.9.9:9901".parse().expect("lit")];
            c.security.enrp_security = EnrpSecurity::Tls;
        });
        attack(&mut r, now, "10.9.9.9:9901", 0xBAD);
        assert!(r.handlespace().is_empty());
    }

    /// The ENRP part of the [`attack`] on association `assoc` (PRESENCE, HANDLE_UPDATE
    /// ADD_PE of PE `pe` homed at `sender`).
    fn attack_on(
        r: &mut Registrar,
        now: Instant,
        assoc: AssocId,
        sender: ServerId,
        pe: u32,
    ) -> Vec<Action> {
        let mut out = r.handle_message(now, assoc, &presence(sender, 0xFFFF).into());
        let el = rogue_pe(pe, sender, 60_000);
        let add = update(sender, ME, UpdateAction::AddPe, el);
        out.extend(r.handle_message(now, assoc, &add.into()));
        out
    }

    fn connected(r: &mut Registrar, now: Instant, assoc: AssocId, protocol: Protocol, from: &str) {
        let at = from.parse().expect("lit");
        r.handle(
            now,
            Input::connected(assoc, protocol, at, TransportKind::Tcp),
        );
    }

    /// `--enrp-security tls` in the core: only an association with a certificate
    /// ([`Input::PeerCertificate`]) that names the claimed server ID may change state; a
    /// certificate naming another ID is a `tls-identity` refusal; without the binding any
    /// cluster certificate is enough; a certificate for an unknown association is ignored.
    #[test]
    fn tls_peers_need_a_certificate_naming_their_server_id() {
        let ca = rserpool_tests::tls::Ca::new("cluster CA");
        let cert =
            |id: ServerId| PeerCertificate::from_der(ca.issue(&[&server_id_name(id)]).cert_der);
        assert_eq!(server_id_name(0x2a), "enrp-0000002a.rserpool");
        let (mut r, now) = peering(|c| c.security.enrp_security = EnrpSecurity::Tls);
        // No certificate: refused as a peer message.
        connected(&mut r, now, 1, Protocol::Enrp, "10.9.9.1:40000");
        let out = attack_on(&mut r, now, 1, 0x77, 0x601);
        assert!(refusals(&out).iter().any(|x| x.0 == Refusal::PeerMessage));
        assert!(r.handlespace().is_empty());
        // A certificate for 0x77 claiming 0x78: tls-identity.
        connected(&mut r, now, 2, Protocol::Enrp, "10.9.9.2:40000");
        r.handle(
            now,
            Input::PeerCertificate {
                assoc: 2,
                certificate: cert(0x77),
            },
        );
        let out = attack_on(&mut r, now, 2, 0x78, 0x602);
        assert_eq!(
            refusals(&out).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![Refusal::TlsIdentity, Refusal::TlsIdentity]
        );
        assert!(r.handlespace().is_empty());
        assert!(!r.peers().contains_key(&0x78));
        // The same certificate as 0x77: a peer, its PE is taken.
        let out = attack_on(&mut r, now, 2, 0x77, 0x603);
        assert!(refusals(&out).is_empty(), "{:?}", refusals(&out));
        assert!(r.peers().contains_key(&0x77));
        assert!(r.handlespace().get(&"P".into(), 0x603).is_some());
        // A certificate reported for an association that does not exist is not kept.
        r.handle(
            now,
            Input::PeerCertificate {
                assoc: 99,
                certificate: cert(0x79),
            },
        );
        connected(&mut r, now, 99, Protocol::Enrp, "10.9.9.9:40000");
        attack_on(&mut r, now, 99, 0x79, 0x604);
        assert!(r.handlespace().get(&"P".into(), 0x604).is_none());
        // Without the binding, any certificate of the cluster speaks for any ID.
        let (mut r, now) = peering(|c| {
            c.security.enrp_security = EnrpSecurity::Tls;
            c.security.tls_server_id_binding = false;
        });
        connected(&mut r, now, 3, Protocol::Enrp, "10.9.9.3:40000");
        r.handle(
            now,
            Input::PeerCertificate {
                assoc: 3,
                certificate: cert(0x77),
            },
        );
        attack_on(&mut r, now, 3, 0x78, 0x605);
        assert!(r.handlespace().get(&"P".into(), 0x605).is_some());
        // hsdump (sender 0) from a non-loopback address: with a cluster certificate
        // answered, without one refused (R flag).
        assert_eq!(
            dump(&mut r, now, 4, "10.9.9.4:40000"),
            Some(true),
            "no certificate"
        );
        connected(&mut r, now, 5, Protocol::Enrp, "10.9.9.5:40000");
        r.handle(
            now,
            Input::PeerCertificate {
                assoc: 5,
                certificate: cert(0x7a),
            },
        );
        let out = r.handle_message(
            now,
            5,
            &HandleTableRequest {
                own_children_only: false,
                sender: 0,
                receiver: 0,
            }
            .into(),
        );
        let reject = out.iter().find_map(|a| match a.sent() {
            Some((_, Message::Enrp(EnrpMessage::HandleTableResponse(t)))) => Some(t.reject),
            _ => None,
        });
        assert_eq!(reject, Some(false), "certificate holder dumps");
        // The certificate is forgotten with its association.
        for assoc in [3, 5] {
            r.handle(now, Input::Disconnected { assoc });
        }
        assert!(r.security.certs.is_empty());
    }

    /// `[[pool_auth]] psk` (issue 13 item 3): a REGISTRATION signed with the pool's key
    /// (Registration Authenticator, `asap::reg_auth`) is accepted from any address without
    /// TLS; the same bytes again (replay, also on another association), a wrong key, no
    /// authenticator, and a timestamp outside the window are refused with cause 0xA and a
    /// `registration` refusal, and change nothing; a fresh signature later is accepted.
    #[test]
    fn pool_auth_psk_accepts_fresh_signed_registrations_once() {
        use asap::reg_auth::{sign, RegistrationKey};
        use asap::wire::asap_msg::{Registration, RegistrationResponse};
        use asap::wire::{AsapMessage, CauseCode, Message};
        const T0: u64 = 1_700_000_000_000;
        let now = Instant::now();
        let key = RegistrationKey::new(vec![0x42; 32]).expect("key");
        let wrong = RegistrationKey::new(vec![0x43; 32]).expect("key");
        let mut c = CoreConfig::new(ME);
        c.security.pool_auth = vec![PoolAuth {
            handle: "Sec".into(),
            tls_names: Vec::new(),
            addresses: Vec::new(),
            psk: vec![key.clone()],
        }];
        c.security.wall_clock_at = Some((now, T0));
        let mut r = Registrar::new(c, now);
        let encoded = |id: u32, from: &str| -> Vec<u8> {
            Message::from(Registration {
                pool_handle: "Sec".into(),
                pool_element: pe_from(id, from),
            })
            .to_bytes()
            .expect("encode")
            .to_vec()
        };
        let send = |r: &mut Registrar, at: Instant, assoc: AssocId, bytes: Vec<u8>| {
            let out = r.handle(
                at,
                Input::Message {
                    assoc,
                    protocol: Protocol::Asap,
                    bytes: bytes.into(),
                },
            );
            let resp: RegistrationResponse = out
                .iter()
                .find_map(|a| match a.sent() {
                    Some((_, Message::Asap(AsapMessage::RegistrationResponse(x)))) => Some(x),
                    _ => None,
                })
                .expect("a REGISTRATION_RESPONSE");
            (resp, refusals(&out).iter().map(|x| x.0).collect::<Vec<_>>())
        };
        let refused = |x: &RegistrationResponse| {
            x.reject
                && x.error.as_ref().and_then(|e| e.first_code())
                    == Some(CauseCode::RejectedSecurity)
        };
        let from = "192.0.2.7:5000";
        connected(&mut r, now, 1, Protocol::Asap, from);
        // Signed with the pool key: accepted (no TLS, address not listed anywhere).
        let signed = sign(&encoded(1, from), &key, T0 + 1_000, [1; 16]).expect("sign");
        let (x, refs) = send(&mut r, now, 1, signed.clone());
        assert!(!x.reject, "{x:?}");
        assert!(refs.is_empty());
        assert!(r.handlespace().get(&"Sec".into(), 1).is_some());
        // The same bytes again, from another association: a replay.
        connected(&mut r, now, 2, Protocol::Asap, "192.0.2.7:5001");
        let (x, refs) = send(&mut r, now + Duration::from_secs(1), 2, signed.clone());
        assert!(refused(&x), "replay accepted: {x:?}");
        assert_eq!(refs, vec![Refusal::Registration]);
        // Wrong key, no authenticator, stale and future timestamps.
        let bad = [
            sign(&encoded(2, from), &wrong, T0, [2; 16]).expect("sign"),
            encoded(2, from),
            sign(&encoded(2, from), &key, T0 - 61_000, [3; 16]).expect("sign"),
            sign(&encoded(2, from), &key, T0 + 62_000, [4; 16]).expect("sign"),
        ];
        for (i, b) in bad.into_iter().enumerate() {
            let (x, refs) = send(&mut r, now + Duration::from_secs(1), 1, b);
            assert!(refused(&x), "case {i} accepted: {x:?}");
            assert_eq!(refs, vec![Refusal::Registration], "case {i}");
        }
        assert!(r.handlespace().get(&"Sec".into(), 2).is_none());
        // 2 minutes later the old signature is stale; a fresh one re-registers.
        let later = now + Duration::from_secs(120);
        let (x, _) = send(&mut r, later, 1, signed);
        assert!(refused(&x), "old signature accepted later");
        let fresh = sign(&encoded(1, from), &key, T0 + 120_000, [5; 16]).expect("sign");
        let (x, refs) = send(&mut r, later, 1, fresh);
        assert!(!x.reject && refs.is_empty(), "{x:?}");
        // Nonces that left the window were forgotten.
        assert_eq!(r.security.psk_nonces.len(), 1);
    }

    /// `[[pool_auth]]` in the core: a protected pool takes a REGISTRATION only from an
    /// allowed address or a certificate naming an allowed name (cause 0xA otherwise, no
    /// state change, `registration` refusal); other pools are open.
    #[test]
    fn pool_auth_needs_an_allowed_address_or_certificate_name() {
        use asap::wire::asap_msg::Registration;
        let ca = rserpool_tests::tls::Ca::new("cluster CA");
        let now = Instant::now();
        let mut c = CoreConfig::new(ME);
        c.security.pool_auth = vec![PoolAuth {
            handle: "Sec".into(),
            tls_names: vec!["pe1.example".into()],
            addresses: vec!["10.1.0.0/16".parse().expect("lit")],
            psk: Vec::new(),
        }];
        let mut r = Registrar::new(c, now);
        let register = |r: &mut Registrar, assoc: AssocId, from: &str, pool: &str| {
            connected(r, now, assoc, Protocol::Asap, from);
            let out = r.handle_message(
                now,
                assoc,
                &Registration {
                    pool_handle: pool.into(),
                    pool_element: pe_from(assoc as u32, from),
                }
                .into(),
            );
            let resp = out.iter().find_map(|a| match a.sent() {
                Some((_, Message::Asap(asap::wire::AsapMessage::RegistrationResponse(x)))) => {
                    Some(x)
                }
                _ => None,
            });
            (resp.expect("a REGISTRATION_RESPONSE"), refusals(&out))
        };
        // Address allowed.
        let (x, refused) = register(&mut r, 1, "10.1.2.3:5000", "Sec");
        assert!(!x.reject && refused.is_empty());
        // Address not allowed, no certificate.
        let (x, refused) = register(&mut r, 2, "10.2.2.3:5000", "Sec");
        assert!(x.reject);
        assert_eq!(
            x.error.as_ref().and_then(|e| e.first_code()),
            Some(asap::wire::CauseCode::RejectedSecurity)
        );
        assert_eq!(
            refused.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![Refusal::Registration]
        );
        assert!(r.handlespace().get(&"Sec".into(), 2).is_none());
        // Certificates: the allowed name, another name.
        for (assoc, name, ok) in [(3, "pe1.example", true), (4, "pe2.example", false)] {
            let from = format!("10.2.2.{assoc}:5000");
            connected(&mut r, now, assoc, Protocol::Asap, &from);
            r.handle(
                now,
                Input::PeerCertificate {
                    assoc,
                    certificate: PeerCertificate::from_der(ca.issue(&[name]).cert_der),
                },
            );
            let (x, _) = register(&mut r, assoc, &from, "Sec");
            assert_eq!(!x.reject, ok, "{name}");
            assert_eq!(
                r.handlespace().get(&"Sec".into(), assoc as u32).is_some(),
                ok
            );
        }
        // Another pool: open.
        let (x, _) = register(&mut r, 5, "10.2.2.5:5000", "Open");
        assert!(!x.reject);
    }

    fn dump(r: &mut Registrar, now: Instant, assoc: AssocId, from: &str) -> Option<bool> {
        connected(r, now, assoc, Protocol::Enrp, from);
        let out = r.handle_message(
            now,
            assoc,
            &HandleTableRequest {
                own_children_only: false,
                sender: 0,
                receiver: 0,
            }
            .into(),
        );
        out.iter().find_map(|a| match a.sent() {
            Some((_, Message::Enrp(EnrpMessage::HandleTableResponse(t)))) => Some(t.reject),
            _ => None,
        })
    }

    #[test]
    fn hsdump_allow_list_and_peers() {
        let (mut r, now) = peering(|c| {
            c.security.hsdump_allow = vec!["192.168.7.0/24".parse().expect("lit")];
            c.security.peer_allow = vec!["10.1.1.1".parse().expect("lit")];
        });
        // (association, from, refused, why)
        for (assoc, from, refused, why) in [
            (1, "192.168.7.9:3000", false, "hsdump-allow"),
            (2, "10.1.1.1:3000", false, "an allowed peer"),
            (3, "127.0.0.1:3000", true, "default replaced"),
            (4, "10.1.1.2:3000", true, "stranger"),
        ] {
            assert_eq!(dump(&mut r, now, assoc, from), Some(refused), "{why}");
        }
        let (mut r, now) = peering(|c| c.security.enrp_security = EnrpSecurity::Open);
        assert_eq!(dump(&mut r, now, 1, "10.1.1.2:3000"), Some(false), "open");
    }

    #[test]
    fn allow_entries_parse() {
        assert_eq!(
            "0x5eed0002".parse::<PeerAllow>(),
            Ok(PeerAllow::ServerId(0x5eed_0002))
        );
        assert_eq!("17".parse::<PeerAllow>(), Ok(PeerAllow::ServerId(17)));
        assert!(matches!(
            "10.0.0.0/24".parse::<PeerAllow>(),
            Ok(PeerAllow::Net(n)) if n.prefix == 24
        ));
        assert!(matches!(
            "10.0.0.7".parse::<PeerAllow>(),
            Ok(PeerAllow::Net(n)) if n.prefix == 32
        ));
        assert_eq!(
            "0".parse::<PeerAllow>(),
            Err("server ID 0 is reserved".into())
        );
        assert_eq!(
            "peer".parse::<PeerAllow>(),
            Err("\"peer\" is neither a server ID nor ADDR[/PREFIX]".into())
        );
        assert_eq!(parse_server_id(" 0X1f "), Ok(0x1F));
        assert_eq!(
            parse_server_id("4294967296"),
            Err(ServerIdError::NotANumber)
        );
        assert_eq!("open".parse(), Ok(EnrpSecurity::Open));
        assert!("none".parse::<EnrpSecurity>().is_err());
    }
}
