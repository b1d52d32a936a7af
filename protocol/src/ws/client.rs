//! The client side of the WebSocket mapping, for the load harness, the
//! simulation and tests: the Upgrade request, the server's answer, and a
//! decoder of server frames (unmasked) that gives binary messages back as
//! length-prefixed v1 frames, so a v1
//! [`ClientSession`](crate::client::ClientSession) reads them unchanged.
//! Client frames are masked ([`wrap_v1`]).
//!
//! The same pieces speak the WebSocket mappings of other protocols, for
//! the harness's runs against brokers: an Upgrade offering another
//! subprotocol (or none, [`upgrade_request_for`], [`read_upgrade_answer_for`])
//! and a decoder that gives the messages' bytes back as one byte stream
//! ([`ServerFrames::stream`]: MQTT over WebSocket, NATS over WebSocket).
//!
//! It is not hardened like the server side: it trusts the server to send
//! binary messages (fragmented or not) no larger than it was told, holds
//! an incomplete frame or fragmented message in a `Vec` until it
//! completes, and reports anything else (a masked frame, reserved bits or
//! opcodes, a text message, fragments out of order) as
//! [`ServerFrames::failed`].

use super::close::{CloseCode, parse_close_payload};
use super::encode::write_masked;
use super::frame::{MAX_CONTROL_PAYLOAD, Opcode};
use super::handshake::{SUBPROTOCOL, accept_key};
use crate::codec::LENGTH_PREFIX;

/// The Upgrade request for `path` on `host`, with the 16-byte `nonce` as
/// `Sec-WebSocket-Key` (base64), offering [`SUBPROTOCOL`].
#[must_use]
pub fn upgrade_request(host: &str, path: &str, nonce: [u8; 16]) -> (Vec<u8>, String) {
    upgrade_request_for(host, path, nonce, Some(SUBPROTOCOL))
}

/// The Upgrade request for `path` on `host` offering `subprotocol` (none
/// when `None`: NATS over WebSocket names none), with the 16-byte `nonce`
/// as `Sec-WebSocket-Key` (base64); the request and that key.
#[must_use]
pub fn upgrade_request_for(
    host: &str,
    path: &str,
    nonce: [u8; 16],
    subprotocol: Option<&str>,
) -> (Vec<u8>, String) {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let offer = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
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
    read_upgrade_answer_for(buf, key, Some(SUBPROTOCOL))
}

