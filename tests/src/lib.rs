//! Shared test support of the rserpool-rs workspace (issue 12 item 4): the helpers that
//! more than one crate's integration tests need, in one place, so that no test file keeps
//! its own copy. Crates use it as a dev-dependency (`rserpool-tests`); the cross-crate
//! tests under `tests/tests/` use it directly.
//!
//! - [`registrar`]: a real registrar (the `enrp-server` tokio driver, RFC 5353 §3) running
//!   in the test's runtime, and TCP ASAP/ENRP client associations that send one message
//!   and wait for the decoded answer (RFC 5352 §2, RFC 5353 §2).
//! - [`api`]: an echo pool element and a pool user built from the public `asap` API, for
//!   the API tests and the API benchmark.
//! - [`enrp_msgs`]: peers' PRESENCE and HANDLE_UPDATE and PE entries for tests that drive
//!   the registrar core directly (RFC 5353).
//! - [`metrics`]: scraping a daemon's `--metrics` endpoint and reading values.
//!
//! - [`netns`]: real registrar processes in network namespaces joined by a bridge, with
//!   partitions and an ENRP capture (root only; the tests SKIP without it).
//!
//! - [`tls`]: a throw-away cluster CA (rcgen) and the TLS contexts built from it.
//! - [`net`]: free loopback ports and waiting until a process listens.
//! - [`csp`]: a Component Status Protocol monitor a daemon reports to.
//! - [`fs`]: scratch directories, atomic config writes and waiting for a log line.
//! - [`sd_notify`]: a stand-in for systemd's notification socket.
//! - [`cmd`]: running a command that must succeed.
//!
//! Deadlines here only stop a hung test; no test asserts on how long something took.

pub mod api;
pub mod cmd;
pub mod csp;
pub mod enrp_msgs;
pub mod fs;
pub mod metrics;
pub mod net;
pub mod netns;
pub mod registrar;
pub mod sd_notify;
pub mod tls;
