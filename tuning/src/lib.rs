//! Host checks, tuning plans and per-core config derivation for the gateway.
//!
//! - [`config`]: the gateway's configuration model; the gateway reads it and
//!   `gateway-tune config` derives it ([`derive`]); its `[listen]` section
//!   and the control listener's limits are [`listen`].
//! - [`host`]: every file read goes through a [`host::HostRoot`] (`/` in
//!   production, a fake tree in tests); [`facts`] holds the live syscalls
//!   (rlimits, the io_uring probe) behind a trait.
//! - [`check`]: the host check and the gateway's start-up check, producing a
//!   [`report::Report`]; [`uring`] is the io_uring part, [`cpu`] the CPU part,
//!   [`driver`] the choice between the io_uring and the epoll driver.
//! - [`starter`]: the commented starter config `gateway config` prints.
//! - [`plan`] and [`apply`]: the raise-only sysctl plan, applying it and
//!   reverting it.

pub mod apply;
pub mod backends;
pub mod check;
pub mod config;
pub mod cpu;
pub mod derive;
pub mod driver;
pub mod facts;
pub mod host;
pub mod ktls;
pub mod listen;
pub mod plan;
pub mod report;
pub mod starter;
pub mod uring;

#[cfg(test)]
mod testutil;
