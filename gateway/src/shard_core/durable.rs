//! Durable pushes on the core's side (issue 17): a push to users with
//! `"ack": true` is kept by each user's owner shard in its [`StoreCore`]
//! before it is answered `"stored": true`, and goes out only once durable
//! (store, then send). The owner then pumps each user's inbox to the
//! user's sessions, oldest id first, at most [`IN_FLIGHT_WINDOW`] pushes
//! awaiting their Acks at a time; the rest wait in the inbox (on disk),
//! not in a connection's queue. A push leaves the inbox on the first Ack
//! of any session of the user (consumed once per user), goes out again
//! after its Ack timeout (with backoff) and when a new session of the user
//! comes up, and is dead-lettered after `max_deliveries`.
//!
//! The core makes no syscall here either: the store's file operations go
//! out through [`ShardCore::take_store_ops`] and their completions come
//! back through [`ShardCore::on_store_done`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use protocol::codec::{decode_frame, encode_shared};
use protocol::proto::frame::Kind;
use protocol::time::Millis;

use super::push::{Message, PushJob, Receipt};
use super::{Action, BackendCall, ShardCore, Time};
use crate::backend::events::Undelivered;
use crate::store::{
    AppendError, Delivery, NewPush, OpDone, OpId, StoreCore, StoreEvent, StoreOp, StoreStats,
    Ticket,
};
use shard_router::messages::{InboxAction, InboxEntry, InboxReport};

/// Most pushes of one user delivered and awaiting their Acks (like MQTT's
/// receive maximum); later ones wait in the inbox.
pub const IN_FLIGHT_WINDOW: usize = 32;

/// A durable push stored and not yet known to be durable.
#[derive(Debug)]
struct Committing {
    ticket: Ticket,
    user: Box<str>,
    job: Arc<PushJob>,
    receipt: Option<Receipt>,
}

/// One shard's durable store and the delivery state around it.
#[derive(Debug)]
pub(crate) struct Durable {
    store: StoreCore,
    /// Appends waiting for their group commit, in ticket order.
    committing: VecDeque<Committing>,
    /// Payloads read back from disk for online users, waiting for their
    /// turn (at most a window per user; dropped when the user goes
    /// offline).
    loaded: HashMap<Arc<str>, Vec<(u64, Bytes)>>,
    /// Reads asked for and not back yet, per user.
    loading: HashMap<Arc<str>, Vec<u64>>,
    /// The store's events being handled (storage kept).
    events: Vec<StoreEvent>,
}

impl Durable {
    fn new(store: StoreCore) -> Self {
        Self {
            store,
            committing: VecDeque::new(),
            loaded: HashMap::new(),
            loading: HashMap::new(),
            events: Vec::new(),
        }
    }
}

/// A fresh push handed to [`ShardCore::pump`] at its commit.
type Fresh = (u64, Arc<PushJob>, Option<Receipt>);

impl ShardCore {
    /// Gives this shard its durable store (recovered at start-up). Without
    /// one, durable pushes for the users it owns are refused with 503.
    pub fn set_store(&mut self, store: StoreCore) {
        self.durable = Some(Box::new(Durable::new(store)));
    }

    /// The store's counters and gauges, if this shard has a store.
    pub fn store_stats(&self) -> Option<StoreStats> {
        self.durable.as_ref().map(|d| d.store.stats())
    }

    /// Moves the store's queued file operations to `into`, in the order
    /// they must be performed (starting a group commit if none is in
    /// flight). The driver calls this once per turn.
    pub fn take_store_ops(&mut self, t: Time, into: &mut Vec<StoreOp>) {
        self.at(t);
        if let Some(d) = &mut self.durable {
            d.store.take_ops(t, into);
        }
    }

    /// Whether the store waits for operations still to be performed.
    pub fn store_busy(&self) -> bool {
        self.durable.as_ref().is_some_and(|d| d.store.busy())
    }

    /// The store's file operation `id` completed.
    pub fn on_store_done(&mut self, t: Time, id: OpId, done: OpDone) {
        let now = self.at(t);
        if let Some(d) = &mut self.durable {
            d.store.on_op_done(t, id, done);
        }
        self.store_events(now);
    }

