//! Python's `http.server` as a backend of the gateway (nobody here wrote
//! it): webhook auth, uplink echo and an events sink, in a child process on
//! a port it binds itself (port 0) and reports on its first stdout line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, http};

/// The handler: /auth (`allow:U` and `slow:U` tokens allowed as U, after
/// 3 s for `slow:`; anything else denied), /echo (the body back, with the
/// user and route headers in `X-Seen`), /fail (500), /slow (3 s), /events
/// (kept), /uplinks (each uplink kept with its user, app and route
/// headers, answered 200; `GET` any path returns `{"batches": N, "events":
/// [...], "uplinks": [...]}`).
const PY_SERVER: &str = r#"
import json, sys, time, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENTS = []
UPLINKS = []
BATCHES = [0]
LOCK = threading.Lock()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, status, body, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        with LOCK:
            body = json.dumps({"batches": BATCHES[0], "events": EVENTS, "uplinks": UPLINKS}).encode()
        self.reply(200, body, "application/json")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path == "/auth":
            req = json.loads(body)
            tok = req["token"]
            if tok.startswith("slow:"):
                time.sleep(3)
            if tok.startswith("allow:") or tok.startswith("slow:"):
                ans = {"allow": True, "user": tok.split(":", 1)[1]}
            else:
                ans = {"allow": False, "reason": "py says no"}
            self.reply(200, json.dumps(ans).encode(), "application/json")
        elif self.path == "/echo":
            hdr = self.headers.get("x-gateway-user", "") + "|" + self.headers.get("x-gateway-route", "")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Seen", hdr)
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/uplinks":
            h = self.headers
            with LOCK:
                UPLINKS.append({"user": h.get("x-gateway-user", ""), "app": h.get("x-gateway-app", ""),
                                "route": h.get("x-gateway-route", ""), "body": body.decode("utf-8", "replace")})
            self.reply(200, b"ok")
        elif self.path == "/fail":
            self.reply(500, b"boom")
        elif self.path == "/slow":
            time.sleep(3)
            self.reply(200, b"late")
        elif self.path == "/events":
            with LOCK:
                BATCHES[0] += 1
                EVENTS.extend(json.loads(body)["events"])
            self.reply(200, b"{}", "application/json")
        else:
            self.reply(404, b"no")

ThreadingHTTPServer.daemon_threads = True
SERVER = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(SERVER.server_address[1], flush=True)
SERVER.serve_forever()
"#;

/// The Python backend child process, killed on drop.
pub struct PyBackend {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl PyBackend {
    /// Starts it and waits for the port it bound.
    pub fn start() -> Self {
        let dir = TempDir::new("py");
        let script = dir.0.join("backend.py");
        std::fs::write(&script, PY_SERVER).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (make deps installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("python backend printed {line:?}, not a port"));
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An `[events]` section that sends the gateway's events here, in
    /// batches of at most 50 ms (append other sections after it).
    pub fn events_config(&self) -> String {
        format!(
            "[events]\nurl = \"{}\"\nbatch_ms = 50\n",
            self.url("/events")
        )
    }

    /// `GET path` as JSON (the events it was sent, and the batch count).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http(self.addr, "GET", path, "").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until the events sink holds an event matching `pred`, and
    /// returns every event it holds then; panics after `within`.
    pub fn wait_event(
        &self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        self.wait_kept("events", within, pred)
    }

    /// Waits until the backend keeps an uplink matching `pred` (at
    /// `/uplinks`), and returns every uplink it holds then.
    pub fn wait_uplink(
        &self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        self.wait_kept("uplinks", within, pred)
    }

    fn wait_kept(
        &self,
        list: &str,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.get_json("/");
            let kept = seen[list].as_array().cloned().unwrap_or_default();
            if kept.iter().any(&pred) {
                return kept;
            }
            assert!(
                Instant::now() < deadline,
                "no such entry of {list} within {within:?}: {seen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PyBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
