//! One shard's event loop on its own io_uring ring: set-up, the wait loop,
//! schedules and completion routing. Connection set-up and tear-down live
//! in [`dial`], data and session events in [`traffic`].

mod dial;
mod traffic;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway::uring::bufring::BufRing;
use gateway::uring::ring::{self, BUF_GROUP, RingError, RingSpec};
use io_uring::{IoUring, cqueue, squeue, types};
use protocol::time::Millis;

use super::conn::{Conn, Phase};
use super::ops::{Op, Tag};
use super::timers::Timers;
use super::{SeqStat, ShardLink, ShardPlan, ShardResult};
use crate::schedule::Schedule;
use crate::stamp::wall_us;
use crate::wire::WireEvent;

/// Receive buffers per shard (the provided-buffer ring).
const RECV_BUFFERS: u32 = 4096;
/// Size of each receive buffer.
const RECV_BUFFER_SIZE: u32 = 4096;
/// Longest the loop sleeps without a due event.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How long a reconnecting slot's token stays valid.
const TOKEN_TTL_S: u64 = 24 * 3600;

/// Why a shard could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The ring, its descriptor table or its receive pool could not be set
    /// up (the gateway's own ring set-up, `gateway::uring::ring`).
    #[error("shard {shard}: {source}")]
    Ring {
        /// Shard index.
        shard: u32,
        /// What failed.
        source: RingError,
    },
    /// Waiting on the ring failed.
    #[error("shard {shard}: io_uring_enter failed: {source}")]
    Enter {
        /// Shard index.
        shard: u32,
        /// OS error.
        source: io::Error,
    },
    /// A token could not be minted.
    #[error("shard {shard}: cannot mint a token: {reason}")]
    Token {
        /// Shard index.
        shard: u32,
        /// Why.
        reason: String,
    },
}

/// The `1` that boolean socket options point to (static: stable address).
static ONE: libc::c_int = 1;

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Runs `plan` until `link.stop` is set; returns what it measured.
pub fn run_shard(plan: &ShardPlan, link: &Arc<ShardLink>) -> Result<ShardResult, ShardError> {
    let mut s = Shard::new(plan, link)?;
    s.run()?;
    Ok(s.finish())
}

struct Shard<'a> {
    // Field order: the ring drops before the buffer memory it points into.
    ring: IoUring,
    bufs: BufRing,
    plan: &'a ShardPlan,
    link: &'a ShardLink,
    conns: Vec<Conn>,
    target: Box<libc::sockaddr_in>,
    sources: Box<[libc::sockaddr_in]>,
    epoch: Instant,
    connects: Schedule,
    churn: Option<Schedule>,
    uplinks: Option<Schedule>,
    timers: Timers,
    pending_uplinks: HashMap<(u32, u64), u64>,
    res: ShardResult,
    events: Vec<WireEvent>,
    out: Vec<u8>,
    cqes: Vec<(u64, i32, u32)>,
    resolved: u64,
    established_now: u64,
    rng: u64,
    churn_cursor: usize,
    uplink_cursor: usize,
    last_publish: Instant,
    last_connect_issue: Option<Instant>,
    churn_started: Option<Instant>,
    churn_issued: u64,
    churn_last: Option<Instant>,
}

