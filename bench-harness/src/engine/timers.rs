//! Per-shard connection timers: a min-heap of (deadline, slot, generation),
//! validated lazily when popped (a connection's session knows its real deadline).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use protocol::time::Millis;

/// Pending connection deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32, u16)>>,
}

impl Timers {
    /// Schedules a check of `slot`/`generation` at `at`.
    pub fn push(&mut self, at: Millis, slot: u32, generation: u16) {
        self.heap.push(Reverse((at.as_u64(), slot, generation)));
    }

    /// Pops one entry due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(u32, u16)> {
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > now.as_u64() {
            return None;
        }
        self.heap.pop().map(|Reverse((_, s, g))| (s, g))
    }

    /// The earliest deadline.
    #[must_use]
    pub fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _, _))| Millis(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_when_due() {
        let mut t = Timers::default();
        t.push(Millis(30), 1, 0);
        t.push(Millis(10), 2, 0);
        assert_eq!(t.next(), Some(Millis(10)));
        assert_eq!(t.pop_due(Millis(5)), None);
        assert_eq!(t.pop_due(Millis(30)), Some((2, 0)));
        assert_eq!(t.pop_due(Millis(30)), Some((1, 0)));
        assert_eq!(t.pop_due(Millis(99)), None);
    }
}
