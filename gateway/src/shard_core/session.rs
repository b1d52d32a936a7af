//! The session in a connection slot, by the wire protocol it speaks. Only
//! v1 exists today; an MQTT session is another variant, driven by the same
//! calls, so the core's connection handling does not change with it.

use protocol::proto::{ErrorCode, KickCode, Welcome};
use protocol::server::{Output, ServerConfig, ServerSession, SessionState};
use protocol::time::Millis;

/// A client session of one wire protocol.
#[derive(Debug)]
pub enum Session {
    /// Wire protocol v1 (protobuf frames, see `protocol::server`).
    V1(ServerSession),
}

impl Session {
    /// A v1 session started at `now`.
    pub fn v1(now: Millis, cfg: &ServerConfig) -> Self {
        Session::V1(ServerSession::new(now, cfg))
    }

    /// Where the session is in its life cycle.
    pub fn state(&self) -> SessionState {
        match self {
            Session::V1(s) => s.state(),
        }
    }

    /// When the session next needs [`Session::handle_timeout`].
    pub fn deadline(&self, cfg: &ServerConfig) -> Option<Millis> {
        match self {
            Session::V1(s) => s.deadline(cfg),
        }
    }

    /// Bytes from the client, as the transport delivered them.
    pub fn handle_input(&mut self, now: Millis, data: &[u8], cfg: &ServerConfig, out: &mut Output) {
        match self {
            Session::V1(s) => s.handle_input(now, data, cfg, out),
        }
    }

    /// The transport saw a keep-alive of its own (a WebSocket ping) at `now`.
    pub fn note_keepalive(&mut self, now: Millis) {
        match self {
            Session::V1(s) => s.note_keepalive(now),
        }
    }

    /// Time passed: heartbeat and handshake timeouts.
    pub fn handle_timeout(&mut self, now: Millis, cfg: &ServerConfig, out: &mut Output) {
        match self {
            Session::V1(s) => s.handle_timeout(now, cfg, out),
        }
    }

    /// The handshake succeeded.
    pub fn accept(&mut self, now: Millis, cfg: &ServerConfig, welcome: Welcome, out: &mut Output) {
        match self {
            Session::V1(s) => s.accept(now, cfg, welcome, out),
        }
    }

    /// The handshake was refused.
    pub fn reject(&mut self, code: ErrorCode, message: &str, out: &mut Output) {
        match self {
            Session::V1(s) => s.reject(code, message, out),
        }
    }

    /// The gateway ends the session with a Kick.
    pub fn kick(
        &mut self,
        code: KickCode,
        reason: &str,
        reconnect: &[String],
        retry_after_ms: u32,
        out: &mut Output,
    ) {
        match self {
            Session::V1(s) => s.kick(code, reason, reconnect, retry_after_ms, out),
        }
    }

    /// The gateway ends the session with an Error.
    pub fn fail(&mut self, code: ErrorCode, message: &str, out: &mut Output) {
        match self {
            Session::V1(s) => s.fail(code, message, out),
        }
    }
}
