//! The gateway's configuration model: what a TOML file (or `gateway-tune
//! config`) says, resolved per shard and validated.
//!
//! It lives here, not in the gateway, because the tuner derives it and the
//! gateway reads it: one model, one set of defaults, one validation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backends::{AuthMode, HttpUrl, JwtAlgorithm};

/// Shortest HS256 secret the gateway accepts, in bytes: a shorter key is
/// below the hash's 256-bit strength and easy to brute-force offline from
/// a single token (RFC 7518 §3.2 requires at least 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Why `secret` cannot be an HS256 key, naming `source` (the config key or
/// environment variable it came from); `None` when it is long enough.
pub fn hs256_secret_problem(secret: &str, source: &str) -> Option<String> {
    (secret.len() < MIN_HS256_SECRET_BYTES).then(|| {
        format!(
            "{source} is {} bytes; an HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes (256 bits), e.g. `openssl rand -hex 32`",
            secret.len()
        )
    })
}

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
    /// Logging.
    pub log: LogConfig,
}

pub use crate::listen::ListenConfig;

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
    /// Most client connections one shard holds; also the size of its
    /// direct-descriptor table. 0 (the default) means as many as the
    /// table may hold: the `RLIMIT_NOFILE` soft limit less a small reserve.
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

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or names an unknown key (the message names it).
    #[error("config {origin}: {message}")]
    Parse {
        /// File name or "inline".
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config: {key}: {why}")]
    Invalid {
        /// Dotted key path of the offending value.
        key: String,
        /// What is wrong and what would be right.
        why: String,
    },
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
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

    /// Checks ranges and cross-field consistency; the error names the key.
    pub fn validate(&self, online_cpus: usize) -> Result<(), ConfigError> {
        crate::listen::validate(&self.listen).map_err(|e| invalid(e.key, e.why))?;
        let count = self.shard_count(online_cpus);
        if count > 1024 {
            return Err(invalid(
                "shard.count",
                format!("{count} shards is more than 1024"),
            ));
        }
        for o in &self.shard_overrides {
            if o.index >= count {
                return Err(invalid(
                    "shard_override.index",
                    format!("shard {} does not exist (there are {count})", o.index),
                ));
            }
        }
        for shard in self.resolve_shards(online_cpus) {
            validate_shard(&shard.settings)?;
        }
        let p = &self.protocol;
        if p.max_frame == 0 || p.max_frame > 16 * 1024 * 1024 {
            return Err(invalid("protocol.max_frame", "must be in 1..=16777216"));
        }
        if p.heartbeat_min_ms == 0 || p.heartbeat_min_ms > p.heartbeat_max_ms {
            return Err(invalid(
                "protocol.heartbeat_min_ms",
                "must be at least 1 and at most protocol.heartbeat_max_ms",
            ));
        }
        if !(p.heartbeat_min_ms..=p.heartbeat_max_ms).contains(&p.heartbeat_default_ms) {
            return Err(invalid(
                "protocol.heartbeat_default_ms",
                "must lie within [heartbeat_min_ms, heartbeat_max_ms]",
            ));
        }
        if !(p.idle_factor.is_finite() && p.idle_factor >= 1.0) {
            return Err(invalid("protocol.idle_factor", "must be a number >= 1.0"));
        }
        if p.handshake_timeout_ms == 0 {
            return Err(invalid(
                "protocol.handshake_timeout_ms",
                "must be at least 1",
            ));
        }
        for (key, value, max) in [
            ("protocol.max_topic_len", p.max_topic_len, 4096),
            ("protocol.max_apps", p.max_apps, 64),
            ("protocol.max_app_len", p.max_app_len, 1024),
            ("protocol.max_device_len", p.max_device_len, 4096),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(key, format!("must be in 1..={max}")));
            }
        }
        if p.close_linger_ms > 60_000 {
            return Err(invalid("protocol.close_linger_ms", "must be at most 60000"));
        }
        for (key, list) in [
            ("admission.allow", &self.admission.allow),
            ("admission.deny", &self.admission.deny),
        ] {
            for cidr in list {
                parse_cidr(cidr).map_err(|why| invalid(key, why))?;
            }
        }
        if !(16..=1 << 22).contains(&self.push.mailbox_capacity) {
            return Err(invalid("push.mailbox_capacity", "must be in 16..=4194304"));
        }
        if self.shutdown.kick_rate == 0 {
            return Err(invalid(
                "shutdown.kick_rate",
                "must be at least 1 per second",
            ));
        }
        if self.auth.mode == crate::backends::AuthMode::Jwt
            && self.auth.algorithm == crate::backends::JwtAlgorithm::HS256
            && let Some(secret) = &self.auth.jwt_secret
            && let Some(why) = hs256_secret_problem(secret, "the secret")
        {
            return Err(invalid("auth.jwt_secret", why));
        }
        validate_backends(self)?;
        Ok(())
    }
}

