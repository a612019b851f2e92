//! The writer thread: group commit, the same for every engine.
//!
//! It takes every job that is waiting and runs them in one engine write transaction: each write
//! reads the address's current record, runs its `decide` step, and puts its keys (record,
//! event, indexes, history) with the counter updates in the same atomic unit. The transaction is
//! made durable once (one fsync), and only then are the callers answered, so concurrent writers
//! share one commit. An engine may split a transaction into several atomic units between writes
//! (sled does, see `sled_engine`); nothing is answered before all of them are durable.
//!
//! A write's `decide` step is code of the caller's (policy): if it panics, the panic is caught
//! and only that write fails (its caller gets [`StoreError::DecisionPanicked`]); the step runs
//! before the write puts any key, so nothing of it is stored, and the rest of the group goes on.
//!
//! A send result also updates its domain, in the same atomic unit: the domain's latest
//! delivery hour (at most one read and one write per domain and hour, see [`DeliveryStamps`])
//! and, when the domain rules say it concerns its domain (a DOMAIN_NOT_FOUND bounce, a bounce
//! after a delivery, a delivery to an automatically suppressed domain), the domain's record and
//! history. Domain writes of operators run here too, and the in-memory domain marks follow
//! each commit once it is durable, like the suppressed index.
//!
//! Personal data is sealed here, under each address's data key (`keyring`): the writer
//! allocates a key the first time an address needs one, and fsyncs the keyring before the
//! group's commit whenever the group wrote to it. A forget (`ForgetWrite`) runs in a group of
//! its own, so that its scans of the address's history see everything written before it.
//!
//! A backup's cut (`Job::Snapshot`) is taken here too, between two groups: every group before
//! it is committed and its replaced keys destroyed, none after it has started, so the engine's
//! view (`KvEngine::snapshot`) and the keyring's bytes copied then agree.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use tokio::sync::{mpsc, oneshot};

use super::address_hash::AddressHash;
use super::domain_index::DomainIndex;
use super::keyring::{self, DataKey};
use super::keys;
use super::kv::{KvEngine, KvSnapshot, KvTxn};
use super::kv_store::{
    decode, encode, hourly_slot, scan_prefix, seal, seal_change, DomainActivity, HourlyRow,
    Position, Shared, StoredAddress, StoredChange, StoredEntry,
};
use super::records::{sealed_address, Record};
use super::{
    AddressWrite, CounterTouch, Decision, DomainDecision, DomainOutcome, DomainRules, DomainWrite,
    ErrorChain, ForgetWrite, Granularity, PairDecision, PairOutcome, PairWrite, StoreError,
    WriteOutcome,
};
use crate::domain::{
    list_change, AddressRecord, BounceType, ChangeKind, Dimension, DomainMarks, DomainRecord,
    DomainSuppression, EmailAddress, ListChange, OutcomeCounts, RecordedEvent, StateChange,
    StateChangeKind, Suppression, Tenant, Timestamp,
};

/// A key and its value, as a scan read them.
type KeyValue = (Vec<u8>, Vec<u8>);

/// What stands in a linked address's history for the text of an address that was forgotten.
pub(super) const FORGOTTEN_ADDRESS: &str = "(a forgotten address)";

/// Most writes taken into one group commit. Bigger groups cost less per write (neighbouring keys
/// share B-tree pages), but every caller queued behind a group waits for all of it; the
/// measurements behind the size are in bench/README.md.
const MAX_GROUP_WRITES: usize = 8192;
/// Most domains whose delivery hour the writer remembers; beyond, it forgets them all (each
/// costs one read again).
const MAX_DELIVERY_STAMPS: usize = 100_000;

/// Which way an event moves its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CounterChange {
    /// A newly recorded event (or its new classification) is counted.
    Count,
    /// A reclassified event's old classification is taken away.
    Uncount,
}

/// A snapshot's cut: the engine's consistent view and the keyring file's bytes.
pub type Cut = (Box<dyn KvSnapshot>, Vec<u8>);

/// A unit of work for the writer thread.
pub enum Job {
    /// Single-address writes.
    Writes {
        writes: Vec<AddressWrite>,
        reply: oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>,
    },
    /// A two-address write.
    Pair {
        write: PairWrite,
        reply: oneshot::Sender<Result<PairOutcome, StoreError>>,
    },
    /// Erasing an address's personal data; runs in a group of its own.
    Forget {
        write: ForgetWrite,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
    /// Removes change log entries past their retention and moves the tenants' horizons.
    Prune {
        removals: Vec<Vec<u8>>,
        horizons: Vec<(String, u64)>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// A domain write.
    Domain {
        write: DomainWrite,
        reply: oneshot::Sender<Result<DomainOutcome, StoreError>>,
    },
    /// A consistent cut for a backup, taken between two group commits: the engine's view and
    /// the keyring's bytes as they are then.
    Snapshot {
        reply: oneshot::Sender<Result<Cut, StoreError>>,
    },
}

impl Job {
    fn len(&self) -> usize {
        match self {
            Job::Writes { writes, .. } => writes.len(),
            Job::Pair { .. } | Job::Domain { .. } | Job::Forget { .. } | Job::Snapshot { .. } => 1,
            Job::Prune { removals, .. } => removals.len(),
        }
    }

    fn is_forget(&self) -> bool {
        matches!(self, Job::Forget { .. })
    }

    /// Whether the job starts a group of its own (a forget, a snapshot).
    fn alone(&self) -> bool {
        matches!(self, Job::Forget { .. } | Job::Snapshot { .. })
    }
}

/// The answer of one job, sent once its group is durable (or has failed). A job whose
/// decision panicked answers that error even though its other writes are stored.
// One value per write, moved once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Writes(
        oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>,
        Result<Vec<WriteOutcome>, String>,
    ),
    Pair(
        oneshot::Sender<Result<PairOutcome, StoreError>>,
        Result<PairOutcome, String>,
    ),
    Forget(
        oneshot::Sender<Result<WriteOutcome, StoreError>>,
        Result<WriteOutcome, String>,
    ),
    Prune(
        oneshot::Sender<Result<u64, StoreError>>,
        Result<u64, String>,
    ),
    Domain(
        oneshot::Sender<Result<DomainOutcome, StoreError>>,
        Result<DomainOutcome, String>,
    ),
}

/// The message of a caught panic.
pub(super) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The hour of the latest delivery that each domain's activity record holds, as this writer
/// wrote or read it: a delivery whose hour its domain's record has already costs no engine read
/// or write, so deliveries (most send results) cost at most one read and one write per domain
/// and hour. Bounded by [`MAX_DELIVERY_STAMPS`]. Changed only once a commit is durable.
#[derive(Default)]
pub(super) struct DeliveryStamps {
    /// (hash of tenant and domain, `tenant 0 domain`, hour number).
    table: hashbrown::HashTable<(u64, Box<str>, i64)>,
    state: foldhash::fast::FixedState,
}

impl DeliveryStamps {
    fn hash(&self, tenant: &str, domain: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.state, (tenant, domain))
    }

    fn matches(key: &str, tenant: &str, domain: &str) -> bool {
        key.len() == tenant.len() + 1 + domain.len()
            && key.starts_with(tenant)
            && key.as_bytes()[tenant.len()] == 0
            && key.ends_with(domain)
    }

    /// Whether the domain's record holds hour `hour` (or a later one) already.
    fn fresh(&self, tenant: &str, domain: &str, hour: i64) -> bool {
        let hash = self.hash(tenant, domain);
        self.table
            .find(hash, |(h, key, _)| {
                *h == hash && Self::matches(key, tenant, domain)
            })
            .is_some_and(|(_, _, stamped)| *stamped >= hour)
    }

    /// Remembers that the domain's record holds hour `hour`.
    fn record(&mut self, tenant: &str, domain: &str, hour: i64) {
        let hash = self.hash(tenant, domain);
        match self.table.entry(
            hash,
            |(h, key, _)| *h == hash && Self::matches(key, tenant, domain),
            |(h, _, _)| *h,
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let stamped = &mut e.get_mut().2;
                *stamped = (*stamped).max(hour);
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert((hash, format!("{tenant}\0{domain}").into_boxed_str(), hour));
                if self.table.len() > MAX_DELIVERY_STAMPS {
                    self.table.clear();
                }
            }
        }
    }
}

