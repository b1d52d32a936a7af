//! Which stamped sequences a connection has received, for duplicate
//! detection. A unicast recipient sees a handful of a run's sequences, a
//! fan-out recipient sees all of them: a short list serves the first, a
//! bitmap over the run the second, and a list grows into a bitmap when it
//! fills.

/// Sequences a short list holds before it becomes a bitmap.
const LIST_MAX: usize = 32;

/// Runs whose bitmap is this many words or fewer start as a bitmap.
const SMALL_BITMAP_WORDS: usize = 4;

/// The sequences seen so far, below the run's expected count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seen {
    /// Nothing yet (no memory).
    #[default]
    Nothing,
    /// A few sequences, unordered.
    List(Vec<u64>),
    /// One bit per sequence of the run.
    Bitmap(Vec<u64>),
}

impl Seen {
    /// Marks `seq` of a run of `expected`; `false` if it was seen before
    /// (a duplicate). Sequences at or past `expected` are not tracked.
    pub fn mark(&mut self, seq: u64, expected: u64) -> bool {
        if seq >= expected {
            return true;
        }
        let Ok(words) = usize::try_from(expected.div_ceil(64)) else {
            return true;
        };
        match self {
            Self::Nothing if words <= SMALL_BITMAP_WORDS => {
                *self = Self::Bitmap(vec![0; words]);
                self.mark(seq, expected)
            }
            Self::Nothing => {
                *self = Self::List(vec![seq]);
                true
            }
            Self::List(list) if list.contains(&seq) => false,
            Self::List(list) if list.len() < LIST_MAX => {
                list.push(seq);
                true
            }
            Self::List(list) => {
                let mut bits = vec![0u64; words];
                for &s in list.iter() {
                    set(&mut bits, s);
                }
                *self = Self::Bitmap(bits);
                self.mark(seq, expected)
            }
            Self::Bitmap(bits) => set(bits, seq),
        }
    }
}

/// Sets bit `seq`; whether it was clear.
fn set(bits: &mut [u64], seq: u64) -> bool {
    let Some(word) = usize::try_from(seq / 64).ok().and_then(|i| bits.get_mut(i)) else {
        return true;
    };
    let bit = 1u64 << (seq % 64);
    let fresh = *word & bit == 0;
    *word |= bit;
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_in_every_form() {
        for expected in [100, 1_000_000] {
            let mut s = Seen::default();
            assert!(s.mark(3, expected));
            assert!(!s.mark(3, expected), "expected {expected}");
            assert!(s.mark(99, expected));
            assert!(
                s.mark(expected + 400, expected),
                "past the run: not tracked"
            );
            assert!(s.mark(expected + 400, expected));
        }
    }

    #[test]
    fn a_few_sequences_stay_a_list_and_many_become_a_bitmap() {
        let run = 200_000;
        let mut s = Seen::default();
        for seq in (0..LIST_MAX as u64).map(|i| i * 997) {
            assert!(s.mark(seq, run));
        }
        assert!(matches!(&s, Seen::List(l) if l.len() == LIST_MAX));
        assert!(s.mark(5, run));
        assert!(matches!(&s, Seen::Bitmap(b) if b.len() == 3125));
        // What the list held survived the change.
        for seq in (0..LIST_MAX as u64).map(|i| i * 997).chain([5]) {
            assert!(!s.mark(seq, run), "{seq} seen before");
        }
        let mut small = Seen::default();
        assert!(small.mark(1, 64));
        assert!(matches!(small, Seen::Bitmap(ref b) if b.len() == 1));
    }
}
