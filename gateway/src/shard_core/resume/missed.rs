//! What a parked session misses, kept for its resume: the topic pushes
//! and broadcasts sent while its connection was gone (issue 17).
//!
//! A parked session stays subscribed: its topics (and an MQTT session's
//! wildcard filters) are held in the shard's topic indexes under a
//! stand-in key at or above [`PARKED_KEY_BASE`], which no connection slot
//! ever has, so the shard keeps receiving those topics and delivery finds
//! the stand-in among the subscribers. What reaches it is kept in the
//! parked session, oldest first, within [`MISSED_MAX_PUSHES`] and
//! [`MISSED_MAX_BYTES`] per session and [`MISSED_SHARD_BYTES`] per shard
//! (the frames are the deliveries' own shared bytes). Past a bound the
//! session is marked incomplete and keeps no more. A resume replays what
//! was kept right after the Welcome, whose `recovered` says whether that
//! was everything; the stand-in's subscriptions go with the parked
//! session, however it ends.

use protocol::time::Millis;
use shard_router::messages::{Missed, PushJob, Target};

use super::{ConnName, Parked, ParkedSessions};
use crate::shard_core::ShardCore;
use crate::shard_core::mqtt::is_wildcard;
use crate::shard_core::mqtt_publish::Direct;
use crate::shard_core::transport::LocalCopies;

/// Stand-in keys of parked sessions in the topic indexes start here.
pub(crate) const PARKED_KEY_BASE: u32 = 1 << 31;
/// Most pushes one parked session keeps.
pub const MISSED_MAX_PUSHES: usize = 256;
/// Most bytes of pushes one parked session keeps.
pub const MISSED_MAX_BYTES: usize = 64 * 1024;
/// Most bytes of pushes all parked sessions of a shard keep together.
pub const MISSED_SHARD_BYTES: usize = 32 * 1024 * 1024;

/// The bounds: (pushes, bytes) per parked session.
#[cfg(test)]
pub(crate) fn missed_bounds() -> (usize, usize) {
    (MISSED_MAX_PUSHES, MISSED_MAX_BYTES)
}

impl ParkedSessions {
    /// Keeps `missed` for the parked session of stand-in `pid`, within
    /// the bounds; past one, the session is incomplete from then on.
    fn keep_missed(&mut self, pid: u32, missed: Missed) {
        let Some(conn) = self.by_pid.get(&pid) else {
            return;
        };
        let Some((parked, _)) = self.by_conn.get_mut(conn) else {
            return;
        };
        if !parked.complete {
            return;
        }
        let len = missed.frame.len();
        let fits = parked.missed.len() < MISSED_MAX_PUSHES
            && parked.missed_bytes() + len <= MISSED_MAX_BYTES
            && self.missed_bytes + len <= MISSED_SHARD_BYTES;
        if fits {
            parked.missed.push(missed);
            self.missed_bytes += len;
        } else {
            parked.complete = false;
        }
    }

    /// Whether the parked session of stand-in `pid` takes pushes of app
    /// `app` (empty: every app).
    fn takes_app(&self, pid: u32, app: &str) -> bool {
        self.by_pid
            .get(&pid)
            .and_then(|conn| self.by_conn.get(conn))
            .is_some_and(|(p, _)| app.is_empty() || p.apps.iter().any(|a| a == app))
    }
}

impl ShardCore {
    /// Subscribes the stand-in `pid` of the session parked from `conn` to
    /// that session's topics and filters (before its connection's own
    /// subscriptions are left, so the shard stays joined).
    pub(in crate::shard_core) fn hold_topics_for_parked(&mut self, pid: u32, conn: ConnName) {
        let Some((parked, _)) = self.parked.by_conn.get(&conn) else {
            return;
        };
        let topics = parked.topics.clone();
        let (wild, exact): (Vec<Box<str>>, Vec<Box<str>>) =
            topics.into_iter().partition(|t| is_wildcard(t));
        for topic in &exact {
            self.join_topic(topic, pid);
        }
        self.join_filters(pid, wild.iter().map(|f| &**f));
    }

    /// Leaves what the stand-in `pid` of `parked` subscribed to.
    fn release_topics_of_parked(&mut self, pid: u32, parked: &Parked) {
        for topic in parked.topics.iter().filter(|t| !is_wildcard(t)) {
            if let Some(id) = self.topics.id_of(topic) {
                self.leave_topic(id, pid);
            }
        }
        self.leave_all_filters(pid);
    }

    /// The session parked from `conn`, if `user` had it, taken (its
    /// stand-in's subscriptions left).
    pub(in crate::shard_core) fn take_parked(
        &mut self,
        conn: ConnName,
        user: &str,
    ) -> Option<Parked> {
        let (parked, pid) = self.parked.take(conn, user)?;
        self.release_topics_of_parked(pid, &parked);
        Some(parked)
    }

    /// The oldest parked session due by `now` (any, with `force`), ended
    /// (its stand-in's subscriptions left); its connection's name.
    pub(in crate::shard_core) fn pop_parked(
        &mut self,
        now: Millis,
        force: bool,
    ) -> Option<ConnName> {
        let (conn, parked, pid) = self.parked.pop_due(now, force)?;
        self.release_topics_of_parked(pid, &parked);
        Some(conn)
    }

    /// A delivery to `target` on this shard: the parked sessions among its
    /// recipients (`pids`, for a topic; every one, for a broadcast) keep
    /// it.
    pub(in crate::shard_core) fn keep_for_parked(
        &mut self,
        target: &Target,
        job: &PushJob,
        pids: &[u32],
    ) {
        if self.parked.len() == 0 {
            return;
        }
        let broadcast = matches!(target, Target::All);
        let all: Vec<u32>;
        let pids = if broadcast {
            all = self.parked.by_pid.keys().copied().collect();
            &all
        } else {
            pids
        };
        for &pid in pids {
            if !self.parked.takes_app(pid, &job.app) {
                continue;
            }
            let missed = Missed {
                frame: job.frame.clone(),
                frames: job.frames,
                broadcast,
            };
            self.parked.keep_missed(pid, missed);
        }
    }

    /// Sends resumed connection `key` what its parked session missed, in
    /// its transport's encoding, right after its Welcome.
    pub(in crate::shard_core) fn replay_missed(
        &mut self,
        now: Millis,
        key: u32,
        missed: Vec<Missed>,
    ) {
        self.stats.resume_replayed += missed.len() as u64;
        for m in missed {
            let direct = if m.broadcast {
                Direct::All
            } else {
                Direct::Topic
            };
            let mut copies = LocalCopies::with_direct(direct);
            self.deliver_one(now, key, &mut copies, &m.frame, m.frames);
        }
    }
}
