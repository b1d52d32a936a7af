//! `gateway token`: mint an HS256 JWT for a user, or check one.

use base64::Engine;
use clap::Args;
use protocol::auth::{Claims, JwtVerifier, TokenVerifier, mint_hs256};

use super::{CliError, secret_from};

/// Arguments of `gateway token`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["user", "check"]))]
pub struct TokenArgs {
    /// The user (`sub` claim) to mint a token for.
    #[arg(long)]
    pub user: Option<String>,
    /// Apps the token allows (`apps` claim), comma-separated; absent = any app.
    #[arg(long, value_delimiter = ',', requires = "user")]
    pub apps: Option<Vec<String>>,
    /// Lifetime of the token: `90s`, `15m`, `1h`, `7d` or plain seconds.
    #[arg(long, default_value = "1h", value_parser = parse_ttl, requires = "user")]
    pub ttl: u64,
    /// Verify this token and print its claims as JSON instead of minting.
    #[arg(long, value_name = "TOKEN", conflicts_with = "user")]
    pub check: Option<String>,
    /// The gateway's HS256 secret (at least 32 bytes).
    #[arg(long, env = "GATEWAY_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

/// Parses a lifetime: a number of seconds with an optional `s`, `m`, `h`
/// or `d` suffix; at least one second.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: expected a number with s, m, h or d (like 1h)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: unit must be s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err("the lifetime must be at least 1s".into()),
        Some(s) => Ok(s),
        None => Err(format!("`{text}` is too long")),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token for `user` valid for `ttl_s` seconds from now.
pub fn mint(
    secret: &[u8],
    user: &str,
    apps: Option<Vec<String>>,
    ttl_s: u64,
) -> Result<String, CliError> {
    if user.is_empty() {
        return Err(CliError::Usage("--user must not be empty".into()));
    }
    let claims = Claims {
        sub: user.to_string(),
        apps,
        exp: Some(unix_now().saturating_add(ttl_s)),
        nbf: None,
    };
    Ok(mint_hs256(secret, &claims)?)
}

/// Verifies `token` now (no leeway) and returns its claims as JSON.
pub fn check(secret: &[u8], token: &str) -> Result<serde_json::Value, CliError> {
    let token = token.trim();
    JwtVerifier::hs256(secret, 0).verify(token, unix_now())?;
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| CliError::Session("token verified but its claims are not JSON".into()))?;
    Ok(payload)
}

/// Runs `gateway token`.
pub fn run(args: &TokenArgs) -> Result<(), CliError> {
    let secret = secret_from(args.secret.as_deref())?;
    if let Some(token) = &args.check {
        let claims = check(&secret, token)?;
        println!("{claims}");
        return Ok(());
    }
    let user = args
        .user
        .as_deref()
        .ok_or_else(|| CliError::Usage("give --user U (or --check TOKEN)".into()))?;
    println!("{}", mint(&secret, user, args.apps.clone(), args.ttl)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("15m").unwrap(), 900);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("7d").unwrap(), 7 * 86_400);
        for bad in ["", "0", "h", "1y", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_minted_token_checks_out_with_its_claims() {
        let apps = Some(vec!["chat".to_string(), "feed".to_string()]);
        let t = mint(SECRET, "alice", apps, 3600).unwrap();
        let claims = check(SECRET, &t).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["apps"], serde_json::json!(["chat", "feed"]));
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp > unix_now() + 3500 && exp <= unix_now() + 3600);
    }

    #[test]
    fn bad_and_expired_tokens_are_refused() {
        let t = mint(SECRET, "alice", None, 3600).unwrap();
        let other = b"another-secret-another-secret-xx";
        let e = check(other, &t).unwrap_err().to_string();
        assert!(e.contains("signature"), "{e}");
        let expired = mint_hs256(
            SECRET,
            &Claims {
                sub: "alice".into(),
                exp: Some(unix_now() - 10),
                ..Claims::default()
            },
        )
        .unwrap();
        let e = check(SECRET, &expired).unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        assert!(check(SECRET, "not.a.token").is_err());
        assert!(mint(SECRET, "", None, 60).is_err());
    }
}
