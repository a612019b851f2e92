//! The writer: one task that takes the queued writes and commits them in groups, one
//! transaction per group.
//!
//! A group's transaction: lock the rows of the group's addresses that have one (`SELECT ...
//! FOR UPDATE`, in key order, tenant by tenant), read which event ids are recorded already;
//! then, write by write and in order, run the write's decision (the shared policy code) on the
//! address's record as the group left it; then write the group's rows in batches (events `ON
//! CONFLICT DO NOTHING`, history, address rows (the new ones made with their record), expiries,
//! counters as adding upserts, delivered addresses, domain activity, the change log numbered
//! under its counter's row lock), COMMIT, and only then answer. Another replica's write of the
//! same address waits on the row lock, so the two serialize; a row that another writer made
//! after this group found none, or an event id it recorded meanwhile, is a conflict. A
//! transaction the database aborts for a conflict (a deadlock, a serialization failure), or
//! that meets one of those, is run again from the start, decisions included, on the records
//! as they then are ([`super::retrying`]); any other failure, or a conflict that outlasts the
//! retries, answers [`StoreError::CommitFailed`] to the group's writes, and nothing of the
//! group is stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::Transaction;
use tokio::sync::{mpsc, oneshot};

use pipeline::Pipeline;

use super::read::{decoded, granularity_code, record_of};
use super::{connection, retrying, sql_error, Inner};
use crate::domain::{
    AddressRecord, BounceType, Dimension, DomainMarks, DomainRecord, OutcomeCounts, RecordedEvent,
    StateChange, Tenant, Timestamp,
};
use crate::store::address_hash::AddressHash;
use crate::store::kv_store::{DomainActivity, StoredChange, StoredEntry};
use crate::store::records::{bounce_type_number, change_kind_number, encode, reason_number};
use crate::store::writer::{address_list_changes, decided, plan_pair, store_pair};
use crate::store::{
    AddressWrite, CounterTouch, Decision, DomainRules, ErrorChain, Granularity, PairOutcome,
    PairWrite, StoreError, WriteOutcome,
};

mod pipeline;

/// Most writes taken into one group.
const MAX_GROUP_WRITES: usize = 4096;

/// Writes queued by one caller, and where their outcomes go.
pub(super) struct Job {
    pub(super) writes: Vec<AddressWrite>,
    pub(super) reply: oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>,
}

/// Takes jobs until every sender is gone, committing them in groups.
pub(super) async fn writer(inner: Arc<Inner>, mut queue: mpsc::Receiver<Job>) {
    let mut stamps: HashMap<(String, String), i64> = HashMap::new();
    while let Some(first) = queue.recv().await {
        let mut total = first.writes.len();
        let mut jobs = vec![first];
        while total < MAX_GROUP_WRITES {
            match queue.try_recv() {
                Ok(job) => {
                    total += job.writes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("suppressd_group_commit_writes").record(total as f64);
        let rules = inner
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut replies = Vec::with_capacity(jobs.len());
        let mut writes = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push(job.reply);
            writes.push(job.writes);
        }
        let started = std::time::Instant::now();
        let committed = retrying("a group commit", || {
            commit_group(&inner, &writes, rules.clone(), &stamps)
        })
        .await;
        metrics::histogram!("suppressd_group_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match committed {
            Ok((effects, answers)) => {
                publish_head(&inner, effects.last_change);
                if !effects.touched.is_empty() {
                    let _ = inner
                        .touches
                        .send(Arc::new(effects.touched.into_iter().collect()));
                }
                stamps.extend(effects.stamps);
                if stamps.len() > 100_000 {
                    stamps.clear();
                }
                let mut answers = answers.into_iter();
                for reply in replies {
                    let answer = answers.next().unwrap_or(Err(StoreError::Closed));
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "a group commit failed");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::CommitFailed(e.clone())));
                }
            }
        }
    }
}

/// What a committed group changes outside the database.
#[derive(Default)]
struct Effects {
    last_change: Option<u64>,
    touched: HashSet<CounterTouch>,
    stamps: Vec<((String, String), i64)>,
}

/// An address of the group: (tenant, keyed hash).
type Slot = (String, [u8; 16]);

/// A counter row's key: (tenant, dimension, value, granularity, bucket).
type CounterKey = (String, i16, String, i16, i64);

struct EventRow {
    tenant: String,
    event_id: String,
    ah: [u8; 16],
    occurred_at: i64,
    /// The index of its history row, whose sequence number it shares.
    history: usize,
    source: String,
    campaign: String,
    bounce_type: i16,
    is_bounce: bool,
    bytes: Vec<u8>,
}

struct HistoryRow {
    tenant: String,
    ah: [u8; 16],
    at: i64,
    event_id: Option<String>,
    entry: Vec<u8>,
}

/// A change of the change log, numbered at the end of the group.
struct ChangeRow {
    tenant: String,
    ah: Option<[u8; 16]>,
    at: i64,
    kind: i16,
    bytes: Vec<u8>,
}

/// A domain row's stored activity and marks.
type DomainBytes = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Address rows to write, column by column (the parameters of one `unnest`).
#[derive(Default)]
struct AddressColumns<'a> {
    tenants: Vec<&'a str>,
    hashes: Vec<&'a [u8]>,
    texts: Vec<&'a str>,
    domains: Vec<&'a str>,
    records: Vec<Vec<u8>>,
    since: Vec<Option<i64>>,
    reasons: Vec<Option<i16>>,
    sources: Vec<Option<&'a str>>,
    expires: Vec<Option<i64>>,
    listed: Vec<bool>,
    enrich: Vec<bool>,
    forgotten: Vec<bool>,
}

impl<'a> AddressColumns<'a> {
    fn push(
        &mut self,
        slot: &'a Slot,
        text: &'a str,
        domain: &'a str,
        record: &'a AddressRecord,
    ) -> Result<(), StoreError> {
        let suppression = record.suppression.as_ref();
        self.tenants.push(slot.0.as_str());
        self.hashes.push(&slot.1[..]);
        self.texts.push(if record.forgotten { "" } else { text });
        self.domains.push(domain);
        self.records.push(encode(record)?);
        self.since.push(suppression.map(|s| s.since.micros()));
        self.reasons
            .push(suppression.map(|s| number16(reason_number(s.reason))));
        self.sources.push(suppression.map(|s| s.source.as_str()));
        self.expires
            .push(suppression.and_then(|s| s.expires_at.map(Timestamp::micros)));
        self.listed.push(!record.list_unsubscribes.is_empty());
        self.enrich.push(record.needs_enrichment);
        self.forgotten.push(record.forgotten);
        Ok(())
    }

    fn into_params(self) -> Vec<pipeline::Param<'a>> {
        vec![
            Box::new(self.tenants),
            Box::new(self.hashes),
            Box::new(self.texts),
            Box::new(self.domains),
            Box::new(self.records),
            Box::new(self.since),
            Box::new(self.reasons),
            Box::new(self.sources),
            Box::new(self.expires),
            Box::new(self.listed),
            Box::new(self.enrich),
            Box::new(self.forgotten),
        ]
    }
}

struct DomainRow {
    record: DomainRecord,
    changed: bool,
}

/// A domain of a group: (tenant, domain).
type DomainSlot = (String, String);

