//! Push delivery across shards: the messages shards send each other, and
//! how a shard routes them. A push is encoded once where the API received
//! it; owners (`hash(name) mod shards`) resolve users and topics to the
//! shards that hold recipients; each holding shard writes the same bytes to
//! its recipients.

mod api;
mod deliver;
mod requests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use protocol::time::Millis;
use shard_router::directory::SessionRef;
use shard_router::owner::{owner_of, owner_of_hash, stable_hash};
use shard_router::routes::cacheable;

use super::{MailSink, ShardCore, Time};

pub(crate) use api::AcceptedPushes;
pub use api::ApiError;
pub(crate) use deliver::PacedJob;
pub(crate) use requests::PendingRequests;

/// A push as it travels between shards: the frame encoded once, plus what
/// delivery needs to know about it.
#[derive(Debug)]
pub struct PushJob {
    /// Gateway-wide push id.
    pub id: u64,
    /// The whole `Push` frame, length prefix included (or several whole
    /// frames back to back, for a run of batched pushes).
    pub frame: Bytes,
    /// How many frames `frame` holds.
    pub frames: u32,
    /// Only sessions that declared this app get it; empty = every session.
    pub app: Box<str>,
    /// Recipients per second across the gateway; 0 = as fast as possible.
    pub rate: u32,
    /// When the API accepted it, µs since the Unix epoch.
    pub accepted_us: u64,
}

/// Who on a shard a delivery is for.
#[derive(Debug)]
pub enum Target {
    /// Every session.
    All,
    /// Local subscribers of a topic.
    Topic(Box<str>),
    /// These sessions of this user (key, generation).
    User(Box<str>, Vec<(u32, u32)>),
}

/// What a request about a user's sessions does.
#[derive(Debug, Clone)]
pub enum UserAction {
    /// Report the sessions (presence).
    Describe,
    /// Kick the sessions with this code and reason.
    Kick(u32, Box<str>),
}

/// Where the answer to a cross-shard request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef {
    /// Shard waiting for the answer.
    pub shard: u16,
    /// Its request id.
    pub id: u32,
}

/// A push through a user's owner that asks for the user's route back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteAsk {
    /// Shard that accepted the push.
    pub shard: u16,
    /// Its question number (see `shard_router::routes`).
    pub seq: u32,
}

/// One session as presence reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// Holding shard.
    pub shard: u16,
    /// Session id (as in its Welcome).
    pub session: String,
    /// Device label from its Hello.
    pub device: String,
    /// Apps from its Hello.
    pub apps: Vec<String>,
    /// Connected since, seconds since the Unix epoch.
    pub since: u64,
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum Message {
    /// To a user's owner: a session of the user is up.
    SessionUp(Box<str>, SessionRef),
    /// To a user's owner: a session of the user is gone.
    SessionDown(Box<str>, SessionRef),
    /// To a topic's owner: a shard got its first subscriber.
    TopicJoin(Box<str>, u16),
    /// To a topic's owner: a shard lost its last subscriber.
    TopicLeave(Box<str>, u16),
    /// To a user's owner: route this push to the user's sessions, and
    /// answer with the route if asked and cacheable.
    PushToUser(Box<str>, Arc<PushJob>, Option<RouteAsk>),
    /// To a shard that asked: the user's (hash's) sessions, answering
    /// question `seq`.
    Route(u64, u32, Box<[SessionRef]>),
    /// To a shard that cached a route: the user's sessions changed.
    ForgetRoute(u64),
    /// To a topic's owner: route this push to the shards with subscribers.
    PushToTopic(Box<str>, Arc<PushJob>),
    /// To a holding shard: deliver this push to local recipients.
    Deliver(Target, Arc<PushJob>),
    /// To a user's owner: act on the user's sessions, answer `RequestRef`.
    UserRequest(Box<str>, UserAction, RequestRef),
    /// To a holding shard: act on these sessions of the user.
    SessionsRequest(Box<str>, Vec<(u32, u32)>, UserAction, RequestRef),
    /// To the requester: this many holding shards will answer.
    RequestPlan(RequestRef, u16),
    /// To the requester: the sessions one holding shard acted on.
    RequestReply(RequestRef, Vec<SessionInfo>),
    /// To every shard: kick all sessions (drain kind) at this rate per shard.
    Drain(u32, Arc<[String]>, u32),
}

