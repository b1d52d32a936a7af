//! End-to-end tests of the backend-facing surface (issue 5): JWT and
//! webhook auth, uplink forwarding, presence events. The backends are
//! Python's `http.server` (HTTP/1.1 keep-alive; nobody here wrote it) and
//! the mock (`gateway-bench backend`), both real processes on loopback.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e_tests::{
    Client, Gateway, PyBackend, TempDir, binary, free_port, http, token, token_with, unix_now,
};
use protocol::auth::Claims;
use protocol::client::{ClientConfig, ClientEvent};
use protocol::proto::{ErrorCode, Reply};

const SECS: Duration = Duration::from_secs(5);

/// The mock backend (`gateway-bench backend`), killed on drop.
struct Backend {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Backend {
    fn wait_listening(self) -> Self {
        let deadline = Instant::now() + SECS;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return self;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("backend on {} did not start", self.addr);
    }

    /// `gateway-bench backend` with extra arguments.
    fn mock(args: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(binary("gateway-bench"))
            .arg("backend")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gateway-bench backend");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: TempDir::new("mock"),
        }
        .wait_listening()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http(self.addr, "GET", path, "").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address nothing listens on.
fn dead_url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", free_port())
}

fn error_then_close(c: &mut Client) -> Option<u32> {
    let (closed, events) = c.wait_closed(SECS);
    assert!(closed, "connection still open; events: {events:?}");
    let code = events.iter().find_map(|e| match e {
        ClientEvent::Error(err) => Some(err.code),
        _ => None,
    });
    if code.is_none() {
        eprintln!("closed without an Error frame; events: {events:?}");
    }
    code
}

fn hello(addr: SocketAddr, token: &str, device: &str, apps: &[&str]) -> Client {
    let mut c = Client::connect_with(
        addr,
        ClientConfig {
            token: token.into(),
            device: device.into(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            ..ClientConfig::default()
        },
    );
    c.send_with(|s, out| s.start(out));
    c
}

fn welcome_user(c: &mut Client) -> String {
    match c.next_event(SECS) {
        Some(ClientEvent::Welcome(w)) => w.user,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// Sends an uplink and waits for its Reply.
fn uplink(c: &mut Client, app: &str, route: &str, payload: &[u8], wait: Duration) -> Reply {
    let mut out = Vec::new();
    let id = c
        .session
        .uplink(app, route, Bytes::copy_from_slice(payload), &mut out);
    c.send_raw(&out);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match c.next_event(deadline - Instant::now()) {
            Some(ClientEvent::Reply(r)) if r.request_id == id => return r,
            Some(_) => continue,
            None => break,
        }
    }
    panic!("no Reply to uplink {id} within {wait:?}");
}

#[test]
fn jwt_accepts_denies_and_expires() {
    let gw = Gateway::start(1, "[auth]\nleeway_s = 0\n");
    let mut ok = Client::connect(gw.client, &token("alice"));
    assert_eq!(ok.handshake().user, "alice");
    let mut bad = hello(gw.client, "not-a-jwt", "d", &[]);
    assert_eq!(
        error_then_close(&mut bad),
        Some(ErrorCode::Unauthorized as u32)
    );
    let expired = token_with(Claims {
        sub: "old".into(),
        exp: Some(unix_now() - 60),
        ..Claims::default()
    });
    let mut old = hello(gw.client, &expired, "d", &[]);
    assert_eq!(
        error_then_close(&mut old),
        Some(ErrorCode::TokenExpired as u32)
    );
    let apps_limited = token_with(Claims {
        sub: "carol".into(),
        apps: Some(vec!["chat".into()]),
        exp: Some(unix_now() + 60),
        ..Claims::default()
    });
    let mut wrong_app = hello(gw.client, &apps_limited, "d", &["news"]);
    assert_eq!(
        error_then_close(&mut wrong_app),
        Some(ErrorCode::Unauthorized as u32)
    );
}

/// base64url without padding, via the `openssl` CLI's base64 output.
fn b64url(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    s
}

#[test]
fn jwt_rs256_from_a_pem_public_key() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: no openssl CLI to make an RSA key");
        return;
    }
    let dir = TempDir::new("rsa");
    let key = dir.0.join("key.pem");
    let public = dir.0.join("pub.pem");
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    run(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    run(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let sign = |claims: &str| {
        let input = format!(
            "{}.{}",
            b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64url(claims.as_bytes())
        );
        let msg = dir.0.join("msg");
        std::fs::write(&msg, &input).unwrap();
        let out = Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-sign",
                key.to_str().unwrap(),
                msg.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        format!("{input}.{}", b64url(&out.stdout))
    };
    let cfg = format!(
        "[auth]\nalgorithm = \"RS256\"\npublic_key_file = \"{}\"\n",
        public.display()
    );
    let gw = Gateway::start(1, &cfg);
    let good = sign(&format!(
        r#"{{"sub":"rsa-user","exp":{}}}"#,
        unix_now() + 60
    ));
    let mut c = Client::connect(gw.client, &good);
    assert_eq!(c.handshake().user, "rsa-user");
    let expired = sign(&format!(
        r#"{{"sub":"rsa-user","exp":{}}}"#,
        unix_now() - 600
    ));
    let mut old = hello(gw.client, &expired, "d", &[]);
    assert_eq!(
        error_then_close(&mut old),
        Some(ErrorCode::TokenExpired as u32)
    );
    // An HS256 token is the wrong algorithm for this gateway.
    let mut hs = hello(gw.client, &token("x"), "d", &[]);
    assert_eq!(
        error_then_close(&mut hs),
        Some(ErrorCode::Unauthorized as u32)
    );
}

fn webhook_config(url: &str) -> String {
    format!("[auth]\nmode = \"webhook\"\n[auth.webhook]\nurl = \"{url}\"\ntimeout_ms = 500\n")
}

#[test]
fn webhook_allows_denies_and_times_out_against_python() {
    let py = PyBackend::start();
    let gw = Gateway::start(2, &webhook_config(&py.url("/auth")));
    let mut ok = hello(gw.client, "allow:bob", "phone", &["chat"]);
    assert_eq!(welcome_user(&mut ok), "bob");
    assert!(ok.ping_pong(), "the session works after webhook auth");
    let mut no = hello(gw.client, "who-knows", "phone", &[]);
    assert_eq!(
        error_then_close(&mut no),
        Some(ErrorCode::Unauthorized as u32)
    );
    let start = Instant::now();
    let mut slow = hello(gw.client, "slow:sam", "phone", &[]);
    let code = error_then_close(&mut slow);
    assert_eq!(code, Some(ErrorCode::BackendTimeout as u32));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Shards publish their counters every 250 ms.
    assert_eq!(gw.wait_total("auth_webhook_errors", 1), 1);
}

#[test]
fn webhook_against_the_mock_caches_verdicts_and_reports_a_dead_backend() {
    let mock = Backend::mock(&[]);
    let gw = Gateway::start(1, &webhook_config(&mock.url("/auth")));
    for _ in 0..3 {
        let mut c = hello(gw.client, "allow:dora", "d", &[]);
        assert_eq!(welcome_user(&mut c), "dora");
    }
    let mut no = hello(gw.client, "deny:banned", "d", &[]);
    assert_eq!(
        error_then_close(&mut no),
        Some(ErrorCode::Unauthorized as u32)
    );
    assert_eq!(
        gw.wait_total("auth_webhook_calls", 2),
        2,
        "two distinct Hellos"
    );
    assert_eq!(gw.wait_total("auth_cache_hits", 2), 2);
    assert_eq!(mock.get_json("/stats")["auth_allowed"], 1);

    let dead = Gateway::start(1, &webhook_config(&dead_url("/auth")));
    let mut c = hello(dead.client, "allow:x", "d", &[]);
    assert_eq!(
        error_then_close(&mut c),
        Some(ErrorCode::BackendUnavailable as u32)
    );
}

fn uplink_config(extra: &str) -> String {
    format!("[uplink]\nrequest_timeout_ms = 400\n{extra}")
}

#[test]
fn uplinks_round_trip_and_carry_backend_errors_against_python() {
    let py = PyBackend::start();
    let cfg = uplink_config(&format!(
        "default_url = \"{}\"\n[[uplink.route]]\napp = \"chat\"\nroute = \"fail\"\nurl = \"{}\"\n\
         [[uplink.route]]\napp = \"chat\"\nroute = \"slow\"\nurl = \"{}\"\n",
        py.url("/echo"),
        py.url("/fail"),
        py.url("/slow")
    ));
    let gw = Gateway::start(1, &cfg);
    let mut c = Client::established(gw.client, "erin");
    let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    for _ in 0..3 {
        let r = uplink(&mut c, "chat", "send", &payload, SECS);
        assert_eq!(r.status, 200);
        assert_eq!(r.payload.as_ref(), payload.as_slice(), "payload intact");
    }
    let r = uplink(&mut c, "chat", "fail", b"x", SECS);
    assert_eq!((r.status, r.payload.as_ref()), (500, &b"boom"[..]));
    let start = Instant::now();
    let r = uplink(&mut c, "chat", "slow", b"x", SECS);
    assert_eq!(r.status, 504);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The connection to the slow backend was dropped; others still work.
    let r = uplink(&mut c, "chat", "send", b"after", SECS);
    assert_eq!((r.status, r.payload.as_ref()), (200, &b"after"[..]));
    assert!(c.ping_pong());
    assert_eq!(gw.wait_total("uplink_timeouts", 1), 1);
}

#[test]
fn uplink_to_a_dead_backend_is_answered_at_once_and_the_gateway_carries_on() {
    let cfg = uplink_config(&format!("default_url = \"{}\"\n", dead_url("/x")));
    let gw = Gateway::start(1, &cfg);
    let mut c = Client::established(gw.client, "fred");
    for _ in 0..5 {
        let start = Instant::now();
        let r = uplink(&mut c, "chat", "send", b"x", SECS);
        assert_eq!(r.status, 503);
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(c.ping_pong(), "gateway unaffected");
    let mut other = Client::established(gw.client, "gina");
    assert!(other.ping_pong());
    // No route at all: 404.
    let gw2 = Gateway::start(1, "");
    let mut d = Client::established(gw2.client, "hal");
    assert_eq!(uplink(&mut d, "chat", "send", b"x", SECS).status, 404);
}

#[test]
fn uplinks_against_the_mock_echo_error_and_cap() {
    let mock = Backend::mock(&[]);
    let cfg = format!(
        "[uplink]\nrequest_timeout_ms = 2000\nmax_in_flight = 1\ndefault_url = \"{}\"\n\
         [[uplink.route]]\napp = \"a\"\nroute = \"err\"\nurl = \"{}\"\n\
         [[uplink.route]]\napp = \"a\"\nroute = \"slow\"\nurl = \"{}\"\n",
        mock.url("/echo"),
        mock.url("/status/500"),
        mock.url("/delay/500")
    );
    let gw = Gateway::start(1, &cfg);
    let mut c = Client::established(gw.client, "ivy");
    let r = uplink(&mut c, "a", "echo", b"hello mock", SECS);
    assert_eq!((r.status, r.payload.as_ref()), (200, &b"hello mock"[..]));
    assert_eq!(uplink(&mut c, "a", "err", b"e", SECS).status, 500);
    // Over the in-flight cap: the second uplink is refused at once.
    let mut out = Vec::new();
    let slow_id = c
        .session
        .uplink("a", "slow", Bytes::from_static(b"s"), &mut out);
    c.send_raw(&out);
    let r = uplink(&mut c, "a", "echo", b"x", Duration::from_millis(300));
    assert_eq!(r.status, 429);
    match c.next_event(SECS) {
        Some(ClientEvent::Reply(r)) => assert_eq!((r.request_id, r.status), (slow_id, 200)),
        other => panic!("expected the slow Reply, got {other:?}"),
    }
    // /status and /delay are not counted as echoes by the mock.
    assert_eq!(mock.get_json("/stats")["uplinks"], 1);
    assert_eq!(gw.wait_total("uplink_over_cap", 1), 1);
}

fn events_config(url: &str, extra: &str) -> String {
    format!("[events]\nurl = \"{url}\"\n{extra}")
}

#[test]
fn presence_events_arrive_batched_with_their_fields() {
    let py = PyBackend::start();
    let gw = Gateway::start(
        1,
        &events_config(&py.url("/events"), "batch_max = 4\nbatch_ms = 300\n"),
    );
    let mut clients: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = hello(
                gw.client,
                &token(&format!("u{i}")),
                &format!("dev{i}"),
                &["chat"],
            );
            welcome_user(&mut c);
            c
        })
        .collect();
    let mut last = clients.pop().unwrap();
    last.send_with(|s, out| s.bye(out));
    assert!(last.wait_closed(SECS).0);
    let deadline = Instant::now() + SECS;
    let mut seen = serde_json::Value::Null;
    while Instant::now() < deadline {
        seen = py.get_json("/");
        if seen["events"].as_array().map_or(0, Vec::len) >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = seen["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 4, "{seen}");
    assert!(seen["batches"].as_u64().unwrap() <= 2, "batched: {seen}");
    let online: Vec<_> = events.iter().filter(|e| e["type"] == "online").collect();
    assert_eq!(online.len(), 3);
    let e = online.iter().find(|e| e["user"] == "u1").unwrap();
    assert_eq!(e["device"], "dev1");
    assert_eq!(e["apps"], serde_json::json!(["chat"]));
    assert_eq!(e["shard"], 0);
    assert!(!e["session"].as_str().unwrap().is_empty());
    assert!(e["ts_ms"].as_u64().unwrap() / 1000 >= unix_now() - 10);
    let off = events.iter().find(|e| e["type"] == "offline").unwrap();
    assert_eq!(
        (&off["user"], &off["reason"]),
        (&"u2".into(), &"client_bye".into())
    );
    assert_eq!(gw.wait_total("events_sent", 4), 4);
}

#[test]
fn events_to_the_mock_and_to_a_dead_backend() {
    let mock = Backend::mock(&[]);
    let gw = Gateway::start(2, &events_config(&mock.url("/events"), "batch_ms = 50\n"));
    for i in 0..10 {
        let mut c = Client::established(gw.client, &format!("m{i}"));
        c.send_with(|s, out| s.bye(out));
        assert!(c.wait_closed(SECS).0);
    }
    let deadline = Instant::now() + SECS;
    while Instant::now() < deadline && mock.get_json("/stats")["events"] != 20 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = mock.get_json("/stats");
    assert_eq!(
        (stats["online"].as_u64(), stats["offline"].as_u64()),
        (Some(10), Some(10))
    );

    let dead = Gateway::start(
        1,
        &events_config(
            &dead_url("/events"),
            "batch_max = 2\nbatch_ms = 20\nretries = 1\nbackoff_ms = 20\nqueue_max = 4\n",
        ),
    );
    let mut live = Vec::new();
    for i in 0..12 {
        live.push(Client::established(dead.client, &format!("d{i}")));
    }
    assert!(
        live.iter_mut().all(Client::ping_pong),
        "gateway keeps serving"
    );
    let deadline = Instant::now() + SECS;
    while Instant::now() < deadline && dead.total("events_dropped") < 12 {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dead.total("events_dropped") >= 12, "{}", dead.stats());
    assert_eq!(dead.total("events_sent"), 0);
    assert!(dead.total("events_batch_failures") >= 2);
}
