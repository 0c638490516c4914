//! Helpers shared by the integration tests of `legacy-daemon` and `proxy-pe` (feature
//! `test-support`; never enabled in a production build): child processes that die with the
//! test, whether the test ends normally, panics or is killed.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// A name for messages.
    pub name: String,
}

impl Proc {
    /// Wraps a spawned child.
    pub fn new(name: &str, child: Child) -> Proc {
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap, so no zombie remains.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes the child die with the test process even if the test aborts (no Drop runs then).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and only changes this child's own settings; nothing
    // else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Spawns `program args` with stdout and stderr appended to `log`, stdin closed, `env` set;
/// the child dies with the test.
pub fn spawn_logged(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
) -> Proc {
    let log_f = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log_f.try_clone().expect("clone log file"))
        .stderr(log_f);
    let child = die_with_parent(&mut cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    Proc::new(name, child)
}
