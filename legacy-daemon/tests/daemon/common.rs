//! Helpers of the daemon's integration tests: the daemon binary and its test key, `sleep`
//! processes to monitor, and a proxy-side receiver with a safety deadline. Directories,
//! config writes, log waits and ports come from `rserpool_tests`.
//!
//! Deadlines here only stop a hung test; no test asserts on how long something took.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use legacy_protocol::receiver::{DaemonConnection, DaemonListener, StatusTable};
pub use legacy_protocol::test_support::{die_with_parent, Proc};
// Scratch directories, atomic config writes, log waits and free ports: the workspace's
// shared test support.
use legacy_protocol::DaemonMessage;
pub use rserpool_tests::fs::{log_text, unique, wait_log, write_file, TempDir};
pub use rserpool_tests::net::free_port as dead_port;

/// Upper bound for waiting on any single expected event.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Asserts that `text` (a log, an error message, command output) contains `needle`; the
/// failure message shows the text.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// `sleep <secs>` where `secs` is distinctive (e.g. `100000.123`), so a regex matches
/// exactly this process.
pub fn spawn_sleep(arg: &str) -> Proc {
    Proc::new(
        "sleep",
        die_with_parent(&mut Command::new("sleep"))
            .arg(arg)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    )
}

/// Path of the daemon binary built by cargo for the tests.
pub fn daemon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_legacy-daemon")
}

/// The daemon, running with `config`, stderr logged to `log`; killed on drop.
pub fn spawn_daemon(config: &Path, log: &Path) -> Proc {
    legacy_protocol::test_support::spawn_logged(
        "legacy-daemon",
        Path::new(daemon_bin()),
        &["--config".into(), config.display().to_string()],
        &[("LEGACY_DAEMON_LOG", "debug")],
        log,
    )
}

/// The pre-shared key every test daemon configuration carries (`key = "…"`).
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The proxy-side key table of the tests: the identities the test configurations use
/// (the default identity is the host name), all with [`TEST_KEY`].
pub fn keys() -> legacy_protocol::link::DaemonKeys {
    let k = legacy_protocol::auth::Key::from_hex(TEST_KEY).expect("test key");
    legacy_protocol::link::DaemonKeys::hmac(
        [legacy_daemon::config::default_identity(), "host-k".into()]
            .into_iter()
            .map(|id| (id, k.clone())),
    )
}

/// A listener bound to an ephemeral loopback port.
pub async fn listener() -> (DaemonListener, String) {
    let l = DaemonListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    (l, a)
}

/// Accepts a daemon connection and returns it with a table fed by its first message,
/// which must be a full snapshot.
pub async fn accept_synced(l: &DaemonListener) -> (DaemonConnection, StatusTable) {
    let mut c = tokio::time::timeout(DEADLINE, l.accept(&keys()))
        .await
        .expect("daemon did not connect")
        .expect("handshake");
    let mut t = StatusTable::new(c.hello().clone());
    let first = next(&mut c).await;
    assert!(
        matches!(first, DaemonMessage::Snapshot(_)),
        "second frame must be a snapshot, got {first:?}"
    );
    t.apply(&first).expect("apply snapshot");
    (c, t)
}

/// Next message, failing the test if the connection ends or stalls.
pub async fn next(c: &mut DaemonConnection) -> DaemonMessage {
    tokio::time::timeout(DEADLINE, c.next_message())
        .await
        .expect("no message before deadline")
        .expect("protocol error")
        .expect("connection closed")
}

/// Reads and applies messages until `pred(table)` holds; returns every message read.
pub async fn until(
    c: &mut DaemonConnection,
    t: &mut StatusTable,
    mut pred: impl FnMut(&StatusTable) -> bool,
) -> Vec<DaemonMessage> {
    let mut seen = Vec::new();
    while !pred(t) {
        let m = next(c).await;
        t.apply(&m).expect("state continuity (delta state_seq)");
        seen.push(m);
    }
    seen
}

/// The app's pids in the table (empty if absent).
pub fn pids(t: &StatusTable, app: &str) -> Vec<u32> {
    t.apps.get(app).map(|a| a.pids.clone()).unwrap_or_default()
}

pub fn running(t: &StatusTable, app: &str) -> bool {
    t.apps.get(app).is_some_and(|a| a.running)
}