/// A group being gathered inside its transaction.
struct Group<'a> {
    tx: &'a Transaction<'a>,
    rules: Option<Arc<dyn DomainRules>>,
    stamps: &'a HashMap<(String, String), i64>,
    /// Each address's text and domain.
    addresses: BTreeMap<Slot, (String, String)>,
    /// Records as locked.
    original: HashMap<Slot, Option<AddressRecord>>,
    /// Records as this group leaves them.
    records: HashMap<Slot, Option<AddressRecord>>,
    dirty: BTreeSet<Slot>,
    recorded: HashMap<(String, String), RecordedEvent>,
    events: Vec<EventRow>,
    history: Vec<HistoryRow>,
    counters: BTreeMap<CounterKey, [i64; 8]>,
    values: BTreeSet<(String, i16, String)>,
    delivered: BTreeSet<(String, String, [u8; 16], String)>,
    domains: BTreeMap<(String, String), DomainRow>,
    /// The marks of the group's marked domains, as the group leaves them (read before the
    /// group's writes run: whether results go to accept-all domains, whether a delivery may
    /// lift an automatic suppression).
    marks: HashMap<DomainSlot, DomainMarks>,
    /// Domain rows locked ahead by [`Group::lock_domains`] and not read yet: (activity, marks).
    locked_domains: HashMap<(String, String), DomainBytes>,
    domain_history: Vec<(String, String, i64, Vec<u8>)>,
    changes: Vec<ChangeRow>,
    effects: Effects,
}

/// A job's answer.
type Answer = Result<Vec<WriteOutcome>, StoreError>;

