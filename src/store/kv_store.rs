//! The store over any [`KvEngine`]: opening (schema check, token secret, the in-memory
//! suppressed index), reads, and the handle that passes writes to the writer thread (see
//! `writer`). The engines themselves live in `sled_engine` and `redb_engine`.
//!
//! # Schema versions and their migrations
//!
//! The data directory's schema version (engine metadata `schema_version`) is checked at open;
//! older versions are brought up to date there, before anything else reads the data, and a
//! version newer than this build is refused ([`StoreError::SchemaTooNew`]).
//!
//! - 1 -> 2: hourly counters move from one key per hour into one row per day.
//! - 2 -> 3: every stored value is rewritten from the positional postcard encoding (version
//!   byte 1, `legacy`) to the tag-based protobuf records (version byte 2, `records`).
//!
//! The 2 -> 3 rewrite goes kind of key by kind of key, in transactions of at most
//! [`MIGRATION_BATCH`] values, each atomic and durable on its own; the schema version is
//! written only after the last one. A crash midway leaves the old version number over a mix of
//! old and new values: each value is whole in one encoding or the other (its version byte says
//! which), so the next open runs the migration again, and it rewrites only the values still in
//! the old encoding. Values are converted one by one, with no change of meaning, so a mix is as
//! correct as either side; nothing else reads the data before the migration ends. One giant
//! transaction was the alternative: simpler to reason about, but its memory would grow with the
//! store (millions of records) and a crash would throw all its work away.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::filter::{key_hash, KnownFilter, SuppressedFilter};
use super::keys;
use super::kv::KvEngine;
use super::legacy::{self, Legacy};
pub(super) use super::records::{decode, encode};
use super::records::{decode_record, Record};
use super::writer::{writer_loop, Job};
use super::{
    AddressWrite, BounceQuery, CounterTouch, ErrorChain, Granularity, Page, PairOutcome, PairWrite,
    StoreError, StoreFuture, SuppressionQuery, SuppressionStore, WriteOutcome,
};
use crate::domain::{
    AddressRecord, BounceType, Dimension, EmailAddress, HistoryEntry, OutcomeCounts, RecordedEvent,
    StateChange, Tenant,
};

/// Version of the on-disk layout, checked at open (see the module's documentation). Version 1
/// kept one key per hour of counters (`keys::HOURLY`); version 2 keeps a row per day
/// (`keys::HOURS`); version 3 stores protobuf records instead of postcard.
pub(super) const SCHEMA_VERSION: u8 = 3;
/// Most values rewritten in one transaction by the schema 2 -> 3 migration.
const MIGRATION_BATCH: usize = 4096;
/// The kinds of keys whose values are encoded records (the others hold event ids or nothing).
pub(super) const RECORD_KINDS: [u8; 6] = [
    keys::EVENT,
    keys::ADDRESS,
    keys::HISTORY,
    keys::HOURS,
    keys::DAILY,
    keys::GOOD_DOMAIN,
];
/// Most index entries one listing page may scan before returning a short page with a cursor.
const MIN_SCAN_BUDGET: usize = 20_000;

/// A history entry as stored: send results point at their event record.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StoredHistory {
    Event(String),
    Change(StateChange),
}

/// The hourly counters of one dimension value on one UTC day: (hour of the day, counts), by
/// hour. One key per day instead of per hour: events spread over many hours share it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HourlyRow(Vec<(u8, OutcomeCounts)>);

impl HourlyRow {
    /// The hours with counts, in order.
    pub(super) fn hours(&self) -> &[(u8, OutcomeCounts)] {
        &self.0
    }

    /// The counts of hour `hour` (0-23), created empty if missing.
    pub(super) fn hour_mut(&mut self, hour: u8) -> &mut OutcomeCounts {
        let at = match self.0.binary_search_by_key(&hour, |(h, _)| *h) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (hour, OutcomeCounts::default()));
                at
            }
        };
        &mut self.0[at].1
    }
}

/// The row key and hour of the day of hourly bucket `hour` (hours since the epoch) under the
/// counter prefix `prefix` (`keys::dimension_prefix(keys::HOURS, ..)`).
pub(super) fn hourly_slot(mut prefix: Vec<u8>, hour: i64) -> (Vec<u8>, u8) {
    let day = hour.div_euclid(24);
    prefix.extend_from_slice(&keys::ordered_i64(day));
    (prefix, (hour - day * 24) as u8)
}

