//! A connection's bounded outbound queue: frames waiting to be written,
//! shared push payloads included without copying, with the slow-consumer
//! policy applied when the queue would exceed its byte cap.
//!
//! An idle connection's traffic is a Pong every heartbeat. That path
//! allocates nothing: the Pong is held inline in its [`Frame`] and the
//! queue's storage comes from the shard's [`QueuePool`] and goes back to
//! it once the send completes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tuning::config::SlowConsumerPolicy;

/// Most bytes merged into one send when several frames are queued.
pub const COALESCE_LIMIT: usize = 64 * 1024;

/// Longest frame held inline (a Pong is at most 17 bytes): as much as fits
/// without making a `Frame` larger than a shared frame and its tag need
/// (32 + 8 bytes; a queue slot was 32 bytes before frames could be inline).
const INLINE_MAX: usize = 38;

/// Queues kept for reuse by one shard; more idle ones are freed.
const POOL_MAX: usize = 256;

/// Deque slots a pooled queue keeps (enough for a few small frames).
const POOLED_SLOTS: usize = 4;

/// One frame (or several, back to back) waiting to be written.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Bytes shared with other queues (a push encoded once for all its
    /// recipients) or too long to hold inline.
    Shared(Bytes),
    /// A short frame held in place, so queueing it allocates nothing.
    Inline(InlineFrame),
}

/// A frame of at most [`INLINE_MAX`] bytes, stored in place; made only by
/// [`Frame::copied`], so its length is always in bounds.
#[derive(Debug, Clone)]
pub struct InlineFrame {
    len: u8,
    data: [u8; INLINE_MAX],
}

impl Frame {
    /// A frame holding a copy of `bytes`: inline when short enough.
    pub fn copied(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE_MAX => {
                let mut data = [0; INLINE_MAX];
                data[..bytes.len()].copy_from_slice(bytes);
                Self::Inline(InlineFrame { len, data })
            }
            _ => Self::Shared(Bytes::copy_from_slice(bytes)),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Shared(b) => b,
            Self::Inline(f) => &f.data[..usize::from(f.len)],
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self::Shared(bytes)
    }
}

/// What happened to a frame offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued; nothing dropped.
    Queued,
    /// Queued after dropping this many older frames (drop-oldest policy).
    QueuedDropping(u32),
    /// Not queued: the connection must be closed (disconnect policy, or a
    /// frame larger than the whole cap).
    Overflow,
}

/// Drained queues of one shard, reused by the next connection that has
/// something to send: a heartbeat's Pong then costs no allocation, and
/// the queue it lands in was written recently (still in cache).
#[derive(Debug, Default)]
pub struct QueuePool {
    /// Boxed because the box is what is reused: a connection's `Outbound`
    /// holds one, and handing it over is a pointer move, not a malloc.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Queue>>,
}

impl QueuePool {
    fn take(&mut self) -> Box<Queue> {
        self.free.pop().unwrap_or_default()
    }

    /// Keeps `q` (drained: nothing waiting or in flight) for reuse.
    fn give(&mut self, mut q: Box<Queue>) {
        debug_assert!(q.is_empty() && q.queued == 0);
        if self.free.len() < POOL_MAX {
            q.waiting.shrink_to(POOLED_SLOTS);
            self.free.push(q);
        }
    }

    /// Queues held for reuse.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// Whether no queue is held for reuse.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

/// A record layer's sealing step (TLS): plaintext in, whether nothing else
/// waits behind it, ciphertext appended to the output.
pub type Sealer<'a> = dyn FnMut(&[u8], bool, &mut Vec<u8>) + 'a;

/// Frames waiting to be written to one connection. One pointer when
/// nothing waits (the common case for an idle connection); the queue's
/// storage exists only while frames are queued or a send is in flight.
#[derive(Debug, Default)]
pub struct Outbound {
    inner: Option<Box<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// The oldest frame: the one being written, partly written, or next.
    /// It lives here, not in `waiting`, so its bytes stay put while the
    /// kernel reads them (the deque moves its elements when it grows or
    /// drops from the front), and so a lone frame needs no deque storage.
    /// `None` only when nothing is queued.
    current: Option<Frame>,
    /// Bytes of `current` already written.
    current_sent: u32,
    /// Frames behind `current`, oldest first.
    waiting: VecDeque<Frame>,
    /// Bytes queued: `waiting` plus the unwritten part of `current`.
    queued: u32,
    /// Whether `current` is being written by an in-flight send.
    in_flight: bool,
    /// Whether `current` is ciphertext already (a TLS connection's frames
    /// are sealed when their send starts, so a dropped frame is always
    /// plaintext and the record sequence stays whole).
    sealed: bool,
}

impl Outbound {
    /// Bytes waiting, including a partly sent frame.
    pub fn queued_bytes(&self) -> u32 {
        self.inner.as_ref().map_or(0, |q| q.queued)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.inner.as_ref().is_none_or(|q| q.is_empty())
    }

