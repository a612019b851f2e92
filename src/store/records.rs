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

use super::address_hash::AddressHash;
use super::keyring::DataKey;
use super::kv_store::{
    DomainActivity, HourlyRow, StoredAddress, StoredChange, StoredEntry, StoredHistory,
};
use super::StoreError;
use crate::domain::{
    AcceptAll, AcceptAllOrigin, AddressRecord, BounceReason, BounceType, ChangeKind,
    Classification, DomainMarks, DomainSuppression, EvidenceKind, ListChange, OutcomeCounts,
    RecentBounce, RecordedEvent, Replacement, ReportedOutcome, StateChange, StateChangeKind,
    Suppression, Timestamp,
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

    /// `prefix` followed by the message of this value, in a vector of exactly that size (no
    /// regrowth while encoding, no spare capacity kept in the journal's tables). The records
    /// written on every write override it to write straight from the domain value, without
    /// copying its strings into a message first (the bytes are the same: see the tests).
    fn encode_after(&self, prefix: u8) -> Result<Vec<u8>, prost::EncodeError> {
        encode_message_after(&self.to_message(), prefix)
    }
}

/// The stored bytes of `value`: the version byte, then the message.
pub(super) fn encode<T: Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    value
        .encode_after(RECORD_VERSION)
        .map_err(|e| StoreError::Encode(Box::new(e)))
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
    Unsubscribe = 7,
});

numbering!(BounceType, "bounce_type", {
    Hard = 1,
    Soft = 2,
    Block = 3,
    Complaint = 4,
    Delivered = 5,
    Unsubscribe = 6,
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
    Unsubscribed = 18,
});

numbering!(ChangeKind, "change_kind", {
    Suppressed = 1,
    Lifted = 2,
    Replaced = 3,
    Expired = 4,
    Forgotten = 5,
    DomainSuppressed = 6,
    DomainLifted = 7,
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
    Expired = 10,
    Forgotten = 11,
    UnsubscribedFromList = 15,
    DomainSuppressed = 12,
    DomainReactivated = 13,
    DomainPolicyChanged = 14,
});

