//! What the store core asks its executor to do with files, and how the
//! executor reports back. The core makes no syscall: it queues
//! [`StoreOp`]s, an executor (`file_io.rs` on a writer thread, or a test's
//! memory) performs them **in the order they were taken**, and reports
//! each with [`super::StoreCore::on_op_done`], naming the same [`OpId`].

/// Names one operation; its completion names it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// A ticket for an append: the number of the group commit that will
/// carry it. The append is durable once a
/// [`super::StoreEvent::Committed`] says `through >= ticket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// One file operation for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOp {
    /// Its name.
    pub id: OpId,
    /// What to do.
    pub kind: StoreOpKind,
}

/// What a [`StoreOp`] does. Segments are files named by number in the
/// store's directory (`file_io::segment_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOpKind {
    /// Create segment `segment` (it must not exist).
    Create {
        /// Its number.
        segment: u32,
    },
    /// `fsync` the store's directory, so created and removed files stay
    /// so (only with `durability = "fsync"`).
    SyncDir,
    /// Write `bytes` at `offset` of segment `segment`.
    Append {
        /// Which segment.
        segment: u32,
        /// Where in it (always its current end).
        offset: u64,
        /// What to write.
        bytes: Vec<u8>,
    },
    /// `fdatasync` segment `segment` (only with `durability = "fsync"`).
    Sync {
        /// Which segment.
        segment: u32,
    },
    /// Read `len` bytes at `offset` of segment `segment` (one record).
    Read {
        /// Which segment.
        segment: u32,
        /// Where in it.
        offset: u64,
        /// How many bytes.
        len: u32,
    },
    /// Delete segment `segment`: none of its records is needed any more.
    Remove {
        /// Which segment.
        segment: u32,
    },
}

/// How a [`StoreOp`] ended.
#[derive(Debug)]
pub enum OpDone {
    /// It was done.
    Done,
    /// A [`StoreOpKind::Read`]: the bytes.
    Read(Vec<u8>),
    /// It failed.
    Failed(std::io::Error),
}
