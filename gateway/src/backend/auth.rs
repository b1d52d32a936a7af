//! Webhook auth: the Hello's token, device and apps are POSTed as JSON to
//! `auth.webhook.url`:
//!
//! ```json
//! {"token": "...", "device": "...", "apps": ["chat"], "shard": 0}
//! ```
//!
//! The backend answers 200 with `{"allow": true, "user": "u1", "apps": ["chat"]}`
//! (`apps` optional: the apps the user may open; asking for others is
//! refused) or `{"allow": false, "reason": "..."}`. Any non-2xx status is
//! a denial too (the body's `reason`, if any, is passed on). Verdicts
//! (allow and deny) are cached per (token, device, apps) for
//! `auth.webhook.cache_ttl_ms`.
//!
//! Error codes the client sees (then the connection closes):
//! - denied: `UNAUTHORIZED` with the backend's reason;
//! - no answer within `auth.webhook.timeout_ms`: `BACKEND_TIMEOUT`;
//! - backend unreachable or its answer unreadable: `BACKEND_UNAVAILABLE`;
//! - `auth.webhook.max_in_flight` calls already waiting: `OVERLOADED`.
//!
//! Errors are never cached.

use std::collections::HashMap;

use protocol::proto::{ErrorCode, Hello};
use protocol::time::Millis;
use serde::{Deserialize, Serialize};
use tuning::config::AuthConfig;

use super::http_client::{Response, write_post};
use super::pool::{Failure, HttpClient, PoolId};
use super::{BackendError, Outcome, Owner, Verdict, endpoint, limits};
use crate::stats::ShardStats;

#[derive(Serialize)]
struct AuthRequest<'a> {
    token: &'a str,
    device: &'a str,
    apps: &'a [String],
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthAnswer {
    allow: bool,
    user: String,
    apps: Option<Vec<String>>,
    reason: String,
}

/// One shard's webhook authenticator and its verdict cache.
#[derive(Debug)]
pub struct WebhookAuth {
    pool: PoolId,
    ttl_ms: u64,
    cache_cap: usize,
    max_in_flight: u32,
    in_flight: u32,
    cache: HashMap<Box<str>, (Millis, Verdict)>,
}

fn deny(code: ErrorCode, reason: impl Into<String>) -> Verdict {
    Verdict::Deny {
        code,
        reason: reason.into(),
    }
}

impl WebhookAuth {
    /// The authenticator, when `auth.mode = "webhook"`.
    pub fn new(
        cfg: &AuthConfig,
        client: &mut HttpClient<Owner>,
    ) -> Result<Option<Self>, BackendError> {
        if cfg.mode != tuning::backends::AuthMode::Webhook {
            return Ok(None);
        }
        let w = &cfg.webhook;
        let Some(url) = &w.url else {
            return Err(BackendError::Url {
                key: "auth.webhook.url".into(),
                why: "webhook mode needs a URL".into(),
            });
        };
        let lim = limits(
            w.pool_size,
            1,
            w.connect_timeout_ms,
            w.timeout_ms,
            64 * 1024,
        );
        let pool = client.add_pool(endpoint("auth.webhook.url", url)?, lim);
        Ok(Some(Self {
            pool,
            ttl_ms: u64::from(w.cache_ttl_ms),
            cache_cap: w.cache_entries as usize,
            max_in_flight: w.max_in_flight,
            in_flight: 0,
            cache: HashMap::new(),
        }))
    }

