//! The durable store of pushes sent with `"ack": true`, sans-IO: one per
//! shard, kept by the users' owner shard (issue 17, DESIGN.md §5).
//!
//! - [`StoreCore`] (`store_core.rs`, `schedule.rs`, `compaction.rs`): per-user
//!   inboxes of 32-byte index entries in RAM (`inbox.rs`), payloads on disk
//!   in an append-only segmented log (`log.rs`, format in `record.rs`),
//!   Ack deadlines with backoff (`redelivery.rs`), TTLs, caps, dead
//!   letters, and group commit: the core emits [`StoreOp`]s and learns
//!   that they completed through [`StoreCore::on_op_done`]; an append is
//!   durable once a [`StoreEvent::Committed`] covers its [`Ticket`].
//! - [`Recovery`] (`recovery.rs`): rebuilds a core from segment bytes;
//!   torn tails are cut, corruption in the middle is refused.
//! - [`IdBlocks`] (`ids.rs`): push ids from durable reservations, so ids
//!   never repeat across restarts.
//! - `file_io.rs`: [`FileExecutor`] performs the ops on real files,
//!   [`load_dir`] recovers a directory; `writer.rs`: [`Writer`], the
//!   thread that runs the executor so a shard never waits for a disk.
//!
//! A caller's turn: `append` / `on_delivered` / `ack` / `load` as its
//! inputs demand, then `take_ops` (hand them to the executor, in order),
//! `take_events` (answer `"stored": true` for committed tickets, redeliver,
//! report dead letters), and `on_tick` at `next_deadline`.

mod api;
mod compaction;
mod error;
pub mod file_io;
mod ids;
mod inbox;
mod log;
mod ops;
mod record;
mod recovery;
mod redelivery;
mod schedule;
mod settings;
mod store_core;
#[cfg(test)]
mod tests;
mod writer;

pub use api::{Appended, Delivery, NewPush, PendingPush, StoreEvent, StoreStats};
pub use error::{AppendError, RecoveryError, StoreFailure};
pub use file_io::{FileExecutor, load_dir, segment_path};
pub use ids::IdBlocks;
pub use ops::{OpDone, OpId, StoreOp, StoreOpKind, Ticket};
pub use record::{Flaw, MAX_RECORD_LEN, Record, RemoveReason, SEGMENT_MAGIC};
pub use recovery::{Recovery, RecoveryReport, TornTail, Verdict};
pub use settings::{StoreSettings, shard_dir};
pub use store_core::StoreCore;
pub use writer::Writer;
