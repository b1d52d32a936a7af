//! The types the store core's callers see: a push to store, what storing
//! it gave, what a delivery may do, the events out, the counters.

use std::sync::Arc;

use super::error::StoreFailure;
use super::ops::Ticket;

/// A durable push to keep in one user's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPush<'a> {
    /// Its id (from the gateway's id source: the same for every recipient).
    pub id: u64,
    /// The recipient.
    pub user: &'a str,
    /// How long to keep it; `None` or 0: `[store] ttl_ms`.
    pub ttl_ms: Option<u64>,
    /// The bytes to hand back on redelivery (opaque to the store).
    pub payload: &'a [u8],
}

/// What [`super::StoreCore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The push is durable once a [`StoreEvent::Committed`] reaches this.
    pub ticket: Ticket,
    /// Older pushes of the user dropped to make room (drop-oldest); each
    /// is also a [`StoreEvent::Dropped`].
    pub dropped: u32,
}

/// What the caller may do with a push it is about to send
/// ([`super::StoreCore::on_delivered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send it: this is delivery number `deliveries` (more than 1: a
    /// redelivery, which the frame says).
    Send {
        /// The count including this one.
        deliveries: u16,
    },
    /// Do not send: it had its deliveries and is dead-lettered now (also a
    /// [`StoreEvent::DeadLettered`]).
    DeadLettered,
    /// Do not send: its TTL passed and it is removed now (also a
    /// [`StoreEvent::Expired`]).
    Expired,
    /// Do not send: the store holds no such push (acked meanwhile).
    Unknown,
}

/// One pending push as the store's index knows it (no payload: that is on
/// disk, see [`super::StoreCore::load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPush {
    /// Its id.
    pub id: u64,
    /// Deliveries so far.
    pub deliveries: u16,
    /// Delivered and its Ack awaited.
    pub in_flight: bool,
    /// Wall-clock ms after which it expires.
    pub expires_unix_ms: u64,
    /// Its record's size on disk (what the byte caps count).
    pub bytes: u32,
}

/// What the store tells its caller, in order ([`super::StoreCore::take_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Every append whose ticket is at most `through` is durable: its push
    /// may be answered `"stored": true`.
    Committed {
        /// The highest durable ticket.
        through: Ticket,
    },
    /// A write failed: no append after the last `Committed` is durable and
    /// the store refuses changes from now on.
    Failed(StoreFailure),
    /// A delivered push was not acked in time: send it again if the user
    /// has a session (load it first), else it waits for the next one.
    Redeliver {
        /// Whose.
        user: Arc<str>,
        /// Which.
        id: u64,
        /// Deliveries so far.
        deliveries: u16,
    },
    /// A push reached `max_deliveries` unacked and was removed: report it
    /// as `undelivered`.
    DeadLettered {
        /// Whose.
        user: Arc<str>,
        /// Which.
        id: u64,
        /// Its deliveries.
        deliveries: u16,
    },
    /// A push outlived its TTL and was removed.
    Expired {
        /// Whose.
        user: Arc<str>,
        /// Which.
        id: u64,
        /// How many times it went out.
        deliveries: u16,
    },
    /// A push was dropped to make room in a full inbox (drop-oldest).
    Dropped {
        /// Whose.
        user: Arc<str>,
        /// Which.
        id: u64,
        /// How many times it went out.
        deliveries: u16,
    },
    /// The payload asked for with [`super::StoreCore::load`].
    Loaded {
        /// Whose.
        user: Arc<str>,
        /// Which.
        id: u64,
        /// Deliveries so far.
        deliveries: u16,
        /// When it was first stored (wall-clock ms).
        stored_unix_ms: u64,
        /// The bytes given to [`super::StoreCore::append`].
        payload: Vec<u8>,
    },
    /// A [`super::StoreCore::load`] could not be read back (I/O error or a
    /// record that no longer checks); the push stays in the inbox.
    LoadFailed {
        /// Whose.
        user: Arc<str>,
        /// Which.
        id: u64,
        /// Why.
        why: String,
    },
}

/// The store's counters and gauges ([`super::StoreCore::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Pushes stored.
    pub stored: u64,
    /// Deliveries (first and again).
    pub delivered: u64,
    /// Deliveries after the first.
    pub redelivered: u64,
    /// Pushes removed by an Ack.
    pub acked: u64,
    /// Pushes removed by their TTL.
    pub expired: u64,
    /// Pushes removed after `max_deliveries`.
    pub dead_lettered: u64,
    /// Pushes dropped from a full inbox (drop-oldest).
    pub dropped_oldest: u64,
    /// Pushes removed by a purge.
    pub purged: u64,
    /// Appends refused: the user's inbox was full (reject).
    pub rejected_inbox_full: u64,
    /// Appends refused: the whole store was full.
    pub rejected_store_full: u64,
    /// Group commits completed.
    pub commits: u64,
    /// Their total duration, ms.
    pub commit_ms_total: u64,
    /// The longest, ms.
    pub commit_ms_max: u64,
    /// Segments deleted by compaction.
    pub segments_removed: u64,
    /// Records rewritten by compaction.
    pub rewritten: u64,
    /// Reads that failed (loads and compaction).
    pub read_errors: u64,
    /// Pushes held now.
    pub pushes: u64,
    /// Their record bytes.
    pub bytes: u64,
    /// Users with pushes.
    pub users: u64,
    /// Pushes delivered and awaiting their Ack.
    pub in_flight: u64,
    /// Bytes of every segment file.
    pub disk_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// RAM of the index, by its own accounting.
    pub ram_bytes: u64,
}
