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

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::address_hash::{AddressHash, AddressHasher};
use super::domain_index::DomainIndex;
use super::filter::{KnownFilter, SuppressedFilter};
use super::keyring::{self, DataKey, Keyring};
use super::keys;
use super::kv::KvEngine;
use super::legacy::{self, Legacy};
pub(super) use super::records::{decode, encode};
use super::records::{decode_record, Record};
use super::writer::{writer_loop, Job};
use super::{
    AddressWrite, BounceQuery, ChangePage, CounterTouch, DomainFacts, DomainOutcome, DomainRules,
    DomainWrite, ErrorChain, ForgetWrite, Granularity, Page, PairOutcome, PairWrite, StoreError,
    StoreFuture, SuppressedAddress, SuppressionQuery, SuppressionStore, WriteOutcome,
};
use crate::domain::{
    AddressId, AddressRecord, BounceType, Dimension, DomainMarks, DomainRecord, EmailAddress,
    HistoryEntry, ListChange, OutcomeCounts, RecentBounce, RecordedEvent, StateChange, Tenant,
    Timestamp,
};

/// Version of the on-disk layout, checked at open (see the module's documentation). Version 1
/// kept one key per hour of counters (`keys::HOURLY`); version 2 keeps a row per day
/// (`keys::HOURS`); version 3 stores protobuf records instead of postcard; version 4 keys
/// addresses by their keyed hash and keeps each event once, in its address's history
/// (`keys`, `layout`).
/// Version 5 seals personal data under per-address keys (`keyring`) and names delivered
/// addresses by hash (`keys::good_address`); it reads version 4's plain values and keys as
/// they are, sealing each on its next write, so moving up rewrites nothing.
pub(super) const SCHEMA_VERSION: u8 = 5;
/// Most values rewritten in one transaction by the schema 2 -> 3 migration.
const MIGRATION_BATCH: usize = 4096;
/// The kinds of keys of schemas 2 and 3 whose values are encoded records (the others hold
/// event ids or nothing): what the schema 2 -> 3 migration rewrites.
pub(super) const RECORD_KINDS: [u8; 6] = [
    keys::OLD_EVENT,
    keys::OLD_ADDRESS,
    keys::OLD_HISTORY,
    keys::HOURS,
    keys::DAILY,
    keys::GOOD_DOMAIN,
];
/// Most index entries one listing page may scan before returning a short page with a cursor.
const MIN_SCAN_BUDGET: usize = 20_000;

/// A history entry of schemas 2 and 3: send results point at their event record.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StoredHistory {
    Event(String),
    Change(StateChange),
}

/// An address's record as stored under its `R` key: the address itself (the key holds only
/// its hash) and its state. Written with its personal fields (the address, the suppression's
/// SMTP response or note, the replacement links) sealed under the address's data key
/// (`keyring`); records written before the keyring hold them in the clear, forgotten ones not
/// at all.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StoredAddress {
    /// The normalized address; empty while sealed, and once forgotten.
    pub(super) address: String,
    pub(super) record: AddressRecord,
    /// The keyring slot of the data key the personal fields are sealed under.
    pub(super) key_slot: Option<u64>,
    /// The sealed personal fields (`records::sealed_address`); empty once opened.
    pub(super) sealed: Vec<u8>,
}

impl StoredAddress {
    /// A record with its personal fields in the clear (as schema 4 wrote them).
    pub(super) fn plain(address: String, record: AddressRecord) -> StoredAddress {
        StoredAddress {
            address,
            record,
            key_slot: None,
            sealed: Vec::new(),
        }
    }
}

/// A change of a suppression list as the change log keeps it (`F` keys): the change, with the
/// keyed hash of its address (none for domain changes). Its sequence number is in its key. An
/// address's change is written with its personal fields sealed under the address's data key
/// (`seal_change`); once the address is forgotten they read as empty.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StoredChange {
    pub(super) ah: Option<AddressHash>,
    pub(super) change: ListChange,
    /// The keyring slot of the data key the personal fields are sealed under.
    pub(super) key_slot: Option<u64>,
    /// The sealed personal fields; empty once opened.
    pub(super) sealed: Vec<u8>,
}

impl StoredChange {
    /// A change with nothing sealed.
    pub(super) fn plain(ah: Option<AddressHash>, change: ListChange) -> StoredChange {
        StoredChange {
            ah,
            change,
            key_slot: None,
            sealed: Vec::new(),
        }
    }
}

/// `stored` with its personal fields sealed under `key` (in keyring slot `slot`).
pub(super) fn seal_change(
    mut stored: StoredChange,
    slot: u64,
    key: &DataKey,
) -> Result<StoredChange, StoreError> {
    let plain = super::records::take_change_personal(&mut stored.change);
    let mut sealed = Vec::new();
    key.seal_into(&plain, &mut sealed)?;
    stored.key_slot = Some(slot);
    stored.sealed = sealed;
    Ok(stored)
}

/// A history entry as stored (schema 4): a send result with the changes of state it caused
/// (at its own instant), or changes of state alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct StoredEntry {
    pub(super) event: Option<RecordedEvent>,
    pub(super) changes: Vec<StateChange>,
}

impl StoredEntry {
    /// The history items it holds, newest first as history lists them: the changes (made
    /// after the send result was recorded, the last one first), then the send result.
    pub(super) fn items(self) -> impl Iterator<Item = HistoryEntry> {
        self.changes
            .into_iter()
            .rev()
            .map(HistoryEntry::StateChange)
            .chain(self.event.map(HistoryEntry::SendResult))
    }

