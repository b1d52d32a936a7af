//! The thin io_uring shell: how operations are named in completion
//! entries, setting up a ring, the one way entries are queued, the provided-buffer ring that
//! is the shard's receive pool, and the watch that ends a batched wait when
//! someone is waiting.

pub mod bufring;
pub mod entries;
pub mod op;
pub mod ring;
pub mod sq;
pub mod urgent;
