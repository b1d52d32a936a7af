//! The gateway's push API driven open-loop: each request is written at its
//! intended time without waiting for the answers to earlier ones (HTTP/1.1
//! pipelining), and a reader thread matches answers to requests in order.
//! A stop-and-wait publisher would stop sending while an answer is slow,
//! hiding exactly the stalls a latency figure must show (coordinated
//! omission); the brokers' publishers never wait either.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{PublishError, To, fill};
use crate::histo::Latency;

fn push_target(to: To<'_>) -> serde_json::Value {
    match to {
        To::All => serde_json::json!({"all": true}),
        To::Topic(t) => serde_json::json!({"topic": t}),
        To::User(u) => serde_json::json!({"user": u}),
    }
}

/// `POST /v1/push` of one push; `ack`: durable (`"ack": true`, answered
/// once stored).
fn push_request(to: To<'_>, payload: &str, ack: bool) -> String {
    let body =
        serde_json::json!({"to": push_target(to), "payload": payload, "ack": ack}).to_string();
    format!(
        "POST /v1/push HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `POST /v1/push/batch` of several pushes.
fn batch_request(items: &[(To<'_>, &str)], ack: bool) -> String {
    let mut body = String::new();
    for (to, payload) in items {
        body.push_str(
            &serde_json::json!({"to": push_target(*to), "payload": payload, "ack": ack})
                .to_string(),
        );
        body.push('\n');
    }
    format!(
        "POST /v1/push/batch HTTP/1.1\r\nhost: bench\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Pushes a `/v1/push/batch` answer says were accepted.
fn batch_accepted(body: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v["results"]
                .as_array()
                .map(|r| r.iter().filter(|x| x["id"].is_u64()).count())
        })
        .unwrap_or(0) as u64
}

/// Durable pushes an answer of `POST /v1/push` or `/v1/push/batch` says
/// were stored (`"stored": true`, on the push or on each batch line).
fn stored_count(body: &str) -> u64 {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return 0;
    };
    let stored = |x: &serde_json::Value| x["stored"].as_bool() == Some(true);
    match v["results"].as_array() {
        Some(lines) => lines.iter().filter(|x| stored(x)).count() as u64,
        None => u64::from(stored(&v)),
    }
}

/// What a refusal says, for the failure counts: its `error` field (a
/// durable refusal also carries an id, which would make every refusal a
/// reason of its own), else the whole body.
fn refusal_reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

/// Reads one HTTP response (status, body) off `stream`, `buf` holding
/// what was read past the previous one.
fn read_http(
    stream: &mut TcpStream,
    addr: SocketAddr,
    buf: &mut Vec<u8>,
) -> Result<(u16, String), PublishError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = resp.code.unwrap_or(0);
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0);
                if buf.len() < head + len {
                    fill(stream, addr, buf)?;
                    continue;
                }
                let body = String::from_utf8_lossy(&buf[head..head + len]).into_owned();
                buf.drain(..head + len);
                return Ok((status, body));
            }
            Ok(httparse::Status::Partial) => fill(stream, addr, buf)?,
            Err(e) => return Err(PublishError::Protocol(format!("bad HTTP response: {e}"))),
        }
    }
}

/// What the answers said, once every request was answered (or failed).
#[derive(Debug, Default)]
pub struct Answers {
    /// Pushes the gateway accepted (with `ack`: answered `"stored": true`).
    pub accepted: u64,
    /// Durable pushes answered `"stored": true` (`ack` only).
    pub stored: u64,
    /// Pushes refused, by the answer's HTTP status (507, 503, ...).
    pub refused: BTreeMap<u16, u64>,
    /// Pushes not accepted, by reason.
    pub errors: BTreeMap<String, u64>,
    /// Request written → answer read, µs, one sample per request.
    pub call: Latency,
}

/// A request in flight: when it was written and how many pushes it holds.
#[derive(Debug)]
struct Sent {
    at: Instant,
    pushes: u64,
}

/// What the writer and the answer reader share. The writer announces a
/// request before writing it, so an answer always finds its request here;
/// the reader sleeps only in `read`, never on the writer.
#[derive(Debug, Default)]
struct Pipeline {
    in_flight: Mutex<VecDeque<Sent>>,
    /// The writer has written its last request.
    done: AtomicBool,
}

impl Pipeline {
    fn unanswered(&self) -> usize {
        self.in_flight.lock().map_or(0, |q| q.len())
    }
}

/// One pipelined connection to the push API.
#[derive(Debug)]
pub struct PipelinedPush {
    addr: SocketAddr,
    stream: TcpStream,
    shared: Arc<Pipeline>,
    window: usize,
    ack: bool,
    reader: Option<JoinHandle<Answers>>,
}

