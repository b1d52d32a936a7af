//! The `[store]` section: where durable pushes are kept, how durable a
//! "stored" answer is, and the bounds on what the store holds (DESIGN.md
//! §5). Its checks are [`StoreConfig::validate`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// When an append counts as stored (`[store] durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After the bytes are written and `fdatasync`ed: a push answered
    /// `"stored": true` survives a SIGKILL of the gateway and a power cut.
    #[default]
    Fsync,
    /// After the bytes are written to the OS (page cache): survives a
    /// SIGKILL of the gateway, not a crash of the machine.
    Os,
}

impl Durability {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fsync => "fsync",
            Self::Os => "os",
        }
    }
}

/// What an append to a full inbox does (`[store] inbox_overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Refuse the new push: the push API answers 507.
    #[default]
    Reject,
    /// Drop the user's oldest pushes (counted) to make room for the new one.
    DropOldest,
}

/// The durable store of pushes with `"ack": true` (the `[store]` section).
/// One store per shard, under `dir/shard-<i>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the store's files, relative to the working directory
    /// unless absolute; `--data-dir` overrides it.
    pub dir: PathBuf,
    /// When a push counts as stored: `fsync` or `os`.
    pub durability: Durability,
    /// How long a delivered durable push waits for its Ack before it is
    /// sent again, for the first redelivery; doubles per delivery.
    pub ack_timeout_ms: u32,
    /// Cap of the doubling wait between redeliveries.
    pub ack_timeout_max_ms: u32,
    /// Deliveries of one push before it is dead-lettered (removed, counted
    /// and reported as `undelivered`).
    pub max_deliveries: u32,
    /// How long a disconnected session may be resumed with its token.
    pub resume_window_ms: u32,
    /// How long a durable push is kept when the push names no `ttl_ms`.
    pub ttl_ms: u64,
    /// Most pushes one user's inbox holds.
    pub user_max_pushes: u32,
    /// Most bytes (as stored on disk) one user's inbox holds.
    pub user_max_bytes: u64,
    /// What a push to a full inbox does: `reject` (507) or `drop-oldest`.
    pub inbox_overflow: OverflowPolicy,
    /// Most pushes the whole store holds, all shards together; over it a
    /// push is refused (507).
    pub max_pushes: u64,
    /// Most bytes the whole store holds on disk (live records), all shards
    /// together; over it a push is refused (507).
    pub max_bytes: u64,
    /// Size at which a store file (segment) is closed and a new one begun.
    pub segment_bytes: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("gateway-data"),
            durability: Durability::Fsync,
            ack_timeout_ms: 10_000,
            ack_timeout_max_ms: 120_000,
            max_deliveries: 10,
            resume_window_ms: 60_000,
            ttl_ms: 7 * 24 * 3_600_000,
            user_max_pushes: 1_000,
            user_max_bytes: 1 << 20,
            inbox_overflow: OverflowPolicy::Reject,
            max_pushes: 10_000_000,
            max_bytes: 8 << 30,
            segment_bytes: 64 << 20,
        }
    }
}

/// Longest TTL a push may be kept: one year.
pub const MAX_TTL_MS: u64 = 365 * 24 * 3_600_000;

/// Most deliveries of one push (the store keeps the count in 16 bits).
pub const MAX_DELIVERIES: u32 = 1_000;

