//! The sans-IO half of a shard: every piece of a shard's state and policy,
//! driven by inputs and answering with actions, in the manner of
//! quinn-proto.
//!
//! A [`ShardCore`] owns the client sessions with their outbound queues and
//! timers, admission, the user directory part, the topic index, the route
//! cache, push routing and delivery, kick and drain, auth verdicts, the
//! bookkeeping of requests across shards and the counters. It makes no
//! syscall and reads no clock: every input carries a [`Time`], push ids
//! come from a [`PushIds`] the driver hands in (and the other shards'
//! session counts from a [`Census`]), and what must happen in the
//! world comes out as an [`Action`] (a stream operation, a backend call, a
//! control answer) or as mail for another shard ([`ShardCore::flush_mail`]).
//!
//! The io_uring driver ([`crate::shard`]) is one shell around it; the
//! simulation in the tests (`sim`) is another, with in-memory mailboxes
//! and a simulated clock.

mod backend_calls;
mod client;
mod closing;
pub mod conn;
mod control;
mod drain;
mod durable;
mod mqtt;
mod mqtt_publish;
mod mqtt_sessions;
mod names;
pub mod outbound;
pub mod push;
mod rejections;
mod resume;
pub mod session;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_mqtt;
#[cfg(test)]
mod sim_mqtt_tests;
#[cfg(test)]
mod sim_resume_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod sim_ws_tests;
mod tls;
pub mod transport;
mod websocket;

use std::sync::Arc;

use protocol::auth::TokenVerifier;
use protocol::time::Millis;
use session::SessionOutput;
use slab::Slab;
use tuning::config::ResolvedShard;

use shard_router::filters::LocalFilters;
use shard_router::router::{Outbox, Router};
use shard_router::topics::LocalTopics;

use crate::admission::Admission;
use crate::backend::events::{Presence, Undelivered};
use crate::control::Caller;
use crate::control::routes::Response;
use crate::settings::Settings;
use crate::stats::ShardStats;
use crate::timer::TimerWheel;

pub use crate::census::Census;
pub use crate::push_ids::{CountingPushIds, PushIds};
pub use crate::time::Time;

use conn::Conn;
pub use push::Message;
pub use transport::{ListenerKind, Transport};

/// Slots of the timer wheel.
const WHEEL_SLOTS: usize = 4096;
/// Most users whose routes one shard's push API caches (about 40 bytes
/// each); the cache starts over when full.
const ROUTE_CACHE_USERS: usize = 65_536;

/// One operation on a client connection's stream, for the driver to
/// perform. `key` and `generation` name the exact connection; the driver
/// reports the completion with the same pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOp {
    /// Connection key on this shard.
    pub key: u32,
    /// Connection generation.
    pub generation: u32,
    /// The driver's handle of the stream (an io_uring direct descriptor).
    pub stream: u32,
    /// What to do.
    pub kind: StreamOpKind,
}

/// What a [`StreamOp`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOpKind {
    /// Start receiving (until the driver reports it stopped).
    Recv,
    /// Write [`ShardCore::sending`]'s bytes; report with
    /// [`ShardCore::on_send_done`]. The bytes stay put until then.
    Send,
    /// Shut down the write side (our FIN); report with
    /// [`ShardCore::on_shutdown_done`].
    Shutdown,
    /// Cancel the receive in flight.
    CancelRecv,
    /// Cancel the send in flight.
    CancelSend,
    /// Close the stream: the last operation on it; report with
    /// [`ShardCore::on_close_done`].
    Close,
}