/// The bucket (hour or day number) of counter key `k`, stored at byte `at` as an ordered i64.
fn counter_bucket(k: &[u8], at: usize) -> Result<i64, StoreError> {
    match k.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        Some(b) => Ok(keys::i64_from_ordered(b)),
        None => Err(StoreError::corrupt(k, "malformed counter key")),
    }
}

/// Schema 1 -> 2: folds the one-key-per-hour counters into day rows, each row written in the
/// same atomic unit as the removal of the keys it was made from (a stop halfway leaves every
/// count in exactly one place, and the next open carries on).
fn migrate_hourly_counters<E: KvEngine>(engine: &E) -> Result<(), StoreError> {
    let mut rows: std::collections::BTreeMap<Vec<u8>, (Vec<Vec<u8>>, HourlyRow)> =
        Default::default();
    scan_prefix(engine, &[keys::HOURLY], |k, v| {
        // `C tenant 0 dim value 0 ordered(hour)`: at least one byte between kind and hour.
        let split = k.len().saturating_sub(8).max(2);
        let hour = counter_bucket(k, split)?;
        let mut prefix = vec![keys::HOURS];
        prefix.extend_from_slice(&k[1..split]);
        let (row_key, hour) = hourly_slot(prefix, hour);
        let counts: OutcomeCounts = decode_any(k, v)?;
        let (sources, row) = rows.entry(row_key).or_default();
        sources.push(k.to_vec());
        row.hour_mut(hour).add(&counts);
        Ok(())
    })?;
    if rows.is_empty() {
        return Ok(());
    }
    tracing::info!(
        rows = rows.len(),
        "moving hourly counters into day rows (schema 1 -> 2)"
    );
    engine.transact(|txn| {
        for (row_key, (sources, row)) in rows {
            // A row may be left by an earlier run of this migration, in either encoding.
            let mut merged: HourlyRow = match txn.get(&row_key)? {
                Some(v) => decode_any(&row_key, &v)?,
                None => HourlyRow::default(),
            };
            for (hour, counts) in row.0 {
                merged.hour_mut(hour).add(&counts);
            }
            txn.put(row_key, encode(&merged)?)?;
            for k in sources {
                txn.remove(k)?;
            }
            if txn.wants_cut() {
                txn.cut();
            }
        }
        Ok(())
    })
}

/// Decodes a value in either encoding: schema 2's (postcard) or schema 3's (protobuf).
fn decode_any<T: Record + Legacy>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let decoded = if bytes.first() == Some(&legacy::RECORD_VERSION) {
        T::from_legacy(bytes)
    } else {
        decode_record(bytes)
    };
    decoded.map_err(|e| StoreError::corrupt(key, e))
}

/// The schema-3 bytes of schema-2 value `bytes` under `key` of kind `kind`.
pub(super) fn reencode(kind: u8, key: &[u8], bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    fn via<T: Record + Legacy>(key: &[u8], bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        encode(&decode_any::<T>(key, bytes)?)
    }
    match kind {
        keys::EVENT => via::<RecordedEvent>(key, bytes),
        keys::ADDRESS => via::<AddressRecord>(key, bytes),
        keys::HISTORY => via::<StoredHistory>(key, bytes),
        keys::HOURS => via::<HourlyRow>(key, bytes),
        keys::DAILY => via::<OutcomeCounts>(key, bytes),
        keys::GOOD_DOMAIN => via::<u64>(key, bytes),
        _ => Err(StoreError::corrupt(
            key,
            "not a kind of key that holds records",
        )),
    }
}