    /// Starts authenticating `hello`; `Some` when decided at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        key: u32,
        generation: u32,
        hello: &Hello,
    ) -> Option<Verdict> {
        let cache_key = format!(
            "{}\n{}\n{}",
            hello.token,
            hello.device,
            hello.apps.join(",")
        );
        if self.ttl_ms > 0
            && let Some((until, v)) = self.cache.get(cache_key.as_str())
        {
            if *until > now {
                stats.auth_cache_hits += 1;
                return Some(v.clone());
            }
            self.cache.remove(cache_key.as_str());
        }
        if self.in_flight >= self.max_in_flight {
            stats.auth_webhook_errors += 1;
            return Some(deny(
                ErrorCode::Overloaded,
                "too many logins in progress, retry later",
            ));
        }
        let body = serde_json::to_vec(&AuthRequest {
            token: &hello.token,
            device: &hello.device,
            apps: &hello.apps,
        })
        .unwrap_or_default();
        let ep = client.endpoint(self.pool)?;
        let mut bytes = Vec::new();
        write_post(
            &mut bytes,
            &ep.host,
            &ep.path,
            "application/json",
            &[],
            &body,
        );
        stats.auth_webhook_calls += 1;
        let owner = Owner::Auth {
            key,
            generation,
            cache_key: cache_key.into_boxed_str(),
            device: hello.device.clone(),
            apps: hello.apps.clone(),
        };
        match client.submit(now, self.pool, owner, bytes) {
            Ok(()) => {
                self.in_flight += 1;
                None
            }
            Err((_, f)) => {
                stats.auth_webhook_errors += 1;
                Some(failure_verdict(&f))
            }
        }
    }

    /// Turns the webhook's answer into the verdict for its connection.
    pub(super) fn finish(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        owner: Owner,
        result: Result<Response, Failure>,
    ) -> Option<Outcome> {
        let Owner::Auth {
            key,
            generation,
            cache_key,
            device,
            apps,
        } = owner
        else {
            return None;
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        let verdict = match result {
            Ok(resp) => {
                let verdict = judge(&resp, &apps);
                match &verdict {
                    Verdict::Allow { .. } => stats.auth_webhook_allowed += 1,
                    Verdict::Deny { .. } => stats.auth_webhook_denied += 1,
                }
                self.remember(now, cache_key, &verdict);
                verdict
            }
            Err(f) => {
                stats.auth_webhook_errors += 1;
                failure_verdict(&f)
            }
        };
        Some(Outcome::Auth {
            key,
            generation,
            verdict,
            device,
            apps,
        })
    }

    fn remember(&mut self, now: Millis, cache_key: Box<str>, verdict: &Verdict) {
        if self.ttl_ms == 0 || self.cache_cap == 0 {
            return;
        }
        if self.cache.len() >= self.cache_cap {
            self.cache.retain(|_, (until, _)| *until > now);
            if self.cache.len() >= self.cache_cap {
                // Still full of live entries: start over rather than grow.
                self.cache.clear();
            }
        }
        self.cache
            .insert(cache_key, (Millis(now.0 + self.ttl_ms), verdict.clone()));
    }
}

fn failure_verdict(f: &Failure) -> Verdict {
    match f {
        Failure::Timeout => deny(ErrorCode::BackendTimeout, "auth backend timed out"),
        Failure::Unavailable(why) => deny(
            ErrorCode::BackendUnavailable,
            format!("auth backend unavailable: {why}"),
        ),
        Failure::BadResponse(why) => deny(
            ErrorCode::BackendUnavailable,
            format!("auth backend answered badly: {why}"),
        ),
    }
}

/// The verdict in a webhook response, checked against the requested apps.
fn judge(resp: &Response, requested: &[String]) -> Verdict {
    let answer: Option<AuthAnswer> = serde_json::from_slice(&resp.body).ok();
    if !(200..300).contains(&resp.status) {
        let reason = answer
            .map(|a| a.reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("auth backend answered {}", resp.status));
        if resp.status >= 500 {
            return deny(ErrorCode::BackendUnavailable, reason);
        }
        return deny(ErrorCode::Unauthorized, reason);
    }
    let Some(a) = answer else {
        return deny(
            ErrorCode::BackendUnavailable,
            "auth backend answer is not JSON",
        );
    };
    if !a.allow {
        let reason = if a.reason.is_empty() {
            "denied".to_string()
        } else {
            a.reason
        };
        return deny(ErrorCode::Unauthorized, reason);
    }
    if a.user.is_empty() {
        return deny(ErrorCode::Unauthorized, "auth backend gave no user");
    }
    if let Some(allowed) = &a.apps
        && !requested.iter().all(|r| allowed.contains(r))
    {
        return deny(ErrorCode::Unauthorized, "apps not allowed for this user");
    }
    Verdict::Allow { user: a.user }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
            keep_alive: true,
        }
    }

    #[test]
    fn answers_become_verdicts() {
        let apps = vec!["chat".to_string()];
        assert_eq!(
            judge(&resp(200, r#"{"allow":true,"user":"u1"}"#), &apps),
            Verdict::Allow { user: "u1".into() }
        );
        assert_eq!(
            judge(&resp(200, r#"{"allow":false,"reason":"banned"}"#), &apps),
            deny(ErrorCode::Unauthorized, "banned")
        );
        assert!(matches!(
            judge(
                &resp(200, r#"{"allow":true,"user":"u1","apps":["news"]}"#),
                &apps
            ),
            Verdict::Deny {
                code: ErrorCode::Unauthorized,
                ..
            }
        ));
        assert_eq!(
            judge(&resp(403, r#"{"reason":"nope"}"#), &apps),
            deny(ErrorCode::Unauthorized, "nope")
        );
        assert!(matches!(
            judge(&resp(502, ""), &apps),
            Verdict::Deny {
                code: ErrorCode::BackendUnavailable,
                ..
            }
        ));
        assert!(matches!(
            judge(&resp(200, "not json"), &apps),
            Verdict::Deny {
                code: ErrorCode::BackendUnavailable,
                ..
            }
        ));
    }
}
