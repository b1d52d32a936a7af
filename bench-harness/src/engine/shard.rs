//! One shard's event loop on its own io_uring ring.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway::uring::bufring::{BufRing, BufRingError};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use protocol::auth::{Claims, mint_hs256};
use protocol::time::Millis;

use super::conn::{Conn, Phase};
use super::ops::{Op, Tag};
use super::timers::Timers;
use super::{SeqStat, ShardLink, ShardPlan, ShardResult};
use crate::schedule::Schedule;
use crate::stamp::wall_us;
use crate::wire::{ClientWire, Identity, WireEvent};

/// Receive buffers per shard (the provided-buffer ring).
const RECV_BUFFERS: u32 = 4096;
/// Size of each receive buffer.
const RECV_BUFFER_SIZE: u32 = 4096;
/// Buffer group id.
const BUF_GROUP: u16 = 0;
/// Longest the loop sleeps without a due event.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How long a reconnecting slot's token stays valid.
const TOKEN_TTL_S: u64 = 24 * 3600;

/// Why a shard could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The ring could not be created.
    #[error("shard {shard}: cannot create io_uring ring: {source}")]
    Ring {
        /// Shard index.
        shard: u32,
        /// OS error.
        source: io::Error,
    },
    /// The direct-descriptor table could not be registered.
    #[error(
        "shard {shard}: cannot register {slots} direct descriptors (bounded by RLIMIT_NOFILE): {source}"
    )]
    Files {
        /// Shard index.
        shard: u32,
        /// Slots requested.
        slots: u32,
        /// OS error.
        source: io::Error,
    },
    /// The receive buffer ring could not be set up.
    #[error("shard {shard}: {source}")]
    Buffers {
        /// Shard index.
        shard: u32,
        /// What failed.
        source: BufRingError,
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
}

