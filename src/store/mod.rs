//! Durable storage of events, address states and history. The only module that knows the
//! storage engines: sled (the default) and redb, chosen with [`Engine`] at [`open`]. Both sit
//! under one shared implementation (`kv_store`, `writer`) over a small key-value interface
//! (`kv`); the key layout (`keys`) and record encoding are private to this module.
//!
//! Writes go through [`SuppressionStore::write`]: each [`AddressWrite`] is a read-modify-write
//! of one address (plus, for send results, the event and its indexes) that is applied
//! atomically, and the returned future resolves only once every write in it is durable on disk.
//! Concurrent callers share one flush (group commit). Domain writes
//! ([`SuppressionStore::write_domain`]) go through the same writer; every domain's suppression
//! and accept-all mark is kept in memory ([`SuppressionStore::domain_facts`]).

mod address_hash;
mod backup;
#[cfg(test)]
mod contract_tests;
mod domain_index;
mod filter;
#[cfg(test)]
mod golden_tests;
mod journal;
mod keyring;
mod keys;
mod kv;
mod kv_store;
mod layout;
mod legacy;
mod memtable;
mod postgres;
mod records;
mod redb_engine;
mod sled_engine;
pub mod snapshot;
#[doc(hidden)]
pub mod testing;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::{future::Future, pin::Pin};

use tokio::sync::{broadcast, watch};

use crate::domain::{
    AcceptAll, AddressId, AddressRecord, BounceType, Dimension, DomainRecord, DomainSuppression,
    EmailAddress, HistoryEntry, ListChange, OutcomeCounts, RecordedEvent, StateChange, Tenant,
    Timestamp,
};

use kv_store::KvStore;

pub use backup::{
    export, kind_name, restore, restore_postgres, Progress, Restored, StoreSnapshot, RESTORE_MARKER,
};

/// Name of the redb database file inside the data directory.
const REDB_FILE: &str = "suppressd.redb";
/// Directory of the write-ahead journal in front of the engine, inside the data directory.
const JOURNAL_DIR: &str = "journal";
/// How long the journal's table may go without a write before it is checkpointed anyway.
const JOURNAL_IDLE_CHECKPOINT: std::time::Duration = std::time::Duration::from_secs(5);

/// The storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// sled 0.34 (the default).
    #[default]
    Sled,
    /// redb 2.
    Redb,
    /// A PostgreSQL database (or CockroachDB, YugabyteDB, Citus), shared by replicas.
    Postgres,
}

impl Engine {
    /// The engine's name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
            Engine::Postgres => "postgres",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sled" => Ok(Engine::Sled),
            "redb" => Ok(Engine::Redb),
            "postgres" => Ok(Engine::Postgres),
            other => Err(format!(
                "unknown storage engine {other:?} (sled, redb or postgres)"
            )),
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The engine.
    pub engine: Engine,
    /// The data directory (created if missing).
    pub path: PathBuf,
    /// The engine's page cache, in bytes.
    pub cache_bytes: u64,
    /// Bytes of written data that the journal holds in memory before a checkpoint.
    pub journal_bytes: u64,
    /// The database of the postgres engine (a libpq URL); unused by the embedded engines.
    pub database_url: Option<String>,
}

/// Opens (or creates) the store in `options.path` with the chosen engine, loads the in-memory
/// suppressed index and starts the writer thread. A data directory that holds the other
/// engine's data is refused with [`StoreError::OtherEngine`].
pub fn open(options: StoreOptions) -> Result<Arc<dyn SuppressionStore>, StoreError> {
    backup::refuse_unfinished_restore(&options.path)?;
    Ok(match options.engine {
        Engine::Sled => Arc::new(open_sled(&options)?),
        Engine::Redb => Arc::new(open_redb(&options)?),
        Engine::Postgres => Arc::new(postgres::open(
            options.database_url.as_deref().ok_or_else(|| {
                StoreError::engine("opening the postgres engine", "no --database-url given")
            })?,
        )?),
    })
}

type SledStore = KvStore<journal::Journaled<sled_engine::SledEngine>>;

