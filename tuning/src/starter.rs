//! The commented starter configuration that `gateway config` prints.
//!
//! The values come from serialising [`GatewayConfig::default`]; the comments
//! come from [`DOCS`], one entry per section and per key, next to the model.
//! Keys the default leaves out (unset options, empty lists) are written as
//! commented-out examples, so every key of the model appears once. The tests
//! check both directions: every serialised key has a comment, and every
//! documented key exists in the model (its example parses).

use crate::config::GatewayConfig;

/// What one section or key of the configuration means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// Dotted path: `shard` for a section, `shard.count` for a key.
    pub path: &'static str,
    /// One-line meaning (with units and what 0 means, where it matters).
    pub doc: &'static str,
    /// For a key the default leaves unset: a TOML value to show, commented
    /// out. `None` for sections and keys that have a default value.
    pub example: Option<&'static str>,
}

const fn d(path: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        path,
        doc,
        example: None,
    }
}

const fn ex(path: &'static str, doc: &'static str, example: &'static str) -> KeyDoc {
    KeyDoc {
        path,
        doc,
        example: Some(example),
    }
}

/// Every section and key of [`GatewayConfig`], in the order of the model.
pub const DOCS: &[KeyDoc] = &[
    d("listen", "Listener addresses and socket options."),
    d("listen.client", "Client listener (wire protocol v1)."),
    d(
        "listen.control",
        "Control listener: push API, stats, /metrics.",
    ),
    ex(
        "listen.websocket",
        "WebSocket listener (RFC 6455, subprotocol gateway.v1: one v1 frame per binary message); off unless set.",
        "\"0.0.0.0:7102\"",
    ),
    ex(
        "listen.websocket_origins",
        "Origins a browser may open a WebSocket from (scheme://host[:port]); others get 403. Empty: any.",
        "[\"https://app.example.com\"]",
    ),
    ex(
        "listen.client_tls",
        "Client listener over TLS (wire protocol v1 in TLS 1.2/1.3); needs [tls] cert and key.",
        "\"0.0.0.0:7443\"",
    ),
    ex(
        "listen.websocket_tls",
        "WebSocket listener over TLS (wss://); needs [tls] cert and key.",
        "\"0.0.0.0:7444\"",
    ),
    ex(
        "listen.mqtt",
        "MQTT 3.1.1 listener (stock MQTT clients; password = the token; docs/MQTT.md); off unless set.",
        "\"0.0.0.0:1883\"",
    ),
    ex(
        "listen.mqtt_tls",
        "MQTT listener over TLS (mqtts); needs [tls] cert and key.",
        "\"0.0.0.0:8883\"",
    ),
    d("listen.backlog", "Accept backlog of each shard's listener."),
    ex(
        "listen.control_token",
        "Bearer token the control API requires; mandatory when `control` is not loopback.",
        "\"change-me\"",
    ),
    d(
        "listen.control_max_connections",
        "Most control connections one shard holds (1..=65536); over it: 503 and close.",
    ),
    d(
        "listen.control_head_timeout_ms",
        "Time a control request has to arrive whole, else 408 and close; 0 = off, else 100..=3600000.",
    ),
    d(
        "listen.control_idle_timeout_ms",
        "Time an idle keep-alive control connection is kept; 0 = off, else 100..=86400000.",
    ),
    d(
        "shard",
        "Settings every shard gets unless a [[shard_override]] says otherwise.",
    ),
    d("shard.count", "Number of shards; 0 = one per online CPU."),
    ex(
        "shard.cpus",
        "CPUs to pin shards to (shard i on cpus[i % len]); empty = shard i on the i-th CPU.",
        "[0, 1]",
    ),
    d(
        "shard.driver",
        "Which driver runs the shards: \"auto\" (io_uring where the kernel and seccomp allow it, else epoll, logged with the reason), \"io_uring\" (refuse to start without it) or \"epoll\". Also --driver.",
    ),
    d(
        "shard.max_connections",
        "Most client connections per shard; 0 = as many as RLIMIT_NOFILE allows (on epoll, shared by all shards).",
    ),
    d(
        "shard.max_handshakes",
        "Most handshakes (no Welcome yet) in flight per shard.",
    ),
    d(
        "shard.ring_entries",
        "Submission queue entries of each io_uring ring (power of two).",
    ),
    d(
        "shard.buffer_size",
        "Bytes per receive buffer of the provided-buffer ring.",
    ),
    d(
        "shard.buffer_count",
        "Receive buffers per shard (power of two, at most 32768).",
    ),
    d(
        "shard.outbound_queue_bytes",
        "Bytes queued towards one connection before the slow-consumer policy applies.",
    ),
    d(
        "shard.slow_consumer",
        "\"disconnect\" or \"drop-oldest\" when a connection's queue is full.",
    ),
    d(
        "shard.timer_tick_ms",
        "Resolution of the shard's timer wheel, ms.",
    ),
    d(
        "shard.idle_batch_ms",
        "On a quiet shard, let completions gather this long before waking; 0 = off.",
    ),
    d(
        "shard.idle_batch_after_ms",
        "How long a shard must see only client traffic before it batches wake-ups, ms.",
    ),
    ex(
        "shard_override",
        "Per-shard overrides ([[shard_override]] with `index` and any of cpu, max_connections, max_handshakes, buffer_count, outbound_queue_bytes).",
        "[{ index = 0, cpu = 0 }]",
    ),
    d("protocol", "Wire-protocol timings and limits."),
    d("protocol.max_frame", "Largest frame body accepted, bytes."),
    d(
        "protocol.handshake_timeout_ms",
        "Time a new connection has to send its Hello, ms.",
    ),
    d(
        "protocol.heartbeat_default_ms",
        "Heartbeat when the client proposes none, ms.",
    ),
    d(
        "protocol.heartbeat_min_ms",
        "Lower clamp of the negotiated heartbeat, ms.",
    ),
    d(
        "protocol.heartbeat_max_ms",
        "Upper clamp of the negotiated heartbeat, ms.",
    ),
    d(
        "protocol.idle_factor",
        "A connection silent for idle_factor x heartbeat is closed.",
    ),
    d(
        "protocol.max_topics",
        "Most topics per Subscribe and per session.",
    ),
    d("protocol.max_topic_len", "Longest topic name, bytes."),
    d("protocol.max_apps", "Most apps one Hello may declare."),
    d("protocol.max_app_len", "Longest app name, bytes."),
    d("protocol.max_device_len", "Longest device label, bytes."),
    d(
        "protocol.close_linger_ms",
        "How long a connection the gateway closes may take to flush and FIN, ms.",
    ),
    d("auth", "How clients authenticate."),
    ex(
        "auth.jwt_secret",
        "HS256 secret, at least 32 bytes; GATEWAY_JWT_SECRET overrides it.",
        "\"at-least-32-bytes-of-random-secret-text\"",
    ),
    d("auth.leeway_s", "Clock skew tolerated on exp/nbf, seconds."),
    d(
        "auth.mode",
        "\"jwt\" (verify locally) or \"webhook\" (ask a backend).",
    ),
    d(
        "auth.algorithm",
        "JWT algorithm in jwt mode: \"HS256\" or \"RS256\".",
    ),
    ex(
        "auth.public_key_file",
        "PEM RSA public key file for RS256.",
        "\"/etc/gateway/jwt.pub.pem\"",
    ),
    d(
        "auth.webhook",
        "The auth webhook, used when auth.mode = \"webhook\".",
    ),
    ex(
        "auth.webhook.url",
        "http://host:port/path the Hello is POSTed to.",
        "\"http://127.0.0.1:8080/auth\"",
    ),
    d(
        "auth.webhook.timeout_ms",
        "Time the backend has to answer, ms.",
    ),
    d(
        "auth.webhook.connect_timeout_ms",
        "Time to connect to the backend, ms.",
    ),
    d(
        "auth.webhook.cache_ttl_ms",
        "How long a verdict is cached, ms; 0 = no cache.",
    ),
    d(
        "auth.webhook.cache_entries",
        "Most cached verdicts per shard.",
    ),
    d(
        "auth.webhook.max_in_flight",
        "Most webhook calls in flight per shard.",
    ),
    d(
        "auth.webhook.pool_size",
        "Keep-alive connections to the webhook per shard.",
    ),
    d(
        "uplink",
        "Uplink forwarding: Uplink frames become HTTP POSTs to backends.",
    ),
    ex(
        "uplink.default_url",
        "Backend for (app, route) pairs no [[uplink.route]] names; none = Reply(404).",
        "\"http://127.0.0.1:8080/uplink\"",
    ),
    ex(
        "uplink.route",
        "Per-(app, route) backends ([[uplink.route]] with app, route, url).",
        "[{ app = \"chat\", route = \"*\", url = \"http://127.0.0.1:8080/chat\" }]",
    ),
    d(
        "uplink.pool_size",
        "Keep-alive connections per backend per shard.",
    ),
    d(
        "uplink.pipeline_depth",
        "Requests one backend connection carries at once; 1 = none.",
    ),
    d(
        "uplink.max_in_flight",
        "Most uplinks in flight per shard; beyond it Reply(429).",
    ),
    d(
        "uplink.connect_timeout_ms",
        "Time to connect to a backend, ms; past it Reply(503).",
    ),
    d(
        "uplink.request_timeout_ms",
        "Time for the whole request, ms; past it Reply(504).",
    ),
    d(
        "uplink.down_hold_ms",
        "After a failed connect, answer Reply(503) at once for this long, ms.",
    ),
    d(
        "uplink.max_response_bytes",
        "Largest backend response body; larger = Reply(502).",
    ),
    d(
        "events",
        "Presence events (online/offline), batched and POSTed as JSON.",
    ),
    ex(
        "events.url",
        "http://host:port/path batches are POSTed to; none = no events.",
        "\"http://127.0.0.1:8080/events\"",
    ),
    d(
        "events.batch_max",
        "A batch is sent once it holds this many events...",
    ),
    d(
        "events.batch_ms",
        "...or once its oldest event is this old, ms.",
    ),
    d(
        "events.retries",
        "Attempts after the first before a batch is dropped.",
    ),
    d(
        "events.backoff_ms",
        "Wait before the first retry, ms; doubles per retry.",
    ),
    d("events.backoff_max_ms", "Cap of the retry wait, ms."),
    d(
        "events.queue_max",
        "Most events waiting per shard; beyond it new ones are dropped.",
    ),
    d("events.timeout_ms", "Time for one POST, ms."),
    d(
        "events.connect_timeout_ms",
        "Time to connect to the events backend, ms.",
    ),
    d(
        "admission",
        "Who may connect, and how many (checked at accept).",
    ),
    d(
        "admission.max_connections_per_ip",
        "Most connections from one IP per shard; 0 = no cap.",
    ),
    ex(
        "admission.allow",
        "CIDRs allowed to connect; empty = everyone not denied.",
        "[\"10.0.0.0/8\"]",
    ),
    ex(
        "admission.deny",
        "CIDRs refused (wins over allow).",
        "[\"192.0.2.0/24\"]",
    ),
    d("shutdown", "Graceful shutdown on SIGTERM/SIGINT."),
    d(
        "shutdown.deadline_ms",
        "Exit within this long of the signal, ms.",
    ),
    d(
        "shutdown.kick_rate",
        "Kicks sent per second per shard while draining.",
    ),
    ex(
        "shutdown.reconnect",
        "Reconnect hints sent in the going-away Kick.",
        "[\"gw2.example.com:7100\"]",
    ),
    d(
        "shutdown.retry_after_ms",
        "Suggested client back-off before reconnecting, ms.",
    ),
    d("push", "Push delivery."),
    d(
        "push.default_rate",
        "Recipients per second for topic and broadcast pushes naming no rate; 0 = no pacing.",
    ),
    d(
        "push.mailbox_capacity",
        "Messages each cross-shard mailbox holds before senders wait.",
    ),
    d(
        "store",
        "The durable store of pushes sent with \"ack\": true; one per shard, under dir/shard-<i>.",
    ),
    d(
        "store.dir",
        "Directory of the store's files, relative to the working directory; --data-dir overrides it.",
    ),
    d(
        "store.durability",
        "When a push counts as stored: \"fsync\" (written and fdatasync'ed: survives a power cut) or \"os\" (written to the OS: survives a SIGKILL).",
    ),
    d(
        "store.ack_timeout_ms",
        "Wait for the Ack of a delivered durable push before the first redelivery, ms; doubles per delivery.",
    ),
    d(
        "store.ack_timeout_max_ms",
        "Cap of the doubling wait between redeliveries, ms.",
    ),
    d(
        "store.max_deliveries",
        "Deliveries of one push before it is dead-lettered (removed, counted, reported as undelivered).",
    ),
    d(
        "store.resume_window_ms",
        "How long a disconnected session may be resumed with its token, ms.",
    ),
    d(
        "store.ttl_ms",
        "How long a durable push is kept when the push names no ttl_ms, ms.",
    ),
    d(
        "store.user_max_pushes",
        "Most pushes one user's inbox holds.",
    ),
    d(
        "store.user_max_bytes",
        "Most bytes (as stored on disk) one user's inbox holds.",
    ),
    d(
        "store.inbox_overflow",
        "A push to a full inbox: \"reject\" (the push API answers 507) or \"drop-oldest\" (counted).",
    ),
    d(
        "store.max_pushes",
        "Most pushes the whole store holds, all shards together; over it 507.",
    ),
    d(
        "store.max_bytes",
        "Most live bytes the whole store holds on disk, all shards together; over it 507.",
    ),
    d(
        "store.segment_bytes",
        "Size at which a store file is closed and the next begun, bytes.",
    ),
    d(
        "mqtt",
        "What MQTT clients' PUBLISHes become: uplinks whose route is the topic, or a prefix's route.",
    ),
    ex(
        "mqtt.route",
        "Topic prefixes to uplink routes ([[mqtt.route]] with prefix, route); the longest match wins.",
        "[{ prefix = \"sensors/\", route = \"telemetry\" }]",
    ),
    d(
        "tls",
        "Certificate and key of the TLS listeners (client_tls, websocket_tls, mqtt_tls); re-read on SIGHUP.",
    ),
    ex(
        "tls.cert",
        "PEM file with the certificate chain, leaf first.",
        "\"/etc/gateway/cert.pem\"",
    ),
    ex(
        "tls.key",
        "PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).",
        "\"/etc/gateway/key.pem\"",
    ),
    d(
        "tls.min_version",
        "Oldest TLS version accepted: \"1.2\" or \"1.3\".",
    ),
    d("log", "Logging."),
    d(
        "log.level",
        "tracing filter directive; RUST_LOG overrides it.",
    ),
];

