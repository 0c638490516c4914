//! # asap
//!
//! The RSerPool library of rserpool-rs: the wire codec for every ASAP (RFC 5352) and ENRP
//! (RFC 5353) message with the parameters of RFC 5354 and the policies of RFC 5356, and
//! everything built on it:
//!
//! * [`wire`]: the codec (nom 8 parsers, `bytes` encoders, byte-exact re-encoding), the
//!   nested crate `rserpool-wire` re-exported;
//! * [`handlespace`], [`selection`], [`checksum`]: pools, pool elements, the RFC 5356
//!   selection policies and the RFC 5353 PE checksum (registrar and pool-user cache);
//! * [`transport`]: message transports over kernel SCTP, TCP and UDP multicast;
//! * [`registrar_client`], [`pe`], [`pu`], [`session`]: registrar discovery and hunt, the
//!   pool element and pool user APIs (RFC 5352) and the session layer with failover
//!   (RFC 5351 §2.5). Each protocol role is a sans-I/O state machine with a thin tokio
//!   driver.

#![deny(unsafe_code)]

pub mod checksum;
pub mod handlespace;
pub mod pe;
pub mod pu;
pub mod registrar_client;
pub mod selection;
pub mod session;
pub mod transport;
/// The wire codec, [`rserpool_wire`] (the nested crate `asap/wire`, no I/O), re-exported so
/// that every `asap::wire::…` path works.
pub use rserpool_wire as wire;
