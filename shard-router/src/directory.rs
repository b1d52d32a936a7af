//! The user directory: each user's owner shard keeps which sessions (on
//! which shards) that user has. It is updated by messages from the holding
//! shards on connect and disconnect, and consulted for unicast, presence
//! and kick.
//!
//! Users are keyed by a 64-bit hash of their name rather than the name
//! itself, which keeps an entry at about 24 bytes; a holding shard checks
//! the real name before it delivers, so a hash collision can never send a
//! push to the wrong user.

use std::collections::HashMap;

use crate::owner::stable_hash;

/// One session of a user, as the directory knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    /// Shard holding the session.
    pub shard: u16,
    /// Slab key of the session on that shard.
    pub key: u32,
    /// Generation of the session in that slot.
    pub generation: u32,
}

/// A user's sessions: one inline (the common case), more on the heap.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sessions {
    One(SessionRef),
    // Boxed so the common one-session entry stays 16 bytes.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<SessionRef>>),
}

impl Sessions {
    fn as_slice(&self) -> &[SessionRef] {
        match self {
            Sessions::One(r) => std::slice::from_ref(r),
            Sessions::Many(v) => v,
        }
    }
}

/// The part of the user directory one shard owns.
#[derive(Debug, Default)]
pub struct UserDirectory {
    users: HashMap<u64, Sessions>,
    sessions: usize,
}

impl UserDirectory {
    /// Records a new session of `user`.
    pub fn add(&mut self, user: &str, r: SessionRef) {
        let key = stable_hash(user);
        match self.users.get_mut(&key) {
            None => {
                self.users.insert(key, Sessions::One(r));
            }
            Some(s) => {
                let mut all = s.as_slice().to_vec();
                if all.contains(&r) {
                    return;
                }
                all.push(r);
                *s = Sessions::Many(Box::new(all));
            }
        }
        self.sessions += 1;
    }

    /// Forgets a session of `user`; false if it was not recorded.
    pub fn remove(&mut self, user: &str, r: SessionRef) -> bool {
        let key = stable_hash(user);
        let Some(s) = self.users.get_mut(&key) else {
            return false;
        };
        let found = match s {
            Sessions::One(one) if *one == r => {
                self.users.remove(&key);
                true
            }
            Sessions::One(_) => false,
            Sessions::Many(v) => match v.iter().position(|x| *x == r) {
                Some(i) => {
                    v.swap_remove(i);
                    if v.len() == 1 {
                        *s = Sessions::One(v[0]);
                    }
                    true
                }
                None => false,
            },
        };
        if found {
            self.sessions -= 1;
        }
        found
    }

    /// The sessions recorded for `user` (possibly on several shards).
    pub fn sessions(&self, user: &str) -> &[SessionRef] {
        self.users
            .get(&stable_hash(user))
            .map_or(&[], Sessions::as_slice)
    }

    /// Users with at least one session.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Sessions recorded.
    pub fn len(&self) -> usize {
        self.sessions
    }

    /// Whether no session is recorded.
    pub fn is_empty(&self) -> bool {
        self.sessions == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(shard: u16, key: u32) -> SessionRef {
        SessionRef {
            shard,
            key,
            generation: 7,
        }
    }

    #[test]
    fn one_user_many_devices_on_several_shards() {
        let mut d = UserDirectory::default();
        d.add("alice", r(0, 1));
        d.add("alice", r(1, 5));
        d.add("alice", r(1, 5));
        d.add("bob", r(1, 2));
        assert_eq!(d.sessions("alice"), &[r(0, 1), r(1, 5)]);
        assert_eq!((d.users(), d.len()), (2, 3));
        assert!(d.remove("alice", r(0, 1)));
        assert_eq!(d.sessions("alice"), &[r(1, 5)]);
        assert!(!d.remove("alice", r(0, 1)), "already gone");
        assert!(d.remove("alice", r(1, 5)));
        assert!(d.sessions("alice").is_empty());
        assert_eq!((d.users(), d.len()), (1, 1));
    }

    #[test]
    fn removing_a_stale_generation_keeps_the_live_session() {
        let mut d = UserDirectory::default();
        d.add(
            "carol",
            SessionRef {
                shard: 0,
                key: 3,
                generation: 2,
            },
        );
        assert!(!d.remove(
            "carol",
            SessionRef {
                shard: 0,
                key: 3,
                generation: 1
            }
        ));
        assert_eq!(d.sessions("carol").len(), 1);
    }
}
