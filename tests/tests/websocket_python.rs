//! The WebSocket listener against a client nobody here wrote: Python's
//! `websockets` (PyPI, installed into target/pyenv by `make deps`), driven by
//! tests/py/ws_peer.py. It upgrades with the subprotocol `gateway.v1`,
//! authenticates, receives a unicast and a durable push (and acks it),
//! pings, and closes with 1000.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use e2e_tests::{Gateway, LineChild, http, test_python, test_script, token};
use serde_json::json;

fn spawn(url: &str, token: &str) -> LineChild {
    let mut cmd = Command::new(test_python());
    cmd.arg(test_script("ws_peer.py")).args([url, token]);
    LineChild::spawn(cmd)
}

#[test]
fn pythons_websockets_client_authenticates_gets_pushes_acks_pings_and_closes() {
    let gw = Gateway::start(2, "[listen]\nwebsocket = \"127.0.0.1:0\"\n");
    let url = format!("ws://{}/", gw.websocket.unwrap());
    let mut peer = spawn(&url, &token("py-user"));
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
