//! Gateway protocol v1 over the gateway's WebSocket listener (DESIGN.md
//! §3, WebSocket mapping): the HTTP Upgrade offering `gateway.v1` first,
//! then each v1 frame as one masked binary message, no length prefix.
//!
//! The v1 session is the TCP adapter's ([`GatewayClient`]) unchanged: its
//! length-prefixed frames are wrapped on the way out
//! ([`protocol::ws::client::wrap_v1`]) and the server's binary messages
//! are turned back into them on the way in
//! ([`protocol::ws::client::ServerFrames`]). Frames the session writes
//! before the server's `101` are queued and sent once it arrives (a client
//! sends nothing after its Upgrade request until the answer, RFC 6455
//! §4.1). Server pings are answered with pongs; a close frame is echoed
//! and ends the session with its code in [`WireEvent::Closed`].
//!
//! # Memory
//!
//! Beyond the TCP adapter's session, an open connection between reads
//! holds 24 bytes and no buffer: the frame decoder is boxed only while a
//! frame or a fragmented message is incomplete at the end of a read, and
//! the v1 bytes between the session and the framing pass through buffers
//! shared by every connection of the thread.

use std::cell::Cell;

use protocol::time::Millis;
use protocol::ws::client::{
    ServerFrames, UpgradeAnswer, read_upgrade_answer, upgrade_request, wrap_v1,
};
use protocol::ws::encode::write_masked;
use protocol::ws::{CloseCode, Opcode};

use super::gateway::GatewayClient;
use super::{Identity, WireEvent};

