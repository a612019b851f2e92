//! The default engine, sled 0.34: one tree holding every record (see `keys`), metadata in the
//! default tree. In the store it sits behind the write-ahead journal (`journal`), whose
//! checkpoints and replays write into it.
//!
//! A transaction is applied as several `apply_batch` calls of at most [`BATCH_CUT_KEYS`] keys,
//! then flushed once. Batches are kept well under a thousand keys, because larger ones make
//! sled 0.34 hold memory per key for the life of the process.

use std::ops::Bound;
use std::path::Path;

use super::kv::{empty_range, KvEngine, KvTxn, Visit};
use super::{StoreError, REDB_FILE};

/// Keys after which a batch is closed (between writes). Each write adds a handful of keys and
/// the batch's counter updates a few more, so batches stay well under a thousand keys.
const BATCH_CUT_KEYS: usize = 600;
/// Entries of a journal checkpoint shared out over the insert threads at a time.
const INSERT_CHUNK: usize = 65_536;
/// Most threads that insert a checkpoint's entries at once.
const MAX_INSERT_THREADS: usize = 4;
/// Name of the tree holding the records.
const TREE: &str = "suppression.v1";

/// The sled engine.
pub(super) struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::engine("sled", e)
}

/// Whether `dir` holds a sled database.
pub(super) fn holds_sled_data(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

impl SledEngine {
    /// Opens (or creates) the database in `path`.
    pub(super) fn open(path: &Path, cache_capacity: u64) -> Result<SledEngine, StoreError> {
        if path.join(REDB_FILE).exists() {
            return Err(StoreError::OtherEngine {
                path: path.display().to_string(),
                found: "redb",
                wanted: "sled",
            });
        }
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::engine(format!("cannot create {}", path.display()), e))?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked(path.display().to_string())
                }
                other => engine(other),
            })?;
        let tree = db.open_tree(TREE).map_err(engine)?;
        Ok(SledEngine { db, tree })
    }
}

impl KvEngine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(engine)?.map(|v| v.to_vec()))
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
        for item in self.tree.range::<&[u8], _>((start, end)) {
            let (k, v) = item.map_err(engine)?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn transact<T>(
        &self,
        work: impl FnOnce(&mut dyn KvTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = SledTxn {
            engine: self,
            batches: Vec::new(),
            current: sled::Batch::default(),
            current_keys: 0,
            applied: false,
        };
        let out = work(&mut txn)?;
        txn.cut();
        if txn.batches.is_empty() && !txn.applied {
            return Ok(out);
        }
        for batch in txn.batches {
            self.tree.apply_batch(batch).map_err(engine)?;
        }
        self.db.flush().map_err(engine)?;
        Ok(out)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        // sled's ids only grow: a fresh one is greater than every one handed out.
        self.db.generate_id().map_err(engine)
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(name).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db.insert(name, value).map_err(engine)?;
        self.db.flush().map_err(engine)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(engine)?;
        Ok(())
    }
}

/// Inserts (`Some`) and removes (`None`) `entries`, each key once, split into contiguous
/// parts over `threads` threads.
fn insert_shared_out(
    tree: &sled::Tree,
    entries: &[(&[u8], Option<&[u8]>)],
    threads: usize,
) -> Result<(), StoreError> {
    fn insert_all(tree: &sled::Tree, part: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        for &(k, v) in part {
            match v {
                Some(v) => tree.insert(k, v).map(drop),
                None => tree.remove(k).map(drop),
            }
            .map_err(engine)?;
        }
        Ok(())
    }
    if threads <= 1 || entries.len() < 1024 {
        return insert_all(tree, entries);
    }
    let per_thread = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = entries
            .chunks(per_thread)
            .map(|part| scope.spawn(move || insert_all(tree, part)))
            .collect();
        parts.into_iter().try_for_each(|part| {
            part.join().unwrap_or_else(|_| {
                Err(StoreError::engine(
                    "sled",
                    "a checkpoint insert thread panicked",
                ))
            })
        })
    })
}

/// A group commit on sled: batches of under a thousand keys, applied and flushed at the end.
struct SledTxn<'a> {
    engine: &'a SledEngine,
    batches: Vec<sled::Batch>,
    current: sled::Batch,
    current_keys: usize,
    /// Whether `write_sorted` wrote into the tree already.
    applied: bool,
}

impl KvTxn for SledTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get(key)
    }

    fn contains(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        self.engine.tree.contains_key(key).map_err(engine)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.current.insert(key, value);
        self.current_keys += 1;
        Ok(())
    }

    fn remove(&mut self, key: Vec<u8>) -> Result<(), StoreError> {
        self.current.remove(key);
        self.current_keys += 1;
        Ok(())
    }

    /// Inserts the entries key by key as they come, in chunks shared out over a few threads
    /// (each takes a contiguous key range of the chunk), instead of holding copies of them all
    /// until the end (a journal checkpoint or replay passes hundreds of thousands). A single
    /// insert costs sled less per key than a batch, and sled takes inserts from several threads
    /// at once (bench/README.md, "sled at its best"). Only the journal writes this way: its
    /// writes are whole values replayed in order, each key once, so applying part of them before
    /// a failure leaves nothing that a replay does not set right. Everything is flushed before
    /// `transact` returns.
    fn write_sorted<'e>(
        &mut self,
        entries: &mut dyn Iterator<Item = (&'e [u8], Option<&'e [u8]>)>,
    ) -> Result<(), StoreError> {
        self.cut();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_INSERT_THREADS);
        let mut chunk = Vec::with_capacity(INSERT_CHUNK);
        loop {
            chunk.clear();
            chunk.extend((&mut *entries).take(INSERT_CHUNK));
            if chunk.is_empty() {
                return Ok(());
            }
            insert_shared_out(&self.engine.tree, &chunk, threads)?;
            self.applied = true;
        }
    }

    fn next_seq(&mut self) -> Result<u64, StoreError> {
        self.engine.db.generate_id().map_err(engine)
    }

    fn wants_cut(&self) -> bool {
        self.current_keys >= BATCH_CUT_KEYS
    }

    fn cut(&mut self) {
        if self.current_keys > 0 {
            self.batches.push(std::mem::take(&mut self.current));
            self.current_keys = 0;
        }
    }
}
