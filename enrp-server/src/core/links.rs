//! Associations the registrar opens itself (RFC 5353 §2: unicast ENRP goes over an SCTP
//! association to the peer's ENRP port, PPID 12; RFC 5353 §3.6: a takeover reaches the
//! adopted PEs at their ASAP transport) and the table that maps peer addresses to
//! associations. The core owns all of it; the driver only opens sockets when told to.
//!
//! * Peer messages are produced as [`Action::PeerSend`] to a socket address (peering in
//!   [`super::peers`] is written against addresses). With
//!   [`PeerTransport::Associations`] (the default) [`Registrar::route_peer_sends`] turns every
//!   unicast one into [`Action::Send`] on the association to that address; when there is
//!   none it emits one [`Action::Connect`] and keeps up to [`PEER_CONNECT_QUEUE`] messages
//!   until [`Input::Connected`](super::Input::Connected) (then they are sent in order) or
//!   [`Input::ConnectFailed`](super::Input::ConnectFailed) (then they are dropped and
//!   reported; the next message tries again, and PRESENCE audits repair what was lost).
//!   Multicast PRESENCE stays a datagram.
//! * Takeover probes ([`Registrar::connect_adopted`]): one [`Action::Connect`] per ASAP
//!   transport (one PE process), carrying the PEs to bind; on `Connected` the core binds
//!   them and sends each the ENDPOINT_KEEP_ALIVE with the H flag.
//! * The core numbers the associations it opens from [`CoreConfig::first_outgoing_assoc`]
//!   (by default the upper half of the ID space; the driver numbers accepted ones from 1).
//!
//! A driver answers every [`Action::Connect`] with exactly one `Connected` or
//! `ConnectFailed` for that ID, and gives up after the action's `timeout`.
//!
//! [`CoreConfig::first_outgoing_assoc`]: super::CoreConfig::first_outgoing_assoc

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::TransportKind;
use asap::wire::{Message, PeIdentifier, PoolHandle, Protocol, TransportParameter};
use bytes::Bytes;

use super::{Action, AssocId, Event, PeKey, Registrar};

/// Messages kept for one peer while its association is being set up; more are dropped
/// ([`Event::PeerMessageDropped`]).
pub const PEER_CONNECT_QUEUE: usize = 256;

/// Connect timeout towards a peer registrar (the peer itself is judged by
/// MAX-TIME-NO-RESPONSE; the next message tries again).
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How unicast ENRP messages reach a peer registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerTransport {
    /// Over an association to the peer's ENRP address, opened on demand (RFC 5353 §2).
    #[default]
    Associations,
    /// As [`Action::PeerSend`] datagrams to the peer's address (in-memory harnesses that
    /// test the peering logic without a link layer).
    Datagrams,
}

/// Why the core asked for an association (informative: the core keeps its own copy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectPurpose {
    /// ENRP association to a peer registrar.
    Peer,
    /// Takeover probe (or, with takeover suggestion, the PE a peer suggested we take over):
    /// these PEs share the ASAP transport connected to.
    Adopt {
        /// The PEs to bind to the association.
        pes: Vec<(PoolHandle, PeIdentifier)>,
    },
}

/// One association being opened.
#[derive(Debug)]
enum Pending {
    /// To a peer's ENRP address, with the messages waiting for it.
    Peer {
        to: SocketAddr,
        queue: Vec<(Message, Bytes)>,
        /// Messages dropped because the queue was full.
        dropped: usize,
    },
    /// To adopted PEs' ASAP transport.
    Adopt { pes: Vec<PeKey> },
    /// To a PE a peer suggested we take over (HANDLE_UPDATE T bit).
    Suggest { pes: Vec<PeKey> },
}

/// The association table of the core's own connections and the peer address map.
#[derive(Debug)]
pub(super) struct Links {
    /// ENRP association by peer address: accepted ones by each of their remote addresses,
    /// ours by the address we connected to.
    by_addr: HashMap<SocketAddr, AssocId>,
    /// Connections in progress to a peer address.
    connecting: HashMap<SocketAddr, AssocId>,
    /// Every association being opened, by ID.
    pending: HashMap<AssocId, Pending>,
    /// When each ENRP association came up (stale ones are told apart by it, `peers.rs`).
    up_at: HashMap<AssocId, std::time::Instant>,
    next_id: AssocId,
}

