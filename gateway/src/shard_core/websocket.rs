//! WebSocket connections in the core (`[listen] websocket`): the Upgrade
//! request, client frames into the v1 session, the session's frames out
//! as binary messages, pings, and the close handshake. The codec is
//! `protocol::ws`; this is where it meets the connection table.
//!
//! Memory: an idle WebSocket connection holds nothing beyond a raw v1 one
//! (its [`WsPhase`] is a tag in the connection). [`WsConns`] holds a
//! connection's state only while it is incomplete: the bytes of a request
//! head that has not arrived whole, or a frame decoder in the middle of a
//! frame. It is dropped as soon as the head or the frame completes, and
//! with the connection.

use std::collections::HashMap;

use protocol::time::Millis;
use protocol::ws::handshake::{Handshake, HandshakeConfig, read_upgrade};
use protocol::ws::{FrameDecoder, WsEnd, WsOutput, encode, session_close};

use super::ShardCore;
use super::conn::flags;
use super::outbound::Frame;
use super::transport::{Transport, WsPhase};
use protocol::server::CloseReason;

/// What a WebSocket connection holds between two reads, only while it is
/// in the middle of something.
#[derive(Debug)]
enum Held {
    /// The request head so far (incomplete).
    Head(Vec<u8>),
    /// A decoder in the middle of a frame or a fragmented message.
    Frames(FrameDecoder),
}

/// The shard's WebSocket state: what incomplete connections hold, and the
/// buffers every connection's input and output pass through.
#[derive(Debug, Default)]
pub(super) struct WsConns {
    /// By connection key; only connections in the middle of a head or a
    /// frame have an entry.
    held: HashMap<u32, Held>,
    /// What the decoder produced for the connection being read.
    out: WsOutput,
    /// The session's output framed as binary messages.
    framed: Vec<u8>,
    /// The listener's handshake rules.
    handshake: HandshakeConfig,
}

impl WsConns {
    /// The state of a shard whose WebSocket listener follows `handshake`.
    pub(super) fn new(handshake: HandshakeConfig) -> Self {
        WsConns {
            handshake,
            ..WsConns::default()
        }
    }

    /// Drops what connection `key` held (its slot is being freed).
    pub(super) fn forget(&mut self, key: u32) {
        if !self.held.is_empty() {
            self.held.remove(&key);
        }
    }

    /// Connections holding an incomplete head or frame now.
    #[cfg(test)]
    pub(super) fn held_len(&self) -> usize {
        self.held.len()
    }
}

impl ShardCore {
    /// Bytes received on WebSocket connection `key`, in `phase`.
    pub(super) fn ws_received(&mut self, now: Millis, key: u32, phase: WsPhase, data: &[u8]) {
        match phase {
            WsPhase::Upgrading => self.ws_upgrade(now, key, data),
            WsPhase::Open => self.ws_frames(now, key, data),
            // Nothing is read after the server's close but the client's.
            WsPhase::CloseSent => {}
        }
    }

    /// Reads the Upgrade request: the 101 and the frames behind it, or a
    /// 4xx and the close.
    fn ws_upgrade(&mut self, now: Millis, key: u32, data: &[u8]) {
        let mut head = match self.ws.held.remove(&key) {
            Some(Held::Head(head)) => head,
            _ => Vec::new(),
        };
        let verdict = if head.is_empty() {
            read_upgrade(data, &self.ws.handshake)
        } else {
            head.extend_from_slice(data);
            read_upgrade(&head, &self.ws.handshake)
        };
        match verdict {
            Handshake::NeedMore => {
                if head.is_empty() {
                    head = data.to_vec();
                }
                self.ws.held.insert(key, Held::Head(head));
            }
            Handshake::Accept(accepted) => {
                self.stats.ws_upgrades += 1;
                self.set_ws_phase(key, WsPhase::Open);
                self.enqueue(now, key, Frame::copied(&accepted.response));
                let input: &[u8] = if head.is_empty() { data } else { &head };
                if let Some(rest) = input.get(accepted.consumed..)
                    && !rest.is_empty()
                {
                    self.ws_frames(now, key, rest);
                }
            }
            Handshake::Reject(rejected) => {
                self.stats.ws_upgrades_refused += 1;
                tracing::debug!(
                    shard = self.index,
                    status = rejected.status,
                    "websocket upgrade refused: {}",
                    rejected.error
                );
                self.set_ws_phase(key, WsPhase::CloseSent);
                self.enqueue(now, key, Frame::copied(&rejected.response));
                self.begin_close(now, key);
            }
        }
    }