/// A call to the backend client, on behalf of connection (key, generation).
/// Results come back through [`ShardCore::on_backend_outcome`].
#[derive(Debug)]
pub enum BackendCall {
    /// Authenticate this Hello through the webhook.
    Authenticate {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// The Hello.
        hello: protocol::proto::Hello,
    },
    /// Forward an uplink of `user`.
    Uplink {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// The authenticated user.
        user: String,
        /// The uplink.
        uplink: protocol::proto::Uplink,
    },
    /// A session went online.
    Online(Presence),
    /// The will of the MQTT session on connection (key, generation) fell
    /// due (its connection ended without DISCONNECT).
    Will {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// The will.
        will: Box<crate::backend::events::WillDue>,
    },
    /// Connection (key, generation) is closing for `reason`.
    Closing {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// Why, as the presence event names it.
        reason: &'static str,
    },
    /// Connection (key, generation) is gone.
    Offline {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
    },
    /// A durable push left its user's inbox without an Ack.
    Undelivered(Undelivered),
    /// Connection (key, generation) is gone but its session is parked for
    /// a resume: no `offline` yet.
    Parked {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
    },
    /// The session parked from connection `from` (key, generation) is
    /// resumed by the session `to`: no event; `to`'s `offline` comes when
    /// it ends.
    Resumed {
        /// The old connection (key, generation), when it was on this
        /// shard.
        from: Option<(u32, u32)>,
        /// The new session.
        to: Presence,
    },
    /// The session parked from connection (key, generation) went to
    /// another shard's new session: forget it, with no event.
    Handed {
        /// Connection key.
        key: u32,
        /// Connection generation.
        generation: u32,
    },
    /// A session handed over from another shard for a connection that was
    /// gone by then: its `offline`.
    ParkedGone(Presence),
}

/// An answer to a control request.
#[derive(Debug)]
pub enum Answer {
    /// This response.
    Response(Response),
    /// The gateway's counters (`/v1/stats`), rendered by the driver from
    /// what every shard published, once this shard has published.
    Stats,
    /// The Prometheus text (`/metrics`), likewise.
    Metrics,
}

/// What the core asks its driver to do, in order.
#[derive(Debug)]
pub enum Action {
    /// An operation on a client stream.
    Stream(StreamOp),
    /// A call to the backend client (boxed: rare, and large next to the
    /// stream operations that make up most actions).
    Backend(Box<BackendCall>),
    /// Answer the control request of `caller`.
    Answer(Caller, Answer),
    /// Stop accepting client connections (a drain began).
    StopAccepting,
}

/// Mail to another shard, as the driver's mailboxes take it.
pub trait MailSink {
    /// Delivers `msg` to shard `to`, or gives it back when `to`'s inbox
    /// is full.
    fn send(&mut self, to: usize, msg: Message) -> Result<(), Message>;
}

impl<F: FnMut(usize, Message) -> Result<(), Message>> MailSink for F {
    fn send(&mut self, to: usize, msg: Message) -> Result<(), Message> {
        self(to, msg)
    }
}

