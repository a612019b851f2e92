//! Proto <-> domain conversion. Validation of wire input happens here, at the edge, and yields
//! field-named violations.

use super::proto as pb;
use crate::app::domains::DomainStatus;
use crate::app::{AddressStatus, FieldViolation};
use crate::domain::{
    parse_smtp_response, AcceptAllOrigin, BounceReason, BounceType, Campaign, ChangeKind,
    Classification, Dimension, DomainSuppression, EmailAddress, EvidenceKind, HistoryEntry, Label,
    ListChange, ListId, MailDomain, OutcomeCounts, RecordedEvent, ReportedOutcome, Segment,
    SendReport, Source, StateChange, StateChangeKind, Suppression, Tenant, Timestamp,
};
use crate::monitor::WindowCounts;
use crate::policy::health::{Health, HealthVerdict};
use crate::suggest::{self, Suggestion};

/// Parses the tenant field.
pub fn tenant(raw: &str) -> Result<Tenant, FieldViolation> {
    Tenant::parse(raw).map_err(|e| FieldViolation::new("tenant", e))
}

/// Parses an address field.
pub fn address(field: &str, raw: &str) -> Result<EmailAddress, FieldViolation> {
    EmailAddress::parse(raw).map_err(|e| FieldViolation::new(field, e))
}

/// Parses a `list_id` field: a label, empty meaning no list.
pub fn list_id(field: &str, raw: &str) -> Result<ListId, FieldViolation> {
    ListId::parse(raw).map_err(|e| FieldViolation::new(field, e))
}

/// Parses a domain field.
pub fn mail_domain(field: &str, raw: &str) -> Result<MailDomain, FieldViolation> {
    MailDomain::parse(raw).map_err(|e| FieldViolation::new(field, e))
}

/// Proto timestamp -> domain.
pub fn timestamp(ts: &prost_types::Timestamp) -> Timestamp {
    Timestamp::from_parts(ts.seconds, ts.nanos)
}

/// Domain timestamp -> proto.
pub fn proto_timestamp(ts: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = ts.to_parts();
    prost_types::Timestamp { seconds, nanos }
}

/// Validates a timestamp field: nanos in range, within years 0001..9999 as protobuf requires.
fn checked_timestamp(
    field: &str,
    ts: &prost_types::Timestamp,
) -> Result<Timestamp, FieldViolation> {
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(0..1_000_000_000).contains(&ts.nanos) || ts.seconds < MIN || ts.seconds > MAX {
        return Err(FieldViolation::new(field, "is not a valid timestamp"));
    }
    Ok(timestamp(ts))
}

