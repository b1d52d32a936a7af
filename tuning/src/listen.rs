//! The `[listen]` section of the configuration: listener addresses, socket
//! options and the control listener's limits (docs/SECURITY.md, "Control
//! listener"), with their validation. It imports nothing from
//! [`crate::config`], which embeds it: errors are [`ListenError`]s that
//! `GatewayConfig::validate` turns into its own.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A `[listen]` value out of range: its dotted key and what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct ListenError {
    /// Dotted key path of the offending value.
    pub key: &'static str,
    /// What is wrong and what would be right.
    pub why: String,
}

fn invalid(key: &'static str, why: impl Into<String>) -> ListenError {
    ListenError {
        key,
        why: why.into(),
    }
}

/// Listener addresses and socket options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Client listener (wire protocol v1).
    pub client: SocketAddr,
    /// Control listener (push API, stats, metrics).
    pub control: SocketAddr,
    /// WebSocket listener (RFC 6455, subprotocol `gateway.v1`: each binary
    /// message one v1 frame, for browsers); none unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<SocketAddr>,
    /// Origins a browser may open a WebSocket from, exactly as the browser
    /// sends them (`https://app.example.com`); a handshake from any other
    /// Origin is refused with `403`. Empty (the default): any Origin, and
    /// clients that send none (apps, tools).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub websocket_origins: Vec<String>,
    /// Client listener over TLS (wire protocol v1 inside TLS 1.2/1.3, with
    /// `[tls] cert` and `key`); none unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<SocketAddr>,
    /// WebSocket listener over TLS (`wss://`, with `[tls] cert` and
    /// `key`); none unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_tls: Option<SocketAddr>,
    /// MQTT 3.1.1 listener (stock MQTT clients on the same sessions,
    /// topics and backends; docs/MQTT.md); none unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<SocketAddr>,
    /// MQTT listener over TLS (`mqtts`, with `[tls] cert` and `key`); none
    /// unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_tls: Option<SocketAddr>,
    /// Accept backlog of each shard's listener.
    pub backlog: u32,
    /// Bearer token required on the control listener when it is bound to a
    /// non-loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_token: Option<String>,
    /// Most control connections one shard holds (1..=65536, default 1024:
    /// far above a backend's keep-alive pool, far below what hurts). A
    /// connection over it is answered `503` with `connection: close` and
    /// closed (counter `control_refused`). Bounds the memory stalled
    /// connections can pin: this many × the largest request (1 MiB) per
    /// shard, × 64 KiB for heads.
    pub control_max_connections: u32,
    /// Time a control request has to arrive whole, head and body, counted
    /// from its first byte, or from the previous answer when bytes of it
    /// were already buffered, or from the accept for a connection's first
    /// request (default 10 000; 0 turns it off; else 100..=3 600 000). Over
    /// it the request is answered `408` and the connection closed (a
    /// connection that sent nothing is closed without an answer); counter
    /// `control_head_timeouts`. Covers slowloris-style stalled heads.
    pub control_head_timeout_ms: u32,
    /// Time a keep-alive control connection may sit with no request in
    /// progress (nothing buffered, nothing being answered) before it is
    /// closed (default 60 000, longer than usual client pool idle times so
    /// a pool rarely races the close; 0 turns it off; else
    /// 100..=86 400 000); counter `control_idle_closes`.
    pub control_idle_timeout_ms: u32,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            client: SocketAddr::from(([0, 0, 0, 0], 7100)),
            control: SocketAddr::from(([127, 0, 0, 1], 7101)),
            websocket: None,
            websocket_origins: Vec::new(),
            client_tls: None,
            websocket_tls: None,
            mqtt: None,
            mqtt_tls: None,
            backlog: 4096,
            control_token: None,
            control_max_connections: 1024,
            control_head_timeout_ms: 10_000,
            control_idle_timeout_ms: 60_000,
        }
    }
}

impl ListenConfig {
    /// The key of the first TLS listener configured, if any (they need the
    /// `[tls]` section).
    pub fn first_tls_listener(&self) -> Option<&'static str> {
        [
            ("listen.client_tls", self.client_tls),
            ("listen.websocket_tls", self.websocket_tls),
            ("listen.mqtt_tls", self.mqtt_tls),
        ]
        .into_iter()
        .find_map(|(key, addr)| addr.map(|_| key))
    }
}

/// Whether two listener addresses would claim the same port: the same IP,
/// or either one a wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

