//! One shard: a pinned thread that owns an io_uring ring, a client
//! listener, a receive buffer pool, its sessions and their timers.
//! Nothing here is shared with other shards except read-only settings,
//! the published counters and the doorbell that wakes the shard.

mod backend_glue;
mod client;
mod closing;
pub mod conn;
mod control_glue;
mod drain;
mod names;
pub mod outbound;
pub mod push;
mod rejections;
mod waiting;
mod wake;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use protocol::auth::TokenVerifier;
use protocol::server::Output;
use protocol::time::Millis;
use slab::Slab;
use socket2::Socket;
use tuning::config::ResolvedShard;

use shard_router::directory::UserDirectory;
use shard_router::routes::{RouteCache, RouteWatchers};
use shard_router::topics::{LocalTopics, TopicShards};

use crate::admission::Admission;
use crate::control::ControlServer;
use crate::control::limits::ControlLimits;
use crate::metrics::ShardMetrics;
use crate::runtime::Shared;
use crate::settings::{REFUSAL_SLACK, Settings};
use crate::stats::ShardStats;
use crate::timer::TimerWheel;
use crate::uring::bufring::{BufRing, BufRingError};
use crate::uring::op::{OpKind, OpTag};
use crate::uring::urgent::UrgentWatch;

use conn::Conn;
use wake::WakeBatching;

/// Buffer group id of the shard's receive pool.
const BUF_GROUP: u16 = 0;
/// Single-shot accepts kept in flight when admission needs peer addresses.
const ACCEPT_POOL: usize = 32;
/// Slots of the timer wheel.
const WHEEL_SLOTS: usize = 4096;
/// How often a shard copies its counters to where others can read them.
const PUBLISH_MS: u64 = 250;
/// Most users whose routes one shard's push API caches (about 40 bytes
/// each); the cache starts over when full.
const ROUTE_CACHE_USERS: usize = 65_536;
/// How often the receive pool's window is fitted to recent traffic.
const POOL_REVIEW_MS: u64 = 2_000;

/// Why a shard could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The io_uring ring could not be created.
    #[error("shard {shard}: cannot create io_uring ring: {source}")]
    Ring {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The direct-descriptor table could not be registered.
    #[error(
        "shard {shard}: cannot register {slots} direct descriptors (RLIMIT_NOFILE bounds it): {source}"
    )]
    Files {
        /// Shard index.
        shard: usize,
        /// Slots requested.
        slots: u32,
        /// The OS error.
        source: io::Error,
    },
    /// The receive buffer pool could not be set up.
    #[error("shard {shard}: {source}")]
    Buffers {
        /// Shard index.
        shard: usize,
        /// What failed.
        source: BufRingError,
    },
    /// The shard thread panicked.
    #[error("shard {shard} panicked")]
    Panicked {
        /// Shard index.
        shard: usize,
    },
    /// The backend client could not be set up (bad or unresolvable URL).
    #[error("shard {shard}: {source}")]
    Backend {
        /// Shard index.
        shard: usize,
        /// What failed.
        source: crate::backend::BackendError,
    },
    /// The epoll instance of the urgent watch could not be set up.
    #[error("shard {shard}: cannot set up the urgent watch (epoll): {source}")]
    Urgent {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting on the ring failed.
    #[error("shard {shard}: io_uring_enter failed: {source}")]
    Enter {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: io::Error,
    },
}

/// A shard's clock: milliseconds since the shard started.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// Wall-clock now as (unix seconds, unix milliseconds).
pub(crate) fn wall_clock() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        d.as_secs(),
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    )
}

