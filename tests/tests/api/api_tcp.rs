//! End-to-end tests of the PE, PU and session APIs over TCP on 127.0.0.1 against the real
//! registrar (`enrp-server`'s driver). No timing assertions: waits are bounded only against
//! hangs.

use std::collections::BTreeMap;
use std::time::Duration;

use asap::pe::PeEvent;
use asap::pu::{PuError, ResolveError};
use asap::session::{Session, SessionConfig, SessionEvent};
use asap::transport::{Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::asap_msg::EndpointKeepAlive;
use asap::wire::{AsapMessage, CauseCode, Message, Policy, Protocol};
use rserpool_tests::api::*;

#[tokio::test]
async fn pe_registers_pu_resolves_load_update_and_deregistration() {
    let r = registrar(0x1001, |_| {}).await;
    let mut a = echo_pe(
        pe_config(&[r.asap], Policy::LeastUsed { load: 100 }),
        |_| {},
    )
    .await;
    let b = echo_pe(
        pe_config(&[r.asap], Policy::LeastUsed { load: 200 }),
        |_| {},
    )
    .await;
    assert_ne!(a.id, 0);
    let pu = pool_user(&[r.asap]).await;
    let pes = within("resolve", pu.resolve(POOL)).await.expect("resolved");
    let mut ids: Vec<u32> = pes.iter().map(|p| p.id).collect();
    ids.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(ids, want);
    let pa = pes.iter().find(|p| p.id == a.id).expect("a listed");
    assert_eq!(pa.policy, Policy::LeastUsed { load: 100 });
    assert_eq!(pa.user_transport.port(), Some(a.user.port()));
    // Least used: the PU picks the lower load.
    assert_eq!(
        within("select", pu.select(POOL)).await.expect("pe").id,
        a.id
    );

    // Load update → immediate re-registration, visible at the registrar.
    a.pe.set_load(900).await.expect("set load");
    loop {
        match within("re-registration", a.pe.next_event()).await {
            Some(PeEvent::Reregistered { policy, .. }) => {
                assert_eq!(policy, Policy::LeastUsed { load: 900 });
                break;
            }
            Some(_) => {}
            None => panic!("PE stopped"),
        }
    }
    let pes = within("refresh", pu.refresh(POOL)).await.expect("resolved");
    let pa = pes.iter().find(|p| p.id == a.id).expect("a listed");
    assert_eq!(pa.policy, Policy::LeastUsed { load: 900 });
    // Graceful deregistration of both → the pool is gone.
    assert!(within("deregister a", a.pe.deregister()).await.expect("ok"));
    assert!(within("deregister b", b.pe.deregister()).await.expect("ok"));
    match within("refresh", pu.refresh(POOL)).await {
        Err(PuError::Resolve(ResolveError::UnknownPoolHandle(h))) => assert_eq!(h, POOL.into()),
        other => panic!("expected unknown pool handle, got {other:?}"),
    }
    r.kill().await;
}

#[tokio::test]
async fn rejected_registration_is_a_typed_error() {
    let r = registrar(0x1002, |_| {}).await;
    let _a = echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await;
    // Same pool, different policy: Inconsistent Pooling Policy (RFC 5354 cause 0x5).
    let cfg = pe_config(&[r.asap], Policy::Random);
    let mut pe = asap::pe::PoolElement::register(asap::pe::PoolElementConfig::tcp(cfg))
        .await
        .expect("start");
    match within("rejection", pe.wait_registered()).await {
        Err(asap::pe::PeError::Rejected(rej)) => {
            assert_eq!(rej.cause, Some(CauseCode::InconsistentPoolingPolicy));
            assert_eq!(rej.pool_handle, POOL.into());
            assert_eq!(rej.identifier, pe.identifier());
        }
        other => panic!("expected rejection, got {other:?}"),
    }
    r.kill().await;
}

#[tokio::test]
async fn keep_alives_are_answered_and_keep_the_registration() {
    // Keep-alive every 100 ms, 100 ms to answer; a PE that does not answer is removed
    // (and its association aborted) by the registrar.
    let r = registrar(0x1003, |c| {
        c.keep_alive_interval = Duration::from_millis(100);
        c.keep_alive_timeout = Duration::from_millis(100);
    })
    .await;
    let mut a = echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await;
    let mut seen = 0;
    while seen < 5 {
        match within("keep-alive", a.pe.next_event()).await {
            Some(PeEvent::KeepAlive {
                server_id,
                home_flag,
            }) => {
                assert_eq!(server_id, 0x1003);
                assert!(!home_flag);
                seen += 1;
            }
            Some(PeEvent::RegistrarLost) => panic!("registrar dropped the PE"),
            Some(_) => {}
            None => panic!("PE stopped"),
        }
    }
    let st = a.pe.status();
    assert!(st.registered);
    assert_eq!(st.home, Some(0x1003));
    assert_eq!(st.registrations, 1, "no re-registration was needed");
    let pu = pool_user(&[r.asap]).await;
    let pes = within("refresh", pu.refresh(POOL))
        .await
        .expect("still registered");
    assert_eq!(pes.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a.id]);
    r.kill().await;
}

