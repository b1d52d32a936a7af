//! The backend-facing push API on the control listener: `/v1/push`,
//! `/v1/push/batch`, `/v1/users/{user}`, `/v1/kick`, `/v1/drain`. Requests
//! are validated here, turned into one encoded push (or a cross-shard
//! request) and routed. A push to users or a topic is answered once its
//! holders have counted the sessions it reached (`answers`); a broadcast at
//! once, with the sessions the gateway held when it was accepted (the
//! [`Census`](crate::census::Census)).

use std::sync::Arc;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use protocol::codec::encode_shared;
use protocol::proto::{Frame, KickCode, Push, frame::Kind};
use protocol::time::Millis;
use serde::Deserialize;
use serde_json::json;

use super::answers::{Line, Shape, Tally};
use super::{Message, OUTBOX_LIMIT, PushJob, Receipt, UserAction};
use crate::control::Caller;
use crate::control::routes::Response;
use crate::shard_core::ShardCore;
use shard_router::messages::InboxAction;

/// Why a push request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not the JSON this endpoint takes.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// `to` must name exactly one of user, users, topic, all.
    #[error("`to` must have exactly one of \"user\", \"users\", \"topic\" or \"all\": true")]
    Target,
    /// Both or neither of payload and payload_b64.
    #[error("give exactly one of \"payload\" (UTF-8) or \"payload_b64\"")]
    Payload,
    /// payload_b64 is not base64.
    #[error("payload_b64 is not valid base64: {0}")]
    Base64(String),
    /// The encoded push would exceed the frame limit.
    #[error("push of {0} bytes exceeds max_frame")]
    TooLarge(usize),
    /// An empty user or topic name.
    #[error("user and topic names must not be empty")]
    EmptyName,
}

/// `to` of a push request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct To {
    user: Option<String>,
    users: Option<Vec<String>>,
    topic: Option<String>,
    all: Option<bool>,
}

/// A push request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    to: To,
    #[serde(default)]
    app: String,
    payload: Option<String>,
    payload_b64: Option<String>,
    #[serde(default)]
    ack: bool,
    /// How long a durable push waits in an inbox, ms (0 or absent:
    /// `[store] ttl_ms`).
    ttl_ms: Option<u64>,
    /// Recipients per second (broadcast and topic pushes).
    rate: Option<u32>,
}

/// Where a validated push goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    Users(Vec<String>),
    /// Users, with `"ack": true`: stored in each user's inbox by its
    /// owner before it goes out (see `shard_core::durable`).
    DurableUsers(Vec<String>),
    Topic(String),
    All,
}

impl Destination {
    /// The count an answer waits for, for a push to `names` names.
    fn tally(&self, names: usize) -> Tally {
        match self {
            Destination::DurableUsers(_) => Tally::durable(names),
            _ => Tally::new(names),
        }
    }

    /// How many users or topics will plan the push's count; `None` for a
    /// broadcast, whose answer never waits.
    fn names(&self) -> Option<usize> {
        match self {
            Destination::Users(users) | Destination::DurableUsers(users) => Some(users.len()),
            Destination::Topic(_) => Some(1),
            Destination::All => None,
        }
    }
}

/// Most users a push may name and still be routed before its answer (see
/// [`Shard::route`]).
const ROUTE_AT_ONCE_USERS: usize = 8;

/// Pushes accepted but not routed yet (see [`Shard::route_accepted`]),
/// with where their counts go.
#[derive(Debug, Default)]
pub(crate) struct AcceptedPushes(Vec<(Destination, PushJob, Option<Receipt>)>);

impl AcceptedPushes {
    /// Whether no push waits for its routing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A run of merged pushes of a batch (see `ShardCore::api_push_batch`).
#[derive(Debug)]
struct Run {
    dest: Destination,
    /// The run's first push, its frame count the run's.
    job: PushJob,
    /// The frames from the second push on, gathering.
    frames: Option<BytesMut>,
    /// Where the run's one count goes (a topic run).
    receipt: Option<Receipt>,
}

/// A kick request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickRequest {
    user: String,
    #[serde(default)]
    reason: Option<String>,
}

