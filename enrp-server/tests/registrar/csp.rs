//! `enrp-server --csp ADDR --csp-interval MS` (rsplib `-cspserver=`/`-cspinterval=`,
//! asap/wire/INTEROP.md §8): the binary sends Component Status Protocol reports to a UDP
//! socket this test owns, and a final report when it stops on SIGTERM. The TOML file takes
//! the same keys.

use std::process::Command;
use std::time::{Duration, Instant};

use asap::wire::csp::ComponentGroup;
use enrp_server::options::Options;
use rserpool_tests::csp::CspMonitor;

use crate::{BIN, LOCAL};

#[test]
fn registrar_reports_to_csp_monitor_and_says_goodbye() {
    let monitor = CspMonitor::bind();
    let mut child = monitor.spawn_reporter(
        Command::new(BIN)
            .args(LOCAL)
            .args(["--peering", "off", "--identifier", "0x0000c5c5"]),
        300,
    );
    let first = monitor.next();
    let t = Instant::now();
    let second = monitor.next();
    for r in [&first, &second] {
        assert_eq!(r.sender.group(), ComponentGroup::Registrar);
        assert_eq!(r.sender.object(), 0xc5c5);
        assert_eq!(r.report_interval_us, 300_000);
        assert_eq!(r.status, "0 PEs in 0 Pools, 0 Assocs");
        assert!(r.location.contains(": 127.0.0.1:"), "{}", r.location);
        assert!(!r.is_final());
    }
    assert!(second.timestamp_us > first.timestamp_us);
    assert!(t.elapsed() < Duration::from_secs(5));
    let fin = monitor.final_after_sigterm(&child);
    assert_eq!(fin.sender.object(), 0xc5c5);
    assert!(child.wait().expect("exits").success());
}

#[test]
fn csp_options_default_port_interval_floor_and_toml() {
    use clap::Parser;
    let o = Options::parse_from(["enrp-server", "--csp", "10.0.0.5"]);
    let (addr, every) = o.csp_target().expect("valid").expect("on");
    assert_eq!(addr, "10.0.0.5:2960".parse().unwrap());
    assert_eq!(every, Duration::from_secs(1));
    let o = Options::parse_from(["enrp-server", "--csp", "[::1]:3000", "--csp-interval", "10"]);
    let (addr, every) = o.csp_target().expect("valid").expect("on");
    assert_eq!(addr, "[::1]:3000".parse().unwrap());
    assert_eq!(every, Duration::from_millis(250), "rsplib's minimum");
    assert!(Options::parse_from(["enrp-server", "--csp", "nowhere"])
        .csp_target()
        .is_err());
    assert!(Options::parse_from(["enrp-server"])
        .csp_target()
        .unwrap()
        .is_none());
    let file: Options = toml::from_str("csp = \"127.0.0.1:2961\"\ncsp-interval = 500").unwrap();
    let merged = Options::parse_from(["enrp-server"]).merged_with(file);
    let (addr, every) = merged.csp_target().unwrap().unwrap();
    assert_eq!(addr.port(), 2961);
    assert_eq!(every, Duration::from_millis(500));
}
