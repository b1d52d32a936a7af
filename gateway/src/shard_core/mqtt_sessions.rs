//! MQTT persistent sessions (CONNECT with clean session 0): the resume of
//! `shard_core::resume`, keyed by client id instead of a resume token.
//!
//! A persistent session's connection that goes (DISCONNECT included: the
//! session outlives the connection, §3.1.2.4) is parked like a v1
//! session, its exact topics and wildcard filters with it, for `[store]
//! resume_window_ms`, and the user's owner shard learns where
//! ([`Message::MqttParked`]): client ids are scoped per user, so no user
//! can reach another's sessions. A CONNECT with clean session 0 and the
//! same client id, authenticated as the same user within the window, asks
//! the owner ([`Message::MqttSessionAsk`]), which passes the ask to the
//! parking shard as a v1 resume's hand-over ([`Message::ResumeAsk`]): the
//! new session gets the subscriptions back and CONNACK says "session
//! present". A CONNECT with clean session 1 discards what was parked for
//! its client id (§3.1.2.4), reported `offline` then.
//!
//! What the session missed: its durable pushes wait in the user's inbox
//! and go out (QoS 1) on any reconnect; topic pushes and broadcasts sent
//! while it was away are kept by the parked session (`resume::missed`)
//! and replayed first.
//!
//! Takeover (§3.1.4-2): an MQTT session admitted with a client id asks the
//! user's owner ([`Message::MqttTakeover`]) to close the user's other
//! sessions with that client id, wherever they are ([`Message::MqttEvict`]
//! to each holding shard). Holders know their sessions' client ids by a
//! 32-bit hash (four bytes a slot, not the id). A persistent session
//! taken over while its old connection was still up starts without the old
//! subscriptions: they are handed over only from a parked session.

use std::collections::{HashMap, VecDeque};

use protocol::time::Millis;
use shard_router::directory::SessionRef;
use shard_router::messages::{Message, MqttParked};

use super::ShardCore;
use super::resume::ConnName;

/// A persistent session's name at its user's owner: (user, client id).
type SessionKey = (Box<str>, Box<str>);

/// One shard's persistent-session bookkeeping: the client ids of its own
/// persistent connections, and, as the owner of some users, where their
/// parked sessions are.
#[derive(Debug, Default)]
pub(crate) struct MqttSessions {
    /// Client ids of this shard's connections that asked for a persistent
    /// session, by slot key (with the generation).
    client_ids: HashMap<u32, (u32, Box<str>)>,
    /// Hashes of the client ids of this shard's MQTT sessions, indexed by
    /// slot key (0: none; the entry of a freed slot is cleared), for
    /// takeovers: four bytes a slot, allocated only up to the highest slot
    /// an MQTT session with a client id used.
    id_hashes: Vec<u32>,
    /// Client ids of connections being admitted with clean session 1:
    /// what was parked for them is discarded at admission.
    discards: HashMap<u32, (u32, Box<str>)>,
    /// As the owner: where each parked session of its users is.
    parked_at: HashMap<SessionKey, SessionRef>,
    /// When each entry of `parked_at` stops mattering, oldest first.
    deadlines: VecDeque<(Millis, SessionKey, SessionRef)>,
}

impl MqttSessions {
    /// Connection (key, generation) sent a CONNECT with `client_id`,
    /// asking for its `persistent` session (clean session 0) or not.
    pub(crate) fn connecting(
        &mut self,
        key: u32,
        generation: u32,
        client_id: &str,
        persistent: bool,
    ) {
        let slot = key as usize;
        if self.id_hashes.len() <= slot {
            self.id_hashes.resize(slot + 1, 0);
        }
        self.id_hashes[slot] = id_hash(client_id);
        let ids = if persistent {
            &mut self.client_ids
        } else {
            &mut self.discards
        };
        ids.insert(key, (generation, client_id.into()));
    }

    /// The client id whose parked session connection (key, generation)
    /// discards, taken.
    fn take_discard(&mut self, key: u32, generation: u32) -> Option<Box<str>> {
        match self.discards.remove(&key) {
            Some((g, id)) if g == generation => Some(id),
            _ => None,
        }
    }

    /// The client id of connection (key, generation), if it asked for a
    /// persistent session.
    pub(crate) fn client_id(&self, key: u32, generation: u32) -> Option<&str> {
        match self.client_ids.get(&key) {
            Some((g, id)) if *g == generation => Some(id),
            _ => None,
        }
    }

