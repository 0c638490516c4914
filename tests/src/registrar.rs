//! A registrar driver running in the test's runtime, and the ASAP/ENRP client side the
//! tests speak to it with (over TCP, the fallback transport of RFC 5352 §3 / PROTOCOL.md).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use asap::transport::{Association, Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::asap_msg::{
    Deregistration, HandleResolution, HandleResolutionResponse, Registration, RegistrationResponse,
};
use asap::wire::enrp_msg::{HandleTableRequest, HandleUpdate, Presence};
use asap::wire::{
    AsapMessage, EnrpMessage, HandleResolutionOption, Message, Policy, PoolElementInfo, Protocol,
    TransportParameter, TransportUse, UpdateAction,
};
use enrp_server::core::{CoreConfig, PeeringConfig};
use enrp_server::driver::{DriverConfig, DriverError, Server};
use tokio::sync::oneshot;

/// The pool the registrar tests register their PEs in.
pub const POOL: &str = "EchoPool";

/// A registrar driver running in this test's runtime.
pub struct Running {
    /// Its (first) ASAP address.
    pub asap: SocketAddr,
    /// Its (first) ENRP address.
    pub enrp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks the driver to shut down and waits (at most 5 s) for it; the task is aborted if
    /// it did not finish by then.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

/// A TCP driver configuration: ASAP on `asap`, ENRP on `enrp` (port 0: an ephemeral one),
/// no announcements, at most `max_associations` associations.
pub fn tcp_driver(asap: SocketAddr, enrp: SocketAddr, max_associations: usize) -> DriverConfig {
    DriverConfig {
        asap: vec![asap],
        enrp: vec![enrp],
        transport: TransportKind::Tcp,
        extra_transports: Vec::new(),
        auto_fallback: TransportKind::Tcp,
        announce_ttl: 1,
        enrp_announce: Vec::new(),
        max_associations,
        max_partial_bytes: asap::transport::defaults::TCP_MAX_PARTIAL_BYTES,
        enrp_tls: None,
        asap_tls: None,
    }
}

/// A registrar core `id` for the peering tests: static `peers`, no ASAP announcements,
/// PE keep-alives every 10 min (out of the way), and fast ENRP peering (RFC 5353 §3.2:
/// a heartbeat every 200 ms, a peer presumed dead after `silence` without a message or an
/// answer, mentor discovery given `mentor`); the rest of [`PeeringConfig::default`].
pub fn peer_core(
    id: u32,
    peers: Vec<SocketAddr>,
    silence: Duration,
    mentor: Duration,
) -> CoreConfig {
    let mut core = CoreConfig::new(id);
    core.asap_announce_targets = Vec::new();
    core.keep_alive_interval = Duration::from_secs(600);
    core.peers = peers;
    core.peering = PeeringConfig {
        enabled: true,
        multicast: None,
        heartbeat_cycle: Duration::from_millis(200),
        max_time_last_heard: silence,
        max_time_no_response: silence,
        mentor_discovery_timeout: mentor,
        ..PeeringConfig::default()
    };
    core
}

/// Binds a registrar with `core` and `driver` and runs it in a spawned task.
pub async fn spawn(core: CoreConfig, driver: DriverConfig) -> Result<Running, DriverError> {
    let server = Server::bind(core, driver).await?;
    let asap = server.asap_addrs()[0];
    let enrp = server.enrp_addrs().first().copied().unwrap_or(asap);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Ok(Running {
        asap,
        enrp,
        stop: Some(tx),
        task,
    })
}

/// Registrar `id` alone on 127.0.0.1 (TCP, ephemeral ASAP and ENRP ports, no
/// announcements), its core configuration adjusted by `tune`, running in this runtime.
pub async fn local(id: u32, tune: impl FnOnce(&mut CoreConfig)) -> Running {
    let mut core = CoreConfig::new(id);
    core.asap_announce_targets = Vec::new();
    tune(&mut core);
    let lo = "127.0.0.1:0".parse().expect("lit");
    spawn(core, tcp_driver(lo, lo, 100))
        .await
        .expect("bind registrar")
}

/// [`spawn`], or `None` after printing `SKIP: …` where the addresses cannot be bound (a
/// host without the 127.0.0.x aliases the multi-registrar tests use).
pub async fn spawn_or_skip(core: CoreConfig, driver: DriverConfig) -> Option<Running> {
    let at = format!("{:?}", driver.enrp);
    match spawn(core, driver).await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("SKIP: cannot bind registrar on {at}: {e}");
            None
        }
    }
}

/// A TCP association to `to` carrying `protocol`.
pub async fn connect(to: SocketAddr, protocol: Protocol) -> Association {
    connect_over(TransportKind::Tcp, to, protocol).await
}

