//! UDP endpoints for ASAP Server Announce / ENRP Presence: unicast and multicast on loopback.
//!
//! The multicast test runs in a private network namespace (a thread that calls
//! `unshare(CLONE_NEWNET)`, root needed) where it turns on multicast for `lo`, so the host's
//! loopback is never changed. Without root it runs on the host's `lo` if that already has
//! multicast, and otherwise is skipped with a reason printed.
//!
//! Run: `cargo test -p asap --test transport transport_udp -- --nocapture`

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use asap::transport::defaults;
use asap::transport::udp::{UdpBind, UdpEndpoint};

const LIMIT: Duration = Duration::from_secs(10);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn recv(ep: &UdpEndpoint) -> (Vec<u8>, SocketAddr) {
    let (b, from) = tokio::time::timeout(LIMIT, ep.recv_from())
        .await
        .expect("datagram within limit")
        .expect("recv");
    (b.to_vec(), from)
}

#[tokio::test]
async fn unicast_send_and_receive_with_source() {
    let a = UdpEndpoint::bind(UdpBind::Addr("127.0.0.1:0".parse().expect("literal")))
        .await
        .expect("bind a");
    let b = UdpEndpoint::bind(UdpBind::Addr("127.0.0.1:0".parse().expect("literal")))
        .await
        .expect("bind b");
    let msg = [0x0a, 0x00, 0x00, 0x08, 1, 2, 3, 4]; // ASAP Server Announce header + 4 bytes
    a.send_to(&msg, b.local_addr().expect("addr"))
        .await
        .expect("send");
    let (got, from) = recv(&b).await;
    assert_eq!(got, msg);
    assert_eq!(from, a.local_addr().expect("addr"));
}

#[test]
fn defaults_are_the_rsplib_groups() {
    assert_eq!(defaults::ASAP_ANNOUNCE_ADDR.to_string(), "239.0.0.50:3863");
    assert_eq!(defaults::ENRP_PRESENCE_ADDR.to_string(), "239.0.0.51:9901");
    assert!(defaults::ASAP_ANNOUNCE_GROUP.is_multicast());
    assert!(defaults::ENRP_PRESENCE_GROUP.is_multicast());
}

/// Moves the calling thread into a new network namespace with `lo` up and multicast-capable.
fn private_netns() -> Result<(), String> {
    // SAFETY: unshare only changes the namespaces of the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    // A child forked from this thread inherits its network namespace.
    let st = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up", "multicast", "on"])
        .status()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !st.success() {
        return Err(format!("ip link set lo up multicast on: {st}"));
    }
    Ok(())
}

fn lo_has_multicast() -> bool {
    std::fs::read_to_string("/sys/class/net/lo/flags")
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 0x1000 != 0) // IFF_MULTICAST
}

#[test]
fn multicast_join_loop_ttl_and_leave_on_loopback() {
    let handle = std::thread::spawn(|| {
        let where_ = match private_netns() {
            Ok(()) => "private network namespace",
            Err(e) if lo_has_multicast() => {
                eprintln!("note: {e}; using the host's lo, which has multicast");
                "host lo"
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED multicast test: no private netns ({e}) and the host's lo has no \
                     multicast (needs root or `ip link set lo multicast on`)"
                );
                return;
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(multicast_body());
        eprintln!("multicast test ran in the {where_}");
    });
    handle.join().expect("multicast test thread");
}

async fn multicast_body() {
    let group = defaults::ASAP_ANNOUNCE_GROUP;
    // Receiver on 0.0.0.0:<free port>, member of the group on lo.
    let rx = UdpEndpoint::bind(UdpBind::Port(0)).await.expect("bind rx");
    let port = rx.local_addr().expect("addr").port();
    rx.join_multicast_v4(group, LO).expect("join");
    // Sender: multicast out of lo, TTL 1, loopback on.
    let tx = UdpEndpoint::bind(UdpBind::Addr("127.0.0.1:0".parse().expect("literal")))
        .await
        .expect("bind tx");
    tx.set_multicast_if(LO).expect("if");
    tx.set_multicast_ttl(defaults::MULTICAST_TTL).expect("ttl");
    tx.set_multicast_loop(true).expect("loop");
    let to = SocketAddr::from((group, port));
    let announce = [0x0a, 0x00, 0x00, 0x04];
    tx.send_to(&announce, to).await.expect("send to group");
    let (got, from) = recv(&rx).await;
    assert_eq!(got, announce);
    assert_eq!(from, tx.local_addr().expect("addr"));

    // After leaving, a datagram to the group is not delivered: send one to the group, then a
    // unicast marker to the same socket; the first datagram received must be the marker.
    rx.leave_multicast_v4(group, LO).expect("leave");
    tx.send_to(&[0x0a, 0, 0, 4], to)
        .await
        .expect("send to group");
    let marker = [0xEE, 0, 0, 4];
    tx.send_to(&marker, SocketAddr::from((LO, port)))
        .await
        .expect("send marker");
    let (got, _) = recv(&rx).await;
    assert_eq!(got, marker, "no multicast after leave");
}
