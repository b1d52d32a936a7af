//! The coordinator's view of a load: pre-flight, worker processes, progress
//! aggregation (timeline, interval histograms, live line), merge at the end.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tuning::config::DriverChoice;

use crate::driver::DriverUnavailable;
use crate::engine::{Driver, ShardPlan, ShardResult};
use crate::histo::Latency;
use crate::preflight::{self, PreflightError};
use crate::report::TimelinePoint;
use crate::report::progress::ProgressLine;
use crate::scenario::drain::{DrainPhase, PhaseEnd};
use crate::wire::{AckError, PeerKind, Transport, TransportError};
use crate::worker::{
    FromWorker, Progress, WorkerError, WorkerLine, WorkerPlan, WorkerProc, merge_results,
};

// The sum of the workers' progress that `Load::totals` returns lives in
// `worker` with the per-worker `Progress` it adds up; re-exported here so
// `scenario::load::Totals` stays a path.
pub use crate::worker::Totals;

/// What load to put on the target.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Protocol.
    pub peer: PeerKind,
    /// How connections reach the target.
    pub transport: Transport,
    /// TLS settings for `tls` and `wss` (or why they cannot be had).
    pub tls: Option<Result<crate::wire::tls::TlsPlan, String>>,
    /// Target address.
    pub target: SocketAddrV4,
    /// Connections.
    pub connections: u32,
    /// Connections per second in total (≤ 0: as fast as possible).
    pub connect_rate: f64,
    /// Shards per worker.
    pub shards: u32,
    /// Which driver the shards run on (decided in [`Load::start`]).
    pub driver: DriverChoice,
    /// Scheduling policy of the shard threads.
    pub sched: crate::sched::Sched,
    /// Worker processes (0: as few as fit).
    pub workers: u32,
    /// First source address.
    pub first_source: Ipv4Addr,
    /// Heartbeat, ms.
    pub heartbeat_ms: u32,
    /// JWT secret.
    pub jwt_secret: String,
    /// Topic to subscribe (`{user}` = own user).
    pub subscribe: Option<String>,
    /// Reconnects per second in total.
    pub churn_rate: f64,
    /// Reconnects in total (spread over the shards exactly).
    pub churn_total: u64,
    /// Uplinks per second in total, and how many.
    pub uplink_rate: f64,
    /// Uplinks in total.
    pub uplink_total: u64,
    /// Uplink route.
    pub uplink_route: String,
    /// Payload size.
    pub payload_size: usize,
    /// Stamped messages expected.
    pub expected_msgs: u64,
    /// Ack durable pushes on receipt (`unicast --ack`).
    pub ack: bool,
}

