//! `uplink`: requests at R/s from connected clients through the gateway to
//! a backend (the `gateway-bench backend` mock); round trip from each
//! request's intended send time to its Reply.

use std::time::Duration;

use super::load::{Load, LoadError};
use super::{Common, Outcome};
use crate::report::RunReport;
use crate::schedule::judge;

/// Options of `uplink`.
#[derive(Debug, Clone, clap::Args)]
pub struct UplinkArgs {
    /// Connected clients sending requests.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub connections: u32,
    /// Requests in total.
    #[arg(long, default_value_t = 10_000)]
    pub requests: u64,
    /// Requests per second in total.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Route named in each Uplink.
    #[arg(long, default_value = "echo")]
    pub route: String,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds to wait for the last replies.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 5.0)]
    pub drain_secs: f64,
}

/// Runs `uplink`.
pub fn run(c: &Common, a: &UplinkArgs) -> Result<Outcome, LoadError> {
    let mut spec = c.spec(a.connections, 0.0);
    spec.uplink_rate = a.rate;
    spec.uplink_total = a.requests;
    spec.uplink_route = a.route.clone();
    spec.payload_size = a.payload;
    let mut load = Load::start(&spec)?;
    let ready = load.wait_until(Duration::from_secs(120), |t| t.connect_done)?;
    let secs = a.requests as f64 / a.rate.max(1e-3) + a.drain_secs;
    let want = a.requests;
    load.wait_until(Duration::from_secs_f64(secs), |t| t.replies >= want)?;
    let res = load.finish()?;
    let mut rep = RunReport::new(
        "uplink",
        c.peer.label(),
        serde_json::json!({"connections": a.connections, "requests": a.requests, "rate": a.rate,
            "route": a.route, "payload": a.payload, "shards": c.shards, "workers": load.workers()}),
    );
    super::connect_figures(&mut rep, &res, 0.0, c);
    rep.metric("requests_sent", res.uplinks_sent as f64);
    let replies: u64 = res.reply_status.values().sum();
    rep.metric("replies", replies as f64);
    for (k, v) in &res.reply_status {
        rep.metric(&format!("replies_{k}"), *v as f64);
    }
    rep.metric(
        "unanswered",
        res.uplinks_sent.saturating_sub(replies) as f64,
    );
    rep.histogram("uplink_rtt", &res.uplink);
    rep.invalidate(judge(&res.lag, 0.0, 0.0, c.budget(), "uplink schedule"));
    if res.uplinks_sent < a.requests {
        rep.invalidate(vec![format!(
            "only {} of {} requests were sent",
            res.uplinks_sent, a.requests
        )]);
    }
    if !ready {
        rep.invalidate(vec!["connect phase did not finish".into()]);
    }
    Ok(Outcome::new(rep, load))
}
