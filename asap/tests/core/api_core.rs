//! Deterministic tests of the sans-I/O PE and PU cores with a virtual clock: every input
//! carries its `now`, nothing sleeps, timers are read from `poll_timeout`.

use std::time::{Duration, Instant};

use asap::pe::{PeConfig, PeCore, PeEvent};
use asap::pu::{PuConfig, PuCore, PuEvent, RequestId, ResolveError};
use asap::registrar_client::{Action, ConnId};

use crate::common::{actions, connect_first, connect_of, sa};
use asap::wire::asap_msg::{
    DeregistrationResponse, EndpointKeepAlive, HandleResolutionResponse, RegistrationResponse,
};
use asap::wire::{
    AsapMessage, CauseCode, ErrorCause, HandleResolutionOption, OperationError, Policy,
    PoolElementInfo, PoolHandle, TransportParameter, TransportUse,
};

fn user() -> TransportParameter {
    TransportParameter::Tcp {
        port: 7,
        transport_use: TransportUse::DataPlusControl,
        address: "10.0.0.5".parse().expect("lit"),
    }
}

fn pe_cfg(life: Duration) -> PeConfig {
    let mut c = PeConfig::new("EchoPool", user(), Policy::LeastUsed { load: 5 });
    c.registration_life = life;
    c.link.static_registrars = vec![vec![sa("10.0.0.1:3863")], vec![sa("10.0.0.2:3863")]];
    c
}

fn events_pe(pe: &mut PeCore) -> Vec<PeEvent> {
    std::iter::from_fn(|| pe.poll_event()).collect()
}

fn sent(actions: &[Action]) -> Vec<(ConnId, AsapMessage)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, message } => Some((*conn, message.clone())),
            _ => None,
        })
        .collect()
}

fn ok_response(pe: &PeCore) -> AsapMessage {
    RegistrationResponse {
        reject: false,
        pool_handle: "EchoPool".into(),
        pe_identifier: pe.identifier(),
        error: None,
    }
    .into()
}

/// Starts a PE (`cfg`, rng `seed`) at `t0` and connects it to the first registrar: the
/// core, the connection and the actions that followed the connection (the REGISTRATION).
fn connected_pe(cfg: PeConfig, seed: u64, t0: Instant) -> (PeCore, ConnId, Vec<Action>) {
    let mut pe = PeCore::new(cfg, seed);
    pe.start(t0);
    let (conn, after) = connect_first(&mut pe, t0);
    (pe, conn, after)
}

/// Starts a PE and brings it to "registered" on the first registrar.
fn registered_pe(t0: Instant, life: Duration) -> (PeCore, ConnId) {
    let (mut pe, conn, after) = connected_pe(pe_cfg(life), 42, t0);
    assert_eq!(sent(&after).len(), 1);
    let resp = ok_response(&pe);
    pe.on_message(t0, conn, resp);
    assert!(pe.is_registered());
    (pe, conn)
}

