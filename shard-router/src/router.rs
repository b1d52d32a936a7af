//! The routing policy of one shard, as pure code: where a push, a request
//! or a session change goes, and what an owner does with the messages it
//! gets. It owns the shard's part of the user directory, the topic owner
//! index and the route cache; it never touches a session (the holding
//! shard delivers).
//!
//! Every decision is written as `(Dest, Message)` pairs into the caller's
//! buffer, in the order they must be sent: mailboxes are FIFO per sender,
//! and the route cache's ordering proof (see [`crate::routes`]) rests on
//! that order.

use std::sync::Arc;

use crate::directory::{SessionRef, UserDirectory};
use crate::messages::{
    Dest, InboxAction, Message, PushJob, Receipt, RequestRef, RouteAsk, Target, UserAction,
};
use crate::owner::{owner_of, owner_of_hash, stable_hash};
use crate::routes::{RouteCache, RouteWatchers, cacheable};
use crate::topics::TopicShards;

/// Messages to send, in order.
pub type Outbox = Vec<(Dest, Message)>;

/// The routing state and policy of one shard.
#[derive(Debug)]
pub struct Router {
    index: u16,
    shards: usize,
    /// Sessions of the users this shard owns.
    directory: UserDirectory,
    /// Users' sessions learnt from their owners (push API side).
    routes: RouteCache,
    /// Which shards cache the routes of users this shard owns.
    watchers: RouteWatchers,
    /// Which shards have subscribers of the topics this shard owns.
    topic_owner: TopicShards,
    /// Shards holding wildcard filters (every topic push visits them),
    /// ascending.
    wildcard_shards: Vec<u16>,
    /// Pushes sent straight to holders through the route cache.
    cache_hits: u64,
}

fn local(shard: usize) -> Dest {
    Dest::Local(u16::try_from(shard).unwrap_or(u16::MAX))
}

impl Router {
    /// The router of shard `index` of `shards`, caching the routes of at
    /// most `route_cache_users` users.
    pub fn new(index: usize, shards: usize, route_cache_users: usize) -> Self {
        Self {
            index: u16::try_from(index).unwrap_or(u16::MAX),
            shards,
            directory: UserDirectory::default(),
            routes: RouteCache::new(route_cache_users),
            watchers: RouteWatchers::default(),
            topic_owner: TopicShards::default(),
            wildcard_shards: Vec::new(),
            cache_hits: 0,
        }
    }

    /// Sessions in this shard's part of the directory.
    pub fn directory_sessions(&self) -> usize {
        self.directory.len()
    }

