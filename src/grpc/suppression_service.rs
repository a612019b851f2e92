//! `suppression.v1.SuppressionService`: every RPC in one place. Each handler decodes its
//! request into domain values (`convert`), calls one use case of [`crate::app`], and encodes
//! the answer; errors become statuses in `error`.

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::bounce_messages;
use super::convert;
use super::domains;
use super::error::{inbound_error, AppError, FieldViolation};
use super::feed;
use super::forget;
use super::import;
use super::import_suppressions;
use super::monitoring;
use super::paging::{PageTokens, Scope};
use super::proto as pb;
use super::proto::suppression_service_server::SuppressionService;
use super::request::{caller, record_span};
use crate::app::addresses::ManualSuppression;
use crate::app::correction::Replace;
use crate::app::feed::FeedPosition;
use crate::app::lookup::BatchStatus;
use crate::app::App;
use crate::classify::RULES_VERSION;
use crate::domain::{
    parse_smtp_response, BounceReason, BounceType, Label, Note, ReportedOutcome, SmtpEvidence,
    Source, Tenant,
};
use crate::store::{BounceQuery, SuppressionQuery};

/// The suppression service over the use cases. Cheap to clone.
#[derive(Clone)]
pub struct SuppressionApi {
    /// The use cases.
    app: App,
    /// Signs and checks page tokens.
    tokens: PageTokens,
}

impl SuppressionApi {
    /// The service over `app`.
    pub fn new(app: App) -> Self {
        let source = app.clone();
        let tokens = PageTokens::from_source(move || source.token_secret());
        SuppressionApi { app, tokens }
    }

    /// Where a listing starts (the cursor of its page token, checked against the request's
    /// scope) and how many items it takes; records both on the call's span.
    fn page_request(
        &self,
        tenant: &Tenant,
        scope: &Scope,
        token: &str,
        page_size: u32,
    ) -> Result<(Option<Vec<u8>>, usize), AppError> {
        let cursor = self.tokens.check(scope, token)?;
        let limit = self.app.limits.page_size(page_size);
        record_span(tenant, limit);
        Ok((cursor, limit))
    }

    /// The page token of the next page, empty on the last page.
    fn next_page_token(&self, scope: &Scope, next: Option<Vec<u8>>) -> String {
        next.map(|c| self.tokens.issue(scope, &c))
            .unwrap_or_default()
    }
}

/// A field's parse result, its error a violation of `name`.
pub(super) fn field<T, E: ToString>(name: &str, r: Result<T, E>) -> Result<T, AppError> {
    r.map_err(|e| FieldViolation::new(name, e).into())
}

