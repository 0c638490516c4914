//! The reported state and its change detection (sans-I/O).
//!
//! [`StatusBook`] holds the state last *reported* (the state at `state_seq`). Each poll result
//! is compared with it; when something changed a [`Delta`] is produced and `state_seq` grows
//! by one (seed 000 \[0027\]–\[0028\]: change-driven updates).
//!
//! What counts as a change of an application:
//! - running, instance count, pids, port listening state, connection counts, load hints;
//! - CPU use moving by at least [`CPU_CHANGE_POINTS`] percentage points;
//! - RSS moving by at least [`RSS_CHANGE_FRACTION`] of the last reported value.
//!
//! Smaller metric drifts are not reported until they add up, so an idle host sends only
//! heartbeats. Changing the configuration version always yields a delta (possibly with no
//! application in it) so proxies learn the new version at once.

use legacy_protocol::{AppStatus, Delta, Snapshot};

/// CPU change (percentage points of one CPU) that is reported as a change.
pub const CPU_CHANGE_POINTS: f32 = 5.0;
/// Relative RSS change that is reported as a change.
pub const RSS_CHANGE_FRACTION: f64 = 0.10;

/// The last reported state and its sequence number.
#[derive(Debug, Clone, Default)]
pub struct StatusBook {
    state_seq: u64,
    config_version: u64,
    taken_at_ms: u64,
    apps: Vec<AppStatus>,
}

impl StatusBook {
    /// An empty book at `state_seq` 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores the book from a persisted snapshot (state file), so numbering continues and
    /// changes that happened while the daemon was down are reported by the first poll.
    pub fn restore(snap: Snapshot) -> Self {
        Self {
            state_seq: snap.state_seq,
            config_version: snap.config_version,
            taken_at_ms: snap.taken_at_ms,
            apps: snap.apps,
        }
    }

    /// Current state sequence number.
    pub fn state_seq(&self) -> u64 {
        self.state_seq
    }

    /// The reported state as a snapshot.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state_seq: self.state_seq,
            config_version: self.config_version,
            taken_at_ms: self.taken_at_ms,
            apps: self.apps.clone(),
        }
    }

    /// Applies a poll result (`apps` in configuration order). Returns the delta to report,
    /// or `None` when nothing changed.
    pub fn update(
        &mut self,
        apps: Vec<AppStatus>,
        config_version: u64,
        now_ms: u64,
    ) -> Option<Delta> {
        let mut changed = Vec::new();
        let mut next = Vec::with_capacity(apps.len());
        for new in apps {
            match self.apps.iter().find(|o| o.name == new.name) {
                Some(old) if !significant(old, &new) => next.push(old.clone()),
                _ => {
                    changed.push(new.clone());
                    next.push(new);
                }
            }
        }
        let removed: Vec<String> = self
            .apps
            .iter()
            .filter(|o| !next.iter().any(|n| n.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        let version_changed = config_version != self.config_version;
        if changed.is_empty() && removed.is_empty() && !version_changed {
            return None;
        }
        self.state_seq += 1;
        self.config_version = config_version;
        self.taken_at_ms = now_ms;
        self.apps = next;
        Some(Delta {
            state_seq: self.state_seq,
            config_version,
            taken_at_ms: now_ms,
            changed,
            removed,
        })
    }
}

/// True if `new` differs from the reported `old` enough to be reported.
pub fn significant(old: &AppStatus, new: &AppStatus) -> bool {
    if old.running != new.running
        || old.instances != new.instances
        || old.pids != new.pids
        || old.ports != new.ports
        || old.load_hints != new.load_hints
        || old.host != new.host
        || old.started_at_ms != new.started_at_ms
    {
        return true;
    }
    if (old.cpu_percent - new.cpu_percent).abs() >= CPU_CHANGE_POINTS {
        return true;
    }
    let base = old.rss_bytes.max(1) as f64;
    (new.rss_bytes as f64 - old.rss_bytes as f64).abs() / base >= RSS_CHANGE_FRACTION
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, pids: &[u32], cpu: f32, rss: u64) -> AppStatus {
        AppStatus {
            cpu_percent: cpu,
            rss_bytes: rss,
            ..AppStatus::new(name, pids)
        }
    }

    #[test]
    fn first_poll_reports_everything_then_only_changes() {
        let mut b = StatusBook::new();
        let d = b
            .update(vec![app("A", &[1], 0.0, 1000), app("B", &[], 0.0, 0)], 1, 5)
            .unwrap();
        assert_eq!(d.state_seq, 1);
        assert_eq!(d.changed.len(), 2);
        assert!(b
            .update(vec![app("A", &[1], 1.0, 1050), app("B", &[], 0.0, 0)], 1, 6)
            .is_none());
        let d = b
            .update(vec![app("A", &[], 0.0, 0), app("B", &[], 0.0, 0)], 1, 7)
            .unwrap();
        assert_eq!(d.state_seq, 2);
        assert_eq!(d.changed.len(), 1);
        assert!(!d.changed[0].running);
        assert_eq!(b.snapshot().apps[0].pids, Vec::<u32>::new());
    }

    #[test]
    fn metric_thresholds_and_drift() {
        let mut b = StatusBook::new();
        b.update(vec![app("A", &[1], 10.0, 1000)], 1, 0);
        // 4 points and 9 % are below the thresholds.
        assert!(b.update(vec![app("A", &[1], 14.0, 1090)], 1, 1).is_none());
        // Drift is measured against the reported value: 10 % now.
        let d = b.update(vec![app("A", &[1], 14.0, 1100)], 1, 2).unwrap();
        assert_eq!(d.changed[0].rss_bytes, 1100);
        let d = b.update(vec![app("A", &[1], 19.0, 1100)], 1, 3).unwrap();
        assert_eq!(d.changed[0].cpu_percent, 19.0);
    }

    #[test]
    fn config_change_adds_removes_and_bumps_version() {
        let mut b = StatusBook::new();
        b.update(vec![app("A", &[1], 0.0, 0), app("B", &[2], 0.0, 0)], 1, 0);
        let d = b
            .update(vec![app("A", &[1], 0.0, 0), app("C", &[3], 0.0, 0)], 2, 1)
            .unwrap();
        assert_eq!(d.removed, vec!["B".to_string()]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].name, "C");
        assert_eq!(d.config_version, 2);
        let d = b
            .update(vec![app("A", &[1], 0.0, 0), app("C", &[3], 0.0, 0)], 3, 2)
            .unwrap();
        assert!(d.changed.is_empty() && d.removed.is_empty());
        assert_eq!(d.state_seq, 3);
    }

    #[test]
    fn restore_continues_numbering_and_detects_changes_while_down() {
        let mut b = StatusBook::new();
        b.update(vec![app("A", &[1], 0.0, 0)], 1, 0);
        let mut r = StatusBook::restore(b.snapshot());
        let d = r.update(vec![app("A", &[], 0.0, 0)], 1, 9).unwrap();
        assert_eq!(d.state_seq, 2);
        assert!(!d.changed[0].running);
    }
}