    /// Pushes sent straight to holders through the route cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits
    }

    /// The owner shard of a user or topic name.
    pub fn owner(&self, name: &str) -> Dest {
        local(owner_of(name, self.shards))
    }

    /// A push for `user`: straight to the holding shards when the route is
    /// cached, else through the user's owner (asking for the route when
    /// the owner is another shard). With a `receipt`, whoever resolves the
    /// user plans the count: the owner, or this shard itself on a cached
    /// route (a [`Message::PushPlan`] to the receipt's shard in `out`).
    pub fn to_user(
        &mut self,
        user: &str,
        job: &Arc<PushJob>,
        receipt: Option<Receipt>,
        out: &mut Outbox,
    ) {
        let hash = stable_hash(user);
        let owner = owner_of_hash(hash, self.shards);
        if owner == usize::from(self.index) {
            out.push((
                local(owner),
                Message::PushToUser(user.into(), job.clone(), None, receipt),
            ));
            return;
        }
        if let Some(sessions) = self.routes.known(hash) {
            self.cache_hits += 1;
            // A push for every app goes to every session of the route: it
            // is counted here, at once, and the holders send no counts
            // back (the unicast hot path). With an app filter only the
            // holders know which sessions take it.
            let counted_here = job.app.is_empty();
            let holders = group_by_shard(sessions);
            if counted_here {
                if let Some(r) = receipt {
                    let n = u32::try_from(sessions.len()).unwrap_or(u32::MAX);
                    plan(Some(r), 1, out);
                    out.push((Dest::Local(r.reply_to.shard), Message::PushCount(r, n)));
                }
            } else {
                plan(receipt, holders.len(), out);
            }
            let delivery_receipt = if counted_here { None } else { receipt };
            for (shard, sessions) in holders {
                out.push((
                    local(shard),
                    Message::Deliver(
                        Target::User(user.into(), sessions),
                        job.clone(),
                        delivery_receipt,
                    ),
                ));
            }
            return;
        }
        let ask = self.routes.ask(hash).map(|seq| RouteAsk {
            shard: self.index,
            seq,
        });
        out.push((
            local(owner),
            Message::PushToUser(user.into(), job.clone(), ask, receipt),
        ));
    }

    /// A push for `topic`: to its owner, which knows the shards with
    /// subscribers (and plans the count, with a `receipt`).
    pub fn to_topic(
        &self,
        topic: &str,
        job: &Arc<PushJob>,
        receipt: Option<Receipt>,
        out: &mut Outbox,
    ) {
        out.push((
            self.owner(topic),
            Message::PushToTopic(topic.into(), job.clone(), receipt),
        ));
    }

    /// A broadcast: to every shard.
    pub fn to_all(&self, job: &Arc<PushJob>, out: &mut Outbox) {
        for shard in 0..self.shards {
            out.push((
                local(shard),
                Message::Deliver(Target::All, job.clone(), None),
            ));
        }
    }

    /// This shard got its first wildcard filter: every shard (this one
    /// included) sends it every topic push from now on.
    pub fn join_wildcards(&self, out: &mut Outbox) {
        self.to_every_shard(|| Message::WildcardJoin(self.index), out);
    }

    /// The shards holding wildcard filters, as this shard knows them.
    pub fn wildcard_shards(&self) -> &[u16] {
        &self.wildcard_shards
    }

    /// This shard's last wildcard filter is gone.
    pub fn leave_wildcards(&self, out: &mut Outbox) {
        self.to_every_shard(|| Message::WildcardLeave(self.index), out);
    }

    /// A message to every shard, this one included.
    pub fn to_every_shard(&self, msg: impl Fn() -> Message, out: &mut Outbox) {
        for shard in 0..self.shards {
            out.push((local(shard), msg()));
        }
    }

    /// Handles a message an owner acts on; gives back the ones a holding
    /// or requesting shard acts on (`Deliver`, `SessionsRequest`,
    /// `RequestPlan`, `RequestReply`, `PushPlan`, `PushCount`, `Drain`) and
    /// the durable store's (`StoreForUser`, `Acked`, `PushStored`,
    /// `InboxRequest`, `InboxReply`) and the resume hand-over's
    /// (`ResumeAsk`, `ResumeGive`), which
    /// the shard's core keeps.
    pub fn handle(&mut self, msg: Message, out: &mut Outbox) -> Option<Message> {
        match msg {
            Message::SessionUp(user, r) => {
                self.directory.add(&user, r);
                self.routes_changed(&user, out);
            }
            Message::SessionDown(user, r) => {
                self.directory.remove(&user, r);
                self.routes_changed(&user, out);
            }
            Message::TopicJoin(topic, shard) => self.topic_owner.join(&topic, shard),
            Message::TopicLeave(topic, shard) => self.topic_owner.leave(&topic, shard),
            Message::WildcardJoin(shard) => {
                if let Err(at) = self.wildcard_shards.binary_search(&shard) {
                    self.wildcard_shards.insert(at, shard);
                }
            }
            Message::WildcardLeave(shard) => self.wildcard_shards.retain(|&s| s != shard),
            Message::PushToUser(user, job, ask, receipt) => {
                let holders = self.holders_of(&user);
                plan(receipt, holders.len(), out);
                for (shard, sessions) in holders {
                    out.push((
                        local(shard),
                        Message::Deliver(
                            Target::User(user.clone(), sessions),
                            job.clone(),
                            receipt,
                        ),
                    ));
                }
                if let Some(ask) = ask {
                    self.answer_route(&user, ask, out);
                }
            }
            Message::Route(user, seq, sessions) => {
                self.routes.learn(user, seq, sessions);
            }
            Message::ForgetRoute(user) => self.routes.forget(user),
            Message::PushToTopic(topic, job, receipt) => {
                let exact = self.topic_owner.shards(&topic);
                // Allocates nothing while no shard holds wildcard filters.
                let wild: Vec<u16> = (self.wildcard_shards.iter().copied())
                    .filter(|w| !exact.contains(w))
                    .collect();
                plan(receipt, exact.len() + wild.len(), out);
                for &shard in exact.iter().chain(&wild) {
                    out.push((
                        Dest::Local(shard),
                        Message::Deliver(Target::Topic(topic.clone()), job.clone(), receipt),
                    ));
                }
            }
            Message::MqttTakeover(user, id_hash, new) => {
                for (shard, sessions) in self.holders_of(&user) {
                    out.push((
                        local(shard),
                        Message::MqttEvict(user.clone(), id_hash, sessions, new),
                    ));
                }
            }
            Message::UserRequest(user, action, reply_to) => {
                let holders = self.holders_of(&user);
                out.push((
                    Dest::Local(reply_to.shard),
                    Message::RequestPlan(reply_to, holders.len() as u16),
                ));
                for (shard, sessions) in holders {
                    out.push((
                        local(shard),
                        Message::SessionsRequest(user.clone(), sessions, action.clone(), reply_to),
                    ));
                }
            }
            holder @ (Message::Deliver(..)
            | Message::SessionsRequest(..)
            | Message::RequestPlan(..)
            | Message::RequestReply(..)
            | Message::PushPlan(..)
            | Message::PushCount(..)
            | Message::Drain(..)
            | Message::StoreForUser(..)
            | Message::Acked(..)
            | Message::PushStored(..)
            | Message::InboxRequest(..)
            | Message::InboxReply(..)
            | Message::ResumeAsk(..)
            | Message::ResumeGive(..)
            | Message::MqttParked(..)
            | Message::MqttSessionAsk(..)
            | Message::MqttEvict(..)) => return Some(holder),
        }
        None
    }

    /// Whether this (owner) shard's directory holds a session of `user`.
    pub fn has_sessions(&self, user: &str) -> bool {
        !self.directory.sessions(user).is_empty()
    }

    /// A request about `user`'s sessions: to the user's owner, which plans
    /// the answers from the holding shards.
    pub fn user_request(
        &self,
        user: &str,
        action: UserAction,
        reply_to: RequestRef,
        out: &mut Outbox,
    ) {
        out.push((
            self.owner(user),
            Message::UserRequest(user.into(), action, reply_to),
        ));
    }

    /// A request about `user`'s durable inbox: to the user's owner, whose
    /// core keeps the inbox and answers.
    pub fn inbox_request(
        &self,
        user: &str,
        action: InboxAction,
        reply_to: RequestRef,
        out: &mut Outbox,
    ) {
        out.push((
            self.owner(user),
            Message::InboxRequest(user.into(), action, reply_to),
        ));
    }

    /// The user's sessions from this (owner) shard's directory, grouped by
    /// holding shard.
    fn holders_of(&self, user: &str) -> Vec<(usize, Vec<(u32, u32)>)> {
        group_by_shard(self.directory.sessions(user))
    }

    /// As a user's owner, after routing a push: gives the asking shard the
    /// user's route if it may cache it.
    fn answer_route(&mut self, user: &str, ask: RouteAsk, out: &mut Outbox) {
        let sessions = self.directory.sessions(user);
        if !cacheable(sessions, ask.shard, self.index) {
            return;
        }
        let hash = stable_hash(user);
        if !self.watchers.watch(hash, ask.shard) {
            return;
        }
        out.push((
            Dest::Local(ask.shard),
            Message::Route(hash, ask.seq, sessions.into()),
        ));
    }

    /// As a user's owner: the user's sessions changed, so shards that
    /// cached the route must forget it.
    fn routes_changed(&mut self, user: &str, out: &mut Outbox) {
        let hash = stable_hash(user);
        for shard in self.watchers.take(hash) {
            out.push((Dest::Local(shard), Message::ForgetRoute(hash)));
        }
    }
}

/// With a receipt: tells its shard that `holders` holding shards will
/// count the push.
fn plan(receipt: Option<Receipt>, holders: usize, out: &mut Outbox) {
    if let Some(r) = receipt {
        let holders = u16::try_from(holders).unwrap_or(u16::MAX);
        out.push((Dest::Local(r.reply_to.shard), Message::PushPlan(r, holders)));
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

#[cfg(test)]
mod tests;
