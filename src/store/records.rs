//! The on-disk form of every stored value (schema 3): protobuf messages, private to the store
//! and converted to and from the domain types here only, so that the domain can change without
//! changing what is on disk.
//!
//! Why protobuf: fields are found by tag, not by position. A field added later (a new tag) is
//! absent from older records and decodes to its default; a record written by a later version
//! with fields this one does not know still decodes (unknown tags are skipped).
//!
//! Rules for changing these messages:
//! - never reuse or renumber a tag, never change a field's type; add new fields with new tags;
//! - enum values are `int32` with the explicit numbering of the tables below, `0` meaning "not
//!   set" (a record that needs the value and lacks it is refused as corrupt, never read as the
//!   first variant); never renumber, only add;
//! - instants are `int64` microseconds since the Unix epoch, UTC;
//! - an optional domain value is an `optional` field or an optional sub-message.
//!
//! Every stored value starts with one version byte: [`RECORD_VERSION`] for these messages,
//! `legacy::RECORD_VERSION` for the postcard encoding of schema 2, so that a migration can tell
//! the two apart key by key.

use prost::Message;

use super::kv_store::{HourlyRow, StoredHistory};
use super::StoreError;
use crate::domain::{
    AddressRecord, BounceReason, BounceType, Classification, EvidenceKind, OutcomeCounts,
    RecordedEvent, Replacement, ReportedOutcome, StateChange, StateChangeKind, Suppression,
    Timestamp,
};

/// Version byte in front of every value encoded here.
pub(super) const RECORD_VERSION: u8 = 2;

/// Why a stored value could not be decoded (the source of [`StoreError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    /// The value is empty: not even a version byte.
    #[error("empty value")]
    Empty,
    /// The version byte is not one this build reads.
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    /// The protobuf bytes are malformed.
    #[error("malformed record")]
    Protobuf(#[from] prost::DecodeError),
    /// The schema-2 (postcard) bytes are malformed.
    #[error("malformed schema-2 record")]
    Legacy(#[from] postcard::Error),
    /// A field the record needs is missing.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// An enum field holds a number this build does not know.
    #[error("unknown value {value} of field {field}")]
    UnknownValue { field: &'static str, value: i32 },
    /// An hour of a day row is not 0-23.
    #[error("hour {0} out of range")]
    Hour(u32),
}

/// A domain value with an on-disk message.
pub(super) trait Record: Sized {
    /// The message it is stored as.
    type Message: Message + Default;
    /// The message of this value.
    fn to_message(&self) -> Self::Message;
    /// The value of a decoded message.
    fn from_message(message: Self::Message) -> Result<Self, RecordError>;
}

/// The stored bytes of `value`: the version byte, then the message.
pub(super) fn encode<T: Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    let message = value.to_message();
    // Sized first: no regrowth while encoding, and no spare capacity kept in the journal's
    // tables.
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(RECORD_VERSION);
    message
        .encode(&mut out)
        .map_err(|e| StoreError::Encode(Box::new(e)))?;
    Ok(out)
}

/// The value stored as `bytes` under `key`.
pub(super) fn decode<T: Record>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    decode_record(bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// [`decode`], with the cause alone.
pub(super) fn decode_record<T: Record>(bytes: &[u8]) -> Result<T, RecordError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => T::from_message(T::Message::decode(rest)?),
        Some((&v, _)) => Err(RecordError::UnknownVersion(v)),
        None => Err(RecordError::Empty),
    }
}

// ---------------------------------------------------------------------------------------------
// Enum numbering
// ---------------------------------------------------------------------------------------------

/// A domain enum stored as an `int32` of a fixed numbering.
trait Numbered: Sized + Copy {
    /// Field name, for errors.
    const FIELD: &'static str;
    fn number(self) -> i32;
    fn from_number(n: i32) -> Option<Self>;

    /// The value of a required field.
    fn required(n: i32) -> Result<Self, RecordError> {
        Self::from_number(n).ok_or(if n == 0 {
            RecordError::Missing(Self::FIELD)
        } else {
            RecordError::UnknownValue {
                field: Self::FIELD,
                value: n,
            }
        })
    }
}

