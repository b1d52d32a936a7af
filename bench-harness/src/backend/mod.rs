//! `gateway-bench backend`: a fast mock of the backends the gateway fronts,
//! for tests and benchmarks. Plain std threads (one per connection: the
//! gateway opens a few keep-alive connections per shard), HTTP/1.1
//! keep-alive and pipelining, `httparse` framing.
//!
//! Endpoints:
//!
//! | request | answer |
//! |---|---|
//! | `POST /auth` `{"token": T, ...}` | `allow:U` → `{"allow":true,"user":U}`; `deny:R` or anything else → `{"allow":false,"reason":R}` (after `--auth-delay-ms`) |
//! | `POST /events` `{"events":[..]}` | 200; counts events (online/offline) and keeps the last 10 000 |
//! | `POST /status/NNN` | status NNN, body echoed |
//! | `POST /delay/MS` | body echoed after MS milliseconds |
//! | any other `POST` | body echoed with 200 after `--delay-ms`; 500 with probability `--error-rate` |
//! | `GET /stats` | counters as JSON |
//! | `GET /events` | the kept events as a JSON array |

mod handlers;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the mock backend.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7200")]
    pub listen: SocketAddr,
    /// Delay before each uplink echo, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Share of uplinks answered 500 (0.0..=1.0).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Delay before each auth answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub auth_delay_ms: u64,
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            delay_ms: 0,
            error_rate: 0.0,
            auth_delay_ms: 0,
        }
    }
}

/// What the mock has seen.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Auth calls allowed.
    pub auth_allowed: AtomicU64,
    /// Auth calls denied.
    pub auth_denied: AtomicU64,
    /// Uplinks echoed.
    pub uplinks: AtomicU64,
    /// Uplinks answered 500 on purpose.
    pub uplink_errors: AtomicU64,
    /// Event batches received.
    pub event_batches: AtomicU64,
    /// Events received.
    pub events: AtomicU64,
    /// `online` events received.
    pub online: AtomicU64,
    /// `offline` events received.
    pub offline: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

impl MockStats {
    /// The counters as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": g(&self.requests),
            "auth_allowed": g(&self.auth_allowed),
            "auth_denied": g(&self.auth_denied),
            "uplinks": g(&self.uplinks),
            "uplink_errors": g(&self.uplink_errors),
            "event_batches": g(&self.event_batches),
            "events": g(&self.events),
            "online": g(&self.online),
            "offline": g(&self.offline),
            "connections": g(&self.connections),
        })
    }
}

/// State shared by the mock's threads.
#[derive(Debug, Default)]
pub struct Shared {
    /// Settings.
    pub args: BackendArgs,
    /// Counters.
    pub stats: MockStats,
    /// The last events received (bounded).
    pub kept: Mutex<std::collections::VecDeque<serde_json::Value>>,
    stop: AtomicBool,
}

/// A running mock backend.
#[derive(Debug)]
pub struct MockBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub shared: Arc<Shared>,
}

impl MockBackend {
    /// Binds and serves in background threads.
    pub fn start(args: BackendArgs) -> io::Result<Self> {
        let listener = TcpListener::bind(args.listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            args,
            ..Shared::default()
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("mock-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Self { addr, shared })
    }

    /// Asks the threads to stop (connections end at their next request).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else {
            continue;
        };
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("mock-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = serve(stream, &s);
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Serves one keep-alive connection until EOF or error.
fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut rng = handlers::Rng::seeded();
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 || shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut close = false;
        while let Some((req, len)) = handlers::parse(&buf[used..]).map_err(io::Error::other)? {
            used += len;
            close |= !req.keep_alive;
            handlers::handle(&req, shared, &mut rng, &mut out);
            if close {
                break;
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}

/// Runs the mock in the foreground until killed, printing its counters
/// every 5 s when they changed.
pub fn run(args: BackendArgs) -> anyhow::Result<()> {
    let mock = MockBackend::start(args)?;
    println!("mock backend listening on http://{}", mock.addr);
    let mut last = String::new();
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let now = mock.shared.stats.to_json().to_string();
        if now != last {
            println!("{now}");
            last = now;
        }
    }
}
