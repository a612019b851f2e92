//! `suppression.v1.SuppressionService`: the RPC handlers.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::error::{inbound_error, FieldViolation, ServiceError};
use super::import;
use super::paging::PageTokens;
use super::proto as pb;
use super::proto::suppression_service_server::SuppressionService;
use crate::classify::{Classifier, RULES_VERSION};
use crate::domain::{
    parse_label, parse_note, BounceReason, Classification, EmailAddress, RecordedEvent,
    ReportedOutcome, SendReport, SmtpEvidence, Tenant, Timestamp,
};
use crate::monitor::HealthMonitor;
use crate::policy::health::HealthThresholds;
use crate::policy::EscalationPolicy;
use crate::store::{
    AddressWrite, BounceQuery, Decision, StoreError, SuppressionStore, WriteOutcome,
};

/// Metadata key naming the caller, recorded as the actor of operator actions.
pub const CALLER_ID_HEADER: &str = "x-caller-id";
/// Actor recorded when a call names no caller.
pub const ANONYMOUS: &str = "anonymous";

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most addresses in a batch call, results or contacts in one stream message.
    pub max_batch: usize,
    /// Default page size of listings.
    pub default_page_size: usize,
    /// Largest page size of listings (larger requests are reduced to it).
    pub max_page_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 10_000,
            default_page_size: 100,
            max_page_size: 1_000,
        }
    }
}

/// The service's tunable rules.
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    /// Soft-bounce escalation.
    pub policy: EscalationPolicy,
    /// Per-request limits.
    pub limits: Limits,
    /// Health-verdict thresholds of sources, campaigns and segments.
    pub health: HealthThresholds,
    /// Confidence a replacement needs, and a suggestion needs to be shown in import verdicts.
    pub correction_threshold: f32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            policy: EscalationPolicy::default(),
            limits: Limits::default(),
            health: HealthThresholds::default(),
            correction_threshold: 0.9,
        }
    }
}

/// Shared state of the suppression service. Cheap to clone.
#[derive(Clone)]
pub struct SuppressionApi {
    /// Where everything is kept.
    pub(super) store: Arc<dyn SuppressionStore>,
    /// Decides what each send result was.
    pub(super) classifier: Arc<Classifier>,
    /// Decides what a result does to an address.
    pub(super) policy: EscalationPolicy,
    /// Per-request limits.
    pub(super) limits: Limits,
    /// Confidence a replacement needs.
    pub(super) correction_threshold: f32,
    /// Signs and checks page tokens.
    pub(super) tokens: PageTokens,
    /// Watches bounce rates and announces verdict changes.
    pub(super) monitor: Arc<HealthMonitor>,
}

impl SuppressionApi {
    /// The service over `store`. Starts the health monitor on the current runtime.
    pub fn new(
        store: Arc<dyn SuppressionStore>,
        classifier: Arc<Classifier>,
        settings: ApiSettings,
    ) -> Self {
        let tokens = PageTokens::new(store.token_secret());
        let monitor = HealthMonitor::spawn(store.clone(), settings.health);
        SuppressionApi {
            store,
            classifier,
            policy: settings.policy,
            limits: settings.limits,
            correction_threshold: settings.correction_threshold,
            tokens,
            monitor,
        }
    }

    /// Stops background work (the health watcher) so the store can close.
    pub async fn shutdown(&self) {
        self.monitor.stop().await;
    }

    pub(super) fn check_batch(&self, field: &str, n: usize) -> Result<(), ServiceError> {
        if n > self.limits.max_batch {
            return Err(FieldViolation::new(
                field,
                format!(
                    "has {n} items; at most {} are allowed per message",
                    self.limits.max_batch
                ),
            )
            .into());
        }
        Ok(())
    }

    pub(super) fn page_size(&self, requested: u32) -> usize {
        match requested as usize {
            0 => self.limits.default_page_size,
            n => n.min(self.limits.max_page_size),
        }
    }

