//! The checks of a parsed configuration: ranges and cross-field consistency
//! of every section ([`GatewayConfig::validate`], each error naming its key),
//! the HS256 secret length rule and CIDR parsing, which the gateway also
//! uses on their own.

use super::error::ConfigError;
use super::model::{GatewayConfig, ShardConfig};
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

impl GatewayConfig {
    /// Checks ranges and cross-field consistency; the error names the key.
    pub fn validate(&self, online_cpus: usize) -> Result<(), ConfigError> {
        crate::listen::validate(&self.listen).map_err(|e| ConfigError::invalid(e.key, e.why))?;
        let count = self.shard_count(online_cpus);
        if count > 1024 {
            return Err(ConfigError::invalid(
                "shard.count",
                format!("{count} shards is more than 1024"),
            ));
        }
        for o in &self.shard_overrides {
            if o.index >= count {
                return Err(ConfigError::invalid(
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
            return Err(ConfigError::invalid(
                "protocol.max_frame",
                "must be in 1..=16777216",
            ));
        }
        if p.heartbeat_min_ms == 0 || p.heartbeat_min_ms > p.heartbeat_max_ms {
            return Err(ConfigError::invalid(
                "protocol.heartbeat_min_ms",
                "must be at least 1 and at most protocol.heartbeat_max_ms",
            ));
        }
        if !(p.heartbeat_min_ms..=p.heartbeat_max_ms).contains(&p.heartbeat_default_ms) {
            return Err(ConfigError::invalid(
                "protocol.heartbeat_default_ms",
                "must lie within [heartbeat_min_ms, heartbeat_max_ms]",
            ));
        }
        if !(p.idle_factor.is_finite() && p.idle_factor >= 1.0) {
            return Err(ConfigError::invalid(
                "protocol.idle_factor",
                "must be a number >= 1.0",
            ));
        }
        if p.handshake_timeout_ms == 0 {
            return Err(ConfigError::invalid(
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
                return Err(ConfigError::invalid(key, format!("must be in 1..={max}")));
            }
        }
        if p.close_linger_ms > 60_000 {
            return Err(ConfigError::invalid(
                "protocol.close_linger_ms",
                "must be at most 60000",
            ));
        }
        for (key, list) in [
            ("admission.allow", &self.admission.allow),
            ("admission.deny", &self.admission.deny),
        ] {
            for cidr in list {
                parse_cidr(cidr).map_err(|why| ConfigError::invalid(key, why))?;
            }
        }
        if !(16..=1 << 22).contains(&self.push.mailbox_capacity) {
            return Err(ConfigError::invalid(
                "push.mailbox_capacity",
                "must be in 16..=4194304",
            ));
        }
        if self.shutdown.kick_rate == 0 {
            return Err(ConfigError::invalid(
                "shutdown.kick_rate",
                "must be at least 1 per second",
            ));
        }
        if self.auth.mode == crate::backends::AuthMode::Jwt
            && self.auth.algorithm == crate::backends::JwtAlgorithm::HS256
            && let Some(secret) = &self.auth.jwt_secret
            && let Some(why) = hs256_secret_problem(secret, "the secret")
        {
            return Err(ConfigError::invalid("auth.jwt_secret", why));
        }
        validate_backends(self)?;
        self.store.validate(p.max_frame)?;
        self.tls.validate(self.listen.first_tls_listener())?;
        self.mqtt.validate()?;
        Ok(())
    }
}

fn validate_shard(s: &ShardConfig) -> Result<(), ConfigError> {
    if s.max_handshakes == 0 {
        return Err(ConfigError::invalid(
            "shard.max_handshakes",
            "must be at least 1",
        ));
    }
    if !s.buffer_count.is_power_of_two() || s.buffer_count > 32768 {
        return Err(ConfigError::invalid(
            "shard.buffer_count",
            format!(
                "{} must be a power of two no larger than 32768",
                s.buffer_count
            ),
        ));
    }
    if s.buffer_size < 64 || s.buffer_size > 1 << 20 {
        return Err(ConfigError::invalid(
            "shard.buffer_size",
            "must be in 64..=1048576 bytes",
        ));
    }
    if !s.ring_entries.is_power_of_two() || !(8..=32768).contains(&s.ring_entries) {
        return Err(ConfigError::invalid(
            "shard.ring_entries",
            "must be a power of two in 8..=32768",
        ));
    }
    if s.outbound_queue_bytes < 1024 {
        return Err(ConfigError::invalid(
            "shard.outbound_queue_bytes",
            "must be at least 1024",
        ));
    }
    if s.timer_tick_ms == 0 || s.timer_tick_ms > 10_000 {
        return Err(ConfigError::invalid(
            "shard.timer_tick_ms",
            "must be in 1..=10000",
        ));
    }
    if s.idle_batch_ms > 1_000 {
        return Err(ConfigError::invalid(
            "shard.idle_batch_ms",
            "must be in 0..=1000",
        ));
    }
    if s.idle_batch_after_ms < 100 {
        return Err(ConfigError::invalid(
            "shard.idle_batch_after_ms",
            "must be at least 100",
        ));
    }
    Ok(())
}

fn positive(key: &str, v: u32) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(())
}

fn url(key: &str, text: &str) -> Result<(), ConfigError> {
    HttpUrl::parse(text)
        .map(|_| ())
        .map_err(|why| ConfigError::invalid(key, why))
}

/// Checks the `[auth]`, `[uplink]` and `[events]` sections (their model is
/// [`crate::backends`]); the error names the key.
fn validate_backends(cfg: &GatewayConfig) -> Result<(), ConfigError> {
    let a = &cfg.auth;
    if a.algorithm == JwtAlgorithm::RS256 && a.mode == AuthMode::Jwt && a.public_key_file.is_none()
    {
        return Err(ConfigError::invalid(
            "auth.public_key_file",
            "RS256 needs a PEM public key file",
        ));
    }
    let w = &a.webhook;
    match (&w.url, a.mode) {
        (None, AuthMode::Webhook) => {
            return Err(ConfigError::invalid(
                "auth.webhook.url",
                "webhook mode needs a URL",
            ));
        }
        (Some(u), _) => url("auth.webhook.url", u)?,
        (None, AuthMode::Jwt) => {}
    }
    positive("auth.webhook.timeout_ms", w.timeout_ms)?;
    positive("auth.webhook.connect_timeout_ms", w.connect_timeout_ms)?;
    positive("auth.webhook.max_in_flight", w.max_in_flight)?;
    positive("auth.webhook.pool_size", w.pool_size)?;
    if a.mode == AuthMode::Webhook && w.timeout_ms >= cfg.protocol.handshake_timeout_ms {
        return Err(ConfigError::invalid(
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
            return Err(ConfigError::invalid(
                "uplink.route.app",
                "must not be empty",
            ));
        }
    }
    positive("uplink.pool_size", u.pool_size)?;
    positive("uplink.pipeline_depth", u.pipeline_depth)?;
    positive("uplink.max_in_flight", u.max_in_flight)?;
    positive("uplink.connect_timeout_ms", u.connect_timeout_ms)?;
    positive("uplink.request_timeout_ms", u.request_timeout_ms)?;
    if u.max_response_bytes < 1024 {
        return Err(ConfigError::invalid(
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
        return Err(ConfigError::invalid(
            "events.queue_max",
            "must be at least events.batch_max",
        ));
    }
    if e.backoff_max_ms < e.backoff_ms {
        return Err(ConfigError::invalid(
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