fn open_sled(options: &StoreOptions) -> Result<SledStore, StoreError> {
    KvStore::start(sled_engine(options)?, &options.path)
}

/// sled behind the journal.
fn sled_engine(
    options: &StoreOptions,
) -> Result<journal::Journaled<sled_engine::SledEngine>, StoreError> {
    let engine = sled_engine::SledEngine::open(&options.path, options.cache_bytes)?;
    journaled(engine, options)
}

type RedbStore = KvStore<journal::Journaled<redb_engine::RedbEngine>>;

fn open_redb(options: &StoreOptions) -> Result<RedbStore, StoreError> {
    KvStore::start(redb_engine(options)?, &options.path)
}

/// redb behind its journal.
fn redb_engine(
    options: &StoreOptions,
) -> Result<journal::Journaled<redb_engine::RedbEngine>, StoreError> {
    let cache = usize::try_from(options.cache_bytes).unwrap_or(usize::MAX);
    let engine = redb_engine::RedbEngine::open(&options.path, cache)?;
    journaled(engine, options)
}

/// `engine` behind the write-ahead journal in the data directory.
fn journaled<E: kv::KvEngine>(
    engine: E,
    options: &StoreOptions,
) -> Result<journal::Journaled<E>, StoreError> {
    journal::Journaled::open(
        engine,
        &options.path.join(JOURNAL_DIR),
        journal::JournalOptions {
            memtable_bytes: usize::try_from(options.journal_bytes).unwrap_or(usize::MAX),
            idle_checkpoint: JOURNAL_IDLE_CHECKPOINT,
        },
    )
}

/// A cause of a [`StoreError`] whose type varies (engine, I/O, decoding errors).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the storage layer. Causes are kept as [`std::error::Error::source`]s: log the
/// whole chain (see [`ErrorChain`]), the `Display` of a variant says only what failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory is held by another process.
    #[error("data directory {0} is in use by another suppressd process")]
    Locked(String),
    /// The data directory holds another engine's data.
    #[error("data directory {path} holds {found} data; start with --engine {found} (asked for {wanted})")]
    OtherEngine {
        path: String,
        found: &'static str,
        wanted: &'static str,
    },
    /// The data directory was written by a newer suppressd, whose records this build may not
    /// read correctly.
    #[error(
        "data directory {path} has schema version {found}, newer than the {supported} this \
         build reads: run a newer suppressd"
    )]
    SchemaTooNew {
        path: String,
        found: u8,
        supported: u8,
    },
    /// The engine (or the file system under it) failed.
    #[error("storage engine error: {context}")]
    Engine {
        /// What the store was doing.
        context: String,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
    /// A stored record or key could not be decoded.
    #[error("corrupt record under key {key}")]
    Corrupt {
        /// The key, as text (bytes that are not UTF-8 replaced).
        key: String,
        /// Why it could not be decoded.
        #[source]
        cause: BoxError,
    },
    /// A value could not be encoded; nothing was written.
    #[error("cannot encode a record")]
    Encode(#[source] BoxError),
    /// The decision of a write panicked: that write stored nothing.
    #[error("the decision of a write failed: {0}")]
    DecisionPanicked(String),
    /// The group commit that held the write failed; nothing of the group was stored.
    #[error("the commit of this write failed")]
    CommitFailed(#[source] Arc<StoreError>),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
    /// A page cursor that this store did not produce.
    #[error("invalid page cursor")]
    BadCursor,
    /// A backup stream is damaged or of another version, or a restore or backup cannot go on
    /// (a non-empty target, a directory without data).
    #[error("{0}")]
    Backup(String),
    /// The database cannot be reached (the postgres engine): the call may succeed later.
    #[error("the database is unavailable: {context}")]
    Unavailable {
        /// What the store was doing.
        context: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// The database aborted the transaction for a conflict with concurrent ones (a
    /// serialization failure or a deadlock), and running it again did not get past it:
    /// nothing of it was stored, and the call may succeed if made again.
    #[error("the write conflicted with concurrent writes: {context}")]
    Conflict {
        /// What the store was doing.
        context: String,
        /// The database's error.
        #[source]
        source: BoxError,
    },
    /// A call that this engine does not answer yet.
    #[error("not supported by the {engine} engine yet: {method}")]
    Unsupported {
        /// The engine.
        engine: &'static str,
        /// The call.
        method: &'static str,
    },
    /// The asked position is past the change log's head: the log lost changes after the
    /// position was given out (a database restored from an older backup, a failover to a
    /// standby that lacked the last commits).
    #[error("the change log's head is {head}, before the asked position")]
    PositionAhead {
        /// The log's head now.
        head: u64,
    },
    /// Changes after the asked position were removed by the change log's retention.
    #[error("the change log holds changes only after sequence number {horizon}")]
    ChangesPruned {
        /// The last sequence number removed.
        horizon: u64,
    },
}

impl StoreError {
    /// Whether the error says the database is unreachable (perhaps for a while), rather than
    /// that the call or the data is wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::CommitFailed(inner) => inner.is_unavailable(),
            _ => false,
        }
    }

    /// Whether the database aborted the work for a conflict with concurrent transactions
    /// (see [`StoreError::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Conflict { .. } => true,
            StoreError::CommitFailed(inner) => inner.is_conflict(),
            _ => false,
        }
    }

    /// An engine error with what the store was doing.
    pub(crate) fn engine(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Engine {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A value or key under `key` that could not be decoded.
    pub(crate) fn corrupt(key: &[u8], cause: impl Into<BoxError>) -> StoreError {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            cause: cause.into(),
        }
    }
}

