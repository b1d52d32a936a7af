//! A per-shard hashed timer wheel: one wheel for every connection deadline
//! of a shard, so a million idle connections cost the kernel no timers and
//! the shard one wake-up per tick at most.
//!
//! Each connection is in at most one slot, on an intrusive doubly linked
//! list whose links live in one array indexed by the connection's slab key.
//! Arming, moving and cancelling are O(1) and allocate nothing: the wheel's
//! memory is fixed by the highest key it has seen, and it does not churn
//! the allocator when clustered deadlines (a connect storm) fill a slot and
//! drain it again.
//!
//! Deadlines are lazy: a connection whose deadline moves later (every
//! inbound frame moves it) stays where it is; when its slot fires, the
//! owner checks the real deadline and re-arms if it is not due yet. Only a
//! deadline that moves earlier moves the entry.

use protocol::time::Millis;

/// "No node": an unlinked connection's links, or the end of a walk.
const NONE: u32 = u32::MAX;

/// One node of the wheel's lists: a slot's sentinel or a connection.
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    /// The tick the node is armed for (low 32 bits; entries never lie
    /// more than one revolution ahead, so wrapping comparison is exact).
    tick: u32,
}

impl Link {
    const UNLINKED: Link = Link {
        prev: NONE,
        next: NONE,
        tick: 0,
    };
}

/// Hashed timer wheel with a fixed tick; deadlines beyond one revolution
/// fire early, at the horizon, and are re-armed by their owner.
#[derive(Debug)]
pub struct TimerWheel {
    /// Nodes `0..slots` are the slots' sentinels (circular lists); node
    /// `slots + key` is connection `key`.
    links: Vec<Link>,
    slots: u32,
    tick_ms: u64,
    /// Absolute tick up to which every slot has been drained.
    current_tick: u64,
    len: usize,
}

impl TimerWheel {
    /// A wheel of `slots` buckets of `tick_ms` each, starting at `now`.
    pub fn new(now: Millis, tick_ms: u32, slots: usize) -> Self {
        let tick_ms = u64::from(tick_ms.max(1));
        let slots = u32::try_from(slots.clamp(1, 1 << 20)).unwrap_or(1 << 20);
        let links = (0..slots)
            .map(|s| Link {
                prev: s,
                next: s,
                tick: 0,
            })
            .collect();
        Self {
            links,
            slots,
            tick_ms,
            current_tick: now.0 / tick_ms,
            len: 0,
        }
    }