#[tonic::async_trait]
impl SuppressionService for SuppressionApi {
    async fn report_send_result(
        &self,
        request: Request<pb::ReportSendResultRequest>,
    ) -> Result<Response<pb::ReportSendResultResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 1);
        let result = req
            .result
            .ok_or_else(|| AppError::from(FieldViolation::new("result", "is required")))?;
        let report = convert::send_report("result", result, self.app.report.now())
            .map_err(AppError::from)?;
        let given = report.address.as_str().to_string();
        let recorded = self.app.report.report(&caller, tenant, report).await?;
        Ok(Response::new(pb::ReportSendResultResponse {
            classification: Some(convert::proto_classification(&recorded.classification)),
            status: Some(convert::proto_status(recorded.status, given)),
            duplicate: recorded.duplicate,
        }))
    }

    async fn report_send_results(
        &self,
        request: Request<Streaming<pb::ReportSendResultsRequest>>,
    ) -> Result<Response<pb::ReportSendResultsResponse>, Status> {
        let caller = caller(&request);
        let mut stream = request.into_inner();
        let mut rejections = Vec::new();
        let mut index: u64 = 0;
        let mut items_total = 0usize;
        let mut ingest = self.app.report.ingest(caller);
        while let Some(message) = stream.next().await {
            let message = message.map_err(inbound_error)?;
            let n = message.results.len();
            self.app
                .limits
                .check_batch("results", n)
                .map_err(AppError::from)?;
            items_total += n;
            let tenant = match convert::tenant(&message.tenant) {
                Ok(t) => t,
                Err(v) => {
                    for r in &message.results {
                        rejections.push(pb::ItemRejection {
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
            let now = self.app.report.now();
            let mut reports = Vec::with_capacity(n);
            for (i, result) in message.results.into_iter().enumerate() {
                let event_id = result.event_id.clone();
                match convert::send_report(&format!("results[{i}]"), result, now) {
                    Ok(report) => reports.push(report),
                    Err(v) => rejections.push(pb::ItemRejection {
                        index: index + i as u64,
                        event_id,
                        error: v.description,
                        field: v.field,
                    }),
                }
            }
            index += n as u64;
            ingest.push(&tenant, reports).await?;
        }
        let summary = ingest.finish().await?;
        tracing::info!(
            accepted = summary.accepted,
            duplicates = summary.duplicates,
            rejected = rejections.len(),
            "send results ingested"
        );
        Ok(Response::new(pb::ReportSendResultsResponse {
            accepted: summary.accepted,
            duplicates: summary.duplicates,
            newly_suppressed: summary.newly_suppressed,
            rejections,
        }))
    }

    async fn get_suppression_status(
        &self,
        request: Request<pb::GetSuppressionStatusRequest>,
    ) -> Result<Response<pb::GetSuppressionStatusResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 1);
        let address = convert::address("address", &req.address).map_err(AppError::from)?;
        let list = convert::list_id("list_id", &req.list_id).map_err(AppError::from)?;
        let status = self
            .app
            .lookup
            .status(&caller, &tenant, address, &list)
            .await?;
        Ok(Response::new(pb::GetSuppressionStatusResponse {
            status: Some(convert::proto_status(status, req.address)),
        }))
    }

    async fn batch_get_suppression_status(
        &self,
        request: Request<pb::BatchGetSuppressionStatusRequest>,
    ) -> Result<Response<pb::BatchGetSuppressionStatusResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, req.addresses.len());
        let list = convert::list_id("list_id", &req.list_id).map_err(AppError::from)?;
        let statuses = self
            .app
            .lookup
            .statuses(&caller, tenant, req.addresses, list)
            .await?
            .into_iter()
            .map(|(given, status)| match status {
                BatchStatus::Valid(s) => convert::proto_status(s, given),
                BatchStatus::Invalid(e) => convert::invalid_status(&given, &e.to_string()),
            })
            .collect();
        Ok(Response::new(pb::BatchGetSuppressionStatusResponse {
            statuses,
        }))
    }

    type CheckImportStream = import::VerdictStream;

    async fn check_import(
        &self,
        request: Request<Streaming<pb::CheckImportRequest>>,
    ) -> Result<Response<Self::CheckImportStream>, Status> {
        let caller = caller(&request);
        Ok(Response::new(import::check_import(
            self.app.import_guard.clone(),
            caller,
            request.into_inner(),
        )))
    }

    async fn list_bounces(
        &self,
        request: Request<pb::ListBouncesRequest>,
    ) -> Result<Response<pb::ListBouncesResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        let source = field("source", Source::parse(&req.source))?;
        let campaign = field("campaign", Label::optional(&req.campaign))?;
        let mut types = req
            .outcome_types
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let field = format!("outcome_types[{i}]");
                match convert::bounce_type(&field, t)? {
                    BounceType::Unsubscribe => Err(FieldViolation::new(
                        field,
                        "unsubscribes are not bounces: ListSuppressions with reason \
                         BOUNCE_REASON_UNSUBSCRIBED lists them",
                    )),
                    t => Ok(t),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::from)?;
        types.sort_by_key(|t| convert::proto_type(*t) as i32);
        types.dedup();
        let (start, end) = convert::time_range(req.start_time.as_ref(), req.end_time.as_ref())
            .map_err(AppError::from)?;
        let query = BounceQuery {
            source: source.given(),
            types,
            campaign: (!campaign.is_empty()).then_some(campaign),
            start,
            end,
        };
        // The token is bound to the tenant and to every filter, so it cannot be replayed
        // against another listing.
        let type_numbers: Vec<i32> = query
            .types
            .iter()
            .map(|t| convert::proto_type(*t) as i32)
            .collect();
        let scope = Scope::new("ListBounces")
            .with("tenant", &tenant)
            .with_optional("source", query.source.as_deref())
            .with_list("types", &type_numbers)
            .with_optional("campaign", query.campaign.as_deref())
            .with_optional("start", query.start.map(|t| t.micros()))
            .with_optional("end", query.end.map(|t| t.micros()));
        let (cursor, limit) = self.page_request(&tenant, &scope, &req.page_token, req.page_size)?;
        let page = self
            .app
            .addresses
            .bounces(&caller, tenant, query, cursor, limit)
            .await?;
        Ok(Response::new(pb::ListBouncesResponse {
            bounces: page.items.iter().map(convert::proto_recorded).collect(),
            next_page_token: self.next_page_token(&scope, page.next),
        }))
    }

    async fn suppress(
        &self,
        request: Request<pb::SuppressRequest>,
    ) -> Result<Response<pb::SuppressResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 1);
        let address = convert::address("address", &req.address).map_err(AppError::from)?;
        let reason =
            convert::reason("reason", req.reason, BounceReason::Manual).map_err(AppError::from)?;
        let note = field("note", Note::optional(&req.note))?;
        let source = field("source", Source::parse(&req.source))?;
        let expires_at = convert::optional_timestamp("expires_at", req.expires_at.as_ref())
            .map_err(AppError::from)?;
        let list_id = convert::list_id("list_id", &req.list_id).map_err(AppError::from)?;
        let done = self
            .app
            .addresses
            .suppress(
                &caller,
                tenant,
                ManualSuppression {
                    address,
                    reason,
                    source,
                    note,
                    expires_at,
                    list_id,
                },
            )
            .await?;
        Ok(Response::new(pb::SuppressResponse {
            status: Some(convert::proto_status(done.status, req.address)),
            already_suppressed: done.already_suppressed,
        }))
    }

    async fn reactivate(
        &self,
        request: Request<pb::ReactivateRequest>,
    ) -> Result<Response<pb::ReactivateResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 1);
        let address = convert::address("address", &req.address).map_err(AppError::from)?;
        let justification = field("justification", Note::required(&req.justification))?;
        let list_id = convert::list_id("list_id", &req.list_id).map_err(AppError::from)?;
        let done = self
            .app
            .addresses
            .reactivate(&caller, tenant, address, justification, list_id)
            .await?;
        Ok(Response::new(pb::ReactivateResponse {
            status: Some(convert::proto_status(done.status, req.address)),
            lifted: done.lifted.map(convert::proto_suppression),
        }))
    }

    async fn get_address_history(
        &self,
        request: Request<pb::GetAddressHistoryRequest>,
    ) -> Result<Response<pb::GetAddressHistoryResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        let address = convert::address("address", &req.address).map_err(AppError::from)?;
        let scope = Scope::new("GetAddressHistory")
            .with("tenant", &tenant)
            .with("address", &address);
        let (cursor, limit) = self.page_request(&tenant, &scope, &req.page_token, req.page_size)?;
        let page = self
            .app
            .addresses
            .history(&caller, tenant, address.clone(), cursor, limit)
            .await?;
        Ok(Response::new(pb::GetAddressHistoryResponse {
            address: address.as_str().to_string(),
            entries: page.items.iter().map(convert::proto_history).collect(),
            next_page_token: self.next_page_token(&scope, page.next),
        }))
    }

    async fn replace_address(
        &self,
        request: Request<pb::ReplaceAddressRequest>,
    ) -> Result<Response<pb::ReplaceAddressResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 2);
        let old = convert::address("old_address", &req.old_address).map_err(AppError::from)?;
        let new = convert::address("new_address", &req.new_address).map_err(AppError::from)?;
        let evidence = convert::evidence("evidence", req.evidence).map_err(AppError::from)?;
        let note = field("note", Note::optional(&req.note))?;
        let done = self
            .app
            .correction
            .replace(
                &caller,
                tenant,
                Replace {
                    old,
                    new,
                    evidence,
                    confidence: req.confidence,
                    note,
                },
            )
            .await?;
        Ok(Response::new(pb::ReplaceAddressResponse {
            old_status: Some(convert::proto_status(done.old, req.old_address)),
            new_status: Some(convert::proto_status(done.new, req.new_address)),
            already_replaced: done.already_replaced,
        }))
    }

    async fn suggest_corrections(
        &self,
        request: Request<pb::SuggestCorrectionsRequest>,
    ) -> Result<Response<pb::SuggestCorrectionsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 1);
        if req.address.trim().is_empty() {
            return Err(AppError::from(FieldViolation::new("address", "is required")).into());
        }
        if req.address.len() > 1024 {
            return Err(AppError::from(FieldViolation::new(
                "address",
                "is longer than 1024 bytes",
            ))
            .into());
        }
        let given = field("given_name", Label::optional(&req.given_name))?;
        let family = field("family_name", Label::optional(&req.family_name))?;
        let max = match req.max_results {
            0 => 5,
            n => n as usize,
        };
        let found = self
            .app
            .correction
            .suggest(&caller, tenant, req.address, given, family, max)
            .await?;
        Ok(Response::new(pb::SuggestCorrectionsResponse {
            address: found
                .address
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            suggestions: found
                .candidates
                .iter()
                .map(convert::proto_suggestion)
                .collect(),
            domain_pattern: found
                .pattern
                .as_ref()
                .map(|p| p.pattern.name().to_string())
                .unwrap_or_default(),
            domain_pattern_matching: found.pattern.as_ref().map_or(0, |p| p.matching),
            domain_pattern_total: found.pattern.as_ref().map_or(0, |p| p.total),
        }))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        let mut reasons = req
            .reasons
            .iter()
            .enumerate()
            .map(|(i, &r)| convert::reason(&format!("reasons[{i}]"), r, BounceReason::None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::from)?;
        reasons.sort_by_key(|r| convert::proto_reason(*r) as i32);
        reasons.dedup();
        let source = field("source", Source::parse(&req.source))?;
        let (start, end) = convert::time_range(req.start_time.as_ref(), req.end_time.as_ref())
            .map_err(AppError::from)?;
        let query = SuppressionQuery {
            reasons,
            source: source.given(),
            start,
            end,
            needs_enrichment: req.needs_enrichment,
            in_force_at: None,
        };
        let reason_numbers: Vec<i32> = query
            .reasons
            .iter()
            .map(|r| convert::proto_reason(*r) as i32)
            .collect();
        // Version 2 of the token: its cursor starts with the listing's feed position.
        let scope = Scope::new("ListSuppressions.2")
            .with("tenant", &tenant)
            .with_list("reasons", &reason_numbers)
            .with_optional("source", query.source.as_deref())
            .with_optional("start", query.start.map(|t| t.micros()))
            .with_optional("end", query.end.map(|t| t.micros()))
            .with_optional("needs_enrichment", query.needs_enrichment);
        let (cursor, limit) = self.page_request(&tenant, &scope, &req.page_token, req.page_size)?;
        // The feed position of the listing's first page, carried by every page token after it:
        // a follower that lists every page, then watches from there, misses nothing.
        let (feed_position, cursor) = match cursor {
            None => (self.app.feed.head(), None),
            Some(c) if c.len() >= 8 => {
                let (position, rest) = c.split_at(8);
                let position = u64::from_be_bytes(position.try_into().unwrap_or_default());
                (FeedPosition(position), Some(rest.to_vec()))
            }
            Some(_) => return Err(AppError::Store(crate::store::StoreError::BadCursor).into()),
        };
        let page = self
            .app
            .addresses
            .suppressions(&caller, tenant, query, cursor, limit)
            .await?;
        let next = page.next.map(|c| {
            let mut token = feed_position.0.to_be_bytes().to_vec();
            token.extend_from_slice(&c);
            token
        });
        Ok(Response::new(pb::ListSuppressionsResponse {
            suppressions: page
                .items
                .into_iter()
                .map(|s| {
                    let given = s
                        .address
                        .as_ref()
                        .map(|a| a.as_str().to_string())
                        .unwrap_or_default();
                    convert::proto_status(s, given)
                })
                .collect(),
            next_page_token: self.next_page_token(&scope, next),
            feed_cursor: feed::cursor(feed_position),
        }))
    }

    async fn get_source_stats(
        &self,
        request: Request<pb::GetSourceStatsRequest>,
    ) -> Result<Response<pb::GetSourceStatsResponse>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            monitoring::source_stats(&self.app.monitoring, &caller, request.into_inner()).await?,
        ))
    }

    async fn list_source_stats(
        &self,
        request: Request<pb::ListSourceStatsRequest>,
    ) -> Result<Response<pb::ListSourceStatsResponse>, Status> {
        let caller = caller(&request);
        let limits = self.app.limits;
        Ok(Response::new(
            monitoring::ranked_source_stats(
                &self.app.monitoring,
                &caller,
                &self.tokens,
                limits,
                request.into_inner(),
            )
            .await?,
        ))
    }

    type WatchSourceHealthStream = ReceiverStream<Result<pb::WatchSourceHealthResponse, Status>>;

    async fn watch_source_health(
        &self,
        request: Request<pb::WatchSourceHealthRequest>,
    ) -> Result<Response<Self::WatchSourceHealthStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 0);
        let dimension = convert::dimension("dimension", req.dimension).map_err(AppError::from)?;
        let value = field("value", Label::optional(&req.value))?;
        let mut watch = self
            .app
            .monitoring
            .watch(&caller, tenant, dimension, value)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(
            async move {
                loop {
                    let change = tokio::select! {
                        change = watch.next() => change,
                        _ = tx.closed() => return,
                    };
                    let Some(change) = change else { return };
                    let message = monitoring::proto_health_change(&change);
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type WatchSuppressionsStream = feed::ChangeStream;

    async fn watch_suppressions(
        &self,
        request: Request<pb::WatchSuppressionsRequest>,
    ) -> Result<Response<Self::WatchSuppressionsStream>, Status> {
        feed::watch_suppressions(&self.app, request).await
    }

    async fn suppress_domain(
        &self,
        request: Request<pb::SuppressDomainRequest>,
    ) -> Result<Response<pb::SuppressDomainResponse>, Status> {
        domains::suppress_domain(&self.app, request).await
    }

    async fn reactivate_domain(
        &self,
        request: Request<pb::ReactivateDomainRequest>,
    ) -> Result<Response<pb::ReactivateDomainResponse>, Status> {
        domains::reactivate_domain(&self.app, request).await
    }

    async fn set_domain_policy(
        &self,
        request: Request<pb::SetDomainPolicyRequest>,
    ) -> Result<Response<pb::SetDomainPolicyResponse>, Status> {
        domains::set_domain_policy(&self.app, request).await
    }

    async fn get_domain_status(
        &self,
        request: Request<pb::GetDomainStatusRequest>,
    ) -> Result<Response<pb::GetDomainStatusResponse>, Status> {
        domains::get_domain_status(&self.app, request).await
    }

    async fn list_suppressed_domains(
        &self,
        request: Request<pb::ListSuppressedDomainsRequest>,
    ) -> Result<Response<pb::ListSuppressedDomainsResponse>, Status> {
        domains::list_suppressed_domains(&self.app, &self.tokens, request).await
    }

    async fn forget_address(
        &self,
        request: Request<pb::ForgetAddressRequest>,
    ) -> Result<Response<pb::ForgetAddressResponse>, Status> {
        forget::forget_address(&self.app, request).await
    }

    async fn import_suppressions(
        &self,
        request: Request<Streaming<pb::ImportSuppressionsRequest>>,
    ) -> Result<Response<pb::ImportSuppressionsResponse>, Status> {
        import_suppressions::import_suppressions(&self.app, request).await
    }

    async fn parse_bounce_message(
        &self,
        request: Request<pb::ParseBounceMessageRequest>,
    ) -> Result<Response<pb::ParseBounceMessageResponse>, Status> {
        bounce_messages::parse_bounce_message(&self.app, request).await
    }

    async fn report_bounce_message(
        &self,
        request: Request<pb::ReportBounceMessageRequest>,
    ) -> Result<Response<pb::ReportBounceMessageResponse>, Status> {
        bounce_messages::report_bounce_message(&self.app, request).await
    }

    async fn classify_smtp_response(
        &self,
        request: Request<pb::ClassifySmtpResponseRequest>,
    ) -> Result<Response<pb::ClassifySmtpResponseResponse>, Status> {
        let req = request.into_inner();
        let text = field("smtp_response", parse_smtp_response(&req.smtp_response))?;
        let reported = match pb::Outcome::try_from(req.reported_outcome) {
            Ok(pb::Outcome::Unspecified) => ReportedOutcome::Bounce,
            _ => convert::outcome("reported_outcome", req.reported_outcome)
                .map_err(AppError::from)?,
        };
        let provider = field("provider", Label::optional(&req.provider))?;
        let status = req
            .enhanced_status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        if status.is_some_and(|s| s.len() > 16) {
            return Err(AppError::from(FieldViolation::new(
                "enhanced_status",
                "is longer than 16 characters",
            ))
            .into());
        }
        let c = self.app.report.classify(&SmtpEvidence {
            reported,
            smtp_response: &text,
            enhanced_status: status,
            provider: &provider,
        });
        Ok(Response::new(pb::ClassifySmtpResponseResponse {
            classification: Some(convert::proto_classification(&c)),
            rules_version: RULES_VERSION,
        }))
    }
}