impl<'a> Shard<'a> {
    fn new(plan: &'a ShardPlan, link: &'a Arc<ShardLink>) -> Result<Self, ShardError> {
        let shard = plan.index;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_cqsize(16_384)
            .build(4096)
            .map_err(|source| ShardError::Ring { shard, source })?;
        let slots = plan.count.max(1);
        ring.submitter()
            .register_files_sparse(slots)
            .map_err(|source| ShardError::Files {
                shard,
                slots,
                source,
            })?;
        let bufs = BufRing::new(&ring, BUF_GROUP, RECV_BUFFERS, RECV_BUFFER_SIZE)
            .map_err(|source| ShardError::Buffers { shard, source })?;
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
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.ring.submit().map_err(|source| ShardError::Enter {
                shard: self.plan.index,
                source,
            })?;
        }
        Ok(())
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
        // Open-ended schedules: they run until the coordinator stops the shard.
        self.churn = Some(Schedule::new(
            now,
            self.plan.churn_rate,
            if self.plan.churn_rate > 0.0 {
                u64::MAX
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

    fn identity(&self, slot: u32) -> Result<Identity, ShardError> {
        let user = format!("u{}", self.plan.first_user + u64::from(slot));
        let token = if self.plan.peer == crate::wire::PeerKind::Gateway {
            let claims = Claims {
                sub: user.clone(),
                exp: Some(wall_us() / 1_000_000 + TOKEN_TTL_S),
                ..Claims::default()
            };
            mint_hs256(self.plan.jwt_secret.as_bytes(), &claims).map_err(|e| ShardError::Token {
                shard: self.plan.index,
                reason: e.to_string(),
            })?
        } else {
            String::new()
        };
        Ok(Identity {
            user,
            token,
            heartbeat_ms: self.plan.heartbeat_ms,
        })
    }

    fn start_connect(
        &mut self,
        slot: u32,
        intended_ns: u64,
        is_reconnect: bool,
    ) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.generation = conn.generation.wrapping_add(1);
        conn.phase = Phase::Connecting;
        conn.intended_ns = intended_ns;
        conn.is_reconnect = is_reconnect;
        conn.reconnect_after_close = false;
        conn.wire = None;
        conn.seen = Vec::new();
        let generation = conn.generation;
        self.link.counters.attempts.fetch_add(1, Ordering::Relaxed);
        self.res.attempts += 1;
        let tag = |op| {
            Tag {
                op,
                generation,
                slot,
            }
            .encode()
        };
        let fixed = types::Fixed(slot);
        let link = squeue::Flags::IO_LINK;
        let quiet = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(slot) else {
            return Ok(());
        };
        let sock = opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
            .file_index(Some(dest))
            .build()
            .flags(quiet)
            .user_data(tag(Op::Socket));
        self.push(sock)?;
        let optval = (&raw const ONE).cast::<libc::c_void>();
        let optlen = std::mem::size_of::<libc::c_int>() as u32;
        let nodelay = opcode::SetSockOpt::new(
            fixed,
            libc::IPPROTO_TCP as u32,
            libc::TCP_NODELAY as u32,
            optval,
            optlen,
        )
        .build()
        .flags(quiet)
        .user_data(tag(Op::SockOpt));
        self.push(nodelay)?;
        if !self.sources.is_empty() {
            let src: *const libc::sockaddr_in =
                &raw const self.sources[slot as usize % self.sources.len()];
            let noport = opcode::SetSockOpt::new(
                fixed,
                libc::IPPROTO_IP as u32,
                libc::IP_BIND_ADDRESS_NO_PORT as u32,
                optval,
                optlen,
            )
            .build()
            .flags(quiet)
            .user_data(tag(Op::SockOpt));
            self.push(noport)?;
            let bind = opcode::Bind::new(
                fixed,
                src.cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
            .build()
            .flags(quiet)
            .user_data(tag(Op::Bind));
            self.push(bind)?;
        }
        let _ = link;
        let connect = opcode::Connect::new(
            fixed,
            (&raw const *self.target).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
        .build()
        .user_data(tag(Op::Connect));
        self.push(connect)
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> Result<(), ShardError> {
        let Some(tag) = Tag::decode(ud) else {
            return Ok(());
        };
        let bid = cqueue::buffer_select(flags);
        let current = self
            .conns
            .get(tag.slot as usize)
            .is_some_and(|c| c.generation == tag.generation);
        if !current {
            if let Some(bid) = bid {
                self.release_buffer(bid, res, flags);
            }
            if tag.op == Op::Send
                && let Some(c) = self.conns.get_mut(tag.slot as usize)
            {
                // A send of an earlier incarnation finished: its buffer is free.
                c.send_in_flight = false;
            }
            return Ok(());
        }
        match tag.op {
            Op::Socket | Op::SockOpt | Op::Bind if res == -libc::ECANCELED => {}
            Op::Socket | Op::SockOpt | Op::Bind => {
                // Only failures are posted (SKIP_SUCCESS); the Connect that
                // follows is cancelled and reports the end of the chain.
                self.note_failure(format!(
                    "{}: {}",
                    tag.op.name(),
                    io::Error::from_raw_os_error(-res)
                ));
                if let Some(c) = self.conns.get_mut(tag.slot as usize) {
                    c.phase = Phase::Dead;
                }
            }
            Op::Connect => self.on_connect(tag.slot, res)?,
            Op::Send => self.on_send(tag.slot, res)?,
            Op::Recv => self.on_recv(tag.slot, res, flags, bid)?,
            Op::Shutdown => {}
            Op::Close => self.on_close(tag.slot)?,
        }
        Ok(())
    }

    fn note_failure(&mut self, why: String) {
        *self.res.failures.entry(why).or_default() += 1;
        self.link.counters.failures.fetch_add(1, Ordering::Relaxed);
    }

    fn resolve_attempt(&mut self) {
        self.resolved += 1;
    }

    fn on_connect(&mut self, slot: u32, res: i32) -> Result<(), ShardError> {
        let elapsed = self.elapsed_since_intended(slot);
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if res < 0 {
            let was_dead = conn.phase == Phase::Dead;
            conn.phase = Phase::Dead;
            if !was_dead {
                self.note_failure(format!("connect: {}", io::Error::from_raw_os_error(-res)));
            }
            if !self.conns[slot as usize].is_reconnect {
                self.resolve_attempt();
            }
            return self.close_slot(slot, false);
        }
        self.res.connect.record_us(elapsed);
        conn.phase = Phase::Handshaking;
        let id = self.identity(slot)?;
        let now = self.now_ms();
        let mut wire = ClientWire::new(self.plan.peer, &id, now);
        self.out.clear();
        wire.start(now, &mut self.out);
        if let Some(topic) = &self.plan.subscribe {
            wire.subscribe(&topic.replace("{user}", &id.user), &mut self.out);
        }
        let conn = &mut self.conns[slot as usize];
        conn.wire = Some(wire);
        let generation = conn.generation;
        let out = std::mem::take(&mut self.out);
        self.send(slot, &out)?;
        self.out = out;
        self.arm_recv(slot)?;
        self.timers
            .push(now.saturating_add(10_000), slot, generation);
        Ok(())
    }

    fn elapsed_since_intended(&self, slot: u32) -> u64 {
        let intended = self.conns.get(slot as usize).map_or(0, |c| c.intended_ns);
        let now = self.ns_of(Instant::now());
        now.saturating_sub(intended) / 1000
    }

    fn arm_recv(&mut self, slot: u32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.recv_armed = true;
        let generation = conn.generation;
        let sqe = opcode::RecvMulti::new(types::Fixed(slot), BUF_GROUP)
            .build()
            .user_data(
                Tag {
                    op: Op::Recv,
                    generation,
                    slot,
                }
                .encode(),
            );
        self.push(sqe)
    }

    fn send(&mut self, slot: u32, bytes: &[u8]) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if conn.enqueue(bytes) {
            self.submit_send(slot)?;
        }
        Ok(())
    }

    fn submit_send(&mut self, slot: u32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.send_in_flight = true;
        let rest = &conn.sending[conn.sent..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let sqe = opcode::Send::new(types::Fixed(slot), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(
                Tag {
                    op: Op::Send,
                    generation: conn.generation,
                    slot,
                }
                .encode(),
            );
        self.push(sqe)
    }

    fn on_send(&mut self, slot: u32, res: i32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.send_in_flight = false;
        if res < 0 {
            if matches!(conn.phase, Phase::Handshaking | Phase::Established) {
                self.note_failure(format!("send: {}", io::Error::from_raw_os_error(-res)));
                return self.lose(slot);
            }
            return self.maybe_reconnect(slot);
        }
        let n = usize::try_from(res).unwrap_or(0);
        if conn.sent_some(n) && matches!(conn.phase, Phase::Handshaking | Phase::Established) {
            return self.submit_send(slot);
        }
        self.maybe_reconnect(slot)
    }

    /// Hands back a buffer whose bytes nobody will read.
    fn release_buffer(&mut self, bid: u16, res: i32, flags: u32) {
        let len = usize::try_from(res).unwrap_or(0);
        let (_, done) = self.bufs.take(bid, len, cqueue::buffer_more(flags));
        if done {
            self.bufs.recycle(bid);
        }
    }

    fn on_recv(
        &mut self,
        slot: u32,
        res: i32,
        flags: u32,
        bid: Option<u16>,
    ) -> Result<(), ShardError> {
        if res > 0
            && let Some(bid) = bid
        {
            let len = usize::try_from(res).unwrap_or(0);
            let (data, done) = self.bufs.take(bid, len, cqueue::buffer_more(flags));
            let data = data.to_vec();
            if done {
                self.bufs.recycle(bid);
            }
            self.feed(slot, &data)?;
        } else if let Some(bid) = bid {
            self.release_buffer(bid, res, flags);
        }
        if res == -libc::ENOBUFS {
            // The pool's window was too small for this burst: widen it.
            self.bufs.grow();
        }
        if cqueue::more(flags) {
            return Ok(());
        }
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.recv_armed = false;
        let live = matches!(conn.phase, Phase::Handshaking | Phase::Established);
        if res == -libc::ENOBUFS && live {
            return self.arm_recv(slot);
        }
        if live {
            let why = if res == 0 {
                "closed by peer".to_string()
            } else {
                format!("recv: {}", io::Error::from_raw_os_error(-res))
            };
            self.note_failure(why);
            return self.lose(slot);
        }
        Ok(())
    }

    fn feed(&mut self, slot: u32, data: &[u8]) -> Result<(), ShardError> {
        let now = self.now_ms();
        let mut events = std::mem::take(&mut self.events);
        let mut out = std::mem::take(&mut self.out);
        events.clear();
        out.clear();
        if let Some(wire) = self
            .conns
            .get_mut(slot as usize)
            .and_then(|c| c.wire.as_mut())
        {
            wire.input(now, data, &mut events, &mut out);
        }
        if !out.is_empty() {
            self.send(slot, &out)?;
        }
        for e in events.drain(..) {
            self.on_event(slot, e)?;
        }
        self.events = events;
        self.out = out;
        Ok(())
    }

    fn on_event(&mut self, slot: u32, e: WireEvent) -> Result<(), ShardError> {
        match e {
            WireEvent::Established => {
                let us = self.elapsed_since_intended(slot);
                let Some(conn) = self.conns.get_mut(slot as usize) else {
                    return Ok(());
                };
                conn.phase = Phase::Established;
                let generation = conn.generation;
                if conn.is_reconnect {
                    self.res.reconnect.record_us(us);
                    self.res.reconnects += 1;
                    self.link
                        .counters
                        .reconnects
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    self.res.handshake.record_us(us);
                    self.resolve_attempt();
                }
                self.res.established += 1;
                self.res.last_established_us = wall_us();
                self.established_now += 1;
                self.link
                    .counters
                    .handshakes
                    .fetch_add(1, Ordering::Relaxed);
                self.link
                    .counters
                    .established
                    .store(self.established_now, Ordering::Relaxed);
                let now = self.now_ms();
                let mut out = std::mem::take(&mut self.out);
                out.clear();
                let mut evs = Vec::new();
                let next = self.conns[slot as usize]
                    .wire
                    .as_mut()
                    .and_then(|w| w.tick(now, &mut evs, &mut out));
                if let Some(at) = next {
                    self.timers.push(at, slot, generation);
                }
                self.send(slot, &out)?;
                self.out = out;
            }
            WireEvent::Subscribed => {
                self.link
                    .counters
                    .subscribed
                    .fetch_add(1, Ordering::Relaxed);
            }
            WireEvent::Delivery(stamp) => {
                self.link
                    .counters
                    .deliveries
                    .fetch_add(1, Ordering::Relaxed);
                let Some(st) = stamp.filter(|s| s.seq < self.plan.expected_msgs) else {
                    self.res.unstamped += 1;
                    return Ok(());
                };
                let now_us = wall_us();
                let lat = now_us.saturating_sub(st.intended_us);
                self.res.delivery.record_us(lat);
                if let Ok(mut g) = self.link.interval.lock() {
                    g.record_us(lat);
                }
                let expected = self.plan.expected_msgs;
                let fresh = self
                    .conns
                    .get_mut(slot as usize)
                    .is_some_and(|c| c.mark_seen(st.seq, expected));
                if fresh {
                    if let Some(s) = usize::try_from(st.seq)
                        .ok()
                        .and_then(|i| self.res.seqs.get_mut(i))
                    {
                        s.arrive(now_us);
                    }
                } else {
                    self.res.duplicates += 1;
                }
            }
            WireEvent::Reply { request_id, status } => {
                if let Some(intended) = self.pending_uplinks.remove(&(slot, request_id)) {
                    let us = self.ns_of(Instant::now()).saturating_sub(intended) / 1000;
                    self.res.uplink.record_us(us);
                }
                *self
                    .res
                    .reply_status
                    .entry(format!("{}xx", status / 100))
                    .or_default() += 1;
                self.link.counters.replies.fetch_add(1, Ordering::Relaxed);
            }
            WireEvent::Closed(why) => {
                let live = self
                    .conns
                    .get(slot as usize)
                    .is_some_and(|c| matches!(c.phase, Phase::Handshaking | Phase::Established));
                if live {
                    self.note_failure(why);
                    self.lose(slot)?;
                }
            }
        }
        Ok(())
    }

    /// A live connection ended unexpectedly.
    fn lose(&mut self, slot: u32) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        let was = conn.phase;
        conn.phase = Phase::Dead;
        if was == Phase::Established {
            self.established_now = self.established_now.saturating_sub(1);
            self.link
                .counters
                .established
                .store(self.established_now, Ordering::Relaxed);
        } else if was == Phase::Handshaking && !conn.is_reconnect {
            self.resolve_attempt();
        }
        self.close_slot(slot, false)
    }

    fn close_slot(&mut self, slot: u32, reconnect: bool) -> Result<(), ShardError> {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.reconnect_after_close = reconnect;
        if reconnect {
            conn.phase = Phase::Closing;
        }
        let generation = conn.generation;
        let tag = |op| {
            Tag {
                op,
                generation,
                slot,
            }
            .encode()
        };
        let shut = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(tag(Op::Shutdown));
        self.push(shut)?;
        let close = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(tag(Op::Close));
        self.push(close)
    }

    fn on_close(&mut self, slot: u32) -> Result<(), ShardError> {
        self.maybe_reconnect(slot)
    }

    fn maybe_reconnect(&mut self, slot: u32) -> Result<(), ShardError> {
        let now = self.ns_of(Instant::now());
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if conn.phase == Phase::Closing && conn.reconnect_after_close && !conn.send_in_flight {
            conn.reconnect_after_close = false;
            conn.phase = Phase::Idle;
            // The reconnect was meant to start when the churn event was due.
            let intended = conn.intended_ns.min(now);
            return self.start_connect(slot, intended, true);
        }
        Ok(())
    }

    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn churn_one(&mut self, intended_ns: u64) -> Result<(), ShardError> {
        let n = self.conns.len();
        if n == 0 {
            return Ok(());
        }
        // A random established connection (bounded probe from a random start).
        let start = usize::try_from(self.next_rand() % n as u64).unwrap_or(0);
        self.churn_cursor = start;
        for k in 0..n.min(64) {
            let slot = (start + k) % n;
            if self.conns[slot].phase == Phase::Established {
                let conn = &mut self.conns[slot];
                conn.intended_ns = intended_ns;
                conn.phase = Phase::Closing;
                self.established_now = self.established_now.saturating_sub(1);
                self.link
                    .counters
                    .established
                    .store(self.established_now, Ordering::Relaxed);
                let slot = u32::try_from(slot).unwrap_or(u32::MAX);
                return self.close_slot(slot, true);
            }
        }
        Ok(())
    }

    fn uplink_one(&mut self, due: Instant) -> Result<(), ShardError> {
        let n = self.conns.len();
        let payload = vec![b'u'; self.plan.payload_size];
        for k in 0..n {
            let slot = (self.uplink_cursor + k) % n;
            if self.conns[slot].phase != Phase::Established {
                continue;
            }
            self.uplink_cursor = slot + 1;
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            let id = self.conns[slot]
                .wire
                .as_mut()
                .and_then(|w| w.uplink(&self.plan.uplink_route, &payload, &mut out));
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            if let Some(id) = id {
                self.pending_uplinks.insert((slot, id), self.ns_of(due));
                self.res.uplinks_sent += 1;
            }
            self.send(slot, &out)?;
            self.out = out;
            return Ok(());
        }
        Ok(())
    }

    fn run_timers(&mut self) -> Result<(), ShardError> {
        let now = self.now_ms();
        while let Some((slot, generation)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            if conn.generation != generation
                || !matches!(conn.phase, Phase::Handshaking | Phase::Established)
            {
                continue;
            }
            let mut out = std::mem::take(&mut self.out);
            let mut evs = std::mem::take(&mut self.events);
            out.clear();
            evs.clear();
            let next = conn
                .wire
                .as_mut()
                .and_then(|w| w.tick(now, &mut evs, &mut out));
            if let Some(at) = next {
                self.timers.push(at, slot, generation);
            }
            self.send(slot, &out)?;
            for e in evs.drain(..) {
                self.on_event(slot, e)?;
            }
            self.out = out;
            self.events = evs;
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
        if let Some(start) = self.churn_started {
            let span = start.elapsed().as_secs_f64();
            if span > 0.0 {
                self.res.churn_issue_rate = self.churn_issued as f64 / span;
            }
        }
        self.res
    }
}
