//! Bounded lock-free mailboxes between shards: one inbox per receiving
//! shard that every shard sends into, with a doorbell that wakes the
//! receiver.
//!
//! Memory: each shard's inbox is one bounded multi-producer queue of
//! `capacity` slots, so a process of N shards reserves N × capacity slots
//! (linear in N). An earlier design kept one queue per ordered pair of
//! shards, N² × capacity slots: 5.3 GB before the first client at 128
//! shards (docs/BENCHMARKS.md, "Idle RSS per shard").
//!
//! Order: the inbox is a linearizable FIFO queue and each sender is one
//! thread (its shard), so the messages of one sender reach the receiver in
//! the order they were sent (per-pair FIFO, which the route cache's
//! ordering argument relies on). Messages of different senders interleave.
//!
//! Backpressure: a full inbox gives the message back and counts the event
//! against the sender; the sender keeps the message and retries later.
//! One busy sender can fill a receiver's inbox and make the others wait
//! too; what they wait in is their own outbox, which the gateway bounds.
//!
//! Wake-up protocol: each receiver has a `has_mail` flag. A sender pushes
//! its message, then swaps the flag to `true`; only the sender that flips
//! it from `false` rings the doorbell. The receiver, when woken, swaps the
//! flag back to `false` *before* draining, so a message pushed after that
//! point flips the flag again and rings again: no wake-up is ever lost, and
//! a burst of messages costs one doorbell.
//!
//! A message its receiver does not wait on (it reads its inbox on a
//! deadline of its own) may go quietly ([`Mailboxes::send_quiet`]): no
//! flag, no doorbell; the receiver finds it at its next drain.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// How a receiving shard is woken (an eventfd write in the gateway).
pub trait Doorbell: Send + Sync {
    /// Wakes shard `to`.
    fn ring(&self, to: usize);
}

/// What one inbox slot holds: the sender's index and its message.
type Letter<M> = (u32, M);

/// Every mailbox of a process: one inbox per receiving shard.
#[derive(Debug)]
pub struct Mailboxes<M> {
    inboxes: Vec<ArrayQueue<Letter<M>>>,
    has_mail: Vec<AtomicBool>,
    full: Vec<AtomicU64>,
}

impl<M> Mailboxes<M> {
    /// Mailboxes for `shards` shards, each shard's inbox holding up to
    /// `capacity` messages from all senders together.
    pub fn new(shards: usize, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inboxes: (0..shards).map(|_| ArrayQueue::new(capacity)).collect(),
            has_mail: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            full: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Messages one inbox holds.
    pub fn capacity(&self) -> usize {
        self.inboxes.first().map_or(0, ArrayQueue::capacity)
    }

    /// Bytes these mailboxes reserve, all of it allocated by [`Self::new`]:
    /// the inboxes' slots (a slot is the letter plus the queue's stamp
    /// word, rounded to the letter's alignment) and the per-shard flags
    /// and counters. Linear in the shard count; tests hold it to that.
    pub fn reserved_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(usize, Letter<M>)>();
        let per_shard = std::mem::size_of::<ArrayQueue<Letter<M>>>()
            + std::mem::size_of::<AtomicBool>()
            + std::mem::size_of::<AtomicU64>();
        self.inboxes
            .iter()
            .map(|q| q.capacity() * slot + per_shard)
            .sum()
    }

    /// Sends `msg` from shard `from` to shard `to`, ringing `bell` when `to`
    /// may be parked. A full inbox gives the message back (and is counted):
    /// the caller keeps it and retries later.
    pub fn send(&self, from: usize, to: usize, msg: M, bell: &dyn Doorbell) -> Result<(), M> {
        self.push(from, to, msg, bell)?;
        self.wake(to, bell);
        Ok(())
    }

    /// Sends `msg` from `from` to `to` without waking `to`: it is taken at
    /// `to`'s next drain, whenever that is (the receiver must read its
    /// inbox on a deadline for it). A full inbox gives it back, as
    /// [`Mailboxes::send`] does (and wakes the receiver, as then).
    pub fn send_quiet(&self, from: usize, to: usize, msg: M, bell: &dyn Doorbell) -> Result<(), M> {
        self.push(from, to, msg, bell)
    }