numbering!(AcceptAllOrigin, "origin", {
    Set = 1,
    Inferred = 2,
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
    /// For an unsubscribe: the list left (empty: every list).
    #[prost(string, tag = "14")]
    pub list_id: String,
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
    /// The normalized address (schema 4: its key holds only its hash); empty in schema 3, and
    /// in a sealed record (it is in `sealed`).
    #[prost(string, tag = "7")]
    pub address: String,
    /// Unsubscribes from single lists (each with its `list_id`).
    #[prost(message, repeated, tag = "8")]
    pub list_unsubscribes: Vec<SuppressionMessage>,
    /// When a person was last seen acting through the mailbox (confirmed engagement).
    #[prost(int64, optional, tag = "11")]
    pub engaged_at_micros: Option<i64>,
    /// The person's data was erased: no personal field, no key slot (tag 9; tags 8, 10 and 11
    /// belong to other fields of the record).
    #[prost(bool, tag = "9")]
    pub forgotten: bool,
    /// The keyring slot of the address's data key (`keyring`); absent in records written
    /// before the keyring, which hold their personal fields in the clear, and in forgotten ones.
    #[prost(uint64, optional, tag = "20")]
    pub key_slot: Option<u64>,
    /// With `key_slot`: a [`PersonalMessage`] sealed under the data key. The personal fields
    /// elsewhere in the message are then empty.
    #[prost(bytes = "vec", tag = "21")]
    pub sealed: Vec<u8>,
}

/// The personal fields of an address record, sealed under its data key (`AddressMessage`
/// tag 21). What stays outside (times, reasons, sources, rule and event ids) names no one.
#[derive(Clone, PartialEq, Message)]
pub(super) struct PersonalMessage {
    /// The normalized address.
    #[prost(string, tag = "1")]
    pub address: String,
    /// The suppression's SMTP response, or the operator's note.
    #[prost(string, tag = "2")]
    pub smtp_response: String,
    /// The address that replaced this one.
    #[prost(string, optional, tag = "3")]
    pub replaced_by: Option<String>,
    /// The address this one replaces (with a pending validation).
    #[prost(string, tag = "4")]
    pub replaces: String,
    /// The notes of the address's unsubscribes from single lists, in their order.
    #[prost(string, repeated, tag = "5")]
    pub list_notes: Vec<String>,
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
    /// When it ends by itself; absent: it lasts until lifted.
    #[prost(int64, optional, tag = "8")]
    pub expires_at_micros: Option<i64>,
    /// For an unsubscribe from one list: the list.
    #[prost(string, tag = "9")]
    pub list_id: String,
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

/// One history entry of schema 4 (`R tenant 0 ah inv(ts) inv(seq)` keys): a send result with
/// the changes of state it caused, or changes of state alone.
#[derive(Clone, PartialEq, Message)]
pub(super) struct EntryMessage {
    #[prost(message, optional, tag = "1")]
    pub event: Option<EventMessage>,
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<StateChangeMessage>,
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
    /// Added in schema 3 without a migration: older records read it as empty.
    #[prost(string, tag = "7")]
    pub on_behalf_of: String,
}

/// One change of a suppression list (`F` keys).
#[derive(Clone, PartialEq, Message)]
pub(super) struct ChangeMessage {
    /// [`ChangeKind`] numbering.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The address's keyed hash; empty for domain changes.
    #[prost(bytes = "vec", tag = "2")]
    pub ah: Vec<u8>,
    #[prost(string, tag = "3")]
    pub address: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(message, optional, tag = "5")]
    pub suppression: Option<SuppressionMessage>,
    #[prost(string, tag = "6")]
    pub actor: String,
    #[prost(string, tag = "7")]
    pub note: String,
    #[prost(int64, tag = "8")]
    pub at_micros: i64,
    /// The keyring slot of the data key of the address's personal fields (`keyring`).
    #[prost(uint64, optional, tag = "20")]
    pub key_slot: Option<u64>,
    /// With `key_slot`: a [`PersonalChangeMessage`] sealed under the address's data key; the
    /// address, domain, note and SMTP response elsewhere in the message are then empty.
    #[prost(bytes = "vec", tag = "21")]
    pub sealed: Vec<u8>,
}

/// The personal fields of an address's change (`ChangeMessage` tag 21).
#[derive(Clone, PartialEq, Message)]
pub(super) struct PersonalChangeMessage {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(string, tag = "2")]
    pub domain: String,
    #[prost(string, tag = "3")]
    pub smtp_response: String,
    #[prost(string, tag = "4")]
    pub note: String,
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
    #[prost(uint64, tag = "7")]
    pub unsubscribe: u64,
    /// Results for addresses at accept-all domains.
    #[prost(uint64, tag = "8")]
    pub to_accept_all_domains: u64,
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

/// A domain's suppression and accept-all mark (`M` keys).
#[derive(Clone, PartialEq, Message)]
pub(super) struct DomainMessage {
    #[prost(message, optional, tag = "1")]
    pub suppression: Option<DomainSuppressionMessage>,
    #[prost(message, optional, tag = "2")]
    pub accept_all: Option<AcceptAllMessage>,
}

/// Why a whole domain is suppressed.
#[derive(Clone, PartialEq, Message)]
pub(super) struct DomainSuppressionMessage {
    /// [`BounceReason`] numbering.
    #[prost(int32, tag = "1")]
    pub reason: i32,
    #[prost(int64, tag = "2")]
    pub since_micros: i64,
    #[prost(bool, tag = "3")]
    pub include_subdomains: bool,
    #[prost(bool, tag = "4")]
    pub automatic: bool,
    #[prost(string, tag = "5")]
    pub note: String,
    #[prost(string, tag = "6")]
    pub actor: String,
    #[prost(string, tag = "7")]
    pub event_id: String,
}

/// A domain's accept-all mark.
#[derive(Clone, PartialEq, Message)]
pub(super) struct AcceptAllMessage {
    /// [`AcceptAllOrigin`] numbering.
    #[prost(int32, tag = "1")]
    pub origin: i32,
    #[prost(string, tag = "2")]
    pub note: String,
    #[prost(int64, tag = "3")]
    pub since_micros: i64,
    #[prost(string, tag = "4")]
    pub actor: String,
}

/// A domain's activity (`N tenant 0 domain 0` keys).
#[derive(Clone, PartialEq, Message)]
pub(super) struct DomainActivityMessage {
    /// The start of the hour of the latest delivery.
    #[prost(int64, optional, tag = "1")]
    pub last_delivered_micros: Option<i64>,
    #[prost(message, repeated, tag = "2")]
    pub recent_not_found: Vec<RecentBounceMessage>,
    #[prost(uint32, tag = "3")]
    pub bounced_after_delivery: u32,
}

/// One address's DOMAIN_NOT_FOUND bounce: 64 bits of its keyed hash, and when.
#[derive(Clone, PartialEq, Message)]
pub(super) struct RecentBounceMessage {
    #[prost(fixed64, tag = "1")]
    pub address: u64,
    #[prost(int64, tag = "2")]
    pub at_micros: i64,
}

// ---------------------------------------------------------------------------------------------
// Writing messages straight from domain values
// ---------------------------------------------------------------------------------------------

/// Writes protobuf fields as prost writes them (proto3: a field equal to its default is left
/// out, unless it is `optional`), from borrowed values. Each field is written by [`Fields::put`]
/// or sized by [`Fields::len`], from the same code, so sizes and bytes agree.
mod wire {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

    /// One field's value.
    pub(super) enum Field<'a> {
        Str(&'a str),
        Bytes(&'a [u8]),
        Int(i64),
        Uint(u64),
        Float(f32),
        Bool(bool),
        /// A nested message of the given length, written by the caller after its header.
        Message(usize),
        /// Packed repeated `int64`.
        Packed(&'a [i64]),
    }

    impl Field<'_> {
        fn is_default(&self) -> bool {
            match *self {
                Field::Str(s) => s.is_empty(),
                Field::Bytes(b) => b.is_empty(),
                Field::Int(v) => v == 0,
                Field::Uint(v) => v == 0,
                Field::Float(v) => v == 0.0,
                Field::Bool(v) => !v,
                Field::Message(_) => false,
                Field::Packed(v) => v.is_empty(),
            }
        }

        fn packed_len(v: &[i64]) -> usize {
            v.iter().map(|x| encoded_len_varint(*x as u64)).sum()
        }

        /// Bytes of the field, key included; `present` writes a default value too.
        pub(super) fn len(&self, tag: u32, present: bool) -> usize {
            if !present && self.is_default() {
                return 0;
            }
            key_len(tag)
                + match *self {
                    Field::Str(s) => encoded_len_varint(s.len() as u64) + s.len(),
                    Field::Bytes(b) => encoded_len_varint(b.len() as u64) + b.len(),
                    Field::Int(v) => encoded_len_varint(v as u64),
                    Field::Uint(v) => encoded_len_varint(v),
                    Field::Float(_) => 4,
                    Field::Bool(_) => 1,
                    Field::Message(len) => encoded_len_varint(len as u64) + len,
                    Field::Packed(v) => {
                        let len = Self::packed_len(v);
                        encoded_len_varint(len as u64) + len
                    }
                }
        }

        /// Writes the field (for a message: its header only).
        pub(super) fn put(&self, tag: u32, present: bool, out: &mut Vec<u8>) {
            if !present && self.is_default() {
                return;
            }
            match *self {
                Field::Str(s) => {
                    encode_key(tag, WireType::LengthDelimited, out);
                    encode_varint(s.len() as u64, out);
                    out.extend_from_slice(s.as_bytes());
                }
                Field::Bytes(b) => {
                    encode_key(tag, WireType::LengthDelimited, out);
                    encode_varint(b.len() as u64, out);
                    out.extend_from_slice(b);
                }
                Field::Int(v) => {
                    encode_key(tag, WireType::Varint, out);
                    encode_varint(v as u64, out);
                }
                Field::Uint(v) => {
                    encode_key(tag, WireType::Varint, out);
                    encode_varint(v, out);
                }
                Field::Float(v) => {
                    encode_key(tag, WireType::ThirtyTwoBit, out);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Field::Bool(v) => {
                    encode_key(tag, WireType::Varint, out);
                    out.push(u8::from(v));
                }
                Field::Message(len) => {
                    encode_key(tag, WireType::LengthDelimited, out);
                    encode_varint(len as u64, out);
                }
                Field::Packed(v) => {
                    encode_key(tag, WireType::LengthDelimited, out);
                    encode_varint(Self::packed_len(v) as u64, out);
                    for x in v {
                        encode_varint(*x as u64, out);
                    }
                }
            }
        }
    }

    /// A message's fields: (tag, value, written even if default).
    pub(super) type Fields<'a> = [(u32, Field<'a>, bool)];

    /// Bytes of the fields.
    pub(super) fn len(fields: &Fields<'_>) -> usize {
        fields
            .iter()
            .map(|(tag, f, present)| f.len(*tag, *present))
            .sum()
    }

    /// Writes the fields.
    pub(super) fn put(fields: &Fields<'_>, out: &mut Vec<u8>) {
        for (tag, f, present) in fields {
            f.put(*tag, *present, out);
        }
    }
}

use wire::Field;

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
            list_id: self.list_id.clone(),
        }
    }

    fn encode_after(&self, prefix: u8) -> Result<Vec<u8>, prost::EncodeError> {
        let c = &self.classification;
        let classification = [
            (1, Field::Int(c.bounce_type.number().into()), false),
            (2, Field::Int(c.reason.number().into()), false),
            (3, Field::Str(c.rule_id.as_str()), false),
            (4, Field::Float(c.confidence), false),
            (5, Field::Bool(c.disagrees_with_reporter), false),
        ];
        let classification_len = wire::len(&classification);
        let head = [
            (1, Field::Str(&self.event_id), false),
            (2, Field::Str(&self.address), false),
            (3, Field::Int(self.outcome.number().into()), false),
            (4, Field::Str(&self.smtp_response), false),
        ];
        let enhanced = self
            .enhanced_status
            .as_deref()
            .map(|s| [(5, Field::Str(s), true)]);
        let tail = [
            (6, Field::Str(&self.source), false),
            (7, Field::Str(&self.campaign), false),
            (8, Field::Str(&self.segment), false),
            (9, Field::Str(&self.provider), false),
            (10, Field::Int(self.occurred_at.micros()), false),
            (11, Field::Int(self.recorded_at.micros()), false),
            (12, Field::Message(classification_len), true),
        ];
        let last = [
            (13, Field::Uint(self.rules_version.into()), false),
            (14, Field::Str(&self.list_id), false),
        ];
        let enhanced: &wire::Fields<'_> = enhanced.as_ref().map_or(&[], |e| &e[..]);
        let mut out = Vec::with_capacity(
            1 + wire::len(&head) + wire::len(enhanced) + wire::len(&tail) + wire::len(&last),
        );
        out.push(prefix);
        wire::put(&head, &mut out);
        wire::put(enhanced, &mut out);
        wire::put(&tail, &mut out);
        wire::put(&classification, &mut out);
        wire::put(&last, &mut out);
        Ok(out)
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
            list_id: m.list_id,
        })
    }
}

