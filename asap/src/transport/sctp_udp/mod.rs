//! Userspace SCTP over UDP (RFC 6951) on the `sctp-proto` state machine.
//!
//! For hosts without kernel SCTP: SCTP packets (common header, chunks, CRC32c) are carried as
//! UDP payload, by default from and to UDP port 9899 ([`defaults::SCTP_UDP_PORT`]), the port
//! Linux kernel SCTP listens on with `net.sctp.udp_port=9899` (kernel ≥ 5.11). A peer with
//! kernel SCTP and `net.sctp.encap_port=9899` sends to us over UDP too, so an rsplib peer and
//! this transport speak real SCTP: message boundaries, PPIDs 11/12, streams.
//!
//! ## Shape
//!
//! One *hub* per process and local UDP port: a thread of its own (with a current-thread
//! tokio runtime, so that it outlives the runtimes of its users) owns the UDP socket, one
//! `sctp_proto::Endpoint` per local SCTP port (a listener's port or a connecting
//! association's ephemeral one) and all associations. Incoming packets are routed by the
//! SCTP destination port, then by verification tag inside the endpoint (RFC 9260 §8.5). The
//! user-facing [`SctpUdpReader`]/[`SctpUdpWriter`] talk to the hub over channels. The hub
//! feeds `sctp-proto` datagrams, commands and the time (`sctp-proto` itself does no I/O).
//!
//! Per wake-up the hub takes in every datagram and command already waiting (up to
//! `BATCH` each) and then services the associations touched once; the next deadline comes
//! from a set ordered by time (`Hub::timers`), not from a visit of every association. A send
//! waits for the hub only above the send-buffer mark (`SendState`): below it, it returns
//! once the message is queued to the hub; an error the hub meets later is returned by the
//! next send, and a lost association fails sends at once (BENCHMARKS.md "SCTP over UDP").
//!
//! ## RFC 6951
//!
//! * §5.1/§5.2: the UDP source port of received packets is the peer's encapsulation port;
//!   answers go to the datagram's source address and port. Associations we open send to
//!   [`SctpUdpOptions::remote_udp_port`] (default: our own UDP port, as two hosts configured
//!   alike use the same port).
//! * §5.4: the SCTP checksum (CRC32c) is kept; packets this module rewrites get a new one.
//! * §5.6: SCTP ports are unchanged by encapsulation: a listener's SCTP port is the
//!   configured ASAP/ENRP port; several SCTP ports share one UDP port.
//!
//! ## What `sctp-proto` lacks and this module adds ([`packet`])
//!
//! * **PPID**: `sctp-proto` only knows WebRTC PPIDs. Outgoing DATA chunks are rewritten with
//!   the message's PPID (looked up by stream and stream sequence number); incoming PPIDs are
//!   recorded per (stream, SSN) and attached to the message when it is delivered in order.
//!   Unordered messages from a peer (U bit; neither rsplib nor this crate sends them) are
//!   delivered with the PPID of the transport's `tcp_ppid` instead.
//! * **Heartbeats** (RFC 9260 §8.3): after [`PathConfig::heartbeat_interval_ms`] (default
//!   30 s) without a packet from the peer, a HEARTBEAT is sent; after
//!   [`PathConfig::path_max_retrans`] (default 5) + 1 unanswered ones the association is
//!   reported [`Event::Lost`] with [`LostReason::CommLost`] and aborted. The peer's HEARTBEATs
//!   are answered by `sctp-proto`.
//! * **ABORT** on [`SctpUdpWriter::set_abort_on_close`] and on loss.
//!
//! ## Limits
//!
//! * Single-homed: one peer address per association, no INIT address parameters sent (those
//!   in a peer's INIT are removed by the shim); [`super::Transport::connect`] tries the peer
//!   addresses in order; no path failover inside an association (a failed path ends it:
//!   DATA retransmissions or heartbeats, then `Event::Lost`, and the PE/PU re-hunts). What
//!   a user must do about it: asap/README.md "SCTP over UDP", *Multi-homing*.
//! * Messages up to [`super::TransportConfig::max_message_size`] (default 256 KiB + 4),
//!   fragmented into DATA chunks of at most 1200 bytes (UDP encapsulation keeps packets below
//!   a 1280-byte path MTU).
//! * The number of streams is not reported (`Event::Up` carries 0/0).

pub mod packet;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sctp_proto::{
    AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Payload,
    PayloadProtocolIdentifier, ServerConfig, StreamEvent,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, warn};

use super::error::{LostReason, TransportError};
use super::{defaults, Event, Msg, TransportConfig};

/// Options of the `sctp-udp` transport ([`super::TransportConfig::sctp_udp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctpUdpOptions {
    /// Local UDP port of the encapsulation (RFC 6951 §5.1); default 9899, 0 = any free port
    /// (shared by every `sctp-udp` transport of the process that asks for 0).
    pub udp_port: u16,
    /// UDP port associations we open send to; `None` = the local UDP port in use.
    pub remote_udp_port: Option<u16>,
}

impl Default for SctpUdpOptions {
    /// The process-wide defaults ([`set_process_defaults`]; initially port 9899, remote
    /// port = local port).
    fn default() -> Self {
        let remote = DEFAULT_REMOTE_UDP_PORT.load(Ordering::Relaxed);
        SctpUdpOptions {
            udp_port: DEFAULT_UDP_PORT.load(Ordering::Relaxed) as u16,
            remote_udp_port: (remote <= u16::MAX as u32).then_some(remote as u16),
        }
    }
}

static DEFAULT_UDP_PORT: AtomicU32 = AtomicU32::new(defaults::SCTP_UDP_PORT as u32);
static DEFAULT_REMOTE_UDP_PORT: AtomicU32 = AtomicU32::new(u32::MAX);

