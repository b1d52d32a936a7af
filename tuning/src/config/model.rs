//! The configuration model: the sections of a gateway config file with their
//! defaults, reading and writing them as TOML, and each shard's settings
//! with its override applied. The `[listen]` section is
//! [`crate::listen::ListenConfig`]; `[auth.webhook]`, `[uplink]` and
//! `[events]` are in [`crate::backends`]. The checks of the values are in
//! `validate.rs`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use crate::listen::ListenConfig;

/// A whole gateway configuration. Every section has defaults, so an empty
/// file (or none) is a valid configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listener addresses and socket options.
    pub listen: ListenConfig,
    /// Settings every shard gets unless an override says otherwise.
    pub shard: ShardConfig,
    /// Per-shard overrides, by shard index.
    #[serde(rename = "shard_override", skip_serializing_if = "Vec::is_empty")]
    pub shard_overrides: Vec<ShardOverride>,
    /// Wire-protocol timings and limits.
    pub protocol: ProtocolConfig,
    /// How clients authenticate.
    pub auth: AuthConfig,
    /// Uplink forwarding to backends (route table, pool, timeouts).
    pub uplink: crate::backends::UplinkConfig,
    /// Presence events (online/offline) POSTed to a backend.
    pub events: crate::backends::EventsConfig,
    /// Who may connect, and how many.
    pub admission: AdmissionConfig,
    /// Graceful shutdown on SIGTERM/SIGINT.
    pub shutdown: ShutdownConfig,
    /// Push delivery.
    pub push: PushConfig,
    /// The durable store of acked pushes.
    pub store: super::store::StoreConfig,
    /// Certificate and key of the TLS listeners.
    pub tls: super::tls::TlsConfig,
    /// What MQTT clients' PUBLISHes become (topic prefixes to uplink routes).
    pub mqtt: super::mqtt::MqttSection,
    /// Logging.
    pub log: LogConfig,
}

/// What a shard does when a connection's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// Close the connection (after a best-effort Kick).
    #[default]
    Disconnect,
    /// Drop the oldest queued pushes to make room.
    DropOldest,
}

/// Which driver runs the shards (`[shard] driver`, `--driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DriverChoice {
    /// io_uring when the kernel and seccomp allow it, else epoll (with one
    /// log line that says why).
    #[default]
    Auto,
    /// io_uring or nothing: the gateway refuses to start without it.
    #[serde(rename = "io_uring")]
    IoUring,
    /// epoll, even where io_uring would run.
    Epoll,
}

impl DriverChoice {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

impl std::str::FromStr for DriverChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "io_uring" => Ok(Self::IoUring),
            "epoll" => Ok(Self::Epoll),
            other => Err(format!(
                "unknown driver `{other}`: expected auto, io_uring or epoll"
            )),
        }
    }
}

/// Per-shard settings (the `[shard]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardConfig {
    /// Number of shards; 0 means one per online CPU.
    pub count: usize,
    /// CPUs to pin shards to, shard i on `cpus[i % len]`; empty means
    /// shard i on the i-th online CPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<usize>,
    /// Which driver runs the shards: `auto` (io_uring where allowed, else
    /// epoll), `io_uring` or `epoll`.
    pub driver: DriverChoice,
    /// Most client connections one shard holds. 0 (the default) means as
    /// many as fit: on io_uring the size of one ring's direct-descriptor
    /// table (the `RLIMIT_NOFILE` soft limit less a small reserve); on
    /// epoll, where every connection is a descriptor of the one process,
    /// that limit shared by the shards.
    pub max_connections: u32,
    /// Most handshakes (accepted, no Welcome yet) in flight per shard.
    pub max_handshakes: u32,
    /// Submission queue entries of the shard's io_uring ring.
    pub ring_entries: u32,
    /// Size in bytes of each receive buffer in the provided-buffer ring.
    pub buffer_size: u32,
    /// Number of receive buffers (a power of two).
    pub buffer_count: u32,
    /// Most bytes queued towards one connection before the slow-consumer
    /// policy applies.
    pub outbound_queue_bytes: u32,
    /// What to do with a connection whose outbound queue is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// Resolution of the shard's timer wheel in milliseconds.
    pub timer_tick_ms: u32,
    /// Once a shard has seen nothing but client traffic (heartbeats,
    /// acks, closes) for `idle_batch_after_ms`, it lets completions gather
    /// for up to this long before it wakes, instead of waking for each
    /// one: on idle connections the wake-ups cost more than the Pings.
    /// Pushes, control requests and new connections still wake the shard
    /// at once and end the quiet spell; frames from clients (a Pong's
    /// Ping, an Uplink, a Subscribe) wait at most this long. 0 turns
    /// batching off. Needs Linux 6.12 (io_uring min-wait); older kernels
    /// run without it.
    pub idle_batch_ms: u32,
    /// How long a shard must see only client traffic before it batches
    /// wake-ups (see `idle_batch_ms`).
    pub idle_batch_after_ms: u32,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            count: 0,
            cpus: Vec::new(),
            driver: DriverChoice::Auto,
            max_connections: 0,
            max_handshakes: 4096,
            ring_entries: 4096,
            buffer_size: 4096,
            buffer_count: 4096,
            outbound_queue_bytes: 256 * 1024,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            timer_tick_ms: 100,
            idle_batch_ms: 100,
            idle_batch_after_ms: 10_000,
        }
    }
}