impl Record for AddressRecord {
    type Message = AddressMessage;

    fn to_message(&self) -> AddressMessage {
        AddressMessage {
            suppression: self.suppression.as_ref().map(suppression_message),
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
            address: String::new(),
            list_unsubscribes: self
                .list_unsubscribes
                .iter()
                .map(suppression_message)
                .collect(),
            engaged_at_micros: self.engaged_at.map(Timestamp::micros),
            forgotten: self.forgotten,
            key_slot: None,
            sealed: Vec::new(),
        }
    }

    fn encode_after(&self, prefix: u8) -> Result<Vec<u8>, prost::EncodeError> {
        // Unsubscribes from single lists are rare: a record with some goes through the
        // message, whose bytes the straight writer would have to match field by field.
        if !self.list_unsubscribes.is_empty() {
            return encode_message_after(&self.to_message(), prefix);
        }
        Ok(encode_address(self, prefix, "", None, &[], false))
    }

    fn from_message(m: AddressMessage) -> Result<Self, RecordError> {
        let suppression = m.suppression.map(suppression_from).transpose()?;
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
            list_unsubscribes: m
                .list_unsubscribes
                .into_iter()
                .map(suppression_from)
                .collect::<Result<_, _>>()?,
            engaged_at: m.engaged_at_micros.map(Timestamp),
            forgotten: m.forgotten,
        })
    }
}

