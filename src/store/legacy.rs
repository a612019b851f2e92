//! The schema-2 encoding, kept only to read data directories written before schema 3 (see the
//! migration in `kv_store`): a version byte [`RECORD_VERSION`], then postcard, which stores
//! fields by position. The types below mirror, field by field and variant by variant, the
//! domain types as they were when schema 2 was written; they must never change.

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::kv_store::{HourlyRow, StoredHistory};
use super::records::RecordError;
use crate::domain::{self, Timestamp};

/// Version byte in front of every schema-2 value.
pub(super) const RECORD_VERSION: u8 = 1;

/// A domain value that schema 2 stored.
pub(super) trait Legacy: Sized {
    /// Decodes the schema-2 bytes of a value, version byte included.
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError>;
}

/// The postcard part of schema-2 value `bytes`.
fn postcard_part(bytes: &[u8]) -> Result<&[u8], RecordError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => Ok(rest),
        Some((&v, _)) => Err(RecordError::UnknownVersion(v)),
        None => Err(RecordError::Empty),
    }
}

/// Decodes `bytes` as mirror type `M` and converts it.
fn decode_as<'a, M: Deserialize<'a>, T: From<M>>(bytes: &'a [u8]) -> Result<T, RecordError> {
    Ok(postcard::from_bytes::<M>(postcard_part(bytes)?)?.into())
}

/// Encodes a schema-2 value, as schema-2 stores did (for tests that build old data).
#[cfg(test)]
pub(super) fn encode_counts(counts: &domain::OutcomeCounts) -> Vec<u8> {
    let mirror = Counts {
        sent: counts.sent,
        delivered: counts.delivered,
        hard: counts.hard,
        soft: counts.soft,
        block: counts.block,
        complaint: counts.complaint,
    };
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_stdvec(&mirror).expect("counts encode"));
    out
}

/// Mirrors an enum of the domain, variant by variant in schema-2 order.
macro_rules! mirror_enum {
    ($mirror:ident => $domain:ident { $($variant:ident),* $(,)? }) => {
        #[derive(Deserialize, Clone, Copy)]
        #[cfg_attr(test, derive(Serialize))]
        enum $mirror {
            $($variant,)*
        }

        impl From<$mirror> for domain::$domain {
            fn from(m: $mirror) -> Self {
                match m {
                    $($mirror::$variant => domain::$domain::$variant,)*
                }
            }
        }
    };
}

mirror_enum!(Outcome => ReportedOutcome {
    Delivered, HardBounce, SoftBounce, Block, Complaint, Bounce,
});

mirror_enum!(Type => BounceType { Hard, Soft, Block, Complaint, Delivered });

mirror_enum!(Reason => BounceReason {
    None, MailboxNotFound, DomainNotFound, InvalidAddress, MailboxDisabled, RecipientRejected,
    MailboxFull, MessageTooLarge, RateLimited, TemporaryFailure, SenderBlocked, ContentRejected,
    AuthenticationFailed, Complaint, Manual, RepeatedSoftBounce, Unknown,
});

mirror_enum!(Evidence => EvidenceKind {
    CrmCorrection, CompanyPattern, VerifiedReplacement, TypoFix,
});

mirror_enum!(ChangeKind => StateChangeKind {
    Suppressed, Escalated, ManuallySuppressed, Reactivated, Replaced, MarkedForEnrichment,
    ReplacementPending, Validated, Reclassified,
});

#[derive(Deserialize)]
struct Classification {
    bounce_type: Type,
    reason: Reason,
    rule_id: String,
    confidence: f32,
    disagrees_with_reporter: bool,
}

#[derive(Deserialize)]
struct Event {
    event_id: String,
    address: String,
    outcome: Outcome,
    smtp_response: String,
    enhanced_status: Option<String>,
    source: String,
    campaign: String,
    segment: String,
    provider: String,
    occurred_at: i64,
    recorded_at: i64,
    classification: Classification,
    rules_version: u32,
}

impl From<Event> for domain::RecordedEvent {
    fn from(m: Event) -> Self {
        let c = m.classification;
        domain::RecordedEvent {
            event_id: m.event_id,
            address: m.address,
            outcome: m.outcome.into(),
            smtp_response: m.smtp_response,
            enhanced_status: m.enhanced_status,
            source: m.source,
            campaign: m.campaign,
            segment: m.segment,
            provider: m.provider,
            occurred_at: Timestamp(m.occurred_at),
            recorded_at: Timestamp(m.recorded_at),
            classification: domain::Classification {
                bounce_type: c.bounce_type.into(),
                reason: c.reason.into(),
                rule_id: c.rule_id.into(),
                confidence: c.confidence,
                disagrees_with_reporter: c.disagrees_with_reporter,
            },
            list_id: String::new(),
            rules_version: m.rules_version,
        }
    }
}

