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
//!
//! Captures (pcap/pcapng reading and writing, `rsp-decode`) are the separate crate
//! `rsp-capture` (`asap/capture/`).

#![deny(unsafe_code)]

pub mod checksum;
pub mod handlespace;
pub mod load;
pub mod pe;
pub mod pu;
pub mod registrar_client;
pub mod selection;
pub mod session;
pub mod transport;
/// The wire codec, [`rserpool_wire`] (the nested crate `asap/wire`, no I/O), re-exported so
/// that every `asap::wire::…` path works.
pub use rserpool_wire as wire;
