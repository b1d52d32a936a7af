//! The drivers of a shard: the code that makes its syscalls, around the
//! same sans-IO core. [`shell`] is what every driver does the same way;
//! [`iouring`] is the io_uring driver, [`epoll`] the one for hosts where
//! io_uring is not allowed. [`wake`] is the idle wake-up batching both
//! drivers follow.

pub mod epoll;
pub mod iouring;
pub mod shell;
pub mod sockets;
pub mod wake;

use std::io;

use crate::uring::ring::RingError;

/// Why a shard could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The ring, its descriptor table or its receive pool could not be set
    /// up.
    #[error("shard {shard}: {source}")]
    Ring {
        /// Shard index.
        shard: usize,
        /// What failed.
        source: RingError,
    },
    /// The durable store's writer thread could not be started.
    #[error("shard {shard}: cannot start the store's writer thread: {source}")]
    Store {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The shard thread panicked.
    #[error("shard {shard} panicked")]
    Panicked {
        /// Shard index.
        shard: usize,
    },
    /// The backend client could not be set up (bad or unresolvable URL).
    #[error("shard {shard}: {source}")]
    Backend {
        /// Shard index.
        shard: usize,
        /// What failed.
        source: crate::backend::BackendError,
    },
    /// The epoll instance of the urgent watch could not be set up.
    #[error("shard {shard}: cannot set up the urgent watch (epoll): {source}")]
    Urgent {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The epoll driver's instance or its listeners could not be set up,
    /// or waiting on it failed.
    #[error("shard {shard}: epoll: {source}")]
    Poller {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting on the ring failed.
    #[error("shard {shard}: io_uring_enter failed: {source}")]
    Enter {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
}
