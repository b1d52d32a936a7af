//! Small per-shard interners: device labels and app names are few and
//! repeated across many sessions, so a session keeps a number, not a string.
//!
//! Names come from clients, so an interner holds a name only while some
//! session refers to it: each session acquires the ids it keeps and
//! releases them when its slot is freed. No client input outlives the
//! sessions that sent it, and the table's bound is a bound on what is live
//! at once, not on everything ever seen.

use std::collections::HashMap;
use std::rc::Rc;

/// Interns up to `max` distinct names at a time, reference-counted.
#[derive(Debug)]
pub struct Interner {
    /// Name to id; shares its string with `slots` (one copy per name).
    ids: HashMap<Rc<str>, u32>,
    /// By id: the name and how many holders it has; `None` when free.
    slots: Vec<Option<(Rc<str>, u32)>>,
    /// Ids of free slots, reused before the table grows.
    free: Vec<u32>,
    max: usize,
}

impl Interner {
    /// An interner of at most `max` names at a time.
    pub fn new(max: usize) -> Self {
        Self {
            ids: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            max,
        }
    }

    /// The id of `name`, taking one reference to it (interning it if there
    /// is room); `None` when `max` other names are held.
    pub fn acquire(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(name) {
            if let Some(Some((_, refs))) = self.slots.get_mut(id as usize) {
                *refs += 1;
            }
            return Some(id);
        }
        if self.ids.len() >= self.max {
            return None;
        }
        let name: Rc<str> = name.into();
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).ok()?
            }
        };
        self.slots[id as usize] = Some((name.clone(), 1));
        self.ids.insert(name, id);
        Some(id)
    }

    /// Drops one reference to `id`; the name is forgotten with its last one.
    pub fn release(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        let Some((name, refs)) = slot else {
            return;
        };
        *refs -= 1;
        if *refs == 0 {
            self.ids.remove(&**name);
            *slot = None;
            self.free.push(id);
        }
    }

    /// The id of `name` if it is held.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name of `id` ("" if not held).
    pub fn name(&self, id: u32) -> &str {
        match self.slots.get(id as usize) {
            Some(Some((name, _))) => name,
            _ => "",
        }
    }

    /// Names held now.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Most distinct device labels a shard holds at a time: a session keeps
/// its label's id + 1 in a `u16` (0: no label).
pub const MAX_DEVICE_LABELS: usize = u16::MAX as usize;

/// Takes a reference to device label `label` for a session; returns what
/// the session keeps: the label's id + 1, or 0 for no label (an empty one,
/// or a full table: the label is informational, so it is then not kept).
pub fn acquire_device(labels: &mut Interner, label: &str) -> u16 {
    if label.is_empty() {
        return 0;
    }
    let Some(id) = labels.acquire(label) else {
        return 0;
    };
    match u16::try_from(id + 1) {
        Ok(kept) => kept,
        Err(_) => {
            labels.release(id);
            0
        }
    }
}

/// Releases what [`acquire_device`] returned.
pub fn release_device(labels: &mut Interner, kept: u16) {
    if kept > 0 {
        labels.release(u32::from(kept) - 1);
    }
}

/// The label a session keeps as `kept` ("" for none).
pub fn device_name(labels: &Interner, kept: u16) -> &str {
    if kept == 0 {
        ""
    } else {
        labels.name(u32::from(kept) - 1)
    }
}

/// Most distinct apps a shard tells apart at a time (one bit each in a
/// session's mask).
pub const MAX_APPS: usize = 64;

/// The app set of a session as a bit mask over the shard's app interner,
/// taking one reference per distinct app; `None` (and nothing taken) when
/// the shard already holds [`MAX_APPS`] other app names.
pub fn acquire_apps(apps: &mut Interner, names: &[String]) -> Option<u64> {
    let mut mask = 0u64;
    for name in names {
        if apps.id(name).is_some_and(|id| mask & (1u64 << id) != 0) {
            continue; // named twice in one Hello: one reference
        }
        match apps.acquire(name) {
            Some(id) => mask |= 1u64 << id,
            None => {
                release_apps(apps, mask);
                return None;
            }
        }
    }
    Some(mask)
}

/// Releases the references a session's app mask holds.
pub fn release_apps(apps: &mut Interner, mask: u64) {
    for id in 0..MAX_APPS as u32 {
        if mask & (1u64 << id) != 0 {
            apps.release(id);
        }
    }
}

/// The app names in `mask`.
pub fn app_names(apps: &Interner, mask: u64) -> Vec<String> {
    (0..MAX_APPS as u32)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| apps.name(i).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_up_to_its_limit_of_live_names() {
        let mut i = Interner::new(2);
        assert_eq!(i.acquire("a"), Some(0));
        assert_eq!(i.acquire("b"), Some(1));
        assert_eq!(i.acquire("a"), Some(0));
        assert_eq!(i.acquire("c"), None);
        assert_eq!(i.name(1), "b");
        assert_eq!(i.id("c"), None);
        // "b" goes with its only holder, and "c" takes its slot.
        i.release(1);
        assert_eq!(i.id("b"), None);
        assert_eq!(i.name(1), "");
        assert_eq!(i.acquire("c"), Some(1));
        // "a" has two holders: it stays until both are gone.
        i.release(0);
        assert_eq!(i.id("a"), Some(0));
        i.release(0);
        assert_eq!(i.id("a"), None);
        i.release(1);
        assert_eq!(i.len(), 0);
        assert_eq!(i.len(), 0);
        // Releasing what is not held changes nothing.
        i.release(0);
        i.release(99);
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn churn_never_grows_the_table_past_what_is_live() {
        let mut i = Interner::new(8);
        for n in 0..10_000 {
            let id = i.acquire(&format!("label-{n}")).unwrap();
            i.release(id);
        }
        assert_eq!(i.len(), 0);
        assert_eq!(i.slots.len(), 1, "one slot reused, not 10,000");
    }

    #[test]
    fn app_masks_take_and_give_back_references() {
        let mut i = Interner::new(MAX_APPS);
        let m = acquire_apps(&mut i, &["chat".into(), "feed".into(), "chat".into()]).unwrap();
        assert_eq!(m, 0b11);
        assert_eq!(app_names(&i, m), vec!["chat", "feed"]);
        let other = acquire_apps(&mut i, &["chat".into()]).unwrap();
        assert_eq!(other, 0b01);
        release_apps(&mut i, m);
        assert_eq!(i.id("chat"), Some(0), "still held by the other session");
        assert_eq!(i.id("feed"), None);
        release_apps(&mut i, other);
        assert_eq!(i.len(), 0);
        assert_eq!(acquire_apps(&mut i, &[]), Some(0));
    }

    #[test]
    fn device_labels_are_kept_as_id_plus_one() {
        let mut i = Interner::new(1);
        assert_eq!(acquire_device(&mut i, ""), 0);
        let phone = acquire_device(&mut i, "phone");
        assert_eq!(phone, 1);
        assert_eq!(device_name(&i, phone), "phone");
        assert_eq!(acquire_device(&mut i, "tablet"), 0, "table full: not kept");
        assert_eq!(device_name(&i, 0), "");
        release_device(&mut i, phone);
        release_device(&mut i, 0);
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn a_full_app_table_refuses_and_takes_nothing() {
        let mut i = Interner::new(2);
        let m = acquire_apps(&mut i, &["a".into(), "b".into()]).unwrap();
        assert_eq!(acquire_apps(&mut i, &["a".into(), "c".into()]), None);
        assert_eq!(i.len(), 2);
        release_apps(&mut i, m);
        assert_eq!(i.len(), 0, "the refused set left no reference behind");
    }
}