    /// Classifies a validated report and builds the store write that records it.
    fn event_write(
        &self,
        tenant: &Tenant,
        report: SendReport,
        now: Timestamp,
    ) -> (AddressWrite, ResultMeta) {
        let classification = self.classifier.classify(&SmtpEvidence {
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
        let policy = self.policy;
        let for_policy = event.clone();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address,
            event: Some(event),
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                let t = policy.apply_event(current, &for_policy);
                Decision::Apply {
                    record: t.record,
                    changes: t.changes,
                }
            }),
        };
        (write, meta)
    }
}

/// What metrics need to know of a send result besides its write outcome.
struct ResultMeta {
    classification: Classification,
    reported: ReportedOutcome,
    provider: String,
}

/// How many messages of one `ReportSendResults` stream may wait for their commit while the next
/// ones are read and queued.
const MAX_QUEUED_MESSAGES: usize = 4;

/// Adds the outcomes of one committed message to its stream's summary.
fn tally(
    summary: &mut pb::ReportSendResultsResponse,
    outcomes: Result<Vec<WriteOutcome>, StoreError>,
    metas: &[ResultMeta],
) -> Result<(), Status> {
    let outcomes = outcomes.map_err(ServiceError::from)?;
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
            WriteOutcome::Refused { reason, .. } => {
                return Err(ServiceError::Internal(reason).into());
            }
        }
    }
    Ok(())
}

/// Counts a recorded send result: by type and reason, disagreements with the reporter, and
/// the suppressions it caused.
fn observe(outcome: &WriteOutcome, meta: &ResultMeta) {
    let changes = match outcome {
        WriteOutcome::Applied { changes, .. } => changes.as_slice(),
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
    observe_changes(changes);
}

/// Counts the suppressions among state changes.
pub(super) fn observe_changes(changes: &[crate::domain::StateChange]) {
    use crate::domain::StateChangeKind as K;
    for ch in changes {
        if matches!(
            ch.kind,
            K::Suppressed | K::Escalated | K::ManuallySuppressed
        ) {
            metrics::counter!("suppressd_suppressions_total", "reason" => format!("{:?}", ch.reason)).increment(1);
        }
    }
}

pub(super) fn caller<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(CALLER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_label(v, true).ok())
        .unwrap_or_else(|| ANONYMOUS.to_string())
}

pub(super) fn record_span(tenant: &Tenant, items: usize) {
    let span = tracing::Span::current();
    span.record("tenant", tenant.as_str());
    span.record("items", items);
}

/// Runs blocking store work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("blocking task failed: {e}")))?
}

#[tonic::async_trait]
impl SuppressionService for SuppressionApi {
    async fn report_send_result(
        &self,
        request: Request<pb::ReportSendResultRequest>,
    ) -> Result<Response<pb::ReportSendResultResponse>, Status> {
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        record_span(&tenant, 1);
        let result = req
            .result
            .ok_or_else(|| ServiceError::from(FieldViolation::new("result", "is required")))?;
        let now = Timestamp::now();
        let report = convert::send_report("result", result, now).map_err(ServiceError::from)?;
        let address = report.address.clone();
        let (write, meta) = self.event_write(&tenant, report, now);
        let outcome = self.single_write(write).await?;
        observe(&outcome, &meta);
        let classification = meta.classification;
        let (classification, record, duplicate) = match outcome {
            WriteOutcome::Applied { record, .. } => (classification, Some(record), false),
            WriteOutcome::Unchanged { record } => (classification, record, false),
            WriteOutcome::Duplicate { original, record } => (original.classification, record, true),
            other => return Err(unexpected(other).into()),
        };
        let status = convert::address_status(
            &address,
            address.as_str(),
            record.as_ref(),
            &self.policy,
            now,
        );
        Ok(Response::new(pb::ReportSendResultResponse {
            classification: Some(convert::proto_classification(&classification)),
            status: Some(status),
            duplicate,
        }))
    }

    type CheckImportStream = import::VerdictStream;
    type WatchSourceHealthStream = ReceiverStream<Result<pb::WatchSourceHealthResponse, Status>>;

    async fn replace_address(
        &self,
        request: Request<pb::ReplaceAddressRequest>,
    ) -> Result<Response<pb::ReplaceAddressResponse>, Status> {
        let actor = caller(&request);
        Ok(Response::new(
            self.replace(actor, request.into_inner()).await?,
        ))
    }

