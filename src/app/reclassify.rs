//! Re-running the classification rules over a tenant's stored bounces: events the current
//! rules judge differently are stored again with their new classification, and each address
//! they belong to gets the state the new classifications give it (a suppression lifted,
//! added or moved to another event), with both rule ids in its history.
//!
//! The bounces are read a page at a time, newest first, and each page's addresses are
//! settled before the next page is read: memory holds one page of events, the addresses
//! already settled and the listed changes, never the tenant's whole history. An address is
//! settled at its first appearance from its whole history, so a later page never undoes what
//! an earlier one did.

use std::collections::{HashMap, HashSet};

use super::{blocking, observe_changes, AppError, Caller, Context};
use crate::classify::RULES_VERSION;
use crate::domain::{
    BounceType, Classification, EmailAddress, HistoryEntry, RecordedEvent, SmtpEvidence,
    StateChangeKind, Tenant, Timestamp,
};
use crate::policy::reclassify::{reclassify_address, Effect};
use crate::store::{AddressWrite, BounceQuery, Decision, WriteOutcome};

/// Events read per page.
const PAGE: usize = 1_000;
/// Addresses written per store call.
const WRITE_CHUNK: usize = 200;

/// Re-runs the classification rules.
#[derive(Clone)]
pub struct Reclassifier {
    context: Context,
}

/// What to reclassify.
#[derive(Debug, Clone, Default)]
pub struct ReclassifyRequest {
    /// Only events at or after this time.
    pub start: Option<Timestamp>,
    /// Only events before this time.
    pub end: Option<Timestamp>,
    /// Work out and report the changes without storing anything.
    pub dry_run: bool,
    /// Most changed events listed in the report (the earliest ones).
    pub max_listed: usize,
}

/// One event the current rules judge differently.
#[derive(Debug, Clone)]
pub struct ReclassifiedEvent {
    /// Its id.
    pub event_id: String,
    /// Its address.
    pub address: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// The stored classification.
    pub before: Classification,
    /// The current rules' classification.
    pub after: Classification,
    /// What it does to the address's suppression (shown on the event the effect rests on).
    pub effect: Effect,
}

/// What a reclassification found, and did unless it was a dry run.
#[derive(Debug, Clone, Default)]
pub struct ReclassifyReport {
    /// Bounce events examined.
    pub examined: u64,
    /// Events whose classification changed.
    pub reclassified: u64,
    /// Suppressions lifted.
    pub lifted: u64,
    /// Suppressions added.
    pub added: u64,
    /// Suppressions moved to another event.
    pub repointed: u64,
    /// The earliest changed events, at most `max_listed`, oldest first.
    pub changes: Vec<ReclassifiedEvent>,
}

/// One address touched by reclassification.
struct AddressPlan {
    address: EmailAddress,
    /// Its results with the current rules' classification.
    events: Vec<RecordedEvent>,
    /// Old classifications of the results that changed.
    before: HashMap<String, Classification>,
    reactivated_at: Option<Timestamp>,
}

/// What one page of bounces leads to.
#[derive(Default)]
struct PageOutcome {
    report: ReclassifyReport,
    writes: Vec<AddressWrite>,
    settled: Vec<String>,
    next: Option<Vec<u8>>,
}

impl Reclassifier {
    pub(super) fn new(context: Context) -> Self {
        Reclassifier { context }
    }

