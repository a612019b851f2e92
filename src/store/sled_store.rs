//! The embedded default store, on sled 0.34.
//!
//! All writes go through one writer thread. It takes every write that is waiting, applies them
//! in order (each write's keys in one atomic `apply_batch`), flushes once, and only then
//! answers the callers: group commit, so many concurrent writers share one fsync. Batches are
//! kept to about a thousand keys, because larger ones make sled 0.34 hold memory per key for the
//! life of the process.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::filter::{key_hash, SuppressedFilter};
use super::keys;
use super::{
    AddressWrite, BounceQuery, Decision, Page, StoreError, StoreFuture, SuppressionStore,
    WriteOutcome,
};
use crate::domain::{
    AddressRecord, BounceType, EmailAddress, HistoryEntry, RecordedEvent, StateChange, Suppression,
    Tenant, Timestamp,
};

/// Version of the on-disk layout, checked at open.
const SCHEMA_VERSION: u8 = 1;
/// Version byte in front of every encoded value.
const RECORD_VERSION: u8 = 1;
/// Most keys in one sled batch (see the module docs).
const MAX_BATCH_KEYS: usize = 1000;
/// Most writes taken into one group commit.
const MAX_GROUP_WRITES: usize = 4096;
/// Most index entries one listing page may scan before returning a short page with a cursor.
const MIN_SCAN_BUDGET: usize = 20_000;

/// How to open the sled store.
#[derive(Debug, Clone)]
pub struct SledStoreOptions {
    /// The data directory.
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_capacity: u64,
}

/// A history entry as stored: send results point at their event record.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum StoredHistory {
    Event(String),
    Change(StateChange),
}

struct WriteJob {
    writes: Vec<AddressWrite>,
    reply: oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>,
}

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    filter: SuppressedFilter,
    token_secret: [u8; 32],
    path: PathBuf,
}

/// The sled-backed store. Cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    shared: Arc<Shared>,
    /// Sender side of the writer thread's queue; `None` once closed.
    writer: Arc<Mutex<Option<mpsc::Sender<WriteJob>>>>,
    /// The writer thread, joined on close.
    writer_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.shared.path)
            .finish()
    }
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![RECORD_VERSION];
    // Encoding into a Vec cannot fail for these plain data types.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![RECORD_VERSION],
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |cause: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        cause,
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

impl SledStore {
    /// Opens (or creates) the store in `options.path`, loads the in-memory suppressed index and
    /// starts the writer thread.
    pub fn open(options: SledStoreOptions) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(&options.path).map_err(|e| {
            StoreError::Engine(format!("cannot create {}: {e}", options.path.display()))
        })?;
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked(options.path.display().to_string())
                }
                other => engine(other),
            })?;
        match db.get(b"schema_version").map_err(engine)? {
            None => {
                db.insert(b"schema_version", &[SCHEMA_VERSION])
                    .map_err(engine)?;
            }
            Some(v) if v.as_ref() == [SCHEMA_VERSION] => {}
            Some(v) => {
                return Err(StoreError::Engine(format!(
                    "data directory has schema version {:?}, this build reads {SCHEMA_VERSION}",
                    v.as_ref()
                )))
            }
        }
        let token_secret = match db.get(b"token_secret").map_err(engine)? {
            Some(v) if v.len() == 32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(&v);
                s
            }
            _ => {
                let s: [u8; 32] = rand::random();
                db.insert(b"token_secret", &s).map_err(engine)?;
                s
            }
        };
        db.flush().map_err(engine)?;
        let tree = db.open_tree("suppression.v1").map_err(engine)?;

        let filter = SuppressedFilter::default();
        load_filter(&tree, &filter)?;

        let shared = Arc::new(Shared {
            db,
            tree,
            filter,
            token_secret,
            path: options.path.clone(),
        });
        let (tx, rx) = mpsc::channel::<WriteJob>(1024);
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("suppressd-writer".into())
            .spawn(move || writer_loop(writer_shared, rx))
            .map_err(|e| StoreError::Engine(format!("cannot start writer thread: {e}")))?;
        Ok(SledStore {
            shared,
            writer: Arc::new(Mutex::new(Some(tx))),
            writer_thread: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Bytes the data directory takes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.shared.db.size_on_disk().map_err(engine)
    }
}

fn load_filter(tree: &sled::Tree, filter: &SuppressedFilter) -> Result<(), StoreError> {
    let mut hashes = Vec::new();
    for item in tree.scan_prefix([keys::ADDRESS]) {
        let (k, v) = item.map_err(engine)?;
        let record: AddressRecord = decode(&k, &v)?;
        if record.is_suppressed() {
            let rest = &k[1..];
            let sep = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    cause: "address key without separator".into(),
                })?;
            let tenant = std::str::from_utf8(&rest[..sep]).unwrap_or_default();
            let address = std::str::from_utf8(&rest[sep + 1..]).unwrap_or_default();
            hashes.push(key_hash(tenant, address));
        }
    }
    filter.extend(hashes);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------------