    /// Client frames: binary messages to the session as v1 frames, pongs
    /// and the close handshake.
    fn ws_frames(&mut self, now: Millis, key: u32, data: &[u8]) {
        let mut decoder = match self.ws.held.remove(&key) {
            Some(Held::Frames(decoder)) => decoder,
            _ => FrameDecoder::new(),
        };
        let max_message = self.settings.server.max_frame;
        let mut out = std::mem::take(&mut self.ws.out);
        out.clear();
        decoder.decode(data, max_message, &mut out);
        if !decoder.is_at_rest() {
            self.ws.held.insert(key, Held::Frames(decoder));
        }
        self.stats.ws_pings += std::mem::take(&mut out.pings_in);
        out.messages_in = 0;
        let mut answered = false;
        if let Some(conn) = self.conns.get_mut(key as usize) {
            if !out.v1.is_empty() {
                conn.session
                    .handle_input(now, &out.v1, &self.settings, &mut self.out);
                self.stats.frames_in += std::mem::take(&mut self.out.v1.frames_in);
                answered = true;
            } else if !out.transmit.is_empty() {
                conn.session.note_keepalive(now);
            }
        }
        if answered {
            // The session's answers (a Pong, a Welcome) go before a pong or
            // a close of the transport's.
            self.handle_output(now, key);
        }
        let open = self
            .conns
            .get(key as usize)
            .is_some_and(|c| c.transport == Transport::WebSocket(WsPhase::Open));
        if open && !out.transmit.is_empty() {
            self.enqueue(now, key, Frame::copied(&out.transmit));
        }
        match out.end.take() {
            Some(WsEnd::PeerClosed(_)) => {
                self.set_ws_phase(key, WsPhase::CloseSent);
                if self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| !c.has(flags::CLOSING))
                {
                    self.stats.client_closes += 1;
                    self.begin_close(now, key);
                }
            }
            Some(WsEnd::Failed(error)) => {
                self.stats.ws_protocol_errors += 1;
                tracing::debug!(shard = self.index, "websocket protocol error: {error}");
                self.set_ws_phase(key, WsPhase::CloseSent);
                self.begin_close(now, key);
            }
            _ => {}
        }
        self.ws.out = out;
    }

    /// The session's output (a run of v1 frames) as `transport` puts it on
    /// the stream, or `None` when this transport sends nothing now (a
    /// WebSocket still upgrading, or past its close frame).
    pub(super) fn frame_session_output(
        &mut self,
        transport: Transport,
        v1: &[u8],
    ) -> Option<Frame> {
        match transport {
            Transport::RawV1 => Some(Frame::copied(v1)),
            Transport::WebSocket(WsPhase::Open) => {
                self.ws.framed.clear();
                encode::write_v1_as_binary(v1, &mut self.ws.framed);
                let frame = Frame::copied(&self.ws.framed);
                if self.ws.framed.capacity() > 64 * 1024 {
                    self.ws.framed = Vec::new();
                }
                Some(frame)
            }
            // Its session writes MQTT packets, never v1 frames.
            Transport::WebSocket(WsPhase::Upgrading | WsPhase::CloseSent) | Transport::Mqtt => None,
        }
    }

    /// The v1 session of WebSocket connection `key` ended with `reason`:
    /// after its last frame (an Error, a Kick) goes the close frame whose
    /// code says the gist.
    pub(super) fn ws_session_closed(&mut self, now: Millis, key: u32, reason: &CloseReason) {
        let Some(conn) = self.conns.get(key as usize) else {
            return;
        };
        if conn.transport != Transport::WebSocket(WsPhase::Open) {
            return;
        }
        let mut close = Vec::with_capacity(4);
        encode::write_close(session_close::close_code_for(reason), "", &mut close);
        self.set_ws_phase(key, WsPhase::CloseSent);
        self.enqueue(now, key, Frame::copied(&close));
    }

    fn set_ws_phase(&mut self, key: u32, phase: WsPhase) {
        if let Some(conn) = self.conns.get_mut(key as usize) {
            conn.transport = Transport::WebSocket(phase);
        }
    }
}
