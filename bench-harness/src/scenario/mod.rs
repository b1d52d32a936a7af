//! Scenarios: each builds a load, drives it, and returns a [`RunReport`].

pub mod churn;
pub mod connect;
pub mod crosscheck;
pub mod drain;
pub mod fanout;
pub mod floor;
pub mod load;
pub mod sender;
pub mod suite;
pub mod uplink;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use crate::engine::ShardResult;
use crate::report::RunReport;
use crate::schedule::{LagBudget, judge};

use crate::wire::{PeerKind, Transport};
pub use drain::{DrainPhase, PhaseEnd};
use tuning::config::DriverChoice;

/// Longest duration a `--*-secs` option takes: about eleven days.
const MAX_SECS: f64 = 1e6;

/// Parses a `--*-secs` option: a finite number of seconds from 0 to
/// [`MAX_SECS`], so that it always converts to a `Duration`.
///
/// # Errors
/// Says what is wrong with the text.
pub fn seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if (0.0..=MAX_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("{text} seconds is out of range (0 to {MAX_SECS})"))
    }
}

/// Options every load scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// System under test and its protocol.
    #[arg(long, value_enum, default_value = "gateway")]
    pub peer: PeerKind,
    /// How connections reach it: tcp; ws (WebSocket: the gateway's `[listen]
    /// websocket`, mosquitto's `protocol websockets` listener, nats-server's
    /// `websocket` block); tls (the gateway's `client_tls`, the brokers'
    /// TLS listeners); wss (WebSocket inside TLS: the gateway's
    /// `websocket_tls`); mqtt (the gateway's MQTT 3.1.1 listener, `[listen]
    /// mqtt`; the token is the CONNECT password). Give that listener's
    /// address as `--target`; tls and wss need `--tls-ca`.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// PEM file of the CA that signed the server's certificate (`--transport
    /// tls|wss`): the only one trusted.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the target's
    /// IP address).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// The TLS version offered: 1.3 (the default) or 1.2. Session
    /// resumption is off: every handshake is a full one.
    #[arg(long, value_enum, default_value = "1.3")]
    pub tls_version: crate::wire::tls::TlsVersion,
    /// Client address of the system under test.
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub target: SocketAddrV4,
    /// Gateway control listener (push API, stats).
    #[arg(long, default_value = "127.0.0.1:7101")]
    pub control: SocketAddr,
    /// Shard threads (io_uring rings or epoll sets) per worker process.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    /// Which driver the harness's shards run on: auto (io_uring where the
    /// host allows it, else epoll, with one line on stderr saying why),
    /// io_uring (fail if it is unavailable) or epoll (inside containers
    /// whose seccomp profile denies io_uring).
    #[arg(long, env = "GATEWAY_BENCH_DRIVER", default_value = "auto")]
    pub driver: DriverChoice,
    /// Scheduling policy of the harness's load threads: normal, or batch
    /// (SCHED_BATCH: a woken harness thread does not preempt the system
    /// under test on a shared box; see `bench_harness::sched`).
    #[arg(
        long,
        env = "GATEWAY_BENCH_SCHED",
        value_enum,
        default_value = "normal"
    )]
    pub sched: crate::sched::Sched,
    /// Worker processes (0 = as few as the connection count needs).
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// First loopback source address; more follow (127.0.0.3, ...) when needed.
    #[arg(long, default_value = "127.0.0.2")]
    pub first_source: Ipv4Addr,
    /// Heartbeat to propose, ms.
    #[arg(long, default_value_t = 30_000)]
    pub heartbeat_ms: u32,
    /// HS256 secret for gateway tokens.
    #[arg(long, env = "GATEWAY_JWT_SECRET", default_value = "")]
    pub jwt_secret: String,
    /// Largest acceptable p99 of the harness's own schedule lag, µs, before
    /// the run is marked INVALID.
    #[arg(long, default_value_t = 10_000)]
    pub max_lag_us: u64,
    /// End a delivery phase when no delivery has arrived for this many
    /// seconds (it also ends when every expected delivery is in). Late
    /// deliveries, after `--drain-secs`, are counted as late, not lost.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 5.0)]
    pub quiet_secs: f64,
    /// Longest a delivery phase waits, however steadily deliveries still
    /// arrive (a bound on every run).
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 600.0)]
    pub max_drain_secs: f64,
    /// Connection attempts that may fail before their session is
    /// established without making the run INVALID (default: none may).
    #[arg(long, default_value_t = 0)]
    pub allow_connect_failures: u64,
    /// Write the JSON report (versioned schema) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write the HDR interval log of delivery latency here.
    #[arg(long)]
    pub hdr_log: Option<PathBuf>,
}

