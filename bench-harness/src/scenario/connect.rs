//! `connect`: N connections at R/s, handshake, hold for D with heartbeats;
//! with the target's pid, its RSS and the kernel's Slab per connection, and
//! its CPU over the hold (connect at N / heartbeat per second to spread the
//! heartbeats evenly, as clients that connected at different times send
//! them).

use std::time::Duration;

use super::load::{Load, LoadError};
use super::{Common, Outcome};
use crate::procfs;
use crate::report::RunReport;

/// Options of `connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Connections to open and hold.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: u32,
    /// Connections per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to hold once all are connected.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 5.0)]
    pub hold_secs: f64,
    /// Seconds to let memory settle before measuring it.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 2.0)]
    pub settle_secs: f64,
    /// Pid of the system under test: report its RSS per connection.
    #[arg(long, alias = "pid")]
    pub gateway_pid: Option<u32>,
    /// Give up waiting for the connect phase after this many seconds.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 120.0)]
    pub timeout_secs: f64,
}

/// Runs `connect`.
pub fn run(c: &Common, a: &ConnectArgs) -> Result<Outcome, LoadError> {
    let rss0 = a.gateway_pid.and_then(procfs::rss_kb);
    let cpu_before = a.gateway_pid.and_then(procfs::cpu_ticks);
    let slab0 = procfs::meminfo_kb("Slab");
    let mut load = Load::start(&c.spec(a.connections, a.rate))?;
    let done = load.wait_until(Duration::from_secs_f64(a.timeout_secs), |t| t.connect_done)?;
    let cpu_connected = a.gateway_pid.and_then(procfs::cpu_ticks);
    load.hold(Duration::from_secs_f64(a.settle_secs))?;
    let held = load.totals().established;
    let rss1 = a.gateway_pid.and_then(procfs::rss_kb);
    let slab1 = procfs::meminfo_kb("Slab");
    let cpu0 = a.gateway_pid.and_then(procfs::cpu_ticks);
    let hold_start = std::time::Instant::now();
    load.hold(Duration::from_secs_f64(a.hold_secs))?;
    let cpu1 = a.gateway_pid.and_then(procfs::cpu_ticks);
    let held_secs = hold_start.elapsed().as_secs_f64();
    let still = load.totals().established;
    let workers = load.workers();
    let res = load.finish()?;
    let mut rep = RunReport::new(
        "connect",
        c.peer.label(),
        serde_json::json!({"connections": a.connections, "rate": a.rate, "hold_secs": a.hold_secs,
            "shards": c.shards, "workers": workers, "heartbeat_ms": c.heartbeat_ms, "target": c.target.to_string()}),
    );
    super::connect_figures(&mut rep, &res, a.rate, c);
    rep.metric("held_after_hold", still as f64);
    if held > 0 {
        if let (Some(a0), Some(a1)) = (rss0, rss1) {
            rep.metric(
                "target_rss_bytes_per_conn",
                ((a1.saturating_sub(a0) * 1024) as f64 / held as f64).round(),
            );
            rep.metric("target_rss_mb", (a1 / 1024) as f64);
        }
        if let (Some(t0), Some(t1)) = (cpu_before, cpu_connected) {
            // The target's CPU while the connections came in: its cost of a
            // handshake (for TLS, the server's share of a full one).
            let secs = (t1.saturating_sub(t0)) as f64 / procfs::ticks_per_sec() as f64;
            rep.metric(
                "target_cpu_us_per_connect",
                (1e6 * secs / held as f64).round(),
            );
        }
        if let (Some(t0), Some(t1)) = (cpu0, cpu1) {
            // The target's CPU while it holds idle, heartbeating connections.
            let secs = (t1.saturating_sub(t0)) as f64 / procfs::ticks_per_sec() as f64;
            rep.metric(
                "target_cpu_pct_of_core_during_hold",
                (1e4 * secs / held_secs.max(1e-3)).round() / 100.0,
            );
        }
        if let (Some(s0), Some(s1)) = (slab0, slab1) {
            rep.metric(
                "kernel_slab_bytes_per_conn",
                ((s1.saturating_sub(s0) * 1024) as f64 / held as f64).round(),
            );
        }
    }
    if !done {
        rep.invalidate(vec![format!(
            "connect phase did not finish within {} s",
            a.timeout_secs
        )]);
    }
    Ok(Outcome::new(rep, load))
}