/// An association of transport `kind` to `to` carrying `protocol`.
pub async fn connect_over(kind: TransportKind, to: SocketAddr, protocol: Protocol) -> Association {
    let cfg = match protocol {
        Protocol::Asap => TransportConfig::asap(kind),
        Protocol::Enrp => TransportConfig::enrp(kind),
    };
    Transport::new(cfg)
        .connect(&[to], &[])
        .await
        .unwrap_or_else(|e| panic!("{kind:?} connect to {to}: {e}"))
}

/// Sends `bytes` as one message with `ppid` on stream 0.
pub async fn send_raw(a: &mut Association, ppid: u32, bytes: Vec<u8>) {
    a.send(&Msg::new(ppid, 0, bytes)).await.expect("send");
}

/// Encodes and sends one message with its protocol's PPID on stream 0.
pub async fn send(a: &mut Association, m: impl Into<Message>) {
    let m = m.into();
    let bytes = m.to_bytes().expect("encode");
    a.send(&Msg::new(m.protocol().ppid(), 0, bytes))
        .await
        .expect("send");
}

/// Waits (at most `limit`) for the next message on `a`, skipping other events. Panics
/// when the association is lost.
pub async fn next_msg(a: &mut Association, limit: Duration) -> Msg {
    loop {
        let ev = tokio::time::timeout(limit, a.recv())
            .await
            .unwrap_or_else(|_| panic!("no reply within {limit:?}"))
            .expect("association alive");
        match ev {
            Event::Message(m) => return m,
            Event::Lost(r) => panic!("association lost: {r}"),
            _ => {}
        }
    }
}

/// Waits (at most 10 s) for the next message on `a` (skipping other events) and decodes it
/// as `protocol`. Panics when the association is lost.
pub async fn recv_msg(a: &mut Association, protocol: Protocol) -> Message {
    let m = next_msg(a, Duration::from_secs(10)).await;
    Message::decode(protocol, &m.bytes)
        .expect("decodes")
        .message
}

/// Waits (at most `limit`) for the next message on `a` and decodes it as the protocol its
/// PPID names (RFC 5352 §3, RFC 5353 §2: 11 ASAP, 12 ENRP): (PPID, message).
pub async fn recv_by_ppid(a: &mut Association, limit: Duration) -> (u32, Message) {
    let m = next_msg(a, limit).await;
    let p = Protocol::from_ppid(m.ppid).expect("PPID 11 or 12");
    let d = Message::decode(p, &m.bytes).expect("decodes");
    (m.ppid, d.message)
}

/// Sends `m` over `a` and waits for the answer, decoded as `m`'s protocol.
pub async fn ask(a: &mut Association, m: impl Into<Message>) -> Message {
    let m = m.into();
    let protocol = m.protocol();
    send(a, m).await;
    recv_msg(a, protocol).await
}

/// Sends ASAP_REGISTRATION of `pe` in `handle` over `a` and returns the response.
pub async fn register(
    a: &mut Association,
    handle: &str,
    pe: PoolElementInfo,
) -> RegistrationResponse {
    let reg = Registration {
        pool_handle: handle.into(),
        pool_element: pe,
    };
    match ask(a, reg).await {
        Message::Asap(AsapMessage::RegistrationResponse(r)) => r,
        other => panic!("expected REGISTRATION_RESPONSE, got {other:?}"),
    }
}

/// A user transport TCP `127.0.0.1:port` used as `transport_use`.
pub fn loopback_tcp(port: u16, transport_use: TransportUse) -> TransportParameter {
    TransportParameter::Tcp {
        port,
        transport_use,
        address: IpAddr::from([127, 0, 0, 1]),
    }
}