/// Optional timestamp field.
pub fn optional_timestamp(
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Result<Option<Timestamp>, FieldViolation> {
    ts.map(|t| checked_timestamp(field, t)).transpose()
}

/// The `start_time`/`end_time` pair of a request: each optional, and when both are given the
/// end must be after the start.
pub fn time_range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Result<(Option<Timestamp>, Option<Timestamp>), FieldViolation> {
    let start = optional_timestamp("start_time", start)?;
    let end = optional_timestamp("end_time", end)?;
    if let (Some(s), Some(e)) = (start, end) {
        if s >= e {
            return Err(FieldViolation::new("end_time", "must be after start_time"));
        }
    }
    Ok((start, end))
}

/// Reporter label from the wire.
pub fn outcome(field: &str, raw: i32) -> Result<ReportedOutcome, FieldViolation> {
    match pb::Outcome::try_from(raw) {
        Ok(pb::Outcome::Delivered) => Ok(ReportedOutcome::Delivered),
        Ok(pb::Outcome::HardBounce) => Ok(ReportedOutcome::HardBounce),
        Ok(pb::Outcome::SoftBounce) => Ok(ReportedOutcome::SoftBounce),
        Ok(pb::Outcome::Block) => Ok(ReportedOutcome::Block),
        Ok(pb::Outcome::Complaint) => Ok(ReportedOutcome::Complaint),
        Ok(pb::Outcome::Bounce) => Ok(ReportedOutcome::Bounce),
        Ok(pb::Outcome::Unsubscribe) => Ok(ReportedOutcome::Unsubscribe),
        Ok(pb::Outcome::Unspecified) => Err(FieldViolation::new(field, "is required")),
        Err(_) => Err(FieldViolation::new(field, format!("unknown value {raw}"))),
    }
}

/// Domain label -> wire.
pub fn proto_outcome(o: ReportedOutcome) -> pb::Outcome {
    match o {
        ReportedOutcome::Delivered => pb::Outcome::Delivered,
        ReportedOutcome::HardBounce => pb::Outcome::HardBounce,
        ReportedOutcome::SoftBounce => pb::Outcome::SoftBounce,
        ReportedOutcome::Block => pb::Outcome::Block,
        ReportedOutcome::Complaint => pb::Outcome::Complaint,
        ReportedOutcome::Bounce => pb::Outcome::Bounce,
        ReportedOutcome::Unsubscribe => pb::Outcome::Unsubscribe,
    }
}

/// Domain type -> wire.
pub fn proto_type(t: BounceType) -> pb::OutcomeType {
    match t {
        BounceType::Hard => pb::OutcomeType::Hard,
        BounceType::Soft => pb::OutcomeType::Soft,
        BounceType::Block => pb::OutcomeType::Block,
        BounceType::Complaint => pb::OutcomeType::Complaint,
        BounceType::Delivered => pb::OutcomeType::Delivered,
        BounceType::Unsubscribe => pb::OutcomeType::Unsubscribe,
    }
}

/// Outcome type from the wire.
pub fn bounce_type(field: &str, raw: i32) -> Result<BounceType, FieldViolation> {
    match pb::OutcomeType::try_from(raw) {
        Ok(pb::OutcomeType::Hard) => Ok(BounceType::Hard),
        Ok(pb::OutcomeType::Soft) => Ok(BounceType::Soft),
        Ok(pb::OutcomeType::Block) => Ok(BounceType::Block),
        Ok(pb::OutcomeType::Complaint) => Ok(BounceType::Complaint),
        Ok(pb::OutcomeType::Delivered) => Ok(BounceType::Delivered),
        Ok(pb::OutcomeType::Unsubscribe) => Ok(BounceType::Unsubscribe),
        Ok(pb::OutcomeType::Unspecified) => {
            Err(FieldViolation::new(field, "must not be unspecified"))
        }
        Err(_) => Err(FieldViolation::new(field, format!("unknown value {raw}"))),
    }
}

/// Domain reason -> wire.
pub fn proto_reason(r: BounceReason) -> pb::BounceReason {
    use pb::BounceReason as P;
    match r {
        BounceReason::None => P::Unspecified,
        BounceReason::MailboxNotFound => P::MailboxNotFound,
        BounceReason::DomainNotFound => P::DomainNotFound,
        BounceReason::InvalidAddress => P::InvalidAddress,
        BounceReason::MailboxDisabled => P::MailboxDisabled,
        BounceReason::RecipientRejected => P::RecipientRejected,
        BounceReason::MailboxFull => P::MailboxFull,
        BounceReason::MessageTooLarge => P::MessageTooLarge,
        BounceReason::RateLimited => P::RateLimited,
        BounceReason::TemporaryFailure => P::TemporaryFailure,
        BounceReason::SenderBlocked => P::SenderBlocked,
        BounceReason::ContentRejected => P::ContentRejected,
        BounceReason::AuthenticationFailed => P::AuthenticationFailed,
        BounceReason::Complaint => P::Complaint,
        BounceReason::Manual => P::Manual,
        BounceReason::RepeatedSoftBounce => P::RepeatedSoftBounce,
        BounceReason::Unknown => P::Unknown,
        BounceReason::Unsubscribed => P::Unsubscribed,
    }
}

/// Reason from the wire; `default` when unspecified.
pub fn reason(
    field: &str,
    raw: i32,
    default: BounceReason,
) -> Result<BounceReason, FieldViolation> {
    use pb::BounceReason as P;
    let p =
        P::try_from(raw).map_err(|_| FieldViolation::new(field, format!("unknown value {raw}")))?;
    Ok(match p {
        P::Unspecified => default,
        P::MailboxNotFound => BounceReason::MailboxNotFound,
        P::DomainNotFound => BounceReason::DomainNotFound,
        P::InvalidAddress => BounceReason::InvalidAddress,
        P::MailboxDisabled => BounceReason::MailboxDisabled,
        P::RecipientRejected => BounceReason::RecipientRejected,
        P::MailboxFull => BounceReason::MailboxFull,
        P::MessageTooLarge => BounceReason::MessageTooLarge,
        P::RateLimited => BounceReason::RateLimited,
        P::TemporaryFailure => BounceReason::TemporaryFailure,
        P::SenderBlocked => BounceReason::SenderBlocked,
        P::ContentRejected => BounceReason::ContentRejected,
        P::AuthenticationFailed => BounceReason::AuthenticationFailed,
        P::Complaint => BounceReason::Complaint,
        P::Manual => BounceReason::Manual,
        P::RepeatedSoftBounce => BounceReason::RepeatedSoftBounce,
        P::Unknown => BounceReason::Unknown,
        P::Unsubscribed => BounceReason::Unsubscribed,
    })
}

/// Validates one send result; `prefix` names it in errors (`result`, `results[3]`).
pub fn send_report(
    prefix: &str,
    r: pb::SendResult,
    now: Timestamp,
) -> Result<SendReport, FieldViolation> {
    let f = |name: &str| format!("{prefix}.{name}");
    let event_id =
        Label::required(&r.event_id).map_err(|e| FieldViolation::new(f("event_id"), e))?;
    let address = address(&f("address"), &r.address)?;
    let outcome = outcome(&f("outcome"), r.outcome)?;
    let smtp_response = parse_smtp_response(&r.smtp_response)
        .map_err(|e| FieldViolation::new(f("smtp_response"), e))?;
    let enhanced_status = match r.enhanced_status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) if is_enhanced_status(s) => Some(s.to_string()),
        Some(_) => {
            return Err(FieldViolation::new(
                f("enhanced_status"),
                "must look like class.subject.detail, e.g. 5.1.1",
            ))
        }
    };
    let violation = |name: &str| {
        let field = f(name);
        move |e| FieldViolation::new(field, e)
    };
    let occurred_at = optional_timestamp(&f("occurred_at"), r.occurred_at.as_ref())?.unwrap_or(now);
    // Checked whatever the outcome, kept only for unsubscribes (the others ignore it).
    let mut list = list_id(&f("list_id"), &r.list_id)?;
    if outcome != ReportedOutcome::Unsubscribe {
        list = ListId::default();
    }
    Ok(SendReport {
        event_id,
        address,
        outcome,
        smtp_response,
        enhanced_status,
        source: Source::parse(&r.source).map_err(violation("source"))?,
        campaign: Campaign::parse(&r.campaign).map_err(violation("campaign"))?,
        segment: Segment::parse(&r.segment).map_err(violation("segment"))?,
        provider: Label::optional(&r.provider).map_err(violation("provider"))?,
        occurred_at,
        list_id: list,
    })
}

