//! `gateway-bench`: the load harness. See the crate docs of `bench_harness`
//! and docs/BENCHMARKS.md.

use std::path::Path;

use anyhow::Context as _;
use bench_harness::report::{Document, RunReport, hdrlog, html};
use bench_harness::scenario::{self, Common, Outcome};
use bench_harness::worker;
use clap::{Parser, Subcommand};

/// Command line of the load harness.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load harness for long-lived-connection systems (gateway, MQTT, NATS)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Scenarios the harness runs.
#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open N connections at a rate, handshake, hold; memory per connection.
    Connect {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenario::connect::ConnectArgs,
    },
    /// N subscribers, M broadcasts: delivery latency, completion, deliveries/s.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenario::fanout::FanoutArgs,
    },
    /// Pushes to random connected users at R/s: push-to-client latency.
    Unicast {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenario::fanout::UnicastArgs,
    },
    /// Requests at R/s through the gateway to a backend: round trip.
    Uplink {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenario::uplink::UplinkArgs,
    },
    /// Hold N and reconnect a fraction per second: reconnect latency, failures.
    Churn {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenario::churn::ChurnArgs,
    },
    /// The physical floor: the same sends over plain blocking loopback sockets.
    Floor(scenario::floor::FloorArgs),
    /// The `make bench` comparison: gateway vs mosquitto vs nats-server.
    Suite(scenario::suite::SuiteArgs),
    /// Runs mosquitto or nats-server in the foreground, as the side-by-side
    /// runs start it (loopback only, same config), for scripts that start
    /// a peer themselves: the process becomes the peer, so its pid is the
    /// one to measure (`connect --gateway-pid`).
    Peer(PeerArgs),
    // Mock backend (issue 5), owned by the backend module's author.
    /// Mock backend: auth webhook, uplink echo (delay, error rate), events sink.
    Backend(bench_harness::backend::BackendArgs),
    /// Internal: a worker process (started by the harness itself).
    #[command(name = "__worker", hide = true)]
    Worker,
}

impl Scenario {
    /// The shared load options, for the scenarios that take them.
    fn common(&self) -> Option<&Common> {
        match self {
            Scenario::Connect { common, .. }
            | Scenario::Fanout { common, .. }
            | Scenario::Unicast { common, .. }
            | Scenario::Uplink { common, .. }
            | Scenario::Churn { common, .. } => Some(common),
            _ => None,
        }
    }
}

/// A peer server `gateway-bench peer` can run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PeerServer {
    /// mosquitto 2.x (MQTT).
    Mosquitto,
    /// nats-server 2.x.
    NatsServer,
}

#[derive(Debug, clap::Args)]
struct PeerArgs {
    /// Which peer.
    #[arg(value_enum)]
    server: PeerServer,
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Where to write its config (default: a directory under the system's
    /// temporary directory, named after the peer and port).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Its listener: tcp (its own protocol), ws (mosquitto's `protocol
    /// websockets`, nats-server's `websocket` block), tls or wss (the same
    /// with `--tls-cert` and `--tls-key`).
    #[arg(long, value_enum, default_value = "tcp")]
    transport: bench_harness::wire::Transport,
    /// Certificate chain (PEM) of a tls or wss listener.
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of a tls or wss listener.
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
}

fn run_peer(args: &PeerArgs) -> anyhow::Result<()> {
    use bench_harness::peers;
    use bench_harness::wire::Transport;
    let tls = match (args.transport.is_tls(), &args.tls_cert, &args.tls_key) {
        (true, Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (true, _, _) => anyhow::bail!(
            "peer --transport {} needs --tls-cert and --tls-key",
            args.transport.label()
        ),
        (false, None, None) => None,
        (false, _, _) => anyhow::bail!("--tls-cert and --tls-key are for --transport tls or wss"),
    };
    if args.transport == Transport::Mqtt {
        anyhow::bail!("peer --transport mqtt: the peers' listeners are tcp, ws, tls or wss");
    }
    let listener = peers::PeerListener {
        websocket: args.transport.is_websocket(),
        tls,
    };
    let name = match args.server {
        PeerServer::Mosquitto => "mosquitto",
        PeerServer::NatsServer => "nats",
    };
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gateway-bench-peer-{name}-{}", args.port))
    });
    let peer = match args.server {
        PeerServer::Mosquitto => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            peers::mosquitto_command_for(args.port, &listener, &dir)?
        }
        PeerServer::NatsServer if listener == peers::PeerListener::default() => {
            peers::nats_command(args.port)
        }
        PeerServer::NatsServer => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            peers::nats_command_for(args.port, &listener, &dir)?
        }
    };
    Err(peers::exec(peer).into())
}

