//! A per-shard hashed timer wheel: one wheel for every connection deadline
//! of a shard, so a million idle connections cost the kernel no timers and
//! the shard one wake-up per tick at most.
//!
//! Entries are lazy: a connection whose deadline moves later (every inbound
//! frame moves it) keeps its entry; when the entry fires, the owner checks
//! the real deadline and re-arms if it is not due yet. Each entry carries a
//! generation so an entry that outlived its connection is recognised and
//! dropped.

use protocol::time::Millis;

/// A connection reference as the wheel stores it: slab key and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerRef {
    /// Slab key of the connection.
    pub key: u32,
    /// Generation of the connection that armed the entry.
    pub generation: u32,
}

/// Hashed timer wheel with a fixed tick; deadlines beyond one revolution
/// simply fire early and are re-armed by their owner.
#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<TimerRef>>,
    tick_ms: u64,
    /// Absolute tick up to which every slot has been drained.
    current_tick: u64,
    len: usize,
}

impl TimerWheel {
    /// A wheel of `slots` buckets of `tick_ms` each, starting at `now`.
    pub fn new(now: Millis, tick_ms: u32, slots: usize) -> Self {
        let tick_ms = u64::from(tick_ms.max(1));
        Self {
            slots: (0..slots.max(1)).map(|_| Vec::new()).collect(),
            tick_ms,
            current_tick: now.0 / tick_ms,
            len: 0,
        }
    }

    /// Number of armed entries (stale ones included until they fire).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms `entry` to fire at the first tick at or after `deadline`.
    pub fn insert(&mut self, deadline: Millis, entry: TimerRef) {
        let tick = deadline.0.div_ceil(self.tick_ms).max(self.current_tick + 1);
        // Deadlines further than one revolution land early; the owner re-arms.
        let horizon = self.current_tick + self.slots.len() as u64;
        let tick = tick.min(horizon);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push(entry);
        self.len += 1;
    }

    /// When the shard must wake up next for the wheel, if anything is armed.
    pub fn next_wakeup(&self) -> Option<Millis> {
        (!self.is_empty()).then(|| Millis((self.current_tick + 1) * self.tick_ms))
    }

    /// Moves every entry whose tick has passed by `now` into `fired`.
    pub fn advance(&mut self, now: Millis, fired: &mut Vec<TimerRef>) {
        let target = now.0 / self.tick_ms;
        let n = self.slots.len() as u64;
        // After a long stall one revolution drains everything.
        let steps = target.saturating_sub(self.current_tick).min(n);
        for i in 1..=steps {
            let slot = ((self.current_tick + i) % n) as usize;
            let bucket = &mut self.slots[slot];
            self.len -= bucket.len();
            fired.append(bucket);
            if bucket.capacity() > 64 {
                bucket.shrink_to(64);
            }
        }
        self.current_tick = self.current_tick.max(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: u32) -> TimerRef {
        TimerRef { key, generation: 0 }
    }

    #[test]
    fn fires_at_the_first_tick_after_the_deadline() {
        let mut w = TimerWheel::new(Millis(0), 100, 16);
        w.insert(Millis(250), r(1));
        let mut fired = Vec::new();
        w.advance(Millis(299), &mut fired);
        assert!(fired.is_empty());
        w.advance(Millis(300), &mut fired);
        assert_eq!(fired, vec![r(1)]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_on_the_next_tick() {
        let mut w = TimerWheel::new(Millis(1000), 100, 16);
        w.insert(Millis(5), r(7));
        let mut fired = Vec::new();
        w.advance(Millis(1100), &mut fired);
        assert_eq!(fired, vec![r(7)]);
    }

    #[test]
    fn far_deadlines_fire_early_at_the_horizon() {
        let mut w = TimerWheel::new(Millis(0), 10, 8);
        w.insert(Millis(10_000), r(3));
        let mut fired = Vec::new();
        w.advance(Millis(79), &mut fired);
        assert!(fired.is_empty());
        w.advance(Millis(80), &mut fired);
        assert_eq!(
            fired,
            vec![r(3)],
            "fires at one revolution so the owner re-arms"
        );
    }

    #[test]
    fn long_stall_drains_everything_once() {
        let mut w = TimerWheel::new(Millis(0), 10, 8);
        for k in 0..20 {
            w.insert(Millis(10 * u64::from(k)), r(k));
        }
        let mut fired = Vec::new();
        w.advance(Millis(1_000_000), &mut fired);
        assert_eq!(fired.len(), 20);
        assert!(w.is_empty());
        assert_eq!(w.next_wakeup(), None);
    }

    #[test]
    fn next_wakeup_is_the_next_tick() {
        let mut w = TimerWheel::new(Millis(1234), 100, 16);
        assert_eq!(w.next_wakeup(), None);
        w.insert(Millis(5000), r(1));
        assert_eq!(w.next_wakeup(), Some(Millis(1300)));
    }
}
