//! A connection's bounded outbound queue: frames waiting to be written,
//! shared push payloads included without copying, with the slow-consumer
//! policy applied when the queue would exceed its byte cap.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tuning::config::SlowConsumerPolicy;

/// Most bytes merged into one send when several frames are queued.
pub const COALESCE_LIMIT: usize = 64 * 1024;

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

/// Frames waiting to be written to one connection. One pointer when
/// nothing waits (the common case for an idle connection); the queue's
/// storage exists only while frames are queued or a send is in flight.
#[derive(Debug, Default)]
pub struct Outbound {
    inner: Option<Box<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Bytes queued (including the part of the front already sent).
    queued: u32,
    /// Bytes of the front frame already written.
    front_sent: u32,
    /// Whether the front frame is being written by an in-flight send.
    in_flight: bool,
}

impl Outbound {
    /// Bytes waiting, including a partly sent front frame.
    pub fn queued_bytes(&self) -> u32 {
        self.inner.as_ref().map_or(0, |q| q.queued)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.inner.as_ref().is_none_or(|q| q.frames.is_empty())
    }

    /// Whether a send is in flight.
    pub fn in_flight(&self) -> bool {
        self.inner.as_ref().is_some_and(|q| q.in_flight)
    }

    /// Frees the queue's storage once nothing waits and nothing is in flight.
    fn release_if_idle(&mut self) {
        if self
            .inner
            .as_ref()
            .is_some_and(|q| q.frames.is_empty() && !q.in_flight)
        {
            self.inner = None;
        }
    }

    /// Offers `frame`; `cap` is the byte cap and `policy` what to do when
    /// it would be exceeded.
    pub fn push(&mut self, frame: Bytes, cap: u32, policy: SlowConsumerPolicy) -> Enqueued {
        let q = self.inner.get_or_insert_with(Box::default);
        let outcome = q.push(frame, cap, policy);
        self.release_if_idle();
        outcome
    }

    /// The bytes to write next, marking a send in flight; `None` when a
    /// send is already in flight or nothing waits. Several small frames
    /// are merged into one buffer so one send carries them all.
    pub fn start_send(&mut self) -> Option<&[u8]> {
        self.inner.as_mut()?.start_send()
    }

    /// Accounts a completed send of `written` bytes; returns the number of
    /// bytes that left the queue.
    pub fn complete_send(&mut self, written: usize) -> usize {
        let n = self.inner.as_mut().map_or(0, |q| q.complete_send(written));
        self.release_if_idle();
        n
    }

    /// Drops everything not in flight (the connection is going away).
    pub fn clear(&mut self) {
        if let Some(q) = self.inner.as_mut() {
            q.clear();
        }
        self.release_if_idle();
    }
}

impl Queue {
    fn push(&mut self, frame: Bytes, cap: u32, policy: SlowConsumerPolicy) -> Enqueued {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if self.queued.saturating_add(len) <= cap {
            self.queued += len;
            self.frames.push_back(frame);
            return Enqueued::Queued;
        }
        if policy == SlowConsumerPolicy::Disconnect || len > cap {
            return Enqueued::Overflow;
        }
        // Drop from the front, sparing a frame that is being written.
        let keep_front = usize::from(self.in_flight || self.front_sent > 0);
        let mut dropped = 0;
        while self.queued.saturating_add(len) > cap && self.frames.len() > keep_front {
            let Some(old) = self.frames.remove(keep_front) else {
                break;
            };
            self.queued -= old.len() as u32;
            dropped += 1;
        }
        if self.queued.saturating_add(len) > cap {
            return Enqueued::Overflow;
        }
        self.queued += len;
        self.frames.push_back(frame);
        Enqueued::QueuedDropping(dropped)
    }

    fn start_send(&mut self) -> Option<&[u8]> {
        if self.in_flight || self.frames.is_empty() {
            return None;
        }
        if self.front_sent == 0 && self.frames.len() > 1 {
            self.coalesce();
        }
        self.in_flight = true;
        let front = self.frames.front()?;
        Some(&front[self.front_sent as usize..])
    }

    fn coalesce(&mut self) {
        let mut total = 0;
        let mut n = 0;
        for f in &self.frames {
            if n > 0 && total + f.len() > COALESCE_LIMIT {
                break;
            }
            total += f.len();
            n += 1;
        }
        if n < 2 {
            return;
        }
        let mut merged = BytesMut::with_capacity(total);
        for f in self.frames.drain(..n) {
            merged.extend_from_slice(&f);
        }
        self.frames.push_front(merged.freeze());
    }

