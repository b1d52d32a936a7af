//! One shard's event loop, generic over its I/O ([`ShardIo`]): set-up, the
//! loop, schedules. What a connection does (dial, handshake, heartbeats,
//! deliveries, churn, uplinks) is shared by both drivers and lives in
//! [`dial`] and [`traffic`]; only the I/O differs: [`uring`] (an io_uring
//! ring with direct descriptors) and [`epoll`] (non-blocking sockets in an
//! edge-triggered epoll set).

mod dial;
mod epoll;
mod traffic;
mod uring;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway::uring::ring::RingError;
use protocol::time::Millis;

use super::conn::Conn;
use super::timers::Timers;
use super::{Driver, SeqStat, ShardLink, ShardPlan, ShardResult};
use crate::schedule::Schedule;
use crate::stamp::wall_us;
use crate::wire::WireEvent;

/// Longest the loop sleeps without a due event.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How long a reconnecting slot's token stays valid.
const TOKEN_TTL_S: u64 = 24 * 3600;

/// The `1` that boolean socket options point to (static: stable address,
/// as an io_uring SetSockOpt reads it after submission).
static ONE: libc::c_int = 1;

/// `a` as the kernel's `sockaddr_in`.
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

/// The plan's source addresses (port 0: the kernel picks at connect).
fn source_addrs(plan: &ShardPlan) -> Box<[libc::sockaddr_in]> {
    plan.sources
        .iter()
        .map(|ip| sockaddr(SocketAddrV4::new(*ip, 0)))
        .collect()
}

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
    /// The epoll set could not be made or waited on.
    #[error("shard {shard}: {call} failed: {source}")]
    Epoll {
        /// Shard index.
        shard: u32,
        /// The call that failed (`epoll_create1`, `epoll_wait`).
        call: &'static str,
        /// OS error.
        source: io::Error,
    },
    /// The thread's scheduling policy (`--sched`) could not be set.
    #[error("shard {shard}: {source}")]
    Sched {
        /// Shard index.
        shard: u32,
        /// What failed.
        source: crate::sched::SchedError,
    },
    /// The TLS settings cannot be used.
    #[error("shard {shard}: {source}")]
    Tls {
        /// Shard index.
        shard: u32,
        /// What is wrong.
        source: crate::wire::tls::TlsSetupError,
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

/// What starting a connection did at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dial {
    /// Under way: the driver reports the outcome as a connect event.
    Pending,
    /// Connected already.
    Connected,
    /// The connect itself failed at once with this errno.
    Refused(i32),
    /// A step before the connect (`socket`, `setsockopt`, `bind`, ...)
    /// failed with this errno.
    SetupFailed(&'static str, i32),
}

/// What handing bytes to the socket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Submitted: a completion reports how many bytes went.
    Later,
    /// Done now: bytes written (≥ 0) or `-errno`.
    Now(i32),
    /// The socket buffer is full: writability resumes the send.
    Blocked,
}

/// What closing a connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// Submitted: a completion reports the close.
    Later,
    /// Closed now, and nothing of the connection is in flight any more.
    Now,
}