    /// How many history items it holds.
    fn len(&self) -> usize {
        self.changes.len() + usize::from(self.event.is_some())
    }
}

/// A domain's activity as stored under its `N tenant 0 domain 0` key: what the automatic
/// domain rules read, apart from its marks (`M`), which are kept in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct DomainActivity {
    pub(super) last_delivered: Option<Timestamp>,
    pub(super) recent_not_found: Vec<RecentBounce>,
    pub(super) bounced_after_delivery: u32,
}

impl DomainActivity {
    /// The activity part of a domain's record.
    pub(super) fn of(record: &DomainRecord) -> DomainActivity {
        DomainActivity {
            last_delivered: record.last_delivered,
            recent_not_found: record.recent_not_found.clone(),
            bounced_after_delivery: record.bounced_after_delivery,
        }
    }

    /// The whole record, with the domain's marks.
    pub(super) fn with_marks(self, marks: DomainMarks) -> DomainRecord {
        DomainRecord {
            suppression: marks.suppression,
            accept_all: marks.accept_all,
            last_delivered: self.last_delivered,
            recent_not_found: self.recent_not_found,
            bounced_after_delivery: self.bounced_after_delivery,
        }
    }
}

/// Where an event's history entry is (the value of its `P` key): the address's hash and the
/// entry's time-and-sequence part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Position {
    pub(super) ah: AddressHash,
    pub(super) instant: [u8; 16],
}

impl Position {
    pub(super) fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(self.ah.bytes());
        v.extend_from_slice(&self.instant);
        v
    }

    pub(super) fn from_bytes(key: &[u8], v: &[u8]) -> Result<Position, StoreError> {
        match (
            v.get(..16).and_then(AddressHash::from_slice),
            v.get(16..).and_then(|i| <[u8; 16]>::try_from(i).ok()),
        ) {
            (Some(ah), Some(instant)) => Ok(Position { ah, instant }),
            _ => Err(StoreError::corrupt(key, "malformed event position")),
        }
    }

    /// The key of the entry it points at.
    pub(super) fn entry_key(&self, tenant: &str) -> Vec<u8> {
        keys::at_instant(&keys::history(tenant, &self.ah), &self.instant)
    }
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
        keys::OLD_EVENT => via::<RecordedEvent>(key, bytes),
        keys::OLD_ADDRESS => via::<AddressRecord>(key, bytes),
        keys::OLD_HISTORY => via::<StoredHistory>(key, bytes),
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

/// Engine metadata set when the store holds data from before schema 5, whose personal fields
/// (and delivered-address keys) may be in the clear: only then do writes look for them.
const PLAIN_DATA: &str = "plain_data";