/// `2.0.0`..`5.999.999` as RFC 3463 writes them.
fn is_enhanced_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Domain classification -> wire.
pub fn proto_classification(c: &Classification) -> pb::Classification {
    pb::Classification {
        outcome_type: proto_type(c.bounce_type) as i32,
        reason: proto_reason(c.reason) as i32,
        rule_id: c.rule_id.to_string(),
        disagrees_with_reporter: c.disagrees_with_reporter,
        confidence: c.confidence,
    }
}

/// Domain suppression -> wire (its strings move).
pub fn proto_suppression(s: Suppression) -> pb::Suppression {
    pb::Suppression {
        reason: proto_reason(s.reason) as i32,
        outcome_type: s
            .bounce_type
            .map_or(pb::OutcomeType::Unspecified, proto_type) as i32,
        since: Some(proto_timestamp(s.since)),
        source: s.source,
        smtp_response: s.smtp_response,
        event_id: s.event_id,
        rule_id: s.rule_id,
        expires_at: s.expires_at.map(proto_timestamp),
        list_id: s.list_id,
    }
}

/// The status of a valid address; `given` is the address as the caller wrote it. An address
/// suppressed itself answers with its own suppression; one that is not, at a suppressed
/// domain, with the domain's (`domain_level`). A forgotten address has no text (but `given`)
/// and is known by its `address_id`.
pub fn proto_status(status: AddressStatus, given: String) -> pb::AddressStatus {
    let AddressStatus {
        address,
        address_id,
        record,
        recent_soft_bounces,
        suppression,
        unsubscribed_lists,
        domain_suppression,
        uncertain_mailbox,
    } = status;
    let record = record.unwrap_or_default();
    let (suppression, suppressed_domain) = match (suppression, domain_suppression) {
        (Some(own), _) => (Some(own), None),
        (None, Some((domain, s))) => (Some(Suppression::of_domain(s)), Some(domain)),
        (None, None) => (None, None),
    };
    pb::AddressStatus {
        address: address.map(|a| a.as_str().to_string()).unwrap_or_default(),
        address_id: address_id.to_string(),
        forgotten: record.forgotten,
        state: if suppression.is_some() {
            pb::AddressState::Suppressed
        } else {
            pb::AddressState::Allowed
        } as i32,
        suppression: suppression.map(proto_suppression),
        unsubscribed_lists,
        domain_level: suppressed_domain.is_some(),
        suppressed_domain: suppressed_domain.unwrap_or_default(),
        uncertain_mailbox: uncertain_mailbox.is_some(),
        uncertain_mailbox_cause: uncertain_mailbox.unwrap_or_default(),
        recent_soft_bounces,
        error: String::new(),
        given_address: given,
        pending_validation: record.pending_validation.is_some(),
        replaces: record
            .pending_validation
            .map(|p| p.replaces)
            .unwrap_or_default(),
        replaced_by: record.replaced_by.unwrap_or_default(),
        needs_enrichment: record.needs_enrichment,
    }
}