/// A drain request body.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    /// Kicks per second across the gateway.
    rate: Option<u32>,
    #[serde(default)]
    reconnect: Vec<String>,
    retry_after_ms: Option<u32>,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Json(e.to_string()))
}

fn bad_request(e: &ApiError) -> Response {
    Response::json(400, &json!({ "error": e.to_string() }))
}

impl ShardCore {
    /// 503 while too many cross-shard messages wait for full mailboxes:
    /// backpressure to the backend instead of unbounded memory.
    fn busy(&self) -> Option<Response> {
        (self.outboxes.backlog() > OUTBOX_LIMIT)
            .then(|| Response::error(503, "busy: cross-shard mailboxes are full, retry later"))
    }

    /// Answers `POST /v1/push`: a broadcast at once; a push to users or a
    /// topic once its holders have counted (`None` here, the answer comes
    /// later).
    pub(in crate::shard_core) fn api_push(
        &mut self,
        now: Millis,
        caller: Caller,
        body: &[u8],
    ) -> Option<Response> {
        if let Some(busy) = self.busy() {
            return Some(busy);
        }
        let (dest, job) = match self.prepare_push(body) {
            Ok(push) => push,
            Err(e) => {
                self.stats.pushes_rejected += 1;
                return Some(bad_request(&e));
            }
        };
        self.stats.pushes_accepted += 1;
        let id = job.id;
        let Some(names) = dest.names() else {
            let online = self.census();
            self.route(dest, job, None);
            return Some(Response::json(200, &json!({ "id": id, "online": online })));
        };
        let tally = dest.tally(names);
        let answer = self.await_answer(now, caller, Shape::One { id, tally });
        self.route(dest, job, Some(answer.receipt(self.index, 0)));
        self.seal_answer(answer, None);
        None
    }