/// Sets the UDP encapsulation ports every later [`SctpUdpOptions::default`] (and so every
/// [`TransportConfig`](super::TransportConfig) built by `asap()`/`enrp()`) uses: the
/// process-wide counterpart of Linux's `net.sctp.udp_port` / `net.sctp.encap_port`. The
/// daemons call it from `--sctp-udp-port` / `--sctp-udp-remote-port`; tests use port 0
/// (any free port, shared by the whole process).
pub fn set_process_defaults(udp_port: u16, remote_udp_port: Option<u16>) {
    DEFAULT_UDP_PORT.store(udp_port as u32, Ordering::Relaxed);
    DEFAULT_REMOTE_UDP_PORT.store(
        remote_udp_port.map_or(u32::MAX, u32::from),
        Ordering::Relaxed,
    );
}

/// Bytes of received messages waiting in one association's queue before the hub stops
/// reading from `sctp-proto` (its receive window then closes: back-pressure to the peer).
const RECV_QUEUE_LIMIT: usize = 4 * 1024 * 1024;
/// Bytes buffered for sending in one stream above which `send` waits.
const SEND_BUFFER_HIGH: usize = 1024 * 1024;
/// DATA chunk payload size (RFC 6951 §5.6: leaves room for IP + UDP + SCTP headers within
/// 1280 bytes).
const MAX_PAYLOAD: u32 = 1200;
/// Per association: most incoming PPIDs remembered for messages not yet delivered.
const MAX_PENDING_PPIDS: usize = 65536;
/// Default heartbeat interval and retransmissions (RFC 9260 §16 HB.interval and
/// Path.Max.Retrans).
const HB_INTERVAL: Duration = Duration::from_secs(30);
const PATH_MAX_RETRANS: u32 = 5;
/// How long an incoming association may take from INIT to COOKIE ECHO (RFC 9260 §16
/// Valid.Cookie.Life is 60 s).
const HANDSHAKE_LIFETIME: Duration = Duration::from_secs(60);
/// Most datagrams and most commands taken in per hub wake-up before servicing.
const BATCH: usize = 256;
/// Lowest/highest ephemeral SCTP port.
const EPHEMERAL: (u16, u16) = (32768, 60999);

// ---------------------------------------------------------------------------------------
// Hubs

enum Cmd {
    Listen {
        port: u16,
        cfg: Arc<TransportConfig>,
        reply: oneshot::Sender<io::Result<(u16, mpsc::UnboundedReceiver<Parts>)>>,
    },
    Unlisten {
        port: u16,
    },
    Connect {
        peer: SocketAddr,
        udp: SocketAddr,
        local_port: u16,
        cfg: Arc<TransportConfig>,
        reply: oneshot::Sender<Result<Parts, TransportError>>,
    },
    /// `done` is `None` for a send that does not wait ([`SctpUdpWriter::send`] below the
    /// send-buffer mark); its errors are kept in [`SendState::error`] for the next send.
    Send {
        key: u64,
        msg: Msg,
        done: Option<oneshot::Sender<Result<(), TransportError>>>,
    },
    Close {
        key: u64,
        abort: bool,
    },
}

struct HubHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    port: u16,
}

fn hubs() -> &'static Mutex<HashMap<u16, Arc<HubHandle>>> {
    static HUBS: OnceLock<Mutex<HashMap<u16, Arc<HubHandle>>>> = OnceLock::new();
    HUBS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn hub(port: u16) -> Result<Arc<HubHandle>, TransportError> {
    let mut map = hubs().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = map.get(&port) {
        if !h.tx.is_closed() {
            return Ok(h.clone());
        }
    }
    let sock = bind_udp(port).map_err(|e| TransportError::io("bind (sctp-udp)", e))?;
    let actual = sock
        .local_addr()
        .map_err(|e| TransportError::io("getsockname", e))?
        .port();
    let v6 = sock
        .local_addr()
        .map_err(|e| TransportError::io("getsockname", e))?
        .is_ipv6();
    let (tx, rx) = mpsc::unbounded_channel();
    let kick = Arc::new(Notify::new());
    let shared = Arc::new(HubShared {
        tx: tx.clone(),
        kick: kick.clone(),
    });
    std::thread::Builder::new()
        .name(format!("sctp-udp-{actual}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!(error = %e, "sctp-udp: cannot start the hub runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let sock = match UdpSocket::from_std(sock) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "sctp-udp: cannot register the UDP socket");
                        return;
                    }
                };
                Hub::new(sock, v6, shared).run(rx).await;
            });
        })
        .map_err(|e| TransportError::io("spawn sctp-udp hub", e))?;
    let h = Arc::new(HubHandle { tx, port: actual });
    map.insert(port, h.clone());
    Ok(h)
}

/// Binds `[::]:port` dual-stack, or `0.0.0.0:port` where IPv6 is off.
fn bind_udp(port: u16) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let v6 = (|| {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_only_v6(false)?;
        s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
        Ok::<_, io::Error>(s)
    })();
    let s = match v6 {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
            s
        }
    };
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    Ok(s.into())
}