/// Like [`read_upgrade_answer`], for a request that offered `subprotocol`:
/// the answer must choose it; with `None` the answer's
/// `Sec-WebSocket-Protocol`, if any, is not looked at.
#[must_use]
pub fn read_upgrade_answer_for(buf: &[u8], key: &str, subprotocol: Option<&str>) -> UpgradeAnswer {
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
    if let Some(want) = subprotocol
        && header("sec-websocket-protocol") != Some(want.as_bytes())
    {
        return UpgradeAnswer::Refused {
            status,
            why: format!("the server did not choose {want}"),
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

/// Largest binary message [`ServerFrames`] reassembles from fragments: the
/// length prefix of a v1 frame is 32 bits.
const MAX_MESSAGE: usize = u32::MAX as usize;

/// Decodes the server's frames.
///
/// Between reads it holds no buffer: a frame that arrives whole is read
/// straight from the caller's input, and only the bytes of a frame (or of a
/// fragmented message) still incomplete at the end of a read are kept, and
/// released once it completes.
#[derive(Debug, Default)]
pub struct ServerFrames {
    /// The start of a frame not complete at the end of the last read;
    /// without capacity when nothing is held.
    held: Vec<u8>,
    /// The fragments so far of a fragmented binary message; `None` while
    /// no message is open.
    message: Option<Vec<u8>>,
    /// Set when the server sent a close frame: its code, if it gave one.
    pub closed: Option<Option<CloseCode>>,
    /// Set when the server's bytes were not what this decoder accepts.
    pub failed: Option<String>,
    /// Pings the server sent (their payloads), for the caller to answer.
    pub pings: Vec<Vec<u8>>,
    /// Messages are parts of one byte stream ([`ServerFrames::stream`]):
    /// their bytes are appended as they are, text messages too.
    stream: bool,
}

/// A complete frame at the front of some bytes.
struct Frame {
    fin: bool,
    opcode: Opcode,
    payload: std::ops::Range<usize>,
}

impl ServerFrames {
    /// A decoder for a connection whose upgrade just completed.
    #[must_use]
    pub fn new() -> ServerFrames {
        ServerFrames::default()
    }

    /// A decoder for a protocol that carries a byte stream in its messages
    /// (MQTT, NATS over WebSocket): [`ServerFrames::decode`] appends each
    /// message's bytes, binary or text, without a length prefix.
    #[must_use]
    pub fn stream() -> ServerFrames {
        ServerFrames {
            stream: true,
            ..ServerFrames::default()
        }
    }

    /// Whether the server closed or broke the protocol: nothing more is
    /// decoded.
    #[must_use]
    pub fn is_over(&self) -> bool {
        self.closed.is_some() || self.failed.is_some()
    }

    /// Whether the decoder is between frames with nothing held and no
    /// ping left to answer: a fresh [`ServerFrames::new`] would carry on
    /// exactly as this one, so a caller holding many connections may drop
    /// it until the next read.
    #[must_use]
    pub fn holds_nothing(&self) -> bool {
        !self.is_over() && self.held.is_empty() && self.message.is_none() && self.pings.is_empty()
    }

    /// Feeds bytes from the server; appends the binary messages completed
    /// so far to `v1`, each as a length-prefixed v1 frame (or as they are,
    /// for a [`ServerFrames::stream`] decoder).
    pub fn decode(&mut self, input: &[u8], v1: &mut Vec<u8>) {
        if self.is_over() {
            return;
        }
        if self.held.is_empty() {
            let used = self.frames(input, v1);
            if !self.is_over() {
                // An empty tail allocates nothing.
                self.held = input.get(used..).unwrap_or_default().to_vec();
            }
        } else {
            let mut buf = std::mem::take(&mut self.held);
            buf.extend_from_slice(input);
            let used = self.frames(&buf, v1);
            if !self.is_over() && used < buf.len() {
                buf.drain(..used);
                self.held = buf;
            }
        }
        if self.is_over() {
            self.message = None;
        }
    }

    /// Handles the complete frames at the front of `buf`; returns the bytes
    /// they took.
    fn frames(&mut self, buf: &[u8], v1: &mut Vec<u8>) -> usize {
        let mut at = 0;
        while !self.is_over() {
            let rest = buf.get(at..).unwrap_or_default();
            let frame = match parse_frame(rest) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(why) => {
                    self.failed = Some(why);
                    break;
                }
            };
            let body = rest.get(frame.payload.clone()).unwrap_or_default();
            at += frame.payload.end;
            self.on_frame(frame.fin, frame.opcode, body, v1);
        }
        at
    }

    fn on_frame(&mut self, fin: bool, opcode: Opcode, body: &[u8], v1: &mut Vec<u8>) {
        match opcode {
            Opcode::Binary | Opcode::Text if self.message.is_some() => {
                self.failed = Some("a new message inside a fragmented message".into());
            }
            Opcode::Text if !self.stream => {
                self.failed = Some("a text message from the server".into());
            }
            Opcode::Binary | Opcode::Text if fin => self.push(body, v1),
            Opcode::Binary | Opcode::Text => self.message = Some(body.to_vec()),
            Opcode::Continuation => {
                let Some(mut message) = self.message.take() else {
                    self.failed = Some("a continuation frame without a message".into());
                    return;
                };
                if message.len().saturating_add(body.len()) > MAX_MESSAGE {
                    self.failed = Some("a fragmented message over 4 GiB".into());
                    return;
                }
                message.extend_from_slice(body);
                if fin {
                    self.push(&message, v1);
                } else {
                    self.message = Some(message);
                }
            }
            Opcode::Ping => self.pings.push(body.to_vec()),
            Opcode::Pong => {}
            Opcode::Close => {
                self.closed = Some(parse_close_payload(body).unwrap_or(None));
            }
        }
    }

    /// A complete message, to the caller's bytes.
    fn push(&self, message: &[u8], out: &mut Vec<u8>) {
        if self.stream {
            out.extend_from_slice(message);
        } else {
            push_v1(message, out);
        }
    }
}

/// Appends `message` to `v1` as a length-prefixed v1 frame.
fn push_v1(message: &[u8], v1: &mut Vec<u8>) {
    v1.extend_from_slice(&(message.len() as u32).to_be_bytes());
    v1.extend_from_slice(message);
}

/// The frame at the front of `h` if it is complete, `Ok(None)` if more
/// bytes are needed, or what is wrong with it.
fn parse_frame(h: &[u8]) -> Result<Option<Frame>, String> {
    let (Some(&b0), Some(&b1)) = (h.first(), h.get(1)) else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err("a masked server frame".into());
    }
    if b0 & 0x70 != 0 {
        return Err("a server frame with reserved bits set".into());
    }
    let Some(opcode) = Opcode::from_bits(b0 & 0x0f) else {
        return Err(format!("reserved opcode {:#x}", b0 & 0x0f));
    };
    let fin = b0 & 0x80 != 0;
    let (len, head) = match b1 & 0x7f {
        126 => match h.get(2..).and_then(<[u8]>::first_chunk::<2>) {
            Some(b) => (u64::from(u16::from_be_bytes(*b)), 4),
            None => return Ok(None),
        },
        127 => match h.get(2..).and_then(<[u8]>::first_chunk::<8>) {
            Some(b) => (u64::from_be_bytes(*b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(format!("a fragmented or oversized {opcode:?} frame"));
    }
    let Some(end) = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_MESSAGE)
        .map(|l| head + l)
    else {
        return Err(format!("a server frame of {len} bytes"));
    };
    Ok((end <= h.len()).then_some(Frame {
        fin,
        opcode,
        payload: head..end,
    }))
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
    /// A server frame (unmasked) with `fin` and `opcode`.
    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::ws::encode::write_header(opcode, fin, payload.len(), None, &mut out);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_fragmented_message_with_a_ping_inside_reassembles_at_every_split() {
        let mut wire = frame(false, Opcode::Binary, b"ab");
        wire.extend(frame(true, Opcode::Ping, b"p"));
        wire.extend(frame(false, Opcode::Continuation, &[b'c'; 200]));
        wire.extend(frame(true, Opcode::Continuation, b"d"));
        wire.extend(frame(true, Opcode::Binary, b"e"));
        let mut want = Vec::new();
        push_v1(&[b"ab".as_slice(), &[b'c'; 200], b"d"].concat(), &mut want);
        push_v1(b"e", &mut want);
        for cut in 0..=wire.len() {
            let mut frames = ServerFrames::new();
            let mut got = Vec::new();
            frames.decode(&wire[..cut], &mut got);
            frames.decode(&wire[cut..], &mut got);
            assert_eq!(got, want, "cut {cut}");
            assert_eq!(frames.pings, vec![b"p".to_vec()], "cut {cut}");
            assert_eq!(frames.failed, None, "cut {cut}");
            assert_eq!(frames.held.capacity(), 0, "nothing held at rest, cut {cut}");
            assert!(frames.message.is_none());
        }
    }

    #[test]
    fn a_stream_decoder_joins_messages_binary_or_text_without_prefixes() {
        let mut wire = frame(false, Opcode::Text, b"PI");
        wire.extend(frame(true, Opcode::Continuation, b"NG\r\n"));
        wire.extend(frame(true, Opcode::Binary, &[0x20, 2, 0, 0]));
        for cut in 0..=wire.len() {
            let mut frames = ServerFrames::stream();
            let mut got = Vec::new();
            frames.decode(&wire[..cut], &mut got);
            frames.decode(&wire[cut..], &mut got);
            assert_eq!(got, b"PING\r\n\x20\x02\x00\x00", "cut {cut}");
            assert_eq!(frames.failed, None);
        }
    }

    #[test]
    fn another_subprotocol_or_none_is_offered_and_checked() {
        let (request, key) = upgrade_request_for("b:1", "/mqtt", [1; 16], Some("mqtt"));
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("GET /mqtt HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{text}");
        let (request, _) = upgrade_request_for("b:1", "/", [1; 16], None);
        assert!(!String::from_utf8(request).unwrap().contains("Protocol"));
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        assert!(matches!(
            read_upgrade_answer_for(answer.as_bytes(), &key, None),
            UpgradeAnswer::Upgraded { .. }
        ));
        assert!(matches!(
            read_upgrade_answer_for(answer.as_bytes(), &key, Some("mqtt")),
            UpgradeAnswer::Refused { status: 101, .. }
        ));
    }

    #[test]
    fn whole_frames_leave_nothing_held() {
        let mut frames = ServerFrames::new();
        let mut got = Vec::new();
        let wire = frame(true, Opcode::Binary, &[7; 300]);
        frames.decode(&wire[..100], &mut got);
        assert!(got.is_empty() && frames.held.len() == 100);
        frames.decode(&wire[100..], &mut got);
        assert_eq!(got.len(), 304);
        assert_eq!(frames.held.capacity(), 0);
    }

    #[test]
    fn fragments_out_of_order_and_text_are_failures() {
        for wire in [
            frame(true, Opcode::Continuation, b"x"),
            [
                frame(false, Opcode::Binary, b"x"),
                frame(true, Opcode::Binary, b"y"),
            ]
            .concat(),
            frame(true, Opcode::Text, b"hi"),
            frame(false, Opcode::Ping, b""),
            [0x82 | 0x40, 0].to_vec(),
        ] {
            let mut frames = ServerFrames::new();
            let mut got = Vec::new();
            frames.decode(&wire, &mut got);
            assert!(frames.failed.is_some(), "{wire:?}");
            assert!(frames.is_over() && got.is_empty());
            frames.decode(&frame(true, Opcode::Binary, b"z"), &mut got);
            assert!(got.is_empty(), "nothing after a failure");
        }
    }
}
