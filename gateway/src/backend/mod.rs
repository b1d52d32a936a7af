//! The gateway as an HTTP client of the backends it fronts (DESIGN.md §4):
//! webhook auth ([`auth`]), uplink forwarding ([`uplink`]) and presence
//! events ([`events`]), over per-shard keep-alive pools ([`pool`], framing
//! in [`http_client`]). Sans-IO like the shard core: the client queues
//! [`crate::fd_ops::FdOp`]s for its driver, which reports their results
//! back; time comes in as `now`, and the driver wakes the client by
//! [`Backend::next_deadline`] and [`Backend::on_tick`].
//!
//! Nothing here blocks a shard: every queue is bounded (in-flight caps,
//! event queue cap), every request has a deadline, and when a backend is
//! slow, down or over its cap the caller learns at once. The shard calls in
//! through a handful of hooks and drains [`Backend::outcomes`] after each
//! completion; results carry the connection's key and generation, so an
//! answer for a connection that has gone is simply dropped.

pub mod auth;
pub mod events;
pub mod http_client;
pub mod pool;
pub mod uplink;

use std::net::ToSocketAddrs;

use protocol::proto::{ErrorCode, Reply};
use protocol::time::Millis;
use socket2::SockAddr;
use tuning::backends::HttpUrl;
use tuning::config::GatewayConfig;

use crate::fd_ops::{FdDone, FdOp};
use crate::stats::ShardStats;
use pool::{Endpoint, HttpClient, PoolLimits};

/// Why the backend client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A backend URL is malformed.
    #[error("{key}: {why}")]
    Url {
        /// Config key of the URL.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A backend host name did not resolve.
    #[error("{key}: cannot resolve `{host}`: {why}")]
    Resolve {
        /// Config key of the URL.
        key: String,
        /// The host.
        host: String,
        /// The resolver's message.
        why: String,
    },
}

/// Who a backend request is for.
#[derive(Debug)]
pub enum Owner {
    /// An uplink of connection `key` (generation `generation`).
    Uplink {
        /// Connection slab key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// The client's request id, echoed in the Reply.
        request_id: u64,
    },
    /// The webhook auth of connection `key`.
    Auth {
        /// Connection slab key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// Cache key of the Hello.
        cache_key: Box<str>,
        /// `Hello.device`.
        device: String,
        /// Apps the client asked for.
        apps: Vec<String>,
    },
    /// A batch of presence events.
    Events,
}

/// What the webhook (or its cache) decided about a Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Welcome the client as `user`.
    Allow {
        /// The user id the backend gave.
        user: String,
    },
    /// Refuse with this code and message, then close.
    Deny {
        /// Wire error code.
        code: ErrorCode,
        /// Why, for the client.
        reason: String,
    },
}

/// A result for a client connection, drained by the shard.
#[derive(Debug)]
pub enum Outcome {
    /// Send this Reply to connection `key` if it is still generation `generation`.
    Reply {
        /// Connection slab key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// The reply.
        reply: Reply,
    },
    /// Finish the handshake of connection `key`.
    Auth {
        /// Connection slab key.
        key: u32,
        /// Connection generation.
        generation: u32,
        /// The decision.
        verdict: Verdict,
        /// `Hello.device` (for the presence event).
        device: String,
        /// `Hello.apps` (for the presence event).
        apps: Vec<String>,
    },
}

/// One shard's backend client and its three users.
#[derive(Debug)]
pub struct Backend {
    client: HttpClient<Owner>,
    /// Uplink route table.
    pub uplink: uplink::Uplinks,
    /// Webhook auth, when `auth.mode = "webhook"`.
    pub auth: Option<auth::WebhookAuth>,
    /// Presence events, when `events.url` is set.
    pub events: Option<events::Events>,
    shard: usize,
    /// Results for client connections, for the shard to apply.
    pub outcomes: Vec<Outcome>,
}

/// Resolves `url` (config key `key`) into an endpoint.
fn endpoint(key: &str, url: &str) -> Result<Endpoint, BackendError> {
    let u = HttpUrl::parse(url).map_err(|why| BackendError::Url {
        key: key.into(),
        why,
    })?;
    let addr = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
        .map_err(|why| BackendError::Resolve {
            key: key.into(),
            host: u.host.clone(),
            why,
        })?;
    Ok(Endpoint {
        addr: Box::new(SockAddr::from(addr)),
        host: u.host_header(),
        path: u.path,
    })
}

