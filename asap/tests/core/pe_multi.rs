//! Deterministic tests of the N-registration PE core (`asap::pe::multi::MultiPeCore`, issue
//! 12 item 3) with a virtual clock: two PEs on one registrar link, each with its own
//! timers, rejections and keep-alive answers. The messages sent are checked encoded on the
//! wire (RFC 5352 §2.2 message types) and decoded back.

use std::time::{Duration, Instant};

use asap::pe::multi::{
    backoff, t4_for_life, Answer, MultiConfig, MultiEvent, MultiPeCore, RegistrationSpec,
    RejectRetry,
};
use asap::registrar_client::{Action, ConnId, LinkConfig};

use crate::common::{actions, connect_first, connect_of, sa};
use asap::wire::asap_msg::{
    DeregistrationResponse, EndpointKeepAlive, Registration, RegistrationResponse,
};
use asap::wire::{
    AsapMessage, CauseCode, ErrorCause, Message, OperationError, Policy, PoolElementInfo,
    PoolHandle, Protocol, TransportParameter, TransportUse,
};

const POOL: &str = "MultiPool";
const A: u32 = 0xA1;
const B: u32 = 0xB2;
/// RFC 5352 §2.2 message types.
const REGISTRATION: u8 = 0x01;
const DEREGISTRATION: u8 = 0x02;
const KEEP_ALIVE_ACK: u8 = 0x08;

fn element(id: u32, life_ms: i32) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: life_ms,
        user_transport: TransportParameter::Tcp {
            port: 7000 + (id as u16 & 0xff),
            transport_use: TransportUse::DataOnly,
            address: "10.0.0.5".parse().expect("lit"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// A registration retried 1 s, 2 s, 4 s … (at most 60 s) after rejections.
fn spec(id: u32, life_ms: i32) -> RegistrationSpec {
    let mut s = RegistrationSpec::new(PoolHandle::from(POOL), element(id, life_ms));
    s.reject_retry = RejectRetry::Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    s
}

fn core() -> MultiPeCore {
    let mut cfg = MultiConfig::new(LinkConfig {
        static_registrars: vec![vec![sa("10.0.0.1:3863")], vec![sa("10.0.0.2:3863")]],
        ..LinkConfig::default()
    });
    cfg.registration_timeout = Duration::from_secs(5);
    MultiPeCore::new(cfg, 7)
}

fn events(c: &mut MultiPeCore) -> Vec<MultiEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// The messages sent, encoded as on the wire: (association, bytes).
fn wire(acts: &[Action]) -> Vec<(ConnId, Vec<u8>)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send { conn, message } => Some((
                *conn,
                Message::Asap(message.clone())
                    .to_bytes()
                    .expect("encodable")
                    .to_vec(),
            )),
            _ => None,
        })
        .collect()
}

/// (association, message type byte, PE identifier) of every message sent, decoded back
/// from its encoding.
fn sent(acts: &[Action]) -> Vec<(ConnId, u8, u32)> {
    wire(acts)
        .into_iter()
        .map(|(conn, bytes)| {
            let d = Message::decode(Protocol::Asap, &bytes).expect("decodable");
            let id = match d.message {
                Message::Asap(AsapMessage::Registration(r)) => {
                    assert_eq!(r.pool_handle, PoolHandle::from(POOL));
                    r.pool_element.id
                }
                Message::Asap(AsapMessage::Deregistration(r)) => r.pe_identifier,
                Message::Asap(AsapMessage::EndpointKeepAliveAck(r)) => {
                    assert_eq!(r.pool_handle, PoolHandle::from(POOL));
                    r.pe_identifier
                }
                other => panic!("unexpected {other:?}"),
            };
            (conn, bytes[0], id)
        })
        .collect()
}

fn response(id: u32, reject: bool) -> AsapMessage {
    RegistrationResponse {
        reject,
        pool_handle: POOL.into(),
        pe_identifier: id,
        error: reject.then(|| OperationError::single(ErrorCause::plain(CauseCode::InvalidValues))),
    }
    .into()
}

fn keep_alive(id: Option<u32>) -> AsapMessage {
    EndpointKeepAlive {
        home: false,
        server_id: 0x5E,
        pool_handle: POOL.into(),
        pe_identifier: id,
    }
    .into()
}

fn answer(c: &MultiPeCore, id: u32) -> (Answer, u32) {
    let (_, st) = c
        .registration(&(PoolHandle::from(POOL), id))
        .expect("registration kept");
    (st.answer, st.rejections)
}

