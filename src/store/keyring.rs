//! Crypto-shredding: each address's personal data (its text, SMTP responses, notes, history
//! details) is sealed under a random 256-bit data key of its own, kept in the keyring file of
//! the data directory; forgetting the address zeroes its key there.
//!
//! Why a file of its own: deleting a value from an engine does not remove its bytes from disk
//! (sled keeps old values in its log segments, redb in free pages, the journal in its segments
//! until a checkpoint), so a key stored as an engine value would outlive its deletion. The
//! keyring is a file of fixed-size slots overwritten in place and fsynced: once a slot is zeroed,
//! every copy of the values sealed under it, wherever the engines left them, is unreadable. The
//! engines and the journal only ever see sealed bytes of personal data.
//!
//! What "overwritten in place" cannot promise: a copy-on-write file system (btrfs, ZFS) or an
//! SSD's remapping may keep the old block of a zeroed slot where no file reaches it; where that
//! matters, the data directory belongs on encrypted storage.
//!
//! Order of writes: keys are handed out from a reserve written and fsynced ahead, thousands at a
//! time, so every key is durable before any value sealed under it is written, and a group commit
//! of new addresses costs no extra fsync. A group that zeroes slots fsyncs the keyring
//! before its journal commit. A crash leaves at worst orphan slots (harmless: keys nobody refers
//! to, such as the rest of the reserve) or a zeroed key whose values were not yet rewritten
//! (their personal fields read as empty, as after the erasure they were part of); never a
//! record that names a key the keyring lost.
//!
//! File: a 32-byte header (8 magic bytes, the keyring's 16-byte id, 8 reserved), then slot `n`
//! at byte `32 * (n + 1)`: the 32 bytes of its key, all zero once destroyed. The id is also kept
//! in the engine's metadata, so a data directory whose keyring is missing or belongs to another
//! store is refused instead of read with its personal data gone.
//!
//! Sealed values (history entries, delivered-address entries): [`SEALED_VERSION`], the slot
//! as a varint, a 12-byte random nonce, the ChaCha20-Poly1305 ciphertext and its 16-byte tag.
//! The address record seals only its personal fields, the rest stays readable without the key
//! (see `records`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use super::StoreError;

/// Name of the keyring file inside the data directory.
pub(super) const KEYRING_FILE: &str = "keyring";
/// The first byte of a sealed value (records are 2, schema-2 postcard values 1).
pub(super) const SEALED_VERSION: u8 = 3;
/// The first bytes of the keyring file.
const MAGIC: &[u8; 8] = b"SPDKEYR1";
/// Bytes of the header, and of each slot.
const SLOT_BYTES: u64 = 32;
/// Bytes a sealed value adds to what it seals, besides its header: nonce and tag.
const OVERHEAD: usize = NONCE_LEN + 16;
/// Keys written (and fsynced) ahead in the first refill of the reserve; each later refill
/// doubles, up to [`MAX_RESERVE`]: a store taking many new addresses pays one fsync per tens of
/// thousands of them, a small one leaves few orphan slots behind at a restart.
const RESERVE: usize = 4096;
/// The largest refill of the reserve (2 MiB of keys).
const MAX_RESERVE: usize = 65_536;

/// One address's data key.
#[derive(Clone)]
pub(super) struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    fn cipher(&self) -> LessSafeKey {
        // A 32-byte key is all ChaCha20-Poly1305 asks for.
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte ChaCha20 key"),
        )
    }

    /// Appends the sealed form of `plain` to `out`: nonce, ciphertext, tag.
    pub(super) fn seal_into(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
        out.reserve_exact(OVERHEAD + plain.len());
        out.extend_from_slice(&nonce);
        let at = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[at..],
            )
            .map_err(|_| StoreError::Encode("cannot seal a value".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The plain bytes of `sealed` (as `seal_into` wrote them); `None` if they are not
    /// authentic under this key.
    pub(super) fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain_len = self
            .cipher()
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .ok()?
            .len();
        buf.truncate(plain_len);
        Some(buf)
    }
}

/// A sealed value: `SEALED_VERSION`, slot, then `plain` sealed under `key`.
pub(super) fn seal_value(slot: u64, key: &DataKey, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(1 + 10 + OVERHEAD + plain.len());
    out.push(SEALED_VERSION);
    prost::encoding::encode_varint(slot, &mut out);
    key.seal_into(plain, &mut out)?;
    Ok(out)
}

/// The slot of a sealed value and the sealed bytes after it; `None` for a value that is not
/// sealed (or whose header is cut short).
pub(super) fn sealed_parts(value: &[u8]) -> Option<(u64, &[u8])> {
    let (&SEALED_VERSION, mut rest) = value.split_first()? else {
        return None;
    };
    let slot = prost::encoding::decode_varint(&mut rest).ok()?;
    Some((slot, rest))
}

