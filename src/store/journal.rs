//! A write-ahead journal in front of an engine (both sled and redb): a group commit is durable
//! once its writes are appended to the journal and fsynced, and the engine takes them later, in
//! large sorted checkpoints on a thread of their own.
//!
//! Why: a group's keys land all over the engine's tree (records, history, positions, indexes by
//! time). redb, a copy-on-write B-tree, pays per page touched: the same keys cost less per key
//! in a checkpoint of a few hundred thousand keys than in a group of a few thousand
//! (`examples/redb_inserts.rs`, bench/README.md). sled pays per key and per flush: a group
//! commit straight into it spends most of its time in sled's own bookkeeping, while the writer
//! here pays one sequential append and fsync, and the checkpoint applies sorted keys on the
//! other core. The caller waits only for the append.
//!
//! How:
//! - Writes that are journaled but not yet in the engine sit in memory: the `active` table takes
//!   each committed group; when it holds [`JournalOptions::memtable_bytes`], it is frozen,
//!   handed to the checkpointer, and a new journal segment starts. Readers look in `active`,
//!   then in `frozen`, then in the engine.
//! - A checkpoint writes the frozen table into the engine in one durable transaction, together
//!   with the journal state key (`keys::JOURNAL`: the last sequence number and the last
//!   generation that the engine holds). Only then are the segment's file removed and the frozen
//!   table dropped.
//! - If a checkpoint is still running when `active` is full again, the writer waits for it:
//!   memory stays bounded at about two tables.
//! - On open, the segments newer than the engine's journal state are replayed into the engine
//!   in one transaction and removed. A record cut short by a crash ends its segment (it was never
//!   acknowledged); a damaged record anywhere else is refused as corruption.
//!
//! Segment file: 8 magic bytes, then records `[u32 payload length][u64 xxh3 of the payload]
//! [payload]`, payload = `[u64 last sequence number][u32 entry count]` then per entry
//! `[u8 1 = put, 0 = remove][u32 key length][key]([u32 value length][value])`, little-endian.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use xxhash_rust::xxh3::xxh3_64;

use super::keys;
use super::kv::{Found, KvEngine, KvRead, KvSnapshot, KvTxn, Visit};
use super::memtable::{self, Table, Writes};
use super::{ErrorChain, StoreError};

/// The first bytes of every segment file.
const MAGIC: &[u8; 8] = b"SPDJNL01";
/// Bytes before a record's payload: length and checksum.
const RECORD_HEADER: usize = 12;

/// How the journal is sized (`--journal-mb`: large enough that a checkpoint's keys share the
/// engine's pages).
#[derive(Debug, Clone, Copy)]
pub(super) struct JournalOptions {
    /// Heap bytes the active table takes (its runs and hash set, see `memtable`) before it is
    /// frozen and checkpointed.
    pub memtable_bytes: usize,
    /// A table that took no write for this long is checkpointed even if not full, so that an
    /// idle server gives its memory back and a crash has little to replay.
    pub idle_checkpoint: std::time::Duration,
}

impl JournalOptions {
    /// An empty table whose merges stop at runs of a quarter of a full table, so that a merge
    /// (which holds both runs and their merge) adds at most that much memory.
    fn empty_table(&self) -> Table {
        Table::new((self.memtable_bytes / 4).max(1))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::engine(format!("journal: cannot {what} {}", path.display()), e)
}

fn corrupt(path: &Path, offset: u64, cause: &str) -> StoreError {
    StoreError::Corrupt {
        key: format!("{} at byte {offset}", path.display()),
        cause: cause.into(),
    }
}

/// The tables in memory.
struct Layers {
    active: Table,
    frozen: Option<Arc<Table>>,
}

/// A frozen table waiting for its checkpoint.
struct Checkpoint {
    table: Arc<Table>,
    /// The generation of the journal segment that holds it.
    generation: u64,
    /// The last sequence number handed out when it was frozen.
    seq: u64,
}

/// What the writer and the checkpointer tell each other.
#[derive(Default)]
struct Control {
    job: Option<Checkpoint>,
    /// A table is frozen and not yet in the engine.
    busy: bool,
    /// A checkpoint is writing into the engine right now.
    running: bool,
    /// Snapshots being read ([`JournalSnapshot`]): while there is one, no checkpoint starts, so
    /// the engine holds still under their scans. A table that fills meanwhile waits, frozen,
    /// and the writer waits when the next one fills: memory stays bounded at two tables.
    paused: usize,
    shutdown: bool,
    /// Checkpoints ended so far (tests wait on `changed` for the next one).
    #[cfg(test)]
    checkpoints_done: u64,
}

/// The segment being appended to.
struct Segment {
    file: File,
    generation: u64,
    /// Bytes of the file that hold whole, fsynced records (and the magic).
    len: u64,
    /// Set once an append failed and could not be undone: what is on disk is no longer known,
    /// so no more writes.
    failed: bool,
}

struct Inner<E> {
    base: E,
    dir: PathBuf,
    options: JournalOptions,
    layers: RwLock<Layers>,
    control: Mutex<Control>,
    changed: Condvar,
    segment: Mutex<Segment>,
    /// The last sequence number handed out.
    seq: AtomicU64,
    /// Groups committed so far (the checkpointer's idea of whether writes are coming in).
    commits: AtomicU64,
}

/// An engine behind a write-ahead journal (see the module's documentation).
pub(super) struct Journaled<E: KvEngine> {
    inner: Arc<Inner<E>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
}

/// The journal state kept in the engine: (last sequence number, last generation applied).
fn read_state<E: KvEngine>(base: &E) -> Result<(u64, u64), StoreError> {
    match base.get(&[keys::JOURNAL])? {
        None => Ok((0, 0)),
        Some(v) if v.len() == 16 => Ok((
            u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(v[8..].try_into().expect("8 bytes")),
        )),
        Some(_) => Err(StoreError::Corrupt {
            key: "journal state".into(),
            cause: "not 16 bytes".into(),
        }),
    }
}

fn state_value(seq: u64, generation: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&generation.to_le_bytes());
    v
}

