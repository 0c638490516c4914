//! Immediate process-exit notification with `pidfd_open(2)` (Linux ≥ 5.3).
//!
//! Polling stays the source of truth (seed 003 \[32\]: "daemon 141 may be notified via the
//! polling process"); a pidfd only makes the daemon poll *now* instead of at the next tick,
//! so a crash is reported well under the poll interval (seed 004 fails over within
//! seconds). Each watched pid gets a pidfd registered with tokio's [`AsyncFd`]; the fd becomes readable
//! when the process terminates, and the watcher sends the pid on a channel. When the kernel
//! has no `pidfd_open` (ENOSYS, old legacy hosts) the watcher disables itself and the daemon
//! relies on polling alone.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Watches a set of pids and reports each exit once on the channel given to [`new`].
///
/// [`new`]: ExitWatcher::new
#[derive(Debug)]
pub struct ExitWatcher {
    watched: HashMap<u32, JoinHandle<()>>,
    tx: mpsc::UnboundedSender<u32>,
    supported: bool,
}

impl ExitWatcher {
    /// A watcher sending exited pids on `tx`. Must be used inside a tokio runtime.
    pub fn new(tx: mpsc::UnboundedSender<u32>) -> Self {
        Self {
            watched: HashMap::new(),
            tx,
            supported: true,
        }
    }

    /// False once `pidfd_open` turned out to be unavailable (polling only).
    pub fn supported(&self) -> bool {
        self.supported
    }

    /// Number of pids currently watched.
    pub fn len(&self) -> usize {
        self.watched.len()
    }

    /// True if no pid is watched.
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// Makes the watched set equal to `pids`: starts watching new pids, stops watching the
    /// others.
    pub fn sync(&mut self, pids: &[u32]) {
        self.watched.retain(|pid, task| {
            let keep = pids.contains(pid) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        if !self.supported {
            return;
        }
        for &pid in pids {
            if self.watched.contains_key(&pid) {
                continue;
            }
            match pidfd_open(pid) {
                // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays
                // open and refers to the same pidfd for the AsyncFd's whole lifetime.
                Ok(fd) => {
                    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                        Ok(afd) => {
                            let tx = self.tx.clone();
                            let task = tokio::spawn(async move {
                                if afd.readable().await.is_ok() {
                                    let _ = tx.send(pid);
                                }
                            });
                            self.watched.insert(pid, task);
                        }
                        Err(e) => tracing::debug!(pid, error = %e, "pidfd not pollable"),
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    // Exited between the poll and now: ask for a re-poll.
                    let _ = self.tx.send(pid);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    tracing::info!(
                        "pidfd_open unavailable (kernel < 5.3): exit detection by polling only"
                    );
                    self.supported = false;
                    return;
                }
                Err(e) => tracing::debug!(pid, error = %e, "pidfd_open failed"),
            }
        }
    }
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        for task in self.watched.values() {
            task.abort();
        }
    }
}

/// `pidfd_open(pid, 0)`.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes (pid_t, unsigned int) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
