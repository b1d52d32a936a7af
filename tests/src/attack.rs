//! The hostile-client suite: each [`Case`] attacks a real gateway for a
//! bounded time while a healthy client pings it and bystander sessions sit
//! idle, and reports the gateway's memory before, at peak and after, the
//! healthy client's ping latency during the attack, and how many
//! bystanders lost their session. `tests/tests/attack.rs` runs every case
//! small in `make test`; `e2e-attack` (`make attack`) runs them full size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Client, Gateway};

mod cases;
use cases::Attack;

/// One kind of hostile client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Many connections that trickle their Hello one byte at a time.
    Slowloris,
    /// Connections that send undecodable frames.
    Garbage,
    /// Hellos over the limits: 10,000 apps, 32 KB device labels, long app names.
    OversizedHello,
    /// Hello, Welcome, Bye, close, as fast as possible.
    ByeRace,
    /// Connect, handshake and drop, as fast as possible, from many threads.
    ReconnectStorm,
    /// Sessions that never read while pushes to them (32 KiB each, at
    /// [`PUSH_RATE`] in all) pile up.
    SlowConsumers,
    /// Control requests with conflicting framing headers or huge header lines.
    ControlSmuggling,
    /// Control connections that never finish their request head, or idle.
    ControlStalls,
}

impl Case {
    /// Every case, in the order the suite runs them.
    pub const ALL: [Case; 8] = [
        Case::Slowloris,
        Case::Garbage,
        Case::OversizedHello,
        Case::ByeRace,
        Case::ReconnectStorm,
        Case::SlowConsumers,
        Case::ControlSmuggling,
        Case::ControlStalls,
    ];

    /// The case's name in reports.
    /// The `/v1/stats` counters that show the gateway acting on this attack.
    pub fn counters(self) -> &'static [&'static str] {
        match self {
            Case::Slowloris => &["handshakes_timeout"],
            Case::Garbage => &["handshakes_protocol"],
            Case::OversizedHello => &["handshakes_protocol"],
            Case::ByeRace => &["client_closes"],
            Case::ReconnectStorm => &["handshakes_ok", "client_closes"],
            Case::SlowConsumers => &["slow_consumer_disconnects"],
            Case::ControlSmuggling => &[],
            Case::ControlStalls => &["control_head_timeouts", "control_idle_closes"],
        }
    }

    /// The case's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Case::Slowloris => "slowloris",
            Case::Garbage => "garbage-frames",
            Case::OversizedHello => "oversized-hello",
            Case::ByeRace => "bye-close-race",
            Case::ReconnectStorm => "reconnect-storm",
            Case::SlowConsumers => "slow-consumers",
            Case::ControlSmuggling => "control-smuggling",
            Case::ControlStalls => "control-stalls",
        }
    }
}

/// How big an attack is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// How long each attack lasts.
    pub secs: f64,
    /// Attacker threads of the looping cases.
    pub attackers: usize,
    /// Idle sessions that must survive the attack.
    pub bystanders: usize,
    /// Connections held open by the slowloris and control-stall cases.
    pub held: usize,
    /// Sessions that never read, in the slow-consumer case.
    pub slow_consumers: usize,
}

impl Scale {
    /// Small enough for `make test`: about 2 s an attack.
    pub fn small() -> Self {
        Self {
            secs: 2.0,
            attackers: 2,
            bystanders: 200,
            held: 200,
            slow_consumers: 10,
        }
    }

    /// The full-size run of `make attack`.
    pub fn full() -> Self {
        Self {
            secs: 15.0,
            attackers: 4,
            bystanders: 2_000,
            held: 4_000,
            slow_consumers: 100,
        }
    }
}

/// What one attack did to the gateway.
#[derive(Debug, Clone)]
pub struct Report {
    /// The attack.
    pub case: Case,
    /// Hostile actions taken (connections, requests, pushes).
    pub actions: u64,
    /// Gateway RSS before the attack, KiB.
    pub rss_before_kib: u64,
    /// Highest gateway RSS seen during the attack, KiB.
    pub rss_peak_kib: u64,
    /// Gateway RSS once the attack's connections are gone, KiB.
    pub rss_after_kib: u64,
    /// Pings the healthy client completed during the attack.
    pub pings: usize,
    /// Healthy client's ping round trip, median, µs.
    pub ping_p50_us: u64,
    /// Healthy client's ping round trip, 99th percentile, µs.
    pub ping_p99_us: u64,
    /// Bystander sessions (and the healthy client) that did not survive.
    pub strangers_lost: usize,
    /// The gateway's own counts of what it did about the attack (from
    /// `/v1/stats`), e.g. `slow_consumer_disconnects=100`.
    pub gateway_saw: String,
}

/// Nice value of the attacker threads (the healthy client stays at 0).
pub const ATTACKER_NICE: i32 = 10;

/// Pushes per second (32 KiB each) the backend sends the slow consumers.
pub const PUSH_RATE: f64 = 2_000.0;

/// The latency target: most a healthy client's ping p99 may be during an
/// attack in the full-size run (`make attack`), a benchmark run on a quiet
/// box.
pub const PING_P99_MAX_US: u64 = 10_000;

/// The liveness bound of the small run in `make test`: the healthy client
/// is never stalled for long. A timing target does not belong in a test
/// that shares the box with whatever else runs; this bound still fails a
/// gateway that stops serving others while it is attacked.
pub const PING_P99_LIVENESS_US: u64 = 1_000_000;