/// The value of `key` in the active table, else in the frozen one: `Some(None)` if it was
/// removed, `None` if neither knows it.
fn lookup(active: &Table, frozen: Option<&Table>, key: &[u8]) -> Option<Option<Vec<u8>>> {
    let value = active.get(key).or_else(|| frozen?.get(key))?;
    Some(value.map(<[u8]>::to_vec))
}

/// Writes `table` into the engine in one durable transaction, with the journal state saying
/// that it holds everything up to sequence number `seq` and segment `generation`.
fn write_table<E: KvEngine>(
    base: &E,
    table: &Table,
    seq: u64,
    generation: u64,
) -> Result<(), StoreError> {
    base.transact(|txn| {
        txn.write_sorted(&mut table.iter())?;
        txn.put(vec![keys::JOURNAL], state_value(seq, generation))
    })
}

fn segment_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.journal"))
}

/// The generations of the segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("read", dir, e))? {
        let entry = entry.map_err(|e| io("read", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(generation) = name
            .strip_suffix(".journal")
            .and_then(|g| g.parse::<u64>().ok())
        {
            found.push(generation);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))
}

/// Creates segment `generation`, durable (file and directory entry) before it is written to.
fn create_segment(dir: &Path, generation: u64) -> Result<Segment, StoreError> {
    let path = segment_path(dir, generation);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| io("create", &path, e))?;
    file.write_all(MAGIC)
        .and_then(|_| file.sync_all())
        .map_err(|e| io("write", &path, e))?;
    sync_dir(dir)?;
    Ok(Segment {
        file,
        generation,
        len: MAGIC.len() as u64,
        failed: false,
    })
}

/// One record: the group's writes and the last sequence number after it.
fn encode_record(seq: u64, writes: &Writes) -> Vec<u8> {
    let payload_len = 12
        + writes
            .iter()
            .map(|(k, v)| 5 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len()))
            .sum::<usize>();
    let mut out = Vec::with_capacity(RECORD_HEADER + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(writes.len() as u32).to_le_bytes());
    for (k, v) in writes.iter() {
        out.push(u8::from(v.is_some()));
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        if let Some(v) = v {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
    let sum = xxh3_64(&out[RECORD_HEADER..]);
    out[4..12].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Reads a little-endian number of `N` bytes at `*at`, advancing it.
fn take<const N: usize>(buf: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let bytes = buf.get(*at..*at + N)?.try_into().ok()?;
    *at += N;
    Some(bytes)
}

fn take_bytes(buf: &[u8], at: &mut usize) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(take::<4>(buf, at)?) as usize;
    let bytes = buf.get(*at..*at + len)?.to_vec();
    *at += len;
    Some(bytes)
}

/// Decodes a checked payload into `into`; returns its sequence number.
fn decode_payload(payload: &[u8], into: &mut Table) -> Option<u64> {
    let mut at = 0;
    let seq = u64::from_le_bytes(take::<8>(payload, &mut at)?);
    let count = u32::from_le_bytes(take::<4>(payload, &mut at)?);
    let mut writes = Writes::new();
    for _ in 0..count {
        let put = take::<1>(payload, &mut at)?[0];
        let key = take_bytes(payload, &mut at)?;
        let value = match put {
            1 => Some(take_bytes(payload, &mut at)?),
            0 => None,
            _ => return None,
        };
        writes.push((key, value));
    }
    if at != payload.len() {
        return None;
    }
    if !writes.is_empty() {
        into.add(writes);
    }
    Some(seq)
}

/// Reads segment `path` into `into`. Returns the last sequence number in it and whether it
/// ended with a record cut short (which only the segment written at a crash may have).
fn read_segment(path: &Path, into: &mut Table) -> Result<(u64, bool), StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io("read", path, e))?;
    if bytes.len() < MAGIC.len() {
        // Created, but the magic never reached the disk: nothing was journaled in it.
        return Ok((0, true));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(path, 0, "not a journal segment"));
    }
    let mut at = MAGIC.len();
    let mut seq = 0;
    while at < bytes.len() {
        let header = match bytes.get(at..at + RECORD_HEADER) {
            Some(h) => h,
            None => return Ok((seq, true)),
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let sum = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        let start = at + RECORD_HEADER;
        let Some(payload) = bytes.get(start..start + len) else {
            return Ok((seq, true));
        };
        if xxh3_64(payload) != sum {
            if start + len == bytes.len() {
                // The last record, partly written: the crash came before its fsync.
                return Ok((seq, true));
            }
            return Err(corrupt(path, at as u64, "record checksum mismatch"));
        }
        seq = decode_payload(payload, into)
            .ok_or_else(|| corrupt(path, at as u64, "malformed record"))?;
        at = start + len;
    }
    Ok((seq, false))
}

