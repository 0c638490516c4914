//! One reporter task per configured proxy (seed 000 \[0007\]: "each agent process registered
//! with a different active server process, so that the failure of one agent/server pair
//! does not impact the other agent/server pair").
//!
//! The daemon core never waits for a reporter: it offers each [`Delta`] with a non-blocking
//! `try_send` into the reporter's own bounded queue and publishes the full state in a
//! `watch` channel. A reporter that cannot keep up (slow or dead proxy, reconnect backoff)
//! loses deltas from its queue, notices it through an overflow flag (or a `state_seq` gap)
//! and sends a full [`Snapshot`] instead, so its proxy's view is always exact and the other
//! proxies are never delayed.
//!
//! Connection life cycle (see `PROTOCOL.md`): connect → `Hello` → `Snapshot` → deltas,
//! heartbeats and config acks → on any error, close, wait with exponential backoff and
//! jitter, reconnect. With `max_attempts = N` the reporter gives up after N failed attempts
//! in a row and logs an error event (seed 000 \[0024\]–\[0025\]).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use legacy_protocol::auth::Key;
use legacy_protocol::link::{connect_daemon, Link};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::ProxyTarget;
use legacy_protocol::{
    ConfigAck, ConfigPush, DaemonFrame, DaemonMessage, Delta, Heartbeat, Hello, ProtocolError,
    ProxyMessage, Snapshot, PROTOCOL_VERSION,
};

/// Deltas a reporter may hold before it falls back to a snapshot.
pub const QUEUE_CAPACITY: usize = 64;

/// What a Hello and a Heartbeat need to know about the daemon (changes on reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// Daemon identity.
    pub daemon_id: String,
    /// Configuration version in force.
    pub config_version: u64,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Pre-shared key for the handshake (`None`: `auth = "none"`).
    pub key: Option<Key>,
}

/// A configuration push received from a proxy, handed to the daemon core.
#[derive(Debug)]
pub struct PushRequest {
    /// The push.
    pub push: ConfigPush,
    /// Address of the proxy it came from.
    pub from: String,
    /// Where the core sends the answer.
    pub reply: oneshot::Sender<ConfigAck>,
}

/// State shared by all reporters (read-only for them).
#[derive(Debug, Clone)]
pub struct ReporterShared {
    /// Random id of this daemon run ([`Hello::instance`]).
    pub instance: u64,
    /// Daemon start time (for [`Heartbeat::uptime_s`]).
    pub started: Instant,
    /// Identity, version and intervals.
    pub hello: watch::Receiver<HelloInfo>,
    /// The full reported state.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Config pushes go to the core through this channel.
    pub push_tx: mpsc::Sender<PushRequest>,
    /// Link state and report counts (`--metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Handle of one running reporter task; dropping it stops the task.
#[derive(Debug)]
pub struct Reporter {
    target: ProxyTarget,
    queue: mpsc::Sender<Arc<Delta>>,
    overflow: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Reporter {
    /// Starts the reporter task for `target`.
    pub fn spawn(target: ProxyTarget, shared: ReporterShared) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let overflow = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(target.clone(), shared, rx, overflow.clone()));
        Self {
            target,
            queue: tx,
            overflow,
            task,
        }
    }

    /// The proxy this reporter serves.
    pub fn target(&self) -> &ProxyTarget {
        &self.target
    }

