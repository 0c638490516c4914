//! # enrp-server
//!
//! The RSerPool registrar (ENRP server; RFC 5351 architecture, RFC 5352 ASAP server side,
//! RFC 5353 ENRP) of rserpool-rs.
//!
//! * [`core`]: the protocol logic as a sans-I/O state machine ([`core::Registrar`]):
//!   inputs with the current time in, [`core::Action`]s out, no sockets and no clock.
//! * [`driver`]: the thin tokio driver running the core over kernel SCTP or TCP
//!   associations and UDP announces ([`driver::Server`]).
//! * [`options`]: the command-line / TOML settings of the `enrp-server` binary.
//! * [`metrics`]: the Prometheus text endpoint over [`driver::Stats`].
//! * [`csp`]: Component Status Protocol reports (`--csp`) over [`driver::Stats`].
//!
//! ```
//! use std::time::Instant;
//! use enrp_server::core::{Action, CoreConfig, Event, Input, Registrar};
//! use asap::transport::TransportKind;
//! use asap::wire::{asap_msg::HandleResolution, AsapMessage, CauseCode, Message, Protocol};
//!
//! let now = Instant::now();
//! let mut pr = Registrar::new(CoreConfig::new(0x5eed_0001), now);
//! pr.handle(now, Input::Connected {
//!     assoc: 1,
//!     protocol: Protocol::Asap,
//!     peer_addrs: vec!["10.0.0.9:5000".parse().unwrap()],
//!     transport: TransportKind::Sctp,
//! });
//! let out = pr.handle_message(now, 1, &HandleResolution::new("EchoPool").into());
//! // A log/metrics event, then the response with Operation Error "Unknown Pool Handle".
//! assert!(matches!(out[0], Action::Event(Event::ResolutionFailed { .. })));
//! // Actions carry the bytes to send; `Action::sent` decodes them with the wire codec.
//! match out[1].sent() {
//!     Some((1, Message::Asap(AsapMessage::HandleResolutionResponse(r)))) => {
//!         assert_eq!(r.error.as_ref().and_then(|e| e.first_code()), Some(CauseCode::UnknownPoolHandle));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

#![forbid(unsafe_code)]

pub mod core;
pub mod csp;
pub mod driver;
pub mod metrics;
pub mod options;