impl Backend {
    /// Sets up shard `shard`'s pools from the config (no connection is
    /// opened until a request needs one).
    pub fn new(cfg: &GatewayConfig, shard: usize) -> Result<Self, BackendError> {
        let mut client = HttpClient::default();
        let uplink = uplink::Uplinks::new(&cfg.uplink, &mut client)?;
        let auth = auth::WebhookAuth::new(&cfg.auth, &mut client)?;
        let events = events::Events::new(&cfg.events, &mut client)?;
        Ok(Self {
            client,
            uplink,
            auth,
            events,
            shard,
            outcomes: Vec::new(),
        })
    }

    /// Whether Hellos go to the auth webhook.
    pub fn webhook_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Starts the webhook auth of a Hello; `Some` when decided at once
    /// (cache hit, over the cap, backend down).
    #[allow(clippy::too_many_arguments)]
    pub fn authenticate(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        key: u32,
        generation: u32,
        hello: &protocol::proto::Hello,
    ) -> Option<Verdict> {
        let auth = self.auth.as_mut()?;
        let v = auth.start(now, stats, &mut self.client, key, generation, hello);
        self.on_tick(now, stats);
        v
    }

    /// Forwards an uplink; `Some(reply)` when it is answered at once (no
    /// route, over the cap, backend down).
    #[allow(clippy::too_many_arguments)]
    pub fn uplink(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        key: u32,
        generation: u32,
        user: &str,
        up: protocol::proto::Uplink,
    ) -> Option<Reply> {
        let r = self
            .uplink
            .forward(now, stats, &mut self.client, key, generation, user, up);
        self.on_tick(now, stats);
        r
    }

    /// Records a session going online (Welcome sent).
    pub fn online(&mut self, now: Millis, stats: &mut ShardStats, p: events::Presence) {
        if let Some(ev) = self.events.as_mut() {
            ev.online(now, stats, &mut self.client, self.shard, p);
            self.on_tick(now, stats);
        }
    }

    /// Remembers why connection `key` is closing (reported when it goes).
    pub fn closing(&mut self, key: u32, generation: u32, reason: &'static str) {
        if let Some(ev) = self.events.as_mut() {
            ev.closing(key, generation, reason);
        }
    }

    /// The will of the MQTT session on connection (key, generation) fell
    /// due: a `will` event, when presence events are configured.
    pub fn will(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        (key, generation): (u32, u32),
        will: events::WillDue,
    ) {
        if let Some(ev) = self.events.as_mut() {
            ev.will(
                now,
                stats,
                &mut self.client,
                (self.shard, key, generation),
                will,
            );
            self.on_tick(now, stats);
        }
    }

    /// The shard is stopping: sends the presence events that wait, without
    /// waiting for their batch age. Returns whether any are still unsent
    /// (queued, or their batch in flight or waiting for a retry).
    pub fn flush_events(&mut self, now: Millis, stats: &mut ShardStats) -> bool {
        let Some(ev) = self.events.as_mut() else {
            return false;
        };
        ev.flush(now, stats, &mut self.client);
        !ev.is_idle()
    }

    /// Records a session going offline (its connection is gone).
    pub fn offline(&mut self, now: Millis, stats: &mut ShardStats, key: u32, generation: u32) {
        if let Some(ev) = self.events.as_mut() {
            ev.offline(now, stats, &mut self.client, self.shard, key, generation);
            self.on_tick(now, stats);
        }
    }

    /// Connection (key, generation) is gone, its session parked for a
    /// resume: its `offline` waits ([`Backend::offline`] sends it when the
    /// window passes).
    pub fn parked(&mut self, key: u32, generation: u32) {
        if let Some(ev) = self.events.as_mut() {
            ev.parked(key, generation);
        }
    }

    /// The session parked from `from` (on this shard, or handed over from
    /// another) is resumed as `to`: no event.
    pub fn resumed(&mut self, from: Option<(u32, u32)>, to: events::Presence) {
        if let Some(ev) = self.events.as_mut() {
            ev.resumed(from, to);
        }
    }

    /// The session parked from (key, generation) went to another shard,
    /// which reports it from now on: no event.
    pub fn handed(&mut self, key: u32, generation: u32) {
        if let Some(ev) = self.events.as_mut() {
            ev.handed(key, generation);
        }
    }

