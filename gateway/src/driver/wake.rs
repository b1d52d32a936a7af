//! When a shard lets its wake-ups gather, on either driver.
//!
//! An idle gateway still hears from every client once a heartbeat: 38,000
//! connections at 30 s are 1,267 Pings a second, and waking the shard's
//! thread once per Ping costs more than answering it. So once a shard has
//! seen nothing but client traffic (frames in, frames out, closes) for a
//! while, it sleeps through a short window and takes what gathered in one
//! go. The io_uring driver asks the kernel to hold its wake-up until a
//! batch of completions is ready or the window has passed since it went
//! to sleep (io_uring's min-wait, Linux 6.12); the epoll driver sleeps on
//! its urgent descriptors only for the window, then collects every event.
//!
//! Anything someone is waiting on (a push arriving by the control API or a
//! mailbox, a control request, a backend reply, a new connection) ends the
//! quiet spell, and the shard wakes for every event again until the next
//! one. So the batching never slows a busy gateway. On a quiet one, the
//! urgent watch (`crate::uring::urgent` on io_uring, the urgent epoll set
//! on epoll) ends a batched wait as soon as a push, a control request or a
//! connection arrives; only client frames wait for the window.

use protocol::time::Millis;

/// Completions that end a batched wait early: a burst of this many wakes
/// the shard before the window is over (fewer when the completion queue
/// is small, see [`WakeBatching::new`]).
pub const BATCH_COMPLETIONS: u32 = 128;

/// How the shard waits next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Completions to wait for before the window is over.
    pub completions: u32,
    /// The window, in microseconds from the start of the wait: after it,
    /// any one completion wakes the shard.
    pub window_us: u32,
}

/// The shard's wake-up batching policy: quiet spells and their windows.
#[derive(Debug, Clone)]
pub struct WakeBatching {
    /// Window while quiet, µs; 0 when batching is off.
    window_us: u32,
    /// Completions that end a batched wait early.
    completions: u32,
    /// How long only client traffic must be seen before batching.
    quiet_after_ms: u64,
    /// When something someone waits on last happened.
    last_busy: Millis,
}

impl WakeBatching {
    /// A policy with a `window_ms` window after `quiet_after_ms` of client
    /// traffic only, starting busy at `now`, for a ring whose completion
    /// queue has `cq_entries` slots (a batch never asks for more than half
    /// of them). Off when `window_ms` is 0 or the kernel cannot do min-wait
    /// (`supported`).
    pub fn new(
        window_ms: u32,
        quiet_after_ms: u32,
        supported: bool,
        cq_entries: u32,
        now: Millis,
    ) -> Self {
        let window_us = if supported {
            window_ms.saturating_mul(1000)
        } else {
            0
        };
        Self {
            window_us,
            completions: BATCH_COMPLETIONS.min(cq_entries / 2).max(1),
            quiet_after_ms: u64::from(quiet_after_ms),
            last_busy: now,
        }
    }

    /// Whether this policy ever batches.
    pub fn is_enabled(&self) -> bool {
        self.window_us > 0
    }

    /// Records work that someone is waiting on: the shard stays prompt for
    /// the next quiet period.
    pub fn note_busy(&mut self, now: Millis) {
        self.last_busy = now;
    }

    /// How to wait at `now` when the next timer is due in `timeout_us`
    /// (`None`: no timer): `None` means wake for the first completion. The
    /// window never outlasts the timer.
    pub fn batch(&self, now: Millis, timeout_us: Option<u64>) -> Option<Batch> {
        if self.window_us == 0 || now.since(self.last_busy) < self.quiet_after_ms {
            return None;
        }
        let window_us = match timeout_us {
            Some(t) => u32::try_from(t).unwrap_or(u32::MAX).min(self.window_us),
            None => self.window_us,
        };
        (window_us > 0).then_some(Batch {
            completions: self.completions,
            window_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_only_after_a_quiet_period() {
        let mut w = WakeBatching::new(20, 1000, true, 4096, Millis(5_000));
        assert!(w.is_enabled());
        assert_eq!(w.batch(Millis(5_999), None), None, "still busy");
        let quiet = Batch {
            completions: BATCH_COMPLETIONS,
            window_us: 20_000,
        };
        assert_eq!(w.batch(Millis(6_000), None), Some(quiet));
        w.note_busy(Millis(7_000));
        assert_eq!(w.batch(Millis(7_500), None), None, "a push ends the spell");
        assert_eq!(w.batch(Millis(8_000), None), Some(quiet));
    }

    #[test]
    fn the_window_never_outlasts_the_next_timer() {
        let w = WakeBatching::new(20, 100, true, 4096, Millis(0));
        let at = Millis(1_000);
        assert_eq!(w.batch(at, Some(5_000)).map(|b| b.window_us), Some(5_000));
        assert_eq!(w.batch(at, Some(90_000)).map(|b| b.window_us), Some(20_000));
        assert_eq!(w.batch(at, Some(0)), None, "a timer due now");
    }

    #[test]
    fn a_batch_fits_in_half_the_completion_queue() {
        let small = WakeBatching::new(20, 100, true, 64, Millis(0));
        let b = small.batch(Millis(1_000), None).map(|b| b.completions);
        assert_eq!(b, Some(32));
        let tiny = WakeBatching::new(20, 100, true, 1, Millis(0));
        assert_eq!(
            tiny.batch(Millis(1_000), None).map(|b| b.completions),
            Some(1)
        );
    }

    #[test]
    fn off_when_configured_off_or_unsupported() {
        let off = WakeBatching::new(0, 100, true, 4096, Millis(0));
        assert!(!off.is_enabled());
        assert_eq!(off.batch(Millis(10_000), None), None);
        let old_kernel = WakeBatching::new(20, 100, false, 4096, Millis(0));
        assert!(!old_kernel.is_enabled());
        assert_eq!(old_kernel.batch(Millis(10_000), None), None);
    }
}