/// Checks the `[listen]` section; the error names the key.
pub fn validate(listen: &ListenConfig) -> Result<(), ListenError> {
    if !listen.control.ip().is_loopback()
        && listen.control_token.as_deref().is_none_or(str::is_empty)
    {
        return Err(invalid(
            "listen.control_token",
            format!(
                "required when the control listener ({}) is not on a loopback address: the push API would be open to the network",
                listen.control
            ),
        ));
    }
    let optional = [
        ("listen.websocket", listen.websocket),
        ("listen.client_tls", listen.client_tls),
        ("listen.websocket_tls", listen.websocket_tls),
        ("listen.mqtt", listen.mqtt),
        ("listen.mqtt_tls", listen.mqtt_tls),
    ];
    let mut taken = vec![
        ("listen.client", listen.client),
        ("listen.control", listen.control),
    ];
    for (key, addr) in optional {
        let Some(addr) = addr else { continue };
        for &(other, used) in &taken {
            if addr.port() != 0 && addr.port() == used.port() && overlaps(addr, used) {
                return Err(invalid(
                    key,
                    format!("{addr} is also {other} ({used}): each listener needs its own port"),
                ));
            }
        }
        taken.push((key, addr));
    }
    if let Some(o) = listen
        .websocket_origins
        .iter()
        .find(|o| o.is_empty() || o.ends_with('/') || !o.contains("://"))
    {
        return Err(invalid(
            "listen.websocket_origins",
            format!(
                "{o:?} is not an origin: write it as the browser sends it, scheme://host[:port] with no path (\"https://app.example.com\")"
            ),
        ));
    }
    if listen.backlog == 0 {
        return Err(invalid("listen.backlog", "must be at least 1"));
    }
    if !(1..=65_536).contains(&listen.control_max_connections) {
        return Err(invalid(
            "listen.control_max_connections",
            "must be in 1..=65536",
        ));
    }
    for (key, value, max) in [
        (
            "listen.control_head_timeout_ms",
            listen.control_head_timeout_ms,
            3_600_000,
        ),
        (
            "listen.control_idle_timeout_ms",
            listen.control_idle_timeout_ms,
            86_400_000,
        ),
    ] {
        if value != 0 && !(100..=max).contains(&value) {
            return Err(invalid(key, format!("must be 0 (off) or in 100..={max}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ListenConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn control_limits_parse_and_default() {
        let d = ListenConfig::default();
        assert_eq!(d.control_max_connections, 1024);
        assert_eq!(d.control_head_timeout_ms, 10_000);
        assert_eq!(d.control_idle_timeout_ms, 60_000);
        validate(&d).unwrap();
        let l = parse(
            "control_max_connections = 8\ncontrol_head_timeout_ms = 500\ncontrol_idle_timeout_ms = 0\n",
        );
        assert_eq!(l.control_max_connections, 8);
        assert_eq!(l.control_head_timeout_ms, 500);
        assert_eq!(l.control_idle_timeout_ms, 0);
        validate(&l).unwrap();
        assert!(toml::from_str::<ListenConfig>("control_max_conns = 1\n").is_err());
    }

    #[test]
    fn control_limits_out_of_range_name_their_key() {
        for (text, key) in [
            (
                "control_max_connections = 0\n",
                "listen.control_max_connections",
            ),
            (
                "control_max_connections = 70000\n",
                "listen.control_max_connections",
            ),
            (
                "control_head_timeout_ms = 5\n",
                "listen.control_head_timeout_ms",
            ),
            (
                "control_head_timeout_ms = 3600001\n",
                "listen.control_head_timeout_ms",
            ),
            (
                "control_idle_timeout_ms = 99\n",
                "listen.control_idle_timeout_ms",
            ),
            (
                "control_idle_timeout_ms = 86400001\n",
                "listen.control_idle_timeout_ms",
            ),
            ("backlog = 0\n", "listen.backlog"),
            ("control = \"0.0.0.0:7101\"\n", "listen.control_token"),
        ] {
            assert_eq!(validate(&parse(text)).unwrap_err().key, key, "{text}");
        }
    }

    #[test]
    fn websocket_listener_is_off_by_default_and_checked_when_set() {
        let d = ListenConfig::default();
        assert_eq!(d.websocket, None);
        assert!(d.websocket_origins.is_empty());
        let l = parse(
            "websocket = \"127.0.0.1:7102\"\nwebsocket_origins = [\"https://app.example.com\", \"http://localhost:5173\"]\n",
        );
        assert_eq!(l.websocket, Some(SocketAddr::from(([127, 0, 0, 1], 7102))));
        validate(&l).unwrap();
        for (text, key) in [
            ("websocket = \"127.0.0.1:7100\"\n", "listen.websocket"),
            ("websocket = \"0.0.0.0:7101\"\n", "listen.websocket"),
            (
                "websocket = \"127.0.0.1:7102\"\nwebsocket_tls = \"127.0.0.1:7102\"\n",
                "listen.websocket_tls",
            ),
            (
                "websocket_origins = [\"https://app.example.com/\"]\n",
                "listen.websocket_origins",
            ),
            (
                "websocket_origins = [\"app.example.com\"]\n",
                "listen.websocket_origins",
            ),
        ] {
            assert_eq!(validate(&parse(text)).unwrap_err().key, key, "{text}");
        }
        // Port 0 is chosen by the kernel: never a clash.
        validate(&parse(
            "client = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\n",
        ))
        .unwrap();
    }

    #[test]
    fn mqtt_listeners_are_off_by_default_and_need_their_own_ports() {
        let d = ListenConfig::default();
        assert_eq!((d.mqtt, d.mqtt_tls), (None, None));
        let l = parse("mqtt = \"127.0.0.1:1883\"\nmqtt_tls = \"127.0.0.1:8883\"\n");
        assert_eq!(l.mqtt, Some(SocketAddr::from(([127, 0, 0, 1], 1883))));
        validate(&l).unwrap();
        assert_eq!(l.first_tls_listener(), Some("listen.mqtt_tls"));
        for (text, key) in [
            ("mqtt = \"127.0.0.1:7100\"\n", "listen.mqtt"),
            (
                "mqtt = \"127.0.0.1:1883\"\nmqtt_tls = \"0.0.0.0:1883\"\n",
                "listen.mqtt_tls",
            ),
        ] {
            assert_eq!(validate(&parse(text)).unwrap_err().key, key, "{text}");
        }
    }
}
