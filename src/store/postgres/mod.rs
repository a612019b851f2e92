//! The postgres engine (`--engine postgres`): the store in a PostgreSQL database (or one that
//! speaks its protocol and SQL: CockroachDB, YugabyteDB, Citus), shared by any number of
//! suppressd replicas. The schema is relational (`migrations/postgres`); the detail of records,
//! events, history entries and changes is kept as the same tag-based protobuf records the
//! embedded engines store (`records`). See docs/postgres.md.
//!
//! The engine runs on a small tokio runtime of its own: the connection pool, the writer task
//! and the connection watch live there, and the store's blocking reads wait on it from any
//! caller (even a current-thread runtime). Until the database is reachable and its schema in
//! place, [`SuppressionStore::ready`] says false and every call fails as unavailable; a
//! background task retries with backoff, then checks the connection every few seconds.

mod connect;
mod domains;
mod forget;
mod index;
mod lookups;
mod migrate;
mod read;
mod restore;
mod snapshot;
mod write;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::address_hash::AddressHasher;
use super::{
    AddressWrite, BounceQuery, ChangePage, CounterTouch, DomainFacts, DomainOutcome, DomainRules,
    DomainWrite, ForgetWrite, Granularity, Page, PairOutcome, PairWrite, StatusInputs, StoreError,
    StoreFuture, SuppressedAddress, SuppressionQuery, SuppressionStore, WriteOutcome,
};
use crate::domain::{
    AddressId, AddressRecord, Dimension, DomainRecord, EmailAddress, HistoryEntry, OutcomeCounts,
    RecordedEvent, StateChange, Tenant, Timestamp,
};

/// The first wait before connecting again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to connect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a connected store checks that the database still answers (and reads the change
/// log's head that other replicas moved).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long that check may take before the database counts as lost.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The error of a call the postgres engine does not answer yet.
pub(super) fn unsupported(method: &'static str) -> StoreError {
    StoreError::Unsupported {
        engine: "postgres",
        method,
    }
}

/// Turns a database error into a [`StoreError`]: a lost or refused connection is
/// [`StoreError::Unavailable`], an error the server answered is an engine error.
pub(super) fn sql_error(
    context: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    let context = context.into();
    move |e| {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        let lost = e.is_closed() || io || e.code().is_some_and(is_server_unavailable);
        if lost {
            StoreError::Unavailable {
                context,
                source: e.into(),
            }
        } else if e.code().is_some_and(is_conflict) {
            StoreError::Conflict {
                context,
                source: e.into(),
            }
        } else {
            StoreError::engine(context, e)
        }
    }
}

/// Whether the server aborted the transaction for a conflict with concurrent ones, which
/// running it again may get past: a serialization failure (what CockroachDB, YugabyteDB and
/// PostgreSQL's serializable isolation answer on contention) or a deadlock.
fn is_conflict(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Most times a transaction is run again after conflicts.
const MAX_RETRIES: u32 = 8;

/// Runs a transaction (`run` starts it anew each time) and runs it again, after a short
/// random wait that grows with each attempt, while the database aborts it for a conflict
/// with concurrent transactions ([`StoreError::Conflict`]); after [`MAX_RETRIES`] the conflict
/// is the answer. Any other error is answered at once.
pub(super) async fn retrying<T, F, Fut>(what: &str, mut run: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut retries = 0;
    loop {
        match run().await {
            Err(e) if e.is_conflict() && retries < MAX_RETRIES => {
                retries += 1;
                metrics::counter!("suppressd_transaction_retries_total").increment(1);
                tracing::debug!(error = %super::ErrorChain(&e), retries, "{what} conflicted; running it again");
                // Full jitter over 2, 4, 8 ... 256 ms, so that the transactions that
                // conflicted do not meet again at once.
                let ceiling = 1u64 << retries;
                let wait = rand::random_range(0..=ceiling * 1_000);
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
            answer => return answer,
        }
    }
}

/// The error of a read that failed in another caller's hands, for the callers that waited on
/// it (the index's catch-up, a round of status lookups): unavailable as the original was, with
/// its text; `context` names the read.
pub(super) fn shared_error(context: &str, unavailable: bool, text: &str) -> StoreError {
    if unavailable {
        StoreError::Unavailable {
            context: context.to_string(),
            source: text.to_string().into(),
        }
    } else {
        StoreError::engine(context.to_string(), text.to_string())
    }
}

/// Whether the server's error says it cannot serve now (shutting down, starting up, out of
/// connections), or not in the time it was given (`statement_timeout`, `lock_timeout`, a
/// cancelled statement), rather than that the statement is wrong.
fn is_server_unavailable(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
        SqlState::QUERY_CANCELED,
        SqlState::LOCK_NOT_AVAILABLE,
    ]
    .contains(code)
}

/// The change log's head: the last sequence number taken (`change_counter`); `what` names the
/// read in its error.
pub(super) async fn change_head(
    client: &impl deadpool_postgres::GenericClient,
    what: &'static str,
) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT last_seq FROM change_counter WHERE id = 1", &[])
        .await
        .map_err(sql_error(what))?;
    Ok(row.get(0))
}

