//! The WebSocket layer of a connection (RFC 6455, client side), sans-IO,
//! under any adapter: the HTTP Upgrade first, then the adapter's bytes in
//! masked binary messages, the server's messages back as bytes.
//!
//! Two mappings ([`WsMapping`]):
//!
//! - the gateway's (DESIGN.md §3): subprotocol `gateway.v1`, each v1 frame
//!   one binary message without its length prefix. The v1 session above
//!   writes and reads length-prefixed frames unchanged: they are unwrapped
//!   on the way out ([`protocol::ws::client::wrap_v1`]) and the server's
//!   messages get their prefix back on the way in;
//! - a byte stream (MQTT over WebSocket, subprotocol `mqtt`, as mosquitto's
//!   `protocol websockets` listener wants; NATS over WebSocket, no
//!   subprotocol, nats-server's `websocket {}` block): what the adapter
//!   writes goes out as one binary message, and the messages' bytes come
//!   back in order, however the server split them.
//!
//! What the adapter writes before the server's `101` is queued and sent once
//! it arrives (a client sends nothing after its Upgrade request until the
//! answer, RFC 6455 §4.1). Server pings are answered with pongs; a close
//! frame is echoed and ends the layer with its code.
//!
//! # Memory
//!
//! An open connection between reads holds 16 bytes and no buffer: the frame
//! decoder is boxed only while a frame or a fragmented message is
//! incomplete at the end of a read.

use protocol::ws::client::{
    ServerFrames, UpgradeAnswer, read_upgrade_answer_for, upgrade_request_for, wrap_v1,
};
use protocol::ws::encode::write_masked;
use protocol::ws::{CloseCode, Opcode};

/// Which protocol the messages carry, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMapping {
    /// Gateway protocol v1: one frame per message, subprotocol `gateway.v1`.
    GatewayV1,
    /// MQTT 3.1.1 as a byte stream, subprotocol `mqtt`.
    Mqtt,
    /// Core NATS as a byte stream, no subprotocol.
    Nats,
}

impl WsMapping {
    /// The subprotocol the Upgrade offers and the answer must choose.
    #[must_use]
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            WsMapping::GatewayV1 => Some(protocol::ws::handshake::SUBPROTOCOL),
            WsMapping::Mqtt => Some("mqtt"),
            WsMapping::Nats => None,
        }
    }

    /// The path of the Upgrade request (mosquitto serves `/mqtt`; the
    /// others any path).
    #[must_use]
    pub fn path(self) -> &'static str {
        match self {
            WsMapping::Mqtt => "/mqtt",
            WsMapping::GatewayV1 | WsMapping::Nats => "/",
        }
    }

    fn decoder(self) -> ServerFrames {
        match self {
            WsMapping::GatewayV1 => ServerFrames::new(),
            WsMapping::Mqtt | WsMapping::Nats => ServerFrames::stream(),
        }
    }
}

/// A connection's WebSocket state.
#[derive(Debug)]
pub struct WsLayer {
    stage: Stage,
    mapping: WsMapping,
    /// xorshift32 state: the Upgrade nonce, then one masking key per write.
    rng: u32,
}

/// Where a WebSocket connection is.
#[derive(Debug)]
enum Stage {
    /// Not started yet.
    Idle,
    /// The Upgrade request is sent; the answer is awaited.
    Upgrading(Box<Upgrading>),
    /// Upgraded: frames flow. The decoder, while it holds something.
    Open(Option<Box<ServerFrames>>),
    /// Closed by the server, refused, or broken: nothing more is read or
    /// written.
    Over,
}

/// The state of an Upgrade in progress, dropped once it is answered.
#[derive(Debug, Default)]
struct Upgrading {
    /// The `Sec-WebSocket-Key` sent, whose hash the answer must carry.
    key: String,
    /// The answer so far.
    answer: Vec<u8>,
    /// Bytes the adapter wrote meanwhile (Hello, CONNECT, ...).
    queued: Vec<u8>,
}

impl WsLayer {
    /// A layer for `mapping`; `seed` makes its Upgrade nonce and masking
    /// keys (any value; different per connection).
    #[must_use]
    pub fn new(mapping: WsMapping, seed: u64) -> Self {
        // Fold the seed to 32 bits; xorshift32 must not start at 0.
        let folded = (seed ^ (seed >> 32)) as u32;
        Self {
            stage: Stage::Idle,
            mapping,
            rng: if folded == 0 { 0x9e37_79b9 } else { folded },
        }
    }

    fn next_u32(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.next_u32().to_be_bytes()
    }

    /// Whether the layer is over (the server closed, refused or broke it).
    #[must_use]
    pub fn is_over(&self) -> bool {
        matches!(self.stage, Stage::Over)
    }

    /// Whether the layer is upgraded and holds no buffer (between reads,
    /// with no frame incomplete): `Some(true)` at rest, `Some(false)` while
    /// a frame is held, `None` when not open.
    #[must_use]
    pub fn open_at_rest(&self) -> Option<bool> {
        match &self.stage {
            Stage::Open(held) => Some(held.is_none()),
            _ => None,
        }
    }

