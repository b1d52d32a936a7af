//! What every driver does around a shard's core in the same way, whatever
//! its I/O: performing the core's actions and the control server's and
//! backend client's operations (through [`ShardIo`], the driver's part),
//! the mail in and out, the control requests, the backend's results, the
//! per-turn steps and the published counters. A driver owns a [`Shell`]
//! and its I/O; it turns its completions or readiness into inputs and
//! calls [`Shell::turn`] once per loop.

use std::sync::Arc;

use protocol::auth::TokenVerifier;
use protocol::time::Millis;

use crate::backend::{Backend, Outcome};
use crate::clock::Clock;
use crate::control::ControlServer;
use crate::control::limits::ControlLimits;
use crate::control::routes;
use crate::driver::ShardError;
use crate::fd_ops::{FdDone, FdOp};
use crate::metrics::ShardMetrics;
use crate::settings::Settings;
use crate::shard_core::{Action, Answer, BackendCall, Message, ShardCore, StreamOp, Time};
use crate::shared::Shared;
use crate::store::{OpDone, OpId, StoreOp, Writer};

/// How often a shard copies its counters to where others can read them.
pub const PUBLISH_MS: u64 = 250;

/// How long a shard that drained for a shutdown waits for its last
/// presence events to reach the events backend before it stops.
pub const EVENTS_FLUSH_MS: u64 = 2_000;

/// Which state machine an [`FdOp`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The control server's connections.
    Control,
    /// The backend client's connections.
    Backend,
}

/// How a client stream operation ended, when a driver knows it at once
/// (a write that went out, a shutdown, a close), as the core's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDone {
    /// The connection's key.
    pub key: u32,
    /// The connection's generation.
    pub generation: u32,
    /// What ended.
    pub kind: StreamDoneKind,
}

/// What a [`StreamDone`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDoneKind {
    /// The receive ended (cancelled, or the peer closed).
    RecvEnded,
    /// A send ended: bytes sent, or a negative errno.
    Sent(Result<usize, i32>),
    /// The shutdown completed.
    Shutdown,
    /// The close completed.
    Closed,
}

/// A driver's I/O: what the shell asks of it.
pub trait ShardIo {
    /// Performs a client stream operation; a send's bytes are read from
    /// [`ShardCore::sending`]. An operation that ends at once is reported
    /// by [`ShardIo::take_stream_done`].
    fn stream_op(&mut self, core: &ShardCore, op: StreamOp);

    /// Moves the stream operations that ended at once to `into`, in order
    /// (a completion-based driver has none).
    fn take_stream_done(&mut self, into: &mut Vec<StreamDone>);

    /// Performs an operation of the control server or the backend client
    /// (whose buffers and addresses it may read); an operation that ends
    /// at once gives back how.
    fn fd_op(
        &mut self,
        side: Side,
        op: FdOp,
        control: &mut ControlServer,
        backend: &mut Backend,
    ) -> Option<FdDone>;

    /// A drain began: stop accepting client connections.
    fn stop_accepting(&mut self);

    /// Control answers were written: get them to the kernel now, before
    /// the pushes they accepted are routed.
    fn submit_now(&mut self);
}

/// The driver-independent state around a shard's core.
pub struct Shell {
    /// The shard's state and policy.
    pub core: ShardCore,
    /// This shard's index.
    pub index: usize,
    /// What every shard and the main thread share.
    pub shared: Arc<Shared>,
    /// The control listener's connections.
    pub control: ControlServer,
    /// The backend client.
    pub backend: Backend,
    /// The only clock reads.
    pub clock: Clock,
    metrics: ShardMetrics,
    /// The core's actions being performed (storage kept across turns).
    actions: Vec<Action>,
    /// Mail taken from this shard's inbox (storage kept across turns).
    inbox: Vec<Message>,
    /// Control and backend operations being performed (storage kept).
    fd_ops: Vec<FdOp>,
    /// Stream operations that ended at once (storage kept).
    stream_done: Vec<StreamDone>,
    last_publish: Millis,
    /// Once drained for a shutdown: until when unsent presence events are
    /// waited for.
    flush_until: Option<Millis>,
    /// The thread that performs the durable store's file operations, so
    /// the shard never waits for a disk (none without a store).
    writer: Option<Writer>,
    /// Store operations being handed over, completions being fed in
    /// (storage kept).
    store_ops: Vec<StoreOp>,
    store_done: Vec<(OpId, OpDone)>,
}