/// A and B (life `life_ms`) wanted, then the first registrar connected: returns the core,
/// the association and what was sent on it.
fn connected(t0: Instant, life_ms: i32) -> (MultiPeCore, ConnId, Vec<Action>) {
    let mut c = core();
    c.upsert(t0, spec(A, life_ms));
    c.upsert(t0, spec(B, life_ms));
    assert!(
        actions(&mut c).is_empty(),
        "nothing sent without a registrar"
    );
    c.start(t0);
    let (conn, acts) = connect_first(&mut c, t0);
    (c, conn, acts)
}

/// Two PEs (T4 = 40 s for a 60 s life) registered on the first registrar; the bytes of the
/// REGISTRATIONs are those of the registrations as given.
fn two_registered(t0: Instant) -> (MultiPeCore, ConnId) {
    let (mut c, conn, acts) = connected(t0, 60_000);
    let expected: Vec<(ConnId, Vec<u8>)> = [A, B]
        .iter()
        .map(|id| {
            let m: AsapMessage = Registration {
                pool_handle: POOL.into(),
                pool_element: element(*id, 60_000),
            }
            .into();
            (conn, Message::Asap(m).to_bytes().expect("enc").to_vec())
        })
        .collect();
    assert_eq!(
        wire(&acts),
        expected,
        "one REGISTRATION per PE, on the one link"
    );
    c.on_message(t0, conn, response(A, false));
    c.on_message(t0, conn, response(B, false));
    let ev = events(&mut c);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, MultiEvent::Registered { .. }))
            .count(),
        2,
        "{ev:?}"
    );
    assert!(c.is_registered(&(POOL.into(), A)));
    assert!(c.is_registered(&(POOL.into(), B)));
    (c, conn)
}

#[test]
fn two_pes_register_and_reregister_each_on_its_own_t4() {
    let t0 = Instant::now();
    let (mut c, conn) = two_registered(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(40)));
    // B's policy changes at 10 s: only B is sent (at once), and its T4 restarts.
    let t1 = t0 + Duration::from_secs(10);
    let mut b = spec(B, 60_000);
    b.element.policy = Policy::LeastUsed { load: 7 };
    c.upsert(t1, b);
    assert_eq!(sent(&actions(&mut c)), vec![(conn, REGISTRATION, B)]);
    c.on_message(t1, conn, response(B, false));
    assert!(matches!(
        &events(&mut c)[..],
        [MultiEvent::Reregistered { identifier, policy: Policy::LeastUsed { load: 7 }, .. }] if *identifier == B
    ));
    // T4: A at 40 s, B at 50 s.
    c.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(sent(&actions(&mut c)), vec![(conn, REGISTRATION, A)]);
    c.on_message(t0 + Duration::from_secs(40), conn, response(A, false));
    c.handle_timeout(t0 + Duration::from_secs(50));
    assert_eq!(sent(&actions(&mut c)), vec![(conn, REGISTRATION, B)]);
    assert_eq!(c.stats().reregistrations, 2);
}

#[test]
fn one_rejected_is_retried_with_backoff_while_the_other_stays_registered() {
    let t0 = Instant::now();
    let (mut c, conn, acts) = connected(t0, 300_000);
    assert_eq!(sent(&acts).len(), 2);
    c.on_message(t0, conn, response(A, false));
    c.on_message(t0, conn, response(B, true));
    assert_eq!(answer(&c, A), (Answer::Accepted, 0));
    assert_eq!(answer(&c, B), (Answer::Rejected, 1));
    let (_, st) = c.registration(&(POOL.into(), B)).expect("kept");
    assert_eq!(
        st.error.as_ref().and_then(OperationError::first_code),
        Some(CauseCode::InvalidValues)
    );
    assert!(events(&mut c)
        .iter()
        .any(|e| matches!(e, MultiEvent::Rejected(r) if r.identifier == B)));
    // B again after 1 s, 2 s, 4 s; A is not touched.
    let mut t = t0;
    for (n, wait) in [(1u32, 1u64), (2, 2), (3, 4)] {
        assert_eq!(
            c.poll_timeout(),
            Some(t + Duration::from_secs(wait)),
            "rejection {n}"
        );
        c.handle_timeout(t + Duration::from_secs(wait) - Duration::from_millis(1));
        assert!(actions(&mut c).is_empty(), "not before the back-off");
        t += Duration::from_secs(wait);
        c.handle_timeout(t);
        assert_eq!(sent(&actions(&mut c)), vec![(conn, REGISTRATION, B)]);
        if n < 3 {
            c.on_message(t, conn, response(B, true));
            assert_eq!(answer(&c, B), (Answer::Rejected, n + 1));
        }
    }
    assert_eq!(c.stats().reject_retries, 3);
    assert_eq!(answer(&c, A), (Answer::Accepted, 0));
    c.on_message(t, conn, response(B, false));
    assert_eq!(answer(&c, B), (Answer::Accepted, 0));
    // Back to T4 (280 s): A's comes first.
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(280)));
}