/// Displays an error with all its causes: `what failed: because: because`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// What a write decides, given the address's current record.
// One value per write, moved once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Store `record` and append `changes` to the history.
    Apply {
        record: AddressRecord,
        changes: Vec<StateChange>,
    },
    /// Change nothing (but still record the event, if the write carries one).
    Unchanged,
    /// Refuse the write; nothing is stored.
    Refuse(String),
}

/// The decision function of a write, run by the store on the address's current record, with
/// no other write to the same address in between. A store may run it more than once (the
/// postgres engine decides again when the database aborts a transaction for a conflict with
/// another one): only the answer of the run that commits counts, so it must have no other
/// effect.
pub type Decide = Box<dyn Fn(Option<&AddressRecord>) -> Decision + Send + Sync>;

/// One atomic change to one address.
pub struct AddressWrite {
    /// The tenant.
    pub tenant: Tenant,
    /// The address whose record `decide` may change.
    pub address: EmailAddress,
    /// A send result to record, idempotently on its event id.
    pub event: Option<RecordedEvent>,
    /// Recorded send results of this address to store again with a new classification (their
    /// counters move from the old outcome type to the new one).
    pub reclassified: Vec<RecordedEvent>,
    /// Decides the address's next record.
    pub decide: Decide,
}

/// Erasing an address's personal data (`ForgetAddress`), in one atomic write: `decide` turns
/// the current record into the forgotten one ([`AddressRecord::forgotten`], with the changes to
/// keep in its history, which then hold nothing else); the store then deletes every history
/// entry of the address with its event positions and bounce index entries, its delivered-address
/// entry, destroys its data key (so that every copy of its sealed values that the engines and
/// the journal may still hold is unreadable), and clears the links to it from the address it
/// replaced or was replaced by. A record that is forgotten already is left as it is
/// ([`WriteOutcome::Unchanged`]); `decide` is not called then.
///
/// Once forgotten, an address's record no longer changes: a send result for it is counted in
/// the counters and stored nowhere else, and any other write leaves it as it is.
pub struct ForgetWrite {
    /// The tenant.
    pub tenant: Tenant,
    /// The address whose data is erased.
    pub address: EmailAddress,
    /// Decides the forgotten record: [`Decision::Apply`] with a record whose `forgotten` is
    /// set (any other record is refused), or `Refuse`.
    pub decide: Decide,
}

/// A suppressed address as a listing gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct SuppressedAddress {
    /// The normalized address; empty once forgotten.
    pub address: String,
    /// Its identifier (what [`SuppressionStore::address_id`] gives for it).
    pub id: AddressId,
    /// Its record.
    pub record: AddressRecord,
}

