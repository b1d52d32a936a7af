//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, enough for
//! the control API: one request per connection (`connection: close`), a
//! `content-length` body or one read to EOF.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::CliError;
use crate::backend::http_client::parse_response;

/// Largest answer body read.
const MAX_BODY: usize = 64 << 20;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text (lossy).
    pub body: String,
}

/// The request as written on the wire.
fn request(addr: SocketAddr, method: &str, path: &str, bearer: Option<&str>, body: &str) -> String {
    let auth = bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let ctype = if body.is_empty() {
        ""
    } else {
        "content-type: application/json\r\n"
    };
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}{ctype}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Parses a whole answer if `raw` holds one: `Ok(None)` = need more bytes.
/// `eof` says the peer closed, so a body without a length ends here. The
/// framing is the backend client's ([`parse_response`]): one parser of
/// HTTP answers in the gateway, with its strict `Content-Length` rules.
fn parse(raw: &[u8], eof: bool) -> Result<Option<Answer>, String> {
    let parsed = parse_response(raw, eof, MAX_BODY).map_err(|e| format!("bad HTTP answer: {e}"))?;
    Ok(parsed.map(|(r, _)| Answer {
        status: r.status,
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }))
}

/// One request to `addr`; waits up to `timeout` for the answer.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
    timeout: Duration,
) -> Result<Answer, CliError> {
    let what = format!("{method} http://{addr}{path}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(CliError::io(
        format!("{what}: cannot connect (is the gateway running?)"),
    ))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .and_then(|()| s.write_all(request(addr, method, path, bearer, body).as_bytes()))
        .map_err(CliError::io(what.clone()))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).map_err(CliError::io(what.clone()))?;
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_BODY {
            return Err(CliError::Session(format!("{what}: answer too large")));
        }
        match parse(&raw, n == 0) {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) => {}
            Err(why) => return Err(CliError::Session(format!("{what}: {why}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn answers_parse_by_length_or_eof() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"id\":1}extra";
        let a = parse(raw, false).unwrap().unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "{\"id\":1}"));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{", false),
            Ok(None)
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{", true).is_err());
        let a = parse(b"HTTP/1.1 400 Bad\r\n\r\nnope", true)
            .unwrap()
            .unwrap();
        assert_eq!((a.status, a.body.as_str()), (400, "nope"));
        assert!(parse(b"garbage\r\n\r\n", false).is_err());
    }

    #[test]
    fn requests_carry_length_and_bearer() {
        let addr: SocketAddr = "127.0.0.1:7101".parse().unwrap();
        let r = request(addr, "POST", "/v1/push", Some("t0k"), "{}");
        assert!(r.starts_with("POST /v1/push HTTP/1.1\r\n"));
        assert!(r.contains("authorization: Bearer t0k\r\n"));
        assert!(r.contains("content-length: 2\r\n"));
        assert!(r.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn a_round_trip_over_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            assert!(
                std::str::from_utf8(&buf[..n])
                    .unwrap()
                    .starts_with("GET /v1/stats")
            );
            c.write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 4\r\n\r\nbusy")
                .unwrap();
        });
        let a = call(addr, "GET", "/v1/stats", None, "", Duration::from_secs(5)).unwrap();
        assert_eq!((a.status, a.body.as_str()), (503, "busy"));
        server.join().unwrap();
    }
}
