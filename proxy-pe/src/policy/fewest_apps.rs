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
    use crate::policy::assert_picks;

    #[test]
    fn picks_fewest_apps() {
        assert_picks(
            &mut FewestApps,
            &[3, 1, 2],
            |c, n| c.apps_running = n,
            [1, 2],
        );
    }
}
