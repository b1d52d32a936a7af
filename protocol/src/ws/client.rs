//! The client side of the WebSocket mapping, for the load harness, the
//! simulation and tests: the Upgrade request, the server's answer, and a
//! decoder of server frames (unmasked) that gives binary messages back as
//! length-prefixed v1 frames, so a v1
//! [`ClientSession`](crate::client::ClientSession) reads them unchanged.
//! Client frames are masked ([`wrap_v1`]).
//!
//! It is not hardened like the server side: it trusts the server to send
//! unfragmented binary messages no larger than it was told, holds what it
//! has not decoded in a `Vec`, and reports anything else as
//! [`ServerFrames::failed`].

use super::close::{CloseCode, parse_close_payload};
use super::encode::write_masked;
use super::frame::Opcode;
use super::handshake::{SUBPROTOCOL, accept_key};
use crate::codec::LENGTH_PREFIX;

/// The Upgrade request for `path` on `host`, with the 16-byte `nonce` as
/// `Sec-WebSocket-Key` (base64), offering [`SUBPROTOCOL`].
#[must_use]
pub fn upgrade_request(host: &str, path: &str, nonce: [u8; 16]) -> (Vec<u8>, String) {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    );
    (request.into_bytes(), key)
}

/// What the server's answer to an Upgrade request says so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeAnswer {
    /// The status line and headers are not complete yet.
    NeedMore,
    /// `101` with the right `Sec-WebSocket-Accept`; `consumed` bytes were
    /// the head, frames follow.
    Upgraded {
        /// Bytes of the head.
        consumed: usize,
    },
    /// Anything else: the status (0 when the answer is not HTTP), and why.
    Refused {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        why: String,
    },
}

/// Reads the server's answer to a request made with `key` from the front of
/// `buf` (everything received so far).
#[must_use]
pub fn read_upgrade_answer(buf: &[u8], key: &str) -> UpgradeAnswer {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let consumed = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return UpgradeAnswer::NeedMore,
        Err(e) => {
            return UpgradeAnswer::Refused {
                status: 0,
                why: format!("not an HTTP answer: {e}"),
            };
        }
    };
    let status = res.code.unwrap_or(0);
    if status != 101 {
        return UpgradeAnswer::Refused {
            status,
            why: format!("status {status}"),
        };
    }
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let want = accept_key(key.as_bytes());
    if header("sec-websocket-accept") != Some(want.as_bytes()) {
        return UpgradeAnswer::Refused {
            status,
            why: "wrong or missing Sec-WebSocket-Accept".into(),
        };
    }
    if header("sec-websocket-protocol") != Some(SUBPROTOCOL.as_bytes()) {
        return UpgradeAnswer::Refused {
            status,
            why: format!("the server did not choose {SUBPROTOCOL}"),
        };
    }
    UpgradeAnswer::Upgraded { consumed }
}

/// Appends each length-prefixed v1 frame of `v1` as one masked binary
/// message (a client's frames), with `mask` as every frame's key; returns
/// the bytes of `v1` used (whole frames only).
pub fn wrap_v1(v1: &[u8], mask: [u8; 4], out: &mut Vec<u8>) -> usize {
    let mut used = 0;
    while let Some(prefix) = v1
        .get(used..)
        .and_then(<[u8]>::first_chunk::<LENGTH_PREFIX>)
    {
        let len = u32::from_be_bytes(*prefix) as usize;
        let start = used + LENGTH_PREFIX;
        let Some(body) = v1.get(start..start.saturating_add(len)) else {
            break;
        };
        write_masked(Opcode::Binary, true, mask, body, out);
        used = start + len;
    }
    used
}

/// Decodes the server's frames.
#[derive(Debug, Default)]
pub struct ServerFrames {
    held: Vec<u8>,
    /// Set when the server sent a close frame: its code, if it gave one.
    pub closed: Option<Option<CloseCode>>,
    /// Set when the server's bytes were not what this decoder accepts.
    pub failed: Option<String>,
    /// Pings the server sent (their payloads), for the caller to answer.
    pub pings: Vec<Vec<u8>>,
}

impl ServerFrames {
    /// A decoder for a connection whose upgrade just completed.
    #[must_use]
    pub fn new() -> ServerFrames {
        ServerFrames::default()
    }

