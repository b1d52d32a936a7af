//! The store's RAM: per-user inboxes of compact index entries (id order),
//! an expiry index over users, and the accounting of what they cost.
//! Payloads stay on disk: an entry says where its record is.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// An entry is in flight: delivered, its Ack awaited.
pub const IN_FLIGHT: u16 = 1;

/// One stored push in RAM: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The push id.
    pub id: u64,
    /// Wall-clock ms after which the push is expired.
    pub expires_unix_ms: u64,
    /// Segment of its `Stored` record.
    pub segment: u32,
    /// Offset of the record in the segment.
    pub offset: u32,
    /// Length of the record on disk (what the byte caps count).
    pub len: u32,
    /// Deliveries so far.
    pub deliveries: u16,
    /// [`IN_FLIGHT`].
    pub flags: u16,
}

/// One user's pending pushes, in id order.
#[derive(Debug, Default)]
pub struct Inbox {
    entries: VecDeque<Entry>,
    bytes: u64,
    /// The key this inbox has in the expiry index: at most its earliest
    /// expiry (a lower bound after removals).
    expiry_key: u64,
}

impl Inbox {
    /// The entries, oldest id first.
    pub fn entries(&self) -> &VecDeque<Entry> {
        &self.entries
    }

    /// Record bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn position(&self, id: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id, |e| e.id)
    }
}

/// Every user's inbox on one shard, the expiry index, and totals.
#[derive(Debug, Default)]
pub struct Inboxes {
    users: HashMap<Arc<str>, Inbox>,
    /// (earliest expiry, user) for every inbox.
    expiries: BTreeSet<(u64, Arc<str>)>,
    pushes: u64,
    bytes: u64,
}

/// Estimated bytes of B-tree nodes per element beyond the element itself
/// (std's nodes hold 11 elements, about 2/3 full on average).
const BTREE_OVERHEAD: usize = 16;

