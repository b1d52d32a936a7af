//! `churn`: hold N and disconnect/reconnect a fraction of them per second;
//! the reconnects' handshake latency (from when each was due) and failures.

use std::time::Duration;

use super::load::{Load, LoadError};
use super::{Common, Outcome};
use crate::report::RunReport;
use crate::schedule::judge;

/// Options of `churn`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChurnArgs {
    /// Connections to hold.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: u32,
    /// Fraction of the connections reconnected per second (mobile reality: 0.001).
    #[arg(long, default_value_t = 0.001)]
    pub fraction_per_sec: f64,
    /// Seconds of churn: connections × fraction × seconds reconnects are
    /// scheduled, and the run ends once they are all back (or a drain
    /// allowance after their schedule).
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 10.0)]
    pub hold_secs: f64,
}

/// Time allowed past the schedule for the last reconnects to complete.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs `churn`.
pub fn run(c: &Common, a: &ChurnArgs) -> Result<Outcome, LoadError> {
    let mut spec = c.spec(a.connections, 0.0);
    let rate = f64::from(a.connections) * a.fraction_per_sec;
    let planned = (rate * a.hold_secs).round() as u64;
    spec.churn_rate = rate;
    spec.churn_total = planned;
    let mut load = Load::start(&spec)?;
    let ready = load.wait_until(Duration::from_secs(120), |t| t.connect_done)?;
    let schedule = Duration::from_secs_f64(a.hold_secs);
    // Too few back in time invalidates the run below.
    load.wait_until(schedule + DRAIN, |t| t.reconnects >= planned)?;
    let res = load.finish()?;
    let mut rep = RunReport::new(
        "churn",
        c.peer.label(),
        serde_json::json!({"connections": a.connections, "fraction_per_sec": a.fraction_per_sec,
            "hold_secs": a.hold_secs, "shards": c.shards, "workers": load.workers()}),
    );
    super::connect_figures(&mut rep, &res, 0.0, c);
    let achieved = res.churn_issue_rate;
    rep.metric("reconnects_planned", planned as f64);
    rep.metric("reconnects", res.reconnects as f64);
    rep.metric("reconnects_requested_per_s", rate);
    rep.metric(
        "disconnects_issued_per_s",
        (achieved * 100.0).round() / 100.0,
    );
    rep.histogram("reconnect", &res.reconnect);
    // Judge the rate only when enough reconnects were asked for to measure it.
    let judged = if rate * a.hold_secs >= 20.0 {
        achieved
    } else {
        rate
    };
    rep.invalidate(judge(&res.lag, rate, judged, c.budget(), "churn schedule"));
    if !ready {
        rep.invalidate(vec!["connect phase did not finish".into()]);
    }
    if res.reconnects < planned {
        rep.invalidate(vec![format!(
            "only {} of {planned} reconnects completed",
            res.reconnects
        )]);
    }
    Ok(Outcome::new(rep, load))
}
