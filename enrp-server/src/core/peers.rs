//! ENRP peering (RFC 5353 §2–3; asap/wire/INTEROP.md §4, §5.5–5.9): peer table, PRESENCE
//! heartbeat with the PE checksum, mentor download, HANDLE_UPDATE replication, audit
//! (mark-and-sweep resynchronisation), failure detection and takeover.
//!
//! Peers are addressed by their ENRP socket address: the core emits [`Action::PeerSend`]
//! and receives peer messages as [`Input::Datagram`](super::Input::Datagram) with
//! [`Protocol::Enrp`](asap::wire::Protocol::Enrp) (the source address of a datagram is the
//! peer's address) or over an ENRP association (addressed by its primary address). The
//! simulation tests (`enrp-server/tests/core/sim_peering.rs`) carry these in memory.
//!
//! Takeover differs from rsplib 3.4.4 (which never sends TAKEOVER_SERVER): once every peer
//! that is still alive has acknowledged INIT_TAKEOVER, we send TAKEOVER_SERVER to all
//! peers, re-label the target's PEs as ours and emit one [`Action::Connect`] per ASAP
//! transport of the adopted PEs (we have no association to an adopted PE: the driver
//! connects and reports [`Input::Connected`](super::Input::Connected), on which the core
//! binds them and sends the ENDPOINT_KEEP_ALIVE with the H flag; [`super::links`]). On takeover expiry, peers that died in
//! the meantime no longer count; if live peers are still missing the attempt is abandoned
//! like rsplib; the target's PEs are then removed after the orphan timeout (trust.rs).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asap::handlespace::DumpCursor;
use asap::wire::enrp_msg::{
    HandleTableRequest, HandleTableResponse, HandleUpdate, InitTakeover, InitTakeoverAck,
    ListRequest, ListResponse, Presence, TakeoverServer,
};
use asap::wire::{
    EnrpMessage, Message, PoolElementInfo, PoolHandle, ServerId, ServerInformation, UpdateAction,
};

use super::links::PeerTransport;
use super::ownership::Claim;
use super::{Action, Event, PeKey, Registrar, RemovalReason};

/// Timers and switches of ENRP peering. Defaults are rsplib's (asap/wire/INTEROP.md §4), not
/// RFC 5353's (§9.2): the RFC's 61 s MAX-TIME-LAST-HEARD means a minute without a home for
/// a dead registrar's PEs, while the heartbeat traffic at rsplib's rate is a few hundred
/// bytes per peer and second; rsplib deployments also expect its failover time.
#[derive(Debug, Clone)]
pub struct PeeringConfig {
    /// Run ENRP peering at all (off: the registrar answers tools only).
    pub enabled: bool,
    /// PRESENCE multicast group (rsplib convention 239.0.0.51:9901); `None` = static only.
    pub multicast: Option<SocketAddr>,
    /// PEER-HEARTBEAT-CYCLE (RFC 30 s; rsplib 2.444 s), jittered ±12.5 %.
    pub heartbeat_cycle: Duration,
    /// MAX-TIME-LAST-HEARD (RFC 61 s; rsplib 5 s).
    pub max_time_last_heard: Duration,
    /// MAX-TIME-NO-RESPONSE (RFC 5 s; rsplib 5 s).
    pub max_time_no_response: Duration,
    /// Start-up phase in which the first peer heard becomes mentor (rsplib 5 s).
    pub mentor_discovery_timeout: Duration,
    /// Wait for all INIT_TAKEOVER_ACKs (rsplib 5 s).
    pub takeover_expiry: Duration,
    /// Most peers tracked (further unknown senders are ignored).
    pub max_peers: usize,
    /// Remove an adopted PE that does not answer the H-flag keep-alive (nor re-registers)
    /// within the keep-alive timeout, like rsplib. Drivers that cannot carry out the
    /// adoption [`Action::Connect`] turn this off.
    pub verify_adopted: bool,
    /// How unicast ENRP messages reach peers: over associations (RFC 5353 §2, default) or
    /// as datagrams ([`PeerTransport`], [`links`](super::links)).
    pub unicast: PeerTransport,
    /// Takeover suggestion (HANDLE_UPDATE T bit, draft-dreibholz-rserpool-enrp-takeover;
    /// rsplib `-supporttakeoversuggestion`, off by default like there): our ADD_PE for a
    /// PE carries T to the peer that is a better home for it (rsplib's metric,
    /// [`super::ownership::better_home`]); an ADD_PE with T from a PE's home makes us send
    /// the PE ENDPOINT_KEEP_ALIVE with the H flag, so that it re-registers here; near-tie
    /// ownership conflicts go to the better home (PEERING.md "Takeover suggestion").
    pub takeover_suggestion: bool,
}

impl Default for PeeringConfig {
    fn default() -> Self {
        PeeringConfig {
            enabled: false,
            multicast: None,
            heartbeat_cycle: Duration::from_micros(2_444_444),
            max_time_last_heard: Duration::from_secs(5),
            max_time_no_response: Duration::from_secs(5),
            mentor_discovery_timeout: Duration::from_secs(5),
            takeover_expiry: Duration::from_secs(5),
            max_peers: 256,
            verify_adopted: true,
            unicast: PeerTransport::default(),
            takeover_suggestion: false,
        }
    }
}

/// One known peer registrar.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its ENRP address (source of its datagrams).
    pub addr: SocketAddr,
    /// Its Server Information, if it sent one.
    pub info: Option<ServerInformation>,
    last_heard: Instant,
    probe_sent: Option<Instant>,
    sync: Option<Sync>,
    /// ENRP associations its messages arrived on (accepted or ours; with TCP or SCTP both
    /// sides may have connected). All are closed when it is declared dead.
    links: BTreeSet<super::AssocId>,
}

/// A handle table download from one peer in progress.
#[derive(Debug, Clone)]
struct Sync {
    own_only: bool,
    /// Audit: that peer's PEs not (yet) confirmed by a response; swept at the end.
    mark: Option<HashSet<PeKey>>,
    deadline: Instant,
}

#[derive(Debug, Clone)]
struct Takeover {
    missing: BTreeSet<ServerId>,
    expiry: Instant,
}

/// Peering state inside the [`Registrar`].
#[derive(Debug)]
pub(super) struct PeerState {
    pub(super) peers: BTreeMap<ServerId, Peer>,
    pub(super) startup_until: Instant,
    mentor: Option<ServerId>,
    /// The mentor's handle table download completed (`startup::handlespace_loaded`).
    pub(super) loaded: bool,
    next_heartbeat: Option<Instant>,
    takeovers: BTreeMap<ServerId, Takeover>,
    /// Where our answer to a peer's chunked HANDLE_TABLE_REQUEST continues, and when we
    /// sent the chunk that ended there (stale cursors are dropped, see `serve_table`).
    serve: HashMap<(ServerId, bool), (DumpCursor, Instant)>,
    /// Associations opened to follow a takeover suggestion, and when to abort each if no
    /// PE registered over it by then.
    pub(super) suggestion_links: Vec<(Instant, super::AssocId)>,
    /// PEs held over our associations whose table entry at a peer we answered with our
    /// ADD_PE: the peer and when ([`super::ownership::crossing_window`]).
    answered: HashMap<PeKey, (ServerId, Instant)>,
    /// HANDLE_RESOLUTIONs of pools unknown during the start-up phase, answered when it
    /// ends ([`super::startup`]).
    pub(super) held: Vec<super::startup::HeldResolution>,
    /// The mentor-discovery timeout has been seen by a timer call (no more wake-ups for it).
    pub(super) startup_timer_done: bool,
    /// PEs we yielded to a peer's claim while they were registered here over a live
    /// association: that association and our registration's element. A DEL_PE from the
    /// owner we yielded to while that association is up takes the PE back
    /// ([`super::ownership`]).
    yielded: HashMap<PeKey, (super::AssocId, PoolElementInfo)>,
    /// When each peer was last declared dead: ENRP associations that were up before are
    /// stale for it (`on_enrp_peer`).
    lost_at: HashMap<ServerId, Instant>,
}

impl PeerState {
    pub(super) fn new(enabled: bool, now: Instant, mentor_timeout: Duration) -> Self {
        PeerState {
            peers: BTreeMap::new(),
            startup_until: now + mentor_timeout,
            mentor: None,
            loaded: false,
            next_heartbeat: enabled.then_some(now),
            takeovers: BTreeMap::new(),
            serve: HashMap::new(),
            suggestion_links: Vec::new(),
            answered: HashMap::new(),
            held: Vec::new(),
            startup_timer_done: false,
            yielded: HashMap::new(),
            lost_at: HashMap::new(),
        }
    }
}

impl Registrar {
    /// Whether the start-up phase is over (RFC 5353 §3 mentor; rsplib's
    /// `InStartupPhase`; systemd `READY=1` waits for it): without peering at once; with
    /// peering once the mentor's handle table download is complete, or once the
    /// mentor-discovery timeout has passed with no download from the mentor running. A
    /// download still running at the timeout is waited for until it completes or is given
    /// up (MAX-TIME-NO-RESPONSE without a chunk), so a registrar reports ready only with
    /// the handlespace it could load.
    pub fn startup_complete(&self, now: Instant) -> bool {
        if !self.config.peering.enabled || self.peering.loaded {
            return true;
        }
        if now < self.peering.startup_until {
            return false;
        }
        self.peering
            .mentor
            .and_then(|m| self.peering.peers.get(&m))
            .and_then(|p| p.sync.as_ref())
            .is_none_or(|s| s.own_only)
    }