/// Schema 2 -> 3: rewrites every value still in the postcard encoding as a protobuf record, in
/// transactions of at most `batch` values (see the module's documentation for why a stop
/// midway is safe). Returns how many values it rewrote.
pub(super) fn migrate_records<E: KvEngine>(
    engine: &E,
    batch_size: usize,
) -> Result<usize, StoreError> {
    let mut rewritten = 0;
    for kind in RECORD_KINDS {
        let prefix = [kind];
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut more = None;
            let start = match &after {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Included(&prefix[..]),
            };
            engine.scan(start, Bound::Unbounded, &mut |k, v| {
                if !k.starts_with(&prefix) {
                    return Ok(false);
                }
                if v.first() == Some(&legacy::RECORD_VERSION) {
                    batch.push((k.to_vec(), reencode(kind, k, v)?));
                    if batch.len() >= batch_size {
                        more = Some(k.to_vec());
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if !batch.is_empty() {
                rewritten += batch.len();
                engine.transact(|txn| {
                    for (k, v) in batch {
                        txn.put(k, v)?;
                        if txn.wants_cut() {
                            txn.cut();
                        }
                    }
                    Ok(())
                })?;
            }
            match more {
                Some(last) => after = Some(last),
                None => break,
            }
        }
    }
    Ok(rewritten)
}

/// Brings the data up to [`SCHEMA_VERSION`], or refuses a newer one.
fn check_schema<E: KvEngine>(engine: &E, path: &Path) -> Result<(), StoreError> {
    const KEY: &str = "schema_version";
    match engine.meta_get(KEY)?.as_deref() {
        None => engine.meta_put(KEY, &[SCHEMA_VERSION]),
        Some([SCHEMA_VERSION]) => Ok(()),
        Some(&[old @ (1 | 2)]) => {
            if old == 1 {
                migrate_hourly_counters(engine)?;
            }
            let started = std::time::Instant::now();
            tracing::info!(
                from = old,
                to = SCHEMA_VERSION,
                "rewriting stored records in the new encoding"
            );
            let rewritten = migrate_records(engine, MIGRATION_BATCH)?;
            engine.flush()?;
            engine.meta_put(KEY, &[SCHEMA_VERSION])?;
            tracing::info!(
                rewritten,
                secs = started.elapsed().as_secs_f64(),
                "stored records rewritten"
            );
            Ok(())
        }
        Some(&[newer]) if newer > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            path: path.display().to_string(),
            found: newer,
            supported: SCHEMA_VERSION,
        }),
        Some(other) => Err(StoreError::corrupt(
            KEY.as_bytes(),
            format!("unreadable schema version {other:?}"),
        )),
    }
}

/// State shared by the handle and the writer thread.
pub(super) struct Shared<E> {
    pub(super) engine: E,
    /// Exact in-memory index of suppressed addresses.
    pub(super) filter: SuppressedFilter,
    /// Superset of the addresses that have a record (loaded in the background at start-up).
    pub(super) known: KnownFilter,
    /// Set on close: the background load stops.
    closing: AtomicBool,
    /// Key for page tokens, kept with the data.
    token_secret: [u8; 32],
    /// Dimension values whose counters changed, per commit.
    pub(super) touches: broadcast::Sender<Arc<Vec<CounterTouch>>>,
    /// Why the writer thread ended, if it ended other than by `close`.
    writer_failure: watch::Sender<Option<String>>,
    path: PathBuf,
}

/// The store over engine `E`. Cheap to clone.
pub struct KvStore<E> {
    shared: Arc<Shared<E>>,
    /// Sender side of the writer thread's queue; `None` once closed.
    writer: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
    /// The writer thread, joined on close.
    writer_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// The start-up load of the known-address index, joined on close.
    loader_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<E> Clone for KvStore<E> {
    fn clone(&self) -> Self {
        KvStore {
            shared: self.shared.clone(),
            writer: self.writer.clone(),
            writer_thread: self.writer_thread.clone(),
            loader_thread: self.loader_thread.clone(),
        }
    }
}

impl<E> std::fmt::Debug for KvStore<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("path", &self.shared.path)
            .finish()
    }
}

/// Visits every committed entry whose key starts with `prefix`, in key order.
pub(super) fn scan_prefix<E: KvEngine>(
    engine: &E,
    prefix: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    engine.scan(Bound::Included(prefix), Bound::Unbounded, &mut |k, v| {
        if !k.starts_with(prefix) {
            return Ok(false);
        }
        visit(k, v)?;
        Ok(true)
    })
}

impl<E: KvEngine> KvStore<E> {
    /// Takes an opened engine: checks the schema version, loads or creates the token secret,
    /// loads the in-memory suppressed index and starts the writer thread.
    pub(super) fn start(engine: E, path: &Path) -> Result<KvStore<E>, StoreError> {
        check_schema(&engine, path)?;
        let token_secret = match engine.meta_get("token_secret")? {
            Some(v) if v.len() == 32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(&v);
                s
            }
            _ => {
                let s: [u8; 32] = rand::random();
                engine.meta_put("token_secret", &s)?;
                s
            }
        };