/// Everything one shard owns. Field order matters: the ring is dropped
/// before the buffer pool whose memory it points into.
pub struct Shard {
    ring: IoUring,
    bufs: BufRing,
    index: usize,
    shard_cfg: ResolvedShard,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    verifier: Arc<dyn TokenVerifier + Send + Sync>,
    listener: Option<Socket>,
    doorbell: Arc<OwnedFd>,
    doorbell_buf: Box<u64>,
    accept_addrs: Box<[(libc::sockaddr_storage, libc::socklen_t)]>,
    multishot_accept: bool,
    control: ControlServer,
    backend: crate::backend::Backend,
    conns: Slab<Conn>,
    /// Outbound queue storage reused across connections.
    queues: outbound::QueuePool,
    wheel: TimerWheel,
    admission: Admission,
    stats: ShardStats,
    clock: Clock,
    out: Output,
    cqes: Vec<(u64, i32, u32)>,
    fired: Vec<u32>,
    rearm: Vec<u32>,
    handshakes: u32,
    next_generation: u32,
    drain: Option<drain::Drain>,
    last_publish: Millis,
    last_pool_review: Millis,
    // Push delivery (see `push`).
    directory: UserDirectory,
    /// Users' sessions learnt from their owners (push API side).
    routes: RouteCache,
    /// Which shards cache the routes of users this shard owns.
    route_watchers: RouteWatchers,
    topic_owner: TopicShards,
    topics: LocalTopics,
    outboxes: push::Outboxes,
    requests: push::PendingRequests,
    /// Pushes answered and not routed yet.
    accepted: push::AcceptedPushes,
    paced: Vec<push::PacedJob>,
    fanout_samples: Vec<u64>,
    app_names: names::Interner,
    device_names: names::Interner,
    metrics: ShardMetrics,
    outbox_waiting: bool,
    pending_flush: Vec<u32>,
    wake: WakeBatching,
    /// Ends a batched wait when a push, request or connection arrives.
    urgent: UrgentWatch,
    /// Rejected handshakes, logged as a summary per interval.
    rejections: rejections::RejectionLog,
}

impl Shard {
    /// Builds shard `index`: ring, direct-descriptor table, buffer pool.
    /// The listeners are made by the caller so that a bind error is
    /// reported before any thread starts.
    pub fn new(
        index: usize,
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        verifier: Arc<dyn TokenVerifier + Send + Sync>,
        listener: Socket,
        control_listener: Socket,
    ) -> Result<Self, ShardError> {
        let shard_cfg = settings.shards[index].clone();
        let s = &shard_cfg.settings;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(s.ring_entries.saturating_mul(4))
            .build(s.ring_entries)
            .map_err(|source| ShardError::Ring {
                shard: index,
                source,
            })?;
        let min_wait = ring.params().is_feature_min_timeout();
        let cq_entries = ring.params().cq_entries();
        let slots = s.max_connections + REFUSAL_SLACK;
        ring.submitter()
            .register_files_sparse(slots)
            .map_err(|source| ShardError::Files {
                shard: index,
                slots,
                source,
            })?;
        let bufs =
            BufRing::new(&ring, BUF_GROUP, s.buffer_count, s.buffer_size).map_err(|source| {
                ShardError::Buffers {
                    shard: index,
                    source,
                }
            })?;
        let clock = Clock(Instant::now());
        let wake = WakeBatching::new(
            s.idle_batch_ms,
            s.idle_batch_after_ms,
            min_wait,
            cq_entries,
            clock.now(),
        );
        let admission = Admission::new(&settings.config.admission);
        let multishot_accept = !admission.needs_peer_address();
        let pool = if multishot_accept { 0 } else { ACCEPT_POOL };
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let accept_addrs = vec![(zero, 0); pool].into_boxed_slice();
        let doorbell = shared.doorbells[index].clone();
        let control = ControlServer::new(
            control_listener,
            ControlLimits::from_config(&settings.config.listen),
        );
        let urgent = UrgentWatch::new()
            .and_then(|u| {
                u.add(doorbell.as_raw_fd())?;
                u.add(listener.as_raw_fd())?;
                u.add(control.listener_fd())?;
                Ok(u)
            })
            .map_err(|source| ShardError::Urgent {
                shard: index,
                source,
            })?;
        let tick = s.timer_tick_ms;
        let max_connections = s.max_connections as usize;
        let backend = crate::backend::Backend::new(&settings.config, index).map_err(|source| {
            ShardError::Backend {
                shard: index,
                source,
            }
        })?;
        Ok(Self {
            ring,
            bufs,
            index,
            shard_cfg,
            control,
            backend,
            settings,
            shared,
            verifier,
            listener: Some(listener),
            doorbell,
            doorbell_buf: Box::new(0),
            accept_addrs,
            multishot_accept,
            conns: Slab::with_capacity(max_connections.min(1 << 20)),
            queues: outbound::QueuePool::default(),
            wheel: TimerWheel::new(clock.now(), tick, WHEEL_SLOTS),
            admission,
            stats: ShardStats::default(),
            clock,
            out: Output::default(),
            cqes: Vec::with_capacity(1024),
            fired: Vec::new(),
            rearm: Vec::new(),
            handshakes: 0,
            next_generation: 0,
            drain: None,
            last_publish: Millis(0),
            last_pool_review: Millis(0),
            directory: UserDirectory::default(),
            routes: RouteCache::new(ROUTE_CACHE_USERS),
            route_watchers: RouteWatchers::default(),
            topic_owner: TopicShards::default(),
            topics: LocalTopics::default(),
            outboxes: push::Outboxes::default(),
            requests: push::PendingRequests::default(),
            accepted: push::AcceptedPushes::default(),
            paced: Vec::new(),
            fanout_samples: Vec::new(),
            app_names: names::Interner::new(names::MAX_APPS),
            device_names: names::Interner::new(names::MAX_DEVICE_LABELS),
            metrics: ShardMetrics::new(index),
            outbox_waiting: false,
            pending_flush: Vec::new(),
            wake,
            urgent,
            rejections: rejections::RejectionLog::default(),
        })
    }

