//! Tokens for the test clients: the secret every test gateway is started
//! with, and HS256 JWTs signed with it.

use std::time::{SystemTime, UNIX_EPOCH};

use protocol::auth::{Claims, mint_hs256};

/// The JWT secret every test gateway is started with (the gateway refuses
/// HS256 secrets shorter than 32 bytes).
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef-0123456789";

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token for `user`, valid for an hour, signed with [`SECRET`].
pub fn token(user: &str) -> String {
    token_with(Claims {
        sub: user.into(),
        exp: Some(unix_now() + 3600),
        ..Claims::default()
    })
}

/// A token with arbitrary claims, signed with [`SECRET`].
pub fn token_with(claims: Claims) -> String {
    mint_hs256(SECRET.as_bytes(), &claims).expect("mint token")
}
