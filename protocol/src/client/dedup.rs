//! The client's memory of the durable pushes it has seen, so an app sees
//! each one once.
//!
//! Durable pushes (`ack = true`) are delivered at least once: the gateway
//! sends one again, with the same id and `redelivery` set, when it did not
//! get the ack in time, when the client reconnects, or after a restart. The
//! client session keeps the ids of the last [`DedupWindow::capacity`]
//! durable pushes it handed to the app and drops a push whose id is among
//! them. A dropped copy of a push the app has already acked is acked
//! again: the first ack was lost (a flash disconnect, say), and without a
//! second one the gateway would go on redelivering it until it gives up on
//! it as undelivered.
//!
//! The window is bounded: a duplicate of a push older than the last
//! `capacity` durable pushes reaches the app again. Carry the window from
//! one connection to the next ([`crate::client::ClientSession::take_dedup`],
//! [`crate::client::ClientSession::with_dedup`]) so a reconnect does not
//! forget it.

use std::collections::{HashMap, VecDeque};

/// Durable push ids a client has seen lately. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupWindow {
    capacity: usize,
    /// Ids in the order they were first seen, oldest first.
    order: VecDeque<u64>,
    /// Id → whether the app (or auto-ack) has acked it.
    acked: HashMap<u64, bool>,
    /// Copies dropped as duplicates since the window was made.
    dropped: u64,
}

/// What the client does with a durable push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: hand it to the app.
    New,
    /// A copy of one the app has but has not acked yet: drop it (the app's
    /// ack will cover both).
    Duplicate,
    /// A copy of one the app has acked: drop it and ack it again.
    DuplicateAcked,
}

/// Durable pushes remembered by default: comfortably more than a
/// session's in-flight window of unacked pushes.
pub const DEFAULT_DEDUP_WINDOW: usize = 1024;

impl Default for DedupWindow {
    fn default() -> Self {
        DedupWindow::new(DEFAULT_DEDUP_WINDOW)
    }
}

impl DedupWindow {
    /// A window of the last `capacity` durable push ids (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> DedupWindow {
        DedupWindow {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            acked: HashMap::new(),
            dropped: 0,
        }
    }

    /// How many ids it remembers at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many ids it remembers now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it remembers nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Copies dropped as duplicates so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records a durable push with `id` arriving; says what to do with it.
    pub fn arrived(&mut self, id: u64) -> Seen {
        if let Some(&acked) = self.acked.get(&id) {
            self.dropped += 1;
            return if acked {
                Seen::DuplicateAcked
            } else {
                Seen::Duplicate
            };
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.acked.remove(&oldest);
        }
        self.order.push_back(id);
        self.acked.insert(id, false);
        Seen::New
    }

    /// The app acked `ids`: a later copy of any of them is acked again.
    pub fn acked(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(acked) = self.acked.get_mut(id) {
                *acked = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_is_dropped_and_reacked_once_acked() {
        let mut w = DedupWindow::new(4);
        assert_eq!(w.arrived(7), Seen::New);
        assert_eq!(w.arrived(7), Seen::Duplicate, "not acked yet");
        w.acked(&[7, 99]);
        assert_eq!(w.arrived(7), Seen::DuplicateAcked);
        assert_eq!(w.dropped(), 2);
        assert_eq!(w.len(), 1, "an ack of an unknown id adds nothing");
    }

    #[test]
    fn the_window_forgets_the_oldest_beyond_its_capacity() {
        let mut w = DedupWindow::new(3);
        for id in [1, 2, 3, 4] {
            assert_eq!(w.arrived(id), Seen::New);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.arrived(1), Seen::New, "1 was forgotten");
        assert_eq!(w.arrived(3), Seen::Duplicate);
        assert_eq!(w.arrived(2), Seen::New, "2 went when 1 came back");
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut w = DedupWindow::new(0);
        assert_eq!(w.capacity(), 1);
        assert_eq!(w.arrived(5), Seen::New);
        assert_eq!(w.arrived(5), Seen::Duplicate);
        assert_eq!(w.arrived(6), Seen::New);
        assert_eq!(w.arrived(5), Seen::New);
    }
}