impl<E: KvEngine> Journaled<E> {
    /// Puts `base` behind the journal in directory `dir` (created if missing): replays what an
    /// unclean stop left there into `base`, then starts a new segment and the checkpointer.
    pub(super) fn open(
        base: E,
        dir: &Path,
        options: JournalOptions,
    ) -> Result<Journaled<E>, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let (journaled_seq, applied) = read_state(&base)?;
        let mut seq = journaled_seq.max(base.last_seq()?);
        let found = segments(dir)?;
        let mut replay = options.empty_table();
        let mut last_generation = applied;
        let mut torn_before: Option<u64> = None;
        for &generation in &found {
            if generation <= applied {
                continue;
            }
            if let Some(earlier) = torn_before {
                return Err(corrupt(
                    &segment_path(dir, earlier),
                    0,
                    "a segment cut short is followed by another",
                ));
            }
            let (last_seq, torn) = read_segment(&segment_path(dir, generation), &mut replay)?;
            seq = seq.max(last_seq);
            last_generation = generation;
            if torn {
                torn_before = Some(generation);
            }
        }
        if last_generation > applied {
            tracing::info!(
                entries = replay.len(),
                segments = found.iter().filter(|&&g| g > applied).count(),
                "replaying the journal after an unclean stop"
            );
            write_table(&base, &replay, seq, last_generation)?;
        }
        for generation in found {
            let path = segment_path(dir, generation);
            std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
        }
        sync_dir(dir)?;
        let segment = create_segment(dir, last_generation + 1)?;
        let inner = Arc::new(Inner {
            base,
            dir: dir.to_path_buf(),
            options,
            layers: RwLock::new(Layers {
                active: options.empty_table(),
                frozen: None,
            }),
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
            segment: Mutex::new(segment),
            seq: AtomicU64::new(seq),
            commits: AtomicU64::new(0),
        });
        let worker = inner.clone();
        let checkpointer = std::thread::Builder::new()
            .name("suppressd-checkpoint".into())
            .spawn(move || worker.checkpoint_loop())
            .map_err(|e| StoreError::engine("cannot start the checkpointer", e))?;
        Ok(Journaled {
            inner,
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }
}

impl<E: KvEngine> Inner<E> {
    fn lock_control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_layers(&self) -> std::sync::RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_layers(&self) -> std::sync::RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` in memory: `Some(None)` if it was removed, `None` if memory does not
    /// know it.
    fn in_memory(layers: &Layers, key: &[u8]) -> Option<Option<Vec<u8>>> {
        lookup(&layers.active, layers.frozen.as_deref(), key)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = Self::in_memory(&self.read_layers(), key) {
            return Ok(v);
        }
        // Whatever left memory since was checkpointed into the engine first.
        self.base.get(key)
    }

    /// Runs a checkpoint of each frozen table until shut down.
    fn checkpoint_loop(&self) {
        let mut commits_seen = self.commits.load(Ordering::Relaxed);
        loop {
            let job = {
                let mut control = self.lock_control();
                loop {
                    if control.paused == 0 {
                        if let Some(job) = control.job.take() {
                            control.running = true;
                            break Some(job);
                        }
                    }
                    if control.shutdown {
                        return;
                    }
                    let (guard, waited) = self
                        .changed
                        .wait_timeout(control, self.options.idle_checkpoint)
                        .unwrap_or_else(|p| p.into_inner());
                    control = guard;
                    if waited.timed_out() && control.job.is_none() && control.paused == 0 {
                        let commits = self.commits.load(Ordering::Relaxed);
                        if commits == commits_seen {
                            break None;
                        }
                        commits_seen = commits;
                    }
                }
            };
            let Some(job) = job else {
                // Idle: freeze what there is; the next turn takes it as a job.
                let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
                if !self.read_layers().active.is_empty() && !segment.failed {
                    if let Err(e) = self.freeze(&mut segment) {
                        tracing::error!(error = %ErrorChain(&e), "cannot start an idle checkpoint");
                    }
                }
                continue;
            };
            // A failed checkpoint is tried again: its writes stay journaled and in memory.
            let mut attempt = 0u32;
            while let Err(e) = self.checkpoint(&job) {
                attempt += 1;
                tracing::error!(error = %ErrorChain(&e), attempt, "checkpoint failed; trying again");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            let mut control = self.lock_control();
            control.busy = false;
            control.running = false;
            #[cfg(test)]
            {
                control.checkpoints_done += 1;
            }
            self.changed.notify_all();
        }
    }

    /// Writes a frozen table into the engine, then lets its segment and its memory go.
    fn checkpoint(&self, job: &Checkpoint) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        write_table(&self.base, &job.table, job.seq, job.generation)?;
        self.write_layers().frozen = None;
        let path = segment_path(&self.dir, job.generation);
        // Left behind, it would only be skipped on the next open (its generation is applied).
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(error = %e, path = %path.display(), "cannot remove a checkpointed journal segment");
        }
        metrics::histogram!("suppressd_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("suppressd_checkpoint_entries").record(job.table.len() as f64);
        Ok(())
    }

    /// Freezes the active table for a checkpoint and starts a new segment, after waiting for
    /// the previous checkpoint to end.
    fn freeze(&self, segment: &mut Segment) -> Result<(), StoreError> {
        let mut control = self.no_checkpoint_running();
        let generation = segment.generation;
        *segment = create_segment(&self.dir, generation + 1)?;
        let table = {
            let mut layers = self.write_layers();
            let table = Arc::new(std::mem::replace(
                &mut layers.active,
                self.options.empty_table(),
            ));
            layers.frozen = Some(table.clone());
            metrics::gauge!("suppressd_journal_table_bytes").set(0.0);
            table
        };
        control.job = Some(Checkpoint {
            table,
            generation,
            seq: self.seq.load(Ordering::Relaxed),
        });
        control.busy = true;
        self.changed.notify_all();
        Ok(())
    }

    /// Appends a group to the journal, durably, and makes it visible.
    fn commit(&self, writes: Writes, seq: u64) -> Result<(), StoreError> {
        let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
        if segment.failed {
            return Err(StoreError::engine(
                "journal",
                "an earlier append failed; restart to recover",
            ));
        }
        let record = encode_record(seq, &writes);
        if let Err(e) = segment
            .file
            .write_all(&record)
            .and_then(|_| segment.file.sync_data())
        {
            // Not acknowledged, so it must not come back at a replay either: cut the file back
            // to its last whole record. If even that fails, stop taking writes.
            let undone = segment
                .file
                .set_len(segment.len)
                .and_then(|_| segment.file.sync_all());
            segment.failed = undone.is_err();
            let path = segment_path(&self.dir, segment.generation);
            return Err(io("append to", &path, e));
        }
        segment.len += record.len() as u64;
        self.seq.store(seq, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        // The next table is built outside the lock (only this thread, holding the segment,
        // changes the active table), so readers wait only for the swap.
        let next = self.read_layers().active.next(writes);
        let full = {
            let mut layers = self.write_layers();
            layers.active.install(next);
            let bytes = layers.active.memory();
            metrics::gauge!("suppressd_journal_table_bytes").set(bytes as f64);
            bytes >= self.options.memtable_bytes
        };
        if full {
            self.freeze(&mut segment)?;
        }
        Ok(())
    }

    /// Checkpoints everything in memory and waits for it.
    fn drain(&self) -> Result<(), StoreError> {
        let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
        if !self.read_layers().active.is_empty() {
            self.freeze(&mut segment)?;
        }
        drop(self.no_checkpoint_running());
        Ok(())
    }

    /// The control state, once no frozen table is waiting for or in its checkpoint.
    fn no_checkpoint_running(&self) -> std::sync::MutexGuard<'_, Control> {
        let mut control = self.lock_control();
        while control.busy {
            control = self
                .changed
                .wait(control)
                .unwrap_or_else(|p| p.into_inner());
        }
        control
    }
}

impl<E: KvEngine> Drop for Journaled<E> {
    fn drop(&mut self) {
        // No checkpoint here: what is not in the engine yet is in the journal (`flush` drains
        // on a clean stop). An in-flight checkpoint is let finish.
        self.inner.lock_control().shutdown = true;
        self.inner.changed.notify_all();
        if let Some(handle) = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
    }
}

/// A group commit on the journal; writes are collected.
///
/// Reads see the active table, then the frozen table and an engine reader both taken when the
/// group started. That view stays whole: during a group only the writer's own commits change
/// the active table, and a checkpoint that ends meanwhile only moves the frozen table (still
/// held here) into the engine (whose reader keeps seeing it as it was).
struct JournalTxn<'a, E: KvEngine> {
    inner: &'a Inner<E>,
    frozen: Option<Arc<Table>>,
    base: Box<dyn KvRead + 'a>,
    writes: Writes,
    seq: u64,
}

impl<E: KvEngine> KvTxn for JournalTxn<'_, E> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let layers = self.inner.read_layers();
        match lookup(&layers.active, self.frozen.as_deref(), key) {
            Some(value) => Ok(value),
            None => {
                drop(layers);
                self.base.get(key)
            }
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.writes.push((key, Some(value)));
        Ok(())
    }

    fn remove(&mut self, key: Vec<u8>) -> Result<(), StoreError> {
        self.writes.push((key, None));
        Ok(())
    }

    fn next_seq(&mut self) -> Result<u64, StoreError> {
        self.seq += 1;
        Ok(self.seq)
    }
}

impl<E: KvEngine> KvEngine for Journaled<E> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn get_many(&self, keys: &[Vec<u8>], found: Found<'_>) -> Result<(), StoreError> {
        // Memory first, under one lock; the rest from the engine. Answers go out in key order.
        let mut from_memory: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut rest: Vec<usize> = Vec::new();
        {
            let layers = self.inner.read_layers();
            if layers.active.is_empty() && layers.frozen.is_none() {
                drop(layers);
                return self.inner.base.get_many(keys, found);
            }
            for (i, k) in keys.iter().enumerate() {
                match Inner::<E>::in_memory(&layers, k) {
                    Some(Some(v)) => from_memory.push((i, v)),
                    Some(None) => {}
                    None => rest.push(i),
                }
            }
        }
        let rest_keys: Vec<Vec<u8>> = rest.iter().map(|&i| keys[i].clone()).collect();
        let mut memory = from_memory.into_iter().peekable();
        self.inner.base.get_many(&rest_keys, &mut |j, v| {
            let i = rest[j];
            while let Some((m, value)) = memory.next_if(|(m, _)| *m < i) {
                found(m, &value)?;
            }
            found(i, v)
        })?;
        for (m, value) in memory {
            found(m, &value)?;
        }
        Ok(())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        if super::kv::empty_range(start, end) {
            return Ok(());
        }
        // A copy of memory's part of the range, taken before the engine is read: whatever
        // leaves memory meanwhile is in the engine by then.
        let overlay: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            let layers = self.inner.read_layers();
            let tables: Vec<&Table> = layers
                .frozen
                .as_deref()
                .into_iter()
                .chain([&layers.active])
                .collect();
            memtable::range_over(&tables, (start, end))
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect()
        };
        if overlay.is_empty() {
            return self.inner.base.scan(start, end, visit);
        }
        let mut memory = overlay.into_iter().peekable();
        let mut stopped = false;
        self.inner.base.scan(start, end, &mut |k, v| {
            while let Some((mk, mv)) = memory.next_if(|(mk, _)| mk.as_slice() <= k) {
                let same = mk.as_slice() == k;
                if let Some(mv) = mv {
                    if !visit(&mk, &mv)? {
                        stopped = true;
                        return Ok(false);
                    }
                }
                if same {
                    // Memory holds the newer value (or the removal) of this key.
                    return Ok(true);
                }
            }
            let go_on = visit(k, v)?;
            stopped = !go_on;
            Ok(go_on)
        })?;
        if stopped {
            return Ok(());
        }
        for (mk, mv) in memory {
            if let Some(mv) = mv {
                if !visit(&mk, &mv)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn transact<T>(
        &self,
        work: impl FnOnce(&mut dyn KvTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // The frozen table before the reader: a checkpoint ending in between puts the table's
        // entries in both, which is harmless.
        let frozen = self.inner.read_layers().frozen.clone();
        let mut txn = JournalTxn {
            inner: &self.inner,
            frozen,
            base: self.inner.base.reader()?,
            writes: Writes::new(),
            seq: self.inner.seq.load(Ordering::Relaxed),
        };
        let out = work(&mut txn)?;
        if !txn.writes.is_empty() {
            self.inner.commit(txn.writes, txn.seq)?;
        }
        Ok(out)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.inner.seq.load(Ordering::Relaxed))
    }

    fn name(&self) -> &'static str {
        self.inner.base.name()
    }

    /// The cut: under the segment lock no group commit is halfway, so the tables in memory and
    /// the sequence number agree; from here on no checkpoint starts until the snapshot is
    /// dropped, so the engine changes no more once a checkpoint running now has ended.
    fn snapshot(&self) -> Result<Box<dyn KvSnapshot>, StoreError> {
        let segment = self.inner.segment.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.lock_control().paused += 1;
        let tables = {
            let layers = self.inner.read_layers();
            layers
                .frozen
                .clone()
                .into_iter()
                .chain([Arc::new(layers.active.scan_copy())])
                .collect()
        };
        let seq = self.inner.seq.load(Ordering::Relaxed);
        drop(segment);
        Ok(Box::new(JournalSnapshot {
            inner: self.inner.clone(),
            tables,
            seq,
        }))
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.base.meta_get(name)
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.base.meta_put(name, value)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.drain()?;
        self.inner.base.flush()
    }
}

/// A consistent view of a journaled engine at one commit (see [`Journaled::snapshot`]): the
/// tables that were in memory then, over the engine, which no checkpoint changes while the view
/// lives.
struct JournalSnapshot<E: KvEngine> {
    inner: Arc<Inner<E>>,
    /// Oldest first: the frozen table, then a copy of the active one.
    tables: Vec<Arc<Table>>,
    seq: u64,
}

impl<E: KvEngine> KvSnapshot for JournalSnapshot<E> {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn scan(&self, visit: Visit<'_>) -> Result<(), StoreError> {
        // A checkpoint that started before the cut writes a table this view holds anyway; once
        // it has ended the engine holds still.
        {
            let started = std::time::Instant::now();
            let mut control = self.inner.lock_control();
            while control.running {
                control = self
                    .inner
                    .changed
                    .wait(control)
                    .unwrap_or_else(|p| p.into_inner());
            }
            let waited = started.elapsed();
            if waited > std::time::Duration::from_millis(100) {
                tracing::info!(
                    secs = waited.as_secs_f64(),
                    "snapshot waited for the checkpoint running at its cut"
                );
            }
        }
        let tables: Vec<&Table> = self.tables.iter().map(|t| &**t).collect();
        let mut memory =
            memtable::range_over(&tables, (Bound::Unbounded, Bound::Unbounded)).peekable();
        let journal_state = [keys::JOURNAL];
        let mut stopped = false;
        self.inner
            .base
            .scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
                while let Some((mk, mv)) = memory.next_if(|(mk, _)| *mk <= k) {
                    if let Some(mv) = mv {
                        if mk != journal_state && !visit(mk, mv)? {
                            stopped = true;
                            return Ok(false);
                        }
                    }
                    if mk == k {
                        return Ok(true);
                    }
                }
                if k == journal_state {
                    return Ok(true);
                }
                let go_on = visit(k, v)?;
                stopped = !go_on;
                Ok(go_on)
            })?;
        if stopped {
            return Ok(());
        }
        for (mk, mv) in memory {
            if let Some(mv) = mv {
                if mk != journal_state && !visit(mk, mv)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl<E: KvEngine> Drop for JournalSnapshot<E> {
    fn drop(&mut self) {
        let mut control = self.inner.lock_control();
        control.paused -= 1;
        self.inner.changed.notify_all();
    }
}

/// The journal state that a store restored from a snapshot of sequence number `seq` starts
/// with: (key, value) to write into its engine. No segment is applied yet.
pub(super) fn restored_state(seq: u64) -> (Vec<u8>, Vec<u8>) {
    (vec![keys::JOURNAL], state_value(seq, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb_engine::RedbEngine;
    use std::collections::BTreeMap;

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    fn open(dir: &Path, memtable_bytes: usize) -> Journaled<RedbEngine> {
        let base = RedbEngine::open(dir, 4 << 20).unwrap();
        Journaled::open(
            base,
            &dir.join("journal"),
            JournalOptions {
                memtable_bytes,
                idle_checkpoint: std::time::Duration::from_secs(3600),
            },
        )
        .unwrap()
    }

    fn all(engine: &impl KvEngine) -> Model {
        let mut out = Model::new();
        engine
            .scan(Bound::Included(b"k"), Bound::Excluded(b"l"), &mut |k, v| {
                out.insert(k.to_vec(), v.to_vec());
                Ok(true)
            })
            .unwrap();
        out
    }

    fn key(i: u64) -> Vec<u8> {
        format!("k{:03}", i % 300).into_bytes()
    }

    /// xorshift: the same operations on every run.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// One group: puts and removes of random keys, applied to the model too.
    fn random_group(engine: &impl KvEngine, model: &mut Model, rng: &mut u64) {
        let n = 1 + next(rng) % 20;
        let mut ops = Vec::new();
        for _ in 0..n {
            let r = next(rng);
            let k = key(r);
            if r.is_multiple_of(5) {
                ops.push((k, None));
            } else {
                ops.push((k, Some(format!("v{}", r % 100_000).into_bytes())));
            }
        }
        engine
            .transact(|txn| {
                for (k, v) in &ops {
                    match v {
                        Some(v) => txn.put(k.clone(), v.clone())?,
                        None => txn.remove(k.clone())?,
                    }
                }
                txn.next_seq()?;
                Ok(())
            })
            .unwrap();
        for (k, v) in ops {
            match v {
                Some(v) => model.insert(k, v),
                None => model.remove(&k),
            };
        }
    }

    /// Every read path agrees with the model.
    fn check_reads(engine: &impl KvEngine, model: &Model, rng: &mut u64) {
        let probe: Vec<Vec<u8>> = (0..40).map(|_| key(next(rng))).collect();
        for k in &probe[..5] {
            assert_eq!(engine.get(k).unwrap().as_ref(), model.get(k), "get {k:?}");
        }
        let mut got = Vec::new();
        engine
            .get_many(&probe, &mut |i, v| {
                got.push((i, v.to_vec()));
                Ok(())
            })
            .unwrap();
        let want: Vec<(usize, Vec<u8>)> = probe
            .iter()
            .enumerate()
            .filter_map(|(i, k)| model.get(k).map(|v| (i, v.clone())))
            .collect();
        assert_eq!(got, want, "get_many");
        // A range scan that stops early.
        let (a, b) = (key(next(rng)), key(next(rng)));
        let (from, to) = if a <= b { (a, b) } else { (b, a) };
        let limit = (next(rng) % 30) as usize;
        let mut scanned = Vec::new();
        engine
            .scan(Bound::Included(&from), Bound::Excluded(&to), &mut |k, v| {
                scanned.push((k.to_vec(), v.to_vec()));
                Ok(scanned.len() < limit)
            })
            .unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = model
            .range::<Vec<u8>, _>((Bound::Included(&from), Bound::Excluded(&to)))
            .take(limit.max(1))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(scanned, want, "scan {from:?}..{to:?} limit {limit}");
    }

    #[test]
    fn reads_see_every_committed_group_across_checkpoints_crashes_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut last_seq = 0;
        // A table of a few groups: freezes and checkpoints all the time, on their own thread.
        for round in 0..4u32 {
            let engine = open(dir.path(), 2048);
            assert_eq!(all(&engine), model, "after reopen {round}");
            let seq = engine.last_seq().unwrap();
            assert!(seq >= last_seq, "sequence went back: {seq} < {last_seq}");
            for _ in 0..300 {
                random_group(&engine, &mut model, &mut rng);
                check_reads(&engine, &model, &mut rng);
            }
            assert_eq!(all(&engine), model);
            last_seq = engine.last_seq().unwrap();
            assert_eq!(last_seq, seq + 300, "one number per group");
            if round.is_multiple_of(2) {
                // A clean stop: everything checkpointed, the journal left empty.
                engine.flush().unwrap();
                drop(engine);
                let left = segments(&dir.path().join("journal")).unwrap();
                assert_eq!(left.len(), 1, "only the fresh segment is left: {left:?}");
            } else {
                // A crash: whatever is not checkpointed is only in the journal.
                drop(engine);
            }
        }
    }

    fn scanned(snapshot: &dyn KvSnapshot) -> Model {
        let mut seen = Model::new();
        snapshot
            .scan(&mut |k, v| {
                seen.insert(k.to_vec(), v.to_vec());
                Ok(true)
            })
            .unwrap();
        seen
    }

    #[test]
    fn a_snapshot_holds_exactly_the_groups_committed_before_it() {
        let dir = tempfile::tempdir().unwrap();
        // A table that never fills: part of the state in the engine, part in memory.
        let engine = open(dir.path(), usize::MAX);
        let mut model = Model::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100 {
            random_group(&engine, &mut model, &mut rng);
        }
        engine.flush().unwrap();
        for _ in 0..100 {
            random_group(&engine, &mut model, &mut rng);
        }
        let snapshot = engine.snapshot().unwrap();
        assert_eq!(snapshot.seq(), engine.last_seq().unwrap());
        let at_cut = model.clone();
        // A write after the cut goes into the active table, which the snapshot does not see.
        random_group(&engine, &mut model, &mut rng);
        assert_ne!(model, at_cut);
        assert_eq!(
            scanned(&*snapshot),
            at_cut,
            "the snapshot is the state at its cut"
        );
        drop(snapshot);
        assert_eq!(all(&engine), model);
    }

    #[test]
    fn writes_go_on_while_a_snapshot_is_read_and_it_still_holds_only_its_cut() {
        let dir = tempfile::tempdir().unwrap();
        // Tables of a few groups: freezes all the time. While the snapshot lives no checkpoint
        // starts, so the writer soon waits; it goes on once the snapshot is dropped.
        let engine = Arc::new(open(dir.path(), 2048));
        let mut model = Model::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            random_group(&*engine, &mut model, &mut rng);
        }
        let snapshot = engine.snapshot().unwrap();
        let at_cut = model.clone();
        let writer = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    random_group(&*engine, &mut model, &mut rng);
                }
                model
            })
        };
        assert_eq!(
            scanned(&*snapshot),
            at_cut,
            "the snapshot is the state at its cut"
        );
        drop(snapshot);
        let model = writer.join().unwrap();
        assert_eq!(all(&*engine), model, "every write after the cut went in");
        // A new snapshot sees them all; the journal's state key is never part of one.
        let again = scanned(&*engine.snapshot().unwrap());
        assert_eq!(again, model);
    }

    #[test]
    fn a_crash_before_any_checkpoint_loses_nothing_that_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = open(dir.path(), usize::MAX);
            for i in 0..50u64 {
                engine
                    .transact(|txn| txn.put(key(i), format!("v{i}").into_bytes()))
                    .unwrap();
            }
            engine.transact(|txn| txn.remove(key(7))).unwrap();
            // Not in the engine's tree yet.
            assert_eq!(engine.inner.base.get(&key(3)).unwrap(), None);
        }
        let base = RedbEngine::open(dir.path(), 4 << 20).unwrap();
        assert_eq!(
            base.get(&key(3)).unwrap(),
            None,
            "the crash left it in the journal only"
        );
        drop(base);
        let engine = open(dir.path(), usize::MAX);
        let got = all(&engine);
        assert_eq!(got.len(), 49);
        assert_eq!(got.get(&key(3)).map(Vec::as_slice), Some(&b"v3"[..]));
        assert!(!got.contains_key(&key(7)));
        // Replayed into the engine itself, so the journal could go.
        assert_eq!(
            engine.inner.base.get(&key(3)).unwrap(),
            Some(b"v3".to_vec())
        );
    }

    /// The one segment file of a journal directory.
    fn only_segment(dir: &Path) -> PathBuf {
        let found = segments(dir).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        segment_path(dir, found[0])
    }

    /// A directory whose journal holds two committed groups (`key(1)` = one, `key(2)` = two)
    /// that no checkpoint took, and the path of that segment.
    fn two_records_left_in_the_journal() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = open(dir.path(), usize::MAX);
            engine
                .transact(|txn| txn.put(key(1), b"one".to_vec()))
                .unwrap();
            engine
                .transact(|txn| txn.put(key(2), b"two".to_vec()))
                .unwrap();
        }
        let path = only_segment(&dir.path().join("journal"));
        (dir, path)
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_dropped_and_the_ones_before_it_kept() {
        let (dir, path) = two_records_left_in_the_journal();
        let len = std::fs::metadata(&path).unwrap().len();
        // The last record loses its final bytes, as when the machine stops mid-append.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        drop(file);
        let engine = open(dir.path(), usize::MAX);
        assert_eq!(engine.get(&key(1)).unwrap(), Some(b"one".to_vec()));
        assert_eq!(engine.get(&key(2)).unwrap(), None);
    }

    #[test]
    fn a_damaged_record_before_the_end_is_refused_as_corruption() {
        let (dir, path) = two_records_left_in_the_journal();
        let mut bytes = std::fs::read(&path).unwrap();
        // A bit flips in the first record's value.
        let at = bytes.windows(3).position(|w| w == b"one").unwrap();
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let base = RedbEngine::open(dir.path(), 4 << 20).unwrap();
        let err = Journaled::open(
            base,
            &dir.path().join("journal"),
            JournalOptions {
                memtable_bytes: usize::MAX,
                idle_checkpoint: std::time::Duration::from_secs(3600),
            },
        )
        .err()
        .expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn readers_never_see_a_key_go_back_while_tables_are_frozen_and_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        // A table of about two groups: a freeze every other group, a checkpoint always running.
        let engine = Arc::new(open(dir.path(), 2 * 1024));
        let keys: Vec<Vec<u8>> = (0..40).map(key).collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (engine, keys, stop) = (engine.clone(), keys.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = vec![0u64; keys.len()];
                    let mut reads = 0u64;
                    let version =
                        |v: &[u8]| -> u64 { std::str::from_utf8(v).unwrap().parse().unwrap() };
                    while !stop.load(Ordering::Relaxed) {
                        let mut now = vec![0u64; keys.len()];
                        if r == 0 {
                            engine
                                .get_many(&keys, &mut |i, v| {
                                    now[i] = version(v);
                                    Ok(())
                                })
                                .unwrap();
                        } else {
                            engine
                                .scan(Bound::Included(b"k"), Bound::Excluded(b"l"), &mut |k, v| {
                                    let i = keys.iter().position(|x| x == k).unwrap();
                                    now[i] = version(v);
                                    Ok(true)
                                })
                                .unwrap();
                        }
                        for (i, (&was, &is)) in seen.iter().zip(&now).enumerate() {
                            assert!(is >= was, "key {i} went back from version {was} to {is}");
                        }
                        seen = now;
                        reads += 1;
                    }
                    (reads, seen)
                })
            })
            .collect();
        let groups = 2_000u64;
        for g in 1..=groups {
            engine
                .transact(|txn| {
                    // A quarter of the keys each time, so that most keys sit only in the frozen
                    // table or only in the engine at some point.
                    for (i, k) in keys.iter().enumerate() {
                        if (i as u64 + g).is_multiple_of(4) {
                            txn.put(k.clone(), g.to_string().into_bytes())?;
                        }
                    }
                    Ok(())
                })
                .unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            let (reads, seen) = r.join().unwrap();
            assert!(reads > 10, "the reader hardly ran: {reads}");
            assert!(seen.iter().all(|&v| v > 0));
        }
        // Each key holds the last group that wrote it.
        for (i, k) in keys.iter().enumerate() {
            let last = (1..=groups)
                .rev()
                .find(|g| (i as u64 + g).is_multiple_of(4));
            assert_eq!(
                engine.get(k).unwrap(),
                last.map(|g| g.to_string().into_bytes())
            );
        }
    }

    #[test]
    fn an_idle_table_is_checkpointed_without_filling_up() {
        let dir = tempfile::tempdir().unwrap();
        let base = RedbEngine::open(dir.path(), 4 << 20).unwrap();
        let options = JournalOptions {
            memtable_bytes: usize::MAX,
            idle_checkpoint: std::time::Duration::from_millis(50),
        };
        let engine = Journaled::open(base, &dir.path().join("journal"), options).unwrap();
        engine
            .transact(|txn| txn.put(key(5), b"five".to_vec()))
            .unwrap();
        // The checkpointer says when a checkpoint ends; the bound only keeps a broken
        // checkpointer from hanging the test.
        let control = engine.inner.lock_control();
        let (control, waited) = engine
            .inner
            .changed
            .wait_timeout_while(control, std::time::Duration::from_secs(60), |c| {
                c.checkpoints_done == 0
            })
            .unwrap();
        assert!(!waited.timed_out(), "never checkpointed");
        assert_eq!(control.checkpoints_done, 1);
        drop(control);
        // The engine has it; the memory and the segment that held it went.
        assert_eq!(
            engine.inner.base.get(&key(5)).unwrap(),
            Some(b"five".to_vec())
        );
        assert!(engine.inner.read_layers().frozen.is_none());
        assert!(engine.inner.read_layers().active.is_empty());
        only_segment(&dir.path().join("journal"));
        assert_eq!(engine.get(&key(5)).unwrap(), Some(b"five".to_vec()));
    }

    #[test]
    fn sequence_numbers_continue_from_the_engine_that_was_there_before_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let base = RedbEngine::open(dir.path(), 4 << 20).unwrap();
            base.transact(|txn| {
                for _ in 0..41 {
                    txn.next_seq()?;
                }
                txn.put(key(0), b"x".to_vec())
            })
            .unwrap();
        }
        let engine = open(dir.path(), usize::MAX);
        let seq = engine.transact(|txn| txn.next_seq()).unwrap();
        assert_eq!(seq, 42);
    }
}