impl Links {
    pub(super) fn new(first_id: AssocId) -> Self {
        Links {
            by_addr: HashMap::new(),
            connecting: HashMap::new(),
            pending: HashMap::new(),
            up_at: HashMap::new(),
            next_id: first_id,
        }
    }
}

/// Where an adopted PE's ASAP transport is (asap/wire/INTEROP.md §2: the registrar records the
/// PE's association address and port; rsplib carries it in HANDLE_UPDATE).
pub fn adopt_target(t: &TransportParameter) -> Option<(TransportKind, Vec<SocketAddr>)> {
    match t {
        TransportParameter::Sctp {
            port, addresses, ..
        } if !addresses.is_empty() && *port != 0 => Some((
            TransportKind::Sctp,
            addresses
                .iter()
                .map(|a| SocketAddr::new(*a, *port))
                .collect(),
        )),
        TransportParameter::Tcp { port, address, .. } if *port != 0 => {
            Some((TransportKind::Tcp, vec![SocketAddr::new(*address, *port)]))
        }
        _ => None,
    }
}

impl Registrar {
    /// The association the core uses for the peer address `to`, if one is up.
    pub fn peer_association(&self, to: SocketAddr) -> Option<AssocId> {
        self.links.by_addr.get(&to).copied()
    }

    /// Associations being opened ([`Action::Connect`] sent, no answer yet).
    pub fn connects_pending(&self) -> usize {
        self.links.pending.len()
    }

    /// Messages waiting for the association to `to` to come up.
    pub fn peer_queue_len(&self, to: SocketAddr) -> usize {
        self.links
            .connecting
            .get(&to)
            .and_then(|id| self.links.pending.get(id))
            .map_or(0, |p| match p {
                Pending::Peer { queue, .. } => queue.len(),
                Pending::Adopt { .. } | Pending::Suggest { .. } => 0,
            })
    }

    /// Whether an association to follow a takeover suggestion for `key` is being opened.
    pub(super) fn suggested_pending(&self, key: &PeKey) -> bool {
        self.links
            .pending
            .values()
            .any(|p| matches!(p, Pending::Suggest { pes } if pes.contains(key)))
    }

    fn allocate_assoc(&mut self) -> AssocId {
        let id = self.links.next_id;
        self.links.next_id = self.links.next_id.wrapping_add(1);
        id
    }

    /// Whether another association may be opened ([`super::CoreConfig::max_associations`]).
    fn may_open(&self) -> bool {
        self.assocs.len() + self.links.pending.len() < self.config.max_associations
    }

    /// Link layer of the peering (see the module documentation): unicast
    /// [`Action::PeerSend`]s become [`Action::Send`] on the peer's association, or wait
    /// for the [`Action::Connect`] emitted for it.
    pub(super) fn route_peer_sends(&mut self, out: &mut Vec<Action>) {
        if self.config.peering.unicast != PeerTransport::Associations
            || !out
                .iter()
                .any(|a| matches!(a, Action::PeerSend { to, .. } if !to.ip().is_multicast()))
        {
            return;
        }
        let actions = std::mem::take(out);
        out.reserve(actions.len());
        for a in actions {
            match a {
                Action::PeerSend { to, message, bytes } if !to.ip().is_multicast() => {
                    self.send_to_peer(to, message, bytes, out)
                }
                other => out.push(other),
            }
        }
    }

