//! End-to-end tests of the control listener's limits (docs/SECURITY.md,
//! "Control listener"): strict request framing (conflicting lengths, header
//! sizes), the head and idle timeouts and the connection cap, each with its
//! counter in `/v1/stats`.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e_tests::{Gateway, http, http_request, parse_response, read_responses};

/// Writes `raw` on a fresh connection and reads until the server closes
/// it (or 3 s pass): the status of the answer, and whether it closed.
fn exchange(addr: SocketAddr, raw: &[u8]) -> (Option<u16>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(raw).unwrap();
    read_until_closed(&mut s)
}

/// Reads `s` until EOF or its read timeout: the status of the first
/// answer (if any) and whether the server closed the connection.
fn read_until_closed(s: &mut TcpStream) -> (Option<u16>, bool) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (parse_response(&got).map(|(status, _)| status), closed)
}

/// A counter from `/v1/stats` once it reaches at least `want` (5 s at
/// most; counters are published every 250 ms), retrying refused requests.
fn wait_counter(gw: &Gateway, name: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = match http(gw.control, "GET", "/v1/stats", "") {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                v["totals"][name]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no counter {name}: {body}"))
            }
            _ => 0,
        };
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ambiguous_framing_is_refused_with_400() {
    let gw = Gateway::start(1, "");
    // Two different lengths: RFC 9112 §6.3 makes this unrecoverable.
    let raw =
        b"POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ncontent-length: 40\r\n\r\n{}}";
    assert_eq!(
        exchange(gw.control, raw),
        (Some(400), true),
        "conflicting CL"
    );
    // The same length twice is refused too (the simple, safe choice).
    let raw =
        b"POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n{}";
    assert_eq!(exchange(gw.control, raw), (Some(400), true), "duplicate CL");
    // Content-Length with any Transfer-Encoding.
    for te in ["identity", "chunked"] {
        let raw = format!(
            "POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\ntransfer-encoding: {te}\r\n\r\n{{}}"
        );
        assert_eq!(
            exchange(gw.control, raw.as_bytes()),
            (Some(400), true),
            "CL + TE {te}"
        );
    }
    // A length that is not all digits.
    let raw = b"POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-length: +2\r\n\r\n{}";
    assert_eq!(exchange(gw.control, raw), (Some(400), true), "signed CL");
}

#[test]
fn oversized_heads_are_refused_with_431() {
    let gw = Gateway::start(1, "");
    // One 9 KiB header line (the limit is 8 KiB a line).
    let line = format!("x-pad: {}\r\n", "a".repeat(9 * 1024));
    let raw = format!("GET /healthz HTTP/1.1\r\nhost: t\r\n{line}\r\n");
    assert_eq!(
        exchange(gw.control, raw.as_bytes()),
        (Some(431), true),
        "long line"
    );
    // The same line left unfinished: refused without waiting for its end.
    let raw = format!(
        "GET /healthz HTTP/1.1\r\nhost: t\r\nx-pad: {}",
        "a".repeat(9 * 1024)
    );
    assert_eq!(
        exchange(gw.control, raw.as_bytes()),
        (Some(431), true),
        "long unfinished line"
    );
    // A head over 64 KiB in lines that are each within the limit.
    let lines: String = (0..20)
        .map(|i| format!("x-pad-{i}: {}\r\n", "b".repeat(4000)))
        .collect();
    let raw = format!("GET /healthz HTTP/1.1\r\nhost: t\r\n{lines}\r\n");
    assert_eq!(
        exchange(gw.control, raw.as_bytes()),
        (Some(431), true),
        "big head"
    );
    // Too many header fields.
    let lines: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let raw = format!("GET /healthz HTTP/1.1\r\nhost: t\r\n{lines}\r\n");
    assert_eq!(
        exchange(gw.control, raw.as_bytes()),
        (Some(431), true),
        "many headers"
    );
    // A head just within the limits is still served.
    let line = format!("x-pad: {}\r\n", "a".repeat(7 * 1024));
    let raw = format!("GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n{line}\r\n");
    assert_eq!(
        exchange(gw.control, raw.as_bytes()),
        (Some(200), true),
        "7 KiB line"
    );
}

#[test]
fn a_stalled_head_or_body_gets_408_within_the_head_timeout() {
    let gw = Gateway::start(1, "[listen]\ncontrol_head_timeout_ms = 500\n");
    for (what, raw) in [
        ("head", "GET /healthz HTTP/1.1\r\nhost: t\r\n".to_string()),
        (
            "body",
            "POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-length: 40\r\n\r\n{\"to\"".to_string(),
        ),
    ] {
        let mut s = TcpStream::connect(gw.control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let start = Instant::now();
        s.write_all(raw.as_bytes()).unwrap();
        let (status, closed) = read_until_closed(&mut s);
        let took = start.elapsed();
        assert_eq!((status, closed), (Some(408), true), "stalled {what}");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(2000),
            "stalled {what} answered after {took:?}"
        );
    }
    // A connection that never sends anything is closed after it too.
    let mut s = TcpStream::connect(gw.control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let start = Instant::now();
    assert_eq!(read_until_closed(&mut s), (None, true), "silent connection");
    assert!(start.elapsed() < Duration::from_millis(2000));
    assert!(wait_counter(&gw, "control_head_timeouts", 3) >= 3);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let gw = Gateway::start(1, "[listen]\ncontrol_idle_timeout_ms = 500\n");
    let mut s = TcpStream::connect(gw.control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // In use, the connection stays: three requests 300 ms apart.
    for _ in 0..3 {
        s.write_all(http_request("GET", "/healthz", "", false).as_bytes())
            .unwrap();
        let answers = read_responses(&mut s, 1);
        assert_eq!((answers[0].0, answers[0].2), (200, false));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Then left idle, it is closed.
    let start = Instant::now();
    assert_eq!(read_until_closed(&mut s), (None, true), "idle connection");
    assert!(start.elapsed() < Duration::from_millis(2000));
    assert!(wait_counter(&gw, "control_idle_closes", 1) >= 1);
}

#[test]
fn connections_over_the_cap_get_503_and_the_others_keep_working() {
    let gw = Gateway::start(1, "[listen]\ncontrol_max_connections = 4\n");
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(gw.control).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(http_request("GET", "/healthz", "", false).as_bytes())
                .unwrap();
            assert_eq!(read_responses(&mut s, 1)[0].0, 200);
            s
        })
        .collect();
    for _ in 0..3 {
        let raw = http_request("GET", "/healthz", "", false);
        assert_eq!(
            exchange(gw.control, raw.as_bytes()),
            (Some(503), true),
            "over the cap"
        );
    }
    for s in &mut held {
        s.write_all(http_request("GET", "/healthz", "", false).as_bytes())
            .unwrap();
        let answers = read_responses(s, 1);
        assert_eq!((answers[0].0, answers[0].2), (200, false), "held one");
    }
    // A slot freed is usable again.
    held.pop();
    assert!(wait_counter(&gw, "control_refused", 3) >= 3);
    // The same counter in Prometheus text.
    let (status, text) = http(gw.control, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let line = text
        .lines()
        .find(|l| l.starts_with("gateway_control_refused_total"))
        .unwrap_or_else(|| panic!("no gateway_control_refused_total in\n{text}"));
    // At least the three above (a stats request racing the freed slot
    // may have been refused too).
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v >= 3.0, "{line}");
}
