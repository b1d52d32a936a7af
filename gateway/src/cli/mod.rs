//! The `gateway` subcommands for people (DESIGN.md §5): `token` (mint or
//! check a JWT), `sub` (a client that prints pushes), `push` and `stats`
//! (the control API), `config` (the commented starter config).
//!
//! Each command returns a [`CliError`]; `main` prints it and exits 1.

pub mod control;
pub mod http;
pub mod sub;
pub mod token;

use std::net::SocketAddr;

use clap::Subcommand;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// No usable JWT secret.
    #[error("{0}")]
    Secret(String),
    /// A token could not be minted or did not verify.
    #[error("{0}")]
    Token(#[from] protocol::auth::AuthError),
    /// A bad argument value.
    #[error("{0}")]
    Usage(String),
    /// A socket or terminal operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The control API answered with a non-2xx status.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The body of the answer.
        body: String,
    },
    /// The gateway ended the session or sent something unexpected.
    #[error("{0}")]
    Session(String),
}

impl CliError {
    /// An [`CliError::Io`] saying what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}

/// Default client address of the commands (the gateway's default, on loopback).
pub const DEFAULT_CLIENT: &str = "127.0.0.1:7100";
/// Default control address of the commands (the gateway's default).
pub const DEFAULT_CONTROL: &str = "127.0.0.1:7101";

/// A subcommand of `gateway`; without one, `gateway` runs the server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint an HS256 JWT for a user, or check one (`--check TOKEN`).
    Token(token::TokenArgs),
    /// Connect as a client, subscribe and print each push as a JSON line.
    Sub(sub::SubArgs),
    /// Send a push through the control API (POST /v1/push).
    Push(control::PushArgs),
    /// Print the per-shard counters (GET /v1/stats).
    Stats(control::StatsArgs),
    /// Print a commented starter config with every section and its defaults.
    Config,
}

impl Command {
    /// Runs the command, writing its output to stdout.
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Command::Token(a) => token::run(&a),
            Command::Sub(a) => sub::run(&a),
            Command::Push(a) => control::push(&a),
            Command::Stats(a) => control::stats(&a),
            Command::Config => {
                print!("{}", tuning::starter::starter_toml());
                Ok(())
            }
        }
    }
}

/// The secret from `--secret` or `GATEWAY_JWT_SECRET` (clap fills both
/// into the same field), refused when missing or shorter than the gateway
/// accepts.
pub fn secret_from(arg: Option<&str>) -> Result<Vec<u8>, CliError> {
    let secret = arg.filter(|s| !s.is_empty()).ok_or_else(|| {
        CliError::Secret(
            "no JWT secret: pass --secret or set GATEWAY_JWT_SECRET (the gateway's HS256 secret)"
                .into(),
        )
    })?;
    if let Some(why) = tuning::config::hs256_secret_problem(secret, "the secret") {
        return Err(CliError::Secret(why));
    }
    Ok(secret.as_bytes().to_vec())
}

/// Parses `ADDR` for `--addr`/`--control` (clap value parser).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// The messages of an error and its causes joined by `: `, each cause
/// left out when the message before it already ends with it (an error that
/// prints its source *and* returns it from `source()` would otherwise be
/// said twice: `Address already in use (os error 98): Address already in
/// use (os error 98)`).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1: {source}")]
    struct Listen {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("gateway failed to start")]
    struct Outer(#[source] Listen);

    #[test]
    fn a_cause_already_printed_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        let e = Outer(Listen { source: io });
        let text = error_chain(&e);
        assert_eq!(text.matches("os error 98").count(), 1, "{text}");
        assert!(text.starts_with("gateway failed to start: cannot listen on 127.0.0.1:1: "));
    }

    #[test]
    fn secrets_must_be_long_enough() {
        assert!(matches!(secret_from(None), Err(CliError::Secret(_))));
        let short = secret_from(Some("short")).unwrap_err().to_string();
        assert!(short.contains("at least 32"), "{short}");
        assert_eq!(secret_from(Some(&"k".repeat(32))).unwrap().len(), 32);
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(parse_addr("127.0.0.1:7100").unwrap().port(), 7100);
        assert!(parse_addr("nope").is_err());
    }
}
