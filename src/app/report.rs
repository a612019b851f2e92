//! Recording send results: classify each from its SMTP response, store it idempotently on its
//! event id, and let the policy decide what it does to the address, in one atomic write.

use std::collections::VecDeque;

use super::{unexpected, AddressStatus, AppError, Caller, Context};
use crate::classify::RULES_VERSION;
use crate::domain::{
    Classification, EmailAddress, RecordedEvent, ReportedOutcome, SendReport, SmtpEvidence,
    StateChange, Tenant, Timestamp,
};
use crate::policy::EscalationPolicy;
use crate::store::{AddressWrite, Decision, StoreFuture, WriteOutcome};

/// How many batches of one ingest stream may wait for their commit while the next ones are
/// read and queued.
const MAX_QUEUED_BATCHES: usize = 4;

/// Records send results.
#[derive(Clone)]
pub struct Reporter {
    context: Context,
}

/// What became of one recorded send result.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The service's classification (the stored one, for a duplicate).
    pub classification: Classification,
    /// The event id was recorded before; nothing changed.
    pub duplicate: bool,
    /// The address's status afterwards.
    pub status: AddressStatus,
}

/// Counts of an ingest stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Results recorded (new event ids).
    pub accepted: u64,
    /// Results whose event id was already recorded.
    pub duplicates: u64,
    /// Addresses that became suppressed.
    pub newly_suppressed: u64,
}

/// What metrics need to know of a send result besides its write outcome.
struct ResultMeta {
    classification: Classification,
    reported: ReportedOutcome,
    provider: String,
}

impl Reporter {
    pub(super) fn new(context: Context) -> Self {
        Reporter { context }
    }

    pub(super) fn context(&self) -> &Context {
        &self.context
    }

    /// The time a result is taken to have happened when its reporter does not say.
    pub fn now(&self) -> Timestamp {
        self.context.clock.now()
    }

    /// Classifies an SMTP response without storing anything.
    pub fn classify(&self, evidence: &SmtpEvidence) -> Classification {
        self.context.classifier.classify(evidence)
    }

    /// Records one send result; answers once it is durable.
    pub async fn report(
        &self,
        caller: &Caller,
        tenant: Tenant,
        report: SendReport,
    ) -> Result<Recorded, AppError> {
        caller.check_tenant(&tenant)?;
        let now = self.context.clock.now();
        let address = report.address.clone();
        let accept_all = self
            .accept_all(&tenant, std::slice::from_ref(&report))
            .first()
            .is_some_and(|a| *a);
        let (write, meta) = self.event_write(&tenant, report, now, accept_all);
        let outcome = self.context.single_write(write).await?;
        observe(&outcome, &meta);
        self.recorded(&tenant, address, outcome, meta, now)
    }

    /// Records several send results of one tenant in one store write: they become durable
    /// together, and this answers once they are. Each keeps its own outcome, in the order given
    /// (an event id recorded before changes nothing; two results for one address are applied
    /// one after the other).
    pub async fn report_all(
        &self,
        caller: &Caller,
        tenant: Tenant,
        reports: Vec<SendReport>,
    ) -> Result<Vec<Recorded>, AppError> {
        caller.check_tenant(&tenant)?;
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.context.clock.now();
        let addresses: Vec<EmailAddress> = reports.iter().map(|r| r.address.clone()).collect();
        let accept_all = self.accept_all(&tenant, &reports);
        let (writes, metas): (Vec<_>, Vec<_>) = reports
            .into_iter()
            .zip(accept_all)
            .map(|(report, accept_all)| self.event_write(&tenant, report, now, accept_all))
            .unzip();
        let outcomes = self.context.store.write(writes).await?;
        if outcomes.len() != metas.len() {
            return Err(AppError::Internal(format!(
                "store returned {} outcomes for {} writes",
                outcomes.len(),
                metas.len()
            )));
        }
        let mut recorded = Vec::with_capacity(outcomes.len());
        for ((outcome, meta), address) in outcomes.into_iter().zip(metas).zip(addresses) {
            observe(&outcome, &meta);
            recorded.push(self.recorded(&tenant, address, outcome, meta, now)?);
        }
        Ok(recorded)
    }