#[test]
fn registration_carries_config_and_reregisters_every_t4() {
    let t0 = Instant::now();
    let (mut pe, conn, after) = connected_pe(pe_cfg(Duration::from_secs(90)), 42, t0);
    let id = pe.identifier();
    assert_ne!(id, 0);
    let s = sent(&after);
    let AsapMessage::Registration(reg) = &s[0].1 else {
        panic!("expected REGISTRATION, got {s:?}")
    };
    assert_eq!(reg.pool_handle, PoolHandle::from("EchoPool"));
    assert_eq!(reg.pool_element.id, id);
    assert_eq!(reg.pool_element.registration_life, 90_000, "life in ms");
    assert_eq!(reg.pool_element.home_server_id, 0);
    assert_eq!(reg.pool_element.user_transport, user());
    assert_eq!(reg.pool_element.policy, Policy::LeastUsed { load: 5 });
    assert_eq!(reg.pool_element.asap_transport, None);
    // T2 is armed until the response arrives.
    assert_eq!(pe.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    let resp = ok_response(&pe);
    pe.on_message(t0, conn, resp);
    assert_eq!(
        events_pe(&mut pe),
        vec![PeEvent::Registered {
            identifier: id,
            registrar: vec![sa("10.0.0.1:3863")]
        }]
    );
    // T4 = min(10 min, life − 20 s) = 70 s.
    let t4 = t0 + Duration::from_secs(70);
    assert_eq!(pe.poll_timeout(), Some(t4));
    pe.handle_timeout(t4 - Duration::from_millis(1));
    assert!(actions(&mut pe).is_empty());
    pe.handle_timeout(t4);
    let s = sent(&actions(&mut pe));
    assert!(
        matches!(&s[..], [(c, AsapMessage::Registration(r))] if *c == conn && r.pool_element.id == id)
    );
    let resp = ok_response(&pe);
    pe.on_message(t4, conn, resp);
    assert!(matches!(
        &events_pe(&mut pe)[..],
        [PeEvent::Reregistered { identifier, .. }] if *identifier == id
    ));
    assert_eq!(pe.poll_timeout(), Some(t4 + Duration::from_secs(70)));
}

#[test]
fn t4_rule() {
    let mk = |life: u64| pe_cfg(Duration::from_secs(life)).t4();
    assert_eq!(mk(90), Duration::from_secs(70));
    assert_eq!(mk(3600), Duration::from_secs(600), "capped at 10 minutes");
    assert_eq!(mk(30), Duration::from_secs(15), "short lifes: half");
    let mut c = pe_cfg(Duration::from_secs(90));
    c.reregistration_interval = Some(Duration::from_secs(30));
    assert_eq!(c.t4(), Duration::from_secs(30));
}

#[test]
fn unanswered_registration_is_retried_then_registrar_abandoned() {
    let t0 = Instant::now();
    let (mut pe, c1, after) = connected_pe(pe_cfg(Duration::from_secs(90)), 1, t0);
    assert_eq!(sent(&after).len(), 1);
    let t2 = t0 + Duration::from_secs(30);
    pe.handle_timeout(t2);
    assert_eq!(sent(&actions(&mut pe)).len(), 1, "second attempt");
    pe.handle_timeout(t2 + Duration::from_secs(30));
    let a = actions(&mut pe);
    assert!(a.contains(&Action::Close { conn: c1 }), "{a:?}");
    let (c2, addrs) = connect_of(&a);
    assert_eq!(addrs, vec![sa("10.0.0.2:3863")]);
    pe.on_connected(t2, c2);
    let s = sent(&actions(&mut pe));
    assert!(matches!(&s[..], [(c, AsapMessage::Registration(_))] if *c == c2));
}

#[test]
fn policy_update_reregisters_at_once() {
    let t0 = Instant::now();
    let (mut pe, conn) = registered_pe(t0, Duration::from_secs(90));
    events_pe(&mut pe);
    let t1 = t0 + Duration::from_secs(3);
    pe.set_policy(t1, Policy::LeastUsed { load: 0x8000_0000 });
    let s = sent(&actions(&mut pe));
    match &s[..] {
        [(c, AsapMessage::Registration(r))] => {
            assert_eq!(*c, conn);
            assert_eq!(
                r.pool_element.policy,
                Policy::LeastUsed { load: 0x8000_0000 }
            );
        }
        other => panic!("{other:?}"),
    }
    // A second update while the first is unanswered is sent after the response.
    pe.set_policy(t1, Policy::LeastUsed { load: 7 });
    assert!(sent(&actions(&mut pe)).is_empty());
    let resp = ok_response(&pe);
    pe.on_message(t1, conn, resp);
    let s = sent(&actions(&mut pe));
    assert!(
        matches!(&s[..], [(_, AsapMessage::Registration(r))] if r.pool_element.policy == Policy::LeastUsed { load: 7 })
    );
}

#[test]
fn keep_alive_is_acked_and_h_flag_moves_home() {
    let t0 = Instant::now();
    let (mut pe, conn) = registered_pe(t0, Duration::from_secs(90));
    events_pe(&mut pe);
    let id = pe.identifier();
    let ka = |home: bool, server_id: u32| -> AsapMessage {
        EndpointKeepAlive {
            home,
            server_id,
            pool_handle: "EchoPool".into(),
            pe_identifier: Some(id),
        }
        .into()
    };
    pe.on_message(t0, conn, ka(false, 0x11));
    let s = sent(&actions(&mut pe));
    assert!(
        matches!(&s[..], [(c, AsapMessage::EndpointKeepAliveAck(a))] if *c == conn && a.pe_identifier == id)
    );
    assert_eq!(pe.home(), Some(0x11));
    // A keep-alive for another PE is not answered.
    pe.on_message(
        t0,
        conn,
        EndpointKeepAlive {
            home: false,
            server_id: 0x11,
            pool_handle: "EchoPool".into(),
            pe_identifier: Some(id ^ 1),
        }
        .into(),
    );
    assert!(actions(&mut pe).is_empty());
    events_pe(&mut pe);
    // H flag on an association a takeover registrar opened to us.
    let other = pe.allocate_conn();
    pe.on_accepted(other, vec![sa("10.0.0.3:3863")]);
    pe.on_message(t0, other, ka(true, 0x22));
    let a = actions(&mut pe);
    assert!(
        a.contains(&Action::Close { conn }),
        "old association closed: {a:?}"
    );
    let s = sent(&a);
    assert!(matches!(&s[0], (c, AsapMessage::EndpointKeepAliveAck(_)) if *c == other));
    assert!(
        matches!(&s[1], (c, AsapMessage::Registration(r)) if *c == other && r.pool_element.id == id)
    );
    assert!(events_pe(&mut pe).contains(&PeEvent::HomeChanged {
        from: Some(0x11),
        to: 0x22
    }));
    assert_eq!(pe.home(), Some(0x22));
    assert_eq!(pe.link().current(), Some(other));
    // The registration on the adopted association is confirmed; the next periodic
    // re-registration (T4 = 70 s for a 90 s life) goes to the new home there too.
    let resp = ok_response(&pe);
    pe.on_message(t0, other, resp);
    assert!(pe.is_registered());
    pe.handle_timeout(t0 + Duration::from_secs(71));
    let s = sent(&actions(&mut pe));
    assert!(
        matches!(&s[..], [(c, AsapMessage::Registration(r))] if *c == other && r.pool_element.id == id),
        "{s:?}"
    );
}

/// Anybody can connect to the PE's registrar port: associations waiting for a keep-alive
/// are bounded, further ones are closed at once.
#[test]
fn incoming_registrar_associations_are_bounded() {
    let t0 = Instant::now();
    let (mut pe, _) = registered_pe(t0, Duration::from_secs(90));
    for _ in 0..asap::pe::core::MAX_ACCEPTED {
        let c = pe.allocate_conn();
        pe.on_accepted(c, vec![sa("10.0.0.9:40000")]);
    }
    assert!(actions(&mut pe).is_empty());
    let extra = pe.allocate_conn();
    pe.on_accepted(extra, vec![sa("10.0.0.9:40001")]);
    assert_eq!(actions(&mut pe), vec![Action::Close { conn: extra }]);
}

#[test]
fn rejections_are_typed_and_random_id_clash_picks_a_new_id() {
    let t0 = Instant::now();
    let (mut pe, conn, _) = connected_pe(pe_cfg(Duration::from_secs(90)), 9, t0);
    let old = pe.identifier();
    pe.on_message(t0, conn, reject(old, CauseCode::NonUniquePeIdentifier));
    let ev = events_pe(&mut pe);
    assert!(
        matches!(&ev[..], [PeEvent::Rejected(r)] if r.cause == Some(CauseCode::NonUniquePeIdentifier) && r.identifier == old)
    );
    let new = pe.identifier();
    assert_ne!(new, old);
    assert_ne!(new, 0);
    let s = sent(&actions(&mut pe));
    assert!(matches!(&s[..], [(_, AsapMessage::Registration(r))] if r.pool_element.id == new));
    // Any other cause: no new attempt before T4.
    pe.on_message(t0, conn, reject(new, CauseCode::InconsistentPoolingPolicy));
    assert!(actions(&mut pe).is_empty());
    assert_eq!(pe.identifier(), new);
    assert_eq!(pe.poll_timeout(), Some(t0 + Duration::from_secs(70)));
}

/// A REGISTRATION_RESPONSE rejecting PE `id` with `code`.
fn reject(id: u32, code: CauseCode) -> AsapMessage {
    RegistrationResponse {
        reject: true,
        pool_handle: "EchoPool".into(),
        pe_identifier: id,
        error: Some(OperationError::single(ErrorCause::plain(code))),
    }
    .into()
}

/// The single REGISTRATION in `actions`, with its connection.
fn registration_of(actions: &[Action]) -> (ConnId, u32) {
    match &sent(actions)[..] {
        [(c, AsapMessage::Registration(r))] => (*c, r.pool_element.id),
        other => panic!("expected exactly one REGISTRATION, got {other:?}"),
    }
}

/// RFC 5352 §3.1: a random PE identifier is replaced on "Non-unique PE identifier" only
/// before its first successful registration; afterwards (a stale entry of this very PE
/// at a registrar, e.g. after a takeover or hunt race) it is kept and the registration
/// retried with backoff, both on re-registration and at a new registrar.
#[test]
fn random_id_changes_only_before_first_registration() {
    let t0 = Instant::now();
    let life = Duration::from_secs(90); // T4 = 70 s
    let (mut pe, c1, after) = connected_pe(pe_cfg(life), 11, t0);
    let (_, first) = registration_of(&after);

    // Before any success: a clash picks a new identifier and registers again at once.
    pe.on_message(t0, c1, reject(first, CauseCode::NonUniquePeIdentifier));
    let id = pe.identifier();
    assert_ne!(id, first, "never-registered random id must be replaced");
    assert_ne!(id, 0);
    assert_eq!(registration_of(&actions(&mut pe)), (c1, id));
    events_pe(&mut pe);

    // Success: from now on the identifier is fixed.
    pe.on_message(t0, c1, ok_response(&pe));
    assert!(pe.is_registered());
    events_pe(&mut pe);

    // Periodic re-registration answered "Non-unique": same id, retry after 1 s, then 2 s.
    let t4 = t0 + Duration::from_secs(70);
    pe.handle_timeout(t4);
    assert_eq!(registration_of(&actions(&mut pe)), (c1, id));
    pe.on_message(t4, c1, reject(id, CauseCode::NonUniquePeIdentifier));
    assert_eq!(pe.identifier(), id, "registered id must be kept");
    assert!(actions(&mut pe).is_empty(), "no immediate resend");
    assert!(matches!(
        &events_pe(&mut pe)[..],
        [PeEvent::Rejected(r)] if r.identifier == id && r.cause == Some(CauseCode::NonUniquePeIdentifier)
    ));
    let r1 = t4 + Duration::from_secs(1);
    assert_eq!(pe.poll_timeout(), Some(r1));
    pe.handle_timeout(r1);
    assert_eq!(registration_of(&actions(&mut pe)), (c1, id));
    pe.on_message(r1, c1, reject(id, CauseCode::NonUniquePeIdentifier));
    assert_eq!(pe.identifier(), id);
    let r2 = r1 + Duration::from_secs(2);
    assert_eq!(pe.poll_timeout(), Some(r2), "backoff doubles");
    pe.handle_timeout(r2);
    assert_eq!(registration_of(&actions(&mut pe)), (c1, id));
    pe.on_message(r2, c1, ok_response(&pe));
    events_pe(&mut pe);

    // Registrar lost; the new registrar still holds the old entry (hunt race).
    pe.on_lost(r2, c1);
    let (c2, addrs) = connect_of(&actions(&mut pe));
    assert_eq!(addrs, vec![sa("10.0.0.2:3863")]);
    pe.on_connected(r2, c2);
    assert_eq!(registration_of(&actions(&mut pe)), (c2, id));
    pe.on_message(r2, c2, reject(id, CauseCode::NonUniquePeIdentifier));
    assert_eq!(pe.identifier(), id, "kept at a new registrar too");
    assert!(!pe.is_registered());
    assert!(actions(&mut pe).is_empty());
    // The streak was reset by the success: 1 s again.
    let r3 = r2 + Duration::from_secs(1);
    assert_eq!(pe.poll_timeout(), Some(r3));
    pe.handle_timeout(r3);
    assert_eq!(registration_of(&actions(&mut pe)), (c2, id));
    // The stale entry is gone: registered at the new registrar with the same id.
    pe.on_message(r3, c2, ok_response(&pe));
    assert!(pe.is_registered());
    assert!(events_pe(&mut pe).contains(&PeEvent::Registered {
        identifier: id,
        registrar: vec![sa("10.0.0.2:3863")],
    }));
}

#[test]
fn configured_id_is_kept_across_registrar_loss() {
    let t0 = Instant::now();
    let mut c = pe_cfg(Duration::from_secs(90));
    c.identifier = Some(0xABCD);
    let (mut pe, c1, _) = connected_pe(c, 3, t0);
    let resp = ok_response(&pe);
    pe.on_message(t0, c1, resp);
    pe.on_lost(t0, c1);
    let (c2, addrs) = connect_of(&actions(&mut pe));
    assert_eq!(
        addrs,
        vec![sa("10.0.0.2:3863")],
        "the lost registrar is tried last"
    );
    assert!(events_pe(&mut pe).contains(&PeEvent::RegistrarLost));
    pe.on_connected(t0, c2);
    let s = sent(&actions(&mut pe));
    assert!(
        matches!(&s[..], [(c, AsapMessage::Registration(r))] if *c == c2 && r.pool_element.id == 0xABCD)
    );
}

#[test]
fn deregistration_waits_for_response_or_t3() {
    let t0 = Instant::now();
    let (mut pe, conn) = registered_pe(t0, Duration::from_secs(90));
    pe.deregister(t0);
    let s = sent(&actions(&mut pe));
    assert!(
        matches!(&s[..], [(c, AsapMessage::Deregistration(d))] if *c == conn && d.pe_identifier == pe.identifier())
    );
    assert_eq!(pe.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    let resp = DeregistrationResponse {
        reject: false,
        pool_handle: "EchoPool".into(),
        pe_identifier: pe.identifier(),
        error: None,
    };
    pe.on_message(t0, conn, resp.into());
    assert!(pe.is_stopped());
    assert!(actions(&mut pe).contains(&Action::Close { conn }));
    assert!(events_pe(&mut pe).contains(&PeEvent::Deregistered { confirmed: true }));
    // Without an answer: stopped after T3.
    let (mut pe, _) = registered_pe(t0, Duration::from_secs(90));
    pe.deregister(t0);
    pe.handle_timeout(t0 + Duration::from_secs(30));
    assert!(pe.is_stopped());
    assert!(events_pe(&mut pe).contains(&PeEvent::Deregistered { confirmed: false }));
}

// ---------------------------------------------------------------------------------------
// Pool user

fn pu_cfg() -> PuConfig {
    let mut c = PuConfig::default();
    c.link.static_registrars = vec![vec![sa("10.0.0.1:3863")], vec![sa("10.0.0.2:3863")]];
    c
}

fn pe_entry(id: u32, load: u32) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 1,
        registration_life: 90_000,
        user_transport: user(),
        policy: Policy::LeastUsed { load },
        asap_transport: None,
    }
}