/// Mail to other shards: what was written since the driver last flushed,
/// and the messages held back per destination while its inbox is full.
/// Only destinations with messages waiting have a queue (a map, not one
/// queue per shard: a shard's memory stays independent of the shard
/// count).
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    fresh: Vec<(usize, Message)>,
    queues: BTreeMap<usize, VecDeque<Message>>,
    held: usize,
}

impl Outboxes {
    /// Messages held back in all outboxes.
    pub fn backlog(&self) -> usize {
        self.held
    }

    /// Whether messages to `to` are waiting (later ones must queue behind).
    fn holds(&self, to: usize) -> bool {
        self.queues.contains_key(&to)
    }

    /// Holds `msg` back, behind anything already waiting for `to`.
    fn hold(&mut self, to: usize, msg: Message) {
        self.queues.entry(to).or_default().push_back(msg);
        self.held += 1;
    }
}

/// Most messages a shard holds back for full mailboxes before the push API
/// answers 503 (backpressure to the backend instead of unbounded memory).
pub const OUTBOX_LIMIT: usize = 16_384;

impl ShardCore {
    fn shards(&self) -> usize {
        self.settings.shards.len()
    }

    /// Sends `msg` to shard `to` (handled at once when `to` is this shard;
    /// else written at the driver's next [`ShardCore::flush_mail`]).
    pub(super) fn send_to(&mut self, now: Millis, to: usize, msg: Message) {
        if to == self.index {
            self.handle_message(now, msg);
            return;
        }
        if to >= self.shards() {
            return;
        }
        if self.outboxes.holds(to) {
            self.outboxes.hold(to, msg);
            return;
        }
        self.outboxes.fresh.push((to, msg));
    }

    /// Writes the mail for other shards to `sink`, in order per
    /// destination; what a full inbox refuses is held back and retried on
    /// the next call. Returns whether some is still held back.
    pub fn flush_mail(&mut self, sink: &mut impl MailSink) -> bool {
        let outboxes = &mut self.outboxes;
        for (to, msg) in outboxes.fresh.drain(..) {
            if outboxes.queues.contains_key(&to) {
                outboxes.queues.entry(to).or_default().push_back(msg);
                outboxes.held += 1;
                continue;
            }
            if let Err(msg) = sink.send(to, msg) {
                self.stats.mailbox_full += 1;
                outboxes.queues.entry(to).or_default().push_back(msg);
                outboxes.held += 1;
            }
        }
        outboxes.queues.retain(|&to, queue| {
            while let Some(msg) = queue.pop_front() {
                if let Err(msg) = sink.send(to, msg) {
                    queue.push_front(msg);
                    return true;
                }
                outboxes.held -= 1;
            }
            false
        });
        !outboxes.queues.is_empty()
    }

    /// Whether mail is waiting for [`ShardCore::flush_mail`].
    pub fn has_mail(&self) -> bool {
        !self.outboxes.fresh.is_empty() || self.outboxes.held > 0
    }

    /// A message from another shard.
    pub fn on_mail(&mut self, t: Time, msg: Message) {
        let now = self.at(t);
        self.handle_message(now, msg);
    }

    /// Acts on one message.
    fn handle_message(&mut self, now: Millis, msg: Message) {
        match msg {
            Message::SessionUp(user, r) => {
                self.directory.add(&user, r);
                self.routes_changed(now, &user);
            }
            Message::SessionDown(user, r) => {
                self.directory.remove(&user, r);
                self.routes_changed(now, &user);
            }
            Message::TopicJoin(topic, shard) => self.topic_owner.join(&topic, shard),
            Message::TopicLeave(topic, shard) => self.topic_owner.leave(&topic, shard),
            Message::PushToUser(user, job, ask) => {
                for (shard, sessions) in self.holders_of(&user) {
                    self.send_to(
                        now,
                        shard,
                        Message::Deliver(Target::User(user.clone(), sessions), job.clone()),
                    );
                }
                if let Some(ask) = ask {
                    self.answer_route(now, &user, ask);
                }
            }
            Message::Route(user, seq, sessions) => {
                self.routes.learn(user, seq, sessions);
            }
            Message::ForgetRoute(user) => self.routes.forget(user),
            Message::PushToTopic(topic, job) => {
                let shards: Vec<u16> = self.topic_owner.shards(&topic).to_vec();
                for shard in shards {
                    self.send_to(
                        now,
                        usize::from(shard),
                        Message::Deliver(Target::Topic(topic.clone()), job.clone()),
                    );
                }
            }
            Message::Deliver(target, job) => self.deliver(now, target, &job),
            Message::UserRequest(user, action, reply_to) => {
                let holders = self.holders_of(&user);
                self.send_to(
                    now,
                    usize::from(reply_to.shard),
                    Message::RequestPlan(reply_to, holders.len() as u16),
                );
                for (shard, sessions) in holders {
                    self.send_to(
                        now,
                        shard,
                        Message::SessionsRequest(user.clone(), sessions, action.clone(), reply_to),
                    );
                }
            }
            Message::SessionsRequest(user, sessions, action, reply_to) => {
                let infos = self.act_on_sessions(now, &user, &sessions, &action);
                self.send_to(
                    now,
                    usize::from(reply_to.shard),
                    Message::RequestReply(reply_to, infos),
                );
            }
            Message::RequestPlan(req, expect) => self.request_plan(now, req.id, expect),
            Message::RequestReply(req, infos) => self.request_reply(now, req.id, infos),
            Message::Drain(rate, reconnect, retry_after_ms) => {
                self.start_admin_drain(now, rate, &reconnect, retry_after_ms)
            }
        }
    }

