//! # proxy-pe
//!
//! A proxy pool element that brings legacy servers which do not speak ASAP into RSerPool
//! pools (seed 003: FIG. 3 and FIG. 5, [26]–[35]). Legacy hosts run `legacy-daemon`,
//! which reports the status of their applications; the proxy keeps the pooling table and
//! either registers each running (application, server) at the registrar (mode A,
//! RFC 5352 §2.2.1 registrations with third-party addresses) or registers itself and
//! brokers every session to a legacy server it selects (mode B).
//!
//! Module map:
//! - [`config`]: the pooling configuration (TOML), validation and reload;
//! - [`policy`]: selection policies (one file each) and the RFC 5356 mapping for mode A;
//! - [`check`]: application-level health checks (TCP banner, HTTP status, command);
//! - [`core`]: sans-I/O core: daemon reports, ticks and sessions in, actions out;
//! - [`registrar`]: ASAP client to the ENRP server (registrations, keep-alive answers);
//! - [`relay`]: mode B TCP relay with mid-session reselection;
//! - [`control`]: local control socket and port, `status` rendering, operator commands;
//! - [`window`]: maintenance windows (time zones, weekdays, cron) across DST changes;
//! - [`admin_state`]: the operator-state file kept across restarts;
//! - [`ha`]: the active/standby pair of proxies (sans-I/O);
//! - [`metrics`]: the `--metrics` endpoint (OpenMetrics);
//! - [`csp`]: Component Status Protocol reports (`run --csp`) from the status snapshot;
//! - [`proxy`]: the driver tying them together.

#![warn(missing_docs)]

pub mod admin_state;
pub mod check;
pub mod config;
pub mod control;
pub mod core;
pub mod csp;
pub mod ha;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod registrar;
pub mod relay;
pub mod splice;
pub mod window;

/// Milliseconds since the Unix epoch (the core's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
