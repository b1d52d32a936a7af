//! Wildcard topic filters (MQTT's `+` and `#`) of one shard's sessions, as
//! a trie of topic levels, so that finding a topic's matching sessions
//! costs the levels walked plus the sessions found, not the filters held.
//! Exact topics are [`crate::topics::LocalTopics`]; only filters with a
//! wildcard live here. Which shards hold any filter at all is known
//! gateway-wide (the router's `WildcardJoin`/`WildcardLeave`), so a topic
//! push visits them besides the shards with exact subscribers.
//!
//! The meaning follows MQTT 3.1.1 §4.7: `+` fills exactly one level, `#`
//! (only as the whole last level) the parent level and any below it, and
//! a topic starting with `$` is not matched by a filter starting with a
//! wildcard. Filters are taken as validated by the codec.

use std::collections::HashMap;

#[derive(Debug, Default)]
struct Node {
    parent: usize,
    /// The level this node is under its parent (`+` for the wildcard
    /// child).
    label: Box<str>,
    children: HashMap<Box<str>, usize>,
    plus: Option<usize>,
    /// Sessions whose filter ends here.
    here: Vec<u32>,
    /// Sessions whose filter ends here with `/#` (or is `#`, at the root).
    hash: Vec<u32>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.here.is_empty()
            && self.hash.is_empty()
    }
}

/// One shard's wildcard subscriptions, by session key.
#[derive(Debug)]
pub struct LocalFilters {
    nodes: Vec<Option<Node>>,
    free: Vec<usize>,
    /// Each session's filters, to leave them all when it ends.
    by_session: HashMap<u32, Vec<Box<str>>>,
}

impl Default for LocalFilters {
    fn default() -> Self {
        LocalFilters {
            nodes: vec![Some(Node::default())],
            free: Vec::new(),
            by_session: HashMap::new(),
        }
    }
}

const ROOT: usize = 0;

impl LocalFilters {
    /// Whether no session holds a filter.
    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.by_session.values().map(Vec::len).sum()
    }

    /// Filters session `key` holds.
    pub fn held_by(&self, key: u32) -> usize {
        self.by_session.get(&key).map_or(0, Vec::len)
    }

    /// The filters session `key` holds.
    pub fn filters_of(&self, key: u32) -> impl Iterator<Item = &str> {
        self.by_session
            .get(&key)
            .into_iter()
            .flatten()
            .map(|f| &**f)
    }

    /// Subscribes session `key` to `filter`. Returns whether this is the
    /// shard's first filter (tell every shard).
    pub fn subscribe(&mut self, filter: &str, key: u32) -> bool {
        let first = self.is_empty();
        let held = self.by_session.entry(key).or_default();
        if held.iter().any(|f| &**f == filter) {
            return false;
        }
        held.push(filter.into());
        let (levels, hash) = split(filter);
        let mut at = ROOT;
        for level in levels {
            at = self.child(at, level);
        }
        if let Some(node) = self.node_mut(at) {
            if hash {
                node.hash.push(key);
            } else {
                node.here.push(key);
            }
        }
        first
    }

    /// Unsubscribes session `key` from `filter`. Returns whether the shard
    /// holds no filter any more (tell every shard).
    pub fn unsubscribe(&mut self, filter: &str, key: u32) -> bool {
        let Some(held) = self.by_session.get_mut(&key) else {
            return false;
        };
        let Some(pos) = held.iter().position(|f| &**f == filter) else {
            return false;
        };
        held.swap_remove(pos);
        if held.is_empty() {
            self.by_session.remove(&key);
        }
        self.remove(filter, key);
        self.is_empty()
    }

    /// Drops every filter of session `key` (it ended). Returns whether the
    /// shard holds no filter any more and held some before.
    pub fn remove_session(&mut self, key: u32) -> bool {
        let Some(held) = self.by_session.remove(&key) else {
            return false;
        };
        for filter in &held {
            self.remove(filter, key);
        }
        self.is_empty()
    }

    /// The sessions whose filters match topic `name`, each once.
    pub fn matching(&self, name: &str, into: &mut Vec<u32>) {
        if self.is_empty() {
            return;
        }
        let levels: Vec<&str> = name.split('/').collect();
        let mut found = Vec::new();
        self.walk(ROOT, &levels, name.starts_with('$'), &mut found);
        found.sort_unstable();
        found.dedup();
        into.extend(found);
    }

    fn walk(&self, at: usize, levels: &[&str], dollar: bool, into: &mut Vec<u32>) {
        let Some(node) = self.node(at) else {
            return;
        };
        // `#` also matches the parent level ("a/#" matches "a"), but a
        // leading wildcard does not match a `$` topic.
        if !(dollar && at == ROOT) {
            into.extend_from_slice(&node.hash);
        }
        let Some((level, rest)) = levels.split_first() else {
            into.extend_from_slice(&node.here);
            return;
        };
        if let Some(&child) = node.children.get(*level) {
            self.walk(child, rest, dollar, into);
        }
        if let Some(plus) = node.plus
            && !(dollar && at == ROOT)
        {
            self.walk(plus, rest, dollar, into);
        }
    }

    fn remove(&mut self, filter: &str, key: u32) {
        let (levels, hash) = split(filter);
        let mut at = ROOT;
        for level in levels {
            let next = self.node(at).and_then(|n| {
                if level == "+" {
                    n.plus
                } else {
                    n.children.get(level).copied()
                }
            });
            let Some(next) = next else {
                return;
            };
            at = next;
        }
        if let Some(node) = self.node_mut(at) {
            let list = if hash { &mut node.hash } else { &mut node.here };
            if let Some(pos) = list.iter().position(|&k| k == key) {
                list.swap_remove(pos);
            }
        }
        // Prune the nodes left empty, leaf first.
        while at != ROOT && self.node(at).is_some_and(Node::is_empty) {
            let Some(node) = self.nodes.get_mut(at).and_then(Option::take) else {
                return;
            };
            self.free.push(at);
            at = node.parent;
            if let Some(parent) = self.node_mut(at) {
                if &*node.label == "+" {
                    parent.plus = None;
                } else {
                    parent.children.remove(&node.label);
                }
            }
        }
    }

    fn child(&mut self, at: usize, level: &str) -> usize {
        let existing = self.node(at).and_then(|n| {
            if level == "+" {
                n.plus
            } else {
                n.children.get(level).copied()
            }
        });
        if let Some(c) = existing {
            return c;
        }
        let node = Node {
            parent: at,
            label: level.into(),
            ..Node::default()
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        if let Some(parent) = self.node_mut(at) {
            if level == "+" {
                parent.plus = Some(id);
            } else {
                parent.children.insert(level.into(), id);
            }
        }
        id
    }

    fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, i: usize) -> Option<&mut Node> {
        self.nodes.get_mut(i).and_then(Option::as_mut)
    }

    /// Trie nodes in use, the root included (for tests of the reclaim).
    pub fn nodes_in_use(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_some()).count()
    }
}