    /// The store's Ack deadlines and TTLs (from [`ShardCore::on_tick`]).
    pub(super) fn store_tick(&mut self, now: Millis) {
        let t = self.time(now);
        let Some(d) = &mut self.durable else {
            return;
        };
        if d.store.next_deadline(t).is_some_and(|at| at <= now) {
            d.store.on_tick(t);
            self.store_events(now);
        }
    }

    /// When the store next needs its tick.
    pub(super) fn store_wakeup(&self, now: Millis) -> Option<Millis> {
        let d = self.durable.as_ref()?;
        d.store.next_deadline(Time {
            now,
            unix_ms: self.unix_ms,
        })
    }

    fn time(&self, now: Millis) -> Time {
        Time {
            now,
            unix_ms: self.unix_ms,
        }
    }

    /// As `user`'s owner: keep `job` in the user's inbox, then (once it is
    /// durable) deliver it. The receipt's shard learns whether it was
    /// stored, then gets the count's plan.
    pub(super) fn store_for_user(
        &mut self,
        now: Millis,
        user: Box<str>,
        job: Arc<PushJob>,
        receipt: Option<Receipt>,
    ) {
        let t = self.time(now);
        let Some(d) = &mut self.durable else {
            self.refuse_store(receipt, 503, "this gateway has no durable store");
            return;
        };
        let push = NewPush {
            id: job.id,
            user: &user,
            ttl_ms: (job.ttl_ms > 0).then_some(job.ttl_ms),
            payload: &job.frame,
        };
        match d.store.append(t, push) {
            Ok(appended) => d.committing.push_back(Committing {
                ticket: appended.ticket,
                user,
                job,
                receipt,
            }),
            Err(e) => {
                let status = match e {
                    AppendError::InboxFull | AppendError::StoreFull => 507,
                    AppendError::TooLarge(_) => 413,
                    AppendError::Duplicate(_) => 409,
                    AppendError::Failed(_) => 503,
                };
                self.refuse_store(receipt, status, &e.to_string());
            }
        }
        self.store_events(now);
    }

    /// Tells the receipt's shard that a durable push was refused, and that
    /// no holder will count it.
    fn refuse_store(&mut self, receipt: Option<Receipt>, status: u16, why: &str) {
        if let Some(r) = receipt {
            let shard = usize::from(r.reply_to.shard);
            self.send_to(shard, Message::PushStored(r, Err((status, why.into()))));
            self.send_to(shard, Message::PushPlan(r, 0));
        }
    }

    /// As `user`'s owner: a session acked `ids`.
    pub(super) fn on_acked(&mut self, now: Millis, user: &str, ids: &[u64]) {
        let Some(d) = &mut self.durable else {
            return;
        };
        let mut any = false;
        for &id in ids {
            any |= d.store.ack(user, id);
        }
        if any {
            self.pump(now, user, None);
        }
    }

    /// As `user`'s owner: a session of the user came up. What was in
    /// flight to the earlier sessions goes out again, with the rest of the
    /// inbox, oldest first.
    pub(super) fn durable_session_up(&mut self, now: Millis, user: &str) {
        let Some(d) = &mut self.durable else {
            return;
        };
        if d.store.pending_count(user) == 0 {
            return;
        }
        d.store.release_in_flight(user);
        self.pump(now, user, None);
    }

    /// As `user`'s owner: a session of the user went away; with none left,
    /// payloads read back for it are dropped (the inbox keeps the pushes).
    pub(super) fn durable_session_down(&mut self, user: &str) {
        if self.router.has_sessions(user) {
            return;
        }
        if let Some(d) = &mut self.durable {
            d.loaded.remove(user);
        }
    }

    /// Acts on what the store reported.
    fn store_events(&mut self, now: Millis) {
        let Some(d) = &mut self.durable else {
            return;
        };
        let mut events = std::mem::take(&mut d.events);
        d.store.take_events(&mut events);
        for event in events.drain(..) {
            self.store_event(now, event);
        }
        if let Some(d) = &mut self.durable {
            d.events = events;
        }
    }