    fn send_to_peer(
        &mut self,
        to: SocketAddr,
        message: Message,
        bytes: Bytes,
        out: &mut Vec<Action>,
    ) {
        if let Some(&assoc) = self.links.by_addr.get(&to) {
            out.push(Action::Send {
                assoc,
                protocol: Protocol::Enrp,
                name: message.tshark_name(),
                bytes,
            });
            return;
        }
        if let Some(id) = self.links.connecting.get(&to) {
            if let Some(Pending::Peer { queue, dropped, .. }) = self.links.pending.get_mut(id) {
                if queue.len() < PEER_CONNECT_QUEUE {
                    queue.push((message, bytes));
                } else {
                    *dropped += 1;
                    out.push(Action::Event(Event::PeerMessageDropped {
                        to,
                        message: message.name(),
                        reason: "connect queue full",
                    }));
                }
            }
            return;
        }
        if !self.may_open() {
            out.push(Action::Event(Event::PeerMessageDropped {
                to,
                message: message.name(),
                reason: "too many associations",
            }));
            return;
        }
        let assoc = self.allocate_assoc();
        self.links.connecting.insert(to, assoc);
        self.links.pending.insert(
            assoc,
            Pending::Peer {
                to,
                queue: vec![(message, bytes)],
                dropped: 0,
            },
        );
        out.push(Action::Connect {
            assoc,
            protocol: Protocol::Enrp,
            transport: None,
            to: vec![to],
            timeout: PEER_CONNECT_TIMEOUT,
            purpose: ConnectPurpose::Peer,
        });
    }

