//! HTTP/1.1 request framing and response writing for the control
//! listener, over caller-owned buffers (no I/O here).

/// Largest request head plus body the control listener accepts (413 over it).
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest request head (request line and header fields, up to and with
/// the blank line) accepted: 431 over it, even before the head ends.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest single line of a request head, line end included, as nginx's
/// default `large_client_header_buffers` (8 KiB): 431 for a header field,
/// 414 for the request line, even before the line ends.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// Most header fields a request may have (431 over it).
pub const MAX_HEADERS: usize = 32;

/// A complete request read from a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Method, upper case as sent.
    pub method: String,
    /// Path including any query string.
    pub path: String,
    /// Request body (Content-Length framed).
    pub body: Vec<u8>,
    /// Value of the Authorization header, if any.
    pub authorization: Option<String>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// Why a request could not be framed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// The head is not valid HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Head or body is larger than [`MAX_REQUEST`].
    #[error("request too large")]
    TooLarge,
    /// Chunked request bodies are not accepted.
    #[error("chunked request bodies are not supported; send Content-Length")]
    Chunked,
    /// A header line is longer than [`MAX_HEADER_LINE`].
    #[error("a header line is longer than {MAX_HEADER_LINE} bytes")]
    HeaderLineTooLarge,
    /// The request line is longer than [`MAX_HEADER_LINE`].
    #[error("the request line is longer than {MAX_HEADER_LINE} bytes")]
    UriTooLong,
    /// The request head is larger than [`MAX_HEAD`].
    #[error("the request head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The request has more than [`MAX_HEADERS`] header fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
}

impl FramingError {
    /// The HTTP status the request is refused with (the connection closes
    /// after it: the framing of what follows is unknown).
    pub fn status(&self) -> u16 {
        match self {
            FramingError::Malformed(_) | FramingError::Chunked => 400,
            FramingError::TooLarge => 413,
            FramingError::UriTooLong => 414,
            FramingError::HeaderLineTooLarge
            | FramingError::HeadTooLarge
            | FramingError::TooManyHeaders => 431,
        }
    }
}

/// Parses one request from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the request and the bytes it used.
///
/// Framing is strict (RFC 9112 §6): a body is framed by one
/// `Content-Length` of digits only; a second `Content-Length` (even an
/// identical one: refusing every duplicate is the simple, safe reading of
/// §6.3), any `Transfer-Encoding`, or both together are refused, because a
/// proxy in front may frame the same bytes differently (request
/// smuggling). The head limits ([`MAX_HEADER_LINE`], [`MAX_HEAD`],
/// [`MAX_HEADERS`]) apply to a head still arriving too, so a peer cannot
/// make the server buffer an endless line.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, FramingError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_head(buf)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::TooManyHeaders),
        Err(e) => return Err(FramingError::Malformed(e.to_string())),
    };
    check_head(&buf[..head_len])?;
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding: Option<&str> = None;
    let mut authorization = None;
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(FramingError::Malformed(
                    "more than one Content-Length".into(),
                ));
            }
            content_length = Some(parse_length(value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(FramingError::Malformed(
                    "more than one Transfer-Encoding".into(),
                ));
            }
            transfer_encoding = Some(value);
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if let Some(te) = transfer_encoding {
        if content_length.is_some() {
            return Err(FramingError::Malformed(
                "Content-Length together with Transfer-Encoding".into(),
            ));
        }
        if te.to_ascii_lowercase().contains("chunked") {
            return Err(FramingError::Chunked);
        }
        return Err(FramingError::Malformed(format!(
            "unsupported Transfer-Encoding `{te}`"
        )));
    }
    let content_length = content_length.unwrap_or(0);
    let total = head_len.saturating_add(content_length);
    if total > MAX_REQUEST {
        return Err(FramingError::TooLarge);
    }
    let Some(body) = buf.get(head_len..total) else {
        return Ok(None);
    };
    let request = Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        body: body.to_vec(),
        authorization,
        keep_alive,
    };
    Ok(Some((request, total)))
}

