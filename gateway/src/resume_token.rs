//! Resume tokens (issue 17): what a `Welcome` hands the client so that,
//! after a flash disconnect, its next `Hello` can name the session it had.
//!
//! A token is opaque to the client, short (27 bytes) and signed: a
//! version byte, the shard, the connection's slot key and generation, and
//! the first 16 bytes of an HMAC-SHA256 over those fields and the user.
//! The key is drawn from the OS when the gateway starts and never leaves
//! the process, so a token cannot be forged, names one user only, and
//! dies with the process (a restarted gateway has no parked sessions to
//! give back anyway). What a token may resume, and for how long, is the
//! shard's parked-session table's business (`shard_core::resume`).

use bytes::Bytes;
use ring::hmac;

/// Length of a token on the wire.
pub const TOKEN_LEN: usize = 1 + 2 + 4 + 4 + TAG_LEN;
const TAG_LEN: usize = 16;
const VERSION: u8 = 1;

/// The process's signing key for resume tokens.
pub struct ResumeKey(hmac::Key);

impl ResumeKey {
    /// A fresh key from the OS's random source.
    pub fn random() -> Result<Self, TokenError> {
        let rng = ring::rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map(Self)
            .map_err(|_| TokenError::NoRandom)
    }

    /// A key from fixed bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn tag(&self, fields: &[u8], user: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(fields);
        ctx.update(user.as_bytes());
        ctx.sign()
    }
}

impl std::fmt::Debug for ResumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeKey(..)")
    }
}

/// The session a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionName {
    /// The shard that held it.
    pub shard: u16,
    /// Its connection's slot key there.
    pub key: u32,
    /// Its connection's generation.
    pub generation: u32,
}

/// Why a token is not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("a resume token is {TOKEN_LEN} bytes of version {VERSION}")]
    Malformed,
    /// Not signed by this process for this user (forged, another user's,
    /// or from before a restart).
    #[error("the resume token is not this gateway's for this user")]
    Signature,
    /// The OS gave no random bytes for the key.
    #[error("no random bytes from the OS for the resume-token key")]
    NoRandom,
}

/// The token for `name`, held by `user`.
pub fn seal(key: &ResumeKey, name: SessionName, user: &str) -> Bytes {
    let mut out = Vec::with_capacity(TOKEN_LEN);
    out.push(VERSION);
    out.extend_from_slice(&name.shard.to_be_bytes());
    out.extend_from_slice(&name.key.to_be_bytes());
    out.extend_from_slice(&name.generation.to_be_bytes());
    let tag = key.tag(&out, user);
    out.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
    Bytes::from(out)
}

/// The session `token` names, if this process signed it for `user`.
pub fn open(key: &ResumeKey, token: &[u8], user: &str) -> Result<SessionName, TokenError> {
    if token.len() != TOKEN_LEN || token[0] != VERSION {
        return Err(TokenError::Malformed);
    }
    let (fields, tag) = token.split_at(TOKEN_LEN - TAG_LEN);
    let want = key.tag(fields, user);
    // Every byte compared, so the tag cannot be guessed byte by byte
    // from how long a refusal takes.
    let diff = want.as_ref()[..TAG_LEN]
        .iter()
        .zip(tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(TokenError::Signature);
    }
    let u16_at = |i: usize| u16::from_be_bytes([fields[i], fields[i + 1]]);
    let u32_at =
        |i: usize| u32::from_be_bytes([fields[i], fields[i + 1], fields[i + 2], fields[i + 3]]);
    Ok(SessionName {
        shard: u16_at(1),
        key: u32_at(3),
        generation: u32_at(7),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: SessionName = SessionName {
        shard: 3,
        key: 70_000,
        generation: 0xdead_beef,
    };

    #[test]
    fn a_token_opens_for_its_user_only() {
        let key = ResumeKey::from_bytes(b"k");
        let t = seal(&key, NAME, "alice");
        assert_eq!(t.len(), TOKEN_LEN);
        assert_eq!(open(&key, &t, "alice"), Ok(NAME));
        assert_eq!(open(&key, &t, "bob"), Err(TokenError::Signature));
        let other = ResumeKey::from_bytes(b"another process");
        assert_eq!(open(&other, &t, "alice"), Err(TokenError::Signature));
    }

    #[test]
    fn any_changed_byte_or_length_is_refused() {
        let key = ResumeKey::from_bytes(b"k");
        let t = seal(&key, NAME, "alice").to_vec();
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert!(open(&key, &bad, "alice").is_err(), "byte {i}");
        }
        assert_eq!(
            open(&key, &t[..t.len() - 1], "alice"),
            Err(TokenError::Malformed)
        );
        assert_eq!(open(&key, b"", "alice"), Err(TokenError::Malformed));
    }

    #[test]
    fn random_keys_differ() {
        let (a, b) = (ResumeKey::random().unwrap(), ResumeKey::random().unwrap());
        let t = seal(&a, NAME, "u");
        assert_eq!(open(&b, &t, "u"), Err(TokenError::Signature));
    }
}
