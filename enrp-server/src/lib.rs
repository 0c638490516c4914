//! # enrp-server
//!
//! The RSerPool registrar (ENRP server; RFC 5351 architecture, RFC 5352 ASAP server side,
//! RFC 5353 ENRP) of rserpool-rs.
//!
//! * [`core`]: the protocol logic as a sans-I/O state machine ([`core::Registrar`]):
//!   inputs with the current time in, [`core::Action`]s out, no sockets and no clock.
//! * [`driver`]: the thin tokio driver running the core over kernel SCTP or TCP
//!   associations and UDP announces ([`driver::run`]).
//! * [`options`]: the command-line / TOML settings of the `enrp-server` binary.
//!
//! ```
//! use std::time::Instant;
//! use enrp_server::core::{CoreConfig, Registrar};
//! let now = Instant::now();
//! let registrar = Registrar::new(CoreConfig::new(0x1234), now);
//! assert_eq!(registrar.handlespace().len(), 0);
//! ```

pub mod core;
pub mod driver;
pub mod options;
