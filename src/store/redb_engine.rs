//! The redb engine (`--engine redb`): one database file in the data directory with one table of
//! records (same key layout as every engine, see `keys`) and one table of metadata.
//!
//! In the store it sits behind the write-ahead journal (`journal`), whose checkpoints and replays
//! are its write transactions. Each is committed with `Durability::Immediate`: atomic as a whole
//! and durable (fsynced) when `commit` returns. The sequence counter lives in the metadata table
//! and is written in the same transaction as the entries that use it.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, DatabaseError, Durability, ReadableTable, TableDefinition};

use super::kv::{empty_range, Found, KvEngine, KvRead, KvTxn, Visit};
use super::sled_engine::holds_sled_data;
use super::{StoreError, REDB_FILE};

/// Every record, under the keys of `keys`.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("suppression.v1");
/// Schema version, token secret, sequence counter.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Name of the sequence counter in `META` (the last number handed out, big-endian).
const SEQ: &str = "seq";

/// The redb engine.
pub(super) struct RedbEngine {
    db: Database,
    /// The last sequence number committed.
    seq: AtomicU64,
}

fn engine(e: impl Into<redb::Error>) -> StoreError {
    StoreError::engine("redb", e.into())
}

impl RedbEngine {
    /// Opens (or creates) the database file in directory `path`.
    pub(super) fn open(path: &Path, cache_bytes: usize) -> Result<RedbEngine, StoreError> {
        if holds_sled_data(path) {
            return Err(StoreError::OtherEngine {
                path: path.display().to_string(),
                found: "sled",
                wanted: "redb",
            });
        }
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::engine(format!("cannot create {}", path.display()), e))?;
        let file = path.join(REDB_FILE);
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .set_repair_callback(|session| {
                tracing::info!(
                    progress = session.progress(),
                    "repairing the database after an unclean shutdown"
                );
            })
            .create(&file)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::engine(format!("cannot open {}", file.display()), other),
            })?;
        // Both tables exist from the first open on, so readers never meet a missing table.
        let wtx = db.begin_write().map_err(engine)?;
        let seq = {
            wtx.open_table(DATA).map_err(engine)?;
            let meta = wtx.open_table(META).map_err(engine)?;
            let seq = meta.get(SEQ).map_err(engine)?.map(|v| v.value().to_vec());
            match seq {
                None => 0,
                Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt {
                        key: SEQ.into(),
                        cause: "sequence counter is not 8 bytes".into(),
                    }
                })?),
            }
        };
        wtx.commit().map_err(engine)?;
        Ok(RedbEngine {
            db,
            seq: AtomicU64::new(seq),
        })
    }
}

impl KvEngine for RedbEngine {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let rtx = self.db.begin_read().map_err(engine)?;
        let table = rtx.open_table(DATA).map_err(engine)?;
        let value = table.get(key).map_err(engine)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn reader(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        let rtx = self.db.begin_read().map_err(engine)?;
        let table = rtx.open_table(DATA).map_err(engine)?;
        Ok(Box::new(RedbReader { table }))
    }

