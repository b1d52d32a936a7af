//! The thin io_uring shell: how operations are named in completion
//! entries, and the provided-buffer ring that is the shard's receive pool.

pub mod bufring;
pub mod op;
