//! The keyed hash that stands for an address in keys and in the in-memory indexes.
//!
//! Keys name an address by a 128-bit SipHash-1-3 of (tenant, address) under a random key kept
//! in the engine's metadata (`address_key`), not by its text: only the address's record holds
//! the text, so an index entry says nothing about the person without the store's key, and
//! forgetting a person does not rewrite every index. 128 bits make two addresses of one store
//! sharing a hash a practical impossibility (about 2^-64 at 10^10 addresses); the in-memory
//! indexes use its first 64 bits and confirm against the store.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

/// An address's keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressHash([u8; 16]);

impl AddressHash {
    /// The 16 bytes as they appear in keys.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The hash whose bytes are `bytes` (read back from a key).
    pub fn from_slice(bytes: &[u8]) -> Option<AddressHash> {
        bytes.try_into().ok().map(AddressHash)
    }

    /// The address's opaque stable id, as clients see it: the hash in lowercase hex.
    pub fn id(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The 64 bits the in-memory indexes use.
    pub fn short(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(first)
    }
}

/// Hashes addresses under one store's key.
#[derive(Clone)]
pub struct AddressHasher {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for AddressHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressHasher(..)")
    }
}

impl AddressHasher {
    /// A hasher under the 16-byte key `key`.
    pub fn new(key: &[u8; 16]) -> AddressHasher {
        let (k0, k1) = key.split_at(8);
        AddressHasher {
            k0: u64::from_le_bytes(k0.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(k1.try_into().unwrap_or_default()),
        }
    }

    /// The hash of `address` in `tenant` (a normalized address; tenant and address cannot
    /// contain the 0 byte that separates them).
    pub fn hash(&self, tenant: &str, address: &str) -> AddressHash {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(tenant.as_bytes());
        h.write_u8(0);
        h.write(address.as_bytes());
        AddressHash(h.finish128().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_the_key_the_tenant_and_the_address() {
        let a = AddressHasher::new(&[1; 16]);
        let b = AddressHasher::new(&[2; 16]);
        let h = a.hash("acme", "jo@example.com");
        assert_eq!(h, a.hash("acme", "jo@example.com"));
        assert_ne!(h, b.hash("acme", "jo@example.com"));
        assert_ne!(h, a.hash("globex", "jo@example.com"));
        assert_ne!(h, a.hash("acme", "jo@example.org"));
        // The separator keeps "ab" + "c" apart from "a" + "bc".
        assert_ne!(a.hash("ab", "c@x"), a.hash("a", "bc@x"));
        assert_eq!(AddressHash::from_slice(h.bytes()), Some(h));
    }
}