fn events_pu(pu: &mut PuCore) -> Vec<PuEvent> {
    std::iter::from_fn(|| pu.poll_event()).collect()
}

/// A pool user (`cfg`) that asked for `h` at `t0` and got connected to the first registrar:
/// the core, the request, the connection and the actions that followed the connection
/// (the HANDLE_RESOLUTION).
fn pu_resolving(
    cfg: PuConfig,
    t0: Instant,
    h: &PoolHandle,
) -> (PuCore, RequestId, ConnId, Vec<Action>) {
    let mut pu = PuCore::new(cfg, 1);
    let req = pu.resolve(t0, h);
    let (conn, after) = connect_first(&mut pu, t0);
    (pu, req, conn, after)
}

fn response(elements: Vec<PoolElementInfo>) -> AsapMessage {
    HandleResolutionResponse {
        accept_updates: false,
        pool_handle: "EchoPool".into(),
        policy: None,
        pool_elements: elements,
        error: None,
    }
    .into()
}

#[test]
fn resolution_uses_option_and_cache_until_stale() {
    let t0 = Instant::now();
    let h = PoolHandle::from("EchoPool");
    let (mut pu, r1, conn, after) = pu_resolving(pu_cfg(), t0, &h);
    let s = sent(&after);
    match &s[..] {
        [(c, AsapMessage::HandleResolution(hr))] => {
            assert_eq!(*c, conn);
            assert_eq!(hr.pool_handle, h);
            assert_eq!(
                hr.option,
                Some(HandleResolutionOption {
                    items: HandleResolutionOption::ALL
                })
            );
        }
        other => panic!("{other:?}"),
    }
    pu.on_message(t0, conn, response(vec![pe_entry(2, 50), pe_entry(1, 10)]));
    let ev = events_pu(&mut pu);
    assert!(ev.iter().any(|e| matches!(e,
        PuEvent::Resolved { request, result: Ok(pes), .. } if *request == r1 && pes.len() == 2)));
    // Least used: PE 1 (load 10) first.
    assert_eq!(pu.select(t0, &h).map(|p| p.id), Some(1));
    // Within stale.cache.value: answered from the cache, nothing sent.
    let t1 = t0 + Duration::from_secs(29);
    let r2 = pu.resolve(t1, &h);
    assert!(actions(&mut pu).is_empty());
    assert!(
        matches!(&events_pu(&mut pu)[..], [PuEvent::Resolved { request, result: Ok(_), .. }] if *request == r2)
    );
    assert_eq!(pu.stats.cache_hits, 1);
    // After 30 s the cache is stale: a new HANDLE_RESOLUTION.
    let t2 = t0 + Duration::from_secs(30);
    assert_eq!(pu.select(t2, &h), None);
    pu.resolve(t2, &h);
    assert_eq!(sent(&actions(&mut pu)).len(), 1);
    assert_eq!(pu.stats.resolutions_sent, 2);
}