    async fn suggest_corrections(
        &self,
        request: Request<pb::SuggestCorrectionsRequest>,
    ) -> Result<Response<pb::SuggestCorrectionsResponse>, Status> {
        Ok(Response::new(self.suggest(request.into_inner()).await?))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        Ok(Response::new(
            self.suppressions_page(request.into_inner()).await?,
        ))
    }

    async fn get_source_stats(
        &self,
        request: Request<pb::GetSourceStatsRequest>,
    ) -> Result<Response<pb::GetSourceStatsResponse>, Status> {
        Ok(Response::new(
            self.source_stats(request.into_inner()).await?,
        ))
    }

    async fn list_source_stats(
        &self,
        request: Request<pb::ListSourceStatsRequest>,
    ) -> Result<Response<pb::ListSourceStatsResponse>, Status> {
        Ok(Response::new(
            self.ranked_source_stats(request.into_inner()).await?,
        ))
    }

    async fn classify_smtp_response(
        &self,
        request: Request<pb::ClassifySmtpResponseRequest>,
    ) -> Result<Response<pb::ClassifySmtpResponseResponse>, Status> {
        Ok(Response::new(self.classify_one(request.into_inner())?))
    }

    async fn watch_source_health(
        &self,
        request: Request<pb::WatchSourceHealthRequest>,
    ) -> Result<Response<Self::WatchSourceHealthStream>, Status> {
        Ok(Response::new(self.watch_health(request.into_inner())?))
    }

