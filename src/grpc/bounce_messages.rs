//! `ParseBounceMessage` and `ReportBounceMessage`: raw bounce messages in, what each recipient's
//! result was out (and, for the second, recorded).

use tonic::{Request, Response, Status};

use super::convert;
use super::error::{AppError, FieldViolation};
use super::proto as pb;
use super::request::{caller, record_span};
use crate::app::bounce_messages::BounceLabels;
use crate::app::App;
use crate::bounce::{Action, BounceMessageKind, ParsedBounce, ParsedMessage};
use crate::classify::RULES_VERSION;
use crate::domain::{Campaign, Label, Segment, Source};

/// The provider hint: a short label.
fn provider(raw: &str) -> Result<String, AppError> {
    Label::optional(raw).map_err(|e| AppError::from(FieldViolation::new("provider", e)))
}

/// Reads the message and answers what it says; stores nothing.
pub async fn parse_bounce_message(
    app: &App,
    request: Request<pb::ParseBounceMessageRequest>,
) -> Result<Response<pb::ParseBounceMessageResponse>, Status> {
    let req = request.into_inner();
    let provider = provider(&req.provider)?;
    let parsed = app.bounces.parse(req.raw_message, provider).await?;
    Ok(Response::new(bounce_response(&parsed, RULES_VERSION)))
}

/// What ParseBounceMessage answers for a parsed message (also printed by `parse-bounce`).
pub fn bounce_response(
    parsed: &ParsedMessage,
    rules_version: u32,
) -> pb::ParseBounceMessageResponse {
    pb::ParseBounceMessageResponse {
        kind: proto_kind(parsed.kind) as i32,
        bounces: parsed.bounces.iter().map(proto_bounce).collect(),
        message_id: parsed.message_id.clone(),
        format: parsed.format.clone(),
        rules_version,
    }
}

/// Reads the message and records each failed, delayed or complained-about recipient's result.
pub async fn report_bounce_message(
    app: &App,
    request: Request<pb::ReportBounceMessageRequest>,
) -> Result<Response<pb::ReportBounceMessageResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 1);
    let violation = |name: &'static str| move |e| AppError::from(FieldViolation::new(name, e));
    let labels = BounceLabels {
        source: Source::parse(&req.source).map_err(violation("source"))?,
        campaign: Campaign::parse(&req.campaign).map_err(violation("campaign"))?,
        segment: Segment::parse(&req.segment).map_err(violation("segment"))?,
        provider: provider(&req.provider)?,
    };
    let done = app
        .bounces
        .report(&caller, tenant, req.raw_message, labels)
        .await?;
    Ok(Response::new(pb::ReportBounceMessageResponse {
        kind: proto_kind(done.kind) as i32,
        results: done
            .results
            .into_iter()
            .map(|r| {
                let given = r.bounce.recipient.clone();
                pb::ReportedBounce {
                    bounce: Some(proto_bounce(&r.bounce)),
                    event_id: r.event_id,
                    recorded: r.recorded.is_some(),
                    duplicate: r.recorded.as_ref().is_some_and(|d| d.duplicate),
                    status: r.recorded.map(|d| convert::proto_status(d.status, given)),
                }
            })
            .collect(),
        message_id: done.message_id,
        format: done.format,
    }))
}

fn proto_kind(kind: BounceMessageKind) -> pb::BounceMessageKind {
    match kind {
        BounceMessageKind::DeliveryStatus => pb::BounceMessageKind::DeliveryStatus,
        BounceMessageKind::FeedbackReport => pb::BounceMessageKind::FeedbackReport,
        BounceMessageKind::AutoReply => pb::BounceMessageKind::AutoReply,
        BounceMessageKind::NotABounce => pb::BounceMessageKind::NotABounce,
    }
}

fn proto_action(action: Action) -> pb::BounceAction {
    match action {
        Action::Failed => pb::BounceAction::Failed,
        Action::Delayed => pb::BounceAction::Delayed,
        Action::Delivered => pb::BounceAction::Delivered,
        Action::Relayed => pb::BounceAction::Relayed,
        Action::Expanded => pb::BounceAction::Expanded,
    }
}

fn proto_bounce(b: &ParsedBounce) -> pb::ParsedBounce {
    pb::ParsedBounce {
        recipient: b.recipient.clone(),
        action: proto_action(b.action) as i32,
        enhanced_status: b.status.clone().unwrap_or_default(),
        diagnostic: b.diagnostic.clone(),
        reporting_mta: b.reporting_mta.clone(),
        remote_mta: b.remote_mta.clone(),
        original_message_id: b.original_message_id.clone(),
        original_headers: b
            .original_headers
            .iter()
            .map(|(name, value)| pb::MessageHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        classification: Some(convert::proto_classification(&b.classification)),
        feedback_type: b.feedback_type.clone(),
    }
}
