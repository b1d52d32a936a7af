//! The opening handshake: the RFC's example key, what a browser sends, and
//! every refusal with its status, whole and arriving in pieces.

use super::*;

/// A browser-like upgrade request with `extra` header lines (each ending
/// in CRLF) added before the blank line.
fn request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\n\
         Host: gw.example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat, gateway.v1\r\n\
         {extra}\r\n"
    )
}

/// `request` with the line starting with `name:` removed.
fn without(name: &str) -> String {
    request("")
        .split_inclusive("\r\n")
        .filter(|line| !line.starts_with(&format!("{name}:")))
        .collect()
}

/// `request` with the line starting with `name:` replaced by `line`.
fn replaced(name: &str, line: &str) -> String {
    request("")
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with(&format!("{name}:")) {
                format!("{line}\r\n")
            } else {
                l.to_string()
            }
        })
        .collect()
}

fn cfg() -> HandshakeConfig {
    HandshakeConfig::default()
}

fn rejected(req: &str, cfg: &HandshakeConfig) -> Rejected {
    match read_upgrade(req.as_bytes(), cfg) {
        Handshake::Reject(r) => r,
        other => panic!("expected a rejection of {req:?}, got {other:?}"),
    }
}

fn head_of(response: &[u8]) -> String {
    String::from_utf8(response.to_vec()).unwrap()
}

#[test]
fn rfc_example_key_gives_the_rfc_accept() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn a_valid_upgrade_is_accepted_with_subprotocol() {
    let req = request("");
    let Handshake::Accept(a) = read_upgrade(req.as_bytes(), &cfg()) else {
        panic!("not accepted");
    };
    assert_eq!(a.consumed, req.len());
    assert_eq!(
        head_of(&a.response),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: gateway.v1\r\n\r\n"
    );
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let req = "GET / HTTP/1.1\r\nhost: h\r\nUPGRADE: WebSocket\r\n\
               connection: UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
               SEC-WEBSOCKET-VERSION: 13\r\nsec-websocket-protocol: gateway.v1\r\n\
               Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    assert!(matches!(
        read_upgrade(req.as_bytes(), &cfg()),
        Handshake::Accept(_)
    ));
    // Connection tokens over several fields are all read.
    let req = request("Connection: Upgrade\r\n").replace("keep-alive, Upgrade", "keep-alive");
    assert!(matches!(
        read_upgrade(req.as_bytes(), &cfg()),
        Handshake::Accept(_)
    ));
}

#[test]
fn bytes_behind_the_head_are_left_for_the_frame_decoder() {
    let req = request("");
    let mut buf = req.clone().into_bytes();
    buf.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
    let Handshake::Accept(a) = read_upgrade(&buf, &cfg()) else {
        panic!("not accepted");
    };
    assert_eq!(a.consumed, req.len());
    assert_eq!(&buf[a.consumed..], &[0x82, 0x80, 1, 2, 3, 4]);
}

#[test]
fn an_incomplete_head_needs_more_at_every_cut() {
    let req = request("");
    for cut in 0..req.len() {
        assert_eq!(
            read_upgrade(&req.as_bytes()[..cut], &cfg()),
            Handshake::NeedMore,
            "cut {cut}"
        );
    }
}

