//! `suite`: the `make bench` comparison. Starts the gateway, mosquitto and
//! nats-server on loopback, runs `floor`, `connect` and `fanout` against
//! each at the largest counts the host allows and `unicast` at a fixed
//! rate, several times, and writes
//! the medians as a Markdown table (into docs/BENCHMARKS.md between
//! markers) plus the HTML and JSON reports of every run.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::connect::ConnectArgs;
use super::fanout::{FanoutArgs, UnicastArgs};
use super::floor::FloorArgs;
use super::{Common, Outcome};
use crate::peers::{PeerError, PeerProc, start_mosquitto, start_nats};
use crate::preflight::{RESERVED_FDS, host_limits};
use crate::report::RunReport;
use crate::wire::PeerKind;
use tuning::config::DriverChoice;

mod table;

pub use table::{MD_BEGIN, MD_END, splice, table};

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
    /// Pushes per second of the unicast runs (0 = no unicast runs).
    #[arg(long, default_value_t = 20_000.0)]
    pub unicast_rate: f64,
    /// Seconds of pushing per unicast run.
    #[arg(long, value_parser = crate::scenario::seconds, default_value_t = 10.0)]
    pub unicast_secs: f64,
    /// Connected users of the unicast runs (at most the side-by-side count).
    #[arg(long, default_value_t = 10_000)]
    pub unicast_users: u32,
    /// Repetitions (the table shows medians).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Markdown file to update between the suite markers.
    #[arg(long)]
    pub md: Option<PathBuf>,
    /// Which driver the harness's shards run on (auto, io_uring, epoll;
    /// as for the load scenarios). The gateway it starts picks its own.
    #[arg(long, env = "GATEWAY_BENCH_DRIVER", default_value = "auto")]
    pub driver: DriverChoice,
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

/// A gateway the suite started, and the directory of its durable store
/// (its own, removed with it: a benchmark run keeps no pushes).
struct GatewayProc(Child, PathBuf);

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
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
    let data = std::env::temp_dir().join(format!(
        "gateway-bench-store-{}-{}",
        std::process::id(),
        control.port()
    ));
    let child = Command::new(bin)
        .args([
            "--listen",
            &client.to_string(),
            "--control",
            &control.to_string(),
            "--shards",
            "2",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("GATEWAY_JWT_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| SuiteError::Gateway(format!("cannot start {}: {e}", bin.display())))?;
    let gw = GatewayProc(child, data);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(client).is_ok() {
            return Ok((gw, client, control));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(SuiteError::Gateway("did not listen within 10 s".into()))
}

fn common(
    peer: PeerKind,
    target: SocketAddrV4,
    control: SocketAddr,
    secret: &str,
    driver: DriverChoice,
) -> Common {
    Common {
        peer,
        transport: crate::wire::Transport::Tcp,
        tls_ca: None,
        tls_server_name: None,
        tls_version: crate::wire::tls::TlsVersion::V13,
        target,
        control,
        // One ring per worker: on a small box the harness shares the cores
        // with the system it measures.
        shards: 1,
        driver,
        sched: crate::sched::Sched::Normal,
        workers: 0,
        first_source: [127, 0, 0, 2].into(),
        heartbeat_ms: 30_000,
        jwt_secret: secret.into(),
        max_lag_us: 10_000,
        quiet_secs: 5.0,
        max_drain_secs: 600.0,
        allow_connect_failures: 0,
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
    // At least 32 bytes: the gateway refuses shorter HS256 secrets.
    let secret = format!("gateway-bench-suite-secret-{:020}", crate::stamp::wall_us());
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
            let c = common(kind, target, control, &secret, a.driver);
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
            if a.unicast_rate > 0.0 {
                let u = UnicastArgs {
                    connections: a.unicast_users.min(side),
                    connect_rate: a.connect_rate,
                    pushes: (a.unicast_rate * a.unicast_secs).round() as u64,
                    rate: a.unicast_rate,
                    publishers: 1,
                    payload: 64,
                    drain_secs: 10.0,
                    batch: 1,
                    timeout_secs: 120.0,
                    ack: false,
                    ack_wait_secs: 10.0,
                };
                run_one(
                    &mut runs,
                    &format!("{name} unicast"),
                    super::fanout::run_unicast(&c, &u),
                );
            }
            drop(guard_gw);
            drop(guard_peer);
        }
        after_round(&runs);
    }
    Ok(runs)
}
