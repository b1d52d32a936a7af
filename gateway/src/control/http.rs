//! HTTP/1.1 request framing and response writing for the control
//! listener, over caller-owned buffers (no I/O here).

/// Largest request head plus body the control listener accepts.
pub const MAX_REQUEST: usize = 1 << 20;
const MAX_HEADERS: usize = 32;

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
}

/// Parses one request from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the request and the bytes it used.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, FramingError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_REQUEST {
                Err(FramingError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(FramingError::Malformed(e.to_string())),
    };
    let mut content_length = 0usize;
    let mut authorization = None;
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| FramingError::Malformed(format!("bad Content-Length `{value}`")))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().contains("chunked") {
                return Err(FramingError::Chunked);
            }
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
    if head_len + content_length > MAX_REQUEST {
        return Err(FramingError::TooLarge);
    }
    if buf.len() < head_len + content_length {
        return Ok(None);
    }
    let request = Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        body: buf[head_len..head_len + content_length].to_vec(),
        authorization,
        keep_alive,
    };
    Ok(Some((request, head_len + content_length)))
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
        413 => "Payload Too Large",
        429 => "Too Many Requests",
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