#[test]
fn link_loss_reregisters_both_at_the_next_registrar() {
    let t0 = Instant::now();
    let (mut c, c1) = two_registered(t0);
    events(&mut c);
    c.on_lost(t0, c1);
    assert_eq!(events(&mut c), vec![MultiEvent::RegistrarLost]);
    assert_eq!(answer(&c, A).0, Answer::Pending);
    assert_eq!(answer(&c, B).0, Answer::Pending);
    assert!(!c.is_registered(&(POOL.into(), A)));
    let (c2, addrs) = connect_of(&actions(&mut c));
    assert_eq!(addrs, vec![sa("10.0.0.2:3863")], "the lost registrar last");
    // Nothing is re-registered on a T4 of the lost association.
    c.handle_timeout(t0 + Duration::from_secs(41));
    assert!(sent(&actions(&mut c)).is_empty());
    let t1 = t0 + Duration::from_secs(41);
    c.on_connected(t1, c2);
    assert_eq!(
        sent(&actions(&mut c)),
        vec![(c2, REGISTRATION, A), (c2, REGISTRATION, B)]
    );
    assert!(matches!(&events(&mut c)[..], [MultiEvent::LinkUp { conn, .. }] if *conn == c2));
    c.on_message(t1, c2, response(A, false));
    c.on_message(t1, c2, response(B, false));
    assert!(c.is_registered(&(POOL.into(), A)) && c.is_registered(&(POOL.into(), B)));
    let ev = events(&mut c);
    assert!(
        ev.iter().all(|e| matches!(e, MultiEvent::Registered { registrar, .. } if *registrar == vec![sa("10.0.0.2:3863")])),
        "{ev:?}"
    );
}

#[test]
fn keep_alive_is_answered_per_pe_identifier() {
    let t0 = Instant::now();
    let (mut c, conn) = two_registered(t0);
    events(&mut c);
    c.on_message(t0, conn, keep_alive(Some(B)));
    assert_eq!(sent(&actions(&mut c)), vec![(conn, KEEP_ALIVE_ACK, B)]);
    c.on_message(t0, conn, keep_alive(Some(A)));
    assert_eq!(sent(&actions(&mut c)), vec![(conn, KEEP_ALIVE_ACK, A)]);
    // Without a PE identifier: every PE of the pool.
    c.on_message(t0, conn, keep_alive(None));
    assert_eq!(
        sent(&actions(&mut c)),
        vec![(conn, KEEP_ALIVE_ACK, A), (conn, KEEP_ALIVE_ACK, B)]
    );
    // An identifier that is not ours, or another pool: no answer.
    c.on_message(t0, conn, keep_alive(Some(0xC3)));
    c.on_message(
        t0,
        conn,
        EndpointKeepAlive {
            home: false,
            server_id: 0x5E,
            pool_handle: "OtherPool".into(),
            pe_identifier: Some(A),
        }
        .into(),
    );
    assert!(actions(&mut c).is_empty());
    // A user that gates the answers (proxy-pe) answers only what it allows.
    let k = EndpointKeepAlive {
        home: false,
        server_id: 0x5E,
        pool_handle: POOL.into(),
        pe_identifier: None,
    };
    c.on_keep_alive(t0, conn, &k, &[B]);
    assert_eq!(sent(&actions(&mut c)), vec![(conn, KEEP_ALIVE_ACK, B)]);
    assert_eq!(c.home(), Some(0x5E));
}

#[test]
fn deregistering_one_keeps_the_other() {
    let t0 = Instant::now();
    let (mut c, conn) = two_registered(t0);
    let removed = c.remove(&(POOL.into(), A)).expect("was registered");
    assert_eq!(removed.element.id, A);
    assert_eq!(sent(&actions(&mut c)), vec![(conn, DEREGISTRATION, A)]);
    assert!(c.registration(&(POOL.into(), A)).is_none());
    assert!(c.is_registered(&(POOL.into(), B)));
    // A's keep-alive is not answered any more, B's is.
    c.on_message(t0, conn, keep_alive(None));
    assert_eq!(sent(&actions(&mut c)), vec![(conn, KEEP_ALIVE_ACK, B)]);
    // T4: only B.
    c.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(sent(&actions(&mut c)), vec![(conn, REGISTRATION, B)]);
    // A late answer for A changes nothing.
    c.on_message(t0, conn, response(A, false));
    assert!(c.registration(&(POOL.into(), A)).is_none());
}

