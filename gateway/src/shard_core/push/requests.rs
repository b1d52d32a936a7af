//! Requests about a user that need answers from other shards: about the
//! user's sessions (presence, kick), where the requesting shard asks the
//! user's owner, which tells it how many holding shards will answer; and
//! about the user's durable inbox (its pending count in the presence
//! answer, the inbox listing, a purge), which the owner answers alone.
//! The answers are gathered here and the HTTP response is written when the
//! last arrives, or with what there is (`"partial": true`) after a
//! timeout.

use protocol::time::Millis;
use serde_json::{Value, json};
use shard_router::messages::{InboxAction, InboxReport};
use slab::Slab;

use super::{RequestRef, SessionInfo, UserAction};
use crate::control::Caller;
use crate::control::routes::Response;
use crate::shard_core::ShardCore;

/// How long a request waits for other shards before answering partially.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// What a request asked, so what its answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// `GET /v1/users/{u}`: sessions and pending count.
    Describe,
    /// `POST /v1/kick`: the sessions kicked.
    Kick,
    /// `GET /v1/users/{u}/inbox`.
    Inbox,
    /// `DELETE /v1/users/{u}/inbox`.
    Purge,
}

impl Asked {
    /// Whether the holding shards of the user's sessions answer it (the
    /// owner says how many), else none do.
    fn asks_holders(self) -> bool {
        matches!(self, Asked::Describe | Asked::Kick)
    }

    /// Whether the owner's inbox report is part of the answer.
    fn wants_inbox(self) -> bool {
        !matches!(self, Asked::Kick)
    }
}

#[derive(Debug)]
struct Pending {
    control_key: Caller,
    user: String,
    asked: Asked,
    started: Millis,
    /// Holding shards that will answer (`None` until the owner says).
    expect: Option<u16>,
    got: u16,
    sessions: Vec<SessionInfo>,
    /// What the owner's inbox report said, if it is awaited and came.
    inbox: Option<Box<InboxReport>>,
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
        let describe = matches!(action, UserAction::Describe);
        let asked = if describe {
            Asked::Describe
        } else {
            Asked::Kick
        };
        let reply_to = self.new_request(now, control_key, user, asked);
        self.routing(|router, out| router.user_request(user, action, reply_to, out));
        if describe {
            self.routing(|router, out| {
                router.inbox_request(user, InboxAction::Count, reply_to, out)
            });
        }
    }

    /// Starts a request about `user`'s durable inbox (list or purge) for
    /// control connection `control_key`; the owner answers.
    pub(super) fn begin_inbox_request(
        &mut self,
        now: Millis,
        control_key: Caller,
        user: &str,
        action: InboxAction,
    ) {
        let asked = match action {
            InboxAction::Purge => Asked::Purge,
            InboxAction::List(_) | InboxAction::Count => Asked::Inbox,
        };
        let reply_to = self.new_request(now, control_key, user, asked);
        self.routing(|router, out| router.inbox_request(user, action, reply_to, out));
    }

    fn new_request(
        &mut self,
        now: Millis,
        control_key: Caller,
        user: &str,
        asked: Asked,
    ) -> RequestRef {
        let id = self.requests.pending.insert(Pending {
            control_key,
            user: user.to_string(),
            asked,
            started: now,
            // The owner says how many holders answer; with none asked,
            // none.
            expect: (!asked.asks_holders()).then_some(0),
            got: 0,
            sessions: Vec::new(),
            inbox: None,
        }) as u32;
        RequestRef {
            shard: self.index as u16,
            id,
        }
    }

    pub(super) fn inbox_reply(&mut self, now: Millis, id: u32, report: Box<InboxReport>) {
        if let Some(p) = self.requests.pending.get_mut(id as usize) {
            p.inbox = Some(report);
        }
        self.maybe_answer(now, id, false);
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
        let complete =
            p.expect.is_some_and(|e| p.got >= e) && (!p.asked.wants_inbox() || p.inbox.is_some());
        if !complete && !timed_out {
            return;
        }
        let p = self.requests.pending.remove(id as usize);
        let mut body = answer_body(&p);
        if !complete {
            body["partial"] = json!(true);
        }
        self.respond(p.control_key, Response::json(200, &body));
    }
}

/// The JSON answer to request `p` with what it gathered.
fn answer_body(p: &Pending) -> Value {
    let inbox = p.inbox.as_deref();
    match p.asked {
        Asked::Describe => {
            let mut body = json!({ "user": p.user, "sessions": p.sessions });
            if let Some(r) = inbox {
                body["pending"] = json!(r.pending);
            }
            body
        }
        Asked::Kick => {
            json!({ "user": p.user, "sessions": p.sessions, "kicked": p.sessions.len() })
        }
        Asked::Inbox => {
            let now_ms = crate::clock::wall_clock_ms();
            let (pending, bytes, pushes) =
                inbox.map_or((0, 0, &[][..]), |r| (r.pending, r.bytes, &r.pushes[..]));
            let list: Vec<Value> = pushes
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "deliveries": e.deliveries,
                        "in_flight": e.in_flight,
                        "expires_in_ms": e.expires_unix_ms.saturating_sub(now_ms),
                        "bytes": e.bytes,
                    })
                })
                .collect();
            json!({
                "user": p.user,
                "pending": pending,
                "bytes": bytes,
                "more": pending > list.len() as u64,
                "pushes": list,
            })
        }
        Asked::Purge => json!({ "user": p.user, "purged": inbox.map_or(0, |r| r.purged) }),
    }
}
