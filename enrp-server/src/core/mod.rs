//! The registrar protocol logic as a sans-I/O state machine (RFC 5351 §2–3, RFC 5352 server
//! side, the parts of RFC 5353 that tools use).
//!
//! Like `quinn-proto`, the core owns no socket and reads no clock. The driver feeds it
//! [`Input`]s with the current time through [`Registrar::handle`], calls
//! [`Registrar::handle_timeout`] when [`Registrar::poll_timeout`] is reached, and carries out
//! the returned [`Action`]s (send a message on an association, send a UDP datagram, abort an
//! association, log an [`Event`], replicate to peers). The same core therefore runs over
//! kernel SCTP, TCP or an in-memory test harness, deterministically (the random generator is
//! seeded from [`CoreConfig::seed`]).
//!
//! What it does:
//! * ASAP REGISTRATION / re-registration / DEREGISTRATION with every check (PE ID, pool
//!   consistency, address sanity and scope, third-party allow-list, handle length, limits),
//!   answering with the RFC 5354 §3.12 cause in an Operation Error and the R flag;
//! * HANDLE_RESOLUTION with rsplib's Handle Resolution Option, policy-driven selection;
//! * ENDPOINT_KEEP_ALIVE monitoring of every PE registered here, removal on timeout or
//!   association loss; ENDPOINT_UNREACHABLE counting (MAX-BAD-PE-REPORT distinct reporters
//!   that resolved the pool recently, verified with a keep-alive before removal, [`trust`]);
//! * ASAP SERVER_ANNOUNCE every announce interval;
//! * ERROR with Operation Error for unrecognised messages/parameters per their action bits,
//!   Invalid Values for malformed ones — the association and all registrations survive;
//! * ENRP for tools: PRESENCE replies, LIST_REQUEST, HANDLE_TABLE_REQUEST with M-bit
//!   continuation and the W flag (rsplib's `hsdump`).
//!
//! ENRP peering (HANDLE_UPDATE to peers, PRESENCE audit, mentor download, takeover) is in
//! [`peers`]: every change of a PE whose home we are is replicated where it happens
//! (`Registrar::replicate`: [`Action::Replicate`] plus a HANDLE_UPDATE to each peer). The
//! associations the registrar opens itself (to peers, to adopted PEs) and the peer address
//! table are in [`links`]: the driver only carries out [`Action::Connect`] /
//! [`Action::Close`] and reports [`Input::Connected`] / [`Input::ConnectFailed`] /
//! [`Input::Disconnected`].

pub mod address;
mod config;
mod counting;
pub mod distance;
mod event;
mod idmap;
pub mod links;
pub mod ownership;
pub mod peers;
pub mod rate;
mod startup;
pub mod trust;

pub use address::{AddressScope, IpNet};
pub use config::CoreConfig;
pub use counting::UnreachableCounting;
pub use event::{Event, RemovalReason, Replication};
pub use links::{ConnectPurpose, PeerTransport, PEER_CONNECT_QUEUE, PEER_CONNECT_TIMEOUT};
pub use peers::{Peer, PeeringConfig};
pub use rate::{Rate, RateLimiter};
pub use trust::{
    parse_server_id, server_id_name, EnrpSecurity, PeerAllow, PoolAuth, Refusal, Refused,
    SecurityConfig, ServerIdError,
};

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use asap::handlespace::{DumpCursor, Handlespace, HandlespaceError, RemovedElement};
use asap::transport::TransportKind;
use asap::wire::asap_msg::{
    AnswerElement, Deregistration, DeregistrationResponse, EndpointKeepAlive, Error as AsapError,
    HandleResolutionResponse, RegistrationResponse, ServerAnnounce,
};
use asap::wire::enrp_msg::{Error as EnrpError, HandleTableResponse, ListResponse, Presence};
use asap::wire::{
    AsapMessage, AsapType, CauseCode, DecodeError, EnrpMessage, ErrorCause, HandleResolutionOption,
    Message, OperationError, PeIdentifier, Policy, PoolElementInfo, PoolEntry, PoolHandle,
    Protocol, ServerInformation, TransportParameter, TransportUse, UpdateAction,
};
use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Identifier of an association (SCTP association or TCP connection) assigned by the driver.
pub type AssocId = u64;

/// Something the driver tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A new association was accepted on the ASAP or ENRP listener.
    Connected {
        /// Its identifier (unique for the driver's lifetime).
        assoc: AssocId,
        /// Which listener (ASAP 3863 or ENRP 9901).
        protocol: Protocol,
        /// The peer's addresses (all paths for SCTP).
        peer_addrs: Vec<SocketAddr>,
        /// SCTP or TCP.
        transport: TransportKind,
    },
    /// One whole message arrived on an association. `protocol` comes from the SCTP PPID
    /// (11/12), or from the listener when the PPID says nothing (TCP).
    Message {
        /// The association.
        assoc: AssocId,
        /// ASAP or ENRP.
        protocol: Protocol,
        /// The message bytes.
        bytes: Bytes,
    },
    /// The peer restarted the association (SCTP restart, RFC 9260 §5.2.2): the association
    /// continues but the peer's state is gone, so the PEs registered over it are removed
    /// (the restarted PE registers again).
    Restarted {
        /// The association.
        assoc: AssocId,
    },
    /// The association is gone (closed, aborted or failed by the peer or the network).
    /// Associations the core itself aborted or closed ([`Action::Abort`],
    /// [`Action::Close`]) are forgotten when the action is emitted; the driver need not
    /// (but may) report them.
    Disconnected {
        /// The association.
        assoc: AssocId,
    },
    /// An association the core asked for with [`Action::Connect`] could not be opened
    /// (refused, unreachable, timed out). Every `Connect` is answered with either this or
    /// [`Input::Connected`] with the same ID.
    ConnectFailed {
        /// The association ID from the [`Action::Connect`].
        assoc: AssocId,
    },
    /// The driver verified the association's TLS peer certificate (sent right after
    /// [`Input::Connected`], before any message; `trust.rs`, [`EnrpSecurity::Tls`] and
    /// [`PoolAuth`]).
    PeerCertificate {
        /// The association.
        assoc: AssocId,
        /// The peer's end-entity certificate (chains to the configured CA).
        certificate: asap::transport::tls::PeerCertificate,
    },
    /// The association's current smoothed round-trip time
    /// (`asap::transport::AssocReader::rtt`): the driver sends it right before an
    /// [`Input::Message`] it measured it for (a REGISTRATION, HANDLE_UPDATE or
    /// HANDLE_TABLE_RESPONSE is enough) and the core keeps the latest per association. It
    /// becomes the Distance of distance-sensitive policies ([`distance`]); associations
    /// without one count as distance 0.
    Rtt {
        /// The association.
        assoc: AssocId,
        /// Smoothed RTT (kernel SCTP: primary path `spinfo_srtt`; TCP: `tcpi_rtt`).
        rtt: Duration,
    },
    /// A UDP datagram arrived (announce / presence sockets).
    Datagram {
        /// Sender.
        from: SocketAddr,
        /// ASAP or ENRP (by the receiving socket).
        protocol: Protocol,
        /// The datagram.
        bytes: Bytes,
    },
}

impl Input {
    /// Convenience for tests and tools: [`Input::Connected`] of a single-homed peer at
    /// `peer`.
    pub fn connected(
        assoc: AssocId,
        protocol: Protocol,
        peer: SocketAddr,
        transport: TransportKind,
    ) -> Input {
        Input::Connected {
            assoc,
            protocol,
            peer_addrs: vec![peer],
            transport,
        }
    }
}

