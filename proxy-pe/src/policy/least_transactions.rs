//! Least transaction count (seed 003 [31]): the available server with the fewest sessions
//! active through this proxy; ties by fewest sessions ever assigned, then configuration
//! order. (A process table holds no transaction counter, seed 003 \[31\] names the criterion only; the proxy counts the
//! sessions it brokers itself.)

super::min_key_policy!(
    /// Fewest active, then fewest assigned sessions.
    LeastTransactions,
    |c| (c.active_sessions, c.assigned_total)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{up_with, SelectionPolicy};

    #[test]
    fn fewest_active_then_fewest_assigned() {
        let mut c = up_with(&[(2, 0), (1, 9), (1, 4)], |c, (active, assigned)| {
            c.active_sessions = active;
            c.assigned_total = assigned;
        });
        assert_eq!(LeastTransactions.select(&c), Some(2));
        c[2].active_sessions = 3;
        assert_eq!(LeastTransactions.select(&c), Some(1));
        c[1].available = false;
        assert_eq!(LeastTransactions.select(&c), Some(0));
    }
}