    fn complete_send(&mut self, written: usize) -> usize {
        self.in_flight = false;
        let Some(front) = self.frames.front() else {
            return 0;
        };
        let remaining = front.len() - self.front_sent as usize;
        let written = written.min(remaining);
        if written == remaining {
            self.frames.pop_front();
            self.queued -= remaining as u32;
            self.front_sent = 0;
        } else {
            self.front_sent += written as u32;
            self.queued -= written as u32;
        }
        written
    }

    fn clear(&mut self) {
        let keep = usize::from(self.in_flight);
        while self.frames.len() > keep {
            if let Some(f) = self.frames.pop_back() {
                self.queued -= f.len() as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn queues_under_the_cap_and_overflows_past_it() {
        let mut q = Outbound::default();
        assert_eq!(
            q.push(b(600, 1), 1000, SlowConsumerPolicy::Disconnect),
            Enqueued::Queued
        );
        assert_eq!(
            q.push(b(600, 2), 1000, SlowConsumerPolicy::Disconnect),
            Enqueued::Overflow
        );
        assert_eq!(q.queued_bytes(), 600);
    }

    #[test]
    fn drop_oldest_spares_the_frame_in_flight() {
        let mut q = Outbound::default();
        let p = SlowConsumerPolicy::DropOldest;
        q.push(b(400, 1), 1000, p);
        assert_eq!(q.start_send().map(<[u8]>::len), Some(400));
        q.push(b(300, 2), 1000, p);
        q.push(b(300, 3), 1000, p);
        assert_eq!(q.push(b(500, 4), 1000, p), Enqueued::QueuedDropping(2));
        assert_eq!(q.queued_bytes(), 900);
        assert_eq!(q.complete_send(400), 400);
        assert_eq!(q.start_send().map(|s| s[0]), Some(4));
    }

    #[test]
    fn a_frame_larger_than_the_cap_overflows_under_any_policy() {
        let mut q = Outbound::default();
        assert_eq!(
            q.push(b(2000, 1), 1000, SlowConsumerPolicy::DropOldest),
            Enqueued::Overflow
        );
    }

    #[test]
    fn small_frames_are_coalesced_into_one_send() {
        let mut q = Outbound::default();
        for i in 0..5 {
            q.push(b(10, i), 1 << 20, SlowConsumerPolicy::Disconnect);
        }
        let s = q.start_send().unwrap().to_vec();
        assert_eq!(s.len(), 50);
        assert_eq!(&s[..10], &[0; 10]);
        assert_eq!(&s[40..], &[4; 10]);
        assert!(q.start_send().is_none(), "one send in flight at a time");
        assert_eq!(q.complete_send(50), 50);
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn partial_sends_resume_where_they_stopped() {
        let mut q = Outbound::default();
        q.push(
            Bytes::from_static(b"abcdef"),
            100,
            SlowConsumerPolicy::Disconnect,
        );
        assert_eq!(q.start_send().unwrap(), b"abcdef");
        q.complete_send(2);
        q.push(
            Bytes::from_static(b"gh"),
            100,
            SlowConsumerPolicy::Disconnect,
        );
        assert_eq!(
            q.start_send().unwrap(),
            b"cdef",
            "no coalescing behind a partial front"
        );
        q.complete_send(4);
        assert_eq!(q.start_send().unwrap(), b"gh");
        q.complete_send(2);
        assert!(q.is_empty());
    }

    #[test]
    fn storage_exists_only_while_needed() {
        let mut q = Outbound::default();
        assert!(q.inner.is_none());
        q.push(b(10, 1), 100, SlowConsumerPolicy::Disconnect);
        q.start_send();
        q.complete_send(10);
        assert!(q.inner.is_none(), "drained queue keeps no storage");
        assert_eq!(std::mem::size_of::<Outbound>(), 8);
    }

    #[test]
    fn clear_keeps_only_the_frame_in_flight() {
        let mut q = Outbound::default();
        q.push(b(10, 1), 100, SlowConsumerPolicy::Disconnect);
        q.start_send();
        q.push(b(10, 2), 100, SlowConsumerPolicy::Disconnect);
        q.clear();
        assert_eq!(q.queued_bytes(), 10);
    }
}
