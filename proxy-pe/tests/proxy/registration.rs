//! Mode A (registration proxy, seed 003 [26]–[29]) with real processes: each running
//! (application, server) is registered at our enrp-server with the legacy server's own
//! address; PUs resolve the pool and talk to the legacy servers directly.

use crate::common::*;

/// The daemons' poll interval in this rig (`poll_interval_ms = 100` in
/// `common.rs`).
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Allowance for process scheduling on a loaded 2-core machine.
const REMOVAL_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_servers_registered_with_their_own_addresses() {
    let mut rig = Rig::with_proxy("modea", "registration", "least-load", |_| {});
    let r = rig
        .until(0, "three registrations accepted", |r| {
            all_selectable(r) && r.registrar.accepted >= 3
        })
        .await;
    assert_eq!(r.registrar.rejected, 0);
    assert!(r.proxy.applications[0].servers.iter().all(|s| s.registered));
    let mut want = rig.echo_addrs.clone();
    want.sort();
    let pes = resolve_until(rig.registrar_addr, "EchoPool", |v| v == want.as_slice()).await;
    // The PU talks to a legacy server directly (data link 81), not through the proxy.
    let (mut s, who) = session(pes[0]).await;
    assert!(NAMES.contains(&who.as_str()));
    assert_eq!(s.echo("direct").await, "direct");
    s.close().await;

    // Keep-alives are answered for fresh, running servers.
    rig.until(0, "keep-alives answered", |r| {
        r.registrar.keep_alives_answered >= 3
    })
    .await;

    // The application on IP2 stops: its PE is deregistered, and gone from the registrar
    // within one poll interval plus a margin (the functional bound; the margin is
    // generous for a loaded CI machine — the measured figures, a few ms, are in
    // BENCHMARKS.md, not asserted here).
    let killed = std::time::Instant::now();
    rig.kill_echo(1);
    let r = rig
        .until(0, "IP2 deregistered", |r| !server(r, "IP2").registered)
        .await;
    assert!(!server(&r, "IP2").running);
    let left = resolve_until(rig.registrar_addr, "EchoPool", |v| v.len() == 2).await;
    assert!(!left.contains(&rig.echo_addrs[1]));
    let bound = POLL_INTERVAL + REMOVAL_MARGIN;
    assert!(
        killed.elapsed() < bound,
        "IP2 removed after {:?}, more than one poll interval plus margin ({bound:?})",
        killed.elapsed()
    );

    // It restarts: registered again.
    rig.start_echo(1);
    rig.until(0, "IP2 registered", |r| server(r, "IP2").registered)
        .await;
    resolve_until(rig.registrar_addr, "EchoPool", |v| v.len() == 3).await;

    // Daemon d3 silent and IP3's service gone: down → deregistered.
    rig.kill_daemon(2);
    rig.kill_echo(2);
    rig.until(0, "IP3 deregistered", |r| !server(r, "IP3").registered)
        .await;
    let left = resolve_until(rig.registrar_addr, "EchoPool", |v| v.len() == 2).await;
    assert!(!left.contains(&rig.echo_addrs[2]));
}
