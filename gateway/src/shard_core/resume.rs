//! Resume after a flash disconnect (issue 17), on the shard that held the
//! session.
//!
//! Every Welcome carries a resume token ([`crate::resume_token`]) naming
//! the session's shard, slot key and generation. When an established
//! session's connection goes without the session being ended on purpose
//! (EOF, reset, silence past the idle timeout; not a Bye, a kick, a
//! refusal or a protocol error), the shard parks what the session had:
//! its user and its topics, for `[store] resume_window_ms`. A Hello that
//! presents the token within the window, for the same user, on the same
//! shard, gets them back: the new session is subscribed to the same
//! topics, its Welcome says `resumed = true`, and the events backend hears
//! neither the old session's `offline` nor the new one's `online` (a
//! flash disconnect is not presence churn; the new session's `offline`
//! comes when it ends). Durable pushes of the user that were in flight go
//! out again when the new session comes up, as on any reconnect.
//!
//! A parked session that is not resumed in time is reported `offline`
//! then, with the reason of its close. At most as many sessions are parked
//! as the shard takes connections; beyond that the oldest goes at once.
//!
//! Not yet: a token presented on another shard (SO_REUSEPORT may land the
//! reconnect there) gets a fresh session; pushes to topics and broadcasts
//! sent while the session was away are not replayed (no history yet).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use protocol::time::Millis;

use super::{Action, BackendCall, ShardCore};
use crate::backend::events::Presence;
use crate::resume_token::{self, SessionName};

/// A connection by its (slot key, generation).
pub(crate) type ConnName = (u32, u32);

/// What a resume gives back: the old connection's name and its topics.
pub(crate) type Resumed = (ConnName, Vec<Box<str>>);

/// What a parked session had.
#[derive(Debug)]
pub(crate) struct Parked {
    user: Box<str>,
    topics: Vec<Box<str>>,
}

/// One shard's parked sessions, by (slot key, generation) of the
/// connection that had them, with their deadlines in parking order (the
/// window is the same for all, so that order is deadline order).
#[derive(Debug, Default)]
pub(crate) struct ParkedSessions {
    by_conn: HashMap<(u32, u32), Parked>,
    deadlines: VecDeque<(Millis, (u32, u32))>,
    /// Resume tokens of Hellos being authenticated, by slot key (with the
    /// generation), until the session is admitted or its connection goes.
    presented: HashMap<u32, (u32, Bytes)>,
}

impl ParkedSessions {
    /// Sessions parked now.
    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    /// Keeps the resume token of connection (key, generation)'s Hello for
    /// its admission.
    pub fn presented(&mut self, key: u32, generation: u32, token: Bytes) {
        if !token.is_empty() {
            self.presented.insert(key, (generation, token));
        }
    }

    /// The resume token connection (key, generation)'s Hello presented.
    fn take_presented(&mut self, key: u32, generation: u32) -> Option<Bytes> {
        match self.presented.remove(&key) {
            Some((g, token)) if g == generation => Some(token),
            _ => None,
        }
    }

    /// Connection `key`'s slot is freed: a token it presented is dropped.
    pub fn forget(&mut self, key: u32) {
        self.presented.remove(&key);
    }

    /// When the oldest parked session's window ends.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.front().map(|(at, _)| *at)
    }

    fn park(&mut self, conn: (u32, u32), until: Millis, parked: Parked) {
        self.by_conn.insert(conn, parked);
        self.deadlines.push_back((until, conn));
    }

    /// The parked session of `conn`, if `user` had it.
    fn take(&mut self, conn: (u32, u32), user: &str) -> Option<Parked> {
        if self.by_conn.get(&conn)?.user.as_ref() != user {
            return None;
        }
        self.by_conn.remove(&conn)
    }

    /// The oldest parked session whose deadline is at or before `now`
    /// (any, with `force`), removed.
    fn pop_due(&mut self, now: Millis, force: bool) -> Option<(u32, u32)> {
        while let Some(&(at, conn)) = self.deadlines.front() {
            if !force && at > now {
                return None;
            }
            self.deadlines.pop_front();
            // Resumed ones left only their deadline behind.
            if self.by_conn.remove(&conn).is_some() {
                return Some(conn);
            }
        }
        None
    }
}

impl ShardCore {
    fn resume_window_ms(&self) -> u64 {
        u64::from(self.settings.config.store.resume_window_ms)
    }

