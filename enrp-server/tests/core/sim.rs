//! Deterministic simulation of an ENRP operational scope: several sans-I/O registrar cores,
//! simulated PEs and a simulated network with a virtual clock that can drop, delay,
//! partition (ENRP traffic between registrar groups) and kill (registrars and PEs).
//!
//! Everything is driven by one seeded random generator, so a seed reproduces a run exactly.
//!
//! Unicast ENRP goes over simulated associations like in the real driver (RFC 5353 §2,
//! `enrp_server::core::links`): a registrar's [`Action::Connect`] to a peer address is
//! answered after [`SimConfig::connect_delay`] with `Connected` on both sides (the
//! accepting side sees an ephemeral source port) or `ConnectFailed` (dead or partitioned
//! target); messages on an association arrive in order; killing a registrar closes its
//! associations (the other side gets `Disconnected`). Takeover probes connect to the
//! adopted PE's ASAP transport the same way. Multicast PRESENCE stays a datagram.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use asap::transport::TransportKind;
use asap::wire::asap_msg::{EndpointKeepAliveAck, Registration};
use asap::wire::{
    AsapMessage, EnrpMessage, Message, PeIdentifier, Policy, PoolElementInfo, PoolHandle, Protocol,
    ServerId, TransportParameter, TransportUse,
};
use bytes::Bytes;
use enrp_server::core::{
    Action, AssocId, ConnectPurpose, CoreConfig, Event, Input, PeerAllow, PeerTransport,
    PeeringConfig, Registrar,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The PRESENCE multicast group of the simulated scope.
pub const GROUP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 51)), 9901);

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Registrar slots (addresses 127.0.1.x:9901).
    pub registrars: usize,
    /// PEs.
    pub pes: usize,
    /// Pools the PEs are spread over.
    pub pools: usize,
    /// PE registration life (ms).
    pub pe_life_ms: i32,
    /// PE re-registration interval.
    pub pe_rereg: Duration,
    /// Probability that an ENRP datagram is lost while chaos is on.
    pub drop: f64,
    /// Handle table chunk size.
    pub chunk: usize,
    /// How unicast ENRP travels (associations like the real driver, or datagrams).
    pub unicast: PeerTransport,
    /// Time an association takes to come up (µs, uniform in the range).
    pub connect_delay: (u64, u64),
}

impl SimConfig {
    /// The default set-up with `registrars` registrar slots and `pes` PEs.
    pub fn cluster(registrars: usize, pes: usize) -> SimConfig {
        SimConfig {
            registrars,
            pes,
            ..SimConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            registrars: 5,
            pes: 1000,
            pools: 10,
            pe_life_ms: 30_000,
            pe_rereg: Duration::from_secs(10),
            drop: 0.02,
            chunk: 128,
            unicast: PeerTransport::Associations,
            connect_delay: (500, 3000),
        }
    }
}

/// A registrar slot: one address, successive incarnations (new server ID each time).
pub struct Slot {
    pub reg: Option<Registrar>,
    pub addr: SocketAddr,
    pub incarnation: u32,
    /// ENRP partition group: datagrams pass only within one group.
    pub group: u8,
}

/// A simulated pool element.
pub struct Pe {
    pub handle: PoolHandle,
    pub id: PeIdentifier,
    pub alive: bool,
    /// Current association (to a slot).
    pub assoc: Option<AssocId>,
    /// Slot where the last registration was accepted.
    pub registered_at: Option<usize>,
    pub next_rereg: Instant,
}

enum Ev {
    /// ENRP datagram to a slot.
    Datagram {
        slot: usize,
        from: SocketAddr,
        bytes: Bytes,
    },
    /// ASAP message from a registrar to a PE over an association.
    ToPe { assoc: AssocId, message: Message },
    /// ASAP message from a PE to its registrar.
    ToReg { assoc: AssocId, bytes: Bytes },
    /// A registrar's association to a peer address comes up (or fails).
    PeerConnect {
        slot: usize,
        incarnation: u32,
        assoc: AssocId,
        to: SocketAddr,
    },
    /// ENRP message arriving on the receiving end `assoc` of a peer association.
    PeerMsg { assoc: AssocId, bytes: Bytes },
    /// A takeover's association to an adopted PE's ASAP transport comes up (or fails).
    AdoptConnect {
        slot: usize,
        incarnation: u32,
        assoc: AssocId,
        pe: Option<usize>,
    },
    /// A PE's re-registration timer.
    Rereg { pe: usize },
}