    /// Whether a send is in flight.
    pub fn in_flight(&self) -> bool {
        self.inner.as_ref().is_some_and(|q| q.in_flight)
    }

    /// Returns the queue's storage to `pool` once nothing waits and
    /// nothing is in flight.
    fn release_if_idle(&mut self, pool: &mut QueuePool) {
        let idle = self
            .inner
            .as_ref()
            .is_some_and(|q| q.is_empty() && !q.in_flight);
        if idle && let Some(q) = self.inner.take() {
            pool.give(q);
        }
    }

    /// Offers `frame`; `cap` is the byte cap and `policy` what to do when
    /// it would be exceeded. Storage comes from `pool` when needed.
    pub fn push(
        &mut self,
        frame: Frame,
        cap: u32,
        policy: SlowConsumerPolicy,
        pool: &mut QueuePool,
    ) -> Enqueued {
        let q = self.inner.get_or_insert_with(|| pool.take());
        let outcome = q.push(frame, cap, policy);
        self.release_if_idle(pool);
        outcome
    }

    /// The bytes to write next, marking a send in flight; `None` when a
    /// send is already in flight or nothing waits. Several small frames
    /// are merged into one buffer so one send carries them all. The bytes
    /// stay where they are until [`Outbound::complete_send`].
    pub fn start_send(&mut self) -> Option<&[u8]> {
        self.inner.as_mut()?.start_send()
    }

    /// Like [`Outbound::start_send`] for a stream under a record layer
    /// (TLS): the frames waiting are merged as far as [`COALESCE_LIMIT`]
    /// allows and passed to `seal` as plaintext, with whether nothing else
    /// waits behind them, and what it appends to its output (ciphertext)
    /// is what is sent. A frame may be empty: it asks
    /// for a send of whatever the record layer has pending by itself
    /// (handshake messages, an alert, a close_notify). Nothing is sent when
    /// `seal` produces nothing.
    pub fn start_send_sealed(
        &mut self,
        seal: &mut Sealer<'_>,
        pool: &mut QueuePool,
    ) -> Option<&[u8]> {
        if !self.inner.as_mut()?.seal_next(seal) {
            self.release_if_idle(pool);
            return None;
        }
        self.inner.as_mut()?.start_send()
    }

    /// The bytes of the send in flight (as [`Outbound::start_send`] gave
    /// them), if one is.
    pub fn sending(&self) -> Option<&[u8]> {
        let q = self.inner.as_ref().filter(|q| q.in_flight)?;
        let current = q.current.as_ref()?.as_slice();
        current.get(q.current_sent as usize..)
    }

    /// Accounts a completed send of `written` bytes; returns the number of
    /// bytes that left the queue.
    pub fn complete_send(&mut self, written: usize, pool: &mut QueuePool) -> usize {
        let n = self.inner.as_mut().map_or(0, |q| q.complete_send(written));
        self.release_if_idle(pool);
        n
    }

    /// Drops everything not in flight (the connection is going away).
    pub fn clear(&mut self, pool: &mut QueuePool) {
        if let Some(q) = self.inner.as_mut() {
            q.clear();
        }
        self.release_if_idle(pool);
    }
}

impl Queue {
    /// Whether nothing is queued (`current` is taken before `waiting`).
    fn is_empty(&self) -> bool {
        self.current.is_none() && self.waiting.is_empty()
    }

