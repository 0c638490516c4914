//! Takeover of the proxy's home registrar (RFC 5352 §3, RFC 5353 §3.6) with real processes:
//! two `enrp-server`s A and B peered over TCP (timers of enrp-server/tests/registrar/tcp_takeover.rs),
//! a mode A proxy that knows only A, three daemons and legacy servers.
//!
//! A is killed. B takes A over and connects to the ASAP transport A recorded for the
//! proxy's PEs (the proxy's registrar association's address and port, shared with a
//! listener by `SO_REUSEPORT`), sending ENDPOINT_KEEP_ALIVE with the H flag. The proxy
//! answers, makes B its home and re-registers there; B keeps the PEs past its keep-alive
//! timeout (B removes adopted PEs it cannot verify) and PUs asking B still get all three.
//!
//! Waits poll state (the proxy's status, resolutions at B) with a 30 s bound against hangs.

use crate::common::*;

const A_ID: u32 = 0x0000_0A01;
const B_ID: u32 = 0x0000_0B02;

fn registrar(rig: &Rig, name: &str, id: u32, asap: u16, enrp: u16, peer: u16) -> Proc {
    spawn(
        name,
        &bin("enrp-server"),
        &registrar_args(
            asap,
            400,
            &[
                &format!("--enrp=127.0.0.1:{enrp}"),
                &format!("--peer=127.0.0.1:{peer}"),
                &format!("--identifier={id:#x}"),
                "--peering=on",
                "--peer-heartbeat-cycle=200",
                "--peer-max-time-last-heard=600",
                "--peer-max-time-no-response=600",
                "--mentor-discovery-timeout=500",
                "--takeover-expiry-interval=1500",
            ],
        ),
        &rig.dir.join(format!("{name}.log")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_taking_over_becomes_home_and_keeps_the_proxy_pes() {
    let mut rig = Rig::new("takeover");
    // The rig's stand-alone registrar is replaced by the peered pair.
    if let Some(mut p) = rig.registrar.take() {
        p.kill();
    }
    let (a_asap, a_enrp, b_asap, b_enrp) = (port(), port(), port(), port());
    let a = registrar(&rig, "registrar-a", A_ID, a_asap, a_enrp, b_enrp);
    let b = registrar(&rig, "registrar-b", B_ID, b_asap, b_enrp, a_enrp);
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{b_asap}").parse().expect("addr");
    rig.registrar = Some(a);
    rig.registrar_addr = format!("127.0.0.1:{a_asap}").parse().expect("addr");
    // The proxy knows only A.
    rig.start_proxies(1, "registration", "round-robin", &[]);
    rig.start_daemons();
    let r = rig
        .until(0, "registered at A, A known as home", |r| {
            all_selectable(r) && r.registrar.accepted >= 3 && r.registrar.home == Some(A_ID)
        })
        .await;
    assert_eq!(r.registrar.connected_to, Some(rig.registrar_addr));
    assert_eq!(r.registrar.home_changes, 0);
    let accepted_at_a = r.registrar.accepted;
    let mut want = rig.echo_addrs.clone();
    want.sort();
    // B learned the PEs from A (ENRP replication).
    resolve_until(b_addr, "EchoPool", |v| v == want.as_slice()).await;

    if let Some(mut a) = rig.registrar.take() {
        a.kill();
    }
    let r = rig
        .until(0, "B adopted as home", |r| {
            r.registrar.home == Some(B_ID) && r.registrar.home_changes == 1
        })
        .await;
    // The registrar association is now the one B opened (from 127.0.0.1, not A's port).
    assert_ne!(r.registrar.connected_to, Some(rig.registrar_addr));
    // Re-registered at B, and B's keep-alives keep being answered: several keep-alive
    // rounds (400 ms each, the same as B's keep-alive timeout) after the adoption.
    let ka = r.registrar.keep_alives_answered;
    let r = rig
        .until(0, "re-registered at B and monitored by B", |r| {
            r.registrar.accepted >= accepted_at_a + 3 && r.registrar.keep_alives_answered >= ka + 9
        })
        .await;
    assert_eq!(r.registrar.home, Some(B_ID));
    assert_eq!(r.registrar.rejected, 0);
    assert_eq!(r.registrar.abandoned, 0);
    // PUs asking B get all three legacy servers.
    assert_eq!(resolve(b_addr, "EchoPool").await, want);
    let log = std::fs::read_to_string(rig.dir.join("proxy-0.log")).unwrap_or_default();
    assert!(
        log.contains("home registrar changed") && log.contains("0x00000b02"),
        "proxy log names B as home:\n{}",
        rig.logs()
    );
    drop(b);
}
