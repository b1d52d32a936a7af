//! Request framing and the mock's endpoints.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;

/// Events kept for `GET /events`.
const KEEP: usize = 10_000;

/// One parsed request.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// Whether the connection stays open.
    pub keep_alive: bool,
}

/// A request from the front of `buf`, or `None` if incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut len = 0usize;
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("bad content-length")?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            keep_alive = !v.contains("close") && (keep_alive || v.contains("keep-alive"));
        }
    }
    if buf.len() < head + len {
        return Ok(None);
    }
    let r = Request {
        method: req.method.unwrap_or(""),
        path: req.path.unwrap_or(""),
        body: &buf[head..head + len],
        keep_alive,
    };
    Ok(Some((r, head + len)))
}

/// A small xorshift generator for the error rate.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the thread.
    pub fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let addr = &t as *const u64 as u64;
        Self((t ^ addr.rotate_left(32)) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn respond(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8]) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} Mock\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// Answers `req` into `out`.
pub fn handle(req: &Request<'_>, shared: &Shared, rng: &mut Rng, out: &mut Vec<u8>) {
    let stats = &shared.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method, path) {
        ("GET", "/stats") => {
            respond(
                out,
                200,
                "application/json",
                stats.to_json().to_string().as_bytes(),
            );
        }
        ("GET", "/events") => {
            let kept: Vec<serde_json::Value> = shared
                .kept
                .lock()
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            let body = serde_json::Value::Array(kept).to_string();
            respond(out, 200, "application/json", body.as_bytes());
        }
        ("POST", "/auth") => {
            if shared.args.auth_delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(shared.args.auth_delay_ms));
            }
            let v: serde_json::Value = serde_json::from_slice(req.body).unwrap_or_default();
            let token = v["token"].as_str().unwrap_or("");
            let answer = if let Some(user) = token.strip_prefix("allow:") {
                stats.auth_allowed.fetch_add(1, Ordering::Relaxed);
                serde_json::json!({"allow": true, "user": user})
            } else {
                stats.auth_denied.fetch_add(1, Ordering::Relaxed);
                let reason = token.strip_prefix("deny:").unwrap_or("unknown token");
                serde_json::json!({"allow": false, "reason": reason})
            };
            respond(out, 200, "application/json", answer.to_string().as_bytes());
        }
        ("POST", "/events") => {
            let v: serde_json::Value = serde_json::from_slice(req.body).unwrap_or_default();
            let events = v["events"].as_array().cloned().unwrap_or_default();
            stats.event_batches.fetch_add(1, Ordering::Relaxed);
            stats
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            for e in &events {
                match e["type"].as_str() {
                    Some("online") => stats.online.fetch_add(1, Ordering::Relaxed),
                    Some("offline") => stats.offline.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
            if let Ok(mut kept) = shared.kept.lock() {
                kept.extend(events);
                while kept.len() > KEEP {
                    kept.pop_front();
                }
            }
            respond(out, 200, "application/json", b"{}");
        }
        ("POST", p) if p.starts_with("/status/") => {
            let status = p["/status/".len()..].parse().unwrap_or(500);
            respond(out, status, "application/octet-stream", req.body);
        }
        ("POST", p) if p.starts_with("/delay/") => {
            let ms = p["/delay/".len()..].parse().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            respond(out, 200, "application/octet-stream", req.body);
        }
        ("POST", _) => {
            if shared.args.delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(shared.args.delay_ms));
            }
            if shared.args.error_rate > 0.0 && rng.next_f64() < shared.args.error_rate {
                stats.uplink_errors.fetch_add(1, Ordering::Relaxed);
                respond(out, 500, "text/plain", b"mock error");
            } else {
                stats.uplinks.fetch_add(1, Ordering::Relaxed);
                respond(out, 200, "application/octet-stream", req.body);
            }
        }
        _ => respond(out, 404, "text/plain", b"no such endpoint"),
    }
}
