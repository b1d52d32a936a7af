//! `suite`: the `make bench` comparison. Starts the gateway, mosquitto and
//! nats-server on loopback, runs `floor`, `connect` and `fanout` against
//! each at the largest counts the host allows, several times, and writes
//! the medians as a Markdown table (into docs/BENCHMARKS.md between
//! markers) plus the HTML and JSON reports of every run.

use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::connect::ConnectArgs;
use super::fanout::FanoutArgs;
use super::floor::FloorArgs;
use super::{Common, Outcome};
use crate::peers::{PeerError, PeerProc, start_mosquitto, start_nats};
use crate::preflight::{RESERVED_FDS, host_limits};
use crate::report::RunReport;
use crate::wire::PeerKind;

/// Start marker of the generated table in the Markdown file.
pub const MD_BEGIN: &str = "<!-- gateway-bench suite: begin -->";
/// End marker.
pub const MD_END: &str = "<!-- gateway-bench suite: end -->";

/// Options of `suite`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// The gateway binary to start.
    #[arg(long, default_value = "target/release/gateway")]
    pub gateway_bin: PathBuf,
    /// Connections for the gateway (0 = the most two shards' descriptor tables allow, minus slack).
    #[arg(long, default_value_t = 0)]
    pub gateway_connections: u32,
    /// Connections for every system side by side (0 = what one peer
    /// process can hold under RLIMIT_NOFILE, minus slack).
    #[arg(long, default_value_t = 0)]
    pub connections: u32,
    /// Connections per second offered to every system (the same for all;
    /// a storm beyond the gateway's handshake admission limit is refused
    /// with `overloaded`, by design).
    #[arg(long, default_value_t = 3_000.0)]
    pub connect_rate: f64,
    /// Broadcasts per fanout run (back to back).
    #[arg(long, default_value_t = 20)]
    pub messages: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Broadcasts per publish request in fanout runs (every system gets
    /// the same: one push batch, or one write of pipelined publishes).
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Repetitions (the table shows medians).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Markdown file to update between the suite markers.
    #[arg(long)]
    pub md: Option<PathBuf>,
    /// HTML report of all runs.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// JSON document of all runs.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Do not run anything: rebuild the table (and --md/--html) from the
    /// JSON document of an earlier suite run.
    #[arg(long)]
    pub from_json: Option<PathBuf>,
}

/// Errors of the suite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// A peer did not start.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The gateway did not start.
    #[error("gateway: {0}")]
    Gateway(String),
    /// I/O.
    #[error("suite I/O: {0}")]
    Io(#[from] std::io::Error),
}