/// The decision function of a write that changes two addresses at once (a replacement).
/// Like [`Decide`], it may run more than once.
pub type DecidePair =
    Box<dyn Fn(Option<&AddressRecord>, Option<&AddressRecord>) -> PairDecision + Send + Sync>;

/// What a two-address write decides.
// One value per write, moved once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum PairDecision {
    /// Store the given records (`None`: leave that address as it is), with their history.
    Apply {
        first: Option<(AddressRecord, Vec<StateChange>)>,
        second: Option<(AddressRecord, Vec<StateChange>)>,
    },
    /// Refuse; nothing is stored.
    Refuse(String),
}

/// One atomic change to two addresses of one tenant.
pub struct PairWrite {
    /// The tenant.
    pub tenant: Tenant,
    /// The first address.
    pub first: EmailAddress,
    /// The second address (must differ from the first).
    pub second: EmailAddress,
    /// Decides both addresses' next records.
    pub decide: DecidePair,
}

/// What became of a two-address write: both records as they are afterwards.
#[derive(Debug, Clone)]
pub struct PairOutcome {
    /// The first address's record afterwards.
    pub first: Option<AddressRecord>,
    /// The second address's record afterwards.
    pub second: Option<AddressRecord>,
    /// Set when the decision refused the write.
    pub refused: Option<String>,
}

/// What the domain marks say about an address's domain (from memory).
#[derive(Debug, Clone, PartialEq)]
pub struct DomainFacts {
    /// The suppression that applies to addresses at the domain, with the domain it belongs to:
    /// the domain's own, or the nearest parent's that covers its subdomains.
    pub suppressed: Option<(String, DomainSuppression)>,
    /// The domain's accept-all mark.
    pub accept_all: Option<AcceptAll>,
}

/// The rules a recorded send result applies to its domain, run by the writer in the same
/// atomic unit as the result itself (they need the domain's record). Given to the store by
/// the application ([`SuppressionStore::set_domain_rules`]); without them send results change
/// nothing of their domain but its latest delivery time.
pub trait DomainRules: Send + Sync + 'static {
    /// Whether `event` (at an address whose record was `before`) may change its domain's
    /// record beyond the delivery time. Called for every send result: must be cheap.
    fn concerns(&self, event: &RecordedEvent, before: Option<&AddressRecord>) -> bool;

    /// The domain's next record and the changes of its history, `None` when nothing changes.
    /// `address` is 64 bits of the address's keyed hash (a domain record never holds an
    /// address's text). Also called for deliveries to a domain with an automatic suppression.
    fn apply(
        &self,
        domain: &str,
        record: &DomainRecord,
        event: &RecordedEvent,
        address: u64,
        before: Option<&AddressRecord>,
    ) -> Option<(DomainRecord, Vec<StateChange>)>;
}

/// What an operator's domain write decides.
// One value per write, moved once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum DomainDecision {
    /// Store `record` and append `changes` to the domain's history.
    Apply {
        record: DomainRecord,
        changes: Vec<StateChange>,
    },
    /// Change nothing.
    Unchanged,
    /// Refuse the write; nothing is stored.
    Refuse(String),
}

/// The decision function of a domain write, run on the domain's current record; like
/// [`Decide`], it may run more than once.
pub type DecideDomain = Box<dyn Fn(&DomainRecord) -> DomainDecision + Send + Sync>;

/// One atomic change to one domain of one tenant.
pub struct DomainWrite {
    /// The tenant.
    pub tenant: Tenant,
    /// The normalized domain.
    pub domain: String,
    /// Decides the domain's next record.
    pub decide: DecideDomain,
}

/// What became of a domain write.
#[derive(Debug, Clone)]
pub struct DomainOutcome {
    /// The record before.
    pub previous: DomainRecord,
    /// The record afterwards.
    pub record: DomainRecord,
    /// True when the decision changed the record.
    pub applied: bool,
    /// Set when the decision refused the write.
    pub refused: Option<String>,
}

/// Time granularity of counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One-hour buckets.
    Hourly,
    /// One-day buckets (UTC days).
    Daily,
}

