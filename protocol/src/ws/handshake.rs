//! The opening handshake (RFC 6455 §4.2), server side: an HTTP/1.1 Upgrade
//! request in, `101 Switching Protocols` or a 4xx out.
//!
//! The caller gathers the bytes a new connection sends in its own buffer
//! and calls [`read_upgrade`] after each read until it returns something
//! other than [`Handshake::NeedMore`]. Then it sends the response; on
//! [`Handshake::Accept`] the bytes behind the request (from
//! [`Accepted::consumed`] on) are the first WebSocket frames and the buffer
//! can go; on [`Handshake::Reject`] it closes the connection after the
//! response.
//!
//! # Rules
//!
//! | request | answer |
//! |---|---|
//! | head (request line and header fields) over `max_head` bytes, even while incomplete | 431 |
//! | more than [`MAX_HEADERS`] header fields | 431 |
//! | not parseable as HTTP/1.x | 400 |
//! | a method other than `GET` | 405, `Allow: GET` |
//! | HTTP/1.0 | 400 |
//! | no `Host` | 400 |
//! | no `Upgrade: websocket`, or no `upgrade` token in `Connection` | 400 |
//! | `Sec-WebSocket-Version` missing or not `13` | 426, `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Key` missing, or not base64 of 16 bytes | 400 |
//! | `Origin` present, not in a non-empty allow-list | 403 |
//! | `gateway.v1` not among the offered subprotocols | 400 |
//! | a body (`Content-Length` other than 0, or `Transfer-Encoding`) | 400 |
//! | a second `Host`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version` or `Origin` | 400 |
//!
//! Decisions:
//! - **The subprotocol is required.** It is how a client says which wire
//!   protocol it speaks; accepting a client that offers none would leave no
//!   way to tell it from a future `gateway.v2` client. Browsers send it with
//!   `new WebSocket(url, "gateway.v1")`.
//! - **A request without `Origin` passes the allow-list.** Only browsers
//!   send `Origin`, and the allow-list exists to keep other sites' pages
//!   off the gateway; a non-browser client can claim any origin anyway. An
//!   empty allow-list allows every origin. Origins compare ASCII
//!   case-insensitively, as serialised (`scheme://host[:port]`).
//! - No extension is accepted (`Sec-WebSocket-Extensions` is ignored), so
//!   the client may not set RSV bits.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The subprotocol of the v1 mapping, offered by the client in
/// `Sec-WebSocket-Protocol` and echoed by the server.
pub const SUBPROTOCOL: &str = "gateway.v1";

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most header fields an Upgrade request may have (431 over it). A browser
/// sends about 15.
pub const MAX_HEADERS: usize = 32;

/// Default cap on the request head, in bytes (431 over it): room for a
/// browser's headers with a few cookies.
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;

/// The handshake settings of a WebSocket listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Origins a browser may connect from (`https://app.example.com`);
    /// empty: any.
    pub allowed_origins: Vec<String>,
    /// Largest request head accepted, in bytes.
    pub max_head: usize,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            allowed_origins: Vec::new(),
            max_head: DEFAULT_MAX_HEAD,
        }
    }
}

/// Why an Upgrade request is refused. [`HandshakeError::status`] is the
/// HTTP status of the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not parseable as an HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head is larger than `max_head`.
    #[error("request head larger than {max} bytes")]
    HeadTooLarge {
        /// The cap.
        max: usize,
    },
    /// More than [`MAX_HEADERS`] header fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// A method other than GET.
    #[error("method {0} not allowed; a WebSocket upgrade is a GET")]
    NotGet(String),
    /// HTTP/1.0: an upgrade needs HTTP/1.1.
    #[error("a WebSocket upgrade needs HTTP/1.1")]
    NotHttp11,
    /// No `Host` header field.
    #[error("no Host header")]
    MissingHost,
    /// No `Upgrade: websocket`.
    #[error("not a WebSocket upgrade: no `Upgrade: websocket`")]
    NotUpgrade,
    /// No `upgrade` token in `Connection`.
    #[error("not a WebSocket upgrade: no `upgrade` token in Connection")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported WebSocket version {0:?}; this server speaks 13")]
    UnsupportedVersion(Option<String>),
    /// No `Sec-WebSocket-Key`.
    #[error("no Sec-WebSocket-Key")]
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not base64 of 16 bytes.
    #[error("Sec-WebSocket-Key is not base64 of 16 bytes")]
    BadKey,
    /// A header field that may appear once appears twice.
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// An `Origin` not in the allow-list.
    #[error("origin {0} not allowed")]
    OriginNotAllowed(String),
    /// The client does not offer the subprotocol `gateway.v1`.
    #[error("Sec-WebSocket-Protocol must offer {SUBPROTOCOL}")]
    NoSubprotocol,
    /// The request has a body.
    #[error("an upgrade request has no body")]
    HasBody,
}

impl HandshakeError {
    /// The HTTP status the request is refused with.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders => 431,
            HandshakeError::NotGet(_) => 405,
            HandshakeError::OriginNotAllowed(_) => 403,
            HandshakeError::UnsupportedVersion(_) => 426,
            HandshakeError::Malformed(_)
            | HandshakeError::NotHttp11
            | HandshakeError::MissingHost
            | HandshakeError::NotUpgrade
            | HandshakeError::NoConnectionUpgrade
            | HandshakeError::MissingKey
            | HandshakeError::BadKey
            | HandshakeError::DuplicateHeader(_)
            | HandshakeError::NoSubprotocol
            | HandshakeError::HasBody => 400,
        }
    }
}

