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
            }),
            soft_bounces: m.soft_bounces.into_iter().map(Timestamp).collect(),
            last_delivered: m.last_delivered.map(Timestamp),
            replaced_by: m.replaced_by,
            needs_enrichment: m.needs_enrichment,
            pending_validation: m.pending_validation.map(|r| domain::Replacement {
                replaces: r.replaces,
                evidence: r.evidence.into(),
                confidence: r.confidence,
                at: Timestamp(r.at),
            }),
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

#[cfg(test)]
mod measure {
    //! How long schema 2 and schema 3 take to encode and decode the hot records (the writer and
    //! the import screen decode records on every write and every screened address).
    //! Run optimised:
    //! `cargo test --lib --config 'profile.dev.package.suppressd.opt-level=3'
    //! --config 'profile.dev.package.prost.opt-level=3'
    //! --config 'profile.dev.package.postcard.opt-level=3'
    //! store::legacy::measure -- --ignored --nocapture`.

    use serde::Serialize;

    use super::super::records::{decode, encode, Record};
    use super::{Legacy, RECORD_VERSION};
    use crate::domain::{self, AddressRecord, RecordedEvent};

    /// The schema-2 layout of an address record, borrowed: what `postcard` wrote from the
    /// domain type itself, without copies.
    #[derive(Serialize)]
    struct AddressOut<'a> {
        suppression: Option<SuppressionOut<'a>>,
        soft_bounces: Vec<i64>,
        last_delivered: Option<i64>,
        replaced_by: Option<&'a str>,
        needs_enrichment: bool,
        pending_validation: Option<ReplacementOut<'a>>,
    }

    #[derive(Serialize)]
    struct SuppressionOut<'a> {
        reason: u32,
        bounce_type: Option<u32>,
        since: i64,
        source: &'a str,
        smtp_response: &'a str,
        event_id: &'a str,
        rule_id: &'a str,
    }

    #[derive(Serialize)]
    struct ReplacementOut<'a> {
        replaces: &'a str,
        evidence: u32,
        confidence: f32,
        at: i64,
    }

    #[derive(Serialize)]
    struct EventOut<'a> {
        event_id: &'a str,
        address: &'a str,
        outcome: u32,
        smtp_response: &'a str,
        enhanced_status: Option<&'a str>,
        source: &'a str,
        campaign: &'a str,
        segment: &'a str,
        provider: &'a str,
        occurred_at: i64,
        recorded_at: i64,
        bounce_type: u32,
        reason: u32,
        rule_id: &'a str,
        confidence: f32,
        disagrees_with_reporter: bool,
        rules_version: u32,
    }

    // Enum variants are written as their index, a varint like these `u32`s; the measure only
    // needs the same amount of work, and the byte layout is checked against the golden files.
    fn address_out(r: &AddressRecord) -> AddressOut<'_> {
        AddressOut {
            suppression: r.suppression.as_ref().map(|s| SuppressionOut {
                reason: s.reason as u32,
                bounce_type: s.bounce_type.map(|t| t as u32),
                since: s.since.micros(),
                source: &s.source,
                smtp_response: &s.smtp_response,
                event_id: &s.event_id,
                rule_id: &s.rule_id,
            }),
            soft_bounces: r.soft_bounces.iter().map(|t| t.micros()).collect(),
            last_delivered: r.last_delivered.map(domain::Timestamp::micros),
            replaced_by: r.replaced_by.as_deref(),
            needs_enrichment: r.needs_enrichment,
            pending_validation: r.pending_validation.as_ref().map(|p| ReplacementOut {
                replaces: &p.replaces,
                evidence: p.evidence as u32,
                confidence: p.confidence,
                at: p.at.micros(),
            }),
        }
    }

    fn event_out(e: &RecordedEvent) -> EventOut<'_> {
        EventOut {
            event_id: &e.event_id,
            address: &e.address,
            outcome: e.outcome as u32,
            smtp_response: &e.smtp_response,
            enhanced_status: e.enhanced_status.as_deref(),
            source: &e.source,
            campaign: &e.campaign,
            segment: &e.segment,
            provider: &e.provider,
            occurred_at: e.occurred_at.micros(),
            recorded_at: e.recorded_at.micros(),
            bounce_type: e.classification.bounce_type as u32,
            reason: e.classification.reason as u32,
            rule_id: &e.classification.rule_id,
            confidence: e.classification.confidence,
            disagrees_with_reporter: e.classification.disagrees_with_reporter,
            rules_version: e.rules_version,
        }
    }

    /// What schema 2's `encode` did: sized first, then written.
    fn encode_2<T: Serialize>(value: &T) -> Vec<u8> {
        let size = postcard::experimental::serialized_size(value).unwrap_or(0);
        let mut out = Vec::with_capacity(1 + size);
        out.push(RECORD_VERSION);
        postcard::to_extend(value, out).unwrap()
    }

    /// Nanoseconds per call of `f`, the best of five rounds.
    fn ns_per(rounds: u32, mut f: impl FnMut() -> usize) -> f64 {
        let mut best = f64::MAX;
        let mut sink = 0usize;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                sink = sink.wrapping_add(std::hint::black_box(f()));
            }
            best = best.min(started.elapsed().as_nanos() as f64 / f64::from(rounds));
        }
        std::hint::black_box(sink);
        best
    }

    fn report<T: Record + Legacy + PartialEq + std::fmt::Debug>(
        name: &str,
        value: &T,
        old: &[u8],
        encode_old: impl Fn(&T) -> Vec<u8>,
    ) {
        let new = encode(value).unwrap();
        assert_eq!(&T::from_legacy(old).unwrap(), value);
        assert_eq!(&decode::<T>(b"k", &new).unwrap(), value);
        let n = 200_000;
        let enc2 = ns_per(n, || encode_old(value).len());
        let enc3 = ns_per(n, || encode(value).unwrap().len());
        let dec2 = ns_per(n, || T::from_legacy(old).map(|_| 1).unwrap());
        let dec3 = ns_per(n, || decode::<T>(b"k", &new).map(|_| 1).unwrap());
        println!(
            "{name:<16} bytes {:>4} -> {:>4}   encode {enc2:>6.0} -> {enc3:>6.0} ns   \
             decode {dec2:>6.0} -> {dec3:>6.0} ns",
            old.len(),
            new.len()
        );
    }

    #[test]
    #[ignore = "a measurement; run by hand, optimised"]
    fn encode_and_decode_cost_per_record_schema_2_against_3() {
        let dir = super::super::golden_tests::golden_dir();
        let read = |name: &str| std::fs::read(dir.join(format!("golden-schema2-{name}.bin")));
        for (name, sample) in super::super::golden_tests::samples() {
            use super::super::golden_tests::Sample;
            match (name.as_str(), &sample) {
                ("address-full-0" | "address-minimal" | "address-manual", Sample::Address(r)) => {
                    let old = read(&name).unwrap();
                    assert_eq!(encode_2(&address_out(r)), old, "the schema-2 layout");
                    report(&name, r, &old, |r| encode_2(&address_out(r)));
                }
                ("event-01" | "event-04", Sample::Event(e)) => {
                    let old = read(&name).unwrap();
                    assert_eq!(encode_2(&event_out(e)), old, "the schema-2 layout");
                    report(&name, e, &old, |e| encode_2(&event_out(e)));
                }
                _ => {}
            }
        }
    }
}