/// Something the core asks the driver to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a message on an association (PPID from `protocol`). Only the encoding travels:
    /// the hot answers (HANDLE_RESOLUTION_RESPONSE) are encoded straight from the
    /// handlespace and never exist as a [`Message`]; [`Action::sent`] decodes one.
    Send {
        /// The association.
        assoc: AssocId,
        /// ASAP (PPID 11) or ENRP (PPID 12).
        protocol: Protocol,
        /// The message's name as tshark prints it (`ASAP Handle Resolution Response`), for
        /// logs.
        name: &'static str,
        /// The message's encoding.
        bytes: Bytes,
    },
    /// Send a UDP datagram (ASAP SERVER_ANNOUNCE).
    SendDatagram {
        /// Destination (multicast group or unicast target).
        to: SocketAddr,
        /// The message.
        message: Message,
        /// Its encoding.
        bytes: Bytes,
    },
    /// Abort an association (SCTP ABORT / TCP RST); the core has already forgotten it.
    Abort {
        /// The association.
        assoc: AssocId,
        /// Why (for the log).
        reason: &'static str,
    },
    /// Propagate a handlespace change to ENRP peers (peering hook; no-op without peers).
    Replicate(Replication),
    /// Send an ENRP message to a peer registrar (or the PRESENCE multicast group) at its
    /// ENRP address (peering, [`peers`]).
    PeerSend {
        /// Destination.
        to: SocketAddr,
        /// The message.
        message: Message,
        /// Its encoding.
        bytes: Bytes,
    },
    /// Open an association ([`links`]): to a peer registrar's ENRP address (messages for
    /// it wait in the core), or to the ASAP transport of PEs adopted in a takeover (RFC 5353
    /// §3.6; on [`Input::Connected`] the core binds them and sends each an
    /// ENDPOINT_KEEP_ALIVE with the H flag). The driver answers with [`Input::Connected`]
    /// (same `assoc`) or [`Input::ConnectFailed`] within `timeout`.
    Connect {
        /// The ID the core gives the new association.
        assoc: AssocId,
        /// ENRP (PPID 12) or ASAP (PPID 11).
        protocol: Protocol,
        /// SCTP or TCP; `None` = the transport of the driver's listener for `protocol`.
        transport: Option<TransportKind>,
        /// The remote addresses (several for a multi-homed SCTP peer).
        to: Vec<SocketAddr>,
        /// Give up after this long.
        timeout: Duration,
        /// What it is for (logs and tests).
        purpose: ConnectPurpose,
    },
    /// Close an association gracefully (SCTP SHUTDOWN / TCP FIN) after the messages queued
    /// on it; the core has already forgotten it.
    Close {
        /// The association.
        assoc: AssocId,
        /// Why (for the log).
        reason: &'static str,
    },
    /// Log / count this.
    Event(Event),
}

impl Action {
    /// For [`Action::Send`]: the association and the message decoded from the bytes with
    /// the wire codec (what the peer will read), for tests and tools. `None` for other
    /// actions, and for bytes that do not decode (never the case for the core's own
    /// encodings).
    pub fn sent(&self) -> Option<(AssocId, Message)> {
        match self {
            Action::Send {
                assoc,
                protocol,
                bytes,
                ..
            } => Message::decode(*protocol, bytes)
                .ok()
                .map(|d| (*assoc, d.message)),
            _ => None,
        }
    }
}

/// Per-association state.
#[derive(Debug, Clone)]
struct Assoc {
    protocol: Protocol,
    transport: TransportKind,
    peer_addrs: Vec<SocketAddr>,
    /// Where an unfinished HANDLE_TABLE dump continues, with its W flag.
    dump: Option<(bool, DumpCursor)>,
    /// Latest smoothed RTT from [`Input::Rtt`] ([`distance`]).
    rtt: Option<Duration>,
}

impl Assoc {
    fn peer_ip(&self) -> Option<IpAddr> {
        self.peer_addrs.first().map(|a| address::canonical(a.ip()))
    }

    /// The peer's addresses, canonical (IPv4-mapped IPv6 as IPv4).
    fn peer_ips(&self) -> Vec<IpAddr> {
        self.peer_addrs
            .iter()
            .map(|p| address::canonical(p.ip()))
            .collect()
    }
}

/// Keep-alive state of one PE registered here.
#[derive(Debug, Clone, Copy)]
struct Monitor {
    due: Instant,
    awaiting_ack: bool,
}

type PeKey = (PoolHandle, PeIdentifier);

/// [`Registrar::encode`]: room below which the shared encoding buffer gets a new chunk.
const ENCODE_MIN_ROOM: usize = 2048;
/// [`Registrar::encode`]: size of a new chunk of the shared encoding buffer (one allocation
/// for a run of answers; a chunk is freed when the last message in it has been written).
const ENCODE_CHUNK: usize = 16 * 1024;

/// Runs `write` on the shared encoding buffer `enc` ([`Registrar::enc`]) and takes what it
/// appended: the bytes and `write`'s result, or why they cannot be sent (encoding error,
/// more than `max` bytes, the maximum message size). A free function so that the answer
/// path can encode from borrowed handlespace entries while it holds them.
fn encode_into<T>(
    enc: &RefCell<BytesMut>,
    max: usize,
    write: impl FnOnce(&mut BytesMut) -> Result<T, asap::wire::EncodeError>,
) -> Result<(Bytes, T), String> {
    let mut b = enc.borrow_mut();
    if b.capacity() < ENCODE_MIN_ROOM {
        b.reserve(ENCODE_CHUNK);
    }
    let t = match write(&mut b) {
        Ok(t) => t,
        Err(e) => {
            b.clear();
            return Err(e.to_string());
        }
    };
    let bytes = b.split().freeze();
    if bytes.len() > max {
        return Err(format!(
            "{} bytes exceed the maximum message size",
            bytes.len()
        ));
    }
    Ok((bytes, t))
}

/// The per-PU rate limits of [`Registrar::per_pu_allowed`].
#[derive(Debug, Clone, Copy)]
enum PuRate {
    /// HANDLE_RESOLUTIONs ([`CoreConfig::hres_rate`]).
    Resolutions,
    /// ENDPOINT_UNREACHABLEs ([`CoreConfig::eu_rate`]).
    UnreachableReports,
}

/// The registrar state machine; see the module documentation.
#[derive(Debug)]
pub struct Registrar {
    config: CoreConfig,
    handlespace: Handlespace,
    assocs: idmap::IdMap<Assoc>,
    monitors: HashMap<PeKey, Monitor>,
    monitor_timers: BTreeSet<(Instant, PoolHandle, PeIdentifier)>,
    next_announce: Option<Instant>,
    hres_limiter: RateLimiter,
    eu_limiter: RateLimiter,
    rng: StdRng,
    peering: peers::PeerState,
    security: trust::SecurityState,
    links: links::Links,
    /// Encoding buffer shared by every message the core sends (issue 15 answer path):
    /// each message is encoded at its end and split off as its own `Bytes`, so a run of
    /// small answers shares one allocation instead of one growing `BytesMut` each.
    enc: RefCell<BytesMut>,
}