/// One end of an ENRP association between two registrars.
#[derive(Clone, Copy)]
struct PeerEnd {
    slot: usize,
    incarnation: u32,
    /// The other end's ID.
    remote: AssocId,
    /// Messages sent from this end arrive in order: not before this.
    next_arrival: Instant,
}

#[derive(Clone, Copy)]
struct AssocInfo {
    pe: usize,
    slot: usize,
    incarnation: u32,
}

/// The simulated world.
pub struct Sim {
    pub cfg: SimConfig,
    pub rng: StdRng,
    pub t0: Instant,
    pub now: Instant,
    pub slots: Vec<Slot>,
    pub pes: Vec<Pe>,
    assocs: HashMap<AssocId, AssocInfo>,
    /// ENRP associations between registrars, by the ID each end has in its registrar.
    peer_links: HashMap<AssocId, PeerEnd>,
    next_assoc: AssocId,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Ev>,
    seq: u64,
    pub chaos: bool,
    /// Counters: ENRP datagrams delivered / dropped, takeovers completed.
    pub enrp_sent: u64,
    pub enrp_bytes: u64,
    pub enrp_dropped: u64,
    pub takeovers_done: u64,
    /// HANDLE_UPDATEs sent between registrars, per PE identifier (storm detection).
    pub updates: HashMap<PeIdentifier, u64>,
    /// REGISTRATIONs sent by PEs, per PE identifier.
    pub registrations: HashMap<PeIdentifier, u64>,
    /// Log of (time since start, slot, event) for the interesting peering events.
    pub log: Vec<(Duration, usize, Event)>,
    /// Peer associations that came up / could not be opened.
    pub peer_connects: u64,
    pub peer_connect_failures: u64,
    /// Peer messages the registrars dropped before an association was up (queue full).
    pub peer_dropped: u64,
    /// Most ENRP messages one registrar sent on a peer association the moment it came up
    /// (its connect queue).
    pub max_connect_flush: usize,
    /// Associations opened to adopted PEs (takeover probes) that came up.
    pub adopt_connects: u64,
}

fn pe_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1))
}

