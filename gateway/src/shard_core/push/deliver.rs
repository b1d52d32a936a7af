//! Delivery on the holding shard: recipients chosen (all, topic, user;
//! filtered by app), the shard's own copy of the frame (one per encoding
//! its recipients need, see `transport`) written to each,
//! at once or paced at a rate; topic subscriptions; the session lifecycle
//! hooks that keep the directory and topic owners up to date.

use bytes::Bytes;
use protocol::proto::{ErrorCode, KickCode};
use protocol::time::Millis;
use shard_router::directory::SessionRef;
use shard_router::topics::{Subscribed, TopicId};

use super::{Message, PushJob, Receipt, SessionInfo, Target, UserAction};
use crate::shard_core::ShardCore;
use crate::shard_core::conn::{Conn, flags};
use crate::shard_core::names::{app_names, device_name, release_apps, release_device};
use crate::shard_core::resume::PARKED_KEY_BASE;
use crate::shard_core::transport::{Encoding, LocalCopies};

/// A paced delivery in progress on one shard.
#[derive(Debug)]
pub(crate) struct PacedJob {
    /// The push's v1 frame, as the API encoded it.
    source: Bytes,
    /// This shard's copies of it, per encoding.
    copies: LocalCopies,
    recipients: Vec<(u32, u32)>,
    next: usize,
    /// Recipients per second on this shard.
    rate: u32,
    started: Millis,
    accepted_us: u64,
}

/// How often a shard with paced deliveries wakes up to send the next batch.
pub const PACE_TICK_MS: u64 = 5;

impl ShardCore {
    /// Whether `conn` may receive a push for app bit `app` (`None` = any app).
    fn wants(conn: &Conn, app: Option<u32>) -> bool {
        conn.user.is_some()
            && !conn.has(flags::CLOSING)
            && app.is_none_or(|bit| conn.apps & (1u64 << bit) != 0)
    }

    /// Delivers `job` to this shard's recipients in `target`; with a
    /// receipt, tells its shard how many sessions the push was enqueued to
    /// (for a paced push: how many will get it, at once, without waiting
    /// for the pacing).
    pub(super) fn deliver(
        &mut self,
        now: Millis,
        target: Target,
        job: &PushJob,
        receipt: Option<Receipt>,
    ) {
        let reached = self.deliver_here(now, target, job);
        if let Some(r) = receipt {
            let reached = u32::try_from(reached).unwrap_or(u32::MAX);
            self.send_to(
                usize::from(r.reply_to.shard),
                Message::PushCount(r, reached),
            );
        }
    }

    /// Delivers `job` to this shard's recipients in `target`; returns how
    /// many sessions it was enqueued to (or, paced, will be).
    fn deliver_here(&mut self, now: Millis, target: Target, job: &PushJob) -> usize {
        let app = if job.app.is_empty() {
            None
        } else {
            match self.app_names.id(&job.app) {
                Some(bit) => Some(bit),
                // Nobody here declared that app.
                None => return 0,
            }
        };
        if matches!(target, Target::All) {
            // Every parked session keeps a broadcast for its resume.
            self.keep_for_parked(&target, job, &[]);
        }
        let (recipients, pace): (Vec<(u32, u32)>, bool) = match &target {
            Target::All => (
                self.conns
                    .iter()
                    .filter(|(_, c)| Self::wants(c, app))
                    .map(|(k, c)| (k as u32, c.generation))
                    .collect(),
                true,
            ),
            Target::Topic(topic) => {
                let mut keys: Vec<u32> = self.topics.subscribers(topic).collect();
                if !self.filters.is_empty() {
                    // MQTT sessions whose wildcard filters match, unless
                    // an exact subscription found them already.
                    let exact = keys.len();
                    self.filters.matching(topic, &mut keys);
                    if exact > 0 {
                        keys.sort_unstable();
                        keys.dedup();
                    }
                }
                // Parked sessions' stand-ins keep it for their resume.
                if keys.iter().any(|&k| k >= PARKED_KEY_BASE) {
                    let pids: Vec<u32> = keys
                        .iter()
                        .copied()
                        .filter(|&k| k >= PARKED_KEY_BASE)
                        .collect();
                    self.keep_for_parked(&target, job, &pids);
                }
                let recipients = keys
                    .into_iter()
                    .filter_map(|k| {
                        let c = self.conns.get(k as usize)?;
                        Self::wants(c, app).then_some((k, c.generation))
                    })
                    .collect();
                (recipients, true)
            }
            Target::User(user, sessions) => (
                sessions
                    .iter()
                    .copied()
                    .filter(|&(k, g)| {
                        self.conns.get(k as usize).is_some_and(|c| {
                            c.generation == g
                                && c.user.as_deref() == Some(&**user)
                                && Self::wants(c, app)
                        })
                    })
                    .collect(),
                false,
            ),
        };
        let mut copies = LocalCopies::for_target(&target);
        let shards = self.settings.shards.len() as u32;
        let rate = if pace {
            job.rate.div_ceil(shards.max(1))
        } else {
            0
        };
        if rate == 0 {
            let mut reached = 0;
            for &(key, _) in &recipients {
                if self.deliver_one(now, key, &mut copies, &job.frame, job.frames) {
                    reached += 1;
                }
            }
            self.record_fanout(job.accepted_us);
            reached
        } else {
            let reached = recipients.len();
            self.paced.push(PacedJob {
                source: job.frame.clone(),
                copies,
                recipients,
                next: 0,
                rate,
                started: now,
                accepted_us: job.accepted_us,
            });
            reached
        }
    }

