//! Bounded lock-free mailboxes between every ordered pair of shards, with
//! a doorbell that wakes the receiving shard.
//!
//! Wake-up protocol: each receiver has a `has_mail` flag. A sender pushes
//! its message, then swaps the flag to `true`; only the sender that flips
//! it from `false` rings the doorbell. The receiver, when woken, swaps the
//! flag back to `false` *before* draining, so a message pushed after that
//! point flips the flag again and rings again: no wake-up is ever lost, and
//! a burst of messages costs one doorbell.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// How a receiving shard is woken (an eventfd write in the gateway).
pub trait Doorbell: Send + Sync {
    /// Wakes shard `to`.
    fn ring(&self, to: usize);
}

/// Every mailbox of a process: `queues[to][from]`.
#[derive(Debug)]
pub struct Mailboxes<M> {
    queues: Vec<Vec<ArrayQueue<M>>>,
    has_mail: Vec<AtomicBool>,
    full: Vec<AtomicU64>,
}

impl<M> Mailboxes<M> {
    /// Mailboxes for `shards` shards, each pair holding up to `capacity`.
    pub fn new(shards: usize, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            queues: (0..shards)
                .map(|_| (0..shards).map(|_| ArrayQueue::new(capacity)).collect())
                .collect(),
            has_mail: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            full: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.queues.len()
    }

    /// Sends `msg` from shard `from` to shard `to`, ringing `bell` when `to`
    /// may be parked. A full mailbox gives the message back (and is counted):
    /// the caller keeps it and retries later.
    pub fn send(&self, from: usize, to: usize, msg: M, bell: &dyn Doorbell) -> Result<(), M> {
        let Some(queue) = self.queues.get(to).and_then(|q| q.get(from)) else {
            return Err(msg);
        };
        if let Err(msg) = queue.push(msg) {
            self.full[from].fetch_add(1, Ordering::Relaxed);
            // The receiver may be parked with a full queue it has not seen.
            self.wake(to, bell);
            return Err(msg);
        }
        self.wake(to, bell);
        Ok(())
    }

    fn wake(&self, to: usize, bell: &dyn Doorbell) {
        if !self.has_mail[to].swap(true, Ordering::AcqRel) {
            bell.ring(to);
        }
    }

    /// Takes every message waiting for shard `to`, in per-sender order.
    /// Call after each doorbell (and whenever convenient): the flag is
    /// cleared first so that later senders ring again.
    pub fn drain(&self, to: usize, mut f: impl FnMut(usize, M)) -> usize {
        let Some(queues) = self.queues.get(to) else {
            return 0;
        };
        self.has_mail[to].store(false, Ordering::SeqCst);
        let mut n = 0;
        for (from, q) in queues.iter().enumerate() {
            // Bounded: at most what is there now plus what arrives meanwhile,
            // never more than one queue's capacity per call.
            for _ in 0..q.capacity() {
                let Some(msg) = q.pop() else {
                    break;
                };
                f(from, msg);
                n += 1;
            }
        }
        n
    }

    /// Messages waiting for shard `to` now.
    pub fn depth(&self, to: usize) -> usize {
        self.queues
            .get(to)
            .map_or(0, |q| q.iter().map(ArrayQueue::len).sum())
    }

    /// Times shard `from` found a mailbox full.
    pub fn full_events(&self, from: usize) -> u64 {
        self.full.get(from).map_or(0, |a| a.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct CountingBell(Mutex<Vec<usize>>);

    impl Doorbell for CountingBell {
        fn ring(&self, to: usize) {
            self.0.lock().unwrap().push(to);
        }
    }

    #[test]
    fn a_burst_rings_once_until_drained() {
        let m = Mailboxes::new(2, 8);
        let bell = CountingBell::default();
        for i in 0..5 {
            m.send(0, 1, i, &bell).unwrap();
        }
        assert_eq!(*bell.0.lock().unwrap(), vec![1]);
        assert_eq!(m.depth(1), 5);
        let mut got = Vec::new();
        assert_eq!(m.drain(1, |from, v| got.push((from, v))), 5);
        assert_eq!(got, (0..5).map(|i| (0, i)).collect::<Vec<_>>());
        m.send(0, 1, 9, &bell).unwrap();
        assert_eq!(
            *bell.0.lock().unwrap(),
            vec![1, 1],
            "rings again after a drain"
        );
    }

    #[test]
    fn full_mailbox_returns_the_message_and_counts() {
        let m = Mailboxes::new(2, 2);
        let bell = CountingBell::default();
        m.send(1, 0, 'a', &bell).unwrap();
        m.send(1, 0, 'b', &bell).unwrap();
        assert_eq!(m.send(1, 0, 'c', &bell), Err('c'));
        assert_eq!(m.full_events(1), 1);
        assert_eq!(m.send(1, 7, 'x', &bell), Err('x'), "no such shard");
    }

    #[test]
    fn messages_to_self_work() {
        let m = Mailboxes::new(1, 4);
        let bell = CountingBell::default();
        m.send(0, 0, 1u8, &bell).unwrap();
        let mut n = 0;
        m.drain(0, |_, _| n += 1);
        assert_eq!(n, 1);
    }
}