/// Brings the data up to [`SCHEMA_VERSION`], or refuses a newer one.
fn check_schema<E: KvEngine>(
    engine: &E,
    path: &Path,
    hasher: &AddressHasher,
) -> Result<(), StoreError> {
    const KEY: &str = "schema_version";
    match engine.meta_get(KEY)?.as_deref() {
        None => engine.meta_put(KEY, &[SCHEMA_VERSION]),
        Some([SCHEMA_VERSION]) => Ok(()),
        // Version 5 reads version 4's values and keys as they are (see SCHEMA_VERSION).
        Some([4]) => {
            engine.meta_put(PLAIN_DATA, &[1])?;
            engine.meta_put(KEY, &[SCHEMA_VERSION])
        }
        Some(&[old @ (1..=3)]) => {
            let started = std::time::Instant::now();
            tracing::info!(from = old, to = SCHEMA_VERSION, "migrating the stored data");
            if old == 1 {
                migrate_hourly_counters(engine)?;
            }
            if old <= 2 {
                let rewritten = migrate_records(engine, MIGRATION_BATCH)?;
                engine.flush()?;
                tracing::info!(
                    rewritten,
                    "stored records rewritten in the protobuf encoding"
                );
            }
            let moved = super::layout::migrate(engine, hasher, MIGRATION_BATCH)?;
            engine.flush()?;
            engine.meta_put(PLAIN_DATA, &[1])?;
            engine.meta_put(KEY, &[SCHEMA_VERSION])?;
            tracing::info!(
                moved,
                secs = started.elapsed().as_secs_f64(),
                "stored data migrated"
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
    /// Exact in-memory index of the addresses unsubscribed from some list, consulted only by
    /// screens that name a list.
    pub(super) list_filter: SuppressedFilter,
    /// Superset of the addresses that have a record (loaded in the background at start-up).
    pub(super) known: KnownFilter,
    /// Every domain's marks (suppression, accept-all), loaded at open.
    pub(super) domains: DomainIndex,
    /// The rules send results apply to their domains, once the application set them.
    pub(super) domain_rules: std::sync::RwLock<Option<Arc<dyn DomainRules>>>,
    /// Set on close: the background load stops.
    closing: AtomicBool,
    /// Key for page tokens, kept with the data.
    token_secret: [u8; 32],
    /// The keyed hash of addresses in keys and in the in-memory indexes.
    pub(super) hasher: AddressHasher,
    /// The data keys that personal data is sealed under.
    pub(super) keyring: Keyring,
    /// The store holds data from before schema 5 (see `PLAIN_DATA`): delivered addresses may
    /// still be named by their local part in `G` keys.
    pub(super) plain_data: bool,
    /// Dimension values whose counters changed, per commit.
    pub(super) touches: broadcast::Sender<Arc<Vec<CounterTouch>>>,
    /// Why the writer thread ended, if it ended other than by `close`.
    writer_failure: watch::Sender<Option<String>>,
    /// The last sequence number whose changes are durable (moved by the writer).
    pub(super) feed_head: watch::Sender<u64>,
    /// Each tenant's change log horizon: the last sequence number pruned.
    pub(super) horizons: Mutex<HashMap<String, u64>>,
    path: PathBuf,
}

impl<E> Shared<E> {
    /// The address record stored as `bytes` under `key`, its personal fields opened, with the
    /// data key they were sealed under. A record whose key was destroyed (an erasure that a
    /// crash cut short) keeps them empty; a record from before the keyring has no key.
    pub(super) fn open_address(
        &self,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<(StoredAddress, Option<DataKey>), StoreError> {
        let mut stored: StoredAddress = decode(key, bytes)?;
        let Some(slot) = stored.key_slot else {
            return Ok((stored, None));
        };
        let sealed = std::mem::take(&mut stored.sealed);
        let Some(data_key) = self.keyring.key(slot)? else {
            return Ok((stored, None));
        };
        let plain = data_key.open(&sealed).ok_or_else(|| {
            StoreError::corrupt(key, "sealed fields not authentic under their key")
        })?;
        super::records::restore_personal(&plain, &mut stored)
            .map_err(|e| StoreError::corrupt(key, e))?;
        Ok((stored, Some(data_key)))
    }

    /// The change stored as `bytes` under `key`, its personal fields opened (left empty if their
    /// key was destroyed: the address was forgotten).
    pub(super) fn open_change(&self, key: &[u8], bytes: &[u8]) -> Result<StoredChange, StoreError> {
        let mut stored: StoredChange = decode(key, bytes)?;
        let Some(slot) = stored.key_slot else {
            return Ok(stored);
        };
        let sealed = std::mem::take(&mut stored.sealed);
        if let Some(data_key) = self.keyring.key(slot)? {
            let plain = data_key.open(&sealed).ok_or_else(|| {
                StoreError::corrupt(key, "sealed fields not authentic under their key")
            })?;
            super::records::restore_change_personal(&plain, &mut stored.change)
                .map_err(|e| StoreError::corrupt(key, e))?;
        }
        Ok(stored)
    }

    /// The value stored as `bytes` under `key`, sealed or not; `None` if it was sealed under a
    /// key since destroyed.
    pub(super) fn open_value<T: Record>(
        &self,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match keyring::sealed_parts(bytes) {
            None => decode(key, bytes).map(Some),
            Some((slot, sealed)) => match self.keyring.key(slot)? {
                None => Ok(None),
                Some(data_key) => {
                    let plain = data_key.open(sealed).ok_or_else(|| {
                        StoreError::corrupt(key, "sealed value not authentic under its key")
                    })?;
                    decode(key, &plain).map(Some)
                }
            },
        }
    }

    /// The local part held by a delivered-address entry (`keys::good_address`), or by the key
    /// itself in the format before the keyring (an empty value); `None` once its key is gone.
    fn open_local(
        &self,
        prefix: &[u8],
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Option<String>, StoreError> {
        if bytes.is_empty() {
            return Ok(Some(
                String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
            ));
        }
        let Some((slot, sealed)) = keyring::sealed_parts(bytes) else {
            return Err(StoreError::corrupt(
                key,
                "malformed delivered-address entry",
            ));
        };
        let Some(data_key) = self.keyring.key(slot)? else {
            return Ok(None);
        };
        let plain = data_key
            .open(sealed)
            .ok_or_else(|| StoreError::corrupt(key, "sealed value not authentic under its key"))?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }
}

/// `value`'s stored bytes sealed under `key` (in keyring slot `slot`).
pub(super) fn seal<T: Record>(value: &T, slot: u64, key: &DataKey) -> Result<Vec<u8>, StoreError> {
    keyring::seal_value(slot, key, &encode(value)?)
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
        let hasher = AddressHasher::new(&secret::<E, 16>(&engine, "address_key")?);
        check_schema(&engine, path, &hasher)?;
        let token_secret = secret::<E, 32>(&engine, "token_secret")?;
        let keyring = open_keyring(&engine, path)?;
        let plain_data = engine.meta_get(PLAIN_DATA)?.is_some();

        let filter = SuppressedFilter::default();
        load_filter(&engine, keys::SUPPRESSED, &filter)?;
        let list_filter = SuppressedFilter::default();
        load_filter(&engine, keys::LIST_UNSUBSCRIBED, &list_filter)?;
        let domains = DomainIndex::default();
        load_domains(&engine, &domains)?;

        let (touches, _) = broadcast::channel(1024);
        let horizons = load_horizons(&engine)?;
        let feed_head = watch::Sender::new(engine.last_seq()?);
        let shared = Arc::new(Shared {
            engine,
            filter,
            list_filter,
            known: KnownFilter::default(),
            domains,
            domain_rules: std::sync::RwLock::new(None),
            closing: AtomicBool::new(false),
            token_secret,
            hasher,
            keyring,
            plain_data,
            touches,
            writer_failure: watch::Sender::new(None),
            feed_head,
            horizons: Mutex::new(horizons),
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

impl<E: KvEngine> KvStore<E> {
    /// The change log keys of every tenant made before `before` (oldest first, at most `limit`),
    /// with each tenant's new horizon. Each tenant's log is read from its start until its first
    /// change at or after `before`.
    #[allow(clippy::type_complexity)]
    fn due_changes(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, Vec<(String, u64)>), StoreError> {
        let mut removals: Vec<Vec<u8>> = Vec::new();
        let mut horizons: Vec<(String, u64)> = Vec::new();
        let mut start = vec![keys::CHANGES];
        let end = [keys::CHANGES + 1];
        loop {
            // The tenant whose log reached a kept change: the next scan skips the rest of it.
            let mut kept: Option<String> = None;
            self.shared.engine.scan(
                Bound::Included(&start[..]),
                Bound::Excluded(&end[..]),
                &mut |k, v| {
                    if removals.len() >= limit {
                        return Ok(false);
                    }
                    let (tenant, seq) = keys::change_parts(k)
                        .ok_or_else(|| StoreError::corrupt(k, "not a change log key"))?;
                    let stored: StoredChange = decode(k, v)?;
                    if stored.change.at >= before {
                        kept = Some(tenant.to_string());
                        return Ok(false);
                    }
                    removals.push(k.to_vec());
                    match horizons.last_mut() {
                        Some((t, s)) if t == tenant => *s = seq,
                        _ => horizons.push((tenant.to_string(), seq)),
                    }
                    Ok(true)
                },
            )?;
            match kept {
                // Past every key of that tenant: `F tenant 1` sorts after `F tenant 0 seq`.
                Some(tenant) if removals.len() < limit => {
                    start = keys::prefix(keys::CHANGES, &[&tenant]);
                    if let Some(last) = start.last_mut() {
                        *last = 1;
                    }
                }
                _ => return Ok((removals, horizons)),
            }
        }
    }
}

/// Every tenant's change log horizon.
fn load_horizons<E: KvEngine>(engine: &E) -> Result<HashMap<String, u64>, StoreError> {
    let mut horizons = HashMap::new();
    let start = [keys::HORIZON];
    let end = [keys::HORIZON + 1];
    engine.scan(
        Bound::Included(&start[..]),
        Bound::Excluded(&end[..]),
        &mut |k, v| {
            let tenant = String::from_utf8_lossy(&k[1..]).into_owned();
            horizons.insert(tenant, decode::<u64>(k, v)?);
            Ok(true)
        },
    )?;
    Ok(horizons)
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

/// The random secret `name` of `N` bytes in the engine's metadata, made on first use.
pub(super) fn secret<E: KvEngine, const N: usize>(
    engine: &E,
    name: &str,
) -> Result<[u8; N], StoreError> {
    if let Some(v) = engine.meta_get(name)? {
        if let Ok(s) = <[u8; N]>::try_from(v.as_slice()) {
            return Ok(s);
        }
    }
    let mut s = [0u8; N];
    rand::Rng::fill(&mut rand::rng(), &mut s[..]);
    engine.meta_put(name, &s)?;
    Ok(s)
}

/// Opens the data directory's keyring, and records its id in the engine's metadata the first
/// time (after the file is durable: a crash in between leaves a keyring the next open adopts).
fn open_keyring<E: KvEngine>(engine: &E, path: &Path) -> Result<Keyring, StoreError> {
    const KEY: &str = "keyring_id";
    let expected = match engine.meta_get(KEY)? {
        None => None,
        Some(v) => Some(
            <[u8; 16]>::try_from(v.as_slice())
                .map_err(|_| StoreError::corrupt(KEY.as_bytes(), "a keyring id is 16 bytes"))?,
        ),
    };
    let (keyring, id) = Keyring::open(path, expected)?;
    if expected.is_none() {
        engine.meta_put(KEY, &id)?;
    }
    Ok(keyring)
}

/// Loads an in-memory index from the keys of `kind` (`Y tenant 0 inv(since) ah` for the
/// suppressed index, `U tenant 0 ah` for list unsubscribes), which end with the address's hash.
fn load_filter<E: KvEngine>(
    engine: &E,
    kind: u8,
    filter: &SuppressedFilter,
) -> Result<(), StoreError> {
    let mut hashes = Vec::new();
    scan_prefix(engine, &[kind], |k, _| {
        let ah = k
            .len()
            .checked_sub(16)
            .and_then(|at| AddressHash::from_slice(&k[at..]))
            .ok_or_else(|| StoreError::corrupt(k, "malformed index key"))?;
        hashes.push(ah.short());
        Ok(())
    })?;
    filter.extend(hashes);
    Ok(())
}

/// Loads every domain's marks from the `M` keys.
fn load_domains<E: KvEngine>(engine: &E, domains: &DomainIndex) -> Result<(), StoreError> {
    scan_prefix(engine, &[keys::DOMAIN], |k, v| {
        // `M tenant 0 domain`
        let at =
            tenant_prefix_len(k).ok_or_else(|| StoreError::corrupt(k, "malformed domain key"))?;
        let (tenant, domain) = (&k[1..at - 1], &k[at..]);
        let (Ok(tenant), Ok(domain)) = (std::str::from_utf8(tenant), std::str::from_utf8(domain))
        else {
            return Err(StoreError::corrupt(k, "malformed domain key"));
        };
        let marks: DomainMarks = decode(k, v)?;
        domains.set(tenant, domain, marks);
        Ok(())
    })
}

/// The length of the `kind tenant 0` prefix of key `k`.
pub(super) fn tenant_prefix_len(k: &[u8]) -> Option<usize> {
    k.get(1..)?.iter().position(|&b| b == 0).map(|sep| sep + 2)
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
    let loaded = scan_prefix(&shared.engine, &[keys::RECORD], |k, _| {
        if shared.closing.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        // `R tenant 0 ah`; a malformed key stops the load: the index stays incomplete and
        // rules nothing out
        let prefix_len =
            tenant_prefix_len(k).ok_or_else(|| StoreError::corrupt(k, "malformed record key"))?;
        let ah = AddressHash::from_slice(&k[prefix_len..])
            .ok_or_else(|| StoreError::corrupt(k, "malformed record key"))?;
        chunk.push(ah.short());
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

/// A history page's cursor: entry key `key`, of which `given` items were given.
fn history_cursor(key: &[u8], given: usize) -> Vec<u8> {
    let mut c = key.to_vec();
    // An entry holds a send result and the few changes it caused.
    c.push(u8::try_from(given).unwrap_or(u8::MAX));
    c
}

impl<E: KvEngine> KvStore<E> {
    /// The send result of the history entry at `instant` of address `ah`.
    fn event_at(
        &self,
        tenant: &str,
        ah: &AddressHash,
        instant: &[u8; 16],
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let key = keys::at_instant(&keys::history(tenant, ah), instant);
        let Some(value) = self.shared.engine.get(&key)? else {
            return Ok(None);
        };
        Ok(self
            .shared
            .open_value::<StoredEntry>(&key, &value)?
            .and_then(|entry| entry.event))
    }

    /// Bounces of every source, newest first: the per-source lists merged (sources from the
    /// dimension-value index, plus bounces without a source). A page's cursor is the `T tenant
    /// 0` prefix followed by the time-and-sequence part of the last entry read.
    fn list_all_bounces(
        &self,
        tenant: &Tenant,
        query: &BounceQuery,
        cursor: Option<&[u8]>,
        limit: usize,
        keep: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<Page<RecordedEvent>, StoreError> {
        let t = tenant.as_str();
        let all = keys::prefix(keys::BOUNCES, &[t]);
        let after: Option<[u8; 16]> = match cursor {
            None => None,
            Some(c) if c.len() == all.len() + 16 && c.starts_with(&all) => keys::instant_of(c),
            Some(_) => return Err(StoreError::BadCursor),
        };
        let mut sources = self.dimension_values(tenant, Dimension::Source)?;
        sources.push(String::new());
        let budget = (limit * 50).max(MIN_SCAN_BUDGET);
        let mut lists: Vec<SourceList> = sources
            .iter()
            .map(|source| {
                let prefix = keys::prefix(keys::BOUNCES, &[t, source]);
                // Newest first: from just after the cursor or `end`, down to `start`.
                let mut from = query.end.map(|end| keys::after_instant(&prefix, end));
                if let Some(instant) = &after {
                    let past = keys::at_instant(&prefix, instant);
                    if from.as_ref().is_none_or(|f| past > *f) {
                        from = Some(past);
                    }
                }
                let upper = match query.start {
                    Some(start) => Bound::Included(keys::after_instant(&prefix, start)),
                    None => {
                        let mut e = prefix.clone();
                        e.extend_from_slice(&[0xff; 17]);
                        Bound::Excluded(e)
                    }
                };
                SourceList {
                    from: from.map_or(Bound::Included(prefix.clone()), Bound::Excluded),
                    upper,
                    prefix,
                    ahead: std::collections::VecDeque::new(),
                    done: false,
                }
            })
            .collect();
        let mut items = Vec::new();
        let mut scanned = 0usize;
        let mut last: Option<[u8; 16]>;
        loop {
            // The newest entry still ahead in any list.
            let mut best: Option<usize> = None;
            for i in 0..lists.len() {
                if lists[i].ahead.is_empty() && !lists[i].done {
                    lists[i].fill(&self.shared.engine, limit.clamp(16, 256))?;
                }
                if let Some((instant, _)) = lists[i].ahead.front() {
                    if best.is_none_or(|b| *instant < lists[b].ahead[0].0) {
                        best = Some(i);
                    }
                }
            }
            let Some(b) = best else {
                return Ok(Page { items, next: None });
            };
            let Some((instant, ah)) = lists[b].ahead.pop_front() else {
                return Ok(Page { items, next: None });
            };
            scanned += 1;
            last = Some(instant);
            if let Some(event) = self.event_at(t, &ah, &instant)? {
                if keep(&event) {
                    items.push(event);
                }
            }
            if items.len() >= limit || scanned >= budget {
                break;
            }
        }
        Ok(Page {
            items,
            next: last.map(|instant| keys::at_instant(&all, &instant)),
        })
    }
}

/// One source's bounce list in a merged listing: entries read ahead, and where to go on.
struct SourceList {
    prefix: Vec<u8>,
    from: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    ahead: std::collections::VecDeque<([u8; 16], AddressHash)>,
    done: bool,
}

impl SourceList {
    /// Reads up to `n` more entries.
    fn fill<E: KvEngine>(&mut self, engine: &E, n: usize) -> Result<(), StoreError> {
        let mut last = None;
        let mut read = 0;
        engine.scan(
            self.from.as_ref().map(Vec::as_slice),
            self.upper.as_ref().map(Vec::as_slice),
            &mut |k, v| {
                if !k.starts_with(&self.prefix) {
                    return Ok(false);
                }
                let instant = keys::instant_of(k)
                    .filter(|_| k.len() == self.prefix.len() + 16)
                    .ok_or_else(|| StoreError::corrupt(k, "malformed bounce index key"))?;
                let ah = AddressHash::from_slice(v)
                    .ok_or_else(|| StoreError::corrupt(k, "malformed bounce index entry"))?;
                self.ahead.push_back((instant, ah));
                last = Some(k.to_vec());
                read += 1;
                Ok(read < n)
            },
        )?;
        match last {
            Some(k) if read == n => self.from = Bound::Excluded(k),
            _ => self.done = true,
        }
        Ok(())
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

    fn forget(&self, write: ForgetWrite) -> StoreFuture<WriteOutcome> {
        let sender = self.sender();
        Box::pin(async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Forget { write, reply })
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
        let ah = self.shared.hasher.hash(tenant.as_str(), address.as_str());
        // most lookups are of addresses the service has never heard of: no read for those
        if !self.shared.known.may_exist(ah.short()) {
            return Ok(None);
        }
        let key = keys::record(tenant.as_str(), &ah);
        match self.shared.engine.get(&key)? {
            Some(v) => Ok(Some(self.shared.open_address(&key, &v)?.0.record)),
            None => Ok(None),
        }
    }

    fn address_id(&self, tenant: &Tenant, address: &EmailAddress) -> AddressId {
        AddressId(
            *self
                .shared
                .hasher
                .hash(tenant.as_str(), address.as_str())
                .bytes(),
        )
    }

    fn suppressed_records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
        lists: bool,
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
        let t = tenant.as_str();
        // Only the addresses the filters cannot rule out are read, all in one engine call.
        let hashes: Vec<AddressHash> = addresses
            .iter()
            .map(|a| self.shared.hasher.hash(t, a))
            .collect();
        let short: Vec<u64> = hashes.iter().map(AddressHash::short).collect();
        let (positions, record_keys): (Vec<usize>, Vec<Vec<u8>>) = {
            let filter = self.shared.filter.reader();
            let listed = lists.then(|| self.shared.list_filter.reader());
            short
                .iter()
                .enumerate()
                .filter(|&(_, &h)| {
                    filter.may_contain(h) || listed.as_ref().is_some_and(|l| l.may_contain(h))
                })
                .map(|(i, _)| (i, keys::record(t, &hashes[i])))
                .unzip()
        };
        let mut out = Vec::new();
        self.shared.engine.get_many(&record_keys, &mut |k, value| {
            let (stored, _) = self.shared.open_address(&record_keys[k], value)?;
            let record = stored.record;
            if record.is_suppressed() || (lists && !record.list_unsubscribes.is_empty()) {
                out.push((positions[k], record));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn due_expiries(
        &self,
        now: Timestamp,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(Tenant, EmailAddress)>, StoreError> {
        let mut start = match cursor {
            Some(c) if c.first() == Some(&keys::EXPIRY) => Bound::Excluded(c.to_vec()),
            Some(_) => return Err(StoreError::BadCursor),
            None => Bound::Included(vec![keys::EXPIRY]),
        };
        let mut items = Vec::new();
        loop {
            // Each tenant's entries are in expiry order: its due ones come first, and the
            // first that is not due sends the scan on to the next tenant.
            let mut next_tenant: Option<Vec<u8>> = None;
            let mut full_at: Option<Vec<u8>> = None;
            self.shared.engine.scan(
                start.as_ref().map(Vec::as_slice),
                Bound::Unbounded,
                &mut |k, _| {
                    if k.first() != Some(&keys::EXPIRY) {
                        return Ok(false);
                    }
                    // `Z tenant 0 ordered(expires_at) ah`
                    let malformed = || StoreError::corrupt(k, "malformed expiry-index key");
                    let prefix_len = tenant_prefix_len(k).ok_or_else(malformed)?;
                    let end = k
                        .get(prefix_len..prefix_len + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(keys::i64_from_ordered)
                        .ok_or_else(malformed)?;
                    if end > now.micros() {
                        let mut after = k[..prefix_len - 1].to_vec();
                        after.push(1);
                        next_tenant = Some(after);
                        return Ok(false);
                    }
                    let ah = k
                        .get(prefix_len + 8..)
                        .and_then(AddressHash::from_slice)
                        .ok_or_else(malformed)?;
                    let tenant = std::str::from_utf8(&k[1..prefix_len - 1])
                        .ok()
                        .and_then(|t| Tenant::parse(t).ok())
                        .ok_or_else(malformed)?;
                    let record_key = keys::record(tenant.as_str(), &ah);
                    let stored = match self.shared.engine.get(&record_key)? {
                        Some(v) => Some(self.shared.open_address(&record_key, &v)?.0),
                        None => None,
                    };
                    match stored {
                        Some(stored) => match EmailAddress::parse(&stored.address) {
                            Ok(address) => items.push((tenant, address)),
                            // A record without its address text cannot be written by address.
                            Err(_) => tracing::debug!("an expiring record without an address"),
                        },
                        None => tracing::debug!("an expiry-index entry without a record"),
                    }
                    if items.len() >= limit {
                        full_at = Some(k.to_vec());
                        return Ok(false);
                    }
                    Ok(true)
                },
            )?;
            if let Some(last) = full_at {
                return Ok(Page {
                    items,
                    next: Some(last),
                });
            }
            match next_tenant {
                Some(after) => start = Bound::Included(after),
                None => return Ok(Page { items, next: None }),
            }
        }
    }

    fn list_suppressions(
        &self,
        tenant: &Tenant,
        query: &SuppressionQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SuppressedAddress>, StoreError> {
        let t = tenant.as_str();
        let prefix = keys::prefix(keys::SUPPRESSED, &[t]);
        // Newest first: the scan starts at `end` (exclusive) and stops after `start`.
        let lower = query.end.map(|end| keys::after_instant(&prefix, end));
        let upper = query.start.map(|start| keys::after_instant(&prefix, start));
        self.scan_keys(&prefix, lower, upper, cursor, limit, |k, _v| {
            let Some(ah) = k.get(prefix.len() + 8..).and_then(AddressHash::from_slice) else {
                return Err(StoreError::corrupt(k, "malformed suppressed-index key"));
            };
            let record_key = keys::record(t, &ah);
            let Some(value) = self.shared.engine.get(&record_key)? else {
                return Ok(None);
            };
            let (
                StoredAddress {
                    address, record, ..
                },
                _,
            ) = self.shared.open_address(&record_key, &value)?;
            let Some(s) = &record.suppression else {
                return Ok(None);
            };
            let keep = query.in_force_at.is_none_or(|t| s.blocks_at(t))
                && (query.reasons.is_empty() || query.reasons.contains(&s.reason))
                && query.source.as_ref().is_none_or(|src| *src == s.source)
                && query
                    .needs_enrichment
                    .is_none_or(|n| n == record.needs_enrichment);
            Ok(keep.then_some(SuppressedAddress {
                address,
                id: AddressId(*ah.bytes()),
                record,
            }))
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
            .scan(Bound::Included(&prefix), Bound::Unbounded, &mut |k, v| {
                if !k.starts_with(&prefix) {
                    return Ok(false);
                }
                if let Some(local) = self.shared.open_local(&prefix, k, v)? {
                    out.push(local);
                }
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
        let t = tenant.as_str();
        let key = keys::position(t, event_id);
        let Some(position) = self.shared.engine.get(&key)? else {
            return Ok(None);
        };
        let position = Position::from_bytes(&key, &position)?;
        self.event_at(t, &position.ah, &position.instant)
    }

    fn list_bounces(
        &self,
        tenant: &Tenant,
        query: &BounceQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<RecordedEvent>, StoreError> {
        let t = tenant.as_str();
        let keep = |event: &RecordedEvent| {
            let type_ok = if query.types.is_empty() {
                event.classification.bounce_type != BounceType::Delivered
            } else {
                query.types.contains(&event.classification.bounce_type)
            };
            type_ok && query.campaign.as_ref().is_none_or(|c| *c == event.campaign)
        };
        let Some(source) = &query.source else {
            return self.list_all_bounces(tenant, query, cursor, limit, keep);
        };
        let prefix = keys::prefix(keys::BOUNCES, &[t, source]);
        // Newest first: the scan starts at `end` (exclusive) and stops after `start`.
        let lower = query.end.map(|end| keys::after_instant(&prefix, end));
        let upper = query.start.map(|start| keys::after_instant(&prefix, start));
        self.scan_page(&prefix, lower, upper, cursor, limit, |k, v| {
            let ah = AddressHash::from_slice(v)
                .ok_or_else(|| StoreError::corrupt(k, "malformed bounce index entry"))?;
            let instant = keys::instant_of(k)
                .ok_or_else(|| StoreError::corrupt(k, "malformed bounce index key"))?;
            Ok(self.event_at(t, &ah, &instant)?.filter(|e| keep(e)))
        })
    }

    fn history(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        let ah = self.shared.hasher.hash(tenant.as_str(), address.as_str());
        let prefix = keys::history(tenant.as_str(), &ah);
        // A cursor is the key of the last entry read, then how many of its items were given.
        let (start, mut skip) = match cursor {
            None => (Bound::Excluded(prefix.clone()), 0),
            Some(c) => {
                if c.len() != prefix.len() + 17 || !c.starts_with(&prefix) {
                    return Err(StoreError::BadCursor);
                }
                let (key, given) = c.split_at(prefix.len() + 16);
                (Bound::Included(key.to_vec()), usize::from(given[0]))
            }
        };
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 17]);
        let budget = (limit * 50).max(MIN_SCAN_BUDGET);
        let mut items = Vec::new();
        let mut next = None;
        let mut scanned = 0;
        self.shared.engine.scan(
            start.as_ref().map(Vec::as_slice),
            Bound::Excluded(&end),
            &mut |k, v| {
                scanned += 1;
                // An entry sealed under a destroyed key holds nothing to show.
                let entry = self
                    .shared
                    .open_value::<StoredEntry>(k, v)?
                    .unwrap_or_default();
                let len = entry.len();
                let from = std::mem::take(&mut skip).min(len);
                for (given, item) in entry.items().enumerate().skip(from) {
                    if items.len() == limit {
                        next = Some(history_cursor(k, given));
                        return Ok(false);
                    }
                    items.push(item);
                }
                if items.len() == limit || scanned >= budget {
                    next = Some(history_cursor(k, len));
                    return Ok(false);
                }
                Ok(true)
            },
        )?;
        Ok(Page { items, next })
    }

    fn changes(&self, tenant: &Tenant, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        let t = tenant.as_str();
        // Only what is durable: a commit's changes become visible once its head is published.
        let head = *self.shared.feed_head.borrow();
        if after > head {
            return Err(StoreError::PositionAhead { head });
        }
        let mut page = ChangePage {
            items: Vec::new(),
            read_to: after,
            more: false,
        };
        if after < head && limit > 0 {
            let start = keys::change(t, after.saturating_add(1));
            let end = keys::change(t, head);
            self.shared.engine.scan(
                Bound::Included(&start[..]),
                Bound::Included(&end[..]),
                &mut |k, v| {
                    if page.items.len() == limit {
                        page.more = true;
                        return Ok(false);
                    }
                    let (_, seq) = keys::change_parts(k)
                        .ok_or_else(|| StoreError::corrupt(k, "not a change log key"))?;
                    let mut stored = self.shared.open_change(k, v)?;
                    stored.change.seq = seq;
                    page.read_to = seq;
                    page.items.push(stored.change);
                    Ok(true)
                },
            )?;
            if !page.more {
                // Nothing else committed up to the head: the next read starts there.
                page.read_to = head;
            }
        }
        // Checked after the read: a prune that ran meanwhile may have removed what it skipped.
        let horizon = self
            .shared
            .horizons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .copied()
            .unwrap_or(0);
        if after < horizon {
            return Err(StoreError::ChangesPruned { horizon });
        }
        Ok(page)
    }

    fn change_head(&self) -> watch::Receiver<u64> {
        self.shared.feed_head.subscribe()
    }

    fn prune_changes(&self, before: Timestamp, limit: usize) -> StoreFuture<u64> {
        let sender = self.sender();
        let due = self.due_changes(before, limit);
        Box::pin(async move {
            let (removals, horizons) = due?;
            if removals.is_empty() {
                return Ok(0);
            }
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Prune {
                    removals,
                    horizons,
                    reply,
                })
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn write_domain(&self, write: DomainWrite) -> StoreFuture<DomainOutcome> {
        let sender = self.sender();
        Box::pin(async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Domain { write, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn set_domain_rules(&self, rules: Arc<dyn DomainRules>) {
        *self
            .shared
            .domain_rules
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(rules);
    }

    fn has_marked_domains(&self, tenant: &Tenant) -> bool {
        self.shared.domains.has_tenant(tenant.as_str())
    }

    fn domain_facts(&self, tenant: &Tenant, domains: &[&str]) -> Vec<(usize, DomainFacts)> {
        self.shared.domains.facts(tenant.as_str(), domains)
    }

    fn domain(&self, tenant: &Tenant, domain: &str) -> Result<DomainRecord, StoreError> {
        let t = tenant.as_str();
        let activity: DomainActivity = self
            .get_decoded(&keys::domain_log(t, domain))?
            .unwrap_or_default();
        Ok(activity.with_marks(self.shared.domains.get(t, domain)))
    }

    fn domain_history(
        &self,
        tenant: &Tenant,
        domain: &str,
        limit: usize,
    ) -> Result<Vec<StateChange>, StoreError> {
        let prefix = keys::domain_log(tenant.as_str(), domain);
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 17]);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // The key equal to the prefix is the activity record; history entries follow it.
        self.shared.engine.scan(
            Bound::Excluded(&prefix),
            Bound::Excluded(&end),
            &mut |k, v| {
                let entry: StoredEntry = decode(k, v)?;
                for item in entry.changes.into_iter().rev() {
                    out.push(item);
                    if out.len() == limit {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    fn list_suppressed_domains(
        &self,
        tenant: &Tenant,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(String, DomainRecord)>, StoreError> {
        // A cursor is the last domain given: its suppression's time (8 bytes), then its name.
        let after = match cursor {
            None => None,
            Some(c) => {
                let (since, domain) = c.split_at_checked(8).ok_or(StoreError::BadCursor)?;
                let since = <[u8; 8]>::try_from(since).map_err(|_| StoreError::BadCursor)?;
                let domain = std::str::from_utf8(domain).map_err(|_| StoreError::BadCursor)?;
                Some((Timestamp(keys::i64_from_ordered(since)), domain))
            }
        };
        let t = tenant.as_str();
        let (marked, more) = self.shared.domains.suppressed_page(t, after, limit);
        let mut items = Vec::with_capacity(marked.len());
        for (domain, marks) in marked {
            let activity: DomainActivity = self
                .get_decoded(&keys::domain_log(t, &domain))?
                .unwrap_or_default();
            items.push((domain, activity.with_marks(marks)));
        }
        let next = match items.last() {
            Some((domain, record)) if more => {
                let since = record.suppression.as_ref().map_or(0, |s| s.since.micros());
                let mut c = keys::ordered_i64(since).to_vec();
                c.extend_from_slice(domain.as_bytes());
                Some(c)
            }
            _ => None,
        };
        Ok(Page { items, next })
    }

    fn records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
        let t = tenant.as_str();
        let (positions, record_keys): (Vec<usize>, Vec<Vec<u8>>) = addresses
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let ah = self.shared.hasher.hash(t, a);
                self.shared
                    .known
                    .may_exist(ah.short())
                    .then(|| (i, keys::record(t, &ah)))
            })
            .unzip();
        let mut out = Vec::new();
        self.shared.engine.get_many(&record_keys, &mut |k, value| {
            let (stored, _) = self.shared.open_address(&record_keys[k], value)?;
            out.push((positions[k], stored.record));
            Ok(())
        })?;
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    fn token_secret(&self) -> [u8; 32] {
        self.shared.token_secret
    }

    fn snapshot(&self) -> StoreFuture<super::StoreSnapshot> {
        let sender = self.sender();
        let shared = self.shared.clone();
        Box::pin(async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Snapshot { reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            let (view, keyring) = answer.await.map_err(|_| StoreError::Closed)??;
            super::StoreSnapshot::new(&shared.engine, view, keyring)
        })
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
