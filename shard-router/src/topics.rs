//! Topic indexes. Each shard keeps its own topic → local subscribers
//! ([`LocalTopics`]); each topic's owner shard keeps which shards have
//! subscribers ([`TopicShards`]), so a multicast visits only those shards.

use std::collections::{HashMap, HashSet};

/// Shard-local topic id (an index into [`LocalTopics`]).
pub type TopicId = u32;

#[derive(Debug, Default)]
struct Topic {
    name: Box<str>,
    subscribers: HashSet<u32>,
}

/// One shard's topics and their local subscribers (by session key).
#[derive(Debug, Default)]
pub struct LocalTopics {
    ids: HashMap<Box<str>, TopicId>,
    topics: Vec<Option<Topic>>,
    free: Vec<TopicId>,
}

/// What a subscription changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// The topic's local id (kept by the session to unsubscribe later).
    pub id: TopicId,
    /// This is the shard's first subscriber: tell the topic's owner.
    pub first_on_shard: bool,
    /// The session was not subscribed yet.
    pub added: bool,
}

impl LocalTopics {
    /// Subscribes session `key` to `name`.
    pub fn subscribe(&mut self, name: &str, key: u32) -> Subscribed {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let topic = Topic {
                    name: name.into(),
                    subscribers: HashSet::new(),
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.topics[id as usize] = Some(topic);
                        id
                    }
                    None => {
                        self.topics.push(Some(topic));
                        (self.topics.len() - 1) as TopicId
                    }
                };
                self.ids.insert(name.into(), id);
                id
            }
        };
        let Some(Some(topic)) = self.topics.get_mut(id as usize) else {
            return Subscribed {
                id,
                first_on_shard: false,
                added: false,
            };
        };
        let first_on_shard = topic.subscribers.is_empty();
        let added = topic.subscribers.insert(key);
        Subscribed {
            id,
            first_on_shard,
            added,
        }
    }

    /// Unsubscribes session `key` from topic `id`; returns the topic's name
    /// when this was the shard's last subscriber (tell the owner).
    pub fn unsubscribe(&mut self, id: TopicId, key: u32) -> Option<Box<str>> {
        let slot = self.topics.get_mut(id as usize)?;
        let topic = slot.as_mut()?;
        if !topic.subscribers.remove(&key) || !topic.subscribers.is_empty() {
            return None;
        }
        let topic = slot.take()?;
        self.ids.remove(&topic.name);
        self.free.push(id);
        Some(topic.name)
    }

    /// The name of topic `id`, while anyone here subscribes to it.
    pub fn name(&self, id: TopicId) -> Option<&str> {
        self.topics.get(id as usize)?.as_ref().map(|t| &*t.name)
    }

    /// The local id of topic `name`, if anyone here subscribes to it.
    pub fn id_of(&self, name: &str) -> Option<TopicId> {
        self.ids.get(name).copied()
    }

    /// Session keys subscribed to `name` on this shard.
    pub fn subscribers(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        self.id_of(name)
            .and_then(|id| self.topics.get(id as usize)?.as_ref())
            .into_iter()
            .flat_map(|t| t.subscribers.iter().copied())
    }

    /// Number of topics with local subscribers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no topic has a local subscriber.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The topics one shard owns: which shards have subscribers of each.
#[derive(Debug, Default)]
pub struct TopicShards {
    topics: HashMap<Box<str>, Vec<u16>>,
}

impl TopicShards {
    /// Shard `shard` gained its first subscriber of `topic`.
    pub fn join(&mut self, topic: &str, shard: u16) {
        let shards = self.topics.entry(topic.into()).or_default();
        if !shards.contains(&shard) {
            shards.push(shard);
            shards.sort_unstable();
        }
    }

    /// Shard `shard` lost its last subscriber of `topic`.
    pub fn leave(&mut self, topic: &str, shard: u16) {
        if let Some(shards) = self.topics.get_mut(topic) {
            shards.retain(|&s| s != shard);
            if shards.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Shards with subscribers of `topic`.
    pub fn shards(&self, topic: &str) -> &[u16] {
        self.topics.get(topic).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_subscriber_are_reported() {
        let mut t = LocalTopics::default();
        let a = t.subscribe("news", 1);
        assert!(a.first_on_shard && a.added);
        let b = t.subscribe("news", 2);
        assert!(!b.first_on_shard && b.added);
        assert!(!t.subscribe("news", 2).added, "twice is once");
        let mut subs: Vec<u32> = t.subscribers("news").collect();
        subs.sort_unstable();
        assert_eq!(subs, vec![1, 2]);
        assert_eq!(t.unsubscribe(a.id, 1), None);
        assert_eq!(t.unsubscribe(a.id, 2).as_deref(), Some("news"));
        assert!(t.is_empty());
        assert_eq!(t.subscribers("news").count(), 0);
        assert_eq!(t.unsubscribe(a.id, 2), None, "already gone");
    }

    #[test]
    fn ids_are_reused() {
        let mut t = LocalTopics::default();
        let a = t.subscribe("a", 1);
        t.unsubscribe(a.id, 1);
        let b = t.subscribe("b", 1);
        assert_eq!(a.id, b.id);
        assert_eq!(t.id_of("b"), Some(b.id));
        assert_eq!(t.id_of("a"), None);
    }

    #[test]
    fn owner_tracks_shards_with_subscribers() {
        let mut o = TopicShards::default();
        o.join("t", 1);
        o.join("t", 0);
        o.join("t", 1);
        assert_eq!(o.shards("t"), &[0, 1]);
        o.leave("t", 0);
        assert_eq!(o.shards("t"), &[1]);
        o.leave("t", 1);
        assert!(o.shards("t").is_empty());
    }
}
