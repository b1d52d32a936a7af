//! TLS for the client listeners (`[listen] client_tls`, `websocket_tls`),
//! on rustls: the certificate and key loaded from `[tls]` and reloaded on
//! SIGHUP ([`TlsAcceptor`]), and one [`TlsStream`] per connection, a
//! caller-driven state machine (ciphertext in, plaintext out; plaintext in,
//! ciphertext out) that the sans-IO shard core drives like its other
//! transports. No I/O happens here.

mod acceptor;
mod stream;

pub use acceptor::{TlsAcceptor, TlsError, load_server_config};
pub use stream::TlsStream;
