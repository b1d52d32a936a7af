//! The gateway: config, shard threads, io_uring driver and client listener.