#[tokio::test]
async fn registrar_killed_pe_reregisters_elsewhere_and_pu_reresolves() {
    let r1 = registrar(0x2001, |_| {}).await;
    let r2 = registrar(0x2002, |_| {}).await;
    let mut a = echo_pe(pe_config(&[r1.asap, r2.asap], Policy::RoundRobin), |_| {}).await;
    assert_eq!(a.pe.status().registrar, Some(vec![r1.asap]));
    let pu = pool_user(&[r1.asap, r2.asap]).await;
    let first = within("resolve at r1", pu.resolve(POOL)).await.expect("ok");
    assert_eq!(first[0].id, a.id);
    r1.kill().await;
    // The PE hunts and registers at r2 without any application action.
    let mut lost = false;
    loop {
        match within("re-registration at r2", a.pe.next_event()).await {
            Some(PeEvent::RegistrarLost) => lost = true,
            Some(PeEvent::Registered {
                registrar,
                identifier,
            }) if lost => {
                assert_eq!(registrar, vec![r2.asap]);
                assert_eq!(identifier, a.id, "the PE identifier is stable");
                break;
            }
            Some(_) => {}
            None => panic!("PE stopped"),
        }
    }
    assert!(lost);
    // The PU's registrar association died too: the refresh goes to r2.
    let again = within("resolve at r2", pu.refresh(POOL)).await.expect("ok");
    assert_eq!(again.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a.id]);
    r2.kill().await;
}

#[tokio::test]
async fn home_flag_keep_alive_switches_the_home_registrar() {
    let r = registrar(0x3001, |_| {}).await;
    let mut a = echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |c| {
        c.accept_registrars = Some(vec!["127.0.0.1:0".parse().expect("lit")]);
    })
    .await;
    let listen = a.pe.registrar_listen_addrs()[0];
    // A second registrar (scripted here, to control every byte; tcp_takeover.rs in
    // enrp-server does it with the real registrar) contacts
    // the PE and claims it with the H flag, as after an ENRP takeover (RFC 5352 §3).
    let t = Transport::new(TransportConfig::asap(TransportKind::Tcp));
    let mut assoc = within("connect", t.connect(&[listen], &[]))
        .await
        .expect("connect");
    let ka: Message = EndpointKeepAlive {
        home: true,
        server_id: 0xBEEF,
        pool_handle: POOL.into(),
        pe_identifier: Some(a.id),
    }
    .into();
    assoc
        .send(&Msg::new(11, 0, ka.to_bytes().expect("encode")))
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < 2 {
        match within("PE answers", assoc.recv()).await.expect("alive") {
            Event::Message(m) => {
                let d = Message::decode(Protocol::Asap, &m.bytes).expect("decodes");
                got.push(d.message);
            }
            Event::Lost(r) => panic!("lost: {r}"),
            _ => {}
        }
    }
    match &got[0] {
        Message::Asap(AsapMessage::EndpointKeepAliveAck(ack)) => {
            assert_eq!(ack.pe_identifier, a.id);
            assert_eq!(ack.pool_handle, POOL.into());
        }
        other => panic!("expected KEEP_ALIVE_ACK, got {other:?}"),
    }
    match &got[1] {
        Message::Asap(AsapMessage::Registration(reg)) => {
            assert_eq!(
                reg.pool_element.id, a.id,
                "same PE identifier at the new home"
            );
        }
        other => panic!("expected REGISTRATION at the new home, got {other:?}"),
    }
    loop {
        match within("home change", a.pe.next_event()).await {
            Some(PeEvent::HomeChanged { to, .. }) => {
                assert_eq!(to, 0xBEEF);
                break;
            }
            Some(_) => {}
            None => panic!("PE stopped"),
        }
    }
    assert_eq!(a.pe.status().home, Some(0xBEEF));
    r.kill().await;
}