    fn store_event(&mut self, now: Millis, event: StoreEvent) {
        match event {
            StoreEvent::Committed { through } => {
                while let Some(d) = &mut self.durable
                    && d.committing.front().is_some_and(|c| c.ticket <= through)
                {
                    let Some(c) = d.committing.pop_front() else {
                        break;
                    };
                    if let Some(r) = c.receipt {
                        self.send_to(
                            usize::from(r.reply_to.shard),
                            Message::PushStored(r, Ok(())),
                        );
                    }
                    self.pump(now, &c.user, Some((c.job.id, c.job, c.receipt)));
                }
            }
            StoreEvent::Failed(f) => {
                tracing::error!(shard = self.index, %f, "durable store failed: it takes no more pushes until restart");
                let pending = self
                    .durable
                    .as_mut()
                    .map(|d| std::mem::take(&mut d.committing))
                    .unwrap_or_default();
                for c in pending {
                    self.refuse_store(c.receipt, 503, &format!("the store failed: {f}"));
                }
            }
            StoreEvent::Redeliver { user, .. } => self.pump(now, &user, None),
            StoreEvent::Loaded {
                user, id, payload, ..
            } => {
                if let Some(d) = &mut self.durable {
                    let awaited = take_loading(&mut d.loading, &user, id);
                    if awaited && self.router.has_sessions(&user) {
                        d.loaded
                            .entry(Arc::clone(&user))
                            .or_default()
                            .push((id, Bytes::from(payload)));
                    }
                }
                self.pump(now, &user, None);
            }
            StoreEvent::LoadFailed { user, id, why } => {
                tracing::warn!(shard = self.index, user = %user, id, why, "a stored push could not be read back");
                if let Some(d) = &mut self.durable {
                    take_loading(&mut d.loading, &user, id);
                }
            }
            StoreEvent::DeadLettered {
                user,
                id,
                deliveries,
            } => {
                tracing::info!(shard = self.index, user = %user, id, deliveries, "durable push dead-lettered after its deliveries");
                self.undelivered(&user, id, deliveries, "max_deliveries");
            }
            StoreEvent::Expired {
                user,
                id,
                deliveries,
            } => self.undelivered(&user, id, deliveries, "expired"),
            StoreEvent::Dropped {
                user,
                id,
                deliveries,
            } => self.undelivered(&user, id, deliveries, "dropped"),
        }
    }

    /// As `user`'s owner: what the user's inbox holds, for the control
    /// API; with [`InboxAction::Purge`], every pending push is removed
    /// (the removals are written in the next group commit). A shard
    /// without a store reports an empty inbox.
    pub(super) fn inbox_report(&mut self, user: &str, action: InboxAction) -> InboxReport {
        let Some(d) = &mut self.durable else {
            return InboxReport::default();
        };
        let mut report = InboxReport {
            pending: d.store.pending_count(user) as u64,
            bytes: d.store.pending_bytes(user),
            ..InboxReport::default()
        };
        match action {
            InboxAction::Count => {}
            InboxAction::List(limit) => {
                report.pushes = d
                    .store
                    .pending(user)
                    .take(limit as usize)
                    .map(|p| InboxEntry {
                        id: p.id,
                        deliveries: p.deliveries,
                        in_flight: p.in_flight,
                        expires_unix_ms: p.expires_unix_ms,
                        bytes: p.bytes,
                    })
                    .collect();
            }
            InboxAction::Purge => {
                report.purged = d.store.purge(user) as u64;
                // Payloads read back for the purged pushes, and reads still
                // out, are of no use now.
                d.loaded.remove(user);
                d.loading.remove(user);
                tracing::info!(
                    shard = self.index,
                    user,
                    purged = report.purged,
                    "inbox purged through the control API"
                );
            }
        }
        report
    }

    /// Reports a push that left `user`'s inbox unacked to the events
    /// backend (an `undelivered` event).
    fn undelivered(&mut self, user: &str, id: u64, deliveries: u16, reason: &'static str) {
        let u = Undelivered {
            user: user.to_owned(),
            id,
            deliveries,
            reason,
        };
        self.actions
            .push(Action::Backend(Box::new(BackendCall::Undelivered(u))));
    }