    fn push(&mut self, frame: Frame, cap: u32, policy: SlowConsumerPolicy) -> Enqueued {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut dropped = 0;
        if self.queued.saturating_add(len) > cap {
            if policy == SlowConsumerPolicy::Disconnect || len > cap {
                return Enqueued::Overflow;
            }
            while self.queued.saturating_add(len) > cap {
                let Some(old) = self.drop_oldest() else {
                    return Enqueued::Overflow;
                };
                self.queued -= old.len() as u32;
                dropped += 1;
            }
        }
        self.queued += len;
        if self.current.is_none() {
            self.current = Some(frame);
            self.current_sent = 0;
        } else {
            self.waiting.push_back(frame);
        }
        if dropped == 0 {
            Enqueued::Queued
        } else {
            Enqueued::QueuedDropping(dropped)
        }
    }

    /// Removes the oldest frame that no write has started on; a frame
    /// being or partly written is spared.
    fn drop_oldest(&mut self) -> Option<Frame> {
        if self.in_flight || self.current_sent > 0 {
            return self.waiting.pop_front();
        }
        let oldest = self.current.take();
        self.current = self.waiting.pop_front();
        oldest
    }

    /// Makes `current` ciphertext (see [`Outbound::start_send_sealed`]);
    /// returns whether there is something to send.
    fn seal_next(&mut self, seal: &mut Sealer<'_>) -> bool {
        if self.in_flight {
            return false;
        }
        if !self.sealed {
            // A partly written frame is sealed already: only whole
            // plaintext frames get here.
            self.coalesce();
            let Some(plain) = self.current.take() else {
                return false;
            };
            let mut sealed = Vec::with_capacity(plain.len() + 64);
            seal(plain.as_slice(), self.waiting.is_empty(), &mut sealed);
            self.queued = (self.queued + sealed.len() as u32).saturating_sub(plain.len() as u32);
            if sealed.is_empty() {
                self.current = self.waiting.pop_front();
                return false;
            }
            self.current = Some(Frame::Shared(Bytes::from(sealed)));
            self.current_sent = 0;
            self.sealed = true;
        }
        self.current.is_some()
    }

    fn start_send(&mut self) -> Option<&[u8]> {
        if self.in_flight {
            return None;
        }
        if self.current_sent == 0 && !self.waiting.is_empty() {
            self.coalesce();
        }
        let current = self.current.as_ref()?.as_slice();
        self.in_flight = true;
        Some(&current[self.current_sent as usize..])
    }

    /// Merges the waiting frames into `current` (not started), as far as
    /// [`COALESCE_LIMIT`] allows, so one send carries them all.
    fn coalesce(&mut self) {
        let Some(first) = self.current.as_ref() else {
            return;
        };
        let mut total = first.len();
        let mut n = 0;
        for f in &self.waiting {
            if total + f.len() > COALESCE_LIMIT {
                break;
            }
            total += f.len();
            n += 1;
        }
        if n == 0 {
            return;
        }
        let mut merged = BytesMut::with_capacity(total);
        merged.extend_from_slice(first.as_slice());
        for f in self.waiting.drain(..n) {
            merged.extend_from_slice(f.as_slice());
        }
        self.current = Some(Frame::Shared(merged.freeze()));
    }

    fn complete_send(&mut self, written: usize) -> usize {
        self.in_flight = false;
        let Some(current) = self.current.as_ref() else {
            return 0;
        };
        let remaining = current.len() - self.current_sent as usize;
        let written = written.min(remaining);
        if written == remaining {
            self.current = self.waiting.pop_front();
            self.current_sent = 0;
            self.sealed = false;
        } else {
            self.current_sent += written as u32;
        }
        self.queued -= written as u32;
        written
    }