impl Shell {
    /// The shell of shard `index` as every driver builds it: the clock
    /// started, the core, the control server and the backend client from
    /// the settings (no connection opened yet).
    pub fn build(
        index: usize,
        settings: &Arc<Settings>,
        shared: Arc<Shared>,
        verifier: Arc<dyn TokenVerifier + Send + Sync>,
    ) -> Result<Self, ShardError> {
        let clock = Clock::start();
        let mut core = ShardCore::new(
            index,
            settings.clone(),
            verifier,
            shared.push_ids.clone(),
            shared.clone(),
            clock.time(),
        );
        if let Some(tls) = &shared.tls {
            core.set_tls_acceptor(tls.clone());
        }
        let store = shared
            .stores
            .get(index)
            .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()));
        let mut writer = None;
        if let (Some(store), Some(dir)) = (store, shared.store_dirs.get(index)) {
            core.set_store(store);
            let bell = shared.clone();
            let spawned = Writer::spawn(format!("store-{index}"), dir.clone(), move || {
                bell.ring_doorbell(index)
            });
            writer = Some(spawned.map_err(|source| ShardError::Store {
                shard: index,
                source,
            })?);
        }
        let control = ControlServer::new(ControlLimits::from_config(&settings.config.listen));
        let backend =
            Backend::new(&settings.config, index).map_err(|source| ShardError::Backend {
                shard: index,
                source,
            })?;
        let mut shell = Self::new(core, index, shared, control, backend, clock);
        shell.writer = writer;
        Ok(shell)
    }

    /// The shell of shard `index` around `core`.
    fn new(
        core: ShardCore,
        index: usize,
        shared: Arc<Shared>,
        control: ControlServer,
        backend: Backend,
        clock: Clock,
    ) -> Self {
        Self {
            core,
            index,
            shared,
            control,
            backend,
            clock,
            metrics: ShardMetrics::new(index),
            actions: Vec::new(),
            inbox: Vec::new(),
            fd_ops: Vec::new(),
            stream_done: Vec::new(),
            last_publish: Millis(0),
            flush_until: None,
            writer: None,
            store_ops: Vec::new(),
            store_done: Vec::new(),
        }
    }

    /// The earliest of the core's, the control server's and the backend
    /// client's deadlines.
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        [
            // Timers, paced work, held-back mail, receives to re-arm.
            self.core.next_deadline(now),
            // Head and idle timeouts of control connections; `None`
            // without any, so an idle gateway does not wake for them.
            self.control.next_deadline(),
            // Backend request deadlines and presence-event batches.
            self.backend.next_deadline(),
            // A stopping shard's last wait for its presence events.
            self.flush_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The steps of a loop after the driver has fed its completions in:
    /// backend results, mail, control requests, the core's tick, the
    /// control server's timeouts and the backend's deadlines, and every
    /// action they lead to.
    pub fn turn(&mut self, io: &mut impl ShardIo, t: Time) {
        let now = t.now;
        self.apply_backend_outcomes(t);
        self.apply_store_completions(t);
        self.read_inbox(io, t);
        self.handle_control_requests(io, t);
        self.core.on_tick(t);
        self.core.end_turn();
        self.settle(io, t);
        self.control.expire(now);
        self.control.flush_sends();
        if self.backend.next_deadline().is_some_and(|at| at <= now) {
            self.backend.on_tick(now, self.core.stats_mut());
            self.apply_backend_outcomes(t);
        }
        self.perform_fd_ops(io, t);
        self.submit_store_ops(t);
    }

    /// Feeds the store operations the writer thread completed to the core.
    fn apply_store_completions(&mut self, t: Time) {
        let Some(writer) = &self.writer else {
            return;
        };
        let mut done = std::mem::take(&mut self.store_done);
        writer.completions(&mut done);
        for (id, d) in done.drain(..) {
            self.core.on_store_done(t, id, d);
        }
        self.store_done = done;
    }

    /// Hands the core's queued store operations to the writer thread.
    fn submit_store_ops(&mut self, t: Time) {
        let Some(writer) = &self.writer else {
            return;
        };
        let mut ops = std::mem::take(&mut self.store_ops);
        self.core.take_store_ops(t, &mut ops);
        if !ops.is_empty() && !writer.submit(std::mem::take(&mut ops)) {
            tracing::error!(shard = self.index, "the store's writer thread is gone");
        }
        self.store_ops = ops;
    }

    /// The end of a loop: the drain's next step and the periodic publish.
    /// True when the shard has drained and its loop should stop.
    pub fn end_turn(&mut self, io: &mut impl ShardIo, t: Time) -> bool {
        let drained = self.core.drain_step(t) == Some(true);
        self.settle(io, t);
        self.submit_store_ops(t);
        // Drained: the presence events of the sessions that ended (and of
        // the parked ones, reported gone) go out before the shard stops,
        // for at most EVENTS_FLUSH_MS.
        let done = drained && {
            let until = *self
                .flush_until
                .get_or_insert(t.now.saturating_add(EVENTS_FLUSH_MS));
            let unsent = self.backend.flush_events(t.now, self.core.stats_mut());
            self.settle(io, t);
            !unsent || t.now >= until
        };
        if !done && t.now.since(self.last_publish) >= PUBLISH_MS {
            self.publish();
            self.core.log_rejections(t.now);
            self.last_publish = t.now;
        }
        done
    }

    /// Copies the core's counters, with the shell's own, to where the
    /// control API and the metrics read them.
    pub fn publish(&mut self) {
        let depth = self.shared.mailboxes.depth(self.index) as u64;
        let control = self.control.counters();
        let control_connections = self.control.connections() as u64;
        let stats = self.core.stats_mut();
        stats.mailbox_depth = depth;
        stats.control_connections = control_connections;
        stats.control_refused = control.refused;
        stats.control_head_timeouts = control.head_timeouts;
        stats.control_idle_closes = control.idle_closes;
        let (stats, fanout_samples) = self.core.publish();
        self.shared.stats[self.index].publish(stats);
        self.metrics.publish(stats, fanout_samples);
    }

    /// Performs what the core, the control server and the backend client
    /// asked for and writes the core's mail, until none asks for more.
    pub fn settle(&mut self, io: &mut impl ShardIo, t: Time) {
        loop {
            self.perform_actions(io, t);
            self.perform_fd_ops(io, t);
            if !self.core.has_mail() {
                break;
            }
            let (mailboxes, bell, from) = (&self.shared.mailboxes, &*self.shared, self.index);
            // Mail held back for a full inbox is retried at the core's
            // next deadline (one millisecond on).
            self.core.flush_mail(t, &mut |to, msg: Message| {
                if msg.wakes_receiver() {
                    mailboxes.send(from, to, msg, bell)
                } else {
                    mailboxes.send_quiet(from, to, msg, bell)
                }
            });
            if !self.core.has_actions() {
                break;
            }
        }
    }

    /// Hands the mail waiting in this shard's inbox to the core.
    fn read_inbox(&mut self, io: &mut impl ShardIo, t: Time) {
        let mut batch = std::mem::take(&mut self.inbox);
        self.shared
            .mailboxes
            .drain(self.index, |_, msg| batch.push(msg));
        for msg in batch.drain(..) {
            self.core.on_mail(t, msg);
        }
        if batch.capacity() <= 65_536 {
            self.inbox = batch;
        }
        self.settle(io, t);
    }

    /// Performs every action the core has queued, in order, including
    /// those that performing them leads to.
    fn perform_actions(&mut self, io: &mut impl ShardIo, t: Time) {
        loop {
            self.perform_queued_actions(io, t);
            let mut done = std::mem::take(&mut self.stream_done);
            io.take_stream_done(&mut done);
            if done.is_empty() {
                self.stream_done = done;
                return;
            }
            for d in done.drain(..) {
                let (key, generation) = (d.key, d.generation);
                match d.kind {
                    StreamDoneKind::RecvEnded => self.core.on_recv_ended(t, key, generation),
                    StreamDoneKind::Sent(res) => self.core.on_send_done(t, key, generation, res),
                    StreamDoneKind::Shutdown => self.core.on_shutdown_done(t, key, generation),
                    StreamDoneKind::Closed => self.core.on_close_done(t, key, generation),
                }
            }
            self.stream_done = done;
        }
    }

    fn perform_queued_actions(&mut self, io: &mut impl ShardIo, t: Time) {
        while self.core.has_actions() {
            let mut actions = std::mem::take(&mut self.actions);
            self.core.take_actions(&mut actions);
            for action in actions.drain(..) {
                match action {
                    Action::Stream(op) => io.stream_op(&self.core, op),
                    Action::Backend(call) => self.call_backend(t, *call),
                    Action::Answer(caller, answer) => {
                        let response = match answer {
                            Answer::Response(r) => r,
                            Answer::Stats => {
                                self.publish();
                                routes::stats(&self.shared)
                            }
                            Answer::Metrics => {
                                self.publish();
                                routes::metrics(&self.shared)
                            }
                        };
                        self.control.respond(t.now, caller, &response);
                    }
                    Action::StopAccepting => io.stop_accepting(),
                }
            }
            self.actions = actions;
        }
    }

    /// Performs what the control server and the backend client have
    /// queued, including what performing it leads to.
    pub fn perform_fd_ops(&mut self, io: &mut impl ShardIo, t: Time) {
        while self.control.has_ops() || self.backend.has_ops() {
            let mut ops = std::mem::take(&mut self.fd_ops);
            self.control.take_ops(&mut ops);
            let control = ops.len();
            self.backend.take_ops(&mut ops);
            for (i, op) in ops.drain(..).enumerate() {
                let side = if i < control {
                    Side::Control
                } else {
                    Side::Backend
                };
                if let Some(done) = io.fd_op(side, op, &mut self.control, &mut self.backend) {
                    self.fd_done(t.now, side, op.key, op.generation, done);
                }
            }
            self.fd_ops = ops;
        }
    }

    /// How an operation of the control server or the backend client
    /// ended, as an input to it. The driver calls [`Shell::settle`] or
    /// [`Shell::perform_fd_ops`] after it.
    pub fn fd_done(&mut self, now: Millis, side: Side, key: u32, generation: u32, done: FdDone) {
        match side {
            Side::Control => self.control.on_done(now, key, generation, done),
            Side::Backend => {
                let stats = self.core.stats_mut();
                self.backend.on_done(now, stats, key, generation, done);
            }
        }
    }

    fn call_backend(&mut self, t: Time, call: BackendCall) {
        let now = t.now;
        match call {
            BackendCall::Authenticate {
                key,
                generation,
                hello,
            } => {
                let stats = self.core.stats_mut();
                let verdict = self
                    .backend
                    .authenticate(now, stats, key, generation, &hello);
                if let Some(verdict) = verdict {
                    let outcome = Outcome::Auth {
                        key,
                        generation,
                        verdict,
                        device: hello.device,
                        apps: hello.apps,
                    };
                    self.core.on_backend_outcome(t, outcome);
                }
            }
            BackendCall::Uplink {
                key,
                generation,
                user,
                uplink,
            } => {
                let stats = self.core.stats_mut();
                let reply = self
                    .backend
                    .uplink(now, stats, key, generation, &user, uplink);
                if let Some(reply) = reply {
                    let outcome = Outcome::Reply {
                        key,
                        generation,
                        reply,
                    };
                    self.core.on_backend_outcome(t, outcome);
                }
            }
            BackendCall::Online(p) => self.backend.online(now, self.core.stats_mut(), p),
            BackendCall::Will {
                key,
                generation,
                will,
            } => self
                .backend
                .will(now, self.core.stats_mut(), (key, generation), *will),
            BackendCall::Closing {
                key,
                generation,
                reason,
            } => self.backend.closing(key, generation, reason),
            BackendCall::Offline { key, generation } => {
                self.backend
                    .offline(now, self.core.stats_mut(), key, generation)
            }
            BackendCall::Undelivered(u) => self.backend.undelivered(now, self.core.stats_mut(), u),
            BackendCall::Parked { key, generation } => self.backend.parked(key, generation),
            BackendCall::Resumed { from, to } => self.backend.resumed(from, to),
            BackendCall::Handed { key, generation } => self.backend.handed(key, generation),
            BackendCall::ParkedGone(p) => self.backend.parked_gone(now, self.core.stats_mut(), p),
        }
        self.apply_backend_outcomes(t);
    }

    /// Hands the backend client's results to the core.
    pub fn apply_backend_outcomes(&mut self, t: Time) {
        while !self.backend.outcomes.is_empty() {
            for outcome in std::mem::take(&mut self.backend.outcomes) {
                self.core.on_backend_outcome(t, outcome);
            }
        }
    }

    /// Answers the requests the control listener has parsed. Answering a
    /// request hands on the one pipelined behind it, so this runs until
    /// none is left; their answers leave in one send. Pushes answered are
    /// routed once the answers have been handed to the kernel (see
    /// [`ShardCore::on_control_request`]).
    fn handle_control_requests(&mut self, io: &mut impl ShardIo, t: Time) {
        while self.control.has_ready() {
            for (caller, req) in self.control.take_ready() {
                self.core.on_control_request(t, caller, &req);
                self.settle(io, t);
            }
        }
        if !self.core.has_accepted_pushes() {
            return;
        }
        self.control.flush_sends();
        self.perform_fd_ops(io, t);
        io.submit_now();
        self.core.route_accepted_pushes(t);
        self.settle(io, t);
    }
}
