//! Token verification: who is behind a `Hello.token`.
//!
//! The gateway plugs a [`TokenVerifier`] in; [`JwtVerifier`] is the shipped
//! one (HS256 by default, RS256 from a PEM key). Time is an argument, never
//! read from a clock, so tests use simulated time.
//!
//! Claims understood (see [`Claims`]):
//! - `sub` (required, non-empty): the user.
//! - `apps` (optional array of strings): the apps the token may open; absent
//!   means any app.
//! - `exp` (optional, seconds since the Unix epoch): enforced with leeway.
//! - `nbf` (optional): enforced with leeway when present.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::proto::ErrorCode;

/// An authenticated identity, the result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user, from the token's `sub` claim.
    pub user: String,
    /// The apps the token allows, from the optional `apps` claim; `None` = any app.
    pub apps: Option<Vec<String>>,
    /// When the token expires (`exp`), seconds since the Unix epoch, if it does.
    pub expires_at_s: Option<u64>,
}

impl Identity {
    /// Whether this identity may open every app in `requested`.
    ///
    /// Always true when the token has no `apps` claim.
    #[must_use]
    pub fn permits_apps(&self, requested: &[String]) -> bool {
        match &self.apps {
            None => true,
            Some(allowed) => requested.iter().all(|app| allowed.contains(app)),
        }
    }

    /// [`Identity::permits_apps`] as a `Result`: [`AuthError::AppNotAllowed`] when refused.
    pub fn check_apps(&self, requested: &[String]) -> Result<(), AuthError> {
        if self.permits_apps(requested) {
            Ok(())
        } else {
            Err(AuthError::AppNotAllowed)
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not a well-formed token (bad base64, bad JSON, bad claim types, empty).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the configured key.
    #[error("bad token signature")]
    BadSignature,
    /// The token is signed with an algorithm this verifier does not accept.
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// `exp` (plus leeway) is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus leeway) is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The `sub` claim is missing or empty.
    #[error("token has no subject")]
    MissingSubject,
    /// The token does not allow one of the requested apps (see [`Identity::check_apps`]).
    #[error("token does not allow the requested apps")]
    AppNotAllowed,
    /// The verifier's key could not be loaded or used.
    #[error("bad key: {0}")]
    Key(String),
}

impl AuthError {
    /// The wire error code to report: `TOKEN_EXPIRED` for an expired token,
    /// `UNAUTHORIZED` otherwise.
    #[must_use]
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::Unauthorized,
        }
    }
}

/// Turns a bearer token into an [`Identity`].
pub trait TokenVerifier {
    /// Verifies `token` at wall-clock time `now_unix_s` (seconds since the Unix epoch).
    fn verify(&self, token: &str, now_unix_s: u64) -> Result<Identity, AuthError>;

    /// The verdict on a Hello: its token verifies at `now_unix_s` and
    /// allows every app the Hello declares ([`AuthError::AppNotAllowed`]
    /// otherwise). What a gateway in token mode decides on a handshake.
    fn verify_hello(
        &self,
        hello: &crate::proto::Hello,
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        let identity = self.verify(&hello.token, now_unix_s)?;
        identity.check_apps(&hello.apps)?;
        Ok(identity)
    }
}

/// The claims this crate reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user.
    #[serde(default)]
    pub sub: String,
    /// Apps the token allows; `None` (claim absent) = any app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not-before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Verifies JWTs signed with one key (HS256 shared secret or RS256 public key).
///
/// Signature and algorithm are checked by `jsonwebtoken`; `exp` and `nbf` are
/// checked here against the `now_unix_s` passed in (the library's own
/// clock-based checks are disabled), so verification is deterministic.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway_s: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("leeway_s", &self.leeway_s)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for HS256 tokens signed with `secret`; `exp`/`nbf` get
    /// `leeway_s` seconds of slack.
    #[must_use]
    pub fn hs256(secret: &[u8], leeway_s: u64) -> JwtVerifier {
        JwtVerifier::new(DecodingKey::from_secret(secret), Algorithm::HS256, leeway_s)
    }

    /// A verifier for RS256 tokens, from a PEM-encoded RSA public key.
    pub fn rs256_pem(public_key_pem: &[u8], leeway_s: u64) -> Result<JwtVerifier, AuthError> {
        let key =
            DecodingKey::from_rsa_pem(public_key_pem).map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(JwtVerifier::new(key, Algorithm::RS256, leeway_s))
    }

    fn new(key: DecodingKey, alg: Algorithm, leeway_s: u64) -> JwtVerifier {
        let mut validation = Validation::new(alg);
        // Time-based checks are done in `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        JwtVerifier {
            key,
            validation,
            leeway_s,
        }
    }

    /// The leeway applied to `exp` and `nbf`, in seconds.
    #[must_use]
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str, now_unix_s: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Malformed("empty token".to_owned()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(map_jwt_error)?;
        let claims = data.claims;
        if let Some(exp) = claims.exp
            && exp.saturating_add(self.leeway_s) <= now_unix_s
        {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && nbf > now_unix_s.saturating_add(self.leeway_s)
        {
            return Err(AuthError::NotYetValid);
        }
        if claims.sub.is_empty() {
            return Err(AuthError::MissingSubject);
        }
        Ok(Identity {
            user: claims.sub,
            apps: claims.apps,
            expires_at_s: claims.exp,
        })
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) => AuthError::Key(e.to_string()),
        _ => AuthError::Malformed(e.to_string()),
    }
}

