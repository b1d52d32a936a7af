//! The Ack deadlines of in-flight pushes: which (user, id) is awaited
//! until when. Only in-flight pushes are here (bounded by the sessions'
//! windows), so the index entries carry no deadline of their own.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use protocol::time::Millis;

/// In-flight pushes and their Ack deadlines (monotonic ms).
#[derive(Debug, Default)]
pub struct AckDeadlines {
    by_time: BTreeSet<(Millis, Arc<str>, u64)>,
    by_user: HashMap<Arc<str>, Vec<(u64, Millis)>>,
}

impl AckDeadlines {
    /// Awaits the Ack of `user`'s push `id` until `at` (replacing an
    /// earlier deadline of the same push).
    pub fn arm(&mut self, user: &Arc<str>, id: u64, at: Millis) {
        self.disarm(user, id);
        self.by_time.insert((at, Arc::clone(user), id));
        self.by_user
            .entry(Arc::clone(user))
            .or_default()
            .push((id, at));
    }

    /// Stops awaiting `user`'s push `id`; whether it was awaited.
    pub fn disarm(&mut self, user: &str, id: u64) -> bool {
        let Some((name, list)) = self.by_user.get_key_value(user) else {
            return false;
        };
        let Some(i) = list.iter().position(|(x, _)| *x == id) else {
            return false;
        };
        let name = Arc::clone(name);
        let at = list[i].1;
        self.by_time.remove(&(at, Arc::clone(&name), id));
        if let Some(list) = self.by_user.get_mut(user) {
            list.swap_remove(i);
            if list.is_empty() {
                self.by_user.remove(user);
            }
        }
        true
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.by_time.first().map(|(t, _, _)| *t)
    }

    /// Takes the first push whose deadline is at or before `now`.
    pub fn take_due(&mut self, now: Millis) -> Option<(Arc<str>, u64)> {
        let (at, _, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, user, id) = self.by_time.first()?.clone();
        self.disarm(&user, id);
        Some((user, id))
    }

    /// Pushes awaited.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// RAM these structures hold, estimated like the inboxes'.
    pub fn ram_bytes(&self) -> usize {
        let per = std::mem::size_of::<(Millis, Arc<str>, u64)>()
            + 16
            + std::mem::size_of::<(u64, Millis)>();
        self.len() * per
            + self.by_user.capacity() * (std::mem::size_of::<(Arc<str>, Vec<(u64, Millis)>)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fire_in_order_and_rearming_replaces() {
        let mut d = AckDeadlines::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        d.arm(&a, 1, Millis(100));
        d.arm(&b, 1, Millis(50));
        d.arm(&a, 2, Millis(70));
        d.arm(&a, 1, Millis(300));
        assert_eq!(d.len(), 3);
        assert_eq!(d.next(), Some(Millis(50)));
        assert_eq!(d.take_due(Millis(80)), Some((Arc::clone(&b), 1)));
        assert_eq!(d.take_due(Millis(80)), Some((Arc::clone(&a), 2)));
        assert_eq!(d.take_due(Millis(80)), None);
        assert!(d.disarm("a", 1));
        assert!(!d.disarm("a", 1));
        assert_eq!(d.len(), 0);
    }
}