impl Common {
    /// The lag budget from the options.
    #[must_use]
    pub fn budget(&self) -> LagBudget {
        LagBudget {
            p99_us: self.max_lag_us,
            ..LagBudget::default()
        }
    }

    /// A load spec with these options and no scenario specifics.
    #[must_use]
    pub fn spec(&self, connections: u32, connect_rate: f64) -> load::LoadSpec {
        load::LoadSpec {
            peer: self.peer,
            transport: self.transport,
            tls: self.tls_plan(),
            target: self.target,
            connections,
            connect_rate,
            shards: self.shards,
            driver: self.driver,
            sched: self.sched,
            workers: self.workers,
            first_source: self.first_source,
            heartbeat_ms: self.heartbeat_ms,
            jwt_secret: self.jwt_secret.clone(),
            subscribe: None,
            churn_rate: 0.0,
            churn_total: 0,
            uplink_rate: 0.0,
            uplink_total: 0,
            uplink_route: String::new(),
            payload_size: 0,
            expected_msgs: 0,
            ack: false,
        }
    }

    /// The TLS settings of a `tls` or `wss` run: the CA file's text, the
    /// server name, the version (`None` for the other transports). A CA
    /// file that cannot be read is an error when the load starts.
    #[must_use]
    pub fn tls_plan(&self) -> Option<Result<crate::wire::tls::TlsPlan, String>> {
        if !self.transport.is_tls() {
            return None;
        }
        let Some(path) = &self.tls_ca else {
            return Some(Err(crate::wire::TransportError::NeedsCa(
                self.transport.label(),
            )
            .to_string()));
        };
        Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--tls-ca {}: {e}", path.display()))
                .map(|ca_pem| crate::wire::tls::TlsPlan {
                    ca_pem,
                    server_name: self
                        .tls_server_name
                        .clone()
                        .unwrap_or_else(|| self.target.ip().to_string()),
                    version: self.tls_version,
                }),
        )
    }

    /// The TLS client of a `tls` or `wss` run (for the brokers' publishers).
    ///
    /// # Errors
    /// The CA file cannot be read or used.
    pub fn tls_client(&self) -> Result<Option<crate::wire::tls::TlsClient>, load::LoadError> {
        self.tls_plan()
            .map(|plan| {
                let plan = plan.map_err(load::LoadError::Tls)?;
                crate::wire::tls::TlsClient::new(&plan)
                    .map_err(|e| load::LoadError::Tls(e.to_string()))
            })
            .transpose()
    }

    /// Where pushes go: the control listener for the gateway, the broker otherwise.
    #[must_use]
    pub fn publish_addr(&self) -> SocketAddr {
        match self.peer {
            PeerKind::Gateway => self.control,
            _ => SocketAddr::V4(self.target),
        }
    }
}

/// A finished scenario: its report and its per-second delivery histograms.
#[derive(Debug)]
pub struct Outcome {
    /// The report (timeline included).
    pub report: RunReport,
    /// (seconds, histogram) per interval, for the HDR interval log.
    pub intervals: Vec<(f64, crate::histo::Latency)>,
}