/// The documentation of `path` (a section or a dotted key), if any.
pub fn doc_of(path: &str) -> Option<&'static KeyDoc> {
    DOCS.iter().find(|k| k.path == path)
}

/// The commented-out example lines of the keys of `section` that the
/// default leaves unset (`# key = value`, each after its comment).
fn examples_for(section: &str, out: &mut String) {
    for k in DOCS {
        let Some(example) = k.example else { continue };
        let (parent, key) = k.path.rsplit_once('.').unwrap_or(("", k.path));
        if parent == section {
            out.push_str(&format!("# {}\n# {key} = {example}\n", k.doc));
        }
    }
}

/// `key` of a `key = value` line, if the line is one.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(key)
}

/// A commented starter configuration: every section with its defaults,
/// each section and key preceded by what it means. It parses back into
/// [`GatewayConfig::default`].
pub fn starter_toml() -> String {
    let body = GatewayConfig::default().to_toml();
    let mut out = String::from(
        "# gateway configuration: every section with its defaults (`gateway config`).\n\
         # Every key is optional and unknown keys are an error. Uncomment and edit.\n",
    );
    examples_for("", &mut out);
    let mut section = String::new();
    for line in body.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push('\n');
            section = name.to_string();
            if let Some(k) = doc_of(name) {
                out.push_str(&format!("# {}\n", k.doc));
            }
            out.push_str(line);
            out.push('\n');
            examples_for(name, &mut out);
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(key) = key_of(line) {
            let path = format!("{section}.{key}");
            if let Some(k) = doc_of(&path) {
                out.push_str(&format!("# {}\n", k.doc));
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Dotted paths of every table and key in `table`.
    fn paths(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if let toml::Value::Table(t) = v {
                paths(&path, t, out);
            }
            out.push(path);
        }
    }

    #[test]
    fn every_serialised_key_has_a_comment() {
        let table: toml::Table = toml::from_str(&GatewayConfig::default().to_toml()).unwrap();
        let mut all = Vec::new();
        paths("", &table, &mut all);
        assert!(all.len() > 50, "{all:?}");
        for p in &all {
            let k = doc_of(p).unwrap_or_else(|| panic!("{p} has no entry in starter::DOCS"));
            assert!(k.example.is_none(), "{p} has a default: no example needed");
            assert!(!k.doc.is_empty());
        }
        // The documented keys without an example are exactly the serialised ones.
        for k in DOCS.iter().filter(|k| k.example.is_none()) {
            assert!(
                all.iter().any(|p| p == k.path),
                "{} is not in the model",
                k.path
            );
        }
    }

    #[test]
    fn every_example_is_a_key_of_the_model() {
        // Uncomment every example: the result must still parse (unknown
        // keys are errors), so no documented key can drift from the model.
        let text: String = starter_toml()
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if key_of(rest).is_some() => rest.to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = GatewayConfig::from_toml(&text, "uncommented").unwrap();
        assert_eq!(cfg.shard.cpus, vec![0, 1]);
        assert_eq!(cfg.shard_overrides.len(), 1);
        assert_eq!(cfg.uplink.routes.len(), 1);
        assert!(cfg.auth.jwt_secret.unwrap().len() >= crate::config::MIN_HS256_SECRET_BYTES);
    }

    #[test]
    fn starter_parses_back_into_the_defaults() {
        let text = starter_toml();
        let cfg = GatewayConfig::from_toml(&text, "starter").unwrap();
        assert_eq!(cfg, GatewayConfig::default());
        cfg.validate(2).unwrap();
        for section in ["[listen]", "[shard]", "[auth.webhook]", "[log]"] {
            assert!(text.contains(section), "{section} missing:\n{text}");
        }
        assert!(text.contains("# Number of shards; 0 = one per online CPU.\ncount = 0\n"));
    }
}
