//! Round robin in the exact order of seed 003 [31]: "IP2 is assigned after IP1 has been
//! assigned, IP3 is assigned after IP2 has been assigned, and IP1 is assigned after IP3 has
//! been assigned". Servers not running are skipped ([33]–[34]); the rotation continues
//! after the server designated last ([34]: IP2 after IP1).

use super::{Candidate, SelectionPolicy};

/// Strict rotation over the configuration order.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl SelectionPolicy for RoundRobin {
    fn select(&mut self, candidates: &[Candidate]) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.last.map_or(0, |l| (l + 1) % n);
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| candidates[i].available)?;
        self.last = Some(pick);
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::up;

    fn run(p: &mut RoundRobin, c: &[Candidate], n: usize) -> Vec<usize> {
        (0..n).filter_map(|_| p.select(c)).collect()
    }

    #[test]
    fn seed_order_ip1_ip2_ip3_ip1() {
        let mut p = RoundRobin::default();
        let mut c = up(3);
        assert_eq!(run(&mut p, &c, 6), vec![0, 1, 2, 0, 1, 2]);
        // Stop IP2 and continue: IP1, IP3, IP1, ... (seed 003 \[31\], \[34\]).
        c[1].available = false;
        assert_eq!(run(&mut p, &c, 4), vec![0, 2, 0, 2]);
        c[1].available = true;
        assert_eq!(run(&mut p, &c, 3), vec![0, 1, 2]);
    }

    #[test]
    fn ip2_after_ip1_even_when_ip3_was_down() {
        let mut p = RoundRobin::default();
        let mut c = up(3);
        c[2].available = false;
        assert_eq!(run(&mut p, &c, 3), vec![0, 1, 0]);
        c[2].available = true;
        assert_eq!(p.select(&c), Some(1));
        assert_eq!(p.select(&c), Some(2));
    }

    #[test]
    fn none_running_is_none() {
        let mut p = RoundRobin::default();
        let mut c = up(2);
        c[0].available = false;
        c[1].available = false;
        assert_eq!(p.select(&c), None);
        assert_eq!(p.select(&[]), None);
    }
}