impl Registrar {
    /// A registrar with an empty handlespace. The first SERVER_ANNOUNCE is due at `now`,
    /// or with peering on once the handlespace is loaded (`startup`, rsplib).
    pub fn new(mut config: CoreConfig, now: Instant) -> Self {
        if config.server_id == 0 {
            config.server_id = 1;
        }
        config.max_bad_pe_reports = config.max_bad_pe_reports.clamp(
            1,
            u32::try_from(asap::handlespace::MAX_TRACKED_REPORTERS).unwrap_or(u32::MAX),
        );
        config.handle_table_chunk = config.handle_table_chunk.max(1);
        let mut handlespace = Handlespace::with_limits(config.limits);
        handlespace.set_max_increment(config.max_increment);
        let next_announce = startup::first_announce(&config, now);
        Registrar {
            hres_limiter: RateLimiter::new(config.hres_rate, config.rate_table_size),
            eu_limiter: RateLimiter::new(config.eu_rate, config.rate_table_size),
            rng: StdRng::seed_from_u64(config.seed),
            handlespace,
            assocs: idmap::IdMap::default(),
            monitors: HashMap::new(),
            monitor_timers: BTreeSet::new(),
            next_announce,
            peering: peers::PeerState::new(
                config.peering.enabled,
                now,
                config.peering.mentor_discovery_timeout,
            ),
            security: trust::SecurityState::default(),
            links: links::Links::new(config.first_outgoing_assoc),
            enc: RefCell::new(BytesMut::new()),
            config,
        }
    }

    /// Our server ID.
    pub fn server_id(&self) -> u32 {
        self.config.server_id
    }

    /// The configuration in use.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The handlespace (read-only).
    pub fn handlespace(&self) -> &Handlespace {
        &self.handlespace
    }

    /// Number of associations known.
    pub fn association_count(&self) -> usize {
        self.assocs.len()
    }

