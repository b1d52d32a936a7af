//! Worker processes: the coordinator re-executes its own binary with the
//! hidden `worker` subcommand, sends it a [`WorkerPlan`] on stdin, reads
//! JSON lines back on stdout (a [`Progress`] every second, one
//! [`WorkerReport`] at the end) and merges the reports exactly: histogram
//! counts are added, never percentiles averaged.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::{SeqStat, ShardLink, ShardPlan, ShardResult, run_shard};
use crate::histo::{HistoError, Latency, Wire};

/// Name of the hidden subcommand.
pub const WORKER_SUBCOMMAND: &str = "__worker";

/// What a worker process runs: one plan per shard thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Shards to run.
    pub shards: Vec<ShardPlan>,
}

/// A worker's once-a-second report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// Milliseconds since the worker started.
    pub t_ms: u64,
    /// Connections established now.
    pub established: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Attempts started.
    pub attempts: u64,
    /// Failures.
    pub failures: u64,
    /// Subscriptions confirmed.
    pub subscribed: u64,
    /// Deliveries.
    pub deliveries: u64,
    /// Churn reconnects.
    pub reconnects: u64,
    /// Uplink replies.
    pub replies: u64,
    /// Every shard finished its connect phase.
    pub connect_done: bool,
    /// Delivery latency during this interval.
    pub interval: Wire,
}

/// Sum of the workers' latest progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Established now.
    pub established: u64,
    /// Handshakes done.
    pub handshakes: u64,
    /// Attempts.
    pub attempts: u64,
    /// Failures.
    pub failures: u64,
    /// Subscriptions confirmed.
    pub subscribed: u64,
    /// Deliveries.
    pub deliveries: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Uplink replies.
    pub replies: u64,
    /// All workers finished connecting.
    pub connect_done: bool,
}

/// A shard result in transit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkerReport {
    /// Histograms by name (connect, handshake, reconnect, delivery, uplink, lag).
    pub histograms: BTreeMap<String, Wire>,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Per-message arrivals.
    pub seqs: Vec<SeqStat>,
    /// Scalar counters (duplicates, unstamped, established, attempts, ...).
    pub counters: BTreeMap<String, u64>,
    /// Uplink replies by status class.
    pub reply_status: BTreeMap<String, u64>,
    /// TLS handshakes by what they agreed.
    #[serde(default)]
    pub tls: BTreeMap<String, u64>,
    /// Errors of shards that could not run.
    pub shard_errors: Vec<String>,
}

/// One line a worker writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLine {
    /// Periodic progress.
    Progress(Progress),
    /// The final report.
    Report(Box<WorkerReport>),
}

/// Errors of the worker machinery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Spawning or talking to a worker failed.
    #[error("worker {index}: {source}")]
    Io {
        /// Worker index.
        index: usize,
        /// The error.
        source: std::io::Error,
    },
    /// A line did not parse.
    #[error("worker protocol: {0}")]
    Json(#[from] serde_json::Error),
    /// A histogram did not survive the trip.
    #[error(transparent)]
    Histo(#[from] HistoError),
    /// A worker ended without its report.
    #[error("worker {0} exited without a report (see its stderr above)")]
    NoReport(usize),
}

const HISTS: [&str; 6] = [
    "connect",
    "handshake",
    "reconnect",
    "delivery",
    "uplink",
    "lag",
];

fn hist_of<'a>(r: &'a ShardResult, name: &str) -> &'a Latency {
    match name {
        "connect" => &r.connect,
        "handshake" => &r.handshake,
        "reconnect" => &r.reconnect,
        "delivery" => &r.delivery,
        "uplink" => &r.uplink,
        _ => &r.lag,
    }
}

fn hist_of_mut<'a>(r: &'a mut ShardResult, name: &str) -> &'a mut Latency {
    match name {
        "connect" => &mut r.connect,
        "handshake" => &mut r.handshake,
        "reconnect" => &mut r.reconnect,
        "delivery" => &mut r.delivery,
        "uplink" => &mut r.uplink,
        _ => &mut r.lag,
    }
}