fn canon(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

// ---------------------------------------------------------------------------------------
// Hub state (runs on the hub thread)

struct Ep {
    ep: Endpoint,
    listener: Option<mpsc::UnboundedSender<Parts>>,
    cfg: Arc<TransportConfig>,
    handles: HashMap<AssociationHandle, u64>,
}

struct Slot {
    port: u16,
    handle: AssociationHandle,
    a: sctp_proto::Association,
    cfg: Arc<TransportConfig>,
    udp: SocketAddr,
    peer: SocketAddr,
    /// Ports and the peer's verification tag, learnt from outgoing packets.
    hdr: Option<packet::Header>,
    ev: Option<mpsc::UnboundedSender<Event>>,
    queued: Arc<AtomicUsize>,
    send: Arc<SendState>,
    /// The deadline this slot has in [`Hub::timers`] (RFC 9260 timers, heartbeat,
    /// handshake), so that the hub finds the next one without visiting every slot.
    timer: Option<Instant>,
    connect_reply: Option<oneshot::Sender<Result<Parts, TransportError>>>,
    connect_deadline: Option<Instant>,
    up: bool,
    closing: bool,
    lost_sent: bool,
    out_ssn: HashMap<u16, u16>,
    out_ppid: HashMap<(u16, u16), u32>,
    in_ppid: HashMap<(u16, u16), u32>,
    in_next: HashMap<u16, u16>,
    readable: HashSet<u16>,
    pending_sends: Vec<(u16, oneshot::Sender<Result<(), TransportError>>)>,
    hb_interval: Duration,
    hb_max: u32,
    hb_unanswered: u32,
    next_hb: Instant,
    drained: Vec<sctp_proto::EndpointEvent>,
    dead: bool,
    peer_shutdown: bool,
    peer_abort: bool,
    shutdown_wanted: bool,
}

/// What the hub hands a new association's user.
struct Parts {
    key: u64,
    ev: mpsc::UnboundedReceiver<Event>,
    queued: Arc<AtomicUsize>,
    send: Arc<SendState>,
    peer: SocketAddr,
    local: SocketAddr,
    max: usize,
    hub: Arc<HubShared>,
}

/// Send-side state shared by an association's writer and the hub: a send waits for the
/// hub only when the bytes on their way to it plus those buffered in `sctp-proto` pass
/// [`SEND_BUFFER_HIGH`]; otherwise it returns once the message is queued to the hub (one
/// thread hop less per message, issue 17 item 3).
#[derive(Default)]
struct SendState {
    /// Bytes of messages queued to the hub and not yet taken by it.
    in_channel: AtomicUsize,
    /// Bytes buffered in the association's streams (set by the hub).
    buffered: AtomicUsize,
    /// The association is gone: sends fail with [`TransportError::Closed`].
    closed: AtomicBool,
    /// Error of a send that did not wait, returned by the next send.
    error: Mutex<Option<String>>,
}

/// What the user halves need of the hub.
struct HubShared {
    tx: mpsc::UnboundedSender<Cmd>,
    kick: Arc<Notify>,
}

struct Hub {
    sock: UdpSocket,
    v6: bool,
    kick: Arc<Notify>,
    shared: Arc<HubShared>,
    eps: HashMap<u16, Ep>,
    slots: HashMap<u64, Slot>,
    next_key: u64,
    dirty: HashSet<u64>,
    /// Each slot's next deadline ([`Slot::timer`]), earliest first.
    timers: BTreeSet<(Instant, u64)>,
    nonce: u64,
    next_port: u16,
}

fn proto_transport(cfg: &TransportConfig, local: u16, remote: u16) -> sctp_proto::TransportConfig {
    let max = cfg.max_message_size.min(u32::MAX as usize) as u32;
    let streams = cfg.sctp.streams.max(1);
    let mut t = sctp_proto::TransportConfig::default()
        .with_max_send_message_size(max)
        .with_max_receive_message_size(max)
        .with_max_receive_buffer_size((max as u64 * 2).max(1 << 20).min(u32::MAX as u64) as u32)
        .with_max_num_outbound_streams(streams)
        .with_max_num_inbound_streams(streams)
        .with_max_data_retransmits(Some(10))
        .with_max_init_retransmits(Some(4));
    if local != 0 {
        t = t.with_local_port(local);
    }
    if remote != 0 {
        t = t.with_remote_port(remote);
    }
    if let Some(r) = cfg.sctp.rto {
        t = t
            .with_rto_initial_ms(r.initial_ms as u64)
            .with_rto_min_ms(r.min_ms as u64)
            .with_rto_max_ms(r.max_ms as u64);
    } else {
        // RFC 9260 §16 RTO.Min is 1 s; connect to an absent peer gives up within
        // connect_timeout anyway.
        t = t.with_rto_initial_ms(1000).with_rto_max_ms(10_000);
    }
    t
}

fn map_lost(s: &Slot, r: &sctp_proto::AssociationError) -> LostReason {
    use sctp_proto::AssociationError as E;
    let closing = s.closing;
    if s.peer_abort {
        return LostReason::Reset;
    }
    if s.peer_shutdown && !closing {
        return LostReason::PeerClosed;
    }
    match r {
        E::ApplicationClosed if closing => LostReason::ShutdownComplete,
        E::ApplicationClosed => LostReason::PeerClosed,
        E::LocallyClosed => LostReason::ShutdownComplete,
        E::AssociationClosed if closing => LostReason::ShutdownComplete,
        E::AssociationClosed | E::Reset => LostReason::Reset,
        E::TimedOut => LostReason::CommLost { error: 0 },
        E::HandshakeFailed(_) => LostReason::CannotStart { error: 0 },
        other => LostReason::Io {
            kind: io::ErrorKind::InvalidData,
            message: format!("sctp-udp: {other}"),
        },
    }
}

impl Hub {
    fn new(sock: UdpSocket, v6: bool, shared: Arc<HubShared>) -> Self {
        Hub {
            sock,
            v6,
            kick: shared.kick.clone(),
            shared,
            eps: HashMap::new(),
            slots: HashMap::new(),
            next_key: 1,
            dirty: HashSet::new(),
            timers: BTreeSet::new(),
            nonce: rand::random(),
            next_port: EPHEMERAL.0 + rand::random::<u16>() % (EPHEMERAL.1 - EPHEMERAL.0),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let deadline = self.timers.first().map(|(t, _)| *t);
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        self.datagram(now, canon(from), Bytes::copy_from_slice(&buf[..n]));
                    }
                    Err(e) => debug!(error = %e, "sctp-udp: recv_from"),
                },
                c = rx.recv() => match c {
                    Some(c) => self.command(c),
                    None => return,
                },
                _ = sleep_until_opt(deadline) => {}
                _ = self.kick.notified() => {
                    for (k, s) in &self.slots {
                        if !s.readable.is_empty() {
                            self.dirty.insert(*k);
                        }
                    }
                }
            }
            // Everything else already waiting is taken in before the associations are
            // serviced: one service pass (SACKs, deliveries, sends) per wake-up, not per
            // packet or command.
            let now = Instant::now();
            for _ in 0..BATCH {
                match self.sock.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        self.datagram(now, canon(from), Bytes::copy_from_slice(&buf[..n]))
                    }
                    Err(_) => break,
                }
            }
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(c) => self.command(c),
                    Err(_) => break,
                }
            }
            while let Some(&(t, key)) = self.timers.first() {
                if t > now {
                    break;
                }
                self.timers.pop_first();
                if let Some(s) = self.slots.get_mut(&key) {
                    s.timer = None;
                }
                self.dirty.insert(key);
            }
            self.service().await;
        }
    }

    fn alloc_port(&mut self) -> Option<u16> {
        for _ in 0..=(EPHEMERAL.1 - EPHEMERAL.0) {
            let p = self.next_port;
            self.next_port = if p >= EPHEMERAL.1 { EPHEMERAL.0 } else { p + 1 };
            if !self.eps.contains_key(&p) {
                return Some(p);
            }
        }
        None
    }

    fn endpoint(&mut self, port: u16, cfg: &Arc<TransportConfig>) -> &mut Ep {
        self.eps.entry(port).or_insert_with(|| {
            let mut ec = EndpointConfig::new();
            ec.max_payload_size(MAX_PAYLOAD);
            Ep {
                ep: Endpoint::new(Arc::new(ec), None),
                listener: None,
                cfg: cfg.clone(),
                handles: HashMap::new(),
            }
        })
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Listen { port, cfg, reply } => {
                let port = if port == 0 {
                    match self.alloc_port() {
                        Some(p) => p,
                        None => {
                            let _ = reply.send(Err(io::Error::from(io::ErrorKind::AddrInUse)));
                            return;
                        }
                    }
                } else {
                    port
                };
                let ep = self.endpoint(port, &cfg);
                if ep.listener.as_ref().is_some_and(|l| !l.is_closed()) {
                    let _ = reply.send(Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("SCTP port {port} already has a listener on this UDP port"),
                    )));
                    return;
                }
                let (tx, rx) = mpsc::unbounded_channel();
                ep.listener = Some(tx);
                ep.cfg = cfg.clone();
                let mut sc = ServerConfig::new();
                sc.transport = Arc::new(proto_transport(&cfg, 0, 0));
                ep.ep.set_server_config(Some(Arc::new(sc)));
                let _ = reply.send(Ok((port, rx)));
            }
            Cmd::Unlisten { port } => {
                if let Some(ep) = self.eps.get_mut(&port) {
                    ep.listener = None;
                    ep.ep.set_server_config(None);
                }
                self.gc_endpoint(port);
            }
            Cmd::Connect {
                peer,
                udp,
                local_port,
                cfg,
                reply,
            } => {
                let port = if local_port == 0 {
                    match self.alloc_port() {
                        Some(p) => p,
                        None => {
                            let _ = reply.send(Err(TransportError::io(
                                "connect (sctp-udp)",
                                io::Error::from(io::ErrorKind::AddrInUse),
                            )));
                            return;
                        }
                    }
                } else {
                    local_port
                };
                let tc = proto_transport(&cfg, port, peer.port());
                let mut cc = ClientConfig::new();
                cc.transport = Arc::new(tc);
                let ep = self.endpoint(port, &cfg);
                match ep.ep.connect(cc, udp) {
                    Ok((h, a)) => {
                        let key = self.next_key;
                        self.next_key += 1;
                        self.eps.get_mut(&port).map(|e| e.handles.insert(h, key));
                        let mut s = new_slot(port, h, a, cfg.clone(), udp, peer);
                        s.connect_deadline = Some(Instant::now() + cfg.connect_timeout);
                        s.connect_reply = Some(reply);
                        self.slots.insert(key, s);
                        self.dirty.insert(key);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(TransportError::Connect {
                            addrs: vec![peer],
                            source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
                        }));
                        self.gc_endpoint(port);
                    }
                }
            }
            Cmd::Send { key, msg, done } => {
                let Some(s) = self.slots.get_mut(&key) else {
                    if let Some(d) = done {
                        let _ = d.send(Err(TransportError::Closed));
                    }
                    return;
                };
                s.send
                    .in_channel
                    .fetch_sub(msg.bytes.len(), Ordering::AcqRel);
                if s.dead || s.closing || !s.up {
                    send_failed(s, done, TransportError::Closed);
                    return;
                }
                if let Err(e) = msg.check_len(s.cfg.max_message_size) {
                    send_failed(s, done, e);
                    return;
                }
                let sid = msg.stream;
                let res = (|| {
                    let mut st = match s.a.stream(sid) {
                        Ok(st) => st,
                        Err(_) => s.a.open_stream(sid, PayloadProtocolIdentifier::Binary)?,
                    };
                    st.write_sctp(&msg.bytes, PayloadProtocolIdentifier::Binary)?;
                    st.buffered_amount()
                })();
                match res {
                    Ok(buffered) => {
                        let ssn = s.out_ssn.entry(sid).or_insert(0);
                        s.out_ppid.insert((sid, *ssn), msg.ppid);
                        s.out_ppid.remove(&(sid, ssn.wrapping_sub(32768)));
                        *ssn = ssn.wrapping_add(1);
                        s.send.buffered.store(buffered, Ordering::Release);
                        match done {
                            Some(d) if buffered > SEND_BUFFER_HIGH => {
                                s.pending_sends.push((sid, d))
                            }
                            Some(d) => {
                                let _ = d.send(Ok(()));
                            }
                            None => {}
                        }
                    }
                    Err(e) => {
                        let e =
                            TransportError::io("send (sctp-udp)", io::Error::other(e.to_string()));
                        send_failed(s, done, e);
                    }
                }
                self.dirty.insert(key);
            }
            Cmd::Close { key, abort } => {
                debug!(key, abort, "sctp-udp: close requested");
                let Some(s) = self.slots.get_mut(&key) else {
                    return;
                };
                if abort {
                    if let Some(h) = s.hdr {
                        let p = packet::abort(h);
                        let _ = self.sock.try_send_to(&p, out_addr(self.v6, s.udp));
                    }
                    let _ = s.a.close();
                    s.closing = true;
                } else if !s.closing {
                    // SHUTDOWN once everything queued has been sent and acknowledged:
                    // `sctp-proto` sends no new DATA after shutdown() (RFC 9260 §9.2 wants
                    // the queued data delivered first).
                    s.closing = true;
                    s.shutdown_wanted = true;
                }
                self.dirty.insert(key);
            }
        }
    }

    fn gc_endpoint(&mut self, port: u16) {
        if let Some(ep) = self.eps.get(&port) {
            if ep.listener.is_none() && ep.handles.is_empty() {
                self.eps.remove(&port);
            }
        }
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        let Some(h) = packet::header(&data) else {
            return;
        };
        if !packet::checksum_ok(&data) {
            debug!(%from, "sctp-udp: bad CRC32c, packet dropped");
            return;
        }
        let Some(ep) = self.eps.get_mut(&h.dst) else {
            debug!(%from, port = h.dst, "sctp-udp: packet for an SCTP port nobody uses");
            return;
        };
        let first = packet::first_chunk_type(&data);
        if h.vtag == 0 && first == Some(packet::CT_INIT) && ep.listener.is_none() {
            return;
        }
        let scan = packet::inbound(&data);
        let data = match scan.rewritten {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(Bytes::from(v)),
            None => Some(data),
        };
        // Route: an existing association gets the packet, an INIT may make a new one.
        let routed = match data {
            Some(d) => catch_unwind(AssertUnwindSafe(|| ep.ep.handle(now, from, None, None, d)))
                .unwrap_or_else(|_| {
                    warn!(%from, "sctp-udp: sctp-proto panicked on a packet; dropped");
                    None
                }),
            None => None,
        };
        let key = match routed {
            Some((handle, DatagramEvent::AssociationEvent(ev))) => {
                let Some(&key) = ep.handles.get(&handle) else {
                    return;
                };
                let Some(s) = self.slots.get_mut(&key) else {
                    return;
                };
                if catch_unwind(AssertUnwindSafe(|| s.a.handle_event(ev))).is_err() {
                    warn!(%from, "sctp-udp: sctp-proto panicked; association closed");
                    s.dead = true;
                }
                key
            }
            Some((handle, DatagramEvent::NewAssociation(a))) => {
                let key = self.next_key;
                self.next_key += 1;
                ep.handles.insert(handle, key);
                let peer = SocketAddr::new(from.ip(), h.src);
                let mut s = new_slot(h.dst, handle, a, ep.cfg.clone(), from, peer);
                // An INIT that never completes (no COOKIE ECHO) is forgotten after this.
                s.connect_deadline = Some(now + HANDSHAKE_LIFETIME);
                self.slots.insert(key, s);
                key
            }
            None => {
                // A packet made only of our HEARTBEAT ACK: find its association by tag.
                match self.slots.iter().find(|(_, s)| {
                    s.port == h.dst && s.udp == from && s.hdr.is_some_and(|x| x.dst == h.src)
                }) {
                    Some((k, _)) => *k,
                    None => return,
                }
            }
        };
        let Some(s) = self.slots.get_mut(&key) else {
            return;
        };
        s.hb_unanswered = 0;
        s.peer_shutdown |= scan.shutdown;
        s.peer_abort |= scan.abort;
        s.next_hb = now + s.hb_interval;
        if s.udp != from {
            // RFC 6951 §5.5: the encapsulation port may change (NAT rebinding).
            debug!(old = %s.udp, new = %from, "sctp-udp: peer's UDP address changed");
        }
        for d in scan.data {
            if d.unordered || s.in_ppid.len() >= MAX_PENDING_PPIDS {
                continue;
            }
            s.in_ppid.insert((d.stream, d.ssn), d.ppid);
        }
        self.dirty.insert(key);
    }

    async fn service(&mut self) {
        let now = Instant::now();
        let keys: Vec<u64> = self.dirty.drain().collect();
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        for key in keys {
            let Some(s) = self.slots.get_mut(&key) else {
                continue;
            };
            let (shared, nonce, eps) = (&self.shared, &mut self.nonce, &self.eps);
            let r = catch_unwind(AssertUnwindSafe(|| {
                service_slot(key, s, now, shared, nonce, &mut out, eps)
            }));
            if r.is_err() {
                warn!(peer = %s.peer, "sctp-udp: sctp-proto panicked; association dropped");
                lost(s, LostReason::Reset);
            }
            if s.dead {
                // Flush what it still has to say (SHUTDOWN COMPLETE etc.).
                drain_transmit(s, now, &mut out);
                gone.push(key);
            }
            let next = slot_deadline(s);
            if next != s.timer {
                if let Some(t) = s.timer.take() {
                    self.timers.remove(&(t, key));
                }
                if let Some(t) = next {
                    self.timers.insert((t, key));
                }
                s.timer = next;
            }
        }
        for (to, p) in out {
            if let Err(e) = self.sock.send_to(&p, out_addr(self.v6, to)).await {
                debug!(%to, error = %e, "sctp-udp: send_to");
            }
        }
        for key in gone {
            if let Some(mut s) = self.slots.remove(&key) {
                if let Some(t) = s.timer.take() {
                    self.timers.remove(&(t, key));
                }
                s.send.closed.store(true, Ordering::Release);
                if !s.lost_sent {
                    if let Some(tx) = &s.ev {
                        let _ = tx.send(Event::Lost(LostReason::Reset));
                    }
                }
                if let Some(r) = s.connect_reply.take() {
                    let _ = r.send(Err(TransportError::Connect {
                        addrs: vec![s.peer],
                        source: io::Error::from(io::ErrorKind::ConnectionRefused),
                    }));
                }
                for (_, d) in s.pending_sends.drain(..) {
                    let _ = d.send(Err(TransportError::Closed));
                }
                if let Some(ep) = self.eps.get_mut(&s.port) {
                    // Exactly one Drained per association (the endpoint frees its slot).
                    let ev = s
                        .drained
                        .drain(..)
                        .next()
                        .unwrap_or_else(sctp_proto::EndpointEvent::drained);
                    let h = s.handle;
                    if catch_unwind(AssertUnwindSafe(|| ep.ep.handle_event(h, ev))).is_err() {
                        warn!("sctp-udp: sctp-proto panicked forgetting an association");
                    }
                    ep.handles.remove(&s.handle);
                }
                let port = s.port;
                self.gc_endpoint(port);
            }
        }
    }
}