/// Commits one group: what it changes outside the database, and one answer per job, in order.
async fn commit_group(
    inner: &Inner,
    jobs: &[Vec<AddressWrite>],
    rules: Option<Arc<dyn DomainRules>>,
    stamps: &HashMap<(String, String), i64>,
) -> Result<(Effects, Vec<Answer>), StoreError> {
    let hasher = &inner.meta()?.hasher;
    let mut addresses: BTreeMap<Slot, (String, String)> = BTreeMap::new();
    for w in jobs.iter().flatten() {
        let ah = hasher.hash(w.tenant.as_str(), w.address.as_str());
        addresses
            .entry((w.tenant.as_str().to_string(), *ah.bytes()))
            .or_insert_with(|| {
                (
                    w.address.as_str().to_string(),
                    w.address.domain().to_string(),
                )
            });
    }
    let mut client = connection(&inner.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("starting a group commit"))?;
    let mut group = Group::new(&tx, rules, stamps, addresses);
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in jobs.iter().flatten() {
        if let Some(e) = &w.event {
            ids.entry(w.tenant.as_str().to_string())
                .or_default()
                .push(e.event_id.clone());
        }
    }
    group.lock(ids).await?;
    let domains = group.domains_to_lock(hasher, jobs);
    group.lock_domains(domains).await?;
    let mut answers = Vec::with_capacity(jobs.len());
    for writes in jobs {
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut failed: Option<StoreError> = None;
        for w in writes {
            match group
                .add(hasher.hash(w.tenant.as_str(), w.address.as_str()), w)
                .await?
            {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        answers.push(match failed {
            Some(e) => Err(e),
            None => Ok(outcomes),
        });
    }
    group.flush().await?;
    let effects = std::mem::take(&mut group.effects);
    drop(group);
    tx.commit().await.map_err(sql_error("committing a group"))?;
    Ok((effects, answers))
}

impl<'a> Group<'a> {
    fn new(
        tx: &'a Transaction<'a>,
        rules: Option<Arc<dyn DomainRules>>,
        stamps: &'a HashMap<(String, String), i64>,
        addresses: BTreeMap<Slot, (String, String)>,
    ) -> Self {
        Group {
            tx,
            rules,
            stamps,
            addresses,
            original: HashMap::new(),
            records: HashMap::new(),
            dirty: BTreeSet::new(),
            recorded: HashMap::new(),
            events: Vec::new(),
            history: Vec::new(),
            counters: BTreeMap::new(),
            values: BTreeSet::new(),
            delivered: BTreeSet::new(),
            domains: BTreeMap::new(),
            marks: HashMap::new(),
            locked_domains: HashMap::new(),
            domain_history: Vec::new(),
            changes: Vec::new(),
            effects: Effects::default(),
        }
    }

    /// Locks the rows of the group's addresses that have one and reads their records, and
    /// the event ids recorded already: one round trip (see [`Pipeline`]), the statements in
    /// the order the replicas share (tenant by tenant, each tenant's rows in key order).
    ///
    /// An address without a row gets one when the group stores its record, written once
    /// ([`Group::push_addresses`]); if another writer made that row in between, the group
    /// decided on a record that is no longer the address's, and it fails as a conflict to be
    /// run again ([`super::retrying`]), which then finds the row and locks it.
    async fn lock(&mut self, ids: BTreeMap<String, Vec<String>>) -> Result<(), StoreError> {
        let mut by_tenant: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
        for (t, ah) in self.addresses.keys() {
            by_tenant.entry(t).or_default().push(&ah[..]);
        }
        let mut pipeline = Pipeline::default();
        for (tenant, hashes) in &by_tenant {
            pipeline.push(
                "locking address rows",
                "SELECT address_hash, record FROM addresses
                 WHERE tenant = $1 AND address_hash = ANY($2)
                 ORDER BY address_hash FOR UPDATE",
                vec![Box::new(*tenant), Box::new(hashes.as_slice())],
            );
        }
        // The marks of the group's domains, as the group finds them (whether results go to
        // accept-all domains, whether a delivery may lift an automatic suppression).
        let mut marks_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for ((t, _), (_, domain)) in &self.addresses {
            marks_of.entry(t).or_default().insert(domain.as_str());
        }
        for (tenant, domains) in &marks_of {
            pipeline.push(
                "reading domain marks",
                "SELECT domain, marks FROM domains
                 WHERE tenant = $1 AND domain = ANY($2) AND marks IS NOT NULL",
                vec![
                    Box::new(*tenant),
                    Box::new(domains.iter().copied().collect::<Vec<&str>>()),
                ],
            );
        }
        for (tenant, ids) in &ids {
            pipeline.push(
                "reading recorded events",
                "SELECT event_id, event FROM events WHERE tenant = $1 AND event_id = ANY($2)",
                vec![Box::new(tenant.as_str()), Box::new(ids)],
            );
        }
        let mut answers = pipeline.run(self.tx).await?.into_iter();
        for tenant in by_tenant.keys() {
            for row in answers.next().unwrap_or_default() {
                let hash: Vec<u8> = row.get(0);
                let Ok(ah) = <[u8; 16]>::try_from(hash.as_slice()) else {
                    return Err(StoreError::corrupt(
                        &hash,
                        "an address hash of the wrong length",
                    ));
                };
                let record = record_of(row.get(1))?;
                self.original
                    .insert((tenant.to_string(), ah), record.clone());
                self.records.insert((tenant.to_string(), ah), record);
            }
        }
        for tenant in marks_of.keys() {
            for row in answers.next().unwrap_or_default() {
                let marks: DomainMarks = decoded("domains.marks", &row.get::<_, Vec<u8>>(1))?;
                self.marks.insert((tenant.to_string(), row.get(0)), marks);
            }
        }
        for tenant in ids.keys() {
            for row in answers.next().unwrap_or_default() {
                let event: RecordedEvent = decoded("events.event", &row.get::<_, Vec<u8>>(1))?;
                self.recorded.insert((tenant.clone(), row.get(0)), event);
            }
        }
        Ok(())
    }

    /// The domains [`Group::lock_domains`] locks ahead, by tenant.
    fn domains_to_lock(
        &self,
        hasher: &crate::store::address_hash::AddressHasher,
        jobs: &[Vec<AddressWrite>],
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for w in jobs.iter().flatten() {
            let Some(event) = &w.event else { continue };
            let t = w.tenant.as_str();
            let domain = w.address.domain();
            let delivered = event.classification.bounce_type == BounceType::Delivered;
            let news = delivered
                && self
                    .stamps
                    .get(&(t.to_string(), domain.to_string()))
                    .is_none_or(|&h| h < Granularity::Hourly.bucket(event.occurred_at));
            let concerns = || {
                let ah = hasher.hash(t, w.address.as_str());
                let before = self
                    .original
                    .get(&(t.to_string(), *ah.bytes()))
                    .and_then(Option::as_ref);
                self.rules
                    .as_ref()
                    .is_some_and(|r| r.concerns(event, before))
            };
            if news || concerns() {
                wanted
                    .entry(t.to_string())
                    .or_default()
                    .insert(domain.to_string());
            }
        }
        wanted
    }

    /// Locks and reads, in one round trip, the rows of the domains that the group's send
    /// results will likely read ([`Group::plan_domain`]): those of a delivery newer than the
    /// domain's last known one, and those the domain rules are concerned with given the address's
    /// record as locked. Taken tenant by tenant, each in key order, after the address rows as
    /// before. A domain missed here (a record the group changes before the event) is locked
    /// when it is first needed, as without this.
    async fn lock_domains(
        &mut self,
        wanted: BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), StoreError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let mut pipeline = Pipeline::default();
        for (tenant, domains) in &wanted {
            let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
            pipeline.push(
                "making domain rows",
                "INSERT INTO domains (tenant, domain) SELECT $1, d FROM unnest($2::text[]) AS u (d)
                 ON CONFLICT (tenant, domain) DO NOTHING",
                vec![Box::new(tenant.as_str()), Box::new(domains.clone())],
            );
            pipeline.push(
                "locking domain rows",
                "SELECT domain, activity, marks FROM domains
                 WHERE tenant = $1 AND domain = ANY($2)
                 ORDER BY domain FOR UPDATE",
                vec![Box::new(tenant.as_str()), Box::new(domains)],
            );
        }
        let mut answers = pipeline.run(self.tx).await?.into_iter();
        for tenant in wanted.keys() {
            let _made = answers.next();
            for row in answers.next().unwrap_or_default() {
                self.locked_domains
                    .insert((tenant.clone(), row.get(0)), (row.get(1), row.get(2)));
            }
        }
        Ok(())
    }

    /// One write: its outcome, or the error of this write alone (`Ok(Err(..))`); `Err` fails
    /// the group.
    async fn add(
        &mut self,
        ah: AddressHash,
        write: &AddressWrite,
    ) -> Result<Result<WriteOutcome, StoreError>, StoreError> {
        let tenant = write.tenant.clone();
        let t = tenant.as_str().to_string();
        let slot: Slot = (t.clone(), *ah.bytes());
        let previous = self.records.get(&slot).cloned().flatten();

        if let Some(event) = &write.event {
            if let Some(original) = self.recorded.get(&(t.clone(), event.event_id.clone())) {
                return Ok(Ok(WriteOutcome::Duplicate {
                    original: original.clone(),
                    record: previous,
                }));
            }
        }
        if previous.as_ref().is_some_and(|r| r.forgotten) {
            // The person's data is gone for good: a send result is counted and stored nowhere
            // else.
            if let Some(event) = &write.event {
                let to_accept_all = self.accept_all(&t, write.address.domain());
                self.count(&tenant, event, 1, to_accept_all);
            }
            return Ok(Ok(WriteOutcome::Unchanged { record: previous }));
        }
        let decision = match decided(|| (write.decide)(previous.as_ref())) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "the decision of a write panicked; the write is refused");
                return Ok(Err(e));
            }
        };
        if let Decision::Refuse(reason) = decision {
            return Ok(Ok(WriteOutcome::Refused {
                record: previous,
                reason,
            }));
        }
        // The domain's rules run before anything of the write is kept.
        let domain_plan = match &write.event {
            Some(event) => {
                match self
                    .plan_domain(&t, write.address.domain(), &ah, event, previous.as_ref())
                    .await?
                {
                    Ok(plan) => plan,
                    Err(e) => return Ok(Err(e)),
                }
            }
            None => None,
        };

        for updated in &write.reclassified {
            self.reclassify(&tenant, updated.clone()).await?;
        }

        let (record, mut changes) = match decision {
            Decision::Apply { record, changes } => (Some(record), changes),
            Decision::Unchanged | Decision::Refuse(_) => (None, Vec::new()),
        };
        let mut caused = Vec::new();
        if let Some(event) = write.event.clone() {
            (caused, changes) = changes
                .into_iter()
                .partition(|c| c.at == event.occurred_at && c.event_id == event.event_id);
            let to_accept_all = self.accept_all(&t, write.address.domain());
            self.count(&tenant, &event, 1, to_accept_all);
            if event.classification.bounce_type == BounceType::Delivered {
                self.delivered.insert((
                    t.clone(),
                    write.address.domain().to_string(),
                    *ah.bytes(),
                    write.address.local_part().to_string(),
                ));
            }
            self.history.push(HistoryRow {
                tenant: t.clone(),
                ah: *ah.bytes(),
                at: event.occurred_at.micros(),
                event_id: Some(event.event_id.clone()),
                entry: encode(&StoredEntry {
                    event: None,
                    changes: caused.clone(),
                })?,
            });
            self.events.push(EventRow {
                tenant: t.clone(),
                event_id: event.event_id.clone(),
                ah: *ah.bytes(),
                occurred_at: event.occurred_at.micros(),
                history: self.history.len() - 1,
                source: event.source.clone(),
                campaign: event.campaign.clone(),
                bounce_type: number16(bounce_type_number(event.classification.bounce_type)),
                is_bounce: event.is_bounce(),
                bytes: encode(&event)?,
            });
            self.recorded
                .insert((t.clone(), event.event_id.clone()), event);
        }
        if let Some((domain, previous, record, changes)) = domain_plan {
            if previous.marks() != record.marks() {
                for change in
                    super::domains::suppression_changes(&t, &domain, &previous, &record, &changes)
                {
                    self.changes.push(ChangeRow {
                        tenant: t.clone(),
                        ah: None,
                        at: change.at.micros(),
                        kind: number16(change_kind_number(change.kind)),
                        bytes: encode(&StoredChange::plain(None, change))?,
                    });
                }
                self.marks
                    .insert((t.clone(), domain.clone()), record.marks());
            }
            for c in &changes {
                self.domain_history.push((
                    t.clone(),
                    domain.clone(),
                    c.at.micros(),
                    encode(&StoredEntry {
                        event: None,
                        changes: vec![c.clone()],
                    })?,
                ));
            }
            self.domains.insert(
                (t.clone(), domain),
                DomainRow {
                    record,
                    changed: true,
                },
            );
        }

        Ok(Ok(match record {
            Some(record) => {
                let changed = previous.as_ref() != Some(&record) || !changes.is_empty();
                let own = caused.len();
                caused.extend(changes);
                if changed {
                    self.set_record(
                        slot,
                        &ah,
                        write.address.as_str(),
                        previous.as_ref(),
                        &record,
                        &caused[own..],
                        &caused,
                    )?;
                }
                WriteOutcome::Applied {
                    previous,
                    record,
                    changes: caused,
                }
            }
            None => WriteOutcome::Unchanged { record: previous },
        }))
    }

    /// Keeps an address's new record, with history entries of `entries` and the change log's
    /// entries for the changes `logged` describe.
    #[allow(clippy::too_many_arguments)]
    fn set_record(
        &mut self,
        slot: Slot,
        ah: &AddressHash,
        address: &str,
        previous: Option<&AddressRecord>,
        record: &AddressRecord,
        entries: &[StateChange],
        logged: &[StateChange],
    ) -> Result<(), StoreError> {
        for c in entries {
            self.history.push(HistoryRow {
                tenant: slot.0.clone(),
                ah: *ah.bytes(),
                at: c.at.micros(),
                event_id: None,
                entry: encode(&StoredEntry {
                    event: None,
                    changes: vec![c.clone()],
                })?,
            });
        }
        for change in address_list_changes(address, previous, record, logged) {
            let at = change.at.micros();
            let kind = number16(change_kind_number(change.kind));
            let stored = StoredChange::plain(Some(*ah), change);
            self.changes.push(ChangeRow {
                tenant: slot.0.clone(),
                ah: Some(*ah.bytes()),
                at,
                kind,
                bytes: encode(&stored)?,
            });
        }
        self.records.insert(slot.clone(), Some(record.clone()));
        self.dirty.insert(slot);
        Ok(())
    }

    /// A two-address write: both rows locked (in key order), one decision, both records kept.
    fn add_pair(
        &mut self,
        hashes: [AddressHash; 2],
        write: &PairWrite,
    ) -> Result<PairOutcome, StoreError> {
        let t = write.tenant.as_str().to_string();
        let slots = hashes.map(|ah| (t.clone(), *ah.bytes()));
        let first = self.records.get(&slots[0]).cloned().flatten();
        let second = self.records.get(&slots[1]).cloned().flatten();
        let records = match plan_pair(write, first.clone(), second.clone())? {
            Ok(records) => records,
            Err(answer) => return Ok(answer),
        };
        let [first_slot, second_slot] = slots;
        let targets = [
            (&write.first, first_slot, hashes[0]),
            (&write.second, second_slot, hashes[1]),
        ];
        store_pair(
            targets,
            [first, second],
            records,
            |(address, slot, ah), before, record, changes| {
                self.set_record(
                    slot,
                    &ah,
                    address.as_str(),
                    before,
                    record,
                    changes,
                    changes,
                )
            },
        )
    }

    /// Whether a domain is marked accept-all, as this group left it.
    fn accept_all(&self, t: &str, domain: &str) -> bool {
        self.marks
            .get(&(t.to_string(), domain.to_string()))
            .is_some_and(|m| m.accept_all.is_some())
    }

    /// Counts `event` in its counters (`sign` 1) or takes it away (`-1`); `to_accept_all`
    /// counts it as a result for an address at an accept-all domain too.
    fn count(&mut self, tenant: &Tenant, event: &RecordedEvent, sign: i64, to_accept_all: bool) {
        let mut one = OutcomeCounts::one(event.classification.bounce_type);
        one.to_accept_all = u64::from(to_accept_all);
        let deltas = [
            one.sent,
            one.delivered,
            one.hard,
            one.soft,
            one.block,
            one.complaint,
            one.unsubscribe,
            one.to_accept_all,
        ]
        .map(|n| sign * i64::try_from(n).unwrap_or(0));
        for (dimension, value) in [
            (Dimension::Source, &event.source),
            (Dimension::Campaign, &event.campaign),
            (Dimension::Segment, &event.segment),
        ] {
            if value.is_empty() {
                continue;
            }
            let d = i16::from(dimension.code());
            for g in [Granularity::Hourly, Granularity::Daily] {
                let row = self
                    .counters
                    .entry((
                        tenant.as_str().to_string(),
                        d,
                        value.clone(),
                        granularity_code(g),
                        g.bucket(event.occurred_at),
                    ))
                    .or_default();
                for (total, delta) in row.iter_mut().zip(deltas) {
                    *total += delta;
                }
            }
            self.values
                .insert((tenant.as_str().to_string(), d, value.clone()));
            self.effects.touched.insert(CounterTouch {
                tenant: tenant.clone(),
                dimension,
                value: value.clone(),
            });
        }
    }

    /// Stores a recorded send result again with a new classification, moving its counts.
    async fn reclassify(
        &mut self,
        tenant: &Tenant,
        updated: RecordedEvent,
    ) -> Result<(), StoreError> {
        let key = (tenant.as_str().to_string(), updated.event_id.clone());
        let old = match self.recorded.get(&key) {
            Some(e) => Some(e.clone()),
            None => self
                .tx
                .query_opt(
                    "SELECT event FROM events WHERE tenant = $1 AND event_id = $2",
                    &[&tenant.as_str(), &updated.event_id],
                )
                .await
                .map_err(sql_error("reading a recorded event"))?
                .map(|r| decoded::<RecordedEvent>("events.event", &r.get::<_, Vec<u8>>(0)))
                .transpose()?,
        };
        let Some(old) = old else {
            return Ok(());
        };
        // A new classification leaves the result's domain as it was: the count of results to
        // accept-all domains stays.
        self.count(tenant, &old, -1, false);
        self.count(tenant, &updated, 1, false);
        // An event of this group is not in the table yet: its row is written with the new
        // classification.
        if let Some(row) = self
            .events
            .iter_mut()
            .find(|r| r.tenant == key.0 && r.event_id == key.1)
        {
            row.bounce_type = number16(bounce_type_number(updated.classification.bounce_type));
            row.is_bounce = updated.is_bounce();
            row.bytes = encode(&updated)?;
        } else {
            self.tx
                .execute(
                    "UPDATE events SET event = $3, bounce_type = $4, is_bounce = $5
                     WHERE tenant = $1 AND event_id = $2",
                    &[
                        &tenant.as_str(),
                        &updated.event_id,
                        &encode(&updated)?,
                        &number16(bounce_type_number(updated.classification.bounce_type)),
                        &updated.is_bounce(),
                    ],
                )
                .await
                .map_err(sql_error("storing a reclassified event"))?;
        }
        self.recorded.insert(key, updated);
        Ok(())
    }

    /// A domain's record, locked, as this group leaves it.
    async fn domain_record(&mut self, t: &str, domain: &str) -> Result<DomainRecord, StoreError> {
        if let Some(row) = self.domains.get(&(t.to_string(), domain.to_string())) {
            return Ok(row.record.clone());
        }
        let (activity, marks) = match self
            .locked_domains
            .remove(&(t.to_string(), domain.to_string()))
        {
            Some(locked) => locked,
            None => {
                self.tx
                    .execute(
                        "INSERT INTO domains (tenant, domain) VALUES ($1, $2)
                         ON CONFLICT (tenant, domain) DO NOTHING",
                        &[&t, &domain],
                    )
                    .await
                    .map_err(sql_error("making a domain row"))?;
                let row = self
                    .tx
                    .query_one(
                        "SELECT activity, marks FROM domains WHERE tenant = $1 AND domain = $2 FOR UPDATE",
                        &[&t, &domain],
                    )
                    .await
                    .map_err(sql_error("locking a domain row"))?;
                (row.get(0), row.get(1))
            }
        };
        let record = super::domains::record_of(activity, marks)?;
        // As locked: newer than what the group read before its writes ran.
        let slot = (t.to_string(), domain.to_string());
        if record.marks().is_empty() {
            self.marks.remove(&slot);
        } else {
            self.marks.insert(slot, record.marks());
        }
        self.domains.insert(
            (t.to_string(), domain.to_string()),
            DomainRow {
                record: record.clone(),
                changed: false,
            },
        );
        Ok(record)
    }

    /// What a send result does to its domain: its latest delivery, and what the domain rules
    /// decide: (domain, record before, record after, changes). A panic of the rules fails
    /// that write alone (`Ok(Err(..))`).
    #[allow(clippy::type_complexity)]
    async fn plan_domain(
        &mut self,
        t: &str,
        domain: &str,
        ah: &AddressHash,
        event: &RecordedEvent,
        before: Option<&AddressRecord>,
    ) -> Result<
        Result<Option<(String, DomainRecord, DomainRecord, Vec<StateChange>)>, StoreError>,
        StoreError,
    > {
        let delivered = event.classification.bounce_type == BounceType::Delivered;
        let hour = Granularity::Hourly.bucket(event.occurred_at);
        let stamp = (t.to_string(), domain.to_string());
        let delivery_news = delivered
            && self.stamps.get(&stamp).is_none_or(|&h| h < hour)
            && !self
                .effects
                .stamps
                .iter()
                .any(|(s, h)| *s == stamp && *h >= hour);
        let concerns = self
            .rules
            .as_ref()
            .is_some_and(|r| r.concerns(event, before));
        // A delivery to a domain with an automatic suppression lifts it.
        let automatic = delivered
            && self
                .marks
                .get(&stamp)
                .and_then(|m| m.suppression.as_ref())
                .is_some_and(|s| s.automatic);
        if !delivery_news && !concerns && !automatic {
            return Ok(Ok(None));
        }
        let current = self.domain_record(t, domain).await?;
        let mut record = current.clone();
        let mut changes = Vec::new();
        if concerns || automatic {
            if let Some(rules) = self.rules.clone() {
                match decided(|| rules.apply(domain, &current, event, ah.short(), before)) {
                    Ok(Some((next, c))) => {
                        record = next;
                        changes = c;
                    }
                    Ok(None) => {}
                    Err(e) => return Ok(Err(e)),
                }
            }
        }
        if delivered {
            // The start of the delivery's hour, as the embedded engines keep it.
            let start = Granularity::Hourly.start(hour);
            record.last_delivered = Some(record.last_delivered.map_or(start, |t| t.max(start)));
            self.effects.stamps.push((stamp, hour));
        }
        if record == current && changes.is_empty() {
            return Ok(Ok(None));
        }
        Ok(Ok(Some((domain.to_string(), current, record, changes))))
    }

    /// Writes the group's rows, in four round trips: the history's sequence numbers; then
    /// every row in one pipeline (see [`Pipeline`]), the change log's counter taken last and
    /// held until COMMIT (so that writers number their changes one after the other, in commit
    /// order); then the numbered changes.
    async fn flush(&mut self) -> Result<(), StoreError> {
        let tx = self.tx;
        // Sequence numbers of history entries (and of the events that share them), in the
        // order the group made them.
        let wanted = self.history.len() + self.domain_history.len();
        let mut seqs: Vec<i64> = Vec::new();
        if wanted > 0 {
            let mut numbering = Pipeline::default();
            numbering.push(
                "numbering history entries",
                "SELECT nextval('history_seq') FROM generate_series(1, $1::int8)",
                vec![Box::new(i64::try_from(wanted).unwrap_or(i64::MAX))],
            );
            seqs = numbering
                .run(tx)
                .await?
                .concat()
                .iter()
                .map(|r| r.get(0))
                .collect();
            seqs.sort_unstable();
        }
        let mut pipeline = Pipeline::default();
        let mut events_at = None;
        if !self.events.is_empty() {
            let e = &self.events;
            let tenants: Vec<&str> = e.iter().map(|r| r.tenant.as_str()).collect();
            let ids: Vec<&str> = e.iter().map(|r| r.event_id.as_str()).collect();
            let hashes: Vec<&[u8]> = e.iter().map(|r| &r.ah[..]).collect();
            let at: Vec<i64> = e.iter().map(|r| r.occurred_at).collect();
            let seq: Vec<i64> = e.iter().map(|r| seqs[r.history]).collect();
            let sources: Vec<&str> = e.iter().map(|r| r.source.as_str()).collect();
            let campaigns: Vec<&str> = e.iter().map(|r| r.campaign.as_str()).collect();
            let types: Vec<i16> = e.iter().map(|r| r.bounce_type).collect();
            let bounces: Vec<bool> = e.iter().map(|r| r.is_bounce).collect();
            let bytes: Vec<&[u8]> = e.iter().map(|r| r.bytes.as_slice()).collect();
            events_at = Some(pipeline.len());
            pipeline.push(
                "storing events",
                "INSERT INTO events (tenant, event_id, address_hash, occurred_at, seq, source,
                                     campaign, bounce_type, is_bounce, event)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[],
                                      $5::int8[], $6::text[], $7::text[], $8::int2[],
                                      $9::bool[], $10::bytea[])
                 ON CONFLICT (tenant, event_id) DO NOTHING
                 RETURNING event_id",
                vec![
                    Box::new(tenants),
                    Box::new(ids),
                    Box::new(hashes),
                    Box::new(at),
                    Box::new(seq),
                    Box::new(sources),
                    Box::new(campaigns),
                    Box::new(types),
                    Box::new(bounces),
                    Box::new(bytes),
                ],
            );
        }
        if !self.history.is_empty() {
            let h = &self.history;
            let tenants: Vec<&str> = h.iter().map(|r| r.tenant.as_str()).collect();
            let hashes: Vec<&[u8]> = h.iter().map(|r| &r.ah[..]).collect();
            let at: Vec<i64> = h.iter().map(|r| r.at).collect();
            let seq: Vec<i64> = seqs[..h.len()].to_vec();
            let ids: Vec<Option<&str>> = h.iter().map(|r| r.event_id.as_deref()).collect();
            let entries: Vec<&[u8]> = h.iter().map(|r| r.entry.as_slice()).collect();
            pipeline.push(
                "storing history",
                "INSERT INTO history (tenant, address_hash, at, seq, event_id, entry)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[], $4::int8[], $5::text[],
                                      $6::bytea[])",
                vec![
                    Box::new(tenants),
                    Box::new(hashes),
                    Box::new(at),
                    Box::new(seq),
                    Box::new(ids),
                    Box::new(entries),
                ],
            );
        }
        let made_at = self.push_addresses(&mut pipeline)?;
        self.push_counters(&mut pipeline);
        let changed: Vec<_> = self.domains.iter().filter(|(_, row)| row.changed).collect();
        if !changed.is_empty() {
            let mut activities = Vec::with_capacity(changed.len());
            let mut marks = Vec::with_capacity(changed.len());
            let mut since = Vec::with_capacity(changed.len());
            for (_, row) in &changed {
                activities.push(encode(&DomainActivity::of(&row.record))?);
                let (m, s) = super::domains::mark_columns(&row.record)?;
                marks.push(m);
                since.push(s);
            }
            // The rows exist (locked by this group): the upsert updates each one's activity and marks.
            pipeline.push(
                "storing domains' activity",
                "INSERT INTO domains (tenant, domain, activity, marks, suppressed_since)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::int8[])
                 ON CONFLICT (tenant, domain) DO UPDATE SET activity = EXCLUDED.activity,
                     marks = EXCLUDED.marks, suppressed_since = EXCLUDED.suppressed_since",
                vec![
                    Box::new(
                        changed
                            .iter()
                            .map(|((t, _), _)| t.as_str())
                            .collect::<Vec<_>>(),
                    ),
                    Box::new(
                        changed
                            .iter()
                            .map(|((_, d), _)| d.as_str())
                            .collect::<Vec<_>>(),
                    ),
                    Box::new(activities),
                    Box::new(marks),
                    Box::new(since),
                ],
            );
        }
        if !self.domain_history.is_empty() {
            let dh = &self.domain_history;
            let offset = self.history.len();
            pipeline.push(
                "storing domains' history",
                "INSERT INTO domain_history (tenant, domain, at, seq, change)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::bytea[])",
                vec![
                    Box::new(dh.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
                    Box::new(dh.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()),
                    Box::new(dh.iter().map(|r| r.2).collect::<Vec<_>>()),
                    Box::new(seqs[offset..offset + dh.len()].to_vec()),
                    Box::new(dh.iter().map(|r| r.3.as_slice()).collect::<Vec<_>>()),
                ],
            );
        }
        let n = i64::try_from(self.changes.len()).unwrap_or(i64::MAX);
        let mut counter_at = None;
        if n > 0 {
            counter_at = Some(pipeline.len());
            pipeline.push(
                "numbering changes",
                "UPDATE change_counter SET last_seq = last_seq + $1 WHERE id = 1
                 RETURNING last_seq",
                vec![Box::new(n)],
            );
        }
        let answers = pipeline.run(tx).await?;
        if let Some(i) = events_at {
            if answers.get(i).map_or(0, Vec::len) != self.events.len() {
                // Another writer recorded one of these event ids (for another address) after
                // this group read them: the group runs again, and finds it recorded.
                return Err(StoreError::Conflict {
                    context: "storing events".into(),
                    source: "an event id was recorded meanwhile by another writer".into(),
                });
            }
        }
        if let Some((i, wanted)) = made_at {
            if answers.get(i).map_or(0, Vec::len) != wanted {
                // Another writer made the row of an address that had none when this group
                // locked its rows: the group decided on a record that is no longer the
                // address's, so it runs again on the one stored.
                return Err(StoreError::Conflict {
                    context: "making address rows".into(),
                    source: "an address row was made meanwhile by another writer".into(),
                });
            }
        }
        if let Some(i) = counter_at {
            let last: i64 = answers
                .get(i)
                .and_then(|rows| rows.first())
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::engine("numbering changes", "no change counter row"))?;
            let c = &self.changes;
            let tenants: Vec<&str> = c.iter().map(|r| r.tenant.as_str()).collect();
            let seq: Vec<i64> = (last - n + 1..=last).collect();
            let hashes: Vec<Option<&[u8]>> =
                c.iter().map(|r| r.ah.as_ref().map(|h| &h[..])).collect();
            let at: Vec<i64> = c.iter().map(|r| r.at).collect();
            let kinds: Vec<i16> = c.iter().map(|r| r.kind).collect();
            let bytes: Vec<&[u8]> = c.iter().map(|r| r.bytes.as_slice()).collect();
            let mut logging = Pipeline::default();
            logging.push(
                "storing changes",
                "INSERT INTO changes (tenant, seq, at, kind, address_hash, change)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int2[], $5::bytea[],
                                      $6::bytea[])",
                vec![
                    Box::new(tenants),
                    Box::new(seq),
                    Box::new(at),
                    Box::new(kinds),
                    Box::new(hashes),
                    Box::new(bytes),
                ],
            );
            logging.run(tx).await?;
            self.effects.last_change = u64::try_from(last).ok();
        }
        Ok(())
    }

    /// The address rows (new records, each row written once) and their expiries. Gives the
    /// position of the statement that makes the rows of addresses that had none when the
    /// group locked its rows, with their count: fewer made means another writer made one
    /// meanwhile (see [`Group::lock`]).
    fn push_addresses<'p>(
        &'p self,
        pipeline: &mut Pipeline<'p>,
    ) -> Result<Option<(usize, usize)>, StoreError> {
        let mut stored = AddressColumns::default();
        let mut made = AddressColumns::default();
        let mut gone: (Vec<&str>, Vec<&[u8]>, Vec<i64>) = Default::default();
        let mut due: (Vec<&str>, Vec<&[u8]>, Vec<i64>) = Default::default();
        for slot in &self.dirty {
            let Some(Some(record)) = self.records.get(slot) else {
                continue;
            };
            let (text, domain) = &self.addresses[slot];
            // `None`: the address had no row when the group locked its rows.
            let original = self.original.get(slot);
            let columns = if original.is_some() {
                &mut stored
            } else {
                &mut made
            };
            columns.push(slot, text, domain, record)?;
            let before = original
                .and_then(Option::as_ref)
                .map(AddressRecord::expiries)
                .unwrap_or_default();
            let after = record.expiries();
            for end in before.iter().filter(|e| !after.contains(e)) {
                gone.0.push(slot.0.as_str());
                gone.1.push(&slot.1[..]);
                gone.2.push(end.micros());
            }
            for end in after.iter().filter(|e| !before.contains(e)) {
                due.0.push(slot.0.as_str());
                due.1.push(&slot.1[..]);
                due.2.push(end.micros());
            }
        }
        let mut made_at = None;
        if !made.tenants.is_empty() {
            made_at = Some((pipeline.len(), made.tenants.len()));
            pipeline.push(
                "making address rows",
                "INSERT INTO addresses (tenant, address_hash, address, domain, record,
                                        suppressed_since, suppression_reason, suppression_source,
                                        suppression_expires, list_unsubscribed, needs_enrichment,
                                        forgotten)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bytea[],
                                      $6::int8[], $7::int2[], $8::text[], $9::int8[], $10::bool[],
                                      $11::bool[], $12::bool[])
                 ON CONFLICT (tenant, address_hash) DO NOTHING
                 RETURNING address_hash",
                made.into_params(),
            );
        }
        if !stored.tenants.is_empty() {
            // Rows this group holds locked: the upsert always updates.
            pipeline.push(
                "storing address records",
                "INSERT INTO addresses (tenant, address_hash, address, domain, record,
                                        suppressed_since, suppression_reason, suppression_source,
                                        suppression_expires, list_unsubscribed, needs_enrichment,
                                        forgotten)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bytea[],
                                      $6::int8[], $7::int2[], $8::text[], $9::int8[], $10::bool[],
                                      $11::bool[], $12::bool[])
                 ON CONFLICT (tenant, address_hash) DO UPDATE SET
                     address = EXCLUDED.address, domain = EXCLUDED.domain,
                     record = EXCLUDED.record, suppressed_since = EXCLUDED.suppressed_since,
                     suppression_reason = EXCLUDED.suppression_reason,
                     suppression_source = EXCLUDED.suppression_source,
                     suppression_expires = EXCLUDED.suppression_expires,
                     list_unsubscribed = EXCLUDED.list_unsubscribed,
                     needs_enrichment = EXCLUDED.needs_enrichment,
                     forgotten = EXCLUDED.forgotten",
                stored.into_params(),
            );
        }
        if !gone.0.is_empty() {
            pipeline.push(
                "removing expiries",
                "DELETE FROM expiries WHERE (tenant, address_hash, ends_at) IN
                     (SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[]))",
                vec![Box::new(gone.0), Box::new(gone.1), Box::new(gone.2)],
            );
        }
        if !due.0.is_empty() {
            pipeline.push(
                "storing expiries",
                "INSERT INTO expiries (tenant, address_hash, ends_at)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[])
                 ON CONFLICT DO NOTHING",
                vec![Box::new(due.0), Box::new(due.1), Box::new(due.2)],
            );
        }
        Ok(made_at)
    }

    /// Counters (adding upserts, in key order), dimension values and delivered addresses.
    fn push_counters<'p>(&'p self, pipeline: &mut Pipeline<'p>) {
        if !self.counters.is_empty() {
            let (mut tenants, mut dims, mut values) = (Vec::new(), Vec::new(), Vec::new());
            let (mut grains, mut buckets) = (Vec::new(), Vec::new());
            let mut counts: [Vec<i64>; 8] = Default::default();
            for ((t, d, v, g, b), n) in &self.counters {
                tenants.push(t.as_str());
                dims.push(*d);
                values.push(v.as_str());
                grains.push(*g);
                buckets.push(*b);
                for (col, value) in counts.iter_mut().zip(n) {
                    col.push(*value);
                }
            }
            let mut params: Vec<pipeline::Param<'p>> = vec![
                Box::new(tenants),
                Box::new(dims),
                Box::new(values),
                Box::new(grains),
                Box::new(buckets),
            ];
            params.extend(
                counts
                    .into_iter()
                    .map(|c| Box::new(c) as pipeline::Param<'p>),
            );
            pipeline.push(
                "storing counters",
                "INSERT INTO counters (tenant, dimension, value, granularity, bucket, sent,
                                       delivered, hard, soft, block, complaint, unsubscribe,
                                       to_accept_all)
                 SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::int2[], $5::int8[],
                                      $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                                      $11::int8[], $12::int8[], $13::int8[])
                 ON CONFLICT (tenant, dimension, value, granularity, bucket) DO UPDATE SET
                     sent = counters.sent + EXCLUDED.sent,
                     delivered = counters.delivered + EXCLUDED.delivered,
                     hard = counters.hard + EXCLUDED.hard,
                     soft = counters.soft + EXCLUDED.soft,
                     block = counters.block + EXCLUDED.block,
                     complaint = counters.complaint + EXCLUDED.complaint,
                     unsubscribe = counters.unsubscribe + EXCLUDED.unsubscribe,
                     to_accept_all = counters.to_accept_all + EXCLUDED.to_accept_all",
                params,
            );
        }
        if !self.values.is_empty() {
            let tenants: Vec<&str> = self.values.iter().map(|v| v.0.as_str()).collect();
            let dims: Vec<i16> = self.values.iter().map(|v| v.1).collect();
            let values: Vec<&str> = self.values.iter().map(|v| v.2.as_str()).collect();
            pipeline.push(
                "storing dimension values",
                "INSERT INTO dimension_values (tenant, dimension, value)
                 SELECT * FROM unnest($1::text[], $2::int2[], $3::text[])
                 ON CONFLICT DO NOTHING",
                vec![Box::new(tenants), Box::new(dims), Box::new(values)],
            );
        }
        if !self.delivered.is_empty() {
            let d = &self.delivered;
            let tenants: Vec<&str> = d.iter().map(|r| r.0.as_str()).collect();
            let domains: Vec<&str> = d.iter().map(|r| r.1.as_str()).collect();
            let hashes: Vec<&[u8]> = d.iter().map(|r| &r.2[..]).collect();
            let locals: Vec<&str> = d.iter().map(|r| r.3.as_str()).collect();
            pipeline.push(
                "storing delivered addresses",
                "INSERT INTO delivered_addresses (tenant, domain, address_hash, local_part)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
                 ON CONFLICT DO NOTHING",
                vec![
                    Box::new(tenants),
                    Box::new(domains),
                    Box::new(hashes),
                    Box::new(locals),
                ],
            );
        }
    }
}