    /// The listener protocol and peer addresses of an association.
    pub fn association(&self, assoc: AssocId) -> Option<(Protocol, &[SocketAddr])> {
        self.assocs
            .get(&assoc)
            .map(|a| (a.protocol, a.peer_addrs.as_slice()))
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_announce,
            self.monitor_timers.first().map(|t| t.0),
            self.handlespace.next_expiry(),
            self.peering_deadline(),
            self.security_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Processes one input at time `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Connected {
                assoc,
                protocol,
                peer_addrs,
                transport,
            } => {
                // Per-host cap and idle timer (trust.rs).
                self.note_connected(now, assoc, protocol, &peer_addrs, &mut out);
                self.assocs.insert(
                    assoc,
                    Assoc {
                        protocol,
                        transport,
                        peer_addrs: peer_addrs.clone(),
                        dump: None,
                        rtt: None,
                    },
                );
                self.link_up(now, assoc, protocol, &peer_addrs, &mut out);
            }
            Input::Disconnected { assoc } => self.closed(assoc, &mut out),
            Input::ConnectFailed { assoc } => self.connect_failed(assoc, &mut out),
            Input::Restarted { assoc } => {
                if let Some(a) = self.assocs.get_mut(&assoc) {
                    a.dump = None;
                }
                let lost = self.handlespace.remove_connection(assoc);
                self.removed_all(lost, RemovalReason::AssociationLost, &mut out);
            }
            Input::Message {
                assoc,
                protocol,
                bytes,
            } => self.on_bytes(now, Some(assoc), None, protocol, &bytes, &mut out),
            Input::PeerCertificate { assoc, certificate } => {
                self.note_certificate(assoc, certificate)
            }
            Input::Rtt { assoc, rtt } => {
                if let Some(a) = self.assocs.get_mut(&assoc) {
                    a.rtt = Some(rtt);
                }
            }
            Input::Datagram {
                from,
                protocol,
                bytes,
            } => self.on_bytes(now, None, Some(from), protocol, &bytes, &mut out),
        }
        self.release_held(now, &mut out);
        self.finish(&mut out);
        out
    }

    /// Last step of every call: unicast peer messages onto associations ([`links`]), and
    /// associations the core aborted or closed are forgotten at once (their PEs removed),
    /// so that the driver reports nothing it did not see.
    fn finish(&mut self, out: &mut Vec<Action>) {
        self.route_peer_sends(out);
        let mut i = 0;
        while i < out.len() {
            if let Action::Abort { assoc, .. } | Action::Close { assoc, .. } = out[i] {
                if self.assocs.contains_key(&assoc) {
                    self.closed(assoc, out);
                    // Removals replicate to peers: route what that produced.
                    self.route_peer_sends(out);
                }
            }
            i += 1;
        }
    }

    /// The association is gone: forget it and remove the PEs registered over it.
    fn closed(&mut self, assoc: AssocId, out: &mut Vec<Action>) {
        self.assocs.remove(&assoc);
        self.forget_association(assoc);
        self.link_down(assoc, out);
        let lost = self.handlespace.remove_connection(assoc);
        self.removed_all(lost, RemovalReason::AssociationLost, out);
    }

    /// Convenience for tests and tools: encodes `message` and feeds it as
    /// [`Input::Message`].
    pub fn handle_message(
        &mut self,
        now: Instant,
        assoc: AssocId,
        message: &Message,
    ) -> Vec<Action> {
        self.handle_encoded(now, message, |protocol, bytes| Input::Message {
            assoc,
            protocol,
            bytes,
        })
    }

    /// Convenience for tests and tools: encodes `message` and feeds it as
    /// [`Input::Datagram`] from `from` (e.g. an ENRP peer's unicast PRESENCE).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        message: &Message,
    ) -> Vec<Action> {
        self.handle_encoded(now, message, |protocol, bytes| Input::Datagram {
            from,
            protocol,
            bytes,
        })
    }

    /// Encodes `message` and feeds the input `input` makes of it (protocol and bytes); an
    /// encoding failure is reported as [`Event::EncodeFailed`] instead.
    fn handle_encoded(
        &mut self,
        now: Instant,
        message: &Message,
        input: impl FnOnce(Protocol, Bytes) -> Input,
    ) -> Vec<Action> {
        match message.to_bytes() {
            Ok(bytes) => self.handle(now, input(message.protocol(), bytes)),
            Err(e) => vec![Action::Event(Event::EncodeFailed {
                message: message.name(),
                error: e.to_string(),
            })],
        }
    }

    /// Runs every timer due at `now`: registration expiry, keep-alive transmission and
    /// timeout, server announces.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let expired = self.handlespace.expire(now);
        self.removed_all(expired, RemovalReason::Expired, &mut out);
        while let Some((t, h, id)) = self.monitor_timers.first().cloned() {
            if t > now {
                break;
            }
            self.monitor_timers.remove(&(t, h.clone(), id));
            self.keep_alive_due(now, h, id, &mut out);
        }
        if let Some(t) = self.next_announce {
            if t <= now {
                self.announce(&mut out);
                let next = self.jittered(self.config.announce_interval);
                self.next_announce = Some(now + next);
            }
        }
        self.peering_timeout(now, &mut out);
        self.security_timeout(now, &mut out);
        self.release_held(now, &mut out);
        self.finish(&mut out);
        out
    }

    /// The next keep-alive interval (jittered if configured).
    fn keep_alive_interval(&mut self) -> Duration {
        if self.config.keep_alive_jitter {
            self.jittered(self.config.keep_alive_interval)
        } else {
            self.config.keep_alive_interval
        }
    }

    /// `d` ± 12.5 % (rsplib `registrarRandomizeCycle`).
    fn jittered(&mut self, d: Duration) -> Duration {
        let f: f64 = self.rng.gen_range(0.875..1.125);
        d.mul_f64(f).max(Duration::from_millis(1))
    }

    // ------------------------------------------------------------------------------------
    // Output helpers

    /// Encodes `message` into the shared buffer ([`Registrar::enc`]): its bytes, or why it
    /// cannot be sent (encoding error, larger than the maximum message size).
    fn encode(&self, message: &Message) -> Result<Bytes, String> {
        encode_into(&self.enc, self.config.max_message_size, |b| {
            message.encode(b)
        })
        .map(|(bytes, ())| bytes)
    }

    /// Reports [`Event::Adopted`] for PE `id` of `h` on `assoc` and asks the PE, with an
    /// ENDPOINT_KEEP_ALIVE carrying the H flag, to take us as its home (RFC 5352 §2.2.7,
    /// RFC 5353 §3.6): after a takeover, or on a takeover suggestion.
    fn probe_adopted(
        &self,
        out: &mut Vec<Action>,
        assoc: AssocId,
        h: PoolHandle,
        id: PeIdentifier,
    ) {
        out.push(Action::Event(Event::Adopted {
            assoc,
            handle: h.clone(),
            id,
        }));
        let probe = EndpointKeepAlive {
            home: true,
            server_id: self.config.server_id,
            pool_handle: h,
            pe_identifier: Some(id),
        };
        self.send(out, assoc, probe.into());
    }

    fn send(&self, out: &mut Vec<Action>, assoc: AssocId, message: Message) {
        match self.encode(&message) {
            Ok(bytes) => out.push(Action::Send {
                assoc,
                protocol: message.protocol(),
                name: message.tshark_name(),
                bytes,
            }),
            Err(error) => out.push(Action::Event(Event::EncodeFailed {
                message: message.name(),
                error,
            })),
        }
    }

    fn fits(&self, message: &Message) -> bool {
        self.encode(message).is_ok()
    }

    /// [`removed`](Self::removed) for each of `removals` (handlespace removals of one kind).
    fn removed_all(
        &mut self,
        removals: Vec<RemovedElement>,
        reason: RemovalReason,
        out: &mut Vec<Action>,
    ) {
        for r in removals {
            self.removed(r.handle, r.entry.element().clone(), reason, out);
        }
    }

    /// A PE left: forget its monitor, tell peers and the log.
    fn removed(
        &mut self,
        handle: PoolHandle,
        element: PoolElementInfo,
        reason: RemovalReason,
        out: &mut Vec<Action>,
    ) {
        let key = (handle, element.id);
        if let Some(m) = self.monitors.remove(&key) {
            self.monitor_timers.remove(&(m.due, key.0.clone(), key.1));
        }
        self.security.probing.remove(&key);
        out.push(Action::Event(Event::Removed {
            handle: key.0.clone(),
            id: key.1,
            reason,
        }));
        if element.home_server_id == self.config.server_id {
            self.replicate(UpdateAction::DelPe, key.0, element, out);
        }
    }

    fn set_monitor(&mut self, key: PeKey, due: Instant, awaiting_ack: bool) {
        if let Some(old) = self
            .monitors
            .insert(key.clone(), Monitor { due, awaiting_ack })
        {
            self.monitor_timers.remove(&(old.due, key.0.clone(), key.1));
        }
        self.monitor_timers.insert((due, key.0, key.1));
    }

    fn error_reply(
        &self,
        out: &mut Vec<Action>,
        assoc: AssocId,
        protocol: Protocol,
        causes: Vec<ErrorCause>,
    ) {
        let error = OperationError { causes };
        let mut message: Message = match protocol {
            Protocol::Asap => AsapError { error }.into(),
            Protocol::Enrp => EnrpError {
                sender: self.config.server_id,
                receiver: 0,
                error,
            }
            .into(),
        };
        if !self.fits(&message) {
            // An Unrecognized Message cause carries the whole message: cut it to fit.
            let cut = |e: &mut OperationError| {
                for c in &mut e.causes {
                    c.info.truncate(1024);
                }
            };
            match &mut message {
                Message::Asap(AsapMessage::Error(m)) => cut(&mut m.error),
                Message::Enrp(EnrpMessage::Error(m)) => cut(&mut m.error),
                _ => {}
            }
        }
        self.send(out, assoc, message);
    }

    // ------------------------------------------------------------------------------------
    // Decoding and dispatch

    fn on_bytes(
        &mut self,
        now: Instant,
        assoc: Option<AssocId>,
        from: Option<SocketAddr>,
        protocol: Protocol,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) {
        match Message::decode(protocol, bytes) {
            Ok(d) => {
                if !d.reports.is_empty() {
                    // Skipped parameters with the "report" action bits (RFC 5354 §3).
                    let replied = assoc.is_some();
                    if let Some(a) = assoc {
                        self.error_reply(out, a, protocol, d.reports.clone());
                    }
                    out.push(Action::Event(Event::ProtocolError {
                        assoc,
                        protocol,
                        error: format!(
                            "{}: {} unrecognized parameter(s) skipped",
                            d.message.tshark_name(),
                            d.reports.len()
                        ),
                        replied,
                    }));
                }
                match (assoc, d.message) {
                    (Some(a), Message::Asap(m)) => self.on_asap(now, a, bytes, m, out),
                    // ENRP peer messages over an association (RFC 5353 §2: SCTP, PPID 12):
                    // the peer is addressed by the association's primary address, which the
                    // driver maps back to this association. Tools (hsdump) send a
                    // HANDLE_TABLE_REQUEST without PRESENCE first, or sender ID 0: they are
                    // answered on the association without joining the peer table.
                    (Some(a), Message::Enrp(m))
                        if self.config.peering.enabled
                            && m.sender() != 0
                            && (self.peering.peers.contains_key(&m.sender())
                                || !matches!(m, EnrpMessage::HandleTableRequest(_))) =>
                    {
                        match self.assocs.get(&a).and_then(|x| x.peer_addrs.first()) {
                            Some(&from) => {
                                if self.admit_enrp(now, Some(a), from, &m, out) {
                                    let m = self.add_peer_distance(a, m);
                                    self.on_enrp_peer(now, (from, Some(a)), m, out)
                                }
                            }
                            None => self.on_enrp(now, a, m, out),
                        }
                    }
                    (Some(a), Message::Enrp(m)) => self.on_enrp(now, a, m, out),
                    (None, Message::Enrp(m)) if self.config.peering.enabled => {
                        if let Some(from) = from {
                            if self.admit_enrp(now, None, from, &m, out) {
                                self.on_enrp_peer(now, (from, None), m, out);
                            }
                        }
                    }
                    (None, m) => {
                        // UDP: announces / presences of other registrars. Peering will use
                        // them; nothing is ever sent back to a datagram's source.
                        let _ = from;
                        out.push(Action::Event(Event::Ignored {
                            assoc: None,
                            message: m.tshark_name(),
                            reason: "datagram (peering not enabled)",
                        }));
                    }
                }
            }
            Err(e) => self.on_decode_error(assoc, protocol, bytes, e, out),
        }
    }

    fn on_decode_error(
        &mut self,
        assoc: Option<AssocId>,
        protocol: Protocol,
        bytes: &[u8],
        e: DecodeError,
        out: &mut Vec<Action>,
    ) {
        let cause = match &e {
            DecodeError::UnrecognizedMessage { .. } | DecodeError::UnrecognizedParameter { .. } => {
                e.report()
            }
            // Malformed: report Invalid Values with the offending bytes (RFC 5354 §3.12.1).
            _ => Some(ErrorCause::invalid_values(offending_bytes(
                bytes,
                e.offset(),
            ))),
        };
        let replied = match (assoc, cause) {
            (Some(a), Some(c)) => {
                self.error_reply(out, a, protocol, vec![c]);
                true
            }
            _ => false,
        };
        out.push(Action::Event(Event::ProtocolError {
            assoc,
            protocol,
            error: e.to_string(),
            replied,
        }));
    }

    fn on_asap(
        &mut self,
        now: Instant,
        assoc: AssocId,
        raw: &[u8],
        m: AsapMessage,
        out: &mut Vec<Action>,
    ) {
        match m {
            AsapMessage::Registration(r) => {
                self.on_registration(now, assoc, raw, r.pool_handle, r.pool_element, out)
            }
            AsapMessage::Deregistration(d) => self.on_deregistration(assoc, d, out),
            AsapMessage::HandleResolution(h) => {
                self.mark_used(assoc); // a PU: no idle timeout (trust.rs)
                if self.per_pu_allowed(now, assoc, PuRate::Resolutions, out) {
                    self.answer_resolution(now, assoc, h.pool_handle, h.option, out);
                } else {
                    self.fail_resolution(out, assoc, h.pool_handle, CauseCode::LackOfResources);
                }
            }
            AsapMessage::EndpointKeepAliveAck(a) => {
                let key = (a.pool_handle, a.pe_identifier);
                let ours = self
                    .handlespace
                    .get(&key.0, key.1)
                    .is_some_and(|e| e.connection() == Some(assoc));
                if ours && self.monitors.contains_key(&key) {
                    self.security.probing.remove(&key);
                    let due = now + self.keep_alive_interval();
                    self.set_monitor(key, due, false);
                } else {
                    out.push(Action::Event(Event::Ignored {
                        assoc: Some(assoc),
                        message: "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
                        reason: "no such PE registered over this association",
                    }));
                }
            }
            AsapMessage::EndpointUnreachable(u) => {
                if !self.per_pu_allowed(now, assoc, PuRate::UnreachableReports, out)
                    || !self.unreachable_report_counts(now, assoc, &u.pool_handle, out)
                {
                    return;
                }
                let peer = self.assocs.get(&assoc).and_then(Assoc::peer_ip);
                let reporter = reporter_id(peer, assoc);
                match self
                    .handlespace
                    .report_unreachable(&u.pool_handle, u.pe_identifier, reporter)
                {
                    Some(c) => {
                        out.push(Action::Event(Event::UnreachableReported {
                            assoc,
                            handle: u.pool_handle.clone(),
                            id: u.pe_identifier,
                            distinct_reporters: c.distinct_reporters,
                        }));
                        if self.config.unreachable_counting.count(c)
                            >= self.config.max_bad_pe_reports
                        {
                            // Verified before removal (trust.rs).
                            self.unreachable_threshold(now, &u.pool_handle, u.pe_identifier, out);
                        }
                    }
                    None => out.push(Action::Event(Event::Ignored {
                        assoc: Some(assoc),
                        message: "ASAP_ENDPOINT_UNREACHABLE",
                        reason: "unknown PE",
                    })),
                }
            }
            AsapMessage::Error(e) => out.push(Action::Event(Event::ProtocolError {
                assoc: Some(assoc),
                protocol: Protocol::Asap,
                error: format!("peer reported: {}", e.error),
                replied: false,
            })),
            other => out.push(Action::Event(Event::Ignored {
                assoc: Some(assoc),
                message: Message::Asap(other).tshark_name(),
                reason: "not a request a registrar serves",
            })),
        }
    }

    // ------------------------------------------------------------------------------------
    /// HANDLE_UPDATE / HANDLE_TABLE_RESPONSE from a peer over association `a`: our distance
    /// to the peer is added to the Distance of each distance-sensitive PE ([`distance`],
    /// rsplib `registrarUpdateDistance(..., addDistance = true)`).
    fn add_peer_distance(&self, a: AssocId, mut m: EnrpMessage) -> EnrpMessage {
        let rtt = self.assocs.get(&a).and_then(|x| x.rtt);
        let d = distance::distance_ms(rtt, self.config.distance_step);
        if d == 0 {
            return m;
        }
        match &mut m {
            EnrpMessage::HandleUpdate(u) if u.action == UpdateAction::AddPe => {
                distance::add_distance(&mut u.pool_element.policy, d);
            }
            EnrpMessage::HandleTableResponse(r) => {
                for el in r.pools.iter_mut().flat_map(|p| p.pool_elements.iter_mut()) {
                    distance::add_distance(&mut el.policy, d);
                }
            }
            _ => {}
        }
        m
    }

    // Registration

    fn on_registration(
        &mut self,
        now: Instant,
        assoc: AssocId,
        raw: &[u8],
        handle: PoolHandle,
        mut element: PoolElementInfo,
        out: &mut Vec<Action>,
    ) {
        let id = element.id;
        let a = self.assocs.get(&assoc).cloned().unwrap_or(Assoc {
            protocol: Protocol::Asap,
            transport: TransportKind::Tcp,
            peer_addrs: Vec::new(),
            dump: None,
            rtt: None,
        });
        let pe_tlv = || find_tlv(raw, 0x000A).unwrap_or_default();
        let checked: Result<(), (ErrorCause, String)> = (|| {
            if handle.is_empty() || handle.len() > self.config.max_handle_len {
                return Err((
                    ErrorCause::invalid_values(&find_tlv(raw, 0x0009).unwrap_or_default()),
                    format!(
                        "pool handle length {} outside 1..={}",
                        handle.len(),
                        self.config.max_handle_len
                    ),
                ));
            }
            if id == 0 {
                return Err((
                    ErrorCause::invalid_values(&pe_tlv()),
                    "PE identifier 0".into(),
                ));
            }
            if let Policy::Unknown { policy_type, .. } = element.policy {
                return Err((
                    ErrorCause::invalid_values(&pe_tlv()),
                    format!("unknown policy type {policy_type:#010x}"),
                ));
            }
            element.user_transport = self
                .filter_user_transport(&a, &element.user_transport)
                .map_err(|why| (ErrorCause::invalid_values(&pe_tlv()), why))?;
            Ok(())
        })();
        // Per-pool credentials (trust.rs, issue 13 item 3).
        let checked = checked.and_then(|()| {
            self.registration_authorized(now, assoc, &handle, raw, out)
                .map_err(|why| (ErrorCause::plain(CauseCode::RejectedSecurity), why))
        });
        if let Err((cause, reason)) = checked {
            self.reject_registration(out, assoc, handle, id, cause, reason);
            return;
        }
        element.asap_transport = asap_transport_of(&a);
        // Distance-sensitive policies: our distance to the PE replaces its own (distance.rs).
        distance::set_distance(
            &mut element.policy,
            distance::distance_ms(a.rtt, self.config.distance_step),
        );
        match self
            .handlespace
            .register(&handle, element, self.config.server_id, Some(assoc), now)
        {
            Ok(outcome) => {
                self.mark_used(assoc);
                let key = (handle.clone(), id);
                let due = now + self.keep_alive_interval();
                self.set_monitor(key, due, false);
                let stored = self
                    .handlespace
                    .get(&handle, id)
                    .map(|e| e.element().clone());
                if let Some(stored) = stored {
                    out.push(Action::Event(Event::Registered {
                        assoc,
                        handle: handle.clone(),
                        id,
                        update: !matches!(outcome, asap::handlespace::Registered::Added),
                        policy: stored.policy.policy_type(),
                        user_addresses: stored.user_transport.addresses(),
                    }));
                    self.replicate(UpdateAction::AddPe, handle.clone(), stored, out);
                }
                self.send(
                    out,
                    assoc,
                    RegistrationResponse {
                        reject: false,
                        pool_handle: handle,
                        pe_identifier: id,
                        error: None,
                    }
                    .into(),
                );
            }
            Err(e) => {
                let cause = cause_of(&e, raw);
                self.reject_registration(out, assoc, handle, id, cause, e.to_string());
            }
        }
    }

    fn reject_registration(
        &self,
        out: &mut Vec<Action>,
        assoc: AssocId,
        handle: PoolHandle,
        id: PeIdentifier,
        cause: ErrorCause,
        reason: String,
    ) {
        out.push(Action::Event(Event::RegistrationRejected {
            assoc,
            handle: handle.clone(),
            id,
            cause: cause.code,
            reason,
        }));
        self.send(
            out,
            assoc,
            RegistrationResponse {
                reject: true,
                pool_handle: handle,
                pe_identifier: id,
                error: Some(OperationError::single(cause)),
            }
            .into(),
        );
    }

    /// DEREGISTRATION (RFC 5352 §3.3): removes the PE and answers. Only whoever may speak for
    /// the PE may remove it: the association it is registered over, or — when that
    /// association is gone or another one of the PE's host is used (e.g. a half-open TCP
    /// connection the PE gave up on) — an association from one of the PE's own user or ASAP
    /// transport addresses, or from an allow-listed third party (the proxy PE). Anyone else
    /// is refused with the R flag and "Rejected due to security considerations" (0xA) and
    /// the PE stays. A PE we do not know, or that another registrar owns, is not an error:
    /// the result is the same, so the answer is a success.
    fn on_deregistration(&mut self, assoc: AssocId, d: Deregistration, out: &mut Vec<Action>) {
        let mut error = None;
        if let Some(entry) = self.handlespace.get(&d.pool_handle, d.pe_identifier) {
            if entry.owner() == self.config.server_id || entry.connection() == Some(assoc) {
                if self.may_deregister(assoc, entry.connection(), entry.element()) {
                    if let Some(r) = self.handlespace.deregister(&d.pool_handle, d.pe_identifier) {
                        self.removed(
                            r.handle,
                            r.entry.element().clone(),
                            RemovalReason::Deregistered,
                            out,
                        );
                    }
                } else {
                    let peer = self.assocs.get(&assoc).and_then(Assoc::peer_ip);
                    out.push(Action::Event(Event::ProtocolError {
                        assoc: Some(assoc),
                        protocol: Protocol::Asap,
                        error: format!(
                            "DEREGISTRATION of PE {:#010x} in {} from {peer:?}, which is neither \
                             its association nor one of its addresses: refused",
                            d.pe_identifier, d.pool_handle
                        ),
                        replied: true,
                    }));
                    error = Some(OperationError::single(ErrorCause::plain(
                        CauseCode::RejectedSecurity,
                    )));
                }
            }
        }
        self.send(
            out,
            assoc,
            DeregistrationResponse {
                reject: error.is_some(),
                pool_handle: d.pool_handle,
                pe_identifier: d.pe_identifier,
                error,
            }
            .into(),
        );
    }

    /// Whether `assoc` may deregister a PE bound to `bound` (see
    /// [`on_deregistration`](Self::on_deregistration)).
    fn may_deregister(&self, assoc: AssocId, bound: Option<AssocId>, pe: &PoolElementInfo) -> bool {
        if bound == Some(assoc) {
            return true;
        }
        let Some(a) = self.assocs.get(&assoc) else {
            return false;
        };
        let peers = a.peer_ips();
        if self.is_third_party(&peers) {
            return true;
        }
        pe.user_transport
            .addresses()
            .into_iter()
            .chain(pe.asap_transport.iter().flat_map(|t| t.addresses()))
            .any(|x| peers.contains(&address::canonical(x)))
    }

    /// Whether any of an association's `peers` is an allow-listed third party
    /// ([`CoreConfig::allow_third_party`], e.g. the proxy PE).
    fn is_third_party(&self, peers: &[IpAddr]) -> bool {
        peers
            .iter()
            .any(|p| self.config.allow_third_party.iter().any(|n| n.contains(p)))
    }

    /// Address rules for the user transport (see [`CoreConfig::min_address_scope`] and
    /// [`CoreConfig::allow_third_party`]): unusable addresses refuse the registration;
    /// addresses that are not the association's own (unless allow-listed) or below the
    /// minimum scope are dropped from a multi-address SCTP transport, and refuse the
    /// registration when nothing usable is left.
    fn filter_user_transport(
        &self,
        a: &Assoc,
        t: &TransportParameter,
    ) -> Result<TransportParameter, String> {
        let peers = a.peer_ips();
        let third_party = self.is_third_party(&peers);
        let narrowest_peer = peers.iter().map(AddressScope::of).min();
        let min_scope = match narrowest_peer {
            Some(s) => s.min(self.config.min_address_scope),
            None => self.config.min_address_scope,
        };
        let usable = |addr: &IpAddr| -> Result<bool, String> {
            if address::is_unusable(addr) {
                return Err(format!("unusable user address {addr}"));
            }
            let c = address::canonical(*addr);
            Ok((third_party || peers.contains(&c)) && AddressScope::of(&c) >= min_scope)
        };
        let none_left = |all: &[IpAddr]| {
            format!(
                "no usable user address among {all:?} (association peer addresses {peers:?}, \
                 minimum scope {min_scope})"
            )
        };
        match t {
            TransportParameter::Sctp {
                port,
                transport_use,
                addresses,
            } => {
                let mut kept = Vec::new();
                for addr in addresses {
                    if usable(addr)? {
                        kept.push(*addr);
                    }
                }
                if kept.is_empty() {
                    return Err(none_left(addresses));
                }
                Ok(TransportParameter::Sctp {
                    port: *port,
                    transport_use: *transport_use,
                    addresses: kept,
                })
            }
            TransportParameter::Opaque { .. } => {
                if third_party {
                    Ok(t.clone())
                } else {
                    Err("opaque user transport only from allow-listed registrars".into())
                }
            }
            other => {
                let addrs = other.addresses();
                for addr in &addrs {
                    if !usable(addr)? {
                        return Err(none_left(&addrs));
                    }
                }
                Ok(other.clone())
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Handle resolution

    /// The per-PU rate limit `which` (`--max-hr-rate`, `--max-eu-rate`): whether the sender
    /// of `assoc` may have one more; if not, reported as [`Event::RateLimited`] (the caller
    /// refuses the message). Associations without a peer address are not limited.
    fn per_pu_allowed(
        &mut self,
        now: Instant,
        assoc: AssocId,
        which: PuRate,
        out: &mut Vec<Action>,
    ) -> bool {
        let peer = self.assocs.get(&assoc).and_then(Assoc::peer_ip);
        let (limiter, what) = match which {
            PuRate::Resolutions => (&mut self.hres_limiter, "handle-resolution"),
            PuRate::UnreachableReports => (&mut self.eu_limiter, "endpoint-unreachable"),
        };
        if peer.is_some_and(|ip| !limiter.allow(ip, now)) {
            out.push(Action::Event(Event::RateLimited { assoc, peer, what }));
            return false;
        }
        true
    }

    /// Refuses a HANDLE_RESOLUTION on `assoc` with `cause` (RFC 5356 §4.1.2: the
    /// response carries an Operation Error) and reports it.
    fn fail_resolution(
        &self,
        out: &mut Vec<Action>,
        assoc: AssocId,
        handle: PoolHandle,
        cause: CauseCode,
    ) {
        out.push(Action::Event(Event::ResolutionFailed {
            assoc,
            handle: handle.clone(),
            cause,
        }));
        self.send(
            out,
            assoc,
            HandleResolutionResponse {
                accept_updates: false,
                pool_handle: handle,
                policy: None,
                pool_elements: Vec::new(),
                error: Some(OperationError::single(ErrorCause::plain(cause))),
            }
            .into(),
        );
    }

    /// Answers a HANDLE_RESOLUTION that passed the rate limit (at once, or when the
    /// start-up phase ends for one [held](startup) then).
    fn answer_resolution(
        &mut self,
        now: Instant,
        assoc: AssocId,
        handle: PoolHandle,
        option: Option<HandleResolutionOption>,
        out: &mut Vec<Action>,
    ) {
        let peer = self.assocs.get(&assoc).and_then(Assoc::peer_ip);
        let requested = match option.map(|o| o.items) {
            Some(0) | None => self.config.max_hres_items,
            Some(n) => n,
        };
        let n = requested.min(self.config.hres_items_cap).max(1);
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let selected = match self.handlespace.select(&handle, n, &mut self.rng) {
            Ok(ids) => ids,
            Err(HandlespaceError::UnknownPoolHandle(_)) => {
                // Start-up phase: the mentor's table may bring the pool (startup.rs).
                if !self.hold_resolution(now, assoc, &handle, option) {
                    self.fail_resolution(out, assoc, handle, CauseCode::UnknownPoolHandle);
                }
                return;
            }
            Err(_) => {
                self.fail_resolution(out, assoc, handle, CauseCode::UnspecifiedError);
                return;
            }
        };
        if !self.bulk_resolution_allowed(now, peer, selected.len()) {
            out.push(Action::Event(Event::RateLimited {
                assoc,
                peer,
                what: "bulk-handle-resolution",
            }));
            self.fail_resolution(out, assoc, handle, CauseCode::LackOfResources);
            return;
        }
        // Encoded straight from the handlespace entries into the shared buffer, without a
        // copy of a PE or a Message: each PE's parameter as the handlespace keeps it encoded
        // (`PoolElementEntry::answer_tlv`), or from the element where it has none. The bytes
        // that prove the answer fits are the ones sent. If it does not fit, the first half
        // of the PEs is tried.
        let mut take = selected.len();
        let max = self.config.max_message_size;
        let encoded = loop {
            let pool = self.handlespace.pool(&handle);
            let entries = selected[..take]
                .iter()
                .filter_map(|id| pool.and_then(|p| p.get(*id)));
            // rsplib sends the first selected PE's policy as the overall one.
            let policy = entries.clone().next().map(|e| &e.element().policy);
            let r = encode_into(&self.enc, max, |b| {
                let pes = entries.map(|e| {
                    e.answer_tlv()
                        .map_or(AnswerElement::Element(e.element()), AnswerElement::Encoded)
                });
                HandleResolutionResponse::encode_answer(b, false, &handle, policy, pes)
            });
            match r {
                Err(_) if take > 1 => take /= 2,
                r => break r,
            }
        };
        self.note_resolution(now, assoc, &handle);
        let returned = match &encoded {
            Ok((_, written)) => *written,
            Err(_) => take,
        };
        out.push(Action::Event(Event::Resolved {
            assoc,
            handle,
            returned,
        }));
        let t = AsapType::HandleResolutionResponse;
        out.push(match encoded {
            Ok((bytes, _)) => Action::Send {
                assoc,
                protocol: Protocol::Asap,
                name: t.tshark_name().unwrap_or_default(),
                bytes,
            },
            Err(error) => Action::Event(Event::EncodeFailed {
                message: t.name().unwrap_or_default(),
                error,
            }),
        });
    }

    // ------------------------------------------------------------------------------------
    // Keep-alive monitoring

    fn keep_alive_due(
        &mut self,
        now: Instant,
        handle: PoolHandle,
        id: PeIdentifier,
        out: &mut Vec<Action>,
    ) {
        let key = (handle, id);
        let Some(m) = self.monitors.get(&key).copied() else {
            return;
        };
        let conn = self
            .handlespace
            .get(&key.0, key.1)
            .and_then(|e| e.connection());
        let Some(conn) = conn else {
            self.monitors.remove(&key);
            // A PE adopted by takeover that neither acknowledged the H-flag keep-alive nor
            // re-registered here (peers.rs).
            let ours = self.handlespace.get(&key.0, key.1).map(|e| e.owner())
                == Some(self.config.server_id);
            if m.awaiting_ack && ours {
                if let Some(r) = self.handlespace.deregister(&key.0, key.1) {
                    self.removed(
                        r.handle,
                        r.entry.element().clone(),
                        RemovalReason::KeepAliveTimeout,
                        out,
                    );
                }
            }
            return;
        };
        if m.awaiting_ack {
            self.monitors.remove(&key);
            // Unanswered verification of ENDPOINT_UNREACHABLE reports (trust.rs).
            let reason = if self.security.probing.contains(&key) {
                RemovalReason::Unreachable
            } else {
                RemovalReason::KeepAliveTimeout
            };
            if let Some(r) = self.handlespace.deregister(&key.0, key.1) {
                self.removed(r.handle, r.entry.element().clone(), reason, out);
            }
            // rsplib aborts the association of a PE that stopped answering.
            out.push(Action::Abort {
                assoc: conn,
                reason: "keep-alive timeout",
            });
            return;
        }
        self.send(
            out,
            conn,
            EndpointKeepAlive {
                home: false,
                server_id: self.config.server_id,
                pool_handle: key.0.clone(),
                pe_identifier: Some(key.1),
            }
            .into(),
        );
        let due = now + self.config.keep_alive_timeout;
        self.set_monitor(key, due, true);
    }

    /// The association to adopted PEs' ASAP transport is up ([`links`]): binds them to it
    /// (still ours and bound to no association: keep-alives go over it, its loss removes
    /// them, an ENDPOINT_KEEP_ALIVE_ACK or a re-registration on it is normal) and sends
    /// each an ENDPOINT_KEEP_ALIVE with the H flag, expecting the ACK within the keep-alive
    /// timeout. If none of them could be bound, the association is aborted.
    pub(super) fn on_adopted(
        &mut self,
        now: Instant,
        assoc: AssocId,
        pes: Vec<(PoolHandle, PeIdentifier)>,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        if !self.assocs.contains_key(&assoc) {
            out.push(Action::Event(Event::Ignored {
                assoc: Some(assoc),
                message: "ASAP_ENDPOINT_KEEP_ALIVE",
                reason: "adoption association unknown (already gone)",
            }));
            return;
        }
        let mut bound = 0usize;
        for (h, id) in pes {
            let element = match self.handlespace.get(&h, id) {
                // Still ours and not re-registered meanwhile over an association of its own.
                Some(e) if e.owner() == me && e.connection().is_none() => e.element().clone(),
                _ => continue,
            };
            if self
                .handlespace
                .register(&h, element, me, Some(assoc), now)
                .is_err()
            {
                continue;
            }
            bound += 1;
            self.mark_used(assoc);
            let due = now + self.config.keep_alive_timeout;
            self.set_monitor((h.clone(), id), due, true);
            self.probe_adopted(out, assoc, h, id);
        }
        if bound == 0 && self.handlespace.connection_len(assoc) == 0 {
            out.push(Action::Abort {
                assoc,
                reason: "adopted PEs gone before the association was up",
            });
        }
    }

    // ------------------------------------------------------------------------------------
    // Server announce

    fn announce(&self, out: &mut Vec<Action>) {
        let message: Message = ServerAnnounce {
            server_id: self.config.server_id,
            transports: self.config.asap_transports.clone(),
        }
        .into();
        let Ok(bytes) = message.to_bytes() else {
            return;
        };
        for to in &self.config.asap_announce_targets {
            out.push(Action::SendDatagram {
                to: *to,
                message: message.clone(),
                bytes: bytes.clone(),
            });
        }
    }

    // ------------------------------------------------------------------------------------
    // ENRP from tools (hsdump) and, with peering on, from peers (peers.rs)

    fn on_enrp(&mut self, now: Instant, assoc: AssocId, m: EnrpMessage, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        match m {
            EnrpMessage::Presence(p) => {
                if p.reply_required && p.sender != me {
                    let server_information =
                        self.config
                            .enrp_transport
                            .clone()
                            .map(|transport| ServerInformation {
                                server_id: me,
                                transport,
                            });
                    self.send(
                        out,
                        assoc,
                        Presence {
                            reply_required: false,
                            sender: me,
                            receiver: p.sender,
                            checksum: self.handlespace.checksum(me),
                            server_information,
                        }
                        .into(),
                    );
                }
            }
            EnrpMessage::ListRequest(l) => self.send(
                out,
                assoc,
                ListResponse {
                    reject: false,
                    sender: me,
                    receiver: l.sender,
                    servers: Vec::new(),
                }
                .into(),
            ),
            EnrpMessage::HandleTableRequest(r) => {
                if self.admit_handle_table(now, assoc, r.sender, out) {
                    self.on_handle_table_request(assoc, r.sender, r.own_children_only, out)
                }
            }
            EnrpMessage::Error(e) => out.push(Action::Event(Event::ProtocolError {
                assoc: Some(assoc),
                protocol: Protocol::Enrp,
                error: format!("peer {} reported: {}", e.sender, e.error),
                replied: false,
            })),
            other => out.push(Action::Event(Event::Ignored {
                assoc: Some(assoc),
                message: Message::Enrp(other).tshark_name(),
                reason: "ENRP peering not enabled",
            })),
        }
    }

    /// HANDLE_TABLE_REQUEST (RFC 5353): up to `handle_table_chunk` PEs per response, M bit
    /// when more follow; the requester sends another request for the next chunk and the
    /// cursor is kept per association. W = only PEs whose home is us.
    fn on_handle_table_request(
        &mut self,
        assoc: AssocId,
        requester: u32,
        own_only: bool,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        let cursor = self
            .assocs
            .get(&assoc)
            .and_then(|a| a.dump.clone())
            .filter(|(w, _)| *w == own_only)
            .map(|(_, c)| c);
        let owner = own_only.then_some(me);
        let (msg, next, pes) = self.table_page(cursor.as_ref(), owner, requester);
        if let Some(a) = self.assocs.get_mut(&assoc) {
            a.dump = next.clone().map(|c| (own_only, c));
        }
        out.push(Action::Event(Event::HandleTableSent {
            assoc,
            pes,
            more: next.is_some(),
        }));
        self.send(out, assoc, msg);
    }
}

impl Registrar {
    /// One HANDLE_TABLE_RESPONSE page (RFC 5353 §2.3), for tools (per association) and
    /// peers (per requester) alike: up to [`CoreConfig::handle_table_chunk`] PEs from
    /// `cursor` (only those whose home is `owner`, W flag), halved until the message fits
    /// [`CoreConfig::max_message_size`]; the M bit when more follow. Returns the message,
    /// where the next page starts, and the number of PEs in it.
    fn table_page(
        &self,
        cursor: Option<&DumpCursor>,
        owner: Option<u32>,
        receiver: u32,
    ) -> (Message, Option<DumpCursor>, usize) {
        let mut chunk = self.config.handle_table_chunk;
        loop {
            let page = self.handlespace.dump(cursor, owner, chunk);
            let mut pools: Vec<PoolEntry> = Vec::new();
            for item in &page.items {
                let el = item.entry.element().clone();
                match pools.last_mut() {
                    Some(p) if &p.pool_handle == item.pool.handle() => p.pool_elements.push(el),
                    _ => pools.push(PoolEntry {
                        pool_handle: item.pool.handle().clone(),
                        pool_elements: vec![el],
                    }),
                }
            }
            let n = page.items.len();
            let msg: Message = HandleTableResponse {
                reject: false,
                more: page.next.is_some(),
                sender: self.config.server_id,
                receiver,
                pools,
            }
            .into();
            if chunk <= 1 || self.fits(&msg) {
                return (msg, page.next, n);
            }
            chunk /= 2;
        }
    }
}

/// The ASAP transport of a PE: the association's peer addresses and port (asap/wire/INTEROP.md §2:
/// the registrar derives it from the association; rsplib sends it in ENRP messages).
fn asap_transport_of(a: &Assoc) -> Option<TransportParameter> {
    let first = a.peer_addrs.first()?;
    Some(match a.transport {
        TransportKind::Tcp => TransportParameter::Tcp {
            port: first.port(),
            transport_use: TransportUse::DataOnly,
            address: address::canonical(first.ip()),
        },
        _ => TransportParameter::Sctp {
            port: first.port(),
            transport_use: TransportUse::DataOnly,
            addresses: a.peer_ips(),
        },
    })
}

/// Maps a handlespace refusal to its RFC 5354 §3.12 cause.
fn cause_of(e: &HandlespaceError, raw: &[u8]) -> ErrorCause {
    match e {
        HandlespaceError::InvalidPeIdentifier => {
            ErrorCause::invalid_values(&find_tlv(raw, 0x000A).unwrap_or_default())
        }
        HandlespaceError::InvalidPoolHandle => {
            ErrorCause::invalid_values(&find_tlv(raw, 0x0009).unwrap_or_default())
        }
        HandlespaceError::NonUniquePeIdentifier { .. } => {
            ErrorCause::plain(CauseCode::NonUniquePeIdentifier)
        }
        HandlespaceError::InconsistentPoolingPolicy { pool_policy, .. } => {
            ErrorCause::inconsistent_policy(pool_policy)
        }
        HandlespaceError::LackOfResources(_) => ErrorCause::plain(CauseCode::LackOfResources),
        HandlespaceError::InconsistentTransportType { pool_transport } => {
            ErrorCause::inconsistent_transport(pool_transport)
        }
        HandlespaceError::InconsistentDataControlConfiguration { .. } => {
            ErrorCause::plain(CauseCode::InconsistentDataControl)
        }
        HandlespaceError::UnknownPoolHandle(_) => ErrorCause::plain(CauseCode::UnknownPoolHandle),
        // A refusal added to the handlespace later: the generic cause (RFC 5354 §3.12.1).
        _ => ErrorCause::plain(CauseCode::UnspecifiedError),
    }
}

/// The first top-level TLV of type `ty` (action bits ignored) in a message, exactly as
/// received (without trailing padding).
fn find_tlv(raw: &[u8], ty: u16) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?])).min(raw.len());
    let mut off = 4;
    while off + 4 <= len {
        let t = u16::from_be_bytes([raw[off], raw[off + 1]]);
        let l = usize::from(u16::from_be_bytes([raw[off + 2], raw[off + 3]]));
        if l < 4 || off + l > len {
            return None;
        }
        if t & 0x3FFF == ty {
            return Some(raw[off..off + l].to_vec());
        }
        off += (l + 3) & !3;
    }
    None
}

/// The bytes an Invalid Values cause carries for a malformed message: the TLV at the error
/// offset (as far as it is present), else the message header; at most 256 bytes.
fn offending_bytes(raw: &[u8], offset: usize) -> &[u8] {
    let end = raw.len().min(offset.saturating_add(256));
    if offset >= 4 && offset + 4 <= raw.len() {
        let l = usize::from(u16::from_be_bytes([raw[offset + 2], raw[offset + 3]])).max(4);
        &raw[offset..end.min(offset + l)]
    } else {
        &raw[..raw.len().min(4)]
    }
}

/// Reporter identity for ENDPOINT_UNREACHABLE counting: the PU's address (a PU that
/// reconnects is still the same reporter), or the association when the address is unknown.
fn reporter_id(peer: Option<IpAddr>, assoc: AssocId) -> u64 {
    let mut h = DefaultHasher::new();
    match peer {
        Some(ip) => ip.hash(&mut h),
        None => assoc.hash(&mut h),
    }
    h.finish()
}

#[cfg(test)]
mod tests;
