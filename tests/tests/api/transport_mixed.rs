//! Mixed deployments (issue 17 item 4): one registrar listening on sctp-udp (RFC 6951) and
//! TCP at once, on one port; a PE over one transport and a PU over the other resolve each
//! other and a session echoes data; ASAP_SERVER_ANNOUNCE lists both transports. The same
//! without the second listener fails, so the tests show what the listener set adds.
//!
//! Run: `cargo test -p rserpool-tests --test api transport_mixed`

use std::net::SocketAddr;
use std::time::Duration;

use asap::pe::{PoolElement, PoolElementConfig};
use asap::pu::{PoolUser, PoolUserConfig};
use asap::session::{ServerEvent, SessionEvent, SessionListener};
use asap::transport::TransportKind;
use asap::wire::{AsapMessage, Message, Policy, Protocol, TransportParameter};
use enrp_server::core::CoreConfig;
use enrp_server::driver::Server;
use rserpool_tests::api::{pe_config, session, within, POOL};
use rserpool_tests::registrar::tcp_driver;
use tokio::sync::oneshot;

const LO: [u8; 4] = [127, 0, 0, 1];

struct Mixed {
    /// The ASAP port every transport listens on.
    port: u16,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Mixed {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// A registrar listening on `kinds` (127.0.0.1, ephemeral port, no ENRP), announcing to
/// `announce` every 100 ms if given.
async fn registrar(kinds: &[TransportKind], id: u32, announce: Option<SocketAddr>) -> Mixed {
    registrar_with(kinds, id, announce, false).await.0
}

/// [`registrar`], with ENRP listeners if `enrp` (their shared port is returned too).
async fn registrar_with(
    kinds: &[TransportKind],
    id: u32,
    announce: Option<SocketAddr>,
    enrp: bool,
) -> (Mixed, u16) {
    asap::transport::sctp_udp::set_process_defaults(0, None);
    let mut core = CoreConfig::new(id);
    core.asap_announce_targets = announce.into_iter().collect();
    core.announce_interval = Duration::from_millis(100);
    let mut driver = tcp_driver(SocketAddr::from((LO, 0)), SocketAddr::from((LO, 0)), 100);
    if !enrp {
        driver.enrp = Vec::new();
    }
    driver.transport = kinds[0];
    driver.extra_transports = kinds[1..].to_vec();
    let server = Server::bind(core, driver).await.expect("bind registrar");
    let listeners = server.listeners();
    let protocols: &[Protocol] = if enrp {
        &[Protocol::Asap, Protocol::Enrp]
    } else {
        &[Protocol::Asap]
    };
    assert_eq!(
        listeners
            .iter()
            .map(|(p, k, _)| (*p, *k))
            .collect::<Vec<_>>(),
        protocols
            .iter()
            .flat_map(|p| kinds.iter().map(|k| (*p, *k)))
            .collect::<Vec<_>>(),
        "one listener per protocol and transport, in order"
    );
    let port = listeners[0].2[0].port();
    let enrp_port = server.enrp_addrs().first().map_or(0, SocketAddr::port);
    for (p, k, addrs) in &listeners {
        let want = if *p == Protocol::Asap {
            port
        } else {
            enrp_port
        };
        assert_eq!(
            addrs,
            &vec![SocketAddr::from((LO, want))],
            "{p} over {k} listens on the shared port"
        );
    }
    assert_eq!(
        server.listen_addrs(Protocol::Asap, Some(*kinds.last().expect("kinds"))),
        vec![SocketAddr::from((LO, port))]
    );
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (Mixed { port, stop, task }, enrp_port)
}

/// An echo PE registered over `kind` with a user transport of the same kind.
pub(crate) async fn echo_pe(kind: TransportKind, registrar: SocketAddr) -> (PoolElement, u32) {
    let listener = SessionListener::bind(kind, &[SocketAddr::from((LO, 0))], 0)
        .await
        .expect("bind user transport");
    let mut cfg = pe_config(&[registrar], Policy::RoundRobin);
    cfg.user_transport = listener.user_transport(None).expect("transport");
    let mut pc = PoolElementConfig::tcp(cfg);
    pc.registrar_transport = kind;
    let mut pe = PoolElement::register(pc).await.expect("start PE");
    within("PE registration", pe.wait_registered())
        .await
        .expect("registered");
    let id = pe.identifier();
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(ev)) = s.recv().await {
                    if let ServerEvent::Data(d) = ev {
                        let mut back = b"echo:".to_vec();
                        back.extend_from_slice(&d);
                        if s.send(back).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (pe, id)
}

/// Resolves [`POOL`] at `pu`: exactly [`echo_pe`] `id`, with a user transport of `kind` (an
/// SCTP parameter for sctp-udp); then a session to it echoes each of `data` ("echo:" + the
/// data comes back).
pub(crate) async fn resolve_and_echo(
    pu: &PoolUser,
    id: u32,
    kind: TransportKind,
    data: impl IntoIterator<Item = Vec<u8>>,
) {
    let pes = within("resolve", pu.resolve(POOL)).await.expect("resolved");
    assert_eq!(pes.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id]);
    match (&pes[0].user_transport, kind) {
        (TransportParameter::Sctp { .. }, TransportKind::SctpUdp)
        | (TransportParameter::Tcp { .. }, TransportKind::Tcp) => {}
        (t, k) => panic!("user transport {t:?} of a PE over {k}"),
    }
    let mut s = session(pu).await;
    for data in data {
        s.send(data.clone()).await.expect("send");
        let got = loop {
            match within("echo", s.recv()).await {
                Some(SessionEvent::Data(d)) => break d,
                Some(SessionEvent::Failed(f)) => panic!("session failed: {f:?}"),
                Some(_) => continue,
                None => panic!("session ended"),
            }
        };
        assert_eq!(&got[..5], b"echo:");
        assert_eq!(&got[5..], &data[..]);
    }
}

/// A pool user configuration: registrar `registrar` over `kind`, 2 s request timeout.
pub(crate) fn pu_config(kind: TransportKind, registrar: SocketAddr) -> PoolUserConfig {
    let mut c = PoolUserConfig::tcp();
    c.registrar_transport = kind;
    c.pu.link.static_registrars = vec![vec![registrar]];
    c.pu.request_timeout = Duration::from_secs(2);
    c.seed = Some(7);
    c
}

/// A PE over `pe_kind` and a PU over `pu_kind` at one registrar listening on both.
async fn pe_and_pu_over_different_transports(pe_kind: TransportKind, pu_kind: TransportKind) {
    let r = registrar(&[TransportKind::SctpUdp, TransportKind::Tcp], 0x4001, None).await;
    let at = SocketAddr::from((LO, r.port));
    let (_pe, id) = echo_pe(pe_kind, at).await;
    let pu = PoolUser::start(pu_config(pu_kind, at))
        .await
        .expect("start PU");
    resolve_and_echo(
        &pu,
        id,
        pe_kind,
        (0..3u8).map(|i| vec![i; 500 + 2000 * i as usize]),
    )
    .await;
    r.stop().await;
}

#[tokio::test]
async fn pe_over_sctp_udp_pu_over_tcp() {
    pe_and_pu_over_different_transports(TransportKind::SctpUdp, TransportKind::Tcp).await;
}

#[tokio::test]
async fn pe_over_tcp_pu_over_sctp_udp() {
    pe_and_pu_over_different_transports(TransportKind::Tcp, TransportKind::SctpUdp).await;
}

/// ASAP_SERVER_ANNOUNCE of a registrar on sctp-udp and TCP: an SCTP and a TCP transport
/// parameter, same address and port, in the configured order.
#[tokio::test]
async fn announce_lists_each_listening_transport() {
    let sink = tokio::net::UdpSocket::bind(SocketAddr::from((LO, 0)))
        .await
        .expect("bind");
    let to = sink.local_addr().expect("addr");
    let r = registrar(
        &[TransportKind::SctpUdp, TransportKind::Tcp],
        0x4002,
        Some(to),
    )
    .await;
    let mut buf = vec![0u8; 2048];
    let (n, _) = within("announce", sink.recv_from(&mut buf))
        .await
        .expect("recv");
    let m = Message::decode(Protocol::Asap, &buf[..n])
        .expect("decodes")
        .message;
    let Message::Asap(AsapMessage::ServerAnnounce(a)) = m else {
        panic!("expected ASAP_SERVER_ANNOUNCE, got {m:?}");
    };
    assert_eq!(a.server_id, 0x4002);
    assert_eq!(a.transports.len(), 2, "{:?}", a.transports);
    match &a.transports[0] {
        TransportParameter::Sctp {
            port, addresses, ..
        } => {
            assert_eq!(*port, r.port);
            assert_eq!(addresses, &vec![std::net::IpAddr::from(LO)]);
        }
        t => panic!("first transport {t:?}, expected SCTP (sctp-udp listener)"),
    }
    match &a.transports[1] {
        TransportParameter::Tcp { port, address, .. } => {
            assert_eq!(*port, r.port);
            assert_eq!(*address, std::net::IpAddr::from(LO));
        }
        t => panic!("second transport {t:?}, expected TCP"),
    }
    r.stop().await;
}

/// The control: a registrar on sctp-udp alone is not reachable by a PU over TCP.
#[tokio::test]
async fn without_the_tcp_listener_a_tcp_pu_finds_no_registrar() {
    let r = registrar(&[TransportKind::SctpUdp], 0x4003, None).await;
    let at = SocketAddr::from((LO, r.port));
    let (_pe, _) = echo_pe(TransportKind::SctpUdp, at).await;
    let mut c = pu_config(TransportKind::Tcp, at);
    c.pu.link.hunt_max_backoff = Duration::from_millis(200);
    let pu = PoolUser::start(c).await.expect("start PU");
    let r2 = tokio::time::timeout(Duration::from_secs(5), pu.resolve(POOL)).await;
    assert!(
        !matches!(r2, Ok(Ok(ref v)) if !v.is_empty()),
        "a TCP PU resolved at an sctp-udp-only registrar: {r2:?}"
    );
    r.stop().await;
}

/// ENRP on TCP and sctp-udp: both ENRP listeners answer a PRESENCE, and the Server
/// Information (which can only be an SCTP transport, RFC 5354 §2.2.2) names the sctp-udp
/// listener even when TCP is the first transport.
#[tokio::test]
async fn presence_names_the_sctp_enrp_listener() {
    use asap::wire::enrp_msg::Presence;
    use asap::wire::EnrpMessage;
    use rserpool_tests::registrar::{connect_over, recv_msg, send};
    let (r, enrp_port) = registrar_with(
        &[TransportKind::Tcp, TransportKind::SctpUdp],
        0x4004,
        None,
        true,
    )
    .await;
    let at = SocketAddr::from((LO, enrp_port));
    for kind in [TransportKind::Tcp, TransportKind::SctpUdp] {
        let mut a = connect_over(kind, at, Protocol::Enrp).await;
        send(
            &mut a,
            Presence {
                reply_required: true,
                sender: 0x77,
                receiver: 0x4004,
                checksum: 0,
                server_information: None,
            },
        )
        .await;
        let m = within("PRESENCE reply", recv_msg(&mut a, Protocol::Enrp)).await;
        let Message::Enrp(EnrpMessage::Presence(p)) = m else {
            panic!("{kind}: expected PRESENCE, got {m:?}");
        };
        assert_eq!(p.sender, 0x4004, "{kind}");
        let info = p.server_information.expect("Server Information");
        match info.transport {
            TransportParameter::Sctp {
                port, addresses, ..
            } => {
                assert_eq!(port, enrp_port, "{kind}");
                assert_eq!(addresses, vec![std::net::IpAddr::from(LO)], "{kind}");
            }
            t => panic!("{kind}: Server Information with {t:?}, expected SCTP"),
        }
    }
    r.stop().await;
}