/// A read-only `REPEATABLE READ` transaction: its statements see one snapshot; `what` names
/// the read in its error.
pub(super) async fn read_snapshot<'c>(
    client: &'c mut deadpool_postgres::Client,
    what: &'static str,
) -> Result<deadpool_postgres::Transaction<'c>, StoreError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(sql_error(what))
}

/// A connection from the pool, or the reason there is none.
pub(super) async fn connection(pool: &Pool) -> Result<deadpool_postgres::Client, StoreError> {
    pool.get().await.map_err(|e| StoreError::Unavailable {
        context: "connecting to the database".into(),
        source: e.into(),
    })
}

/// The store's keys, read from (or first written to) the database once it is reachable.
pub(super) struct Meta {
    pub(super) hasher: AddressHasher,
    pub(super) token_secret: [u8; 32],
}

/// What the store's tasks share.
pub(super) struct Inner {
    pub(super) pool: Pool,
    pub(super) meta: OnceLock<Meta>,
    pub(super) ready: watch::Sender<bool>,
    pub(super) head: watch::Sender<u64>,
    pub(super) touches: broadcast::Sender<Arc<Vec<CounterTouch>>>,
    pub(super) rules: RwLock<Option<Arc<dyn DomainRules>>>,
    pub(super) closing: AtomicBool,
    /// The suppressed index screens read, kept exact by tailing the change log.
    index: index::SuppressedIndex,
}

impl Inner {
    /// The keys, once the database was reached.
    pub(super) fn meta(&self) -> Result<&Meta, StoreError> {
        self.meta.get().ok_or_else(|| StoreError::Unavailable {
            context: "the database has not been reached yet".into(),
            source: "not connected".into(),
        })
    }
}

/// The postgres store.
pub struct PostgresStore {
    inner: Arc<Inner>,
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    jobs: Mutex<Option<mpsc::Sender<write::Job>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    failure: watch::Sender<Option<String>>,
    /// Status lookups waiting for a round of the database.
    lookups: Arc<lookups::Lookups>,
}