struct GatewayProc(Child);

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_gateway(
    bin: &PathBuf,
    secret: &str,
) -> Result<(GatewayProc, SocketAddrV4, SocketAddr), SuiteError> {
    let client = SocketAddrV4::new([127, 0, 0, 1].into(), free_port()?);
    let control = SocketAddr::V4(SocketAddrV4::new([127, 0, 0, 1].into(), free_port()?));
    let child = Command::new(bin)
        .args([
            "--listen",
            &client.to_string(),
            "--control",
            &control.to_string(),
            "--shards",
            "2",
        ])
        .env("GATEWAY_JWT_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| SuiteError::Gateway(format!("cannot start {}: {e}", bin.display())))?;
    let gw = GatewayProc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(client).is_ok() {
            return Ok((gw, client, control));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(SuiteError::Gateway("did not listen within 10 s".into()))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Runs of one table cell.
fn cell<'a>(
    runs: &'a [RunReport],
    scenario: &'a str,
    system: &'a str,
    conns: u32,
) -> impl Iterator<Item = &'a RunReport> {
    runs.iter().filter(move |r| {
        r.scenario == scenario && r.system == system && r.params["connections"] == conns
    })
}

/// Median of a memory figure over runs whose connect phase completed
/// (≥ 99 % established): memory does not depend on the harness's timing.
fn med_memory(runs: &[RunReport], system: &str, conns: u32, metric: &str) -> Option<f64> {
    median(
        cell(runs, "connect", system, conns)
            .filter(|r| {
                r.metrics
                    .get("connections_established")
                    .is_some_and(|e| *e >= 0.99 * f64::from(conns))
            })
            .filter_map(|r| r.metrics.get(metric).copied())
            .collect(),
    )
}

/// Median of a timing figure over VALID runs; if there are none, over all
/// runs, flagged (`true`): the harness could not keep its schedule there.
fn med_timing(
    runs: &[RunReport],
    scenario: &str,
    system: &str,
    conns: u32,
    metric: &str,
) -> (Option<f64>, bool) {
    let of = |valid_only: bool| {
        median(
            cell(runs, scenario, system, conns)
                .filter(|r| r.valid || !valid_only)
                .filter_map(|r| r.metrics.get(metric).copied())
                .collect(),
        )
    };
    match of(true) {
        Some(v) => (Some(v), false),
        None => (of(false), of(false).is_some()),
    }
}

fn common(peer: PeerKind, target: SocketAddrV4, control: SocketAddr, secret: &str) -> Common {
    Common {
        peer,
        target,
        control,
        // One ring per worker: on a small box the harness shares the cores
        // with the system it measures.
        shards: 1,
        workers: 0,
        first_source: [127, 0, 0, 2].into(),
        heartbeat_ms: 30_000,
        jwt_secret: secret.into(),
        max_lag_us: 10_000,
        json: None,
        html: None,
        hdr_log: None,
    }
}

fn run_one(runs: &mut Vec<RunReport>, what: &str, r: Result<Outcome, super::load::LoadError>) {
    match r {
        Ok(o) => {
            print!("{}", o.report.summary_text());
            runs.push(o.report);
        }
        Err(e) => eprintln!("suite: {what}: {e}"),
    }
}

/// Runs the suite; `after_round` sees every run so far after each round
/// (so a time limit never loses finished rounds). Returns every run.
pub fn run(
    a: &SuiteArgs,
    after_round: &mut dyn FnMut(&[RunReport]),
) -> Result<Vec<RunReport>, SuiteError> {
    let secret = format!("suite-{}", crate::stamp::wall_us());
    let nofile = host_limits().nofile;
    // Peers hold one fd per connection; leave room for their own files.
    let side = if a.connections > 0 {
        a.connections
    } else {
        nofile.saturating_sub(1000).max(100)
    };
    let big = if a.gateway_connections > 0 {
        a.gateway_connections
    } else {
        (nofile.saturating_sub(RESERVED_FDS + 1000)) * 2
    };
    let mut runs = Vec::new();
    for round in 0..a.runs.max(1) {
        eprintln!("suite: round {} of {}", round + 1, a.runs);
        let floor = FloorArgs {
            connections: side,
            messages: 5,
            payload: a.payload,
            threads: 2,
            json: None,
            html: None,
        };
        match super::floor::run(&floor) {
            Ok(r) => runs.push(r),
            Err(e) => eprintln!("suite: floor: {e}"),
        }
        let systems: [(&str, PeerKind); 3] = [
            ("gateway", PeerKind::Gateway),
            ("mosquitto", PeerKind::Mqtt),
            ("nats", PeerKind::Nats),
        ];
        for (name, kind) in systems {
            let (guard_gw, guard_peer, target, control, pid): (
                Option<GatewayProc>,
                Option<PeerProc>,
                SocketAddrV4,
                SocketAddr,
                u32,
            ) = match kind {
                PeerKind::Gateway => {
                    let (g, t, c) = start_gateway(&a.gateway_bin, &secret)?;
                    let pid = g.0.id();
                    (Some(g), None, t, c, pid)
                }
                PeerKind::Nats => {
                    let p = start_nats(free_port()?)?;
                    let (t, pid) = (p.addr, p.pid());
                    (None, Some(p), t, SocketAddr::V4(t), pid)
                }
                _ => {
                    let p = start_mosquitto(free_port()?)?;
                    let (t, pid) = (p.addr, p.pid());
                    (None, Some(p), t, SocketAddr::V4(t), pid)
                }
            };
            let c = common(kind, target, control, &secret);
            let mut counts = vec![side];
            if kind == PeerKind::Gateway && big > side {
                counts.push(big);
            }
            for &n in &counts {
                let args = ConnectArgs {
                    connections: n,
                    rate: a.connect_rate,
                    hold_secs: 2.0,
                    settle_secs: 2.0,
                    gateway_pid: Some(pid),
                    timeout_secs: 120.0,
                };
                run_one(
                    &mut runs,
                    &format!("{name} connect {n}"),
                    super::connect::run(&c, &args),
                );
                let f = FanoutArgs {
                    connections: n,
                    connect_rate: a.connect_rate,
                    messages: a.messages,
                    msg_rate: 0.0,
                    topic: "bench".into(),
                    all: kind == PeerKind::Gateway,
                    payload: a.payload,
                    drain_secs: 30.0,
                    batch: a.batch,
                    timeout_secs: 120.0,
                };
                run_one(
                    &mut runs,
                    &format!("{name} fanout {n}"),
                    super::fanout::run_fanout(&c, &f),
                );
            }
            drop(guard_gw);
            drop(guard_peer);
        }
        after_round(&runs);
    }
    Ok(runs)
}

/// The Markdown comparison table (medians of valid runs) for `runs`.
#[must_use]
pub fn table(runs: &[RunReport]) -> String {
    let offered = runs
        .iter()
        .find(|r| r.scenario == "connect")
        .and_then(|r| r.params["rate"].as_f64())
        .unwrap_or(0.0);
    let floor = |m: &str| {
        median(
            runs.iter()
                .filter(|r| r.scenario == "floor")
                .filter_map(|r| r.metrics.get(m).copied())
                .collect(),
        )
    };
    let floor_dps = floor("deliveries_per_s");
    let floor_cps = floor("connections_per_s");
    let floor_bcast = floor("broadcast_us_per_1k_conns");
    let mut rows: Vec<(String, u32)> = Vec::new();
    for r in runs
        .iter()
        .filter(|r| r.scenario == "connect" || r.scenario == "fanout")
    {
        let n = u32::try_from(r.params["connections"].as_u64().unwrap_or(0)).unwrap_or(0);
        if !rows.iter().any(|(s, c)| s == &r.system && *c == n) {
            rows.push((r.system.clone(), n));
        }
    }
    let f = |v: Option<f64>, scale: f64, digits: usize| {
        v.map_or("–".to_string(), |x| format!("{:.*}", digits, x / scale))
    };
    let ratio = |v: Option<f64>, base: Option<f64>| match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
        _ => "–".into(),
    };
    let mut t = String::new();
    let offered = if offered > 0.0 {
        format!("{offered:.0}/s offered")
    } else {
        "storm".into()
    };
    let _ = writeln!(
        t,
        "| system | connections | RSS / idle conn (B) | kernel Slab / conn (B) | connections/s at {offered} (× floor) | broadcast deliveries/s (× floor) | fan-out completion p99 ms (× floor) |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
    for (sys, n) in &rows {
        let rss = med_memory(runs, sys, *n, "target_rss_bytes_per_conn");
        let slab = med_memory(runs, sys, *n, "kernel_slab_bytes_per_conn");
        let (cps, cps_flag) = med_timing(runs, "connect", sys, *n, "connections_per_s");
        let (dps, dps_flag) = med_timing(runs, "fanout", sys, *n, "deliveries_per_s");
        let (p99, p99_flag) = med_timing(runs, "fanout", sys, *n, "completion_p99_us");
        let dag = |flag: bool| if flag { " †" } else { "" };
        // The floor's completion for the same N: N sends split over 2 threads.
        let floor_p99 = floor_bcast.map(|us| us * f64::from(*n) / 1000.0);
        let _ = writeln!(
            t,
            "| {sys} | {n} | {} | {} | {}{} ({}) | {}{} ({}) | {}{} ({}) |",
            f(rss, 1.0, 0),
            f(slab, 1.0, 0),
            f(cps, 1.0, 0),
            dag(cps_flag),
            ratio(cps, floor_cps),
            f(dps, 1.0, 0),
            dag(dps_flag),
            ratio(dps, floor_dps),
            f(p99, 1000.0, 2),
            dag(p99_flag),
            ratio(p99, floor_p99),
        );
    }
    let _ = writeln!(
        t,
        "| floor (plain blocking loopback sockets) | {} | – | {} | {} | {} | {} (per 1k conns) |",
        f(floor("pairs"), 1.0, 0),
        f(floor("kernel_slab_bytes_per_pair"), 1.0, 0),
        f(floor_cps, 1.0, 0),
        f(floor_dps, 1.0, 0),
        f(floor_bcast, 1000.0, 3),
    );
    let _ = writeln!(
        t,
        "\n† no VALID run: the median of the INVALID runs, where the harness could not keep its own \
         schedule (it shares the cores with the system measured), so a rate is a lower bound and a \
         latency includes harness delay. Memory columns use every run whose connections were all \
         established. – : not measured (e.g. the run failed)."
    );
    t
}

/// Replaces the text between the markers of `md` (appending them if absent).
#[must_use]
pub fn splice(md: &str, body: &str) -> String {
    let block = format!("{MD_BEGIN}\n{body}{MD_END}");
    match (md.find(MD_BEGIN), md.find(MD_END)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &md[..a], &md[b + MD_END.len()..]),
        _ => format!("{md}\n{block}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(scenario: &str, system: &str, n: u32, m: &[(&str, f64)]) -> RunReport {
        let mut r = RunReport::new(scenario, system, serde_json::json!({"connections": n}));
        for (k, v) in m {
            r.metric(k, *v);
        }
        r
    }

    #[test]
    fn table_uses_medians_and_floor_ratios() {
        let mut runs = vec![rep(
            "floor",
            "floor",
            100,
            &[
                ("deliveries_per_s", 100_000.0),
                ("connections_per_s", 10_000.0),
                ("broadcast_us_per_1k_conns", 4000.0),
                ("pairs", 100.0),
            ],
        )];
        for v in [1.0, 3.0, 2.0] {
            runs.push(rep(
                "connect",
                "gateway",
                1000,
                &[
                    ("target_rss_bytes_per_conn", 100.0 * v),
                    ("connections_per_s", 20_000.0),
                    ("connections_established", 1000.0),
                ],
            ));
            runs.push(rep(
                "fanout",
                "gateway",
                1000,
                &[
                    ("deliveries_per_s", 200_000.0 * v),
                    ("completion_p99_us", 8000.0),
                ],
            ));
        }
        let mut bad = rep("fanout", "gateway", 1000, &[("deliveries_per_s", 1e12)]);
        bad.invalidate(vec!["x".into()]);
        runs.push(bad);
        let t = table(&runs);
        let row = t.lines().find(|l| l.starts_with("| gateway")).unwrap();
        assert!(row.contains("| 200 |"), "{row}");
        assert!(row.contains("20000 (2.00×)"), "{row}");
        assert!(row.contains("400000 (4.00×)"), "{row}");
        // Floor for 1000 conns: 4000 µs per 1k → 4 ms; 8 ms is 2×.
        assert!(row.contains("8.00 (2.00×)"), "{row}");
    }

    #[test]
    fn invalid_only_cells_are_flagged_and_memory_needs_all_established() {
        let mut a = rep(
            "connect",
            "nats",
            100,
            &[
                ("connections_per_s", 900.0),
                ("target_rss_bytes_per_conn", 20_000.0),
                ("connections_established", 100.0),
            ],
        );
        a.invalidate(vec!["lag".into()]);
        let b = rep(
            "connect",
            "nats",
            100,
            &[
                ("target_rss_bytes_per_conn", 1.0),
                ("connections_established", 50.0),
            ],
        );
        let t = table(&[a, b]);
        let row = t.lines().find(|l| l.starts_with("| nats")).unwrap();
        assert!(row.contains("| 20000 |"), "{row}");
        assert!(row.contains("900 †"), "{row}");
        assert!(t.contains("† no VALID run"));
    }

    #[test]
    fn splice_replaces_between_markers() {
        let md = format!("# B\n{MD_BEGIN}\nold\n{MD_END}\ntail\n");
        let out = splice(&md, "new\n");
        assert!(out.contains("new") && !out.contains("old") && out.ends_with("tail\n"));
        let out = splice("# B\n", "t\n");
        assert!(out.contains(MD_BEGIN) && out.contains("t\n"));
    }
}