    /// The resume token for the Welcome of (key, generation), held by
    /// `user`; empty when sessions are not resumable.
    pub(super) fn resume_token(&self, key: u32, generation: u32, user: &str) -> Bytes {
        match &self.settings.resume_key {
            Some(k) if self.resume_window_ms() > 0 => {
                let name = SessionName {
                    shard: self.index as u16,
                    key,
                    generation,
                };
                resume_token::seal(k, name, user)
            }
            _ => Bytes::new(),
        }
    }

    /// The topics of the session that connection (key, generation)'s
    /// Hello asked to resume, if it is parked on this shard for `user`
    /// (and is then no longer parked), with the name of its old
    /// connection.
    pub(super) fn take_parked(
        &mut self,
        key: u32,
        generation: u32,
        user: &str,
    ) -> Option<Resumed> {
        let token = self.parked.take_presented(key, generation)?;
        let name = self
            .settings
            .resume_key
            .as_ref()
            .and_then(|k| resume_token::open(k, &token, user).ok());
        let found = name
            .filter(|n| usize::from(n.shard) == self.index)
            .and_then(|n| {
                let conn = (n.key, n.generation);
                self.parked.take(conn, user).map(|p| (conn, p.topics))
            });
        match found {
            Some(f) => {
                self.stats.resumes += 1;
                Some(f)
            }
            None => {
                self.stats.resumes_missed += 1;
                None
            }
        }
    }

    /// Reports the resumed session: the events backend keeps the parked
    /// presence under the new connection, with no event.
    pub(super) fn presence_resumed(&mut self, from: (u32, u32), p: Presence) {
        self.session_established(p.key);
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Resumed {
                from,
                to: p,
            })));
    }

    /// Parks connection `key`'s session if it may be resumed; whether it
    /// was. Called as its slot is freed, before its topics are left.
    pub(super) fn park_if_resumable(&mut self, now: Millis, key: u32) -> bool {
        let window = self.resume_window_ms();
        if window == 0 || self.settings.resume_key.is_none() {
            return false;
        }
        let Some(conn) = self.conns.get(key as usize) else {
            return false;
        };
        if conn.has(super::conn::flags::NO_RESUME) {
            return false;
        }
        let Some(user) = conn.user.clone() else {
            return false;
        };
        let topics = conn
            .topics
            .as_deref()
            .map(|ids| {
                ids.iter()
                    .filter_map(|&id| self.topics.name(id).map(Box::from))
                    .collect()
            })
            .unwrap_or_default();
        let generation = conn.generation;
        let cap = self.shard_cfg.settings.max_connections.max(1) as usize;
        while self.parked.len() >= cap {
            let Some(oldest) = self.parked.pop_due(now, true) else {
                break;
            };
            self.presence_gone(oldest.0, oldest.1);
        }
        self.parked.park(
            (key, generation),
            now.saturating_add(window),
            Parked { user, topics },
        );
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Parked {
                key,
                generation,
            })));
        true
    }

    /// Ends the parked sessions whose window passed: `offline` for each.
    pub(super) fn expire_parked(&mut self, now: Millis) {
        while let Some((key, generation)) = self.parked.pop_due(now, false) {
            self.presence_gone(key, generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(user: &str) -> Parked {
        Parked {
            user: user.into(),
            topics: vec!["t".into()],
        }
    }

    #[test]
    fn a_parked_session_is_taken_once_by_its_user_only() {
        let mut p = ParkedSessions::default();
        p.park((1, 7), Millis(100), parked("alice"));
        assert!(p.take((1, 7), "bob").is_none());
        assert!(p.take((1, 8), "alice").is_none(), "another generation");
        assert_eq!(p.take((1, 7), "alice").map(|s| s.topics.len()), Some(1));
        assert!(p.take((1, 7), "alice").is_none());
        // A taken one leaves only its deadline, which ends nothing.
        assert_eq!(p.pop_due(Millis(200), false), None);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn windows_end_in_parking_order() {
        let mut p = ParkedSessions::default();
        p.park((1, 1), Millis(100), parked("a"));
        p.park((2, 1), Millis(150), parked("b"));
        assert_eq!(p.next_deadline(), Some(Millis(100)));
        assert_eq!(p.pop_due(Millis(99), false), None);
        assert_eq!(p.pop_due(Millis(100), false), Some((1, 1)));
        assert_eq!(p.pop_due(Millis(120), false), None);
        assert_eq!(
            p.pop_due(Millis(0), true),
            Some((2, 1)),
            "forced: the oldest"
        );
        assert_eq!(p.next_deadline(), None);
    }
}