thread_local! {
    /// The server's binary messages as v1 frames, on their way to the
    /// session (one read's worth; shared by the thread's connections).
    static FROM_SERVER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The session's v1 frames, on their way to the framing.
    static TO_SERVER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A gateway client over WebSocket: the v1 session and where the
/// connection is in the WebSocket life.
#[derive(Debug)]
pub struct GatewayWsClient {
    v1: GatewayClient,
    stage: Stage,
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
    /// v1 frames the session wrote meanwhile (Hello, Subscribe, ...).
    queued: Vec<u8>,
}

impl GatewayWsClient {
    /// A session for `id`, created at `now`; `seed` makes its Upgrade
    /// nonce and masking keys (any value; different per connection).
    #[must_use]
    pub fn new(id: &Identity, now: Millis, seed: u64) -> Self {
        // Fold the seed to 32 bits; xorshift32 must not start at 0.
        let folded = (seed ^ (seed >> 32)) as u32;
        Self {
            v1: GatewayClient::new(id, now),
            stage: Stage::Idle,
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

    /// Writes the Upgrade request (`Host: host`, path `/`) and queues the
    /// Hello for when the server has answered.
    pub fn start(&mut self, host: &str, out: &mut Vec<u8>) {
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_exact_mut(4) {
            chunk.copy_from_slice(&self.next_u32().to_be_bytes());
        }
        let (request, key) = upgrade_request(host, "/", nonce);
        out.extend_from_slice(&request);
        self.stage = Stage::Upgrading(Box::new(Upgrading {
            key,
            ..Upgrading::default()
        }));
        self.write(out, |c, v1| c.start(v1));
    }

    /// Acks durable pushes on receipt ([`GatewayClient::set_auto_ack`]).
    pub fn set_auto_ack(&mut self, on: bool) {
        self.v1.set_auto_ack(on);
    }

    /// Writes Subscribe then the confirming Ping (see [`GatewayClient`]).
    pub fn subscribe(&mut self, topic: &str, out: &mut Vec<u8>) {
        self.write(out, |c, v1| c.subscribe(topic, v1));
    }

    /// Feeds received bytes.
    pub fn input(&mut self, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        match &mut self.stage {
            Stage::Idle | Stage::Over => {}
            Stage::Open(_) => self.frames_in(now, data, ev, out),
            Stage::Upgrading(up) => {
                up.answer.extend_from_slice(data);
                match read_upgrade_answer(&up.answer, &up.key) {
                    UpgradeAnswer::NeedMore => {}
                    UpgradeAnswer::Refused { why, .. } => {
                        self.stage = Stage::Over;
                        if !self.v1.is_closed() {
                            ev.push(WireEvent::Closed(format!(
                                "websocket upgrade refused: {why}"
                            )));
                        }
                    }
                    UpgradeAnswer::Upgraded { consumed } => {
                        let up = std::mem::take(&mut **up);
                        self.stage = Stage::Open(None);
                        if !up.queued.is_empty() {
                            let mask = self.next_mask();
                            wrap_v1(&up.queued, mask, out);
                        }
                        let rest = up.answer.get(consumed..).unwrap_or_default();
                        if !rest.is_empty() {
                            self.frames_in(now, rest, ev, out);
                        }
                    }
                }
            }
        }
    }

    /// Server frames on an open connection: messages to the session,
    /// pongs for pings, the end on a close frame or a broken frame.
    fn frames_in(&mut self, now: Millis, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        let Stage::Open(held) = &mut self.stage else {
            return;
        };
        let mut frames = held.take().map_or_else(ServerFrames::new, |b| *b);
        let mut messages = FROM_SERVER.take();
        messages.clear();
        frames.decode(data, &mut messages);
        for ping in std::mem::take(&mut frames.pings) {
            let mask = self.next_mask();
            write_masked(Opcode::Pong, true, mask, &ping, out);
        }
        if !messages.is_empty() {
            self.write(out, |c, v1| c.input(now, &messages, ev, v1));
        }
        FROM_SERVER.set(messages);
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
            self.end(close_label(code), ev);
        } else if let Some(why) = frames.failed.take() {
            self.end(format!("websocket: {why}"), ev);
        } else if !frames.holds_nothing() {
            self.stage = Stage::Open(Some(Box::new(frames)));
        }
    }

    /// Ends the connection: reported once, unless the session already
    /// said why it closed (an `Error` or `Kick` before the close frame).
    fn end(&mut self, why: String, ev: &mut Vec<WireEvent>) {
        self.stage = Stage::Over;
        if !self.v1.is_closed() {
            ev.push(WireEvent::Closed(why));
        }
    }

    /// Heartbeat and timeouts.
    pub fn tick(
        &mut self,
        now: Millis,
        ev: &mut Vec<WireEvent>,
        out: &mut Vec<u8>,
    ) -> Option<Millis> {
        if matches!(self.stage, Stage::Over) {
            return None;
        }
        self.write(out, |c, v1| c.tick(now, ev, v1))
    }

    /// Writes an Uplink on app "bench".
    pub fn uplink(&mut self, route: &str, payload: &[u8], out: &mut Vec<u8>) -> Option<u64> {
        self.write(out, |c, v1| c.uplink(route, payload, v1))
    }

    /// Writes Bye, then a close frame (1000) on an open connection.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        self.write(out, |c, v1| c.goodbye(v1));
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

    /// Runs `f` on the v1 session with a v1 buffer, then frames what it
    /// wrote: as masked binary messages into `out` once upgraded, queued
    /// before that, dropped once the connection is over.
    fn write<R>(
        &mut self,
        out: &mut Vec<u8>,
        f: impl FnOnce(&mut GatewayClient, &mut Vec<u8>) -> R,
    ) -> R {
        let mut v1 = TO_SERVER.take();
        v1.clear();
        let r = f(&mut self.v1, &mut v1);
        if !v1.is_empty() {
            let mask = self.next_mask();
            match &mut self.stage {
                Stage::Upgrading(up) => up.queued.extend_from_slice(&v1),
                Stage::Open(_) => {
                    wrap_v1(&v1, mask, out);
                }
                Stage::Idle | Stage::Over => {}
            }
        }
        TO_SERVER.set(v1);
        r
    }
}

/// A server's close frame, for the failure counts: the code by its RFC
/// 6455 / IANA name, the number beside it.
fn close_label(code: Option<CloseCode>) -> String {
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

#[cfg(test)]
#[path = "gateway_ws_tests.rs"]
mod tests;
