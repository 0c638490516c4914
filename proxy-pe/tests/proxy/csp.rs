//! `proxy-pe run --csp ADDR` (asap/wire/INTEROP.md §8): the proxy sends Component Status
//! Protocol reports built from its status snapshot (read over its control port) to a UDP
//! socket this test owns, and a final report when it stops on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::lone_broker_config;
use asap::wire::csp::ComponentGroup;
use rserpool_tests::csp::CspMonitor;

const BIN: &str = env!("CARGO_BIN_EXE_proxy-pe");

#[test]
fn proxy_reports_its_pooling_table_and_says_goodbye() {
    let dir = std::env::temp_dir().join(format!("proxy-csp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cfg, _) = lone_broker_config(&dir);

    let monitor = CspMonitor::bind();
    let mut child = monitor.spawn_reporter(
        Command::new(BIN).args(["run", "--config", &cfg, "--csp-id", "0x9e0001"]),
        250,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = monitor.next();
        assert_eq!(r.sender.group(), ComponentGroup::PoolElement);
        assert_eq!(r.sender.object(), 0x9e0001);
        assert_eq!(r.report_interval_us, 250_000);
        if r.status.starts_with("mode B") {
            break r;
        }
        assert_eq!(r.status, "proxy starting", "before the first snapshot");
        assert!(Instant::now() < deadline, "no snapshot-based report");
    };
    // The daemon never connected: its server is not selectable; the proxy's own PE of the
    // application (mode B) is being registered at the absent registrar.
    assert_eq!(
        r.status,
        "mode B: 1 apps, 0/1 servers selectable, 0 sessions, 1 registrations"
    );
    assert_eq!(r.workload, 0xFFFF, "no selectable server: workload unknown");
    assert!(r.associations.is_empty(), "no registrar association");
    let fin = monitor.final_after_sigterm(&child);
    assert_eq!(fin.sender.object(), 0x9e0001);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
