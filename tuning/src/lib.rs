//! Host checks, tuning plans and per-core config derivation for the gateway.
//!
//! [`config`] is the gateway's configuration model; the gateway reads it and
//! `gateway-tune config` derives it.

pub mod config;