/// Where a handshake stands after the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The head is incomplete (and within the caps): read more, call again
    /// with everything received.
    NeedMore,
    /// A valid upgrade: send the response, then speak WebSocket.
    Accept(Accepted),
    /// A refused request: send the response, then close.
    Reject(Rejected),
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `101 Switching Protocols` response, with `Sec-WebSocket-Accept`
    /// and `Sec-WebSocket-Protocol: gateway.v1`.
    pub response: Vec<u8>,
    /// Bytes of the input the request took; any after them are WebSocket
    /// frames.
    pub consumed: usize,
}

/// A refused upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The HTTP status (400, 403, 405, 426 or 431).
    pub status: u16,
    /// Why.
    pub error: HandshakeError,
    /// The whole response: status line, `Connection: close`, a short
    /// plain-text body saying why.
    pub response: Vec<u8>,
}

/// Reads an Upgrade request from the front of `buf`, everything the
/// connection has sent so far. See the [module docs](self) for the rules.
#[must_use]
pub fn read_upgrade(buf: &[u8], cfg: &HandshakeConfig) -> Handshake {
    match parse(buf, cfg) {
        Ok(None) => Handshake::NeedMore,
        Ok(Some((accept, consumed))) => Handshake::Accept(Accepted {
            response: accept_response(&accept),
            consumed,
        }),
        Err(error) => Handshake::Reject(Rejected {
            status: error.status(),
            response: reject_response(&error),
            error,
        }),
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (as sent, without
/// surrounding whitespace): base64 of the SHA-1 of the key and [`GUID`].
#[must_use]
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// The fields of a request head that the handshake reads.
#[derive(Default)]
struct Fields<'a> {
    host: bool,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    version: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
    origin: Option<&'a [u8]>,
    offers_subprotocol: bool,
    body: bool,
}

impl<'a> Fields<'a> {
    fn read(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, HandshakeError> {
        let mut f = Fields::default();
        for h in headers {
            let value = h.value.trim_ascii();
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                once(&mut f.host, "Host")?;
            } else if name.eq_ignore_ascii_case("upgrade") {
                f.upgrade_websocket |= has_token(value, b"websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                f.connection_upgrade |= has_token(value, b"upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                set_once(&mut f.version, value, "Sec-WebSocket-Version")?;
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                set_once(&mut f.key, value, "Sec-WebSocket-Key")?;
            } else if name.eq_ignore_ascii_case("origin") {
                set_once(&mut f.origin, value, "Origin")?;
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                // Subprotocol names are case-sensitive (RFC 6455 §4.1).
                f.offers_subprotocol |= tokens(value).any(|t| t == SUBPROTOCOL.as_bytes());
            } else if name.eq_ignore_ascii_case("content-length") {
                f.body |= value != b"0";
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                f.body = true;
            }
        }
        Ok(f)
    }
}

fn once(seen: &mut bool, name: &'static str) -> Result<(), HandshakeError> {
    if std::mem::replace(seen, true) {
        return Err(HandshakeError::DuplicateHeader(name));
    }
    Ok(())
}

fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    value: &'a [u8],
    name: &'static str,
) -> Result<(), HandshakeError> {
    if slot.replace(value).is_some() {
        return Err(HandshakeError::DuplicateHeader(name));
    }
    Ok(())
}

/// The comma-separated elements of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// Client text quoted in an error, made printable and short.
fn quote(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(100).collect()
}

/// The accept value and the head length of a valid request; `None` while
/// the head is incomplete.
fn parse(buf: &[u8], cfg: &HandshakeConfig) -> Result<Option<(String, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > cfg.max_head => {
            return Err(HandshakeError::HeadTooLarge { max: cfg.max_head });
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    if head_len > cfg.max_head {
        return Err(HandshakeError::HeadTooLarge { max: cfg.max_head });
    }
    let method = req.method.unwrap_or_default();
    if method != "GET" {
        return Err(HandshakeError::NotGet(quote(method.as_bytes())));
    }
    if req.version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    let f = Fields::read(req.headers)?;
    if !f.host {
        return Err(HandshakeError::MissingHost);
    }
    if !f.upgrade_websocket {
        return Err(HandshakeError::NotUpgrade);
    }
    if !f.connection_upgrade {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if f.version != Some(b"13".as_slice()) {
        return Err(HandshakeError::UnsupportedVersion(f.version.map(quote)));
    }
    let key = f.key.ok_or(HandshakeError::MissingKey)?;
    match STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if let Some(origin) = f.origin {
        let allowed = cfg.allowed_origins.is_empty()
            || cfg
                .allowed_origins
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(origin));
        if !allowed {
            return Err(HandshakeError::OriginNotAllowed(quote(origin)));
        }
    }
    if !f.offers_subprotocol {
        return Err(HandshakeError::NoSubprotocol);
    }
    if f.body {
        return Err(HandshakeError::HasBody);
    }
    Ok(Some((accept_key(key), head_len)))
}

fn accept_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\
         \r\n"
    )
    .into_bytes()
}

fn reject_response(error: &HandshakeError) -> Vec<u8> {
    let status = error.status();
    let reason = match status {
        403 => "Forbidden",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let extra = match status {
        405 => "Allow: GET\r\n",
        // RFC 6455 §4.4 and RFC 9110 §15.5.22.
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    let body = format!("{error}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Connection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         {extra}\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests;
