//! How a shard sleeps: one `io_uring_enter` that submits what is queued
//! and waits for completions, for the next timer, or, on a quiet shard,
//! for a batch of completions (see [`crate::driver::wake`]), ended early by the
//! urgent watch ([`crate::uring::urgent`]) when someone is waiting.

use io_uring::types;

use super::{Shard, ShardError};

impl Shard {
    /// Submits queued SQEs and sleeps until a completion or the next timer.
    pub(super) fn wait(&mut self) -> Result<(), ShardError> {
        let now = self.shell.clock.now();
        let wake = self.shell.next_deadline(now);
        let timeout_ms = wake.map(|at| at.0.saturating_sub(now.0));
        let batch = self
            .wake
            .batch(now, timeout_ms.map(|ms| ms.saturating_mul(1000)));
        let (want, min_wait_us) = match batch {
            Some(b) => {
                self.shell.core.stats_mut().batched_waits += 1;
                self.arm_urgent_watch();
                (b.completions, b.window_us)
            }
            None => (1, 0),
        };
        let result = match timeout_ms {
            None if min_wait_us == 0 => self.io.ring.submitter().submit_and_wait(1),
            None => {
                let args = types::SubmitArgs::new().min_wait_usec(min_wait_us);
                self.io
                    .ring
                    .submitter()
                    .submit_with_args(want as usize, &args)
            }
            Some(ms) => {
                let ts = types::Timespec::new()
                    .sec(ms / 1000)
                    .nsec(((ms % 1000) * 1_000_000) as u32);
                let args = types::SubmitArgs::new()
                    .timespec(&ts)
                    .min_wait_usec(min_wait_us);
                self.io
                    .ring
                    .submitter()
                    .submit_with_args(want as usize, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(source) => Err(ShardError::Enter {
                shard: self.shell.index,
                source,
            }),
        }
    }

    /// Arms the urgent watch for a batched wait, unless it is armed.
    fn arm_urgent_watch(&mut self) {
        if let Some(entries) = self.io.urgent.arm() {
            self.io.push_linked(&entries);
        }
    }

    /// Adds a new control connection to the urgent watch, so a request on
    /// it ends a batched wait. Without it the request still gets answered,
    /// only up to one batching window later.
    pub(super) fn watch_control_conn(&mut self, fd: i32) {
        if let Err(e) = self.io.urgent.add(fd) {
            tracing::warn!(
                shard = self.shell.index,
                "control connection not watched (requests may wait one idle_batch_ms): {e}"
            );
        }
    }
}
