//! [`Tunes`]: the `configure(..)` adjustments of the pool element and pool user builders
//! ([`PoolElementBuilder`](crate::pe::PoolElementBuilder),
//! [`PoolUserBuilder`](crate::pu::PoolUserBuilder)).

use std::fmt;

/// One adjustment of a configuration `C`.
type Tune<C> = Box<dyn FnOnce(&mut C) + Send>;

/// Adjustments of a configuration `C`, applied in the order given after the builder filled
/// the configuration in.
pub(crate) struct Tunes<C>(Vec<Tune<C>>);

impl<C> Default for Tunes<C> {
    fn default() -> Self {
        Tunes(Vec::new())
    }
}

impl<C> Tunes<C> {
    /// Adds an adjustment.
    pub(crate) fn push(&mut self, f: impl FnOnce(&mut C) + Send + 'static) {
        self.0.push(Box::new(f));
    }

    /// Applies the adjustments to `cfg` (each once: they are used up).
    pub(crate) fn apply(&mut self, cfg: &mut C) {
        for f in self.0.drain(..) {
            f(cfg);
        }
    }
}

impl<C> fmt::Debug for Tunes<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} adjustment(s)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustments_apply_in_order_and_once() {
        let mut t = Tunes::<Vec<u8>>::default();
        t.push(|v| v.push(1));
        t.push(|v| v.push(2));
        assert_eq!(format!("{t:?}"), "2 adjustment(s)");
        let mut v = Vec::new();
        t.apply(&mut v);
        t.apply(&mut v);
        assert_eq!(v, [1, 2]);
        assert_eq!(format!("{t:?}"), "0 adjustment(s)");
    }
}