/// The socket is dual-stack `[::]` when possible; IPv4 destinations then need the mapped
/// form. An IPv4-only socket takes plain IPv4.
fn out_addr(v6: bool, a: SocketAddr) -> SocketAddr {
    match (v6, a.ip()) {
        (true, IpAddr::V4(ip)) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        _ => a,
    }
}

async fn sleep_until_opt(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn slot_deadline(s: &Slot) -> Option<Instant> {
    let mut d = s.a.poll_timeout();
    let mut add = |x: Option<Instant>| {
        if let Some(x) = x {
            d = Some(d.map_or(x, |d| d.min(x)));
        }
    };
    add(s.connect_deadline);
    if s.up && !s.closing {
        add(Some(s.next_hb));
    }
    d
}

fn new_slot(
    port: u16,
    handle: AssociationHandle,
    a: sctp_proto::Association,
    cfg: Arc<TransportConfig>,
    udp: SocketAddr,
    peer: SocketAddr,
) -> Slot {
    let (hb_interval, hb_max) = match cfg.sctp.paths {
        Some(p) if p.heartbeat_interval_ms > 0 => (
            Duration::from_millis(p.heartbeat_interval_ms as u64),
            p.path_max_retrans as u32,
        ),
        Some(p) => (HB_INTERVAL, p.path_max_retrans as u32),
        None => (HB_INTERVAL, PATH_MAX_RETRANS),
    };
    Slot {
        port,
        handle,
        a,
        cfg,
        udp,
        peer,
        hdr: None,
        ev: None,
        queued: Arc::new(AtomicUsize::new(0)),
        send: Arc::new(SendState::default()),
        timer: None,
        connect_reply: None,
        connect_deadline: None,
        up: false,
        closing: false,
        lost_sent: false,
        out_ssn: HashMap::new(),
        out_ppid: HashMap::new(),
        in_ppid: HashMap::new(),
        in_next: HashMap::new(),
        readable: HashSet::new(),
        pending_sends: Vec::new(),
        hb_interval,
        hb_max,
        hb_unanswered: 0,
        next_hb: Instant::now() + hb_interval,
        drained: Vec::new(),
        dead: false,
        peer_shutdown: false,
        peer_abort: false,
        shutdown_wanted: false,
    }
}

/// A send the hub could not carry out: answered if the sender waits, else kept for its
/// next send (a closed association shows up there anyway).
fn send_failed(
    s: &Slot,
    done: Option<oneshot::Sender<Result<(), TransportError>>>,
    e: TransportError,
) {
    match done {
        Some(d) => {
            let _ = d.send(Err(e));
        }
        None => {
            debug!(peer = %s.peer, error = %e, "sctp-udp: send failed");
            if !matches!(e, TransportError::Closed) {
                let mut g = s.send.error.lock().unwrap_or_else(|e| e.into_inner());
                g.get_or_insert(e.to_string());
            }
        }
    }
}

fn lost(s: &mut Slot, reason: LostReason) {
    debug!(peer = %s.peer, udp = %s.udp, %reason, "sctp-udp: association ends");
    if let Some(r) = s.connect_reply.take() {
        let _ = r.send(Err(TransportError::Connect {
            addrs: vec![s.peer],
            source: io::Error::new(io::ErrorKind::ConnectionRefused, reason.to_string()),
        }));
    }
    s.send.closed.store(true, Ordering::Release);
    if !s.lost_sent {
        s.lost_sent = true;
        if let Some(tx) = &s.ev {
            let _ = tx.send(Event::Lost(reason));
        }
    }
    s.dead = true;
}

fn all_sent(s: &mut Slot) -> bool {
    let ids = s.a.stream_ids();
    ids.into_iter().all(|id| {
        s.a.stream(id)
            .and_then(|st| st.buffered_amount())
            .map_or(true, |b| b == 0)
    })
}

fn drain_transmit(s: &mut Slot, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
    while let Some(t) = s.a.poll_transmit(now) {
        let Payload::RawEncode(pkts) = t.payload else {
            continue;
        };
        for p in pkts {
            let mut v = p.to_vec();
            if let Some(h) = packet::header(&v) {
                if h.vtag != 0 {
                    s.hdr = Some(h);
                }
            }
            let map = &s.out_ppid;
            packet::outbound(&mut v, |st, ssn| map.get(&(st, ssn)).copied());
            let complete = packet::has_chunk(&v, packet::CT_SHUTDOWN_COMPLETE);
            out.push((s.udp, v));
            if complete {
                // The shutdown handshake is over for us (RFC 9260 §9.2); `sctp-proto`
                // leaves closing to its user.
                let _ = s.a.close();
                let r = if s.closing {
                    LostReason::ShutdownComplete
                } else {
                    LostReason::PeerClosed
                };
                lost(s, r);
            }
        }
    }
}

fn service_slot(
    key: u64,
    s: &mut Slot,
    now: Instant,
    shared: &Arc<HubShared>,
    nonce: &mut u64,
    out: &mut Vec<(SocketAddr, Vec<u8>)>,
    eps: &HashMap<u16, Ep>,
) {
    if s.a.poll_timeout().is_some_and(|t| t <= now) {
        s.a.handle_timeout(now);
    }
    if s.connect_deadline.is_some_and(|d| d <= now) && !s.up {
        let after = s.cfg.connect_timeout;
        if let Some(r) = s.connect_reply.take() {
            let _ = r.send(Err(TransportError::ConnectTimeout {
                addrs: vec![s.peer],
                after,
            }));
        }
        s.dead = true;
        let _ = s.a.close();
    }
    // Liveness (RFC 9260 §8.3).
    if s.up && !s.closing && !s.dead && s.next_hb <= now {
        if s.hb_unanswered > s.hb_max {
            if let Some(h) = s.hdr {
                out.push((s.udp, packet::abort(h)));
            }
            let _ = s.a.close();
            lost(s, LostReason::CommLost { error: 0 });
        } else if let Some(h) = s.hdr {
            *nonce = nonce.wrapping_add(1);
            out.push((s.udp, packet::heartbeat(h, *nonce)));
            s.hb_unanswered += 1;
            s.next_hb = now + s.hb_interval;
        } else {
            s.next_hb = now + s.hb_interval;
        }
    }
    while let Some(ev) = s.a.poll() {
        match ev {
            sctp_proto::Event::Connected => {
                if s.up {
                    continue;
                }
                s.up = true;
                s.connect_deadline = None;
                let (tx, rx) = mpsc::unbounded_channel();
                let _ = tx.send(Event::Up {
                    outbound_streams: 0,
                    inbound_streams: 0,
                });
                s.ev = Some(tx);
                let local_ip = s.a.local_ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                let parts = Parts {
                    key,
                    ev: rx,
                    queued: s.queued.clone(),
                    send: s.send.clone(),
                    peer: s.peer,
                    local: SocketAddr::new(local_ip, s.port),
                    max: s.cfg.max_message_size,
                    hub: shared.clone(),
                };
                if let Some(r) = s.connect_reply.take() {
                    if r.send(Ok(parts)).is_err() {
                        let _ = s.a.close();
                        s.dead = true;
                    }
                } else if let Some(l) = eps.get(&s.port).and_then(|e| e.listener.as_ref()) {
                    if l.send(parts).is_err() {
                        let _ = s.a.close();
                        s.dead = true;
                    }
                } else {
                    let _ = s.a.close();
                    s.dead = true;
                }
            }
            sctp_proto::Event::HandshakeFailed { reason } => {
                let r = map_lost(s, &reason);
                lost(s, r);
            }
            sctp_proto::Event::AssociationLost { reason } => {
                let r = map_lost(s, &reason);
                lost(s, r);
            }
            sctp_proto::Event::Stream(StreamEvent::Opened { id })
            | sctp_proto::Event::Stream(StreamEvent::Readable { id }) => {
                while s.a.accept_stream().is_some() {}
                s.readable.insert(id);
            }
            sctp_proto::Event::Stream(_) => {}
            _ => {}
        }
    }
    // Deliver readable messages while the user keeps up.
    if s.ev.is_some() {
        let ids: Vec<u16> = s.readable.iter().copied().collect();
        for id in ids {
            loop {
                if s.queued.load(Ordering::Acquire) >= RECV_QUEUE_LIMIT {
                    break;
                }
                let Ok(mut st) = s.a.stream(id) else {
                    s.readable.remove(&id);
                    break;
                };
                match st.read_sctp() {
                    Ok(Some(chunks)) => {
                        let mut buf = vec![0u8; chunks.len()];
                        let n = chunks.read(&mut buf).unwrap_or(0);
                        buf.truncate(n);
                        let ssn = s.in_next.entry(id).or_insert(0);
                        let ppid = s.in_ppid.remove(&(id, *ssn)).unwrap_or(s.cfg.tcp_ppid);
                        *ssn = ssn.wrapping_add(1);
                        s.queued.fetch_add(n, Ordering::AcqRel);
                        if let Some(tx) = &s.ev {
                            let _ = tx.send(Event::Message(Msg::new(ppid, id, buf)));
                        }
                    }
                    Ok(None) => {
                        s.readable.remove(&id);
                        break;
                    }
                    Err(e) => {
                        debug!(stream = id, error = %e, "sctp-udp: stream read");
                        s.readable.remove(&id);
                        break;
                    }
                }
            }
        }
    }
    // Release senders whose stream drained below the mark.
    if !s.pending_sends.is_empty() || s.send.buffered.load(Ordering::Acquire) > 0 {
        let total: usize =
            s.a.stream_ids()
                .into_iter()
                .filter_map(|id| s.a.stream(id).ok().and_then(|st| st.buffered_amount().ok()))
                .sum();
        s.send.buffered.store(total, Ordering::Release);
        let mut keep = Vec::new();
        for (sid, d) in s.pending_sends.drain(..) {
            let b =
                s.a.stream(sid)
                    .and_then(|st| st.buffered_amount())
                    .unwrap_or(0);
            if b > SEND_BUFFER_HIGH {
                keep.push((sid, d));
            } else {
                let _ = d.send(Ok(()));
            }
        }
        s.pending_sends = keep;
    }
    drain_transmit(s, now, out);
    if s.shutdown_wanted && all_sent(s) {
        s.shutdown_wanted = false;
        if s.a.shutdown().is_err() {
            let _ = s.a.close();
        }
        drain_transmit(s, now, out);
    }
    while let Some(e) = s.a.poll_endpoint_event() {
        // Kept until the association is closed: `sctp-proto` asks to forget the association
        // as soon as shutdown starts, which would drop the peer's SHUTDOWN ACK.
        s.drained.push(e);
    }
}

// ---------------------------------------------------------------------------------------
// User side

fn hub_for(cfg: &TransportConfig) -> Result<Arc<HubHandle>, TransportError> {
    hub(cfg.sctp_udp.udp_port)
}

/// The local UDP port the transport with this configuration uses (binding it if needed).
pub fn local_udp_port(cfg: &TransportConfig) -> Result<u16, TransportError> {
    Ok(hub_for(cfg)?.port)
}

/// A listening SCTP port on the process's UDP encapsulation socket.
pub(crate) struct SctpUdpListener {
    port: u16,
    ips: Vec<IpAddr>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Parts>>,
    hub: Arc<HubHandle>,
}

impl SctpUdpListener {
    pub(crate) async fn bind(
        addrs: &[SocketAddr],
        cfg: Arc<TransportConfig>,
    ) -> Result<Self, TransportError> {
        let hub = hub_for(&cfg)?;
        let (reply, r) = oneshot::channel();
        let port = addrs.first().map(|a| a.port()).unwrap_or(0);
        hub.tx
            .send(Cmd::Listen { port, cfg, reply })
            .map_err(|_| TransportError::Closed)?;
        let (port, rx) = r
            .await
            .map_err(|_| TransportError::Closed)?
            .map_err(|e| TransportError::io("listen (sctp-udp)", e))?;
        Ok(SctpUdpListener {
            port,
            ips: addrs.iter().map(SocketAddr::ip).collect(),
            rx: tokio::sync::Mutex::new(rx),
            hub,
        })
    }

    pub(crate) async fn accept(&self) -> Result<(SctpUdpReader, SctpUdpWriter), TransportError> {
        let p = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)?;
        Ok(split(p))
    }

    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, self.port))
            .collect()
    }
}