impl Granularity {
    /// Bucket width in microseconds.
    pub fn micros(self) -> i64 {
        match self {
            Granularity::Hourly => 3_600_000_000,
            Granularity::Daily => 86_400_000_000,
        }
    }

    /// The bucket holding `t`.
    pub fn bucket(self, t: Timestamp) -> i64 {
        t.micros().div_euclid(self.micros())
    }

    /// The start of bucket `b`.
    pub fn start(self, b: i64) -> Timestamp {
        Timestamp(b.saturating_mul(self.micros()))
    }
}

/// A dimension value whose counters changed in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterTouch {
    /// The tenant.
    pub tenant: Tenant,
    /// The dimension.
    pub dimension: Dimension,
    /// The value.
    pub value: String,
}

/// Filters of a suppression listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuppressionQuery {
    /// Only these reasons (empty: every reason).
    pub reasons: Vec<crate::domain::BounceReason>,
    /// Only this source.
    pub source: Option<String>,
    /// Only suppressions since at or after this time.
    pub start: Option<Timestamp>,
    /// Only suppressions since before this time.
    pub end: Option<Timestamp>,
    /// Only addresses that do / do not need enrichment.
    pub needs_enrichment: Option<bool>,
    /// Only suppressions still in force at this instant (`None`: every stored one, including
    /// those past their expiry that the sweep has not cleared yet).
    pub in_force_at: Option<Timestamp>,
}

/// What became of one write.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// Stored. `previous` is the record before, `record` the record after.
    Applied {
        previous: Option<AddressRecord>,
        record: AddressRecord,
        changes: Vec<StateChange>,
    },
    /// The decision changed nothing (the event, if any, was recorded).
    Unchanged { record: Option<AddressRecord> },
    /// The event id was already recorded; nothing changed.
    Duplicate {
        original: RecordedEvent,
        record: Option<AddressRecord>,
    },
    /// The decision refused the write; nothing changed.
    Refused {
        record: Option<AddressRecord>,
        reason: String,
    },
}

/// Filters of a bounce listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BounceQuery {
    /// Only this source.
    pub source: Option<String>,
    /// Only these types (empty: every type but delivered).
    pub types: Vec<BounceType>,
    /// Only this campaign.
    pub campaign: Option<String>,
    /// Only events at or after this time.
    pub start: Option<Timestamp>,
    /// Only events before this time.
    pub end: Option<Timestamp>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, in listing order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page. Opaque to callers.
    pub next: Option<Vec<u8>>,
}

/// A stretch of a tenant's change log.
#[derive(Debug, Clone)]
pub struct ChangePage {
    /// The changes, in commit order.
    pub items: Vec<ListChange>,
    /// The position read up to: the last change's sequence number, or where the read started
    /// when it found none. Read on from here.
    pub read_to: u64,
    /// True when the log may hold more committed changes after `read_to`.
    pub more: bool,
}

/// What a status lookup reads: the address's record, and what the marks of its domain say.
pub type StatusInputs = (Option<AddressRecord>, Option<DomainFacts>);

