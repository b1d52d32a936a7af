//! Small per-shard interners: device labels and app names are few and
//! repeated across many sessions, so a session keeps a number, not a string.

use std::collections::HashMap;

/// Interns up to `max` distinct names.
#[derive(Debug)]
pub struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    max: usize,
}

impl Interner {
    /// An interner of at most `max` names.
    pub fn new(max: usize) -> Self {
        Self {
            ids: HashMap::new(),
            names: Vec::new(),
            max,
        }
    }

    /// The id of `name`, interning it if there is room.
    pub fn intern(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= self.max {
            return None;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        Some(id)
    }

    /// The id of `name` if interned.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name of `id` ("" if unknown).
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// Most distinct apps a shard tells apart (one bit each in a session).
pub const MAX_APPS: usize = 64;

/// The app set of a session as a bit mask over the shard's app interner;
/// apps beyond [`MAX_APPS`] distinct names are not recorded.
pub fn app_mask(apps: &mut Interner, names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|a| apps.intern(a))
        .fold(0, |m, id| m | (1u64 << id))
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
    fn interns_up_to_its_limit() {
        let mut i = Interner::new(2);
        assert_eq!(i.intern("a"), Some(0));
        assert_eq!(i.intern("b"), Some(1));
        assert_eq!(i.intern("a"), Some(0));
        assert_eq!(i.intern("c"), None);
        assert_eq!(i.name(1), "b");
        assert_eq!(i.id("c"), None);
    }

    #[test]
    fn app_masks_round_trip() {
        let mut i = Interner::new(MAX_APPS);
        let m = app_mask(&mut i, &["chat".into(), "feed".into()]);
        assert_eq!(m, 0b11);
        assert_eq!(app_names(&i, m), vec!["chat", "feed"]);
        assert_eq!(app_mask(&mut i, &[]), 0);
    }
}
