//! The hostile-client suite: each [`Case`] attacks a real gateway for a
//! bounded time while a healthy client pings it and bystander sessions sit
//! idle, and reports the gateway's memory before, at peak and after, the
//! healthy client's ping latency during the attack, and how many
//! bystanders lost their session. `tests/tests/attack.rs` runs every case
//! small in `make test`; `e2e-attack` (`make attack`) runs them full size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::client::{ClientConfig, ClientEvent};
use protocol::codec;
use protocol::proto::frame::Kind;

use crate::{Client, Gateway, token};

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

struct Attack {
    case: Case,
    scale: Scale,
    client: SocketAddr,
    control: SocketAddr,
    stop: Arc<AtomicBool>,
    actions: Arc<AtomicU64>,
}

impl Attack {
    fn spawn(&self) -> Vec<JoinHandle<()>> {
        let threads = match self.case {
            Case::Slowloris | Case::ControlStalls | Case::SlowConsumers => 1,
            _ => self.scale.attackers,
        };
        (0..threads)
            .map(|t| {
                let a = self.clone_for_thread();
                std::thread::spawn(move || a.run(t))
            })
            .collect()
    }

    fn clone_for_thread(&self) -> Attack {
        Attack {
            case: self.case,
            scale: self.scale,
            client: self.client,
            control: self.control,
            stop: self.stop.clone(),
            actions: self.actions.clone(),
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn acted(&self) {
        self.actions.fetch_add(1, Ordering::Relaxed);
    }

    fn run(&self, thread: usize) {
        // The attackers share the box's cores with the gateway: at nice 10
        // they yield to it, so the healthy client's latency measures how
        // the gateway treats it, not how the scheduler shares two cores
        // between a load generator and the server it loads.
        // SAFETY: setpriority(2) on the calling thread (who = 0); Linux
        // keeps nice values per thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ATTACKER_NICE) };
        match self.case {
            Case::Slowloris => self.slowloris(),
            Case::Garbage => self.looping(|n| self.garbage(n)),
            Case::OversizedHello => self.looping(|n| self.oversized_hello(n)),
            Case::ByeRace => self.looping(|_| self.bye_race()),
            Case::ReconnectStorm => self.looping(|n| self.reconnect(thread, n)),
            Case::SlowConsumers => self.slow_consumers(),
            Case::ControlSmuggling => self.looping(|n| self.smuggle(n)),
            Case::ControlStalls => self.control_stalls(),
        }
    }

    /// Repeats one hostile action until stopped.
    fn looping(&self, mut action: impl FnMut(u64)) {
        let mut n = 0;
        while self.running() {
            action(n);
            self.acted();
            n += 1;
        }
    }

    fn connect(&self) -> Option<TcpStream> {
        let s = TcpStream::connect_timeout(&self.client, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(s)
    }

    fn slowloris(&self) {
        let mut held: Vec<(TcpStream, usize)> = Vec::new();
        let mut hello = Vec::new();
        codec::encode_frame(
            &codec::frame(Kind::Hello(protocol::proto::Hello {
                version: 1,
                token: token("loris"),
                ..Default::default()
            })),
            &mut hello,
        );
        while self.running() {
            // Top up to the target (the gateway closes them at the handshake timeout).
            while held.len() < self.scale.held && self.running() {
                match self.connect() {
                    Some(s) => held.push((s, 0)),
                    None => break,
                }
                self.acted();
            }
            held.retain_mut(|(s, sent)| {
                let byte = hello.get(*sent).copied().unwrap_or(0);
                *sent += 1;
                s.write_all(&[byte]).is_ok()
            });
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn garbage(&self, n: u64) {
        let Some(mut s) = self.connect() else {
            return;
        };
        let junk: Vec<u8> = match n % 4 {
            0 => vec![0, 0, 0, 0],
            1 => vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            2 => {
                let mut v = vec![0, 0, 0, 16];
                v.extend((0..16).map(|i| (n as u8).wrapping_mul(31).wrapping_add(i)));
                v
            }
            _ => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        };
        let _ = s.write_all(&junk);
        drain(&mut s);
    }

    fn oversized_hello(&self, n: u64) {
        let mut cfg = ClientConfig {
            token: token("oversized"),
            ..ClientConfig::default()
        };
        match n % 3 {
            0 => cfg.apps = (0..10_000).map(|i: u32| i.to_string()).collect(),
            1 => cfg.device = "d".repeat(32 * 1024),
            _ => cfg.apps = vec!["a".repeat(1000)],
        }
        let Some(s) = self.connect() else {
            return;
        };
        let mut c = Client::over(s, cfg);
        let mut out = Vec::new();
        c.session.start(&mut out);
        let _ = c.stream.write_all(&out);
        let _ = c.wait_closed(Duration::from_secs(2));
    }

    fn bye_race(&self) {
        let Some(s) = self.connect() else {
            return;
        };
        let mut c = Client::over(
            s,
            ClientConfig {
                token: token("bye"),
                ..ClientConfig::default()
            },
        );
        let mut out = Vec::new();
        c.session.start(&mut out);
        if c.stream.write_all(&out).is_err() {
            return;
        }
        if matches!(
            c.next_event(Duration::from_secs(2)),
            Some(ClientEvent::Welcome(_))
        ) {
            let mut bye = Vec::new();
            c.session.bye(&mut bye);
            let _ = c.stream.write_all(&bye);
        }
    }

    fn reconnect(&self, thread: usize, n: u64) {
        let Some(s) = self.connect() else {
            return;
        };
        let mut c = Client::over(
            s,
            ClientConfig {
                token: token(&format!("storm-{thread}-{}", n % 100)),
                ..ClientConfig::default()
            },
        );
        let mut out = Vec::new();
        c.session.start(&mut out);
        let _ = c.stream.write_all(&out);
        let _ = c.next_event(Duration::from_secs(2));
        // Dropped without a Bye: the gateway sees EOF.
    }

    fn slow_consumers(&self) {
        let sloths: Vec<Client> = (0..self.scale.slow_consumers)
            .filter_map(|i| {
                let s = self.connect()?;
                let mut c = Client::over(
                    s,
                    ClientConfig {
                        token: token(&format!("sloth-{i}")),
                        ..ClientConfig::default()
                    },
                );
                let mut out = Vec::new();
                c.session.start(&mut out);
                c.stream.write_all(&out).ok()?;
                matches!(
                    c.next_event(Duration::from_secs(2)),
                    Some(ClientEvent::Welcome(_))
                )
                .then_some(c)
            })
            .collect();
        let payload = "s".repeat(32 * 1024);
        let mut control = None;
        let mut i = 0usize;
        // The backend pushes at a steady PUSH_RATE: the attack is the
        // clients that stop reading, not a push load that saturates the
        // shard (that would slow every client, slow consumers or not).
        let started = Instant::now();
        while self.running() && !sloths.is_empty() {
            let due = started + Duration::from_secs_f64(i as f64 / PUSH_RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let user = format!("sloth-{}", i % sloths.len());
            let body = format!(r#"{{"to": {{"user": "{user}"}}, "payload": "{payload}"}}"#);
            if control.is_none() {
                control = TcpStream::connect(self.control).ok();
            }
            let Some(s) = control.as_mut() else {
                break;
            };
            let req = crate::http_request("POST", "/v1/push", &body, false);
            if s.write_all(req.as_bytes()).is_err() || crate::read_responses(s, 1).is_empty() {
                control = None;
            }
            self.acted();
            i += 1;
        }
        drop(sloths);
    }

    fn smuggle(&self, n: u64) {
        let Ok(mut s) = TcpStream::connect(self.control) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req: Vec<u8> = match n % 4 {
            0 => b"POST /v1/push HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc".to_vec(),
            1 => b"POST /v1/push HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
                .to_vec(),
            2 => format!("GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(100 * 1024))
                .into_bytes(),
            _ => b"\x16\x03\x01 garbage\r\n\r\n".to_vec(),
        };
        let _ = s.write_all(&req);
        drain(&mut s);
    }

    fn control_stalls(&self) {
        let mut held = Vec::new();
        let head = format!("POST /v1/push HTTP/1.1\r\nX-Pad: {}", "p".repeat(60 * 1024));
        while self.running() {
            while held.len() < self.scale.held / 4 && self.running() {
                let Ok(mut s) = TcpStream::connect(self.control) else {
                    break;
                };
                // Half stall in the middle of a large head, half sit idle.
                if held.len() % 2 == 0 {
                    let _ = s.write_all(head.as_bytes());
                }
                held.push(s);
                self.acted();
            }
            // Drop the ones the gateway closed, so they are replaced.
            held.retain_mut(|s| {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 4096];
                matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads until EOF, an error or the read timeout.
fn drain(s: &mut TcpStream) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}
