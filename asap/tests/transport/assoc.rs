//! Helpers the transport tests share (also `transport_sctp.rs`, through `#[path]`): listen on
//! loopback, accept, and receive the next event or message within a limit that only stops
//! a hung test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::{Association, Event, Listener, Msg, Transport};

/// Upper bound for any single expected event.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Listens on an ephemeral loopback port; returns the listener and its address.
pub async fn listen(t: &Transport) -> (Listener, SocketAddr) {
    let l = t
        .listen(&["127.0.0.1:0".parse().expect("literal")])
        .await
        .expect("listen");
    let a = l.local_addrs().expect("local")[0];
    (l, a)
}

/// The next event of `a`.
pub async fn recv(a: &mut Association) -> Event {
    tokio::time::timeout(LIMIT, a.recv())
        .await
        .expect("event within limit")
        .expect("event")
}

/// The next message of `a`, skipping `Up` and (SCTP) peer address changes.
pub async fn recv_msg(a: &mut Association) -> Msg {
    loop {
        match recv(a).await {
            Event::Message(m) => return m,
            Event::Up { .. } | Event::PeerAddrChange { .. } => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next association accepted on `l`.
pub async fn accept(l: &Listener) -> Association {
    tokio::time::timeout(LIMIT, l.accept())
        .await
        .expect("accept within limit")
        .expect("accept")
}
