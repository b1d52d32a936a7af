//! Sans-IO wire protocol v1 of the gateway.
//!
//! Nothing here touches a socket or reads a clock: time is an argument
//! ([`time::Millis`]), input is a byte slice, output goes into caller-owned
//! buffers. See `DESIGN.md` §3 for the wire contract.
//!
//! - [`proto`]: the generated `gateway.v1` message types.
//! - [`codec`]: length-prefixed framing over byte slices.
//! - [`auth`]: token verification behind [`auth::TokenVerifier`], with an HS256 JWT verifier.
//! - [`server`]: the gateway-side session state machine.
//! - [`client`]: the client-side session state machine (tests, load harness).
#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod codec;
pub mod proto;
pub mod server;
pub mod time;

#[cfg(test)]
mod pair;
