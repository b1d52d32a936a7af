//! Route cache: lets the shard that accepted a push to a user deliver it
//! straight to the holding shards, skipping the hop through the user's
//! owner, without ever letting a later push overtake an earlier one.
//!
//! A push through the owner travels accepting shard → owner → holder. The
//! owner can answer such a push with the user's sessions, and the accepting
//! shard then delivers later pushes itself. Two rules keep per-user order:
//!
//! - **Only routes through two shards are cached**: the owner answers only
//!   when every session is on the asking shard or on the owner itself
//!   ([`cacheable`]). Then every cross-shard message about the user runs on
//!   one FIFO mailbox in each direction: a direct push to a session on the
//!   owner queues behind any push still going through the owner, and the
//!   owner's answer queues behind its deliveries to the asking shard.
//! - **Only the newest question's answer is taken**: each push through the
//!   owner asks with a fresh sequence number, and an answer is accepted only
//!   if it answers the last one ([`RouteCache::learn`]). So when a route is
//!   learnt, every earlier push has already been delivered.
//!
//! The owner remembers who cached a user ([`RouteWatchers`]) and tells them
//! to forget it when the user's sessions change; that message runs on the
//! same FIFO mailbox after the answer it invalidates. Until it arrives, a
//! cached route can miss a session that just connected, as a push that
//! reached the owner just before the session's `SessionUp` would.

use std::collections::HashMap;

use crate::directory::SessionRef;

/// What an accepting shard knows about one user's route.
#[derive(Debug)]
enum Route {
    /// Pushes go through the owner; the newest asked with this number.
    Asked(u32),
    /// The user's sessions, as the owner answered the newest question.
    Known(Box<[SessionRef]>),
}

/// An accepting shard's cache of users' sessions, keyed by the user's
/// stable hash (as the directory is; holders check the real name).
#[derive(Debug)]
pub struct RouteCache {
    routes: HashMap<u64, Route>,
    capacity: usize,
    next_seq: u32,
}

impl RouteCache {
    /// A cache of at most `capacity` users (0 disables it). When full it
    /// starts over empty: cheap, and harmless, since a forgotten route only
    /// means the next push goes through the owner again.
    pub fn new(capacity: usize) -> Self {
        Self {
            routes: HashMap::new(),
            capacity,
            next_seq: 0,
        }
    }

    /// Users with an entry (known or asked).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The user's sessions, if a push may go straight to them.
    pub fn known(&self, user: u64) -> Option<&[SessionRef]> {
        match self.routes.get(&user) {
            Some(Route::Known(sessions)) => Some(sessions),
            _ => None,
        }
    }

    /// A push for `user` is about to go through its owner: the number the
    /// owner's answer must carry to be learnt, or `None` when the cache is
    /// disabled (then ask nothing).
    pub fn ask(&mut self, user: u64) -> Option<u32> {
        if self.capacity == 0 {
            return None;
        }
        if self.routes.len() >= self.capacity && !self.routes.contains_key(&user) {
            self.routes.clear();
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.routes.insert(user, Route::Asked(self.next_seq));
        Some(self.next_seq)
    }

    /// The owner answered question `seq` with the user's sessions. Learnt
    /// only if no push for the user went through the owner after that
    /// question; returns whether it was.
    pub fn learn(&mut self, user: u64, seq: u32, sessions: Box<[SessionRef]>) -> bool {
        let Some(route) = self.routes.get_mut(&user) else {
            return false;
        };
        if !matches!(route, Route::Asked(asked) if *asked == seq) {
            return false;
        }
        *route = Route::Known(sessions);
        true
    }

    /// The owner says the user's sessions changed.
    pub fn forget(&mut self, user: u64) {
        self.routes.remove(&user);
    }
}

/// Whether the owner may hand out a user's route to shard `asker`: only
/// when every session is on `asker` or on the owner (see the module docs).
pub fn cacheable(sessions: &[SessionRef], asker: u16, owner: u16) -> bool {
    sessions
        .iter()
        .all(|r| r.shard == asker || r.shard == owner)
}

/// An owner shard's record of which shards cache each of its users' routes,
/// so they can be told to forget them when the sessions change.
#[derive(Debug, Default)]
pub struct RouteWatchers {
    watchers: HashMap<u64, u64>,
}

impl RouteWatchers {
    /// Most shards that can watch (one bit each).
    pub const MAX_SHARDS: u16 = 64;

