//! One shard's io_uring driver: a pinned thread that owns an io_uring
//! ring, a client listener, a receive buffer pool, the control listener
//! and the backend client, around the shard's sans-IO [`ShardCore`]. It
//! turns completions into the core's inputs and the core's actions into
//! submissions; the decisions are the core's. Nothing here is shared with
//! other shards except read-only settings, the published counters, the
//! mailboxes and the doorbell that wakes the shard.

mod actions;
mod completions;
mod waiting;
mod wake;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{IoUring, squeue};
use protocol::auth::TokenVerifier;
use protocol::time::Millis;
use socket2::Socket;
use tuning::config::ResolvedShard;

use crate::clock::Clock;
use crate::control::ControlServer;
use crate::control::limits::ControlLimits;
use crate::metrics::ShardMetrics;
use crate::settings::{REFUSAL_SLACK, Settings};
use crate::shard_core::{Action, Message, ShardCore};
use crate::shared::Shared;
use crate::uring::bufring::BufRing;
use crate::uring::ring::{self, BUF_GROUP, RingError, RingSpec};
use crate::uring::sq::push_until_queued;
use crate::uring::urgent::UrgentWatch;

use wake::WakeBatching;

/// Single-shot accepts kept in flight when admission needs peer addresses.
const ACCEPT_POOL: usize = 32;
/// How often a shard copies its counters to where others can read them.
const PUBLISH_MS: u64 = 250;
/// How often the receive pool's window is fitted to recent traffic.
const POOL_REVIEW_MS: u64 = 2_000;

/// Why a shard could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The ring, its descriptor table or its receive pool could not be set
    /// up.
    #[error("shard {shard}: {source}")]
    Ring {
        /// Shard index.
        shard: usize,
        /// What failed.
        source: RingError,
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

/// One shard's driver. Field order matters: the ring is dropped before
/// the buffer pool whose memory it points into.
pub struct Shard {
    ring: IoUring,
    bufs: BufRing,
    core: ShardCore,
    index: usize,
    shard_cfg: ResolvedShard,
    shared: Arc<Shared>,
    listener: Option<Socket>,
    doorbell: Arc<OwnedFd>,
    doorbell_buf: Box<u64>,
    accept_addrs: Box<[(libc::sockaddr_storage, libc::socklen_t)]>,
    multishot_accept: bool,
    control: ControlServer,
    backend: crate::backend::Backend,
    clock: Clock,
    cqes: Vec<(u64, i32, u32)>,
    /// The core's actions being performed (storage kept across turns).
    actions: Vec<Action>,
    /// Mail taken from this shard's inbox (storage kept across turns).
    inbox: Vec<Message>,
    last_publish: Millis,
    last_pool_review: Millis,
    metrics: ShardMetrics,
    wake: WakeBatching,
    /// Ends a batched wait when a push, request or connection arrives.
    urgent: UrgentWatch,
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
        let spec = RingSpec {
            sq_entries: s.ring_entries,
            cq_entries: s.ring_entries.saturating_mul(4),
            defer_taskrun: true,
            files: s.max_connections + REFUSAL_SLACK,
            buffers: s.buffer_count,
            buffer_size: s.buffer_size,
        };
        let (ring, bufs) = ring::build(&spec).map_err(|source| ShardError::Ring {
            shard: index,
            source,
        })?;
        let min_wait = ring.params().is_feature_min_timeout();
        let cq_entries = ring.params().cq_entries();
        let clock = Clock::start();
        let wake = WakeBatching::new(
            s.idle_batch_ms,
            s.idle_batch_after_ms,
            min_wait,
            cq_entries,
            clock.now(),
        );
        let core = ShardCore::new(
            index,
            settings.clone(),
            verifier,
            shared.push_ids.clone(),
            shared.clone(),
            clock.time(),
        );
        let multishot_accept = !core.needs_peer_address();
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
        let backend = crate::backend::Backend::new(&settings.config, index).map_err(|source| {
            ShardError::Backend {
                shard: index,
                source,
            }
        })?;
        Ok(Self {
            ring,
            bufs,
            core,
            index,
            shard_cfg,
            control,
            backend,
            shared,
            listener: Some(listener),
            doorbell,
            doorbell_buf: Box::new(0),
            accept_addrs,
            multishot_accept,
            clock,
            cqes: Vec::with_capacity(1024),
            actions: Vec::new(),
            inbox: Vec::new(),
            last_publish: Millis(0),
            last_pool_review: Millis(0),
            metrics: ShardMetrics::new(index),
            wake,
            urgent,
        })
    }

    /// Queues an SQE, flushing the submission queue to the kernel when it
    /// is full. Memory the entry points to must stay put until completion.
    fn push(&mut self, entry: squeue::Entry) {
        self.push_linked(std::slice::from_ref(&entry));
    }

    /// Queues entries in one piece (see [`crate::uring::sq::push`]).
    fn push_linked(&mut self, entries: &[squeue::Entry]) {
        // SAFETY: every entry the driver builds (the doorbell read, the
        // accepts, client stream operations, the urgent watch) points only
        // into memory the shard keeps alive and unmoved until the entry's
        // completion: boxed buffers and addresses, connection slots not
        // freed while an operation is in flight, boxed timespecs.
        unsafe { push_until_queued(&mut self.ring, entries) };
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
            let t = self.clock.time();
            let now = t.now;
            self.process_completions(t);
            self.apply_backend_outcomes(t);
            self.read_inbox(t);
            self.handle_control_requests(t);
            self.core.on_tick(t);
            self.core.end_turn();
            self.settle(t);
            self.control.expire(&mut self.ring, now);
            self.control.flush_sends(&mut self.ring);
            self.bufs.commit();
            let done = self.core.drain_step(t) == Some(true);
            self.settle(t);
            if done {
                break;
            }
            if now.since(self.last_publish) >= PUBLISH_MS {
                self.publish();
                self.core.log_rejections(now);
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

    /// Copies the core's counters, with the driver's own, to where the
    /// control API and the metrics read them.
    fn publish(&mut self) {
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

    /// Performs what the core asked for and writes its mail, until it asks
    /// for nothing more.
    fn settle(&mut self, t: crate::shard_core::Time) {
        loop {
            self.perform_actions(t);
            if !self.core.has_mail() {
                break;
            }
            let (mailboxes, bell, from) = (&self.shared.mailboxes, &*self.shared, self.index);
            // Mail held back for a full inbox is retried at the core's
            // next deadline (one millisecond on).
            self.core
                .flush_mail(t, &mut |to, msg| mailboxes.send(from, to, msg, bell));
            if !self.core.has_actions() {
                break;
            }
        }
    }

    /// Hands the mail waiting in this shard's inbox to the core.
    fn read_inbox(&mut self, t: crate::shard_core::Time) {
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
        self.settle(t);
    }
}