/// Errors running a load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The host cannot do it.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// `--driver io_uring` where io_uring is unavailable.
    #[error(transparent)]
    Driver(#[from] DriverUnavailable),
    /// A transport the peer does not have.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// `unicast --ack` with a peer other than the gateway.
    #[error(transparent)]
    Ack(#[from] AckError),
    /// TLS settings that cannot be used.
    #[error("{0}")]
    Tls(String),
    /// Worker trouble.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A worker sent something unreadable.
    #[error("worker {0}: {1}")]
    Line(usize, String),
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    driver: Driver,
    sched: crate::sched::Sched,
    procs: Vec<WorkerProc>,
    rx: mpsc::Receiver<FromWorker>,
    latest: Vec<Option<Progress>>,
    /// Per-second points.
    pub timeline: Vec<TimelinePoint>,
    /// Per-second delivery latency (for the HDR interval log).
    pub intervals: Vec<(f64, Latency)>,
    pending_interval: Latency,
    last_point: Instant,
    started: Instant,
    line: ProgressLine,
    reports: Vec<Option<ShardResult>>,
}

impl Load {
    /// Decides the driver, checks the host, splits the load over workers
    /// and shards, starts them.
    pub fn start(spec: &LoadSpec) -> Result<Self, LoadError> {
        spec.transport.check(spec.peer)?;
        let tls = match &spec.tls {
            None if spec.transport.is_tls() => {
                return Err(TransportError::NeedsCa(spec.transport.label()).into());
            }
            None => None,
            Some(Err(why)) => return Err(LoadError::Tls(why.clone())),
            Some(Ok(plan)) => {
                // Checked here, so a bad CA is one error, not one per shard.
                crate::wire::tls::TlsClient::new(plan)
                    .map_err(|e| LoadError::Tls(e.to_string()))?;
                Some(plan.clone())
            }
        };
        let driver = crate::driver::choose(spec.driver)?;
        let host = preflight::host_limits();
        let plan = preflight::plan(
            &preflight::Request {
                connections: spec.connections,
                shards: spec.shards,
                workers: spec.workers,
                first_source: spec.first_source,
                target_is_local: spec.target.ip().is_loopback(),
                driver,
            },
            &host,
        )?;
        let shard_count = u64::from(plan.workers * spec.shards);
        let total_shards = shard_count as f64;
        let mut shard_no = 0u64;
        let (tx, rx) = mpsc::channel();
        let mut procs = Vec::new();
        let mut first_user = 0u64;
        let start_wall_us = crate::stamp::wall_us();
        for (w, &count) in plan.per_worker.iter().enumerate() {
            let mut shards = Vec::new();
            let base = count / spec.shards;
            let extra = count % spec.shards;
            for s in 0..spec.shards {
                let n = base + u32::from(s < extra);
                shards.push(ShardPlan {
                    index: s,
                    driver,
                    sched: spec.sched,
                    peer: spec.peer,
                    transport: spec.transport,
                    tls: tls.clone(),
                    target: spec.target,
                    sources: plan.sources.clone(),
                    first_user,
                    count: n,
                    connect_rate: spec.connect_rate / total_shards,
                    subscribe: spec.subscribe.clone(),
                    heartbeat_ms: spec.heartbeat_ms,
                    jwt_secret: spec.jwt_secret.clone(),
                    churn_rate: spec.churn_rate / total_shards,
                    churn_total: spec.churn_total / shard_count
                        + u64::from(shard_no < spec.churn_total % shard_count),
                    uplink_rate: spec.uplink_rate / total_shards,
                    uplink_total: (spec.uplink_total as f64 / total_shards).ceil() as u64,
                    uplink_route: spec.uplink_route.clone(),
                    payload_size: spec.payload_size,
                    expected_msgs: spec.expected_msgs,
                    ack: spec.ack,
                    start_wall_us,
                });
                first_user += u64::from(n);
                shard_no += 1;
            }
            procs.push(WorkerProc::spawn(w, &WorkerPlan { shards }, tx.clone())?);
        }
        let n = procs.len();
        Ok(Self {
            driver,
            sched: spec.sched,
            procs,
            rx,
            latest: vec![None; n],
            timeline: Vec::new(),
            intervals: Vec::new(),
            pending_interval: Latency::new(),
            last_point: Instant::now(),
            started: Instant::now(),
            line: ProgressLine::new(),
            reports: vec![None; n],
        })
    }

    /// The driver the shards run on.
    #[must_use]
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The scheduling policy of the shard threads.
    #[must_use]
    pub fn sched(&self) -> crate::sched::Sched {
        self.sched
    }

    /// Worker processes running.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.procs.len()
    }

    /// The current totals.
    #[must_use]
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            connect_done: true,
            ..Totals::default()
        };
        for p in &self.latest {
            let Some(p) = p else {
                t.connect_done = false;
                continue;
            };
            t.established += p.established;
            t.handshakes += p.handshakes;
            t.attempts += p.attempts;
            t.failures += p.failures;
            t.subscribed += p.subscribed;
            t.deliveries += p.deliveries;
            t.reconnects += p.reconnects;
            t.replies += p.replies;
            t.connect_done &= p.connect_done;
        }
        t
    }

    fn absorb(&mut self, msg: FromWorker) -> Result<(), LoadError> {
        let (i, line) = msg;
        match line.map_err(|e| LoadError::Line(i, e))? {
            WorkerLine::Progress(p) => {
                if let Ok(h) = p.interval.to_latency() {
                    let _ = self.pending_interval.merge(&h);
                }
                if let Some(slot) = self.latest.get_mut(i) {
                    *slot = Some(p);
                }
            }
            WorkerLine::Report(r) => {
                let res = r.to_result().map_err(WorkerError::from)?;
                if let Some(slot) = self.reports.get_mut(i) {
                    *slot = Some(res);
                }
            }
        }
        if self.last_point.elapsed() >= Duration::from_secs(1) {
            self.last_point = Instant::now();
            let t = self.totals();
            let secs = self.started.elapsed().as_secs_f64();
            self.timeline.push(TimelinePoint {
                t_s: secs,
                established: t.established,
                handshakes: t.handshakes,
                failures: t.failures,
                deliveries: t.deliveries,
                reconnects: t.reconnects,
                replies: t.replies,
            });
            self.intervals
                .push((secs, std::mem::take(&mut self.pending_interval)));
            self.line.update(&t);
        }
        Ok(())
    }

    /// Processes worker messages until `done(totals)` holds or `timeout`
    /// passes; returns whether it held.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Totals) -> bool,
    ) -> Result<bool, LoadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.latest.iter().all(Option::is_some) && done(&self.totals()) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(m) => self.absorb(m)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(false),
            }
        }
    }

    /// Runs a delivery phase to its end (see [`DrainPhase`]): absorbs the
    /// workers' progress and feeds `phase` their delivery count until it
    /// says the phase is over.
    pub fn drain(&mut self, phase: &mut DrainPhase) -> Result<PhaseEnd, LoadError> {
        let start = Instant::now();
        loop {
            let at = start.elapsed();
            let delivered = if self.latest.iter().all(Option::is_some) {
                self.totals().deliveries
            } else {
                0
            };
            if let Some(end) = phase.observe(at, delivered) {
                return Ok(end);
            }
            let wait = phase.next_check(at).min(Duration::from_millis(200));
            match self.rx.recv_timeout(wait) {
                Ok(m) => self.absorb(m)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(PhaseEnd::Stopped),
            }
        }
    }

    /// Lets the load run for `d`, absorbing progress.
    pub fn hold(&mut self, d: Duration) -> Result<(), LoadError> {
        self.wait_until(d, |_| false).map(|_| ())
    }

    /// Stops the workers and merges their reports.
    pub fn finish(&mut self) -> Result<ShardResult, LoadError> {
        for p in &mut self.procs {
            p.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.reports.iter().any(Option::is_none) && Instant::now() < deadline {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => self.absorb(m)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.line.clear();
        for p in &mut self.procs {
            p.wait();
        }
        let mut total = ShardResult::default();
        for (i, r) in self.reports.iter().enumerate() {
            let r = r.as_ref().ok_or(WorkerError::NoReport(i))?;
            merge_results(&mut total, r).map_err(WorkerError::from)?;
        }
        if !self.pending_interval.inner().is_empty() {
            let secs = self.started.elapsed().as_secs_f64();
            self.intervals
                .push((secs, std::mem::take(&mut self.pending_interval)));
        }
        Ok(total)
    }
}
