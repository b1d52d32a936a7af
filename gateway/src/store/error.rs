//! The store's errors: why an append is refused, why recovery refuses a
//! store directory, and why a store stopped writing.

use std::path::PathBuf;

/// Why [`super::StoreCore::append`] refused a push. The push API answers
/// 507 for the caps, 503 once the store has failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The user's inbox is at its count or byte cap and the policy is
    /// `reject` (or the push alone is over the byte cap).
    #[error("the inbox of this user is full")]
    InboxFull,
    /// The whole store is at its count or byte cap.
    #[error("the store is full")]
    StoreFull,
    /// The user already has a push with this id.
    #[error("push {0} is already stored for this user")]
    Duplicate(u64),
    /// The user name or the payload is too long for a record.
    #[error("the push is too large to store ({0} bytes)")]
    TooLarge(usize),
    /// A write failed earlier; the store refuses every change until restart.
    #[error("the store failed: {0}")]
    Failed(StoreFailure),
}

/// A write the store asked for failed: nothing after it is durable, and the
/// store takes no more appends (like PostgreSQL after a failed fsync, it does
/// not retry over a page cache it can no longer trust).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} of segment {segment} failed: {why}")]
pub struct StoreFailure {
    /// What was being done: create, append, sync.
    pub op: &'static str,
    /// Which segment.
    pub segment: u32,
    /// The OS error.
    pub why: String,
}

/// Why recovery refuses a store: nothing is silently emptied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A record in the middle of a segment is corrupt: records follow it,
    /// so dropping it would lose them.
    #[error("{path}: corrupt record at offset {offset}: {why}; refusing to start (move the file away to drop what it holds)", path = path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// Segments were given out of order (the loader sorts them).
    #[error("{path}: segment {seq} comes after segment {previous}", path = path.display())]
    OutOfOrder {
        /// The segment file.
        path: PathBuf,
        /// Its number.
        seq: u32,
        /// The number before it.
        previous: u32,
    },
    /// A file could not be read, listed or repaired.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
