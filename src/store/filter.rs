//! An exact in-memory index of which (tenant, address) pairs are suppressed, so the common
//! question "is this clean address suppressed?" costs a hash lookup instead of a B-tree read.
//!
//! It holds 64-bit hashes with a count each: a hash that is absent proves the address is not
//! suppressed; a present hash is confirmed against the store (two suppressed addresses may
//! share a hash, hence the count, so lifting one never hides the other).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::fasthash::{KeySet, PassThrough};

/// The suppressed hashes: each once in `set`, and in `extra` with its count when several
/// suppressed addresses share it (which a 64-bit hash makes rare, but not impossible).
#[derive(Debug, Default)]
struct Counted {
    set: KeySet<u64>,
    extra: HashMap<u64, u32, PassThrough>,
}

impl Counted {
    fn add(&mut self, hash: u64) {
        if !self.set.insert(hash) {
            *self.extra.entry(hash).or_insert(1) += 1;
        }
    }
}

/// A read view of a [`SuppressedFilter`]; writers wait while it is held, so hold it briefly.
pub struct FilterReader<'a>(RwLockReadGuard<'a, Counted>);

impl FilterReader<'_> {
    /// May the address with this hash be suppressed? `false` is exact.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.0.set.contains(hash)
    }
}

/// The set of suppressed (tenant, address) hashes.
#[derive(Debug, Default)]
pub struct SuppressedFilter {
    counts: RwLock<Counted>,
    /// Number of suppressed addresses (sum of the counts), kept for metrics.
    total: AtomicU64,
}

impl SuppressedFilter {
    /// Records that an address became suppressed.
    pub fn insert(&self, hash: u64) {
        self.counts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(hash);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that an address is no longer suppressed.
    pub fn remove(&self, hash: u64) {
        let mut m = self.counts.write().unwrap_or_else(|e| e.into_inner());
        let removed = match m.extra.get_mut(&hash) {
            Some(c) => {
                *c -= 1;
                if *c == 1 {
                    m.extra.remove(&hash);
                }
                true
            }
            None => m.set.remove(hash),
        };
        if removed {
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Bulk load at start-up.
    pub fn extend(&self, hashes: impl IntoIterator<Item = u64>) {
        let mut m = self.counts.write().unwrap_or_else(|e| e.into_inner());
        for h in hashes {
            m.add(h);
            self.total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A read view for many lookups under one lock.
    pub fn reader(&self) -> FilterReader<'_> {
        FilterReader(self.counts.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Number of suppressed addresses.
    pub fn len(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// A superset of the (tenant, address) hashes that have a record, so that a status lookup of an
/// address the service has never heard of (most lookups) answers without reading the store.
///
/// Records are never deleted, so hashes are only ever added. Until the start-up load is
/// complete, every address may have a record.
#[derive(Debug, Default)]
pub struct KnownFilter {
    hashes: RwLock<KeySet<u64>>,
    /// Whether every record written before start-up has been loaded.
    complete: AtomicBool,
}

impl KnownFilter {
    /// Adds the hashes of addresses that have a record.
    pub fn extend(&self, hashes: &[u64]) {
        if hashes.is_empty() {
            return;
        }
        let mut set = self.hashes.write().unwrap_or_else(|e| e.into_inner());
        set.reserve(hashes.len());
        for &h in hashes {
            set.insert(h);
        }
    }

    /// Marks the start-up load done: from now on an absent hash proves there is no record.
    pub fn mark_complete(&self) {
        self.complete.store(true, Ordering::Release);
    }

    /// Whether the start-up load is done.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// May the address with this hash have a record? `false` is exact.
    pub fn may_exist(&self, hash: u64) -> bool {
        if !self.is_complete() {
            return true;
        }
        let set = self.hashes.read().unwrap_or_else(|e| e.into_inner());
        set.contains(hash)
    }

    /// Number of hashes held.
    pub fn len(&self) -> usize {
        self.hashes.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_hash(tenant: &str, address: &str) -> u64 {
        crate::store::address_hash::AddressHasher::new(&[7; 16])
            .hash(tenant, address)
            .short()
    }

    #[test]
    fn a_hash_shared_by_two_suppressed_addresses_stays_until_both_are_lifted() {
        let filter = SuppressedFilter::default();
        let (shared, other) = (key_hash("acme", "a@example.com"), 42);
        filter.extend([shared, other]);
        filter.insert(shared);
        assert_eq!(filter.len(), 3);
        filter.remove(shared);
        assert!(filter.reader().may_contain(shared));
        filter.remove(shared);
        assert!(!filter.reader().may_contain(shared));
        filter.remove(shared);
        assert_eq!(filter.len(), 1);
        assert!(filter.reader().may_contain(other));
    }

    #[test]
    fn known_filter_says_maybe_until_loaded_then_is_exact_for_absent_hashes() {
        let known = KnownFilter::default();
        let a = key_hash("acme", "a@example.com");
        let b = key_hash("acme", "b@example.com");
        assert!(known.may_exist(a) && known.may_exist(b));
        known.extend(&[a]);
        known.mark_complete();
        assert!(known.may_exist(a));
        assert!(!known.may_exist(b));
        assert!(!known.may_exist(key_hash("globex", "a@example.com")));
        assert_eq!(known.len(), 1);
    }
}
