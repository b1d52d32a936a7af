//! The load engine: shard threads, each driving its share of the
//! connections on one of two drivers ([`Driver`]):
//!
//! - io_uring: its own ring (single issuer), a direct-descriptor table and
//!   a provided-buffer ring (the gateway's own
//!   [`gateway::uring::bufring::BufRing`]), opening and holding connections
//!   without putting them in the process's fd table. One process therefore
//!   holds shards × RLIMIT_NOFILE connections.
//! - epoll: non-blocking sockets in an edge-triggered epoll set, for hosts
//!   where io_uring is denied (a container's seccomp profile,
//!   `kernel.io_uring_disabled`). Every connection is a process fd, so one
//!   process holds RLIMIT_NOFILE connections whatever its shard count.
//!
//! A shard runs a [`ShardPlan`]: connect its share at a rate (open loop),
//! handshake, optionally subscribe, then hold with heartbeats, while
//! counting deliveries, churning connections or sending uplinks. What a
//! connection does with its bytes and events is one piece of code for
//! both drivers; only the I/O differs (`shard::uring`, `shard::epoll`).

mod conn;
mod ops;
mod seen;
mod shard;
mod timers;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::histo::Latency;
use crate::wire::{PeerKind, Transport};

pub use shard::{ShardError, run_shard};

/// Which driver a shard's I/O runs on (the coordinator decides, with the
/// gateway's own probe, `tuning::driver`; workers obey).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Driver {
    /// io_uring with direct descriptors and a provided-buffer ring.
    #[default]
    #[serde(rename = "io_uring")]
    IoUring,
    /// Edge-triggered epoll over non-blocking sockets.
    #[serde(rename = "epoll")]
    Epoll,
}

impl Driver {
    /// The spelling of `--driver` and of the report.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

impl From<tuning::driver::Driver> for Driver {
    fn from(d: tuning::driver::Driver) -> Self {
        match d {
            tuning::driver::Driver::IoUring => Self::IoUring,
            tuning::driver::Driver::Epoll => Self::Epoll,
        }
    }
}

/// What one shard does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Shard index within its worker (for messages).
    pub index: u32,
    /// The driver its I/O runs on.
    pub driver: Driver,
    /// The scheduling policy of its thread.
    #[serde(default)]
    pub sched: crate::sched::Sched,
    /// Protocol spoken.
    pub peer: PeerKind,
    /// How it is reached (TCP, or the gateway's WebSocket listener).
    #[serde(default)]
    pub transport: Transport,
    /// TLS settings for `tls` and `wss` (what to trust, the name to check).
    #[serde(default)]
    pub tls: Option<crate::wire::tls::TlsPlan>,
    /// Where to connect.
    pub target: SocketAddrV4,
    /// Source addresses to spread connections over (empty: let the kernel choose).
    pub sources: Vec<Ipv4Addr>,
    /// Global index of this shard's first connection (user `u<index>`).
    pub first_user: u64,
    /// Connections to open.
    pub count: u32,
    /// Connections per second for this shard (≤ 0: all at once).
    pub connect_rate: f64,
    /// Topic to subscribe after the handshake; `{user}` becomes the user name.
    pub subscribe: Option<String>,
    /// Heartbeat to propose, ms.
    pub heartbeat_ms: u32,
    /// HS256 secret for gateway tokens.
    pub jwt_secret: String,
    /// Reconnects per second once all are connected (churn).
    pub churn_rate: f64,
    /// Reconnects to do in total (churn).
    pub churn_total: u64,
    /// Uplink requests per second once all are connected.
    pub uplink_rate: f64,
    /// Uplink requests to send in total.
    pub uplink_total: u64,
    /// Uplink route.
    pub uplink_route: String,
    /// Payload bytes of uplinks.
    pub payload_size: usize,
    /// Stamped messages expected (sequence numbers 0..n), for loss and
    /// duplicate accounting.
    pub expected_msgs: u64,
    /// Ack durable pushes on receipt (`unicast --ack`, the gateway only).
    #[serde(default)]
    pub ack: bool,
    /// Shared start instant offset: the coordinator's wall-clock start, µs.
    pub start_wall_us: u64,
}

