//! [`StoreCore`]: one shard's durable store, sans-IO. Appends, deliveries,
//! Acks and purges change the index in RAM at once and queue records for
//! the log; the executor's completions come back through
//! [`StoreCore::on_op_done`]; time goes in with [`StoreCore::on_tick`]
//! (`schedule.rs`); segments are reclaimed in `compaction.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tuning::config::{MAX_TTL_MS, OverflowPolicy};

use super::api::{Appended, Delivery, NewPush, PendingPush, StoreEvent, StoreStats};
use super::error::AppendError;
use super::inbox::{Entry, IN_FLIGHT, Inboxes};
use super::log::{Completion, Log, SegmentInfo};
use super::ops::{OpDone, OpId, StoreOp, StoreOpKind, Ticket};
use super::record::{MAX_RECORD_LEN, MAX_USER_LEN, Record, RemoveReason};
use super::redelivery::AckDeadlines;
use super::settings::StoreSettings;
use crate::time::Time;

/// Why a record is being read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadPurpose {
    /// For the caller: a [`StoreEvent::Loaded`].
    Deliver,
    /// For compaction: copy it to the active segment.
    Rewrite,
}

/// A read in flight.
#[derive(Debug, Clone)]
pub(super) struct ReadWant {
    pub user: Arc<str>,
    pub id: u64,
    pub segment: u32,
    pub offset: u32,
    pub purpose: ReadPurpose,
}

/// One shard's durable store: per-user inboxes of index entries in RAM,
/// payloads in an append-only segmented log on disk, Ack deadlines, TTLs.
/// It performs no I/O and reads no clock (see the module `ops`).
#[derive(Debug)]
pub struct StoreCore {
    pub(super) settings: StoreSettings,
    pub(super) log: Log,
    pub(super) inboxes: Inboxes,
    pub(super) acks: AckDeadlines,
    pub(super) reads: HashMap<OpId, ReadWant>,
    /// Reads of records not yet handed to the executor: queued after the
    /// commit that writes them.
    pub(super) deferred_reads: Vec<(Entry, ReadWant)>,
    pub(super) events: Vec<StoreEvent>,
    pub(super) stats: StoreStats,
    /// The segment compaction is copying, and its reads outstanding.
    pub(super) rewrite: Option<(u32, usize)>,
    /// Compaction stopped after a failed read (counted; no retry loop).
    pub(super) rewrite_broken: bool,
}

impl StoreCore {
    /// An empty store (a new directory). A store with files comes from
    /// [`super::Recovery`].
    pub fn new(settings: StoreSettings) -> Self {
        Self::from_parts(settings, Inboxes::default(), VecDeque::new(), 0)
    }