    /// Number of armed connections.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no connection is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node(&self, key: u32) -> usize {
        self.slots as usize + key as usize
    }

    /// Whether connection `key` is armed.
    pub fn is_armed(&self, key: u32) -> bool {
        self.links
            .get(self.node(key))
            .is_some_and(|l| l.next != NONE)
    }

    /// Makes sure connection `key` fires at the first tick at or after
    /// `deadline`, or earlier: an entry already armed for an earlier tick
    /// stays (the owner re-arms when it fires), a later one moves.
    pub fn arm(&mut self, key: u32, deadline: Millis) {
        let tick = deadline.0.div_ceil(self.tick_ms).max(self.current_tick + 1);
        // Deadlines further than one revolution land early; the owner re-arms.
        let tick = tick.min(self.current_tick + u64::from(self.slots));
        let node = self.node(key);
        if node >= self.links.len() {
            self.links.resize(node + 1, Link::UNLINKED);
        }
        if self.links[node].next != NONE {
            let ahead = |t: u32| t.wrapping_sub(self.current_tick as u32);
            if ahead(self.links[node].tick) <= ahead(tick as u32) {
                return;
            }
            self.unlink(node);
        }
        let head = (tick % u64::from(self.slots)) as usize;
        let last = self.links[head].prev as usize;
        self.links[node] = Link {
            prev: last as u32,
            next: head as u32,
            tick: tick as u32,
        };
        self.links[last].next = node as u32;
        self.links[head].prev = node as u32;
        self.len += 1;
    }

    /// Disarms connection `key` (its slot in the slab is being freed).
    pub fn cancel(&mut self, key: u32) {
        if self.is_armed(key) {
            self.unlink(self.node(key));
        }
    }

    fn unlink(&mut self, node: usize) {
        let Link { prev, next, .. } = self.links[node];
        self.links[prev as usize].next = next;
        self.links[next as usize].prev = prev;
        self.links[node] = Link::UNLINKED;
        self.len -= 1;
    }

    /// When the shard must wake up next for the wheel, if anything is armed.
    pub fn next_wakeup(&self) -> Option<Millis> {
        (!self.is_empty()).then(|| Millis((self.current_tick + 1) * self.tick_ms))
    }

    /// Disarms every connection whose tick has passed by `now` and appends
    /// its key to `fired`, in the order they were armed per slot.
    pub fn advance(&mut self, now: Millis, fired: &mut Vec<u32>) {
        let target = now.0 / self.tick_ms;
        let n = u64::from(self.slots);
        // After a long stall one revolution drains everything.
        let steps = target.saturating_sub(self.current_tick).min(n);
        for i in 1..=steps {
            let head = ((self.current_tick + i) % n) as usize;
            let mut node = self.links[head].next as usize;
            while node != head {
                let next = self.links[node].next as usize;
                self.links[node] = Link::UNLINKED;
                self.len -= 1;
                fired.push((node - self.slots as usize) as u32);
                node = next;
            }
            self.links[head].next = head as u32;
            self.links[head].prev = head as u32;
        }
        self.current_tick = self.current_tick.max(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(w: &mut TimerWheel, at: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        w.advance(Millis(at), &mut fired);
        fired
    }

    #[test]
    fn fires_at_the_first_tick_after_the_deadline() {
        let mut w = TimerWheel::new(Millis(0), 100, 16);
        w.arm(1, Millis(250));
        assert!(fire(&mut w, 299).is_empty());
        assert_eq!(fire(&mut w, 300), vec![1]);
        assert!(w.is_empty());
        assert!(!w.is_armed(1));
    }

    #[test]
    fn past_deadlines_fire_on_the_next_tick() {
        let mut w = TimerWheel::new(Millis(1000), 100, 16);
        w.arm(7, Millis(5));
        assert_eq!(fire(&mut w, 1100), vec![7]);
    }

    #[test]
    fn far_deadlines_fire_early_at_the_horizon() {
        let mut w = TimerWheel::new(Millis(0), 10, 8);
        w.arm(3, Millis(10_000));
        assert!(fire(&mut w, 79).is_empty());
        assert_eq!(
            fire(&mut w, 80),
            vec![3],
            "fires at one revolution so the owner re-arms"
        );
    }

    #[test]
    fn long_stall_drains_everything_once() {
        let mut w = TimerWheel::new(Millis(0), 10, 8);
        for k in 0..20 {
            w.arm(k, Millis(10 * u64::from(k)));
        }
        let mut fired = fire(&mut w, 1_000_000);
        fired.sort_unstable();
        assert_eq!(fired, (0..20).collect::<Vec<_>>());
        assert!(w.is_empty());
        assert_eq!(w.next_wakeup(), None);
    }

    #[test]
    fn next_wakeup_is_the_next_tick() {
        let mut w = TimerWheel::new(Millis(1234), 100, 16);
        assert_eq!(w.next_wakeup(), None);
        w.arm(1, Millis(5000));
        assert_eq!(w.next_wakeup(), Some(Millis(1300)));
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_entry() {
        let mut w = TimerWheel::new(Millis(0), 100, 64);
        w.arm(4, Millis(500));
        w.arm(4, Millis(2000));
        assert_eq!(w.len(), 1, "one entry per connection");
        assert_eq!(fire(&mut w, 500), vec![4], "lazy: the owner re-arms");
    }

    #[test]
    fn an_earlier_deadline_moves_the_entry() {
        let mut w = TimerWheel::new(Millis(0), 100, 64);
        w.arm(4, Millis(2000));
        w.arm(4, Millis(300));
        assert_eq!(w.len(), 1);
        assert_eq!(fire(&mut w, 300), vec![4]);
        assert!(fire(&mut w, 2000).is_empty(), "the old entry is gone");
    }

    #[test]
    fn cancel_unlinks_from_the_middle_of_a_slot() {
        let mut w = TimerWheel::new(Millis(0), 100, 64);
        for k in [10, 11, 12] {
            w.arm(k, Millis(700));
        }
        w.cancel(11);
        w.cancel(11);
        w.cancel(999);
        assert_eq!(w.len(), 2);
        assert_eq!(fire(&mut w, 700), vec![10, 12]);
    }

    #[test]
    fn entries_survive_many_revolutions_in_order() {
        // Starts just before the u32 tick field wraps, and crosses it.
        let mut at = (1 << 32) - 1000;
        let mut w = TimerWheel::new(Millis(at), 1, 8);
        for round in 0..2_000u64 {
            w.arm(0, Millis(at + 5));
            w.arm(1, Millis(at + 3));
            at += 5;
            let mut fired = fire(&mut w, at);
            fired.sort_unstable();
            assert_eq!(fired, vec![0, 1], "round {round}");
        }
    }

    #[test]
    fn a_freed_slot_key_can_be_armed_again() {
        let mut w = TimerWheel::new(Millis(0), 100, 16);
        w.arm(2, Millis(900));
        w.cancel(2);
        w.arm(2, Millis(200));
        assert_eq!(fire(&mut w, 1000), vec![2]);
        assert!(w.is_empty());
    }
}