    /// Answers `POST /v1/push/batch`: one push request per line (NDJSON);
    /// each line gets its own result, in order, once every line is
    /// counted (`None` here when that is later).
    pub(in crate::shard_core) fn api_push_batch(
        &mut self,
        now: Millis,
        caller: Caller,
        body: &[u8],
    ) -> Option<Response> {
        if let Some(busy) = self.busy() {
            return Some(busy);
        }
        let answer = self.await_answer(
            now,
            caller,
            Shape::Batch {
                lines: Vec::new(),
                tallies: Vec::new(),
            },
        );
        let mut lines = Vec::new();
        let mut tallies = Vec::new();
        // The sessions online, for the broadcasts: read once per batch.
        let mut census = None;
        // Consecutive unpaced pushes to the same broadcast or topic (same app)
        // travel as one job whose frames are concatenated: each recipient
        // then gets one enqueue and one send for the whole run, and its
        // lines share one count. From the second push on, the frames
        // gather in one buffer, frozen when the run ends.
        let mut run: Option<Run> = None;
        for line in body.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (dest, job) = match self.prepare_push(line) {
                Ok(push) => push,
                Err(e) => {
                    self.stats.pushes_rejected += 1;
                    lines.push(Line::Refused(e.to_string()));
                    continue;
                }
            };
            self.stats.pushes_accepted += 1;
            let id = job.id;
            let mergeable = job.rate == 0
                && !matches!(dest, Destination::Users(_) | Destination::DurableUsers(_));
            if let Some(r) = &mut run
                && mergeable
                && r.dest == dest
                && r.job.app == job.app
            {
                r.frames
                    .get_or_insert_with(|| BytesMut::from(&r.job.frame[..]))
                    .extend_from_slice(&job.frame);
                r.job.frames += 1;
                lines.push(match (r.receipt, census) {
                    (Some(receipt), _) => Line::Counted {
                        id,
                        part: receipt.part,
                    },
                    (None, online) => Line::Known {
                        id,
                        online: online.unwrap_or(0),
                    },
                });
                continue;
            }
            if let Some(done) = run.take() {
                self.route_run(done);
            }
            let receipt = match dest.names() {
                Some(names) => {
                    let part = u32::try_from(tallies.len()).unwrap_or(u32::MAX);
                    tallies.push(dest.tally(names));
                    lines.push(Line::Counted { id, part });
                    Some(answer.receipt(self.index, part))
                }
                None => {
                    let online = *census.get_or_insert_with(|| self.census());
                    lines.push(Line::Known { id, online });
                    None
                }
            };
            if mergeable {
                run = Some(Run {
                    dest,
                    job,
                    frames: None,
                    receipt,
                });
            } else {
                self.route(dest, job, receipt);
            }
        }
        if let Some(done) = run.take() {
            self.route_run(done);
        }
        self.seal_answer(answer, Some((lines, tallies)));
        None
    }

    /// Client sessions across the gateway: this shard's now, the others'
    /// as they last published them.
    fn census(&self) -> u64 {
        self.stats.sessions + self.census.sessions_elsewhere(self.index)
    }

    /// Validates a push request and encodes its frame.
    fn prepare_push(&mut self, body: &[u8]) -> Result<(Destination, PushJob), ApiError> {
        let req: PushRequest = parse(body)?;
        let dest = match (req.to.user, req.to.users, req.to.topic, req.to.all) {
            (Some(u), None, None, None | Some(false)) => Destination::Users(vec![u]),
            (None, Some(us), None, None | Some(false)) => Destination::Users(us),
            (None, None, Some(t), None | Some(false)) => Destination::Topic(t),
            (None, None, None, Some(true)) => Destination::All,
            _ => return Err(ApiError::Target),
        };
        // A push to users with an Ack asked for is durable; a topic or
        // broadcast push with one is not kept (yet): its Acks are counted.
        let dest = match dest {
            Destination::Users(us) if req.ack => Destination::DurableUsers(us),
            other => other,
        };
        let names_ok = match &dest {
            Destination::Users(us) | Destination::DurableUsers(us) => {
                us.iter().all(|u| !u.is_empty())
            }
            Destination::Topic(t) => !t.is_empty(),
            Destination::All => true,
        };
        if !names_ok {
            return Err(ApiError::EmptyName);
        }
        let payload = match (req.payload, req.payload_b64) {
            (Some(p), None) => Bytes::from(p.into_bytes()),
            (None, Some(b)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|e| ApiError::Base64(e.to_string()))?,
            ),
            _ => return Err(ApiError::Payload),
        };
        let id = self.push_ids.next_id();
        let accepted_us = self.unix_ms.saturating_mul(1000);
        let topic = match &dest {
            Destination::Topic(t) => t.clone(),
            _ => String::new(),
        };
        let frame = encode_shared(&Frame {
            kind: Some(Kind::Push(Push {
                id,
                app: req.app.clone(),
                topic,
                payload,
                ack: req.ack,
                ts_us: accepted_us,
                // A push from the API is a first delivery.
                redelivery: false,
            })),
        });
        if frame.len() > self.settings.server.max_frame as usize + protocol::codec::LENGTH_PREFIX {
            return Err(ApiError::TooLarge(frame.len()));
        }
        let rate = req.rate.unwrap_or(self.settings.config.push.default_rate);
        let job = PushJob {
            id,
            frame,
            frames: 1,
            app: req.app.into(),
            rate,
            accepted_us,
            ttl_ms: req.ttl_ms.unwrap_or(0),
        };
        Ok((dest, job))
    }

    /// Hands a run of pushes to the routing, its frames as one.
    fn route_run(&mut self, run: Run) {
        let Run {
            dest,
            mut job,
            frames,
            receipt,
        } = run;
        if let Some(frames) = frames {
            job.frame = frames.freeze();
        }
        self.route(dest, job, receipt);
    }

    /// Hands a prepared push to the routing. A push that fans out (to
    /// all, to a topic, to more than [`ROUTE_AT_ONCE_USERS`] users) is
    /// routed by [`Shard::route_accepted`], after the answers given so far
    /// have been sent, so a broadcast's answer never waits for this
    /// shard's part of the fan-out (the answers that wait for counts get
    /// them as the holders enqueue, paced or not). A push to a few users
    /// is routed at once (a message to an owner or a holder, or a few
    /// local enqueues). Once one push waits, later ones wait behind it,
    /// so pushes keep the order they were accepted in. Either way the
    /// count goes to `receipt`.
    fn route(&mut self, dest: Destination, job: PushJob, receipt: Option<Receipt>) {
        let small = matches!(&dest, Destination::Users(us) | Destination::DurableUsers(us)
            if us.len() <= ROUTE_AT_ONCE_USERS);
        if small && self.accepted.0.is_empty() {
            self.route_now(dest, job, receipt);
        } else {
            self.accepted.0.push((dest, job, receipt));
        }
    }

    /// Routes the pushes accepted since the last call, in the order they
    /// were accepted. The control requests call this before anything
    /// that must come after those pushes (a kick, a drain, a presence
    /// question) and once their answers are on their way.
    pub(in crate::shard_core) fn route_accepted(&mut self) {
        if self.accepted.0.is_empty() {
            return;
        }
        let mut accepted = std::mem::take(&mut self.accepted.0);
        for (dest, job, receipt) in accepted.drain(..) {
            self.route_now(dest, job, receipt);
        }
        // Keep the storage for the next burst unless it grew large.
        if accepted.capacity() <= 1024 && self.accepted.0.is_empty() {
            self.accepted.0 = accepted;
        }
    }

    /// Sends a prepared push on its way, its count (every user's) going
    /// to `receipt`.
    fn route_now(&mut self, dest: Destination, job: PushJob, receipt: Option<Receipt>) {
        let job = Arc::new(job);
        match dest {
            Destination::Users(users) => {
                for user in users {
                    self.route_to_user(&user, &job, receipt);
                }
            }
            Destination::DurableUsers(users) => {
                for user in users {
                    let msg = Message::StoreForUser(user.as_str().into(), job.clone(), receipt);
                    self.tell_owner(&user, msg);
                }
            }
            Destination::Topic(topic) => self.route_to_topic(&topic, &job, receipt),
            Destination::All => self.route_to_all(&job),
        }
    }

    /// Answers `GET /v1/users/{user}` (deferred until the shards reply).
    pub(in crate::shard_core) fn api_user(
        &mut self,
        now: Millis,
        control_key: Caller,
        user: &str,
    ) -> Option<Response> {
        if user.is_empty() {
            return Some(bad_request(&ApiError::EmptyName));
        }
        self.begin_user_request(now, control_key, user, UserAction::Describe);
        None
    }

    /// Answers `GET /v1/users/{u}/inbox` (the oldest pending durable
    /// pushes, `?limit=N`, default [`INBOX_LIST_DEFAULT`], at most
    /// [`INBOX_LIST_MAX`]) and `DELETE` (purge), deferred until the user's
    /// owner answers.
    pub(in crate::shard_core) fn api_inbox(
        &mut self,
        now: Millis,
        control_key: Caller,
        user: &str,
        purge: bool,
        path: &str,
    ) -> Option<Response> {
        if user.is_empty() {
            return Some(bad_request(&ApiError::EmptyName));
        }
        let action = if purge {
            InboxAction::Purge
        } else {
            match list_limit(path) {
                Ok(n) => InboxAction::List(n),
                Err(why) => return Some(Response::error(400, &why)),
            }
        };
        self.begin_inbox_request(now, control_key, user, action);
        None
    }

    /// Answers `POST /v1/kick` (deferred until the shards reply).
    pub(in crate::shard_core) fn api_kick(
        &mut self,
        now: Millis,
        control_key: Caller,
        body: &[u8],
    ) -> Option<Response> {
        let req: KickRequest = match parse(body) {
            Ok(r) => r,
            Err(e) => return Some(bad_request(&e)),
        };
        if req.user.is_empty() {
            return Some(bad_request(&ApiError::EmptyName));
        }
        let reason = req
            .reason
            .unwrap_or_else(|| "kicked by the operator".into());
        let action = UserAction::Kick(KickCode::Admin as u32, reason.into());
        self.begin_user_request(now, control_key, &req.user, action);
        None
    }

    /// Answers `POST /v1/drain`: every shard stops accepting and kicks its
    /// sessions (code drain, with reconnect hints) at the given rate.
    pub(in crate::shard_core) fn api_drain(&mut self, body: &[u8]) -> Response {
        let req: DrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
            DrainRequest::default()
        } else {
            match parse(body) {
                Ok(r) => r,
                Err(e) => return bad_request(&e),
            }
        };
        let shutdown = &self.settings.config.shutdown;
        let rate = req.rate.unwrap_or(shutdown.kick_rate).max(1);
        let reconnect: Arc<[String]> = if req.reconnect.is_empty() {
            shutdown.reconnect.clone().into()
        } else {
            req.reconnect.into()
        };
        let retry_after = req.retry_after_ms.unwrap_or(shutdown.retry_after_ms);
        let shards = self.settings.shards.len();
        let per_shard = rate.div_ceil(shards as u32).max(1);
        self.routing(|router, out| {
            router.to_every_shard(
                || Message::Drain(per_shard, reconnect.clone(), retry_after),
                out,
            )
        });
        Response::json(200, &json!({ "draining": true, "rate": rate }))
    }
}