/// The status slot of an invalid address in a batch.
pub fn invalid_status(given: &str, error: &str) -> pb::AddressStatus {
    pb::AddressStatus {
        address: String::new(),
        state: pb::AddressState::Invalid as i32,
        suppression: None,
        error: error.to_string(),
        given_address: given.to_string(),
        ..pb::AddressStatus::default()
    }
}

/// A recorded event -> wire.
pub fn proto_recorded(e: &RecordedEvent) -> pb::RecordedResult {
    pb::RecordedResult {
        event_id: e.event_id.clone(),
        address: e.address.clone(),
        result: Some(pb::SendResult {
            event_id: e.event_id.clone(),
            address: e.address.clone(),
            outcome: proto_outcome(e.outcome) as i32,
            smtp_response: e.smtp_response.clone(),
            enhanced_status: e.enhanced_status.clone(),
            source: e.source.clone(),
            campaign: e.campaign.clone(),
            segment: e.segment.clone(),
            provider: e.provider.clone(),
            occurred_at: Some(proto_timestamp(e.occurred_at)),
            list_id: e.list_id.clone(),
        }),
        classification: Some(proto_classification(&e.classification)),
        recorded_at: Some(proto_timestamp(e.recorded_at)),
    }
}

/// A change of state -> wire.
pub fn proto_change(c: &StateChange) -> pb::StateChange {
    let kind = match c.kind {
        StateChangeKind::Suppressed => pb::StateChangeKind::Suppressed,
        StateChangeKind::Escalated => pb::StateChangeKind::Escalated,
        StateChangeKind::ManuallySuppressed => pb::StateChangeKind::ManuallySuppressed,
        StateChangeKind::Reactivated => pb::StateChangeKind::Reactivated,
        StateChangeKind::Replaced => pb::StateChangeKind::Replaced,
        StateChangeKind::MarkedForEnrichment => pb::StateChangeKind::MarkedForEnrichment,
        StateChangeKind::ReplacementPending => pb::StateChangeKind::ReplacementPending,
        StateChangeKind::Validated => pb::StateChangeKind::Validated,
        StateChangeKind::Reclassified => pb::StateChangeKind::Reclassified,
        StateChangeKind::Expired => pb::StateChangeKind::Expired,
        StateChangeKind::Forgotten => pb::StateChangeKind::Forgotten,
        StateChangeKind::UnsubscribedFromList => pb::StateChangeKind::UnsubscribedFromList,
        StateChangeKind::DomainSuppressed => pb::StateChangeKind::DomainSuppressed,
        StateChangeKind::DomainReactivated => pb::StateChangeKind::DomainReactivated,
        StateChangeKind::DomainPolicyChanged => pb::StateChangeKind::DomainPolicyChanged,
    };
    pb::StateChange {
        kind: kind as i32,
        reason: proto_reason(c.reason) as i32,
        actor: c.actor.clone(),
        on_behalf_of: c.on_behalf_of.clone(),
        note: c.note.clone(),
        event_id: c.event_id.clone(),
    }
}

/// A history entry -> wire.
pub fn proto_history(h: &HistoryEntry) -> pb::HistoryEntry {
    let entry = match h {
        HistoryEntry::SendResult(e) => pb::history_entry::Entry::SendResult(proto_recorded(e)),
        HistoryEntry::StateChange(c) => pb::history_entry::Entry::StateChange(proto_change(c)),
    };
    pb::HistoryEntry {
        at: Some(proto_timestamp(h.at())),
        entry: Some(entry),
    }
}

