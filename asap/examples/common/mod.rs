//! Command-line helpers shared by the API examples (policy names, load values, registrar
//! lists, logging).
#![allow(dead_code)]

use std::net::SocketAddr;

use asap::transport::parse_addr_list;
use asap::wire::Policy;

/// Parses a registrar list: `ADDR:PORT` or `ADDR,ADDR:PORT` (one multi-homed registrar).
pub fn registrars(list: &[String]) -> Result<Vec<Vec<SocketAddr>>, String> {
    list.iter()
        .map(|s| parse_addr_list(s).map_err(|e| e.to_string()))
        .collect()
}

/// A load given in percent (0–100) as the 32-bit fraction of RFC 5356 §5.
pub fn load_fraction(percent: f64) -> u32 {
    let p = percent.clamp(0.0, 100.0) / 100.0;
    (p * f64::from(u32::MAX)).round() as u32
}

/// The fraction as percent.
pub fn load_percent(f: u32) -> f64 {
    f64::from(f) * 100.0 / f64::from(u32::MAX)
}

/// Policy from its short name (rsplib's `-policy=` names, RFC 5356): rr, wrr, rand,
/// wrand, prio, lu, lud, plu, rlu. `weight` is the weight or priority, `load` the load in
/// percent, `degradation` the load degradation in percent.
pub fn policy(name: &str, weight: u32, load: f64, degradation: f64) -> Result<Policy, String> {
    let load = load_fraction(load);
    let degradation = load_fraction(degradation);
    Ok(match name.to_ascii_lowercase().as_str() {
        "rr" | "roundrobin" => Policy::RoundRobin,
        "wrr" | "weightedroundrobin" => Policy::WeightedRoundRobin { weight },
        "rand" | "random" => Policy::Random,
        "wrand" | "weightedrandom" => Policy::WeightedRandom { weight },
        "prio" | "priority" => Policy::Priority { priority: weight },
        "lu" | "leastused" => Policy::LeastUsed { load },
        "lud" | "leastuseddegradation" => Policy::LeastUsedDegradation { load, degradation },
        "plu" | "priorityleastused" => Policy::PriorityLeastUsed { load, degradation },
        "rlu" | "randomizedleastused" => Policy::RandomizedLeastUsed { load },
        other => {
            return Err(format!(
                "unknown policy {other:?} (rr, wrr, rand, wrand, prio, lu, lud, plu, rlu)"
            ))
        }
    })
}

/// `RUST_LOG`-style logging to stderr (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