    /// The peer table (server ID → peer).
    pub fn peers(&self) -> &BTreeMap<ServerId, Peer> {
        &self.peering.peers
    }

    /// The mentor chosen at start-up, if any (asap/wire/INTEROP.md §5.5).
    pub fn mentor(&self) -> Option<ServerId> {
        self.peering.mentor
    }

    /// Targets of takeovers this registrar is running.
    pub fn takeovers_running(&self) -> Vec<ServerId> {
        self.peering.takeovers.keys().copied().collect()
    }

    pub(super) fn peering_deadline(&self) -> Option<Instant> {
        if !self.config.peering.enabled {
            return None;
        }
        let pc = &self.config.peering;
        let mut t = self.peering.next_heartbeat;
        let mut upd = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for p in self.peering.peers.values() {
            match p.probe_sent {
                Some(s) => upd(s + pc.max_time_no_response),
                None => upd(p.last_heard + pc.max_time_last_heard),
            }
            if let Some(s) = &p.sync {
                upd(s.deadline);
            }
        }
        for tk in self.peering.takeovers.values() {
            upd(tk.expiry);
        }
        for (due, _) in &self.peering.suggestion_links {
            upd(*due);
        }
        if !self.peering.held.is_empty() && !self.peering.startup_timer_done {
            upd(self.peering.startup_until); // held resolutions: the phase may end then
        }
        t
    }

    fn peer_send(&self, out: &mut Vec<Action>, to: SocketAddr, message: Message) {
        match message.to_bytes() {
            Ok(bytes) if bytes.len() <= self.config.max_message_size => {
                out.push(Action::PeerSend { to, message, bytes })
            }
            Ok(_) | Err(_) => out.push(Action::Event(Event::EncodeFailed {
                message: message.name(),
                error: "peer message does not encode within the size limit".into(),
            })),
        }
    }

    fn to_peer(&self, out: &mut Vec<Action>, id: ServerId, message: Message) {
        if let Some(p) = self.peering.peers.get(&id) {
            self.peer_send(out, p.addr, message);
        }
    }

    fn to_all_peers(&self, out: &mut Vec<Action>, mk: impl Fn(ServerId) -> Message) {
        for (id, p) in &self.peering.peers {
            self.peer_send(out, p.addr, mk(*id));
        }
    }

    fn presence(&self, receiver: ServerId, reply_required: bool) -> Message {
        let me = self.config.server_id;
        Presence {
            reply_required,
            sender: me,
            receiver,
            checksum: self.handlespace.checksum(me),
            server_information: self.config.enrp_transport.clone().map(|transport| {
                ServerInformation {
                    server_id: me,
                    transport,
                }
            }),
        }
        .into()
    }

    /// A change of a PE whose home we are (registration, re-registration, removal): the
    /// [`Action::Replicate`] hook and, with peering on, a HANDLE_UPDATE to every peer
    /// (RFC 5353 §2.4; asap/wire/INTEROP.md §5.7), emitted where the change happens.
    pub(super) fn replicate(
        &self,
        action: UpdateAction,
        pool_handle: PoolHandle,
        element: PoolElementInfo,
        out: &mut Vec<Action>,
    ) {
        if !self.config.peering.enabled || self.peering.peers.is_empty() {
            out.push(Action::Replicate(super::Replication {
                action,
                pool_handle,
                element,
            }));
            return;
        }
        out.push(Action::Replicate(super::Replication {
            action,
            pool_handle: pool_handle.clone(),
            element: element.clone(),
        }));
        let me = self.config.server_id;
        // Takeover suggestion: T to the better home of a PE that (re-)registered here.
        let better = (action == UpdateAction::AddPe && self.config.peering.takeover_suggestion)
            .then(|| {
                super::ownership::better_home(me, element.id, self.peering.peers.keys().copied())
            })
            .flatten();
        self.to_all_peers(out, |receiver| {
            HandleUpdate {
                takeover_suggested: better == Some(receiver),
                sender: me,
                receiver,
                action,
                reserved: 0,
                pool_handle: pool_handle.clone(),
                pool_element: element.clone(),
            }
            .into()
        });
    }

