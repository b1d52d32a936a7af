//! Helpers shared by the end-to-end tests: the real `gateway` binary in a
//! child process, blocking protocol clients over real TCP sockets, and a
//! tiny HTTP client for the control listener.
//!
//! Binaries are taken from the workspace's target directory (the newer of
//! `release/` and `debug/`), or from `$GATEWAY_BIN` when set.
//!
//! By role: `gateway.rs` the gateway process ([`Gateway`]), `peers.rs` its
//! clients ([`Client`], [`Holder`]), `http.rs` the control-listener client
//! ([`http()`], [`read_responses`]), `py_backend.rs` Python's http.server
//! as auth, uplink and events backend ([`PyBackend`]), `line_child.rs`
//! peers run as child processes that print lines ([`LineChild`]), `tokens.rs` the secret and tokens
//! ([`SECRET`], [`token`]), `host.rs` binaries, temp directories, ports and
//! descriptor counts ([`binary`], [`TempDir`]); all are used from the crate
//! root.

// Test support: a failed set-up step must fail the calling test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod attack;

mod gateway;
mod host;
mod http;
mod line_child;
mod peers;
mod py_backend;
mod tokens;

pub use gateway::{Gateway, instance_lock_path};
pub use host::{TempDir, binary, fd_count, free_port, nofile_limits};
pub use http::{http, http_request, parse_response, read_responses};
pub use line_child::{LineChild, test_python, test_script};
pub use peers::{Client, Holder};
pub use py_backend::PyBackend;
pub use tokens::{SECRET, token, token_with, unix_now};
