//! The proxy's per-daemon [`StatusTable`] (legacy-daemon/PROTOCOL.md §2): input from the
//! network never panics it.
//!
//! Run: `cargo test -p legacy-protocol --test status_table`

use legacy_protocol::receiver::StatusTable;
use legacy_protocol::{DaemonMessage, Delta, Hello, Snapshot, PROTOCOL_VERSION};

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        daemon_id: "web1".into(),
        instance: 1,
        config_version: 1,
        poll_interval_ms: 500,
        heartbeat_interval_ms: 1000,
        software: "test".into(),
    }
}

/// A Snapshot with `state_seq` = u64::MAX followed by a Delta: the "next sequence number"
/// check overflowed (panic in debug builds; found while writing the `daemon_protocol` fuzz
/// target, RELIABILITY.md). Now the Delta is a protocol violation and the table keeps its
/// state.
#[test]
fn delta_after_snapshot_with_maximum_state_seq_is_a_violation_not_a_panic() {
    let mut t = StatusTable::new(hello());
    t.apply(&DaemonMessage::Snapshot(Snapshot {
        state_seq: u64::MAX,
        config_version: 3,
        taken_at_ms: 1,
        apps: Vec::new(),
    }))
    .expect("snapshot");
    for next in [0, u64::MAX] {
        let r = t.apply(&DaemonMessage::Delta(Delta {
            state_seq: next,
            config_version: 4,
            taken_at_ms: 2,
            changed: Vec::new(),
            removed: Vec::new(),
        }));
        assert!(
            r.is_err(),
            "delta {next} after state u64::MAX must be refused"
        );
        assert_eq!(t.state_seq, u64::MAX);
        assert_eq!(t.config_version, 3);
        assert!(t.synced);
    }
}