    /// What became of one send result, from its write's outcome.
    fn recorded(
        &self,
        tenant: &Tenant,
        address: EmailAddress,
        outcome: WriteOutcome,
        meta: ResultMeta,
        now: Timestamp,
    ) -> Result<Recorded, AppError> {
        let (classification, record, duplicate) = match outcome {
            WriteOutcome::Applied { record, .. } => (meta.classification, Some(record), false),
            WriteOutcome::Unchanged { record } => (meta.classification, record, false),
            WriteOutcome::Duplicate { original, record } => (original.classification, record, true),
            other => return Err(unexpected(other)),
        };
        Ok(Recorded {
            classification,
            duplicate,
            status: self.context.status(tenant, address, record, now),
        })
    }

    /// Starts an ingest stream: batches are queued in order, each committed while the next is
    /// read.
    pub fn ingest(&self, caller: Caller) -> Ingest {
        Ingest {
            reporter: self.clone(),
            caller,
            in_flight: VecDeque::new(),
            summary: IngestSummary::default(),
        }
    }

    /// Whether each report's address is at a domain that accepts any local part: there a
    /// delivery does not validate a pending replacement. One question to the store for all of
    /// them (from memory on the embedded engines, nothing while the tenant marks none; one query
    /// on postgres).
    fn accept_all(&self, tenant: &Tenant, reports: &[SendReport]) -> Vec<bool> {
        let domains: Vec<&str> = reports.iter().map(|r| r.address.domain()).collect();
        let mut marked = vec![false; reports.len()];
        for (i, facts) in self.context.store.domain_facts(tenant, &domains) {
            if let Some(m) = marked.get_mut(i) {
                *m = facts.accept_all.is_some();
            }
        }
        marked
    }

    /// Classifies a validated report and builds the store write that records it.
    fn event_write(
        &self,
        tenant: &Tenant,
        report: SendReport,
        now: Timestamp,
        accept_all: bool,
    ) -> (AddressWrite, ResultMeta) {
        let classification = self.classify(&SmtpEvidence {
            reported: report.outcome,
            smtp_response: &report.smtp_response,
            enhanced_status: report.enhanced_status.as_deref(),
            provider: &report.provider,
        });
        let address = report.address.clone();
        let meta = ResultMeta {
            classification: classification.clone(),
            reported: report.outcome,
            provider: report.provider.clone(),
        };
        let event = RecordedEvent::new(report, classification, RULES_VERSION, now);
        (
            event_write_at(tenant, address, event, self.context.policy, accept_all),
            meta,
        )
    }
}

/// The store write that records a classified event and lets `policy` decide what it does to
/// its address.
pub fn event_write(
    tenant: &Tenant,
    address: EmailAddress,
    event: RecordedEvent,
    policy: EscalationPolicy,
) -> AddressWrite {
    event_write_at(tenant, address, event, policy, false)
}

/// [`event_write`] for an address whose domain is marked accept-all when `accept_all` is true.
fn event_write_at(
    tenant: &Tenant,
    address: EmailAddress,
    event: RecordedEvent,
    policy: EscalationPolicy,
    accept_all: bool,
) -> AddressWrite {
    let for_policy = event.clone();
    AddressWrite {
        tenant: tenant.clone(),
        address,
        event: Some(event),
        reclassified: Vec::new(),
        decide: Box::new(move |current| {
            let t = policy.apply_event_at(current, &for_policy, accept_all);
            Decision::Apply {
                record: t.record,
                changes: t.changes,
            }
        }),
    }
}

/// An ingest stream in progress: batches queued for commit in the order given.
pub struct Ingest {
    reporter: Reporter,
    /// Who streams: every batch's tenant must be one of its tenants.
    caller: Caller,
    /// Batches queued and not yet counted, oldest first.
    in_flight: VecDeque<(StoreFuture<Vec<WriteOutcome>>, Vec<ResultMeta>)>,
    summary: IngestSummary,
}

