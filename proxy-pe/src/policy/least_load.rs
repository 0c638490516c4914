//! Least load ("load availability", seed 003 [31]): the available server with the lowest
//! load reported by its daemon (`core` derives it from established connections over the
//! capacity hint, else CPU). Ties: configuration order.

use super::{min_by_key, Candidate, SelectionPolicy};

/// Lowest daemon-reported load.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoad;

impl SelectionPolicy for LeastLoad {
    fn select(&mut self, candidates: &[Candidate]) -> Option<usize> {
        min_by_key(candidates, |c| c.load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::up;

    #[test]
    fn picks_lowest_load_ties_by_order() {
        let mut c = up(3);
        c[0].load = 0.8;
        c[1].load = 0.2;
        c[2].load = 0.5;
        assert_eq!(LeastLoad.select(&c), Some(1));
        c[1].available = false;
        assert_eq!(LeastLoad.select(&c), Some(2));
        c[0].load = 0.5;
        assert_eq!(LeastLoad.select(&c), Some(0));
    }
}