fn validate_shard(s: &ShardConfig) -> Result<(), ConfigError> {
    if s.max_handshakes == 0 {
        return Err(invalid("shard.max_handshakes", "must be at least 1"));
    }
    if !s.buffer_count.is_power_of_two() || s.buffer_count > 32768 {
        return Err(invalid(
            "shard.buffer_count",
            format!(
                "{} must be a power of two no larger than 32768",
                s.buffer_count
            ),
        ));
    }
    if s.buffer_size < 64 || s.buffer_size > 1 << 20 {
        return Err(invalid(
            "shard.buffer_size",
            "must be in 64..=1048576 bytes",
        ));
    }
    if !s.ring_entries.is_power_of_two() || !(8..=32768).contains(&s.ring_entries) {
        return Err(invalid(
            "shard.ring_entries",
            "must be a power of two in 8..=32768",
        ));
    }
    if s.outbound_queue_bytes < 1024 {
        return Err(invalid(
            "shard.outbound_queue_bytes",
            "must be at least 1024",
        ));
    }
    if s.timer_tick_ms == 0 || s.timer_tick_ms > 10_000 {
        return Err(invalid("shard.timer_tick_ms", "must be in 1..=10000"));
    }
    if s.idle_batch_ms > 1_000 {
        return Err(invalid("shard.idle_batch_ms", "must be in 0..=1000"));
    }
    if s.idle_batch_after_ms < 100 {
        return Err(invalid("shard.idle_batch_after_ms", "must be at least 100"));
    }
    Ok(())
}

fn positive(key: &str, v: u32) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

fn url(key: &str, text: &str) -> Result<(), ConfigError> {
    HttpUrl::parse(text)
        .map(|_| ())
        .map_err(|why| invalid(key, why))
}

/// Checks the `[auth]`, `[uplink]` and `[events]` sections (their model is
/// [`crate::backends`]); the error names the key.
fn validate_backends(cfg: &GatewayConfig) -> Result<(), ConfigError> {
    let a = &cfg.auth;
    if a.algorithm == JwtAlgorithm::RS256 && a.mode == AuthMode::Jwt && a.public_key_file.is_none()
    {
        return Err(invalid(
            "auth.public_key_file",
            "RS256 needs a PEM public key file",
        ));
    }
    let w = &a.webhook;
    match (&w.url, a.mode) {
        (None, AuthMode::Webhook) => {
            return Err(invalid("auth.webhook.url", "webhook mode needs a URL"));
        }
        (Some(u), _) => url("auth.webhook.url", u)?,
        (None, AuthMode::Jwt) => {}
    }
    positive("auth.webhook.timeout_ms", w.timeout_ms)?;
    positive("auth.webhook.connect_timeout_ms", w.connect_timeout_ms)?;
    positive("auth.webhook.max_in_flight", w.max_in_flight)?;
    positive("auth.webhook.pool_size", w.pool_size)?;
    if a.mode == AuthMode::Webhook && w.timeout_ms >= cfg.protocol.handshake_timeout_ms {
        return Err(invalid(
            "auth.webhook.timeout_ms",
            "must be shorter than protocol.handshake_timeout_ms",
        ));
    }
    let u = &cfg.uplink;
    if let Some(d) = &u.default_url {
        url("uplink.default_url", d)?;
    }
    for r in &u.routes {
        url("uplink.route.url", &r.url)?;
        if r.app.is_empty() {
            return Err(invalid("uplink.route.app", "must not be empty"));
        }
    }
    positive("uplink.pool_size", u.pool_size)?;
    positive("uplink.pipeline_depth", u.pipeline_depth)?;
    positive("uplink.max_in_flight", u.max_in_flight)?;
    positive("uplink.connect_timeout_ms", u.connect_timeout_ms)?;
    positive("uplink.request_timeout_ms", u.request_timeout_ms)?;
    if u.max_response_bytes < 1024 {
        return Err(invalid(
            "uplink.max_response_bytes",
            "must be at least 1024",
        ));
    }
    let e = &cfg.events;
    if let Some(x) = &e.url {
        url("events.url", x)?;
    }
    positive("events.batch_max", e.batch_max)?;
    positive("events.batch_ms", e.batch_ms)?;
    positive("events.backoff_ms", e.backoff_ms)?;
    positive("events.timeout_ms", e.timeout_ms)?;
    positive("events.connect_timeout_ms", e.connect_timeout_ms)?;
    if e.queue_max < e.batch_max {
        return Err(invalid(
            "events.queue_max",
            "must be at least events.batch_max",
        ));
    }
    if e.backoff_max_ms < e.backoff_ms {
        return Err(invalid(
            "events.backoff_max_ms",
            "must be at least events.backoff_ms",
        ));
    }
    Ok(())
}