impl PipelinedPush {
    /// Connects to the control listener at `addr`; at most `window`
    /// requests are unanswered at once (the writer waits past that, and
    /// the wait shows as schedule lag). With `ack` every push is durable
    /// (`"ack": true`) and counts as accepted only when answered
    /// `"stored": true`.
    pub fn connect(addr: SocketAddr, window: usize, ack: bool) -> Result<Self, PublishError> {
        let io = |source| PublishError::Io { addr, source };
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut answers_in = stream.try_clone().map_err(io)?;
        answers_in
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(io)?;
        let shared = Arc::new(Pipeline::default());
        let pipeline = shared.clone();
        let reader = std::thread::Builder::new()
            .name("push-answers".into())
            .spawn(move || read_answers(&mut answers_in, addr, &pipeline, ack))
            .map_err(io)?;
        Ok(Self {
            addr,
            stream,
            shared,
            window: window.max(1),
            ack,
            reader: Some(reader),
        })
    }

    /// Writes one request carrying `items` (`/v1/push` for one,
    /// `/v1/push/batch` for more) without waiting for its answer.
    pub fn submit(&mut self, items: &[(To<'_>, &str)]) -> Result<(), PublishError> {
        let request = match items {
            [] => return Ok(()),
            [(to, payload)] => push_request(*to, payload, self.ack),
            _ => batch_request(items, self.ack),
        };
        while self.shared.unanswered() >= self.window {
            if self.reader.as_ref().is_none_or(JoinHandle::is_finished) {
                return Err(PublishError::Protocol(
                    "the answer reader stopped early".into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        if let Ok(mut q) = self.shared.in_flight.lock() {
            q.push_back(Sent {
                at: Instant::now(),
                pushes: items.len() as u64,
            });
        }
        let addr = self.addr;
        self.stream
            .write_all(request.as_bytes())
            .map_err(|source| PublishError::Io { addr, source })
    }

    /// Waits for every answer and returns what they said.
    pub fn finish(mut self) -> Answers {
        self.shared.done.store(true, Ordering::SeqCst);
        if self.shared.unanswered() == 0 {
            // The reader may be waiting in `read` for an answer that will
            // never come: end that read.
            let _ = self.stream.shutdown(Shutdown::Read);
        }
        let mut answers = self
            .reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_else(|| {
                let mut a = Answers::default();
                a.errors.insert("the answer reader panicked".into(), 1);
                a
            });
        // Written after the reader gave up: never answered.
        if let Ok(mut q) = self.shared.in_flight.lock() {
            for r in q.drain(..) {
                count(
                    &mut answers,
                    "no answer (connection failed)".into(),
                    r.pushes,
                );
            }
        }
        answers
    }
}

/// Longest wait for an answer to a request in flight.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn count(out: &mut Answers, why: String, pushes: u64) {
    *out.errors.entry(why).or_default() += pushes;
}

/// Reads answers in order and matches each to the oldest request in
/// flight, until the writer is done and everything is answered; after a
/// read error the requests in flight count as failed.
fn read_answers(stream: &mut TcpStream, addr: SocketAddr, shared: &Pipeline, ack: bool) -> Answers {
    let mut out = Answers::default();
    let mut buf = Vec::new();
    loop {
        let answer = read_http(stream, addr, &mut buf);
        let oldest = shared.in_flight.lock().ok().and_then(|mut q| q.pop_front());
        let Some(req) = oldest else {
            // Nothing was in flight: the end of the run, or a quiet spell.
            if shared.done.load(Ordering::SeqCst) {
                break;
            }
            match answer {
                Err(PublishError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    count(&mut out, e.to_string(), 1);
                    break;
                }
                Ok((status, _)) => {
                    count(&mut out, format!("unrequested answer {status}"), 1);
                    continue;
                }
            }
        };
        out.call
            .record_us(u64::try_from(req.at.elapsed().as_micros()).unwrap_or(u64::MAX));
        match answer {
            Ok((200, body)) if ack => {
                // Durable: only a push answered stored counts as sent.
                let stored = stored_count(&body).min(req.pushes);
                out.stored += stored;
                out.accepted += stored;
                if stored < req.pushes {
                    count(
                        &mut out,
                        "answered 200 without \"stored\": true".into(),
                        req.pushes - stored,
                    );
                }
            }
            Ok((200, body)) => {
                let accepted = if req.pushes == 1 {
                    1
                } else {
                    batch_accepted(&body)
                };
                out.accepted += accepted;
                if accepted < req.pushes {
                    count(&mut out, "refused in batch".into(), req.pushes - accepted);
                }
            }
            Ok((status, body)) => {
                *out.refused.entry(status).or_default() += req.pushes;
                count(
                    &mut out,
                    PublishError::Status {
                        status,
                        body: refusal_reason(&body),
                    }
                    .to_string(),
                    req.pushes,
                );
            }
            Err(e) => {
                // The connection is unusable: fail what is in flight, and
                // what the writer still sends fails on its own write.
                let why = e.to_string();
                count(&mut out, why.clone(), req.pushes);
                if let Ok(mut q) = shared.in_flight.lock() {
                    for r in q.drain(..) {
                        count(&mut out, why.clone(), r.pushes);
                    }
                }
                break;
            }
        }
        if shared.done.load(Ordering::SeqCst) && shared.unanswered() == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::TcpListener;

    use super::*;

    fn body_of(request: &str) -> serde_json::Value {
        let (_, body) = request.split_once("\r\n\r\n").expect("a body");
        serde_json::from_str(body).expect("JSON")
    }

    #[test]
    fn a_durable_push_asks_for_acks() {
        let r = push_request(To::User("u7"), "hi", true);
        assert!(r.starts_with("POST /v1/push HTTP/1.1\r\n"), "{r}");
        let v = body_of(&r);
        assert_eq!(v["ack"], true);
        assert_eq!(v["to"]["user"], "u7");
        assert_eq!(
            body_of(&push_request(To::User("u7"), "hi", false))["ack"],
            false
        );
        let batch = batch_request(&[(To::User("a"), "1"), (To::User("b"), "2")], true);
        let (_, lines) = batch.split_once("\r\n\r\n").expect("a body");
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            assert_eq!(v["ack"], true, "{line}");
        }
    }

    #[test]
    fn stored_answers_are_counted_on_pushes_and_batch_lines() {
        assert_eq!(stored_count(r#"{"id": 4, "online": 1, "stored": true}"#), 1);
        assert_eq!(
            stored_count(r#"{"id": 4, "online": 0, "stored": false, "error": "inbox full"}"#),
            0
        );
        assert_eq!(stored_count(r#"{"id": 4, "online": 1}"#), 0, "not durable");
        assert_eq!(
            stored_count(
                r#"{"results": [{"id": 1, "online": 1, "stored": true}, {"error": "bad"},
                    {"id": 3, "online": 0, "stored": true}]}"#
            ),
            2
        );
        assert_eq!(stored_count("not json"), 0);
    }

    #[test]
    fn a_refusal_is_named_by_its_error_not_its_id() {
        assert_eq!(
            refusal_reason(r#"{"id": 99, "online": 0, "stored": false, "error": "inbox full"}"#),
            "inbox full"
        );
        assert_eq!(refusal_reason("busy"), "busy");
    }

    /// A push API on a port the kernel picked that answers each of
    /// `answers` to one request, in order.
    fn push_api(answers: Vec<(u16, &'static str)>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            for (status, body) in answers {
                // One request: its head and its content-length body.
                loop {
                    let mut h = [httparse::EMPTY_HEADER; 16];
                    let mut req = httparse::Request::new(&mut h);
                    if let Ok(httparse::Status::Complete(head)) = req.parse(&seen) {
                        let len = req
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                            .unwrap_or(0usize);
                        if seen.len() >= head + len {
                            seen.drain(..head + len);
                            break;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        addr
    }

    #[test]
    fn durable_answers_count_stored_and_refusals_by_status() {
        let addr = push_api(vec![
            (200, r#"{"id": 1, "online": 1, "stored": true}"#),
            (
                507,
                r#"{"id": 2, "online": 0, "stored": false, "error": "inbox full"}"#,
            ),
            (200, r#"{"id": 3, "online": 1, "stored": true}"#),
            (503, r#"{"stored": false, "error": "store failed"}"#),
            (200, r#"{"id": 5, "online": 1}"#),
        ]);
        let mut api = PipelinedPush::connect(addr, 8, true).expect("connect");
        for _ in 0..5 {
            api.submit(&[(To::User("u1"), "x")]).expect("submit");
        }
        let a = api.finish();
        assert_eq!(a.stored, 2);
        assert_eq!(a.accepted, 2);
        assert_eq!(a.refused, BTreeMap::from([(503, 1), (507, 1)]));
        assert_eq!(a.errors["push API answered 507: inbox full"], 1);
        assert_eq!(a.errors["push API answered 503: store failed"], 1);
        assert_eq!(a.errors["answered 200 without \"stored\": true"], 1);
        assert_eq!(a.call.count(), 5);
    }
}