impl Drop for SctpUdpListener {
    fn drop(&mut self) {
        let _ = self.hub.tx.send(Cmd::Unlisten { port: self.port });
    }
}

/// Opens an association to the first peer address that answers.
pub(crate) async fn connect(
    peers: &[SocketAddr],
    local: &[SocketAddr],
    cfg: Arc<TransportConfig>,
) -> Result<(SctpUdpReader, SctpUdpWriter), TransportError> {
    let hub = hub_for(&cfg)?;
    let rport = cfg.sctp_udp.remote_udp_port.unwrap_or(hub.port);
    let local_port = local.first().map(|a| a.port()).unwrap_or(0);
    let mut last = None;
    for peer in peers {
        let (reply, r) = oneshot::channel();
        let udp = SocketAddr::new(peer.ip(), rport);
        hub.tx
            .send(Cmd::Connect {
                peer: *peer,
                udp,
                local_port,
                cfg: cfg.clone(),
                reply,
            })
            .map_err(|_| TransportError::Closed)?;
        match r.await {
            Ok(Ok(p)) => return Ok(split(p)),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(TransportError::Closed),
        }
    }
    Err(last.unwrap_or(TransportError::BadAddresses("connect: no address".into())))
}

struct CloseGuard {
    key: u64,
    hub: Arc<HubShared>,
    abort: AtomicBool,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        let _ = self.hub.tx.send(Cmd::Close {
            key: self.key,
            abort: self.abort.load(Ordering::Relaxed),
        });
    }
}