impl Ingest {
    /// Queues a batch of validated reports of one tenant. Returns once it is queued; waits
    /// for the oldest batch's commit only when [`MAX_QUEUED_BATCHES`] are waiting. A batch for
    /// a tenant the caller may not act for is refused whole.
    pub async fn push(
        &mut self,
        tenant: &Tenant,
        reports: Vec<SendReport>,
    ) -> Result<(), AppError> {
        self.caller.check_tenant(tenant)?;
        let now = self.reporter.context.clock.now();
        let accept_all = self.reporter.accept_all(tenant, &reports);
        let (writes, metas): (Vec<_>, Vec<_>) = reports
            .into_iter()
            .zip(accept_all)
            .map(|(report, accept_all)| self.reporter.event_write(tenant, report, now, accept_all))
            .unzip();
        // The next batch is read and queued while this one is committed, so the writer finds
        // its next group waiting when it finishes.
        let outcomes = self.reporter.context.store.submit(writes).await?;
        self.in_flight.push_back((outcomes, metas));
        if self.in_flight.len() > MAX_QUEUED_BATCHES {
            if let Some((outcomes, metas)) = self.in_flight.pop_front() {
                tally(&mut self.summary, outcomes.await?, &metas)?;
            }
        }
        Ok(())
    }

    /// Waits for every queued batch to be durable and returns the stream's counts.
    pub async fn finish(mut self) -> Result<IngestSummary, AppError> {
        while let Some((outcomes, metas)) = self.in_flight.pop_front() {
            tally(&mut self.summary, outcomes.await?, &metas)?;
        }
        Ok(self.summary)
    }
}

/// Adds the outcomes of one committed batch to its stream's summary.
fn tally(
    summary: &mut IngestSummary,
    outcomes: Vec<WriteOutcome>,
    metas: &[ResultMeta],
) -> Result<(), AppError> {
    for (outcome, meta) in outcomes.into_iter().zip(metas) {
        observe(&outcome, meta);
        match outcome {
            WriteOutcome::Applied {
                previous, record, ..
            } => {
                summary.accepted += 1;
                let was = previous.as_ref().is_some_and(|r| r.is_suppressed());
                if !was && record.is_suppressed() {
                    summary.newly_suppressed += 1;
                }
            }
            WriteOutcome::Unchanged { .. } => summary.accepted += 1,
            WriteOutcome::Duplicate { .. } => summary.duplicates += 1,
            WriteOutcome::Refused { reason, .. } => return Err(AppError::Internal(reason)),
        }
    }
    Ok(())
}

/// Counts a recorded send result: by type and reason, disagreements with the reporter, and
/// the suppressions it caused.
fn observe(outcome: &WriteOutcome, meta: &ResultMeta) {
    let changes: &[StateChange] = match outcome {
        WriteOutcome::Applied { changes, .. } => changes,
        WriteOutcome::Unchanged { .. } => &[],
        WriteOutcome::Duplicate { .. } => {
            metrics::counter!("suppressd_duplicate_send_results_total").increment(1);
            return;
        }
        WriteOutcome::Refused { .. } => return,
    };
    let c = &meta.classification;
    metrics::counter!(
        "suppressd_send_results_total",
        "type" => format!("{:?}", c.bounce_type),
        "reason" => format!("{:?}", c.reason)
    )
    .increment(1);
    if c.disagrees_with_reporter {
        let provider = if meta.provider.is_empty() {
            "unknown".to_string()
        } else {
            meta.provider.to_ascii_lowercase()
        };
        metrics::counter!(
            "suppressd_classification_disagreements_total",
            "provider" => provider,
            "reported" => format!("{:?}", meta.reported),
            "classified" => format!("{:?}", c.bounce_type)
        )
        .increment(1);
    }
    super::observe_changes(changes);
}
