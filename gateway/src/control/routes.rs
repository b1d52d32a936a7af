//! Responses of the control listener and the endpoints that need nothing
//! but the published figures (health, stats, metrics, the status page). Endpoints that act
//! on sessions are answered by the shard (`shard_core::push::api`).

use serde_json::json;

use crate::shared::Shared;
use crate::stats::ShardStats;

/// A response before it is written.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Content type of `body`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// A JSON error `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "error": message }))
    }
}

/// A JSON error body `{"error": message}`.
pub fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": message })).unwrap_or_default()
}

/// `GET /healthz`.
pub fn health() -> Response {
    Response::json(200, &json!({ "status": "ok" }))
}

/// The status page (`GET /`): one self-contained HTML file that polls
/// `/v1/stats` every second (no external resources).
pub const STATUS_PAGE: &str = include_str!("assets/status.html");

/// `GET /`: the status page.
pub fn status_page() -> Response {
    Response {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: STATUS_PAGE.as_bytes().to_vec(),
    }
}

/// `GET /v1/stats`: per-shard counters and their totals.
pub fn stats(shared: &Shared) -> Response {
    let snapshots: Vec<ShardStats> = shared.stats.iter().map(|p| p.snapshot()).collect();
    let mut totals = vec![0u64; ShardStats::NAMES.len()];
    let shards: Vec<serde_json::Value> = snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut obj = serde_json::Map::new();
            obj.insert("shard".into(), json!(i));
            for (j, (name, v)) in ShardStats::NAMES.iter().zip(s.values()).enumerate() {
                totals[j] += v;
                obj.insert((*name).into(), json!(v));
            }
            serde_json::Value::Object(obj)
        })
        .collect();
    let totals: serde_json::Map<String, serde_json::Value> = ShardStats::NAMES
        .iter()
        .zip(totals)
        .map(|(n, v)| ((*n).to_string(), json!(v)))
        .collect();
    Response::json(200, &json!({ "shards": shards, "totals": totals }))
}

/// `GET /metrics`: Prometheus text.
pub fn metrics(shared: &Shared) -> Response {
    Response {
        status: 200,
        content_type: "text/plain; version=0.0.4",
        body: shared.metrics.render().into_bytes(),
    }
}