    /// Reclassifies the tenant's bounces in the request's time range. The changes it makes are
    /// recorded under the caller's name.
    pub async fn run(
        &self,
        caller: &Caller,
        tenant: Tenant,
        request: ReclassifyRequest,
    ) -> Result<ReclassifyReport, AppError> {
        caller.check_tenant(&tenant)?;
        let mut report = ReclassifyReport::default();
        let mut settled: HashSet<String> = HashSet::new();
        let mut cursor: Option<Vec<u8>> = None;
        let max_listed = request.max_listed;
        loop {
            let this = self.clone();
            let (t, r, c) = (tenant.clone(), request.clone(), caller.clone());
            let done = std::mem::take(&mut settled);
            let (page, done) = blocking(move || {
                let page = this.page(&c, &t, &r, cursor.as_deref(), &done)?;
                Ok((page, done))
            })
            .await?;
            settled = done;
            settled.extend(page.settled);
            report.examined += page.report.examined;
            report.reclassified += page.report.reclassified;
            report.lifted += page.report.lifted;
            report.added += page.report.added;
            report.repointed += page.report.repointed;
            report.changes.extend(page.report.changes);
            if report.changes.len() > max_listed.saturating_mul(2).max(1_000) {
                keep_earliest(&mut report.changes, max_listed);
            }
            let mut writes = page.writes;
            while !writes.is_empty() {
                let rest = writes.split_off(writes.len().min(WRITE_CHUNK));
                let chunk = std::mem::replace(&mut writes, rest);
                for outcome in self.context.store.write(chunk).await? {
                    if let WriteOutcome::Applied { changes, .. } = outcome {
                        observe_changes(&changes);
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        keep_earliest(&mut report.changes, max_listed);
        tracing::info!(
            examined = report.examined,
            reclassified = report.reclassified,
            lifted = report.lifted,
            added = report.added,
            dry_run = request.dry_run,
            "reclassified"
        );
        Ok(report)
    }

    fn classify_again(&self, e: &RecordedEvent) -> Classification {
        self.context.classifier.classify(&SmtpEvidence {
            reported: e.outcome,
            smtp_response: &e.smtp_response,
            enhanced_status: e.enhanced_status.as_deref(),
            provider: &e.provider,
        })
    }

    /// The current rules' classification of an event, when it differs from the stored one.
    fn changed(&self, e: &RecordedEvent) -> Option<Classification> {
        let now = self.classify_again(e);
        let old = &e.classification;
        let same = now.bounce_type == old.bounce_type
            && now.reason == old.reason
            && now.rule_id == old.rule_id;
        (!same).then_some(now)
    }

    /// Reads one page of bounces and settles the addresses of its changed events that earlier
    /// pages did not settle.
    fn page(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        request: &ReclassifyRequest,
        cursor: Option<&[u8]>,
        settled: &HashSet<String>,
    ) -> Result<PageOutcome, AppError> {
        let query = BounceQuery {
            start: request.start,
            end: request.end,
            ..BounceQuery::default()
        };
        let page = self
            .context
            .store
            .list_bounces(tenant, &query, cursor, PAGE)?;
        let mut out = PageOutcome {
            next: page.next,
            ..PageOutcome::default()
        };
        let mut addresses: Vec<String> = Vec::new();
        for event in &page.items {
            out.report.examined += 1;
            if settled.contains(&event.address) || addresses.contains(&event.address) {
                continue;
            }
            if self.changed(event).is_some() {
                addresses.push(event.address.clone());
            }
        }
        let now = self.context.clock.now();
        for address in addresses {
            let Ok(parsed) = EmailAddress::parse(&address) else {
                continue;
            };
            let plan = self.address_plan(tenant, parsed, request)?;
            self.settle(caller, tenant, plan, request, now, &mut out)?;
            out.settled.push(address);
        }
        Ok(out)
    }

    /// Every result of an address, with the current rules applied to its bounces in the
    /// request's range, and the time of its last reactivation.
    fn address_plan(
        &self,
        tenant: &Tenant,
        address: EmailAddress,
        request: &ReclassifyRequest,
    ) -> Result<AddressPlan, AppError> {
        let in_range = |t: Timestamp| {
            request.start.is_none_or(|s| t >= s) && request.end.is_none_or(|e| t < e)
        };
        let mut events = Vec::new();
        let mut before = HashMap::new();
        let mut reactivated_at: Option<Timestamp> = None;
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .context
                .store
                .history(tenant, &address, cursor.as_deref(), PAGE)?;
            for entry in page.items {
                match entry {
                    HistoryEntry::SendResult(mut e) => {
                        if e.is_bounce() && in_range(e.occurred_at) {
                            if let Some(now) = self.changed(&e) {
                                let old = std::mem::replace(&mut e.classification, now);
                                e.rules_version = RULES_VERSION;
                                before.insert(e.event_id.clone(), old);
                            }
                        }
                        events.push(e);
                    }
                    HistoryEntry::StateChange(c) if c.kind == StateChangeKind::Reactivated => {
                        reactivated_at = Some(reactivated_at.map_or(c.at, |r| r.max(c.at)));
                    }
                    HistoryEntry::StateChange(_) => {}
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(AddressPlan {
            address,
            events,
            before,
            reactivated_at,
        })
    }

    /// Works out what an address's reclassified events do, lists them, and (unless a dry run)
    /// queues the write that applies it.
    fn settle(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        plan: AddressPlan,
        request: &ReclassifyRequest,
        now: Timestamp,
        out: &mut PageOutcome,
    ) -> Result<(), AppError> {
        let record = self.context.store.get_record(tenant, &plan.address)?;
        let (effect, _) = reclassify_address(
            record.as_ref(),
            &plan.events,
            &plan.before,
            plan.reactivated_at,
            now,
            &self.context.policy.ttl,
        );
        match effect {
            Effect::None => {}
            Effect::Lifted => out.report.lifted += 1,
            Effect::Suppressed => out.report.added += 1,
            Effect::Repointed => out.report.repointed += 1,
        }
        // The effect is shown on the event it rests on: the old deciding event for a lift or a
        // move, the new deciding event for a new suppression.
        let effect_event = match effect {
            Effect::Lifted | Effect::Repointed => record
                .as_ref()
                .and_then(|r| r.suppression.as_ref())
                .map(|s| s.event_id.clone()),
            Effect::Suppressed => plan
                .events
                .iter()
                .filter(|e| plan.before.contains_key(&e.event_id))
                .filter(|e| {
                    matches!(
                        e.classification.bounce_type,
                        BounceType::Hard | BounceType::Complaint
                    )
                })
                .min_by_key(|e| e.occurred_at)
                .map(|e| e.event_id.clone()),
            Effect::None => None,
        };
        let mut updated = Vec::with_capacity(plan.before.len());
        for e in plan.events.iter() {
            let Some(old) = plan.before.get(&e.event_id) else {
                continue;
            };
            out.report.reclassified += 1;
            out.report.changes.push(ReclassifiedEvent {
                event_id: e.event_id.clone(),
                address: e.address.clone(),
                occurred_at: e.occurred_at,
                before: old.clone(),
                after: e.classification.clone(),
                effect: if effect_event.as_deref() == Some(e.event_id.as_str()) {
                    effect
                } else {
                    Effect::None
                },
            });
            updated.push(e.clone());
        }
        if !request.dry_run {
            let AddressPlan {
                address,
                events,
                before,
                reactivated_at,
            } = plan;
            let signer = caller.clone();
            let ttl = self.context.policy.ttl;
            out.writes.push(AddressWrite {
                tenant: tenant.clone(),
                address,
                event: None,
                reclassified: updated,
                // Decided again on the record as it is when the write applies.
                decide: Box::new(move |current| {
                    match reclassify_address(current, &events, &before, reactivated_at, now, &ttl) {
                        (_, Some(mut t)) => {
                            for change in &mut t.changes {
                                change.actor = signer.actor().to_string();
                            }
                            signer.sign(&mut t.changes);
                            Decision::Apply {
                                record: t.record,
                                changes: t.changes,
                            }
                        }
                        (_, None) => Decision::Unchanged,
                    }
                }),
            });
        }
        Ok(())
    }
}

/// Keeps the `n` earliest changes, oldest first.
fn keep_earliest(changes: &mut Vec<ReclassifiedEvent>, n: usize) {
    changes.sort_by(|a, b| {
        a.occurred_at
            .cmp(&b.occurred_at)
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    changes.truncate(n);
}