    /// Writes the Upgrade request (`Host: host`) into `out`.
    pub fn start(&mut self, host: &str, out: &mut Vec<u8>) {
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_exact_mut(4) {
            chunk.copy_from_slice(&self.next_u32().to_be_bytes());
        }
        let (request, key) =
            upgrade_request_for(host, self.mapping.path(), nonce, self.mapping.subprotocol());
        out.extend_from_slice(&request);
        self.stage = Stage::Upgrading(Box::new(Upgrading {
            key,
            ..Upgrading::default()
        }));
    }

    /// Frames the adapter's `bytes` into `out` once upgraded; queues them
    /// before that; drops them once the layer is over.
    pub fn send(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let mask = self.next_mask();
        match &mut self.stage {
            Stage::Upgrading(up) => up.queued.extend_from_slice(bytes),
            Stage::Open(_) => self.frame(bytes, mask, out),
            Stage::Idle | Stage::Over => {}
        }
    }

    fn frame(&self, bytes: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
        match self.mapping {
            WsMapping::GatewayV1 => {
                wrap_v1(bytes, mask, out);
            }
            WsMapping::Mqtt | WsMapping::Nats => {
                write_masked(Opcode::Binary, true, mask, bytes, out);
            }
        }
    }

    /// Feeds bytes from the server: the messages' bytes go to `upper`,
    /// what the layer answers (the queued bytes on the `101`, pongs, the
    /// close echo) to `out`. Returns why the layer ended, once, when it
    /// did.
    pub fn input(&mut self, data: &[u8], upper: &mut Vec<u8>, out: &mut Vec<u8>) -> Option<String> {
        match &mut self.stage {
            Stage::Idle | Stage::Over => None,
            Stage::Open(_) => self.frames_in(data, upper, out),
            Stage::Upgrading(up) => {
                up.answer.extend_from_slice(data);
                match read_upgrade_answer_for(&up.answer, &up.key, self.mapping.subprotocol()) {
                    UpgradeAnswer::NeedMore => None,
                    UpgradeAnswer::Refused { why, .. } => {
                        self.stage = Stage::Over;
                        Some(format!("websocket upgrade refused: {why}"))
                    }
                    UpgradeAnswer::Upgraded { consumed } => {
                        let up = std::mem::take(&mut **up);
                        self.stage = Stage::Open(None);
                        if !up.queued.is_empty() {
                            let mask = self.next_mask();
                            self.frame(&up.queued, mask, out);
                        }
                        let rest = up.answer.get(consumed..).unwrap_or_default();
                        if rest.is_empty() {
                            None
                        } else {
                            self.frames_in(rest, upper, out)
                        }
                    }
                }
            }
        }
    }

    /// Server frames on an open connection: messages up, pongs for pings,
    /// the end on a close frame or a broken frame.
    fn frames_in(&mut self, data: &[u8], upper: &mut Vec<u8>, out: &mut Vec<u8>) -> Option<String> {
        let mapping = self.mapping;
        let Stage::Open(held) = &mut self.stage else {
            return None;
        };
        let mut frames = held.take().map_or_else(|| mapping.decoder(), |b| *b);
        frames.decode(data, upper);
        for ping in std::mem::take(&mut frames.pings) {
            let mask = self.next_mask();
            write_masked(Opcode::Pong, true, mask, &ping, out);
        }
        if let Some(code) = frames.closed {
            // Echo the close (RFC 6455 §5.5.1); the harness then closes
            // the socket.
            let payload = code.map(|c| c.0.to_be_bytes());
            let mask = self.next_mask();
            write_masked(
                Opcode::Close,
                true,
                mask,
                payload.as_ref().map_or(&[][..], |p| &p[..]),
                out,
            );
            self.stage = Stage::Over;
            return Some(close_label(code));
        }
        if let Some(why) = frames.failed.take() {
            self.stage = Stage::Over;
            return Some(format!("websocket: {why}"));
        }
        if !frames.holds_nothing() {
            self.stage = Stage::Open(Some(Box::new(frames)));
        }
        None
    }

    /// Writes a close frame (1000) on an open connection.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        if matches!(self.stage, Stage::Open(_)) {
            let mask = self.next_mask();
            write_masked(
                Opcode::Close,
                true,
                mask,
                &CloseCode::NORMAL.0.to_be_bytes(),
                out,
            );
        }
    }
}

/// A server's close frame, for the failure counts: the code by its RFC
/// 6455 / IANA name, the number beside it.
pub(crate) fn close_label(code: Option<CloseCode>) -> String {
    let Some(code) = code else {
        return "websocket close without a code".into();
    };
    let name = match code.0 {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        _ => "",
    };
    if name.is_empty() {
        format!("websocket close {code}")
    } else {
        format!("websocket close {code} ({name})")
    }
}
