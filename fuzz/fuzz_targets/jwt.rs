//! Fuzzes JWT verification (`protocol::auth::JwtVerifier`): arbitrary
//! token strings against an HS256 and an RS256 verifier, at a fuzzed time.
//! A token that verifies must carry a subject and be within its `exp` /
//! `nbf` window at that time.
//!
//! Input layout: byte 0 picks the verifier (bit 0: RS256), bytes 1..9 are
//! the time (little-endian seconds, when present); the rest is the token
//! (lossy UTF-8, as a Hello's string field would be after decoding).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use protocol::auth::{JwtVerifier, TokenVerifier};

/// Secret of the HS256 verifier (fuzz/seeds/jwt/hs256 is signed with it).
const SECRET: &[u8] = b"fuzz-secret";
/// Public half of the key that signed fuzz/seeds/jwt/rs256.
const RS256_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv6xCAcVWAaRJdEnPrHeS
JyxtCe5tiYzKdLsbd/eWd4YASv1hW8KyUkBOFgTeqT6y27CFf0Xt67S+2FTEwoux
EupGYANB0me5x3qAic53SkrQaVba8y7dsNHJdnGeJF5XsfhEQZwQ8GnTEAqAbyiq
jhcApQARjkpfFXphGQuRTb21kdb9ipclPK8Fx1RT1WW2BJ4dtF7D8ooCKu4F/+bg
jW/shps5vmbb3kPRcQbBdXJS8xI+PL4mPJ+OKJVLW77jaUPcKicqo9qcBTllDUG5
eP7G0476Kp7wZNxetHRVXGxpHSu1L/J+47UMCKQMRKZu1HONJw+zTsK+49kxkd78
SQIDAQAB
-----END PUBLIC KEY-----
";

static HS256: LazyLock<JwtVerifier> = LazyLock::new(|| JwtVerifier::hs256(SECRET, 30));
static RS256: LazyLock<Option<JwtVerifier>> =
    LazyLock::new(|| JwtVerifier::rs256_pem(RS256_PUBLIC_PEM.as_bytes(), 30).ok());

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, rest)) = input.split_first() else {
        return;
    };
    let (now, token) = if ctl & 2 != 0 && rest.len() >= 8 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&rest[..8]);
        (u64::from_le_bytes(t), &rest[8..])
    } else {
        (1_700_000_000, rest)
    };
    let token = String::from_utf8_lossy(token);
    let verifier: &JwtVerifier = if ctl & 1 == 0 {
        &HS256
    } else {
        match RS256.as_ref() {
            Some(v) => v,
            None => panic!("the embedded RS256 public key does not load"),
        }
    };
    if let Ok(id) = verifier.verify(&token, now) {
        assert!(!id.user.is_empty(), "verified without a subject");
        if let Some(exp) = id.expires_at_s {
            assert!(
                exp.saturating_add(verifier.leeway_s()) > now,
                "expired token verified"
            );
        }
    }
});