    /// A session handed over from another shard ended before it could be
    /// resumed: its offline event.
    pub fn parked_gone(&mut self, now: Millis, stats: &mut ShardStats, p: events::Presence) {
        if let Some(ev) = self.events.as_mut() {
            ev.parked_gone(now, stats, &mut self.client, self.shard, p);
            self.on_tick(now, stats);
        }
    }

    /// Reports a durable push that left its user's inbox unacked.
    pub fn undelivered(&mut self, now: Millis, stats: &mut ShardStats, u: events::Undelivered) {
        if let Some(ev) = self.events.as_mut() {
            ev.undelivered(now, stats, &mut self.client, self.shard, u);
            self.on_tick(now, stats);
        }
    }

    /// Whether operations wait for [`Backend::take_ops`].
    pub fn has_ops(&self) -> bool {
        self.client.has_ops()
    }

    /// Moves the operations queued since the last call to `into`, in order.
    pub fn take_ops(&mut self, into: &mut Vec<FdOp>) {
        self.client.take_ops(into);
    }

    /// Where backend connection `key` connects to.
    pub fn connect_addr(&self, key: u32, generation: u32) -> Option<&SockAddr> {
        self.client.connect_addr(key, generation)
    }

    /// The receive buffer of backend connection `key` (see
    /// [`HttpClient::recv_buffer`]).
    pub fn recv_buffer(&mut self, key: u32, generation: u32) -> Option<&mut Vec<u8>> {
        self.client.recv_buffer(key, generation)
    }

    /// The bytes of backend connection `key`'s send in flight.
    pub fn sending(&self, key: u32, generation: u32) -> Option<&[u8]> {
        self.client.sending(key, generation)
    }

    /// An operation of backend connection `key` ended (see
    /// [`HttpClient::on_done`]); what it finished lands in
    /// [`Backend::outcomes`].
    pub fn on_done(
        &mut self,
        now: Millis,
        stats: &mut ShardStats,
        key: u32,
        generation: u32,
        done: FdDone,
    ) {
        self.client.on_done(now, key, generation, done);
        self.on_tick(now, stats);
    }

    /// When [`Backend::on_tick`] is due next: the earliest request
    /// deadline or event batch; `None` when nothing waits.
    pub fn next_deadline(&self) -> Option<Millis> {
        [
            self.client.next_deadline(),
            self.events.as_ref().and_then(events::Events::next_wakeup),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires deadlines, routes finished requests and flushes due event
    /// batches; results land in [`Backend::outcomes`]. Cheap when nothing
    /// is due.
    pub fn on_tick(&mut self, now: Millis, stats: &mut ShardStats) {
        self.client.expire(now);
        for _ in 0..4 {
            if self.client.done.is_empty() {
                break;
            }
            let done = std::mem::take(&mut self.client.done);
            for d in done {
                match d.owner {
                    Owner::Uplink { .. } => {
                        self.uplink.release();
                        if let Some(o) = uplink::finish(stats, d.owner, d.result) {
                            self.outcomes.push(o);
                        }
                    }
                    Owner::Auth { .. } => {
                        if let Some(a) = self.auth.as_mut()
                            && let Some(o) = a.finish(now, stats, d.owner, d.result)
                        {
                            self.outcomes.push(o);
                        }
                    }
                    Owner::Events => {
                        if let Some(ev) = self.events.as_mut() {
                            ev.finish(now, stats, d.result);
                        }
                    }
                }
            }
            if let Some(ev) = self.events.as_mut() {
                ev.tick(now, stats, &mut self.client);
            }
        }
        if let Some(ev) = self.events.as_mut() {
            ev.tick(now, stats, &mut self.client);
        }
        stats.backend_connects = self.client.connects;
        stats.backend_connect_errors = self.client.connect_errors;
        stats.backend_in_flight = self.client.in_flight() as u64;
    }
}

/// Pool limits shared by the three users.
pub(crate) fn limits(
    size: u32,
    depth: u32,
    connect_ms: u32,
    request_ms: u32,
    max: u32,
) -> PoolLimits {
    PoolLimits {
        size,
        depth,
        connect_timeout_ms: connect_ms,
        request_timeout_ms: request_ms,
        down_hold_ms: connect_ms.min(1_000),
        max_response: max as usize,
    }
}