    /// Puts `msg` in `to`'s inbox; a full inbox gives it back, is counted
    /// against `from`, and wakes `to` (it may be parked with a full inbox
    /// it has not seen).
    fn push(&self, from: usize, to: usize, msg: M, bell: &dyn Doorbell) -> Result<(), M> {
        let (Some(inbox), Ok(sender)) = (self.inboxes.get(to), u32::try_from(from)) else {
            return Err(msg);
        };
        if from >= self.inboxes.len() {
            return Err(msg);
        }
        if let Err((_, msg)) = inbox.push((sender, msg)) {
            self.full[from].fetch_add(1, Ordering::Relaxed);
            self.wake(to, bell);
            return Err(msg);
        }
        Ok(())
    }

    fn wake(&self, to: usize, bell: &dyn Doorbell) {
        if !self.has_mail[to].swap(true, Ordering::AcqRel) {
            bell.ring(to);
        }
    }

    /// Takes the messages waiting for shard `to`, each sender's in the
    /// order sent, and gives each to `f` with its sender's index. Call
    /// after each doorbell (and whenever convenient): the flag is cleared
    /// first so that later senders ring again.
    pub fn drain(&self, to: usize, mut f: impl FnMut(usize, M)) -> usize {
        let Some(inbox) = self.inboxes.get(to) else {
            return 0;
        };
        self.has_mail[to].store(false, Ordering::SeqCst);
        let mut n = 0;
        // Bounded: at most what is there now plus what arrives meanwhile,
        // never more than the inbox's capacity per call. Anything left
        // was sent after the flag was cleared and has rung again.
        for _ in 0..inbox.capacity() {
            let Some((from, msg)) = inbox.pop() else {
                break;
            };
            f(from as usize, msg);
            n += 1;
        }
        n
    }

    /// Messages waiting for shard `to` now.
    pub fn depth(&self, to: usize) -> usize {
        self.inboxes.get(to).map_or(0, ArrayQueue::len)
    }

    /// Times shard `from` found an inbox full.
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
        assert_eq!(m.send(7, 0, 'y', &bell), Err('y'), "no such sender");
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

    #[test]
    fn a_quiet_message_rings_nothing_and_a_later_loud_one_still_rings() {
        let m = Mailboxes::new(2, 16);
        let bell = CountingBell::default();
        m.send_quiet(0, 1, 7, &bell).unwrap();
        assert!(bell.0.lock().unwrap().is_empty(), "quiet");
        m.send(0, 1, 8, &bell).unwrap();
        assert_eq!(
            *bell.0.lock().unwrap(),
            vec![1],
            "the quiet one did not eat the wake-up"
        );
        let mut got = Vec::new();
        m.drain(1, |_, v| got.push(v));
        assert_eq!(got, [7, 8], "both, in order");
    }

    #[test]
    fn senders_are_named_and_keep_their_order() {
        let m = Mailboxes::new(3, 16);
        let bell = CountingBell::default();
        for i in 0..4 {
            m.send(0, 2, i, &bell).unwrap();
            m.send(1, 2, 10 + i, &bell).unwrap();
        }
        let mut got = Vec::new();
        m.drain(2, |from, v| got.push((from, v)));
        let from = |s: usize| -> Vec<i32> {
            got.iter()
                .filter(|(f, _)| *f == s)
                .map(|&(_, v)| v)
                .collect()
        };
        assert_eq!(from(0), vec![0, 1, 2, 3]);
        assert_eq!(from(1), vec![10, 11, 12, 13]);
    }

    /// A message the size of the gateway's (an enum of boxed names,
    /// vectors and an `Arc`): 80 bytes.
    type Msg = [u64; 10];

    #[test]
    fn reserved_memory_is_linear_in_the_shard_count() {
        const CAP: usize = 4096;
        let slot = std::mem::size_of::<(usize, Letter<Msg>)>();
        let per_shard =
            |shards: usize| Mailboxes::<Msg>::new(shards, CAP).reserved_bytes() / shards;
        // The same cost per shard at 2 and at 128 shards ...
        assert_eq!(per_shard(2), per_shard(128));
        // ... and that cost is one inbox: a queue per ordered pair would
        // reserve 128 inboxes per shard at 128 shards.
        let at_128 = Mailboxes::<Msg>::new(128, CAP).reserved_bytes();
        assert!(at_128 <= 128 * (CAP * slot + 1024), "{at_128} bytes");
        assert!(at_128 < 64 << 20, "128 shards reserve {at_128} bytes");
    }
}