/// Folds `o` into `acc`: histograms added, counts summed, per-message
/// first/last arrivals combined.
pub fn merge_results(acc: &mut ShardResult, o: &ShardResult) -> Result<(), HistoError> {
    for name in HISTS {
        hist_of_mut(acc, name).merge(hist_of(o, name))?;
    }
    for (k, v) in &o.failures {
        *acc.failures.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &o.reply_status {
        *acc.reply_status.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &o.tls {
        *acc.tls.entry(k.clone()).or_default() += v;
    }
    if acc.seqs.len() < o.seqs.len() {
        acc.seqs.resize(o.seqs.len(), SeqStat::default());
    }
    for (a, b) in acc.seqs.iter_mut().zip(&o.seqs) {
        a.merge(b);
    }
    acc.duplicates += o.duplicates;
    acc.redeliveries += o.redeliveries;
    acc.unstamped += o.unstamped;
    acc.established += o.established;
    acc.attempts += o.attempts;
    acc.reconnects += o.reconnects;
    acc.uplinks_sent += o.uplinks_sent;
    acc.last_established_us = acc.last_established_us.max(o.last_established_us);
    // Shards run side by side: their rates add up.
    acc.connect_issue_rate += o.connect_issue_rate;
    acc.churn_issue_rate += o.churn_issue_rate;
    acc.first_intended_us = match (acc.first_intended_us, o.first_intended_us) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    };
    Ok(())
}

impl WorkerReport {
    /// Serializes a result.
    pub fn from_result(r: &ShardResult, shard_errors: Vec<String>) -> Result<Self, HistoError> {
        let mut histograms = BTreeMap::new();
        for name in HISTS {
            histograms.insert(name.to_string(), Wire::from_latency(hist_of(r, name))?);
        }
        let counters = [
            ("duplicates", r.duplicates),
            ("redeliveries", r.redeliveries),
            ("unstamped", r.unstamped),
            ("established", r.established),
            ("attempts", r.attempts),
            ("reconnects", r.reconnects),
            ("uplinks_sent", r.uplinks_sent),
            ("last_established_us", r.last_established_us),
            ("first_intended_us", r.first_intended_us),
            (
                "connect_issue_milli_per_s",
                (r.connect_issue_rate * 1000.0) as u64,
            ),
            (
                "churn_issue_milli_per_s",
                (r.churn_issue_rate * 1000.0) as u64,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(Self {
            histograms,
            failures: r.failures.clone(),
            seqs: r.seqs.clone(),
            counters,
            reply_status: r.reply_status.clone(),
            tls: r.tls.clone(),
            shard_errors,
        })
    }

    /// Deserializes into a result.
    pub fn to_result(&self) -> Result<ShardResult, HistoError> {
        let mut r = ShardResult::default();
        for name in HISTS {
            if let Some(w) = self.histograms.get(name) {
                *hist_of_mut(&mut r, name) = w.to_latency()?;
            }
        }
        let c = |k: &str| self.counters.get(k).copied().unwrap_or(0);
        r.failures = self.failures.clone();
        r.reply_status = self.reply_status.clone();
        r.tls = self.tls.clone();
        r.seqs = self.seqs.clone();
        r.duplicates = c("duplicates");
        r.redeliveries = c("redeliveries");
        r.unstamped = c("unstamped");
        r.established = c("established");
        r.attempts = c("attempts");
        r.reconnects = c("reconnects");
        r.uplinks_sent = c("uplinks_sent");
        r.last_established_us = c("last_established_us");
        r.first_intended_us = c("first_intended_us");
        r.connect_issue_rate = c("connect_issue_milli_per_s") as f64 / 1000.0;
        r.churn_issue_rate = c("churn_issue_milli_per_s") as f64 / 1000.0;
        for e in &self.shard_errors {
            *r.failures.entry(format!("shard error: {e}")).or_default() += 1;
        }
        Ok(r)
    }
}

/// Body of the hidden worker subcommand: reads the plan from stdin, runs
/// the shards, streams progress, reports, exits.
pub fn worker_main() -> Result<(), WorkerError> {
    let mut first = String::new();
    std::io::stdin()
        .read_line(&mut first)
        .map_err(|source| WorkerError::Io { index: 0, source })?;
    let plan: WorkerPlan = serde_json::from_str(&first)?;
    let links: Vec<Arc<ShardLink>> = plan.shards.iter().map(|_| ShardLink::new()).collect();
    let handles: Vec<_> = plan
        .shards
        .iter()
        .cloned()
        .zip(links.iter().cloned())
        .map(|(sp, link)| std::thread::spawn(move || run_shard(&sp, &link)))
        .collect();
    // "stop" or EOF on stdin ends the run.
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    // Four reports a second: a delivery phase ends on progress
    // (scenario::drain), so this is how precisely it sees the last one.
    while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(PROGRESS_EVERY) {
        let p = progress(&links, start)?;
        writeln!(out, "{}", serde_json::to_string(&WorkerLine::Progress(p))?)
            .map_err(|source| WorkerError::Io { index: 0, source })?;
        out.flush()
            .map_err(|source| WorkerError::Io { index: 0, source })?;
    }
    for l in &links {
        l.stop.store(true, Ordering::Relaxed);
    }
    let mut total = ShardResult::default();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => merge_results(&mut total, &r)?,
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("shard thread panicked".into()),
        }
    }
    let report = WorkerReport::from_result(&total, errors)?;
    writeln!(
        out,
        "{}",
        serde_json::to_string(&WorkerLine::Report(Box::new(report)))?
    )
    .map_err(|source| WorkerError::Io { index: 0, source })?;
    out.flush()
        .map_err(|source| WorkerError::Io { index: 0, source })
}

/// How often a worker reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

fn progress(links: &[Arc<ShardLink>], start: Instant) -> Result<Progress, HistoError> {
    let mut p = Progress {
        t_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        connect_done: true,
        ..Progress::default()
    };
    let mut interval = Latency::new();
    for l in links {
        let c = &l.counters;
        p.established += ShardLink::get(&c.established);
        p.handshakes += ShardLink::get(&c.handshakes);
        p.attempts += ShardLink::get(&c.attempts);
        p.failures += ShardLink::get(&c.failures);
        p.subscribed += ShardLink::get(&c.subscribed);
        p.deliveries += ShardLink::get(&c.deliveries);
        p.reconnects += ShardLink::get(&c.reconnects);
        p.replies += ShardLink::get(&c.replies);
        p.connect_done &= c.connect_done.load(Ordering::Relaxed);
        interval.merge(&l.take_interval())?;
    }
    p.interval = Wire::from_latency(&interval)?;
    Ok(p)
}

/// A running worker process.
#[derive(Debug)]
pub struct WorkerProc {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// A message from a worker to the coordinator: (worker index, line).
pub type FromWorker = (usize, Result<WorkerLine, String>);

impl WorkerProc {
    /// Starts worker `index` running `plan`; its lines go to `tx`.
    pub fn spawn(
        index: usize,
        plan: &WorkerPlan,
        tx: mpsc::Sender<FromWorker>,
    ) -> Result<Self, WorkerError> {
        let io = |source| WorkerError::Io { index, source };
        let exe = std::env::current_exe().map_err(io)?;
        let mut child = Command::new(exe)
            .arg(WORKER_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io(std::io::Error::other("no stdin pipe")))?;
        writeln!(stdin, "{}", serde_json::to_string(plan)?).map_err(io)?;
        stdin.flush().map_err(io)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io(std::io::Error::other("no stdout pipe")))?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let msg =
                    serde_json::from_str::<WorkerLine>(&line).map_err(|e| format!("{e}: {line}"));
                if tx.send((index, msg)).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin: Some(stdin),
        })
    }

    /// Asks the worker to stop and report.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = writeln!(s, "stop");
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) {
        self.stop();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip_and_merge_is_exact() {
        let mut a = ShardResult {
            seqs: vec![SeqStat::default(); 2],
            ..ShardResult::default()
        };
        let mut b = a.clone();
        for v in 1..=1000 {
            a.delivery.record_us(v);
            b.delivery.record_us(v * 100);
        }
        a.seqs[0].arrive(10);
        b.seqs[0].arrive(5);
        b.seqs[0].arrive(50);
        a.failures.insert("connect: refused".into(), 2);
        b.failures.insert("connect: refused".into(), 1);
        let mut whole = a.delivery.clone();
        whole.merge(&b.delivery).unwrap();

        let line_a = serde_json::to_string(&WorkerLine::Report(Box::new(
            WorkerReport::from_result(&a, vec![]).unwrap(),
        )))
        .unwrap();
        let line_b = serde_json::to_string(&WorkerLine::Report(Box::new(
            WorkerReport::from_result(&b, vec!["x".into()]).unwrap(),
        )))
        .unwrap();
        let mut merged = ShardResult::default();
        for line in [line_a, line_b] {
            let WorkerLine::Report(r) = serde_json::from_str(&line).unwrap() else {
                panic!()
            };
            merge_results(&mut merged, &r.to_result().unwrap()).unwrap();
        }
        assert_eq!(merged.delivery, whole);
        assert_eq!(merged.delivery.quantile_us(0.99), whole.quantile_us(0.99));
        assert_eq!(
            merged.seqs[0],
            SeqStat {
                first_us: 5,
                last_us: 50,
                count: 3
            }
        );
        assert_eq!(merged.failures["connect: refused"], 3);
        assert_eq!(merged.failures["shard error: x"], 1);
    }
}