/// Opens the store on `url`: returns at once; the database is reached (and migrated) in the
/// background. A URL that cannot be read is refused here.
pub(super) fn open(url: &str) -> Result<PostgresStore, StoreError> {
    let target = connect::parse(url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("suppressd-postgres")
        .enable_all()
        .build()
        .map_err(|e| StoreError::engine("starting the postgres engine's runtime", e))?;
    let handle = runtime.handle().clone();
    // The pool spawns its connections' tasks on the runtime it is used from: ours.
    let pool = {
        let _guard = handle.enter();
        target.pool()?
    };
    let inner = Arc::new(Inner {
        pool,
        meta: OnceLock::new(),
        ready: watch::channel(false).0,
        head: watch::channel(0).0,
        touches: broadcast::channel(1024).0,
        rules: RwLock::new(None),
        closing: AtomicBool::new(false),
        index: index::SuppressedIndex::default(),
    });
    handle.spawn(keep_connected(inner.clone()));
    let (jobs, queue) = mpsc::channel(1024);
    let writer = handle.spawn(write::writer(inner.clone(), queue));
    Ok(PostgresStore {
        inner,
        lookups: Arc::new(lookups::Lookups::new(handle.clone())),
        handle,
        runtime: Mutex::new(Some(runtime)),
        jobs: Mutex::new(Some(jobs)),
        writer: Mutex::new(Some(writer)),
        failure: watch::channel(None).0,
    })
}

/// Reaches the database (with backoff), migrates its schema and reads the store's keys; then
/// checks every [`WATCH_INTERVAL`] that it still answers, saying so in `ready`.
async fn keep_connected(inner: Arc<Inner>) {
    let mut backoff = FIRST_BACKOFF;
    while !inner.closing.load(Ordering::Relaxed) {
        match prepare(&inner).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %super::ErrorChain(&e), retry_in = ?backoff, "the database is not ready");
                if matches!(e, StoreError::SchemaTooNew { .. }) {
                    // Waiting will not help; it stays not ready, and says why in the log.
                    backoff = MAX_BACKOFF;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // The head as this loop last read it.
    let mut last_read = *inner.head.borrow();
    while !inner.closing.load(Ordering::Relaxed) {
        let head = tokio::time::timeout(WATCH_TIMEOUT, async {
            let client = connection(&inner.pool).await?;
            change_head(&client, "reading the change log's head").await
        })
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                context: "checking the database".into(),
                source: "no answer in time".into(),
            })
        });
        match head {
            Ok(seq) => {
                // Keeps the index close to the head when no screen asks for a while, so that a
                // screen's catch-up stays small.
                if u64::try_from(seq).unwrap_or(0) > inner.index.position() {
                    if let Err(e) = index::SuppressedIndex::barrier(&inner).await {
                        tracing::warn!(error = %super::ErrorChain(&e), "cannot catch up with the change log");
                    }
                }
                inner
                    .ready
                    .send_if_modified(|r| !std::mem::replace(r, true));
                let seq = u64::try_from(seq).unwrap_or(0);
                if seq < last_read {
                    // The database lost commits (a failover, a restore): new followers start
                    // from the head it has. (Compared with this loop's own last read: the
                    // watch may hold a commit of this replica that the read came before.)
                    tracing::warn!(
                        head = seq,
                        was = last_read,
                        "the change log's head went back"
                    );
                    inner.head.send_replace(seq);
                }
                last_read = seq;
                inner.head.send_if_modified(|h| {
                    let moved = seq > *h;
                    if moved {
                        *h = seq;
                    }
                    moved
                });
            }
            Err(e) => {
                if inner
                    .ready
                    .send_if_modified(|r| std::mem::replace(r, false))
                {
                    tracing::error!(error = %super::ErrorChain(&e), "lost the database");
                }
            }
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// Migrates the schema and reads (or makes) the store's keys.
async fn prepare(inner: &Inner) -> Result<(), StoreError> {
    let mut client = connection(&inner.pool).await?;
    migrate::migrate(&mut client).await?;
    if inner.meta.get().is_none() {
        let address_key: [u8; 16] = secret(&client, "address_key").await?;
        let token_secret: [u8; 32] = secret(&client, "token_secret").await?;
        let _ = inner.meta.set(Meta {
            hasher: AddressHasher::new(&address_key),
            token_secret,
        });
    }
    let head = change_head(&client, "reading the change log's head").await?;
    inner.head.send_replace(u64::try_from(head).unwrap_or(0));
    // Ready only with the suppressed index in memory (it is loaded once; catch-ups keep it).
    if !inner.index.is_loaded() {
        inner.index.load(&inner.pool).await?;
    }
    inner.ready.send_replace(true);
    tracing::info!(schema = migrate::latest(), "the database is ready");
    Ok(())
}

/// A random secret kept in `suppressd_meta` under `name`: made by the first replica that
/// starts, read by the others.
async fn secret<const N: usize>(
    client: &deadpool_postgres::Client,
    name: &str,
) -> Result<[u8; N], StoreError> {
    let fresh: [u8; N] = std::array::from_fn(|_| rand::random::<u8>());
    client
        .execute(
            "INSERT INTO suppressd_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &&fresh[..]],
        )
        .await
        .map_err(sql_error(format!("storing the {name}")))?;
    let row = client
        .query_one("SELECT value FROM suppressd_meta WHERE name = $1", &[&name])
        .await
        .map_err(sql_error(format!("reading the {name}")))?;
    let value: Vec<u8> = row.get(0);
    value
        .try_into()
        .map_err(|_| StoreError::corrupt(name.as_bytes(), "a secret of the wrong length"))
}

/// How long an offline export or restore waits for the database.
const OFFLINE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the database at `url` for an offline export or restore, and waits until it is ready.
fn open_offline(url: &str) -> Result<PostgresStore, StoreError> {
    let store = open(url)?;
    let deadline = std::time::Instant::now() + OFFLINE_READY_TIMEOUT;
    while !*store.inner.ready.borrow() {
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable {
                context: "connecting to the database".into(),
                source: format!(
                    "not ready after {} s: unreachable, refused, or its schema is newer than                      this build",
                    OFFLINE_READY_TIMEOUT.as_secs()
                )
                .into(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(store)
}

/// A consistent cut of the database at `url`, for an offline export (blocking: call it, and
/// read the cut, off any async runtime).
pub(super) fn export_cut(url: &str) -> Result<crate::store::StoreSnapshot, StoreError> {
    let store = open_offline(url)?;
    let begun = store.block(snapshot::begin)?;
    Ok(begun.into_snapshot(Some(Box::new(store))))
}

/// Restores the stream whose parts (after its header) arrive on `parts` into the database at
/// `url`, in one transaction; the entries per kind that the restored rows read back as
/// (blocking: run it on a thread of its own while another sends the parts).
pub(super) fn restore_stream(
    url: &str,
    seq: u64,
    parts: std::sync::mpsc::Receiver<crate::store::snapshot::Part>,
) -> Result<std::collections::BTreeMap<u8, u64>, StoreError> {
    let store = open_offline(url)?;
    let restored =
        store.block(move |inner| async move { restore::restore(&inner, seq, parts).await })?;
    Ok(restored.kinds)
}

impl PostgresStore {
    /// Runs `work` on the engine's runtime and waits for its result (from any thread but the
    /// engine's own).
    fn block<T, F>(&self, work: impl FnOnce(Arc<Inner>) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = work(self.inner.clone());
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = || rx.recv().unwrap_or(Err(StoreError::Closed));
        // On a server's worker thread, the wait hands the thread's other tasks to another
        // thread first, so that lookups waiting on the database do not hold the server's
        // workers: as many can wait as the pool has connections.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Runs `work` on the engine's runtime; the returned future may be awaited anywhere.
    fn spawn<T, F>(&self, work: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = self.handle.spawn(work);
        Box::pin(async move { task.await.unwrap_or(Err(StoreError::Closed)) })
    }

    fn sender(&self) -> Option<mpsc::Sender<write::Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .cloned()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.inner.closing.store(true, Ordering::Relaxed);
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl SuppressionStore for PostgresStore {
    fn write(&self, writes: Vec<AddressWrite>) -> StoreFuture<Vec<WriteOutcome>> {
        let queued = self.submit(writes);
        Box::pin(async move { queued.await?.await })
    }

    fn submit(&self, writes: Vec<AddressWrite>) -> StoreFuture<StoreFuture<Vec<WriteOutcome>>> {
        let sender = self.sender();
        Box::pin(async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(write::Job { writes, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            let outcome: StoreFuture<Vec<WriteOutcome>> =
                Box::pin(async move { answer.await.map_err(|_| StoreError::Closed)? });
            Ok(outcome)
        })
    }

    fn get_record(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
    ) -> Result<Option<AddressRecord>, StoreError> {
        let (t, a) = (tenant.clone(), address.as_str().to_string());
        self.block(move |inner| async move { read::record(&inner, &t, &a).await })
    }

    fn status_inputs(&self, tenant: &Tenant, address: &EmailAddress) -> StoreFuture<StatusInputs> {
        // Gathered with the lookups of other callers into one statement (`lookups`).
        let hash = match self.inner.meta() {
            Ok(meta) => *meta.hasher.hash(tenant.as_str(), address.as_str()).bytes(),
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (t, domain) = (tenant.clone(), address.domain().to_string());
        Box::pin(
            self.lookups
                .clone()
                .lookup(self.inner.clone(), t, hash, domain),
        )
    }

    fn status_inputs_of(
        &self,
        tenant: &Tenant,
        addresses: &[EmailAddress],
    ) -> Result<Vec<StatusInputs>, StoreError> {
        let hasher = &self.inner.meta()?.hasher;
        let keys: Vec<([u8; 16], String)> = addresses
            .iter()
            .map(|a| {
                let hash = *hasher.hash(tenant.as_str(), a.as_str()).bytes();
                (hash, a.domain().to_string())
            })
            .collect();
        let t = tenant.clone();
        self.block(move |inner| async move { lookups::read_many(&inner, &t, &keys).await })
    }

    fn write_pair(&self, write: PairWrite) -> StoreFuture<PairOutcome> {
        let inner = self.inner.clone();
        self.spawn(async move {
            retrying("a two-address write", || write::commit_pair(&inner, &write)).await
        })
    }

    fn forget(&self, write: ForgetWrite) -> StoreFuture<WriteOutcome> {
        let inner = self.inner.clone();
        self.spawn(
            async move { retrying("an erasure", || forget::commit_forget(&inner, &write)).await },
        )
    }

    fn address_id(&self, tenant: &Tenant, address: &EmailAddress) -> AddressId {
        match self.inner.meta.get() {
            Some(meta) => AddressId(*meta.hasher.hash(tenant.as_str(), address.as_str()).bytes()),
            // Only asked for after a read of the address, which fails until the database was
            // reached: never reached without the key in practice. An id of zeros names no
            // address rather than a wrong one.
            None => AddressId([0; 16]),
        }
    }

    fn suppressed_records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
        lists: bool,
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let t = tenant.clone();
        let hasher = &self.inner.meta()?.hasher;
        let hashes: Vec<[u8; 16]> = addresses
            .iter()
            .map(|a| *hasher.hash(tenant.as_str(), a).bytes())
            .collect();
        self.block(move |inner| async move {
            if !inner.index.is_loaded() {
                // Not serving yet (health says so): the query the index spares, exact.
                return read::records_of(&inner, &t, &hashes, Some(lists)).await;
            }
            index::SuppressedIndex::barrier(&inner).await?;
            // Only the contacts the index holds are read, all in one query.
            let (positions, candidates): (Vec<usize>, Vec<[u8; 16]>) = {
                let reader = inner.index.reader();
                hashes
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| reader.may_block(index::key_of(h), lists))
                    .map(|(i, h)| (i, *h))
                    .unzip()
            };
            let found = read::records_of(&inner, &t, &candidates, Some(lists)).await?;
            Ok(found
                .into_iter()
                .map(|(k, record)| (positions[k], record))
                .collect())
        })
    }

    fn due_expiries(
        &self,
        now: Timestamp,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(Tenant, EmailAddress)>, StoreError> {
        let cursor = cursor.map(<[u8]>::to_vec);
        self.block(move |inner| async move { read::due_expiries(&inner, now, cursor, limit).await })
    }

    fn list_suppressions(
        &self,
        tenant: &Tenant,
        query: &SuppressionQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SuppressedAddress>, StoreError> {
        let (t, q, c) = (tenant.clone(), query.clone(), cursor.map(<[u8]>::to_vec));
        self.block(move |inner| async move { read::suppressions(&inner, &t, &q, c, limit).await })
    }

    fn known_good_domains(
        &self,
        tenant: &Tenant,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let t = tenant.clone();
        self.block(move |inner| async move { read::known_good_domains(&inner, &t, limit).await })
    }

    fn known_good_locals(
        &self,
        tenant: &Tenant,
        domain: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (t, d) = (tenant.clone(), domain.to_string());
        self.block(move |inner| async move { read::known_good_locals(&inner, &t, &d, limit).await })
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
        let (t, v) = (tenant.clone(), value.to_string());
        self.block(move |inner| async move {
            read::counters(&inner, &t, dimension, &v, granularity, from, to).await
        })
    }

    fn dimension_values(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
    ) -> Result<Vec<String>, StoreError> {
        let t = tenant.clone();
        self.block(move |inner| async move { read::dimension_values(&inner, &t, dimension).await })
    }

    fn subscribe_counters(&self) -> broadcast::Receiver<Arc<Vec<CounterTouch>>> {
        self.inner.touches.subscribe()
    }

    fn get_event(
        &self,
        tenant: &Tenant,
        event_id: &str,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let (t, id) = (tenant.clone(), event_id.to_string());
        self.block(move |inner| async move { read::event(&inner, &t, &id).await })
    }

    fn list_bounces(
        &self,
        tenant: &Tenant,
        query: &BounceQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<RecordedEvent>, StoreError> {
        let (t, q, c) = (tenant.clone(), query.clone(), cursor.map(<[u8]>::to_vec));
        self.block(move |inner| async move { read::bounces(&inner, &t, &q, c, limit).await })
    }

    fn history(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        let (t, a, c) = (
            tenant.clone(),
            address.as_str().to_string(),
            cursor.map(<[u8]>::to_vec),
        );
        self.block(move |inner| async move { read::history(&inner, &t, &a, c, limit).await })
    }

    fn changes(&self, tenant: &Tenant, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        let t = tenant.clone();
        self.block(move |inner| async move { read::changes(&inner, &t, after, limit).await })
    }

    fn change_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    fn prune_changes(&self, before: Timestamp, limit: usize) -> StoreFuture<u64> {
        let inner = self.inner.clone();
        self.spawn(async move { write::prune_changes(&inner, before, limit).await })
    }

    fn write_domain(&self, write: DomainWrite) -> StoreFuture<DomainOutcome> {
        let inner = self.inner.clone();
        self.spawn(async move {
            retrying("a domain write", || domains::commit_domain(&inner, &write)).await
        })
    }

    fn set_domain_rules(&self, rules: Arc<dyn DomainRules>) {
        *self.inner.rules.write().unwrap_or_else(|e| e.into_inner()) = Some(rules);
    }

    // Read from the database at each call, so that marks made on another replica apply at
    // once (docs/postgres.md). These calls cannot fail: when the database does not answer,
    // they say "no marks" and log why (the reads around them fail the call then).
    fn has_marked_domains(&self, tenant: &Tenant) -> bool {
        let t = tenant.clone();
        self.block(move |inner| async move { domains::has_marked(&inner, &t).await })
            .unwrap_or_else(|e| {
                tracing::error!(error = %super::ErrorChain(&e), "cannot read domain marks");
                false
            })
    }

    fn domain_facts(&self, tenant: &Tenant, domains: &[&str]) -> Vec<(usize, DomainFacts)> {
        let t = tenant.clone();
        let list: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        self.block(move |inner| async move { domains::facts(&inner, &t, &list).await })
            .unwrap_or_else(|e| {
                tracing::error!(error = %super::ErrorChain(&e), "cannot read domain marks");
                Vec::new()
            })
    }

    fn domain(&self, tenant: &Tenant, domain: &str) -> Result<DomainRecord, StoreError> {
        let (t, d) = (tenant.clone(), domain.to_string());
        self.block(move |inner| async move { read::domain(&inner, &t, &d).await })
    }

    fn domain_history(
        &self,
        tenant: &Tenant,
        domain: &str,
        limit: usize,
    ) -> Result<Vec<StateChange>, StoreError> {
        let (t, d) = (tenant.clone(), domain.to_string());
        self.block(move |inner| async move { read::domain_history(&inner, &t, &d, limit).await })
    }

    fn list_suppressed_domains(
        &self,
        tenant: &Tenant,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(String, DomainRecord)>, StoreError> {
        let (t, c) = (tenant.clone(), cursor.map(<[u8]>::to_vec));
        self.block(move |inner| async move { domains::suppressed(&inner, &t, c, limit).await })
    }

    fn records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
        let t = tenant.clone();
        let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        self.block(move |inner| async move { read::records(&inner, &t, &list, None).await })
    }

    fn snapshot(&self) -> StoreFuture<crate::store::StoreSnapshot> {
        let inner = self.inner.clone();
        self.spawn(async move { Ok(snapshot::begin(inner).await?.into_snapshot(None)) })
    }

    fn token_secret(&self) -> [u8; 32] {
        // Page tokens are signed with it; read once the database is reached (see `ready`).
        self.inner.meta.get().map_or([0; 32], |m| m.token_secret)
    }

    fn suppressed_count(&self) -> u64 {
        if !*self.inner.ready.borrow() {
            return 0;
        }
        match self.block(|inner| async move {
            index::SuppressedIndex::barrier(&inner).await?;
            Ok(inner.index.suppressed_len())
        }) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %super::ErrorChain(&e), "cannot count suppressed addresses");
                0
            }
        }
    }

    fn indexes_loaded(&self) -> bool {
        self.inner.index.is_loaded()
    }

    #[cfg(test)]
    fn wait_for_index_load(&self) -> Result<(), StoreError> {
        // The store says ready once the index is in.
        let mut ready = self.inner.ready.subscribe();
        self.block(move |_| async move {
            tokio::time::timeout(Duration::from_secs(60), ready.wait_for(|r| *r))
                .await
                .map_err(|_| StoreError::Unavailable {
                    context: "loading the suppressed index".into(),
                    source: "the database was not ready in time".into(),
                })?
                .map_err(|_| StoreError::Closed)?;
            Ok(())
        })
    }

    fn writer_failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.subscribe()
    }

    fn ready(&self) -> watch::Receiver<bool> {
        self.inner.ready.subscribe()
    }

    fn close(&self) -> Result<(), StoreError> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            // The writer answers what was queued, then ends.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.handle.spawn(async move {
                let _ = tx.send(writer.await);
            });
            let _ = rx.recv();
        }
        self.inner.closing.store(true, Ordering::Relaxed);
        Ok(())
    }
}
