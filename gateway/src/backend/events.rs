//! Presence events: a session going online (Welcome sent) or offline (its
//! connection gone) becomes an event; events are batched (by count and
//! age) and POSTed as JSON to `events.url`:
//!
//! ```json
//! {"events": [{"type": "online", "user": "u1", "session": "0-2a",
//!   "device": "phone", "apps": ["chat"], "shard": 0, "ts_ms": 1700000000000,
//!   "reason": ""}]}
//! ```
//!
//! `reason` is empty for `online`; for `offline` it is one of `client_bye`,
//! `idle_timeout`, `kicked`, `protocol_error`,
//! `slow_consumer`, `closed`.
//!
//! A durable push that leaves its user's inbox without an Ack becomes an
//! `undelivered` event (issue 17), with the push's `id`, how many times it
//! went out (`deliveries`) and why (`reason`): `max_deliveries` (sent that
//! often and never acked), `expired` (its TTL passed) or `dropped` (made
//! room in a full inbox under `inbox_overflow = "drop-oldest"`). Such an
//! event has no session: `session` and `device` are empty, `apps` is
//! empty, `shard` is the user's owner shard:
//!
//! ```json
//! {"type": "undelivered", "user": "u1", "session": "", "device": "",
//!   "apps": [], "shard": 1, "ts_ms": 1700000000000,
//!   "reason": "max_deliveries", "id": 1099511627777, "deliveries": 5}
//! ```
//!
//! An MQTT session whose connection ends without DISCONNECT (a lost
//! connection, a keep-alive timeout, a kick) and that set a will becomes a
//! `will` event of that session, with the will's `topic`, `payload_b64`,
//! `qos` and `retain`; the gateway publishes nothing itself (no client
//! pushes to other clients but through a backend), so the backend decides
//! whether to push it (`POST /v1/push` to the topic):
//!
//! ```json
//! {"type": "will", "user": "u1", "session": "0-2a", "device": "mqtt",
//!   "apps": [], "shard": 0, "ts_ms": 1700000000000, "reason": "",
//!   "topic": "devices/d1/status", "payload_b64": "b2ZmbGluZQ==",
//!   "qos": 1, "retain": false}
//! ```
//!
//! One batch is in flight at a time; a failed
//! batch (non-2xx, timeout, unreachable) is retried up to `events.retries`
//! times with doubling backoff, then dropped and counted. At most
//! `events.queue_max` events wait; beyond that new ones are dropped and
//! counted (`events_dropped`), so a dead events backend costs bounded memory.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use protocol::time::Millis;
use serde::Serialize;
use tuning::backends::EventsConfig;

use super::http_client::{Response, write_post};
use super::pool::{Failure, HttpClient, PoolId};
use super::{BackendError, Owner, endpoint, limits};
use crate::stats::ShardStats;

/// What the shard knows of a session when it goes online.
#[derive(Debug, Clone)]
pub struct Presence {
    /// Connection slab key.
    pub key: u32,
    /// Connection generation.
    pub generation: u32,
    /// The authenticated user.
    pub user: String,
    /// The session id given in the Welcome.
    pub session: String,
    /// `Hello.device`.
    pub device: String,
    /// `Hello.apps`.
    pub apps: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Record {
    #[serde(rename = "type")]
    kind: &'static str,
    user: String,
    session: String,
    device: String,
    apps: Vec<String>,
    shard: usize,
    ts_ms: u64,
    reason: &'static str,
    /// The push's id (`undelivered` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    /// How many times the push went out (`undelivered` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries: Option<u16>,
    /// The will (`will` only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    will: Option<WillRecord>,
}

/// A will's fields as the `will` event carries them.
#[derive(Debug, Serialize)]
struct WillRecord {
    topic: String,
    payload_b64: String,
    qos: u8,
    retain: bool,
}

/// An MQTT will that fell due: the session ended without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillDue {
    /// The topic the client wanted it published to.
    pub topic: String,
    /// What to publish.
    pub payload: bytes::Bytes,
    /// At which QoS (0 or 1; 2 as the client asked).
    pub qos: u8,
    /// Whether the client asked for it to be retained.
    pub retain: bool,
}

impl Record {
    /// An `online` or `offline` event of session `p`, stamped now.
    fn presence(kind: &'static str, p: Presence, shard: usize, reason: &'static str) -> Self {
        Self {
            kind,
            user: p.user,
            session: p.session,
            device: p.device,
            apps: p.apps,
            shard,
            ts_ms: crate::clock::wall_clock_ms(),
            reason,
            id: None,
            deliveries: None,
            will: None,
        }
    }
}

