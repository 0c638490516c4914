//! # asap
//!
//! The RSerPool library of rserpool-rs: the wire codec for every ASAP (RFC 5352) and ENRP
//! (RFC 5353) message with the parameters of RFC 5354 and the policies of RFC 5356.

pub mod transport;
pub mod wire;
pub mod checksum;
pub mod handlespace;
pub mod selection;
pub mod pe;
pub mod pu;
pub mod registrar_client;
pub mod session;
