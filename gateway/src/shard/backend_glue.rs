//! Where the shard meets [`crate::backend`]: webhook auth, uplink
//! forwarding, presence hooks, and applying backend results to client
//! connections (checked against the connection's generation, so a result
//! for a connection that has gone is dropped).

use bytes::Bytes;
use protocol::proto::{Frame, Hello, Reply, Uplink, frame::Kind};
use protocol::server::{CloseReason, SessionState};
use protocol::time::Millis;

use super::Shard;
use super::conn::flags;
use crate::backend::events::Presence;
use crate::backend::{Outcome, Verdict};
use crate::uring::op::OpTag;

impl Shard {
    /// A completion of a backend operation.
    pub(super) fn on_backend(&mut self, now: Millis, tag: OpTag, res: i32) {
        self.backend
            .on_completion(&mut self.ring, now, &mut self.stats, tag, res);
        self.apply_backend_outcomes(now);
    }

    /// Authenticates `hello` through the webhook (or its cache).
    pub(super) fn authenticate_webhook(&mut self, now: Millis, key: u32, hello: Hello) {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        let verdict = self.backend.authenticate(
            &mut self.ring,
            now,
            &mut self.stats,
            key,
            generation,
            &hello,
        );
        if let Some(v) = verdict {
            self.finish_auth(now, key, v, hello.device, hello.apps);
        }
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
    pub(super) fn presence_online(&mut self, now: Millis, p: Presence) {
        self.session_established(now, p.key);
        self.backend.online(&mut self.ring, now, &mut self.stats, p);
    }

    /// Reports connection `key` closing for `reason`.
    pub(super) fn presence_closing(&mut self, key: u32, reason: &CloseReason) {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        let why = match reason {
            CloseReason::ClientBye => "client_bye",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Kicked(protocol::proto::KickCode::SlowConsumer) => "slow_consumer",
            CloseReason::Kicked(_) => "kicked",
            CloseReason::ProtocolError(protocol::proto::ErrorCode::SlowConsumer) => "slow_consumer",
            CloseReason::ProtocolError(_) => "protocol_error",
            _ => "closed",
        };
        self.backend.closing(key, generation, why);
    }

    /// Reports connection `key` (generation `generation`) gone.
    pub(super) fn presence_gone(&mut self, now: Millis, key: u32, generation: u32) {
        self.backend
            .offline(&mut self.ring, now, &mut self.stats, key, generation);
    }

    /// Forwards an uplink; an immediate answer goes out with the session's
    /// output.
    pub(super) fn forward_uplink(&mut self, now: Millis, key: u32, up: Uplink) {
        let Some(conn) = self.conns.get(key as usize) else {
            return;
        };
        let generation = conn.generation;
        let user = conn.user.as_deref().unwrap_or("").to_string();
        if let Some(reply) = self.backend.uplink(
            &mut self.ring,
            now,
            &mut self.stats,
            key,
            generation,
            &user,
            up,
        ) {
            encode_reply(reply, &mut self.out.transmit);
        }
    }

    /// Applies every result the backend produced. Called only between
    /// connections' output handling (the session output buffer is shared).
    pub(super) fn apply_backend_outcomes(&mut self, now: Millis) {
        while !self.backend.outcomes.is_empty() {
            let outcomes = std::mem::take(&mut self.backend.outcomes);
            for o in outcomes {
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
                        if live {
                            let mut buf = Vec::with_capacity(reply.payload.len() + 16);
                            encode_reply(reply, &mut buf);
                            self.stats.frames_out += 1;
                            self.enqueue(now, key, Bytes::from(buf));
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
    }
}

fn encode_reply(reply: Reply, out: &mut Vec<u8>) {
    let frame = Frame {
        kind: Some(Kind::Reply(reply)),
    };
    protocol::codec::encode_frame(&frame, out);
}
