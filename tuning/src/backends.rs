//! Configuration of the backends the gateway fronts (DESIGN.md §4): auth
//! mode and webhook, the uplink route table, presence events.
//!
//! These sections hang off [`crate::config::GatewayConfig`] (`[auth]`,
//! `[uplink]`, `[events]`); they live in their own file to keep the model
//! readable. Every key has a default and unknown keys are an error;
//! `GatewayConfig::validate` checks their values and names the offending key.

use serde::{Deserialize, Serialize};

/// How a client's `Hello.token` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// The token is a JWT verified locally (`auth.algorithm`).
    #[default]
    Jwt,
    /// The token, device and apps are POSTed to `auth.webhook.url`.
    Webhook,
}

/// JWT signature algorithm accepted in `jwt` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.jwt_secret` (or `GATEWAY_JWT_SECRET`).
    #[default]
    HS256,
    /// RSA-SHA256 with the PEM public key in `auth.public_key_file`.
    RS256,
}

/// The auth webhook (`[auth.webhook]`), used when `auth.mode = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// `http://host:port/path` the Hello is POSTed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long the backend has to answer; past it the client gets
    /// `Error(BACKEND_TIMEOUT)` and is closed.
    pub timeout_ms: u32,
    /// Time to connect to the backend.
    pub connect_timeout_ms: u32,
    /// How long a verdict is cached (0 = no cache).
    pub cache_ttl_ms: u32,
    /// Most cached verdicts per shard.
    pub cache_entries: u32,
    /// Most webhook calls in flight per shard; beyond it → `Error(OVERLOADED)`.
    pub max_in_flight: u32,
    /// Keep-alive connections to the webhook per shard.
    pub pool_size: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
            cache_ttl_ms: 30_000,
            cache_entries: 10_000,
            max_in_flight: 1_024,
            pool_size: 4,
        }
    }
}

/// One entry of the uplink route table (`[[uplink.route]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UplinkRoute {
    /// The `Uplink.app` this applies to.
    pub app: String,
    /// The `Uplink.route`; `"*"` (or absent) means every route of the app.
    #[serde(default = "any_route")]
    pub route: String,
    /// `http://host:port/path` the uplink is POSTed to.
    pub url: String,
}

fn any_route() -> String {
    "*".into()
}

/// Uplink forwarding (`[uplink]`): `Uplink` frames become HTTP POSTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Backend for (app, route) pairs no `[[uplink.route]]` names; none
    /// means such uplinks get `Reply(404)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_url: Option<String>,
    /// Per-(app, route) backends; exact route beats `"*"` beats the default.
    #[serde(rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<UplinkRoute>,
    /// Keep-alive connections per backend per shard.
    pub pool_size: u32,
    /// Requests one connection carries at once (HTTP/1.1 pipelining);
    /// 1 = none. Raise it only for backends known to pipeline.
    pub pipeline_depth: u32,
    /// Most uplinks in flight (queued or sent) per shard; beyond it the
    /// client gets `Reply(429)` at once.
    pub max_in_flight: u32,
    /// Time to connect to a backend; past it → `Reply(503)`.
    pub connect_timeout_ms: u32,
    /// Time for the whole request; past it → `Reply(504)`.
    pub request_timeout_ms: u32,
    /// After a failed connect, uplinks to that backend get `Reply(503)` at
    /// once for this long instead of waiting on another connect.
    pub down_hold_ms: u32,
    /// Largest response body accepted; a larger one → `Reply(502)`.
    pub max_response_bytes: u32,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            default_url: None,
            routes: Vec::new(),
            pool_size: 8,
            pipeline_depth: 1,
            max_in_flight: 4_096,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            down_hold_ms: 1_000,
            max_response_bytes: 1 << 20,
        }
    }
}

/// Presence events (`[events]`): online/offline, batched, POSTed as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `http://host:port/path` batches are POSTed to; none = no events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A batch is sent once it holds this many events...
    pub batch_max: u32,
    /// ...or once its oldest event is this old.
    pub batch_ms: u32,
    /// Attempts after the first before a batch is dropped (and counted).
    pub retries: u32,
    /// Wait before the first retry; doubles per retry up to `backoff_max_ms`.
    pub backoff_ms: u32,
    /// Cap of the retry wait.
    pub backoff_max_ms: u32,
    /// Most events waiting per shard; beyond it new events are dropped (and counted).
    pub queue_max: u32,
    /// Time for one POST.
    pub timeout_ms: u32,
    /// Time to connect to the events backend.
    pub connect_timeout_ms: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            url: None,
            batch_max: 100,
            batch_ms: 100,
            retries: 3,
            backoff_ms: 200,
            backoff_max_ms: 5_000,
            queue_max: 10_000,
            timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
        }
    }
}

/// A parsed `http://` URL: where to connect and what to put in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address literal (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when the URL names none).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path]`; `https` and userinfo are refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{text}` is not an http:// URL (https is not supported)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{text}` has no host (or has userinfo)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: unclosed `[` in host"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{text}`: bad port `{p}`"))?,
            None => 80,
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("`{text}`: empty host or blanks in the path"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/a/b?x=1")
        );
        let u = HttpUrl::parse("http://backend").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = HttpUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_header()),
            ("::1", "[::1]:9".to_string())
        );
        for bad in [
            "https://x/",
            "http://",
            "http://h:0/",
            "http://h:x/",
            "ftp://h",
            "http://u@h/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