/// Runs until every sender is dropped, then flushes.
pub fn writer_loop<E: KvEngine>(shared: Arc<Shared<E>>, mut rx: mpsc::Receiver<Job>) {
    let mut stamps = DeliveryStamps::default();
    // A forget taken from the queue while a group was being gathered: it starts the next one.
    let mut waiting: Option<Job> = None;
    loop {
        let Some(first) = waiting.take().or_else(|| rx.blocking_recv()) else {
            break;
        };
        let first = match first {
            Job::Snapshot { reply } => {
                // Every group before it is committed and its keys retired: the engine's view
                // and the keyring agree.
                let cut = shared
                    .engine
                    .snapshot()
                    .and_then(|view| Ok((view, shared.keyring.contents()?)));
                let _ = reply.send(cut);
                continue;
            }
            other => other,
        };
        let mut total = first.len();
        let alone = first.is_forget();
        let mut jobs = vec![first];
        while !alone && total < MAX_GROUP_WRITES {
            match rx.try_recv() {
                Ok(job) if job.alone() => {
                    waiting = Some(job);
                    break;
                }
                Ok(job) => {
                    total += job.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        metrics::histogram!("suppressd_group_commit_writes").record(total as f64);
        let mut answers: Vec<Answer> = Vec::with_capacity(jobs.len());
        let rules = shared
            .domain_rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let committed = shared.engine.transact(|txn| {
            let mut group = Group::new(
                txn,
                &shared,
                DomainState {
                    index: &shared.domains,
                    rules: rules.as_deref(),
                    stamps: &stamps,
                },
            );
            for job in jobs {
                answers.push(match job {
                    Job::Writes { writes, reply } => {
                        let mut panicked = None;
                        let mut outcomes = Vec::with_capacity(writes.len());
                        for w in writes {
                            match group.add(w) {
                                Ok(outcome) => outcomes.push(outcome),
                                Err(message) => {
                                    panicked.get_or_insert(message);
                                }
                            }
                        }
                        Answer::Writes(reply, panicked.map_or(Ok(outcomes), Err))
                    }
                    Job::Pair { write, reply } => Answer::Pair(reply, group.add_pair(write)),
                    Job::Forget { write, reply } => Answer::Forget(reply, group.add_forget(write)),
                    Job::Prune {
                        removals,
                        horizons,
                        reply,
                    } => Answer::Prune(reply, group.prune(removals, horizons)),
                    Job::Domain { write, reply } => Answer::Domain(reply, group.add_domain(write)),
                    Job::Snapshot { reply } => {
                        // Never gathered into a group (see `alone`).
                        let _ = reply.send(Err(StoreError::engine(
                            "snapshot",
                            "a snapshot cannot be taken inside a group",
                        )));
                        continue;
                    }
                });
            }
            group.finish()
        });
        // Only now that the writes are durable does the in-memory state follow them.
        if let Ok(effects) = &committed {
            if !effects.retired_keys.is_empty() {
                retire_keys(&shared, &effects.retired_keys);
            }
            shared.known.extend(&effects.new_records);
            for &(hash, suppressed) in &effects.filter_changes {
                if suppressed {
                    shared.filter.insert(hash);
                } else {
                    shared.filter.remove(hash);
                }
            }
            if !effects.horizons.is_empty() {
                let mut known = shared.horizons.lock().unwrap_or_else(|e| e.into_inner());
                for (tenant, seq) in &effects.horizons {
                    known.insert(tenant.clone(), *seq);
                }
            }
            if effects.logged_changes {
                // Followers of the change feed read up to the last sequence number committed.
                match shared.engine.last_seq() {
                    Ok(seq) => {
                        shared.feed_head.send_replace(seq);
                    }
                    Err(e) => {
                        tracing::error!(error = %ErrorChain(&e), "cannot read the last sequence number")
                    }
                }
            }
            for &(hash, listed) in &effects.list_changes {
                if listed {
                    shared.list_filter.insert(hash);
                } else {
                    shared.list_filter.remove(hash);
                }
            }
            for (tenant, domain, marks) in &effects.domain_marks {
                shared.domains.set(tenant, domain, marks.clone());
            }
            for (tenant, domain, hour) in &effects.stamps {
                stamps.record(tenant, domain, *hour);
            }
            if !effects.touched.is_empty() {
                // Nobody listening is fine.
                let _ = shared
                    .touches
                    .send(Arc::new(effects.touched.iter().cloned().collect()));
            }
        }
        metrics::histogram!("suppressd_group_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("suppressd_suppressed_addresses").set(shared.filter.len() as f64);
        let committed = committed.map_err(|e| {
            tracing::error!(error = %ErrorChain(&e), "group commit failed");
            Arc::new(e)
        });
        for answer in answers {
            // A caller that went away no longer needs the answer.
            match answer {
                Answer::Writes(reply, outcomes) => {
                    let _ = reply.send(answer_of(&committed, outcomes));
                }
                Answer::Pair(reply, outcome) => {
                    let _ = reply.send(answer_of(&committed, outcome));
                }
                Answer::Forget(reply, outcome) => {
                    let _ = reply.send(answer_of(&committed, outcome));
                }
                Answer::Prune(reply, outcome) => {
                    let _ = reply.send(answer_of(&committed, outcome));
                }
                Answer::Domain(reply, outcome) => {
                    let _ = reply.send(answer_of(&committed, outcome));
                }
            }
        }
    }
    if let Err(e) = shared.engine.flush() {
        tracing::error!(error = %ErrorChain(&e), "final flush failed");
    }
}

/// Destroys the keys that a committed group replaced. The group is durable already: a failure
/// here leaves the old keys readable (and is logged), it loses nothing.
fn retire_keys<E: KvEngine>(shared: &Shared<E>, slots: &[u64]) {
    let done = slots
        .iter()
        .try_for_each(|&slot| shared.keyring.destroy(slot))
        .and_then(|_| shared.keyring.sync());
    if let Err(e) = done {
        tracing::error!(error = %ErrorChain(&e), "cannot destroy replaced data keys");
    }
}

/// What a job's caller is answered: the group's failure, else its own outcome.
fn answer_of<T>(
    committed: &Result<Effects, Arc<StoreError>>,
    own: Result<T, String>,
) -> Result<T, StoreError> {
    match committed {
        Err(e) => Err(StoreError::CommitFailed(e.clone())),
        Ok(_) => own.map_err(StoreError::DecisionPanicked),
    }
}

/// Runs a write's decision, turning a panic into [`StoreError::DecisionPanicked`]. Nothing is
/// shared with the decision but the records it reads, which it cannot change, so no state is
/// left half-changed by its panic.
pub(super) fn decided<T>(decide: impl FnOnce() -> T) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(decide))
        .map_err(|panic| StoreError::DecisionPanicked(panic_message(&*panic)))
}

/// The new records of a two-address write: (record, history changes) for the first and the
/// second address, `None` where it leaves the address as it is.
pub(super) type PairRecords = [Option<(AddressRecord, Vec<StateChange>)>; 2];

/// Decides a two-address write on the records as they are: the outcome to answer at once (a
/// forgotten address, or a refusal), or the records to store.
pub(super) fn plan_pair(
    write: &PairWrite,
    first: Option<AddressRecord>,
    second: Option<AddressRecord>,
) -> Result<Result<PairRecords, PairOutcome>, StoreError> {
    if first.iter().chain(&second).any(|r| r.forgotten) {
        return Ok(Err(PairOutcome {
            first,
            second,
            refused: Some(
                "one of the addresses was forgotten (ForgetAddress): its record no longer changes"
                    .to_string(),
            ),
        }));
    }
    Ok(
        match decided(|| (write.decide)(first.as_ref(), second.as_ref()))? {
            PairDecision::Refuse(reason) => Err(PairOutcome {
                first,
                second,
                refused: Some(reason),
            }),
            PairDecision::Apply {
                first: new_first,
                second: new_second,
            } => Ok([new_first, new_second]),
        },
    )
}

/// Stores the records a two-address write decided: `store(target, before, record, changes)`
/// for each address with a new record, the first then the second (`targets` are what the
/// engine needs to store each); then the outcome, which names each address's record as the
/// write left it.
pub(super) fn store_pair<T>(
    targets: [T; 2],
    before: [Option<AddressRecord>; 2],
    new: PairRecords,
    mut store: impl FnMut(
        T,
        Option<&AddressRecord>,
        &AddressRecord,
        &[StateChange],
    ) -> Result<(), StoreError>,
) -> Result<PairOutcome, StoreError> {
    let mut after = before.clone();
    for ((target, new), (before, after)) in targets
        .into_iter()
        .zip(new)
        .zip(before.iter().zip(after.iter_mut()))
    {
        if let Some((record, changes)) = new {
            store(target, before.as_ref(), &record, &changes)?;
            *after = Some(record);
        }
    }
    let [first, second] = after;
    Ok(PairOutcome {
        first,
        second,
        refused: None,
    })
}

/// What a committed group changes outside the engine.
struct Effects {
    /// Filter changes: (hash, now suppressed), in write order.
    filter_changes: Vec<(u64, bool)>,
    /// Changes of the set of addresses unsubscribed from some list: (hash, now in it), in
    /// write order.
    list_changes: Vec<(u64, bool)>,
    /// Hashes of the addresses whose first record this group wrote.
    new_records: Vec<u64>,
    /// Dimension values whose counters changed.
    touched: HashSet<CounterTouch>,
    /// Whether the group added to a change log.
    logged_changes: bool,
    /// Change log horizons moved by pruning: (tenant, last pruned sequence number).
    horizons: Vec<(String, u64)>,
    /// Keyring slots of keys replaced by new ones in this group (an address whose data was
    /// sealed again), destroyed once the commit that stops referring to them is durable: a
    /// crash before that leaves the old key alive, never a record without its key.
    retired_keys: Vec<u64>,
    /// Domains whose marks changed: (tenant, domain, marks now), in write order.
    domain_marks: Vec<(String, String, DomainMarks)>,
    /// Domains whose activity record now holds a delivery hour: (tenant, domain, hour).
    stamps: Vec<(String, String, i64)>,
}

/// What a group reads about domains besides the engine.
struct DomainState<'t> {
    /// The committed domain marks.
    index: &'t DomainIndex,
    /// The rules send results apply to their domains, if set.
    rules: Option<&'t dyn DomainRules>,
    /// The delivery hours the domains' records hold.
    stamps: &'t DeliveryStamps,
}

/// A domain's change, worked out before any key of its write is put.
struct DomainPlan {
    tenant: Tenant,
    domain: String,
    previous: DomainRecord,
    record: DomainRecord,
    changes: Vec<StateChange>,
    /// The delivery hour the domain's record holds afterwards, for a delivery.
    stamp: Option<i64>,
}

/// Where an address's record is: its key and its keyed hash. Worked out once per write, for
/// the read and for the writes of the record, its history and its index entries.
struct RecordSlot {
    key: Vec<u8>,
    ah: AddressHash,
}

impl RecordSlot {
    fn of(
        hasher: &super::address_hash::AddressHasher,
        tenant: &Tenant,
        address: &EmailAddress,
    ) -> RecordSlot {
        let ah = hasher.hash(tenant.as_str(), address.as_str());
        RecordSlot {
            key: keys::record(tenant.as_str(), &ah),
            ah,
        }
    }
}

/// The writes of one group commit, with overlays of what they changed so far so that later
/// writes in the group see earlier ones (engines need not show a transaction its own writes).
struct Group<'t, E> {
    txn: &'t mut dyn KvTxn,
    shared: &'t Shared<E>,
    records: HashMap<Vec<u8>, Option<AddressRecord>>,
    /// Data keys of the addresses this group read or wrote, by record key: (slot, key).
    data_keys: HashMap<AddressHash, (u64, DataKey)>,
    /// Record keys whose data key this group allocated and whose record does not name it yet.
    fresh_keys: HashSet<AddressHash>,
    /// Event positions written this group, by `P` key.
    positions: HashMap<Vec<u8>, Position>,
    /// History entries with a send result written this group, by key.
    entries: HashMap<Vec<u8>, StoredEntry>,
    /// Counter changes of the current atomic unit, by counter key: (added, taken away).
    counter_deltas: HashMap<Vec<u8>, (OutcomeCounts, OutcomeCounts)>,
    /// Counter values written so far in this group, by counter key.
    counter_values: HashMap<Vec<u8>, OutcomeCounts>,
    /// Hourly counter changes of the current atomic unit, by day-row key and hour of the day.
    hourly_deltas: HashMap<Vec<u8>, BTreeMap<u8, (OutcomeCounts, OutcomeCounts)>>,
    /// Day rows written so far in this group, by key.
    hourly_values: HashMap<Vec<u8>, HourlyRow>,
    /// Keys written this group that need writing once only (value index, known-good entries),
    /// with the count of known-good addresses per domain key.
    written_once: HashSet<Vec<u8>>,
    domain_counts: HashMap<Vec<u8>, u64>,
    domains: DomainState<'t>,
    /// Domain marks changed this group: tenant -> domain -> marks.
    marks: HashMap<String, HashMap<String, DomainMarks>>,
    /// Domain activity records written this group, by key.
    activities: HashMap<Vec<u8>, DomainActivity>,
    effects: Effects,
    error: Option<StoreError>,
}