#[test]
fn unanswered_registration_abandons_the_registrar_for_all() {
    let t0 = Instant::now();
    let (mut c, c1, _) = connected(t0, 60_000);
    c.on_message(t0, c1, response(A, false));
    // B unanswered: sent again after T2 (5 s), then the registrar is abandoned.
    c.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(sent(&actions(&mut c)), vec![(c1, REGISTRATION, B)]);
    c.handle_timeout(t0 + Duration::from_secs(10));
    let acts = actions(&mut c);
    assert!(acts.contains(&Action::Close { conn: c1 }), "{acts:?}");
    let (c2, addrs) = connect_of(&acts);
    assert_eq!(addrs, vec![sa("10.0.0.2:3863")]);
    assert_eq!(c.stats().t2_retries, 1);
    assert_eq!(c.stats().abandoned, 1);
    c.on_connected(t0 + Duration::from_secs(10), c2);
    assert_eq!(
        sent(&actions(&mut c)),
        vec![(c2, REGISTRATION, A), (c2, REGISTRATION, B)]
    );
}

#[test]
fn shutdown_deregisters_every_pe_and_waits_for_all_answers() {
    let t0 = Instant::now();
    let (mut c, conn) = two_registered(t0);
    events(&mut c);
    c.shutdown(t0);
    assert_eq!(
        sent(&actions(&mut c)),
        vec![(conn, DEREGISTRATION, A), (conn, DEREGISTRATION, B)]
    );
    let dereg = |id| -> AsapMessage {
        DeregistrationResponse {
            reject: false,
            pool_handle: POOL.into(),
            pe_identifier: id,
            error: None,
        }
        .into()
    };
    c.on_message(t0, conn, dereg(A));
    assert!(!c.is_stopped(), "B not answered yet");
    c.on_message(t0, conn, dereg(B));
    assert!(c.is_stopped());
    assert!(actions(&mut c).contains(&Action::Close { conn }));
    assert_eq!(
        events(&mut c),
        vec![MultiEvent::Deregistered { confirmed: true }]
    );
}

#[test]
fn sync_sends_only_what_changed_and_deregisters_what_is_gone() {
    let t0 = Instant::now();
    let (mut c, conn) = two_registered(t0);
    let mut b = spec(B, 60_000);
    b.element.policy = Policy::LeastUsed { load: 1 };
    c.sync(t0, vec![b, spec(0xD4, 60_000)]);
    assert_eq!(
        sent(&actions(&mut c)),
        vec![
            (conn, DEREGISTRATION, A),
            (conn, REGISTRATION, B),
            (conn, REGISTRATION, 0xD4)
        ]
    );
    // The same set again: nothing.
    let mut b = spec(B, 60_000);
    b.element.policy = Policy::LeastUsed { load: 1 };
    c.sync(t0, vec![b, spec(0xD4, 60_000)]);
    assert!(actions(&mut c).is_empty());
}

#[test]
fn t4_and_backoff_rules() {
    assert_eq!(
        t4_for_life(Duration::from_secs(90)),
        Duration::from_secs(70)
    );
    assert_eq!(
        t4_for_life(Duration::from_secs(3600)),
        Duration::from_secs(600)
    );
    assert_eq!(
        t4_for_life(Duration::from_secs(30)),
        Duration::from_secs(15)
    );
    assert_eq!(t4_for_life(Duration::ZERO), Duration::from_secs(600));
    assert_eq!(
        t4_for_life(Duration::from_millis(10)),
        Duration::from_millis(100)
    );
    let s = |n| {
        backoff(
            Duration::from_secs(1),
            Duration::from_secs(60),
            n,
            Duration::from_secs(280),
        )
    };
    assert_eq!(s(1), Duration::from_secs(1));
    assert_eq!(s(3), Duration::from_secs(4));
    assert_eq!(s(40), Duration::from_secs(60));
    assert_eq!(
        backoff(
            Duration::from_secs(1),
            Duration::from_secs(60),
            5,
            Duration::from_secs(2)
        ),
        Duration::from_secs(2)
    );
}
