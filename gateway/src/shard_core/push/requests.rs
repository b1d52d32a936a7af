//! Requests about a user's sessions (presence, kick) that need answers
//! from other shards: the requesting shard asks the user's owner, which
//! tells it how many holding shards will answer; the answers are gathered
//! here and the HTTP response is written when the last arrives, or with
//! what there is (`"partial": true`) after a timeout.

use protocol::time::Millis;
use serde_json::json;
use slab::Slab;

use super::{RequestRef, SessionInfo, UserAction};
use crate::control::Caller;
use crate::control::routes::Response;
use crate::shard_core::ShardCore;

/// How long a request waits for other shards before answering partially.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug)]
struct Pending {
    control_key: Caller,
    user: String,
    kick: bool,
    started: Millis,
    expect: Option<u16>,
    got: u16,
    sessions: Vec<SessionInfo>,
}

/// Requests this shard is waiting on.
#[derive(Debug, Default)]
pub(crate) struct PendingRequests {
    pending: Slab<Pending>,
}

impl PendingRequests {
    /// Whether any request is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl ShardCore {
    /// Starts a request about `user`'s sessions for control connection
    /// `control_key`; the answer is written when the shards have replied.
    pub(super) fn begin_user_request(
        &mut self,
        now: Millis,
        control_key: Caller,
        user: &str,
        action: UserAction,
    ) {
        let id = self.requests.pending.insert(Pending {
            control_key,
            user: user.to_string(),
            kick: matches!(action, UserAction::Kick(..)),
            started: now,
            expect: None,
            got: 0,
            sessions: Vec::new(),
        }) as u32;
        let reply_to = RequestRef {
            shard: self.index as u16,
            id,
        };
        self.routing(|router, out| router.user_request(user, action, reply_to, out));
    }

    pub(super) fn request_plan(&mut self, now: Millis, id: u32, expect: u16) {
        if let Some(p) = self.requests.pending.get_mut(id as usize) {
            p.expect = Some(expect);
        }
        self.maybe_answer(now, id, false);
    }

    pub(super) fn request_reply(&mut self, now: Millis, id: u32, sessions: Vec<SessionInfo>) {
        if let Some(p) = self.requests.pending.get_mut(id as usize) {
            p.got += 1;
            p.sessions.extend(sessions);
        }
        self.maybe_answer(now, id, false);
    }

    /// Answers requests that waited too long with what they have.
    pub(in crate::shard_core) fn expire_requests(&mut self, now: Millis) {
        let late: Vec<u32> = self
            .requests
            .pending
            .iter()
            .filter(|(_, p)| now.since(p.started) >= REQUEST_TIMEOUT_MS)
            .map(|(id, _)| id as u32)
            .collect();
        for id in late {
            self.maybe_answer(now, id, true);
        }
    }

    /// When the oldest request times out, if any is waiting.
    pub(in crate::shard_core) fn requests_wakeup(&self) -> Option<Millis> {
        self.requests
            .pending
            .iter()
            .map(|(_, p)| p.started.saturating_add(REQUEST_TIMEOUT_MS))
            .min()
    }

    fn maybe_answer(&mut self, _now: Millis, id: u32, timed_out: bool) {
        let Some(p) = self.requests.pending.get(id as usize) else {
            return;
        };
        let complete = p.expect.is_some_and(|e| p.got >= e);
        if !complete && !timed_out {
            return;
        }
        let p = self.requests.pending.remove(id as usize);
        let mut body = json!({ "user": p.user, "sessions": p.sessions });
        if p.kick {
            body["kicked"] = json!(p.sessions.len());
        }
        if !complete {
            body["partial"] = json!(true);
        }
        self.respond(p.control_key, Response::json(200, &body));
    }
}
