//! Validated domain types. Nothing here knows the wire format or the storage engine.

mod address;
mod change;
mod classification;
mod label;
mod mail_domain;
mod principal;
mod record;
mod stats;
mod tenant;
mod time;

pub use address::{AddressError, EmailAddress, MAX_ADDRESS_LEN};
pub use change::{list_change, ChangeKind, ListChange};
pub use classification::{
    BounceReason, BounceType, Classification, ReportedOutcome, RuleId, SmtpEvidence,
};
pub use label::{
    parse_smtp_response, Campaign, Label, LabelError, ListId, Note, Segment, Source,
    MAX_LABEL_CHARS, MAX_NOTE_CHARS, MAX_SMTP_RESPONSE_BYTES,
};
pub use mail_domain::{
    self_and_parents, AcceptAll, AcceptAllOrigin, DomainError, DomainMarks, DomainRecord,
    DomainSuppression, MailDomain, RecentBounce,
};
pub use principal::{Principal, Role, TenantScope};
pub use record::{
    AddressId, AddressRecord, EvidenceKind, HistoryEntry, RecordedEvent, Replacement, SendReport,
    StateChange, StateChangeKind, Suppression,
};
pub use stats::{Dimension, OutcomeCounts};
pub use tenant::{Tenant, TenantError};
pub use time::Timestamp;