/// The stored bytes of `address`'s `record` with its personal fields sealed under `key` (in
/// keyring slot `slot`), written straight from the record: the same bytes as encoding a
/// [`StoredAddress`] whose personal fields [`take_personal`] moved into `sealed`.
pub(super) fn sealed_address(
    address: &str,
    record: &AddressRecord,
    slot: u64,
    key: &DataKey,
) -> Result<Vec<u8>, StoreError> {
    let mut personal = vec![
        (1, Field::Str(address), false),
        (
            2,
            Field::Str(record.suppression.as_ref().map_or("", |s| &s.smtp_response)),
            false,
        ),
        (
            3,
            Field::Str(record.replaced_by.as_deref().unwrap_or("")),
            record.replaced_by.is_some(),
        ),
        (
            4,
            Field::Str(
                record
                    .pending_validation
                    .as_ref()
                    .map_or("", |p| &p.replaces),
            ),
            false,
        ),
    ];
    // Repeated: every one written, empty or not, so that they come back in place.
    personal.extend(
        record
            .list_unsubscribes
            .iter()
            .map(|u| (5, Field::Str(&u.smtp_response), true)),
    );
    let mut plain = Vec::with_capacity(wire::len(&personal));
    wire::put(&personal, &mut plain);
    let mut sealed = Vec::new();
    key.seal_into(&plain, &mut sealed)?;
    if !record.list_unsubscribes.is_empty() {
        // Rare (see `AddressRecord::encode_after`): through the message, with a copy of the
        // record whose personal fields are emptied.
        let mut rest = record.clone();
        if let Some(s) = rest.suppression.as_mut() {
            s.smtp_response.clear();
        }
        if let Some(r) = rest.replaced_by.as_mut() {
            r.clear();
        }
        if let Some(p) = rest.pending_validation.as_mut() {
            p.replaces.clear();
        }
        for u in &mut rest.list_unsubscribes {
            u.smtp_response.clear();
        }
        let stored = StoredAddress {
            address: String::new(),
            record: rest,
            key_slot: Some(slot),
            sealed,
        };
        return encode_message_after(&stored.to_message(), RECORD_VERSION)
            .map_err(|e| StoreError::Encode(Box::new(e)));
    }
    Ok(encode_address(
        record,
        RECORD_VERSION,
        "",
        Some(slot),
        &sealed,
        true,
    ))
}

fn suppression_message(s: &Suppression) -> SuppressionMessage {
    SuppressionMessage {
        reason: s.reason.number(),
        bounce_type: s.bounce_type.map(Numbered::number),
        since_micros: s.since.micros(),
        source: s.source.clone(),
        smtp_response: s.smtp_response.clone(),
        event_id: s.event_id.clone(),
        rule_id: s.rule_id.clone(),
        expires_at_micros: s.expires_at.map(Timestamp::micros),
        list_id: s.list_id.clone(),
    }
}

fn suppression_from(s: SuppressionMessage) -> Result<Suppression, RecordError> {
    Ok(Suppression {
        reason: BounceReason::required(s.reason)?,
        bounce_type: s.bounce_type.map(BounceType::required).transpose()?,
        since: Timestamp(s.since_micros),
        source: s.source,
        smtp_response: s.smtp_response,
        event_id: s.event_id,
        rule_id: s.rule_id,
        expires_at: s.expires_at_micros.map(Timestamp),
        list_id: s.list_id,
    })
}

/// `prefix` followed by `message`, in a vector of exactly that size.
fn encode_message_after<M: Message>(
    message: &M,
    prefix: u8,
) -> Result<Vec<u8>, prost::EncodeError> {
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(prefix);
    message.encode(&mut out)?;
    Ok(out)
}

/// The bytes of an [`AddressMessage`] after `prefix`, written straight from the record and the
/// stored fields beside it (the same bytes as prost's, in tag order: see the tests); `blank`
/// leaves out the record's personal fields (they are in `sealed`).
fn encode_address(
    record: &AddressRecord,
    prefix: u8,
    address: &str,
    key_slot: Option<u64>,
    sealed: &[u8],
    blank: bool,
) -> Vec<u8> {
    fn personal(blank: bool, text: &str) -> &str {
        if blank {
            ""
        } else {
            text
        }
    }
    let suppression = record.suppression.as_ref().map(|s| {
        let bounce_type = s.bounce_type.map(|t| i64::from(t.number()));
        [
            (1, Field::Int(s.reason.number().into()), false),
            // `optional`: present when set, absent for a manual suppression
            (
                2,
                Field::Int(bounce_type.unwrap_or(0)),
                bounce_type.is_some(),
            ),
            (3, Field::Int(s.since.micros()), false),
            (4, Field::Str(&s.source), false),
            (5, Field::Str(personal(blank, &s.smtp_response)), false),
            (6, Field::Str(&s.event_id), false),
            (7, Field::Str(&s.rule_id), false),
            // `optional`: present when set
            (
                8,
                Field::Int(s.expires_at.map_or(0, Timestamp::micros)),
                s.expires_at.is_some(),
            ),
            (9, Field::Str(&s.list_id), false),
        ]
    });
    let replacement = record.pending_validation.as_ref().map(|r| {
        [
            (1, Field::Str(personal(blank, &r.replaces)), false),
            (2, Field::Int(r.evidence.number().into()), false),
            (3, Field::Float(r.confidence), false),
            (4, Field::Int(r.at.micros()), false),
        ]
    });
    // Timestamps are i64 microseconds already: the packed field borrows them.
    let soft: Vec<i64> = record.soft_bounces.iter().map(|t| t.micros()).collect();
    let suppression_header = suppression
        .as_ref()
        .map(|f| [(1, Field::Message(wire::len(f)), true)]);
    let fields = [
        (2, Field::Packed(&soft), false),
        (
            3,
            Field::Int(record.last_delivered.map_or(0, Timestamp::micros)),
            record.last_delivered.is_some(),
        ),
        (
            4,
            Field::Str(personal(blank, record.replaced_by.as_deref().unwrap_or(""))),
            record.replaced_by.is_some(),
        ),
        (5, Field::Bool(record.needs_enrichment), false),
    ];
    let replacement_header = replacement
        .as_ref()
        .map(|f| [(6, Field::Message(wire::len(f)), true)]);
    let none: &wire::Fields<'_> = &[];
    let parts: [&wire::Fields<'_>; 5] = [
        suppression_header.as_ref().map_or(none, |h| &h[..]),
        suppression.as_ref().map_or(none, |f| &f[..]),
        &fields,
        replacement_header.as_ref().map_or(none, |h| &h[..]),
        replacement.as_ref().map_or(none, |f| &f[..]),
    ];
    // A message's header counts its body: the bodies (parts 1 and 4) are not counted again.
    let len = wire::len(parts[0]) + wire::len(parts[2]) + wire::len(parts[3]);
    let stored = [
        (7, Field::Str(address), false),
        (9, Field::Bool(record.forgotten), false),
        (
            11,
            Field::Int(record.engaged_at.map_or(0, Timestamp::micros)),
            record.engaged_at.is_some(),
        ),
        (20, Field::Uint(key_slot.unwrap_or(0)), key_slot.is_some()),
        (21, Field::Bytes(sealed), false),
    ];
    let mut out = Vec::with_capacity(1 + len + wire::len(&stored));
    out.push(prefix);
    for part in parts {
        wire::put(part, &mut out);
    }
    wire::put(&stored, &mut out);
    out
}

