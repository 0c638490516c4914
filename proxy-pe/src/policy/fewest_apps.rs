//! Fewest applications running concurrently (seed 003 [31]: "the number of applications a
//! server may be running concurrently"): the available server whose host runs the fewest
//! of its daemon's configured applications. Ties: configuration order.

super::min_key_policy!(
    /// Fewest concurrently running applications on the host.
    FewestApps,
    |c| c.apps_running
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{up_with, SelectionPolicy};

    #[test]
    fn picks_fewest_apps() {
        let mut c = up_with(&[3, 1, 2], |c, n| c.apps_running = n);
        assert_eq!(FewestApps.select(&c), Some(1));
        c[1].available = false;
        assert_eq!(FewestApps.select(&c), Some(2));
    }
}