    /// Records that `shard` caches `user`'s route; false (and nothing
    /// recorded) for a shard beyond [`Self::MAX_SHARDS`], which must then
    /// not be given the route.
    pub fn watch(&mut self, user: u64, shard: u16) -> bool {
        if shard >= Self::MAX_SHARDS {
            return false;
        }
        *self.watchers.entry(user).or_default() |= 1 << shard;
        true
    }

    /// The user's sessions changed: the shards to tell, each once; the
    /// record is gone afterwards.
    pub fn take(&mut self, user: u64) -> impl Iterator<Item = u16> + use<> {
        let mask = self.watchers.remove(&user).unwrap_or(0);
        (0..Self::MAX_SHARDS).filter(move |s| mask & (1 << s) != 0)
    }

    /// Users with at least one watcher.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// Whether nobody watches anything.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(shard: u16, key: u32) -> SessionRef {
        SessionRef {
            shard,
            key,
            generation: 1,
        }
    }

    #[test]
    fn an_answer_to_the_newest_question_is_learnt() {
        let mut c = RouteCache::new(16);
        assert_eq!(c.known(7), None);
        let seq = c.ask(7).unwrap();
        assert!(c.learn(7, seq, vec![s(0, 3)].into()));
        assert_eq!(c.known(7), Some(&[s(0, 3)][..]));
    }

    #[test]
    fn an_answer_to_an_older_question_is_ignored() {
        // Two pushes went through the owner; the first one's answer must
        // not let a third push overtake the second.
        let mut c = RouteCache::new(16);
        let first = c.ask(7).unwrap();
        let second = c.ask(7).unwrap();
        assert!(!c.learn(7, first, vec![s(0, 3)].into()));
        assert_eq!(c.known(7), None);
        assert!(c.learn(7, second, vec![s(0, 3)].into()));
        assert!(c.known(7).is_some());
    }

    #[test]
    fn an_answer_nobody_asked_for_is_ignored() {
        let mut c = RouteCache::new(16);
        assert!(!c.learn(9, 1, Box::new([])));
        assert!(c.is_empty());
    }

    #[test]
    fn forgetting_sends_pushes_through_the_owner_again() {
        let mut c = RouteCache::new(16);
        let seq = c.ask(7).unwrap();
        c.learn(7, seq, Box::new([]));
        c.forget(7);
        assert_eq!(c.known(7), None);
        let late = c.ask(7).unwrap();
        assert_ne!(late, seq);
    }

    #[test]
    fn a_full_cache_starts_over_and_a_disabled_one_asks_nothing() {
        let mut c = RouteCache::new(2);
        for u in 0..2 {
            let seq = c.ask(u).unwrap();
            c.learn(u, seq, Box::new([]));
        }
        assert_eq!(c.len(), 2);
        let seq = c.ask(5).unwrap();
        assert_eq!(c.len(), 1, "started over");
        assert!(c.learn(5, seq, Box::new([])));
        assert_eq!(RouteCache::new(0).ask(1), None);
    }

    #[test]
    fn only_routes_through_the_asker_and_the_owner_are_cacheable() {
        assert!(cacheable(&[], 0, 1), "no sessions: pushes are dropped here");
        assert!(cacheable(&[s(0, 1), s(1, 2)], 0, 1));
        assert!(!cacheable(&[s(0, 1), s(2, 2)], 0, 1));
    }

    #[test]
    fn watchers_are_told_once() {
        let mut w = RouteWatchers::default();
        assert!(w.watch(7, 0));
        assert!(w.watch(7, 3));
        assert!(w.watch(7, 3));
        assert!(!w.watch(7, 64));
        assert_eq!(w.take(7).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(w.take(7).count(), 0);
        assert!(w.is_empty());
    }
}
