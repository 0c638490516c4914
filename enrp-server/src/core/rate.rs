//! Per-peer token buckets (rsplib's `-maxhrrate` / `-maxeurate` DoS countermeasure,
//! asap/wire/INTEROP.md §4), with a bounded table so that a flood of source addresses cannot grow
//! memory without limit.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A rate: `per_second` tokens per second with a burst of `burst` tokens. `None` in
/// [`RateLimiter::new`] = unlimited (rsplib default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Bucket size (requests allowed back to back).
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// This bucket's key in [`RateLimiter::by_use`].
    seq: u64,
}

/// Token buckets keyed by peer address, at most `max_peers` of them.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: Option<Rate>,
    max_peers: usize,
    buckets: HashMap<IpAddr, Bucket>,
    /// The buckets in order of last use, oldest first: eviction is O(log n) per bucket
    /// instead of a scan of the whole table for every new peer (which a flood of source
    /// addresses would otherwise turn into quadratic work).
    by_use: BTreeMap<(Instant, u64), IpAddr>,
    next_seq: u64,
}

impl RateLimiter {
    /// A limiter; `rate = None` allows everything and keeps no state.
    pub fn new(rate: Option<Rate>, max_peers: usize) -> Self {
        RateLimiter {
            rate: rate.filter(|r| r.per_second > 0.0 && r.burst >= 1.0),
            max_peers: max_peers.max(1),
            buckets: HashMap::new(),
            by_use: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Number of peers with state.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn refill(rate: &Rate, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.last);
        b.tokens = (b.tokens + dt.as_secs_f64() * rate.per_second).min(rate.burst);
        b.last = now;
    }

    /// Takes one token for `peer`; false if the peer is over its rate.
    ///
    /// When the table is full, buckets that have refilled completely (idle peers, which
    /// carry no information) are dropped first; if none is idle, the least recently used
    /// bucket is evicted. Memory stays at `max_peers` buckets.
    pub fn allow(&mut self, peer: IpAddr, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= self.max_peers {
            let full_after = Duration::from_secs_f64(rate.burst / rate.per_second);
            // Oldest first: drop every idle bucket, and at least one.
            while let Some((&(last, seq), &old)) = self.by_use.first_key_value() {
                let idle = now.saturating_duration_since(last) >= full_after;
                if !idle && self.buckets.len() < self.max_peers {
                    break;
                }
                self.by_use.remove(&(last, seq));
                self.buckets.remove(&old);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let b = self.buckets.entry(peer).or_insert(Bucket {
            tokens: rate.burst,
            last: now,
            seq,
        });
        self.by_use.remove(&(b.last, b.seq));
        b.seq = seq;
        Self::refill(&rate, b, now);
        self.by_use.insert((b.last, b.seq), peer);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter of `per_second` with `burst`, tracking at most `capacity` peers.
    fn limiter(per_second: f64, burst: f64, capacity: usize) -> RateLimiter {
        RateLimiter::new(Some(Rate { per_second, burst }), capacity)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn unlimited_keeps_no_state() {
        let mut r = RateLimiter::new(None, 10);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(r.allow(ip(1), t));
        }
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn burst_then_refill() {
        let mut r = limiter(2.0, 3.0, 10);
        let t = Instant::now();
        assert!(r.allow(ip(1), t));
        assert!(r.allow(ip(1), t));
        assert!(r.allow(ip(1), t));
        assert!(!r.allow(ip(1), t));
        // Another peer has its own bucket.
        assert!(r.allow(ip(2), t));
        // 500 ms later one token is back.
        let t2 = t + Duration::from_millis(500);
        assert!(r.allow(ip(1), t2));
        assert!(!r.allow(ip(1), t2));
    }

    #[test]
    fn table_is_bounded() {
        let mut r = limiter(1.0, 1.0, 4);
        let t = Instant::now();
        for n in 0..200 {
            r.allow(ip(n), t);
            assert!(r.tracked() <= 4);
            assert_eq!(r.by_use.len(), r.tracked());
        }
    }

    #[test]
    fn eviction_drops_the_least_recently_used_busy_peer() {
        let mut r = limiter(1.0, 2.0, 3);
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        // Three busy peers (none refills completely within 2 s).
        assert!(r.allow(ip(1), ms(0)));
        assert!(r.allow(ip(2), ms(10)));
        assert!(r.allow(ip(3), ms(20)));
        // Peer 1 is used again: peer 2 is now the least recently used.
        assert!(r.allow(ip(1), ms(30)));
        assert!(r.allow(ip(4), ms(40)));
        assert_eq!(r.tracked(), 3);
        assert!(r.buckets.contains_key(&ip(1)));
        assert!(!r.buckets.contains_key(&ip(2)), "LRU busy peer evicted");
        // Peer 1 keeps its (drained) bucket: its third request within the burst window is
        // refused, so eviction did not reset it.
        assert!(!r.allow(ip(1), ms(50)));
        // Much later every bucket is idle: a new peer drops all idle ones at once.
        assert!(r.allow(ip(5), ms(10_000)));
        assert_eq!(r.tracked(), 1);
        assert_eq!(r.by_use.len(), 1);
    }
}
