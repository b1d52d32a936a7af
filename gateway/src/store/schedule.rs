//! The store's time: Ack deadlines (monotonic, in RAM only) and TTLs
//! (wall clock, persisted in the records so they survive restarts). The
//! caller asks [`StoreCore::next_deadline`] and calls
//! [`StoreCore::on_tick`] when it comes.

use protocol::time::Millis;

use super::api::StoreEvent;
use super::inbox::IN_FLIGHT;
use super::store_core::StoreCore;
use crate::time::Time;

/// Most pushes one tick expires or times out; the rest wait for the next
/// tick (which is due at once), so one tick's work stays bounded.
const TICK_BUDGET: usize = 4096;

impl StoreCore {
    /// Acts on what is due at `now`: a push whose Ack wait ended is
    /// dead-lettered if it had `max_deliveries`, else reported for
    /// redelivery ([`StoreEvent::Redeliver`]); pushes past their TTL are
    /// expired. Then compaction gets its turn.
    pub fn on_tick(&mut self, now: Time) {
        let mut budget = TICK_BUDGET;
        while budget > 0 {
            let Some((user, id)) = self.acks.take_due(now.now) else {
                break;
            };
            budget -= 1;
            let max = self.settings.max_deliveries;
            let Some(entry) = self.inboxes.entry_mut(&user, id) else {
                continue;
            };
            entry.flags &= !IN_FLIGHT;
            let deliveries = entry.deliveries;
            if deliveries >= max {
                self.dead_letter(&user, id);
            } else {
                self.events.push(StoreEvent::Redeliver {
                    user,
                    id,
                    deliveries,
                });
            }
        }
        while budget > 0 {
            let Some(user) = self.inboxes.take_due(now.unix_ms) else {
                break;
            };
            for id in self.inboxes.expired(&user, now.unix_ms) {
                budget = budget.saturating_sub(1);
                self.expire(&user, id);
            }
            self.inboxes.reindex(&user);
        }
        self.compact();
    }

    /// When [`StoreCore::on_tick`] must be called next, on the monotonic
    /// clock of `now`: the first Ack deadline or TTL.
    pub fn next_deadline(&self, now: Time) -> Option<Millis> {
        let ack = self.acks.next();
        let ttl = self
            .inboxes
            .next_expiry()
            .map(|t| now.now.saturating_add(t.saturating_sub(now.unix_ms)));
        match (ack, ttl) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }
}
