//! A growable Fenwick (binary indexed) tree of `u64` weights: O(log n) update, prefix sum
//! and "find the slot holding the r-th unit of weight" — the value tree behind the
//! weighted random policies (RFC 5356 §4.4, §5.4), like rsplib's value-sum tree.

/// Fenwick tree over slots `0..len()`. Slots are appended and removed at the end only;
/// the selector keeps slots dense by swap-removing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fenwick {
    /// 1-based partial sums; `tree[0]` is unused.
    tree: Vec<u64>,
    /// The plain value of every slot (0-based).
    values: Vec<u64>,
    total: u64,
}

#[inline]
fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Fenwick {
    pub(crate) fn new() -> Self {
        Fenwick {
            tree: vec![0],
            values: Vec::new(),
            total: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn value(&self, slot: usize) -> u64 {
        self.values.get(slot).copied().unwrap_or(0)
    }

    /// Sum of the first `count` slots.
    pub(crate) fn prefix(&self, count: usize) -> u64 {
        let mut i = count.min(self.len());
        let mut s = 0u64;
        while i > 0 {
            s += self.tree[i];
            i -= lowbit(i);
        }
        s
    }

    /// Appends a slot with weight `v`; returns its index.
    pub(crate) fn push(&mut self, v: u64) -> usize {
        let i = self.len() + 1; // 1-based position of the new slot
                                // tree[i] covers slots (i - lowbit(i), i]: the new value plus the already present
                                // slots of that range.
        let covered = self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(v + covered);
        self.values.push(v);
        self.total += v;
        i - 1
    }

    /// Removes the last slot; returns its weight.
    pub(crate) fn pop(&mut self) -> Option<u64> {
        let v = self.values.pop()?;
        self.tree.pop();
        self.total -= v;
        Some(v)
    }

    /// Sets the weight of `slot` (no-op for a slot out of range).
    pub(crate) fn set(&mut self, slot: usize, v: u64) {
        let Some(old) = self.values.get(slot).copied() else {
            return;
        };
        if old == v {
            return;
        }
        self.values[slot] = v;
        let mut i = slot + 1;
        let n = self.len();
        if v > old {
            let d = v - old;
            self.total += d;
            while i <= n {
                self.tree[i] += d;
                i += lowbit(i);
            }
        } else {
            let d = old - v;
            self.total -= d;
            while i <= n {
                self.tree[i] -= d;
                i += lowbit(i);
            }
        }
    }

    /// The slot holding unit `target` of the cumulated weights, i.e. the smallest slot `s`
    /// with `prefix(s + 1) > target`. `None` if `target >= total()`.
    pub(crate) fn find(&self, target: u64) -> Option<usize> {
        if target >= self.total {
            return None;
        }
        let n = self.len();
        let mut pos = 0usize;
        let mut rem = target;
        let mut step = if n == 0 {
            0
        } else {
            1usize << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= rem {
                pos = next;
                rem -= self.tree[next];
            }
            step >>= 1;
        }
        // pos = number of slots whose cumulated weight is <= target.
        (pos < n).then_some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_find(v: &[u64], target: u64) -> Option<usize> {
        let mut acc = 0;
        for (i, x) in v.iter().enumerate() {
            acc += x;
            if acc > target {
                return Some(i);
            }
        }
        None
    }

    #[test]
    fn push_set_pop_find_match_naive() {
        let mut f = Fenwick::new();
        let mut v: Vec<u64> = Vec::new();
        for i in 0..37u64 {
            f.push(i % 5);
            v.push(i % 5);
        }
        f.set(3, 100);
        v[3] = 100;
        f.set(20, 0);
        v[20] = 0;
        for _ in 0..5 {
            f.pop();
            v.pop();
        }
        f.push(7);
        v.push(7);
        assert_eq!(f.total(), v.iter().sum::<u64>());
        for c in 0..=v.len() {
            assert_eq!(f.prefix(c), v[..c].iter().sum::<u64>());
        }
        for t in 0..f.total() + 3 {
            assert_eq!(f.find(t), naive_find(&v, t), "target {t}");
        }
    }

    #[test]
    fn empty_and_zero_weights() {
        let mut f = Fenwick::new();
        assert_eq!(f.find(0), None);
        f.push(0);
        f.push(0);
        assert_eq!(f.find(0), None);
        f.set(1, 1);
        assert_eq!(f.find(0), Some(1));
        assert_eq!(f.pop(), Some(1));
        assert_eq!(f.total(), 0);
    }
}
