//! Setting up a ring the way the gateway's shards and the load harness both
//! use it: one issuer, a sparse table of direct descriptors for the
//! connections, and a provided-buffer ring as the receive pool.

use std::io;

use io_uring::IoUring;

use super::bufring::{BufRing, BufRingError};

/// Buffer group id of a ring's receive pool.
pub const BUF_GROUP: u16 = 0;

/// How to set up a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// Run deferred task work only when the issuer waits (the gateway's
    /// shards, which batch their wake-ups); else cooperative task work.
    pub defer_taskrun: bool,
    /// Direct-descriptor slots (bounded by RLIMIT_NOFILE).
    pub files: u32,
    /// Receive buffers in the pool (a power of two).
    pub buffers: u32,
    /// Bytes per receive buffer.
    pub buffer_size: u32,
}

/// Why a ring could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The ring could not be created.
    #[error("cannot create io_uring ring: {0}")]
    Create(io::Error),
    /// The direct-descriptor table could not be registered.
    #[error("cannot register {slots} direct descriptors (RLIMIT_NOFILE bounds it): {source}")]
    Files {
        /// Slots requested.
        slots: u32,
        /// The OS error.
        source: io::Error,
    },
    /// The receive buffer pool could not be set up.
    #[error(transparent)]
    Buffers(#[from] BufRingError),
}

/// A ring and its receive pool, set up per `spec`. The pool points into
/// the ring's registration: drop the ring first.
pub fn build(spec: &RingSpec) -> Result<(IoUring, BufRing), RingError> {
    let mut builder = IoUring::builder();
    builder.setup_single_issuer().setup_cqsize(spec.cq_entries);
    if spec.defer_taskrun {
        builder.setup_defer_taskrun();
    } else {
        builder.setup_coop_taskrun();
    }
    let ring = builder.build(spec.sq_entries).map_err(RingError::Create)?;
    ring.submitter()
        .register_files_sparse(spec.files)
        .map_err(|source| RingError::Files {
            slots: spec.files,
            source,
        })?;
    let bufs = BufRing::new(&ring, BUF_GROUP, spec.buffers, spec.buffer_size)?;
    Ok((ring, bufs))
}