/// Pushes an inbox listing shows when no `limit` is given.
pub const INBOX_LIST_DEFAULT: u32 = 100;
/// Most pushes one inbox listing shows (`"more": true` says there are
/// others).
pub const INBOX_LIST_MAX: u32 = 1_000;

/// The `limit` of an inbox listing from the request's query string.
fn list_limit(path: &str) -> Result<u32, String> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(INBOX_LIST_DEFAULT);
    };
    let mut limit = INBOX_LIST_DEFAULT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", v)) => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=INBOX_LIST_MAX).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "limit must be a whole number from 1 to {INBOX_LIST_MAX}, not {v:?}"
                        )
                    })?;
            }
            _ => return Err(format!("unknown query parameter {pair:?} (only limit=N)")),
        }
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_requests_parse_and_unknown_fields_are_refused() {
        let ok: PushRequest = parse(br#"{"to":{"topic":"t"},"payload":"hi","rate":10}"#).unwrap();
        assert_eq!(ok.to.topic.as_deref(), Some("t"));
        assert_eq!(ok.rate, Some(10));
        assert!(matches!(
            parse::<PushRequest>(br#"{"to":{"all":true},"payload":"x","bogus":1}"#),
            Err(ApiError::Json(_))
        ));
        assert!(matches!(
            parse::<PushRequest>(b"not json"),
            Err(ApiError::Json(_))
        ));
    }

    #[test]
    fn an_inbox_listing_takes_only_a_bounded_limit() {
        use super::{INBOX_LIST_DEFAULT, INBOX_LIST_MAX, list_limit};
        assert_eq!(list_limit("/v1/users/a/inbox"), Ok(INBOX_LIST_DEFAULT));
        assert_eq!(list_limit("/v1/users/a/inbox?"), Ok(INBOX_LIST_DEFAULT));
        assert_eq!(list_limit("/v1/users/a/inbox?limit=7"), Ok(7));
        assert_eq!(list_limit("/x?limit=1000"), Ok(INBOX_LIST_MAX));
        for bad in [
            "/x?limit=0",
            "/x?limit=1001",
            "/x?limit=-1",
            "/x?limit=",
            "/x?page=2",
        ] {
            assert!(list_limit(bad).is_err(), "{bad}");
        }
    }
}