/// Commits a two-address write in a transaction of its own (the row locks order it with every
/// other writer's).
pub(super) async fn commit_pair(
    inner: &Inner,
    write: &PairWrite,
) -> Result<PairOutcome, StoreError> {
    let hasher = &inner.meta()?.hasher;
    let t = write.tenant.as_str();
    let hashes = [
        hasher.hash(t, write.first.as_str()),
        hasher.hash(t, write.second.as_str()),
    ];
    let mut addresses = BTreeMap::new();
    for (ah, address) in hashes.iter().zip([&write.first, &write.second]) {
        addresses.insert(
            (t.to_string(), *ah.bytes()),
            (address.as_str().to_string(), address.domain().to_string()),
        );
    }
    let stamps = HashMap::new();
    let mut client = connection(&inner.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("starting a two-address write"))?;
    let mut group = Group::new(&tx, None, &stamps, addresses);
    group.lock(BTreeMap::new()).await?;
    let outcome = group.add_pair(hashes, write)?;
    if outcome.refused.is_none() {
        group.flush().await?;
    }
    let effects = std::mem::take(&mut group.effects);
    drop(group);
    tx.commit()
        .await
        .map_err(sql_error("committing a two-address write"))?;
    publish_head(inner, effects.last_change);
    Ok(outcome)
}

