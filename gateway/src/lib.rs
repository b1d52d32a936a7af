//! The gateway: configuration, shard threads on io_uring, the client
//! listener and the control listener.
//!
//! Layout by role: [`settings`] (validated config), [`runtime`] (start-up,
//! threads, shutdown), [`shard`] (one core's event loop and its sessions),
//! [`uring`] (the thin io_uring shell), [`timer`] (the per-shard timer
//! wheel), [`admission`] (who may connect), [`stats`] (shard-local
//! counters), [`control`] (the HTTP control listener), [`instance_lock`]
//! (one gateway per address), [`cli`] (the
//! subcommands for people), [`build_info`] (version and git commit).

pub mod admission;
pub mod backend;
pub mod build_info;
pub mod cli;
pub mod control;
pub mod instance_lock;
pub mod metrics;
pub mod runtime;
pub mod settings;
pub mod shard;
pub mod stats;
pub mod timer;
pub mod uring;
