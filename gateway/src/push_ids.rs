//! Where push ids come from: one id per accepted push, shared by every
//! shard of a gateway, handed to the cores by their drivers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where push ids come from. One id per accepted push, never per
/// recipient; shared by every shard of a gateway. A trait so that a
/// durable store can hand out ids that survive restarts.
pub trait PushIds: Send + Sync + std::fmt::Debug {
    /// The next id (never 0, never repeated within the source's life).
    fn next_id(&self) -> u64;
}

/// Push ids from a counter in memory, starting at 1.
#[derive(Debug)]
pub struct CountingPushIds(AtomicU64);

impl Default for CountingPushIds {
    fn default() -> Self {
        Self(AtomicU64::new(1))
    }
}

impl CountingPushIds {
    /// A counter whose first id is `first` (at least 1): above every id a
    /// durable store reserved before a restart.
    pub fn starting_at(first: u64) -> Self {
        Self(AtomicU64::new(first.max(1)))
    }
}

impl PushIds for CountingPushIds {
    fn next_id(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}
