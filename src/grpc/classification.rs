//! Classification RPCs: ClassifySmtpResponse, and the admin service's Reclassify.

use std::collections::{BTreeMap, HashMap};

use tonic::{Request, Response, Status};

use super::convert;
use super::error::{FieldViolation, ServiceError};
use super::proto as pb;
use super::proto::suppression_admin_service_server::SuppressionAdminService;
use super::service::{blocking, observe_changes, record_span, SuppressionApi};
use crate::classify::RULES_VERSION;
use crate::domain::{
    parse_label, parse_smtp_response, Classification, EmailAddress, HistoryEntry, RecordedEvent,
    ReportedOutcome, SmtpEvidence, StateChangeKind, Tenant, Timestamp,
};
use crate::policy::reclassify::{reclassify_address, Effect};
use crate::store::{AddressWrite, BounceQuery, Decision, WriteOutcome};

/// Events read per page while reclassifying.
const PAGE: usize = 1_000;
/// Addresses written per store call while reclassifying.
const WRITE_CHUNK: usize = 200;

fn proto_effect(e: Effect) -> pb::ReclassifyEffect {
    match e {
        Effect::None => pb::ReclassifyEffect::Unspecified,
        Effect::Lifted => pb::ReclassifyEffect::Lifted,
        Effect::Suppressed => pb::ReclassifyEffect::Suppressed,
        Effect::Repointed => pb::ReclassifyEffect::Repointed,
    }
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

impl SuppressionApi {
    pub(super) fn classify_one(
        &self,
        req: pb::ClassifySmtpResponseRequest,
    ) -> Result<pb::ClassifySmtpResponseResponse, ServiceError> {
        let text = parse_smtp_response(&req.smtp_response)
            .map_err(|e| FieldViolation::new("smtp_response", e))?;
        let reported = match pb::Outcome::try_from(req.reported_outcome) {
            Ok(pb::Outcome::Unspecified) => ReportedOutcome::Bounce,
            _ => convert::outcome("reported_outcome", req.reported_outcome)?,
        };
        let provider =
            parse_label(&req.provider, false).map_err(|e| FieldViolation::new("provider", e))?;
        let status = req
            .enhanced_status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        if status.is_some_and(|s| s.len() > 16) {
            return Err(
                FieldViolation::new("enhanced_status", "is longer than 16 characters").into(),
            );
        }
        let c = self.classifier.classify(&SmtpEvidence {
            reported,
            smtp_response: &text,
            enhanced_status: status,
            provider: &provider,
        });
        Ok(pb::ClassifySmtpResponseResponse {
            classification: Some(convert::proto_classification(&c)),
            rules_version: RULES_VERSION,
        })
    }

    fn reclassified(&self, e: &RecordedEvent) -> Classification {
        self.classifier.classify(&SmtpEvidence {
            reported: e.outcome,
            smtp_response: &e.smtp_response,
            enhanced_status: e.enhanced_status.as_deref(),
            provider: &e.provider,
        })
    }

    /// Every result of an address (current rules applied to those in `changed`) and the time of
    /// its last reactivation.
    fn address_plan(
        &self,
        tenant: &Tenant,
        address: EmailAddress,
        changed: HashMap<String, (Classification, RecordedEvent)>,
    ) -> Result<AddressPlan, ServiceError> {
        let mut events = Vec::new();
        let mut reactivated_at: Option<Timestamp> = None;
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .history(tenant, &address, cursor.as_deref(), PAGE)?;
            for entry in page.items {
                match entry {
                    HistoryEntry::SendResult(e) => events.push(e),
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
        let mut before = HashMap::new();
        for e in &mut events {
            if let Some((old, updated)) = changed.get(&e.event_id) {
                before.insert(e.event_id.clone(), old.clone());
                *e = updated.clone();
            }
        }
        Ok(AddressPlan {
            address,
            events,
            before,
            reactivated_at,
        })
    }

    fn run_reclassify(
        &self,
        req: pb::ReclassifyRequest,
    ) -> Result<pb::ReclassifyResponse, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        let (start, end) = convert::time_range(req.start_time.as_ref(), req.end_time.as_ref())?;
        let max_listed = match req.max_listed {
            0 => 100,
            n => n.min(10_000) as usize,
        };
        let query = BounceQuery {
            start,
            end,
            ..BounceQuery::default()
        };
        let mut response = pb::ReclassifyResponse {
            dry_run: req.dry_run,
            rules_version: RULES_VERSION,
            ..Default::default()
        };

        // 1. Which events does the current rule set judge differently?
        let mut by_address: BTreeMap<String, HashMap<String, (Classification, RecordedEvent)>> =
            BTreeMap::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .list_bounces(&tenant, &query, cursor.as_deref(), PAGE)?;
            for event in page.items {
                response.examined += 1;
                let now = self.reclassified(&event);
                let old = &event.classification;
                if now.bounce_type == old.bounce_type
                    && now.reason == old.reason
                    && now.rule_id == old.rule_id
                {
                    continue;
                }
                let mut updated = event.clone();
                updated.classification = now;
                updated.rules_version = RULES_VERSION;
                by_address
                    .entry(event.address.clone())
                    .or_default()
                    .insert(event.event_id.clone(), (event.classification, updated));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }

        // 2. What does that do to each address? 3. Unless this is a dry run, apply it.
        let now = Timestamp::now();
        let mut listed: Vec<(Timestamp, pb::ReclassifiedEvent)> = Vec::new();
        let mut writes = Vec::new();
        for (address, changed) in by_address {
            let Ok(address) = EmailAddress::parse(&address) else {
                continue;
            };
            let updated: Vec<RecordedEvent> = changed.values().map(|(_, u)| u.clone()).collect();
            let plan = self.address_plan(&tenant, address, changed)?;
            let record = self.store.get_record(&tenant, &plan.address)?;
            let (effect, _) = reclassify_address(
                record.as_ref(),
                &plan.events,
                &plan.before,
                plan.reactivated_at,
                now,
            );
            match effect {
                Effect::None => {}
                Effect::Lifted => response.suppressions_lifted += 1,
                Effect::Suppressed => response.suppressions_added += 1,
                Effect::Repointed => response.suppressions_repointed += 1,
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
                            crate::domain::BounceType::Hard | crate::domain::BounceType::Complaint
                        )
                    })
                    .min_by_key(|e| e.occurred_at)
                    .map(|e| e.event_id.clone()),
                Effect::None => None,
            };
            for e in plan
                .events
                .iter()
                .filter(|e| plan.before.contains_key(&e.event_id))
            {
                response.reclassified += 1;
                let this_effect = if effect_event.as_deref() == Some(e.event_id.as_str()) {
                    effect
                } else {
                    Effect::None
                };
                listed.push((
                    e.occurred_at,
                    pb::ReclassifiedEvent {
                        event_id: e.event_id.clone(),
                        address: e.address.clone(),
                        before: plan
                            .before
                            .get(&e.event_id)
                            .map(convert::proto_classification),
                        after: Some(convert::proto_classification(&e.classification)),
                        effect: proto_effect(this_effect) as i32,
                    },
                ));
            }
            if !req.dry_run {
                let AddressPlan {
                    address,
                    events,
                    before,
                    reactivated_at,
                } = plan;
                writes.push(AddressWrite {
                    tenant: tenant.clone(),
                    address,
                    event: None,
                    reclassified: updated,
                    // Decided again on the record as it is when the write applies.
                    decide: Box::new(move |current| {
                        match reclassify_address(current, &events, &before, reactivated_at, now) {
                            (_, Some(t)) => Decision::Apply {
                                record: t.record,
                                changes: t.changes,
                            },
                            (_, None) => Decision::Unchanged,
                        }
                    }),
                });
            }
        }
        if !writes.is_empty() {
            let runtime = tokio::runtime::Handle::current();
            while !writes.is_empty() {
                let rest = writes.split_off(writes.len().min(WRITE_CHUNK));
                let chunk = std::mem::replace(&mut writes, rest);
                for outcome in runtime.block_on(self.store.write(chunk))? {
                    if let WriteOutcome::Applied { changes, .. } = outcome {
                        observe_changes(&changes);
                    }
                }
            }
        }
        listed.sort_by_key(|(at, e)| (*at, e.event_id.clone()));
        response.changes = listed
            .into_iter()
            .take(max_listed)
            .map(|(_, e)| e)
            .collect();
        tracing::info!(
            examined = response.examined,
            reclassified = response.reclassified,
            lifted = response.suppressions_lifted,
            added = response.suppressions_added,
            dry_run = response.dry_run,
            "reclassified"
        );
        Ok(response)
    }
}

#[tonic::async_trait]
impl SuppressionAdminService for SuppressionApi {
    async fn reclassify(
        &self,
        request: Request<pb::ReclassifyRequest>,
    ) -> Result<Response<pb::ReclassifyResponse>, Status> {
        let req = request.into_inner();
        if let Ok(t) = Tenant::parse(&req.tenant) {
            record_span(&t, 0);
        }
        let api = self.clone();
        Ok(Response::new(
            blocking(move || api.run_reclassify(req)).await?,
        ))
    }
}