#[test]
fn bad_handshakes_get_the_right_4xx() {
    let cases: Vec<(&str, String, u16)> = vec![
        ("missing key", without("Sec-WebSocket-Key"), 400),
        (
            "short key",
            replaced("Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAA"),
            400,
        ),
        (
            "key not base64",
            replaced(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
            ),
            400,
        ),
        (
            "17-byte key",
            replaced(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            400,
        ),
        (
            "wrong version",
            replaced("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
            426,
        ),
        ("missing version", without("Sec-WebSocket-Version"), 426),
        ("no Upgrade", without("Upgrade"), 400),
        (
            "Upgrade to something else",
            replaced("Upgrade", "Upgrade: h2c"),
            400,
        ),
        (
            "no upgrade token",
            replaced("Connection", "Connection: keep-alive"),
            400,
        ),
        ("no Host", without("Host"), 400),
        ("no subprotocol", without("Sec-WebSocket-Protocol"), 400),
        (
            "another subprotocol",
            replaced(
                "Sec-WebSocket-Protocol",
                "Sec-WebSocket-Protocol: gateway.v2, GATEWAY.V1",
            ),
            400,
        ),
        ("POST", request("").replacen("GET", "POST", 1), 405),
        (
            "HTTP/1.0",
            request("").replacen("HTTP/1.1", "HTTP/1.0", 1),
            400,
        ),
        ("a body", request("Content-Length: 5\r\n"), 400),
        ("chunked", request("Transfer-Encoding: chunked\r\n"), 400),
        (
            "two keys",
            request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
            400,
        ),
        (
            "garbage",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\r\n\r\n".into(),
            400,
        ),
    ];
    for (what, req, status) in cases {
        let r = rejected(&req, &cfg());
        assert_eq!(r.status, status, "{what}: {}", r.error);
        assert_eq!(r.error.status(), status, "{what}");
        let text = head_of(&r.response);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"), "{what}");
        // The body says why, and Content-Length frames it exactly.
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, format!("{}\n", r.error), "{what}");
        let length = format!("Content-Length: {}", body.len());
        assert!(head.split("\r\n").any(|line| line == length), "{what}");
    }
}

#[test]
fn refusals_carry_the_headers_the_rfcs_ask_for() {
    let r = rejected(
        &replaced("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
        &cfg(),
    );
    assert_eq!(
        r.error,
        HandshakeError::UnsupportedVersion(Some("8".into()))
    );
    let text = head_of(&r.response);
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
    assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
    let r = rejected(&request("").replacen("GET", "PUT", 1), &cfg());
    assert!(head_of(&r.response).contains("\r\nAllow: GET\r\n"));
    assert_eq!(r.error, HandshakeError::NotGet("PUT".into()));
}

#[test]
fn origin_allow_list() {
    let cfg = HandshakeConfig {
        allowed_origins: vec![
            "https://app.example.com".into(),
            "http://localhost:8080".into(),
        ],
        ..cfg()
    };
    let allowed = [
        request("Origin: https://app.example.com\r\n"),
        request("Origin: HTTPS://App.Example.COM\r\n"),
        request("Origin: http://localhost:8080\r\n"),
        // No Origin: not a browser.
        request(""),
    ];
    for req in allowed {
        assert!(
            matches!(read_upgrade(req.as_bytes(), &cfg), Handshake::Accept(_)),
            "{req}"
        );
    }
    for origin in ["https://evil.example.com", "http://localhost:8081", "null"] {
        let r = rejected(&request(&format!("Origin: {origin}\r\n")), &cfg);
        assert_eq!(r.status, 403, "{origin}");
        assert_eq!(r.error, HandshakeError::OriginNotAllowed(origin.into()));
    }
    // An empty list allows any origin.
    let req = request("Origin: https://anywhere.example\r\n");
    assert!(matches!(
        read_upgrade(req.as_bytes(), &HandshakeConfig::default()),
        Handshake::Accept(_)
    ));
    // Two Origin fields are refused rather than guessed between.
    let req = request("Origin: https://app.example.com\r\nOrigin: https://evil.example.com\r\n");
    assert_eq!(rejected(&req, &cfg).status, 400);
}

#[test]
fn oversize_heads_get_431_even_before_they_end() {
    let cfg = HandshakeConfig {
        max_head: 512,
        ..cfg()
    };
    let big = request(&format!("Cookie: {}\r\n", "c".repeat(600)));
    let r = rejected(&big, &cfg);
    assert_eq!(r.status, 431);
    assert_eq!(r.error, HandshakeError::HeadTooLarge { max: 512 });
    // Still arriving: refused once the cap is passed, not after the end.
    let partial = &big.as_bytes()[..513];
    let Handshake::Reject(r) = read_upgrade(partial, &cfg) else {
        panic!("partial oversize head not refused");
    };
    assert_eq!(r.status, 431);
    assert_eq!(
        read_upgrade(&big.as_bytes()[..512], &cfg),
        Handshake::NeedMore
    );
    // A head of exactly the cap passes.
    let req = request("");
    let exact = HandshakeConfig {
        max_head: req.len(),
        ..HandshakeConfig::default()
    };
    assert!(matches!(
        read_upgrade(req.as_bytes(), &exact),
        Handshake::Accept(_)
    ));
}

#[test]
fn too_many_headers_get_431() {
    let extra: String = (0..MAX_HEADERS).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = rejected(&request(&extra), &cfg());
    assert_eq!(r.status, 431);
    assert_eq!(r.error, HandshakeError::TooManyHeaders);
    // Exactly MAX_HEADERS fields (6 in `request`) pass.
    let extra: String = (0..MAX_HEADERS - 6)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    assert!(matches!(
        read_upgrade(request(&extra).as_bytes(), &cfg()),
        Handshake::Accept(_)
    ));
}
