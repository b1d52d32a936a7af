//! The one way entries go into a ring's submission queue, for every user of
//! a ring: the shard's client streams, its control and backend
//! connections, and the load harness.
//!
//! Entries are pushed in one piece: when they do not fit, what is queued is
//! submitted first and the push retried, so a chain of linked entries is
//! never split over two submissions (the link would be lost).

use io_uring::{IoUring, squeue};

/// Why entries could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The entries are more than the whole submission queue holds.
    #[error("{entries} linked entries do not fit a submission queue of {capacity}")]
    TooMany {
        /// Entries asked for.
        entries: usize,
        /// Submission queue size.
        capacity: usize,
    },
    /// Submitting to make room failed.
    #[error("io_uring_enter failed while making room: {0}")]
    Enter(std::io::Error),
}

/// Queues `entries` back to back, submitting what is queued first when they
/// do not fit. A failed submission to make room is retried (EBUSY, EINTR:
/// the kernel is busy with completions) up to `MAX_RETRIES` times, then
/// reported.
///
/// # Safety
/// Every buffer, address or timespec an entry points to must stay valid
/// and unmoved until the kernel is done with it: until the entry's
/// completion for buffers and addresses, until its submission for a
/// timespec. Entries may stay queued past this call (until the next
/// submission), so stack memory never qualifies.
pub unsafe fn push(ring: &mut IoUring, entries: &[squeue::Entry]) -> Result<(), PushError> {
    const MAX_RETRIES: u32 = 1024;
    let capacity = ring.params().sq_entries() as usize;
    if entries.len() > capacity {
        return Err(PushError::TooMany {
            entries: entries.len(),
            capacity,
        });
    }
    let mut retries = 0;
    loop {
        // SAFETY: the caller vouches for what the entries point to.
        if unsafe { ring.submission().push_multiple(entries) }.is_ok() {
            return Ok(());
        }
        if let Err(e) = ring.submit() {
            retries += 1;
            if retries >= MAX_RETRIES {
                return Err(PushError::Enter(e));
            }
            std::thread::yield_now();
        }
    }
}

/// [`push`], retrying for as long as the kernel is busy: for a shard, whose
/// entries must not be lost (a lost close would leak its slot). Entries
/// that can never fit are dropped with an error in the log.
///
/// # Safety
/// As for [`push`].
pub unsafe fn push_until_queued(ring: &mut IoUring, entries: &[squeue::Entry]) {
    loop {
        // SAFETY: the caller vouches for what the entries point to.
        match unsafe { push(ring, entries) } {
            Ok(()) => return,
            Err(e @ PushError::TooMany { .. }) => {
                tracing::error!("dropping submission: {e}");
                return;
            }
            Err(e) => tracing::warn!("submission queue full and {e}; retrying"),
        }
    }
}
