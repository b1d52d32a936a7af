//! The messages shards send each other, and where they go.
//!
//! A push travels as a [`PushJob`]: its frame encoded once, shared by
//! reference count between the shards it visits. [`Dest`] names where a
//! message goes: a shard of this node, or (for a fleet) another node.

use std::sync::Arc;

use bytes::Bytes;

use crate::directory::SessionRef;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// A shard of this node.
    Local(u16),
    /// Another node of a fleet, by its node id. Nothing routes there yet:
    /// this node's routing knows only its own shards.
    Node(u32),
}

/// A push as it travels between shards: the frame encoded once, plus what
/// delivery needs to know about it.
#[derive(Debug)]
pub struct PushJob {
    /// Gateway-wide push id.
    pub id: u64,
    /// The whole `Push` frame, length prefix included (or several whole
    /// frames back to back, for a run of batched pushes).
    pub frame: Bytes,
    /// How many frames `frame` holds.
    pub frames: u32,
    /// Only sessions that declared this app get it; empty = every session.
    pub app: Box<str>,
    /// Recipients per second across the gateway; 0 = as fast as possible.
    pub rate: u32,
    /// When the API accepted it, µs since the Unix epoch.
    pub accepted_us: u64,
    /// A durable push (`"ack": true` to users): how long the user's
    /// inbox keeps it, ms; 0 = `[store] ttl_ms`. Unused otherwise.
    pub ttl_ms: u64,
}

/// Who on a shard a delivery is for.
#[derive(Debug)]
pub enum Target {
    /// Every session.
    All,
    /// Local subscribers of a topic.
    Topic(Box<str>),
    /// These sessions of this user (key, generation).
    User(Box<str>, Vec<(u32, u32)>),
}

/// What a request about a user's sessions does.
#[derive(Debug, Clone)]
pub enum UserAction {
    /// Report the sessions (presence).
    Describe,
    /// Kick the sessions with this code and reason.
    Kick(u32, Box<str>),
}

/// What a request about a user's durable inbox does, at the user's owner
/// (the shard that keeps the inbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxAction {
    /// Count the pending pushes (for the user's presence answer).
    Count,
    /// List the oldest pending pushes, at most this many.
    List(u32),
    /// Remove every pending push.
    Purge,
}

/// One pending durable push as the inbox listing shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxEntry {
    /// Its id.
    pub id: u64,
    /// Times it went out so far.
    pub deliveries: u16,
    /// Sent and its Ack awaited.
    pub in_flight: bool,
    /// Wall-clock ms (Unix) after which it expires.
    pub expires_unix_ms: u64,
    /// Its size in the store.
    pub bytes: u32,
}

/// The owner's answer to an inbox request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxReport {
    /// Pending pushes (before a purge).
    pub pending: u64,
    /// Their bytes in the store.
    pub bytes: u64,
    /// The oldest of them, for [`InboxAction::List`].
    pub pushes: Vec<InboxEntry>,
    /// Pushes removed, for [`InboxAction::Purge`].
    pub purged: u64,
}

/// What a session parked for a resume had (issue 17): enough to give it
/// back on any shard, and to report it offline if it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedSession {
    /// Its user.
    pub user: Box<str>,
    /// Its session id (as in its Welcome).
    pub session: Box<str>,
    /// `Hello.device`.
    pub device: Box<str>,
    /// `Hello.apps`.
    pub apps: Vec<String>,
    /// The topics it subscribed to.
    pub topics: Vec<Box<str>>,
    /// Topic pushes and broadcasts sent to it while it was parked, oldest
    /// first, to replay when it is resumed.
    pub missed: Vec<Missed>,
    /// Whether `missed` is everything it missed (false once its bounds
    /// were reached: its client refetches from its backend).
    pub complete: bool,
}

/// One push a parked session missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The push's v1 frame (or run of frames) as delivered.
    pub frame: Bytes,
    /// How many frames `frame` holds.
    pub frames: u32,
    /// A broadcast (its MQTT topic is `$gateway/all`), not a topic push.
    pub broadcast: bool,
}

impl ParkedSession {
    /// Bytes of the missed pushes it keeps.
    pub fn missed_bytes(&self) -> usize {
        self.missed.iter().map(|m| m.frame.len()).sum()
    }
}

/// Where the answer to a cross-shard request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef {
    /// Shard waiting for the answer.
    pub shard: u16,
    /// Its request id.
    pub id: u32,
}

/// A push through a user's owner that asks for the user's route back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteAsk {
    /// Shard that accepted the push.
    pub shard: u16,
    /// Its question number (see `shard_router::routes`).
    pub seq: u32,
}

/// Where the count of the sessions a push reached goes: the push API's
/// shard waits for it before it answers (`"online": N`).
///
/// The owner that resolves a user or a topic tells the receipt's shard how
/// many holding shards will count ([`Message::PushPlan`]); each holding
/// shard answers with the sessions it enqueued the push to
/// ([`Message::PushCount`]). A count may arrive before its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Shard waiting for the count, and its pending answer.
    pub reply_to: RequestRef,
    /// That answer's sequence number: a count arriving after its answer
    /// was given (timed out) never lands on a later answer that took the
    /// same slot.
    pub seq: u32,
    /// Which part of the answer it counts (a line, or a run of lines, of
    /// a batch; 0 for a single push).
    pub part: u32,
}

