//! Runtime settings: the validated config, resolved per shard, plus what
//! the protocol state machines need, derived once at start-up.

use std::sync::Arc;

use protocol::server::ServerConfig;
use tuning::config::{ConfigError, GatewayConfig, ProtocolConfig, ResolvedShard};
use tuning::driver::Driver;

use crate::resume_token::ResumeKey;

/// Direct-descriptor slots kept beyond `max_connections`, so a connection
/// refused for being over a limit can still be told why.
pub const REFUSAL_SLACK: u32 = tuning::derive::DIRECT_TABLE_RESERVE as u32;

/// Replaces `max_connections = 0` ("as many as fit") with the largest value
/// that fits under `nofile_soft`: on io_uring the kernel's bound on one
/// ring's direct-descriptor table; on epoll, where every connection is a
/// descriptor of the one process, that limit shared by `shards` (less what
/// the shards keep for themselves). Explicit values are left for the
/// start-up check to judge.
pub fn resolve_auto_limits(
    cfg: &mut GatewayConfig,
    nofile_soft: u64,
    driver: Driver,
    shards: usize,
) {
    let fit = match driver {
        Driver::IoUring => nofile_soft.saturating_sub(u64::from(REFUSAL_SLACK)),
        Driver::Epoll => {
            let shards = shards.max(1) as u64;
            let reserve = tuning::check::epoll_fd_reserve(shards);
            nofile_soft.saturating_sub(reserve) / shards
        }
    };
    let fit = fit.max(1);
    let fit = u32::try_from(fit).unwrap_or(u32::MAX - REFUSAL_SLACK);
    if cfg.shard.max_connections == 0 {
        cfg.shard.max_connections = fit;
    }
    for o in &mut cfg.shard_overrides {
        if o.max_connections == Some(0) {
            o.max_connections = Some(fit);
        }
    }
}

/// Everything a shard needs to know, read-only after start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The validated configuration.
    pub config: GatewayConfig,
    /// Each shard's resolved settings.
    pub shards: Vec<ResolvedShard>,
    /// Protocol timings and limits for the server sessions.
    pub server: ServerConfig,
    /// The same bounds for MQTT sessions (`[protocol]` as MQTT sees it).
    pub mqtt: protocol::mqtt::server::MqttConfig,
    /// The driver that runs the shards (decided at start-up).
    pub driver: Driver,
    /// Signs the resume tokens of this process's Welcomes (drawn at
    /// start-up; `None`, and no tokens, if the OS gave no random bytes).
    pub resume_key: Option<Arc<ResumeKey>>,
}

impl Settings {
    /// Validates `config` for a machine with `online_cpus` CPUs.
    pub fn new(config: GatewayConfig, online_cpus: usize) -> Result<Self, ConfigError> {
        config.validate(online_cpus)?;
        let shards = config.resolve_shards(online_cpus);
        let server = server_config(&config.protocol);
        let mqtt = protocol::mqtt::server::MqttConfig::from_protocol(&server);
        let resume_key = match ResumeKey::random() {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                tracing::warn!(%e, "sessions cannot be resumed: no resume tokens are given");
                None
            }
        };
        Ok(Self {
            config,
            shards,
            server,
            mqtt,
            driver: Driver::IoUring,
            resume_key,
        })
    }
}

/// The server-session view of the protocol section.
pub fn server_config(p: &ProtocolConfig) -> ServerConfig {
    ServerConfig {
        max_frame: p.max_frame,
        handshake_timeout_ms: p.handshake_timeout_ms,
        heartbeat_default_ms: p.heartbeat_default_ms,
        heartbeat_min_ms: p.heartbeat_min_ms,
        heartbeat_max_ms: p.heartbeat_max_ms,
        idle_factor: p.idle_factor,
        max_topics: p.max_topics,
        max_topic_len: p.max_topic_len,
        max_apps: p.max_apps,
        max_app_len: p.max_app_len,
        max_device_len: p.max_device_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_limits_fill_the_table_and_leave_explicit_values() {
        let mut cfg = GatewayConfig::default();
        assert_eq!(cfg.shard.max_connections, 0, "auto by default");
        cfg.shard_overrides.push(tuning::config::ShardOverride {
            index: 0,
            max_connections: Some(0),
            ..Default::default()
        });
        resolve_auto_limits(&mut cfg, 20_000, Driver::IoUring, 2);
        assert_eq!(cfg.shard.max_connections, 20_000 - REFUSAL_SLACK);
        assert_eq!(
            cfg.shard_overrides[0].max_connections,
            Some(20_000 - REFUSAL_SLACK)
        );
        let mut explicit = GatewayConfig::default();
        explicit.shard.max_connections = 50_000;
        resolve_auto_limits(&mut explicit, 20_000, Driver::IoUring, 2);
        assert_eq!(explicit.shard.max_connections, 50_000);
    }

    #[test]
    fn on_epoll_the_process_limit_is_shared_by_the_shards() {
        let mut cfg = GatewayConfig::default();
        resolve_auto_limits(&mut cfg, 20_000, Driver::Epoll, 2);
        let reserve = tuning::check::epoll_fd_reserve(2) as u32;
        assert_eq!(cfg.shard.max_connections, (20_000 - reserve) / 2);
    }

    #[test]
    fn invalid_config_is_refused() {
        let mut cfg = GatewayConfig::default();
        cfg.protocol.idle_factor = 0.0;
        assert!(Settings::new(cfg, 2).is_err());
    }
}
