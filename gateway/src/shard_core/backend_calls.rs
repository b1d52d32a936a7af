//! Where the core meets the backend (webhook auth, uplink forwarding,
//! presence hooks): the calls it asks its driver to make, and the results
//! applied to client connections (checked against the connection's
//! generation, so a result for a connection that has gone is dropped).

use protocol::proto::{Frame, Hello, Reply, Uplink, frame::Kind};
use protocol::server::{CloseReason, SessionState};
use protocol::time::Millis;

use super::conn::flags;
use super::{Action, BackendCall, ShardCore, Time, Transport};
use crate::backend::events::Presence;
use crate::backend::{Outcome, Verdict};

impl ShardCore {
    /// Whether Hellos go to the auth webhook (`auth.mode = "webhook"`).
    pub(super) fn webhook_auth(&self) -> bool {
        self.settings.config.auth.mode == tuning::backends::AuthMode::Webhook
    }

    /// Asks the driver to authenticate `hello` through the webhook (or
    /// its cache).
    pub(super) fn authenticate_webhook(&mut self, key: u32, hello: Hello) {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Authenticate {
                key,
                generation,
                hello,
            })));
    }

    /// Sends `Welcome` (and the online event) or `Error` + close.
    fn finish_auth(
        &mut self,
        now: Millis,
        key: u32,
        v: Verdict,
        device: String,
        apps: Vec<String>,
    ) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if conn.session.state() != SessionState::Authenticating || conn.has(flags::CLOSING) {
            return;
        }
        match v {
            Verdict::Allow { user } => self.admit(now, key, user, device, apps),
            Verdict::Deny { code, reason } => self.refuse_hello(now, key, code, &reason),
        }
    }

    /// Reports a session that went online (both auth modes).
    pub(super) fn presence_online(&mut self, p: Presence) {
        self.session_established(p.key);
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Online(p))));
    }

    /// Reports connection `key` closing for `reason`. A session ended on
    /// purpose (Bye, kick, refusal, protocol error) is not kept for a
    /// resume.
    pub(super) fn presence_closing(&mut self, key: u32, reason: &CloseReason) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        if matches!(
            reason,
            CloseReason::ClientBye
                | CloseReason::Kicked(_)
                | CloseReason::Rejected(_)
                | CloseReason::ProtocolError(_)
        ) {
            conn.set(flags::NO_RESUME);
        }
        let generation = conn.generation;
        let why = match reason {
            CloseReason::ClientBye => "client_bye",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Kicked(protocol::proto::KickCode::SlowConsumer) => "slow_consumer",
            CloseReason::Kicked(_) => "kicked",
            CloseReason::ProtocolError(protocol::proto::ErrorCode::SlowConsumer) => "slow_consumer",
            CloseReason::ProtocolError(_) => "protocol_error",
            _ => "closed",
        };
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Closing {
                key,
                generation,
                reason: why,
            })));
    }

    /// Reports connection `key` (generation `generation`) gone.
    pub(super) fn presence_gone(&mut self, key: u32, generation: u32) {
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Offline {
                key,
                generation,
            })));
    }

    /// Asks the driver to forward an uplink; the answer comes back as an
    /// [`Outcome::Reply`].
    pub(super) fn forward_uplink(&mut self, key: u32, uplink: Uplink) {
        let Some(conn) = self.conns.get(key as usize) else {
            return;
        };
        let generation = conn.generation;
        let user = conn.user.as_deref().unwrap_or("").to_string();
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Uplink {
                key,
                generation,
                user,
                uplink,
            })));
    }

    /// Applies a result of the backend to its connection, if that is still
    /// there. Called by the driver between inputs (never inside another).
    pub fn on_backend_outcome(&mut self, t: Time, o: Outcome) {
        let now = self.at(t);
        match o {
            Outcome::Reply {
                key,
                generation,
                reply,
            } => {
                let live = self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| c.generation == generation && !c.has(flags::CLOSING));
                let mqtt = live
                    && self
                        .conns
                        .get(key as usize)
                        .is_some_and(|c| c.transport == Transport::Mqtt);
                if mqtt {
                    // MQTT has no reply to an uplink: a PUBACK, or not.
                    self.mqtt_uplink_answered(now, key, reply.request_id, reply.status);
                } else if live {
                    let mut buf = Vec::with_capacity(reply.payload.len() + 16);
                    encode_reply(reply, &mut buf);
                    self.stats.frames_out += 1;
                    // Framed by the connection's transport (a WebSocket
                    // connection gets it as a binary message).
                    let transport = self.conns.get(key as usize).map(|c| c.transport);
                    if let Some(frame) =
                        self.frame_session_output(transport.unwrap_or_default(), &buf)
                    {
                        self.enqueue(now, key, frame);
                    }
                    self.flush(key);
                }
            }
            Outcome::Auth {
                key,
                generation,
                verdict,
                device,
                apps,
            } => {
                if self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.finish_auth(now, key, verdict, device, apps);
                    self.handle_output(now, key);
                }
            }
        }
    }
}

fn encode_reply(reply: Reply, out: &mut Vec<u8>) {
    let frame = Frame {
        kind: Some(Kind::Reply(reply)),
    };
    protocol::codec::encode_frame(&frame, out);
}