    /// A store over recovered state: appends go to a new segment after
    /// the last of `segments`, which starts with the id floor.
    pub(super) fn from_parts(
        settings: StoreSettings,
        inboxes: Inboxes,
        segments: VecDeque<SegmentInfo>,
        floor: u64,
    ) -> Self {
        let log = Log::new(settings.durability, settings.segment_bytes, segments, floor);
        Self {
            settings,
            log,
            inboxes,
            acks: AckDeadlines::default(),
            reads: HashMap::new(),
            deferred_reads: Vec::new(),
            events: Vec::new(),
            stats: StoreStats::default(),
            rewrite: None,
            rewrite_broken: false,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Stores `push` in its user's inbox. The index changes now; the push
    /// is durable once [`StoreEvent::Committed`] reaches the ticket. Over
    /// the user's caps the policy applies (reject: [`AppendError::InboxFull`];
    /// drop-oldest: the oldest go, each a [`StoreEvent::Dropped`]); over
    /// the whole store's caps it is refused.
    pub fn append(&mut self, now: Time, push: NewPush<'_>) -> Result<Appended, AppendError> {
        if let Some(f) = self.log.failure() {
            return Err(AppendError::Failed(f.clone()));
        }
        let ttl = push
            .ttl_ms
            .filter(|t| *t > 0)
            .unwrap_or(self.settings.ttl_ms)
            .min(MAX_TTL_MS);
        let record = Record::Stored {
            id: push.id,
            stored_unix_ms: now.unix_ms,
            expires_unix_ms: now.unix_ms.saturating_add(ttl),
            deliveries: 0,
            user: push.user,
            payload: push.payload,
        };
        let size = record.encoded_len();
        if push.user.len() > MAX_USER_LEN || size > MAX_RECORD_LEN as usize {
            return Err(AppendError::TooLarge(size));
        }
        let size = size as u64;
        let inbox = self.inboxes.get(push.user);
        if inbox.is_some_and(|i| i.entries().binary_search_by_key(&push.id, |e| e.id).is_ok()) {
            return Err(AppendError::Duplicate(push.id));
        }
        let (count, bytes) = inbox.map_or((0, 0), |i| (i.entries().len() as u64, i.bytes()));
        let s = &self.settings;
        // What must go for the new push to fit the user's caps.
        let (mut drop_n, mut drop_bytes) = (0u64, 0u64);
        if size > s.user_max_bytes {
            self.stats.rejected_inbox_full += 1;
            return Err(AppendError::InboxFull);
        }
        let fits = |n: u64, b: u64| {
            count - n < u64::from(s.user_max_pushes) && bytes - b + size <= s.user_max_bytes
        };
        if !fits(0, 0) {
            if s.overflow == OverflowPolicy::Reject {
                self.stats.rejected_inbox_full += 1;
                return Err(AppendError::InboxFull);
            }
            for e in inbox.map(|i| i.entries().iter()).into_iter().flatten() {
                if fits(drop_n, drop_bytes) {
                    break;
                }
                drop_n += 1;
                drop_bytes += u64::from(e.len);
            }
        }
        let store_pushes = self.inboxes.pushes() - drop_n;
        let store_bytes = self.inboxes.bytes() - drop_bytes;
        if store_pushes >= s.max_pushes || store_bytes + size > s.max_bytes {
            self.stats.rejected_store_full += 1;
            return Err(AppendError::StoreFull);
        }
        for _ in 0..drop_n {
            self.drop_oldest(push.user);
        }
        let (location, ticket) = self.log.append(&record).map_err(AppendError::Failed)?;
        let entry = Entry {
            id: push.id,
            expires_unix_ms: now.unix_ms.saturating_add(ttl),
            segment: location.segment,
            offset: location.offset,
            len: location.len,
            deliveries: 0,
            flags: 0,
        };
        self.inboxes.insert(push.user, entry);
        self.log.add_live(location.segment, location.len);
        self.stats.stored += 1;
        Ok(Appended {
            ticket,
            dropped: u32::try_from(drop_n).unwrap_or(u32::MAX),
        })
    }

    fn drop_oldest(&mut self, user: &str) {
        let Some(name) = self.inboxes.name(user) else {
            return;
        };
        let Some(entry) = self.inboxes.pop_oldest(user) else {
            return;
        };
        self.forget(&name, entry);
        self.write(&Record::Removed {
            id: entry.id,
            reason: RemoveReason::DroppedOldest,
            user,
        });
        self.stats.dropped_oldest += 1;
        self.events.push(StoreEvent::Dropped {
            user: name,
            id: entry.id,
            deliveries: entry.deliveries,
        });
    }

    /// What follows an entry's removal from its inbox, whatever the cause.
    pub(super) fn forget(&mut self, user: &str, entry: Entry) {
        self.acks.disarm(user, entry.id);
        self.log.drop_live(entry.segment, entry.len);
    }

    /// Queues a record whose durability nobody waits for (removals,
    /// delivery counts). After a failure the store writes nothing more;
    /// the failure was reported.
    pub(super) fn write(&mut self, record: &Record<'_>) {
        let _ = self.log.append(record);
    }

    /// The caller is about to send `user`'s push `id` to a session: counts
    /// the delivery (persisted) and awaits its Ack for `ack_wait_ms`. A push
    /// that had `max_deliveries` is dead-lettered instead, one past its TTL
    /// expired: neither is sent.
    pub fn on_delivered(&mut self, now: Time, user: &str, id: u64) -> Delivery {
        let max = self.settings.max_deliveries;
        let Some(entry) = self.inboxes.entry_mut(user, id) else {
            return Delivery::Unknown;
        };
        if entry.expires_unix_ms <= now.unix_ms {
            self.expire(user, id);
            return Delivery::Expired;
        }
        if entry.deliveries >= max {
            self.dead_letter(user, id);
            return Delivery::DeadLettered;
        }
        entry.deliveries += 1;
        entry.flags |= IN_FLIGHT;
        let deliveries = entry.deliveries;
        self.write(&Record::Delivered {
            id,
            deliveries,
            user,
        });
        if let Some(name) = self.inboxes.name(user) {
            let at = now
                .now
                .saturating_add(self.settings.ack_wait_ms(deliveries));
            self.acks.arm(&name, id, at);
        }
        self.stats.delivered += 1;
        if deliveries > 1 {
            self.stats.redelivered += 1;
        }
        Delivery::Send { deliveries }
    }

    /// A session of `user` acked `id`: the push is removed (consumed once
    /// per user, whichever session acks). Whether it was pending.
    pub fn ack(&mut self, user: &str, id: u64) -> bool {
        let Some(entry) = self.inboxes.remove(user, id) else {
            return false;
        };
        self.forget(user, entry);
        self.write(&Record::Removed {
            id,
            reason: RemoveReason::Acked,
            user,
        });
        self.stats.acked += 1;
        true
    }

    /// A new session of `user` is up: the pushes in flight to the earlier
    /// ones stop awaiting their Acks, so they go out again now (to the new
    /// session) instead of at their deadlines. How many.
    pub fn release_in_flight(&mut self, user: &str) -> usize {
        let ids: Vec<u64> = self
            .pending(user)
            .filter(|p| p.in_flight)
            .map(|p| p.id)
            .collect();
        for &id in &ids {
            self.acks.disarm(user, id);
            if let Some(e) = self.inboxes.entry_mut(user, id) {
                e.flags &= !IN_FLIGHT;
            }
        }
        ids.len()
    }

    /// Removes every pending push of `user` (the control API's DELETE);
    /// how many.
    pub fn purge(&mut self, user: &str) -> usize {
        let mut n = 0;
        while let Some(entry) = self.inboxes.pop_oldest(user) {
            self.forget(user, entry);
            self.write(&Record::Removed {
                id: entry.id,
                reason: RemoveReason::Purged,
                user,
            });
            n += 1;
        }
        self.stats.purged += n as u64;
        n
    }

    /// Removes `user`'s push `id` as dead-lettered and reports it.
    pub(super) fn dead_letter(&mut self, user: &str, id: u64) {
        let (Some(name), Some(entry)) = (self.inboxes.name(user), self.inboxes.remove(user, id))
        else {
            return;
        };
        self.forget(user, entry);
        self.write(&Record::DeadLettered { id, user });
        self.stats.dead_lettered += 1;
        self.events.push(StoreEvent::DeadLettered {
            user: name,
            id,
            deliveries: entry.deliveries,
        });
    }

    /// Removes `user`'s push `id` as expired and reports it.
    pub(super) fn expire(&mut self, user: &str, id: u64) {
        let (Some(name), Some(entry)) = (self.inboxes.name(user), self.inboxes.remove(user, id))
        else {
            return;
        };
        self.forget(user, entry);
        self.write(&Record::Expired { id, user });
        self.stats.expired += 1;
        self.events.push(StoreEvent::Expired {
            user: name,
            id,
            deliveries: entry.deliveries,
        });
    }

    /// `user`'s pending pushes in id order (what a new session gets first,
    /// before the user's later pushes).
    pub fn pending(&self, user: &str) -> impl Iterator<Item = PendingPush> + '_ {
        self.inboxes
            .get(user)
            .map(|i| i.entries().iter())
            .into_iter()
            .flatten()
            .map(|e| PendingPush {
                id: e.id,
                deliveries: e.deliveries,
                in_flight: e.flags & IN_FLIGHT != 0,
                expires_unix_ms: e.expires_unix_ms,
                bytes: e.len,
            })
    }

    /// How many pushes `user` has pending.
    pub fn pending_count(&self, user: &str) -> usize {
        self.inboxes.get(user).map_or(0, |i| i.entries().len())
    }

    /// The bytes on disk of `user`'s pending pushes (what the byte caps
    /// count).
    pub fn pending_bytes(&self, user: &str) -> u64 {
        self.inboxes.get(user).map_or(0, |i| i.bytes())
    }

    /// Asks for the payload of `user`'s push `id` from disk; it comes as a
    /// [`StoreEvent::Loaded`] (or `LoadFailed`). `false` if no such push.
    pub fn load(&mut self, user: &str, id: u64) -> bool {
        let Some(inbox) = self.inboxes.get(user) else {
            return false;
        };
        let Ok(i) = inbox.entries().binary_search_by_key(&id, |e| e.id) else {
            return false;
        };
        let e = inbox.entries()[i];
        let Some(name) = self.inboxes.name(user) else {
            return false;
        };
        self.read(name, e, ReadPurpose::Deliver);
        true
    }

    /// Queues a read of entry `e`'s record (after the write of it, if that
    /// is still to be submitted).
    pub(super) fn read(&mut self, user: Arc<str>, e: Entry, purpose: ReadPurpose) {
        let want = ReadWant {
            user,
            id: e.id,
            segment: e.segment,
            offset: e.offset,
            purpose,
        };
        if self
            .log
            .submitted(e.segment, u64::from(e.offset) + u64::from(e.len))
        {
            self.queue_read(e, want);
        } else {
            self.deferred_reads.push((e, want));
        }
    }

    fn queue_read(&mut self, e: Entry, want: ReadWant) {
        let op = self.log.push_op(StoreOpKind::Read {
            segment: e.segment,
            offset: u64::from(e.offset),
            len: e.len,
        });
        self.reads.insert(op, want);
    }

    /// Reserves the next `count` push ids durably: a high-water record
    /// above every id this store has seen or reserved. The ids are
    /// `first..=last`, usable once [`StoreEvent::Committed`] reaches the
    /// ticket; after a restart [`StoreCore::id_floor`] is at least `last`.
    pub fn reserve_ids(&mut self, count: u64) -> Result<(u64, u64, Ticket), AppendError> {
        let first = self.log.floor().saturating_add(1);
        let last = self.log.floor().saturating_add(count.max(1));
        let (_, ticket) = self
            .log
            .append(&Record::HighWater { mark: last })
            .map_err(AppendError::Failed)?;
        Ok((first, last, ticket))
    }

    /// Every push id up to this may have been used (stored or reserved,
    /// before a restart too): the gateway's id source starts above it.
    pub fn id_floor(&self) -> u64 {
        self.log.floor()
    }

    /// Starts a group commit if none is in flight, then moves every queued
    /// op to `into`, in the order the executor must perform them. Call it
    /// once per turn, after the turn's appends.
    pub fn take_ops(&mut self, now: Time, into: &mut Vec<StoreOp>) {
        self.log.start_commit(now.now);
        if !self.deferred_reads.is_empty() {
            for (e, want) in std::mem::take(&mut self.deferred_reads) {
                self.read(Arc::clone(&want.user), e, want.purpose);
            }
        }
        self.log.take_ops(into);
    }

    /// The executor finished op `id`.
    pub fn on_op_done(&mut self, now: Time, id: OpId, done: OpDone) {
        match self.log.on_done(now.now, id, &done) {
            Completion::Committed { through, took_ms } => {
                self.stats.commits += 1;
                self.stats.commit_ms_total += took_ms;
                self.stats.commit_ms_max = self.stats.commit_ms_max.max(took_ms);
                self.events.push(StoreEvent::Committed { through });
                self.compact();
            }
            Completion::Failed(f) => self.events.push(StoreEvent::Failed(f)),
            Completion::Pending => {}
            Completion::NotMine => {
                if let Some(want) = self.reads.remove(&id) {
                    self.on_read(want, done);
                }
            }
        }
    }

    fn on_read(&mut self, want: ReadWant, done: OpDone) {
        let bytes = match done {
            OpDone::Read(bytes) => Ok(bytes),
            OpDone::Failed(e) => Err(e.to_string()),
            OpDone::Done => Err("a read returned no bytes".to_string()),
        };
        if want.purpose == ReadPurpose::Rewrite {
            self.on_rewrite_read(&want, bytes);
            return;
        }
        let loaded = bytes.and_then(|b| match Record::decode(&b) {
            Ok((
                Record::Stored {
                    id,
                    user,
                    payload,
                    stored_unix_ms,
                    ..
                },
                _,
            )) if id == want.id && user == &*want.user => Ok((stored_unix_ms, payload.to_vec())),
            Ok(_) => Err("the record read back is another one".to_string()),
            Err(flaw) => Err(flaw.to_string()),
        });
        let deliveries = self
            .inboxes
            .entry_mut(&want.user, want.id)
            .map(|e| e.deliveries);
        match (loaded, deliveries) {
            // Acked meanwhile: nothing to hand back.
            (_, None) => {}
            (Ok((stored_unix_ms, payload)), Some(deliveries)) => {
                self.events.push(StoreEvent::Loaded {
                    user: want.user,
                    id: want.id,
                    deliveries,
                    stored_unix_ms,
                    payload,
                });
            }
            (Err(why), Some(_)) => {
                self.stats.read_errors += 1;
                self.events.push(StoreEvent::LoadFailed {
                    user: want.user,
                    id: want.id,
                    why,
                });
            }
        }
    }

    /// Moves the events since the last call to `into`, in order.
    pub fn take_events(&mut self, into: &mut Vec<StoreEvent>) {
        into.append(&mut self.events);
    }

    /// Whether appends or ops wait for the executor (a flush on shutdown
    /// waits until this is false).
    pub fn busy(&self) -> bool {
        self.log.busy() || !self.reads.is_empty() || !self.deferred_reads.is_empty()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            pushes: self.inboxes.pushes(),
            bytes: self.inboxes.bytes(),
            users: self.inboxes.users() as u64,
            in_flight: self.acks.len() as u64,
            disk_bytes: self.log.disk_bytes(),
            segments: self.log.segments().len() as u64,
            ram_bytes: self.ram_bytes() as u64,
            ..self.stats
        }
    }

    /// RAM the index holds, by the structures' own accounting (inboxes,
    /// names, expiry index, Ack deadlines, segment table).
    pub fn ram_bytes(&self) -> usize {
        self.inboxes.ram_bytes()
            + self.acks.ram_bytes()
            + self.log.segments().capacity() * std::mem::size_of::<SegmentInfo>()
    }
}