    /// Peering timers: heartbeat, failure detection, sync and takeover expiry.
    pub(super) fn peering_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.config.peering.enabled {
            return;
        }
        let pc = self.config.peering.clone();
        self.expire_suggestion_links(now, out);
        if self.peering.next_heartbeat.is_some_and(|t| t <= now) {
            self.to_all_peers(out, |r| self.presence(r, false));
            // Static peers not known yet, and the multicast group: ask for a reply.
            let known: HashSet<SocketAddr> = self.peering.peers.values().map(|p| p.addr).collect();
            for a in self.config.peers.clone() {
                if !known.contains(&a) {
                    self.peer_send(out, a, self.presence(0, true));
                }
            }
            if let Some(g) = pc.multicast {
                self.peer_send(out, g, self.presence(0, false));
            }
            let next = self.jittered(pc.heartbeat_cycle);
            self.peering.next_heartbeat = Some(now + next);
        }
        // Failure detection (asap/wire/INTEROP.md §5.6 last sentence, §5.8 step 1).
        let mut dead = Vec::new();
        let mut probe = Vec::new();
        for (id, p) in self.peering.peers.iter_mut() {
            if let Some(s) = &p.sync {
                if s.deadline <= now {
                    p.sync = None; // lost response: give up; the next audit retries.
                }
            }
            match p.probe_sent {
                Some(t) if t + pc.max_time_no_response <= now => dead.push(*id),
                None if p.last_heard + pc.max_time_last_heard <= now => {
                    p.probe_sent = Some(now);
                    probe.push(*id);
                }
                _ => {}
            }
        }
        for id in probe {
            self.to_peer(out, id, self.presence(id, true));
        }
        for id in dead {
            self.peer_dead(now, id, out);
        }
        // Takeover expiry (asap/wire/INTEROP.md §5.8 step 6).
        let expired: Vec<ServerId> = self
            .peering
            .takeovers
            .iter()
            .filter(|(_, t)| t.expiry <= now)
            .map(|(id, _)| *id)
            .collect();
        for target in expired {
            let Some(mut t) = self.peering.takeovers.remove(&target) else {
                continue;
            };
            t.missing.retain(|p| self.peering.peers.contains_key(p));
            if t.missing.is_empty() {
                self.finish_takeover(now, target, out);
            } else {
                out.push(Action::Event(Event::TakeoverAbandoned {
                    target,
                    missing: t.missing.len(),
                }));
            }
        }
    }

    /// Peer `id` is gone for us (declared dead, or taken over by another peer): out of the
    /// peer table, every ENRP association it was heard on closed, and associations up
    /// before now are stale for it ([`Self::close_peer_links`], `on_enrp_peer`).
    fn forget_peer(&mut self, now: Instant, id: ServerId, out: &mut Vec<Action>) {
        if let Some(p) = self.peering.peers.remove(&id) {
            self.close_peer_links(p.addr, &p.links, out);
        }
        // Only associations older than the oldest one up can be stale (bounded).
        let oldest = self.oldest_enrp_link();
        self.peering
            .lost_at
            .retain(|_, t| oldest.is_some_and(|o| *t > o));
        self.peering.lost_at.insert(id, now);
    }

    fn peer_dead(&mut self, now: Instant, id: ServerId, out: &mut Vec<Action>) {
        self.forget_peer(now, id, out);
        self.note_vanished(now, id); // bounded life of its PEs (trust.rs)
        self.peering.serve.retain(|(p, _), _| *p != id);
        if self.peering.mentor == Some(id) && now < self.peering.startup_until {
            self.peering.mentor = None;
        }
        out.push(Action::Event(Event::PeerLost { server_id: id }));
        // A dead peer no longer has to acknowledge our takeovers.
        let ready: Vec<ServerId> = self
            .peering
            .takeovers
            .iter_mut()
            .filter_map(|(target, t)| {
                t.missing.remove(&id);
                t.missing.is_empty().then_some(*target)
            })
            .collect();
        for target in ready {
            self.peering.takeovers.remove(&target);
            self.finish_takeover(now, target, out);
        }
        if self.handlespace.owned_len(id) == 0 || self.peering.takeovers.contains_key(&id) {
            return;
        }
        let me = self.config.server_id;
        let missing: BTreeSet<ServerId> = self.peering.peers.keys().copied().collect();
        out.push(Action::Event(Event::TakeoverStarted {
            target: id,
            pes: self.handlespace.owned_len(id),
        }));
        self.to_all_peers(out, |receiver| {
            InitTakeover {
                sender: me,
                receiver,
                target: id,
            }
            .into()
        });
        if missing.is_empty() {
            self.finish_takeover(now, id, out);
        } else {
            self.peering.takeovers.insert(
                id,
                Takeover {
                    missing,
                    expiry: now + self.config.peering.takeover_expiry,
                },
            );
        }
    }

    /// All ACKs in: TAKEOVER_SERVER to all, re-label, keep-alive with H to each PE.
    fn finish_takeover(&mut self, now: Instant, target: ServerId, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        self.to_all_peers(out, |receiver| {
            TakeoverServer {
                sender: me,
                receiver,
                target,
            }
            .into()
        });
        let keys: Vec<PeKey> = self.handlespace.owned_by(target).cloned().collect();
        let n = self.handlespace.change_owner(target, me);
        for key in keys {
            self.queue_adoption(key);
        }
        // Probed within --takeover-scope at a bounded rate (trust.rs).
        self.start_adoptions(now, out);
        out.push(Action::Event(Event::TakeoverDone { target, pes: n }));
    }

    /// An ENRP message from a peer (by datagram, or over an association by its primary
    /// address): the common part (liveness, peer table, first contact) here, then one
    /// handler per message type (RFC 5353 §2).
    pub(super) fn on_enrp_peer(
        &mut self,
        now: Instant,
        (from, assoc): (SocketAddr, Option<super::AssocId>),
        m: EnrpMessage,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        let sender = m.sender();
        if sender == me || sender == 0 || (m.receiver() != 0 && m.receiver() != me) {
            return;
        }
        // An association that was up before we declared this peer dead carries what it
        // queued before (TCP retransmits it after a partition heals, even from a socket
        // its registrar has closed): not a peer message; the association is closed. Found
        // by the netns chaos soak: a peer's ADD_PE of a PE that had moved since took it.
        if let Some(a) = assoc {
            let lost = self.peering.lost_at.get(&sender).copied();
            if lost.is_some_and(|l| self.enrp_link_up_at(a).is_some_and(|u| u < l)) {
                out.push(Action::Event(Event::Ignored {
                    assoc: Some(a),
                    message: Message::Enrp(m).tshark_name(),
                    reason: "association older than the sender's declared death",
                }));
                out.push(Action::Close {
                    assoc: a,
                    reason: "stale association of a peer declared dead",
                });
                return;
            }
        }
        // Anything heard from a peer proves it alive.
        let is_new = !self.peering.peers.contains_key(&sender);
        if is_new && self.peering.peers.len() >= self.config.peering.max_peers {
            // Bounded table: forged server IDs cannot grow it.
            out.push(Action::Event(Event::Ignored {
                assoc: None,
                message: Message::Enrp(m).tshark_name(),
                reason: "peer table full",
            }));
            return;
        }
        if is_new {
            // Also a peer we took over that came back: a new incarnation for us.
            self.peering.peers.insert(
                sender,
                Peer {
                    addr: from,
                    info: None,
                    last_heard: now,
                    probe_sent: None,
                    sync: None,
                    links: BTreeSet::new(),
                },
            );
            out.push(Action::Event(Event::PeerFound {
                server_id: sender,
                addr: from,
            }));
        }
        let moved = self
            .peering
            .peers
            .get(&sender)
            .map(|p| p.addr)
            .filter(|a| *a != from);
        if let Some(old) = moved {
            self.reroute_pending(old, from, out); // keep our messages to it in order
        }
        let assocs = &self.assocs;
        if let Some(p) = self.peering.peers.get_mut(&sender) {
            p.last_heard = now;
            p.probe_sent = None;
            p.addr = from;
            if let Some(a) = assoc {
                if p.links.insert(a) {
                    p.links.retain(|l| assocs.contains_key(l)); // bounded: live ones only
                }
            }
        }
        if self.peering.takeovers.remove(&sender).is_some() {
            out.push(Action::Event(Event::TakeoverAbandoned {
                target: sender,
                missing: 0,
            }));
        }
        if is_new {
            self.to_peer(out, sender, self.presence(sender, false));
            self.to_peer(
                out,
                sender,
                ListRequest {
                    sender: me,
                    receiver: sender,
                }
                .into(),
            );
            if self.peering.mentor.is_none() && now < self.peering.startup_until {
                self.peering.mentor = Some(sender);
                self.start_sync(now, sender, false, out);
            }
        }
        match m {
            EnrpMessage::Presence(p) => self.on_peer_presence(now, sender, p, out),
            EnrpMessage::ListRequest(_) => self.on_peer_list_request(sender, out),
            EnrpMessage::ListResponse(l) => self.on_peer_list_response(l, out),
            EnrpMessage::HandleTableRequest(r) => {
                self.serve_table(now, sender, r.own_children_only, out)
            }
            EnrpMessage::HandleTableResponse(r) => self.on_table(now, sender, r, out),
            EnrpMessage::HandleUpdate(u) => self.on_update(now, sender, u, out),
            EnrpMessage::InitTakeover(t) => self.on_init_takeover(sender, t, out),
            EnrpMessage::InitTakeoverAck(a) => self.on_init_takeover_ack(now, sender, a, out),
            EnrpMessage::TakeoverServer(t) => self.on_takeover_server(now, sender, t, out),
            EnrpMessage::Error(e) => out.push(Action::Event(Event::ProtocolError {
                assoc: None,
                protocol: asap::wire::Protocol::Enrp,
                error: format!("peer {} reported: {}", e.sender, e.error),
                replied: false,
            })),
            // A message type the codec learnt after this server was written: reported
            // (and logged by the driver), otherwise ignored.
            other => out.push(Action::Event(Event::ProtocolError {
                assoc: None,
                protocol: asap::wire::Protocol::Enrp,
                error: format!(
                    "{} from peer {sender:#x} not handled",
                    other.message_type().name().unwrap_or("message")
                ),
                replied: false,
            })),
        }
    }

    /// PRESENCE (RFC 5353 §2.1): Server Information, reply if asked, audit on a checksum
    /// mismatch (asap/wire/INTEROP.md §5.6).
    fn on_peer_presence(
        &mut self,
        now: Instant,
        sender: ServerId,
        p: Presence,
        out: &mut Vec<Action>,
    ) {
        if let (Some(peer), Some(info)) =
            (self.peering.peers.get_mut(&sender), p.server_information)
        {
            peer.info = Some(info);
        }
        if p.reply_required {
            self.to_peer(out, sender, self.presence(sender, false));
        }
        let busy = self
            .peering
            .peers
            .get(&sender)
            .is_some_and(|x| x.sync.is_some());
        if !busy && p.checksum != self.handlespace.checksum(sender) {
            out.push(Action::Event(Event::AuditMismatch {
                server_id: sender,
                theirs: p.checksum,
                ours: self.handlespace.checksum(sender),
            }));
            self.start_sync(now, sender, true, out);
        }
    }

    /// LIST_REQUEST (RFC 5353 §2.2): the peers we know with their Server Information.
    fn on_peer_list_request(&mut self, sender: ServerId, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        let servers: Vec<ServerInformation> = self
            .peering
            .peers
            .values()
            .filter_map(|p| p.info.clone())
            .collect();
        self.to_peer(
            out,
            sender,
            ListResponse {
                reject: false,
                sender: me,
                receiver: sender,
                servers,
            }
            .into(),
        );
    }

    /// LIST_RESPONSE (RFC 5353 §2.2): ask every registrar we do not know yet to introduce
    /// itself.
    fn on_peer_list_response(&mut self, l: ListResponse, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        for s in l.servers {
            if s.server_id == me || self.peering.peers.contains_key(&s.server_id) {
                continue;
            }
            if let (Some(ip), Some(port)) =
                (s.transport.addresses().first().copied(), s.transport.port())
            {
                self.peer_send(out, SocketAddr::new(ip, port), self.presence(0, true));
            }
        }
    }

    /// INIT_TAKEOVER (RFC 5353 §2.6; asap/wire/INTEROP.md §5.8 step 3): refute if it is about us,
    /// else acknowledge unless our own takeover of the target wins (lowest ID).
    fn on_init_takeover(&mut self, sender: ServerId, t: InitTakeover, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        if t.target == me {
            self.to_all_peers(out, |r| self.presence(r, false));
            return;
        }
        if self.peering.takeovers.contains_key(&t.target) {
            if sender > me {
                return; // lowest ID wins: we keep ours, no ACK.
            }
            self.peering.takeovers.remove(&t.target);
        }
        self.to_peer(
            out,
            sender,
            InitTakeoverAck {
                sender: me,
                receiver: sender,
                target: t.target,
            }
            .into(),
        );
    }

    /// INIT_TAKEOVER_ACK (RFC 5353 §2.7): the last missing one finishes our takeover.
    fn on_init_takeover_ack(
        &mut self,
        now: Instant,
        sender: ServerId,
        a: InitTakeoverAck,
        out: &mut Vec<Action>,
    ) {
        let done = match self.peering.takeovers.get_mut(&a.target) {
            Some(t) => {
                t.missing.remove(&sender);
                t.missing.is_empty()
            }
            None => false,
        };
        if done {
            self.peering.takeovers.remove(&a.target);
            self.finish_takeover(now, a.target, out);
        }
    }

    /// TAKEOVER_SERVER (RFC 5353 §2.8): another registrar took the target over: its PEs
    /// are the sender's now.
    fn on_takeover_server(
        &mut self,
        now: Instant,
        sender: ServerId,
        t: TakeoverServer,
        out: &mut Vec<Action>,
    ) {
        if t.target == self.config.server_id {
            return;
        }
        self.peering.takeovers.remove(&t.target);
        // Gone for us too: what it queued for us before must not arrive later (netns chaos
        // soak: only its own death detection closed its associations).
        self.forget_peer(now, t.target, out);
        let n = self.handlespace.change_owner(t.target, sender);
        out.push(Action::Event(Event::TakeoverSeen {
            target: t.target,
            by: sender,
            pes: n,
        }));
    }

    fn start_sync(&mut self, now: Instant, peer: ServerId, own_only: bool, out: &mut Vec<Action>) {
        let me = self.config.server_id;
        let mark = own_only.then(|| self.handlespace.owned_by(peer).cloned().collect());
        let deadline = now + self.config.peering.max_time_no_response;
        let Some(p) = self.peering.peers.get_mut(&peer) else {
            return;
        };
        p.sync = Some(Sync {
            own_only,
            mark,
            deadline,
        });
        self.to_peer(
            out,
            peer,
            HandleTableRequest {
                own_children_only: own_only,
                sender: me,
                receiver: peer,
            }
            .into(),
        );
    }

    /// Answers a peer's HANDLE_TABLE_REQUEST with the next chunk (RFC 5353 §2.3, M bit).
    /// A continuation request follows our previous chunk within a round trip; a request
    /// arriving after half of MAX-TIME-NO-RESPONSE is a new download (the requester gave
    /// the old one up after MAX-TIME-NO-RESPONSE), which restarts the dump from the first
    /// PE instead of resuming from a stale cursor and leaving the beginning out.
    fn serve_table(
        &mut self,
        now: Instant,
        requester: ServerId,
        own_only: bool,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        let stale_after = self.config.peering.max_time_no_response / 2;
        let cursor = self
            .peering
            .serve
            .remove(&(requester, own_only))
            .filter(|(_, served)| now.saturating_duration_since(*served) < stale_after)
            .map(|(c, _)| c);
        let owner = own_only.then_some(me);
        let (msg, next, _) = self.table_page(cursor.as_ref(), owner, requester);
        if let Some(c) = next {
            self.peering.serve.insert((requester, own_only), (c, now));
        }
        self.to_peer(out, requester, msg);
    }

    fn on_table(
        &mut self,
        now: Instant,
        sender: ServerId,
        r: HandleTableResponse,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        if self
            .peering
            .peers
            .get(&sender)
            .and_then(|p| p.sync.as_ref())
            .is_none()
        {
            return;
        }
        if r.reject {
            if let Some(p) = self.peering.peers.get_mut(&sender) {
                p.sync = None;
            }
            return;
        }
        let mut seen = Vec::new();
        for pool in r.pools {
            for el in pool.pool_elements {
                let home = if el.home_server_id == 0 {
                    sender
                } else {
                    el.home_server_id
                };
                seen.push((pool.pool_handle.clone(), el.id));
                let claim = Claim {
                    peer: sender,
                    home,
                    registration: false,
                };
                self.store_foreign(now, claim, &pool.pool_handle, el, out);
            }
        }
        let deadline = now + self.config.peering.max_time_no_response;
        let Some(p) = self.peering.peers.get_mut(&sender) else {
            return;
        };
        let Some(s) = p.sync.as_mut() else {
            return;
        };
        if let Some(mark) = s.mark.as_mut() {
            for k in &seen {
                mark.remove(k);
            }
        }
        if r.more {
            s.deadline = deadline;
            let own_only = s.own_only;
            self.to_peer(
                out,
                sender,
                HandleTableRequest {
                    own_children_only: own_only,
                    sender: me,
                    receiver: sender,
                }
                .into(),
            );
            return;
        }
        let finished = p.sync.take();
        if finished.as_ref().is_some_and(|s| !s.own_only) {
            self.handlespace_loaded(now); // the mentor download (W = 0) is complete
        }
        let stale = finished.and_then(|s| s.mark).unwrap_or_default();
        let mut purged = 0;
        for (h, id) in stale {
            // Only what that peer still owns here: a PE may have moved meanwhile.
            if self.handlespace.get(&h, id).map(|e| e.owner()) == Some(sender) {
                // The owner we yielded to no longer lists it: a deletion by that owner
                // (crossing yields, ownership.rs); still registered here, it is ours.
                if self.reclaim_yielded(now, &(h.clone(), id), out) {
                    continue;
                }
                if let Some(r) = self.handlespace.deregister(&h, id) {
                    purged += 1;
                    self.removed(h, r.entry.element().clone(), RemovalReason::Audit, out);
                }
            }
        }
        out.push(Action::Event(Event::SyncDone {
            server_id: sender,
            purged,
        }));
    }

    /// Stores a PE learned from a peer (HANDLE_UPDATE / HANDLE_TABLE_RESPONSE) unless we are
    /// its home. A peer's claim on a PE registered here over a live association is judged
    /// by [`super::ownership`]: a HANDLE_UPDATE (`registration`) is a newer registration
    /// (we re-label silently; a near-tie goes to the lower server ID, and if that is us the
    /// claimant gets our ADD_PE once); a table entry is not, and gets our ADD_PE.
    fn store_foreign(
        &mut self,
        now: Instant,
        claim: Claim,
        handle: &PoolHandle,
        mut el: PoolElementInfo,
        out: &mut Vec<Action>,
    ) {
        let Claim {
            peer: from_peer,
            home,
            registration,
        } = claim;
        let me = self.config.server_id;
        if home == me {
            return;
        }
        let key = (handle.clone(), el.id);
        let window = super::ownership::crossing_window(self.config.peering.heartbeat_cycle);
        let crossing =
            self.peering.answered.get(&key).is_some_and(|(p, t)| {
                *p == from_peer && now.saturating_duration_since(*t) < window
            });
        if let Some(e) = self.handlespace.get(handle, el.id) {
            if e.owner() == me
                && e.connection().is_some()
                && super::ownership::judge_claim(
                    me,
                    home,
                    (e.last_update(), now),
                    registration,
                    self.config.peering.takeover_suggestion.then_some(el.id),
                    crossing,
                ) == super::ownership::ClaimVerdict::KeepAndAnswer
            {
                let ours = e.element().clone();
                if !registration {
                    if self.peering.answered.len() >= 4 * self.handlespace.len().max(64) {
                        self.peering
                            .answered
                            .retain(|_, (_, t)| now.saturating_duration_since(*t) < window);
                    }
                    self.peering.answered.insert(key, (from_peer, now));
                }
                self.to_peer(
                    out,
                    from_peer,
                    HandleUpdate {
                        takeover_suggested: false,
                        sender: me,
                        receiver: from_peer,
                        action: UpdateAction::AddPe,
                        reserved: 0,
                        pool_handle: handle.clone(),
                        pool_element: ours,
                    }
                    .into(),
                );
                return;
            }
            if e.owner() == me {
                if let Some(c) = e.connection() {
                    // We yield a PE registered here over a live association: remember it.
                    let ours = e.element().clone();
                    if self.peering.yielded.len() >= 2 * self.handlespace.len().max(64) {
                        let assocs = &self.assocs;
                        self.peering
                            .yielded
                            .retain(|_, (a, _)| assocs.contains_key(a));
                    }
                    self.peering.yielded.insert(key.clone(), (c, ours));
                }
            }
        }
        if !self.bound_peer_pe(now, from_peer, handle, &mut el, home, out) {
            return; // per-peer cap; life capped (trust.rs)
        }
        let key = (handle.clone(), el.id);
        if let Err(e) = self.handlespace.register(handle, el, home, None, now) {
            out.push(Action::Event(Event::ProtocolError {
                assoc: None,
                protocol: asap::wire::Protocol::Enrp,
                error: format!("peer {home:#x}: PE {:#x} refused: {e}", key.1),
                replied: false,
            }));
            return;
        }
        // It is not (or no longer) ours: no keep-alive monitor.
        if let Some(m) = self.monitors.remove(&key) {
            self.monitor_timers.remove(&(m.due, key.0.clone(), key.1));
        }
        self.audit_confirm(&key);
    }

    /// A PE a peer just told us about (update or table entry) is confirmed for every audit
    /// in progress: an audit must not purge a PE that was deleted and re-added by
    /// HANDLE_UPDATE after its place in the dump had passed (RFC 5353 §2.3 audit).
    fn audit_confirm(&mut self, key: &PeKey) {
        for p in self.peering.peers.values_mut() {
            if let Some(mark) = p.sync.as_mut().and_then(|s| s.mark.as_mut()) {
                mark.remove(key);
            }
        }
    }

    /// A peer's ADD_PE with the T bit (draft-dreibholz-rserpool-enrp-takeover §3; rsplib
    /// `registrarHandleENRPHandleUpdate`): with takeover suggestion on, if the sender is the
    /// PE's home and we now hold the PE as its copy, connect to the PE's ASAP transport (in
    /// the takeover scope) and send it ENDPOINT_KEEP_ALIVE with the H flag
    /// ([`Self::on_suggestion_link`]); the PE re-registers here, and the old home yields to
    /// that registration ([`super::ownership`]). Nothing is re-labelled before the PE
    /// registers: a PE that does not follow stays with its home. Without the option, or
    /// from anyone but the PE's home, T is ignored (a plain ADD_PE).
    fn follow_suggestion(
        &mut self,
        now: Instant,
        sender: ServerId,
        key: PeKey,
        out: &mut Vec<Action>,
    ) {
        if !self.config.peering.takeover_suggestion {
            return;
        }
        let me = self.config.server_id;
        let Some(e) = self.handlespace.get(&key.0, key.1) else {
            return;
        };
        if e.owner() != sender || sender == me {
            return;
        }
        let Some(transport) = e.element().asap_transport.clone() else {
            return;
        };
        if !self.in_takeover_scope(&transport) {
            self.refused(
                now,
                super::trust::Refusal::TakeoverScope,
                None,
                None,
                sender,
                "ENRP_HANDLE_UPDATE",
                out,
            );
            return;
        }
        // One probe per PE at a time.
        if self.suggested_pending(&key) {
            return;
        }
        if let Err(reason) = self.connect_adopted(&transport, vec![key], true, out) {
            out.push(Action::Event(Event::AdoptionFailed {
                assoc: None,
                pes: 1,
                reason,
            }));
        }
    }

    /// The association to a suggested PE's ASAP transport is up: each PE still held as a
    /// peer's gets ENDPOINT_KEEP_ALIVE with the H flag ([`Event::Adopted`] reports it). The
    /// association is aborted after the keep-alive timeout unless a PE registered over it.
    pub(super) fn on_suggestion_link(
        &mut self,
        now: Instant,
        assoc: super::AssocId,
        pes: Vec<PeKey>,
        out: &mut Vec<Action>,
    ) {
        let me = self.config.server_id;
        if !self.assocs.contains_key(&assoc) {
            return;
        }
        let mut sent = 0;
        for (h, id) in pes {
            if self.handlespace.get(&h, id).is_none_or(|e| e.owner() == me) {
                continue;
            }
            sent += 1;
            self.probe_adopted(out, assoc, h, id);
        }
        if sent == 0 {
            out.push(Action::Abort {
                assoc,
                reason: "suggested PE gone or ours before the association was up",
            });
            return;
        }
        let due = now + self.config.keep_alive_timeout;
        self.peering.suggestion_links.push((due, assoc));
    }

    /// Aborts suggestion associations no PE registered over within the keep-alive timeout.
    fn expire_suggestion_links(&mut self, now: Instant, out: &mut Vec<Action>) {
        let mut keep = Vec::new();
        for (due, assoc) in std::mem::take(&mut self.peering.suggestion_links) {
            if due > now {
                keep.push((due, assoc));
            } else if self.assocs.contains_key(&assoc)
                && self.handlespace.connection_len(assoc) == 0
            {
                out.push(Action::Abort {
                    assoc,
                    reason: "takeover suggestion not followed",
                });
            }
        }
        self.peering.suggestion_links = keep;
    }

    /// The owner we yielded PE `key` to deletes it (it lost the PE: its association
    /// dropped, its keep-alive went unanswered, or the PE deregistered there) while the PE
    /// is still registered here over the association it had when we yielded. Only the PE
    /// knows its home; the association it keeps to us says the PE may still be ours — e.g.
    /// two takeovers' H keep-alives 0.6 s apart: the PE followed both and registered at
    /// the higher-ID registrar last, the near-tie went to the lower ID, and when the PE
    /// closed its association there that registrar's DEL_PE removed the live PE everywhere
    /// (netns chaos soak). So we take it back as ours, announce it, and verify it with a
    /// keep-alive (removed after the keep-alive timeout if it does not answer). The same
    /// when our audit of that owner finds it no longer lists the PE (`on_table`: crossing
    /// yields, `ownership.rs`). True if the PE is ours again; false: remove it as usual.
    fn reclaim_yielded(&mut self, now: Instant, key: &PeKey, out: &mut Vec<Action>) -> bool {
        let Some((assoc, element)) = self.peering.yielded.remove(key) else {
            return false;
        };
        if !self.assocs.contains_key(&assoc) {
            return false;
        }
        let me = self.config.server_id;
        if self
            .handlespace
            .register(&key.0, element, me, Some(assoc), now)
            .is_err()
        {
            return false;
        }
        let due = now + self.keep_alive_interval();
        self.set_monitor(key.clone(), due, false);
        if let Some(stored) = self
            .handlespace
            .get(&key.0, key.1)
            .map(|e| e.element().clone())
        {
            self.replicate(UpdateAction::AddPe, key.0.clone(), stored, out);
        }
        true
    }

    fn on_update(
        &mut self,
        now: Instant,
        sender: ServerId,
        u: HandleUpdate,
        out: &mut Vec<Action>,
    ) {
        let home = if u.pool_element.home_server_id == 0 {
            sender
        } else {
            u.pool_element.home_server_id
        };
        match u.action {
            UpdateAction::AddPe => {
                let claim = Claim {
                    peer: sender,
                    home,
                    registration: true,
                };
                let (suggested, id) = (u.takeover_suggested, u.pool_element.id);
                let handle = u.pool_handle;
                self.store_foreign(now, claim, &handle, u.pool_element, out);
                if suggested {
                    self.follow_suggestion(now, sender, (handle, id), out);
                }
            }
            UpdateAction::DelPe => {
                let id = u.pool_element.id;
                let key = (u.pool_handle.clone(), id);
                // Only the PE's current home may delete it.
                let owned_by_sender =
                    self.handlespace.get(&u.pool_handle, id).map(|e| e.owner()) == Some(sender);
                if owned_by_sender && self.reclaim_yielded(now, &key, out) {
                    return;
                }
                if owned_by_sender {
                    if let Some(r) = self.handlespace.deregister(&u.pool_handle, id) {
                        self.removed(
                            u.pool_handle,
                            r.entry.element().clone(),
                            RemovalReason::PeerDeleted,
                            out,
                        );
                    }
                }
            }
            // An action this server does not know (RFC 5353 §2.4 defines only ADD_PE and
            // DEL_PE): ignored.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AssocId, CoreConfig, Input};
    use asap::transport::TransportKind;
    use asap::wire::asap_msg::EndpointKeepAlive;
    use asap::wire::{PoolEntry, Protocol, TransportParameter, TransportUse};
    use rserpool_tests::enrp_msgs::{self, presence, sctp_pe};

    const ME: ServerId = 5;

    fn addr(id: ServerId) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, id as u8], 9901))
    }

    fn reg() -> (Registrar, Instant) {
        let now = Instant::now();
        let mut c = CoreConfig::new(ME);
        c.peering.enabled = true;
        c.peering.unicast = crate::core::PeerTransport::Datagrams;
        // The peers of these tests (issue 13: only allowed peers are heard).
        c.security.peer_allow = ["127.0.0.0/8", "10.0.0.2"]
            .map(|n| crate::core::PeerAllow::Net(n.parse().expect("lit")))
            .to_vec();
        (Registrar::new(c, now), now)
    }

    fn from(
        r: &mut Registrar,
        now: Instant,
        sender: ServerId,
        m: impl Into<Message>,
    ) -> Vec<Action> {
        r.handle_datagram(now, addr(sender), &m.into())
    }

    fn sent(out: &[Action]) -> Vec<(SocketAddr, EnrpMessage)> {
        out.iter()
            .filter_map(|a| match a {
                Action::PeerSend {
                    to,
                    message: Message::Enrp(m),
                    ..
                } => Some((*to, m.clone())),
                _ => None,
            })
            .collect()
    }

    fn element(id: u32, home: ServerId) -> PoolElementInfo {
        sctp_pe(id, home)
    }

    /// Peer 7's (last) HANDLE_TABLE_RESPONSE page to us, listing `pools`.
    fn last_table_page_of_7(pools: Vec<PoolEntry>) -> HandleTableResponse {
        HandleTableResponse {
            reject: false,
            more: false,
            sender: 7,
            receiver: ME,
            pools,
        }
    }

    /// Who owns PE `id` of pool "P", if it is known.
    fn owner(r: &Registrar, id: u32) -> Option<ServerId> {
        r.handlespace().get(&"P".into(), id).map(|e| e.owner())
    }

    /// PE `id` registers here in pool "P" over association `assoc`.
    fn register(r: &mut Registrar, now: Instant, assoc: AssocId, id: u32) -> Vec<Action> {
        let reg: Message = asap::wire::asap_msg::Registration {
            pool_handle: "P".into(),
            pool_element: element(id, 0),
        }
        .into();
        r.handle_message(now, assoc, &reg)
    }

    fn update(sender: ServerId, action: UpdateAction, id: u32, home: ServerId) -> HandleUpdate {
        // Each PE process at its own ASAP transport (10.0.0.1, port 4000 + low byte).
        let mut pool_element = element(id, home);
        pool_element.asap_transport = Some(TransportParameter::Sctp {
            port: 4000 + (id & 0xFF) as u16,
            transport_use: TransportUse::DataOnly,
            addresses: vec!["10.0.0.1".parse().expect("lit")],
        });
        enrp_msgs::update(sender, ME, action, pool_element)
    }

    #[test]
    fn new_peer_gets_presence_list_request_and_mentor_download() {
        let (mut r, now) = reg();
        let out = from(&mut r, now, 7, presence(7, 0xFFFF));
        let s = sent(&out);
        assert!(s.iter().all(|(to, _)| *to == addr(7)));
        assert!(s
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::Presence(p) if p.receiver == 7)));
        assert!(s
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::ListRequest(_))));
        assert!(s
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::HandleTableRequest(h) if !h.own_children_only)));
        assert_eq!(r.mentor(), Some(7));
        assert_eq!(r.peers().len(), 1);
    }

    #[test]
    fn handle_update_add_and_delete_only_by_home() {
        let (mut r, now) = reg();
        from(&mut r, now, 7, presence(7, 0xFFFF));
        from(&mut r, now, 8, presence(8, 0xFFFF));
        from(&mut r, now, 7, update(7, UpdateAction::AddPe, 0x10, 7));
        let e = r.handlespace().get(&"P".into(), 0x10).expect("stored");
        assert_eq!(e.owner(), 7);
        assert!(e.expiry().is_some());
        // DEL_PE from a registrar that is not its home is ignored.
        from(&mut r, now, 8, update(8, UpdateAction::DelPe, 0x10, 8));
        assert!(r.handlespace().get(&"P".into(), 0x10).is_some());
        from(&mut r, now, 7, update(7, UpdateAction::DelPe, 0x10, 7));
        assert!(r.handlespace().get(&"P".into(), 0x10).is_none());
        // A HANDLE_UPDATE claiming us as home is not stored.
        from(&mut r, now, 7, update(7, UpdateAction::AddPe, 0x11, ME));
        assert!(r.handlespace().get(&"P".into(), 0x11).is_none());
    }

    #[test]
    fn checksum_mismatch_starts_w_flag_audit_and_sweeps() {
        let (mut r, now) = reg();
        from(&mut r, now, 7, presence(7, 0xFFFF));
        for id in [1, 2, 3] {
            from(&mut r, now, 7, update(7, UpdateAction::AddPe, id, 7));
        }
        // Finish the mentor download (empty table) so that the peer is not busy.
        from(&mut r, now, 7, last_table_page_of_7(vec![]));
        let out = from(&mut r, now, 7, presence(7, 0x1234));
        assert!(sent(&out)
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::HandleTableRequest(h) if h.own_children_only)));
        // The peer now owns only PE 2: 1 and 3 are swept.
        let pools = vec![PoolEntry {
            pool_handle: "P".into(),
            pool_elements: vec![element(2, 7)],
        }];
        let out = from(&mut r, now, 7, last_table_page_of_7(pools));
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Event(Event::SyncDone { purged: 2, .. }))));
        assert_eq!(r.handlespace().len(), 1);
        assert!(r.handlespace().get(&"P".into(), 2).is_some());
    }

    #[test]
    fn takeover_lowest_id_wins() {
        let (mut r, now) = reg();
        for p in [3, 7, 9] {
            from(&mut r, now, p, presence(p, 0xFFFF));
        }
        from(&mut r, now, 7, update(7, UpdateAction::AddPe, 0x70, 7));
        // Only 7 goes silent.
        let t1 = now + Duration::from_secs(4);
        from(&mut r, t1, 3, presence(3, 0xFFFF));
        from(&mut r, t1, 9, presence(9, 0xFFFF));
        let t2 = now + Duration::from_millis(5_100);
        let out = r.handle_timeout(t2);
        assert!(sent(&out)
            .iter()
            .any(|(to, m)| *to == addr(7)
                && matches!(m, EnrpMessage::Presence(p) if p.reply_required)));
        let t3 = t2 + Duration::from_millis(5_100);
        from(&mut r, t3, 3, presence(3, 0xFFFF));
        from(&mut r, t3, 9, presence(9, 0xFFFF));
        let out = r.handle_timeout(t3);
        let inits: Vec<_> = sent(&out)
            .into_iter()
            .filter(|(_, m)| matches!(m, EnrpMessage::InitTakeover(t) if t.target == 7))
            .collect();
        assert_eq!(inits.len(), 2, "INIT_TAKEOVER to 3 and 9");
        assert_eq!(r.takeovers_running(), vec![7]);
        // A competitor with a higher ID is ignored (no ACK) ...
        let it = |s| InitTakeover {
            sender: s,
            receiver: ME,
            target: 7,
        };
        assert!(sent(&from(&mut r, t3, 9, it(9))).is_empty());
        assert_eq!(r.takeovers_running(), vec![7]);
        // ... a lower one wins: we abort and ACK.
        let out = from(&mut r, t3, 3, it(3));
        assert!(matches!(&sent(&out)[..], [(_, EnrpMessage::InitTakeoverAck(a))] if a.target == 7));
        assert!(r.takeovers_running().is_empty());
        // TAKEOVER_SERVER from 3 re-labels 7's PE.
        from(
            &mut r,
            t3,
            3,
            TakeoverServer {
                sender: 3,
                receiver: ME,
                target: 7,
            },
        );
        assert_eq!(owner(&r, 0x70), Some(3));
    }

    #[test]
    fn takeover_completes_with_all_acks_and_adopts() {
        let (mut r, now) = reg();
        let t = silence_7(&mut r, now, &[0x70, 0x71]);
        assert_eq!(r.takeovers_running(), vec![7]);
        // 9 acknowledges: we finish.
        let out = from(&mut r, t, 9, ack_of_7_from_9());
        assert!(sent(&out).iter().any(|(to, m)| *to == addr(9)
            && matches!(m, EnrpMessage::TakeoverServer(x) if x.target == 7)));
        // One association per adopted PE process, to its ASAP transport (RFC 5353 §3.6).
        assert_eq!(
            adopt_connects(&out)
                .into_iter()
                .map(|(_, to, pes)| (to, pes))
                .collect::<Vec<_>>(),
            vec![
                (vec![pe_at(0x70)], vec![0x70]),
                (vec![pe_at(0x71)], vec![0x71])
            ]
        );
        assert_eq!(r.handlespace().owned_len(ME), 2);
        assert_eq!(r.handlespace().owned_len(7), 0);
        // Nobody answers the H-flag keep-alive: removed after the keep-alive timeout.
        let out = r.handle_timeout(t + Duration::from_secs(6));
        assert_eq!(r.handlespace().owned_len(ME), 0);
        let dels = sent(&out)
            .into_iter()
            .filter(|(_, m)| matches!(m, EnrpMessage::HandleUpdate(u) if u.action == UpdateAction::DelPe))
            .count();
        assert_eq!(dels, 2, "DEL_PE to peer 9 for both");
    }

    /// Peers 7 and 9 are heard and 7 announces PEs `ids`; then 7 falls silent while 9
    /// keeps sending PRESENCE. At the returned time our takeover of 7 is running (it
    /// waits for 9's INIT_TAKEOVER_ACK).
    fn silence_7(r: &mut Registrar, now: Instant, ids: &[u32]) -> Instant {
        for p in [7, 9] {
            from(r, now, p, presence(p, 0xFFFF));
        }
        for &id in ids {
            from(r, now, 7, update(7, UpdateAction::AddPe, id, 7));
        }
        let t = now + Duration::from_millis(10_300);
        for step in [4_000u64, 8_000] {
            from(r, now + Duration::from_millis(step), 9, presence(9, 0xFFFF));
        }
        r.handle_timeout(now + Duration::from_millis(5_100));
        from(r, t, 9, presence(9, 0xFFFF));
        r.handle_timeout(t);
        t
    }

    /// Peer 9 agrees to our takeover of 7.
    fn ack_of_7_from_9() -> InitTakeoverAck {
        InitTakeoverAck {
            sender: 9,
            receiver: ME,
            target: 7,
        }
    }

    /// Takes peer 7 (owning PEs `ids`) over with peer 9's help; returns the time the
    /// takeover finished and its actions.
    fn take_over_7_owning(r: &mut Registrar, now: Instant, ids: &[u32]) -> (Instant, Vec<Action>) {
        let t = silence_7(r, now, ids);
        let out = from(r, t, 9, ack_of_7_from_9());
        (t, out)
    }

    /// Takes peer 7 (owning PEs 0x70 and 0x71) over ([`take_over_7_owning`]).
    fn take_over_7(r: &mut Registrar, now: Instant) -> (Instant, Vec<Action>) {
        take_over_7_owning(r, now, &[0x70, 0x71])
    }

    fn connect_pe(r: &mut Registrar, now: Instant, assoc: u64) {
        connected(r, now, assoc, "10.0.0.1:4000".parse().expect("lit"));
    }

    /// Where the PE process of `id` listens ([`update`]).
    fn pe_at(id: u32) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 4000 + (id & 0xFF) as u16))
    }

    /// The takeover associations the core asked for: (ID, addresses, PE IDs).
    fn adopt_connects(out: &[Action]) -> Vec<(u64, Vec<SocketAddr>, Vec<u32>)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Connect {
                    assoc,
                    protocol: Protocol::Asap,
                    to,
                    purpose: crate::core::ConnectPurpose::Adopt { pes },
                    ..
                } => Some((*assoc, to.clone(), pes.iter().map(|p| p.1).collect())),
                _ => None,
            })
            .collect()
    }

    /// The driver reports the association it opened for `assoc` (an [`Action::Connect`]).
    fn connected(r: &mut Registrar, now: Instant, assoc: u64, at: SocketAddr) -> Vec<Action> {
        r.handle(
            now,
            Input::connected(assoc, Protocol::Asap, at, TransportKind::Sctp),
        )
    }

    /// H-flag keep-alives the core sent on an association: (assoc, PE ID).
    fn home_keep_alives(out: &[Action]) -> Vec<(u64, u32)> {
        out.iter()
            .filter_map(|a| match a.sent() {
                Some((
                    assoc,
                    Message::Asap(asap::wire::AsapMessage::EndpointKeepAlive(EndpointKeepAlive {
                        home: true,
                        server_id: ME,
                        pe_identifier: Some(id),
                        ..
                    })),
                )) => Some((assoc, id)),
                _ => None,
            })
            .collect()
    }

    fn ack(id: u32) -> Message {
        asap::wire::asap_msg::EndpointKeepAliveAck {
            pool_handle: "P".into(),
            pe_identifier: id,
        }
        .into()
    }

    /// RFC 5353 §3.6 through the driver: the core asks for an association to each adopted
    /// PE's ASAP transport; when it is up the PE is bound to it; an ACK satisfies the check,
    /// the keep-alives continue over it, a PE that does not answer is removed with the
    /// association aborted (and forgotten by the core at once).
    #[test]
    fn adopted_association_binds_pes_and_carries_keep_alives() {
        let (mut r, now) = reg();
        let (t, out) = take_over_7(&mut r, now);
        let connects = adopt_connects(&out);
        assert_eq!(connects.len(), 2);
        assert!(connects.iter().all(|c| c.0 >= 1 << 63), "core-numbered IDs");
        assert_eq!(r.connects_pending(), 2);
        let t1 = t + Duration::from_millis(300);
        let (a70, a71) = (connects[0].0, connects[1].0);
        let out = connected(&mut r, t1, a70, pe_at(0x70));
        assert_eq!(home_keep_alives(&out), vec![(a70, 0x70)]);
        let out = connected(&mut r, t1, a71, pe_at(0x71));
        assert_eq!(home_keep_alives(&out), vec![(a71, 0x71)]);
        assert_eq!(r.connects_pending(), 0);
        for (id, a) in [(0x70, a70), (0x71, a71)] {
            let e = r.handlespace().get(&"P".into(), id).expect("kept");
            assert_eq!(e.connection(), Some(a));
            assert_eq!(e.owner(), ME);
        }
        // 0x70 answers; 0x71 does not.
        let t2 = t1 + Duration::from_millis(100);
        let out = r.handle_message(t2, a70, &ack(0x70));
        assert!(!out
            .iter()
            .any(|a| matches!(a, Action::Event(Event::Ignored { .. }))));
        // Past the timeout measured from the H keep-alive (not from the takeover): 0x71
        // is removed and its association aborted (rsplib), 0x70 stays.
        let out = r.handle_timeout(t1 + Duration::from_millis(5_001));
        assert!(r.handlespace().get(&"P".into(), 0x71).is_none());
        assert!(r.handlespace().get(&"P".into(), 0x70).is_some());
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Abort { assoc, .. } if *assoc == a71)));
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Event(Event::Removed {
                id: 0x71,
                reason: RemovalReason::KeepAliveTimeout,
                ..
            })
        )));
        assert!(r.association(a71).is_none(), "aborted: forgotten at once");
        // 0x70's association closing removes it like any PE registered over it.
        let out = r.handle(t2, Input::Disconnected { assoc: a70 });
        assert!(r.handlespace().get(&"P".into(), 0x70).is_none());
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Event(Event::Removed {
                id: 0x70,
                reason: RemovalReason::AssociationLost,
                ..
            })
        )));
    }

    /// Several PEs of one process (same ASAP transport) share one association.
    #[test]
    fn adopted_pes_of_one_transport_share_one_connect() {
        let (mut r, now) = reg();
        // 0x170 and 0x270 share port 4000 + 0x70.
        let (_, out) = take_over_7_owning(&mut r, now, &[0x170, 0x270, 0x71]);
        let mut c: Vec<_> = adopt_connects(&out)
            .into_iter()
            .map(|(_, to, mut pes)| {
                pes.sort_unstable();
                (to, pes)
            })
            .collect();
        c.sort();
        assert_eq!(
            c,
            vec![
                (vec![pe_at(0x70)], vec![0x170, 0x270]),
                (vec![pe_at(0x71)], vec![0x71]),
            ]
        );
    }

    #[test]
    fn adopted_pe_keep_alive_cycle_and_reregistration_on_the_association() {
        let (mut r, now) = reg();
        let (t, out) = take_over_7(&mut r, now);
        let connects = adopt_connects(&out);
        let a70 = connects[0].0;
        connected(&mut r, t, a70, pe_at(0x70));
        r.handle_message(t, a70, &ack(0x70));
        // 0x71's process cannot be reached.
        let out = r.handle(
            t,
            Input::ConnectFailed {
                assoc: connects[1].0,
            },
        );
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Event(Event::AdoptionFailed { pes: 1, .. }))));
        // Next keep-alive (no H) goes over the adoption association.
        let out = r.handle_timeout(t + Duration::from_secs(6));
        let kas: Vec<_> = out
            .iter()
            .filter_map(|a| match a.sent() {
                Some((assoc, Message::Asap(asap::wire::AsapMessage::EndpointKeepAlive(k)))) => {
                    Some((assoc, k.home, k.pe_identifier))
                }
                _ => None,
            })
            .collect();
        assert_eq!(kas, vec![(a70, false, Some(0x70))]);
        // A re-registration on it is a normal update (ours, bound to it).
        let out = register(&mut r, t + Duration::from_secs(6), a70, 0x70);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Event(Event::Registered {
                assoc,
                id: 0x70,
                update: true,
                ..
            }) if *assoc == a70
        )));
        let e = r.handlespace().get(&"P".into(), 0x70).expect("kept");
        assert_eq!((e.owner(), e.connection()), (ME, Some(a70)));
        // 0x71 was never reached (no association): removed by verify_adopted.
        assert!(r.handlespace().get(&"P".into(), 0x71).is_none());
    }

    #[test]
    fn adoption_of_pes_gone_meanwhile_aborts_the_association() {
        let (mut r, now) = reg();
        let (t, out) = take_over_7(&mut r, now);
        let connects = adopt_connects(&out);
        // 0x70 registered here over its own association before the driver got through.
        connect_pe(&mut r, t, 41);
        register(&mut r, t, 41, 0x70);
        let a70 = connects[0].0;
        let out = connected(&mut r, t, a70, pe_at(0x70));
        assert!(home_keep_alives(&out).is_empty());
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Abort { assoc, .. } if *assoc == a70)));
        assert_eq!(
            r.handlespace()
                .get(&"P".into(), 0x70)
                .and_then(|e| e.connection()),
            Some(41)
        );
        // A connect failure for an association the core never asked for changes nothing.
        let out = r.handle(t, Input::ConnectFailed { assoc: 99 });
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Event(Event::Ignored { .. }))));
        assert_eq!(r.connects_pending(), 1);
        assert_eq!(
            r.handlespace()
                .get(&"P".into(), 0x71)
                .and_then(|e| e.connection()),
            None
        );
    }

    #[test]
    fn presence_from_target_cancels_takeover() {
        let (mut r, now) = reg();
        let t = silence_7(&mut r, now, &[0x70]);
        assert_eq!(r.takeovers_running(), vec![7]);
        let out = from(&mut r, t, 7, presence(7, 0xFFFF));
        assert!(r.takeovers_running().is_empty());
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Event(Event::TakeoverAbandoned { target: 7, .. }))));
        // A late ACK changes nothing.
        from(&mut r, t, 9, ack_of_7_from_9());
        assert_eq!(owner(&r, 0x70), Some(7));
    }

    #[test]
    fn claim_on_a_pe_registered_here_is_answered_with_our_add() {
        let (mut r, now) = reg();
        from(&mut r, now, 7, presence(7, 0xFFFF));
        connected(&mut r, now, 1, "10.0.0.1:5000".parse().expect("lit"));
        register(&mut r, now, 1, 0x42);
        assert_eq!(owner(&r, 0x42), Some(ME));
        let out = from(&mut r, now, 7, update(7, UpdateAction::AddPe, 0x42, 7));
        assert_eq!(owner(&r, 0x42), Some(ME));
        assert!(sent(&out).iter().any(|(to, m)| *to == addr(7)
            && matches!(m, EnrpMessage::HandleUpdate(u)
                if u.action == UpdateAction::AddPe && u.pool_element.home_server_id == ME)));
    }

    /// RFC 5353 §2: peer messages arrive over ENRP associations; the peer is addressed by
    /// the association's primary address (the driver maps it back). A tool's
    /// HANDLE_TABLE_REQUEST (unknown sender, no PRESENCE) stays on the association.
    #[test]
    fn enrp_over_an_association_is_a_peer_message() {
        let (mut r, now) = reg();
        let peer: SocketAddr = "10.0.0.2:9901".parse().expect("lit");
        for (assoc, at) in [(1, peer), (2, "10.0.0.9:40000".parse().expect("lit"))] {
            r.handle(
                now,
                Input::connected(assoc, Protocol::Enrp, at, TransportKind::Sctp),
            );
        }
        let p: Message = Presence {
            reply_required: true,
            ..presence(7, 0)
        }
        .into();
        let out = r.handle_message(now, 1, &p);
        assert_eq!(r.peers().get(&7).map(|p| p.addr), Some(peer));
        assert!(sent(&out)
            .iter()
            .any(|(to, m)| *to == peer && matches!(m, EnrpMessage::Presence(_))));
        let dump: Message = asap::wire::enrp_msg::HandleTableRequest {
            own_children_only: false,
            sender: 0x7001,
            receiver: 0,
        }
        .into();
        let out = r.handle_message(now, 2, &dump);
        assert!(!r.peers().contains_key(&0x7001));
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Send { assoc: 2, .. })));
    }

    #[test]
    fn peer_table_is_bounded() {
        let (mut r, now) = reg();
        r.config.peering.max_peers = 2;
        for p in [7, 8, 9] {
            from(&mut r, now, p, presence(p, 0xFFFF));
        }
        assert_eq!(r.peers().keys().copied().collect::<Vec<_>>(), vec![7, 8]);
    }

    #[test]
    fn init_takeover_of_us_is_refuted() {
        let (mut r, now) = reg();
        from(&mut r, now, 7, presence(7, 0xFFFF));
        from(&mut r, now, 9, presence(9, 0xFFFF));
        let out = from(
            &mut r,
            now,
            7,
            InitTakeover {
                sender: 7,
                receiver: ME,
                target: ME,
            },
        );
        let s = sent(&out);
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|(_, m)| matches!(m, EnrpMessage::Presence(_))));
    }

    /// A registrar that peers over associations (the default), hears 127.0.0.0/8 and
    /// has `peers` as its static peers.
    fn assoc_registrar(now: Instant, peers: Vec<SocketAddr>) -> Registrar {
        let mut c = CoreConfig::new(ME);
        c.peering.enabled = true;
        c.peers = peers;
        c.security.peer_allow = vec![crate::core::PeerAllow::Net(
            "127.0.0.0/8".parse().expect("lit"),
        )];
        Registrar::new(c, now)
    }

    /// Association `assoc` (TCP) to `at` is up.
    fn connect(
        r: &mut Registrar,
        now: Instant,
        assoc: AssocId,
        protocol: Protocol,
        at: &str,
    ) -> Vec<Action> {
        let at = at.parse().expect("lit");
        r.handle(
            now,
            Input::connected(assoc, protocol, at, TransportKind::Tcp),
        )
    }

    /// PE 0x42 registers here in pool "P" over ASAP association 1.
    fn register_pe_here(r: &mut Registrar, now: Instant) {
        connect(r, now, 1, Protocol::Asap, "10.0.0.1:4066");
        register(r, now, 1, 0x42);
    }

    /// What peer 7 queued before it lost us, its ADD_PE and its DEL_PE of PE 0x42,
    /// arrives on `assoc`; the actions answering the ADD_PE.
    fn stale_add_and_del_from_7(r: &mut Registrar, now: Instant, assoc: AssocId) -> Vec<Action> {
        let out = r.handle_message(now, assoc, &update(7, UpdateAction::AddPe, 0x42, 7).into());
        r.handle_message(now, assoc, &update(7, UpdateAction::DelPe, 0x42, 7).into());
        out
    }

    /// PE 0x42 is still ours, registered over association 1.
    fn assert_pe_still_ours(r: &Registrar) {
        let e = r
            .handlespace()
            .get(&"P".into(), 0x42)
            .expect("live PE kept");
        assert_eq!((e.owner(), e.connection()), (ME, Some(1)));
    }

    /// A partition hides peer 7, which spoke over two ENRP associations (its own, accepted
    /// here, and ours to its static address). We declare it dead and take its PE over; the
    /// PE registers here. When the partition heals, TCP delivers on the association that
    /// was left open what 7 queued before it lost us: its ADD_PE of the PE (the PE's
    /// registration there, older than ours) and its DEL_PE. Before, only the association
    /// of 7's last message was closed, so these arrived as a re-found peer's newer
    /// registration: we yielded and the DEL_PE removed the live PE until its next
    /// re-registration (netns chaos soak, 1–134 live PEs lost per run). Now every
    /// association 7 was heard on is closed when it is declared dead, and what is still
    /// read from one is not a peer message.
    #[test]
    fn stale_updates_from_a_peer_declared_dead_do_not_take_a_live_pe() {
        let now = Instant::now();
        let mut r = assoc_registrar(now, vec![addr(7)]);
        let ours = r
            .handle_timeout(now)
            .iter()
            .find_map(|a| match a {
                Action::Connect {
                    assoc,
                    protocol: Protocol::Enrp,
                    ..
                } => Some(*assoc),
                _ => None,
            })
            .expect("connect to the static peer");
        connect(&mut r, now, ours, Protocol::Enrp, "127.0.0.7:9901");
        connect(&mut r, now, 3, Protocol::Enrp, "127.0.0.7:40123");
        // A third one 7 opened just before the partition; nothing arrived on it before.
        connect(&mut r, now, 4, Protocol::Enrp, "127.0.0.7:40999");
        // 7 registered PE 0x42 (announced over its own association), then speaks over ours.
        r.handle_message(now, 3, &presence(7, 0xFFFF).into());
        r.handle_message(now, 3, &update(7, UpdateAction::AddPe, 0x42, 7).into());
        r.handle_message(now, ours, &presence(7, 0xFFFF).into());
        // Partition: 7 is silent until declared dead; its PE is ours by the takeover.
        let mut closed = BTreeSet::new();
        let mut t = now;
        while r.peers().contains_key(&7) {
            t += Duration::from_millis(500);
            assert!(t < now + Duration::from_secs(30), "7 declared dead");
            for a in r.handle_timeout(t) {
                if let Action::Close { assoc, .. } = a {
                    closed.insert(assoc);
                }
            }
        }
        assert_eq!(
            closed,
            BTreeSet::from([3, ours]),
            "both of 7's associations"
        );
        // The PE registers here (it followed our takeover).
        register_pe_here(&mut r, t);
        // Heal, 3 s later: 7's queued ADD_PE and DEL_PE arrive on association 3.
        stale_add_and_del_from_7(&mut r, t + Duration::from_secs(3), 3);
        assert_pe_still_ours(&r);
        // The same on the association 7 was never heard on (TCP retransmits what 7 queued
        // on it, after backing off, seconds after the heal): it was up before 7 was
        // declared dead, so it is stale for 7 and closed.
        let out = stale_add_and_del_from_7(&mut r, t + Duration::from_secs(11), 4);
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Close { assoc: 4, .. })));
        assert_pe_still_ours(&r);
        assert!(
            !r.peers().contains_key(&7),
            "not found again by stale messages"
        );
    }

    /// Peer 9's TAKEOVER_SERVER of 7 reaches us before our own failure detection gives 7
    /// up: 7 leaves our peer table there. What 7 queued for us before (its ADD_PE of a PE
    /// registered here since) must not arrive later either (netns chaos soak: a partition
    /// of 7 alone, 9 won the takeover; after the heal 7's queued ADD_PE took the live PE
    /// and 7's audit purged it).
    #[test]
    fn stale_updates_from_a_peer_taken_over_by_another_do_not_take_a_live_pe() {
        let now = Instant::now();
        let mut r = assoc_registrar(now, vec![]);
        connect(&mut r, now, 3, Protocol::Enrp, "127.0.0.7:40123");
        connect(&mut r, now, 4, Protocol::Enrp, "127.0.0.9:40124");
        r.handle_message(now, 3, &presence(7, 0xFFFF).into());
        r.handle_message(now, 4, &presence(9, 0xFFFF).into());
        let t = now + Duration::from_millis(500);
        register_pe_here(&mut r, t);
        let takeover: Message = TakeoverServer {
            sender: 9,
            receiver: ME,
            target: 7,
        }
        .into();
        let out = r.handle_message(t, 4, &takeover);
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Close { assoc: 3, .. })));
        assert!(!r.peers().contains_key(&7));
        stale_add_and_del_from_7(&mut r, t + Duration::from_secs(5), 3);
        assert_pe_still_ours(&r);
    }

    /// Our ADD_PE to peer 7 waits for the connection to 7's static address; meanwhile 7
    /// speaks to us over its own association, which becomes 7's address. Our next message
    /// (the DEL_PE) goes there at once: the waiting ADD_PE must go first, on the same
    /// association. Before, it was flushed when our connection came up, after the DEL_PE,
    /// and 7 took it for a new registration of a PE that had moved on (netns chaos soak).
    #[test]
    fn messages_waiting_for_a_connection_follow_the_peer_to_its_new_association() {
        let now = Instant::now();
        let mut r = assoc_registrar(now, vec![addr(7)]);
        // 7 is known over its own association 3 first, then over ours (7's static address).
        connect(&mut r, now, 3, Protocol::Enrp, "127.0.0.7:40123");
        r.handle_message(now, 3, &presence(7, 0xFFFF).into());
        r.handle(now, Input::Disconnected { assoc: 3 });
        let from_static = Input::Datagram {
            from: addr(7),
            protocol: Protocol::Enrp,
            bytes: Message::from(presence(7, 0xFFFF))
                .to_bytes()
                .expect("encodes"),
        };
        // Heard at the static address (as a datagram: no association there yet).
        r.handle(now, from_static);
        // A PE registers here: its ADD_PE to 7 waits for the connection to addr(7).
        register_pe_here(&mut r, now);
        assert!(r.peer_queue_len(addr(7)) > 0, "the ADD_PE waits");
        // 7 speaks over a new association of its own; then the PE goes (DEL_PE).
        connect(&mut r, now, 4, Protocol::Enrp, "127.0.0.7:40999");
        let mut sent = Vec::new();
        sent.extend(r.handle_message(now, 4, &presence(7, 0xFFFF).into()));
        sent.extend(r.handle(now, Input::Disconnected { assoc: 1 }));
        let updates: Vec<(u64, UpdateAction)> = sent
            .iter()
            .filter_map(|a| match a.sent() {
                Some((assoc, Message::Enrp(EnrpMessage::HandleUpdate(u)))) => {
                    Some((assoc, u.action))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            updates,
            vec![(4, UpdateAction::AddPe), (4, UpdateAction::DelPe)],
            "in order, on 7's association"
        );
    }
}
