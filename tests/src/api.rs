//! Helpers of the ASAP API tests (`tests/tests/api_*.rs`, `tests/examples/api_bench.rs`):
//! the real registrar (`enrp-server` driver) on 127.0.0.1 over TCP, and an echo pool
//! element, pool user and PE configuration built from the public `asap` API (RFC 5351 §3,
//! RFC 5352 §2).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asap::pe::{PeConfig, PoolElement, PoolElementConfig};
use asap::pu::{PoolUser, PoolUserConfig};
use asap::session::{ServerEvent, Session, SessionConfig, SessionListener};
use asap::transport::TransportKind;
use asap::wire::{PeIdentifier, Policy};
use enrp_server::core::CoreConfig;
use tokio::sync::{mpsc, watch};

use crate::registrar::{spawn, tcp_driver, Running};

pub use crate::registrar::POOL;

/// A running registrar (ASAP only, no ENRP endpoint) on an ephemeral port of 127.0.0.1.
pub struct Registrar {
    /// Its ASAP address.
    pub asap: SocketAddr,
    /// Its server ID.
    pub id: u32,
    running: Running,
}

/// Starts registrar `id` whose core configuration `tune` adjusts (no announcements).
pub async fn registrar(id: u32, tune: impl FnOnce(&mut CoreConfig)) -> Registrar {
    let mut core = CoreConfig::new(id);
    core.asap_announce_targets = Vec::new();
    tune(&mut core);
    let lo = "127.0.0.1:0".parse().expect("lit");
    let mut driver = tcp_driver(lo, lo, 100);
    driver.enrp = Vec::new();
    let running = spawn(core, driver).await.expect("bind registrar");
    Registrar {
        asap: running.asap,
        id,
        running,
    }
}

impl Registrar {
    /// Stops the registrar (its associations close).
    pub async fn kill(self) {
        self.running.stop().await;
    }
}

/// Bounded wait against hangs (never a timing assertion).
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within 20 s"))
}

/// What an echo PE observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoNote {
    /// A COOKIE_ECHO arrived with these bytes.
    CookieEcho(Vec<u8>),
}

/// An echo PE: echoes every data message and sends a cookie "pe=<id>;n=<count>" after it.
/// Every data message it receives (all sessions, arrival order) is logged in `received`,
/// also while replies are held (see [`EchoPe::hold_replies`]); those never answered are
/// also logged in `held`.
pub struct EchoPe {
    /// The pool element handle.
    pub pe: PoolElement,
    /// Its PE identifier.
    pub id: PeIdentifier,
    /// Its user transport address.
    pub user: SocketAddr,
    /// Data messages received, in arrival order (shared: survives [`EchoPe::kill`]).
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Data messages received while holding replies (never answered), in arrival order.
    pub held: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Length of `received`, for waiting until messages have arrived.
    received_count: watch::Receiver<usize>,
    hold: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    alive: mpsc::Receiver<()>,
    /// What the PE observed besides data.
    pub notes: mpsc::UnboundedReceiver<EchoNote>,
}

impl EchoPe {
    /// From now on the PE still receives (and logs) data but neither echoes it nor sends
    /// cookies: what it receives stays unanswered, as at a PE that dies mid-request.
    pub fn hold_replies(&self) {
        let _ = self.hold.send(true);
    }

    /// Watches the number of data messages received so far (held or not).
    pub fn received_count(&self) -> watch::Receiver<usize> {
        self.received_count.clone()
    }

    /// Crash: close every session and the registrar association without deregistering.
    /// Returns once every session task has ended (its sockets are closed).
    pub async fn kill(mut self) {
        let _ = self.kill.send(true);
        self.pe.abort();
        while self.alive.recv().await.is_some() {}
    }
}

/// A PE configuration for [`POOL`] with the static `registrars`, `policy`, fast hunting
/// and a 2 s registration timeout.
pub fn pe_config(registrars: &[SocketAddr], policy: Policy) -> PeConfig {
    let user = asap::wire::TransportParameter::Tcp {
        port: 1,
        transport_use: asap::wire::TransportUse::DataPlusControl,
        address: "127.0.0.1".parse().expect("lit"),
    };
    let mut cfg = PeConfig::new(POOL, user, policy);
    cfg.link.static_registrars = registrars.iter().map(|a| vec![*a]).collect();
    cfg.link.hunt_initial_backoff = Duration::from_millis(50);
    cfg.link.hunt_max_backoff = Duration::from_millis(400);
    cfg.registration_timeout = Duration::from_secs(2);
    cfg
}

/// An echo PE (see [`echo_pe_with_card`]) without a business card.
pub async fn echo_pe(cfg: PeConfig, tune: impl FnOnce(&mut PoolElementConfig)) -> EchoPe {
    echo_pe_with_card(cfg, tune, None).await
}

