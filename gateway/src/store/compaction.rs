//! Reclaiming disk: the oldest segment is deleted once none of its pushes
//! is live (and whatever holds it is durable); when dead bytes dominate the
//! store, the oldest segment's live records are first copied to the active
//! segment, so one long-lived push cannot pin every segment after it.
//!
//! Only the oldest segment is ever deleted: a removal record is always in
//! the same segment as its push or a later one, so no removal is lost
//! while the push it removes is still on disk.

use super::record::Record;
use super::store_core::{ReadPurpose, ReadWant, StoreCore};

impl StoreCore {
    /// Deletes dead segments at the front; starts a rewrite if garbage
    /// dominates.
    pub(super) fn compact(&mut self) {
        while self.log.remove_dead_front().is_some() {
            self.stats.segments_removed += 1;
        }
        self.maybe_rewrite();
    }

    /// Copies the oldest segment's live records forward when the store's
    /// disk is more than twice its live bytes plus two segments.
    fn maybe_rewrite(&mut self) {
        if self.rewrite.is_some() || self.rewrite_broken || self.log.failure().is_some() {
            return;
        }
        let segments = self.log.segments();
        let Some(front) = segments.front() else {
            return;
        };
        if segments.len() < 3 || front.live_pushes == 0 {
            return;
        }
        let slack = 2 * u64::from(self.settings.segment_bytes);
        if self.log.disk_bytes() <= 2 * self.inboxes.bytes() + slack {
            return;
        }
        let seq = front.seq;
        let wanted: Vec<_> = self
            .inboxes
            .iter()
            .flat_map(|(user, inbox)| {
                inbox
                    .entries()
                    .iter()
                    .filter(|e| e.segment == seq)
                    .map(|e| (std::sync::Arc::clone(user), *e))
            })
            .collect();
        self.rewrite = Some((seq, wanted.len()));
        for (user, entry) in wanted {
            self.read(user, entry, ReadPurpose::Rewrite);
        }
    }

    /// A record compaction asked for was read: if its push is still live
    /// where it was, it is appended again (same id, same count) and the
    /// old segment is held until the copy is durable.
    pub(super) fn on_rewrite_read(&mut self, want: &ReadWant, bytes: Result<Vec<u8>, String>) {
        let finished = match &mut self.rewrite {
            Some((_, outstanding)) => {
                *outstanding = outstanding.saturating_sub(1);
                *outstanding == 0
            }
            None => false,
        };
        if finished {
            self.rewrite = None;
        }
        let still_there = self
            .inboxes
            .get(&want.user)
            .and_then(|i| {
                let at = i.entries().binary_search_by_key(&want.id, |e| e.id).ok()?;
                i.entries().get(at).copied()
            })
            .filter(|e| e.segment == want.segment && e.offset == want.offset);
        let Some(entry) = still_there else {
            return;
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(_) => {
                self.stats.read_errors += 1;
                self.rewrite_broken = true;
                return;
            }
        };
        let Ok((
            Record::Stored {
                id,
                stored_unix_ms,
                expires_unix_ms,
                user,
                payload,
                ..
            },
            _,
        )) = Record::decode(&bytes)
        else {
            self.stats.read_errors += 1;
            self.rewrite_broken = true;
            return;
        };
        if id != want.id || user != &*want.user {
            self.stats.read_errors += 1;
            self.rewrite_broken = true;
            return;
        }
        let copy = Record::Stored {
            id,
            stored_unix_ms,
            expires_unix_ms,
            deliveries: entry.deliveries,
            user,
            payload,
        };
        let Ok((location, ticket)) = self.log.append(&copy) else {
            return;
        };
        if let Some(e) = self.inboxes.entry_mut(&want.user, want.id) {
            e.segment = location.segment;
            e.offset = location.offset;
        }
        self.log.drop_live(want.segment, entry.len);
        self.log.add_live(location.segment, location.len);
        self.log.hold(want.segment, ticket);
        self.stats.rewritten += 1;
    }
}