    async fn report_send_results(
        &self,
        request: Request<Streaming<pb::ReportSendResultsRequest>>,
    ) -> Result<Response<pb::ReportSendResultsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut summary = pb::ReportSendResultsResponse::default();
        let mut index: u64 = 0;
        let mut items_total = 0usize;
        let mut in_flight = VecDeque::new();
        while let Some(message) = stream.next().await {
            let message = message.map_err(inbound_error)?;
            let n = message.results.len();
            self.check_batch("results", n)?;
            items_total += n;
            let now = Timestamp::now();
            let tenant = match convert::tenant(&message.tenant) {
                Ok(t) => t,
                Err(v) => {
                    for r in &message.results {
                        summary.rejections.push(pb::ItemRejection {
                            index,
                            event_id: r.event_id.clone(),
                            error: v.description.clone(),
                            field: v.field.clone(),
                        });
                        index += 1;
                    }
                    continue;
                }
            };
            record_span(&tenant, items_total);
            let mut writes = Vec::with_capacity(n);
            let mut metas = Vec::with_capacity(n);
            for (i, result) in message.results.into_iter().enumerate() {
                let event_id = result.event_id.clone();
                match convert::send_report(&format!("results[{i}]"), result, now) {
                    Ok(report) => {
                        let (write, meta) = self.event_write(&tenant, report, now);
                        writes.push(write);
                        metas.push(meta);
                    }
                    Err(v) => summary.rejections.push(pb::ItemRejection {
                        index: index + i as u64,
                        event_id,
                        error: v.description,
                        field: v.field,
                    }),
                }
            }
            index += n as u64;
            // queued in message order; the next message is read and queued while this one
            // is committed, so the writer's next group is waiting when it finishes
            let outcomes = self
                .store
                .submit(writes)
                .await
                .map_err(ServiceError::from)?;
            in_flight.push_back((outcomes, metas));
            if in_flight.len() > MAX_QUEUED_MESSAGES {
                if let Some((outcomes, metas)) = in_flight.pop_front() {
                    tally(&mut summary, outcomes.await, &metas)?;
                }
            }
        }
        while let Some((outcomes, metas)) = in_flight.pop_front() {
            tally(&mut summary, outcomes.await, &metas)?;
        }
        tracing::info!(
            accepted = summary.accepted,
            duplicates = summary.duplicates,
            rejected = summary.rejections.len(),
            "send results ingested"
        );
        Ok(Response::new(summary))
    }

    async fn get_suppression_status(
        &self,
        request: Request<pb::GetSuppressionStatusRequest>,
    ) -> Result<Response<pb::GetSuppressionStatusResponse>, Status> {
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        record_span(&tenant, 1);
        let address = convert::address("address", &req.address).map_err(ServiceError::from)?;
        let record = self
            .store
            .get_record(&tenant, &address)
            .map_err(ServiceError::from)?;
        let status = convert::address_status(
            &address,
            &req.address,
            record.as_ref(),
            &self.policy,
            Timestamp::now(),
        );
        Ok(Response::new(pb::GetSuppressionStatusResponse {
            status: Some(status),
        }))
    }

    async fn batch_get_suppression_status(
        &self,
        request: Request<pb::BatchGetSuppressionStatusRequest>,
    ) -> Result<Response<pb::BatchGetSuppressionStatusResponse>, Status> {
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        record_span(&tenant, req.addresses.len());
        self.check_batch("addresses", req.addresses.len())?;
        let store = self.store.clone();
        let policy = self.policy;
        let statuses = blocking(move || {
            let now = Timestamp::now();
            let mut out = Vec::with_capacity(req.addresses.len());
            for given in &req.addresses {
                match EmailAddress::parse(given) {
                    Ok(address) => {
                        let record = store.get_record(&tenant, &address)?;
                        out.push(convert::address_status(
                            &address,
                            given,
                            record.as_ref(),
                            &policy,
                            now,
                        ));
                    }
                    Err(e) => out.push(convert::invalid_status(given, &e.to_string())),
                }
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::BatchGetSuppressionStatusResponse {
            statuses,
        }))
    }

    async fn check_import(
        &self,
        request: Request<Streaming<pb::CheckImportRequest>>,
    ) -> Result<Response<Self::CheckImportStream>, Status> {
        Ok(Response::new(import::check_import(
            self.clone(),
            request.into_inner(),
        )))
    }

    async fn list_bounces(
        &self,
        request: Request<pb::ListBouncesRequest>,
    ) -> Result<Response<pb::ListBouncesResponse>, Status> {
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        let source = parse_label(&req.source, false)
            .map_err(|e| ServiceError::from(FieldViolation::new("source", e)))?;
        let campaign = parse_label(&req.campaign, false)
            .map_err(|e| ServiceError::from(FieldViolation::new("campaign", e)))?;
        let mut types = req
            .outcome_types
            .iter()
            .enumerate()
            .map(|(i, &t)| convert::bounce_type(&format!("outcome_types[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServiceError::from)?;
        types.sort_by_key(|t| convert::proto_type(*t) as i32);
        types.dedup();
        let (start, end) = convert::time_range(req.start_time.as_ref(), req.end_time.as_ref())
            .map_err(ServiceError::from)?;
        let query = BounceQuery {
            source: (!source.is_empty()).then_some(source),
            types,
            campaign: (!campaign.is_empty()).then_some(campaign),
            start,
            end,
        };
        // The token is bound to the tenant and to every filter, so it cannot be replayed
        // against another listing.
        let scope = format!("ListBounces|{tenant}|{query:?}");
        let cursor = self
            .tokens
            .check(&scope, &req.page_token)
            .map_err(ServiceError::from)?;
        let limit = self.page_size(req.page_size);
        record_span(&tenant, limit);
        let store = self.store.clone();
        let page =
            blocking(move || Ok(store.list_bounces(&tenant, &query, cursor.as_deref(), limit)?))
                .await?;
        Ok(Response::new(pb::ListBouncesResponse {
            bounces: page.items.iter().map(convert::proto_recorded).collect(),
            next_page_token: page
                .next
                .map(|c| self.tokens.issue(&scope, &c))
                .unwrap_or_default(),
        }))
    }

    async fn suppress(
        &self,
        request: Request<pb::SuppressRequest>,
    ) -> Result<Response<pb::SuppressResponse>, Status> {
        let actor = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        record_span(&tenant, 1);
        let address = convert::address("address", &req.address).map_err(ServiceError::from)?;
        let reason = convert::reason("reason", req.reason, BounceReason::Manual)
            .map_err(ServiceError::from)?;
        let note = parse_note(&req.note, false)
            .map_err(|e| ServiceError::from(FieldViolation::new("note", e)))?;
        let source = parse_label(&req.source, false)
            .map_err(|e| ServiceError::from(FieldViolation::new("source", e)))?;
        let source = if source.is_empty() {
            "manual".to_string()
        } else {
            source
        };
        let policy = self.policy;
        let now = Timestamp::now();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                match policy.suppress_manually(current, reason, &source, &note, &actor, now) {
                    Some(t) => Decision::Apply {
                        record: t.record,
                        changes: t.changes,
                    },
                    None => Decision::Unchanged,
                }
            }),
        };
        let outcome = self.single_write(write).await?;
        let (record, already) = match outcome {
            WriteOutcome::Applied {
                record, changes, ..
            } => {
                observe_changes(&changes);
                (Some(record), false)
            }
            WriteOutcome::Unchanged { record } => (record, true),
            other => return Err(unexpected(other).into()),
        };
        Ok(Response::new(pb::SuppressResponse {
            status: Some(convert::address_status(
                &address,
                &req.address,
                record.as_ref(),
                &self.policy,
                now,
            )),
            already_suppressed: already,
        }))
    }

    async fn reactivate(
        &self,
        request: Request<pb::ReactivateRequest>,
    ) -> Result<Response<pb::ReactivateResponse>, Status> {
        let actor = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        record_span(&tenant, 1);
        let address = convert::address("address", &req.address).map_err(ServiceError::from)?;
        let justification = parse_note(&req.justification, true)
            .map_err(|e| ServiceError::from(FieldViolation::new("justification", e)))?;
        let policy = self.policy;
        let now = Timestamp::now();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                match policy.reactivate(current, &actor, &justification, now) {
                    Ok((t, _lifted)) => Decision::Apply {
                        record: t.record,
                        changes: t.changes,
                    },
                    Err(e) => Decision::Refuse(e.to_string()),
                }
            }),
        };
        match self.single_write(write).await? {
            WriteOutcome::Applied {
                previous, record, ..
            } => {
                let lifted = previous.and_then(|p| p.suppression);
                Ok(Response::new(pb::ReactivateResponse {
                    status: Some(convert::address_status(
                        &address,
                        &req.address,
                        Some(&record),
                        &self.policy,
                        now,
                    )),
                    lifted: lifted.as_ref().map(convert::proto_suppression),
                }))
            }
            WriteOutcome::Refused { .. } => Err(ServiceError::NotFound(format!(
                "{} is not suppressed for tenant {tenant}",
                address
            ))
            .into()),
            other => Err(unexpected(other).into()),
        }
    }

    async fn get_address_history(
        &self,
        request: Request<pb::GetAddressHistoryRequest>,
    ) -> Result<Response<pb::GetAddressHistoryResponse>, Status> {
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(ServiceError::from)?;
        let address = convert::address("address", &req.address).map_err(ServiceError::from)?;
        let scope = format!("GetAddressHistory|{tenant}|{address}");
        let cursor = self
            .tokens
            .check(&scope, &req.page_token)
            .map_err(ServiceError::from)?;
        let limit = self.page_size(req.page_size);
        record_span(&tenant, limit);
        let store = self.store.clone();
        let addr = address.clone();
        let page =
            blocking(move || Ok(store.history(&tenant, &addr, cursor.as_deref(), limit)?)).await?;
        Ok(Response::new(pb::GetAddressHistoryResponse {
            address: address.as_str().to_string(),
            entries: page.items.iter().map(convert::proto_history).collect(),
            next_page_token: page
                .next
                .map(|c| self.tokens.issue(&scope, &c))
                .unwrap_or_default(),
        }))
    }
}

pub(super) fn unexpected(outcome: WriteOutcome) -> ServiceError {
    ServiceError::Internal(format!("unexpected store outcome: {outcome:?}"))
}

impl SuppressionApi {
    async fn single_write(&self, write: AddressWrite) -> Result<WriteOutcome, ServiceError> {
        self.store
            .write(vec![write])
            .await?
            .pop()
            .ok_or_else(|| ServiceError::Internal("store returned no outcome".into()))
    }
}