/// What a heap block of `n` bytes costs under glibc malloc: 8 bytes of
/// header, 16-byte granules, 32 bytes at least.
pub fn heap_block(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

impl Inboxes {
    /// `user`'s inbox, if it holds anything.
    pub fn get(&self, user: &str) -> Option<&Inbox> {
        self.users.get(user)
    }

    /// The shared name of `user`, if it has an inbox.
    pub fn name(&self, user: &str) -> Option<Arc<str>> {
        self.users.get_key_value(user).map(|(k, _)| Arc::clone(k))
    }

    /// Pushes held, all users.
    pub fn pushes(&self) -> u64 {
        self.pushes
    }

    /// Record bytes held, all users.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Users with an inbox.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Every (user, inbox).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Inbox)> {
        self.users.iter()
    }

    /// Adds `entry` to `user`'s inbox in id order; `false` (and nothing
    /// changes) if that id is there already.
    pub fn insert(&mut self, user: &str, entry: Entry) -> bool {
        let name: Arc<str> = match self.users.get_key_value(user) {
            Some((k, _)) => Arc::clone(k),
            None => {
                let k: Arc<str> = Arc::from(user);
                self.users.insert(Arc::clone(&k), Inbox::default());
                k
            }
        };
        let Some(inbox) = self.users.get_mut(user) else {
            return false;
        };
        let Err(at) = inbox.position(entry.id) else {
            return false;
        };
        if inbox.entries.len() == inbox.entries.capacity() {
            // Grow by a quarter, not double: RAM per push is the budget.
            let more = (inbox.entries.len() / 4).max(1);
            inbox.entries.reserve_exact(more);
        }
        inbox.entries.insert(at, entry);
        inbox.bytes += u64::from(entry.len);
        self.pushes += 1;
        self.bytes += u64::from(entry.len);
        if inbox.expiry_key == 0 || entry.expires_unix_ms < inbox.expiry_key {
            if inbox.expiry_key != 0 {
                self.expiries.remove(&(inbox.expiry_key, Arc::clone(&name)));
            }
            inbox.expiry_key = entry.expires_unix_ms;
            self.expiries.insert((entry.expires_unix_ms, name));
        }
        true
    }

    /// The entry `id` of `user`, to change its state (not its id or size).
    pub fn entry_mut(&mut self, user: &str, id: u64) -> Option<&mut Entry> {
        let inbox = self.users.get_mut(user)?;
        let at = inbox.position(id).ok()?;
        inbox.entries.get_mut(at)
    }

    /// Removes entry `id` of `user`.
    pub fn remove(&mut self, user: &str, id: u64) -> Option<Entry> {
        let inbox = self.users.get_mut(user)?;
        let at = inbox.position(id).ok()?;
        let entry = inbox.entries.remove(at)?;
        self.forget(user, entry);
        Some(entry)
    }

    /// Removes `user`'s oldest entry (lowest id).
    pub fn pop_oldest(&mut self, user: &str) -> Option<Entry> {
        let entry = self.users.get_mut(user)?.entries.pop_front()?;
        self.forget(user, entry);
        Some(entry)
    }

    /// Totals and emptiness after `entry` left `user`'s inbox.
    fn forget(&mut self, user: &str, entry: Entry) {
        self.pushes -= 1;
        self.bytes -= u64::from(entry.len);
        let Some((name, inbox)) = self.users.get_key_value(user) else {
            return;
        };
        let (name, key, empty) = (Arc::clone(name), inbox.expiry_key, inbox.entries.is_empty());
        if empty {
            self.expiries.remove(&(key, name));
            self.users.remove(user);
            return;
        }
        if let Some(inbox) = self.users.get_mut(user) {
            inbox.bytes -= u64::from(entry.len);
            let (len, cap) = (inbox.entries.len(), inbox.entries.capacity());
            if cap > 2 * len + 4 {
                inbox.entries.shrink_to(len + len / 4);
            }
        }
    }

    /// The earliest expiry key of any inbox (wall-clock ms).
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(t, _)| *t)
    }

    /// Takes out of the expiry index the first user whose key is at or
    /// before `unix_ms`; the caller sweeps that inbox and calls
    /// [`Inboxes::reindex`].
    pub fn take_due(&mut self, unix_ms: u64) -> Option<Arc<str>> {
        let first = self.expiries.first()?;
        if first.0 > unix_ms {
            return None;
        }
        let (_, name) = self.expiries.pop_first()?;
        if let Some(inbox) = self.users.get_mut(&*name) {
            inbox.expiry_key = 0;
        }
        Some(name)
    }

    /// Puts `user` back in the expiry index under its true earliest expiry
    /// (after [`Inboxes::take_due`] and a sweep).
    pub fn reindex(&mut self, user: &str) {
        let Some((name, inbox)) = self.users.get_key_value(user) else {
            return;
        };
        let earliest = inbox.entries.iter().map(|e| e.expires_unix_ms).min();
        let (name, old) = (Arc::clone(name), inbox.expiry_key);
        let Some(earliest) = earliest else { return };
        if old != 0 {
            self.expiries.remove(&(old, Arc::clone(&name)));
        }
        self.expiries.insert((earliest, Arc::clone(&name)));
        if let Some(inbox) = self.users.get_mut(user) {
            inbox.expiry_key = earliest;
        }
    }

    /// Ids of `user`'s entries whose expiry is at or before `unix_ms`.
    pub fn expired(&self, user: &str, unix_ms: u64) -> Vec<u64> {
        self.users.get(user).map_or_else(Vec::new, |i| {
            i.entries
                .iter()
                .filter(|e| e.expires_unix_ms <= unix_ms)
                .map(|e| e.id)
                .collect()
        })
    }

    /// What these structures cost in RAM, by their own accounting: the
    /// map's table, every name and entry buffer, the expiry index.
    pub fn ram_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Arc<str>, Inbox)>() + 1;
        let buckets = if self.users.capacity() == 0 {
            0
        } else {
            (self.users.capacity() * 8 / 7).next_power_of_two()
        };
        let mut total = heap_block(buckets * slot);
        for (name, inbox) in &self.users {
            // An `Arc<str>` allocation: two counts and the bytes.
            total += heap_block(16 + name.len());
            total += heap_block(inbox.entries.capacity() * std::mem::size_of::<Entry>());
        }
        let element = std::mem::size_of::<(u64, Arc<str>)>();
        total + self.expiries.len() * (element + BTREE_OVERHEAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, expires: u64) -> Entry {
        Entry {
            id,
            expires_unix_ms: expires,
            segment: 1,
            offset: 0,
            len: 100,
            deliveries: 0,
            flags: 0,
        }
    }

    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn inboxes_keep_id_order_totals_and_expiry_keys() {
        let mut b = Inboxes::default();
        assert!(b.insert("u", entry(5, 500)));
        assert!(b.insert("u", entry(3, 300)));
        assert!(!b.insert("u", entry(3, 300)));
        assert!(b.insert("v", entry(4, 900)));
        let ids: Vec<u64> = b.get("u").unwrap().entries().iter().map(|e| e.id).collect();
        assert_eq!(ids, [3, 5]);
        assert_eq!((b.pushes(), b.bytes(), b.users()), (3, 300, 2));
        assert_eq!(b.next_expiry(), Some(300));
        assert_eq!(b.take_due(299), None);
        assert_eq!(b.take_due(300).as_deref(), Some("u"));
        assert_eq!(b.expired("u", 300), [3]);
        assert_eq!(b.remove("u", 3).map(|e| e.id), Some(3));
        b.reindex("u");
        assert_eq!(b.next_expiry(), Some(500));
        assert_eq!(b.pop_oldest("u").map(|e| e.id), Some(5));
        assert!(b.get("u").is_none(), "an empty inbox is dropped");
        assert_eq!(b.next_expiry(), Some(900));
        assert_eq!((b.pushes(), b.bytes(), b.users()), (1, 100, 1));
    }
}