    /// Sends `user`'s pending pushes to the user's sessions, oldest first,
    /// while fewer than [`IN_FLIGHT_WINDOW`] await their Acks. A payload
    /// not in RAM is read back first; nothing after it goes out before it,
    /// so the inbox keeps its order. `fresh` is a push that just became
    /// durable (its payload at hand, its count due to `receipt`): if it
    /// does not go out now, its count is planned as 0.
    fn pump(&mut self, now: Millis, user: &str, mut fresh: Option<Fresh>) {
        let t = self.time(now);
        let online = self.router.has_sessions(user);

        let mut sends: Vec<(Arc<PushJob>, Option<Receipt>)> = Vec::new();
        if let Some(d) = &mut self.durable
            && online
        {
            let mut in_flight = d.store.pending(user).filter(|p| p.in_flight).count();
            let waiting: Vec<u64> = d
                .store
                .pending(user)
                .filter(|p| !p.in_flight)
                .map(|p| p.id)
                .take(IN_FLIGHT_WINDOW)
                .collect();
            let mut blocked = false;
            for id in waiting {
                if in_flight >= IN_FLIGHT_WINDOW {
                    break;
                }
                if blocked {
                    // Read ahead what follows the push being read back.
                    request_load(d, user, id);
                    in_flight += 1;
                    continue;
                }
                let at_hand = match &fresh {
                    Some((fid, job, _)) if *fid == id => Some(job.frame.clone()),
                    _ => take_loaded(&mut d.loaded, user, id),
                };
                let Some(payload) = at_hand else {
                    blocked = true;
                    request_load(d, user, id);
                    in_flight += 1;
                    continue;
                };
                match d.store.on_delivered(t, user, id) {
                    Delivery::Send { deliveries } => {
                        in_flight += 1;
                        let receipt = match &fresh {
                            Some((fid, _, r)) if *fid == id => {
                                let r = *r;
                                fresh = None;
                                r
                            }
                            _ => None,
                        };
                        if let Some(job) =
                            redelivery_job(&payload, deliveries, self.settings.server.max_frame)
                        {
                            sends.push((job, receipt));
                        }
                    }
                    Delivery::DeadLettered | Delivery::Expired | Delivery::Unknown => {}
                }
            }
            if d.loading.get(user).is_some_and(Vec::is_empty) {
                d.loading.remove(user);
            }
        }
        for (job, receipt) in sends {
            self.routing(|router, out| {
                router.handle(Message::PushToUser(user.into(), job, None, receipt), out);
            });
        }
        if let Some((_, _, Some(r))) = fresh {
            self.send_to(usize::from(r.reply_to.shard), Message::PushPlan(r, 0));
        }
        self.store_events(now);
    }
}

/// The job that sends a stored push's frame for delivery number
/// `deliveries`: the frame as stored for the first, with its redelivery
/// flag set after that. `None` if the stored bytes are not a push frame.
fn redelivery_job(payload: &Bytes, deliveries: u16, max_frame: u32) -> Option<Arc<PushJob>> {
    let Ok(Some((frame, _))) = decode_frame(payload, max_frame) else {
        return None;
    };
    let Some(Kind::Push(mut push)) = frame.kind else {
        return None;
    };
    let frame = if deliveries > 1 {
        push.redelivery = true;
        encode_shared(&protocol::codec::frame(Kind::Push(push.clone())))
    } else {
        payload.clone()
    };
    Some(Arc::new(PushJob {
        id: push.id,
        frame,
        frames: 1,
        app: push.app.into(),
        rate: 0,
        accepted_us: push.ts_us,
        ttl_ms: 0,
    }))
}

fn take_loaded(
    loaded: &mut HashMap<Arc<str>, Vec<(u64, Bytes)>>,
    user: &str,
    id: u64,
) -> Option<Bytes> {
    let list = loaded.get_mut(user)?;
    let i = list.iter().position(|(x, _)| *x == id)?;
    let (_, bytes) = list.swap_remove(i);
    if list.is_empty() {
        loaded.remove(user);
    }
    Some(bytes)
}

/// Asks the store for `user`'s push `id` unless it is read back or being
/// read already.
fn request_load(d: &mut Durable, user: &str, id: u64) {
    if d.loaded
        .get(user)
        .is_some_and(|l| l.iter().any(|(x, _)| *x == id))
    {
        return;
    }
    let loading = d.loading.entry(Arc::from(user)).or_default();
    if !loading.contains(&id) && d.store.load(user, id) {
        loading.push(id);
    }
}

/// Notes that `user`'s push `id` is read back; whether it was awaited (a
/// purge forgets the reads it makes useless).
fn take_loading(loading: &mut HashMap<Arc<str>, Vec<u64>>, user: &str, id: u64) -> bool {
    let Some(list) = loading.get_mut(user) else {
        return false;
    };
    let before = list.len();
    list.retain(|x| *x != id);
    let awaited = list.len() < before;
    if list.is_empty() {
        loading.remove(user);
    }
    awaited
}