/// The I/O of a shard: how a connection is opened, written, closed, and
/// how the shard waits for what happened. The session logic calls these;
/// a driver's [`ShardIo::poll`] calls the session logic back
/// ([`Shard::on_connect`], [`Shard::feed`], [`Shard::on_send`], ...).
trait ShardIo: Sized {
    /// Starts connection `slot` (incarnation `generation`) to the plan's
    /// target from the slot's source address.
    fn connect(&mut self, slot: u32, generation: u16) -> Result<Dial, ShardError>;
    /// Starts receiving on `slot` once it is connected.
    fn arm_recv(&mut self, slot: u32, generation: u16) -> Result<(), ShardError>;
    /// Sends `bytes` on `slot`; they stay put until the send is reported.
    fn send(&mut self, slot: u32, generation: u16, bytes: &[u8]) -> Result<Sent, ShardError>;
    /// Shuts down and closes `slot`.
    fn close(&mut self, slot: u32, generation: u16) -> Result<Closed, ShardError>;
    /// Waits at most `wait` for I/O and hands what happened to the shard.
    fn poll(shard: &mut Shard<'_, Self>, wait: Duration) -> Result<(), ShardError>;
}

/// Runs `plan` on its driver until `link.stop` is set; returns what it
/// measured.
pub fn run_shard(plan: &ShardPlan, link: &ShardLink) -> Result<ShardResult, ShardError> {
    plan.sched
        .apply_to_this_thread()
        .map_err(|source| ShardError::Sched {
            shard: plan.index,
            source,
        })?;
    let tls = plan
        .tls
        .as_ref()
        .map(crate::wire::tls::TlsClient::new)
        .transpose()
        .map_err(|source| ShardError::Tls {
            shard: plan.index,
            source,
        })?;
    match plan.driver {
        Driver::IoUring => drive(Shard::new(plan, link, uring::UringIo::new(plan)?, tls)),
        Driver::Epoll => drive(Shard::new(plan, link, epoll::EpollIo::new(plan)?, tls)),
    }
}

fn drive<I: ShardIo>(mut s: Shard<'_, I>) -> Result<ShardResult, ShardError> {
    s.run()?;
    Ok(s.finish())
}

struct Shard<'a, I> {
    // Field order: the I/O (an io_uring ring) drops before the connection
    // send buffers its operations point into.
    io: I,
    plan: &'a ShardPlan,
    link: &'a ShardLink,
    conns: Vec<Conn>,
    epoch: Instant,
    connects: Schedule,
    churn: Option<Schedule>,
    uplinks: Option<Schedule>,
    timers: Timers,
    pending_uplinks: HashMap<(u32, u64), u64>,
    res: ShardResult,
    events: Vec<WireEvent>,
    out: Vec<u8>,
    /// The target as a WebSocket Upgrade's `Host` names it.
    host: String,
    /// The TLS client configuration its connections share (`tls`, `wss`).
    tls: Option<crate::wire::tls::TlsClient>,
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

impl<'a, I: ShardIo> Shard<'a, I> {
    fn new(
        plan: &'a ShardPlan,
        link: &'a ShardLink,
        io: I,
        tls: Option<crate::wire::tls::TlsClient>,
    ) -> Self {
        let epoch = Instant::now();
        let res = ShardResult {
            seqs: vec![SeqStat::default(); usize::try_from(plan.expected_msgs).unwrap_or(0)],
            first_intended_us: wall_us(),
            ..ShardResult::default()
        };
        Self {
            io,
            plan,
            link,
            conns: (0..plan.count).map(|_| Conn::idle()).collect(),
            epoch,
            connects: Schedule::new(epoch, plan.connect_rate, u64::from(plan.count)),
            churn: None,
            uplinks: None,
            timers: Timers::default(),
            pending_uplinks: HashMap::new(),
            res,
            events: Vec::new(),
            out: Vec::new(),
            host: plan.target.to_string(),
            tls,
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
        }
    }
    fn now_ms(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
    fn ns_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
    fn run(&mut self) -> Result<(), ShardError> {
        while !self.link.stop.load(Ordering::Relaxed) {
            self.issue_due()?;
            let wait = self.wait_time();
            I::poll(self, wait)?;
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::Arc;

    use super::*;
    use crate::wire::PeerKind;

    fn plan(driver: Driver, target: SocketAddrV4, count: u32) -> ShardPlan {
        ShardPlan {
            index: 0,
            driver,
            sched: crate::sched::Sched::Normal,
            peer: PeerKind::Nats,
            transport: crate::wire::Transport::Tcp,
            tls: None,
            target,
            sources: vec![Ipv4Addr::new(127, 0, 0, 3)],
            first_user: 0,
            count,
            connect_rate: 0.0,
            subscribe: None,
            heartbeat_ms: 1000,
            jwt_secret: String::new(),
            churn_rate: 0.0,
            churn_total: 0,
            uplink_rate: 0.0,
            uplink_total: 0,
            uplink_route: String::new(),
            payload_size: 0,
            expected_msgs: 0,
            ack: false,
            start_wall_us: 0,
        }
    }

    /// Runs a shard until its connect phase is over (10 s at most).
    fn connect_phase(plan: ShardPlan) -> ShardResult {
        let link = ShardLink::new();
        let shard_link = Arc::clone(&link);
        let h = std::thread::spawn(move || run_shard(&plan, &shard_link));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !link.counters.connect_done.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        link.stop.store(true, Ordering::Relaxed);
        assert!(link.counters.connect_done.load(Ordering::Relaxed));
        h.join().unwrap().unwrap()
    }

    #[test]
    fn refused_connects_are_counted_alike_on_both_drivers() {
        // A port nobody listens on (bound, then freed).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let refused = format!(
            "connect: {}",
            io::Error::from_raw_os_error(libc::ECONNREFUSED)
        );
        let epoll = connect_phase(plan(Driver::Epoll, target, 5));
        assert_eq!((epoll.attempts, epoll.established), (5, 0));
        assert_eq!(
            epoll.failures.get(&refused),
            Some(&5),
            "{:?}",
            epoll.failures
        );
        assert_eq!(epoll.failures.len(), 1, "{:?}", epoll.failures);
        // The io_uring path, where this host allows it, says the same.
        if crate::driver::choose(tuning::config::DriverChoice::IoUring).is_ok() {
            let uring = connect_phase(plan(Driver::IoUring, target, 5));
            assert_eq!(uring.failures, epoll.failures);
            assert_eq!(uring.attempts, epoll.attempts);
        }
    }

    #[test]
    fn an_unbindable_source_fails_at_bind_on_epoll() {
        // 192.0.2.1 (TEST-NET-1) is no address of this host.
        let mut p = plan(Driver::Epoll, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9), 2);
        p.sources = vec![Ipv4Addr::new(192, 0, 2, 1)];
        let r = connect_phase(p);
        let why = format!(
            "bind: {}",
            io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)
        );
        assert_eq!(r.failures.get(&why), Some(&2), "{:?}", r.failures);
        assert_eq!(
            r.failures.len(),
            1,
            "setup failure counted once: {:?}",
            r.failures
        );
    }
}