/// A boxed future returned by the store's asynchronous calls.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// The storage contract every engine implements. Reads are blocking but short (point reads);
/// scans (`list_bounces`, `history`) should be called off the async workers.
pub trait SuppressionStore: Send + Sync + 'static {
    /// Applies the writes, each atomically and in order; resolves once all are durable.
    fn write(&self, writes: Vec<AddressWrite>) -> StoreFuture<Vec<WriteOutcome>>;

    /// Queues the writes and resolves once they are queued, to the future of their outcomes
    /// (as `write` gives them). Writes queued by one caller are applied in the order queued, so
    /// a caller can queue its next batch while an earlier one is being committed.
    fn submit(&self, writes: Vec<AddressWrite>) -> StoreFuture<StoreFuture<Vec<WriteOutcome>>>;

    /// The record of one address.
    fn get_record(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
    ) -> Result<Option<AddressRecord>, StoreError>;

    /// What a status lookup reads: the address's record and what the marks of its domain say
    /// ([`SuppressionStore::domain_facts`]), as a future that an engine answering over the
    /// network resolves without holding the caller's thread. By default the two reads, at
    /// once.
    fn status_inputs(&self, tenant: &Tenant, address: &EmailAddress) -> StoreFuture<StatusInputs> {
        let inputs = self.get_record(tenant, address).map(|record| {
            let facts = self
                .domain_facts(tenant, &[address.domain()])
                .pop()
                .map(|(_, f)| f);
            (record, facts)
        });
        Box::pin(std::future::ready(inputs))
    }

    /// What status lookups of many addresses read ([`SuppressionStore::status_inputs`] of
    /// each), in order. Blocking, like [`SuppressionStore::get_record`]; by default one record
    /// after the other, with the domain marks of all of them at once.
    fn status_inputs_of(
        &self,
        tenant: &Tenant,
        addresses: &[EmailAddress],
    ) -> Result<Vec<StatusInputs>, StoreError> {
        let domains: Vec<&str> = addresses.iter().map(EmailAddress::domain).collect();
        let mut facts: Vec<Option<DomainFacts>> = vec![None; addresses.len()];
        for (at, f) in self.domain_facts(tenant, &domains) {
            if let Some(slot) = facts.get_mut(at) {
                *slot = Some(f);
            }
        }
        addresses
            .iter()
            .zip(facts)
            .map(|(address, facts)| Ok((self.get_record(tenant, address)?, facts)))
            .collect()
    }

    /// Applies a two-address write atomically; resolves once it is durable.
    fn write_pair(&self, write: PairWrite) -> StoreFuture<PairOutcome>;

    /// Erases an address's personal data (see [`ForgetWrite`]); resolves once durable,
    /// data key destruction included.
    fn forget(&self, write: ForgetWrite) -> StoreFuture<WriteOutcome>;

    /// The opaque, stable identifier of an address within its tenant (a keyed hash: the same
    /// one the store names the address by; nothing outside the store can compute it).
    fn address_id(&self, tenant: &Tenant, address: &EmailAddress) -> AddressId;

    /// The suppressed ones among many normalized addresses (as [`EmailAddress::as_str`] gives
    /// them), as (index in `addresses`, record) in index order: those whose record holds a
    /// suppression of every mail (in force or past its expiry: the caller judges at its
    /// instant) and, with `lists`, those unsubscribed from some list. Answers the common case
    /// (neither) from memory, exactly, and allocates nothing for it.
    fn suppressed_records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
        lists: bool,
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError>;

    /// The addresses with something that ends by itself at or before `now` (a suppression, an
    /// unsubscribe from a list), from the expiry index, after `cursor`, at most `limit` per
    /// page: what the expiry sweep writes to. Every tenant's.
    fn due_expiries(
        &self,
        now: Timestamp,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(Tenant, EmailAddress)>, StoreError>;

    /// Suppressed addresses with their records, newest suppression first, after `cursor`.
    fn list_suppressions(
        &self,
        tenant: &Tenant,
        query: &SuppressionQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SuppressedAddress>, StoreError>;

    /// Domains of the tenant with delivered addresses, with how many, most first.
    fn known_good_domains(
        &self,
        tenant: &Tenant,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// Local parts of delivered addresses at `domain`, up to `limit`.
    fn known_good_locals(
        &self,
        tenant: &Tenant,
        domain: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Counters of a dimension value, bucket by bucket, for buckets `from..to` (only buckets
    /// with counts are returned, oldest first).
    fn counters(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
        value: &str,
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, OutcomeCounts)>, StoreError>;

    /// Every value of a dimension that has counters, in key order.
    fn dimension_values(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
    ) -> Result<Vec<String>, StoreError>;

    /// Notifications of dimension values whose counters changed, one message per commit.
    fn subscribe_counters(&self) -> broadcast::Receiver<Arc<Vec<CounterTouch>>>;

    /// A recorded event by its id.
    fn get_event(
        &self,
        tenant: &Tenant,
        event_id: &str,
    ) -> Result<Option<RecordedEvent>, StoreError>;

    /// Bounce events, newest first, starting after `cursor`.
    fn list_bounces(
        &self,
        tenant: &Tenant,
        query: &BounceQuery,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<RecordedEvent>, StoreError>;

    /// An address's history, newest first, starting after `cursor`.
    fn history(
        &self,
        tenant: &Tenant,
        address: &EmailAddress,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, StoreError>;

    /// The tenant's changes with sequence numbers after `after`, in commit order, up to
    /// `limit`, as far as they are durable. [`StoreError::ChangesPruned`] when retention
    /// removed changes after `after`: the caller missed some.
    fn changes(&self, tenant: &Tenant, after: u64, limit: usize) -> Result<ChangePage, StoreError>;

    /// The sequence number up to which changes are durable: it moves after each commit that
    /// logged a change. Its current value is where a new follower starts.
    fn change_head(&self) -> watch::Receiver<u64>;

    /// Removes every tenant's changes made before `before` (at most `limit` per call); resolves
    /// to how many were removed once that is durable.
    fn prune_changes(&self, before: Timestamp, limit: usize) -> StoreFuture<u64>;

    /// Applies a domain write atomically; resolves once it is durable (and the in-memory
    /// marks follow it).
    fn write_domain(&self, write: DomainWrite) -> StoreFuture<DomainOutcome>;

    /// Sets the rules that send results apply to their domains (from the next group commit).
    fn set_domain_rules(&self, rules: Arc<dyn DomainRules>);

    /// Whether any domain of `tenant` is marked (suppressed or accept-all); from memory, without
    /// a lock while no tenant has one.
    fn has_marked_domains(&self, tenant: &Tenant) -> bool;

    /// What the domain marks say about each of `domains` (normalized, as
    /// [`EmailAddress::domain`] gives them): (index, facts) for those with something to say, in
    /// index order. From memory; allocates nothing while the tenant has no marked domain.
    fn domain_facts(&self, tenant: &Tenant, domains: &[&str]) -> Vec<(usize, DomainFacts)>;

    /// A domain's record (marks from memory, activity from the engine).
    fn domain(&self, tenant: &Tenant, domain: &str) -> Result<DomainRecord, StoreError>;

    /// A domain's history, newest first, at most `limit` changes.
    fn domain_history(
        &self,
        tenant: &Tenant,
        domain: &str,
        limit: usize,
    ) -> Result<Vec<StateChange>, StoreError>;

    /// Suppressed domains with their records, newest suppression first, after `cursor`.
    fn list_suppressed_domains(
        &self,
        tenant: &Tenant,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<(String, DomainRecord)>, StoreError>;

    /// The records of those of many normalized addresses that have one, as (index, record) in
    /// index order; addresses the known-address index rules out are not read.
    fn records(
        &self,
        tenant: &Tenant,
        addresses: &[&str],
    ) -> Result<Vec<(usize, AddressRecord)>, StoreError>;

    /// A consistent cut of the whole store for a backup, taken between two group commits:
    /// exactly the writes committed up to its sequence number. Writes go on meanwhile (see
    /// [`StoreSnapshot`]).
    fn snapshot(&self) -> StoreFuture<StoreSnapshot>;

    /// A secret kept with the data, for signing page tokens so they survive restarts.
    fn token_secret(&self) -> [u8; 32];

    /// Number of suppressed addresses across all tenants (from memory).
    fn suppressed_count(&self) -> u64;

    /// Whether the in-memory indexes loaded in the background at start-up are complete (until
    /// then, reads they would spare go to the engine: slower, never different).
    fn indexes_loaded(&self) -> bool;

    /// Waits until the start-up load of the in-memory indexes has ended.
    #[cfg(test)]
    fn wait_for_index_load(&self) -> Result<(), StoreError>;

    /// Why the writer ended, once it has ended other than by [`SuppressionStore::close`]
    /// (`None` while it runs). After that the store takes no more writes (they answer
    /// [`StoreError::Closed`]) and the process should stop and be restarted.
    fn writer_failure(&self) -> watch::Receiver<Option<String>>;

    /// Whether the store can serve calls: always for the embedded engines; for the postgres
    /// engine, while the database is reachable and its schema in place.
    fn ready(&self) -> watch::Receiver<bool> {
        watch::channel(true).1
    }

    /// Stops taking writes, waits for the pending ones and flushes. Idempotent.
    fn close(&self) -> Result<(), StoreError>;
}