/// Defines the stored numbering of an enum: one line per variant, never renumbered.
macro_rules! numbering {
    ($ty:ident, $field:literal, { $($variant:ident = $n:literal),* $(,)? }) => {
        impl Numbered for $ty {
            const FIELD: &'static str = $field;
            fn number(self) -> i32 {
                match self {
                    $($ty::$variant => $n,)*
                }
            }
            fn from_number(n: i32) -> Option<Self> {
                match n {
                    $($n => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

numbering!(ReportedOutcome, "outcome", {
    Delivered = 1,
    HardBounce = 2,
    SoftBounce = 3,
    Block = 4,
    Complaint = 5,
    Bounce = 6,
});

numbering!(BounceType, "bounce_type", {
    Hard = 1,
    Soft = 2,
    Block = 3,
    Complaint = 4,
    Delivered = 5,
});

numbering!(BounceReason, "reason", {
    None = 1,
    MailboxNotFound = 2,
    DomainNotFound = 3,
    InvalidAddress = 4,
    MailboxDisabled = 5,
    RecipientRejected = 6,
    MailboxFull = 7,
    MessageTooLarge = 8,
    RateLimited = 9,
    TemporaryFailure = 10,
    SenderBlocked = 11,
    ContentRejected = 12,
    AuthenticationFailed = 13,
    Complaint = 14,
    Manual = 15,
    RepeatedSoftBounce = 16,
    Unknown = 17,
});

numbering!(EvidenceKind, "evidence", {
    CrmCorrection = 1,
    CompanyPattern = 2,
    VerifiedReplacement = 3,
    TypoFix = 4,
});

numbering!(StateChangeKind, "kind", {
    Suppressed = 1,
    Escalated = 2,
    ManuallySuppressed = 3,
    Reactivated = 4,
    Replaced = 5,
    MarkedForEnrichment = 6,
    ReplacementPending = 7,
    Validated = 8,
    Reclassified = 9,
});

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// A recorded send result (`E` keys).
#[derive(Clone, PartialEq, Message)]
pub(super) struct EventMessage {
    #[prost(string, tag = "1")]
    pub event_id: String,
    #[prost(string, tag = "2")]
    pub address: String,
    /// [`ReportedOutcome`] numbering.
    #[prost(int32, tag = "3")]
    pub outcome: i32,
    #[prost(string, tag = "4")]
    pub smtp_response: String,
    #[prost(string, optional, tag = "5")]
    pub enhanced_status: Option<String>,
    #[prost(string, tag = "6")]
    pub source: String,
    #[prost(string, tag = "7")]
    pub campaign: String,
    #[prost(string, tag = "8")]
    pub segment: String,
    #[prost(string, tag = "9")]
    pub provider: String,
    #[prost(int64, tag = "10")]
    pub occurred_at_micros: i64,
    #[prost(int64, tag = "11")]
    pub recorded_at_micros: i64,
    #[prost(message, optional, tag = "12")]
    pub classification: Option<ClassificationMessage>,
    #[prost(uint32, tag = "13")]
    pub rules_version: u32,
}

/// The classifier's verdict on a recorded event.
#[derive(Clone, PartialEq, Message)]
pub(super) struct ClassificationMessage {
    /// [`BounceType`] numbering.
    #[prost(int32, tag = "1")]
    pub bounce_type: i32,
    /// [`BounceReason`] numbering.
    #[prost(int32, tag = "2")]
    pub reason: i32,
    #[prost(string, tag = "3")]
    pub rule_id: String,
    #[prost(float, tag = "4")]
    pub confidence: f32,
    #[prost(bool, tag = "5")]
    pub disagrees_with_reporter: bool,
}

/// An address's state (`A` keys).
#[derive(Clone, PartialEq, Message)]
pub(super) struct AddressMessage {
    #[prost(message, optional, tag = "1")]
    pub suppression: Option<SuppressionMessage>,
    #[prost(int64, repeated, tag = "2")]
    pub soft_bounces_micros: Vec<i64>,
    #[prost(int64, optional, tag = "3")]
    pub last_delivered_micros: Option<i64>,
    #[prost(string, optional, tag = "4")]
    pub replaced_by: Option<String>,
    #[prost(bool, tag = "5")]
    pub needs_enrichment: bool,
    #[prost(message, optional, tag = "6")]
    pub pending_validation: Option<ReplacementMessage>,
}

/// Why an address is suppressed.
#[derive(Clone, PartialEq, Message)]
pub(super) struct SuppressionMessage {
    /// [`BounceReason`] numbering.
    #[prost(int32, tag = "1")]
    pub reason: i32,
    /// [`BounceType`] numbering; absent for manual suppressions.
    #[prost(int32, optional, tag = "2")]
    pub bounce_type: Option<i32>,
    #[prost(int64, tag = "3")]
    pub since_micros: i64,
    #[prost(string, tag = "4")]
    pub source: String,
    #[prost(string, tag = "5")]
    pub smtp_response: String,
    #[prost(string, tag = "6")]
    pub event_id: String,
    #[prost(string, tag = "7")]
    pub rule_id: String,
}

/// The bad address a replacement address replaced.
#[derive(Clone, PartialEq, Message)]
pub(super) struct ReplacementMessage {
    #[prost(string, tag = "1")]
    pub replaces: String,
    /// [`EvidenceKind`] numbering.
    #[prost(int32, tag = "2")]
    pub evidence: i32,
    #[prost(float, tag = "3")]
    pub confidence: f32,
    #[prost(int64, tag = "4")]
    pub at_micros: i64,
}

/// One history entry (`H` keys): a send result (by event id) or a change of state.
#[derive(Clone, PartialEq, Message)]
pub(super) struct HistoryMessage {
    #[prost(oneof = "HistoryKind", tags = "1, 2")]
    pub entry: Option<HistoryKind>,
}

/// What a history entry is.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum HistoryKind {
    /// The id of a recorded send result.
    #[prost(string, tag = "1")]
    EventId(String),
    /// A change of the address's state.
    #[prost(message, tag = "2")]
    Change(StateChangeMessage),
}

/// A change of an address's state.
#[derive(Clone, PartialEq, Message)]
pub(super) struct StateChangeMessage {
    /// [`StateChangeKind`] numbering.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// [`BounceReason`] numbering.
    #[prost(int32, tag = "2")]
    pub reason: i32,
    #[prost(string, tag = "3")]
    pub actor: String,
    #[prost(string, tag = "4")]
    pub note: String,
    #[prost(string, tag = "5")]
    pub event_id: String,
    #[prost(int64, tag = "6")]
    pub at_micros: i64,
}

/// Send results by outcome type (`D` keys, and each hour of a day row).
#[derive(Clone, Copy, PartialEq, Message)]
pub(super) struct CountsMessage {
    #[prost(uint64, tag = "1")]
    pub sent: u64,
    #[prost(uint64, tag = "2")]
    pub delivered: u64,
    #[prost(uint64, tag = "3")]
    pub hard: u64,
    #[prost(uint64, tag = "4")]
    pub soft: u64,
    #[prost(uint64, tag = "5")]
    pub block: u64,
    #[prost(uint64, tag = "6")]
    pub complaint: u64,
}

/// The hourly counters of one UTC day (`W` keys), by hour.
#[derive(Clone, PartialEq, Message)]
pub(super) struct HourlyRowMessage {
    #[prost(message, repeated, tag = "1")]
    pub hours: Vec<HourMessage>,
}

/// The counters of one hour of a day row.
#[derive(Clone, PartialEq, Message)]
pub(super) struct HourMessage {
    /// 0-23.
    #[prost(uint32, tag = "1")]
    pub hour: u32,
    #[prost(message, optional, tag = "2")]
    pub counts: Option<CountsMessage>,
}

/// A count (`K` keys: delivered addresses of a domain).
#[derive(Clone, PartialEq, Message)]
pub(super) struct CountMessage {
    #[prost(uint64, tag = "1")]
    pub count: u64,
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

impl Record for RecordedEvent {
    type Message = EventMessage;

    fn to_message(&self) -> EventMessage {
        let c = &self.classification;
        EventMessage {
            event_id: self.event_id.clone(),
            address: self.address.clone(),
            outcome: self.outcome.number(),
            smtp_response: self.smtp_response.clone(),
            enhanced_status: self.enhanced_status.clone(),
            source: self.source.clone(),
            campaign: self.campaign.clone(),
            segment: self.segment.clone(),
            provider: self.provider.clone(),
            occurred_at_micros: self.occurred_at.micros(),
            recorded_at_micros: self.recorded_at.micros(),
            classification: Some(ClassificationMessage {
                bounce_type: c.bounce_type.number(),
                reason: c.reason.number(),
                rule_id: c.rule_id.to_string(),
                confidence: c.confidence,
                disagrees_with_reporter: c.disagrees_with_reporter,
            }),
            rules_version: self.rules_version,
        }
    }

    fn from_message(m: EventMessage) -> Result<Self, RecordError> {
        let c = m
            .classification
            .ok_or(RecordError::Missing("classification"))?;
        Ok(RecordedEvent {
            event_id: m.event_id,
            address: m.address,
            outcome: ReportedOutcome::required(m.outcome)?,
            smtp_response: m.smtp_response,
            enhanced_status: m.enhanced_status,
            source: m.source,
            campaign: m.campaign,
            segment: m.segment,
            provider: m.provider,
            occurred_at: Timestamp(m.occurred_at_micros),
            recorded_at: Timestamp(m.recorded_at_micros),
            classification: Classification {
                bounce_type: BounceType::required(c.bounce_type)?,
                reason: BounceReason::required(c.reason)?,
                rule_id: c.rule_id.into(),
                confidence: c.confidence,
                disagrees_with_reporter: c.disagrees_with_reporter,
            },
            rules_version: m.rules_version,
        })
    }
}

impl Record for AddressRecord {
    type Message = AddressMessage;

    fn to_message(&self) -> AddressMessage {
        AddressMessage {
            suppression: self.suppression.as_ref().map(|s| SuppressionMessage {
                reason: s.reason.number(),
                bounce_type: s.bounce_type.map(Numbered::number),
                since_micros: s.since.micros(),
                source: s.source.clone(),
                smtp_response: s.smtp_response.clone(),
                event_id: s.event_id.clone(),
                rule_id: s.rule_id.clone(),
            }),
            soft_bounces_micros: self.soft_bounces.iter().map(|t| t.micros()).collect(),
            last_delivered_micros: self.last_delivered.map(Timestamp::micros),
            replaced_by: self.replaced_by.clone(),
            needs_enrichment: self.needs_enrichment,
            pending_validation: self
                .pending_validation
                .as_ref()
                .map(|r| ReplacementMessage {
                    replaces: r.replaces.clone(),
                    evidence: r.evidence.number(),
                    confidence: r.confidence,
                    at_micros: r.at.micros(),
                }),
        }
    }

    fn from_message(m: AddressMessage) -> Result<Self, RecordError> {
        let suppression = match m.suppression {
            Some(s) => Some(Suppression {
                reason: BounceReason::required(s.reason)?,
                bounce_type: s.bounce_type.map(BounceType::required).transpose()?,
                since: Timestamp(s.since_micros),
                source: s.source,
                smtp_response: s.smtp_response,
                event_id: s.event_id,
                rule_id: s.rule_id,
            }),
            None => None,
        };
        let pending_validation = match m.pending_validation {
            Some(r) => Some(Replacement {
                replaces: r.replaces,
                evidence: EvidenceKind::required(r.evidence)?,
                confidence: r.confidence,
                at: Timestamp(r.at_micros),
            }),
            None => None,
        };
        Ok(AddressRecord {
            suppression,
            soft_bounces: m.soft_bounces_micros.into_iter().map(Timestamp).collect(),
            last_delivered: m.last_delivered_micros.map(Timestamp),
            replaced_by: m.replaced_by,
            needs_enrichment: m.needs_enrichment,
            pending_validation,
        })
    }
}

impl Record for StoredHistory {
    type Message = HistoryMessage;

    fn to_message(&self) -> HistoryMessage {
        HistoryMessage {
            entry: Some(match self {
                StoredHistory::Event(id) => HistoryKind::EventId(id.clone()),
                StoredHistory::Change(c) => HistoryKind::Change(StateChangeMessage {
                    kind: c.kind.number(),
                    reason: c.reason.number(),
                    actor: c.actor.clone(),
                    note: c.note.clone(),
                    event_id: c.event_id.clone(),
                    at_micros: c.at.micros(),
                }),
            }),
        }
    }

    fn from_message(m: HistoryMessage) -> Result<Self, RecordError> {
        Ok(match m.entry.ok_or(RecordError::Missing("entry"))? {
            HistoryKind::EventId(id) => StoredHistory::Event(id),
            HistoryKind::Change(c) => StoredHistory::Change(StateChange {
                kind: StateChangeKind::required(c.kind)?,
                reason: BounceReason::required(c.reason)?,
                actor: c.actor,
                note: c.note,
                event_id: c.event_id,
                at: Timestamp(c.at_micros),
            }),
        })
    }
}

impl From<&OutcomeCounts> for CountsMessage {
    fn from(c: &OutcomeCounts) -> Self {
        CountsMessage {
            sent: c.sent,
            delivered: c.delivered,
            hard: c.hard,
            soft: c.soft,
            block: c.block,
            complaint: c.complaint,
        }
    }
}

impl From<CountsMessage> for OutcomeCounts {
    fn from(c: CountsMessage) -> Self {
        OutcomeCounts {
            sent: c.sent,
            delivered: c.delivered,
            hard: c.hard,
            soft: c.soft,
            block: c.block,
            complaint: c.complaint,
        }
    }
}

impl Record for OutcomeCounts {
    type Message = CountsMessage;

    fn to_message(&self) -> CountsMessage {
        self.into()
    }

    fn from_message(m: CountsMessage) -> Result<Self, RecordError> {
        Ok(m.into())
    }
}

impl Record for HourlyRow {
    type Message = HourlyRowMessage;

    fn to_message(&self) -> HourlyRowMessage {
        HourlyRowMessage {
            hours: self
                .hours()
                .iter()
                .map(|(hour, counts)| HourMessage {
                    hour: u32::from(*hour),
                    counts: Some(counts.into()),
                })
                .collect(),
        }
    }

    fn from_message(m: HourlyRowMessage) -> Result<Self, RecordError> {
        let mut row = HourlyRow::default();
        for h in m.hours {
            let hour = u8::try_from(h.hour)
                .ok()
                .filter(|h| *h < 24)
                .ok_or(RecordError::Hour(h.hour))?;
            row.hour_mut(hour)
                .add(&h.counts.map(OutcomeCounts::from).unwrap_or_default());
        }
        Ok(row)
    }
}

impl Record for u64 {
    type Message = CountMessage;

    fn to_message(&self) -> CountMessage {
        CountMessage { count: *self }
    }

    fn from_message(m: CountMessage) -> Result<Self, RecordError> {
        Ok(m.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_enum_that_is_missing_or_unknown_is_refused_not_guessed() {
        let event = RecordedEvent {
            event_id: "e".into(),
            address: "a@x.com".into(),
            outcome: ReportedOutcome::Bounce,
            smtp_response: String::new(),
            enhanced_status: None,
            source: String::new(),
            campaign: String::new(),
            segment: String::new(),
            provider: String::new(),
            occurred_at: Timestamp(1),
            recorded_at: Timestamp(2),
            classification: Classification {
                bounce_type: BounceType::Hard,
                reason: BounceReason::Unknown,
                rule_id: "r".into(),
                confidence: 1.0,
                disagrees_with_reporter: false,
            },
            rules_version: 1,
        };
        let mut m = event.to_message();
        m.outcome = 0;
        assert!(matches!(
            RecordedEvent::from_message(m.clone()),
            Err(RecordError::Missing("outcome"))
        ));
        m.outcome = 99;
        assert!(matches!(
            RecordedEvent::from_message(m),
            Err(RecordError::UnknownValue {
                field: "outcome",
                value: 99
            })
        ));
    }

    #[test]
    fn a_value_of_an_unknown_version_is_refused_with_its_key() {
        let err = decode::<u64>(b"Kacme\0x.com", &[9, 1, 2]).unwrap_err();
        assert!(err.to_string().contains("Kacme"), "{err}");
        let cause = std::error::Error::source(&err).expect("the cause is kept");
        assert_eq!(cause.to_string(), "unknown record version 9");
    }
}
