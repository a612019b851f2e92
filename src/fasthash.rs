//! Hash containers for keys that are hashes already (of addresses), so a lookup costs no
//! second hash.
//!
//! [`KeySet`] is the set the hot paths use: an import screen looks up every contact in the
//! suppressed index and inserts it into the stream's set of addresses seen so far. With a
//! million entries both sets are far bigger than the CPU caches, so each lookup is a trip to
//! memory; what it costs is how many trips, and whether they overlap. It is hashbrown's
//! `HashTable` holding the keys themselves, hashed by their own bits. Its probe reads one group
//! of control bytes and compares the whole group at once, so a key that is absent (most
//! lookups) costs one trip; lookups of a batch overlap their trips on their own, and a prefetch
//! of each key's home bucket a batch ahead made them slower, not faster (bench/README.md, "The
//! hash table: ours against hashbrown").

use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// A hasher for keys that are already uniformly distributed hashes: it passes them through, so
/// a lookup costs no second hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys that are not integers; fold them in so nothing breaks.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

/// Hash-map state for keys that are hashes already.
pub type PassThrough = BuildHasherDefault<PassThroughHasher>;

/// A key of [`KeySet`]: a uniformly distributed hash.
pub trait SlotKey: Copy + Eq {
    /// 64 uniformly distributed bits of the key, to place it.
    fn spread(self) -> u64;
}

impl SlotKey for u64 {
    fn spread(self) -> u64 {
        self
    }
}

impl SlotKey for u128 {
    fn spread(self) -> u64 {
        (self >> 64) as u64
    }
}

/// An exact set of hash keys: hashbrown's `HashTable`, placed by the keys' own bits.
#[derive(Debug, Clone)]
pub struct KeySet<K> {
    table: HashTable<K>,
}

impl<K> Default for KeySet<K> {
    fn default() -> Self {
        KeySet {
            table: HashTable::new(),
        }
    }
}

impl<K: SlotKey> KeySet<K> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys the set holds before it next grows.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = K> + '_ {
        self.table.iter().copied()
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: K) -> bool {
        self.table.find(key.spread(), |&k| k == key).is_some()
    }

    /// Adds `key`; `true` if it was not in the set yet.
    pub fn insert(&mut self, key: K) -> bool {
        match self
            .table
            .entry(key.spread(), |&k| k == key, |k| k.spread())
        {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(key);
                true
            }
        }
    }

    /// Removes `key`; `true` if it was in the set.
    pub fn remove(&mut self, key: K) -> bool {
        match self.table.find_entry(key.spread(), |&k| k == key) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Removes every key, keeping the memory.
    pub fn clear(&mut self) {
        self.table.clear();
    }

    /// Makes room for `additional` more keys without growing on the way.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, |k| k.spread());
    }
    /// Bytes of memory the table takes.
    pub fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(u64),
    }

    /// Keys from a small range so that operations meet the same keys again, zero among them.
    fn key() -> impl Strategy<Value = u64> {
        (0u64..64).prop_map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (k % 3))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![key().prop_map(Op::Insert), key().prop_map(Op::Remove)]
    }

    proptest! {
        #[test]
        fn key_set_agrees_with_a_hash_set(ops in prop::collection::vec(op(), 0..400)) {
            let mut set = KeySet::<u64>::new();
            let mut model = HashSet::new();
            for op in ops {
                match op {
                    Op::Insert(k) => prop_assert_eq!(set.insert(k), model.insert(k)),
                    Op::Remove(k) => prop_assert_eq!(set.remove(k), model.remove(&k)),
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for k in 0u64..64 {
                let k = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (k % 3);
                prop_assert_eq!(set.contains(k), model.contains(&k));
            }
        }
    }

    #[test]
    fn keys_sharing_their_placing_bits_all_stay_findable() {
        // Same top 64 bits, so the same hash: one probe sequence for all of them.
        let keys: Vec<u128> = (1..=6u128).map(|low| (7u128 << 120) | low).collect();
        let mut set = KeySet::new();
        for &k in &keys {
            assert!(set.insert(k));
        }
        assert!(set.remove(keys[1]));
        assert!(!set.contains(keys[1]));
        for &k in keys.iter().filter(|&&k| k != keys[1]) {
            assert!(set.contains(k), "{k:x} lost");
        }
        assert!(set.insert(0) && set.contains(0) && !set.insert(0));
        assert_eq!(set.len(), 6);
        let mut held: Vec<u128> = set.iter().collect();
        held.sort_unstable();
        assert_eq!(held, [0, keys[0], keys[2], keys[3], keys[4], keys[5]]);
        set.reserve(10_000);
        assert!(set.capacity() >= 10_005);
        assert!(set.heap_bytes() >= 10_005 * 16);
        assert!(set.contains(keys[5]));
        set.clear();
        assert!(set.is_empty() && !set.contains(keys[0]));
    }
}
