//! The io_uring driver of one shard: a pinned thread that owns an io_uring
//! ring, a client listener, a receive buffer pool and the control
//! listener, around the shard's [`Shell`] (its sans-IO core, control
//! server and backend client). It turns completions into their inputs and
//! their actions and operations into submissions; the decisions are
//! theirs. Nothing here is shared with other shards except read-only
//! settings, the published counters, the mailboxes and the doorbell.

mod actions;
mod completions;
mod fd_io;
mod waiting;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{IoUring, squeue};
use protocol::auth::TokenVerifier;
use protocol::time::Millis;
use socket2::Socket;
use tuning::config::ResolvedShard;

use super::ShardError;
use super::shell::Shell;
use super::sockets::ClientListener;
use crate::settings::{REFUSAL_SLACK, Settings};
use crate::shard_core::ListenerKind;
use crate::shared::Shared;
use crate::uring::bufring::BufRing;
use crate::uring::ring::{self, BUF_GROUP, RingSpec};
use crate::uring::sq::push_until_queued;
use crate::uring::urgent::UrgentWatch;

use crate::driver::wake::WakeBatching;

/// Single-shot accepts kept in flight when admission needs peer addresses.
pub(super) const ACCEPT_POOL: usize = 32;
/// How often the receive pool's window is fitted to recent traffic.
const POOL_REVIEW_MS: u64 = 2_000;

/// The ring and what its submissions point into. Field order matters: the
/// ring is dropped before the buffer pool whose memory it points into.
pub struct RingIo {
    ring: IoUring,
    bufs: BufRing,
    index: usize,
    /// The client listeners (emptied by a drain).
    listeners: Vec<ClientListener>,
    /// What each client listener speaks, by index (kept after a drain for
    /// the accepts still completing).
    listener_kinds: Vec<ListenerKind>,
    control_listener: Socket,
    doorbell: Arc<OwnedFd>,
    doorbell_buf: Box<u64>,
    /// Peer addresses of the single-shot accepts in flight:
    /// [`ACCEPT_POOL`] per listener, listener by listener.
    accept_addrs: Box<[(libc::sockaddr_storage, libc::socklen_t)]>,
    multishot_accept: bool,
    /// The timeout linked to the latest backend connect (read by the
    /// kernel when it is submitted).
    connect_timeout: Box<io_uring::types::Timespec>,
    /// Ends a batched wait when a push, request or connection arrives.
    urgent: UrgentWatch,
}

/// One shard on io_uring.
pub struct Shard {
    io: RingIo,
    shell: Shell,
    shard_cfg: ResolvedShard,
    cqes: Vec<(u64, i32, u32)>,
    last_pool_review: Millis,
    wake: WakeBatching,
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
        listeners: Vec<ClientListener>,
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
        let shell = Shell::build(index, &settings, shared.clone(), verifier)?;
        let wake = WakeBatching::new(
            s.idle_batch_ms,
            s.idle_batch_after_ms,
            min_wait,
            cq_entries,
            shell.clock.now(),
        );
        let multishot_accept = !shell.core.needs_peer_address();
        let pool = if multishot_accept {
            0
        } else {
            ACCEPT_POOL * listeners.len()
        };
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let accept_addrs = vec![(zero, 0); pool].into_boxed_slice();
        let doorbell = shared.doorbells[index].clone();
        let urgent = UrgentWatch::new()
            .and_then(|u| {
                u.add(doorbell.as_raw_fd())?;
                for l in &listeners {
                    u.add(l.socket.as_raw_fd())?;
                }
                u.add(control_listener.as_raw_fd())?;
                Ok(u)
            })
            .map_err(|source| ShardError::Urgent {
                shard: index,
                source,
            })?;
        let io = RingIo {
            ring,
            bufs,
            index,
            listener_kinds: listeners.iter().map(|l| l.kind).collect(),
            listeners,
            control_listener,
            doorbell,
            doorbell_buf: Box::new(0),
            accept_addrs,
            multishot_accept,
            connect_timeout: Box::new(io_uring::types::Timespec::new()),
            urgent,
        };
        Ok(Self {
            io,
            shell,
            shard_cfg,
            cqes: Vec::with_capacity(1024),
            last_pool_review: Millis(0),
            wake,
        })
    }

    /// Runs the shard until it has drained after a shutdown request.
    pub fn run(mut self) -> Result<(), ShardError> {
        self.arm_accepts();
        self.io.arm_doorbell();
        self.io.arm_control_accept();
        self.shell.publish();
        tracing::info!(
            shard = self.shell.index,
            cpu = ?self.shard_cfg.cpu,
            driver = "io_uring",
            max_connections = self.shard_cfg.settings.max_connections,
            accept = if self.io.multishot_accept { "multishot" } else { "pool (peer addresses)" },
            incremental_buffers = self.io.bufs.is_incremental(),
            idle_wake_batching = self.wake.is_enabled(),
            "shard running"
        );
        loop {
            self.wait()?;
            let t = self.shell.clock.time();
            self.process_completions(t);
            self.shell.turn(&mut self.io, t);
            self.io.bufs.commit();
            if self.shell.end_turn(&mut self.io, t) {
                break;
            }
            if t.now.since(self.last_pool_review) >= POOL_REVIEW_MS {
                self.io.bufs.review();
                self.last_pool_review = t.now;
            }
        }
        self.shell.publish();
        tracing::info!(shard = self.shell.index, "shard stopped");
        Ok(())
    }
}

impl RingIo {
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

    /// Queues entries in one piece for memory the caller vouches for.
    ///
    /// # Safety
    /// What the entries point to must stay alive and unmoved until their
    /// completion (a timespec: until their submission).
    unsafe fn push_unchecked(&mut self, entries: &[squeue::Entry]) {
        // SAFETY: the caller's promise, passed on.
        unsafe { push_until_queued(&mut self.ring, entries) };
    }
}
