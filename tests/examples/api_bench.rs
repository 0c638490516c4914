//! ASAP API benchmark: handle resolution latency and session failover time, in one process
//! over TCP on 127.0.0.1 with the real registrar (`enrp-server` driver).
//!
//! * **resolution**: `PoolUser::refresh` (HANDLE_RESOLUTION round trip to the registrar,
//!   with the Handle Resolution Option) and `PoolUser::resolve` answered from the PU cache.
//! * **failover**: an echo session; the serving PE is killed (sessions and registrar
//!   association closed, no deregistration); measured from the kill to the first echo
//!   reply from the new PE (the message sent right after the kill is re-sent after the
//!   failover, as the echo tests do). The PU cache holds the pool (no registrar round trip).
//!   `took` is the session's own figure from failure detection to the new association.
//!
//! ```text
//! cargo run --release -p rserpool-tests --example api_bench -- [resolutions] [failovers]
//! ```

use std::time::{Duration, Instant};

use asap::session::{Session, SessionConfig, SessionEvent};
use asap::wire::Policy;
use rserpool_tests::api::*;

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let n = v.len();
    if n == 0 {
        return;
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / n as f64;
    println!(
        "{name:<34} n={n:<5} median={:>8.1} µs  p90={:>8.1} µs  p99={:>8.1} µs  mean={mean:>8.1} µs  max={:>8.1} µs",
        us(v[n / 2]),
        us(v[(n * 9 / 10).min(n - 1)]),
        us(v[(n * 99 / 100).min(n - 1)]),
        us(v[n - 1]),
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let resolutions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let failovers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);

    let r = registrar(0xBE7C, |_| {}).await;
    let mut pes = Vec::new();
    for _ in 0..3 {
        pes.push(echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await);
    }
    let pu = pool_user(&[r.asap]).await;
    pu.refresh(POOL).await.expect("warm-up");

    // Handle resolution through the registrar.
    let mut hr = Vec::with_capacity(resolutions);
    for _ in 0..resolutions {
        let t = Instant::now();
        let v = pu.refresh(POOL).await.expect("resolve");
        hr.push(t.elapsed());
        assert_eq!(v.len(), pes.len());
    }
    // Cached.
    let mut cached = Vec::with_capacity(resolutions);
    for _ in 0..resolutions {
        let t = Instant::now();
        pu.resolve(POOL).await.expect("resolve");
        cached.push(t.elapsed());
    }

    // Failover.
    let mut total = Vec::new();
    let mut took = Vec::new();
    let mut s = Session::connect(&pu, POOL, SessionConfig::default())
        .await
        .expect("session");
    let mut seq = 0u64;
    for _ in 0..failovers {
        // One echo on the current PE (also refreshes its cookie).
        s.send(format!("warm {seq}").into_bytes())
            .await
            .expect("send");
        seq += 1;
        loop {
            match s.recv().await {
                Some(SessionEvent::Data(_)) => break,
                Some(SessionEvent::Failover(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let serving = s.current_pe().expect("serving").id;
        let i = pes.iter().position(|p| p.id == serving).expect("known PE");
        let victim = pes.remove(i);
        victim.kill().await;
        // The PE's sockets are closed now: the failure has happened.
        let t0 = Instant::now();
        let probe = format!("probe {seq}");
        seq += 1;
        let idx = s.send(probe.clone().into_bytes()).await.expect("send");
        loop {
            match s.recv().await {
                Some(SessionEvent::Data(d)) => {
                    if d.as_ref() == probe.as_bytes() {
                        total.push(t0.elapsed());
                        break;
                    }
                }
                Some(SessionEvent::Failover(f)) => {
                    took.push(f.took);
                    if idx < f.resend_from {
                        s.send(probe.clone().into_bytes()).await.expect("resend");
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Keep three PEs in the pool; a refresh puts the newcomer into the PU cache.
        pes.push(echo_pe(pe_config(&[r.asap], Policy::RoundRobin), |_| {}).await);
        pu.refresh(POOL).await.expect("refresh");
    }
    println!("ASAP API benchmark (TCP, 127.0.0.1, real registrar in-process, 3 echo PEs)");
    summary("handle resolution via registrar", hr);
    summary("handle resolution from PU cache", cached);
    summary("failover: kill -> first echo", total);
    summary("failover: detect -> new PE ready", took);
    s.close().await;
    r.kill().await;
}
