//! What one shard's store is told: the `[store]` section with the
//! whole-store caps divided among the shards.

use std::path::{Path, PathBuf};

use tuning::config::{Durability, OverflowPolicy, StoreConfig};

/// One shard's store settings (from [`StoreConfig`], see
/// [`StoreSettings::for_shard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// When an append counts as durable.
    pub durability: Durability,
    /// Wait for the first Ack, ms; doubles per delivery.
    pub ack_timeout_ms: u64,
    /// Cap of the doubling wait, ms.
    pub ack_timeout_max_ms: u64,
    /// Deliveries before a push is dead-lettered (at least 1).
    pub max_deliveries: u16,
    /// TTL of a push that names none, ms.
    pub ttl_ms: u64,
    /// Most pushes per inbox.
    pub user_max_pushes: u32,
    /// Most record bytes per inbox.
    pub user_max_bytes: u64,
    /// What an append to a full inbox does.
    pub overflow: OverflowPolicy,
    /// Most pushes this shard's store holds.
    pub max_pushes: u64,
    /// Most live record bytes this shard's store holds.
    pub max_bytes: u64,
    /// Size at which a segment is closed.
    pub segment_bytes: u32,
}

impl StoreSettings {
    /// The settings of one of `shards` stores: the whole-store caps are
    /// split evenly (rounded up), the rest is as configured.
    pub fn for_shard(cfg: &StoreConfig, shards: usize) -> Self {
        let n = shards.max(1) as u64;
        Self {
            durability: cfg.durability,
            ack_timeout_ms: u64::from(cfg.ack_timeout_ms),
            ack_timeout_max_ms: u64::from(cfg.ack_timeout_max_ms),
            max_deliveries: u16::try_from(cfg.max_deliveries.max(1)).unwrap_or(u16::MAX),
            ttl_ms: cfg.ttl_ms,
            user_max_pushes: cfg.user_max_pushes,
            user_max_bytes: cfg.user_max_bytes,
            overflow: cfg.inbox_overflow,
            max_pushes: cfg.max_pushes.div_ceil(n),
            max_bytes: cfg.max_bytes.div_ceil(n),
            segment_bytes: cfg.segment_bytes,
        }
    }

    /// The wait for the Ack of delivery number `deliveries` (1 = first):
    /// `ack_timeout_ms` doubled per earlier delivery, capped.
    pub fn ack_wait_ms(&self, deliveries: u16) -> u64 {
        let doublings = u32::from(deliveries.saturating_sub(1)).min(32);
        self.ack_timeout_ms
            .saturating_mul(1u64 << doublings)
            .min(self.ack_timeout_max_ms.max(self.ack_timeout_ms))
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self::for_shard(&StoreConfig::default(), 1)
    }
}

/// The directory of shard `index`'s store under `[store] dir`.
pub fn shard_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("shard-{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_split_and_backoff_doubles_to_its_cap() {
        let cfg = StoreConfig {
            max_pushes: 10,
            ack_timeout_ms: 100,
            ack_timeout_max_ms: 1_000,
            ..StoreConfig::default()
        };
        let s = StoreSettings::for_shard(&cfg, 3);
        assert_eq!(s.max_pushes, 4);
        let waits: Vec<u64> = (1..=6).map(|d| s.ack_wait_ms(d)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(s.ack_wait_ms(u16::MAX), 1_000);
        assert_eq!(
            shard_dir(Path::new("gateway-data"), 2),
            PathBuf::from("gateway-data/shard-2")
        );
    }
}