impl Outcome {
    /// Takes the timeline, intervals, driver and scheduling policy of a
    /// finished load.
    #[must_use]
    pub fn new(mut report: RunReport, load: load::Load) -> Self {
        report.driver = Some(load.driver().as_str().to_string());
        report.sched = Some(load.sched().as_str().to_string());
        report.timeline = load.timeline;
        Self {
            report,
            intervals: load.intervals,
        }
    }
}

/// Figures of the connect phase every load scenario reports, and the
/// verdict on its connections ([`drain::judge_connections`]).
pub fn connect_figures(rep: &mut RunReport, res: &ShardResult, requested_rate: f64, c: &Common) {
    let budget = c.budget();
    if let Some(params) = rep.params.as_object_mut() {
        params.insert("transport".into(), c.transport.label().into());
    }
    if let Some(note) = c.transport.note(c.peer, c.target) {
        rep.note(note);
    }
    tls_figures(rep, res, c);
    rep.metric("connections_attempted", res.attempts as f64);
    rep.metric(
        "connections_established",
        res.established.saturating_sub(res.reconnects) as f64,
    );
    let span_s = res
        .last_established_us
        .saturating_sub(res.first_intended_us) as f64
        / 1e6;
    let achieved = if span_s > 0.0 {
        res.established.saturating_sub(res.reconnects) as f64 / span_s
    } else {
        0.0
    };
    rep.metric("connections_per_s", achieved.round());
    rep.histogram("connect", &res.connect);
    rep.histogram("handshake", &res.handshake);
    rep.histogram("schedule_lag", &res.lag);
    rep.failures = res.failures.clone();
    let failures: u64 = res.failures.values().sum();
    let most = res
        .failures
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(why, _)| why.as_str());
    rep.invalidate(drain::judge_connections(
        res.attempts,
        res.established,
        failures,
        res.attempts,
        c.allow_connect_failures,
        most,
    ));
    // Connection attempts are issued by the harness's schedule: its lag says
    // whether the requested rate was kept (the achieved rate above also
    // reflects the target's speed, so it is reported, not judged).
    rep.metric("connect_rate_requested_per_s", requested_rate.max(0.0));
    if requested_rate > 0.0 {
        rep.metric("connect_rate_issued_per_s", res.connect_issue_rate.round());
        // Only a schedule long enough to time (≥ 20 intervals) is judged on rate.
        let n = res.attempts.saturating_sub(res.reconnects) as f64;
        let issued = if n >= 20.0 {
            res.connect_issue_rate
        } else {
            requested_rate
        };
        rep.invalidate(judge(
            &res.lag,
            requested_rate,
            issued,
            budget,
            "connect schedule",
        ));
    }
}

/// What the TLS handshakes of a run agreed, and how many there were: every
/// one full (resumption is off), counted by version, suite and group.
fn tls_figures(rep: &mut RunReport, res: &ShardResult, c: &Common) {
    if !c.transport.is_tls() {
        return;
    }
    let total: u64 = res.tls.values().sum();
    let full: u64 = res
        .tls
        .iter()
        .filter(|(k, _)| k.contains(" full"))
        .map(|(_, n)| n)
        .sum();
    rep.metric("tls_handshakes", total as f64);
    rep.metric("tls_full_handshakes", full as f64);
    let span_s = res
        .last_established_us
        .saturating_sub(res.first_intended_us) as f64
        / 1e6;
    if span_s > 0.0 {
        rep.metric("tls_full_handshakes_per_s", (full as f64 / span_s).round());
    }
    let agreed: Vec<String> = res.tls.iter().map(|(k, n)| format!("{n} × {k}")).collect();
    rep.note(format!(
        "TLS handshakes (full: session resumption off; version, cipher suite, key exchange): {}",
        if agreed.is_empty() {
            "none".to_string()
        } else {
            agreed.join(", ")
        }
    ));
    if let Some(params) = rep.params.as_object_mut() {
        params.insert(
            "tls_version".into(),
            serde_json::to_value(c.tls_version).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn seconds_are_finite_and_in_range() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("0"), Ok(0.0));
        for bad in ["-1", "NaN", "inf", "1e7", "soon", ""] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