    /// Queues the push (`frames` frames, whose v1 encoding is `v1`) to
    /// `key`, in the encoding of `key`'s transport; returns whether it was
    /// queued (not when the connection is closing or overflowed).
    pub(in crate::shard_core) fn deliver_one(
        &mut self,
        now: Millis,
        key: u32,
        copies: &mut LocalCopies,
        v1: &[u8],
        frames: u32,
    ) -> bool {
        let Some(encoding) = self.conns.get(key as usize).map(|c| c.transport.encoding()) else {
            return false;
        };
        self.stats.deliveries += u64::from(frames);
        let queued = if encoding == Encoding::MqttPublish {
            let publishes = copies.mqtt(v1, self.settings.server.max_frame);
            self.mqtt_deliver(now, key, publishes)
        } else {
            self.stats.frames_out += u64::from(frames);
            self.enqueue(now, key, copies.get(v1, encoding).clone())
        };
        if let Some(conn) = self.conns.get_mut(key as usize)
            && !conn.has(flags::FLUSH_PENDING)
        {
            conn.set(flags::FLUSH_PENDING);
            self.pending_flush.push(key);
        }
        queued
    }

    /// Starts the sends of everything delivered this loop iteration: all
    /// the frames a connection got in one iteration leave in one send.
    pub(in crate::shard_core) fn flush_deliveries(&mut self) {
        let mut keys = std::mem::take(&mut self.pending_flush);
        for key in keys.drain(..) {
            if let Some(conn) = self.conns.get_mut(key as usize) {
                conn.clear(flags::FLUSH_PENDING);
                self.flush(key);
            }
        }
        if keys.capacity() > 65_536 {
            keys = Vec::new();
        }
        self.pending_flush = keys;
    }

    fn record_fanout(&mut self, accepted_us: u64) {
        if self.fanout_samples.len() < 4096 {
            self.fanout_samples.push(
                self.unix_ms
                    .saturating_mul(1000)
                    .saturating_sub(accepted_us),
            );
        }
    }