    /// Feeds bytes from the server; appends the binary messages completed
    /// so far to `v1`, each as a length-prefixed v1 frame.
    pub fn decode(&mut self, input: &[u8], v1: &mut Vec<u8>) {
        if self.closed.is_some() || self.failed.is_some() {
            return;
        }
        self.held.extend_from_slice(input);
        let mut at = 0;
        while let Some((opcode, payload, next)) = self.frame_at(at) {
            let body = self.held.get(payload.clone()).unwrap_or_default();
            match opcode {
                Opcode::Binary => {
                    v1.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    v1.extend_from_slice(body);
                }
                Opcode::Ping => self.pings.push(body.to_vec()),
                Opcode::Pong => {}
                Opcode::Close => {
                    self.closed = Some(parse_close_payload(body).unwrap_or(None));
                    self.held.clear();
                    return;
                }
                other => {
                    self.failed = Some(format!("unexpected {other:?} frame from the server"));
                    self.held.clear();
                    return;
                }
            }
            at = next;
        }
        if self.failed.is_some() {
            self.held.clear();
        } else {
            self.held.drain(..at);
        }
    }

    /// The frame starting at `at` in `held`, if it is complete: opcode,
    /// payload range, where the next frame starts.
    fn frame_at(&mut self, at: usize) -> Option<(Opcode, std::ops::Range<usize>, usize)> {
        let h = self.held.get(at..)?;
        let (&b0, &b1) = (h.first()?, h.get(1)?);
        if b1 & 0x80 != 0 || b0 & 0x70 != 0 || b0 & 0x80 == 0 {
            self.failed = Some("a masked, extended or fragmented server frame".into());
            return None;
        }
        let (len, head) = match b1 & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes(*h.get(2..)?.first_chunk()?)),
                4,
            ),
            127 => (u64::from_be_bytes(*h.get(2..)?.first_chunk()?), 10),
            n => (u64::from(n), 2),
        };
        let Some(opcode) = Opcode::from_bits(b0 & 0x0f) else {
            self.failed = Some(format!("reserved opcode {:#x}", b0 & 0x0f));
            return None;
        };
        let len = usize::try_from(len).ok()?;
        let start = at + head;
        let end = start.checked_add(len)?;
        (end <= self.held.len()).then_some((opcode, start..end, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::{write_binary, write_close};
    use crate::ws::handshake::{Handshake, HandshakeConfig, read_upgrade};
    use crate::ws::{FrameDecoder, WsOutput};

    #[test]
    fn an_upgrade_round_trips_through_the_server_side() {
        let (request, key) = upgrade_request("gw:7102", "/", [7; 16]);
        let Handshake::Accept(accepted) = read_upgrade(&request, &HandshakeConfig::default())
        else {
            panic!("refused");
        };
        let mut answer = accepted.response.clone();
        answer.extend_from_slice(&[0x82, 1, 0x6a]);
        assert_eq!(
            read_upgrade_answer(&answer[..10], &key),
            UpgradeAnswer::NeedMore
        );
        assert_eq!(
            read_upgrade_answer(&answer, &key),
            UpgradeAnswer::Upgraded {
                consumed: accepted.response.len()
            }
        );
        assert!(matches!(
            read_upgrade_answer(&answer, "AAAAAAAAAAAAAAAAAAAAAA=="),
            UpgradeAnswer::Refused { status: 101, .. }
        ));
        let refused = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
        assert!(matches!(
            read_upgrade_answer(refused, &key),
            UpgradeAnswer::Refused { status: 400, .. }
        ));
    }

    #[test]
    fn client_frames_decode_on_the_server_side_and_back() {
        let v1 = [0, 0, 0, 2, 0x3a, 0x00, 0, 0, 0, 1, 0x6a];
        let mut wire = Vec::new();
        assert_eq!(wrap_v1(&v1, [1, 2, 3, 4], &mut wire), v1.len());
        let (mut server, mut out) = (FrameDecoder::new(), WsOutput::new());
        server.decode(&wire, 1024, &mut out);
        assert_eq!(out.v1, v1);

        let mut from_server = Vec::new();
        write_binary(&[0x3a, 0x00], &mut from_server);
        write_binary(&[0x6a], &mut from_server);
        write_close(CloseCode::GOING_AWAY, "bye", &mut from_server);
        let mut frames = ServerFrames::new();
        let mut got = Vec::new();
        // One byte at a time: frames complete across reads.
        for b in &from_server {
            frames.decode(std::slice::from_ref(b), &mut got);
        }
        assert_eq!(got, v1);
        assert_eq!(frames.closed, Some(Some(CloseCode::GOING_AWAY)));
        assert_eq!(frames.failed, None);
    }

    #[test]
    fn a_masked_server_frame_is_a_failure() {
        let mut wire = Vec::new();
        write_masked(Opcode::Binary, true, [1, 2, 3, 4], b"x", &mut wire);
        let mut frames = ServerFrames::new();
        frames.decode(&wire, &mut Vec::new());
        assert!(frames.failed.is_some());
    }
}