#[test]
fn unreachable_report_drops_pe_from_cache_and_is_sent() {
    let t0 = Instant::now();
    let h = PoolHandle::from("EchoPool");
    let (mut pu, _, conn, _) = pu_resolving(pu_cfg(), t0, &h);
    pu.on_message(t0, conn, response(vec![pe_entry(1, 10), pe_entry(2, 50)]));
    pu.report_unreachable(t0, &h, 1);
    let s = sent(&actions(&mut pu));
    assert!(
        matches!(&s[..], [(_, AsapMessage::EndpointUnreachable(u))] if u.pe_identifier == 1 && u.pool_handle == h)
    );
    assert_eq!(pu.select(t0, &h).map(|p| p.id), Some(2));
    assert_eq!(pu.cached(&h).len(), 1);
}

#[test]
fn request_retransmits_then_moves_to_next_registrar_then_times_out() {
    let t0 = Instant::now();
    let h = PoolHandle::from("EchoPool");
    let mut cfg = pu_cfg();
    cfg.request_timeout = Duration::from_secs(3);
    cfg.request_deadline = Duration::from_secs(20);
    let (mut pu, req, c1, after) = pu_resolving(cfg, t0, &h);
    assert_eq!(sent(&after).len(), 1);
    // T1 expiries: 2 retransmissions (MAX-REQUEST-RETRANSMIT), then the registrar is dropped.
    let mut now = t0;
    for _ in 0..2 {
        now += Duration::from_secs(3);
        assert_eq!(pu.poll_timeout(), Some(now));
        pu.handle_timeout(now);
        assert_eq!(sent(&actions(&mut pu)).len(), 1);
    }
    now += Duration::from_secs(3);
    pu.handle_timeout(now);
    let a = actions(&mut pu);
    assert!(a.contains(&Action::Close { conn: c1 }));
    let (c2, addrs) = connect_of(&a);
    assert_eq!(addrs, vec![sa("10.0.0.2:3863")]);
    pu.on_connected(now, c2);
    let s = sent(&actions(&mut pu));
    assert!(matches!(&s[..], [(c, AsapMessage::HandleResolution(_))] if *c == c2));
    // Nobody answers: the request fails at its deadline with a typed error.
    pu.handle_timeout(t0 + Duration::from_secs(20));
    let ev = events_pu(&mut pu);
    assert!(
        ev.contains(&PuEvent::Resolved {
            request: req,
            handle: h.clone(),
            result: Err(ResolveError::Timeout(h.clone()))
        }),
        "{ev:?}"
    );
}