        let filter = SuppressedFilter::default();
        load_filter(&engine, &filter)?;

        let (touches, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            engine,
            filter,
            known: KnownFilter::default(),
            closing: AtomicBool::new(false),
            token_secret,
            touches,
            writer_failure: watch::Sender::new(None),
            path: path.to_path_buf(),
        });
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("suppressd-writer".into())
            .spawn(move || run_writer(writer_shared, rx))
            .map_err(|e| StoreError::engine("cannot start the writer thread", e))?;
        let loader_shared = shared.clone();
        let loader = std::thread::Builder::new()
            .name("suppressd-known".into())
            .spawn(move || load_known(&loader_shared))
            .map_err(|e| StoreError::engine("cannot start the index load", e))?;
        Ok(KvStore {
            shared,
            writer: Arc::new(Mutex::new(Some(tx))),
            writer_thread: Arc::new(Mutex::new(Some(handle))),
            loader_thread: Arc::new(Mutex::new(Some(loader))),
        })
    }
}

/// Runs the writer thread's loop; if it ends by a panic (a decision's panic is caught per
/// write, so this is the store's own or the engine's), says so through `writer_failure`. Its
/// queue is gone by then, so later writes answer [`StoreError::Closed`] instead of waiting.
fn run_writer<E: KvEngine>(shared: Arc<Shared<E>>, rx: mpsc::Receiver<Job>) {
    let loop_shared = shared.clone();
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer_loop(loop_shared, rx)
    }));
    if let Err(panic) = ended {
        let reason = format!(
            "the writer thread panicked: {}",
            super::writer::panic_message(&*panic)
        );
        tracing::error!(%reason, "the store takes no more writes");
        shared.writer_failure.send_replace(Some(reason));
    }
}

/// Loads the suppressed index from the `X` keys, which name tenant and address without
/// needing the records decoded.
fn load_filter<E: KvEngine>(engine: &E, filter: &SuppressedFilter) -> Result<(), StoreError> {
    let mut hashes = Vec::new();
    scan_prefix(engine, &[keys::SUPPRESSED], |k, _| {
        // `X tenant 0 inv(since) address`
        let (tenant, address) = tenant_and_address(k, 8, "malformed suppressed-index key")?;
        hashes.push(key_hash(tenant, address));
        Ok(())
    })?;
    filter.extend(hashes);
    Ok(())
}

/// The tenant and the address of a key `kind tenant 0 <skip bytes> address`.
fn tenant_and_address<'k>(
    k: &'k [u8],
    skip: usize,
    what: &str,
) -> Result<(&'k str, &'k str), StoreError> {
    let corrupt = || StoreError::corrupt(k, what.to_string());
    let rest = k.get(1..).ok_or_else(corrupt)?;
    let sep = rest.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
    let tenant = std::str::from_utf8(&rest[..sep]).map_err(|_| corrupt())?;
    let address = rest.get(sep + 1 + skip..).ok_or_else(corrupt)?;
    let address = std::str::from_utf8(address).map_err(|_| corrupt())?;
    Ok((tenant, address))
}

/// Waits for the thread in `slot`, if it is still there (a second close finds it gone).
fn join(slot: &Mutex<Option<JoinHandle<()>>>, what: &str) -> Result<(), StoreError> {
    let handle = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match handle {
        Some(handle) => handle.join().map_err(|panic| {
            let message = super::writer::panic_message(&*panic);
            StoreError::engine(format!("the {what} thread panicked"), message)
        }),
        None => Ok(()),
    }
}