/// PE `id` with user transport TCP `user:7000` (data only), registration life 600 s,
/// round robin: the PE the registrar tests register.
pub fn tcp_pe(id: u32, user: IpAddr) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 600_000,
        user_transport: TransportParameter::Tcp {
            port: 7000,
            transport_use: TransportUse::DataOnly,
            address: user,
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// ENRP_PRESENCE from `sender` (no reply required, no server information, checksum
/// 0xFFFF).
pub fn presence(sender: u32) -> Presence {
    crate::enrp_msgs::presence(sender, 0xFFFF)
}

/// The injection of issue 13 over the ENRP association `a`: [`presence`] as `sender`, then
/// HANDLE_UPDATE ADD_PE of PE `pe` in [`POOL`], homed at `sender` (user transport TCP
/// `127.0.0.66:6666`, data only, round robin, life 600 s), each with its PPID on stream 0.
/// Send errors are ignored (the registrar may have closed the association already).
pub async fn inject(a: &mut Association, sender: u32, receiver: u32, pe: u32) {
    let msgs: [Message; 2] = [
        presence(sender).into(),
        HandleUpdate {
            takeover_suggested: false,
            sender,
            receiver,
            action: UpdateAction::AddPe,
            reserved: 0,
            pool_handle: POOL.into(),
            pool_element: PoolElementInfo {
                id: pe,
                home_server_id: sender,
                registration_life: 600_000,
                user_transport: TransportParameter::Tcp {
                    port: 6666,
                    transport_use: TransportUse::DataOnly,
                    address: IpAddr::from([127, 0, 0, 66]),
                },
                policy: Policy::RoundRobin,
                asap_transport: None,
            },
        }
        .into(),
    ];
    for m in msgs {
        let bytes = m.to_bytes().expect("encode");
        let _ = a.send(&Msg::new(m.protocol().ppid(), 0, bytes)).await;
    }
}

/// Registers each PE ID of `ids` in [`POOL`] over `a` (one ASAP_REGISTRATION after the
/// other, each answered before the next), user transport TCP `user:7000`, life 600 s.
/// Panics on a rejection.
pub async fn register_pes(a: &mut Association, user: IpAddr, ids: impl IntoIterator<Item = u32>) {
    for id in ids {
        let x = register(a, POOL, tcp_pe(id, user)).await;
        assert!(!x.reject, "registration of PE {id:#x} rejected: {x:?}");
        assert_eq!(x.pe_identifier, id);
    }
}

/// Deregisters each PE ID of `ids` from [`POOL`] with ASAP_DEREGISTRATION over `a`.
/// Panics on a rejection.
pub async fn deregister_pes(a: &mut Association, ids: impl IntoIterator<Item = u32>) {
    for id in ids {
        let dereg = Deregistration {
            pool_handle: POOL.into(),
            pe_identifier: id,
        };
        match ask(a, dereg).await {
            Message::Asap(AsapMessage::DeregistrationResponse(x)) => {
                assert!(!x.reject, "deregistration of PE {id:#x} rejected: {x:?}");
                assert_eq!(x.pe_identifier, id);
            }
            other => panic!("expected DEREGISTRATION_RESPONSE for PE {id:#x}, got {other:?}"),
        }
    }
}

/// The whole handle table of the registrar at `enrp`, asked as server `sender`
/// (HANDLE_TABLE_REQUEST on a fresh ENRP association, repeated while the response has the
/// M bit, RFC 5353 §2.4): PE ID → the PE as the registrar holds it.
pub async fn handle_table(enrp: SocketAddr, sender: u32) -> BTreeMap<u32, PoolElementInfo> {
    let mut a = connect(enrp, Protocol::Enrp).await;
    let mut all = BTreeMap::new();
    loop {
        send(
            &mut a,
            HandleTableRequest {
                own_children_only: false,
                sender,
                receiver: 0,
            },
        )
        .await;
        match recv_msg(&mut a, Protocol::Enrp).await {
            Message::Enrp(EnrpMessage::HandleTableResponse(r)) => {
                for p in r.pools {
                    for e in p.pool_elements {
                        all.insert(e.id, e);
                    }
                }
                if !r.more {
                    return all;
                }
            }
            other => panic!("expected HANDLE_TABLE_RESPONSE, got {other:?}"),
        }
    }
}

/// [`handle_table`] asked hsdump style (sender ID 0): PE ID → home server ID.
pub async fn dump_table(enrp: SocketAddr) -> BTreeMap<u32, u32> {
    homes(handle_table(enrp, 0).await)
}

/// PE ID → home server ID of a [`handle_table`].
pub fn homes(table: BTreeMap<u32, PoolElementInfo>) -> BTreeMap<u32, u32> {
    table
        .into_iter()
        .map(|(id, e)| (id, e.home_server_id))
        .collect()
}

/// Resolves `handle` asking for all PEs on `a` (RFC 5352 §2.2.5): `Ok` with the PE IDs of
/// the HANDLE_RESOLUTION_RESPONSE, `Err` with any other answer (e.g. an Operation Error for
/// an unknown pool).
pub async fn resolve_ids(a: &mut Association, handle: &str) -> Result<BTreeSet<u32>, Message> {
    let mut hr = HandleResolution::new(handle);
    hr.option = Some(HandleResolutionOption {
        items: HandleResolutionOption::ALL,
    });
    match ask(a, hr).await {
        Message::Asap(AsapMessage::HandleResolutionResponse(x)) => {
            Ok(x.pool_elements.iter().map(|p| p.id).collect())
        }
        other => Err(other),
    }
}

/// Resolves [`POOL`] asking for all PEs on `a`: the PE IDs returned.
pub async fn resolve_on(a: &mut Association) -> BTreeSet<u32> {
    resolve_ids(a, POOL)
        .await
        .unwrap_or_else(|other| panic!("expected HANDLE_RESOLUTION_RESPONSE, got {other:?}"))
}

/// [`resolve_on`] a fresh ASAP association to `asap`.
pub async fn resolve_all(asap: SocketAddr) -> BTreeSet<u32> {
    resolve_on(&mut connect(asap, Protocol::Asap).await).await
}

/// The TCP user transports (`address:port`) of the PEs a resolution returned, sorted; PEs
/// with another user transport are left out.
pub fn tcp_users(r: &HandleResolutionResponse) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = r
        .pool_elements
        .iter()
        .filter_map(|pe| match &pe.user_transport {
            TransportParameter::Tcp { port, address, .. } => Some(SocketAddr::new(*address, *port)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}