/// Parses an IPv4/IPv6 CIDR (`10.0.0.0/8`) or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("`{text}` is not a CIDR (like 10.0.0.0/8) or an IP address"))
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
    fn override_of_missing_shard_is_rejected() {
        let cfg = GatewayConfig::from_toml(
            "[shard]\ncount = 1\n[[shard_override]]\nindex = 3\n",
            "inline",
        )
        .unwrap();
        let msg = cfg.validate(2).unwrap_err().to_string();
        assert!(msg.contains("shard_override.index"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[shard]\nbuffer_count = 1000\n", "shard.buffer_count"),
            (
                "[protocol]\nheartbeat_min_ms = 9000\nheartbeat_max_ms = 8000\n",
                "protocol.heartbeat_min_ms",
            ),
            ("[protocol]\nidle_factor = 0.5\n", "protocol.idle_factor"),
            ("[shard]\nidle_batch_ms = 5000\n", "shard.idle_batch_ms"),
            (
                "[shard]\nidle_batch_after_ms = 10\n",
                "shard.idle_batch_after_ms",
            ),
            ("[admission]\ndeny = [\"10.0.0.0/99\"]\n", "admission.deny"),
        ] {
            let cfg = GatewayConfig::from_toml(text, "inline").unwrap();
            let msg = cfg.validate(2).unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
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

    #[test]
    fn an_exposed_control_listener_needs_a_token() {
        let mut cfg = GatewayConfig::default();
        cfg.listen.control = "0.0.0.0:7101".parse().unwrap();
        let msg = cfg.validate(2).unwrap_err().to_string();
        assert!(msg.contains("listen.control_token"), "{msg}");
        cfg.listen.control_token = Some("s3cret".into());
        cfg.validate(2).unwrap();
    }

    #[test]
    fn a_short_hs256_secret_is_refused() {
        let mut cfg = GatewayConfig::default();
        cfg.auth.jwt_secret = Some("e2e-test-secret".into());
        let msg = cfg.validate(2).unwrap_err().to_string();
        assert!(msg.contains("auth.jwt_secret"), "{msg}");
        assert!(
            msg.contains("15 bytes") && msg.contains("at least 32"),
            "{msg}"
        );
        cfg.auth.jwt_secret = Some("x".repeat(MIN_HS256_SECRET_BYTES));
        cfg.validate(2).unwrap();
        // Unused under RS256: not checked.
        cfg.auth.jwt_secret = Some("short".into());
        cfg.auth.algorithm = crate::backends::JwtAlgorithm::RS256;
        cfg.auth.public_key_file = Some("k.pem".into());
        cfg.validate(2).unwrap();
    }

    #[test]
    fn bare_addresses_are_host_cidrs() {
        assert_eq!(parse_cidr("127.0.0.1").unwrap().prefix_len(), 32);
        assert_eq!(parse_cidr("::1").unwrap().prefix_len(), 128);
        assert!(parse_cidr("nope").is_err());
    }

    #[test]
    fn backend_sections_parse_and_validate() {
        let cfg = GatewayConfig::from_toml(
            "[auth]\nmode = \"webhook\"\n[auth.webhook]\nurl = \"http://127.0.0.1:9/auth\"\ncache_ttl_ms = 0\n\
             [uplink]\ndefault_url = \"http://127.0.0.1:9/up\"\n[[uplink.route]]\napp = \"chat\"\nurl = \"http://127.0.0.1:10/\"\n\
             [events]\nurl = \"http://127.0.0.1:9/ev\"\nbatch_max = 10\n",
            "inline",
        )
        .unwrap();
        cfg.validate(2).unwrap();
        assert_eq!(cfg.uplink.routes[0].route, "*");
        let back = GatewayConfig::from_toml(&cfg.to_toml(), "inline").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_backend_values_name_their_key() {
        for (text, key) in [
            ("[auth]\nmode = \"webhook\"\n", "auth.webhook.url"),
            ("[auth]\nalgorithm = \"RS256\"\n", "auth.public_key_file"),
            (
                "[uplink]\ndefault_url = \"https://x/\"\n",
                "uplink.default_url",
            ),
            ("[uplink]\nmax_in_flight = 0\n", "uplink.max_in_flight"),
            (
                "[events]\nbatch_max = 50\nqueue_max = 10\n",
                "events.queue_max",
            ),
        ] {
            let cfg = GatewayConfig::from_toml(text, "inline").unwrap();
            let msg = cfg.validate(2).unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
        let err = GatewayConfig::from_toml("[events]\nbatch = 5\n", "x").unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
    }
}