fn write_outputs(common: &Common, out: &Outcome) -> anyhow::Result<()> {
    print!("{}", out.report.summary_text());
    write_docs(
        common.json.as_deref(),
        common.html.as_deref(),
        std::slice::from_ref(&out.report),
    )?;
    if let Some(p) = &common.hdr_log {
        let mut f = std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?;
        let start = std::time::SystemTime::now()
            - std::time::Duration::from_secs_f64(out.intervals.last().map_or(0.0, |x| x.0));
        hdrlog::write_log(&mut f, start, "delivery", &out.intervals)
            .with_context(|| format!("write {}", p.display()))?;
    }
    if !out.report.valid {
        eprintln!("run INVALID: {}", out.report.invalid_reasons.join("; "));
        std::process::exit(3);
    }
    Ok(())
}

fn write_docs(
    json: Option<&Path>,
    html_path: Option<&Path>,
    runs: &[RunReport],
) -> anyhow::Result<()> {
    if let Some(p) = json {
        let doc = Document::new(runs.to_vec());
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(p) = html_path {
        let intro = format!(
            "gateway-bench report. Command: <code>{}</code>",
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        let page =
            html::render("gateway-bench report", &intro, runs).map_err(anyhow::Error::msg)?;
        std::fs::write(p, page).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

/// Runs the command; an error is one line on stderr (its causes joined by
/// colons, never a backtrace) and exit status 1.
fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("gateway-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Before anything connects or starts: a transport the peer lacks.
    if let Some(c) = cli.scenario.common() {
        c.transport.check(c.peer)?;
        if let Some(Err(why)) = c.tls_plan() {
            anyhow::bail!(why);
        }
    }
    if let Scenario::Unicast { common, args } = &cli.scenario {
        args.check(common.peer, common.transport)?;
    }
    match cli.scenario {
        Scenario::Worker => worker::worker_main().context("worker"),
        Scenario::Backend(args) => bench_harness::backend::run(args),
        Scenario::Peer(args) => run_peer(&args),
        Scenario::Connect { common, args } => {
            write_outputs(&common, &scenario::connect::run(&common, &args)?)
        }
        Scenario::Fanout { common, args } => {
            write_outputs(&common, &scenario::fanout::run_fanout(&common, &args)?)
        }
        Scenario::Unicast { common, args } => {
            write_outputs(&common, &scenario::fanout::run_unicast(&common, &args)?)
        }
        Scenario::Uplink { common, args } => {
            write_outputs(&common, &scenario::uplink::run(&common, &args)?)
        }
        Scenario::Churn { common, args } => {
            write_outputs(&common, &scenario::churn::run(&common, &args)?)
        }
        Scenario::Suite(args) => {
            let publish = |runs: &[RunReport], fresh: bool| -> anyhow::Result<String> {
                let table = scenario::suite::table(runs);
                if fresh {
                    write_docs(args.json.as_deref(), None, runs)?;
                }
                write_docs(None, args.html.as_deref(), runs)?;
                if let Some(md) = &args.md {
                    let old = std::fs::read_to_string(md).unwrap_or_default();
                    let rounds = runs.iter().filter(|r| r.scenario == "floor").count();
                    let body = format!(
                        "Generated by `{}` on {} CPUs, Linux {} ({rounds} round(s); medians).\n\n{table}",
                        std::env::args().collect::<Vec<_>>().join(" "),
                        std::thread::available_parallelism().map_or(0, usize::from),
                        std::fs::read_to_string("/proc/sys/kernel/osrelease")
                            .unwrap_or_default()
                            .trim(),
                    );
                    std::fs::write(md, scenario::suite::splice(&old, &body))
                        .with_context(|| format!("write {}", md.display()))?;
                }
                Ok(table)
            };
            let runs = match &args.from_json {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("read {}", p.display()))?;
                    serde_json::from_str::<Document>(&text)
                        .with_context(|| format!("parse {}", p.display()))?
                        .runs
                }
                None => scenario::suite::run(&args, &mut |runs| {
                    if let Err(e) = publish(runs, true) {
                        eprintln!("suite: writing reports: {e:#}");
                    }
                })?,
            };
            println!("{}", publish(&runs, args.from_json.is_none())?);
            Ok(())
        }
        Scenario::Floor(args) => {
            let rep = scenario::floor::run(&args).context("floor")?;
            print!("{}", rep.summary_text());
            write_docs(args.json.as_deref(), args.html.as_deref(), &[rep])
        }
    }
}
