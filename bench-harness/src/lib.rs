//! `gateway-bench`: the load harness for long-lived-connection systems.
//!
//! Layout by role:
//! - [`preflight`]: can this host open N connections (sources, fds, memory)?
//! - [`engine`]: shard threads holding the connections, on io_uring or epoll;
//!   [`driver`] picks which (`--driver`).
//! - [`worker`]: worker processes (re-exec) and the exact merge of their results.
//! - [`wire`]: sans-IO client adapters (gateway v1 over TCP or WebSocket,
//!   MQTT 3.1.1 to a broker or to the gateway's MQTT listener, core NATS).
//! - [`publish`]: the sending side (push API, MQTT and NATS publishers).
//! - [`scenario`]: connect, fanout, unicast, uplink, floor, churn.
//! - [`peers`]: starting mosquitto and nats-server on loopback.
//! - [`report`]: progress line, summary, JSON, HDR interval log, HTML.
//! - [`histo`], [`schedule`], [`stamp`], [`procfs`]: measurement plumbing.

pub mod backend;
pub mod driver;
pub mod engine;
pub mod histo;
pub mod peers;
pub mod preflight;
pub mod procfs;
pub mod publish;
pub mod report;
pub mod scenario;
pub mod sched;
pub mod schedule;
pub mod stamp;
pub mod wire;
pub mod worker;
