//! Running a command the test needs to succeed.

use std::process::Command;

/// Runs `cmd` to its end and returns its stdout (lossy UTF-8); fails the test with `what`
/// and the command's stderr when it cannot be started or exits with a failure.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