    /// Connection `key`'s slot is freed.
    pub(crate) fn forget(&mut self, key: u32) {
        if !self.client_ids.is_empty() {
            self.client_ids.remove(&key);
        }
        if !self.discards.is_empty() {
            self.discards.remove(&key);
        }
        if let Some(h) = self.id_hashes.get_mut(key as usize) {
            *h = 0;
        }
    }

    /// The hash of the client id of the connection in slot `key`, if it
    /// sent one (the slot's entry is cleared when the slot is freed).
    pub(crate) fn id_hash_of(&self, key: u32) -> Option<u32> {
        self.id_hashes
            .get(key as usize)
            .copied()
            .filter(|&h| h != 0)
    }

    /// As the owner: the session (user, client id) is parked at `at`
    /// until `until` (a later park of the same key replaces it).
    fn note_parked(&mut self, key: SessionKey, at: SessionRef, until: Millis) {
        self.parked_at.insert(key.clone(), at);
        self.deadlines.push_back((until, key, at));
    }

    /// As the owner: where (user, client id) is parked, forgotten here.
    fn take(&mut self, key: &SessionKey) -> Option<SessionRef> {
        self.parked_at.remove(key)
    }

    /// Forgets the entries whose window ended by `now`.
    pub(crate) fn expire(&mut self, now: Millis) {
        while let Some((at, ..)) = self.deadlines.front()
            && *at <= now
        {
            if let Some((_, key, r)) = self.deadlines.pop_front()
                && self.parked_at.get(&key) == Some(&r)
            {
                self.parked_at.remove(&key);
            }
        }
    }

    /// Entries kept as an owner (for tests of the reclaim).
    #[cfg(test)]
    pub(crate) fn owner_entries(&self) -> usize {
        self.parked_at.len()
    }
}

/// A client id's hash, as holders keep it for takeovers: 32 bits, never 0
/// (which stands for "none"). Two client ids of one user colliding (about
/// one chance in 4 billion a pair) would close one for the other.
fn id_hash(client_id: &str) -> u32 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: every shard of the process hashes alike.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client_id.hash(&mut h);
    let h = h.finish();
    ((h >> 32) as u32 ^ h as u32).max(1)
}

impl ShardCore {
    /// MQTT session `key` of `user` was admitted: its user's other
    /// sessions with its client id are closed, on every shard.
    pub(super) fn mqtt_take_over(&mut self, key: u32, user: &str) {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        let Some(hash) = self.mqtt_sessions.id_hash_of(key) else {
            return;
        };
        let new = SessionRef {
            shard: self.index as u16,
            key,
            generation,
        };
        self.tell_owner(user, Message::MqttTakeover(user.into(), hash, new));
    }

    /// As a holding shard: closes `user`'s sessions in `sessions` whose
    /// client id has `hash`, except `new`.
    pub(super) fn on_mqtt_evict(
        &mut self,
        now: Millis,
        user: &str,
        hash: u32,
        sessions: &[(u32, u32)],
        new: SessionRef,
    ) {
        for &(key, generation) in sessions {
            let is_new =
                new.shard as usize == self.index && (key, generation) == (new.key, new.generation);
            if is_new || self.mqtt_sessions.id_hash_of(key) != Some(hash) {
                continue;
            }
            let Some(conn) = self.conns.get_mut(key as usize) else {
                continue;
            };
            if conn.generation != generation
                || conn.user.as_deref() != Some(user)
                || conn.has(super::conn::flags::CLOSING)
            {
                continue;
            }
            let Some(m) = conn.session.as_mqtt() else {
                continue;
            };
            self.stats.mqtt_takeovers += 1;
            m.close(&mut self.out.mqtt);
            self.handle_output(now, key);
        }
    }

