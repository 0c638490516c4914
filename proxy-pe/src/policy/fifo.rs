//! FIFO (seed 003 [30]–[31], Application 'B'). The seed leaves the meaning open; here it
//! is an **idle queue** (our reading of seed 003 \[30\]–\[31\], which names FIFO without defining it):
//!
//! - every server stands in one queue, initially in configuration order;
//! - a request goes to the first *idle* (no active session) available server in the
//!   queue, i.e. the server that has been idle longest;
//! - if every available server is busy, the request goes to the first available server in
//!   the queue (the one assigned least recently);
//! - an assigned server moves to the tail; when its last session ends it moves to the tail
//!   again, because it has only just become idle.
//!
//! Unlike round robin, a server that is still busy with a long session is passed over
//! while others are idle, and a server that just finished is served last.

use std::collections::VecDeque;

use super::{Candidate, SelectionPolicy};

/// The idle queue.
#[derive(Debug, Default, Clone)]
pub struct Fifo {
    queue: VecDeque<usize>,
}

impl Fifo {
    fn sync(&mut self, n: usize) {
        self.queue.retain(|&i| i < n);
        for i in 0..n {
            if !self.queue.contains(&i) {
                self.queue.push_back(i);
            }
        }
    }

    fn move_to_tail(&mut self, index: usize) {
        self.queue.retain(|&i| i != index);
        self.queue.push_back(index);
    }

    /// The queue, head first (for tests and the status output).
    pub fn order(&self) -> Vec<usize> {
        self.queue.iter().copied().collect()
    }
}

impl SelectionPolicy for Fifo {
    fn select(&mut self, candidates: &[Candidate]) -> Option<usize> {
        self.sync(candidates.len());
        let idle = self
            .queue
            .iter()
            .copied()
            .find(|&i| candidates[i].available && candidates[i].active_sessions == 0);
        let pick = idle.or_else(|| {
            self.queue
                .iter()
                .copied()
                .find(|&i| candidates[i].available)
        })?;
        Some(pick)
    }

    fn assigned(&mut self, index: usize) {
        self.move_to_tail(index);
    }

    fn released(&mut self, index: usize, now_idle: bool) {
        if now_idle {
            self.move_to_tail(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::round_robin::RoundRobin;
    use crate::policy::up;

    /// Drives a policy like the core does: select, count the session, tell the policy.
    fn take(p: &mut dyn SelectionPolicy, c: &mut [Candidate]) -> usize {
        let i = p.select(c).expect("some server");
        c[i].active_sessions += 1;
        p.assigned(i);
        i
    }

    fn end(p: &mut dyn SelectionPolicy, c: &mut [Candidate], i: usize) {
        c[i].active_sessions -= 1;
        p.released(i, c[i].active_sessions == 0);
    }

    #[test]
    fn idle_longest_goes_first_and_differs_from_round_robin() {
        // IP1 gets a long session, IP2 a short one that ends, IP3 one that stays.
        let mut fifo = Fifo::default();
        let mut rr = RoundRobin::default();
        let mut cf = up(3);
        let mut cr = up(3);
        let mut seq_f = Vec::new();
        let mut seq_r = Vec::new();
        for _ in 0..3 {
            seq_f.push(take(&mut fifo, &mut cf));
            seq_r.push(take(&mut rr, &mut cr));
        }
        assert_eq!(seq_f, vec![0, 1, 2]);
        assert_eq!(seq_r, vec![0, 1, 2]);
        end(&mut fifo, &mut cf, 1);
        end(&mut rr, &mut cr, 1);
        // Next request: IP1 and IP3 are busy, IP2 is idle. FIFO gives IP2; round robin
        // rotates on to IP1 although it is busy with the long session.
        assert_eq!(take(&mut fifo, &mut cf), 1);
        assert_eq!(take(&mut rr, &mut cr), 0);
    }

    #[test]
    fn released_server_goes_move_to_tail() {
        let mut p = Fifo::default();
        let mut c = up(3);
        // IP1 serves and finishes: it is now the most recently idle one.
        let a = take(&mut p, &mut c);
        assert_eq!(a, 0);
        end(&mut p, &mut c, 0);
        assert_eq!(p.order(), vec![1, 2, 0]);
        // IP2, IP3, IP1; then all are busy: the least recently assigned available server
        // (IP2).
        let picks: Vec<usize> = (0..4).map(|_| take(&mut p, &mut c)).collect();
        assert_eq!(picks, [1, 2, 0, 1]);
    }

    #[test]
    fn skips_unavailable() {
        let mut p = Fifo::default();
        let mut c = up(3);
        c[0].available = false;
        assert_eq!(take(&mut p, &mut c), 1);
        c[1].available = false;
        c[2].available = false;
        assert_eq!(p.select(&c), None);
    }
}