fn split(p: Parts) -> (SctpUdpReader, SctpUdpWriter) {
    let guard = Arc::new(CloseGuard {
        key: p.key,
        hub: p.hub.clone(),
        abort: AtomicBool::new(false),
    });
    (
        SctpUdpReader {
            ev: p.ev,
            queued: p.queued,
            hub: p.hub.clone(),
            done: false,
            _guard: guard.clone(),
        },
        SctpUdpWriter {
            key: p.key,
            send: p.send,
            hub: p.hub,
            peer: p.peer,
            local: p.local,
            max: p.max,
            guard,
        },
    )
}

/// Receiving half of an `sctp-udp` association.
pub(crate) struct SctpUdpReader {
    ev: mpsc::UnboundedReceiver<Event>,
    queued: Arc<AtomicUsize>,
    hub: Arc<HubShared>,
    done: bool,
    _guard: Arc<CloseGuard>,
}

impl SctpUdpReader {
    pub(crate) async fn recv(&mut self) -> Result<Event, TransportError> {
        if self.done {
            return Err(TransportError::Closed);
        }
        let Some(ev) = self.ev.recv().await else {
            self.done = true;
            return Err(TransportError::Closed);
        };
        match &ev {
            Event::Message(m) => {
                let n = m.bytes.len();
                let before = self.queued.fetch_sub(n, Ordering::AcqRel);
                if before >= RECV_QUEUE_LIMIT && before - n < RECV_QUEUE_LIMIT {
                    self.hub.kick.notify_one();
                }
            }
            Event::Lost(_) => self.done = true,
            _ => {}
        }
        Ok(ev)
    }
}

