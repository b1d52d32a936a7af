//! Uplink forwarding: an `Uplink` frame becomes `POST` to the backend its
//! (app, route) maps to; the response becomes a `Reply` with the same
//! `request_id`, the backend's status and body.
//!
//! Statuses the gateway itself answers with (payload: a short text):
//!
//! | status | when |
//! |---|---|
//! | 400 | app or route holds characters a header cannot carry |
//! | 404 | no route for (app, route) and no `uplink.default_url` |
//! | 429 | `uplink.max_in_flight` uplinks already in flight on this shard |
//! | 502 | the backend's response was malformed or too large |
//! | 503 | the backend is unreachable (connect failed or recently failed, connection lost) |
//! | 504 | no response within `uplink.request_timeout_ms` |
//!
//! The request carries `x-gateway-user`, `x-gateway-app`,
//! `x-gateway-route` and `x-gateway-request-id` headers and the payload as
//! an `application/octet-stream` body.

use std::collections::HashMap;

use bytes::Bytes;
use protocol::proto::{Reply, Uplink};
use protocol::time::Millis;
use tuning::backends::UplinkConfig;

use super::http_client::{Response, header_safe, write_post};
use super::pool::{Failure, HttpClient, PoolId};
use super::{BackendError, Outcome, Owner, endpoint, limits};
use crate::stats::ShardStats;

/// The route table of one shard and its in-flight cap.
#[derive(Debug, Default)]
pub struct Uplinks {
    exact: HashMap<(String, String), PoolId>,
    by_app: HashMap<String, PoolId>,
    default: Option<PoolId>,
    max_in_flight: u32,
    in_flight: u32,
}

fn reply(request_id: u64, status: u32, text: &'static str) -> Reply {
    Reply {
        request_id,
        status,
        payload: Bytes::from_static(text.as_bytes()),
    }
}

impl Uplinks {
    /// Builds the table; one pool per distinct URL.
    pub fn new(cfg: &UplinkConfig, client: &mut HttpClient<Owner>) -> Result<Self, BackendError> {
        let lim = {
            let mut l = limits(
                cfg.pool_size,
                cfg.pipeline_depth,
                cfg.connect_timeout_ms,
                cfg.request_timeout_ms,
                cfg.max_response_bytes,
            );
            l.down_hold_ms = cfg.down_hold_ms;
            l
        };
        let mut by_url: HashMap<String, PoolId> = HashMap::new();
        let mut pool_for = |key: &str, url: &str, client: &mut HttpClient<Owner>| {
            if let Some(&id) = by_url.get(url) {
                return Ok(id);
            }
            let id = client.add_pool(endpoint(key, url)?, lim);
            by_url.insert(url.to_string(), id);
            Ok::<_, BackendError>(id)
        };
        let mut t = Self {
            max_in_flight: cfg.max_in_flight,
            ..Self::default()
        };
        if let Some(u) = &cfg.default_url {
            t.default = Some(pool_for("uplink.default_url", u, client)?);
        }
        for r in &cfg.routes {
            let id = pool_for("uplink.route.url", &r.url, client)?;
            if r.route.is_empty() || r.route == "*" {
                t.by_app.insert(r.app.clone(), id);
            } else {
                t.exact.insert((r.app.clone(), r.route.clone()), id);
            }
        }
        Ok(t)
    }

    fn lookup(&self, app: &str, route: &str) -> Option<PoolId> {
        // Avoid allocating for the common lookups.
        if !self.exact.is_empty()
            && let Some(&id) = self.exact.get(&(app.to_string(), route.to_string()))
        {
            return Some(id);
        }
        self.by_app.get(app).copied().or(self.default)
    }

    /// Forwards `up`; `Some(reply)` when answered at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        client: &mut HttpClient<Owner>,
        key: u32,
        generation: u32,
        user: &str,
        up: Uplink,
    ) -> Option<Reply> {
        stats.uplink_requests += 1;
        let id = up.request_id;
        if !header_safe(&up.app) || !header_safe(&up.route) {
            stats.uplink_bad_request += 1;
            return Some(reply(
                id,
                400,
                "gateway: app or route has characters a header cannot carry",
            ));
        }
        let Some(pool) = self.lookup(&up.app, &up.route) else {
            stats.uplink_no_route += 1;
            return Some(reply(
                id,
                404,
                "gateway: no uplink route for this app and route",
            ));
        };
        if self.in_flight >= self.max_in_flight {
            stats.uplink_over_cap += 1;
            return Some(reply(
                id,
                429,
                "gateway: too many uplinks in flight, retry later",
            ));
        }
        let ep = client.endpoint(pool)?;
        let mut bytes = Vec::new();
        let request_id = id.to_string();
        write_post(
            &mut bytes,
            &ep.host,
            &ep.path,
            "application/octet-stream",
            &[
                ("x-gateway-user", user),
                ("x-gateway-app", &up.app),
                ("x-gateway-route", &up.route),
                ("x-gateway-request-id", &request_id),
            ],
            &up.payload,
        );
        let owner = Owner::Uplink {
            key,
            generation,
            request_id: id,
        };
        match client.submit(now, pool, owner, bytes) {
            Ok(()) => {
                self.in_flight += 1;
                None
            }
            Err((_, failure)) => {
                stats.uplink_unavailable += 1;
                Some(failure_reply(id, &failure))
            }
        }
    }

    /// Notes that one forwarded uplink finished.
    pub(super) fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

fn failure_reply(id: u64, f: &Failure) -> Reply {
    match f {
        Failure::Timeout => reply(id, 504, "gateway: backend timed out"),
        Failure::Unavailable(_) => reply(id, 503, "gateway: backend unavailable"),
        Failure::BadResponse(_) => reply(id, 502, "gateway: bad response from backend"),
    }
}

/// Turns a finished uplink request into the Reply for its client.
pub(super) fn finish(
    stats: &mut ShardStats,
    owner: Owner,
    result: Result<Response, Failure>,
) -> Option<Outcome> {
    let Owner::Uplink {
        key,
        generation,
        request_id,
    } = owner
    else {
        return None;
    };
    let reply = match result {
        Ok(resp) => {
            stats.uplink_replies += 1;
            Reply {
                request_id,
                status: u32::from(resp.status),
                payload: Bytes::from(resp.body),
            }
        }
        Err(f) => {
            match f {
                Failure::Timeout => stats.uplink_timeouts += 1,
                Failure::Unavailable(_) => stats.uplink_unavailable += 1,
                Failure::BadResponse(_) => stats.uplink_bad_response += 1,
            }
            failure_reply(request_id, &f)
        }
    };
    Some(Outcome::Reply {
        key,
        generation,
        reply,
    })
}
