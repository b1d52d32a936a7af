//! Time as the caller sees it.

/// A point in time, in milliseconds on the caller's monotonic clock.
///
/// The protocol crate never reads a clock: every call that depends on time
/// takes a `Millis` so that tests can simulate time. Only differences between
/// two `Millis` from the same clock are meaningful.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The zero point of the clock.
    pub const ZERO: Millis = Millis(0);

    /// `self + ms`, saturating at `u64::MAX`.
    #[must_use]
    pub const fn saturating_add(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// `self - ms`, saturating at zero.
    #[must_use]
    pub const fn saturating_sub(self, ms: u64) -> Millis {
        Millis(self.0.saturating_sub(ms))
    }

    /// Milliseconds elapsed from `earlier` to `self`; zero if `earlier` is later.
    #[must_use]
    pub const fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The raw millisecond count.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for Millis {
    fn from(ms: u64) -> Self {
        Millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::Millis;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5).saturating_add(3), Millis(8));
        assert_eq!(Millis(u64::MAX).saturating_add(1), Millis(u64::MAX));
        assert_eq!(Millis(5).saturating_sub(7), Millis(0));
        assert_eq!(Millis(10).since(Millis(4)), 6);
        assert_eq!(Millis(4).since(Millis(10)), 0);
        assert!(Millis(1) < Millis(2));
        assert_eq!(Millis::default(), Millis::ZERO);
    }
}
