//! The small ordered key-value interface that each storage engine implements. Everything above
//! it (key layout, record encoding, the decide step of writes, indexes, counters, history, the
//! in-memory suppressed index, group commit) is shared by every engine (`kv_store`, `writer`).

use std::ops::Bound;

use super::StoreError;

/// Visits one entry of a scan; returns `false` to stop the scan.
pub(super) type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError>;

/// Receives one value of [`KvEngine::get_many`]: the index of its key, and the value.
pub(super) type Found<'a> = &'a mut dyn FnMut(usize, &[u8]) -> Result<(), StoreError>;

/// Point reads of one view of the committed state (see [`KvEngine::reader`]).
pub(super) trait KvRead {
    /// The value under `key` in this view.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The default reader: every read sees the engine's latest committed state.
struct Latest<'a, E: ?Sized>(&'a E);

impl<E: KvEngine + ?Sized> KvRead for Latest<'_, E> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
}

/// A consistent view of a whole engine at one commit, read while writes go on.
pub(super) trait KvSnapshot: Send {
    /// The last sequence number committed at the view's instant.
    fn seq(&self) -> u64;

    /// Visits every entry of the view in ascending key order (the journal's own state key
    /// left out), until `visit` returns `false`.
    fn scan(&self, visit: Visit<'_>) -> Result<(), StoreError>;
}

/// An engine: committed reads, ordered scans, and durable atomic write transactions.
pub(super) trait KvEngine: Send + Sync + 'static {
    /// The engine's name, as `--engine` spells it.
    fn name(&self) -> &'static str;

    /// A consistent view of everything committed, for a whole-store scan while writes go on.
    /// Only engines behind the journal offer it.
    fn snapshot(&self) -> Result<Box<dyn KvSnapshot>, StoreError> {
        Err(StoreError::engine(
            "snapshot",
            "this engine offers no consistent view",
        ))
    }

    /// The committed value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// A reader for many point reads in a row. Engines with a per-read cost (such as a read
    /// transaction) override it to pay that cost once: their reader then sees the committed
    /// state as of this call.
    fn reader(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        Ok(Box::new(Latest(self)))
    }

    /// Visits the committed values under several keys, in order, as `found(index of the key,
    /// value)`; absent keys are skipped. Engines with a per-read cost (such as a read
    /// transaction) override it to pay that cost once per call, and to lend each value instead
    /// of copying it.
    fn get_many(&self, keys: &[Vec<u8>], found: Found<'_>) -> Result<(), StoreError> {
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = self.get(k)? {
                found(i, &v)?;
            }
        }
        Ok(())
    }

    /// Visits the committed entries with keys between `start` and `end`, in ascending key order,
    /// until `visit` returns `false`.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError>;

    /// Runs `work` on a write transaction. If `work` succeeds and wrote anything, the writes are
    /// made durable before this returns (one commit and one fsync per call). If `work` fails,
    /// nothing it wrote is stored.
    fn transact<T>(
        &self,
        work: impl FnOnce(&mut dyn KvTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;

    /// The last sequence number handed out by a committed transaction (or a greater one).
    fn last_seq(&self) -> Result<u64, StoreError>;

    /// A value of the engine's own metadata (schema version, token secret).
    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores a metadata value durably.
    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Makes everything written durable (called on close).
    fn flush(&self) -> Result<(), StoreError>;
}

/// A write transaction, seen by one group commit.
pub(super) trait KvTxn {
    /// The value under `key`. Engines may answer from the committed state only: callers keep
    /// their own overlay of what they wrote in this transaction and never read it back.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether `key` has a value (with the same caveat as `get`).
    fn contains(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Stores `value` under `key`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError>;

    /// Removes `key`.
    fn remove(&mut self, key: Vec<u8>) -> Result<(), StoreError>;

    /// Stores values (`Some`) and removes keys (`None`) given in ascending key order, each key
    /// once, after everything written before. Engines may write them straight through instead
    /// of collecting copies.
    fn write_sorted<'e>(
        &mut self,
        entries: &mut dyn Iterator<Item = (&'e [u8], Option<&'e [u8]>)>,
    ) -> Result<(), StoreError> {
        for (k, v) in entries {
            match v {
                Some(v) => self.put(k.to_vec(), v.to_vec())?,
                None => self.remove(k.to_vec())?,
            }
        }
        Ok(())
    }

    /// A store-wide unique, increasing number (orders entries of the same instant).
    fn next_seq(&mut self) -> Result<u64, StoreError>;

    /// Whether the engine wants the current atomic unit closed. Asked only between two writes,
    /// after the caller has written everything that must be atomic with what came before.
    fn wants_cut(&self) -> bool {
        false
    }

    /// Closes the current atomic unit (see `wants_cut`).
    fn cut(&mut self) {}
}

/// Whether the range from `start` to `end` holds no key at all (some engines refuse such ranges).
pub(super) fn empty_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}