/// The key in `slot` of a keyring file's bytes (as a backup stream carries them); `None` once
/// destroyed, or past the end.
pub(super) fn key_in(file: &[u8], slot: u64) -> Option<DataKey> {
    let at = usize::try_from(SLOT_BYTES.checked_mul(slot.checked_add(1)?)?).ok()?;
    let key: [u8; 32] = file.get(at..at.checked_add(32)?)?.try_into().ok()?;
    (key != [0u8; 32]).then_some(DataKey(key))
}

/// The id in a keyring file's header; `None` if the bytes are not a keyring.
pub(super) fn id_in(file: &[u8]) -> Option<[u8; 16]> {
    if file.get(..8)? != MAGIC {
        return None;
    }
    file.get(8..24)?.try_into().ok()
}

/// The keyring file (see the module's documentation). Reads may come from any thread; only the
/// writer thread allocates, destroys and syncs.
pub(super) struct Keyring {
    file: File,
    path: PathBuf,
    /// Durable keys not handed out yet, and the first slot after the file's last.
    reserve: Mutex<Reserve>,
    /// Slots were zeroed since the last sync.
    dirty: AtomicBool,
}

/// Keys written ahead, in the order their slots come.
struct Reserve {
    keys: std::collections::VecDeque<(u64, DataKey)>,
    end: u64,
    /// Keys the next refill writes.
    next_refill: usize,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("path", &self.path).finish()
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::engine(format!("keyring: cannot {what} {}", path.display()), e)
}

impl Keyring {
    /// Opens the keyring of data directory `dir`. `expected` is the id the engine's metadata
    /// holds: with it, the file must exist and carry that id; without it (a new store, or one
    /// written before the keyring), the file is created if missing. Returns the keyring and its
    /// id, for the metadata.
    pub(super) fn open(
        dir: &Path,
        expected: Option<[u8; 16]>,
    ) -> Result<(Keyring, [u8; 16]), StoreError> {
        let path = dir.join(KEYRING_FILE);
        let exists = path.exists();
        if !exists && expected.is_some() {
            return Err(StoreError::engine(
                "keyring",
                format!(
                    "{} is missing: the personal data sealed under its keys cannot be read \
                     (restore it with the rest of the data directory)",
                    path.display()
                ),
            ));
        }
        if !exists {
            Self::create(dir, &path)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("open", &path, e))?;
        let mut header = [0u8; SLOT_BYTES as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| io("read the header of", &path, e))?;
        if &header[..8] != MAGIC {
            return Err(StoreError::corrupt(
                path.to_string_lossy().as_bytes(),
                "not a keyring",
            ));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&header[8..24]);
        if expected.is_some_and(|e| e != id) {
            return Err(StoreError::engine(
                "keyring",
                format!(
                    "{} belongs to another data directory: the personal data sealed under this \
                     store's keys cannot be read",
                    path.display()
                ),
            ));
        }
        let len = file
            .metadata()
            .map_err(|e| io("read the size of", &path, e))?
            .len();
        // A slot cut short by a crash was never referenced (the sync comes before the commit
        // that would): the next one starts after it.
        let next = len.saturating_sub(SLOT_BYTES).div_ceil(SLOT_BYTES);
        Ok((
            Keyring {
                file,
                path,
                reserve: Mutex::new(Reserve {
                    keys: std::collections::VecDeque::new(),
                    end: next,
                    next_refill: RESERVE,
                }),
                dirty: AtomicBool::new(false),
            },
            id,
        ))
    }