impl<'t, E: KvEngine> Group<'t, E> {
    fn new(txn: &'t mut dyn KvTxn, shared: &'t Shared<E>, domains: DomainState<'t>) -> Self {
        Group {
            txn,
            shared,
            domains,
            marks: HashMap::new(),
            activities: HashMap::new(),
            records: HashMap::new(),
            data_keys: HashMap::new(),
            fresh_keys: HashSet::new(),
            positions: HashMap::new(),
            entries: HashMap::new(),
            counter_deltas: HashMap::new(),
            counter_values: HashMap::new(),
            hourly_deltas: HashMap::new(),
            hourly_values: HashMap::new(),
            written_once: HashSet::new(),
            domain_counts: HashMap::new(),
            effects: Effects {
                filter_changes: Vec::new(),
                list_changes: Vec::new(),
                new_records: Vec::new(),
                touched: HashSet::new(),
                logged_changes: false,
                horizons: Vec::new(),
                domain_marks: Vec::new(),
                stamps: Vec::new(),
                retired_keys: Vec::new(),
            },
            error: None,
        }
    }

    fn get<T: Record>(&mut self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.txn.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// The current record of the address in `slot` (its data key, if it has one, is then at
    /// hand for `data_key`).
    fn record(&mut self, slot: &RecordSlot) -> Result<Option<AddressRecord>, StoreError> {
        match self.records.get(&slot.key) {
            Some(r) => Ok(r.clone()),
            // Most send results are for addresses seen before or never: the known-address
            // index tells the second kind apart without a read (its `false` is exact, and this
            // thread adds each group's new records to it before the next group).
            None if !self.shared.known.may_exist(slot.ah.short()) => Ok(None),
            None => Ok(self.stored(slot)?.map(|stored| stored.record)),
        }
    }

    /// The stored record of the address in `slot`, opened, as the engine holds it; remembers
    /// its data key.
    fn stored(&mut self, slot: &RecordSlot) -> Result<Option<StoredAddress>, StoreError> {
        let Some(value) = self.txn.get(&slot.key)? else {
            return Ok(None);
        };
        let (stored, key) = self.shared.open_address(&slot.key, &value)?;
        if let (Some(n), Some(key)) = (stored.key_slot, key) {
            self.data_keys.insert(slot.ah, (n, key));
        }
        Ok(Some(stored))
    }

    /// The data key of the address in `slot` (read before with `record`), allocated on first
    /// need: a new address, a record written before the keyring, or one whose key a crash
    /// destroyed before its erasure was committed.
    fn data_key(&mut self, slot: &RecordSlot) -> Result<(u64, DataKey), StoreError> {
        if let Some(found) = self.data_keys.get(&slot.ah) {
            return Ok(found.clone());
        }
        let allocated = self.shared.keyring.allocate()?;
        self.data_keys.insert(slot.ah, allocated.clone());
        self.fresh_keys.insert(slot.ah);
        Ok(allocated)
    }

    /// Where the event with position key `key` (`keys::position`) is recorded, if it is.
    fn position(&mut self, key: &[u8]) -> Result<Option<Position>, StoreError> {
        if let Some(p) = self.positions.get(key) {
            return Ok(Some(*p));
        }
        match self.txn.get(key)? {
            Some(v) => Ok(Some(Position::from_bytes(key, &v)?)),
            None => Ok(None),
        }
    }

    /// The history entry under `key`, which holds a send result (`None` also when it was
    /// sealed under a key since destroyed).
    fn entry(&mut self, key: &[u8]) -> Result<Option<StoredEntry>, StoreError> {
        match self.entries.get(key) {
            Some(e) => Ok(Some(e.clone())),
            None => match self.txn.get(key)? {
                Some(v) => self.shared.open_value(key, &v),
                None => Ok(None),
            },
        }
    }

    /// The recorded event with id `event_id`: its position key, its entry's key and the entry.
    fn recorded(
        &mut self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<(Vec<u8>, StoredEntry)>, StoreError> {
        let Some(position) = self.position(&keys::position(tenant, event_id))? else {
            return Ok(None);
        };
        let key = position.entry_key(tenant);
        Ok(self.entry(&key)?.map(|entry| (key, entry)))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.txn.put(key, value)
    }

    fn remove(&mut self, key: Vec<u8>) -> Result<(), StoreError> {
        self.txn.remove(key)
    }

    /// Writes the current atomic unit's counter updates into it.
    fn flush_counters(&mut self) -> Result<(), StoreError> {
        for (key, (plus, minus)) in std::mem::take(&mut self.counter_deltas) {
            let mut value = match self.counter_values.get(&key) {
                Some(v) => *v,
                None => self.get::<OutcomeCounts>(&key)?.unwrap_or_default(),
            };
            value.add(&plus);
            value.subtract(&minus);
            self.put(key.clone(), encode(&value)?)?;
            self.counter_values.insert(key, value);
        }
        for (key, hours) in std::mem::take(&mut self.hourly_deltas) {
            let mut row = match self.hourly_values.remove(&key) {
                Some(row) => row,
                None => self.get::<HourlyRow>(&key)?.unwrap_or_default(),
            };
            for (hour, (plus, minus)) in hours {
                let counts = row.hour_mut(hour);
                counts.add(&plus);
                counts.subtract(&minus);
            }
            self.put(key.clone(), encode(&row)?)?;
            self.hourly_values.insert(key, row);
        }
        Ok(())
    }

    /// Closes the current atomic unit if the engine asks for it; called only between writes,
    /// so that the keys of one write always share a unit with its counter updates.
    fn maybe_cut(&mut self) -> Result<(), StoreError> {
        if self.txn.wants_cut() {
            self.flush_counters()?;
            self.txn.cut();
        }
        Ok(())
    }

    /// Runs one write. A panic of its decision fails this write alone (`Err` with the panic's
    /// message); a storage error is remembered (the whole group then fails) and answers
    /// `fallback` for this write.
    fn guarded<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
        fallback: impl FnOnce(String) -> T,
    ) -> Result<T, String> {
        match write(self).and_then(|o| self.maybe_cut().map(|_| o)) {
            Ok(outcome) => Ok(outcome),
            Err(StoreError::DecisionPanicked(message)) => {
                tracing::error!(panic = %message, "the decision of a write panicked; the write is refused");
                Err(message)
            }
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "write failed");
                let reason = e.to_string();
                self.error.get_or_insert(e);
                Ok(fallback(reason))
            }
        }
    }

    fn add(&mut self, write: AddressWrite) -> Result<WriteOutcome, String> {
        self.guarded(
            |g| g.try_add(write),
            |reason| WriteOutcome::Refused {
                record: None,
                reason,
            },
        )
    }

    fn add_pair(&mut self, write: PairWrite) -> Result<PairOutcome, String> {
        self.guarded(
            |g| g.try_add_pair(write),
            |reason| PairOutcome {
                first: None,
                second: None,
                refused: Some(reason),
            },
        )
    }

    fn add_domain(&mut self, write: DomainWrite) -> Result<DomainOutcome, String> {
        self.guarded(
            |g| g.try_add_domain(write),
            |reason| DomainOutcome {
                previous: DomainRecord::default(),
                record: DomainRecord::default(),
                applied: false,
                refused: Some(reason),
            },
        )
    }

    fn add_forget(&mut self, write: ForgetWrite) -> Result<WriteOutcome, String> {
        self.guarded(
            |g| g.try_forget(write),
            |reason| WriteOutcome::Refused {
                record: None,
                reason,
            },
        )
    }

    /// Stores an address's new record with its history and index changes: sealed under the
    /// address's data key, or, for a forgotten record, with nothing personal to seal.
    fn set_record(
        &mut self,
        tenant: &Tenant,
        address: &EmailAddress,
        slot: RecordSlot,
        previous: Option<&AddressRecord>,
        record: &AddressRecord,
        changes: &[StateChange],
    ) -> Result<AddressHash, StoreError> {
        let t = tenant.as_str();
        let key = if record.forgotten {
            None
        } else {
            Some(self.data_key(&slot)?)
        };
        self.fresh_keys.remove(&slot.ah);
        let RecordSlot {
            key: record_key,
            ah,
        } = slot;
        let value = match &key {
            Some((n, k)) => sealed_address(address.as_str(), record, *n, k)?,
            None => encode(&StoredAddress::plain(String::new(), record.clone()))?,
        };
        self.put(record_key.clone(), value)?;
        if previous.is_none() {
            self.effects.new_records.push(ah.short());
        }
        let before = previous.and_then(|p| p.suppression.as_ref());
        let after = record.suppression.as_ref();
        if before.map(|s| s.since) != after.map(|s| s.since) {
            if let Some(old) = before {
                self.remove(keys::suppressed(t, old.since, &ah))?;
            }
            if let Some(new) = after {
                self.put(keys::suppressed(t, new.since, &ah), Vec::new())?;
            }
        }
        if before.is_some() != after.is_some() {
            self.effects
                .filter_changes
                .push((ah.short(), after.is_some()));
        }
        // What ends by itself, for the sweep (no key, and no allocation, for the many records
        // with nothing that expires).
        let ends_before = previous.map(AddressRecord::expiries).unwrap_or_default();
        let ends_after = record.expiries();
        for &end in ends_before.iter().filter(|e| !ends_after.contains(e)) {
            self.remove(keys::expiry(t, end, &ah))?;
        }
        for &end in ends_after.iter().filter(|e| !ends_before.contains(e)) {
            self.put(keys::expiry(t, end, &ah), Vec::new())?;
        }
        let listed_before = previous.is_some_and(|p| !p.list_unsubscribes.is_empty());
        let listed_after = !record.list_unsubscribes.is_empty();
        if listed_before != listed_after {
            let key = keys::list_unsubscribed(t, &ah);
            if listed_after {
                self.put(key, Vec::new())?;
            } else {
                self.remove(key)?;
            }
            self.effects.list_changes.push((ah.short(), listed_after));
        }
        let history = keys::history(t, &ah);
        for c in changes {
            let entry = StoredEntry {
                event: None,
                changes: vec![c.clone()],
            };
            let seq = self.txn.next_seq()?;
            let value = match &key {
                Some((n, k)) => seal(&entry, *n, k)?,
                None => encode(&entry)?,
            };
            self.put(keys::timed(&history, c.at, seq), value)?;
        }
        self.records.insert(record_key, Some(record.clone()));
        Ok(ah)
    }

    /// Counts one event in its counters, or takes it away again; `to_accept_all` counts it as
    /// a result for an address at an accept-all domain too.
    fn adjust_counters(
        &mut self,
        tenant: &Tenant,
        event: &RecordedEvent,
        change: CounterChange,
        to_accept_all: bool,
    ) -> Result<(), StoreError> {
        let t = tenant.as_str();
        let mut one = OutcomeCounts::one(event.classification.bounce_type);
        one.to_accept_all = u64::from(to_accept_all);
        for (dimension, value) in [
            (Dimension::Source, &event.source),
            (Dimension::Campaign, &event.campaign),
            (Dimension::Segment, &event.segment),
        ] {
            if value.is_empty() {
                continue;
            }
            let mut key = keys::dimension_prefix(keys::DAILY, t, dimension.code(), value);
            key.extend_from_slice(&keys::ordered_i64(
                Granularity::Daily.bucket(event.occurred_at),
            ));
            let (plus, minus) = self.counter_deltas.entry(key).or_default();
            match change {
                CounterChange::Count => plus.add(&one),
                CounterChange::Uncount => minus.add(&one),
            }
            let (row_key, hour) = hourly_slot(
                keys::dimension_prefix(keys::HOURS, t, dimension.code(), value),
                Granularity::Hourly.bucket(event.occurred_at),
            );
            let (plus, minus) = self
                .hourly_deltas
                .entry(row_key)
                .or_default()
                .entry(hour)
                .or_default();
            match change {
                CounterChange::Count => plus.add(&one),
                CounterChange::Uncount => minus.add(&one),
            }
            // The value index entry names the tenant, dimension and value: written once per
            // group, it also marks the first touch of the value's counters in the group.
            let value_key = keys::dimension_prefix(keys::VALUES, t, dimension.code(), value);
            if !self.written_once.contains(&value_key) {
                self.written_once.insert(value_key.clone());
                self.put(value_key, Vec::new())?;
                self.effects.touched.insert(CounterTouch {
                    tenant: tenant.clone(),
                    dimension,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }

    /// Counts the event per dimension value and hour/day, and remembers delivered addresses
    /// (their local part sealed under the address's data key).
    fn count_event(
        &mut self,
        tenant: &Tenant,
        address: &EmailAddress,
        slot: &RecordSlot,
        event: &RecordedEvent,
    ) -> Result<(), StoreError> {
        let t = tenant.as_str();
        let to_accept_all = self.accept_all(t, address.domain());
        self.adjust_counters(tenant, event, CounterChange::Count, to_accept_all)?;
        if event.classification.bounce_type == BounceType::Delivered {
            let good = keys::good_address(t, address.domain(), &slot.ah);
            let known = self.written_once.contains(&good) || self.txn.contains(&good)?;
            if !known {
                self.written_once.insert(good.clone());
                let (n, key) = self.data_key(slot)?;
                self.put(
                    good,
                    keyring::seal_value(n, &key, address.local_part().as_bytes())?,
                )?;
                // An entry of schema 4 names the local part in its key: counted already, it is
                // replaced by the sealed one.
                let plain = keys::plain_good_address(t, address.domain(), address.local_part());
                if self.shared.plain_data && self.txn.contains(&plain)? {
                    self.remove(plain)?;
                } else {
                    self.add_to_domain_count(t, address.domain(), 1)?;
                }
            }
        }
        Ok(())
    }

    /// Moves the count of delivered addresses at `domain` by `delta` (the key goes at zero).
    fn add_to_domain_count(&mut self, t: &str, domain: &str, delta: i64) -> Result<(), StoreError> {
        let domain_key = keys::exact(keys::GOOD_DOMAIN, &[t], domain);
        let count = match self.domain_counts.get(&domain_key) {
            Some(c) => *c,
            None => self.get::<u64>(&domain_key)?.unwrap_or(0),
        }
        .saturating_add_signed(delta);
        self.domain_counts.insert(domain_key.clone(), count);
        if count == 0 {
            self.remove(domain_key)
        } else {
            self.put(domain_key, encode(&count)?)
        }
    }

    fn try_add(&mut self, write: AddressWrite) -> Result<WriteOutcome, StoreError> {
        let tenant = &write.tenant;
        let t = tenant.as_str();
        let address = &write.address;
        let slot = RecordSlot::of(&self.shared.hasher, tenant, address);
        let previous = self.record(&slot)?;

        if let Some(event) = &write.event {
            if let Some((_, entry)) = self.recorded(t, &event.event_id)? {
                if let Some(original) = entry.event {
                    return Ok(WriteOutcome::Duplicate {
                        original,
                        record: previous,
                    });
                }
            }
        }

        if previous.as_ref().is_some_and(|r| r.forgotten) {
            // The person's data is gone for good: a send result is counted (counters name no
            // one) and stored nowhere else, and nothing changes the record.
            if let Some(event) = &write.event {
                let to_accept_all = self.accept_all(t, write.address.domain());
                self.adjust_counters(tenant, event, CounterChange::Count, to_accept_all)?;
            }
            return Ok(WriteOutcome::Unchanged { record: previous });
        }

        let decide = write.decide;
        let decision = decided(|| decide(previous.as_ref()))?;
        if let Decision::Refuse(reason) = decision {
            return Ok(WriteOutcome::Refused {
                record: previous,
                reason,
            });
        }
        // The domain's rules are the caller's code too: they run before any key is put.
        let domain_plan = match &write.event {
            Some(event) => self.plan_domain(tenant, address, &slot.ah, event, previous.as_ref())?,
            None => None,
        };

        for updated in write.reclassified {
            if let Some((key, mut entry)) = self.recorded(t, &updated.event_id)? {
                if let Some(old) = &entry.event {
                    // A new classification leaves the result's domain as it was: the count of
                    // results to accept-all domains stays.
                    self.adjust_counters(tenant, old, CounterChange::Uncount, false)?;
                    self.adjust_counters(tenant, &updated, CounterChange::Count, false)?;
                    // The bounce listing holds the results that are bounces: a new
                    // classification can make one of a result reported as delivered (a reply
                    // that a new rule reads as a failure), or stop one being one.
                    if old.is_bounce() != updated.is_bounce() {
                        let by_source = keys::prefix(keys::BOUNCES, &[t, &updated.source]);
                        let instant = keys::instant_of(&key).unwrap_or_default();
                        let listed = keys::at_instant(&by_source, &instant);
                        if updated.is_bounce() {
                            self.put(listed, slot.ah.bytes().to_vec())?;
                        } else {
                            self.remove(listed)?;
                        }
                    }
                    entry.event = Some(updated);
                    let (n, data_key) = self.data_key(&slot)?;
                    self.put(key.clone(), seal(&entry, n, &data_key)?)?;
                    self.entries.insert(key, entry);
                }
            }
        }

        let (record, mut changes) = match decision {
            Decision::Apply { record, changes } => (Some(record), changes),
            Decision::Unchanged | Decision::Refuse(_) => (None, Vec::new()),
        };
        // The changes an event caused at its own instant share its history entry; others
        // (none today) get entries of their own.
        let mut caused = Vec::new();
        if let Some(event) = write.event {
            (caused, changes) = changes
                .into_iter()
                .partition(|c| c.at == event.occurred_at && c.event_id == event.event_id);
            let seq = self.txn.next_seq()?;
            let entry_key = keys::timed(&keys::history(t, &slot.ah), event.occurred_at, seq);
            let instant = keys::instant_of(&entry_key).unwrap_or_default();
            if event.is_bounce() {
                let by_source = keys::prefix(keys::BOUNCES, &[t, &event.source]);
                self.put(
                    keys::at_instant(&by_source, &instant),
                    slot.ah.bytes().to_vec(),
                )?;
            }
            self.count_event(tenant, address, &slot, &event)?;
            let position_key = keys::position(t, &event.event_id);
            let position = Position {
                ah: slot.ah,
                instant,
            };
            self.put(position_key.clone(), position.to_bytes())?;
            self.positions.insert(position_key, position);
            let entry = StoredEntry {
                event: Some(event),
                changes: caused.clone(),
            };
            let (n, data_key) = self.data_key(&slot)?;
            self.put(entry_key.clone(), seal(&entry, n, &data_key)?)?;
            self.entries.insert(entry_key, entry);
        }
        if let Some(plan) = domain_plan {
            self.store_domain(plan)?;
        }

        // A record that does not name the data key its new values are sealed under (written
        // before the keyring) is written again with it.
        let unnamed_key = self.fresh_keys.contains(&slot.ah);
        Ok(match record {
            Some(record) => {
                // A send result that changes nothing (a block, a bounce of a suppressed
                // address) leaves the record's key alone.
                let changed = previous.as_ref() != Some(&record) || !changes.is_empty();
                // The changes of their own entries follow those the event caused.
                let own = caused.len();
                caused.extend(changes);
                if changed || unnamed_key {
                    let ah = self.set_record(
                        tenant,
                        address,
                        slot,
                        previous.as_ref(),
                        &record,
                        &caused[own..],
                    )?;
                    self.log_address_change(
                        t,
                        ah,
                        address.as_str(),
                        previous.as_ref(),
                        &record,
                        &caused,
                    )?;
                }
                WriteOutcome::Applied {
                    previous,
                    record,
                    changes: caused,
                }
            }
            None => {
                if let (true, Some(current)) = (unnamed_key, &previous) {
                    self.set_record(tenant, address, slot, Some(current), current, &[])?;
                }
                WriteOutcome::Unchanged { record: previous }
            }
        })
    }

    fn try_add_pair(&mut self, write: PairWrite) -> Result<PairOutcome, StoreError> {
        let first_slot = RecordSlot::of(&self.shared.hasher, &write.tenant, &write.first);
        let second_slot = RecordSlot::of(&self.shared.hasher, &write.tenant, &write.second);
        let first = self.record(&first_slot)?;
        let second = self.record(&second_slot)?;
        let records = match plan_pair(&write, first.clone(), second.clone())? {
            Ok(records) => records,
            Err(answer) => return Ok(answer),
        };
        let targets = [(&write.first, first_slot), (&write.second, second_slot)];
        store_pair(
            targets,
            [first, second],
            records,
            |(address, slot), before, record, changes| {
                let ah = self.set_record(&write.tenant, address, slot, before, record, changes)?;
                self.log_address_change(
                    write.tenant.as_str(),
                    ah,
                    address.as_str(),
                    before,
                    record,
                    changes,
                )
            },
        )
    }

    /// Every history entry of address `ah`: (key, value), oldest last.
    fn history_of(&self, t: &str, ah: &AddressHash) -> Result<Vec<KeyValue>, StoreError> {
        let mut entries = Vec::new();
        scan_prefix(&self.shared.engine, &keys::history(t, ah), |k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(entries)
    }

    /// See [`ForgetWrite`]. Runs alone in its group: the scans below see every earlier write.
    fn try_forget(&mut self, write: ForgetWrite) -> Result<WriteOutcome, StoreError> {
        let tenant = &write.tenant;
        let t = tenant.as_str();
        let address = &write.address;
        let slot = RecordSlot::of(&self.shared.hasher, tenant, address);
        let stored = self.stored(&slot)?;
        let record_slot = stored.as_ref().and_then(|s| s.key_slot);
        let previous = stored.map(|s| s.record);
        if previous.as_ref().is_some_and(|r| r.forgotten) {
            return Ok(WriteOutcome::Unchanged { record: previous });
        }
        let decide = write.decide;
        let (record, changes) = match decided(|| decide(previous.as_ref()))? {
            Decision::Apply { record, changes } if record.forgotten => (record, changes),
            Decision::Apply { .. } => {
                return Ok(WriteOutcome::Refused {
                    record: previous,
                    reason: "a forget must leave a forgotten record".to_string(),
                })
            }
            Decision::Unchanged => return Ok(WriteOutcome::Unchanged { record: previous }),
            Decision::Refuse(reason) => {
                return Ok(WriteOutcome::Refused {
                    record: previous,
                    reason,
                })
            }
        };

        // Every key the address's data was sealed under is destroyed below.
        let mut doomed: BTreeSet<u64> = record_slot.into_iter().collect();
        // Addresses whose data may name this one: the replacement links of its record, and
        // those its history recorded.
        let mut linked: Vec<String> = Vec::new();
        if let Some(p) = &previous {
            linked.extend(p.replaced_by.clone());
            linked.extend(p.pending_validation.as_ref().map(|r| r.replaces.clone()));
        }
        for (k, v) in self.history_of(t, &slot.ah)? {
            if let Some((n, _)) = keyring::sealed_parts(&v) {
                doomed.insert(n);
            }
            if let Some(entry) = self.shared.open_value::<StoredEntry>(&k, &v)? {
                if let Some(event) = &entry.event {
                    self.remove(keys::position(t, &event.event_id))?;
                    if let (true, Some(instant)) = (event.is_bounce(), keys::instant_of(&k)) {
                        let by_source = keys::prefix(keys::BOUNCES, &[t, &event.source]);
                        self.remove(keys::at_instant(&by_source, &instant))?;
                    }
                }
                linked.extend(entry.changes.iter().filter_map(named_replacement));
            }
            self.remove(k)?;
        }
        // Its delivered-address entry, in either format, and its place in the domain's count.
        let mut delivered = false;
        for k in [
            keys::good_address(t, address.domain(), &slot.ah),
            keys::plain_good_address(t, address.domain(), address.local_part()),
        ] {
            if let Some(v) = self.txn.get(&k)? {
                if let Some((n, _)) = keyring::sealed_parts(&v) {
                    doomed.insert(n);
                }
                self.remove(k)?;
                delivered = true;
            }
        }
        if delivered {
            self.add_to_domain_count(t, address.domain(), -1)?;
        }
        linked.sort();
        linked.dedup();
        for other in linked {
            if let Ok(other) = EmailAddress::parse(&other) {
                if other != *address {
                    self.unlink(tenant, &other, address)?;
                }
            }
        }
        for n in doomed {
            self.shared.keyring.destroy(n)?;
        }
        self.data_keys.remove(&slot.ah);
        self.fresh_keys.remove(&slot.ah);
        let ah = self.set_record(tenant, address, slot, previous.as_ref(), &record, &changes)?;
        // One change for followers of the feed: erase the address, keep blocking its id. It
        // names no one (its note is the justification, which may not name the address).
        let change = list_change(
            ChangeKind::Forgotten,
            record.suppression.clone(),
            changes.last(),
            record
                .suppression
                .as_ref()
                .map_or(Timestamp(0), |s| s.since),
        );
        self.log_change(t, Some(ah), change, None)?;
        Ok(WriteOutcome::Applied {
            previous,
            record,
            changes,
        })
    }

    /// Takes every mention of forgotten address `gone` out of `other`'s record (its replacement
    /// links) and history (notes and SMTP responses), and seals all of `other`'s data again
    /// under a new key, destroying the old one once the group is durable: the copies of the old
    /// values that the engines may still hold become unreadable with it. `other`'s earlier
    /// change-feed entries were sealed under the old key too: they keep their kind, time and
    /// id but lose their address text. Does nothing if `other` does not name `gone`.
    fn unlink(
        &mut self,
        tenant: &Tenant,
        other: &EmailAddress,
        gone: &EmailAddress,
    ) -> Result<(), StoreError> {
        let t = tenant.as_str();
        let gone = gone.as_str();
        let slot = RecordSlot::of(&self.shared.hasher, tenant, other);
        let Some(stored) = self.stored(&slot)? else {
            return Ok(());
        };
        if stored.record.forgotten {
            return Ok(());
        }
        let mut record = stored.record;
        let mut named = false;
        if record.replaced_by.as_deref() == Some(gone) {
            record.replaced_by = None;
            named = true;
        }
        if record
            .pending_validation
            .as_ref()
            .is_some_and(|p| p.replaces == gone)
        {
            record.pending_validation = None;
            named = true;
        }
        let mut old_slots: BTreeSet<u64> = stored.key_slot.into_iter().collect();
        let mut entries = Vec::new();
        for (k, v) in self.history_of(t, &slot.ah)? {
            if let Some((n, _)) = keyring::sealed_parts(&v) {
                old_slots.insert(n);
            }
            if let Some(mut entry) = self.shared.open_value::<StoredEntry>(&k, &v)? {
                named |= scrub(&mut entry, gone);
                entries.push((k, entry));
            }
        }
        if !named {
            return Ok(());
        }
        let (n, key) = self.shared.keyring.allocate()?;
        for (k, entry) in entries {
            self.put(k, seal(&entry, n, &key)?)?;
        }
        let good = keys::good_address(t, other.domain(), &slot.ah);
        if let Some(v) = self.txn.get(&good)? {
            if let Some((old, _)) = keyring::sealed_parts(&v) {
                old_slots.insert(old);
                self.put(
                    good,
                    keyring::seal_value(n, &key, other.local_part().as_bytes())?,
                )?;
            }
        }
        self.put(
            slot.key.clone(),
            sealed_address(other.as_str(), &record, n, &key)?,
        )?;
        self.records.insert(slot.key.clone(), Some(record));
        self.data_keys.insert(slot.ah, (n, key));
        self.effects.retired_keys.extend(old_slots);
        Ok(())
    }

    /// Appends the changes of an address's suppression (if its list changed) to the tenant's
    /// change log, in this group's commit order, their personal fields (address, domain, SMTP
    /// response, note) sealed under the address's data key: forgetting the address makes them
    /// unreadable with the rest of its data.
    fn log_address_change(
        &mut self,
        tenant: &str,
        ah: AddressHash,
        address: &str,
        previous: Option<&AddressRecord>,
        record: &AddressRecord,
        changes: &[StateChange],
    ) -> Result<(), StoreError> {
        let logged = address_list_changes(address, previous, record, changes);
        if logged.is_empty() {
            return Ok(());
        }
        let key = self.data_keys.get(&ah).cloned();
        for change in logged {
            self.log_change(tenant, Some(ah), change, key.as_ref())?;
        }
        Ok(())
    }

    /// A domain's marks as this group left them.
    fn marks(&self, tenant: &str, domain: &str) -> DomainMarks {
        match self.marks.get(tenant).and_then(|m| m.get(domain)) {
            Some(m) => m.clone(),
            None => self.domains.index.get(tenant, domain),
        }
    }

    /// Whether a domain is marked accept-all, as this group left it.
    fn accept_all(&self, tenant: &str, domain: &str) -> bool {
        match self.marks.get(tenant).and_then(|m| m.get(domain)) {
            Some(m) => m.accept_all.is_some(),
            None => self.domains.index.accept_all(tenant, domain),
        }
    }

    /// Whether a domain itself has a suppression that a delivery lifts, as this group left it.
    fn automatic(&self, tenant: &str, domain: &str) -> bool {
        match self.marks.get(tenant).and_then(|m| m.get(domain)) {
            Some(m) => m.suppression.as_ref().is_some_and(|s| s.automatic),
            None => self.domains.index.automatic(tenant, domain),
        }
    }

    /// A domain's record: its marks, and its activity record.
    fn domain_record(&mut self, tenant: &str, domain: &str) -> Result<DomainRecord, StoreError> {
        let key = keys::domain_log(tenant, domain);
        let activity = match self.activities.get(&key) {
            Some(a) => a.clone(),
            None => self.get::<DomainActivity>(&key)?.unwrap_or_default(),
        };
        Ok(activity.with_marks(self.marks(tenant, domain)))
    }

    /// What a send result does to its domain, if anything: its delivery hour, and what the
    /// domain rules decide.
    fn plan_domain(
        &mut self,
        tenant: &Tenant,
        address: &EmailAddress,
        ah: &AddressHash,
        event: &RecordedEvent,
        before: Option<&AddressRecord>,
    ) -> Result<Option<DomainPlan>, StoreError> {
        let t = tenant.as_str();
        let domain = address.domain();
        let delivered = event.classification.bounce_type == BounceType::Delivered;
        let rules = self.domains.rules;
        let concerns = rules.is_some_and(|r| r.concerns(event, before));
        let automatic = delivered && self.automatic(t, domain);
        let hour = Granularity::Hourly.bucket(event.occurred_at);
        let stale = delivered && !self.domains.stamps.fresh(t, domain, hour);
        if !(concerns || automatic || stale) {
            return Ok(None);
        }
        let previous = self.domain_record(t, domain)?;
        let mut record = previous.clone();
        let mut stamp = None;
        if delivered {
            let start = Granularity::Hourly.start(hour);
            let latest = record.last_delivered.map_or(start, |d| d.max(start));
            record.last_delivered = Some(latest);
            stamp = Some(Granularity::Hourly.bucket(latest));
        }
        let mut changes = Vec::new();
        if let Some(rules) = rules.filter(|_| concerns || automatic) {
            if let Some((next, caused)) =
                decided(|| rules.apply(domain, &record, event, ah.short(), before))?
            {
                record = next;
                changes = caused;
            }
        }
        Ok(Some(DomainPlan {
            tenant: tenant.clone(),
            domain: domain.to_string(),
            previous,
            record,
            changes,
            stamp,
        }))
    }

    /// Puts a domain's changed marks, activity and history.
    fn store_domain(&mut self, plan: DomainPlan) -> Result<(), StoreError> {
        let DomainPlan {
            tenant,
            domain,
            previous,
            record,
            changes,
            stamp,
        } = plan;
        let t = tenant.as_str();
        let marks = record.marks();
        if previous.marks() != marks {
            let key = keys::domain(t, &domain);
            if marks.is_empty() {
                self.remove(key)?;
            } else {
                self.put(key, encode(&marks)?)?;
            }
            if previous.suppression != record.suppression {
                for change in changes.iter().filter(|c| {
                    matches!(
                        c.kind,
                        StateChangeKind::DomainSuppressed | StateChangeKind::DomainReactivated
                    )
                }) {
                    self.domain_suppression_changed(
                        &tenant,
                        &domain,
                        previous.suppression.as_ref(),
                        record.suppression.as_ref(),
                        change,
                    )?;
                }
            }
            self.marks
                .entry(t.to_string())
                .or_default()
                .insert(domain.clone(), marks.clone());
            self.effects
                .domain_marks
                .push((t.to_string(), domain.clone(), marks));
        }
        let log = keys::domain_log(t, &domain);
        let activity = DomainActivity::of(&record);
        if activity != DomainActivity::of(&previous) {
            self.put(log.clone(), encode(&activity)?)?;
            self.activities.insert(log.clone(), activity);
        }
        for c in changes {
            let at = c.at;
            let entry = StoredEntry {
                event: None,
                changes: vec![c],
            };
            let seq = self.txn.next_seq()?;
            self.put(keys::timed(&log, at, seq), encode(&entry)?)?;
        }
        if let Some(hour) = stamp {
            self.effects.stamps.push((t.to_string(), domain, hour));
        }
        Ok(())
    }

    /// Appends one change to the tenant's change log, sealed under `key` if given.
    fn log_change(
        &mut self,
        tenant: &str,
        ah: Option<AddressHash>,
        change: ListChange,
        key: Option<&(u64, DataKey)>,
    ) -> Result<(), StoreError> {
        let seq = self.txn.next_seq()?;
        let stored = StoredChange::plain(ah, change);
        let value = match key {
            Some((n, k)) => encode(&seal_change(stored, *n, k)?)?,
            None => encode(&stored)?,
        };
        self.put(keys::change(tenant, seq), value)?;
        self.effects.logged_changes = true;
        Ok(())
    }

    /// Removes change log entries past their retention and records the new horizons.
    fn prune(
        &mut self,
        removals: Vec<Vec<u8>>,
        horizons: Vec<(String, u64)>,
    ) -> Result<u64, String> {
        self.guarded(
            |g| {
                let removed = removals.len() as u64;
                for key in removals {
                    g.remove(key)?;
                }
                for (tenant, seq) in &horizons {
                    g.put(keys::horizon(tenant), encode(seq)?)?;
                }
                g.effects.horizons.extend(horizons);
                Ok(removed)
            },
            |_| 0,
        )
    }

    /// Every change of a domain's own suppression passes here, with the history entry that
    /// records it: set (`after` is `Some`: suppressed, or its suppression replaced) or lifted
    /// (`after` is `None`), by an operator or by the domain rules. The change log records it
    /// (DOMAIN_SUPPRESSED / DOMAIN_LIFTED), in the same atomic unit as the change.
    fn domain_suppression_changed(
        &mut self,
        tenant: &Tenant,
        domain: &str,
        before: Option<&DomainSuppression>,
        after: Option<&DomainSuppression>,
        change: &StateChange,
    ) -> Result<(), StoreError> {
        let (what, automatic, kind, suppression) = match (before, after) {
            (_, Some(s)) => ("suppressed", s.automatic, ChangeKind::DomainSuppressed, s),
            (Some(s), None) => ("lifted", s.automatic, ChangeKind::DomainLifted, s),
            (None, None) => return Ok(()),
        };
        let mut logged = list_change(
            kind,
            Some(Suppression::of_domain(suppression.clone())),
            Some(change),
            change.at,
        );
        logged.domain = domain.to_string();
        self.log_change(tenant.as_str(), None, logged, None)?;
        metrics::counter!(
            "suppressd_domain_suppression_changes_total",
            "change" => what,
            "automatic" => if automatic { "true" } else { "false" }
        )
        .increment(1);
        tracing::info!(
            tenant = tenant.as_str(),
            domain,
            change = what,
            automatic,
            actor = change.actor.as_str(),
            "domain suppression changed"
        );
        Ok(())
    }

    fn try_add_domain(&mut self, write: DomainWrite) -> Result<DomainOutcome, StoreError> {
        let previous = self.domain_record(write.tenant.as_str(), &write.domain)?;
        let decide = write.decide;
        match decided(|| decide(&previous))? {
            DomainDecision::Refuse(reason) => Ok(DomainOutcome {
                record: previous.clone(),
                previous,
                applied: false,
                refused: Some(reason),
            }),
            DomainDecision::Unchanged => Ok(DomainOutcome {
                record: previous.clone(),
                previous,
                applied: false,
                refused: None,
            }),
            DomainDecision::Apply { record, changes } => {
                self.store_domain(DomainPlan {
                    tenant: write.tenant,
                    domain: write.domain,
                    previous: previous.clone(),
                    record: record.clone(),
                    changes,
                    stamp: None,
                })?;
                Ok(DomainOutcome {
                    previous,
                    record,
                    applied: true,
                    refused: None,
                })
            }
        }
    }

    /// Ends the group: fails it if any write failed, else writes the last counter updates and
    /// makes the keyring durable before the commit that refers to it.
    fn finish(mut self) -> Result<Effects, StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.flush_counters()?;
        self.shared.keyring.sync()?;
        Ok(self.effects)
    }
}

/// The changes of the suppression lists that a write of an address's record makes (without
/// their sequence numbers): what the change log records. Shared by every engine's writer.
pub(super) fn address_list_changes(
    address: &str,
    previous: Option<&AddressRecord>,
    record: &AddressRecord,
    changes: &[StateChange],
) -> Vec<ListChange> {
    let before = previous.and_then(|p| p.suppression.as_ref());
    let after = record.suppression.as_ref();
    let mut logged: Vec<(ChangeKind, Option<&Suppression>)> =
        ChangeKind::of_address(before, after, changes)
            .into_iter()
            .map(|kind| match kind {
                ChangeKind::Lifted | ChangeKind::Expired => (kind, before),
                _ => (kind, after),
            })
            .collect();
    // Unsubscribes from single lists: their changes carry the list in `list_id`.
    let no_lists = Vec::new();
    let old_lists = previous.map_or(&no_lists, |p| &p.list_unsubscribes);
    for old in old_lists {
        if !record
            .list_unsubscribes
            .iter()
            .any(|s| s.list_id == old.list_id)
        {
            let expired = changes.iter().any(|c| {
                c.kind == StateChangeKind::Expired
                    && c.note.starts_with(&format!("list {}", old.list_id))
            });
            let kind = if expired {
                ChangeKind::Expired
            } else {
                ChangeKind::Lifted
            };
            logged.push((kind, Some(old)));
        }
    }
    for new in &record.list_unsubscribes {
        if !old_lists.contains(new) {
            logged.push((ChangeKind::Suppressed, Some(new)));
        }
    }
    let cause = changes.last();
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    logged
        .into_iter()
        .map(|(kind, suppression)| {
            let at = suppression.map_or(Timestamp(0), |s| s.since);
            let mut change = list_change(kind, suppression.cloned(), cause, at);
            if kind != ChangeKind::Forgotten {
                change.address = address.to_string();
                change.domain = domain.to_string();
            }
            change
        })
        .collect()
}

/// The address a `ReplacementPending` change says its address replaces ("replaces X (...").
pub(super) fn named_replacement(change: &StateChange) -> Option<String> {
    if change.kind != StateChangeKind::ReplacementPending {
        return None;
    }
    let rest = change.note.strip_prefix("replaces ")?;
    Some(rest.split_once(' ').map_or(rest, |(a, _)| a).to_string())
}

/// Replaces `gone` in the entry's texts; true if it was there.
pub(super) fn scrub(entry: &mut StoredEntry, gone: &str) -> bool {
    let mut found = false;
    let mut clean = |text: &mut String| {
        if text.contains(gone) {
            *text = text.replace(gone, FORGOTTEN_ADDRESS);
            found = true;
        }
    };
    for c in &mut entry.changes {
        clean(&mut c.note);
    }
    if let Some(e) = &mut entry.event {
        clean(&mut e.smtp_response);
    }
    found
}