/// One session as presence reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// Holding shard.
    pub shard: u16,
    /// Session id (as in its Welcome).
    pub session: String,
    /// Device label from its Hello.
    pub device: String,
    /// Apps from its Hello.
    pub apps: Vec<String>,
    /// Connected since, seconds since the Unix epoch.
    pub since: u64,
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum Message {
    /// To a user's owner: a session of the user is up.
    SessionUp(Box<str>, SessionRef),
    /// To a user's owner: a session of the user is gone.
    SessionDown(Box<str>, SessionRef),
    /// To a topic's owner: a shard got its first subscriber.
    TopicJoin(Box<str>, u16),
    /// To a topic's owner: a shard lost its last subscriber.
    TopicLeave(Box<str>, u16),
    /// To every shard: this shard holds wildcard filters now (MQTT `+`,
    /// `#`), so every topic push must visit it.
    WildcardJoin(u16),
    /// To every shard: this shard holds no wildcard filter any more.
    WildcardLeave(u16),
    /// To a user's owner: route this push to the user's sessions, and
    /// answer with the route if asked and cacheable; plan the count if a
    /// receipt is given.
    PushToUser(Box<str>, Arc<PushJob>, Option<RouteAsk>, Option<Receipt>),
    /// To a shard that asked: the user's (hash's) sessions, answering
    /// question `seq`.
    Route(u64, u32, Box<[SessionRef]>),
    /// To a shard that cached a route: the user's sessions changed.
    ForgetRoute(u64),
    /// To a topic's owner: route this push to the shards with
    /// subscribers; plan the count if a receipt is given.
    PushToTopic(Box<str>, Arc<PushJob>, Option<Receipt>),
    /// To a holding shard: deliver this push to local recipients, and
    /// count them to the receipt if one is given.
    Deliver(Target, Arc<PushJob>, Option<Receipt>),
    /// To a user's owner: act on the user's sessions, answer `RequestRef`.
    UserRequest(Box<str>, UserAction, RequestRef),
    /// To a holding shard: act on these sessions of the user.
    SessionsRequest(Box<str>, Vec<(u32, u32)>, UserAction, RequestRef),
    /// To the requester: this many holding shards will answer.
    RequestPlan(RequestRef, u16),
    /// To the requester: the sessions one holding shard acted on.
    RequestReply(RequestRef, Vec<SessionInfo>),
    /// To a receipt's shard: this many holding shards will count the push
    /// for one user or topic.
    PushPlan(Receipt, u16),
    /// To a receipt's shard: one holding shard enqueued the push to this
    /// many sessions.
    PushCount(Receipt, u32),
    /// To every shard: kick all sessions (drain kind) at this rate per shard.
    Drain(u32, Arc<[String]>, u32),
    /// To a user's owner: keep this durable push in the user's inbox, then
    /// deliver it; tell the receipt's shard whether it was stored
    /// ([`Message::PushStored`]) and plan its count.
    StoreForUser(Box<str>, Arc<PushJob>, Option<Receipt>),
    /// To a user's owner: a session of the user acked these push ids.
    Acked(Box<str>, Box<[u64]>),
    /// To a receipt's shard: the durable push is stored for one user
    /// (`Ok`), or refused with this HTTP status and reason.
    PushStored(Receipt, Result<(), (u16, Box<str>)>),
    /// To a user's owner: act on the user's durable inbox, answer
    /// [`Message::InboxReply`] to the `RequestRef`.
    InboxRequest(Box<str>, InboxAction, RequestRef),
    /// To the requester: what the owner's inbox holds (or held).
    InboxReply(RequestRef, Box<InboxReport>),
    /// To the shard that parked a session: hand the session parked from
    /// connection (key, generation) over to `user`'s new session here
    /// ([`SessionRef`]), if it is still parked for that user.
    ResumeAsk(Box<str>, (u32, u32), SessionRef),
    /// To the asking shard: the parked session, or `None` when it is gone
    /// (window passed, resumed already, another user's).
    ResumeGive(SessionRef, Option<Box<ParkedSession>>),
    /// To a user's owner: an MQTT persistent session of the user was
    /// parked, and where (for the resume window).
    MqttParked(Box<MqttParked>),
    /// To a user's owner: the user's new MQTT connection ([`SessionRef`])
    /// asks for the persistent session of this client id; the owner passes
    /// it on to the parking shard as a [`Message::ResumeAsk`], or answers
    /// [`Message::ResumeGive`] with none.
    MqttSessionAsk(Box<str>, Box<str>, SessionRef),
    /// To a user's owner: the user's new MQTT session ([`SessionRef`])
    /// has the client id of this hash; the user's other sessions with it
    /// are closed (§3.1.4-2). The owner asks each holding shard with a
    /// [`Message::MqttEvict`].
    MqttTakeover(Box<str>, u32, SessionRef),
    /// To a holding shard: close these sessions of the user whose client
    /// id has this hash, except the new one.
    MqttEvict(Box<str>, u32, Vec<(u32, u32)>, SessionRef),
}

/// Where an MQTT persistent session is parked, for its user's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttParked {
    /// Its user.
    pub user: Box<str>,
    /// Its client id (scoped by the user).
    pub client_id: Box<str>,
    /// The connection that had it (its parked session's name).
    pub at: SessionRef,
}

impl Message {
    /// Whether its receiver waits on it: false for the plans and counts
    /// of a push answer, which the answering shard collects on a short
    /// deadline of its own (see `Mailboxes::send_quiet`), so counting
    /// costs no wake-up of its own.
    pub fn wakes_receiver(&self) -> bool {
        !matches!(self, Message::PushPlan(..) | Message::PushCount(..))
    }
}