    /// Queues an SQE, flushing the submission queue to the kernel when it
    /// is full. Memory the entry points to must stay put until completion.
    fn push(&mut self, entry: squeue::Entry) {
        self.push_linked(std::slice::from_ref(&entry));
    }

    /// Queues entries in one piece, flushing the submission queue first
    /// when they do not fit: a chain of linked entries split over two
    /// submissions would lose its link.
    fn push_linked(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every entry built by the shard points into memory the
            // shard keeps alive until the entry's completion arrives.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::warn!(shard = self.index, "submit with a full queue failed: {e}");
            }
        }
    }

    /// Runs the shard until it has drained after a shutdown request.
    pub fn run(mut self) -> Result<(), ShardError> {
        self.arm_accepts();
        self.arm_doorbell();
        self.control.arm_accept(&mut self.ring);
        self.publish();
        tracing::info!(
            shard = self.index,
            cpu = ?self.shard_cfg.cpu,
            max_connections = self.shard_cfg.settings.max_connections,
            accept = if self.multishot_accept { "multishot" } else { "pool (peer addresses)" },
            incremental_buffers = self.bufs.is_incremental(),
            idle_wake_batching = self.wake.is_enabled(),
            "shard running"
        );
        loop {
            self.wait()?;
            let now = self.clock.now();
            self.process_completions(now);
            self.apply_backend_outcomes(now);
            self.drain_mailboxes(now);
            self.handle_control_requests(now);
            self.run_timers(now);
            self.run_paced(now);
            if !self.requests.is_empty() {
                self.expire_requests(now);
            }
            self.outbox_waiting = self.flush_outboxes();
            self.flush_deliveries();
            self.control.expire(&mut self.ring, now);
            self.control.flush_sends(&mut self.ring);
            self.rearm_receives();
            self.bufs.commit();
            if self.drain_step(now) == Some(true) {
                break;
            }
            if now.since(self.last_publish) >= PUBLISH_MS {
                self.publish();
                self.log_rejections(now);
                self.last_publish = now;
            }
            if now.since(self.last_pool_review) >= POOL_REVIEW_MS {
                self.bufs.review();
                self.last_pool_review = now;
            }
        }
        self.publish();
        tracing::info!(shard = self.index, "shard stopped");
        Ok(())
    }

    fn publish(&mut self) {
        self.stats.connections = self.conns.len() as u64;
        self.stats.mailbox_depth = self.shared.mailboxes.depth(self.index) as u64;
        self.stats.directory_sessions = self.directory.len() as u64;
        self.stats.paced_deliveries = self.paced.len() as u64;
        self.stats.app_names = self.app_names.len() as u64;
        self.stats.device_labels = self.device_names.len() as u64;
        let control = self.control.counters();
        self.stats.control_connections = self.control.connections() as u64;
        self.stats.control_refused = control.refused;
        self.stats.control_head_timeouts = control.head_timeouts;
        self.stats.control_idle_closes = control.idle_closes;
        self.shared.stats[self.index].publish(&self.stats);
        self.metrics.publish(&self.stats, &mut self.fanout_samples);
    }

    /// Logs the rejected handshakes counted since the last summary, one
    /// line per error code, at most once per `rejections::SUMMARY_MS`.
    pub(super) fn log_rejections(&mut self, now: Millis) {
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

    fn process_completions(&mut self, now: Millis) {
        // Completions are copied out first: handling them queues new SQEs.
        loop {
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if cqes.is_empty() {
                self.cqes = cqes;
                return;
            }
            for &(user_data, res, flags) in &cqes {
                let Some(tag) = OpTag::decode(user_data) else {
                    continue;
                };
                self.dispatch(now, tag, res, flags);
            }
            cqes.clear();
            self.cqes = cqes;
        }
    }

    fn dispatch(&mut self, now: Millis, tag: OpTag, res: i32, flags: u32) {
        if !tag.kind.is_client_traffic() {
            self.wake.note_busy(now);
        }
        if tag.kind == OpKind::ControlAccept && res >= 0 {
            self.watch_control_conn(res);
        }
        match tag.kind {
            OpKind::AcceptMulti => {
                if !cqueue::more(flags) {
                    self.arm_accepts();
                }
                self.on_accept(now, res, None);
            }
            OpKind::AcceptOne => {
                let i = tag.index as usize;
                let peer = (res >= 0)
                    .then(|| self.accept_addrs.get(i).and_then(|a| sockaddr_ip(&a.0)))
                    .flatten();
                self.arm_accept_slot(i);
                self.on_accept(now, res, peer);
            }
            OpKind::Recv => self.on_recv(now, tag, res, flags),
            OpKind::Send => self.on_send(now, tag, res),
            OpKind::Shutdown => self.on_shutdown(tag),
            OpKind::Cancel => {}
            OpKind::BackendConnect
            | OpKind::BackendLinkTimeout
            | OpKind::BackendSend
            | OpKind::BackendRecv
            | OpKind::BackendClose
            | OpKind::BackendTimer => self.on_backend(now, tag, res),
            OpKind::Close => self.on_close(tag),
            OpKind::Doorbell => {
                self.arm_doorbell();
                self.on_doorbell(now);
            }
            OpKind::UrgentPoll => self.urgent.on_poll_done(),
            OpKind::UrgentTimeout => {}
            OpKind::ControlAccept
            | OpKind::ControlRecv
            | OpKind::ControlSend
            | OpKind::ControlClose => {
                self.control
                    .on_completion(&mut self.ring, now, tag, res, flags)
            }
        }
    }

    fn arm_doorbell(&mut self) {
        let buf: *mut u64 = &mut *self.doorbell_buf;
        let entry = opcode::Read::new(types::Fd(self.doorbell.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(OpTag::new(OpKind::Doorbell, 0).encode());
        self.push(entry);
    }

    fn arm_accepts(&mut self) {
        if self.drain.is_some() {
            return;
        }
        let Some(listener) = &self.listener else {
            return;
        };
        let fd = types::Fd(listener.as_raw_fd());
        if self.multishot_accept {
            let entry = opcode::AcceptMulti::new(fd)
                .allocate_file_index(true)
                .build()
                .user_data(OpTag::new(OpKind::AcceptMulti, 0).encode());
            self.push(entry);
        } else {
            for i in 0..self.accept_addrs.len() {
                self.arm_accept_slot(i);
            }
        }
    }

    fn arm_accept_slot(&mut self, i: usize) {
        if self.drain.is_some() {
            return;
        }
        let (Some(listener), Some(slot)) = (&self.listener, self.accept_addrs.get_mut(i)) else {
            return;
        };
        slot.1 = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let entry = opcode::Accept::new(
            types::Fd(listener.as_raw_fd()),
            (&mut slot.0 as *mut libc::sockaddr_storage).cast(),
            &mut slot.1,
        )
        .file_index(Some(types::DestinationSlot::auto_target()))
        .build()
        .user_data(OpTag::new(OpKind::AcceptOne, i as u32).encode());
        self.push(entry);
    }

    fn run_timers(&mut self, now: Millis) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(now, &mut fired);
        for key in fired.drain(..) {
            self.on_timer(now, key);
        }
        self.fired = fired;
    }

    /// Makes sure the wheel will visit connection `key` by its deadline.
    fn arm_timer(&mut self, now: Millis, key: u32) {
        let Some(conn) = self.conns.get(key as usize) else {
            return;
        };
        if let Some(deadline) = conn.deadline(&self.settings.server, now) {
            self.wheel.arm(key, deadline);
        }
    }
}

/// The IP address in a sockaddr the kernel filled.
fn sockaddr_ip(sa: &libc::sockaddr_storage) -> Option<std::net::IpAddr> {
    match i32::from(sa.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}
