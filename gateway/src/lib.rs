//! The gateway: configuration, shard threads (on io_uring, or epoll where
//! io_uring is not allowed), the client listener and the control listener.
//!
//! Layout by role: [`settings`] (validated config), [`runtime`] (start-up,
//! threads, shutdown), [`shared`] (what shards and the main thread share),
//! [`shard_core`] (a shard's state and policy, sans-IO), [`driver`] (the
//! drivers around it, the only code that makes a shard's syscalls),
//! [`uring`] (io_uring helpers), [`clock`] (the clocks the
//! driver reads), [`time`] (the time inputs carry), [`push_ids`] (push id
//! sources), [`census`] (the gateway's session count a broadcast reports), [`timer`] (the per-shard timer wheel), [`admission`]
//! (who may connect), [`stats`] (shard-local counters), [`stream`] (the
//! life of a stream's operations, for every kind of connection), [`control`] (the
//! HTTP control listener), [`backend`] (the backend client), [`fd_ops`]
//! (what those two ask their driver to do), [`store`] (the durable store of
//! acked pushes, sans-IO, with its file executor),
//! [`instance_lock`] (one gateway per address), [`cli`] (the subcommands
//! for people), [`build_info`] (version and git commit).

pub mod admission;
pub mod backend;
pub mod build_info;
pub mod census;
pub mod cli;
pub mod clock;
pub mod control;
pub mod driver;
pub mod fd_ops;
pub mod instance_lock;
pub mod metrics;
pub mod push_ids;
pub mod resume_token;
pub mod runtime;
pub mod settings;
pub mod shard_core;
pub mod shared;
pub mod stats;
pub mod store;
pub mod store_open;
pub mod stream;
pub mod time;
pub mod timer;
pub mod tls;
pub mod uring;
