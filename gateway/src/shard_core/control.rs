//! Requests of the control listener answered by the core: routing, the
//! bearer-token check, and answers that arrive later (cross-shard).

use protocol::time::Millis;

use super::{Action, Answer, ShardCore, Time};
use crate::control::Caller;
use crate::control::http::Request;
use crate::control::routes::{self, Response};

/// Paths the control listener serves (for 405 versus 404).
const KNOWN: &[&str] = &[
    "/",
    "/healthz",
    "/v1/stats",
    "/metrics",
    "/v1/push",
    "/v1/push/batch",
    "/v1/kick",
    "/v1/drain",
];

/// Decodes `%XX` escapes of a path segment; `None` if malformed.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl ShardCore {
    /// A request of the control listener, from `caller`. The answer comes
    /// out as an [`Action::Answer`], now or later (cross-shard requests).
    ///
    /// A broadcast is answered once it is accepted (validated, encoded,
    /// given its id), with the sessions online; a push to users or a topic
    /// once its holding shards have counted the sessions they enqueued it
    /// to (at most `push::REQUEST_TIMEOUT_MS` later, then `"partial"`).
    /// A push that fans out is routed, with this shard's own deliveries,
    /// by [`ShardCore::route_accepted_pushes`], which the driver calls
    /// once the answers given are on their way. Any other request first
    /// routes the pushes accepted before it, so the order between requests
    /// on a connection is the order they take effect in.
    pub fn on_control_request(&mut self, t: Time, caller: Caller, req: &Request) {
        let now = self.at(t);
        let path = req.path.split('?').next().unwrap_or("");
        if !matches!(path, "/v1/push" | "/v1/push/batch") {
            self.route_accepted();
        }
        if let Some(answer) = self.route_control(now, caller, req) {
            self.actions.push(Action::Answer(caller, answer));
        }
    }

    /// Whether pushes were answered and not routed yet.
    pub fn has_accepted_pushes(&self) -> bool {
        !self.accepted.is_empty()
    }

    /// Routes the pushes answered so far (see
    /// [`ShardCore::on_control_request`]).
    pub fn route_accepted_pushes(&mut self, t: Time) {
        self.at(t);
        self.route_accepted();
    }

    /// Writes `resp` to `caller`.
    pub(super) fn respond(&mut self, caller: Caller, resp: Response) {
        self.actions
            .push(Action::Answer(caller, Answer::Response(resp)));
    }

    /// Whether `req` may use the control API: a bearer token is required
    /// when the listener is bound to a non-loopback address.
    fn authorized(&self, req: &Request) -> bool {
        let listen = &self.settings.config.listen;
        if listen.control.ip().is_loopback() {
            return true;
        }
        let Some(token) = &listen.control_token else {
            return false;
        };
        req.authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == token)
    }

    /// The answer to `req`, or `None` when it comes later.
    fn route_control(&mut self, now: Millis, key: Caller, req: &Request) -> Option<Answer> {
        let path = req.path.split('?').next().unwrap_or("");
        if path != "/healthz" && !self.authorized(req) {
            return Some(Answer::Response(Response::error(
                401,
                "missing or wrong bearer token",
            )));
        }
        let response = match (req.method.as_str(), path) {
            ("GET", "/v1/stats") => return Some(Answer::Stats),
            ("GET", "/metrics") => return Some(Answer::Metrics),
            _ => self.route_api(now, key, req, path)?,
        };
        Some(Answer::Response(response))
    }

    /// The response to an API request, or `None` when it comes later.
    fn route_api(
        &mut self,
        now: Millis,
        key: Caller,
        req: &Request,
        path: &str,
    ) -> Option<Response> {
        match (req.method.as_str(), path) {
            ("GET", "/healthz") => Some(routes::health()),
            // The status page: under the same bearer-token rule as the
            // API it polls.
            ("GET", "/") => Some(routes::status_page()),
            ("POST", "/v1/push") => self.api_push(now, key, &req.body),
            ("POST", "/v1/push/batch") => self.api_push_batch(now, key, &req.body),
            ("POST", "/v1/kick") => self.api_kick(now, key, &req.body),
            ("POST", "/v1/drain") => Some(self.api_drain(&req.body)),
            (method @ ("GET" | "DELETE"), p)
                if p.starts_with("/v1/users/") && p.ends_with("/inbox") =>
            {
                let name = &p["/v1/users/".len()..p.len() - "/inbox".len()];
                match percent_decode(name) {
                    Some(user) => self.api_inbox(now, key, &user, method == "DELETE", &req.path),
                    None => Some(Response::error(400, "malformed user name in path")),
                }
            }
            ("GET", p) if p.starts_with("/v1/users/") => {
                match percent_decode(&p["/v1/users/".len()..]) {
                    Some(user) => self.api_user(now, key, &user),
                    None => Some(Response::error(400, "malformed user name in path")),
                }
            }
            (_, p) if KNOWN.contains(&p) || p.starts_with("/v1/users/") => {
                Some(Response::error(405, "method not allowed"))
            }
            _ => Some(Response::error(404, &format!("no such endpoint: {path}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_and_refuses_bad_ones() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