/// Moves the change log's head to `last` (a commit's last change).
pub(super) fn publish_head(inner: &Inner, last: Option<u64>) {
    if let Some(last) = last {
        inner.head.send_if_modified(|h| {
            let moved = last > *h;
            if moved {
                *h = last;
            }
            moved
        });
    }
}

/// A stored enum number as the SMALLINT columns keep it.
pub(super) fn number16(n: i32) -> i16 {
    i16::try_from(n).unwrap_or(i16::MAX)
}

/// Removes every tenant's changes made before `before`, at most `limit`, each tenant's oldest
/// first and only up to its first change that is kept (so a tenant's horizon means that every
/// change up to it is gone).
pub(super) async fn prune_changes(
    inner: &Inner,
    before: Timestamp,
    limit: usize,
) -> Result<u64, StoreError> {
    let mut client = connection(&inner.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("pruning the change log"))?;
    let tenants: Vec<String> = tx
        .query(
            "SELECT DISTINCT tenant FROM changes WHERE at < $1",
            &[&before.micros()],
        )
        .await
        .map_err(sql_error("pruning the change log"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut removed = 0u64;
    for tenant in tenants {
        let left = limit.saturating_sub(usize::try_from(removed).unwrap_or(usize::MAX));
        if left == 0 {
            break;
        }
        let rows = tx
            .query(
                "SELECT seq, at FROM changes WHERE tenant = $1 ORDER BY seq LIMIT $2",
                &[&tenant, &i64::try_from(left).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(sql_error("pruning the change log"))?;
        let mut horizon = None;
        for row in &rows {
            if row.get::<_, i64>(1) >= before.micros() {
                break;
            }
            horizon = Some(row.get::<_, i64>(0));
        }
        let Some(horizon) = horizon else { continue };
        let n = tx
            .execute(
                "DELETE FROM changes WHERE tenant = $1 AND seq <= $2",
                &[&tenant, &horizon],
            )
            .await
            .map_err(sql_error("pruning the change log"))?;
        tx.execute(
            "INSERT INTO change_horizons (tenant, horizon) VALUES ($1, $2)
             ON CONFLICT (tenant) DO UPDATE SET horizon = EXCLUDED.horizon",
            &[&tenant, &horizon],
        )
        .await
        .map_err(sql_error("pruning the change log"))?;
        removed += n;
    }
    tx.commit()
        .await
        .map_err(sql_error("pruning the change log"))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::index::tests::{bounce, hard_bounce_with_id, replica};
    use crate::domain::{EmailAddress, Tenant};
    use crate::store::{testing, PairDecision, PairWrite, SuppressionStore, WriteOutcome};

    /// A store on a database of its own whose addresses `gone0` and `gone1@example.com`
    /// (tenant `race`) have rows.
    async fn two_addresses(key: &str) -> (String, Arc<dyn SuppressionStore>) {
        let url = testing::postgres_test_database(key);
        let store = replica(&url);
        store
            .write(vec![
                hard_bounce_with_id(0, "e0"),
                hard_bounce_with_id(1, "e1"),
            ])
            .await
            .unwrap();
        (url, store)
    }

    /// A session of its own on the database at `url`.
    async fn other_session(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Locks the row of one address of tenant `race`.
    const LOCK: &str = "SELECT 1 FROM addresses WHERE tenant = 'race' AND address = $1 FOR UPDATE";

    /// Every send result of the writes was recorded now (none was stored before).
    fn assert_recorded(outcomes: &[WriteOutcome]) {
        for outcome in outcomes {
            assert!(
                !matches!(outcome, WriteOutcome::Duplicate { .. }),
                "{outcome:?}"
            );
        }
    }

    /// Returns once a session of the database waits on a lock.
    async fn until_a_session_waits_on_a_lock(tx: &tokio_postgres::Transaction<'_>) {
        let mut waited = Duration::ZERO;
        loop {
            let waiting: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            assert!(waited < Duration::from_secs(30), "no session waited");
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += Duration::from_millis(5);
        }
    }

    /// Runs `work` (which locks both address rows in the writers' key order) in a deadlock:
    /// another transaction locks the second row, waits until `work` holds the first and waits
    /// on the second, then asks for the first. PostgreSQL breaks it by aborting `work`'s
    /// transaction (it waited first, and the other session's own deadlock check is put off);
    /// the other transaction then commits. Gives what `work` answered.
    async fn in_a_deadlock<T: Send + 'static>(
        url: &str,
        work: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let mut other = other_session(url).await;
        other
            .batch_execute("SET deadlock_timeout = '60s'")
            .await
            .unwrap();
        let tx = other.transaction().await.unwrap();
        let order: Vec<String> = tx
            .query(
                "SELECT address FROM addresses WHERE tenant = 'race' ORDER BY address_hash",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(order.len(), 2);
        tx.query(LOCK, &[&order[1]]).await.unwrap();
        let work = tokio::spawn(work);
        until_a_session_waits_on_a_lock(&tx).await;
        tx.query(LOCK, &[&order[0]])
            .await
            .expect("the write's transaction, not this one, is aborted for the deadlock");
        tx.commit().await.unwrap();
        work.await.unwrap()
    }

    // Before, the group's writes failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_a_group_aborted_by_a_deadlock_runs_again_and_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (url, store) = two_addresses(&format!("deadlock {}", dir.path().display())).await;
        let again = || {
            vec![
                hard_bounce_with_id(0, "again0"),
                hard_bounce_with_id(1, "again1"),
            ]
        };
        let outcomes = in_a_deadlock(&url, {
            let store = store.clone();
            let group = again();
            async move { store.write(group).await }
        })
        .await
        .expect("the group ran again and committed");
        assert_eq!(outcomes.len(), 2);
        assert_recorded(&outcomes);
        let repeated = store.write(again()).await.unwrap();
        assert!(
            repeated
                .iter()
                .all(|o| matches!(o, WriteOutcome::Duplicate { .. })),
            "both results were stored: {repeated:?}"
        );
    }

    // The group finds no row for gone1 (its lock statement's snapshot is taken before it
    // waits on gone0's row); another replica then makes that row with a soft bounce. The
    // group's row for gone1, made when it stores its records, must not be dropped for the
    // other's: the group runs again on the stored record, and both results count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_a_row_made_by_another_replica_after_the_group_found_none_is_decided_again()
    {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::postgres_test_database(&format!("made {}", dir.path().display()));
        let (a, b) = (replica(&url), replica(&url));
        a.write(vec![hard_bounce_with_id(0, "e0")]).await.unwrap();

        let mut other = other_session(&url).await;
        let tx = other.transaction().await.unwrap();
        tx.query(LOCK, &[&"gone0@example.com"]).await.unwrap();
        let group = {
            let a = a.clone();
            tokio::spawn(async move {
                a.write(vec![bounce(0, "again0", true), bounce(1, "hard1", true)])
                    .await
            })
        };
        until_a_session_waits_on_a_lock(&tx).await;
        b.write(vec![bounce(1, "soft1", false)]).await.unwrap();
        tx.commit().await.unwrap();
        group
            .await
            .unwrap()
            .expect("the group ran again and committed");

        let tenant = Tenant::parse("race").unwrap();
        let gone1 = EmailAddress::parse("gone1@example.com").unwrap();
        let record = b.get_record(&tenant, &gone1).unwrap().unwrap();
        assert!(
            record.is_suppressed(),
            "the group's hard bounce counts: {record:?}"
        );
        assert_eq!(
            record.soft_bounces.len(),
            1,
            "the other's soft bounce counts"
        );
    }

    // An operator bounds how long a statement may wait with `options=-c lock_timeout=...` in
    // the URL: a group that waits longer on a row another session holds fails as the
    // database being unavailable (UNAVAILABLE to callers, retry later), stores nothing, and
    // the next write goes through once the row is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_a_lock_wait_past_the_urls_lock_timeout_fails_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _store) = two_addresses(&format!("lock timeout {}", dir.path().display())).await;
        let separator = if url.contains('?') { '&' } else { '?' };
        let bounded = replica(&format!(
            "{url}{separator}options=-c%20lock_timeout%3D200ms"
        ));
        let mut other = other_session(&url).await;
        let tx = other.transaction().await.unwrap();
        tx.query(LOCK, &[&"gone0@example.com"]).await.unwrap();
        let e = bounded
            .write(vec![hard_bounce_with_id(0, "late0")])
            .await
            .expect_err("the row stays locked past the timeout");
        assert!(e.is_unavailable(), "{e}");
        tx.commit().await.unwrap();
        let stored = bounded
            .write(vec![hard_bounce_with_id(0, "late0")])
            .await
            .unwrap();
        assert_recorded(&stored);
    }

    // A URL may name several hosts (libpq's form) with `target_session_attrs=read-write`: the
    // replica connects to the first that answers as a primary, which is how it follows a
    // failover. Here the first host refuses connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_a_url_of_several_hosts_reaches_the_one_that_answers_as_primary() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _store) = two_addresses(&format!("hosts {}", dir.path().display())).await;
        let (scheme_user, rest) = url.split_once('@').expect("a URL with a user");
        let separator = if rest.contains('?') { '&' } else { '?' };
        let several =
            format!("{scheme_user}@127.0.0.1:1,{rest}{separator}target_session_attrs=read-write");
        let store = replica(&several);
        let outcomes = store
            .write(vec![hard_bounce_with_id(0, "through the second host")])
            .await
            .unwrap();
        assert_recorded(&outcomes);
    }

    // A replacement takes its own transaction, with the same retries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_a_two_address_write_aborted_by_a_deadlock_runs_again_and_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (url, store) = two_addresses(&format!("pair deadlock {}", dir.path().display())).await;
        let tenant = Tenant::parse("race").unwrap();
        let write = PairWrite {
            tenant: tenant.clone(),
            first: EmailAddress::parse("gone0@example.com").unwrap(),
            second: EmailAddress::parse("gone1@example.com").unwrap(),
            decide: Box::new(|first, second| {
                let mut first = first.cloned().expect("gone0 has a record");
                first.replaced_by = Some("decided@after.the.deadlock".to_string());
                PairDecision::Apply {
                    first: Some((first, Vec::new())),
                    second: second.map(|r| (r.clone(), Vec::new())),
                }
            }),
        };
        let outcome = in_a_deadlock(&url, {
            let store = store.clone();
            async move { store.write_pair(write).await }
        })
        .await
        .expect("the replacement ran again and committed");
        assert!(outcome.refused.is_none());
        let stored = store
            .get_record(&tenant, &EmailAddress::parse("gone0@example.com").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.replaced_by.as_deref(),
            Some("decided@after.the.deadlock")
        );
    }
}
