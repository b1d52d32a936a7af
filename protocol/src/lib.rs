//! Sans-IO wire protocols of the gateway: v1 (protobuf frames) and MQTT 3.1.1.
//!
//! Nothing here touches a socket or reads a clock: time is an argument
//! ([`time::Millis`]), input is a byte slice, output goes into caller-owned
//! buffers. See `DESIGN.md` §3 for the wire contract.
//!
//! - [`proto`]: the generated `gateway.v1` message types.
//! - [`codec`]: length-prefixed framing over byte slices.
//! - [`auth`]: token verification behind [`auth::TokenVerifier`], with a JWT
//!   verifier (HS256, or RS256 from a PEM key).
//! - [`server`]: the gateway-side session state machine.
//! - [`client`]: the client-side session state machine (tests, load harness).
//! - [`ws`]: WebSocket (RFC 6455), server side: the opening handshake, the
//!   client frame decoder (whole binary messages out as v1 frames) and the
//!   server frame encoder (a broadcast's frame encoded once for every
//!   WebSocket recipient). An idle connection's decoder state is 56 bytes
//!   with no buffer.
//! - [`mqtt`]: MQTT 3.1.1: a zero-copy codec for every control packet (the
//!   one the gateway and the load harness share), encode-once PUBLISH for
//!   broadcasts, topic rules, and the gateway-side session state machine
//!   ([`mqtt::server::MqttSession`]), in the same style: bytes and
//!   [`time::Millis`] in, bytes, events and deadlines out.
//!
//! # Example: a handshake, in memory
//!
//! ```
//! use protocol::auth::{mint_hs256, Claims, JwtVerifier, TokenVerifier};
//! use protocol::client::{ClientConfig, ClientSession};
//! use protocol::proto::Welcome;
//! use protocol::server::{Event, Output, ServerConfig, ServerSession};
//! use protocol::time::Millis;
//!
//! let secret = b"secret";
//! let claims = Claims { sub: "alice".into(), ..Claims::default() };
//! let token = mint_hs256(secret, &claims).unwrap();
//!
//! let (cfg, now) = (ServerConfig::default(), Millis(0));
//! let mut server = ServerSession::new(now, &cfg);
//! let mut out = Output::new(); // one per shard, shared by its sessions
//! let mut client = ClientSession::new(now, ClientConfig { token, ..ClientConfig::default() });
//!
//! let mut to_server = Vec::new();
//! client.start(&mut to_server); // Hello
//! server.handle_input(now, &to_server, &cfg, &mut out);
//! let Some(Event::Hello(hello)) = out.events.pop() else { panic!() };
//! let id = JwtVerifier::hs256(secret, 0).verify(&hello.token, 1_700_000_000).unwrap();
//! let welcome = Welcome { user: id.user, ..Welcome::default() };
//! server.accept(now, &cfg, welcome, &mut out);
//!
//! let (mut events, mut to_server) = (Vec::new(), Vec::new());
//! client.handle_input(now, &out.transmit, &mut events, &mut to_server);
//! assert!(client.is_established());
//! assert_eq!(client.heartbeat_ms(), 30_000); // the gateway's default
//! ```
#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod codec;
mod held;
pub mod mqtt;
pub mod proto;
pub mod server;
pub mod time;
pub mod ws;

#[cfg(test)]
mod pair;