/// Settings for one shard that differ from `[shard]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShardOverride {
    /// Which shard this applies to.
    pub index: usize,
    /// CPU to pin this shard to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<usize>,
    /// See [`ShardConfig::max_connections`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// See [`ShardConfig::max_handshakes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_handshakes: Option<u32>,
    /// See [`ShardConfig::buffer_count`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_count: Option<u32>,
    /// See [`ShardConfig::outbound_queue_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_queue_bytes: Option<u32>,
}

/// Wire-protocol timings and limits (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Largest frame body accepted, in bytes.
    pub max_frame: u32,
    /// Time a new connection has to send its Hello.
    pub handshake_timeout_ms: u32,
    /// Heartbeat used when the client proposes none.
    pub heartbeat_default_ms: u32,
    /// Lower clamp of the negotiated heartbeat.
    pub heartbeat_min_ms: u32,
    /// Upper clamp of the negotiated heartbeat.
    pub heartbeat_max_ms: u32,
    /// A connection silent for `idle_factor × heartbeat` is closed.
    pub idle_factor: f64,
    /// Most topics one Subscribe may name, and most a session may hold.
    pub max_topics: u32,
    /// Longest topic name a Subscribe may carry, in bytes.
    pub max_topic_len: u32,
    /// Most apps one Hello may declare (`Hello.apps`).
    pub max_apps: u32,
    /// Longest app name a Hello may declare, in bytes.
    pub max_app_len: u32,
    /// Longest device label a Hello may carry (`Hello.device`), in bytes.
    pub max_device_len: u32,
    /// How long a connection the gateway closes (after a Kick or an Error)
    /// may take to flush its last frames, and then to send its FIN after
    /// ours, before the socket is closed regardless.
    pub close_linger_ms: u32,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            max_frame: 65536,
            handshake_timeout_ms: 10_000,
            heartbeat_default_ms: 30_000,
            heartbeat_min_ms: 5_000,
            heartbeat_max_ms: 300_000,
            idle_factor: 2.5,
            max_topics: 64,
            max_topic_len: 256,
            max_apps: 16,
            max_app_len: 64,
            max_device_len: 128,
            close_linger_ms: 200,
        }
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret for JWTs; `GATEWAY_JWT_SECRET` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    pub leeway_s: u64,
    /// `jwt` (verify locally) or `webhook` (ask a backend).
    pub mode: crate::backends::AuthMode,
    /// JWT algorithm in `jwt` mode: `HS256` or `RS256`.
    pub algorithm: crate::backends::JwtAlgorithm,
    /// PEM RSA public key file for `RS256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    /// The auth webhook (`mode = "webhook"`).
    pub webhook: crate::backends::WebhookConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            leeway_s: 30,
            mode: Default::default(),
            algorithm: Default::default(),
            public_key_file: None,
            webhook: Default::default(),
        }
    }
}

