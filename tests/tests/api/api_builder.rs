//! The builder API, request/response across failover and the diagnostics (issue 18),
//! against the real registrar over TCP on 127.0.0.1.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asap::load::Load;
use asap::pe::{PeConfig, PeError, PeEvent, PoolElement, PoolElementConfig};
use asap::pu::{PoolUser, PoolUserConfig, PuError};
use asap::session::{ServerEvent, ServerSession, SessionConfig, SessionError};
use asap::wire::{Policy, TransportParameter, TransportUse};
use bytes::Bytes;
use rserpool_tests::api::{registrar, session, within, Registrar, POOL};
use tokio::sync::oneshot;

/// An address on which nothing listens (bound once, then closed).
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn assert_names_refused(text: &str, addr: SocketAddr) {
    assert!(
        text.contains(&format!("registrar {addr}")) && text.contains("refused"),
        "error should name the registrar and the refusal: {text}"
    );
}

// ---- diagnostics with the registrar down (the old API, default timeouts) ----

/// With no registrar listening, `PoolUser::resolve` used to block for the 120 s request
/// deadline and end in `Timeout(handle)` without the cause. Now it fails within the call
/// timeout (10 s by default) with an error naming the address and the refusal.
#[tokio::test]
async fn pu_resolve_with_registrar_down_fails_soon_naming_the_refusal() {
    let addr = dead_addr();
    let mut cfg = PoolUserConfig::tcp();
    cfg.pu.link.static_registrars = vec![vec![addr]];
    let pu = PoolUser::start(cfg).await.expect("start");
    let err = within("resolve with registrar down", pu.resolve(POOL))
        .await
        .expect_err("no registrar");
    assert!(matches!(err, PuError::Timeout { .. }), "{err:?}");
    assert_names_refused(&err.to_string(), addr);
}

/// `PoolElement::wait_registered` used to wait for ever with no registrar; now it is
/// bounded and names the last failure.
#[tokio::test]
async fn pe_wait_registered_with_registrar_down_is_bounded_and_names_the_refusal() {
    let addr = dead_addr();
    let user = TransportParameter::Tcp {
        port: 7,
        transport_use: TransportUse::DataPlusControl,
        address: "127.0.0.1".parse().expect("lit"),
    };
    let mut cfg = PeConfig::new(POOL, user, Policy::RoundRobin);
    cfg.link.static_registrars = vec![vec![addr]];
    let mut pe = PoolElement::register(PoolElementConfig::tcp(cfg))
        .await
        .expect("start");
    let err = within("wait_registered with registrar down", pe.wait_registered())
        .await
        .expect_err("no registrar");
    assert!(matches!(err, PeError::NotRegistered { .. }), "{err:?}");
    assert_names_refused(&err.to_string(), addr);
    pe.abort();
}

// ---- the same through the builders, with configured timeouts ----