/// What [`echo_through_failover`] observed.
struct FailoverRun {
    /// Sequence numbers of the replies in the order the application received them.
    replies: Vec<u64>,
    failovers: Vec<asap::session::Failover>,
    /// Sequence numbers unanswered when the PE was killed (the application's window).
    unanswered_at_kill: Vec<u64>,
    /// Sequence numbers the killed PE received while holding its replies.
    held_by_killed: Vec<u64>,
    /// Sequence numbers the killed PE received, in arrival order.
    killed_received: Vec<u64>,
    survivors: Vec<EchoPe>,
}

fn seq_of(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.strip_prefix("seq="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an echo message: {bytes:?}"))
}

fn seqs(log: &std::sync::Mutex<Vec<Vec<u8>>>) -> Vec<u64> {
    log.lock().expect("log").iter().map(|m| seq_of(m)).collect()
}

/// Echo workload with sequence numbers and a window of unanswered messages. After
/// `kill_after` replies the serving PE stops answering (it still receives); once the window
/// is full and every unanswered message has reached that PE while it was holding its
/// replies (so no reply to any of them can still be on its way), it is killed. So the
/// failover always strands messages the old PE received but never answered, which the
/// application must re-send (RFC 5351 §2.5, [`asap::session::Failover::resend_from`]).
async fn echo_through_failover(total: u64, kill_after: u64) -> FailoverRun {
    let r = registrar(0x4001, |_| {}).await;
    let mut pes = Vec::new();
    for _ in 0..3 {
        pes.push(echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await);
    }
    let pu = pool_user(&[r.asap]).await;
    let mut s = session(&pu).await;
    let mut replies = Vec::new();
    // seq → index of its last transmission
    let mut unanswered: BTreeMap<u64, u64> = BTreeMap::new();
    let mut failovers = Vec::new();
    let mut next_seq = 0u64;
    let window = 8;
    // The serving PE once it holds its replies: (its id, its reception counter).
    let mut held: Option<(u32, tokio::sync::watch::Receiver<usize>)> = None;
    let mut killed: Option<(Vec<u64>, Vec<u64>, Vec<u64>)> = None;
    while (replies.len() as u64) < total {
        while next_seq < total && unanswered.len() < window {
            let idx = s
                .send(format!("seq={next_seq}").into_bytes())
                .await
                .expect("send");
            unanswered.insert(next_seq, idx);
            next_seq += 1;
        }
        if killed.is_none() {
            if let Some((id, _)) = &held {
                let i = pes.iter().position(|p| p.id == *id).expect("known");
                let on_hold = seqs(&pes[i].held);
                let window_full = unanswered.len() == window;
                if window_full && unanswered.keys().all(|q| on_hold.contains(q)) {
                    let stranded: Vec<u64> = unanswered.keys().copied().collect();
                    let pe = pes.remove(i);
                    let (received, held_log) = (pe.received.clone(), pe.held.clone());
                    pe.kill().await;
                    killed = Some((stranded, seqs(&held_log), seqs(&received)));
                    held = None;
                }
            }
        }
        let ev = match held.as_mut() {
            // Wake up on data (replies sent before the hold) or on a new reception.
            Some((_, count)) => {
                within("session event or reception at the held PE", async {
                    tokio::select! {
                        ev = s.recv() => Some(ev),
                        changed = count.changed() => {
                            changed.expect("held PE alive");
                            None
                        }
                    }
                })
                .await
            }
            None => Some(within("session event", s.recv()).await),
        };
        let Some(ev) = ev else { continue };
        match ev {
            Some(SessionEvent::Data(d)) => {
                let seq = seq_of(&d);
                replies.push(seq);
                unanswered.remove(&seq);
                if held.is_none() && killed.is_none() && replies.len() as u64 == kill_after {
                    let serving = s.current_pe().expect("serving").id;
                    let pe = pes.iter().find(|p| p.id == serving).expect("known");
                    pe.hold_replies();
                    held = Some((serving, pe.received_count()));
                }
            }
            Some(SessionEvent::Failover(f)) => {
                let resend: Vec<u64> = unanswered
                    .iter()
                    .filter(|(_, idx)| **idx < f.resend_from)
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in resend {
                    let idx = s
                        .send(format!("seq={seq}").into_bytes())
                        .await
                        .expect("send");
                    unanswered.insert(seq, idx);
                }
                failovers.push(f);
            }
            Some(SessionEvent::Failed(e)) => panic!("session failed: {e}"),
            // Session events added later do not affect the bookkeeping.
            Some(_) => {}
            None => panic!("session closed"),
        }
    }
    s.close().await;
    r.kill().await;
    let (unanswered_at_kill, held_by_killed, killed_received) =
        killed.expect("the serving PE was killed");
    FailoverRun {
        replies,
        failovers,
        unanswered_at_kill,
        held_by_killed,
        killed_received,
        survivors: pes,
    }
}

#[tokio::test]
async fn session_fails_over_without_loss_or_duplication() {
    let total = 300;
    let mut run = echo_through_failover(total, 100).await;
    // Every reply exactly once, in order.
    assert_eq!(
        run.replies,
        (0..total).collect::<Vec<_>>(),
        "replies lost, duplicated or reordered"
    );
    assert_eq!(run.failovers.len(), 1, "{:?}", run.failovers);
    let f = run.failovers[0].clone();
    assert_ne!(f.from, f.to);
    assert_eq!(f.reason, asap::session::FailoverReason::AssociationLost);
    assert!(f.cookie_echoed);

    // Retransmission: the window was full of messages the old PE had received and never
    // answered; each of them reached the old PE once and was re-sent to the new PE once.
    assert_eq!(run.unanswered_at_kill.len(), 8, "window full at the kill");
    assert_eq!(
        run.held_by_killed, run.unanswered_at_kill,
        "the killed PE held exactly the unanswered messages"
    );
    let new_pe = run
        .survivors
        .iter_mut()
        .find(|p| p.id == f.to)
        .expect("new PE alive");
    let at_new = seqs(&new_pe.received);
    for q in &run.unanswered_at_kill {
        let old_n = run.killed_received.iter().filter(|x| *x == q).count();
        let new_n = at_new.iter().filter(|x| *x == q).count();
        assert_eq!(
            (old_n, new_n),
            (1, 1),
            "seq {q}: received {old_n}× by the killed PE, {new_n}× by the new one"
        );
    }
    // Nothing else was sent twice: the new PE got exactly the stranded messages and then
    // everything not yet sent before the kill, in order.
    let first_new = run.killed_received.iter().max().expect("received") + 1;
    let mut want: Vec<u64> = run.unanswered_at_kill.clone();
    want.extend(first_new..total);
    assert_eq!(at_new, want, "what the new PE received");
    assert_eq!(
        run.killed_received,
        (0..first_new).collect::<Vec<_>>(),
        "what the killed PE received"
    );

    // The new PE received the old PE's last cookie (state "pe=<old>;n=<count>").
    match within("cookie echo", new_pe.notes.recv()).await {
        Some(EchoNote::CookieEcho(c)) => {
            let text = String::from_utf8(c).expect("utf8");
            assert!(
                text.starts_with(&format!("pe={:08x};n=", f.from)),
                "cookie {text:?}"
            );
        }
        None => panic!("no cookie echo"),
    }
}

#[tokio::test]
async fn discovery_by_server_announce_without_static_registrars() {
    // A free UDP port on 127.0.0.1 for unicast ASAP_SERVER_ANNOUNCEs.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let target: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let r = registrar(0x5001, |c| {
        c.asap_announce_targets = vec![target];
        c.announce_interval = Duration::from_millis(100);
    })
    .await;
    let a = echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await;
    let mut cfg = asap::pu::PoolUserConfig::tcp();
    cfg.announce = Some(target);
    cfg.pu.link.hunt_initial_backoff = Duration::from_millis(50);
    cfg.pu.link.hunt_max_backoff = Duration::from_millis(200);
    let pu = asap::pu::PoolUser::start(cfg).await.expect("PU");
    // No static registrar: the request waits for an announce, then resolves.
    let pes = within("resolve via announce", pu.resolve(POOL))
        .await
        .expect("resolved");
    assert_eq!(pes.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a.id]);
    assert!(within("deregister", a.pe.deregister()).await.expect("ok"));
    r.kill().await;
}