impl<'a> Shard<'a> {
    fn new(plan: &'a ShardPlan, link: &'a Arc<ShardLink>) -> Result<Self, ShardError> {
        let shard = plan.index;
        let spec = RingSpec {
            sq_entries: 4096,
            cq_entries: 16_384,
            defer_taskrun: false,
            files: plan.count.max(1),
            buffers: RECV_BUFFERS,
            buffer_size: RECV_BUFFER_SIZE,
        };
        let (ring, bufs) =
            ring::build(&spec).map_err(|source| ShardError::Ring { shard, source })?;
        let sources: Box<[libc::sockaddr_in]> = plan
            .sources
            .iter()
            .map(|ip| sockaddr(SocketAddrV4::new(*ip, 0)))
            .collect();
        let epoch = Instant::now();
        let res = ShardResult {
            seqs: vec![SeqStat::default(); usize::try_from(plan.expected_msgs).unwrap_or(0)],
            first_intended_us: wall_us(),
            ..ShardResult::default()
        };
        Ok(Self {
            ring,
            bufs,
            plan,
            link,
            conns: (0..plan.count).map(|_| Conn::idle()).collect(),
            target: Box::new(sockaddr(plan.target)),
            sources,
            epoch,
            connects: Schedule::new(epoch, plan.connect_rate, u64::from(plan.count)),
            churn: None,
            uplinks: None,
            timers: Timers::default(),
            pending_uplinks: HashMap::new(),
            res,
            events: Vec::new(),
            out: Vec::new(),
            cqes: Vec::new(),
            resolved: 0,
            established_now: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(plan.index + 1) ^ plan.first_user,
            churn_cursor: 0,
            uplink_cursor: 0,
            last_publish: epoch,
            last_connect_issue: None,
            churn_started: None,
            churn_issued: 0,
            churn_last: None,
        })
    }
    fn now_ms(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
    fn ns_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
    fn push(&mut self, sqe: squeue::Entry) -> Result<(), ShardError> {
        // SAFETY: every buffer and address an SQE points to lives in `self`
        // (boxed or in a connection slot not touched until its completion).
        unsafe { gateway::uring::sq::push(&mut self.ring, std::slice::from_ref(&sqe)) }.map_err(
            |e| ShardError::Enter {
                shard: self.plan.index,
                source: std::io::Error::other(e),
            },
        )
    }
    fn run(&mut self) -> Result<(), ShardError> {
        while !self.link.stop.load(Ordering::Relaxed) {
            self.issue_due()?;
            let wait = self.wait_time();
            let ts = types::Timespec::from(wait);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(source) => {
                    return Err(ShardError::Enter {
                        shard: self.plan.index,
                        source,
                    });
                }
            }
            self.cqes.clear();
            self.cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            let cqes = std::mem::take(&mut self.cqes);
            for &(ud, res, flags) in &cqes {
                self.complete(ud, res, flags)?;
            }
            self.cqes = cqes;
            self.bufs.commit();
            self.run_timers()?;
            self.publish(false);
        }
        self.publish(true);
        Ok(())
    }
    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        let mut until = now + MAX_WAIT;
        for t in [
            self.connects.next_due(),
            self.churn.as_ref().and_then(Schedule::next_due),
            self.uplinks.as_ref().and_then(Schedule::next_due),
        ]
        .into_iter()
        .flatten()
        {
            until = until.min(t);
        }
        if let Some(at) = self.timers.next() {
            until = until.min(self.epoch + Duration::from_millis(at.as_u64()));
        }
        until
            .saturating_duration_since(now)
            .max(Duration::from_micros(50))
    }
    fn issue_due(&mut self) -> Result<(), ShardError> {
        let now = Instant::now();
        let paced = self.connects.is_paced();
        while let Some((i, due)) = self.connects.pop_due(now) {
            if paced {
                self.record_lag(now, due);
            }
            let slot = u32::try_from(i).unwrap_or(u32::MAX);
            let intended = self.ns_of(due);
            self.start_connect(slot, intended, false)?;
            self.last_connect_issue = Some(Instant::now());
        }
        if self.churn.is_none() && self.uplinks.is_none() && self.connect_phase_over() {
            self.begin_hold(now);
        }
        if let Some(mut churn) = self.churn.take() {
            while let Some((_, due)) = churn.pop_due(now) {
                self.record_lag(now, due);
                self.churn_started.get_or_insert(due);
                self.churn_issued += 1;
                self.churn_last = Some(now);
                self.churn_one(self.ns_of(due))?;
            }
            self.churn = Some(churn);
        }
        if let Some(mut up) = self.uplinks.take() {
            while let Some((_, due)) = up.pop_due(now) {
                self.record_lag(now, due);
                self.uplink_one(due)?;
            }
            self.uplinks = Some(up);
        }
        Ok(())
    }
    fn record_lag(&mut self, now: Instant, due: Instant) {
        let lag = u64::try_from(now.saturating_duration_since(due).as_micros()).unwrap_or(u64::MAX);
        self.res.lag.record_us(lag);
    }
    fn connect_phase_over(&self) -> bool {
        self.connects.done() && self.resolved >= u64::from(self.plan.count)
    }
    fn begin_hold(&mut self, now: Instant) {
        self.link
            .counters
            .connect_done
            .store(true, Ordering::Relaxed);
        // Bounded schedules: a slow coordinator (late to see the connect
        // phase end, or to stop the shard) must not stretch the run.
        self.churn = Some(Schedule::new(
            now,
            self.plan.churn_rate,
            if self.plan.churn_rate > 0.0 {
                self.plan.churn_total
            } else {
                0
            },
        ));
        self.uplinks = Some(Schedule::new(
            now,
            self.plan.uplink_rate,
            if self.plan.uplink_rate > 0.0 {
                self.plan.uplink_total
            } else {
                0
            },
        ));
    }
    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> Result<(), ShardError> {
        let Some(tag) = Tag::decode(ud) else {
            return Ok(());
        };
        let bid = cqueue::buffer_select(flags);
        let current = self
            .conns
            .get(tag.index as usize)
            .is_some_and(|c| tag.is_for(u32::from(c.generation)));
        if !current {
            if let Some(bid) = bid {
                self.release_buffer(bid, res, flags);
            }
            if tag.kind == Op::Send
                && let Some(c) = self.conns.get_mut(tag.index as usize)
            {
                // A send of an earlier incarnation finished: its buffer is free.
                c.life.finish(gateway::stream::Pending::Send);
            }
            return Ok(());
        }
        match tag.kind {
            Op::Socket | Op::SockOpt | Op::Bind if res == -libc::ECANCELED => {}
            Op::Socket | Op::SockOpt | Op::Bind => {
                // Only failures are posted (SKIP_SUCCESS); the Connect that
                // follows is cancelled and reports the end of the chain.
                self.note_failure(format!(
                    "{}: {}",
                    tag.kind.name(),
                    io::Error::from_raw_os_error(-res)
                ));
                if let Some(c) = self.conns.get_mut(tag.index as usize) {
                    c.phase = Phase::Dead;
                }
            }
            Op::Connect => self.on_connect(tag.index, res)?,
            Op::Send => self.on_send(tag.index, res)?,
            Op::Recv => self.on_recv(tag.index, res, flags, bid)?,
            Op::Shutdown => {}
            Op::Close => self.on_close(tag.index)?,
        }
        Ok(())
    }
    fn publish(&mut self, force: bool) {
        if !force && self.last_publish.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_publish = Instant::now();
        if self.connect_phase_over() {
            self.link
                .counters
                .connect_done
                .store(true, Ordering::Relaxed);
        }
    }
    fn finish(mut self) -> ShardResult {
        // Attempts per second of issuing: n attempts span n-1 intervals.
        if let Some(last) = self.last_connect_issue {
            let n = self.connects.issued();
            let span = last.saturating_duration_since(self.epoch).as_secs_f64();
            self.res.connect_issue_rate = if n > 1 && span > 0.0 {
                (n - 1) as f64 / span
            } else {
                0.0
            };
        }
        // Intervals between the first and the last issue, as for connects:
        // a bounded schedule ends before the coordinator stops the shard.
        if let (Some(start), Some(last)) = (self.churn_started, self.churn_last) {
            let span = last.saturating_duration_since(start).as_secs_f64();
            if self.churn_issued > 1 && span > 0.0 {
                self.res.churn_issue_rate = (self.churn_issued - 1) as f64 / span;
            }
        }
        self.res
    }
}