    /// Creates the file with a new id, durably (file and directory entry), through a temporary
    /// name so that a crash never leaves a file without its header.
    fn create(dir: &Path, path: &Path) -> Result<(), StoreError> {
        let mut header = [0u8; SLOT_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        rand::Rng::fill(&mut rand::rng(), &mut header[8..24]);
        let temporary = dir.join(format!("{KEYRING_FILE}.new"));
        let mut file = File::create(&temporary).map_err(|e| io("create", &temporary, e))?;
        file.write_all(&header)
            .and_then(|_| file.sync_all())
            .map_err(|e| io("write", &temporary, e))?;
        std::fs::rename(&temporary, path).map_err(|e| io("create", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the directory of", path, e))
    }

    fn offset(slot: u64) -> u64 {
        SLOT_BYTES * (slot + 1)
    }

    /// The key in `slot`; `None` once destroyed (or never written).
    pub(super) fn key(&self, slot: u64) -> Result<Option<DataKey>, StoreError> {
        let mut key = [0u8; 32];
        match self.file.read_exact_at(&mut key, Self::offset(slot)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io("read", &self.path, e)),
        }
        Ok((key != [0u8; 32]).then_some(DataKey(key)))
    }

    /// A new random key in a slot of its own, durable already.
    pub(super) fn allocate(&self) -> Result<(u64, DataKey), StoreError> {
        let mut reserve = self.reserve.lock().unwrap_or_else(|e| e.into_inner());
        if reserve.keys.is_empty() {
            self.refill(&mut reserve)?;
        }
        reserve
            .keys
            .pop_front()
            .ok_or_else(|| StoreError::engine("keyring", "the reserve of keys is empty"))
    }

    /// Writes new random keys after the last slot, in one write, and fsyncs them.
    fn refill(&self, reserve: &mut Reserve) -> Result<(), StoreError> {
        let count = reserve.next_refill;
        let mut bytes = vec![0u8; count * SLOT_BYTES as usize];
        rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
        let first = reserve.end;
        self.file
            .write_all_at(&bytes, Self::offset(first))
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io("write", &self.path, e))?;
        reserve.end = first + count as u64;
        reserve.next_refill = (count * 2).min(MAX_RESERVE);
        for (i, key) in bytes.chunks_exact(SLOT_BYTES as usize).enumerate() {
            let key: [u8; 32] = key.try_into().expect("32-byte chunks");
            // An all-zero key would read as destroyed: that slot stays an orphan.
            if key != [0u8; 32] {
                reserve.keys.push_back((first + i as u64, DataKey(key)));
            }
        }
        Ok(())
    }

    /// Zeroes the key in `slot`, in place; durable at the next [`Keyring::sync`].
    pub(super) fn destroy(&self, slot: u64) -> Result<(), StoreError> {
        if Self::offset(slot) >= self.len()? {
            return Ok(());
        }
        self.file
            .write_all_at(&[0u8; 32], Self::offset(slot))
            .map_err(|e| io("write", &self.path, e))?;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn len(&self) -> Result<u64, StoreError> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| io("read the size of", &self.path, e))?
            .len())
    }

    /// The whole file as it is now (for a backup, taken by the writer thread between groups).
    pub(super) fn contents(&self) -> Result<Vec<u8>, StoreError> {
        let mut bytes = vec![0u8; self.len()? as usize];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| io("read", &self.path, e))?;
        Ok(bytes)
    }

    /// Makes the slots written since the last sync durable; nothing to do if none was.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        if self.dirty.swap(false, Ordering::Relaxed) {
            if let Err(e) = self.file.sync_data() {
                self.dirty.store(true, Ordering::Relaxed);
                return Err(io("sync", &self.path, e));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_only_and_hides_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = Keyring::open(dir.path(), None).unwrap();
        let (slot, key) = ring.allocate().unwrap();
        let (_, other) = ring.allocate().unwrap();
        let plain = b"550 5.1.1 <jo.erasure@example.com>: user unknown";
        let sealed = seal_value(slot, &key, plain).unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"jo.erasure"));
        let (found, rest) = sealed_parts(&sealed).unwrap();
        assert_eq!(found, slot);
        assert_eq!(key.open(rest).as_deref(), Some(&plain[..]));
        assert_eq!(other.open(rest), None);
        // Two seals of the same text differ (random nonces).
        assert_ne!(seal_value(slot, &key, plain).unwrap(), sealed);
        assert_eq!(sealed_parts(&[2, 1, 2, 3]), None);
    }

    #[test]
    fn a_destroyed_key_is_gone_from_the_file_and_slots_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, id) = Keyring::open(dir.path(), None).unwrap();
        let (a, key_a) = ring.allocate().unwrap();
        let (b, key_b) = ring.allocate().unwrap();
        ring.sync().unwrap();
        ring.destroy(a).unwrap();
        ring.sync().unwrap();
        drop(ring);
        let bytes = std::fs::read(dir.path().join(KEYRING_FILE)).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == key_a.0),
            "the key's bytes are gone"
        );
        assert!(bytes.windows(32).any(|w| w == key_b.0));

        let (ring, again) = Keyring::open(dir.path(), Some(id)).unwrap();
        assert_eq!(again, id);
        assert!(ring.key(a).unwrap().is_none());
        assert_eq!(ring.key(b).unwrap().map(|k| k.0), Some(key_b.0));
        assert!(
            ring.key(RESERVE as u64 + 7).unwrap().is_none(),
            "beyond the end"
        );
        // The reserve written before the reopen is left to orphan slots: nothing is handed
        // out twice.
        let (c, _) = ring.allocate().unwrap();
        assert_eq!(c, RESERVE as u64);
    }

    #[test]
    fn a_missing_or_foreign_keyring_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keyring::open(dir.path(), Some([1; 16])).unwrap_err();
        assert!(err.to_string().contains("keyring"), "{err}");
        let (_, id) = Keyring::open(dir.path(), None).unwrap();
        let mut other = id;
        other[0] ^= 1;
        assert!(Keyring::open(dir.path(), Some(other)).is_err());
    }
}