/// A PE registered with `cfg` (adjusted by `tune`) whose user transport is a session
/// listener on an ephemeral port of 127.0.0.1: the caller accepts the sessions itself.
/// Returns once the registrar has answered the registration.
pub async fn listening_pe(
    mut cfg: PeConfig,
    tune: impl FnOnce(&mut PoolElementConfig),
) -> (SessionListener, PoolElement) {
    let listener = SessionListener::bind(
        TransportKind::Tcp,
        &["127.0.0.1:0".parse().expect("lit")],
        0,
    )
    .await
    .expect("bind user transport");
    cfg.user_transport = listener.user_transport(None).expect("transport");
    let mut pc = PoolElementConfig::tcp(cfg);
    tune(&mut pc);
    let mut pe = PoolElement::register(pc).await.expect("start PE");
    within("PE registration", pe.wait_registered())
        .await
        .expect("registered");
    (listener, pe)
}

/// An echo PE that sends an ASAP_BUSINESS_CARD with `card` when a session opens.
pub async fn echo_pe_with_card(
    cfg: PeConfig,
    tune: impl FnOnce(&mut PoolElementConfig),
    card: Option<Vec<asap::wire::PoolElementInfo>>,
) -> EchoPe {
    let pool = cfg.pool_handle.clone();
    let (listener, pe) = listening_pe(cfg, tune).await;
    let user = listener.local_addrs().expect("addrs")[0];
    let id = pe.identifier();
    let (note_tx, notes) = mpsc::unbounded_channel();
    let (kill, kill_rx) = watch::channel(false);
    let (hold, hold_rx) = watch::channel(false);
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (count_tx, received_count) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let held: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let log = received.clone();
    let held_log = held.clone();
    let (alive_tx, alive) = mpsc::channel::<()>(1);
    let mut k = kill_rx.clone();
    tokio::spawn(async move {
        let _alive = alive_tx.clone();
        loop {
            let mut s = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => return },
                _ = k.wait_for(|v| *v) => return,
            };
            if let Some(c) = &card {
                if s.send_business_card(pool.clone(), c.clone()).await.is_err() {
                    continue;
                }
            }
            let notes = note_tx.clone();
            let hold = hold_rx.clone();
            let log = log.clone();
            let held_log = held_log.clone();
            let count_tx = count_tx.clone();
            let mut k2 = kill_rx.clone();
            let alive = alive_tx.clone();
            tokio::spawn(async move {
                let _alive = alive;
                let mut count = 0u64;
                loop {
                    let ev = tokio::select! {
                        ev = s.recv() => ev,
                        _ = k2.wait_for(|v| *v) => return,
                    };
                    match ev {
                        Ok(Some(ServerEvent::Data(d))) => {
                            let holding = *hold.borrow();
                            if holding {
                                held_log.lock().expect("log").push(d.to_vec());
                            }
                            let n = {
                                let mut l = log.lock().expect("log");
                                l.push(d.to_vec());
                                l.len()
                            };
                            count_tx.send_replace(n);
                            if holding {
                                continue;
                            }
                            count += 1;
                            if s.send(d).await.is_err() {
                                return;
                            }
                            let cookie = format!("pe={id:08x};n={count}").into_bytes();
                            if s.send_cookie(cookie).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(ServerEvent::CookieEcho(c))) => {
                            let _ = notes.send(EchoNote::CookieEcho(c));
                        }
                        Ok(Some(ServerEvent::BusinessCard(_))) => {}
                        // Session events added later carry nothing to echo.
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => return,
                    }
                }
            });
        }
    });
    EchoPe {
        pe,
        id,
        user,
        received,
        held,
        received_count,
        hold,
        kill,
        alive,
        notes,
    }
}

/// A session of `pu` to [`POOL`] with the default session configuration.
pub async fn session(pu: &PoolUser) -> Session {
    within(
        "session",
        Session::connect(pu, POOL, SessionConfig::default()),
    )
    .await
    .expect("session")
}

/// A pool user with the static `registrars`, fast hunting, 2 s request timeout, 15 s
/// request deadline and a fixed selection seed.
pub async fn pool_user(registrars: &[SocketAddr]) -> PoolUser {
    let mut cfg = PoolUserConfig::tcp();
    cfg.pu.link.static_registrars = registrars.iter().map(|a| vec![*a]).collect();
    cfg.pu.link.hunt_initial_backoff = Duration::from_millis(50);
    cfg.pu.link.hunt_max_backoff = Duration::from_millis(400);
    cfg.pu.request_timeout = Duration::from_secs(2);
    cfg.pu.request_deadline = Duration::from_secs(15);
    cfg.seed = Some(7);
    PoolUser::start(cfg).await.expect("start PU")
}