#[derive(Deserialize)]
struct Suppression {
    reason: Reason,
    bounce_type: Option<Type>,
    since: i64,
    source: String,
    smtp_response: String,
    event_id: String,
    rule_id: String,
}

#[derive(Deserialize)]
struct Replacement {
    replaces: String,
    evidence: Evidence,
    confidence: f32,
    at: i64,
}

#[derive(Deserialize)]
struct Address {
    suppression: Option<Suppression>,
    soft_bounces: Vec<i64>,
    last_delivered: Option<i64>,
    replaced_by: Option<String>,
    needs_enrichment: bool,
    pending_validation: Option<Replacement>,
}

impl From<Address> for domain::AddressRecord {
    fn from(m: Address) -> Self {
        domain::AddressRecord {
            suppression: m.suppression.map(|s| domain::Suppression {
                reason: s.reason.into(),
                bounce_type: s.bounce_type.map(Into::into),
                since: Timestamp(s.since),
                source: s.source,
                smtp_response: s.smtp_response,
                event_id: s.event_id,
                rule_id: s.rule_id,
                expires_at: None,
                list_id: String::new(),
            }),
            soft_bounces: m.soft_bounces.into_iter().map(Timestamp).collect(),
            last_delivered: m.last_delivered.map(Timestamp),
            replaced_by: m.replaced_by,
            needs_enrichment: m.needs_enrichment,
            forgotten: false,
            pending_validation: m.pending_validation.map(|r| domain::Replacement {
                replaces: r.replaces,
                evidence: r.evidence.into(),
                confidence: r.confidence,
                at: Timestamp(r.at),
            }),
            list_unsubscribes: Vec::new(),
            engaged_at: None,
        }
    }
}

#[derive(Deserialize)]
struct StateChange {
    kind: ChangeKind,
    reason: Reason,
    actor: String,
    note: String,
    event_id: String,
    at: i64,
}

#[derive(Deserialize)]
enum History {
    Event(String),
    Change(StateChange),
}

impl From<History> for StoredHistory {
    fn from(m: History) -> Self {
        match m {
            History::Event(id) => StoredHistory::Event(id),
            History::Change(c) => StoredHistory::Change(domain::StateChange {
                kind: c.kind.into(),
                reason: c.reason.into(),
                actor: c.actor,
                on_behalf_of: String::new(),
                note: c.note,
                event_id: c.event_id,
                at: Timestamp(c.at),
            }),
        }
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
#[cfg_attr(test, derive(Serialize))]
struct Counts {
    sent: u64,
    delivered: u64,
    hard: u64,
    soft: u64,
    block: u64,
    complaint: u64,
}

impl From<Counts> for domain::OutcomeCounts {
    fn from(m: Counts) -> Self {
        domain::OutcomeCounts {
            sent: m.sent,
            delivered: m.delivered,
            hard: m.hard,
            soft: m.soft,
            block: m.block,
            complaint: m.complaint,
            unsubscribe: 0,
            to_accept_all: 0,
        }
    }
}

#[derive(Deserialize)]
struct Row(Vec<(u8, Counts)>);

impl From<Row> for HourlyRow {
    fn from(m: Row) -> Self {
        let mut row = HourlyRow::default();
        for (hour, counts) in m.0 {
            row.hour_mut(hour).add(&counts.into());
        }
        row
    }
}

/// A count, as postcard stores a `u64`.
#[derive(Deserialize)]
struct Count(u64);

impl From<Count> for u64 {
    fn from(m: Count) -> Self {
        m.0
    }
}

impl Legacy for domain::RecordedEvent {
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_as::<Event, _>(bytes)
    }
}

impl Legacy for domain::AddressRecord {
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_as::<Address, _>(bytes)
    }
}

impl Legacy for StoredHistory {
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_as::<History, _>(bytes)
    }
}

impl Legacy for domain::OutcomeCounts {
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_as::<Counts, _>(bytes)
    }
}

impl Legacy for HourlyRow {
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_as::<Row, _>(bytes)
    }
}

impl Legacy for u64 {
    fn from_legacy(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_as::<Count, _>(bytes)
    }
}
