//! Fewest applications running concurrently (seed 003 [31]: "the number of applications a
//! server may be running concurrently"): the available server whose host runs the fewest
//! of its daemon's configured applications. Ties: configuration order.

use super::{min_by_key, Candidate, SelectionPolicy};

/// Fewest concurrently running applications on the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct FewestApps;

impl SelectionPolicy for FewestApps {
    fn select(&mut self, candidates: &[Candidate]) -> Option<usize> {
        min_by_key(candidates, |c| c.apps_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::up;

    #[test]
    fn picks_fewest_apps() {
        let mut c = up(3);
        c[0].apps_running = 3;
        c[1].apps_running = 1;
        c[2].apps_running = 2;
        assert_eq!(FewestApps.select(&c), Some(1));
        c[1].available = false;
        assert_eq!(FewestApps.select(&c), Some(2));
    }
}