/// Most the gateway's RSS may stay above where it started once an attack
/// is over (allocator caches, a grown buffer pool, the slab's touched pages).
pub const RSS_AFTER_MAX_KIB: u64 = 32 * 1024;

impl Report {
    /// Whether the gateway held: strangers unharmed, the healthy client's
    /// ping p99 within `ping_p99_max_us`, memory back near where it
    /// started. The error lists what failed.
    pub fn verdict(&self, ping_p99_max_us: u64) -> Result<(), String> {
        let mut why = Vec::new();
        if self.strangers_lost > 0 {
            why.push(format!(
                "{} strangers lost their session",
                self.strangers_lost
            ));
        }
        if self.pings == 0 {
            why.push("the healthy client completed no ping".into());
        }
        if self.ping_p99_us > ping_p99_max_us {
            why.push(format!(
                "ping p99 {} µs > {ping_p99_max_us} µs",
                self.ping_p99_us
            ));
        }
        let kept = self.rss_after_kib.saturating_sub(self.rss_before_kib);
        if kept > RSS_AFTER_MAX_KIB {
            why.push(format!("RSS stayed {kept} KiB above its start"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", self.case.name(), why.join("; ")))
        }
    }

    /// One line of the suite's table, judged against `ping_p99_max_us`.
    pub fn row(&self, ping_p99_max_us: u64) -> String {
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {} | {} | {} |",
            self.case.name(),
            self.actions,
            self.rss_before_kib as f64 / 1024.0,
            self.rss_peak_kib as f64 / 1024.0,
            self.rss_after_kib as f64 / 1024.0,
            self.pings,
            self.ping_p50_us as f64 / 1000.0,
            self.ping_p99_us as f64 / 1000.0,
            self.strangers_lost,
            self.gateway_saw,
            if self.verdict(ping_p99_max_us).is_ok() {
                "held"
            } else {
                "FAILED"
            },
        )
    }

    /// The header of the suite's table.
    pub fn header() -> &'static str {
        "| case | hostile actions | RSS before MiB | peak MiB | after MiB | pings | ping p50 ms | ping p99 ms | strangers lost | gateway counted | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|"
    }
}

/// The gateway configuration the suite attacks: the defaults, with a short
/// handshake timeout and control timeouts so that a bounded run sees
/// stalled connections reclaimed.
pub const CONFIG: &str = "[protocol]\nhandshake_timeout_ms = 1500\n\
    [listen]\ncontrol_head_timeout_ms = 1000\ncontrol_idle_timeout_ms = 2000\n";

/// Runs `case` at `scale` against a fresh 2-shard gateway.
pub fn run(case: Case, scale: Scale) -> Report {
    let gw = Gateway::start(2, CONFIG);
    let pid = gw.pid();
    let mut bystanders: Vec<Client> = (0..scale.bystanders)
        .map(|i| Client::established(gw.client, &format!("bystander-{i}")))
        .collect();
    settle(&gw, scale.bystanders as u64);
    let rss_before_kib = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let actions = Arc::new(AtomicU64::new(0));
    let pinger = spawn_pinger(gw.client, stop.clone());
    let attack = Attack {
        case,
        scale,
        client: gw.client,
        control: gw.control,
        stop: stop.clone(),
        actions: actions.clone(),
    };
    let workers = attack.spawn();
    let deadline = Instant::now() + Duration::from_secs_f64(scale.secs);
    let mut rss_peak_kib = rss_before_kib;
    while Instant::now() < deadline {
        rss_peak_kib = rss_peak_kib.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let (mut rtts, pinger_alive) = pinger.join().unwrap_or_default();
    rss_peak_kib = rss_peak_kib.max(rss_kib(pid));
    // The attack's connections are closed; wait until the gateway freed them.
    settle(&gw, scale.bystanders as u64 + u64::from(pinger_alive));
    let rss_after_kib = rss_kib(pid);
    let gateway_saw = case
        .counters()
        .iter()
        .map(|name| format!("{name}={}", gw.total(name)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut strangers_lost = usize::from(!pinger_alive);
    for c in &mut bystanders {
        if !c.ping_pong() {
            strangers_lost += 1;
        }
    }
    rtts.sort_unstable();
    Report {
        case,
        actions: actions.load(Ordering::Relaxed),
        rss_before_kib,
        rss_peak_kib,
        rss_after_kib,
        pings: rtts.len(),
        ping_p50_us: percentile(&rtts, 0.50),
        ping_p99_us: percentile(&rtts, 0.99),
        strangers_lost,
        gateway_saw,
    }
}

/// Waits (up to 15 s) until the gateway holds exactly `connections`.
fn settle(gw: &Gateway, connections: u64) {
    gw.wait_total_until("connections", Duration::from_secs(15), |v| v == connections);
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Resident set size of `pid` in KiB (0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A healthy client pinging every 5 ms until `stop`: its round trips (µs)
/// and whether its session was still alive at the end.
fn spawn_pinger(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<(Vec<u64>, bool)> {
    let mut c = Client::established(addr, "healthy");
    std::thread::spawn(move || {
        let mut rtts = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            if !c.ping_pong() {
                return (rtts, false);
            }
            rtts.push(t.elapsed().as_micros() as u64);
            std::thread::sleep(Duration::from_millis(5));
        }
        (rtts, c.ping_pong())
    })
}
