//! Push delivery across shards, on the core's side: mail out and in, and
//! the holder's half of each message. A push is encoded once where the API
//! received it; the routing policy (`shard_router::router`) sends it on to
//! the owners (`hash(name) mod shards`) that resolve users and topics to
//! the shards holding recipients; each holding shard writes the same bytes
//! to its recipients.

mod answers;
mod api;
mod deliver;
mod requests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use protocol::time::Millis;
use shard_router::messages::Dest;
use shard_router::router::Outbox;

use super::{MailSink, ShardCore, Time};

pub use shard_router::messages::{
    Message, PushJob, Receipt, RequestRef, RouteAsk, SessionInfo, Target, UserAction,
};

pub(crate) use answers::PendingAnswers;
pub(crate) use api::AcceptedPushes;
pub use api::ApiError;
pub(crate) use deliver::PacedJob;
pub(crate) use requests::PendingRequests;
pub use requests::REQUEST_TIMEOUT_MS;

/// How often a shard with push answers waiting reads its inbox for their
/// plans and counts, which come without a doorbell (a busy shard reads it
/// every turn anyway).
pub const ANSWER_POLL_MS: u64 = 1;

/// Mail to other shards: what was written since the driver last flushed,
/// and the messages held back per destination while its inbox is full.
/// Only destinations with messages waiting have a queue (a map, not one
/// queue per shard: a shard's memory stays independent of the shard
/// count).
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    fresh: Vec<(usize, Message)>,
    /// Mail to this shard itself, handled when the mail to others has
    /// gone out (so another shard starts on a broadcast while this one
    /// delivers its part). FIFO, as a mailbox is.
    to_self: VecDeque<Message>,
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

    /// Sends `msg` to shard `to`, at the driver's next
    /// [`ShardCore::flush_mail`] (which also hands this shard its own).
    pub(super) fn send_to(&mut self, to: usize, msg: Message) {
        if to == self.index {
            self.outboxes.to_self.push_back(msg);
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
    /// destination, then handles this shard's mail to itself (which may
    /// write more), until none is left. What a full inbox refuses is held
    /// back and retried on the next call. Returns whether some is still
    /// held back.
    pub fn flush_mail(&mut self, t: Time, sink: &mut impl MailSink) -> bool {
        let now = self.at(t);
        loop {
            self.send_mail(sink);
            if self.outboxes.to_self.is_empty() {
                break;
            }
            while let Some(msg) = self.outboxes.to_self.pop_front() {
                self.handle_message(now, msg);
            }
        }
        !self.outboxes.queues.is_empty()
    }

    /// Writes the fresh and the held-back mail for other shards to `sink`.
    fn send_mail(&mut self, sink: &mut impl MailSink) {
        let outboxes = &mut self.outboxes;
        let mut fresh = std::mem::take(&mut outboxes.fresh);
        for (to, msg) in fresh.drain(..) {
            if outboxes.holds(to) {
                outboxes.hold(to, msg);
            } else if let Err(msg) = sink.send(to, msg) {
                self.stats.mailbox_full += 1;
                outboxes.hold(to, msg);
            }
        }
        outboxes.fresh = fresh;
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
    }

    /// Whether mail is waiting for [`ShardCore::flush_mail`].
    pub fn has_mail(&self) -> bool {
        !self.outboxes.fresh.is_empty()
            || !self.outboxes.to_self.is_empty()
            || self.outboxes.held > 0
    }

    /// A message from another shard.
    pub fn on_mail(&mut self, t: Time, msg: Message) {
        let now = self.at(t);
        self.handle_message(now, msg);
    }

    /// Sends what the router decided, in order.
    fn send_routed(&mut self, out: &mut Outbox) {
        for (dest, msg) in out.drain(..) {
            match dest {
                Dest::Local(shard) => self.send_to(usize::from(shard), msg),
                Dest::Node(node) => {
                    // This node's router knows only its own shards.
                    tracing::debug!(shard = self.index, node, "no link to other nodes: dropped");
                }
            }
        }
    }

    /// Runs `route` on the router, then sends what it decided.
    pub(super) fn routing(
        &mut self,
        route: impl FnOnce(&mut shard_router::router::Router, &mut Outbox),
    ) {
        let mut out = std::mem::take(&mut self.routed);
        route(&mut self.router, &mut out);
        self.stats.route_cache_hits = self.router.cache_hits();
        self.send_routed(&mut out);
        if out.capacity() <= 1024 {
            self.routed = out;
        }
    }

    /// Acts on one message: the router takes the owner's part, this shard
    /// the holder's.
    fn handle_message(&mut self, now: Millis, msg: Message) {
        // A user's sessions changing matters to the user's inbox too.
        let session_change = match &msg {
            Message::SessionUp(user, _) if self.durable.is_some() => Some((user.clone(), true)),
            Message::SessionDown(user, _) if self.durable.is_some() => Some((user.clone(), false)),
            _ => None,
        };
        let mut held = None;
        self.routing(|router, out| held = router.handle(msg, out));
        match session_change {
            Some((user, true)) => self.durable_session_up(now, &user),
            Some((user, false)) => self.durable_session_down(&user),
            None => {}
        }
        let Some(msg) = held else {
            return;
        };
        match msg {
            Message::Deliver(target, job, receipt) => self.deliver(now, target, &job, receipt),
            Message::SessionsRequest(user, sessions, action, reply_to) => {
                let infos = self.act_on_sessions(now, &user, &sessions, &action);
                self.send_to(
                    usize::from(reply_to.shard),
                    Message::RequestReply(reply_to, infos),
                );
            }
            Message::RequestPlan(req, expect) => self.request_plan(now, req.id, expect),
            Message::RequestReply(req, infos) => self.request_reply(now, req.id, infos),
            Message::PushPlan(receipt, holders) => self.push_planned(receipt, holders),
            Message::PushCount(receipt, sessions) => self.push_counted(receipt, sessions),
            Message::Drain(rate, reconnect, retry_after_ms) => {
                self.start_admin_drain(now, rate, &reconnect, retry_after_ms)
            }
            Message::StoreForUser(user, job, receipt) => {
                self.store_for_user(now, user, job, receipt)
            }
            Message::Acked(user, ids) => self.on_acked(now, &user, &ids),
            Message::PushStored(receipt, result) => self.push_stored(receipt, result),
            Message::InboxRequest(user, action, reply_to) => {
                let report = self.inbox_report(&user, action);
                self.send_to(
                    usize::from(reply_to.shard),
                    Message::InboxReply(reply_to, Box::new(report)),
                );
            }
            Message::InboxReply(req, report) => self.inbox_reply(now, req.id, report),
            Message::ResumeAsk(user, old, new) => self.on_resume_ask(&user, old, new),
            Message::ResumeGive(new, parked) => self.on_resume_give(now, new, parked),
            Message::MqttParked(p) => {
                let p = *p;
                self.on_mqtt_parked(now, (p.user, p.client_id), p.at);
            }
            Message::MqttSessionAsk(user, client_id, new) => {
                self.on_mqtt_session_ask(now, (user, client_id), new);
            }
            Message::MqttEvict(user, id_hash, sessions, new) => {
                self.on_mqtt_evict(now, &user, id_hash, &sessions, new);
            }
            other => {
                tracing::debug!(
                    shard = self.index,
                    ?other,
                    "the router gave back an owner's message"
                );
            }
        }
    }

    /// Routes a push for `user` (see `Router::to_user`), its count going
    /// to `receipt`.
    fn route_to_user(&mut self, user: &str, job: &Arc<PushJob>, receipt: Option<Receipt>) {
        self.routing(|router, out| router.to_user(user, job, receipt, out));
    }

    /// Routes a push for `topic` to its owner, its count going to
    /// `receipt`.
    fn route_to_topic(&mut self, topic: &str, job: &Arc<PushJob>, receipt: Option<Receipt>) {
        self.routing(|router, out| router.to_topic(topic, job, receipt, out));
    }

    /// Sends a broadcast to every shard.
    fn route_to_all(&mut self, job: &Arc<PushJob>) {
        self.routing(|router, out| router.to_all(job, out));
    }

    /// Tells `name`'s owner (user or topic) `msg`.
    pub(super) fn tell_owner(&mut self, name: &str, msg: Message) {
        self.routing(|router, out| out.push((router.owner(name), msg)));
    }
}
