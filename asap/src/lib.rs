//! # asap
//!
//! The RSerPool library of rserpool-rs: the wire codec for every ASAP (RFC 5352) and ENRP
//! (RFC 5353) message with the parameters of RFC 5354 and the policies of RFC 5356.

pub mod capture;
pub mod checksum;
pub mod handlespace;
pub mod selection;
pub mod transport;
pub mod wire;