    /// Sends what the paced deliveries' rates allow by `now`.
    pub(in crate::shard_core) fn run_paced(&mut self, now: Millis) {
        let mut jobs = std::mem::take(&mut self.paced);
        for job in &mut jobs {
            let allowed = u64::from(job.rate) * now.since(job.started) / 1000 + 1;
            let until = (allowed as usize).min(job.recipients.len());
            while job.next < until {
                let (key, generation) = job.recipients[job.next];
                job.next += 1;
                if self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| c.generation == generation && Self::wants(c, None))
                {
                    self.deliver_one(now, key, &mut job.copies, &job.source, 1);
                }
            }
        }
        jobs.retain(|j| {
            let done = j.next >= j.recipients.len();
            if done {
                self.record_fanout(j.accepted_us);
            }
            !done
        });
        jobs.append(&mut self.paced);
        self.paced = jobs;
    }

    /// When a shard with paced deliveries must wake up next.
    pub(in crate::shard_core) fn paced_wakeup(&self, now: Millis) -> Option<Millis> {
        (!self.paced.is_empty()).then(|| now.saturating_add(PACE_TICK_MS))
    }

    /// A session passed its handshake: remember when, and tell its user's
    /// owner.
    pub(in crate::shard_core) fn session_established(&mut self, key: u32) {
        let Some(conn) = self.conns.get_mut(key as usize) else {
            return;
        };
        conn.since_s = u32::try_from(self.unix_ms / 1000).unwrap_or(u32::MAX);
        let Some(user) = conn.user.clone() else {
            return;
        };
        self.stats.sessions += 1;
        let r = SessionRef {
            shard: self.index as u16,
            key,
            generation: conn.generation,
        };
        let name = user.clone();
        self.tell_owner(&name, Message::SessionUp(user, r));
    }

    /// A session's slot is being freed: leave its topics and the directory,
    /// and give back its app names and device label.
    pub(in crate::shard_core) fn session_finished(&mut self, key: u32, conn: &Conn) {
        release_apps(&mut self.app_names, conn.apps);
        release_device(&mut self.device_names, conn.device);
        self.leave_all_filters(key);
        if let Some(topics) = &conn.topics {
            for &id in topics.iter() {
                self.leave_topic(id, key);
            }
        }
        if let Some(user) = &conn.user {
            self.stats.sessions = self.stats.sessions.saturating_sub(1);
            let r = SessionRef {
                shard: self.index as u16,
                key,
                generation: conn.generation,
            };
            self.tell_owner(user, Message::SessionDown(user.clone(), r));
        }
    }

    /// Subscribes session `key` to `topics`.
    pub(in crate::shard_core) fn subscribe(&mut self, now: Millis, key: u32, topics: Vec<String>) {
        let max = self.settings.server.max_topics as usize;
        for topic in topics {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                return;
            };
            let held = conn.topics.as_ref().map_or(0, |t| t.len());
            if held >= max {
                conn.session.fail(
                    ErrorCode::TooManyTopics,
                    "too many topics on this session",
                    &mut self.out,
                );
                return self.handle_output(now, key);
            }
            let sub = self.join_topic(&topic, key);
            if sub.added
                && let Some(conn) = self.conns.get_mut(key as usize)
            {
                conn.topics
                    .get_or_insert_with(Default::default)
                    .push(sub.id);
                self.stats.subscriptions += 1;
            }
        }
    }

    /// Subscribes `key` (a session, or a parked session's stand-in) to
    /// `topic` in this shard's index; the topic's owner learns of the
    /// shard's first subscriber.
    pub(in crate::shard_core) fn join_topic(&mut self, topic: &str, key: u32) -> Subscribed {
        let sub = self.topics.subscribe(topic, key);
        if sub.first_on_shard {
            self.tell_owner(topic, Message::TopicJoin(topic.into(), self.index as u16));
        }
        sub
    }

    /// Unsubscribes `key` from topic `id`; the topic's owner learns of the
    /// shard's last subscriber.
    pub(in crate::shard_core) fn leave_topic(&mut self, id: TopicId, key: u32) {
        if let Some(name) = self.topics.unsubscribe(id, key) {
            let msg = Message::TopicLeave(name.clone(), self.index as u16);
            self.tell_owner(&name, msg);
        }
    }

    /// Unsubscribes session `key` from `topics`.
    pub(in crate::shard_core) fn unsubscribe(&mut self, key: u32, topics: Vec<String>) {
        for topic in topics {
            let Some(id) = self.topics.id_of(&topic) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(key as usize) else {
                return;
            };
            let Some(held) = conn.topics.as_mut() else {
                return;
            };
            let Some(pos) = held.iter().position(|&t| t == id) else {
                continue;
            };
            held.swap_remove(pos);
            if held.is_empty() {
                conn.topics = None;
            }
            self.stats.subscriptions = self.stats.subscriptions.saturating_sub(1);
            self.leave_topic(id, key);
        }
    }

    /// Describes (and, for a kick, kicks) these sessions of `user`.
    pub(super) fn act_on_sessions(
        &mut self,
        now: Millis,
        user: &str,
        sessions: &[(u32, u32)],
        action: &UserAction,
    ) -> Vec<SessionInfo> {
        let mut infos = Vec::new();
        for &(key, generation) in sessions {
            let Some(conn) = self.conns.get_mut(key as usize) else {
                continue;
            };
            if conn.generation != generation
                || conn.user.as_deref() != Some(user)
                || conn.has(flags::CLOSING)
            {
                continue;
            }
            infos.push(SessionInfo {
                shard: self.index as u16,
                session: format!("{:x}-{:x}", self.index, conn.generation),
                device: device_name(&self.device_names, conn.device).to_string(),
                apps: app_names(&self.app_names, conn.apps),
                since: u64::from(conn.since_s),
            });
            if let UserAction::Kick(code, reason) = action {
                let code = KickCode::from_u32(*code).unwrap_or(KickCode::Admin);
                conn.session.kick(code, reason, &[], 0, &mut self.out);
                self.handle_output(now, key);
            }
        }
        infos
    }
}