    /// The user's sessions from this (owner) shard's directory, grouped by
    /// holding shard.
    fn holders_of(&self, user: &str) -> Vec<(usize, Vec<(u32, u32)>)> {
        group_by_shard(self.directory.sessions(user))
    }

    /// Routes a push for `user`: straight to the holding shards when this
    /// shard has the route cached, else through the user's owner (asking
    /// for the route when the owner is another shard).
    fn route_to_user(&mut self, now: Millis, user: &str, job: &Arc<PushJob>) {
        let hash = stable_hash(user);
        let owner = owner_of_hash(hash, self.shards());
        if owner == self.index {
            self.send_to(
                now,
                owner,
                Message::PushToUser(user.into(), job.clone(), None),
            );
            return;
        }
        if let Some(sessions) = self.routes.known(hash) {
            let by_shard = group_by_shard(sessions);
            self.stats.route_cache_hits += 1;
            for (shard, sessions) in by_shard {
                self.send_to(
                    now,
                    shard,
                    Message::Deliver(Target::User(user.into(), sessions), job.clone()),
                );
            }
            return;
        }
        let ask = self.routes.ask(hash).map(|seq| RouteAsk {
            shard: self.index as u16,
            seq,
        });
        self.send_to(
            now,
            owner,
            Message::PushToUser(user.into(), job.clone(), ask),
        );
    }

    /// As a user's owner, after routing a push: gives the asking shard the
    /// user's route if it may cache it.
    fn answer_route(&mut self, now: Millis, user: &str, ask: RouteAsk) {
        let sessions = self.directory.sessions(user);
        if !cacheable(sessions, ask.shard, self.index as u16) {
            return;
        }
        let hash = stable_hash(user);
        if !self.route_watchers.watch(hash, ask.shard) {
            return;
        }
        let sessions = sessions.into();
        self.send_to(
            now,
            usize::from(ask.shard),
            Message::Route(hash, ask.seq, sessions),
        );
    }

    /// As a user's owner: the user's sessions changed, so shards that
    /// cached the route must forget it.
    fn routes_changed(&mut self, now: Millis, user: &str) {
        let hash = stable_hash(user);
        for shard in self.route_watchers.take(hash) {
            self.send_to(now, usize::from(shard), Message::ForgetRoute(hash));
        }
    }

    /// Routes a push for `topic` to its owner.
    fn route_to_topic(&mut self, now: Millis, topic: &str, job: &Arc<PushJob>) {
        let owner = owner_of(topic, self.shards());
        self.send_to(now, owner, Message::PushToTopic(topic.into(), job.clone()));
    }

    /// Sends a broadcast to every shard.
    fn route_to_all(&mut self, now: Millis, job: &Arc<PushJob>) {
        for shard in 0..self.shards() {
            self.send_to(now, shard, Message::Deliver(Target::All, job.clone()));
        }
    }
}

/// Sessions grouped by holding shard: (shard, [(key, generation)]).
fn group_by_shard(sessions: &[SessionRef]) -> Vec<(usize, Vec<(u32, u32)>)> {
    let mut by_shard: Vec<(usize, Vec<(u32, u32)>)> = Vec::new();
    for r in sessions {
        let shard = usize::from(r.shard);
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, list)) => list.push((r.key, r.generation)),
            None => by_shard.push((shard, vec![(r.key, r.generation)])),
        }
    }
    by_shard
}