#[tokio::test]
async fn failover_prefers_the_business_card() {
    let r = registrar(0x6001, |_| {}).await;
    // X lives in another pool: the PU can only learn it from the business card.
    let mut xcfg = pe_config(&[r.asap], Policy::RoundRobin);
    xcfg.pool_handle = "OtherPool".into();
    let x = echo_pe(xcfg, |_| {}).await;
    let card = vec![asap::wire::PoolElementInfo {
        id: x.id,
        home_server_id: 0,
        registration_life: 90_000,
        user_transport: asap::wire::TransportParameter::Tcp {
            port: x.user.port(),
            transport_use: asap::wire::TransportUse::DataPlusControl,
            address: x.user.ip(),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }];
    let a = echo_pe_with_card(pe_config(&[r.asap], Policy::RoundRobin), |_| {}, Some(card)).await;
    let b = echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await;
    let pu = pool_user(&[r.asap]).await;
    let mut s = session(&pu).await;
    let serving = s.current_pe().expect("serving").id;
    // Make A the serving PE (kill B if the policy picked it, so the session fails over to A).
    let (a, _b_alive) = if serving == b.id {
        b.kill().await;
        let idx = s.send(&b"to-a"[..]).await.expect("send");
        loop {
            match within("event", s.recv()).await {
                Some(SessionEvent::Failover(f)) => {
                    assert_eq!(f.to, a.id);
                    if idx < f.resend_from {
                        s.send(&b"to-a"[..]).await.expect("resend");
                    }
                }
                Some(SessionEvent::Data(_)) => break,
                other => panic!("{other:?}"),
            }
        }
        (a, None)
    } else {
        assert_eq!(serving, a.id);
        s.send(&b"hi"[..]).await.expect("send");
        match within("echo", s.recv()).await {
            Some(SessionEvent::Data(d)) => assert_eq!(&d[..], b"hi"),
            other => panic!("{other:?}"),
        }
        (a, Some(b))
    };
    // A has sent its card (before any echo). Kill A: the session must go to X.
    a.kill().await;
    let idx = s.send(&b"after"[..]).await.expect("send");
    let mut failed_over = false;
    loop {
        match within("failover to X", s.recv()).await {
            Some(SessionEvent::Failover(f)) => {
                assert_eq!(
                    f.to, x.id,
                    "business card PE preferred over the pool's policy"
                );
                failed_over = true;
                if idx < f.resend_from {
                    s.send(&b"after"[..]).await.expect("resend");
                }
            }
            Some(SessionEvent::Data(d)) => {
                assert_eq!(&d[..], b"after");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(failed_over);
    assert_eq!(s.current_pe().map(|p| p.id), Some(x.id));
    r.kill().await;
}

#[tokio::test]
async fn silent_pe_is_left_after_the_reply_timeout() {
    let r = registrar(0x7001, |_| {}).await;
    // A PE that accepts sessions and never answers; highest priority, so it is chosen first.
    let (listener, silent) = listening_pe(
        pe_config(&[r.asap], Policy::Priority { priority: 10 }),
        |_| {},
    )
    .await;
    let silent_id = silent.identifier();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(s) = listener.accept().await {
            held.push(s);
        }
    });
    let echo = echo_pe(
        pe_config(&[r.asap], Policy::Priority { priority: 1 }),
        |_| {},
    )
    .await;
    let pu = pool_user(&[r.asap]).await;
    let cfg = SessionConfig {
        reply_timeout: Some(Duration::from_millis(200)),
        ..SessionConfig::default()
    };
    let mut s = within("session", Session::connect(&pu, POOL, cfg))
        .await
        .expect("session");
    assert_eq!(
        s.current_pe().map(|p| p.id),
        Some(silent_id),
        "priority policy"
    );
    let idx = s.send(&b"ping"[..]).await.expect("send");
    loop {
        match within("timeout failover", s.recv()).await {
            Some(SessionEvent::Failover(f)) => {
                assert_eq!(f.reason, asap::session::FailoverReason::Timeout);
                assert_eq!((f.from, f.to), (silent_id, echo.id));
                assert!(idx < f.resend_from);
                s.send(&b"ping"[..]).await.expect("resend");
            }
            Some(SessionEvent::Data(d)) => {
                assert_eq!(&d[..], b"ping");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // The PU reported the silent PE: it is gone from the PU cache.
    let cached = within("resolve", pu.resolve(POOL)).await.expect("cached");
    assert!(cached.iter().all(|p| p.id != silent_id));
    hold.abort();
    r.kill().await;
}

/// A PE that answers the session's first data message with ASAP_ERROR (Lack of Resources,
/// as proxy-pe does when no legacy server runs the application) and keeps the association
/// open: the session leaves it for another PE with `FailoverReason::PeError`, the data is
/// echoed there, and the refusing PE is not reported unreachable (it stays registered).
#[tokio::test]
async fn pe_error_moves_the_session_without_reporting_the_pe() {
    use asap::session::{FailoverReason, ServerEvent};
    use asap::wire::{ErrorCause, OperationError};

    let r = registrar(0x7001, |_| {}).await;
    // The refusing PE.
    let (listener, refusing) = listening_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await;
    let refusing_id = refusing.identifier();
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            let got = got_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(ev)) = s.recv().await {
                    if let ServerEvent::Data(d) = ev {
                        let _ = got.send(d.to_vec());
                        let err =
                            OperationError::single(ErrorCause::plain(CauseCode::LackOfResources));
                        if s.send_error(err).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let pu = pool_user(&[r.asap]).await;
    let mut s = session(&pu).await;
    assert_eq!(s.current_pe().expect("serving").id, refusing_id);
    // Only now a PE that serves.
    let good = echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await;
    let idx = s.send(&b"please"[..]).await.expect("send");
    assert_eq!(
        within("refusing PE got the data", got_rx.recv()).await,
        Some(b"please".to_vec())
    );
    let mut failover = None;
    loop {
        match within("failover and echo", s.recv()).await {
            Some(SessionEvent::Failover(f)) => {
                if idx < f.resend_from {
                    s.send(&b"please"[..]).await.expect("resend");
                }
                failover = Some(f);
            }
            Some(SessionEvent::Data(d)) => {
                assert_eq!(&d[..], b"please");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let f = failover.expect("a failover before the echo");
    assert_eq!(f.from, refusing_id);
    assert_eq!(f.to, good.id);
    assert_eq!(
        f.reason,
        FailoverReason::PeError(vec![CauseCode::LackOfResources])
    );
    // Not reported unreachable: no ENDPOINT_UNREACHABLE was sent.
    let stats = pu.stats().await.expect("stats");
    assert_eq!(stats.unreachable_sent, 0, "{stats:?}");
    let pes = within("resolve", pu.resolve(POOL)).await.expect("resolved");
    assert!(pes.iter().any(|p| p.id == refusing_id));
}