    /// Connection `key` (an MQTT CONNECT with `client_id`) is being
    /// admitted as `user`: with clean session 0, whether its session is
    /// being looked up at the user's owner (the Welcome, here the CONNACK,
    /// then waits for the hand-over); with clean session 1, what was
    /// parked for the client id is discarded.
    pub(super) fn mqtt_session_lookup(
        &mut self,
        now: Millis,
        key: u32,
        user: &str,
        (device, apps): (&str, &[String]),
    ) -> bool {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return false;
        };
        let resumable =
            self.settings.resume_key.is_some() && self.settings.config.store.resume_window_ms > 0;
        let new = SessionRef {
            shard: self.index as u16,
            key,
            generation,
        };
        if let Some(client_id) = self.mqtt_sessions.take_discard(key, generation) {
            if resumable {
                // The parking shard hands it to this connection, which is
                // not waiting for it: it ends here, reported `offline`.
                self.tell_owner(user, Message::MqttSessionAsk(user.into(), client_id, new));
            }
            return false;
        }
        let Some(client_id) = self.mqtt_sessions.client_id(key, generation) else {
            return false;
        };
        if !resumable {
            return false;
        }
        let msg = Message::MqttSessionAsk(user.into(), client_id.into(), new);
        self.parked
            .await_hand_over(key, generation, (user, device, apps), now);
        self.tell_owner(user, msg);
        true
    }

    /// A persistent session of `user` named `client_id` was parked from
    /// connection `conn`: tell the user's owner where.
    pub(super) fn mqtt_parked(&mut self, user: &str, conn: ConnName) {
        let Some(client_id) = self.mqtt_sessions.client_id(conn.0, conn.1) else {
            return;
        };
        let at = SessionRef {
            shard: self.index as u16,
            key: conn.0,
            generation: conn.1,
        };
        let msg = Message::MqttParked(Box::new(MqttParked {
            user: user.into(),
            client_id: client_id.into(),
            at,
        }));
        self.tell_owner(user, msg);
    }

    /// As the owner: a session of one of its users was parked, for the
    /// resume window from now (a little longer than the parking shard
    /// keeps it: an ask that comes too late finds nothing there).
    pub(super) fn on_mqtt_parked(&mut self, now: Millis, key: SessionKey, at: SessionRef) {
        self.mqtt_sessions.expire(now);
        let window = u64::from(self.settings.config.store.resume_window_ms);
        self.mqtt_sessions
            .note_parked(key, at, now.saturating_add(window));
    }

    /// As the owner: connection `new` asks for the parked session `key`;
    /// the ask goes on to the parking shard, or is answered "none".
    pub(super) fn on_mqtt_session_ask(&mut self, now: Millis, key: SessionKey, new: SessionRef) {
        self.mqtt_sessions.expire(now);
        match self.mqtt_sessions.take(&key) {
            Some(at) => self.send_to(
                usize::from(at.shard),
                Message::ResumeAsk(key.0, (at.key, at.generation), new),
            ),
            None => self.send_to(usize::from(new.shard), Message::ResumeGive(new, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: u32) -> SessionRef {
        SessionRef {
            shard: 1,
            key,
            generation: 7,
        }
    }

    #[test]
    fn only_persistent_connections_keep_their_client_id() {
        let mut s = MqttSessions::default();
        s.connecting(3, 9, "dev-1", true);
        s.connecting(4, 9, "dev-2", false);
        assert_eq!(s.client_id(3, 9), Some("dev-1"));
        assert_eq!(s.client_id(3, 10), None, "another generation in the slot");
        assert_eq!(s.client_id(4, 9), None, "clean session: nothing to keep");
        assert_eq!(s.take_discard(4, 9).as_deref(), Some("dev-2"));
        assert_eq!(s.take_discard(4, 9), None, "taken once");
        s.forget(3);
        assert_eq!(s.client_id(3, 9), None);
    }

    #[test]
    fn the_owner_forgets_parked_sessions_when_their_window_ends() {
        // Deadlines come in order: each is the owner's now + the window.
        let mut s = MqttSessions::default();
        let alice = || (Box::from("alice"), Box::from("dev-1"));
        let bob = || (Box::from("bob"), Box::from("dev-1"));
        s.note_parked(alice(), at(1), Millis(100));
        // Parked again (a newer connection): the old deadline must not
        // drop the newer entry.
        s.note_parked(alice(), at(2), Millis(200));
        s.note_parked(bob(), at(3), Millis(250));
        s.expire(Millis(120));
        assert_eq!(s.owner_entries(), 2, "alice's newer park stays");
        assert_eq!(s.take(&alice()), Some(at(2)));
        assert_eq!(s.take(&alice()), None, "taken once");
        s.expire(Millis(260));
        assert_eq!(s.owner_entries(), 0, "bob's window ended");
        assert!(s.deadlines.is_empty());
    }
}