#[tokio::test]
async fn builders_honour_their_timeouts_with_registrar_down() {
    let addr = dead_addr();
    let err = within(
        "PE builder",
        PoolElement::builder(POOL)
            .registrar(addr)
            .listen("127.0.0.1:0".parse().expect("lit"))
            .register_wait(Duration::from_millis(800))
            .start(),
    )
    .await
    .expect_err("no registrar");
    assert!(
        matches!(&err, PeError::NotRegistered { after, last: Some(_) } if *after == Duration::from_millis(800)),
        "{err:?}"
    );
    assert_names_refused(&err.to_string(), addr);
    let err = within(
        "PU builder connect",
        PoolUser::builder(POOL)
            .registrar(addr)
            .call_timeout(Duration::from_millis(800))
            .connect(),
    )
    .await
    .expect_err("no registrar");
    match &err {
        SessionError::PoolUser(PuError::Timeout { after, .. }) => {
            assert_eq!(*after, Duration::from_millis(800))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_names_refused(&err.to_string(), addr);
}

#[tokio::test]
async fn builders_refuse_unusable_registrar_configuration() {
    let err = PoolElement::builder(POOL).start().await.expect_err("none");
    assert!(matches!(err, PeError::NoRegistrar), "{err:?}");
    let err = PoolElement::builder(POOL)
        .registrar("no-such-host.invalid:3863")
        .start()
        .await
        .expect_err("bad name");
    assert!(
        matches!(&err, PeError::BadRegistrar { addr, .. } if addr == "no-such-host.invalid:3863"),
        "{err:?}"
    );
    let err = PoolUser::builder(POOL).start().await.expect_err("none");
    assert!(matches!(err, PuError::NoRegistrar), "{err:?}");
    let err = PoolUser::builder(POOL)
        .registrar("3863")
        .start()
        .await
        .expect_err("no port");
    assert!(matches!(err, PuError::BadRegistrar { .. }), "{err:?}");
}

// ---- builder PE, request/response across a PE kill ----

/// A PE's log of received request payloads, and from which count on it holds replies.
#[derive(Clone, Default)]
struct Log {
    received: Arc<Mutex<Vec<String>>>,
}

impl Log {
    fn push(&self, s: String) {
        self.received.lock().expect("lock").push(s);
    }
    fn get(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }
}

/// Echo handler: answers "echo:<payload>" to the first `answer` requests of the PE (all
/// sessions), then receives but never answers (a PE about to die).
async fn echo_session(mut s: ServerSession, log: Log, answer: usize) -> Result<(), SessionError> {
    while let Some(ev) = s.recv().await? {
        if let ServerEvent::Data(d) = ev {
            let text = String::from_utf8_lossy(&d).into_owned();
            log.push(text.clone());
            if log.get().len() <= answer {
                s.send(Bytes::from(format!("echo:{text}"))).await?;
            }
        }
    }
    Ok(())
}

/// Starts a builder PE serving `echo_session` in a task; returns the task.
async fn spawn_pe(
    registrar: SocketAddr,
    load: f64,
    log: Log,
    answer: usize,
) -> tokio::task::JoinHandle<Result<(), PeError>> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let ready_tx = Mutex::new(Some(ready_tx));
    let (policy_tx, policy_rx) = oneshot::channel();
    let policy_tx = Mutex::new(Some(policy_tx));
    let serve = PoolElement::builder(POOL)
        .registrar(registrar)
        .listen("127.0.0.1:0".parse().expect("lit"))
        .load(Load::percent(load))
        .configure(move |cfg| {
            if let Some(tx) = policy_tx.lock().expect("lock").take() {
                let _ = tx.send(cfg.pe.policy.clone());
            }
        })
        // The event hook tells the test when the PE is registered.
        .on_event(move |ev| {
            if let PeEvent::Registered { .. } = ev {
                if let Some(tx) = ready_tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
            }
        })
        .serve(move |s| echo_session(s, log.clone(), answer));
    let task = tokio::spawn(serve.into_future());
    let policy = within("PE configured", policy_rx)
        .await
        .expect("configured");
    within("PE registered (on_event)", ready_rx)
        .await
        .expect("registered");
    assert_eq!(
        policy,
        Policy::LeastUsed {
            load: Load::percent(load).fraction()
        }
    );
    task
}

/// The failover set-up of the request tests: registrar `id`, PE A (load 0 %, so chosen
/// first; answers the first `a_answers` requests), PE B (load 50 %, answers all), and a
/// session of a PU that has seen both PEs registered.
struct Failover {
    r: Registrar,
    la: Log,
    lb: Log,
    a: tokio::task::JoinHandle<Result<(), PeError>>,
    b: tokio::task::JoinHandle<Result<(), PeError>>,
    s: asap::session::Session,
    /// Kept alive for the session's failover.
    _pu: PoolUser,
}

/// Sends request `text` on `s` (a step named `what`): the echo PE answers `"echo:" + text`.
async fn assert_echoed(s: &mut asap::session::Session, what: &str, text: &str) {
    let reply = within(what, s.request(text.to_string())).await;
    assert_eq!(reply.expect("reply"), Bytes::from(format!("echo:{text}")));
}

/// The requests `"i"` for each `i` in `r`, as an echo PE's log holds them.
fn texts(r: std::ops::Range<u32>) -> Vec<String> {
    r.map(|i| i.to_string()).collect()
}

/// The echo PE's replies `"echo:i"` for each `i` in `r`.
fn echoes(r: std::ops::Range<u32>) -> Vec<Bytes> {
    r.map(|i| Bytes::from(format!("echo:{i}"))).collect()
}

async fn failover(id: u32, a_answers: usize) -> Failover {
    let r = registrar(id, |_| {}).await;
    let (la, lb) = (Log::default(), Log::default());
    let a = spawn_pe(r.asap, 0.0, la.clone(), a_answers).await;
    let b = spawn_pe(r.asap, 50.0, lb.clone(), usize::MAX).await;
    // Both registered: the PU sees two PEs.
    let pu = PoolUser::builder(POOL)
        .registrar(r.asap)
        .start()
        .await
        .expect("pu");
    within("both PEs registered", async {
        while pu.refresh(POOL).await.map(|v| v.len()).unwrap_or(0) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let s = session(&pu).await;
    Failover {
        r,
        la,
        lb,
        a,
        b,
        s,
        _pu: pu,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Requests 0..10 on a builder session; the serving PE (load 0 %, so chosen first) takes
/// request 5 and dies without answering; the session re-sends it to the other PE. Every
/// request gets exactly its own reply, once, in order; request 5 was processed twice
/// (at-least-once, as documented).
#[tokio::test]
async fn request_is_resent_after_the_serving_pe_is_killed() {
    let f = failover(0x2001, 5).await;
    let mut s = f.s;
    let client = tokio::spawn(async move {
        let mut replies = Vec::new();
        for i in 0..10 {
            replies.push(s.request(Bytes::from(i.to_string())).await?);
        }
        Ok::<_, SessionError>((replies, s.take_failovers()))
    });
    wait_until("PE A got request 5", || f.la.get().len() == 6).await;
    f.a.abort();
    let (replies, failovers) = within("requests", client)
        .await
        .expect("join")
        .expect("every request answered");
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_eq!(
        failovers[0].resend_from, 6,
        "requests 0..=5 went to the killed PE"
    );
    assert_eq!(replies, echoes(0..10));
    assert_eq!(f.la.get(), texts(0..6));
    assert_eq!(f.lb.get(), texts(5..10));
    f.b.abort();
    f.r.kill().await;
}

/// The pipelined variant: 20 requests in flight at once, the serving PE dies after
/// answering 7; the 13 unanswered are re-sent and all 20 replies come back in order.
#[tokio::test]
async fn pipelined_requests_survive_a_pe_kill_in_order() {
    let f = failover(0x2002, 7).await;
    let mut s = f.s;
    let reqs: Vec<Bytes> = (0..20).map(|i| Bytes::from(i.to_string())).collect();
    let client = tokio::spawn(async move { s.request_pipelined(reqs).await });
    wait_until("PE A got all 20", || f.la.get().len() == 20).await;
    f.a.abort();
    let replies = within("requests", client)
        .await
        .expect("join")
        .expect("answered");
    assert_eq!(replies, echoes(0..20));
    assert_eq!(f.lb.get(), texts(7..20));
    f.b.abort();
    f.r.kill().await;
}

/// `with_graceful_shutdown`: the PE deregisters (the registrar no longer lists it), the
/// serve future ends with Ok, and a running session is drained, not cut.
#[tokio::test]
async fn graceful_shutdown_deregisters_and_drains() {
    let r = registrar(0x2003, |_| {}).await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let log = Log::default();
    let l2 = log.clone();
    // A host name, as a person would write it.
    let by_name = format!("localhost:{}", r.asap.port());
    let serve = PoolElement::builder(POOL)
        .registrar(by_name.as_str())
        .listen("127.0.0.1:0".parse().expect("lit"))
        .serve(move |s| echo_session(s, l2.clone(), usize::MAX))
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        });
    let task = tokio::spawn(serve.into_future());
    let mut s = within(
        "session",
        PoolUser::builder(POOL)
            .registrar(by_name.as_str())
            .connect(),
    )
    .await
    .expect("session");
    assert_echoed(&mut s, "request", "a").await;
    stop_tx.send(()).expect("serving");
    // The session is still served while draining.
    assert_echoed(&mut s, "request while draining", "b").await;
    let pu = PoolUser::builder(POOL)
        .registrar(r.asap)
        .start()
        .await
        .expect("pu");
    within("deregistered", async {
        while pu.refresh(POOL).await.map(|v| v.len()).unwrap_or(0) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    s.close().await;
    within("serve ends", task)
        .await
        .expect("join")
        .expect("graceful");
    assert_eq!(log.get(), vec!["a".to_string(), "b".to_string()]);
    r.kill().await;
}

/// A session whose only PE dies ends with a typed error (it used to be
/// `SessionEvent::Failed(String)`, which could not be matched): the request call returns
/// the `SessionError` that ended the session.
#[tokio::test]
async fn session_failure_is_typed() {
    let r = registrar(0x2004, |_| {}).await;
    let log = Log::default();
    let a = spawn_pe(r.asap, 0.0, log.clone(), usize::MAX).await;
    let mut s = within(
        "session",
        PoolUser::builder(POOL)
            .registrar(r.asap)
            .session_config(SessionConfig {
                max_failover_attempts: 2,
                retry_delay: Duration::from_millis(50),
                ..SessionConfig::default()
            })
            .connect(),
    )
    .await
    .expect("session");
    assert_echoed(&mut s, "request", "x").await;
    a.abort();
    let err = within("request without PE", s.request(&b"y"[..]))
        .await
        .expect_err("no PE left");
    assert!(
        matches!(
            err,
            SessionError::PoolUser(PuError::Resolve(_)) | SessionError::NoPoolElement { .. }
        ),
        "{err:?}"
    );
    r.kill().await;
}