impl Record for StoredHistory {
    type Message = HistoryMessage;

    fn to_message(&self) -> HistoryMessage {
        HistoryMessage {
            entry: Some(match self {
                StoredHistory::Event(id) => HistoryKind::EventId(id.clone()),
                StoredHistory::Change(c) => HistoryKind::Change(change_message(c)),
            }),
        }
    }

    fn from_message(m: HistoryMessage) -> Result<Self, RecordError> {
        Ok(match m.entry.ok_or(RecordError::Missing("entry"))? {
            HistoryKind::EventId(id) => StoredHistory::Event(id),
            HistoryKind::Change(c) => StoredHistory::Change(change_from(c)?),
        })
    }
}

fn change_message(c: &StateChange) -> StateChangeMessage {
    StateChangeMessage {
        kind: c.kind.number(),
        reason: c.reason.number(),
        actor: c.actor.clone(),
        note: c.note.clone(),
        event_id: c.event_id.clone(),
        at_micros: c.at.micros(),
        on_behalf_of: c.on_behalf_of.clone(),
    }
}

fn change_from(c: StateChangeMessage) -> Result<StateChange, RecordError> {
    Ok(StateChange {
        kind: StateChangeKind::required(c.kind)?,
        reason: BounceReason::required(c.reason)?,
        actor: c.actor,
        note: c.note,
        event_id: c.event_id,
        at: Timestamp(c.at_micros),
        on_behalf_of: c.on_behalf_of,
    })
}

impl Record for StoredAddress {
    type Message = AddressMessage;

    fn to_message(&self) -> AddressMessage {
        AddressMessage {
            address: self.address.clone(),
            key_slot: self.key_slot,
            sealed: self.sealed.clone(),
            ..self.record.to_message()
        }
    }

    fn encode_after(&self, prefix: u8) -> Result<Vec<u8>, prost::EncodeError> {
        if !self.record.list_unsubscribes.is_empty() {
            return encode_message_after(&self.to_message(), prefix);
        }
        Ok(encode_address(
            &self.record,
            prefix,
            &self.address,
            self.key_slot,
            &self.sealed,
            false,
        ))
    }

    fn from_message(mut m: AddressMessage) -> Result<Self, RecordError> {
        let address = std::mem::take(&mut m.address);
        let key_slot = m.key_slot.take();
        let sealed = std::mem::take(&mut m.sealed);
        Ok(StoredAddress {
            address,
            record: AddressRecord::from_message(m)?,
            key_slot,
            sealed,
        })
    }
}

/// The personal fields of a change of an address's list, as the plain bytes to seal under its
/// data key; `change` keeps the rest, with those fields emptied.
pub(super) fn take_change_personal(change: &mut ListChange) -> Vec<u8> {
    PersonalChangeMessage {
        address: std::mem::take(&mut change.address),
        domain: std::mem::take(&mut change.domain),
        smtp_response: change
            .suppression
            .as_mut()
            .map(|s| std::mem::take(&mut s.smtp_response))
            .unwrap_or_default(),
        note: std::mem::take(&mut change.note),
    }
    .encode_to_vec()
}

/// Puts the personal fields of `plain` (as [`take_change_personal`] made them) back.
pub(super) fn restore_change_personal(
    plain: &[u8],
    change: &mut ListChange,
) -> Result<(), RecordError> {
    let personal = PersonalChangeMessage::decode(plain)?;
    change.address = personal.address;
    change.domain = personal.domain;
    change.note = personal.note;
    if let Some(s) = change.suppression.as_mut() {
        s.smtp_response = personal.smtp_response;
    }
    Ok(())
}

/// Puts the personal fields of `plain` (as [`sealed_address`] sealed them) back into `stored`.
pub(super) fn restore_personal(
    plain: &[u8],
    stored: &mut StoredAddress,
) -> Result<(), RecordError> {
    let personal = PersonalMessage::decode(plain)?;
    stored.address = personal.address;
    if let Some(s) = stored.record.suppression.as_mut() {
        s.smtp_response = personal.smtp_response;
    }
    if stored.record.replaced_by.is_some() {
        stored.record.replaced_by = personal.replaced_by;
    }
    if let Some(p) = stored.record.pending_validation.as_mut() {
        p.replaces = personal.replaces;
    }
    for (u, note) in stored
        .record
        .list_unsubscribes
        .iter_mut()
        .zip(personal.list_notes)
    {
        u.smtp_response = note;
    }
    Ok(())
}

