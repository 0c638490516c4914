//! Talking to registrars from a pool element or pool user (RFC 5352 §3): discovery by static
//! configuration and ASAP_SERVER_ANNOUNCE, registrar hunt with back-off, and the shared
//! tokio plumbing of the PE and PU drivers.
//!
//! * [`link`]: the sans-I/O [`RegistrarLink`] (candidates, T7 announce expiry, hunt rounds,
//!   re-hunt on association loss).
//! * [`Action`]: what the sans-I/O PE and PU cores ask their driver to do.
//! * `driver` (crate-private): connects, reads and writes registrar associations and listens
//!   for announces for the tokio drivers in [`crate::pe`] and [`crate::pu`].
//! * [`RegistrarFailure`]: the last reason a registrar could not be used, carried by the
//!   PE and PU errors ("registrar 127.0.0.1:3863: connection refused").
//!
//! The link is sans-I/O: time goes in, actions come out.
//!
//! ```
//! use std::time::Instant;
//! use asap::registrar_client::{LinkAction, LinkConfig, RegistrarLink};
//! let registrar = "127.0.0.1:3863".parse().unwrap();
//! let mut link = RegistrarLink::new(LinkConfig {
//!     static_registrars: vec![vec![registrar]],
//!     ..LinkConfig::default()
//! });
//! link.start(Instant::now());
//! // The hunt starts with the first static registrar.
//! assert!(matches!(
//!     link.poll_action(),
//!     Some(LinkAction::Connect { addrs, .. }) if addrs == vec![registrar]
//! ));
//! ```

pub mod driver;
mod failure;
pub mod link;

use std::net::SocketAddr;

pub(crate) use failure::LastFailure;
pub use failure::RegistrarFailure;
pub use link::{
    ConnId, LinkAction, LinkConfig, LinkEvent, LinkProtocol, RegistrarLink, T7_ENRP_OUTDATE,
};

use crate::wire::AsapMessage;

/// What a sans-I/O core (PE or PU) asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open an association to a registrar (its addresses) and report the outcome.
    Connect {
        /// Identifier to report back with.
        conn: ConnId,
        /// The registrar's addresses.
        addrs: Vec<SocketAddr>,
    },
    /// Close an association.
    Close {
        /// The association.
        conn: ConnId,
    },
    /// Send an ASAP message (PPID 11) on an association.
    Send {
        /// The association.
        conn: ConnId,
        /// The message.
        message: AsapMessage,
    },
}

impl From<LinkAction> for Action {
    fn from(a: LinkAction) -> Self {
        match a {
            LinkAction::Connect { conn, addrs } => Action::Connect { conn, addrs },
            LinkAction::Close { conn } => Action::Close { conn },
        }
    }
}