/// A `Content-Length` value: digits only (no sign, no list); a number too
/// big for `usize` is [`FramingError::TooLarge`].
fn parse_length(value: &str) -> Result<usize, FramingError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FramingError::Malformed(format!(
            "bad Content-Length `{value}`"
        )));
    }
    value.parse().map_err(|_| FramingError::TooLarge)
}

/// Checks the head limits on `head` (complete, or the part received).
fn check_head(head: &[u8]) -> Result<(), FramingError> {
    for (i, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
        if line.len() > MAX_HEADER_LINE {
            return Err(if i == 0 {
                FramingError::UriTooLong
            } else {
                FramingError::HeaderLineTooLarge
            });
        }
    }
    if head.len() > MAX_HEAD {
        return Err(FramingError::HeadTooLarge);
    }
    Ok(())
}

/// Appends a complete response to `out`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_then_complete() {
        let raw = b"POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..raw.len() {
            assert_eq!(parse_request(&raw[..cut]), Ok(None), "cut at {cut}");
        }
        let (req, used) = parse_request(raw).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(req.method, "POST");
        assert_eq!(req.body, b"hello");
        assert!(req.keep_alive);
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let raw = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n";
        let (a, used) = parse_request(raw).unwrap().unwrap();
        assert_eq!(a.path, "/a");
        let (b, _) = parse_request(&raw[used..]).unwrap().unwrap();
        assert_eq!(b.path, "/b");
        assert!(!b.keep_alive, "HTTP/1.0 closes by default");
    }

    #[test]
    fn garbage_chunked_and_oversize_are_errors() {
        assert!(matches!(
            parse_request(b"\x00\x01 nonsense\r\n\r\n"),
            Err(FramingError::Malformed(_))
        ));
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(FramingError::Chunked)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(FramingError::TooLarge)
        );
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(FramingError::Malformed(_))
        ));
    }

    #[test]
    fn conflicting_or_duplicate_lengths_are_malformed() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: identity\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            let err = parse_request(raw).expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(err.status(), 400, "{err}: {}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn head_limits_answer_431_even_before_the_head_ends() {
        let long = format!(
            "GET / HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_LINE)
        );
        assert_eq!(
            parse_request(long.as_bytes()),
            Err(FramingError::HeaderLineTooLarge)
        );
        // Unfinished: refused as soon as the line is too long.
        let cut = &long.as_bytes()[..long.len() - 4];
        assert_eq!(parse_request(cut), Err(FramingError::HeaderLineTooLarge));
        let fits = format!(
            "GET / HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_LINE - 8)
        );
        assert!(matches!(parse_request(fits.as_bytes()), Ok(Some(_))));
        let uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEADER_LINE));
        assert_eq!(parse_request(uri.as_bytes()), Err(FramingError::UriTooLong));
        let lines: String = (0..20)
            .map(|i| format!("x{i}: {}\r\n", "b".repeat(4000)))
            .collect();
        let big = format!("GET / HTTP/1.1\r\n{lines}\r\n");
        assert_eq!(
            parse_request(big.as_bytes()),
            Err(FramingError::HeadTooLarge)
        );
        assert_eq!(
            parse_request(&big.as_bytes()[..big.len() - 2]),
            Err(FramingError::HeadTooLarge),
            "unfinished"
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_request(many.as_bytes()),
            Err(FramingError::TooManyHeaders)
        );
        for e in [
            FramingError::HeaderLineTooLarge,
            FramingError::HeadTooLarge,
            FramingError::TooManyHeaders,
        ] {
            assert_eq!(e.status(), 431);
        }
        assert_eq!(FramingError::UriTooLong.status(), 414);
        assert_eq!(FramingError::TooLarge.status(), 413);
    }

    #[test]
    fn a_length_near_usize_max_is_too_large_not_a_panic() {
        let raw = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{}",
            usize::MAX - 10,
            "x".repeat(64)
        );
        assert_eq!(parse_request(raw.as_bytes()), Err(FramingError::TooLarge));
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse_request(raw), Err(FramingError::TooLarge));
    }

    #[test]
    fn response_has_length_and_connection() {
        let mut out = Vec::new();
        write_response(&mut out, 404, "application/json", b"{}", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("content-length: 2\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }
}