/// Who may connect, and how many (checked at accept, before any byte is read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Most connections from one IP address per shard; 0 = no cap.
    pub max_connections_per_ip: u32,
    /// CIDRs allowed to connect; empty = everyone not denied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// CIDRs refused (wins over `allow`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Graceful shutdown on SIGTERM/SIGINT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Exit within this long of the signal, whatever is left.
    pub deadline_ms: u32,
    /// Kicks sent per second per shard while draining.
    pub kick_rate: u32,
    /// Reconnect hints sent in the going-away Kick.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reconnect: Vec<String>,
    /// Suggested client back-off before reconnecting.
    pub retry_after_ms: u32,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 30_000,
            kick_rate: 20_000,
            reconnect: Vec::new(),
            retry_after_ms: 1_000,
        }
    }
}

/// Push delivery (the push API and cross-shard fan-out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Recipients per second for broadcast and topic pushes that name no
    /// rate; 0 = as fast as possible. Pacing spreads a big push over time
    /// so that clients reacting to it do not stampede the backends.
    pub default_rate: u32,
    /// Messages each shard's cross-shard inbox holds (from all senders
    /// together) before senders wait.
    pub mailbox_capacity: u32,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            default_rate: 0,
            mailbox_capacity: 4_096,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directive (`RUST_LOG` overrides it).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// The settings of one shard after overrides are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedShard {
    /// Shard index.
    pub index: usize,
    /// CPU the shard's thread is pinned to, if any.
    pub cpu: Option<usize>,
    /// The shard's settings.
    pub settings: ShardConfig,
}

impl GatewayConfig {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.into(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a TOML file (not yet validated).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Renders the configuration as TOML.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Number of shards given the machine's online CPU count.
    pub fn shard_count(&self, online_cpus: usize) -> usize {
        if self.shard.count == 0 {
            online_cpus.max(1)
        } else {
            self.shard.count
        }
    }

    /// Each shard's settings with its override applied.
    pub fn resolve_shards(&self, online_cpus: usize) -> Vec<ResolvedShard> {
        let count = self.shard_count(online_cpus);
        (0..count)
            .map(|index| {
                let mut settings = self.shard.clone();
                let mut cpu = if self.shard.cpus.is_empty() {
                    (online_cpus > 0).then(|| index % online_cpus)
                } else {
                    Some(self.shard.cpus[index % self.shard.cpus.len()])
                };
                for o in self.shard_overrides.iter().filter(|o| o.index == index) {
                    if let Some(c) = o.cpu {
                        cpu = Some(c);
                    }
                    if let Some(v) = o.max_connections {
                        settings.max_connections = v;
                    }
                    if let Some(v) = o.max_handshakes {
                        settings.max_handshakes = v;
                    }
                    if let Some(v) = o.buffer_count {
                        settings.buffer_count = v;
                    }
                    if let Some(v) = o.outbound_queue_bytes {
                        settings.outbound_queue_bytes = v;
                    }
                }
                ResolvedShard {
                    index,
                    cpu,
                    settings,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults_and_valid() {
        let cfg = GatewayConfig::from_toml("", "inline").unwrap();
        assert_eq!(cfg, GatewayConfig::default());
        cfg.validate(2).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = GatewayConfig::from_toml("[shard]\nmax_conections = 5\n", "x.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("max_conections"), "{msg}");
        assert!(msg.contains("x.toml"), "{msg}");
    }

    #[test]
    fn overrides_apply_to_their_shard_only() {
        let cfg = GatewayConfig::from_toml(
            "[shard]\ncount = 2\nmax_connections = 10\n[[shard_override]]\nindex = 1\ncpu = 5\nmax_connections = 20\n",
            "inline",
        )
        .unwrap();
        cfg.validate(2).unwrap();
        let shards = cfg.resolve_shards(2);
        assert_eq!(shards[0].settings.max_connections, 10);
        assert_eq!(shards[0].cpu, Some(0));
        assert_eq!(shards[1].settings.max_connections, 20);
        assert_eq!(shards[1].cpu, Some(5));
    }

    #[test]
    fn toml_round_trips() {
        let mut cfg = GatewayConfig::default();
        cfg.shard.count = 2;
        cfg.admission.deny = vec!["10.0.0.0/8".into()];
        cfg.shard_overrides.push(ShardOverride {
            index: 1,
            cpu: Some(1),
            ..Default::default()
        });
        let back = GatewayConfig::from_toml(&cfg.to_toml(), "inline").unwrap();
        assert_eq!(back, cfg);
    }
}
