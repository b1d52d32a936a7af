//! `gateway-bench --transport tls|wss` against the real gateway's TLS
//! listeners (`client_tls`, `websocket_tls`, port 0) and `--transport
//! ws|tls|wss` against the real mosquitto and nats-server, with a CA and
//! certificates made in the test (rcgen): every connection handshakes and
//! is held, every delivery arrives once, the TLS version asked for is the
//! one agreed, and a CA that did not sign the server's certificate is
//! refused. mosquitto's own `mosquitto_sub`, over TLS with the same CA, is
//! the independent witness that the harness publishes real MQTT over TLS.

// Test code: a failed step must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_common;
mod tls_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bench_common::{BenchRun, LAG, bench};
use bench_harness::peers::{PeerListener, PeerProc, start_mosquitto_with, start_nats_with};
use e2e_tests::{Gateway, TempDir, free_port};
use tls_common::Pki;

/// A gateway with both TLS listeners, its certificate signed by the CA in `dir`.
fn gateway_with_tls(dir: &Path) -> Gateway {
    Pki::new(dir).leaf(dir, "gateway");
    let config = format!(
        "[listen]\nclient_tls = \"127.0.0.1:0\"\nwebsocket_tls = \"127.0.0.1:0\"\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    Gateway::start(2, &config)
}

/// `gateway-bench connect` of `n` connections over `transport` to `target`.
fn connect(peer: &str, transport: &str, target: &str, ca: &Path, extra: &[&str]) -> BenchRun {
    let ca = ca.display().to_string();
    let mut args = vec![
        "connect",
        "--peer",
        peer,
        "--transport",
        transport,
        "--target",
        target,
        "--tls-ca",
        &ca,
        "-n",
        "100",
        "--rate",
        "500",
        "--hold-secs",
        "1",
        "--settle-secs",
        "0.5",
        "--max-lag-us",
        LAG,
    ];
    args.extend_from_slice(extra);
    bench(&args, Duration::from_secs(60))
}

/// `gateway-bench fanout`: 200 subscribers, 5 messages, over `transport`.
fn fanout(peer: &str, transport: &str, target: &str, ca: &Path, control: &str) -> BenchRun {
    let ca = ca.display().to_string();
    bench(
        &[
            "fanout",
            "--peer",
            peer,
            "--transport",
            transport,
            "--target",
            target,
            "--control",
            control,
            "--tls-ca",
            &ca,
            "-n",
            "200",
            "--connect-rate",
            "500",
            "-m",
            "5",
            "--msg-rate",
            "10",
            "--topic",
            "news",
            "--drain-secs",
            "5",
            "--max-lag-us",
            LAG,
        ],
        Duration::from_secs(60),
    )
}

/// Every one of the 100 connections handshook in full and was held.
fn assert_held_with_full_handshakes(r: &BenchRun, transport: &str) {
    assert_eq!(r.code, 0, "{transport}: {}\n{}", r.stdout, r.stderr);
    assert!(r.valid(), "{transport}: {}", r.stdout);
    assert_eq!(r.run["params"]["transport"], transport);
    assert_eq!(r.metric("held_after_hold"), 100.0, "{}", r.stdout);
    if transport == "tls" || transport == "wss" {
        assert_eq!(r.metric("tls_handshakes"), 100.0, "{}", r.stdout);
        assert_eq!(r.metric("tls_full_handshakes"), 100.0, "{}", r.stdout);
        assert!(r.metric("tls_full_handshakes_per_s") > 0.0);
    }
}

/// All 5 × 200 deliveries arrived, once each.
fn assert_every_delivery(r: &BenchRun, transport: &str) {
    assert_eq!(r.code, 0, "{transport}: {}\n{}", r.stdout, r.stderr);
    assert!(r.valid(), "{transport}: {}", r.stdout);
    assert_eq!(r.metric("messages_sent"), 5.0);
    assert_eq!(r.metric("deliveries"), 1000.0, "{transport}: {}", r.stdout);
    assert_eq!(r.metric("lost"), 0.0);
    assert_eq!(r.metric("duplicates"), 0.0);
}

#[test]
fn tls_and_wss_to_the_gateway_hold_every_connection_and_deliver_every_push() {
    let dir = TempDir::new("bench-tls-gw");
    let gw = gateway_with_tls(&dir.0);
    let ca = dir.0.join("ca.pem");
    let control = gw.control.to_string();
    let listeners = [
        ("tls", gw.client_tls.expect("client_tls bound").to_string()),
        (
            "wss",
            gw.websocket_tls.expect("websocket_tls bound").to_string(),
        ),
    ];
    for (transport, target) in &listeners {
        let r = connect(
            "gateway",
            transport,
            target,
            &ca,
            &["--heartbeat-ms", "1000"],
        );
        assert_held_with_full_handshakes(&r, transport);
        let note = r.run["notes"].to_string();
        assert!(note.contains("100 × TLSv1_3"), "{note}");
        assert_eq!(gw.wait_total("connections", 0), 0);
        let r = fanout("gateway", transport, target, &ca, &control);
        assert_every_delivery(&r, transport);
    }
    // With TLS listeners it said once whether the kernel offers kTLS.
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    let log = gw.log();
    let want = if ulps.split_whitespace().any(|u| u == "tls") {
        "kTLS: the kernel offers the tls ULP"
    } else {
        "kTLS: the kernel has no tls ULP"
    };
    assert_eq!(log.matches(want).count(), 1, "{log}");
    // The gateway saw them as TLS: 2 × (100 + 200) handshakes, no failure.
    let handshakes = gw.wait_total_until("tls_handshakes", Duration::from_secs(5), |v| v >= 600);
    assert_eq!(handshakes, 600);
    assert_eq!(gw.total("tls_failures"), 0);
}

#[test]
fn tls_version_1_2_is_the_one_agreed_when_asked() {
    let dir = TempDir::new("bench-tls12");
    let gw = gateway_with_tls(&dir.0);
    let target = gw.client_tls.expect("client_tls bound").to_string();
    let r = connect(
        "gateway",
        "tls",
        &target,
        &dir.0.join("ca.pem"),
        &["--tls-version", "1.2"],
    );
    assert_held_with_full_handshakes(&r, "tls");
    assert_eq!(r.run["params"]["tls_version"], "1.2");
    let note = r.run["notes"].to_string();
    assert!(note.contains("100 × TLSv1_2"), "{note}");
    assert!(!note.contains("TLSv1_3"), "{note}");
}

#[test]
fn a_ca_that_did_not_sign_the_certificate_is_refused_and_the_run_is_invalid() {
    let dir = TempDir::new("bench-tls-ca");
    let gw = gateway_with_tls(&dir.0);
    let other = TempDir::new("bench-tls-other-ca");
    Pki::new(&other.0);
    let target = gw.client_tls.expect("client_tls bound").to_string();
    let r = connect("gateway", "tls", &target, &other.0.join("ca.pem"), &[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(!r.valid(), "{}", r.stdout);
    assert_eq!(r.metric("held_after_hold"), 0.0);
    let failures = r.run["failures"].to_string();
    assert!(failures.contains("certificate"), "{failures}");
    // No handshake completed on the gateway, and it saw them fail (a
    // client that closes on the bad certificate before its alert is read
    // is a plain close there, so not every one is counted as a failure).
    let failed = gw.wait_total_until("tls_failures", Duration::from_secs(5), |v| v >= 1);
    assert!((1..=100).contains(&failed), "tls_failures {failed}");
    assert_eq!(gw.total("tls_handshakes"), 0);
}

/// A peer on a fresh port: `free_port` probes and the peer binds later, so
/// a port taken in between is retried on another.
fn start_peer(
    start: fn(u16, &PeerListener) -> Result<PeerProc, bench_harness::peers::PeerError>,
    listener: &PeerListener,
) -> PeerProc {
    let mut last = None;
    for _ in 0..5 {
        match start(free_port(), listener) {
            Ok(p) => return p,
            Err(e) => last = Some(e),
        }
    }
    panic!("peer did not start: {last:?}");
}

/// The listeners the brokers are measured on: plain WebSocket, TLS, WSS.
fn broker_listeners(dir: &Path) -> [(&'static str, PeerListener); 3] {
    let tls = Some((dir.join("cert.pem"), dir.join("key.pem")));
    [
        (
            "ws",
            PeerListener {
                websocket: true,
                tls: None,
            },
        ),
        (
            "tls",
            PeerListener {
                websocket: false,
                tls: tls.clone(),
            },
        ),
        (
            "wss",
            PeerListener {
                websocket: true,
                tls,
            },
        ),
    ]
}

#[test]
fn mosquitto_over_ws_tls_and_wss_holds_and_delivers_and_mosquitto_sub_sees_the_tls_publishes() {
    let dir = TempDir::new("bench-tls-mosquitto");
    Pki::new(&dir.0).leaf(&dir.0, "mosquitto");
    let ca = dir.0.join("ca.pem");
    for (transport, listener) in broker_listeners(&dir.0) {
        let broker = start_peer(start_mosquitto_with, &listener);
        let target = broker.addr.to_string();
        let r = connect("mqtt", transport, &target, &ca, &[]);
        assert_held_with_full_handshakes(&r, transport);
        // mosquitto's own client, trusting the same CA, must see what the
        // harness's publisher sends over TLS.
        let witness = (transport == "tls").then(|| {
            Command::new("mosquitto_sub")
                .args(["-h", "127.0.0.1", "-p", &broker.addr.port().to_string()])
                .args([
                    "--cafile",
                    &ca.display().to_string(),
                    "-t",
                    "#",
                    "-C",
                    "5",
                    "-W",
                    "30",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mosquitto_sub (apt-get install mosquitto-clients)")
        });
        if witness.is_some() {
            // Subscribed before the first publish (no retained messages).
            std::thread::sleep(Duration::from_millis(500));
        }
        let r = fanout("mqtt", transport, &target, &ca, "127.0.0.1:9");
        assert_every_delivery(&r, transport);
        if let Some(sub) = witness {
            let out = sub.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let stamped = text
                .lines()
                .filter(|l| bench_harness::stamp::decode(l.as_bytes()).is_some())
                .count();
            assert_eq!(
                stamped,
                5,
                "mosquitto_sub saw:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn nats_server_over_ws_tls_and_wss_holds_and_delivers() {
    let dir = TempDir::new("bench-tls-nats");
    Pki::new(&dir.0).leaf(&dir.0, "nats");
    let ca = dir.0.join("ca.pem");
    for (transport, listener) in broker_listeners(&dir.0) {
        let server = start_peer(start_nats_with, &listener);
        let target = server.addr.to_string();
        let r = connect("nats", transport, &target, &ca, &[]);
        assert_held_with_full_handshakes(&r, transport);
        let r = fanout("nats", transport, &target, &ca, "127.0.0.1:9");
        assert_every_delivery(&r, transport);
    }
}
