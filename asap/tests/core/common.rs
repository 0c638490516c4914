//! Helpers of both modules for any registrar-client core ([`ClientCore`]: `PeCore`,
//! `MultiPeCore`, `PuCore`): the actions it queued, the connection it asked for, and
//! bringing it to its first registrar.

use std::net::SocketAddr;
use std::time::Instant;

use asap::registrar_client::driver::ClientCore;
use asap::registrar_client::{Action, ConnId};

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

/// Every action the core has queued.
pub fn actions(c: &mut impl ClientCore) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// The first Connect among `acts`: its connection and the registrar's addresses.
pub fn connect_of(acts: &[Action]) -> (ConnId, Vec<SocketAddr>) {
    acts.iter()
        .find_map(|a| match a {
            Action::Connect { conn, addrs } => Some((*conn, addrs.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Connect in {acts:?}"))
}

/// Completes the core's first connection attempt, which must go to the first static
/// registrar (10.0.0.1:3863), at `t0`: the connection and the actions that followed.
pub fn connect_first(c: &mut impl ClientCore, t0: Instant) -> (ConnId, Vec<Action>) {
    let (conn, addrs) = connect_of(&actions(c));
    assert_eq!(addrs, vec![sa("10.0.0.1:3863")]);
    c.on_connected(t0, conn);
    (conn, actions(c))
}