/// A correction suggestion -> wire.
pub fn proto_suggestion(s: &Suggestion) -> pb::CorrectionSuggestion {
    let evidence = match s.evidence {
        suggest::EvidenceKind::TypoFix => EvidenceKind::TypoFix,
        suggest::EvidenceKind::CompanyPattern => EvidenceKind::CompanyPattern,
    };
    pb::CorrectionSuggestion {
        address: s.address.clone(),
        evidence: proto_evidence(evidence) as i32,
        confidence: s.confidence,
        explanation: s.explanation.clone(),
    }
}

/// Evidence kind from the wire.
pub fn evidence(field: &str, raw: i32) -> Result<EvidenceKind, FieldViolation> {
    match pb::EvidenceKind::try_from(raw) {
        Ok(pb::EvidenceKind::CrmCorrection) => Ok(EvidenceKind::CrmCorrection),
        Ok(pb::EvidenceKind::CompanyPattern) => Ok(EvidenceKind::CompanyPattern),
        Ok(pb::EvidenceKind::VerifiedReplacement) => Ok(EvidenceKind::VerifiedReplacement),
        Ok(pb::EvidenceKind::TypoFix) => Ok(EvidenceKind::TypoFix),
        Ok(pb::EvidenceKind::Unspecified) => Err(FieldViolation::new(field, "is required")),
        Err(_) => Err(FieldViolation::new(field, format!("unknown value {raw}"))),
    }
}

/// Domain evidence kind -> wire.
pub fn proto_evidence(e: EvidenceKind) -> pb::EvidenceKind {
    match e {
        EvidenceKind::CrmCorrection => pb::EvidenceKind::CrmCorrection,
        EvidenceKind::CompanyPattern => pb::EvidenceKind::CompanyPattern,
        EvidenceKind::VerifiedReplacement => pb::EvidenceKind::VerifiedReplacement,
        EvidenceKind::TypoFix => pb::EvidenceKind::TypoFix,
    }
}

/// Dimension from the wire; `None` for unspecified.
pub fn dimension(field: &str, raw: i32) -> Result<Option<Dimension>, FieldViolation> {
    match pb::StatsDimension::try_from(raw) {
        Ok(pb::StatsDimension::Source) => Ok(Some(Dimension::Source)),
        Ok(pb::StatsDimension::Campaign) => Ok(Some(Dimension::Campaign)),
        Ok(pb::StatsDimension::Segment) => Ok(Some(Dimension::Segment)),
        Ok(pb::StatsDimension::Unspecified) => Ok(None),
        Err(_) => Err(FieldViolation::new(field, format!("unknown value {raw}"))),
    }
}

/// Domain dimension -> wire.
pub fn proto_dimension(d: Dimension) -> pb::StatsDimension {
    match d {
        Dimension::Source => pb::StatsDimension::Source,
        Dimension::Campaign => pb::StatsDimension::Campaign,
        Dimension::Segment => pb::StatsDimension::Segment,
    }
}

/// Counts -> wire.
pub fn proto_counts(c: &OutcomeCounts) -> pb::OutcomeCounts {
    pb::OutcomeCounts {
        sent: c.sent,
        delivered: c.delivered,
        hard_bounces: c.hard,
        soft_bounces: c.soft,
        blocks: c.block,
        complaints: c.complaint,
        unsubscribes: c.unsubscribe,
        to_accept_all_domains: c.to_accept_all,
    }
}

/// A domain's suppression -> wire.
pub fn proto_domain_suppression(s: DomainSuppression) -> pb::DomainSuppression {
    pb::DomainSuppression {
        reason: proto_reason(s.reason) as i32,
        since: Some(proto_timestamp(s.since)),
        include_subdomains: s.include_subdomains,
        automatic: s.automatic,
        note: s.note,
        actor: s.actor,
    }
}