impl StoreConfig {
    /// Checks ranges and consistency; `max_frame` is `[protocol]
    /// max_frame` (one push of that size must fit a segment and an inbox).
    pub fn validate(&self, max_frame: u32) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("store.dir", "must not be empty"));
        }
        if !(10..=3_600_000).contains(&self.ack_timeout_ms) {
            return Err(ConfigError::invalid(
                "store.ack_timeout_ms",
                "must be in 10..=3600000",
            ));
        }
        if self.ack_timeout_max_ms < self.ack_timeout_ms {
            return Err(ConfigError::invalid(
                "store.ack_timeout_max_ms",
                "must be at least store.ack_timeout_ms",
            ));
        }
        if !(1..=MAX_DELIVERIES).contains(&self.max_deliveries) {
            return Err(ConfigError::invalid(
                "store.max_deliveries",
                format!("must be in 1..={MAX_DELIVERIES}"),
            ));
        }
        if self.resume_window_ms > 3_600_000 {
            return Err(ConfigError::invalid(
                "store.resume_window_ms",
                "must be in 0..=3600000",
            ));
        }
        if !(1..=MAX_TTL_MS).contains(&self.ttl_ms) {
            return Err(ConfigError::invalid(
                "store.ttl_ms",
                format!("must be in 1..={MAX_TTL_MS} (one year)"),
            ));
        }
        if self.user_max_pushes == 0 {
            return Err(ConfigError::invalid(
                "store.user_max_pushes",
                "must be at least 1",
            ));
        }
        if self.user_max_bytes < u64::from(max_frame) {
            return Err(ConfigError::invalid(
                "store.user_max_bytes",
                format!("must be at least protocol.max_frame ({max_frame}), so one push fits"),
            ));
        }
        if self.max_pushes < u64::from(self.user_max_pushes) {
            return Err(ConfigError::invalid(
                "store.max_pushes",
                "must be at least store.user_max_pushes",
            ));
        }
        if self.max_bytes < self.user_max_bytes {
            return Err(ConfigError::invalid(
                "store.max_bytes",
                "must be at least store.user_max_bytes",
            ));
        }
        let min_segment = (u64::from(max_frame) * 2).max(1 << 20);
        if u64::from(self.segment_bytes) < min_segment || self.segment_bytes > 1 << 30 {
            return Err(ConfigError::invalid(
                "store.segment_bytes",
                format!(
                    "must be in {min_segment}..=1073741824 (at least twice protocol.max_frame, 1 MiB)"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;

    #[test]
    fn defaults_parse_and_validate() {
        let cfg = GatewayConfig::from_toml("[store]\n", "inline").unwrap();
        assert_eq!(cfg.store, StoreConfig::default());
        assert_eq!(cfg.store.dir, PathBuf::from("gateway-data"));
        assert_eq!(cfg.store.durability, Durability::Fsync);
        assert_eq!(cfg.store.resume_window_ms, 60_000);
        cfg.validate(2).unwrap();
    }

    #[test]
    fn keys_parse_with_their_spellings() {
        let cfg = GatewayConfig::from_toml(
            "[store]\ndir = \"/var/lib/gw\"\ndurability = \"os\"\ninbox_overflow = \"drop-oldest\"\n\
             ack_timeout_ms = 500\nmax_deliveries = 3\nttl_ms = 1000\n",
            "inline",
        )
        .unwrap();
        cfg.validate(2).unwrap();
        assert_eq!(cfg.store.durability, Durability::Os);
        assert_eq!(cfg.store.inbox_overflow, OverflowPolicy::DropOldest);
        assert_eq!(cfg.store.dir, PathBuf::from("/var/lib/gw"));
        let back = GatewayConfig::from_toml(&cfg.to_toml(), "inline").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        let err = GatewayConfig::from_toml("[store]\nttl = 5\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
        let err = GatewayConfig::from_toml("[store]\ndurability = \"never\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[store]\ndir = \"\"\n", "store.dir"),
            ("[store]\nack_timeout_ms = 0\n", "store.ack_timeout_ms"),
            (
                "[store]\nack_timeout_ms = 5000\nack_timeout_max_ms = 1000\n",
                "store.ack_timeout_max_ms",
            ),
            ("[store]\nmax_deliveries = 0\n", "store.max_deliveries"),
            ("[store]\nmax_deliveries = 70000\n", "store.max_deliveries"),
            ("[store]\nttl_ms = 0\n", "store.ttl_ms"),
            ("[store]\nuser_max_pushes = 0\n", "store.user_max_pushes"),
            ("[store]\nuser_max_bytes = 100\n", "store.user_max_bytes"),
            ("[store]\nmax_pushes = 10\n", "store.max_pushes"),
            ("[store]\nmax_bytes = 70000\n", "store.max_bytes"),
            ("[store]\nsegment_bytes = 4096\n", "store.segment_bytes"),
            (
                "[store]\nresume_window_ms = 99999999\n",
                "store.resume_window_ms",
            ),
        ] {
            let cfg = GatewayConfig::from_toml(text, "inline").unwrap();
            let msg = cfg.validate(2).unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
    }
}
