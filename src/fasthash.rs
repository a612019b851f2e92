//! Hash containers for keys that are hashes already (of addresses), so a lookup costs no
//! second hash.
//!
//! [`HashSlots`] is the set the hot paths use: an import screen looks up every contact in the
//! suppressed index and inserts it into the stream's set of addresses seen so far. With a
//! million entries both sets are far bigger than the CPU caches, so each lookup is a trip to
//! memory; what it costs is how many trips, and whether they overlap. [`HashSlots`] keeps the
//! keys themselves in one flat array (one cache line holds the whole probe, where a general
//! map reads a control byte and then a bucket), and [`HashSlots::warm`] loads the slots of a
//! whole batch ahead of the lookups, so that their memory trips overlap instead of queueing one
//! behind the other.

use std::hash::{BuildHasherDefault, Hasher};

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

/// A key of [`HashSlots`]: a uniformly distributed hash, of which zero marks an empty slot.
pub trait SlotKey: Copy + Eq + Default {
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

/// Fewest slots a non-empty set holds.
const MIN_SLOTS: usize = 16;

/// An exact set of hash keys in one flat array, open addressing with linear probing.
///
/// Keys must be uniformly distributed (they are placed by their top bits). The set grows to
/// twice its size when more than three quarters of its slots are taken, so it uses 1.3 to 2.7
/// times the keys' own size; a lookup reads one or two neighbouring slots, nearly always in one
/// cache line. The zero key, which marks empty slots, is held apart.
#[derive(Debug, Clone, Default)]
pub struct HashSlots<K> {
    /// Empty, or a power of two of slots.
    slots: Vec<K>,
    /// Keys held in `slots` (the zero key not counted).
    used: usize,
    /// Whether the zero key is in the set.
    zero: bool,
}

impl<K: SlotKey> HashSlots<K> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys the set holds before it next grows.
    pub fn capacity(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = K> + '_ {
        let zero = self.zero.then(K::default);
        zero.into_iter()
            .chain(self.slots.iter().copied().filter(|&k| k != K::default()))
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.used + usize::from(self.zero)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the probe for `key` starts (the set must have slots).
    fn home(&self, key: K) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // The top bits, as wide as the table: a power-of-two table needs no modulo.
        (key.spread() >> (63 - bits) >> 1) as usize
    }

    /// The slot holding `key`, or the empty slot where its probe ends.
    fn find(&self, key: K) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let k = self.slots[i];
            if k == key {
                return (i, true);
            }
            if k == K::default() {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: K) -> bool {
        if key == K::default() {
            return self.zero;
        }
        !self.slots.is_empty() && self.find(key).1
    }

    /// Adds `key`; `true` if it was not in the set yet.
    pub fn insert(&mut self, key: K) -> bool {
        if key == K::default() {
            return !std::mem::replace(&mut self.zero, true);
        }
        if self.used >= self.capacity() {
            self.grow();
        }
        let (i, found) = self.find(key);
        if !found {
            self.slots[i] = key;
            self.used += 1;
        }
        !found
    }

    /// Removes `key`; `true` if it was in the set.
    pub fn remove(&mut self, key: K) -> bool {
        if key == K::default() {
            return std::mem::replace(&mut self.zero, false);
        }
        if self.slots.is_empty() {
            return false;
        }
        let (mut hole, found) = self.find(key);
        if !found {
            return false;
        }
        // Backward-shift deletion: pull later keys of the run into the hole when their probe
        // passes over it, so no probe ever stops short of its key.
        let mask = self.slots.len() - 1;
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let k = self.slots[i];
            if k == K::default() {
                break;
            }
            let home = self.home(k);
            // Distance from home to i against distance from home to the hole, on the ring.
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.slots[hole] = k;
                hole = i;
            }
        }
        self.slots[hole] = K::default();
        self.used -= 1;
        true
    }

    /// Removes every key, keeping the slots.
    pub fn clear(&mut self) {
        self.slots.fill(K::default());
        self.used = 0;
        self.zero = false;
    }

    /// Makes room for `additional` more keys without growing on the way.
    pub fn reserve(&mut self, additional: usize) {
        while self.used + additional > self.capacity() {
            self.grow();
        }
    }

    /// Loads the home slot of every key, so that the lookups or inserts that follow find them
    /// in cache: independent loads overlap their trips to memory, where a probe that must
    /// finish before the next one starts waits for each in turn. Call it with the keys of a
    /// batch (a few thousand at most, so that they stay cached) just before using them.
    pub fn warm(&self, keys: &[K]) {
        if self.slots.is_empty() {
            return;
        }
        let mut any = K::default();
        for &k in keys {
            let s = self.slots[self.home(k)];
            if s == k {
                any = s;
            }
        }
        // Keeps the loads from being optimized away.
        std::hint::black_box(any);
    }

    /// Doubles the slots (or makes the first ones) and places every key again.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![K::default(); size]);
        for k in old.into_iter().filter(|&k| k != K::default()) {
            let (i, _) = self.find(k);
            self.slots[i] = k;
        }
    }

    /// Bytes of memory the slots take.
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<K>()
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

    /// Keys from a small range so that operations meet the same keys again, spread over the
    /// whole word so that they cluster in the table (every key of the range lands in a few
    /// neighbouring slots when the table is small).
    fn key() -> impl Strategy<Value = u64> {
        (0u64..64).prop_map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (k % 3))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![key().prop_map(Op::Insert), key().prop_map(Op::Remove)]
    }

    proptest! {
        #[test]
        fn hash_slots_agree_with_a_hash_set(ops in prop::collection::vec(op(), 0..400)) {
            let mut slots = HashSlots::<u64>::new();
            let mut model = HashSet::new();
            for op in ops {
                match op {
                    Op::Insert(k) => prop_assert_eq!(slots.insert(k), model.insert(k)),
                    Op::Remove(k) => prop_assert_eq!(slots.remove(k), model.remove(&k)),
                }
                prop_assert_eq!(slots.len(), model.len());
            }
            for k in 0u64..64 {
                let k = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (k % 3);
                prop_assert_eq!(slots.contains(k), model.contains(&k));
            }
        }
    }

    #[test]
    fn keys_sharing_their_home_slot_survive_the_removal_of_one_of_them() {
        // Same top bits, so the same home slot in a small table: one run of probes.
        let keys: Vec<u128> = (1..=6u128).map(|low| (7u128 << 120) | low).collect();
        let mut slots = HashSlots::new();
        for &k in &keys {
            assert!(slots.insert(k));
        }
        assert!(slots.remove(keys[1]));
        assert!(!slots.contains(keys[1]));
        for &k in keys.iter().filter(|&&k| k != keys[1]) {
            assert!(slots.contains(k), "{k:x} lost");
        }
        assert!(slots.insert(0) && slots.contains(0) && !slots.insert(0));
        assert_eq!(slots.len(), 6);
        let mut held: Vec<u128> = slots.iter().collect();
        held.sort_unstable();
        assert_eq!(held, [0, keys[0], keys[2], keys[3], keys[4], keys[5]]);
        slots.reserve(10_000);
        assert!(slots.capacity() >= 10_005);
        slots.warm(&keys);
        assert!(slots.contains(keys[5]));
    }
}