/// A durable push that left its user's inbox without an Ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// Whose inbox it left.
    pub user: String,
    /// The push's id.
    pub id: u64,
    /// How many times it went out.
    pub deliveries: u16,
    /// `max_deliveries`, `expired` or `dropped`.
    pub reason: &'static str,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    events: Vec<&'a Record>,
}

#[derive(Debug)]
struct Batch {
    body: Vec<u8>,
    count: u64,
    attempt: u32,
    sending: bool,
    retry_at: Millis,
}

/// One shard's presence-event batcher.
#[derive(Debug)]
pub struct Events {
    pool: PoolId,
    cfg: EventsConfig,
    sessions: HashMap<u32, (Presence, &'static str)>,
    /// Sessions parked for a resume, by their old (key, generation).
    parked: HashMap<(u32, u32), (Presence, &'static str)>,
    queue: VecDeque<Record>,
    oldest: Millis,
    batch: Option<Batch>,
    /// Stopping: send without waiting for `batch_ms`.
    flushing: bool,
}

impl Events {
    /// The batcher, when `events.url` is set.
    pub fn new(
        cfg: &EventsConfig,
        client: &mut HttpClient<Owner>,
    ) -> Result<Option<Self>, BackendError> {
        let Some(url) = &cfg.url else {
            return Ok(None);
        };
        let lim = limits(1, 1, cfg.connect_timeout_ms, cfg.timeout_ms, 64 * 1024);
        let pool = client.add_pool(endpoint("events.url", url)?, lim);
        Ok(Some(Self {
            pool,
            cfg: cfg.clone(),
            sessions: HashMap::new(),
            parked: HashMap::new(),
            queue: VecDeque::new(),
            oldest: Millis(0),
            batch: None,
            flushing: false,
        }))
    }

    fn push(&mut self, now: Millis, stats: &mut ShardStats, record: Record) {
        if self.queue.len() >= self.cfg.queue_max as usize {
            stats.events_dropped += 1;
            return;
        }
        if self.queue.is_empty() {
            self.oldest = now;
        }
        stats.events_queued += 1;
        self.queue.push_back(record);
    }

    /// A session went online.
    pub(super) fn online(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        shard: usize,
        p: Presence,
    ) {
        let record = Record::presence("online", p.clone(), shard, "");
        self.sessions.insert(p.key, (p, "closed"));
        self.push(now, stats, record);
        self.tick(now, stats, client);
    }

    /// Notes why connection `key` is closing.
    pub(super) fn closing(&mut self, key: u32, generation: u32, reason: &'static str) {
        if let Some((p, r)) = self.sessions.get_mut(&key)
            && p.generation == generation
            && *r == "closed"
        {
            *r = reason;
        }
    }

    /// Connection (key, generation) is gone and its session parked: its
    /// offline event waits for the end of the resume window.
    pub(super) fn parked(&mut self, key: u32, generation: u32) {
        if self
            .sessions
            .get(&key)
            .is_some_and(|(p, _)| p.generation == generation)
            && let Some(s) = self.sessions.remove(&key)
        {
            self.parked.insert((key, generation), s);
        }
    }

    /// The session parked from `from` goes on as `to`: no event; `to`'s
    /// offline event comes when it ends.
    pub(super) fn resumed(&mut self, from: Option<(u32, u32)>, to: Presence) {
        if let Some(from) = from {
            self.parked.remove(&from);
        }
        self.sessions.insert(to.key, (to, "closed"));
    }

    /// The session parked from (key, generation) went to another shard,
    /// which reports it from now on: forgotten here, with no event.
    pub(super) fn handed(&mut self, key: u32, generation: u32) {
        self.parked.remove(&(key, generation));
    }

    /// A session handed over from another shard ended before it was
    /// resumed: its offline event (reason `closed`).
    pub(super) fn parked_gone(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        shard: usize,
        p: Presence,
    ) {
        let key = p.key;
        let generation = p.generation;
        self.sessions.insert(key, (p, "closed"));
        self.offline(now, stats, client, shard, key, generation);
    }

    /// Connection `key` is gone (or its parked session ended): an offline
    /// event if it had gone online.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offline(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        shard: usize,
        key: u32,
        generation: u32,
    ) {
        let live = self
            .sessions
            .get(&key)
            .is_some_and(|(p, _)| p.generation == generation);
        let gone = if live {
            self.sessions.remove(&key)
        } else {
            self.parked.remove(&(key, generation))
        };
        let Some((p, reason)) = gone else {
            return;
        };
        let record = Record::presence("offline", p, shard, reason);
        self.push(now, stats, record);
        self.tick(now, stats, client);
    }

    /// The will of the session on connection (key, generation) fell due:
    /// a `will` event, if the session had gone online.
    pub(super) fn will(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        (shard, key, generation): (usize, u32, u32),
        will: WillDue,
    ) {
        let Some((p, _)) = self
            .sessions
            .get(&key)
            .filter(|(p, _)| p.generation == generation)
        else {
            return;
        };
        let mut record = Record::presence("will", p.clone(), shard, "");
        record.will = Some(WillRecord {
            topic: will.topic,
            payload_b64: base64::engine::general_purpose::STANDARD.encode(&will.payload),
            qos: will.qos,
            retain: will.retain,
        });
        self.push(now, stats, record);
        self.tick(now, stats, client);
    }

    /// A durable push of a user this shard owns left the inbox unacked.
    pub(super) fn undelivered(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        shard: usize,
        u: Undelivered,
    ) {
        let record = Record {
            kind: "undelivered",
            user: u.user,
            session: String::new(),
            device: String::new(),
            apps: Vec::new(),
            shard,
            ts_ms: crate::clock::wall_clock_ms(),
            reason: u.reason,
            id: Some(u.id),
            deliveries: Some(u.deliveries),
            will: None,
        };
        self.push(now, stats, record);
        self.tick(now, stats, client);
    }

    /// When the batcher needs to run next (batch age or retry backoff).
    pub fn next_wakeup(&self) -> Option<Millis> {
        match &self.batch {
            Some(b) if b.sending => None,
            Some(b) => Some(b.retry_at),
            None if self.queue.is_empty() => None,
            None if self.flushing => Some(self.oldest),
            None => Some(Millis(self.oldest.0 + u64::from(self.cfg.batch_ms))),
        }
    }

    /// Whether nothing waits to be sent or is being sent.
    pub fn is_idle(&self) -> bool {
        self.batch.is_none() && self.queue.is_empty()
    }

    /// The shard is stopping: from now on, batches go as soon as there
    /// are events, without waiting for `batch_ms`.
    pub(super) fn flush(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
    ) {
        self.flushing = true;
        self.tick(now, stats, client);
    }

    /// Sends a due batch or a due retry.
    pub(super) fn tick(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
    ) {
        if self.batch.is_none() {
            let full = self.queue.len() >= self.cfg.batch_max as usize;
            let old = !self.queue.is_empty()
                && (self.flushing || now.0 >= self.oldest.0 + u64::from(self.cfg.batch_ms));
            if !(full || old) {
                return;
            }
            let n = self.queue.len().min(self.cfg.batch_max as usize);
            let body = serde_json::to_vec(&BatchBody {
                events: self.queue.iter().take(n).collect(),
            })
            .unwrap_or_default();
            self.queue.drain(..n);
            self.oldest = now;
            self.batch = Some(Batch {
                body,
                count: n as u64,
                attempt: 0,
                sending: false,
                retry_at: now,
            });
        }
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        if batch.sending || batch.retry_at > now {
            return;
        }
        let Some(ep) = client.endpoint(self.pool) else {
            return;
        };
        let mut bytes = Vec::new();
        write_post(
            &mut bytes,
            &ep.host,
            &ep.path,
            "application/json",
            &[],
            &batch.body,
        );
        batch.sending = true;
        if let Err((_, f)) = client.submit(now, self.pool, Owner::Events, bytes) {
            self.finish(now, stats, Err(f));
        }
    }

    /// Handles the outcome of the batch in flight.
    pub(super) fn finish(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        result: Result<Response, Failure>,
    ) {
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        batch.sending = false;
        if result
            .as_ref()
            .is_ok_and(|r| (200..300).contains(&r.status))
        {
            stats.events_sent += batch.count;
            stats.events_batches += 1;
            self.batch = None;
            return;
        }
        stats.events_batch_failures += 1;
        batch.attempt += 1;
        if batch.attempt > self.cfg.retries {
            stats.events_dropped += batch.count;
            self.batch = None;
            return;
        }
        let shift = (batch.attempt - 1).min(16);
        let wait =
            (u64::from(self.cfg.backoff_ms) << shift).min(u64::from(self.cfg.backoff_max_ms));
        batch.retry_at = Millis(now.0 + wait);
    }
}
