//! Files around the processes a test starts: scratch directories, configuration written
//! atomically (a daemon that watches it never reads half a file) and waiting for a log line
//! (the daemons log asynchronously). Deadlines here only stop a hung test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long [`wait_log`] waits for a line before failing the test.
pub const LOG_DEADLINE: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique within this test process and unlikely to repeat across concurrent ones
/// (for directory names and distinctive process arguments).
pub fn unique() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (std::process::id() % 10_000) * 1000 + n
}

/// A scratch directory under the system temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `tag` and [`unique`].
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rserpool-test-{tag}-{}", unique()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` inside the directory (atomically, [`write_file`]) and
    /// returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        write_file(&p, text);
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a file atomically (write a sibling, then rename over `path`).
pub fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The text of a log file (empty if it does not exist yet).
pub fn log_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits until the log at `p` contains `needle` and returns its text; fails the test with
/// the log after [`LOG_DEADLINE`].
pub async fn wait_log(p: &Path, needle: &str) -> String {
    wait_log_or(p, needle, str::to_string).await
}

/// [`wait_log`], failing with `context(log text)` instead of the log (e.g. more logs).
pub async fn wait_log_or(p: &Path, needle: &str, context: impl Fn(&str) -> String) -> String {
    let end = tokio::time::Instant::now() + LOG_DEADLINE;
    loop {
        let t = log_text(p);
        if t.contains(needle) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "log never contained {needle:?}:\n{}",
            context(&t)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `target/<profile>` of the running test binary (which lives in `target/<profile>/deps`):
/// where cargo put the workspace's binaries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .to_path_buf()
}