/// Sending half of an `sctp-udp` association.
pub(crate) struct SctpUdpWriter {
    key: u64,
    send: Arc<SendState>,
    hub: Arc<HubShared>,
    peer: SocketAddr,
    local: SocketAddr,
    max: usize,
    guard: Arc<CloseGuard>,
}

impl SctpUdpWriter {
    pub(crate) async fn send(&self, msg: &Msg) -> Result<(), TransportError> {
        msg.check_len(self.max)?;
        if self.send.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        if let Some(e) = self
            .send
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(TransportError::io("send (sctp-udp)", io::Error::other(e)));
        }
        let n = msg.bytes.len();
        let ahead = self.send.in_channel.fetch_add(n, Ordering::AcqRel)
            + self.send.buffered.load(Ordering::Acquire);
        if ahead + n <= SEND_BUFFER_HIGH {
            // Below the mark: queued to the hub without waiting for it.
            return self
                .hub
                .tx
                .send(Cmd::Send {
                    key: self.key,
                    msg: msg.clone(),
                    done: None,
                })
                .map_err(|_| TransportError::Closed);
        }
        let (done, r) = oneshot::channel();
        self.hub
            .tx
            .send(Cmd::Send {
                key: self.key,
                msg: msg.clone(),
                done: Some(done),
            })
            .map_err(|_| TransportError::Closed)?;
        r.await.map_err(|_| TransportError::Closed)?
    }

    pub(crate) fn close(&self) -> Result<(), TransportError> {
        self.hub
            .tx
            .send(Cmd::Close {
                key: self.key,
                abort: false,
            })
            .map_err(|_| TransportError::Closed)
    }

    pub(crate) fn set_abort_on_close(&self) {
        self.guard.abort.store(true, Ordering::Relaxed);
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }
}
