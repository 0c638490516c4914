//! # asap
//!
//! RSerPool (RFC 5351–5356) for Rust: pool elements that register in a pool, pool users
//! that reach "the pool" rather than one server, with failover handled for them.
//!
//! ## Quick start
//!
//! A pool element serving the pool `UpperPool` (one task per session; Ctrl-C deregisters
//! and drains the sessions):
//!
//! ```no_run
//! use asap::pe::PoolElement;
//! use asap::session::ServerEvent;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     PoolElement::builder("UpperPool")
//!         .registrar("127.0.0.1:3863")
//!         .serve(|mut session| async move {
//!             while let Some(event) = session.recv().await? {
//!                 if let ServerEvent::Data(request) = event {
//!                     session.send(request.to_ascii_uppercase()).await?;
//!                 }
//!             }
//!             Ok(())
//!         })
//!         .with_graceful_shutdown(async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         })
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! A pool user: requests go to a pool element chosen by the pool's policy; when it fails,
//! the session moves to another one and sends the unanswered request again (at least once:
//! see [`session`] for idempotency and cookie-based state restore):
//!
//! ```no_run
//! use asap::pu::PoolUser;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut session = PoolUser::builder("UpperPool")
//!         .registrar("127.0.0.1:3863")
//!         .connect()
//!         .await?;
//!     for word in ["hello", "pool"] {
//!         let reply = session.request(word).await?;
//!         println!("{}", String::from_utf8_lossy(&reply));
//!     }
//!     for f in session.take_failovers() {
//!         println!("moved from PE {:#x} to {:#x}: {:?}", f.from, f.to, f.reason);
//!     }
//!     session.close().await;
//!     Ok(())
//! }
//! ```
//!
//! Run a registrar first (`cargo run -p enrp-server -- --transport tcp --asap
//! 127.0.0.1:3863 --enrp off`). Errors say what went wrong: with no registrar listening,
//! the PE's start and the PU's connect fail within seconds with e.g. "pool UpperPool: no
//! answer from a registrar within 10s (last failure: registrar 127.0.0.1:3863: connection
//! refused)". Defaults: TCP (kernel SCTP with `.transport(TransportKind::Sctp)`), policy
//! Least Used, registration wait and resolution bounded by 10 s, request calls by 30 s.
//! More in `examples/` (`echo_pe`, `echo_pu`, `counter_pe`, `load_pe`).
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | off | the binary `rsp-transport-test` (pulls in `clap` and `tracing-subscriber`) |
//! | `arbitrary` | off | proptest strategies for every wire type ([`wire::arbitrary`](crate::wire)) |
//!
//! ## Modules
//!
//! * [`pe`], [`pu`], [`session`]: the pool element and pool user APIs (RFC 5352) and the
//!   session layer with failover (RFC 5351 §2.5); [`load`]: load, weight and priority
//!   values; [`registrar_client`]: registrar discovery and hunt. Each protocol role is a
//!   sans-I/O state machine with a thin tokio driver.
//! * [`wire`]: the codec for every ASAP (RFC 5352) and ENRP (RFC 5353) message with the
//!   parameters of RFC 5354 and the policies of RFC 5356 (nom 8 parsers, `bytes`
//!   encoders, byte-exact re-encoding): the nested crate `rserpool-wire` re-exported;
//! * [`handlespace`], [`selection`], [`checksum`]: pools, pool elements, the RFC 5356
//!   selection policies and the RFC 5353 PE checksum (registrar and pool-user cache);
//! * [`transport`]: message transports over kernel SCTP, TCP and UDP multicast;
//! * [`csp`]: Component Status Protocol reports to rsplib's `cspmonitor` or `rsp monitor`;
//!
//! Captures (pcap/pcapng reading and writing, `rsp-decode`) are the separate crate
//! `rsp-capture` (`asap/capture/`).
//!
//! ## Stability: public enums are `#[non_exhaustive]`
//!
//! Every public enum of this crate (events, failover reasons, errors, configuration
//! choices) and the codec's growing ones (messages, parameters, code tables, errors and
//! warnings; not [`wire::Protocol`], [`wire::Message`], [`wire::Policy`] or
//! [`wire::PolicyType`], whose every consumer must handle each case) may gain variants in a
//! minor release, so a `match` outside the crate needs a wildcard arm:
//!
//! ```
//! use asap::session::SessionEvent;
//!
//! fn describe(e: &SessionEvent) -> String {
//!     match e {
//!         SessionEvent::Data(d) => format!("{} bytes", d.len()),
//!         SessionEvent::Failover(f) => format!("failover: {:?}", f.reason),
//!         SessionEvent::Failed(why) => format!("failed: {why}"),
//!         other => format!("{other:?}"),
//!     }
//! }
//! ```
//!
//! Without it the match does not compile (these examples are the tests of that rule):
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::session::SessionEvent) {
//!     match e {
//!         asap::session::SessionEvent::Data(_) => {}
//!         asap::session::SessionEvent::Failover(_) => {}
//!         asap::session::SessionEvent::Failed(_) => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::session::ServerEvent) {
//!     match e {
//!         asap::session::ServerEvent::Data(_) => {}
//!         asap::session::ServerEvent::CookieEcho(_) => {}
//!         asap::session::ServerEvent::BusinessCard(_) => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::session::FailoverReason) {
//!     match e {
//!         asap::session::FailoverReason::AssociationLost => {}
//!         asap::session::FailoverReason::SendFailed => {}
//!         asap::session::FailoverReason::Timeout => {}
//!         asap::session::FailoverReason::PeError(_) => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::pe::PeEvent) {
//!     match e {
//!         asap::pe::PeEvent::Registered { .. } => {}
//!         asap::pe::PeEvent::Reregistered { .. } => {}
//!         asap::pe::PeEvent::Rejected(_) => {}
//!         asap::pe::PeEvent::KeepAlive { .. } => {}
//!         asap::pe::PeEvent::HomeChanged { .. } => {}
//!         asap::pe::PeEvent::RegistrarLost => {}
//!         asap::pe::PeEvent::HuntFailed { .. } => {}
//!         asap::pe::PeEvent::Deregistered { .. } => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::session::SessionError) {
//!     match e {
//!         asap::session::SessionError::Transport(_) => {}
//!         asap::session::SessionError::PoolUser(_) => {}
//!         asap::session::SessionError::NoPoolElement { .. } => {}
//!         asap::session::SessionError::UnsupportedTransport(_) => {}
//!         asap::session::SessionError::ReservedPpid(_) => {}
//!         asap::session::SessionError::TooLarge(_) => {}
//!         asap::session::SessionError::Encode(_) => {}
//!         asap::session::SessionError::Closed => {}
//!         asap::session::SessionError::Failed(_) => {}
//!         asap::session::SessionError::RequestTimeout { .. } => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::pe::PeError) {
//!     match e {
//!         asap::pe::PeError::Transport(_) => {}
//!         asap::pe::PeError::Rejected(_) => {}
//!         asap::pe::PeError::Stopped => {}
//!         asap::pe::PeError::NotRegistered { .. } => {}
//!         asap::pe::PeError::BadRegistrar { .. } => {}
//!         asap::pe::PeError::NoRegistrar => {}
//!         asap::pe::PeError::Session(_) => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::pu::PuError) {
//!     match e {
//!         asap::pu::PuError::Transport(_) => {}
//!         asap::pu::PuError::Resolve(_) => {}
//!         asap::pu::PuError::Stopped => {}
//!         asap::pu::PuError::Timeout { .. } => {}
//!         asap::pu::PuError::BadRegistrar { .. } => {}
//!         asap::pu::PuError::NoRegistrar => {}
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0004
//! fn all(e: &asap::wire::DecodeError) {
//!     match e {
//!         asap::wire::DecodeError::Truncated { .. } => {}
//!         asap::wire::DecodeError::BadMessageLength { .. } => {}
//!         asap::wire::DecodeError::BadParamLength { .. } => {}
//!         asap::wire::DecodeError::InvalidValue { .. } => {}
//!         asap::wire::DecodeError::MissingParameter { .. } => {}
//!         asap::wire::DecodeError::UnrecognizedParameter { .. } => {}
//!         asap::wire::DecodeError::UnrecognizedMessage { .. } => {}
//!     }
//! }
//! ```

#![deny(unsafe_code)]

pub mod checksum;
pub mod csp;
pub mod handlespace;
pub mod load;
pub mod pe;
pub mod pu;
pub mod reg_auth;
pub mod registrar_client;
pub mod selection;
pub mod session;
pub mod transport;
mod tune;
/// The wire codec, [`rserpool_wire`] (the nested crate `asap/wire`, no I/O), re-exported so
/// that every `asap::wire::…` path works.
pub use rserpool_wire as wire;