    /// True once the task ended (gave up after `max_attempts`).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Offers a delta without ever blocking; a full queue marks the reporter for a resync.
    pub fn offer(&self, delta: Arc<Delta>) {
        if self.queue.try_send(delta).is_err() {
            self.overflow.store(true, Ordering::Release);
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A random u64 without a RNG dependency (std's randomly keyed SipHash).
pub fn random_u64(salt: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Backoff before attempt `failures + 1`: `min · 2^failures` capped at `max`, with equal
/// jitter (half fixed, half uniformly random) so daemons do not reconnect in lock-step.
pub fn backoff_delay(min: Duration, max: Duration, failures: u32, rnd: u64) -> Duration {
    let exp = min.saturating_mul(1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX));
    let d = exp.min(max).max(min);
    let half = d / 2;
    let half_ms = half.as_millis().max(1) as u64;
    half + Duration::from_millis(rnd % (half_ms + 1))
}

async fn run(
    target: ProxyTarget,
    shared: ReporterShared,
    mut queue: mpsc::Receiver<Arc<Delta>>,
    overflow: Arc<AtomicBool>,
) {
    let mut failures: u32 = 0;
    let mut salt: u64 = 0;
    loop {
        let attempt =
            tokio::time::timeout(target.connect_timeout, TcpStream::connect(&target.address)).await;
        match attempt {
            Ok(Ok(stream)) => {
                let (id, key) = {
                    let h = shared.hello.borrow();
                    (h.daemon_id.clone(), h.key.clone())
                };
                let link = match tokio::time::timeout(
                    target.handshake_timeout,
                    connect_daemon(stream, &id, key.as_ref()),
                )
                .await
                {
                    Ok(Ok(link)) => link,
                    Ok(Err(e)) => {
                        shared.metrics.connect_result(&target.address, false);
                        failures += 1;
                        tracing::error!(proxy = %target.address, attempt = failures, error = %e, "handshake with proxy failed");
                        backoff(&target, failures, &mut salt).await;
                        continue;
                    }
                    Err(_) => {
                        shared.metrics.connect_result(&target.address, false);
                        failures += 1;
                        tracing::warn!(proxy = %target.address, attempt = failures, "handshake with proxy timed out");
                        backoff(&target, failures, &mut salt).await;
                        continue;
                    }
                };
                failures = 0;
                tracing::info!(proxy = %target.address, "connected to proxy");
                shared.metrics.connect_result(&target.address, true);
                shared.metrics.set_link(&target.address, true);
                let end = session(&target, &shared, link, &mut queue, &overflow).await;
                shared.metrics.set_link(&target.address, false);
                match end {
                    Ok(()) => {
                        tracing::warn!(proxy = %target.address, "proxy closed the connection")
                    }
                    Err(e) => {
                        tracing::warn!(proxy = %target.address, error = %e, "proxy connection lost")
                    }
                }
            }
            Ok(Err(e)) => {
                shared.metrics.connect_result(&target.address, false);
                failures += 1;
                tracing::warn!(proxy = %target.address, attempt = failures, error = %e, "cannot connect to proxy");
            }
            Err(_) => {
                shared.metrics.connect_result(&target.address, false);
                failures += 1;
                tracing::warn!(proxy = %target.address, attempt = failures, "connect to proxy timed out");
            }
        }
        if let Some(max) = target.max_attempts {
            if failures >= max {
                tracing::error!(
                    proxy = %target.address,
                    attempts = failures,
                    event = "proxy_retries_exhausted",
                    "giving up on proxy after {failures} failed attempts; reload the configuration to retry"
                );
                return;
            }
        }
        // Deltas queued while disconnected are useless: a snapshot follows the reconnect.
        backoff(&target, failures, &mut salt).await;
    }
}

async fn backoff(target: &ProxyTarget, failures: u32, salt: &mut u64) {
    *salt = salt.wrapping_add(1);
    let delay = backoff_delay(
        target.reconnect_min,
        target.reconnect_max,
        failures.saturating_sub(1),
        random_u64(*salt),
    );
    tracing::debug!(proxy = %target.address, delay_ms = delay.as_millis() as u64, "reconnect backoff");
    tokio::time::sleep(delay).await;
}

/// Per-connection writer state.
struct Conn {
    link: Link,
    seq: u64,
    write_timeout: Duration,
    /// (metrics, proxy address): counts every frame written.
    metrics: (Arc<crate::metrics::Metrics>, String),
}

impl Conn {
    async fn send(&mut self, msg: DaemonMessage) -> Result<(), ProtocolError> {
        let frame = DaemonFrame { seq: self.seq, msg };
        self.seq += 1;
        let w = self.link.send(&frame);
        match tokio::time::timeout(self.write_timeout, w).await {
            Ok(r) => {
                r?;
                self.metrics.0.sent(&self.metrics.1, &frame.msg);
                Ok(())
            }
            Err(_) => Err(ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "proxy does not read (write timed out)",
            ))),
        }
    }
}

async fn session(
    target: &ProxyTarget,
    shared: &ReporterShared,
    link: Link,
    queue: &mut mpsc::Receiver<Arc<Delta>>,
    overflow: &AtomicBool,
) -> Result<(), ProtocolError> {
    let _ = link.stream().set_nodelay(true);
    let sock = socket2::SockRef::from(link.stream());
    let _ = sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(target.keepalive_idle)
            .with_interval(target.keepalive_interval),
    );
    // Anything queued before this point is older than the snapshot we are about to send.
    while queue.try_recv().is_ok() {}
    overflow.store(false, Ordering::Release);

    let info = shared.hello.borrow().clone();
    let mut hb_interval = info.heartbeat_interval;
    let mut conn = Conn {
        link,
        seq: 0,
        write_timeout: target.write_timeout(hb_interval),
        metrics: (shared.metrics.clone(), target.address.clone()),
    };
    conn.send(DaemonMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        daemon_id: info.daemon_id.clone(),
        instance: shared.instance,
        config_version: info.config_version,
        poll_interval_ms: info.poll_interval.as_millis() as u64,
        heartbeat_interval_ms: hb_interval.as_millis() as u64,
        software: env!("CARGO_PKG_VERSION").into(),
    }))
    .await?;
    let snap = shared.snapshot.borrow().clone();
    let mut last_state_seq = snap.state_seq;
    conn.send(DaemonMessage::Snapshot((*snap).clone())).await?;
    tracing::debug!(proxy = %target.address, state_seq = last_state_seq, "sent hello and snapshot");

    let mut heartbeat_seq: u64 = 0;
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + hb_interval, hb_interval);
    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            delta = queue.recv() => {
                let Some(delta) = delta else { return Ok(()) };
                let resync = overflow.swap(false, Ordering::AcqRel)
                    || delta.state_seq > last_state_seq + 1;
                if resync {
                    while queue.try_recv().is_ok() {}
                    let snap = shared.snapshot.borrow().clone();
                    tracing::info!(proxy = %target.address, state_seq = snap.state_seq, "queue overflow or gap: resending full snapshot");
                    last_state_seq = snap.state_seq;
                    conn.send(DaemonMessage::Snapshot((*snap).clone())).await?;
                } else if delta.state_seq > last_state_seq {
                    last_state_seq = delta.state_seq;
                    conn.send(DaemonMessage::Delta((*delta).clone())).await?;
                }
            }
            _ = hb.tick() => {
                heartbeat_seq += 1;
                let info = shared.hello.borrow().clone();
                conn.send(DaemonMessage::Heartbeat(Heartbeat {
                    heartbeat_seq,
                    state_seq: last_state_seq,
                    config_version: info.config_version,
                    uptime_s: shared.started.elapsed().as_secs(),
                })).await?;
                if info.heartbeat_interval != hb_interval {
                    hb_interval = info.heartbeat_interval;
                    conn.write_timeout = target.write_timeout(hb_interval);
                    hb = tokio::time::interval_at(tokio::time::Instant::now() + hb_interval, hb_interval);
                    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
            msg = conn.link.recv::<ProxyMessage>() => {
                // Only frames tagged with this connection's session key get here: a config
                // push comes from a proxy that holds this daemon's key (PROTOCOL.md §1.1).
                let Some(msg) = msg? else { return Ok(()) };
                {
                    match msg {
                        ProxyMessage::ConfigPush(push) => {
                            let version = push.version;
                            tracing::info!(proxy = %target.address, version, "configuration pushed by proxy");
                            let (tx, rx) = oneshot::channel();
                            let req = PushRequest { push, from: target.address.clone(), reply: tx };
                            let ack = match shared.push_tx.send(req).await {
                                Ok(()) => rx.await.ok(),
                                Err(_) => None,
                            };
                            let ack = ack.unwrap_or(ConfigAck {
                                version,
                                accepted: false,
                                active_version: shared.hello.borrow().config_version,
                                error: Some("daemon is shutting down".into()),
                            });
                            conn.send(DaemonMessage::ConfigAck(ack)).await?;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for failures in 0..30 {
            for rnd in [0u64, 1, 17, u64::MAX] {
                let d = backoff_delay(min, max, failures, rnd);
                let full = (min * 2u32.saturating_pow(failures.min(20))).min(max);
                assert!(d >= full / 2 && d <= full, "{failures} {rnd} {d:?}");
            }
        }
        assert_eq!(backoff_delay(min, max, 0, 0), Duration::from_millis(50));
        assert_eq!(backoff_delay(min, max, 10, 0), Duration::from_millis(500));
    }

    /// The core offers many deltas without ever yielding (as its poll loop does): the
    /// reporter's queue overflows, and the proxy receives one resync snapshot at the latest
    /// state instead of a gap, with `state_seq` continuity intact afterwards.
    #[tokio::test]
    async fn queue_overflow_resyncs_with_a_snapshot() {
        use crate::state::StatusBook;
        use legacy_protocol::receiver::{DaemonListener, StatusTable};
        use legacy_protocol::AppStatus;

        fn app(pid: u32) -> AppStatus {
            AppStatus::new("A", &[pid])
        }

        let l = DaemonListener::bind("127.0.0.1:0").await.unwrap();
        let key = legacy_protocol::auth::Key::generate();
        let keys = legacy_protocol::link::DaemonKeys::hmac([("t".to_string(), key.clone())]);
        let mut book = StatusBook::new();
        book.update(vec![app(1)], 1, 0);
        let (_hello_tx, hello_rx) = watch::channel(HelloInfo {
            daemon_id: "t".into(),
            config_version: 1,
            poll_interval: Duration::from_secs(3600),
            heartbeat_interval: Duration::from_secs(3600),
            key: Some(key.clone()),
        });
        let (snap_tx, snap_rx) = watch::channel(Arc::new(book.snapshot()));
        let (push_tx, _push_rx) = mpsc::channel(1);
        let shared = ReporterShared {
            instance: 1,
            started: Instant::now(),
            hello: hello_rx,
            snapshot: snap_rx,
            push_tx,
            metrics: Default::default(),
        };
        let target = ProxyTarget {
            address: l.local_addr().unwrap().to_string(),
            max_attempts: None,
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            keepalive_idle: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            write_timeout: None,
        };
        let r = Reporter::spawn(target, shared);
        let mut c = l.accept(&keys).await.unwrap();
        let mut t = StatusTable::new(c.hello().clone());
        let first = c.next_message().await.unwrap().unwrap();
        t.apply(&first).unwrap();
        assert_eq!(t.state_seq, 1);

        // 100 changes in one go, no await in between.
        let n = QUEUE_CAPACITY as u32 + 36;
        for pid in 2..=n + 1 {
            let d = book.update(vec![app(pid)], 1, 0).unwrap();
            snap_tx.send_replace(Arc::new(book.snapshot()));
            r.offer(Arc::new(d));
        }
        let next = c.next_message().await.unwrap().unwrap();
        match &next {
            DaemonMessage::Snapshot(s) => {
                assert_eq!(s.state_seq, u64::from(n) + 1);
                assert_eq!(s.apps[0].pids, vec![n + 1]);
            }
            other => panic!("expected a resync snapshot, got {other:?}"),
        }
        t.apply(&next).unwrap();

        // Normal deltas continue after the resync.
        let d = book.update(vec![app(7)], 1, 0).unwrap();
        snap_tx.send_replace(Arc::new(book.snapshot()));
        r.offer(Arc::new(d));
        let m = c.next_message().await.unwrap().unwrap();
        assert!(matches!(m, DaemonMessage::Delta(_)), "{m:?}");
        t.apply(&m).unwrap();
        assert_eq!(t.apps["A"].pids, vec![7]);
    }
}
