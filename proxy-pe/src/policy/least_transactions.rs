//! Least transaction count (seed 003 [31]): the available server with the fewest sessions
//! active through this proxy; ties by fewest sessions ever assigned, then configuration
//! order. (A process table holds no transaction counter, seed 003 \[31\] names the criterion only; the proxy counts the
//! sessions it brokers itself.)

use super::{min_by_key, Candidate, SelectionPolicy};

/// Fewest active, then fewest assigned sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastTransactions;

impl SelectionPolicy for LeastTransactions {
    fn select(&mut self, candidates: &[Candidate]) -> Option<usize> {
        min_by_key(candidates, |c| (c.active_sessions, c.assigned_total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::up;

    #[test]
    fn fewest_active_then_fewest_assigned() {
        let mut c = up(3);
        c[0].active_sessions = 2;
        c[1].active_sessions = 1;
        c[2].active_sessions = 1;
        c[1].assigned_total = 9;
        c[2].assigned_total = 4;
        assert_eq!(LeastTransactions.select(&c), Some(2));
        c[2].active_sessions = 3;
        assert_eq!(LeastTransactions.select(&c), Some(1));
        c[1].available = false;
        assert_eq!(LeastTransactions.select(&c), Some(0));
    }
}