    fn get_many(&self, keys: &[Vec<u8>], found: Found<'_>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let rtx = self.db.begin_read().map_err(engine)?;
        let table = rtx.open_table(DATA).map_err(engine)?;
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = table.get(k.as_slice()).map_err(engine)? {
                found(i, v.value())?;
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        if empty_range(start, end) {
            return Ok(());
        }
        let rtx = self.db.begin_read().map_err(engine)?;
        let table = rtx.open_table(DATA).map_err(engine)?;
        for item in table.range::<&[u8]>((start, end)).map_err(engine)? {
            let (k, v) = item.map_err(engine)?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    fn transact<T>(
        &self,
        work: impl FnOnce(&mut dyn KvTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut wtx = self.db.begin_write().map_err(engine)?;
        wtx.set_durability(Durability::Immediate);
        let seq_before = self.seq.load(Ordering::Relaxed);
        let done = match wtx.open_table(DATA) {
            Ok(table) => {
                let mut txn = RedbTxn {
                    table,
                    seq: seq_before,
                    writes: Vec::new(),
                    wrote_sorted: false,
                };
                work(&mut txn).and_then(|out| {
                    let wrote = !txn.writes.is_empty() || txn.wrote_sorted;
                    txn.apply()?;
                    Ok((out, txn.seq, wrote))
                })
            }
            Err(e) => Err(engine(e)),
        };
        match done {
            Err(e) => {
                // Nothing of this transaction is stored.
                if let Err(abort) = wtx.abort() {
                    tracing::error!(error = %abort, "cannot abort a write transaction");
                }
                Err(e)
            }
            Ok((out, _, false)) => {
                wtx.abort().map_err(engine)?;
                Ok(out)
            }
            Ok((out, seq, true)) => {
                if seq != seq_before {
                    let mut meta = wtx.open_table(META).map_err(engine)?;
                    meta.insert(SEQ, &seq.to_be_bytes()[..]).map_err(engine)?;
                }
                wtx.commit().map_err(engine)?;
                self.seq.store(seq, Ordering::Relaxed);
                Ok(out)
            }
        }
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.seq.load(Ordering::Relaxed))
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rtx = self.db.begin_read().map_err(engine)?;
        let table = rtx.open_table(META).map_err(engine)?;
        let value = table.get(name).map_err(engine)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut wtx = self.db.begin_write().map_err(engine)?;
        wtx.set_durability(Durability::Immediate);
        {
            let mut table = wtx.open_table(META).map_err(engine)?;
            table.insert(name, value).map_err(engine)?;
        }
        wtx.commit().map_err(engine)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every commit is durable already.
        Ok(())
    }
}

/// A read transaction's view of the data table.
struct RedbReader {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl KvRead for RedbReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.table.get(key).map_err(engine)?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

/// The data table of one redb write transaction.
///
/// Writes are collected and applied in key order at the end: a transaction's keys land all over
/// the tree (records, history, event ids), and sorted inserts let neighbouring keys share page
/// visits (`examples/redb_inserts`, bench/README.md).
struct RedbTxn<'t> {
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// The last sequence number handed out.
    seq: u64,
    /// What the transaction writes, in the order written: a value, or `None` to remove the key. The
    /// last write of a key wins.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Whether `write_sorted` wrote into the table (so the transaction must be committed).
    wrote_sorted: bool,
}

impl RedbTxn<'_> {
    /// Applies the collected writes to the table, in key order.
    fn apply(&mut self) -> Result<(), StoreError> {
        let mut writes = std::mem::take(&mut self.writes);
        // Stable, so that the writes of one key stay in order; linear on writes that come
        // sorted already (a checkpoint's).
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut writes = writes.into_iter().peekable();
        while let Some((key, value)) = writes.next() {
            if writes.peek().is_some_and(|(next, _)| *next == key) {
                continue;
            }
            match value {
                Some(v) => {
                    self.table
                        .insert(key.as_slice(), v.as_slice())
                        .map_err(engine)?;
                }
                None => {
                    self.table.remove(key.as_slice()).map_err(engine)?;
                }
            }
        }
        Ok(())
    }
}

impl KvTxn for RedbTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.table.get(key).map_err(engine)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.writes.push((key, Some(value)));
        Ok(())
    }

    fn remove(&mut self, key: Vec<u8>) -> Result<(), StoreError> {
        self.writes.push((key, None));
        Ok(())
    }

    fn write_sorted<'e>(
        &mut self,
        entries: &mut dyn Iterator<Item = (&'e [u8], Option<&'e [u8]>)>,
    ) -> Result<(), StoreError> {
        self.apply()?;
        for (k, v) in entries {
            self.wrote_sorted = true;
            match v {
                Some(v) => {
                    self.table.insert(k, v).map_err(engine)?;
                }
                None => {
                    self.table.remove(k).map_err(engine)?;
                }
            }
        }
        Ok(())
    }

    fn next_seq(&mut self) -> Result<u64, StoreError> {
        self.seq += 1;
        Ok(self.seq)
    }
}