    fn clear(&mut self) {
        for f in self.waiting.drain(..) {
            self.queued -= f.len() as u32;
        }
        if !self.in_flight
            && let Some(f) = self.current.take()
        {
            self.queued -= (f.len() - self.current_sent as usize) as u32;
            self.current_sent = 0;
            self.sealed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u32 = 1 << 20;

    fn b(n: usize, fill: u8) -> Frame {
        Frame::Shared(Bytes::from(vec![fill; n]))
    }

    /// A queue and the pool it draws on.
    #[derive(Default)]
    struct Fixture {
        q: Outbound,
        pool: QueuePool,
    }

    impl Fixture {
        fn push(&mut self, f: Frame, cap: u32, p: SlowConsumerPolicy) -> Enqueued {
            self.q.push(f, cap, p, &mut self.pool)
        }
        fn send(&mut self) -> Option<Vec<u8>> {
            self.q.start_send().map(<[u8]>::to_vec)
        }
        fn complete(&mut self, n: usize) -> usize {
            self.q.complete_send(n, &mut self.pool)
        }
    }

    #[test]
    fn queues_under_the_cap_and_overflows_past_it() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::Disconnect;
        assert_eq!(t.push(b(600, 1), 1000, p), Enqueued::Queued);
        assert_eq!(t.push(b(600, 2), 1000, p), Enqueued::Overflow);
        assert_eq!(t.q.queued_bytes(), 600);
    }

    #[test]
    fn drop_oldest_spares_the_frame_in_flight() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::DropOldest;
        t.push(b(400, 1), 1000, p);
        assert_eq!(t.send().map(|s| s.len()), Some(400));
        t.push(b(300, 2), 1000, p);
        t.push(b(300, 3), 1000, p);
        assert_eq!(t.push(b(500, 4), 1000, p), Enqueued::QueuedDropping(2));
        assert_eq!(t.q.queued_bytes(), 900);
        assert_eq!(t.complete(400), 400);
        assert_eq!(t.send().map(|s| s[0]), Some(4));
    }

    #[test]
    fn drop_oldest_spares_a_partly_written_frame() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::DropOldest;
        t.push(b(400, 1), 1000, p);
        t.send();
        t.complete(100);
        t.push(b(300, 2), 1000, p);
        assert_eq!(t.push(b(600, 3), 1000, p), Enqueued::QueuedDropping(1));
        assert_eq!(t.q.queued_bytes(), 900);
        assert_eq!(t.send().map(|s| (s.len(), s[0])), Some((300, 1)));
    }

