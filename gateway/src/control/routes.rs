//! Routing of control requests to their handlers.

use serde_json::json;

use super::http::Request;
use crate::runtime::Shared;
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

fn json_response(status: u16, value: &serde_json::Value) -> Response {
    Response {
        status,
        content_type: "application/json",
        body: serde_json::to_vec(value).unwrap_or_default(),
    }
}

/// A JSON error body `{"error": message}`.
pub fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": message })).unwrap_or_default()
}

/// Answers one request.
pub fn route(req: &Request, shared: &Shared) -> Response {
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/healthz") => json_response(200, &json!({ "status": "ok" })),
        ("GET", "/v1/stats") => json_response(200, &stats_json(shared)),
        (_, "/healthz" | "/v1/stats") => {
            json_response(405, &json!({ "error": "method not allowed" }))
        }
        _ => json_response(
            404,
            &json!({ "error": format!("no such endpoint: {path}") }),
        ),
    }
}

/// Per-shard counters and their totals.
fn stats_json(shared: &Shared) -> serde_json::Value {
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
    json!({ "shards": shards, "totals": totals })
}
