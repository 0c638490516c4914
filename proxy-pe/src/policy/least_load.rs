//! Least load ("load availability", seed 003 [31]): the available server with the lowest
//! load reported by its daemon (`core` derives it from established connections over the
//! capacity hint, else CPU). Ties: configuration order.

super::min_key_policy!(
    /// Lowest daemon-reported load.
    LeastLoad,
    |c| c.load
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{assert_picks, SelectionPolicy};

    #[test]
    fn picks_lowest_load_ties_by_order() {
        let mut c = assert_picks(&mut LeastLoad, &[0.8, 0.2, 0.5], |c, l| c.load = l, [1, 2]);
        c[0].load = 0.5;
        assert_eq!(LeastLoad.select(&c), Some(0));
    }
}