/// A domain's status -> wire.
pub fn proto_domain_status(status: DomainStatus) -> pb::DomainStatus {
    let DomainStatus {
        domain,
        record,
        applies,
        recent_not_found,
    } = status;
    let (suppressed_domain, suppression) = applies.unzip();
    let accept_all = record.accept_all;
    pb::DomainStatus {
        domain,
        suppression: suppression.map(proto_domain_suppression),
        suppressed_domain: suppressed_domain.unwrap_or_default(),
        accept_all: accept_all.is_some(),
        accept_all_origin: match accept_all.as_ref().map(|a| a.origin) {
            None => pb::AcceptAllOrigin::Unspecified,
            Some(AcceptAllOrigin::Set) => pb::AcceptAllOrigin::Set,
            Some(AcceptAllOrigin::Inferred) => pb::AcceptAllOrigin::Inferred,
        } as i32,
        accept_all_note: accept_all.map(|a| a.note).unwrap_or_default(),
        last_delivered: record.last_delivered.map(proto_timestamp),
        recent_domain_not_found: recent_not_found,
        bounced_after_delivery: record.bounced_after_delivery,
    }
}

/// A window's totals -> wire.
pub fn proto_window(w: &WindowCounts) -> pb::WindowStats {
    pb::WindowStats {
        start_time: Some(proto_timestamp(w.start)),
        end_time: Some(proto_timestamp(w.end)),
        counts: Some(proto_counts(&w.total)),
        hard_bounce_rate: w.total.hard_bounce_rate(),
        complaint_rate: w.total.complaint_rate(),
    }
}

/// Health -> wire.
pub fn proto_health(h: Health) -> pb::SourceHealth {
    match h {
        Health::Healthy => pb::SourceHealth::Healthy,
        Health::Watch => pb::SourceHealth::Watch,
        Health::Pause => pb::SourceHealth::Pause,
    }
}

/// A verdict -> wire.
pub fn proto_verdict(v: &HealthVerdict) -> pb::HealthVerdict {
    pb::HealthVerdict {
        health: proto_health(v.health) as i32,
        reason: v.reason.clone(),
        sample_too_small: v.sample_too_small,
    }
}

/// A change kind from the wire.
pub fn change_kind(field: &str, raw: i32) -> Result<ChangeKind, FieldViolation> {
    use pb::SuppressionChangeKind as P;
    match P::try_from(raw) {
        Ok(P::Suppressed) => Ok(ChangeKind::Suppressed),
        Ok(P::Lifted) => Ok(ChangeKind::Lifted),
        Ok(P::Replaced) => Ok(ChangeKind::Replaced),
        Ok(P::Expired) => Ok(ChangeKind::Expired),
        Ok(P::Forgotten) => Ok(ChangeKind::Forgotten),
        Ok(P::DomainSuppressed) => Ok(ChangeKind::DomainSuppressed),
        Ok(P::DomainLifted) => Ok(ChangeKind::DomainLifted),
        Ok(P::Unspecified) => Err(FieldViolation::new(field, "must not be unspecified")),
        Err(_) => Err(FieldViolation::new(field, format!("unknown value {raw}"))),
    }
}

/// A change kind -> wire.
pub fn proto_change_kind(k: ChangeKind) -> pb::SuppressionChangeKind {
    use pb::SuppressionChangeKind as P;
    match k {
        ChangeKind::Suppressed => P::Suppressed,
        ChangeKind::Lifted => P::Lifted,
        ChangeKind::Replaced => P::Replaced,
        ChangeKind::Expired => P::Expired,
        ChangeKind::Forgotten => P::Forgotten,
        ChangeKind::DomainSuppressed => P::DomainSuppressed,
        ChangeKind::DomainLifted => P::DomainLifted,
    }
}

/// A change of a suppression list -> wire, with its cursor made by `cursor`.
pub fn proto_list_change(
    c: ListChange,
    cursor: impl Fn(crate::app::feed::FeedPosition) -> String,
) -> pb::SuppressionChange {
    pb::SuppressionChange {
        kind: proto_change_kind(c.kind) as i32,
        address: c.address,
        domain: c.domain,
        suppression: c.suppression.map(proto_suppression),
        actor: c.actor,
        at: Some(proto_timestamp(c.at)),
        cursor: cursor(crate::app::feed::FeedPosition(c.seq)),
        address_id: c.address_id,
        note: c.note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enhanced_status_must_be_class_subject_detail() {
        for ok in ["5.1.1", "4.7.0", "5.7.26", "2.0.0", "5.100.999"] {
            assert!(is_enhanced_status(ok), "{ok}");
        }
        for bad in ["", "5.1", "6.1.1", "5.1.1.1", "x.1.1", "5..1", "5.1.1000"] {
            assert!(!is_enhanced_status(bad), "{bad}");
        }
    }
}