fn writer_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<WriteJob>) {
    while let Some(first) = rx.blocking_recv() {
        let mut total = first.writes.len();
        let mut jobs = vec![first];
        while total < MAX_GROUP_WRITES {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.writes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut group = Group::new(&shared);
        let mut per_job = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let outcomes: Vec<WriteOutcome> =
                job.writes.into_iter().map(|w| group.add(w)).collect();
            per_job.push(outcomes);
            replies.push(job.reply);
        }
        let committed = group.commit();
        for (reply, outcomes) in replies.into_iter().zip(per_job) {
            let answer = match &committed {
                Ok(()) => Ok(outcomes),
                Err(e) => Err(StoreError::Engine(e.to_string())),
            };
            // A caller that went away no longer needs the answer; its writes are durable anyway.
            let _ = reply.send(answer);
        }
    }
    if let Err(e) = shared.db.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

/// The writes of one group commit, with an overlay of what they changed so far so that later
/// writes in the group see earlier ones.
struct Group<'a> {
    shared: &'a Shared,
    batches: Vec<sled::Batch>,
    current: sled::Batch,
    current_keys: usize,
    records: HashMap<Vec<u8>, Option<AddressRecord>>,
    events: HashMap<Vec<u8>, RecordedEvent>,
    /// Filter changes to apply once the batches are durable: (hash, now suppressed).
    filter_changes: Vec<(u64, bool)>,
    error: Option<StoreError>,
}

impl<'a> Group<'a> {
    fn new(shared: &'a Shared) -> Self {
        Group {
            shared,
            batches: Vec::new(),
            current: sled::Batch::default(),
            current_keys: 0,
            records: HashMap::new(),
            events: HashMap::new(),
            filter_changes: Vec::new(),
            error: None,
        }
    }

