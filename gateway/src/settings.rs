//! Runtime settings: the validated config, resolved per shard, plus what
//! the protocol state machines need, derived once at start-up.

use protocol::server::ServerConfig;
use tuning::config::{ConfigError, GatewayConfig, ProtocolConfig, ResolvedShard};

/// Direct-descriptor slots kept beyond `max_connections`, so a connection
/// refused for being over a limit can still be told why.
pub const REFUSAL_SLACK: u32 = 64;

/// Everything a shard needs to know, read-only after start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The validated configuration.
    pub config: GatewayConfig,
    /// Each shard's resolved settings.
    pub shards: Vec<ResolvedShard>,
    /// Protocol timings and limits for the server sessions.
    pub server: ServerConfig,
}

impl Settings {
    /// Validates `config` for a machine with `online_cpus` CPUs.
    pub fn new(config: GatewayConfig, online_cpus: usize) -> Result<Self, ConfigError> {
        config.validate(online_cpus)?;
        let shards = config.resolve_shards(online_cpus);
        let server = server_config(&config.protocol);
        Ok(Self {
            config,
            shards,
            server,
        })
    }

    /// Caps every shard's `max_connections` so its direct-descriptor table
    /// (connections plus [`REFUSAL_SLACK`]) fits under `nofile_limit`, the
    /// kernel's bound on one ring's table. Returns the shards it capped.
    pub fn fit_descriptor_tables(&mut self, nofile_limit: u64) -> Vec<(usize, u32, u32)> {
        let mut capped = Vec::new();
        let ceiling = nofile_limit.saturating_sub(u64::from(REFUSAL_SLACK)).max(1);
        let ceiling = u32::try_from(ceiling).unwrap_or(u32::MAX);
        for shard in &mut self.shards {
            if shard.settings.max_connections > ceiling {
                capped.push((shard.index, shard.settings.max_connections, ceiling));
                shard.settings.max_connections = ceiling;
            }
        }
        capped
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_capped_under_the_fd_limit() {
        let mut cfg = GatewayConfig::default();
        cfg.shard.count = 2;
        cfg.shard.max_connections = 100_000;
        let mut s = Settings::new(cfg, 2).unwrap();
        let capped = s.fit_descriptor_tables(20_000);
        assert_eq!(capped.len(), 2);
        assert!(
            s.shards
                .iter()
                .all(|sh| sh.settings.max_connections == 20_000 - REFUSAL_SLACK)
        );
        assert!(s.fit_descriptor_tables(20_000).is_empty(), "idempotent");
    }

    #[test]
    fn invalid_config_is_refused() {
        let mut cfg = GatewayConfig::default();
        cfg.protocol.idle_factor = 0.0;
        assert!(Settings::new(cfg, 2).is_err());
    }
}
