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
//! A token presented on another shard (SO_REUSEPORT may land the
//! reconnect there) is handed over by mailbox: the new shard holds the
//! Welcome and asks the parking shard ([`Message::ResumeAsk`]), which
//! gives the parked session up ([`Message::ResumeGive`]); without an
//! answer in [`RESUME_ASK_MS`] the session starts fresh. A session given
//! up for a connection that is gone by then is reported `offline` by the
//! shard that got it, so every `online` still gets its `offline`.
//!
//! A parked session that is not resumed in time is reported `offline`
//! then, with the reason of its close. At most as many sessions are parked
//! as the shard takes connections; beyond that the oldest goes at once.
//!
//! What the session missed while parked (topic pushes, broadcasts) is kept
//! by the parked session and replayed after the Welcome (`missed`).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use protocol::time::Millis;
use shard_router::directory::SessionRef;
use shard_router::messages::{Message, ParkedSession};

use super::{Action, BackendCall, ShardCore};

mod missed;
use crate::backend::events::Presence;
use crate::resume_token::{self, SessionName};
pub(crate) use missed::PARKED_KEY_BASE;
#[cfg(test)]
pub(crate) use missed::missed_bounds;

/// How long a Welcome waits for another shard to hand a parked session
/// over before the session starts fresh.
pub const RESUME_ASK_MS: u64 = 1_000;

/// A connection by its (slot key, generation).
pub(crate) type ConnName = (u32, u32);

/// What a resume gives back: the old connection's name when it was on
/// this shard (its presence record is here), and what the session had.
pub(crate) type Resumed = (Option<ConnName>, Box<ParkedSession>);

type Parked = Box<ParkedSession>;

/// A handshake whose Welcome waits for another shard's hand-over.
#[derive(Debug)]
pub(crate) struct Awaiting {
    generation: u32,
    user: String,
    device: String,
    apps: Vec<String>,
    since: Millis,
}

/// Where a Hello's resume token leads.
pub(crate) enum Lookup {
    /// No token, or one that names nothing resumable.
    Fresh,
    /// A session parked here, taken.
    Here(Resumed),
    /// A session on another shard: ask it.
    Elsewhere(SessionName),
}

/// One shard's parked sessions, by (slot key, generation) of the
/// connection that had them, with their deadlines in parking order (the
/// window is the same for all, so that order is deadline order).
#[derive(Debug, Default)]
pub(crate) struct ParkedSessions {
    by_conn: HashMap<(u32, u32), (Parked, u32)>,
    /// The connection each parked session's stand-in key is for (see
    /// `resume_missed`).
    by_pid: HashMap<u32, (u32, u32)>,
    /// The next stand-in key to try.
    next_pid: u32,
    /// Bytes of missed pushes kept by all parked sessions.
    missed_bytes: usize,
    deadlines: VecDeque<(Millis, (u32, u32))>,
    /// Resume tokens of Hellos being authenticated, by slot key (with the
    /// generation), until the session is admitted or its connection goes.
    presented: HashMap<u32, (u32, Bytes)>,
    /// Handshakes waiting for another shard's hand-over, by slot key.
    awaiting: HashMap<u32, Awaiting>,
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

    /// Connection `key`'s slot is freed: a token it presented, or a
    /// hand-over it waited for, is dropped.
    pub fn forget(&mut self, key: u32) {
        self.presented.remove(&key);
        self.awaiting.remove(&key);
    }

    /// When the oldest parked session's window ends, or the oldest
    /// hand-over stops being waited for.
    pub fn next_deadline(&self) -> Option<Millis> {
        let ask = self
            .awaiting
            .values()
            .map(|a| a.since.saturating_add(RESUME_ASK_MS))
            .min();
        self.deadlines
            .front()
            .map(|(at, _)| *at)
            .into_iter()
            .chain(ask)
            .min()
    }

