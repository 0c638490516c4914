//! The RSerPool wire codec: every ASAP (RFC 5352) and ENRP (RFC 5353) message and every
//! parameter of RFC 5354 and RFC 5356, with rsplib's deviations.

pub mod param;
pub mod policy;

pub use param::*;
pub use policy::*;
