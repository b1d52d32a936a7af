//! The session in a connection slot, by the wire protocol it speaks: v1
//! (`protocol::server`) or MQTT 3.1.1 (`protocol::mqtt::server`). Both are
//! driven by the same calls, so the core's connection handling (timers,
//! kicks, refusals, the Welcome) does not depend on the protocol; what
//! each produces goes into its half of a [`SessionOutput`].

use protocol::mqtt::server::{
    MqttSession, Output as MqttOutput, SessionState as MqttState, Verdict,
};
use protocol::proto::{ErrorCode, KickCode, Welcome};
use protocol::server::{Output, ServerSession, SessionState};
use protocol::time::Millis;

use crate::settings::Settings;

/// What the sessions of a shard produced during one call, per protocol.
/// Shared by every session of the shard; drained after each call.
#[derive(Debug, Default)]
pub struct SessionOutput {
    /// A v1 session's frames and events.
    pub v1: Output,
    /// An MQTT session's packets and events.
    pub mqtt: MqttOutput,
}

/// A client session of one wire protocol.
#[derive(Debug)]
pub enum Session {
    /// Wire protocol v1 (protobuf frames, see `protocol::server`).
    V1(ServerSession),
    /// MQTT 3.1.1 (see `protocol::mqtt::server` and `shard_core::mqtt`).
    Mqtt(MqttSession),
}

impl Session {
    /// A v1 session started at `now`.
    pub fn v1(now: Millis, s: &Settings) -> Self {
        Session::V1(ServerSession::new(now, &s.server))
    }

    /// An MQTT session started at `now`.
    pub fn mqtt(now: Millis, s: &Settings) -> Self {
        Session::Mqtt(MqttSession::new(now, &s.mqtt))
    }

    /// Where the session is in its life cycle (an MQTT session's CONNECT
    /// counts as the Hello).
    pub fn state(&self) -> SessionState {
        match self {
            Session::V1(s) => s.state(),
            Session::Mqtt(s) => match s.state() {
                MqttState::AwaitingConnect => SessionState::AwaitingHello,
                MqttState::Authenticating => SessionState::Authenticating,
                MqttState::Established => SessionState::Established,
                MqttState::Closed => SessionState::Closed,
            },
        }
    }

    /// The MQTT session, if it is one.
    pub fn as_mqtt(&mut self) -> Option<&mut MqttSession> {
        match self {
            Session::Mqtt(s) => Some(s),
            Session::V1(_) => None,
        }
    }

    /// When the session next needs [`Session::handle_timeout`].
    pub fn deadline(&self, s: &Settings) -> Option<Millis> {
        match self {
            Session::V1(v1) => v1.deadline(&s.server),
            Session::Mqtt(m) => m.deadline(&s.mqtt),
        }
    }

    /// Bytes from the client, as the transport delivered them.
    pub fn handle_input(
        &mut self,
        now: Millis,
        data: &[u8],
        s: &Settings,
        out: &mut SessionOutput,
    ) {
        match self {
            Session::V1(v1) => v1.handle_input(now, data, &s.server, &mut out.v1),
            Session::Mqtt(m) => m.handle_input(now, data, &s.mqtt, &mut out.mqtt),
        }
    }

    /// The transport saw a keep-alive of its own (a WebSocket ping) at
    /// `now`. MQTT runs on no such transport.
    pub fn note_keepalive(&mut self, now: Millis) {
        if let Session::V1(s) = self {
            s.note_keepalive(now);
        }
    }

    /// Time passed: heartbeat (keep-alive) and handshake timeouts.
    pub fn handle_timeout(&mut self, now: Millis, s: &Settings, out: &mut SessionOutput) {
        match self {
            Session::V1(v1) => v1.handle_timeout(now, &s.server, &mut out.v1),
            Session::Mqtt(m) => m.handle_timeout(now, &s.mqtt, &mut out.mqtt),
        }
    }

    /// The handshake succeeded: a v1 session sends `welcome`; an MQTT one
    /// sends CONNACK 0x00, with "session present" for a resumed session.
    pub fn accept(&mut self, now: Millis, s: &Settings, welcome: Welcome, out: &mut SessionOutput) {
        match self {
            Session::V1(v1) => v1.accept(now, &s.server, welcome, &mut out.v1),
            Session::Mqtt(m) => {
                let verdict = Verdict::Accept {
                    session_present: welcome.resumed,
                };
                m.verdict(now, &s.mqtt, verdict, &mut out.mqtt);
            }
        }
    }

    /// The handshake was refused: an Error frame, or the CONNACK code
    /// that says the same (see [`refusal_verdict`]).
    pub fn reject(&mut self, code: ErrorCode, message: &str, out: &mut SessionOutput) {
        match self {
            Session::V1(s) => s.reject(code, message, &mut out.v1),
            // `verdict` ignores the clock on a refusal.
            Session::Mqtt(m) => {
                m.verdict(
                    Millis(0),
                    &Default::default(),
                    refusal_verdict(code),
                    &mut out.mqtt,
                );
            }
        }
    }

    /// The gateway ends the session with a Kick. MQTT 3.1.1 has no server
    /// DISCONNECT: the connection is closed (the will is due).
    pub fn kick(
        &mut self,
        code: KickCode,
        reason: &str,
        reconnect: &[String],
        retry_after_ms: u32,
        out: &mut SessionOutput,
    ) {
        match self {
            Session::V1(s) => s.kick(code, reason, reconnect, retry_after_ms, &mut out.v1),
            Session::Mqtt(m) => m.close(&mut out.mqtt),
        }
    }

    /// The gateway ends the session with an Error: during an MQTT
    /// handshake as a CONNACK refusal, after it as a close.
    pub fn fail(&mut self, code: ErrorCode, message: &str, out: &mut SessionOutput) {
        match self {
            Session::V1(s) => s.fail(code, message, &mut out.v1),
            Session::Mqtt(m) if m.state() == MqttState::Authenticating => {
                m.verdict(
                    Millis(0),
                    &Default::default(),
                    refusal_verdict(code),
                    &mut out.mqtt,
                );
            }
            Session::Mqtt(m) => m.close(&mut out.mqtt),
        }
    }
}

/// The CONNACK refusal that says what a v1 handshake refusal with `code`
/// says: bad or expired credentials 0x04, a valid token without the right
/// 0x05, a full or draining gateway 0x03.
pub fn refusal_verdict(code: ErrorCode) -> Verdict {
    match code {
        ErrorCode::Forbidden => Verdict::NotAuthorized,
        ErrorCode::Overloaded | ErrorCode::Internal => Verdict::ServerUnavailable,
        _ => Verdict::BadCredentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_refusals_become_the_connack_code_that_says_the_same() {
        for (code, verdict) in [
            (ErrorCode::Unauthorized, Verdict::BadCredentials),
            (ErrorCode::TokenExpired, Verdict::BadCredentials),
            (ErrorCode::Forbidden, Verdict::NotAuthorized),
            (ErrorCode::Overloaded, Verdict::ServerUnavailable),
        ] {
            assert_eq!(refusal_verdict(code), verdict, "{code:?}");
        }
    }
}