    /// Connection (key, generation) of `user` waits for a parked session
    /// handed over from another shard (its Welcome or CONNACK is held
    /// until then, at most [`RESUME_ASK_MS`] from `now`).
    pub fn await_hand_over(
        &mut self,
        key: u32,
        generation: u32,
        (user, device, apps): (&str, &str, &[String]),
        now: Millis,
    ) {
        let awaiting = Awaiting {
            generation,
            user: user.to_string(),
            device: device.to_string(),
            apps: apps.to_vec(),
            since: now,
        };
        self.awaiting.insert(key, awaiting);
    }

    /// Parks `parked`, had by `conn`, until `until`; its stand-in key in
    /// the topic indexes (at or above [`PARKED_KEY_BASE`], never a slot).
    fn park(&mut self, conn: (u32, u32), until: Millis, parked: Parked) -> u32 {
        let pid = loop {
            let pid = PARKED_KEY_BASE | self.next_pid;
            self.next_pid = self.next_pid.wrapping_add(1) & !PARKED_KEY_BASE;
            if !self.by_pid.contains_key(&pid) {
                break pid;
            }
        };
        self.by_conn.insert(conn, (parked, pid));
        self.by_pid.insert(pid, conn);
        self.deadlines.push_back((until, conn));
        pid
    }

    /// The parked session of `conn`, if `user` had it, with its stand-in
    /// key.
    fn take(&mut self, conn: (u32, u32), user: &str) -> Option<(Parked, u32)> {
        if &*self.by_conn.get(&conn)?.0.user != user {
            return None;
        }
        self.remove(conn)
    }

    fn remove(&mut self, conn: (u32, u32)) -> Option<(Parked, u32)> {
        let (parked, pid) = self.by_conn.remove(&conn)?;
        self.by_pid.remove(&pid);
        self.missed_bytes = self.missed_bytes.saturating_sub(parked.missed_bytes());
        Some((parked, pid))
    }

