//! What this binary was built from: the crate version and the git commit
//! (from the build script; `unknown` outside a git checkout).

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (12 hex digits), or `unknown`.
pub const GIT_COMMIT: &str = env!("GATEWAY_GIT_COMMIT");

/// `VERSION (git GIT_COMMIT)`: what `gateway --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("GATEWAY_GIT_COMMIT"),
    ")"
);
