//! The WebSocket listener against a client nobody here wrote: Python's
//! `websockets` (PyPI, installed into target/pyenv by `make deps`), driven by
//! tests/py/ws_peer.py. It upgrades with the subprotocol `gateway.v1`,
//! authenticates, receives a unicast and a durable push (and acks it),
//! pings, and closes with 1000.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use e2e_tests::{Gateway, http, token};
use serde_json::json;

/// The venv `make deps` makes (or `$GATEWAY_TEST_PYTHON`).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GATEWAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let p = target.join("pyenv").join("bin").join("python3");
    assert!(
        p.exists(),
        "{} is missing: run `make deps` (it installs websockets for this test)",
        p.display()
    );
    p
}

struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Peer {
    fn spawn(url: &str, token: &str) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/ws_peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([url, token])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// The next line the peer prints, within 10 s.
    fn line(&self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("the python peer said nothing in 10 s"),
            Err(RecvTimeoutError::Disconnected) => panic!("the python peer exited"),
        }
    }

    fn say(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pythons_websockets_client_authenticates_gets_pushes_acks_pings_and_closes() {
    let gw = Gateway::start(2, "[listen]\nwebsocket = \"127.0.0.1:0\"\n");
    let url = format!("ws://{}/", gw.websocket.unwrap());
    let mut peer = Peer::spawn(&url, &token("py-user"));
    assert_eq!(peer.line(), "welcome py-user");

    let push = |body: serde_json::Value| {
        let (status, text) = http(gw.control, "POST", "/v1/push", &body.to_string()).unwrap();
        assert_eq!(status, 200, "{text}");
    };
    push(json!({"to": {"user": "py-user"}, "payload": "plain"}));
    let line = peer.line();
    assert!(
        line.starts_with("push ") && line.ends_with(" 0 plain"),
        "{line}"
    );

    push(json!({"to": {"user": "py-user"}, "payload": "durable", "ack": true}));
    let line = peer.line();
    assert!(line.ends_with(" 1 durable"), "{line}");
    assert_eq!(
        gw.wait_total("acks", 1),
        1,
        "the peer's Ack reached the gateway"
    );

    peer.say("ping");
    assert_eq!(peer.line(), "pong");
    assert!(gw.wait_total_until("ws_pings", Duration::from_secs(5), |v| v >= 1) >= 1);

    peer.say("bye");
    // The reader thread ends with the close, then the peer reports it.
    let mut line = peer.line();
    if line.starts_with("reader-ended") {
        line = peer.line();
    }
    assert_eq!(line, "closed 1000");
    assert_eq!(gw.wait_total("client_closes", 1), 1);
    assert_eq!(gw.total("ws_protocol_errors"), 0);
}
