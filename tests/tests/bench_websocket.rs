//! `gateway-bench --transport ws` against the real gateway's WebSocket
//! listener (`[listen] websocket`, port 0): a connect run and the smallest
//! fanout, VALID with every delivery; `--transport ws` refused for a peer
//! other than the gateway.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;

use std::process::Command;
use std::time::Duration;

use bench_common::{LAG, bench};
use e2e_tests::{Gateway, binary};

const WS_CONFIG: &str = "[listen]\nwebsocket = \"127.0.0.1:0\"\n";

/// A gateway with a WebSocket listener, and that listener's address.
fn gateway_with_websocket() -> (Gateway, String) {
    let gw = Gateway::start(2, WS_CONFIG);
    let ws = gw
        .websocket
        .expect("the ready file names the websocket listener")
        .to_string();
    (gw, ws)
}

#[test]
fn connect_over_websocket_establishes_and_holds_every_connection() {
    let (gw, ws) = gateway_with_websocket();
    let r = bench(
        &[
            "connect",
            "--transport",
            "ws",
            "--target",
            &ws,
            "-n",
            "200",
            "--rate",
            "1000",
            "--hold-secs",
            "1",
            "--settle-secs",
            "0.5",
            "--heartbeat-ms",
            "1000",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert!(r.valid(), "{}", r.stdout);
    assert_eq!(r.run["params"]["transport"], "ws");
    assert_eq!(r.metric("connections_established"), 200.0);
    // Held through the hold on 1 s heartbeats carried as binary messages.
    assert_eq!(r.metric("held_after_hold"), 200.0);
    assert_eq!(r.count("handshake"), 200);
    assert!(
        r.run["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        r.run["failures"]
    );
    // They came in over the WebSocket listener, each one upgraded.
    let upgrades = gw.wait_total_until("ws_upgrades", Duration::from_secs(5), |v| v >= 200);
    assert_eq!(upgrades, 200);
    assert_eq!(gw.total("ws_upgrades_refused"), 0);
    assert_eq!(gw.total("ws_protocol_errors"), 0);
    assert_eq!(gw.wait_total("connections", 0), 0);
}

#[test]
fn fanout_over_websocket_delivers_every_push_once() {
    let (gw, ws) = gateway_with_websocket();
    let control = gw.control.to_string();
    let r = bench(
        &[
            "fanout",
            "--transport",
            "ws",
            "--max-lag-us",
            LAG,
            "--target",
            &ws,
            "--control",
            &control,
            "-n",
            "300",
            "-m",
            "5",
            "--msg-rate",
            "10",
            "--topic",
            "news",
            "--drain-secs",
            "5",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, gw.log());
    assert!(r.valid(), "{}", r.stdout);
    assert_eq!(r.run["params"]["transport"], "ws");
    assert_eq!(r.metric("messages_sent"), 5.0);
    assert_eq!(r.metric("deliveries"), 1500.0, "{}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    assert_eq!(r.metric("duplicates"), 0.0);
    assert_eq!(r.count("completion"), 5);
}

#[test]
fn tls_transports_without_a_ca_are_refused_in_one_line() {
    for transport in ["tls", "wss"] {
        let out = Command::new(binary("gateway-bench"))
            .args([
                "connect",
                "--peer",
                "nats",
                "--transport",
                transport,
                "--target",
                "127.0.0.1:9",
                "-n",
                "1",
            ])
            .output()
            .expect("run gateway-bench");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim(),
            format!(
                "gateway-bench: --transport {transport} needs --tls-ca PEM (the CA that signed \
                 the server's certificate)"
            )
        );
    }
}