/// Counters a shard publishes for the progress line (written by the shard
/// only; relaxed loads elsewhere).
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Connections currently established.
    pub established: AtomicU64,
    /// Handshakes completed in total.
    pub handshakes: AtomicU64,
    /// Connection attempts started.
    pub attempts: AtomicU64,
    /// Failures (connect errors, closes) in total.
    pub failures: AtomicU64,
    /// Subscriptions confirmed.
    pub subscribed: AtomicU64,
    /// Messages delivered.
    pub deliveries: AtomicU64,
    /// Reconnects done (churn).
    pub reconnects: AtomicU64,
    /// Uplink replies received.
    pub replies: AtomicU64,
    /// Whether the connect phase is over (every attempt resolved).
    pub connect_done: AtomicBool,
}

/// Shared between a shard and its worker's main thread.
#[derive(Debug, Default)]
pub struct ShardLink {
    /// Set to end the run.
    pub stop: AtomicBool,
    /// Progress counters.
    pub counters: ShardCounters,
    /// Delivery latency since the last progress report (swapped once a second).
    pub interval: Mutex<Latency>,
}

impl ShardLink {
    /// A fresh link.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes the interval histogram, leaving an empty one.
    #[must_use]
    pub fn take_interval(&self) -> Latency {
        match self.interval.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    /// Relaxed load of a counter.
    #[must_use]
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// First and last arrival of one stamped message, and how many arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SeqStat {
    /// Earliest arrival, µs since the epoch (0 = none yet).
    pub first_us: u64,
    /// Latest arrival, µs since the epoch.
    pub last_us: u64,
    /// Arrivals (unique per connection).
    pub count: u64,
}

impl SeqStat {
    /// Records an arrival at `us`.
    pub fn arrive(&mut self, us: u64) {
        if self.count == 0 || us < self.first_us {
            self.first_us = us;
        }
        self.last_us = self.last_us.max(us);
        self.count += 1;
    }

    /// Folds another shard's or worker's view of the same message in.
    pub fn merge(&mut self, o: &SeqStat) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.first_us < self.first_us {
            self.first_us = o.first_us;
        }
        self.last_us = self.last_us.max(o.last_us);
        self.count += o.count;
    }
}

/// Everything a shard measured.
#[derive(Debug, Clone, Default)]
pub struct ShardResult {
    /// Intended start → TCP connected, µs.
    pub connect: Latency,
    /// Intended start → session established, µs.
    pub handshake: Latency,
    /// Same, for churn reconnects.
    pub reconnect: Latency,
    /// Stamped message latency from its intended send time, µs.
    pub delivery: Latency,
    /// Uplink round trip from its intended send time, µs.
    pub uplink: Latency,
    /// How late the shard acted on its own schedule, µs.
    pub lag: Latency,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Per stamped message arrivals.
    pub seqs: Vec<SeqStat>,
    /// Duplicate deliveries (same message twice on one connection).
    pub duplicates: u64,
    /// Durable pushes that came again on the wire (redelivered copies,
    /// acked again, not counted as deliveries; `--ack`).
    pub redeliveries: u64,
    /// Deliveries without a stamp, or with a sequence beyond the expected.
    pub unstamped: u64,
    /// TLS handshakes completed, by what they agreed (version, cipher
    /// suite, key exchange group, full or resumed).
    pub tls: BTreeMap<String, u64>,
    /// Handshakes completed.
    pub established: u64,
    /// Attempts started.
    pub attempts: u64,
    /// Reconnects completed.
    pub reconnects: u64,
    /// Uplinks sent.
    pub uplinks_sent: u64,
    /// Uplink replies by status class ("2xx", "5xx", ...).
    pub reply_status: BTreeMap<String, u64>,
    /// When the last connection was established, µs since the epoch.
    pub last_established_us: u64,
    /// When the first connection attempt was intended, µs since the epoch.
    pub first_intended_us: u64,
    /// Connection attempts issued on the connect schedule per second of
    /// issuing (summed over shards): the rate the harness itself achieved.
    pub connect_issue_rate: f64,
    /// Churn disconnects issued per second of churn (summed over shards).
    pub churn_issue_rate: f64,
}