impl Sim {
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let t0 = Instant::now();
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            t0,
            now: t0,
            slots: Vec::new(),
            pes: Vec::new(),
            assocs: HashMap::new(),
            peer_links: HashMap::new(),
            next_assoc: 1,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            chaos: false,
            enrp_sent: 0,
            enrp_bytes: 0,
            enrp_dropped: 0,
            takeovers_done: 0,
            updates: HashMap::new(),
            registrations: HashMap::new(),
            log: Vec::new(),
            peer_connects: 0,
            peer_connect_failures: 0,
            peer_dropped: 0,
            max_connect_flush: 0,
            adopt_connects: 0,
            cfg,
        };
        for i in 0..sim.cfg.registrars {
            sim.slots.push(Slot {
                reg: None,
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, i as u8 + 1)), 9901),
                incarnation: 0,
                group: 0,
            });
            sim.start(i);
        }
        for i in 0..sim.cfg.pes {
            let handle = PoolHandle::from(format!("Pool{}", i % sim.cfg.pools).as_str());
            let first = sim.now + Duration::from_millis(sim.rng.gen_range(6000..8000));
            sim.pes.push(Pe {
                handle,
                id: 0x1000_0000 + i as u32,
                alive: true,
                assoc: None,
                registered_at: None,
                next_rereg: first,
            });
            sim.schedule(first, Ev::Rereg { pe: i });
        }
        sim
    }

    /// Core configuration of a registrar in the simulation.
    pub fn core_config(&mut self, slot: usize) -> CoreConfig {
        let id: ServerId = self.rng.gen_range(1..u32::MAX);
        let mut c = CoreConfig::new(id);
        c.seed = self.rng.gen();
        c.handle_table_chunk = self.cfg.chunk;
        c.peers = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != slot)
            .map(|(_, s)| s.addr)
            .collect();
        c.peering = PeeringConfig {
            enabled: true,
            multicast: Some(GROUP),
            unicast: self.cfg.unicast,
            ..PeeringConfig::default()
        };
        // Associations this registrar opens get IDs of their own (per slot and incarnation),
        // distinct from the simulator's accepted ones and from every other registrar's.
        c.first_outgoing_assoc =
            (1 << 63) | ((slot as u64) << 40) | (u64::from(self.slots[slot].incarnation + 1) << 32);
        // Registrars started before the others exist find them by multicast: the scope's
        // network is allowed (issue 13 peer admission).
        c.security.peer_allow = vec![PeerAllow::Net("127.0.1.0/24".parse().expect("lit"))];
        // The simulated PEs live on 127.1.0.0/16: takeovers may probe them.
        c.security.takeover_scope = vec!["127.0.0.0/8".parse().expect("lit")];
        c
    }

    /// (Re)starts the registrar in a slot with a new server ID and an empty handlespace.
    pub fn start(&mut self, slot: usize) {
        if self.slots[slot].reg.is_some() {
            self.kill(slot);
        }
        let c = self.core_config(slot);
        self.slots[slot].incarnation += 1;
        self.slots[slot].reg = Some(Registrar::new(c, self.now));
    }

    /// The owner of PE `pe` (index) in the handlespace of the registrar in `slot`.
    pub fn owner_at(&self, slot: usize, pe: usize) -> ServerId {
        self.reg(slot)
            .handlespace()
            .get(&self.pes[pe].handle, self.pes[pe].id)
            .expect("known everywhere")
            .owner()
    }

    /// Kills the registrar in a slot: its associations die with it.
    pub fn kill(&mut self, slot: usize) {
        self.slots[slot].reg = None;
        self.slots[slot].incarnation += 1;
        self.assocs.retain(|_, a| a.slot != slot);
        // Its peer associations die with it: the other ends learn it.
        let ends: Vec<AssocId> = self
            .peer_links
            .iter()
            .filter(|(_, e)| e.slot == slot)
            .map(|(id, _)| *id)
            .collect();
        for a in ends {
            self.peer_link_lost(a);
        }
    }

    /// Kills a random live registrar, if more than two run; returns its slot.
    pub fn kill_random(&mut self) -> Option<usize> {
        let live = self.live_slots();
        if live.len() <= 2 {
            return None;
        }
        let s = live[self.rng.gen_range(0..live.len())];
        self.kill(s);
        Some(s)
    }

    /// Starts a random dead registrar, if any; returns its slot.
    pub fn start_random(&mut self) -> Option<usize> {
        let dead: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].reg.is_none())
            .collect();
        if dead.is_empty() {
            return None;
        }
        let s = dead[self.rng.gen_range(0..dead.len())];
        self.start(s);
        Some(s)
    }

    /// Puts every slot into a random one of two partition groups.
    pub fn partition_randomly(&mut self) {
        for i in 0..self.slots.len() {
            self.slots[i].group = self.rng.gen_range(0..2);
        }
    }

    /// Ends every partition (all slots in group 0).
    pub fn heal_partition(&mut self) {
        for s in &mut self.slots {
            s.group = 0;
        }
    }

    /// The network resets every peer association between slots `a` and `b` (both
    /// registrars see `Disconnected`).
    pub fn sever(&mut self, a: usize, b: usize) {
        let ends: Vec<AssocId> = self
            .peer_links
            .iter()
            .filter(|(_, e)| {
                e.slot == a && self.peer_links.get(&e.remote).is_some_and(|o| o.slot == b)
            })
            .map(|(id, _)| *id)
            .collect();
        for end in ends {
            let Some(e) = self.peer_links.get(&end).copied() else {
                continue;
            };
            if self.slots[e.slot].incarnation == e.incarnation {
                self.input(e.slot, Input::Disconnected { assoc: end });
            }
            self.peer_link_lost(end);
        }
    }

    /// Peer associations up now (each counted once).
    pub fn peer_links_up(&self) -> usize {
        self.peer_links.len() / 2
    }

    /// Removes the peer association whose end `assoc` is gone; the other end's registrar
    /// gets `Disconnected` (the end that went away, if alive, has forgotten it already).
    fn peer_link_lost(&mut self, assoc: AssocId) {
        let Some(end) = self.peer_links.remove(&assoc) else {
            return;
        };
        if let Some(other) = self.peer_links.remove(&end.remote) {
            if self.slots[other.slot].incarnation == other.incarnation {
                self.input(other.slot, Input::Disconnected { assoc: end.remote });
            }
        }
    }

    pub fn live_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].reg.is_some())
            .collect()
    }

    pub fn reg(&self, slot: usize) -> &Registrar {
        self.slots[slot].reg.as_ref().expect("live registrar")
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn delay(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(self.rng.gen_range(lo..hi))
    }

    /// Runs the world until `until` (absolute virtual time).
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next_ev = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.reg
                        .as_ref()
                        .and_then(|r| r.poll_timeout())
                        .map(|t| (t, i))
                })
                .min();
            let take_timer = match (next_ev, next_timer) {
                (None, None) => break,
                (Some(e), Some((t, _))) => t < e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if take_timer {
                let Some((t, slot)) = next_timer else { break };
                if t > until {
                    break;
                }
                self.now = self.now.max(t);
                let now = self.now;
                let out = self.slots[slot]
                    .reg
                    .as_mut()
                    .map(|r| r.handle_timeout(now))
                    .unwrap_or_default();
                self.apply(slot, out);
            } else {
                let Some(Reverse((t, seq))) = self.queue.pop() else {
                    break;
                };
                if t > until {
                    self.queue.push(Reverse((t, seq)));
                    break;
                }
                self.now = self.now.max(t);
                if let Some(ev) = self.events.remove(&seq) {
                    self.dispatch(ev);
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn input(&mut self, slot: usize, input: Input) {
        let now = self.now;
        let out = match self.slots[slot].reg.as_mut() {
            Some(r) => r.handle(now, input),
            None => return,
        };
        self.apply(slot, out);
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Datagram { slot, from, bytes } => self.input(
                slot,
                Input::Datagram {
                    from,
                    protocol: Protocol::Enrp,
                    bytes,
                },
            ),
            Ev::ToReg { assoc, bytes } => {
                if let Some(a) = self.assocs.get(&assoc).copied() {
                    if self.slots[a.slot].incarnation == a.incarnation {
                        self.input(
                            a.slot,
                            Input::Message {
                                assoc,
                                protocol: Protocol::Asap,
                                bytes,
                            },
                        );
                    }
                }
            }
            Ev::ToPe { assoc, message } => {
                let Some(a) = self.assocs.get(&assoc).copied() else {
                    return;
                };
                let pe = a.pe;
                if !self.pes[pe].alive || self.pes[pe].assoc != Some(assoc) {
                    return;
                }
                match message {
                    Message::Asap(AsapMessage::EndpointKeepAlive(k)) => {
                        let ack: Message = EndpointKeepAliveAck {
                            pool_handle: k.pool_handle,
                            pe_identifier: self.pes[pe].id,
                        }
                        .into();
                        self.pe_send(assoc, &ack);
                        if k.home {
                            // The sender is the new home (RFC 5352 §3): the PE re-registers
                            // there (rsplib and asap::pe do at once).
                            self.pe_register(pe);
                        }
                    }
                    Message::Asap(AsapMessage::RegistrationResponse(r)) if !r.reject => {
                        self.pes[pe].registered_at = Some(a.slot);
                    }
                    _ => {}
                }
            }
            Ev::PeerConnect {
                slot,
                incarnation,
                assoc,
                to,
            } => {
                if !self.runs(slot, incarnation) {
                    return;
                }
                let target = (0..self.slots.len()).find(|t| {
                    self.slots[*t].addr == to
                        && self.slots[*t].reg.is_some()
                        && self.slots[*t].group == self.slots[slot].group
                });
                let Some(t) = target else {
                    self.peer_connect_failures += 1;
                    self.input(slot, Input::ConnectFailed { assoc });
                    return;
                };
                self.peer_connects += 1;
                let accepted = self.next_assoc;
                self.next_assoc += 1;
                let now = self.now;
                self.peer_links.insert(
                    assoc,
                    PeerEnd {
                        slot,
                        incarnation,
                        remote: accepted,
                        next_arrival: now,
                    },
                );
                self.peer_links.insert(
                    accepted,
                    PeerEnd {
                        slot: t,
                        incarnation: self.slots[t].incarnation,
                        remote: assoc,
                        next_arrival: now,
                    },
                );
                // The accepting side sees the connection's ephemeral source port.
                let from = SocketAddr::new(
                    self.slots[slot].addr.ip(),
                    40_000 + (accepted % 20_000) as u16,
                );
                self.input(
                    t,
                    Input::Connected {
                        assoc: accepted,
                        protocol: Protocol::Enrp,
                        peer_addrs: vec![from],
                        transport: TransportKind::Sctp,
                    },
                );
                self.input(
                    slot,
                    Input::Connected {
                        assoc,
                        protocol: Protocol::Enrp,
                        peer_addrs: vec![to],
                        transport: TransportKind::Sctp,
                    },
                );
            }
            Ev::PeerMsg { assoc, bytes } => {
                let Some(end) = self.peer_links.get(&assoc).copied() else {
                    return;
                };
                if self.slots[end.slot].incarnation == end.incarnation {
                    self.input(
                        end.slot,
                        Input::Message {
                            assoc,
                            protocol: Protocol::Enrp,
                            bytes,
                        },
                    );
                }
            }
            Ev::AdoptConnect {
                slot,
                incarnation,
                assoc,
                pe,
            } => {
                if !self.runs(slot, incarnation) {
                    return;
                }
                let Some(pe) = pe.filter(|p| self.pes[*p].alive) else {
                    self.input(slot, Input::ConnectFailed { assoc });
                    return;
                };
                // The registrar connected to the PE's ASAP transport (Action::Connect): the
                // core binds the PE to the association and sends the H-flag keep-alive; the
                // PE answers and re-registers there (ToPe). The PE drops its old one.
                self.adopt_connects += 1;
                self.pe_drop_assoc(pe);
                self.pe_attach(pe, slot, assoc, incarnation);
            }
            Ev::Rereg { pe } => {
                if !self.pes[pe].alive {
                    return;
                }
                let valid = self.pes[pe]
                    .assoc
                    .and_then(|a| self.assocs.get(&a))
                    .is_some_and(|a| self.slots[a.slot].incarnation == a.incarnation);
                if !valid {
                    // Server hunt: any live registrar.
                    let live = self.live_slots();
                    if !live.is_empty() {
                        let s = live[self.rng.gen_range(0..live.len())];
                        self.pe_connect(pe, s);
                    }
                }
                self.pe_register(pe);
                let next = self.now + self.cfg.pe_rereg;
                self.pes[pe].next_rereg = next;
                self.schedule(next, Ev::Rereg { pe });
            }
        }
    }

    /// Adds a PE with a given identifier (e.g. one already used by another PE of the same
    /// pool) that registers at `slot` now and re-registers every `pe_rereg`; its index.
    pub fn add_pe(&mut self, handle: PoolHandle, id: PeIdentifier, slot: usize) -> usize {
        let pe = self.pes.len();
        let next = self.now + self.cfg.pe_rereg;
        self.pes.push(Pe {
            handle,
            id,
            alive: true,
            assoc: None,
            registered_at: None,
            next_rereg: next,
        });
        self.pe_connect(pe, slot);
        self.pe_register(pe);
        self.schedule(next, Ev::Rereg { pe });
        pe
    }

    /// The PE registers at `slot` over a new association. With `close_old` false its old
    /// association stays open on the old registrar's side (the PE just stops using it, as
    /// when it moves before the old association fails), else it is closed first.
    pub fn pe_move(&mut self, pe: usize, slot: usize, close_old: bool) {
        if !close_old {
            self.pes[pe].assoc = None;
        }
        self.pe_connect(pe, slot);
        self.pe_register(pe);
    }

    /// A pool user resolves `handle` at the registrar in `slot` (all PEs, over a fresh
    /// association, answered at once): the number of PEs returned, `None` for an error
    /// answer or a dead registrar.
    pub fn pu_resolve(&mut self, slot: usize, handle: &PoolHandle) -> Option<usize> {
        let now = self.now;
        let assoc: AssocId = (1 << 40) + self.seq;
        self.seq += 1;
        let r = self.slots[slot].reg.as_mut()?;
        r.handle(
            now,
            Input::Connected {
                assoc,
                protocol: Protocol::Asap,
                peer_addrs: vec![SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)),
                    5000,
                )],
                transport: TransportKind::Sctp,
            },
        );
        let mut m = asap::wire::asap_msg::HandleResolution::new(handle.clone());
        m.option = Some(asap::wire::HandleResolutionOption {
            items: asap::wire::HandleResolutionOption::ALL,
        });
        let out = r.handle_message(now, assoc, &m.into());
        r.handle(now, Input::Disconnected { assoc });
        out.into_iter().find_map(|a| match a.sent() {
            Some((_, Message::Asap(AsapMessage::HandleResolutionResponse(h)))) => {
                h.error.is_none().then_some(h.pool_elements.len())
            }
            _ => None,
        })
    }

    /// The PE closes its association (the registrar sees `Disconnected`).
    fn pe_drop_assoc(&mut self, pe: usize) {
        if let Some(old) = self.pes[pe].assoc.take() {
            if let Some(a) = self.assocs.remove(&old) {
                if self.slots[a.slot].incarnation == a.incarnation {
                    self.input(a.slot, Input::Disconnected { assoc: old });
                }
            }
        }
        self.pes[pe].registered_at = None;
    }

    fn pe_connect(&mut self, pe: usize, slot: usize) {
        self.pe_drop_assoc(pe);
        let assoc = self.next_assoc;
        self.next_assoc += 1;
        self.pe_attach(pe, slot, assoc, self.slots[slot].incarnation);
    }

    /// PE `pe` is on association `assoc` to slot `slot` (of `incarnation`), and the
    /// registrar is told (from the PE's address, port 40000).
    fn pe_attach(&mut self, pe: usize, slot: usize, assoc: AssocId, incarnation: u32) {
        self.assocs.insert(
            assoc,
            AssocInfo {
                pe,
                slot,
                incarnation,
            },
        );
        self.pes[pe].assoc = Some(assoc);
        let at = SocketAddr::new(pe_addr(pe), 40000);
        self.input(
            slot,
            Input::connected(assoc, Protocol::Asap, at, TransportKind::Sctp),
        );
    }

    fn pe_register(&mut self, pe: usize) {
        let Some(assoc) = self.pes[pe].assoc else {
            return;
        };
        *self.registrations.entry(self.pes[pe].id).or_default() += 1;
        let p = &self.pes[pe];
        let m: Message = Registration {
            pool_handle: p.handle.clone(),
            pool_element: PoolElementInfo {
                id: p.id,
                home_server_id: 0,
                registration_life: self.cfg.pe_life_ms,
                user_transport: TransportParameter::Sctp {
                    port: 7,
                    transport_use: TransportUse::DataPlusControl,
                    addresses: vec![pe_addr(pe)],
                },
                policy: Policy::RoundRobin,
                asap_transport: None,
            },
        }
        .into();
        self.pe_send(assoc, &m);
    }

    fn pe_send(&mut self, assoc: AssocId, m: &Message) {
        let bytes = m.to_bytes().expect("PE message encodes");
        let at = self.now + self.delay(100, 5000);
        self.schedule(at, Ev::ToReg { assoc, bytes });
    }

    /// The PE at a simulated address ([`pe_addr`]).
    fn pe_at(&self, ip: IpAddr) -> Option<usize> {
        let IpAddr::V4(v4) = ip else { return None };
        let [a, b, c, d] = v4.octets();
        if a != 127 || b != 1 || d == 0 {
            return None;
        }
        let i = usize::from(c) * 250 + usize::from(d) - 1;
        (i < self.pes.len()).then_some(i)
    }

    /// An ENRP message from `slot` on its end `assoc` of a peer association: delivered in
    /// order after a delay, unless partitioned or lost to chaos.
    /// Whether the registrar of `slot` is up and still the same `incarnation` (an event for
    /// an earlier one is void).
    fn runs(&self, slot: usize, incarnation: u32) -> bool {
        self.slots[slot].incarnation == incarnation && self.slots[slot].reg.is_some()
    }

    /// Counts a HANDLE_UPDATE (per PE) that a registrar sends.
    fn note_update(&mut self, message: &Message) {
        if let Message::Enrp(EnrpMessage::HandleUpdate(u)) = message {
            *self.updates.entry(u.pool_element.id).or_default() += 1;
        }
    }

    /// Whether an ENRP message of `len` bytes from slot `from` reaches slot `to`: not across
    /// a partition and not lost to chaos. Counts it as dropped, or as sent.
    fn enrp_delivered(&mut self, from: usize, to: usize, len: usize) -> bool {
        if self.slots[to].group != self.slots[from].group
            || (self.chaos && self.rng.gen_bool(self.cfg.drop))
        {
            self.enrp_dropped += 1;
            return false;
        }
        self.enrp_sent += 1;
        self.enrp_bytes += len as u64;
        true
    }

    fn peer_msg(&mut self, slot: usize, assoc: AssocId, message: &Message, bytes: Bytes) {
        self.note_update(message);
        let Some(end) = self.peer_links.get(&assoc).copied() else {
            return;
        };
        let Some(other) = self.peer_links.get(&end.remote).copied() else {
            return;
        };
        if !self.enrp_delivered(slot, other.slot, bytes.len()) {
            return;
        }
        let at = (self.now + self.delay(200, 20_000)).max(end.next_arrival);
        if let Some(e) = self.peer_links.get_mut(&assoc) {
            e.next_arrival = at;
        }
        self.schedule(
            at,
            Ev::PeerMsg {
                assoc: end.remote,
                bytes,
            },
        );
    }

    fn apply(&mut self, slot: usize, out: Vec<Action>) {
        // ENRP messages the registrar sent on a peer association the moment it came up.
        let mut flushed: HashMap<AssocId, usize> = HashMap::new();
        for a in out {
            match a {
                Action::Send {
                    assoc,
                    protocol,
                    bytes,
                    ..
                } => {
                    // What the other end will read: the bytes, decoded.
                    let message = Message::decode(protocol, &bytes)
                        .expect("own encoding decodes")
                        .message;
                    if protocol == Protocol::Enrp {
                        *flushed.entry(assoc).or_default() += 1;
                        self.peer_msg(slot, assoc, &message, bytes);
                    } else {
                        let at = self.now + self.delay(100, 5000);
                        self.schedule(at, Ev::ToPe { assoc, message });
                    }
                }
                Action::Abort { assoc, .. } | Action::Close { assoc, .. } => {
                    // The registrar has forgotten the association already.
                    if self.peer_links.contains_key(&assoc) {
                        self.peer_link_lost(assoc);
                    } else if let Some(info) = self.assocs.remove(&assoc) {
                        if self.pes[info.pe].assoc == Some(assoc) {
                            self.pes[info.pe].assoc = None;
                            self.pes[info.pe].registered_at = None;
                        }
                    }
                }
                Action::Connect {
                    assoc,
                    protocol: Protocol::Enrp,
                    to,
                    ..
                } => {
                    let (lo, hi) = self.cfg.connect_delay;
                    let at = self.now + self.delay(lo, hi);
                    let incarnation = self.slots[slot].incarnation;
                    self.schedule(
                        at,
                        Ev::PeerConnect {
                            slot,
                            incarnation,
                            assoc,
                            to: to[0],
                        },
                    );
                }
                Action::Connect {
                    assoc,
                    purpose: ConnectPurpose::Adopt { .. },
                    to,
                    ..
                } => {
                    let pe = to.first().and_then(|a| self.pe_at(a.ip()));
                    let at = self.now + self.delay(100, 5000);
                    let incarnation = self.slots[slot].incarnation;
                    self.schedule(
                        at,
                        Ev::AdoptConnect {
                            slot,
                            incarnation,
                            assoc,
                            pe,
                        },
                    );
                }
                Action::PeerSend { to, bytes, message } => {
                    self.note_update(&message);
                    let from = self.slots[slot].addr;
                    let targets: Vec<usize> = if to == GROUP {
                        (0..self.slots.len()).filter(|i| *i != slot).collect()
                    } else {
                        (0..self.slots.len())
                            .filter(|i| self.slots[*i].addr == to)
                            .collect()
                    };
                    for t in targets {
                        if !self.enrp_delivered(slot, t, bytes.len()) {
                            continue;
                        }
                        let at = self.now + self.delay(200, 20_000);
                        self.schedule(
                            at,
                            Ev::Datagram {
                                slot: t,
                                from,
                                bytes: bytes.clone(),
                            },
                        );
                    }
                }
                Action::Event(e) => {
                    if matches!(e, Event::TakeoverDone { .. }) {
                        self.takeovers_done += 1;
                    }
                    if matches!(e, Event::PeerMessageDropped { .. }) {
                        self.peer_dropped += 1;
                    }
                    if matches!(
                        e,
                        Event::TakeoverDone { .. }
                            | Event::TakeoverStarted { .. }
                            | Event::TakeoverAbandoned { .. }
                            | Event::TakeoverSeen { .. }
                            | Event::PeerLost { .. }
                            | Event::SyncDone { .. }
                    ) {
                        self.log.push((self.now - self.t0, slot, e));
                    }
                }
                Action::SendDatagram { .. } | Action::Replicate(_) => {}
                other => panic!("simulator cannot carry out {other:?}"),
            }
        }
        if let Some(n) = flushed.values().max() {
            self.max_connect_flush = self.max_connect_flush.max(*n);
        }
    }

    /// Checks the convergence invariants; `Err` describes the first violation.
    pub fn check(&self) -> Result<(), String> {
        let live = self.live_slots();
        let ids: HashMap<usize, ServerId> = live
            .iter()
            .map(|s| (*s, self.reg(*s).server_id()))
            .collect();
        let live_ids: HashSet<ServerId> = ids.values().copied().collect();
        for s in &live {
            self.reg(*s).handlespace().verify()?;
        }
        // Every live, registered PE is known to every live registrar, owned by its home.
        for (i, pe) in self.pes.iter().enumerate() {
            if !pe.alive {
                for s in &live {
                    if self.reg(*s).handlespace().get(&pe.handle, pe.id).is_some() {
                        return Err(format!(
                            "dead PE {i} still at slot {s} (server {:#x})",
                            ids[s]
                        ));
                    }
                }
                continue;
            }
            let Some(home) = pe.registered_at else {
                return Err(format!("live PE {i} not registered anywhere"));
            };
            if !live.contains(&home) {
                return Err(format!("live PE {i} registered at dead slot {home}"));
            }
            for s in &live {
                match self.reg(*s).handlespace().get(&pe.handle, pe.id) {
                    None => {
                        return Err(format!(
                            "live PE {i} (home slot {home}) unknown at slot {s}"
                        ))
                    }
                    Some(e) if e.owner() != ids[&home] => {
                        return Err(format!(
                            "PE {i}: slot {s} says owner {:#x}, it is registered at {:#x}",
                            e.owner(),
                            ids[&home]
                        ))
                    }
                    _ => {}
                }
            }
        }
        // No entry owned by a registrar that is not live; no two owners for one PE.
        let mut owners: BTreeMap<(PoolHandle, PeIdentifier), ServerId> = BTreeMap::new();
        for s in &live {
            for pool in self.reg(*s).handlespace().pools() {
                for (id, e) in pool.iter() {
                    if !live_ids.contains(&e.owner()) {
                        return Err(format!(
                            "slot {s}: PE {id:#x} owned by dead server {:#x}",
                            e.owner()
                        ));
                    }
                    let k = (pool.handle().clone(), id);
                    if let Some(o) = owners.insert(k, e.owner()) {
                        if o != e.owner() {
                            return Err(format!(
                                "PE {id:#x} has owners {o:#x} and {:#x}",
                                e.owner()
                            ));
                        }
                    }
                }
            }
        }
        // Checksums agree.
        for a in &live {
            let own = self.reg(*a).handlespace().checksum(ids[a]);
            for b in &live {
                let seen = self.reg(*b).handlespace().checksum(ids[a]);
                if seen != own {
                    return Err(format!(
                        "checksum of {:#x}: own {own:#06x}, slot {b} expects {seen:#06x}",
                        ids[a]
                    ));
                }
            }
        }
        Ok(())
    }
}
