//! Settings of the registrar core (all times as [`Duration`]; the binary's options are in ms).

use std::net::SocketAddr;
use std::time::Duration;

use asap::handlespace::HandlespaceLimits;
use asap::wire::{ServerId, TransportParameter};

use super::address::{AddressScope, IpNet};
use super::rate::Rate;
use super::trust::SecurityConfig;

/// Configuration of a [`Registrar`](super::Registrar).
///
/// Defaults follow rsplib's registrar (`rspregistrar.h`, asap/wire/INTEROP.md §4) unless noted.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Our ENRP Server Identifier (RFC 5353 §3; RFC 5351 §3.1). Must not be 0.
    pub server_id: ServerId,
    /// Interval between ASAP_ENDPOINT_KEEP_ALIVEs to each owned PE (rsplib 5 s).
    pub keep_alive_interval: Duration,
    /// Jitter the keep-alive interval by ±12.5 % per cycle (rsplib `registrarRandomizeCycle`),
    /// so that PEs registered in one burst do not stay synchronised.
    pub keep_alive_jitter: bool,
    /// Wait for the ASAP_ENDPOINT_KEEP_ALIVE_ACK before the PE is removed (rsplib 5 s).
    pub keep_alive_timeout: Duration,
    /// ASAP_SERVER_ANNOUNCE period (T6, RFC 5352 §5: 1 s), jittered ±12.5 % like rsplib.
    pub announce_interval: Duration,
    /// ENDPOINT_UNREACHABLE reports after which a PE is verified with a keep-alive and
    /// removed if it does not answer (MAX-BAD-PE-REPORT, RFC 5353: 3; [`SecurityConfig`]),
    /// counted as `unreachable_counting` says (default: distinct reporters, at most 64
    /// tracked per PE).
    pub max_bad_pe_reports: u32,
    /// What counts towards `max_bad_pe_reports`: distinct reporters (default) or every
    /// report (rsplib). README "Deviations from rsplib".
    pub unreachable_counting: super::counting::UnreachableCounting,
    /// PEs returned by a HANDLE_RESOLUTION without Handle Resolution Option (rsplib 3).
    pub max_hres_items: u32,
    /// Selection state updates per handle resolution (asap/wire/INTEROP.md §3). The default
    /// follows RFC 5356 §5.2 (LUD, PLUD, LUD-DPF degrade every PE handed out);
    /// `MaxIncrement::RsplibDefault` degrades only the first, as rsplib.
    pub max_increment: asap::selection::MaxIncrement,
    /// Upper bound on PEs in one HANDLE_RESOLUTION_RESPONSE, also for "all" (0xFFFFFFFF).
    /// Default: unlimited; the response is still cut to fit [`Self::max_message_size`].
    pub hres_items_cap: u32,
    /// Longest accepted pool handle in bytes (rsplib `MAX_POOLHANDLESIZE` = 32).
    pub max_handle_len: usize,
    /// Narrowest address scope accepted for user transport addresses (rsplib: site-local).
    /// Addresses narrower than this are still accepted when the registering association
    /// itself runs over an address of that scope (e.g. everything on loopback).
    pub min_address_scope: AddressScope,
    /// Peers allowed to register user addresses other than their own (third-party
    /// registration, e.g. a proxy PE).
    pub allow_third_party: Vec<IpNet>,
    /// PEs per HANDLE_TABLE_RESPONSE before the M bit is set (rsplib 128).
    pub handle_table_chunk: usize,
    /// Limits of the handlespace (pools, PEs per pool, per association, total).
    pub limits: HandlespaceLimits,
    /// Per-PU HANDLE_RESOLUTION rate (`None` = unlimited, rsplib default).
    pub hres_rate: Option<Rate>,
    /// Per-PU ENDPOINT_UNREACHABLE rate (`None` = unlimited, rsplib default).
    pub eu_rate: Option<Rate>,
    /// Most peers tracked by each rate limiter.
    pub rate_table_size: usize,
    /// Largest message we send (TCP framing and the 16-bit Length allow 65535).
    pub max_message_size: usize,
    /// Where ASAP_SERVER_ANNOUNCEs go (UDP; empty = no announces).
    pub asap_announce_targets: Vec<SocketAddr>,
    /// Transports put into ASAP_SERVER_ANNOUNCE (empty = none; receivers then use the
    /// datagram's source address). Filled in by the driver from the bound listeners.
    pub asap_transports: Vec<TransportParameter>,
    /// Our ENRP transport for the Server Information of ENRP_PRESENCE replies.
    pub enrp_transport: Option<TransportParameter>,
    /// Static ENRP peers (RFC 5353 §3.1): contacted at start-up and kept in the peer table.
    pub peers: Vec<SocketAddr>,
    /// ENRP peering (RFC 5353): timers, multicast group, on/off.
    pub peering: super::peers::PeeringConfig,
    /// Trust boundaries: peer admission, hsdump allow-list (issue 13, `SECURITY.md`).
    pub security: SecurityConfig,
    /// Seed of the core's random generator (selection, jitter): tests fix it.
    pub seed: u64,
    /// Most associations open at once, counting those being opened; the core opens no
    /// more of its own beyond it ([`links`](super::links)). The driver sets it from its
    /// `max_associations` and refuses accepted ones beyond it itself.
    pub max_associations: usize,
    /// Granularity of the Distance filled into distance-sensitive policies (LU-DPF,
    /// LUD-DPF, WRAND-DPF): half the association's RTT is rounded to a multiple of it
    /// ([`distance`](super::distance); rsplib `-distancestep`, 50 ms). Below 1 ms counts
    /// as 1 ms.
    pub distance_step: Duration,
    /// First ID of the associations the core opens itself ([`links`](super::links));
    /// the driver numbers accepted associations below it (from 1). Default `1 << 63`.
    pub first_outgoing_assoc: super::AssocId,
}

impl CoreConfig {
    /// Defaults with the given server ID.
    pub fn new(server_id: ServerId) -> Self {
        CoreConfig {
            server_id,
            keep_alive_interval: Duration::from_millis(5000),
            keep_alive_jitter: true,
            keep_alive_timeout: Duration::from_millis(5000),
            announce_interval: Duration::from_millis(1000),
            max_bad_pe_reports: 3,
            unreachable_counting: super::counting::UnreachableCounting::DistinctReporters,
            max_hres_items: 3,
            max_increment: asap::selection::MaxIncrement::PolicyDefault,
            hres_items_cap: u32::MAX,
            max_handle_len: 32,
            min_address_scope: AddressScope::SiteLocal,
            allow_third_party: Vec::new(),
            handle_table_chunk: 128,
            limits: HandlespaceLimits::default(),
            hres_rate: None,
            eu_rate: None,
            rate_table_size: 65_536,
            max_message_size: 65_535,
            asap_announce_targets: Vec::new(),
            asap_transports: Vec::new(),
            enrp_transport: None,
            peers: Vec::new(),
            peering: super::peers::PeeringConfig::default(),
            security: SecurityConfig::default(),
            seed: u64::from(server_id),
            max_associations: usize::MAX,
            first_outgoing_assoc: 1 << 63,
            distance_step: Duration::from_millis(50),
        }
    }
}