#[test]
fn unknown_pool_and_empty_pool_are_typed_errors() {
    let t0 = Instant::now();
    let h = PoolHandle::from("EchoPool");
    let (mut pu, _, conn, _) = pu_resolving(pu_cfg(), t0, &h);
    pu.on_message(
        t0,
        conn,
        HandleResolutionResponse {
            accept_updates: false,
            pool_handle: h.clone(),
            policy: None,
            pool_elements: vec![],
            error: Some(OperationError::single(ErrorCause::plain(
                CauseCode::UnknownPoolHandle,
            ))),
        }
        .into(),
    );
    assert!(events_pu(&mut pu).iter().any(|e| matches!(e,
        PuEvent::Resolved { result: Err(ResolveError::UnknownPoolHandle(x)), .. } if *x == h)));
    pu.resolve(t0, &h);
    actions(&mut pu);
    pu.on_message(t0, conn, response(vec![]));
    assert!(events_pu(&mut pu).iter().any(|e| matches!(
        e,
        PuEvent::Resolved {
            result: Err(ResolveError::Empty(_)),
            ..
        }
    )));
}

#[test]
fn pending_request_survives_registrar_loss() {
    let t0 = Instant::now();
    let h = PoolHandle::from("EchoPool");
    let (mut pu, req, c1, _) = pu_resolving(pu_cfg(), t0, &h);
    pu.on_lost(t0, c1);
    let (c2, _) = connect_of(&actions(&mut pu));
    pu.on_connected(t0, c2);
    let s = sent(&actions(&mut pu));
    assert!(matches!(&s[..], [(c, AsapMessage::HandleResolution(_))] if *c == c2));
    pu.on_message(t0, c2, response(vec![pe_entry(4, 1)]));
    assert!(events_pu(&mut pu).iter().any(|e| matches!(e,
        PuEvent::Resolved { request, result: Ok(p), .. } if *request == req && p[0].id == 4)));
}