    /// Takeover (RFC 5353 §3.6): opens one association to the ASAP transport shared by
    /// `pes` (all ours, bound to no association); on `Connected` they are bound to it and
    /// probed ([`Self::on_adopted`](super::Registrar)). False when there is nothing to
    /// connect to or no association may be opened (the caller reports it).
    /// `suggestion`: the association follows a takeover suggestion (HANDLE_UPDATE T bit,
    /// [`Self::on_suggestion_link`](super::Registrar)) instead of a takeover.
    pub(super) fn connect_adopted(
        &mut self,
        transport: &TransportParameter,
        pes: Vec<PeKey>,
        suggestion: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), &'static str> {
        let Some((kind, to)) = adopt_target(transport) else {
            return Err("adopted PE without a usable ASAP transport");
        };
        if !self.may_open() {
            return Err("too many associations");
        }
        let assoc = self.allocate_assoc();
        // Connect within the keep-alive timeout: a PE not reached by then is removed anyway.
        let timeout = self
            .config
            .keep_alive_timeout
            .min(PEER_CONNECT_TIMEOUT)
            .max(Duration::from_millis(100));
        let pending = if suggestion {
            Pending::Suggest { pes: pes.clone() }
        } else {
            Pending::Adopt { pes: pes.clone() }
        };
        self.links.pending.insert(assoc, pending);
        out.push(Action::Connect {
            assoc,
            protocol: Protocol::Asap,
            transport: Some(kind),
            to,
            timeout,
            purpose: ConnectPurpose::Adopt { pes },
        });
        Ok(())
    }

    /// A new association is up (accepted or ours): map an ENRP one to its peer addresses;
    /// for ours, flush the messages that waited or bind the adopted PEs.
    pub(super) fn link_up(
        &mut self,
        now: std::time::Instant,
        assoc: AssocId,
        protocol: Protocol,
        peer_addrs: &[SocketAddr],
        out: &mut Vec<Action>,
    ) {
        if protocol == Protocol::Enrp {
            for a in peer_addrs {
                self.links.by_addr.insert(*a, assoc);
            }
            self.links.up_at.insert(assoc, now);
        }
        match self.links.pending.remove(&assoc) {
            Some(Pending::Peer { to, queue, .. }) => {
                if self.links.connecting.get(&to) == Some(&assoc) {
                    self.links.connecting.remove(&to);
                }
                self.links.by_addr.insert(to, assoc);
                for (message, bytes) in queue {
                    out.push(Action::Send {
                        assoc,
                        protocol: Protocol::Enrp,
                        name: message.tshark_name(),
                        bytes,
                    });
                }
            }
            Some(Pending::Adopt { pes }) => self.on_adopted(now, assoc, pes, out),
            Some(Pending::Suggest { pes }) => self.on_suggestion_link(now, assoc, pes, out),
            None => {}
        }
    }

    /// An association we asked for could not be opened.
    pub(super) fn connect_failed(&mut self, assoc: AssocId, out: &mut Vec<Action>) {
        match self.links.pending.remove(&assoc) {
            Some(Pending::Peer {
                to, queue, dropped, ..
            }) => {
                if self.links.connecting.get(&to) == Some(&assoc) {
                    self.links.connecting.remove(&to);
                }
                out.push(Action::Event(Event::PeerConnectFailed {
                    to,
                    dropped: queue.len() + dropped,
                }));
            }
            // verify_adopted removes the PEs after the keep-alive timeout.
            Some(Pending::Adopt { pes }) => out.push(Action::Event(Event::AdoptionFailed {
                assoc: Some(assoc),
                pes: pes.len(),
                reason: "ASAP transport unreachable",
            })),
            Some(Pending::Suggest { pes }) => out.push(Action::Event(Event::AdoptionFailed {
                assoc: Some(assoc),
                pes: pes.len(),
                reason: "takeover suggestion: ASAP transport unreachable",
            })),
            None => out.push(Action::Event(Event::Ignored {
                assoc: Some(assoc),
                message: "connect",
                reason: "connect failure for an association not asked for",
            })),
        }
    }

    /// An association is gone: forget its addresses (a later message reconnects).
    pub(super) fn link_down(&mut self, assoc: AssocId, out: &mut Vec<Action>) {
        if self.links.pending.contains_key(&assoc) {
            // A driver that reports a failed connect as a closed association.
            self.connect_failed(assoc, out);
        }
        self.links.by_addr.retain(|_, a| *a != assoc);
        self.links.up_at.remove(&assoc);
    }

    /// A peer is now addressed by `new` instead of `old` (its messages come over another
    /// association): messages still waiting for a connection to `old` are sent now on the
    /// association to `new`, ahead of anything sent to `new` from here on. Otherwise a
    /// later message (e.g. a DEL_PE) overtakes an earlier one (its ADD_PE) that is flushed
    /// when the connection to `old` comes up — and the peer takes the stale ADD_PE for a
    /// new registration (netns chaos soak).
    pub(super) fn reroute_pending(
        &mut self,
        old: SocketAddr,
        new: SocketAddr,
        out: &mut Vec<Action>,
    ) {
        if old == new || self.config.peering.unicast != PeerTransport::Associations {
            return;
        }
        let Some(&assoc) = self.links.by_addr.get(&new) else {
            return;
        };
        let Some(id) = self.links.connecting.get(&old).copied() else {
            return;
        };
        if let Some(Pending::Peer { queue, .. }) = self.links.pending.get_mut(&id) {
            for (message, bytes) in std::mem::take(queue) {
                out.push(Action::Send {
                    assoc,
                    protocol: Protocol::Enrp,
                    name: message.tshark_name(),
                    bytes,
                });
            }
        }
    }

    /// When ENRP association `assoc` came up (`None`: not an ENRP association up now).
    pub(super) fn enrp_link_up_at(&self, assoc: AssocId) -> Option<std::time::Instant> {
        self.links.up_at.get(&assoc).copied()
    }

    /// When the oldest ENRP association up now came up.
    pub(super) fn oldest_enrp_link(&self) -> Option<std::time::Instant> {
        self.links.up_at.values().min().copied()
    }

    /// A peer declared dead: closes every ENRP association it was heard on (`links`) and
    /// the one we use for its address `peer`, and drops the messages waiting for a
    /// connection to that address. Its association is useless, a restarted peer is reached
    /// over a new one — and nothing it sent or we queued before it was declared dead may
    /// arrive later: after a partition heals, TCP / SCTP would deliver what was queued while
    /// cut off (e.g. the ADD_PE of a PE that has registered here since), which the peer's
    /// audit after it is found again supersedes (PEERING.md "Ownership conflicts"). The core
    /// forgets a closed association at once, so a message still read from it is not a peer
    /// message any more.
    pub(super) fn close_peer_links(
        &mut self,
        peer: SocketAddr,
        links: &std::collections::BTreeSet<AssocId>,
        out: &mut Vec<Action>,
    ) {
        if self.config.peering.unicast != PeerTransport::Associations {
            return;
        }
        let mut close: std::collections::BTreeSet<AssocId> = links
            .iter()
            .copied()
            .filter(|a| self.assocs.contains_key(a))
            .collect();
        close.extend(self.links.by_addr.get(&peer).copied());
        for assoc in close {
            out.push(Action::Close {
                assoc,
                reason: "peer registrar presumed dead",
            });
        }
        if let Some(id) = self.links.connecting.get(&peer).copied() {
            if let Some(Pending::Peer { queue, dropped, .. }) = self.links.pending.get_mut(&id) {
                *dropped += queue.len();
                queue.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use asap::wire::enrp_msg::Presence;
    use asap::wire::{EnrpMessage, Message, Protocol};
    use rserpool_tests::enrp_msgs::presence;

    use super::*;
    use crate::core::{CoreConfig, Input, PeerAllow};

    const ME: u32 = 5;

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 9901))
    }

    /// A peering registrar with static peers 7 and 9 over associations (the default).
    fn reg() -> (Registrar, Instant) {
        let now = Instant::now();
        let mut c = CoreConfig::new(ME);
        c.peering.enabled = true;
        c.peers = vec![peer(7), peer(9)];
        c.security.peer_allow = vec![PeerAllow::Net("127.0.0.0/8".parse().expect("lit"))];
        (Registrar::new(c, now), now)
    }

    fn connects(out: &[Action]) -> Vec<(AssocId, Vec<SocketAddr>)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Connect {
                    assoc,
                    protocol: Protocol::Enrp,
                    to,
                    purpose: ConnectPurpose::Peer,
                    ..
                } => Some((*assoc, to.clone())),
                _ => None,
            })
            .collect()
    }

    /// ENRP messages sent on associations: (assoc, message).
    fn on_assoc(out: &[Action]) -> Vec<(AssocId, EnrpMessage)> {
        out.iter()
            .filter_map(|a| match a.sent() {
                Some((assoc, Message::Enrp(m))) => Some((assoc, m)),
                _ => None,
            })
            .collect()
    }

    /// A PRESENCE from 7 that asks for a reply.
    fn asking_presence_of_7() -> Message {
        Presence {
            reply_required: true,
            ..presence(7, 0)
        }
        .into()
    }

    /// The first heartbeat asks the static peers for PRESENCE: one Connect each, no
    /// datagram; the messages wait and go out in order when the association is up; later
    /// messages go straight onto it.
    #[test]
    fn peer_messages_connect_once_wait_and_flush_in_order() {
        let (mut r, now) = reg();
        let out = r.handle_timeout(now);
        let c = connects(&out);
        assert_eq!(
            c.iter().map(|x| x.1.clone()).collect::<Vec<_>>(),
            vec![vec![peer(7)], vec![peer(9)]]
        );
        assert!(!out
            .iter()
            .any(|a| matches!(a, Action::PeerSend { to, .. } if !to.ip().is_multicast())));
        assert!(on_assoc(&out).is_empty());
        assert_eq!(r.peer_queue_len(peer(7)), 1);
        // Next heartbeat: still connecting, no second Connect, the message is queued.
        let t = now + Duration::from_secs(3);
        let out = r.handle_timeout(t);
        assert!(connects(&out).is_empty());
        assert_eq!(r.peer_queue_len(peer(7)), 2);
        let (a7, _) = c[0];
        let out = r.handle(
            t,
            Input::connected(a7, Protocol::Enrp, peer(7), TransportKind::Sctp),
        );
        let sent = on_assoc(&out);
        assert_eq!(sent.len(), 2);
        assert!(sent
            .iter()
            .all(|(a, m)| *a == a7 && matches!(m, EnrpMessage::Presence(p) if p.reply_required)));
        assert_eq!(r.peer_association(peer(7)), Some(a7));
        assert_eq!(r.peer_queue_len(peer(7)), 0);
        // A PRESENCE from 7 on it makes 7 a peer; the answers go over the same association.
        let p = asking_presence_of_7();
        let out = r.handle_message(t, a7, &p);
        let sent = on_assoc(&out);
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|(a, _)| *a == a7));
        assert!(connects(&out).is_empty());
    }

    /// At most PEER_CONNECT_QUEUE messages wait for an association; the rest are dropped
    /// and reported, and exactly the queued ones go out when it is up.
    #[test]
    fn connect_queue_is_bounded() {
        let (mut r, now) = reg();
        let out = r.handle_timeout(now);
        let (a7, _) = connects(&out)[0].clone();
        let mut dropped = 0;
        let mut t = now;
        for _ in 0..PEER_CONNECT_QUEUE + 10 {
            t += Duration::from_secs(3);
            let out = r.handle_timeout(t);
            dropped += out
                .iter()
                .filter(|a| {
                    matches!(a, Action::Event(Event::PeerMessageDropped { to, .. }) if *to == peer(7))
                })
                .count();
        }
        assert_eq!(r.peer_queue_len(peer(7)), PEER_CONNECT_QUEUE);
        assert_eq!(
            dropped, 11,
            "one queued at the connect, then 266 heartbeats"
        );
        let out = r.handle(
            t,
            Input::connected(a7, Protocol::Enrp, peer(7), TransportKind::Sctp),
        );
        assert_eq!(on_assoc(&out).len(), PEER_CONNECT_QUEUE);
    }

    /// A failed connect drops what waited (reported with the count); the next message
    /// connects again, under a new ID.
    #[test]
    fn failed_connect_drops_the_queue_and_the_next_message_retries() {
        let (mut r, now) = reg();
        let out = r.handle_timeout(now);
        let (a7, _) = connects(&out)[0].clone();
        let t = now + Duration::from_secs(3);
        r.handle_timeout(t);
        let out = r.handle(t, Input::ConnectFailed { assoc: a7 });
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Event(Event::PeerConnectFailed { to, dropped: 2 }) if *to == peer(7)
        )));
        assert_eq!(r.peer_queue_len(peer(7)), 0);
        let out = r.handle_timeout(t + Duration::from_secs(3));
        let again: Vec<_> = connects(&out)
            .into_iter()
            .filter(|c| c.1 == vec![peer(7)])
            .collect();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].0, a7);
    }

    /// Associations the core opens are limited by max_associations (accepted ones count).
    #[test]
    fn no_connect_beyond_max_associations() {
        let (mut r, now) = reg();
        r.config.max_associations = 1;
        let out = r.handle_timeout(now);
        assert_eq!(connects(&out).len(), 1);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Event(Event::PeerMessageDropped {
                reason: "too many associations",
                ..
            })
        )));
    }

    /// An association that goes away is forgotten for its addresses: the next message
    /// connects again. A peer declared dead gets its association closed.
    #[test]
    fn lost_association_reconnects_and_dead_peer_is_closed() {
        let (mut r, now) = reg();
        let out = r.handle_timeout(now);
        let (a7, _) = connects(&out)[0].clone();
        r.handle(
            now,
            Input::connected(a7, Protocol::Enrp, peer(7), TransportKind::Sctp),
        );
        r.handle(now, Input::Disconnected { assoc: a7 });
        assert_eq!(r.peer_association(peer(7)), None);
        let out = r.handle_timeout(now + Duration::from_secs(3));
        let (b7, _) = connects(&out)
            .into_iter()
            .find(|c| c.1 == vec![peer(7)])
            .expect("reconnect");
        let t = now + Duration::from_secs(3);
        r.handle(
            t,
            Input::connected(b7, Protocol::Enrp, peer(7), TransportKind::Sctp),
        );
        let p: Message = Presence {
            reply_required: false,
            sender: 7,
            receiver: 0,
            checksum: 0,
            server_information: None,
        }
        .into();
        r.handle_message(t, b7, &p);
        assert!(r.peers().contains_key(&7));
        // Silent: probed after MAX-TIME-LAST-HEARD, dead after MAX-TIME-NO-RESPONSE.
        let mut closed = false;
        let mut at = t;
        for _ in 0..20 {
            at += Duration::from_secs(1);
            let out = r.handle_timeout(at);
            closed |= out
                .iter()
                .any(|a| matches!(a, Action::Close { assoc, .. } if *assoc == b7));
        }
        assert!(!r.peers().contains_key(&7));
        assert!(closed, "the dead peer's association is closed");
        assert_eq!(r.association(b7), None, "and forgotten by the core");
        assert_eq!(r.peer_association(peer(7)), None);
    }

    /// An accepted ENRP association is used for replies to its remote address.
    #[test]
    fn accepted_enrp_association_carries_replies() {
        let (mut r, now) = reg();
        let from = SocketAddr::from(([127, 0, 0, 7], 40_123));
        r.handle(
            now,
            Input::connected(3, Protocol::Enrp, from, TransportKind::Tcp),
        );
        let p = asking_presence_of_7();
        let out = r.handle_message(now, 3, &p);
        let sent = on_assoc(&out);
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|(a, _)| *a == 3));
        assert!(connects(&out).iter().all(|c| c.1 != vec![from]));
    }
}
