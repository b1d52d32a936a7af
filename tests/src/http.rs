//! A tiny blocking HTTP/1.1 client for the control listener: one request per
//! connection, or requests and answers on a keep-alive connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One blocking HTTP/1.1 request on a fresh connection: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(http_request(method, path, body, true).as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("bad HTTP response"))
}

/// Reads HTTP responses off `s` (a keep-alive connection) until `n` are
/// complete: (status, body, whether the server said it closes).
pub fn read_responses(s: &mut TcpStream, n: usize) -> Vec<(u16, String, bool)> {
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while out.len() < n {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&raw).unwrap() {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
            };
            let len: usize = header("content-length").unwrap().parse().unwrap();
            if raw.len() >= head + len {
                let closes = header("connection").as_deref() == Some("close");
                let body = String::from_utf8_lossy(&raw[head..head + len]).into_owned();
                out.push((resp.code.unwrap(), body, closes));
                raw.drain(..head + len);
                continue;
            }
        }
        let got = s.read(&mut chunk).unwrap();
        assert!(got > 0, "connection closed after {} answers", out.len());
        raw.extend_from_slice(&chunk[..got]);
    }
    out
}

/// One HTTP/1.1 request as written on the wire; keep-alive unless `close`.
pub fn http_request(method: &str, path: &str, body: &str, close: bool) -> String {
    let connection = if close { "connection: close\r\n" } else { "" };
    format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\n{connection}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Splits a raw HTTP response into status and body.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}
