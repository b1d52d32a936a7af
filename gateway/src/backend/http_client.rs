//! HTTP/1.1 client framing over caller-owned buffers (no I/O): writing a
//! POST, and parsing a response with `httparse` (Content-Length, chunked,
//! or close-delimited bodies). The ring glue in [`super::pool`] feeds it.

/// Most response headers read.
const MAX_HEADERS: usize = 32;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not valid HTTP/1.x.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// Head or body larger than allowed.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The connection ended before the response was complete.
    #[error("connection closed mid-response")]
    Truncated,
}

/// Appends a `POST` request to `out`. Header values must be free of CR/LF
/// (see [`header_safe`]); `extra` headers are written as given.
pub fn write_post(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) {
    out.reserve(160 + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    for (name, value) in extra {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Whether `value` may go into a header as is (visible ASCII and spaces).
pub fn header_safe(value: &str) -> bool {
    value.bytes().all(|b| (b' '..0x7f).contains(&b))
}

/// How the body of a parsed head is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses one response from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the response and the bytes it used. `eof` says the
/// peer closed, which completes a close-delimited body. Interim (1xx)
/// responses are skipped.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    max_body: usize,
) -> Result<Option<(Response, usize)>, ResponseError> {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if rest.len() > MAX_HEAD {
                    return Err(ResponseError::TooLarge(MAX_HEAD));
                }
                return if eof {
                    Err(ResponseError::Truncated)
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(ResponseError::Malformed(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) {
            start += head_len;
            continue;
        }
        let mut keep_alive = resp.version == Some(1);
        let mut framing = Framing::UntilClose;
        // One framing only: a second Content-Length (even an equal one), a
        // signed or listed length, or a length beside chunked coding is
        // refused rather than guessed at (RFC 9112 §6.3), so a response can
        // never be framed two ways.
        let mut lengths = 0;
        for h in resp.headers.iter() {
            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
            if h.name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                let n = value
                    .parse()
                    .ok()
                    .filter(|_| digits && lengths == 1)
                    .ok_or_else(|| {
                        ResponseError::Malformed(format!(
                            "bad or repeated content-length `{value}`"
                        ))
                    })?;
                if matches!(framing, Framing::Chunked) {
                    return Err(ResponseError::Malformed(
                        "content-length with chunked transfer-encoding".into(),
                    ));
                }
                framing = Framing::Length(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if value.to_ascii_lowercase().contains("chunked") {
                    if lengths > 0 {
                        return Err(ResponseError::Malformed(
                            "content-length with chunked transfer-encoding".into(),
                        ));
                    }
                    framing = Framing::Chunked;
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
        }
        if status == 204 || status == 304 {
            framing = Framing::Length(0);
        }
        let body_start = start + head_len;
        let body = &buf[body_start..];
        return match framing {
            Framing::Length(n) => {
                if n > max_body {
                    return Err(ResponseError::TooLarge(max_body));
                }
                if body.len() < n {
                    return if eof {
                        Err(ResponseError::Truncated)
                    } else {
                        Ok(None)
                    };
                }
                let response = Response {
                    status,
                    body: body[..n].to_vec(),
                    keep_alive,
                };
                Ok(Some((response, body_start + n)))
            }
            Framing::Chunked => match dechunk(body, max_body)? {
                Some((decoded, used)) => Ok(Some((
                    Response {
                        status,
                        body: decoded,
                        keep_alive,
                    },
                    body_start + used,
                ))),
                None if eof => Err(ResponseError::Truncated),
                None => Ok(None),
            },
            Framing::UntilClose => {
                if body.len() > max_body {
                    return Err(ResponseError::TooLarge(max_body));
                }
                if !eof {
                    return Ok(None);
                }
                let response = Response {
                    status,
                    body: body.to_vec(),
                    keep_alive: false,
                };
                Ok(Some((response, buf.len())))
            }
        };
    }
}

/// Decodes a complete chunked body from the front of `buf`: the data and
/// the bytes used (trailers included), or `None` if incomplete.
fn dechunk(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, ResponseError> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(v)) => v,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ResponseError::Malformed("bad chunk size".into())),
        };
        pos += size_len;
        let size = usize::try_from(size).map_err(|_| ResponseError::TooLarge(max_body))?;
        if size == 0 {
            // Trailers: header lines up to an empty line.
            loop {
                let rest = &buf[pos..];
                let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((out, pos)));
                }
            }
        }
        if out.len().saturating_add(size) > max_body {
            return Err(ResponseError::TooLarge(max_body));
        }
        let end = pos.saturating_add(size);
        if buf.len() < end + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[pos..end]);
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ResponseError::Malformed(
                "chunk not followed by CRLF".into(),
            ));
        }
        pos = end + 2;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn post_is_well_formed() {
        let mut out = Vec::new();
        write_post(
            &mut out,
            "h:1",
            "/x",
            "application/json",
            &[("x-a", "b")],
            b"{}",
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /x HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\nx-a: b\r\ncontent-length: 2\r\n\r\n{}"
        );
        assert!(header_safe("chat room 1"));
        assert!(!header_safe("a\r\nb"));
    }

    #[test]
    fn content_length_partial_then_complete_then_pipelined() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 500 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let first = 38 + 5;
        for cut in 0..first {
            assert_eq!(parse_response(&raw[..cut], false, 100), Ok(None), "{cut}");
        }
        let (r, used) = parse_response(raw, false, 100).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.keep_alive),
            (200, &b"hello"[..], true)
        );
        assert_eq!(used, first);
        let (r, _) = parse_response(&raw[used..], false, 100).unwrap().unwrap();
        assert_eq!((r.status, r.keep_alive), (500, false));
    }

    #[test]
    fn chunked_bodies_with_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let total = raw.len() - 4;
        for cut in 0..total {
            assert_eq!(parse_response(&raw[..cut], false, 100), Ok(None), "{cut}");
        }
        let (r, used) = parse_response(raw, false, 100).unwrap().unwrap();
        assert_eq!(r.body, b"hello world");
        assert_eq!(used, total);
        assert_eq!(
            parse_response(raw, false, 4),
            Err(ResponseError::TooLarge(4))
        );
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n";
        assert!(matches!(
            parse_response(bad, false, 100),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn close_delimited_interim_and_errors() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_response(raw, false, 100), Ok(None));
        let (r, used) = parse_response(raw, true, 100).unwrap().unwrap();
        assert_eq!(
            (r.body.as_slice(), r.keep_alive, used),
            (&b"all of it"[..], false, raw.len())
        );
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (r, used) = parse_response(interim, false, 100).unwrap().unwrap();
        assert_eq!((r.status, used), (204, interim.len()));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nab", true, 100),
            Err(ResponseError::Truncated)
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n",
                false,
                100
            ),
            Err(ResponseError::TooLarge(100))
        );
        assert!(matches!(
            parse_response(b"garbage\r\n\r\n", false, 100),
            Err(ResponseError::Malformed(_))
        ));
        for ambiguous in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 9\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\nok",
        ] {
            assert!(
                matches!(
                    parse_response(ambiguous, true, 100),
                    Err(ResponseError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(ambiguous)
            );
        }
        assert_eq!(
            parse_response(b"", true, 100),
            Err(ResponseError::Truncated)
        );
    }
}