impl Record for StoredEntry {
    type Message = EntryMessage;

    fn to_message(&self) -> EntryMessage {
        EntryMessage {
            event: self.event.as_ref().map(Record::to_message),
            changes: self.changes.iter().map(change_message).collect(),
        }
    }

    fn encode_after(&self, prefix: u8) -> Result<Vec<u8>, prost::EncodeError> {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
        // The event through its own encoder (its bytes after a throw-away prefix byte), then
        // the changes as messages.
        let event = self.event.as_ref().map(|e| e.encode_after(0)).transpose()?;
        let event_bytes = event.as_ref().map_or(&[][..], |e| &e[1..]);
        let changes: Vec<StateChangeMessage> = self.changes.iter().map(change_message).collect();
        let mut len = 1 + prost::encoding::message::encoded_len_repeated(2, &changes);
        if event.is_some() {
            len += 1 + encoded_len_varint(event_bytes.len() as u64) + event_bytes.len();
        }
        let mut out = Vec::with_capacity(len);
        out.push(prefix);
        if event.is_some() {
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(event_bytes.len() as u64, &mut out);
            out.extend_from_slice(event_bytes);
        }
        for c in &changes {
            prost::encoding::message::encode(2, c, &mut out);
        }
        Ok(out)
    }

    fn from_message(m: EntryMessage) -> Result<Self, RecordError> {
        Ok(StoredEntry {
            event: m.event.map(RecordedEvent::from_message).transpose()?,
            changes: m
                .changes
                .into_iter()
                .map(change_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Record for StoredChange {
    type Message = ChangeMessage;

    fn to_message(&self) -> ChangeMessage {
        let c = &self.change;
        // The suppression is stored as an address record's: one encoding of its fields.
        let suppression = c.suppression.clone().and_then(|s| {
            AddressRecord {
                suppression: Some(s),
                ..AddressRecord::default()
            }
            .to_message()
            .suppression
        });
        ChangeMessage {
            kind: c.kind.number(),
            ah: self.ah.map(|ah| ah.bytes().to_vec()).unwrap_or_default(),
            address: c.address.clone(),
            domain: c.domain.clone(),
            suppression,
            actor: c.actor.clone(),
            note: c.note.clone(),
            at_micros: c.at.micros(),
            key_slot: self.key_slot,
            sealed: self.sealed.clone(),
        }
    }

    fn from_message(m: ChangeMessage) -> Result<Self, RecordError> {
        let suppression = AddressRecord::from_message(AddressMessage {
            suppression: m.suppression,
            ..AddressMessage::default()
        })?
        .suppression;
        let ah = match m.ah.len() {
            0 => None,
            _ => Some(AddressHash::from_slice(&m.ah).ok_or(RecordError::Missing("ah"))?),
        };
        Ok(StoredChange {
            ah,
            key_slot: m.key_slot,
            sealed: m.sealed,
            change: ListChange {
                seq: 0,
                kind: ChangeKind::required(m.kind)?,
                address: m.address,
                address_id: ah.map(|ah| ah.id()).unwrap_or_default(),
                domain: m.domain,
                suppression,
                actor: m.actor,
                note: m.note,
                at: Timestamp(m.at_micros),
            },
        })
    }
}

impl Record for DomainMarks {
    type Message = DomainMessage;

    fn to_message(&self) -> DomainMessage {
        DomainMessage {
            suppression: self.suppression.as_ref().map(|s| DomainSuppressionMessage {
                reason: s.reason.number(),
                since_micros: s.since.micros(),
                include_subdomains: s.include_subdomains,
                automatic: s.automatic,
                note: s.note.clone(),
                actor: s.actor.clone(),
                event_id: s.event_id.clone(),
            }),
            accept_all: self.accept_all.as_ref().map(|a| AcceptAllMessage {
                origin: a.origin.number(),
                note: a.note.clone(),
                since_micros: a.since.micros(),
                actor: a.actor.clone(),
            }),
        }
    }

    fn from_message(m: DomainMessage) -> Result<Self, RecordError> {
        Ok(DomainMarks {
            suppression: match m.suppression {
                Some(s) => Some(DomainSuppression {
                    reason: BounceReason::required(s.reason)?,
                    since: Timestamp(s.since_micros),
                    include_subdomains: s.include_subdomains,
                    automatic: s.automatic,
                    note: s.note,
                    actor: s.actor,
                    event_id: s.event_id,
                }),
                None => None,
            },
            accept_all: match m.accept_all {
                Some(a) => Some(AcceptAll {
                    origin: AcceptAllOrigin::required(a.origin)?,
                    note: a.note,
                    since: Timestamp(a.since_micros),
                    actor: a.actor,
                }),
                None => None,
            },
        })
    }
}

impl Record for DomainActivity {
    type Message = DomainActivityMessage;

    fn to_message(&self) -> DomainActivityMessage {
        DomainActivityMessage {
            last_delivered_micros: self.last_delivered.map(Timestamp::micros),
            recent_not_found: self
                .recent_not_found
                .iter()
                .map(|b| RecentBounceMessage {
                    address: b.address,
                    at_micros: b.at.micros(),
                })
                .collect(),
            bounced_after_delivery: self.bounced_after_delivery,
        }
    }

    fn from_message(m: DomainActivityMessage) -> Result<Self, RecordError> {
        Ok(DomainActivity {
            last_delivered: m.last_delivered_micros.map(Timestamp),
            recent_not_found: m
                .recent_not_found
                .into_iter()
                .map(|b| RecentBounce {
                    address: b.address,
                    at: Timestamp(b.at_micros),
                })
                .collect(),
            bounced_after_delivery: m.bounced_after_delivery,
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
            unsubscribe: c.unsubscribe,
            to_accept_all_domains: c.to_accept_all,
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
            unsubscribe: c.unsubscribe,
            to_accept_all: c.to_accept_all_domains,
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

/// The stored number of an outcome type (the numbering of every record), for the columns of
/// the postgres engine.
pub(super) fn bounce_type_number(t: BounceType) -> i32 {
    t.number()
}

/// The stored number of a bounce reason.
pub(super) fn reason_number(r: BounceReason) -> i32 {
    r.number()
}

/// The stored number of a change log entry's kind.
pub(super) fn change_kind_number(k: ChangeKind) -> i32 {
    k.number()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_event() -> RecordedEvent {
        RecordedEvent {
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
            list_id: String::new(),
        }
    }

    #[test]
    fn a_required_enum_that_is_missing_or_unknown_is_refused_not_guessed() {
        let mut m = sample_event().to_message();
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

    /// Values where "default" and "absent" differ: the straight writers must leave out and
    /// keep the same fields as the prost messages.
    #[test]
    fn straight_writers_give_the_bytes_of_the_messages_on_edge_values() {
        let mut event = sample_event();
        event.enhanced_status = Some(String::new());
        event.occurred_at = Timestamp(-5);
        event.recorded_at = Timestamp(0);
        event.classification.confidence = -0.0;
        event.classification.rule_id = "".into();
        event.rules_version = u32::MAX;
        let mut events = vec![event.clone()];
        event.enhanced_status = None;
        event.classification.confidence = f32::NAN;
        events.push(event.clone());
        event.list_id = "newsletter-weekly".into();
        event.classification.bounce_type = BounceType::Unsubscribe;
        events.push(event);
        for e in &events {
            let straight = e.encode_after(RECORD_VERSION).unwrap();
            assert_eq!(straight[1..], e.to_message().encode_to_vec(), "{e:?}");
            assert_eq!(straight.len(), straight.capacity());
        }
        let expiring = Suppression {
            reason: BounceReason::Unsubscribed,
            bounce_type: Some(BounceType::Unsubscribe),
            since: Timestamp(5),
            source: "prefs".into(),
            smtp_response: String::new(),
            event_id: "u1".into(),
            rule_id: "label.unsubscribe".into(),
            // Present though zero: an `optional` field keeps it.
            expires_at: Some(Timestamp(0)),
            list_id: String::new(),
        };
        let records = [
            AddressRecord::default(),
            AddressRecord {
                suppression: Some(expiring.clone()),
                ..AddressRecord::default()
            },
            AddressRecord {
                suppression: Some(Suppression {
                    expires_at: Some(Timestamp(-3)),
                    ..expiring.clone()
                }),
                list_unsubscribes: vec![
                    Suppression {
                        list_id: "weekly".into(),
                        expires_at: None,
                        ..expiring.clone()
                    },
                    Suppression {
                        list_id: "daily".into(),
                        ..expiring.clone()
                    },
                ],
                last_delivered: Some(Timestamp(7)),
                ..AddressRecord::default()
            },
            AddressRecord {
                suppression: Some(Suppression {
                    reason: BounceReason::Manual,
                    bounce_type: None,
                    since: Timestamp(0),
                    source: String::new(),
                    smtp_response: String::new(),
                    event_id: String::new(),
                    rule_id: String::new(),
                    expires_at: None,
                    list_id: String::new(),
                }),
                soft_bounces: vec![Timestamp(-1), Timestamp(0), Timestamp(i64::MAX)],
                last_delivered: Some(Timestamp(0)),
                replaced_by: Some(String::new()),
                needs_enrichment: false,
                pending_validation: Some(Replacement {
                    replaces: String::new(),
                    evidence: EvidenceKind::TypoFix,
                    confidence: 0.0,
                    at: Timestamp(i64::MIN),
                }),
                list_unsubscribes: Vec::new(),
                engaged_at: Some(Timestamp(0)),
                forgotten: false,
            },
            AddressRecord {
                engaged_at: Some(Timestamp(-7)),
                ..AddressRecord::default()
            },
            AddressRecord {
                suppression: Some(Suppression {
                    reason: BounceReason::MailboxNotFound,
                    bounce_type: Some(BounceType::Hard),
                    since: Timestamp(7),
                    source: "forget".into(),
                    smtp_response: String::new(),
                    event_id: String::new(),
                    rule_id: "r".into(),
                    expires_at: None,
                    list_id: String::new(),
                }),
                forgotten: true,
                ..AddressRecord::default()
            },
        ];
        for r in &records {
            let straight = r.encode_after(RECORD_VERSION).unwrap();
            assert_eq!(straight[1..], r.to_message().encode_to_vec(), "{r:?}");
            assert_eq!(straight.len(), straight.capacity());
            assert_eq!(
                &decode::<AddressRecord>(b"k", &encode(r).unwrap()).unwrap(),
                r
            );
            let plain = ["", "jo@example.com"]
                .map(|address| StoredAddress::plain(address.into(), r.clone()));
            let sealed = [0, 1, u64::MAX].map(|slot| StoredAddress {
                key_slot: Some(slot),
                sealed: vec![slot as u8; 40],
                ..StoredAddress::plain(String::new(), r.clone())
            });
            for stored in plain.iter().chain(&sealed) {
                let straight = stored.encode_after(RECORD_VERSION).unwrap();
                assert_eq!(straight[1..], stored.to_message().encode_to_vec());
                assert_eq!(straight.len(), straight.capacity());
                assert_eq!(&decode::<StoredAddress>(b"k", &straight).unwrap(), stored);
            }
        }
        let change = StateChange {
            kind: crate::domain::StateChangeKind::Suppressed,
            reason: BounceReason::MailboxNotFound,
            actor: "system".into(),
            on_behalf_of: String::new(),
            note: "n".into(),
            event_id: "e".into(),
            at: Timestamp(1),
        };
        let entries = [
            StoredEntry {
                event: Some(events[0].clone()),
                changes: vec![],
            },
            StoredEntry {
                event: Some(events[0].clone()),
                changes: vec![change.clone(), change.clone()],
            },
            StoredEntry {
                event: None,
                changes: vec![change],
            },
        ];
        for e in &entries {
            let straight = e.encode_after(RECORD_VERSION).unwrap();
            assert_eq!(straight[1..], e.to_message().encode_to_vec(), "{e:?}");
            assert_eq!(straight.len(), straight.capacity());
            assert_eq!(&decode::<StoredEntry>(b"k", &straight).unwrap(), e);
        }
    }

    #[test]
    fn a_sealed_record_keeps_its_personal_fields_only_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (keyring, _) = super::super::keyring::Keyring::open(dir.path(), None).unwrap();
        let (slot, key) = keyring.allocate().unwrap();
        let record = AddressRecord {
            suppression: Some(Suppression {
                reason: BounceReason::MailboxNotFound,
                bounce_type: Some(BounceType::Hard),
                since: Timestamp(7),
                source: "signup-form".into(),
                smtp_response: "550 5.1.1 <jo.private@example.com> unknown".into(),
                event_id: "e1".into(),
                rule_id: "r".into(),
                expires_at: None,
                list_id: String::new(),
            }),
            list_unsubscribes: vec![Suppression {
                reason: BounceReason::Unsubscribed,
                bounce_type: None,
                since: Timestamp(5),
                source: "preferences".into(),
                smtp_response: "jo.private left the list".into(),
                event_id: String::new(),
                rule_id: String::new(),
                expires_at: None,
                list_id: "weekly".into(),
            }],
            replaced_by: Some("jo.new@example.com".into()),
            pending_validation: Some(Replacement {
                replaces: "jo.old@example.com".into(),
                evidence: EvidenceKind::TypoFix,
                confidence: 1.0,
                at: Timestamp(3),
            }),
            ..AddressRecord::default()
        };
        // Straight from the record, and (with list unsubscribes) through the message.
        let mut without_lists = record.clone();
        without_lists.list_unsubscribes.clear();
        for record in [without_lists, record] {
            let bytes = sealed_address("jo.private@example.com", &record, slot, &key).unwrap();
            for text in ["jo.private", "jo.new", "jo.old", "unknown", "left the list"] {
                assert!(
                    !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
                    "{text}"
                );
            }
            let mut stored: StoredAddress = decode(b"k", &bytes).unwrap();
            assert_eq!(stored.key_slot, Some(slot));
            assert_eq!(stored.address, "");
            assert_eq!(
                stored.record.suppression.as_ref().unwrap().source,
                "signup-form"
            );
            assert_eq!(
                stored.record.suppression.as_ref().unwrap().smtp_response,
                ""
            );
            // The bytes are prost's for that message.
            assert_eq!(bytes[1..], stored.to_message().encode_to_vec());
            let plain = key.open(&std::mem::take(&mut stored.sealed)).unwrap();
            restore_personal(&plain, &mut stored).unwrap();
            assert_eq!(stored.address, "jo.private@example.com");
            assert_eq!(stored.record, record);
        }
    }

    #[test]
    fn a_value_of_an_unknown_version_is_refused_with_its_key() {
        let err = decode::<u64>(b"Kacme\0x.com", &[9, 1, 2]).unwrap_err();
        assert!(err.to_string().contains("Kacme"), "{err}");
        let cause = std::error::Error::source(&err).expect("the cause is kept");
        assert_eq!(cause.to_string(), "unknown record version 9");
    }

    #[test]
    fn domain_marks_and_activity_round_trip() {
        let marks = DomainMarks {
            suppression: Some(DomainSuppression {
                reason: BounceReason::DomainNotFound,
                since: Timestamp(5),
                include_subdomains: true,
                automatic: true,
                note: "3 addresses".into(),
                actor: "system".into(),
                event_id: "e3".into(),
            }),
            accept_all: Some(AcceptAll {
                origin: AcceptAllOrigin::Inferred,
                note: "n".into(),
                since: Timestamp(-1),
                actor: "system".into(),
            }),
        };
        for m in [marks, DomainMarks::default()] {
            assert_eq!(
                decode::<DomainMarks>(b"k", &encode(&m).unwrap()).unwrap(),
                m
            );
        }
        let activity = DomainActivity {
            last_delivered: Some(Timestamp(3_600_000_000)),
            recent_not_found: vec![RecentBounce {
                address: u64::MAX,
                at: Timestamp(9),
            }],
            bounced_after_delivery: 2,
        };
        for a in [activity, DomainActivity::default()] {
            assert_eq!(
                decode::<DomainActivity>(b"k", &encode(&a).unwrap()).unwrap(),
                a
            );
        }
    }

    #[test]
    fn counts_keep_results_to_accept_all_domains() {
        let c = OutcomeCounts {
            sent: 3,
            delivered: 2,
            to_accept_all: 2,
            ..OutcomeCounts::default()
        };
        assert_eq!(
            decode::<OutcomeCounts>(b"k", &encode(&c).unwrap()).unwrap(),
            c
        );
    }
}