/// Signs `claims` into an HS256 JWT (for tests and the load harness).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-0123456789abcdef0123";
    const NOW: u64 = 1_700_000_000;

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            apps: None,
            exp: Some(NOW + 3600),
            nbf: None,
        }
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::hs256(SECRET, 30)
    }

    #[test]
    fn accepts_a_good_token() {
        let token = mint_hs256(SECRET, &claims("alice")).unwrap();
        let id = verifier().verify(&token, NOW).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.apps, None);
        assert_eq!(id.expires_at_s, Some(NOW + 3600));
        assert!(id.permits_apps(&["anything".to_owned()]));
    }

    #[test]
    fn token_without_exp_is_accepted() {
        let c = Claims {
            exp: None,
            ..claims("bob")
        };
        let token = mint_hs256(SECRET, &c).unwrap();
        let id = verifier().verify(&token, u64::MAX).unwrap();
        assert_eq!(id.expires_at_s, None);
    }

    #[test]
    fn bad_signature_is_refused() {
        let token = mint_hs256(b"another-secret", &claims("alice")).unwrap();
        let err = verifier().verify(&token, NOW).unwrap_err();
        assert_eq!(err, AuthError::BadSignature);
        assert_eq!(err.error_code(), ErrorCode::Unauthorized);
        // A tampered payload breaks the signature too.
        let good = mint_hs256(SECRET, &claims("alice")).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let other = mint_hs256(SECRET, &claims("mallory")).unwrap();
        let other_payload = other.split('.').nth(1).unwrap().to_owned();
        parts[1] = &other_payload;
        let forged = parts.join(".");
        assert_eq!(
            verifier().verify(&forged, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn expiry_is_enforced_with_leeway() {
        let c = Claims {
            exp: Some(NOW),
            ..claims("alice")
        };
        let token = mint_hs256(SECRET, &c).unwrap();
        let v = verifier(); // 30 s leeway
        assert!(v.verify(&token, NOW - 1).is_ok());
        assert!(v.verify(&token, NOW + 29).is_ok());
        let err = v.verify(&token, NOW + 30).unwrap_err();
        assert_eq!(err, AuthError::Expired);
        assert_eq!(err.error_code(), ErrorCode::TokenExpired);
        // No leeway: expired at exp itself.
        let strict = JwtVerifier::hs256(SECRET, 0);
        assert_eq!(strict.leeway_s(), 0);
        assert!(strict.verify(&token, NOW - 1).is_ok());
        assert_eq!(strict.verify(&token, NOW), Err(AuthError::Expired));
    }

    #[test]
    fn not_before_is_enforced_with_leeway() {
        let c = Claims {
            nbf: Some(NOW + 100),
            ..claims("alice")
        };
        let token = mint_hs256(SECRET, &c).unwrap();
        let v = verifier();
        assert_eq!(v.verify(&token, NOW), Err(AuthError::NotYetValid));
        assert_eq!(v.verify(&token, NOW + 69), Err(AuthError::NotYetValid));
        assert!(v.verify(&token, NOW + 70).is_ok());
        assert!(v.verify(&token, NOW + 100).is_ok());
        assert_eq!(AuthError::NotYetValid.error_code(), ErrorCode::Unauthorized);
    }

    #[test]
    fn missing_or_empty_subject_is_refused() {
        let token = mint_hs256(SECRET, &claims("")).unwrap();
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(AuthError::MissingSubject)
        );
        // A token with no `sub` key at all.
        let raw = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &ExpOnly { exp: NOW + 10 },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(verifier().verify(&raw, NOW), Err(AuthError::MissingSubject));
    }

    #[derive(Serialize)]
    struct ExpOnly {
        exp: u64,
    }

    #[test]
    fn apps_claim_limits_apps() {
        let c = Claims {
            apps: Some(vec!["chat".to_owned(), "feed".to_owned()]),
            ..claims("alice")
        };
        let token = mint_hs256(SECRET, &c).unwrap();
        let id = verifier().verify(&token, NOW).unwrap();
        assert_eq!(
            id.apps.as_deref(),
            Some(&["chat".to_owned(), "feed".to_owned()][..])
        );
        assert!(id.permits_apps(&[]));
        assert!(id.permits_apps(&["chat".to_owned()]));
        assert!(id.permits_apps(&["feed".to_owned(), "chat".to_owned()]));
        assert!(!id.permits_apps(&["chat".to_owned(), "admin".to_owned()]));
        let err = id.check_apps(&["admin".to_owned()]).unwrap_err();
        assert_eq!(err, AuthError::AppNotAllowed);
        assert_eq!(err.error_code(), ErrorCode::Unauthorized);
        assert!(id.check_apps(&["chat".to_owned()]).is_ok());
        // An empty list allows no app at all.
        let none = Identity {
            apps: Some(vec![]),
            ..id
        };
        assert!(!none.permits_apps(&["chat".to_owned()]));
        assert!(none.permits_apps(&[]));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let v = verifier();
        for bad in [
            "",
            "abc",
            "a.b.c",
            "....",
            "eyJhbGciOiJIUzI1NiJ9.e30",
            "\u{0}",
        ] {
            let err = v.verify(bad, NOW).unwrap_err();
            assert_eq!(err.error_code(), ErrorCode::Unauthorized, "{bad:?}: {err}");
        }
        // A claim of the wrong type.
        #[derive(Serialize)]
        struct BadApps {
            sub: &'static str,
            apps: &'static str,
        }
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &BadApps {
                sub: "alice",
                apps: "chat",
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(
            v.verify(&token, NOW),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims("alice"),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn bad_rsa_pem_is_a_key_error() {
        let err = JwtVerifier::rs256_pem(b"not a pem", 0).unwrap_err();
        assert!(matches!(err, AuthError::Key(_)));
        assert!(format!("{:?}", verifier()).contains("HS256"));
    }
}