    fn record(&mut self, key: &[u8]) -> Result<Option<AddressRecord>, StoreError> {
        if let Some(r) = self.records.get(key) {
            return Ok(r.clone());
        }
        match self.shared.tree.get(key).map_err(engine)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    fn event(&self, key: &[u8]) -> Result<Option<RecordedEvent>, StoreError> {
        if let Some(e) = self.events.get(key) {
            return Ok(Some(e.clone()));
        }
        match self.shared.tree.get(key).map_err(engine)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.current.insert(key, value);
        self.current_keys += 1;
    }

    /// Closes the current batch if it is big enough; called only between writes, so that the
    /// keys of one write always share a batch.
    fn maybe_cut(&mut self) {
        if self.current_keys >= MAX_BATCH_KEYS - 16 {
            self.batches.push(std::mem::take(&mut self.current));
            self.current_keys = 0;
        }
    }

    fn add(&mut self, write: AddressWrite) -> WriteOutcome {
        match self.try_add(write) {
            Ok(outcome) => {
                self.maybe_cut();
                outcome
            }
            Err(e) => {
                tracing::error!(error = %e, "write failed");
                let reason = e.to_string();
                self.error.get_or_insert(e);
                WriteOutcome::Refused {
                    record: None,
                    reason,
                }
            }
        }
    }

    fn try_add(&mut self, write: AddressWrite) -> Result<WriteOutcome, StoreError> {
        let tenant = write.tenant.as_str();
        let address = write.address.as_str();
        let record_key = keys::exact(keys::ADDRESS, &[tenant], address);
        let previous = self.record(&record_key)?;

        let mut history_entries: Vec<(Timestamp, StoredHistory)> = Vec::new();
        if let Some(event) = &write.event {
            let event_key = keys::exact(keys::EVENT, &[tenant], &event.event_id);
            if let Some(original) = self.event(&event_key)? {
                return Ok(WriteOutcome::Duplicate {
                    original,
                    record: previous,
                });
            }
        }

        let decision = (write.decide)(previous.as_ref());
        if let Decision::Refuse(reason) = decision {
            return Ok(WriteOutcome::Refused {
                record: previous,
                reason,
            });
        }

        if let Some(event) = write.event {
            let event_key = keys::exact(keys::EVENT, &[tenant], &event.event_id);
            let seq = self.shared.db.generate_id().map_err(engine)?;
            if event.is_bounce() {
                let by_source = keys::prefix(keys::BY_SOURCE, &[tenant, &event.source]);
                self.put(
                    keys::timed(&by_source, event.occurred_at, seq),
                    event.event_id.as_bytes().to_vec(),
                );
                let all = keys::prefix(keys::BOUNCES, &[tenant]);
                self.put(
                    keys::timed(&all, event.occurred_at, seq),
                    event.event_id.as_bytes().to_vec(),
                );
            }
            history_entries.push((
                event.occurred_at,
                StoredHistory::Event(event.event_id.clone()),
            ));
            self.put(event_key.clone(), encode(&event));
            self.events.insert(event_key, event);
        }

        let outcome = match decision {
            Decision::Apply { record, changes } => {
                for c in &changes {
                    history_entries.push((c.at, StoredHistory::Change(c.clone())));
                }
                self.put(record_key.clone(), encode(&record));
                let was = previous.as_ref().is_some_and(AddressRecord::is_suppressed);
                let now = record.is_suppressed();
                if was != now {
                    self.filter_changes.push((key_hash(tenant, address), now));
                }
                self.records.insert(record_key, Some(record.clone()));
                WriteOutcome::Applied {
                    previous,
                    record,
                    changes,
                }
            }
            Decision::Unchanged | Decision::Refuse(_) => {
                WriteOutcome::Unchanged { record: previous }
            }
        };

        let history_prefix = keys::prefix(keys::HISTORY, &[tenant, address]);
        for (at, entry) in history_entries {
            let seq = self.shared.db.generate_id().map_err(engine)?;
            self.put(keys::timed(&history_prefix, at, seq), encode(&entry));
        }
        Ok(outcome)
    }

    fn commit(mut self) -> Result<(), StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.current_keys > 0 {
            self.batches.push(std::mem::take(&mut self.current));
        }
        if self.batches.is_empty() {
            return Ok(());
        }
        for batch in self.batches.drain(..) {
            self.shared.tree.apply_batch(batch).map_err(engine)?;
        }
        self.shared.db.flush().map_err(engine)?;
        for (hash, suppressed) in self.filter_changes.drain(..) {
            if suppressed {
                self.shared.filter.insert(hash);
            } else {
                self.shared.filter.remove(hash);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

impl SledStore {
    fn get_decoded<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.shared.tree.get(key).map_err(engine)? {
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
        mut resolve: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let start = match cursor {
            Some(c) => {
                if !c.starts_with(prefix) || c.len() != prefix.len() + 16 {
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
        for item in self.shared.tree.range::<Vec<u8>, _>((start, end)) {
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(prefix) {
                break;
            }
            scanned += 1;
            last_key = Some(k.to_vec());
            if let Some(t) = resolve(&k, &v)? {
                items.push(t);
            }
            if items.len() >= limit || scanned >= budget {
                exhausted = false;
                break;
            }
        }
        let next = if exhausted { None } else { last_key };
        // A full page that ended exactly at the last entry still gets a cursor; the next page is
        // then empty, which callers handle like any last page.
        Ok(Page { items, next })
    }
}

impl SuppressionStore for SledStore {
    fn write(&self, writes: Vec<AddressWrite>) -> StoreFuture<Vec<WriteOutcome>> {
        let sender = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Box::pin(async move {
            if writes.is_empty() {
                return Ok(Vec::new());
            }
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(WriteJob { writes, reply })
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
        self.get_decoded(&keys::exact(
            keys::ADDRESS,
            &[tenant.as_str()],
            address.as_str(),
        ))
    }

    fn suppressions(
        &self,
        tenant: &Tenant,
        addresses: &[Option<&EmailAddress>],
    ) -> Result<Vec<Option<Suppression>>, StoreError> {
        let hashes: Vec<Option<u64>> = addresses
            .iter()
            .map(|a| a.map(|a| key_hash(tenant.as_str(), a.as_str())))
            .collect();
        let maybe = self.shared.filter.may_contain_many(&hashes);
        let mut out = Vec::with_capacity(addresses.len());
        for (address, maybe) in addresses.iter().zip(maybe) {
            let found = match (address, maybe) {
                (Some(a), true) => self.get_record(tenant, a)?.and_then(|r| r.suppression),
                _ => None,
            };
            out.push(found);
        }
        Ok(out)
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
        let lower = query.end.map(|end| {
            let mut k = prefix.clone();
            k.extend_from_slice(&keys::inv_ts(end));
            k.extend_from_slice(&[0xff; 8]);
            k
        });
        let upper = query.start.map(|start| {
            let mut k = prefix.clone();
            k.extend_from_slice(&keys::inv_ts(start));
            k.extend_from_slice(&[0xff; 8]);
            k
        });
        self.scan_page(&prefix, lower, upper, cursor, limit, |_k, v| {
            let event_id = std::str::from_utf8(v).map_err(|e| StoreError::Corrupt {
                key: "bounce index".into(),
                cause: e.to_string(),
            })?;
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

    fn close(&self) -> Result<(), StoreError> {
        // Dropping the sender lets the writer drain its queue, flush and stop.
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = self
            .writer_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            handle
                .join()
                .map_err(|_| StoreError::Engine("writer thread panicked".into()))?;
        }
        self.shared.db.flush().map_err(engine)?;
        Ok(())
    }
}