    #[test]
    fn drop_oldest_drops_a_frame_not_yet_started() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::DropOldest;
        t.push(b(400, 1), 1000, p);
        t.push(b(400, 2), 1000, p);
        assert_eq!(t.push(b(500, 3), 1000, p), Enqueued::QueuedDropping(1));
        assert_eq!(t.q.queued_bytes(), 900);
        assert_eq!(t.send().map(|s| (s.len(), s[0], s[400])), Some((900, 2, 3)));
    }

    #[test]
    fn a_lone_frame_needs_no_deque_storage() {
        let mut t = Fixture::default();
        t.push(Frame::copied(b"pong"), 100, SlowConsumerPolicy::Disconnect);
        let capacity = t.q.inner.as_ref().map(|q| q.waiting.capacity());
        assert_eq!(capacity, Some(0));
        assert_eq!(t.send().unwrap(), b"pong");
    }

    #[test]
    fn a_frame_larger_than_the_cap_overflows_under_any_policy() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::DropOldest;
        assert_eq!(t.push(b(2000, 1), 1000, p), Enqueued::Overflow);
    }

    #[test]
    fn small_frames_are_coalesced_into_one_send() {
        let mut t = Fixture::default();
        for i in 0..5 {
            t.push(b(10, i), BIG, SlowConsumerPolicy::Disconnect);
        }
        let s = t.send().unwrap();
        assert_eq!(s.len(), 50);
        assert_eq!(&s[..10], &[0; 10]);
        assert_eq!(&s[40..], &[4; 10]);
        assert!(t.send().is_none(), "one send in flight at a time");
        assert_eq!(t.complete(50), 50);
        assert!(t.q.is_empty());
        assert_eq!(t.q.queued_bytes(), 0);
    }

    #[test]
    fn coalescing_stops_at_the_limit() {
        let mut t = Fixture::default();
        let half = COALESCE_LIMIT / 2 + 1;
        for i in 0..3 {
            t.push(b(half, i), BIG, SlowConsumerPolicy::Disconnect);
        }
        assert_eq!(t.send().map(|s| s.len()), Some(half));
        t.complete(half);
        assert_eq!(t.send().map(|s| s.len()), Some(half));
    }

    #[test]
    fn partial_sends_resume_where_they_stopped() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::Disconnect;
        t.push(Frame::copied(b"abcdef"), 100, p);
        assert_eq!(t.send().unwrap(), b"abcdef");
        t.complete(2);
        t.push(Frame::copied(b"gh"), 100, p);
        assert_eq!(
            t.send().unwrap(),
            b"cdef",
            "no coalescing behind a partial frame"
        );
        t.complete(4);
        assert_eq!(t.send().unwrap(), b"gh");
        t.complete(2);
        assert!(t.q.is_empty());
    }

    #[test]
    fn the_bytes_in_flight_stay_put_while_the_queue_grows() {
        let mut t = Fixture::default();
        let p = SlowConsumerPolicy::DropOldest;
        t.push(Frame::copied(b"pong"), 1000, p);
        let at = t.q.start_send().map(<[u8]>::as_ptr);
        for i in 0..64 {
            t.push(Frame::copied(&[i; 10]), 1000, p);
        }
        t.push(b(990, 9), 1000, p);
        assert_eq!(t.q.start_send(), None, "still in flight");
        let current = t.q.inner.as_ref().and_then(|q| q.current.as_ref());
        let current = current.map(|f| f.as_slice().as_ptr());
        assert_eq!(current, at, "the kernel's pointer is still valid");
        assert_eq!(t.complete(4), 4);
        assert_eq!(t.send().map(|s| s.len()), Some(990));
    }

    #[test]
    fn short_frames_are_inline_and_long_ones_shared() {
        assert!(matches!(Frame::copied(&[1; INLINE_MAX]), Frame::Inline(_)));
        assert!(matches!(
            Frame::copied(&[1; INLINE_MAX + 1]),
            Frame::Shared(_)
        ));
        assert_eq!(Frame::copied(&[7; 17]).as_slice(), &[7; 17]);
        assert_eq!(
            std::mem::size_of::<Frame>(),
            std::mem::size_of::<Bytes>() + 8,
            "inline frames use the tag's padding, nothing more"
        );
    }

    #[test]
    fn storage_exists_only_while_needed_and_is_reused() {
        let mut t = Fixture::default();
        assert!(t.q.inner.is_none());
        t.push(b(10, 1), 100, SlowConsumerPolicy::Disconnect);
        let storage = t.q.inner.as_deref().map(std::ptr::from_ref);
        t.send();
        t.complete(10);
        assert!(t.q.inner.is_none(), "drained queue keeps no storage");
        assert_eq!(t.pool.len(), 1, "its storage went back to the pool");
        assert_eq!(std::mem::size_of::<Outbound>(), 8);
        let mut other = Outbound::default();
        other.push(
            Frame::copied(b"x"),
            100,
            SlowConsumerPolicy::Disconnect,
            &mut t.pool,
        );
        assert_eq!(other.inner.as_deref().map(std::ptr::from_ref), storage);
        assert!(t.pool.is_empty());
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = QueuePool::default();
        let mut queues: Vec<Outbound> = (0..POOL_MAX + 10).map(|_| Outbound::default()).collect();
        for q in &mut queues {
            q.push(
                Frame::copied(b"p"),
                100,
                SlowConsumerPolicy::Disconnect,
                &mut pool,
            );
            q.start_send();
        }
        for q in &mut queues {
            q.complete_send(1, &mut pool);
        }
        assert_eq!(pool.len(), POOL_MAX);
    }

    #[test]
    fn clear_keeps_only_the_frame_in_flight() {
        let mut t = Fixture::default();
        t.push(b(10, 1), 100, SlowConsumerPolicy::Disconnect);
        t.send();
        t.push(b(10, 2), 100, SlowConsumerPolicy::Disconnect);
        t.q.clear(&mut t.pool);
        assert_eq!(t.q.queued_bytes(), 10);
        t.complete(10);
        assert!(t.q.is_empty());
        assert_eq!(t.pool.len(), 1);
    }

    #[test]
    fn clear_drops_a_partly_written_frame_not_in_flight() {
        let mut t = Fixture::default();
        t.push(b(10, 1), 100, SlowConsumerPolicy::Disconnect);
        t.send();
        t.complete(4);
        t.q.clear(&mut t.pool);
        assert_eq!(t.q.queued_bytes(), 0);
        assert!(t.q.is_empty());
    }

    /// A toy record layer: each seal wraps its plaintext in `[` `]` and
    /// puts out `pending` first (like handshake records), so the tests see
    /// what was sealed together and in what order.
    #[derive(Default)]
    struct Brackets {
        pending: Vec<u8>,
        seals: usize,
        /// Whether each seal had nothing behind it.
        last: Vec<bool>,
    }

    impl Brackets {
        fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) {
            self.seals += 1;
            self.last.push(last);
            out.append(&mut self.pending);
            if !plain.is_empty() {
                out.push(b'[');
                out.extend_from_slice(plain);
                out.push(b']');
            }
        }
    }

    fn sealed_send(t: &mut Fixture, layer: &mut Brackets) -> Option<Vec<u8>> {
        t.q.start_send_sealed(&mut |p, last, out| layer.seal(p, last, out), &mut t.pool)
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn frames_are_sealed_together_when_their_send_starts() {
        let mut t = Fixture::default();
        let mut layer = Brackets::default();
        let p = SlowConsumerPolicy::Disconnect;
        t.push(Frame::copied(b"ab"), 100, p);
        t.push(Frame::copied(b"cd"), 100, p);
        assert_eq!(sealed_send(&mut t, &mut layer).unwrap(), b"[abcd]");
        assert_eq!(t.q.queued_bytes(), 6, "the ciphertext is what is queued");
        // Behind the send in flight, plaintext waits; a partial write keeps
        // the sealed bytes as they are.
        t.push(Frame::copied(b"ef"), 100, p);
        assert_eq!(t.complete(2), 2);
        assert_eq!(sealed_send(&mut t, &mut layer).unwrap(), b"bcd]");
        assert_eq!(layer.seals, 1, "not sealed twice");
        assert_eq!(t.complete(4), 4);
        assert_eq!(sealed_send(&mut t, &mut layer).unwrap(), b"[ef]");
        assert_eq!(t.complete(4), 4);
        assert_eq!(
            layer.last,
            [true, true],
            "nothing waited behind either seal"
        );
        assert!(t.q.is_empty());
        assert_eq!(t.pool.len(), 1, "storage back in the pool");
    }

    #[test]
    fn an_empty_frame_sends_what_the_record_layer_has_pending_or_nothing() {
        let mut t = Fixture::default();
        let mut layer = Brackets {
            pending: b"HS".to_vec(),
            ..Brackets::default()
        };
        let p = SlowConsumerPolicy::Disconnect;
        t.push(Frame::copied(b""), 100, p);
        assert_eq!(sealed_send(&mut t, &mut layer).unwrap(), b"HS");
        assert_eq!(t.complete(2), 2);
        // Nothing pending: no send, and the queue is released.
        t.push(Frame::copied(b""), 100, p);
        assert_eq!(sealed_send(&mut t, &mut layer), None);
        assert!(t.q.is_empty());
        assert_eq!(t.q.queued_bytes(), 0);
        assert_eq!(t.pool.len(), 1);
    }

    #[test]
    fn drop_oldest_never_drops_sealed_bytes() {
        let mut t = Fixture::default();
        let mut layer = Brackets::default();
        let p = SlowConsumerPolicy::DropOldest;
        t.push(b(400, 1), 1000, p);
        let first = sealed_send(&mut t, &mut layer).unwrap();
        assert_eq!(first.len(), 402);
        t.complete(100);
        t.push(b(300, 2), 1000, p);
        // Over the cap: the plaintext behind goes, the sealed record stays.
        assert_eq!(t.push(b(500, 3), 1000, p), Enqueued::QueuedDropping(1));
        assert_eq!(sealed_send(&mut t, &mut layer).unwrap().len(), 302);
    }
}
