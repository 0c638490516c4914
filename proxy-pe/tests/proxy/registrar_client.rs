//! The proxy's registrar client with real processes (mode A): T4 re-registration keeps the
//! PEs at the registrar past their registration life, and a changed registrar list is
//! taken over by a configuration reload without restart.
//!
//! Waits poll the proxy's status and resolutions at the registrar (30 s bound against
//! hangs); no assertion depends on timing.

use crate::common::*;

/// Starts proxy 0 in mode A with `edit` applied to its configuration text.
fn start_proxy_with(rig: &mut Rig, edit: impl Fn(String) -> String) {
    assert!(rig.proxies.is_empty(), "proxy 0 is the first");
    rig.add_proxy(|rig| edit(rig.proxy_config(0, "registration", "round-robin", &[])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistration_keeps_pes_past_their_registration_life() {
    let mut rig = Rig::new("t4");
    // Life 2 s: T4 = 1 s.
    start_proxy_with(&mut rig, |c| {
        c.replace(
            "probe_interval_ms = 200\n",
            "probe_interval_ms = 200\nregistration_life_ms = 2000\n",
        )
    });
    rig.start_daemons();
    rig.until(0, "three registrations accepted", |r| {
        all_selectable(r) && r.registrar.accepted >= 3
    })
    .await;
    // Three T4 rounds for each of the three PEs: over 3 s, beyond the 2 s life.
    let r = rig
        .until(0, "three re-registration rounds", |r| {
            r.registrar.reregistrations >= 9 && r.registrar.accepted >= 12
        })
        .await;
    assert_eq!(r.registrar.rejected, 0);
    assert_eq!(r.registrar.t2_retries, 0);
    let mut want = rig.echo_addrs.clone();
    want.sort();
    assert_eq!(resolve(rig.registrar_addr, "EchoPool").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_list_reloaded_without_restart() {
    let mut rig = Rig::new("regreload");
    let real = rig.registrar_addr;
    // First configured with a registrar nobody listens on.
    rig.registrar_addr = format!("127.0.0.1:{}", port()).parse().expect("a");
    start_proxy_with(&mut rig, |c| c);
    rig.start_daemons();
    let r = rig
        .until(0, "servers running, no registrar", all_selectable)
        .await;
    assert_eq!(r.registrar.connected_to, None);
    assert_eq!(r.registrar.accepted, 0);
    // The file now names the real registrar: reloaded (file watch), registered there.
    rig.registrar_addr = real;
    let text = rig.proxy_config(0, "registration", "round-robin", &[]);
    std::fs::write(&rig.config_paths[0], text).expect("write");
    let r = rig
        .until(0, "registered at the reloaded registrar", |r| {
            r.registrar.connected_to == Some(real) && r.registrar.accepted >= 3
        })
        .await;
    assert_eq!(r.registrar.rejected, 0);
    assert!(r.config_loads >= 2);
    let mut want = rig.echo_addrs.clone();
    want.sort();
    resolve_until(real, "EchoPool", |v| v == want.as_slice()).await;
}