/// Everything one shard owns but its I/O.
pub struct ShardCore {
    index: usize,
    shard_cfg: ResolvedShard,
    settings: Arc<Settings>,
    verifier: Arc<dyn TokenVerifier + Send + Sync>,
    push_ids: Arc<dyn PushIds>,
    /// The other shards' sessions, for a broadcast's answer.
    census: Arc<dyn Census>,
    /// Wall clock of the input being handled.
    unix_ms: u64,
    /// Shard clock of the input being handled.
    now: Millis,
    conns: Slab<Conn>,
    /// Outbound queue storage reused across connections.
    queues: outbound::QueuePool,
    wheel: TimerWheel,
    admission: Admission,
    stats: ShardStats,
    out: SessionOutput,
    actions: Vec<Action>,
    fired: Vec<u32>,
    rearm: Vec<u32>,
    handshakes: u32,
    next_generation: u32,
    drain: Option<drain::Drain>,
    // Push delivery (see `push`).
    /// The routing policy and its state: directory part, topic owners,
    /// route cache.
    router: Router,
    /// What the router decided, being sent (storage kept).
    routed: Outbox,
    /// This shard's topic subscribers.
    topics: LocalTopics,
    /// This shard's wildcard filters (MQTT sessions).
    filters: LocalFilters,
    outboxes: push::Outboxes,
    requests: push::PendingRequests,
    /// Push answers waiting for the holders' counts.
    answers: push::PendingAnswers,
    /// Pushes accepted and not routed yet.
    accepted: push::AcceptedPushes,
    paced: Vec<push::PacedJob>,
    fanout_samples: Vec<u64>,
    app_names: names::Interner,
    device_names: names::Interner,
    pending_flush: Vec<u32>,
    /// Rejected handshakes, logged as a summary per interval.
    rejections: rejections::RejectionLog,
    /// WebSocket connections' incomplete heads and frames.
    ws: websocket::WsConns,
    /// TLS connections' record layers.
    tls: tls::TlsConns,
    /// The durable store of the users this shard owns, once given.
    durable: Option<Box<durable::Durable>>,
    /// Sessions whose connections went, kept for a resume.
    parked: resume::ParkedSessions,
    /// MQTT persistent sessions: client ids here, parked ones of the users
    /// this shard owns.
    mqtt_sessions: mqtt_sessions::MqttSessions,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCore")
            .field("index", &self.index)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl ShardCore {
    /// The core of shard `index` of `settings.shards`, started at `t`,
    /// taking push ids from `push_ids` and the other shards' session
    /// counts from `census`.
    pub fn new(
        index: usize,
        settings: Arc<Settings>,
        verifier: Arc<dyn TokenVerifier + Send + Sync>,
        push_ids: Arc<dyn PushIds>,
        census: Arc<dyn Census>,
        t: Time,
    ) -> Self {
        let shard_cfg = settings.shards[index].clone();
        let s = &shard_cfg.settings;
        let tick = s.timer_tick_ms;
        let max_connections = s.max_connections as usize;
        let admission = Admission::new(&settings.config.admission);
        let shards = settings.shards.len();
        let ws = websocket::WsConns::new(protocol::ws::handshake::HandshakeConfig {
            allowed_origins: settings.config.listen.websocket_origins.clone(),
            max_head: protocol::ws::handshake::DEFAULT_MAX_HEAD,
        });
        Self {
            index,
            settings,
            verifier,
            push_ids,
            census,
            unix_ms: t.unix_ms,
            now: t.now,
            conns: Slab::with_capacity(max_connections.min(1 << 20)),
            queues: outbound::QueuePool::default(),
            wheel: TimerWheel::new(t.now, tick, WHEEL_SLOTS),
            admission,
            stats: ShardStats::default(),
            out: SessionOutput::default(),
            actions: Vec::new(),
            fired: Vec::new(),
            rearm: Vec::new(),
            handshakes: 0,
            next_generation: 0,
            drain: None,
            router: Router::new(index, shards, ROUTE_CACHE_USERS),
            routed: Vec::new(),
            topics: LocalTopics::default(),
            filters: LocalFilters::default(),
            outboxes: push::Outboxes::default(),
            requests: push::PendingRequests::default(),
            answers: push::PendingAnswers::default(),
            accepted: push::AcceptedPushes::default(),
            paced: Vec::new(),
            fanout_samples: Vec::new(),
            app_names: names::Interner::new(names::MAX_APPS),
            device_names: names::Interner::new(names::MAX_DEVICE_LABELS),
            pending_flush: Vec::new(),
            shard_cfg,
            rejections: rejections::RejectionLog::default(),
            ws,
            tls: tls::TlsConns::default(),
            durable: None,
            parked: resume::ParkedSessions::default(),
            mqtt_sessions: mqtt_sessions::MqttSessions::default(),
        }
    }

    /// Notes the wall clock of the input being handled.
    fn at(&mut self, t: Time) -> Millis {
        self.unix_ms = t.unix_ms;
        self.now = t.now;
        t.now
    }

    /// Whether peer addresses are needed at accept (admission rules on
    /// them), so the driver must accept one connection at a time.
    pub fn needs_peer_address(&self) -> bool {
        self.admission.needs_peer_address()
    }

    /// Takes the actions queued so far, in order. `into` is cleared first.
    pub fn take_actions(&mut self, into: &mut Vec<Action>) {
        into.clear();
        std::mem::swap(into, &mut self.actions);
    }

    /// Whether actions are waiting.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The bytes of connection (key, generation)'s send in flight.
    pub fn sending(&self, key: u32, generation: u32) -> Option<&[u8]> {
        self.conns
            .get(key as usize)
            .filter(|c| crate::stream::same_generation(c.generation, generation))
            .and_then(|c| c.outbound.sending())
    }

    /// Runs what is due at `t`: connection timers, paced deliveries and
    /// the timeouts of requests and push answers across shards.
    pub fn on_tick(&mut self, t: Time) {
        let now = self.at(t);
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(now, &mut fired);
        for key in fired.drain(..) {
            self.on_timer(now, key);
        }
        self.fired = fired;
        self.run_paced(now);
        if !self.requests.is_empty() {
            self.expire_requests(now);
        }
        self.expire_answers(now);
        self.store_tick(now);
        self.expire_parked(now);
    }

    /// Ends a turn of the driver's loop: the sends of everything delivered
    /// in it start (all the frames a connection got leave in one send), and
    /// receives stopped for lack of buffers are re-armed.
    pub fn end_turn(&mut self) {
        self.flush_deliveries();
        let mut keys = std::mem::take(&mut self.rearm);
        for key in keys.drain(..) {
            self.arm_recv(key);
        }
        self.rearm = keys;
    }

    /// When the core next needs [`ShardCore::on_tick`] (or the driver's
    /// loop to turn: held mail to retry, receives to re-arm, deliveries
    /// waiting for [`ShardCore::end_turn`]).
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        let outbox = (self.outboxes.backlog() > 0).then(|| now.saturating_add(1));
        let turn = (!self.rearm.is_empty() || !self.pending_flush.is_empty()).then_some(now);
        // Counts for push answers come without a doorbell: read the inbox
        // on this short deadline while any answer waits for them.
        let counts = self
            .has_pending_answers()
            .then(|| now.saturating_add(push::ANSWER_POLL_MS));
        [
            self.wheel.next_wakeup(),
            self.drain_wakeup(now),
            self.paced_wakeup(now),
            self.requests_wakeup(),
            self.answers_wakeup(),
            self.store_wakeup(now),
            self.parked.next_deadline(),
            self.rejections.next_due(),
            outbox,
            turn,
            counts,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Refreshes the gauges and returns the counters to publish, with the
    /// fan-out completion samples (µs) gathered since the last call.
    pub fn publish(&mut self) -> (&ShardStats, &mut Vec<u64>) {
        self.stats.connections = self.conns.len() as u64;
        self.stats.directory_sessions = self.router.directory_sessions() as u64;
        self.stats.paced_deliveries = self.paced.len() as u64;
        self.stats.app_names = self.app_names.len() as u64;
        self.stats.parked_sessions = self.parked.len() as u64;
        self.stats.device_labels = self.device_names.len() as u64;
        if let Some(st) = self.store_stats() {
            let s = &mut self.stats;
            s.store_stored = st.stored;
            s.store_delivered = st.delivered;
            s.store_redelivered = st.redelivered;
            s.store_acked = st.acked;
            s.store_expired = st.expired;
            s.store_dead_lettered = st.dead_lettered;
            s.store_dropped = st.dropped_oldest;
            s.store_rejected = st.rejected_inbox_full + st.rejected_store_full;
            s.store_commits = st.commits;
            s.store_commit_ms_max = st.commit_ms_max;
            s.store_pushes = st.pushes;
            s.store_disk_bytes = st.disk_bytes;
            s.store_ram_bytes = st.ram_bytes;
        }
        (&self.stats, &mut self.fanout_samples)
    }

    /// The counters, for the driver's own (accept errors, backend, control).
    pub fn stats_mut(&mut self) -> &mut ShardStats {
        &mut self.stats
    }

    /// Client connections held.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Logs the rejected handshakes counted since the last summary, one
    /// line per error code, at most once per `rejections::SUMMARY_MS`.
    pub fn log_rejections(&mut self, now: Millis) {
        for s in self.rejections.due(now) {
            tracing::warn!(
                shard = self.index,
                code = s.code.as_str_name(),
                count = s.count,
                latest = %s.latest,
                "handshakes rejected"
            );
        }
    }

    fn stream_op(&mut self, key: u32, kind: StreamOpKind) {
        if let Some(c) = self.conns.get(key as usize) {
            self.actions.push(Action::Stream(StreamOp {
                key,
                generation: c.generation,
                stream: c.fd,
                kind,
            }));
        }
    }

    /// Makes sure the wheel will visit connection `key` by its deadline.
    fn arm_timer(&mut self, now: Millis, key: u32) {
        let Some(conn) = self.conns.get(key as usize) else {
            return;
        };
        if let Some(deadline) = conn.deadline(&self.settings, now) {
            self.wheel.arm(key, deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most actions are stream operations, one or more per delivery: the
    /// queue of them stays compact.
    #[test]
    fn an_action_is_small() {
        assert!(
            std::mem::size_of::<Action>() <= 64,
            "{} bytes",
            std::mem::size_of::<Action>()
        );
    }
}