/// A filter's levels before a final `#`, and whether it ends with one.
fn split(filter: &str) -> (Vec<&str>, bool) {
    let mut levels: Vec<&str> = filter.split('/').collect();
    let hash = levels.last() == Some(&"#");
    if hash {
        levels.pop();
    }
    (levels, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(f: &LocalFilters, name: &str) -> Vec<u32> {
        let mut v = Vec::new();
        f.matching(name, &mut v);
        v
    }

    #[test]
    fn wildcards_match_as_the_spec_says() {
        let mut f = LocalFilters::default();
        assert!(f.subscribe("sport/tennis/+", 1), "the shard's first filter");
        assert!(!f.subscribe("sport/#", 2));
        f.subscribe("#", 3);
        f.subscribe("+/+", 4);
        f.subscribe("+/tennis/#", 5);
        f.subscribe("sport/+/player1", 6);
        assert_eq!(matching(&f, "sport/tennis/player1"), vec![1, 2, 3, 5, 6]);
        assert_eq!(matching(&f, "sport"), vec![2, 3], "# matches its parent");
        assert_eq!(matching(&f, "sport/tennis"), vec![2, 3, 4, 5]);
        assert_eq!(matching(&f, "news"), vec![3]);
        assert_eq!(matching(&f, "/finance"), vec![3, 4], "an empty first level");
        // A leading wildcard does not match a `$` topic.
        assert_eq!(matching(&f, "$SYS/tennis"), Vec::<u32>::new());
        f.subscribe("$SYS/#", 7);
        assert_eq!(matching(&f, "$SYS/tennis"), vec![7]);
    }

    #[test]
    fn a_session_matching_by_several_filters_is_found_once() {
        let mut f = LocalFilters::default();
        f.subscribe("a/#", 1);
        f.subscribe("a/+", 1);
        f.subscribe("a/b", 9);
        assert!(!f.subscribe("a/+", 1), "twice the same filter is one");
        assert_eq!(f.len(), 3);
        assert_eq!(matching(&f, "a/b"), vec![1, 9]);
    }

    #[test]
    fn ended_sessions_leave_no_node_behind() {
        let mut f = LocalFilters::default();
        f.subscribe("a/+/c/#", 1);
        f.subscribe("a/+/d", 2);
        f.subscribe("x/#", 2);
        assert!(f.nodes_in_use() > 1);
        assert!(
            !f.unsubscribe("a/+/c/#", 1),
            "session 2 still holds filters"
        );
        assert_eq!(matching(&f, "a/b/c/e"), Vec::<u32>::new());
        assert_eq!(matching(&f, "a/b/d"), vec![2]);
        assert!(f.remove_session(2), "the shard's last filter");
        assert!(f.is_empty());
        assert_eq!(f.nodes_in_use(), 1, "only the root");
        assert!(!f.remove_session(2), "nothing left to remove");
        assert!(!f.unsubscribe("x/#", 2));
    }
}
