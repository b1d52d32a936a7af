//! End-to-end tests of the WebSocket listener (`[listen] websocket`): the
//! real gateway, a Rust client speaking RFC 6455 over a real socket, and
//! raw bytes for the handshakes and frames a client must not send.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, http, token};
use protocol::client::{ClientConfig, ClientEvent};
use protocol::ws::Opcode;
use protocol::ws::encode::write_masked;
use serde_json::{Value, json};

const WS_CONFIG: &str = "[listen]\nwebsocket = \"127.0.0.1:0\"\n";

fn start(shards: usize, extra: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(shards, &format!("{WS_CONFIG}{extra}"));
    let ws = gw
        .websocket
        .expect("the ready file names the websocket listener");
    (gw, ws)
}

fn push(gw: &Gateway, body: &Value) -> Value {
    let (status, text) = http(gw.control, "POST", "/v1/push", &body.to_string()).expect("push");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Everything the server sends until it closes (or `timeout`).
fn read_all(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_websocket_client_authenticates_gets_pushes_from_every_kind_and_acks() {
    let (gw, ws) = start(2, "");
    let mut alice = Client::established_ws(ws, "ws-alice");
    let mut tcp = Client::established(gw.client, "tcp-bob");
    assert!(alice.ping_pong(), "v1 ping over websocket");
    alice.send_with(|s, out| s.subscribe(vec!["news".into()], out));
    assert!(alice.ping_pong());
    assert_eq!(gw.wait_total("subscriptions", 1), 1);
    std::thread::sleep(Duration::from_millis(100));

    let answer = push(&gw, &json!({"to": {"user": "ws-alice"}, "payload": "one"}));
    assert_eq!(answer["online"], 1, "{answer}");
    let p = alice.next_push(Duration::from_secs(5)).expect("unicast");
    assert_eq!(p.payload[..], b"one"[..]);

    push(&gw, &json!({"to": {"topic": "news"}, "payload": "two"}));
    let p = alice.next_push(Duration::from_secs(5)).expect("topic push");
    assert_eq!(p.payload[..], b"two"[..]);

    // A broadcast reaches both transports, each in its own framing.
    push(&gw, &json!({"to": {"all": true}, "payload": "three"}));
    assert_eq!(
        alice.next_push(Duration::from_secs(5)).unwrap().payload[..],
        b"three"[..]
    );
    assert_eq!(
        tcp.next_push(Duration::from_secs(5)).unwrap().payload[..],
        b"three"[..]
    );

    // A durable push is acked over websocket like over TCP.
    push(
        &gw,
        &json!({"to": {"user": "ws-alice"}, "payload": "four", "ack": true}),
    );
    let p = alice
        .next_push(Duration::from_secs(5))
        .expect("durable push");
    assert!(p.ack);
    alice.send_with(|s, out| s.ack(vec![p.id], out));
    assert!(alice.ping_pong());
    assert!(gw.wait_total("acks", 1) >= 1);

    assert!(gw.wait_total_until("ws_upgrades", Duration::from_secs(5), |v| v >= 1) >= 1);
    assert_eq!(gw.total("ws_protocol_errors"), 0);
}

#[test]
fn websocket_pings_get_pongs_and_count_as_liveness() {
    let (gw, ws) = start(1, "[protocol]\nheartbeat_min_ms = 500\nidle_factor = 2.0\n");
    let mut c = Client::websocket(
        ws,
        ClientConfig {
            token: token("pinger"),
            device: "e2e".into(),
            heartbeat_ms: 500,
            ..ClientConfig::default()
        },
    );
    c.handshake();
    // Only WebSocket pings for three idle timeouts: the session stays.
    let mut stream = c.stream.try_clone().unwrap();
    let deadline = Instant::now() + Duration::from_millis(3_000);
    let mut pongs = 0;
    while Instant::now() < deadline {
        let mut ping = Vec::new();
        write_masked(Opcode::Ping, true, [1, 2, 3, 4], b"hb", &mut ping);
        stream.write_all(&ping).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = stream.read(&mut buf) {
            assert!(n > 0, "closed while pinging");
            // A pong frame (0x8a) with the ping's payload.
            if buf[..n].windows(4).any(|w| w == [0x8a, 2, b'h', b'b']) {
                pongs += 1;
            }
        }
    }
    assert!(pongs >= 5, "{pongs} pongs");
    assert_eq!(gw.total("idle_timeouts"), 0);
    assert!(gw.wait_total_until("ws_pings", Duration::from_secs(5), |v| v >= 5) >= 5);
}

/// The status of the server's answer to the request `head`, read until
/// the server closes.
fn upgrade_status(ws: SocketAddr, head: &str) -> u16 {
    let mut s = TcpStream::connect(ws).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let got = read_all(&mut s, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn request(extra: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: gw\r\n{extra}\r\n")
}

const GOOD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: gateway.v1\r\n";

#[test]
fn bad_handshakes_get_a_4xx_and_the_close() {
    let gw = Gateway::start(
        1,
        "[listen]\nwebsocket = \"127.0.0.1:0\"\nwebsocket_origins = [\"https://app.example.com\"]\n",
    );
    let ws = gw.websocket.unwrap();
    let cases = [
        (
            "no key",
            GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
        ),
        (
            "wrong version",
            GOOD.replace("Version: 13", "Version: 8"),
            426,
        ),
        (
            "no upgrade",
            GOOD.replace("Upgrade: websocket\r\n", ""),
            400,
        ),
        (
            "no subprotocol",
            GOOD.replace("Sec-WebSocket-Protocol: gateway.v1\r\n", ""),
            400,
        ),
        (
            "disallowed origin",
            format!("{GOOD}Origin: https://evil.example\r\n"),
            403,
        ),
        (
            "oversize headers",
            format!("{GOOD}X-Filler: {}\r\n", "a".repeat(9_000)),
            431,
        ),
    ];
    for (what, headers, want) in &cases {
        let status = upgrade_status(ws, &request(headers));
        assert_eq!(status, *want, "{what}");
    }
    // The allowed origin upgrades.
    let status = upgrade_status(
        ws,
        &request(&format!("{GOOD}Origin: https://app.example.com\r\n")),
    );
    assert_eq!(status, 101);
    let refused = cases.len() as u64;
    assert_eq!(gw.wait_total("ws_upgrades_refused", refused), refused);
    // Nobody else was affected: a client still gets through.
    let mut c = Client::established_ws(ws, "after-bad-handshakes");
    assert!(c.ping_pong());
}

/// Upgrades, says Hello, then writes `wire` (raw frames); returns the close
/// code the server's close frame carried.
fn close_code_after(ws: SocketAddr, wire: &[u8]) -> Option<Option<u16>> {
    let mut c = Client::established_ws(ws, "violator");
    c.send_wire(wire);
    let (closed, _) = c.wait_closed(Duration::from_secs(5));
    assert!(closed || c.ws_close().is_some(), "the server closed");
    c.ws_close()
}

#[test]
fn protocol_violations_get_the_right_close_codes_and_hurt_nobody_else() {
    let (gw, ws) = start(1, "[protocol]\nmax_frame = 1024\n");
    let mut bystander = Client::established_ws(ws, "bystander");

    // An unmasked client frame: 1002.
    let unmasked = [0x82, 0x02, 0x3a, 0x00];
    assert_eq!(close_code_after(ws, &unmasked), Some(Some(1002)));

    // A message over max_frame: 1009, decided from the header.
    let mut big = Vec::new();
    write_masked(
        Opcode::Binary,
        true,
        [1, 2, 3, 4],
        &vec![0u8; 2048],
        &mut big,
    );
    assert_eq!(close_code_after(ws, &big), Some(Some(1009)));

    // A close reason that is not UTF-8: 1007.
    let mut bad_close = Vec::new();
    write_masked(
        Opcode::Close,
        true,
        [1, 2, 3, 4],
        &[0x03, 0xe8, 0xff, 0xfe],
        &mut bad_close,
    );
    assert_eq!(close_code_after(ws, &bad_close), Some(Some(1007)));

    // A reserved opcode: 1002.
    let mut reserved = Vec::new();
    write_masked(Opcode::Binary, true, [1, 2, 3, 4], b"x", &mut reserved);
    reserved[0] = 0x83;
    assert_eq!(close_code_after(ws, &reserved), Some(Some(1002)));

    // A text message: 1003 (the mapping is binary).
    let mut text = Vec::new();
    write_masked(Opcode::Text, true, [1, 2, 3, 4], b"hi", &mut text);
    assert_eq!(close_code_after(ws, &text), Some(Some(1003)));

    // The client's own close is echoed with its code, and ends the session.
    let mut bye = Vec::new();
    write_masked(Opcode::Close, true, [1, 2, 3, 4], &[0x03, 0xe8], &mut bye);
    assert_eq!(close_code_after(ws, &bye), Some(Some(1000)));

    assert_eq!(gw.wait_total("ws_protocol_errors", 5), 5);
    assert!(bystander.ping_pong(), "the bystander is unaffected");
}

#[test]
fn fragmented_messages_and_frames_split_across_reads_reach_the_session() {
    let (_gw, ws) = start(1, "");
    let mut c = Client::established_ws(ws, "fragments");
    // A v1 Ping (frame kind 3, id 7) split into three fragments, with a
    // WebSocket ping between them, written a byte at a time.
    let mut v1 = Vec::new();
    let id = c.session.ping(&mut v1);
    let body = &v1[4..];
    let mut wire = Vec::new();
    write_masked(Opcode::Binary, false, [1, 2, 3, 4], &body[..1], &mut wire);
    write_masked(Opcode::Ping, true, [5, 6, 7, 8], b"p", &mut wire);
    write_masked(
        Opcode::Continuation,
        false,
        [9, 9, 9, 9],
        &body[1..2],
        &mut wire,
    );
    write_masked(
        Opcode::Continuation,
        true,
        [3, 3, 3, 3],
        &body[2..],
        &mut wire,
    );
    for b in &wire {
        c.send_wire(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ponged = false;
    while Instant::now() < deadline && !ponged {
        match c.next_event(Duration::from_secs(5)) {
            Some(ClientEvent::Pong(p)) => ponged = p.id == id,
            Some(_) => {}
            None => break,
        }
    }
    assert!(ponged, "the fragmented v1 Ping was answered");
}

#[test]
fn a_kick_ends_with_a_kick_frame_then_a_close_frame() {
    let (gw, ws) = start(1, "");
    let mut c = Client::established_ws(ws, "kicked");
    let (status, text) = http(
        gw.control,
        "POST",
        "/v1/kick",
        &json!({"user": "kicked", "reason": "test"}).to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let (_, events) = c.wait_closed(Duration::from_secs(5));
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::Kick(_))),
        "{events:?}"
    );
    assert_eq!(c.ws_close(), Some(Some(1008)));
}
