//! An exact in-memory index of which (tenant, address) pairs are suppressed, so the common
//! question "is this clean address suppressed?" costs a hash lookup instead of a B-tree read.
//!
//! It holds 64-bit hashes with a count each: a hash that is absent proves the address is not
//! suppressed; a present hash is confirmed against the store (two suppressed addresses may
//! share a hash, hence the count, so lifting one never hides the other).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use xxhash_rust::xxh3::xxh3_64;

use crate::fasthash::PassThrough;

/// Hash of a tenant and a normalized address.
pub fn key_hash(tenant: &str, address: &str) -> u64 {
    let mut buf = [0u8; 320];
    let n = tenant.len() + 1 + address.len();
    if n <= buf.len() {
        buf[..tenant.len()].copy_from_slice(tenant.as_bytes());
        buf[tenant.len()] = 0;
        buf[tenant.len() + 1..n].copy_from_slice(address.as_bytes());
        xxh3_64(&buf[..n])
    } else {
        let mut v = Vec::with_capacity(n);
        v.extend_from_slice(tenant.as_bytes());
        v.push(0);
        v.extend_from_slice(address.as_bytes());
        xxh3_64(&v)
    }
}

/// The set of suppressed (tenant, address) hashes.
#[derive(Debug, Default)]
pub struct SuppressedFilter {
    /// hash -> number of suppressed addresses with that hash.
    counts: RwLock<HashMap<u64, u32, PassThrough>>,
    /// Number of suppressed addresses (sum of the counts), kept for metrics.
    total: AtomicU64,
}

impl SuppressedFilter {
    /// Records that an address became suppressed.
    pub fn insert(&self, hash: u64) {
        let mut m = self.counts.write().unwrap_or_else(|e| e.into_inner());
        *m.entry(hash).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that an address is no longer suppressed.
    pub fn remove(&self, hash: u64) {
        let mut m = self.counts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get_mut(&hash) {
            *c -= 1;
            self.total.fetch_sub(1, Ordering::Relaxed);
            if *c == 0 {
                m.remove(&hash);
            }
        }
    }

    /// Bulk load at start-up.
    pub fn extend(&self, hashes: impl IntoIterator<Item = u64>) {
        let mut m = self.counts.write().unwrap_or_else(|e| e.into_inner());
        for h in hashes {
            *m.entry(h).or_insert(0) += 1;
            self.total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// For each hash: may the address be suppressed? `false` is exact.
    pub fn may_contain_many(&self, hashes: &[Option<u64>]) -> Vec<bool> {
        let m = self.counts.read().unwrap_or_else(|e| e.into_inner());
        hashes
            .iter()
            .map(|h| h.is_some_and(|h| m.contains_key(&h)))
            .collect()
    }

    /// Number of suppressed addresses.
    pub fn len(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}
