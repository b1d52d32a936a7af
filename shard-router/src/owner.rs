//! Which shard owns a user or a topic: a stable hash of the name modulo
//! the shard count, the same on every shard of a process.

/// FNV-1a, 64 bit: fast, stable across runs and platforms.
pub fn stable_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard that owns `name` among `shards` shards.
pub fn owner_of(name: &str, shards: usize) -> usize {
    owner_of_hash(stable_hash(name), shards)
}

/// The shard that owns the name whose [`stable_hash`] is `hash`, for a
/// caller that needs the hash anyway (one pass over the name, not two).
pub fn owner_of_hash(hash: u64, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (hash % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_in_range() {
        assert_eq!(owner_of("alice", 1), 0);
        for n in 1..8 {
            let o = owner_of("alice", n);
            assert!(o < n);
            assert_eq!(o, owner_of("alice", n));
        }
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        for n in 0..8 {
            assert_eq!(owner_of_hash(stable_hash("alice"), n), owner_of("alice", n));
        }
    }

    #[test]
    fn owners_spread_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[owner_of(&format!("user-{i}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
