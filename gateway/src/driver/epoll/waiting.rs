//! How an epoll shard sleeps: one `epoll_wait` until an event or the next
//! deadline, or, on a quiet shard (see [`crate::driver::wake`]), a sleep
//! of one window on the urgent set only, then one sweep of every event
//! that gathered.
//!
//! The urgent set is a second epoll instance holding the descriptors
//! someone waits on: the doorbell, the listeners, the control and backend
//! connections. It is edge-triggered like the main set, and only wakes
//! the shard: what happened is read from the main set, which holds every
//! descriptor. An edge the urgent set kept from a busy moment ends the
//! next window early once, which costs a wake-up and nothing else.

use std::os::fd::RawFd;

use protocol::time::Millis;

use super::poller::{Poller, STREAM_EVENTS};
use super::{EpollIo, Shard};
use crate::driver::ShardError;

impl Shard {
    /// Sleeps until an event or the next deadline; not at all when work
    /// is waiting; on a quiet shard, through a batching window first.
    pub(super) fn wait(&mut self) -> Result<(), ShardError> {
        let now = self.shell.clock.now();
        let busy = !self.io.ready.is_empty()
            || self.io.listeners.iter().any(|l| l.accepts.busy())
            || self.io.control_accepts.busy();
        let timeout_ms = if busy {
            Some(0)
        } else {
            self.next_wake(now).map(|at| at.0.saturating_sub(now.0))
        };
        let batch = self
            .wake
            .batch(now, timeout_ms.map(|ms| ms.saturating_mul(1000)));
        let poll_err = |source| ShardError::Poller {
            shard: self.shell.index,
            source,
        };
        let Some(batch) = batch else {
            return self
                .io
                .poller
                .wait(&mut self.io.events, epoll_timeout(timeout_ms))
                .map_err(poll_err);
        };
        self.shell.core.stats_mut().batched_waits += 1;
        let window_ms = u64::from(batch.window_us).div_ceil(1000);
        self.io
            .urgent
            .wait(&mut self.io.urgent_events, epoll_timeout(Some(window_ms)))
            .map_err(poll_err)?;
        let urgent = !self.io.urgent_events.is_empty();
        self.io
            .poller
            .wait(&mut self.io.events, 0)
            .map_err(poll_err)?;
        if urgent || !self.io.events.is_empty() {
            return Ok(());
        }
        // Nothing gathered in the window: the first event wakes the shard.
        let left = timeout_ms.map(|ms| ms.saturating_sub(window_ms));
        self.io
            .poller
            .wait(&mut self.io.events, epoll_timeout(left))
            .map_err(poll_err)
    }

    /// The earliest deadline the shard must wake for: the core's and the
    /// driver's own (connects in progress, accept pauses).
    fn next_wake(&self, now: Millis) -> Option<Millis> {
        [
            self.shell.next_deadline(now),
            self.io.connects.iter().map(|c| c.2).min(),
            self.io
                .listeners
                .iter()
                .filter_map(|l| l.accepts.paused_until)
                .min(),
            self.io.control_accepts.paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl EpollIo {
    /// Adds `fd` (a control or backend connection) to the urgent set, so
    /// its input ends a batched wait. Without it the input still gets
    /// handled, only up to one batching window later.
    pub(super) fn watch_urgent(&self, fd: RawFd) {
        if let Err(e) = self.urgent.add(fd, STREAM_EVENTS, 0) {
            tracing::warn!(
                "descriptor not in the urgent set (its input may wait one idle_batch_ms): {e}"
            );
        }
    }
}

/// An `epoll_wait` timeout: milliseconds, `-1` for none.
fn epoll_timeout(ms: Option<u64>) -> i32 {
    ms.map_or(-1, |ms| i32::try_from(ms).unwrap_or(i32::MAX))
}

/// The urgent set of a shard with its doorbell and listeners in it.
pub(super) fn urgent_set(always: &[RawFd]) -> std::io::Result<Poller> {
    let urgent = Poller::new()?;
    for &fd in always {
        urgent.add(fd, super::poller::READ_EVENTS, 0)?;
    }
    Ok(urgent)
}

#[cfg(test)]
mod tests {
    use super::epoll_timeout;

    #[test]
    fn timeouts_fit_epoll_wait() {
        assert_eq!(epoll_timeout(None), -1);
        assert_eq!(epoll_timeout(Some(0)), 0);
        assert_eq!(epoll_timeout(Some(250)), 250);
        assert_eq!(epoll_timeout(Some(u64::MAX)), i32::MAX);
    }
}