/// Loads the known-address index from the record keys, in the
/// background: until it is complete, status lookups read the store for every address. The
/// writer adds the addresses of new records meanwhile, so nothing is missed.
fn load_known<E: KvEngine>(shared: &Shared<E>) {
    let started = std::time::Instant::now();
    let mut chunk = Vec::with_capacity(64 * 1024);
    let loaded = scan_prefix(&shared.engine, &[keys::ADDRESS], |k, _| {
        if shared.closing.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        // `A tenant 0 address`; a malformed key stops the load: the index stays incomplete
        // and rules nothing out
        let (tenant, address) = tenant_and_address(k, 0, "malformed record key")?;
        chunk.push(key_hash(tenant, address));
        if chunk.len() == chunk.capacity() {
            shared.known.extend(&chunk);
            chunk.clear();
        }
        Ok(())
    });
    shared.known.extend(&chunk);
    match loaded {
        Ok(()) => {
            shared.known.mark_complete();
            tracing::info!(
                addresses = shared.known.len(),
                secs = started.elapsed().as_secs_f64(),
                "known-address index loaded"
            );
        }
        Err(StoreError::Closed) => {}
        Err(e) => tracing::error!(
            error = %ErrorChain(&e),
            "cannot load the known-address index; status lookups read the store"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

impl<E: KvEngine> KvStore<E> {
    /// Hourly counters of buckets `from..to` (hours since the epoch), from the day rows.
    fn hourly_counters(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
        value: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, OutcomeCounts)>, StoreError> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        let prefix = keys::dimension_prefix(keys::HOURS, tenant.as_str(), dimension.code(), value);
        let (start, _) = hourly_slot(prefix.clone(), from);
        let (last, _) = hourly_slot(prefix.clone(), to - 1);
        self.shared.engine.scan(
            Bound::Included(&start),
            Bound::Included(&last),
            &mut |k, v| {
                let first_hour = counter_bucket(k, prefix.len())? * 24;
                let row: HourlyRow = decode(k, v)?;
                out.extend(
                    row.0
                        .into_iter()
                        .map(|(h, counts)| (first_hour + i64::from(h), counts))
                        .filter(|(bucket, _)| (from..to).contains(bucket)),
                );
                Ok(true)
            },
        )?;
        Ok(out)
    }

    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn get_decoded<T: Record>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.shared.engine.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Scans `prefix` newest first from just after `cursor`, resolving each value with
    /// `resolve`, until `limit` items are kept or the scan budget is spent.
    fn scan_page<T>(
        &self,
        prefix: &[u8],
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
        cursor: Option<&[u8]>,
        limit: usize,
        resolve: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        if cursor.is_some_and(|c| c.len() != prefix.len() + 16) {
            return Err(StoreError::BadCursor);
        }
        self.scan_keys(prefix, lower, upper, cursor, limit, resolve)
    }

    /// Like `scan_page`, for keys of any length after the prefix.
    fn scan_keys<T>(
        &self,
        prefix: &[u8],
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
        cursor: Option<&[u8]>,
        limit: usize,
        mut resolve: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let start = match cursor {
            Some(c) => {
                if !c.starts_with(prefix) || c.len() <= prefix.len() {
                    return Err(StoreError::BadCursor);
                }
                Bound::Excluded(c.to_vec())
            }
            None => match lower {
                Some(l) => Bound::Excluded(l),
                None => Bound::Included(prefix.to_vec()),
            },
        };
        let end = match upper {
            Some(u) => Bound::Included(u),
            None => {
                let mut e = prefix.to_vec();
                e.extend_from_slice(&[0xff; 17]);
                Bound::Excluded(e)
            }
        };
        let budget = (limit * 50).max(MIN_SCAN_BUDGET);
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut scanned = 0usize;
        let mut exhausted = true;
        self.shared.engine.scan(
            start.as_ref().map(|b| b.as_slice()),
            end.as_ref().map(|b| b.as_slice()),
            &mut |k, v| {
                if !k.starts_with(prefix) {
                    return Ok(false);
                }
                scanned += 1;
                last_key = Some(k.to_vec());
                if let Some(t) = resolve(k, v)? {
                    items.push(t);
                }
                if items.len() >= limit || scanned >= budget {
                    exhausted = false;
                    return Ok(false);
                }
                Ok(true)
            },
        )?;
        let next = if exhausted { None } else { last_key };
        // A full page that ended exactly at the last entry still gets a cursor; the next page is
        // then empty, which callers handle like any last page.
        Ok(Page { items, next })
    }
}

impl<E: KvEngine> SuppressionStore for KvStore<E> {
    fn write(&self, writes: Vec<AddressWrite>) -> StoreFuture<Vec<WriteOutcome>> {
        let queued = self.submit(writes);
        Box::pin(async move { queued.await?.await })
    }

    fn submit(&self, writes: Vec<AddressWrite>) -> StoreFuture<StoreFuture<Vec<WriteOutcome>>> {
        let sender = self.sender();
        Box::pin(async move {
            if writes.is_empty() {
                let done: StoreFuture<Vec<WriteOutcome>> = Box::pin(async { Ok(Vec::new()) });
                return Ok(done);
            }
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Writes { writes, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            let outcomes: StoreFuture<Vec<WriteOutcome>> =
                Box::pin(async move { answer.await.map_err(|_| StoreError::Closed)? });
            Ok(outcomes)
        })
    }

    fn write_pair(&self, write: PairWrite) -> StoreFuture<PairOutcome> {
        let sender = self.sender();
        Box::pin(async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Pair { write, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn get_record(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
    ) -> Result<Option<AddressRecord>, StoreError> {
        // most lookups are of addresses the service has never heard of: no read for those
        if !self
            .shared
            .known
            .may_exist(key_hash(tenant.as_str(), address.as_str()))
        {
            return Ok(None);
        }
        self.get_decoded(&keys::record(tenant.as_str(), address.as_str()))
    }

    fn suppressed_records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
        let t = tenant.as_str();
        // Only the addresses the filter cannot rule out are read, all in one engine call.
        let hashes: Vec<u64> = addresses.iter().map(|a| key_hash(t, a)).collect();
        let (positions, record_keys): (Vec<usize>, Vec<Vec<u8>>) = {
            let filter = self.shared.filter.reader();
            filter.warm(&hashes);
            hashes
                .iter()
                .enumerate()
                .filter(|&(_, &h)| filter.may_contain(h))
                .map(|(i, _)| (i, keys::record(t, addresses[i])))
                .unzip()
        };
        let mut out = Vec::new();
        self.shared.engine.get_many(&record_keys, &mut |k, value| {
            let record: AddressRecord = decode(&record_keys[k], value)?;
            if record.is_suppressed() {
                out.push((positions[k], record));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn list_suppressions(
        &self,
        tenant: &Tenant,
        query: &SuppressionQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(String, AddressRecord)>, StoreError> {
        let t = tenant.as_str();
        let prefix = keys::prefix(keys::SUPPRESSED, &[t]);
        // Newest first: the scan starts at `end` (exclusive) and stops after `start`.
        let lower = query.end.map(|end| keys::after_instant(&prefix, end));
        let upper = query.start.map(|start| keys::after_instant(&prefix, start));
        self.scan_keys(&prefix, lower, upper, cursor, limit, |k, _v| {
            let Some(address) = k
                .get(prefix.len() + 8..)
                .and_then(|a| std::str::from_utf8(a).ok())
            else {
                return Err(StoreError::corrupt(k, "malformed suppressed-index key"));
            };
            let record_key = keys::record(t, address);
            let Some(record) = self.get_decoded::<AddressRecord>(&record_key)? else {
                return Ok(None);
            };
            let Some(s) = &record.suppression else {
                return Ok(None);
            };
            let keep = (query.reasons.is_empty() || query.reasons.contains(&s.reason))
                && query.source.as_ref().is_none_or(|src| *src == s.source)
                && query
                    .needs_enrichment
                    .is_none_or(|n| n == record.needs_enrichment);
            Ok(keep.then(|| (address.to_string(), record)))
        })
    }

    fn known_good_domains(
        &self,
        tenant: &Tenant,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = keys::prefix(keys::GOOD_DOMAIN, &[tenant.as_str()]);
        let mut out = Vec::new();
        scan_prefix(&self.shared.engine, &prefix, |k, v| {
            let domain = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let count: u64 = decode(k, v)?;
            out.push((domain, count));
            Ok(())
        })?;
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    fn known_good_locals(
        &self,
        tenant: &Tenant,
        domain: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = keys::prefix(keys::GOOD_ADDRESS, &[tenant.as_str(), domain]);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.shared
            .engine
            .scan(Bound::Included(&prefix), Bound::Unbounded, &mut |k, _| {
                if !k.starts_with(&prefix) {
                    return Ok(false);
                }
                out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
                Ok(out.len() < limit)
            })?;
        Ok(out)
    }

    fn counters(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
        value: &str,
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, OutcomeCounts)>, StoreError> {
        if granularity == Granularity::Hourly {
            return self.hourly_counters(tenant, dimension, value, from, to);
        }
        let prefix = keys::dimension_prefix(keys::DAILY, tenant.as_str(), dimension.code(), value);
        let mut start = prefix.clone();
        start.extend_from_slice(&keys::ordered_i64(from));
        let mut end = prefix.clone();
        end.extend_from_slice(&keys::ordered_i64(to));
        let mut out = Vec::new();
        self.shared.engine.scan(
            Bound::Included(&start),
            Bound::Excluded(&end),
            &mut |k, v| {
                out.push((counter_bucket(k, prefix.len())?, decode(k, v)?));
                Ok(true)
            },
        )?;
        Ok(out)
    }

    fn dimension_values(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
    ) -> Result<Vec<String>, StoreError> {
        let mut prefix = keys::prefix(keys::VALUES, &[tenant.as_str()]);
        prefix.push(dimension.code());
        let mut out = Vec::new();
        scan_prefix(&self.shared.engine, &prefix, |k, _| {
            let value = &k[prefix.len()..k.len().saturating_sub(1).max(prefix.len())];
            out.push(String::from_utf8_lossy(value).into_owned());
            Ok(())
        })?;
        Ok(out)
    }

    fn subscribe_counters(&self) -> broadcast::Receiver<Arc<Vec<CounterTouch>>> {
        self.shared.touches.subscribe()
    }

    fn get_event(
        &self,
        tenant: &Tenant,
        event_id: &str,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        self.get_decoded(&keys::exact(keys::EVENT, &[tenant.as_str()], event_id))
    }

    fn list_bounces(
        &self,
        tenant: &Tenant,
        query: &BounceQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<RecordedEvent>, StoreError> {
        let t = tenant.as_str();
        let prefix = match &query.source {
            Some(source) => keys::prefix(keys::BY_SOURCE, &[t, source]),
            None => keys::prefix(keys::BOUNCES, &[t]),
        };
        // Newest first: the scan starts at `end` (exclusive) and stops after `start`.
        let lower = query.end.map(|end| keys::after_instant(&prefix, end));
        let upper = query.start.map(|start| keys::after_instant(&prefix, start));
        self.scan_page(&prefix, lower, upper, cursor, limit, |k, v| {
            let event_id = std::str::from_utf8(v).map_err(|e| StoreError::corrupt(k, e))?;
            let Some(event) = self.get_event(tenant, event_id)? else {
                return Ok(None);
            };
            let type_ok = if query.types.is_empty() {
                event.classification.bounce_type != BounceType::Delivered
            } else {
                query.types.contains(&event.classification.bounce_type)
            };
            let campaign_ok = query.campaign.as_ref().is_none_or(|c| *c == event.campaign);
            Ok((type_ok && campaign_ok).then_some(event))
        })
    }

    fn history(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        let prefix = keys::prefix(keys::HISTORY, &[tenant.as_str(), address.as_str()]);
        self.scan_page(&prefix, None, None, cursor, limit, |k, v| {
            let stored: StoredHistory = decode(k, v)?;
            Ok(match stored {
                StoredHistory::Change(c) => Some(HistoryEntry::StateChange(c)),
                StoredHistory::Event(id) => {
                    self.get_event(tenant, &id)?.map(HistoryEntry::SendResult)
                }
            })
        })
    }

    fn token_secret(&self) -> [u8; 32] {
        self.shared.token_secret
    }

    fn suppressed_count(&self) -> u64 {
        self.shared.filter.len()
    }

    fn indexes_loaded(&self) -> bool {
        self.shared.known.is_complete()
    }

    #[cfg(test)]
    fn wait_for_index_load(&self) -> Result<(), StoreError> {
        join(&self.loader_thread, "index load")
    }

    fn writer_failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.writer_failure.subscribe()
    }

    fn close(&self) -> Result<(), StoreError> {
        self.shared.closing.store(true, Ordering::Relaxed);
        join(&self.loader_thread, "index load")?;
        // Dropping the sender lets the writer drain its queue, flush and stop.
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        join(&self.writer_thread, "writer")?;
        self.shared.engine.flush()?;
        Ok(())
    }
}
