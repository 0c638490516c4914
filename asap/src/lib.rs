//! # asap
//!
//! The RSerPool library of rserpool-rs: the wire codec for every ASAP (RFC 5352) and ENRP
//! (RFC 5353) message with the parameters of RFC 5354 and the policies of RFC 5356, and
//! everything built on it:
//!
//! * [`wire`]: the codec (nom 8 parsers, `bytes` encoders, byte-exact re-encoding);
//! * [`capture`]: ASAP/ENRP messages out of pcap/pcapng captures, and a pcap writer;
//! * [`handlespace`], [`selection`], [`checksum`]: pools, pool elements, the RFC 5356
//!   selection policies and the RFC 5353 PE checksum (registrar and pool-user cache);
//! * [`transport`]: message transports over kernel SCTP, TCP and UDP multicast;
//! * [`registrar_client`], [`pe`], [`pu`], [`session`]: registrar discovery and hunt, the
//!   pool element and pool user APIs (RFC 5352) and the session layer with failover
//!   (RFC 5351 §2.5). Each protocol role is a sans-I/O state machine with a thin tokio
//!   driver.

pub mod capture;
pub mod checksum;
pub mod handlespace;
pub mod load;
pub mod pe;
pub mod pu;
pub mod registrar_client;
pub mod selection;
pub mod session;
pub mod transport;
pub mod wire;
