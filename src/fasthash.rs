//! Hash containers for keys that are hashes already (of addresses), so a lookup costs no
//! second hash.

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