    /// The oldest parked session whose deadline is at or before `now`
    /// (any, with `force`), removed.
    fn pop_due(&mut self, now: Millis, force: bool) -> Option<((u32, u32), Parked, u32)> {
        while let Some(&(at, conn)) = self.deadlines.front() {
            if !force && at > now {
                return None;
            }
            self.deadlines.pop_front();
            // Resumed ones left only their deadline behind.
            if let Some((parked, pid)) = self.remove(conn) {
                return Some((conn, parked, pid));
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

    /// Where connection (key, generation)'s resume token leads, for
    /// `user`; a session parked here is taken.
    pub(super) fn resume_lookup(&mut self, key: u32, generation: u32, user: &str) -> Lookup {
        let Some(token) = self.parked.take_presented(key, generation) else {
            return Lookup::Fresh;
        };
        let name = self
            .settings
            .resume_key
            .as_ref()
            .and_then(|k| resume_token::open(k, &token, user).ok());
        let Some(name) = name else {
            self.stats.resumes_missed += 1;
            return Lookup::Fresh;
        };
        if usize::from(name.shard) != self.index {
            if usize::from(name.shard) < self.settings.shards.len() {
                return Lookup::Elsewhere(name);
            }
            self.stats.resumes_missed += 1;
            return Lookup::Fresh;
        }
        let conn = (name.key, name.generation);
        match self.take_parked(conn, user) {
            Some(p) => {
                self.stats.resumes += 1;
                Lookup::Here((Some(conn), p))
            }
            None => {
                self.stats.resumes_missed += 1;
                Lookup::Fresh
            }
        }
    }

    /// Holds connection `key`'s Welcome and asks the shard that parked
    /// `name` to hand it over.
    pub(super) fn ask_for_parked(
        &mut self,
        now: Millis,
        key: u32,
        name: SessionName,
        (user, device, apps): (String, String, Vec<String>),
    ) {
        let Some(generation) = self.conns.get(key as usize).map(|c| c.generation) else {
            return;
        };
        let new = SessionRef {
            shard: self.index as u16,
            key,
            generation,
        };
        let msg = Message::ResumeAsk(user.as_str().into(), (name.key, name.generation), new);
        self.parked
            .await_hand_over(key, generation, (&user, &device, &apps), now);
        self.send_to(usize::from(name.shard), msg);
    }

    /// As the parking shard: gives the session parked from `old` up to
    /// `user`'s new session `new`, if it is still parked for that user.
    pub(super) fn on_resume_ask(&mut self, user: &str, old: ConnName, new: SessionRef) {
        let parked = self.take_parked(old, user);
        if parked.is_some() {
            // Its presence goes with it: the other shard reports it.
            self.actions
                .push(Action::Backend(Box::new(BackendCall::Handed {
                    key: old.0,
                    generation: old.1,
                })));
        }
        self.send_to(usize::from(new.shard), Message::ResumeGive(new, parked));
    }

    /// As the asking shard: the hand-over's answer for connection `new`.
    pub(super) fn on_resume_give(&mut self, now: Millis, new: SessionRef, parked: Option<Parked>) {
        let waiting = match self.parked.awaiting.get(&new.key) {
            Some(a) if a.generation == new.generation => self.parked.awaiting.remove(&new.key),
            _ => None,
        }
        .filter(|_| self.still_authenticating(new.key, new.generation));
        match (waiting, parked) {
            (Some(a), Some(p)) => {
                self.stats.resumes += 1;
                self.welcome(now, new.key, (a.user, a.device, a.apps), Some((None, p)));
                self.handle_output(now, new.key);
            }
            (Some(a), None) => {
                self.stats.resumes_missed += 1;
                self.welcome(now, new.key, (a.user, a.device, a.apps), None);
                self.handle_output(now, new.key);
            }
            // Too late, or the connection went or is closing: the session
            // given up ends here, and is reported so.
            (None, Some(p)) => self.parked_gone(new, *p),
            (None, None) => {}
        }
    }

    /// Handshakes that waited too long for a hand-over start fresh.
    fn expire_asks(&mut self, now: Millis) {
        let late: Vec<u32> = self
            .parked
            .awaiting
            .iter()
            .filter(|(_, a)| now.since(a.since) >= RESUME_ASK_MS)
            .map(|(&k, _)| k)
            .collect();
        for key in late {
            if let Some(a) = self.parked.awaiting.remove(&key)
                && self.still_authenticating(key, a.generation)
            {
                self.stats.resumes_missed += 1;
                self.welcome(now, key, (a.user, a.device, a.apps), None);
                self.handle_output(now, key);
            }
        }
    }

    /// Whether connection (key, generation) still waits for its Welcome
    /// (not closing, e.g. after its handshake timed out meanwhile).
    fn still_authenticating(&self, key: u32, generation: u32) -> bool {
        self.conns.get(key as usize).is_some_and(|c| {
            c.generation == generation
                && !c.has(super::conn::flags::CLOSING)
                && c.session.state() == protocol::server::SessionState::Authenticating
        })
    }

    /// A session handed over to a connection that is gone: `offline`.
    fn parked_gone(&mut self, at: SessionRef, p: ParkedSession) {
        let presence = Presence {
            key: at.key,
            generation: at.generation,
            user: p.user.into(),
            session: p.session.into(),
            device: p.device.into(),
            apps: p.apps,
        };
        self.actions
            .push(Action::Backend(Box::new(BackendCall::ParkedGone(presence))));
    }

    /// Reports the resumed session: the events backend keeps the parked
    /// presence under the new connection, with no event.
    pub(super) fn presence_resumed(&mut self, from: Option<ConnName>, p: Presence) {
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
        let session = format!("{:x}-{:x}", self.index, conn.generation).into();
        let device = super::names::device_name(&self.device_names, conn.device).into();
        let apps = super::names::app_names(&self.app_names, conn.apps);
        let topics = conn
            .topics
            .as_deref()
            .map(|ids| {
                ids.iter()
                    .filter_map(|&id| self.topics.name(id).map(Box::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut topics: Vec<Box<str>> = topics;
        // An MQTT session's wildcard filters go with it.
        topics.extend(self.filters.filters_of(key).map(Box::from));
        let generation = conn.generation;
        let cap = self.shard_cfg.settings.max_connections.max(1) as usize;
        while self.parked.len() >= cap {
            let Some(oldest) = self.pop_parked(now, true) else {
                break;
            };
            self.presence_gone(oldest.0, oldest.1);
        }
        let pid = self.parked.park(
            (key, generation),
            now.saturating_add(window),
            Box::new(ParkedSession {
                user,
                session,
                device,
                apps,
                topics,
                missed: Vec::new(),
                complete: true,
            }),
        );
        self.hold_topics_for_parked(pid, (key, generation));
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Parked {
                key,
                generation,
            })));
        let user = self
            .parked
            .by_conn
            .get(&(key, generation))
            .map(|(p, _)| p.user.clone());
        if let Some(user) = user {
            self.mqtt_parked(&user, (key, generation));
        }
        true
    }

    /// Every parked session ends now (the shard is stopping): each gets
    /// its `offline`.
    pub(super) fn release_parked(&mut self, now: Millis) {
        while let Some((key, generation)) = self.pop_parked(now, true) {
            self.presence_gone(key, generation);
        }
    }

    /// Ends the parked sessions whose window passed (`offline` for each)
    /// and the waits for hand-overs that took too long.
    pub(super) fn expire_parked(&mut self, now: Millis) {
        while let Some((key, generation)) = self.pop_parked(now, false) {
            self.presence_gone(key, generation);
        }
        if !self.parked.awaiting.is_empty() {
            self.expire_asks(now);
        }
        self.mqtt_sessions.expire(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(user: &str) -> Parked {
        Box::new(ParkedSession {
            user: user.into(),
            session: "0-1".into(),
            device: "d".into(),
            apps: Vec::new(),
            topics: vec!["t".into()],
            missed: Vec::new(),
            complete: true,
        })
    }

    fn conn_of(due: Option<((u32, u32), Parked, u32)>) -> Option<(u32, u32)> {
        due.map(|(conn, ..)| conn)
    }

    #[test]
    fn a_parked_session_is_taken_once_by_its_user_only() {
        let mut p = ParkedSessions::default();
        p.park((1, 7), Millis(100), parked("alice"));
        assert!(p.take((1, 7), "bob").is_none());
        assert!(p.take((1, 8), "alice").is_none(), "another generation");
        assert_eq!(
            p.take((1, 7), "alice").map(|(s, _)| s.topics.len()),
            Some(1)
        );
        assert!(p.take((1, 7), "alice").is_none());
        // A taken one leaves only its deadline, which ends nothing.
        assert_eq!(conn_of(p.pop_due(Millis(200), false)), None);
        assert_eq!(p.len(), 0);
        assert!(p.by_pid.is_empty(), "its stand-in key is free again");
    }

    #[test]
    fn windows_end_in_parking_order() {
        let mut p = ParkedSessions::default();
        let a = p.park((1, 1), Millis(100), parked("a"));
        let b = p.park((2, 1), Millis(150), parked("b"));
        assert!(a >= PARKED_KEY_BASE && b >= PARKED_KEY_BASE && a != b);
        assert_eq!(p.next_deadline(), Some(Millis(100)));
        assert_eq!(conn_of(p.pop_due(Millis(99), false)), None);
        assert_eq!(conn_of(p.pop_due(Millis(100), false)), Some((1, 1)));
        assert_eq!(conn_of(p.pop_due(Millis(120), false)), None);
        assert_eq!(
            conn_of(p.pop_due(Millis(0), true)),
            Some((2, 1)),
            "forced: the oldest"
        );
        assert_eq!(p.next_deadline(), None);
    }
}
