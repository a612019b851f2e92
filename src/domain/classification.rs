//! What a send result was, as the reporter labelled it and as the service judged it.
//!
//! These types are shared by the classifier (which decides), the policy (which acts on the
//! decision) and the store (which records it). They know nothing of the wire or the disk.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The outcome as the reporting system (ESP, MTA, webhook) labelled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportedOutcome {
    /// The message was accepted by the receiving server.
    Delivered,
    /// The reporter calls it a permanent failure.
    HardBounce,
    /// The reporter calls it a temporary failure.
    SoftBounce,
    /// The reporter calls it a rejection because of the sender, the message or a policy.
    Block,
    /// The recipient marked the message as spam (feedback loop).
    Complaint,
    /// "It bounced; you decide": the reporter does not classify.
    Bounce,
    /// The recipient unsubscribed (a List-Unsubscribe click, a preference centre).
    Unsubscribe,
}

/// The service's own judgement of a send result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceType {
    /// Permanent, the address itself is bad: suppress now.
    Hard,
    /// Temporary: counts toward escalation.
    Soft,
    /// Rejected because of the sender, the message or a policy: never suppresses the recipient.
    Block,
    /// A spam complaint: suppress now.
    Complaint,
    /// Accepted by the receiving server.
    Delivered,
    /// The recipient unsubscribed: suppress now (for one list, or for every mail). Not a bounce.
    Unsubscribe,
}

/// Why a send result turned out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceReason {
    /// Nothing went wrong (delivered).
    None,
    /// The mailbox does not exist.
    MailboxNotFound,
    /// The domain does not exist, has no MX, or publishes a null MX.
    DomainNotFound,
    /// The address is syntactically invalid.
    InvalidAddress,
    /// The mailbox exists but is disabled, suspended, expired or inactive.
    MailboxDisabled,
    /// The recipient refuses mail (group restrictions, not authorized to receive, moved).
    RecipientRejected,
    /// The mailbox is over quota.
    MailboxFull,
    /// The message exceeds a size limit.
    MessageTooLarge,
    /// Too fast, too many connections or recipients, deferred for volume.
    RateLimited,
    /// Greylisting, timeouts, busy servers, expiry after retries, DNS temporary failure.
    TemporaryFailure,
    /// The sending IP or domain is blocked (reputation, blocklists, PTR).
    SenderBlocked,
    /// The content was rejected (spam, virus, content policy).
    ContentRejected,
    /// SPF, DKIM, DMARC or sender verification failed.
    AuthenticationFailed,
    /// The recipient complained.
    Complaint,
    /// Suppressed by an operator.
    Manual,
    /// Suppressed after repeated soft bounces.
    RepeatedSoftBounce,
    /// No evidence either way.
    Unknown,
    /// The recipient unsubscribed.
    Unsubscribed,
}

impl BounceReason {
    /// Every reason a suppression can have (every reason but `None`).
    pub const SUPPRESSING: [BounceReason; 17] = [
        BounceReason::MailboxNotFound,
        BounceReason::DomainNotFound,
        BounceReason::InvalidAddress,
        BounceReason::MailboxDisabled,
        BounceReason::RecipientRejected,
        BounceReason::MailboxFull,
        BounceReason::MessageTooLarge,
        BounceReason::RateLimited,
        BounceReason::TemporaryFailure,
        BounceReason::SenderBlocked,
        BounceReason::ContentRejected,
        BounceReason::AuthenticationFailed,
        BounceReason::Complaint,
        BounceReason::Manual,
        BounceReason::RepeatedSoftBounce,
        BounceReason::Unknown,
        BounceReason::Unsubscribed,
    ];

    /// The reason's name as operators write it (`mailbox-full`, `repeated-soft-bounce`): the
    /// proto name without its prefix, in kebab case.
    pub fn name(self) -> &'static str {
        match self {
            BounceReason::None => "none",
            BounceReason::MailboxNotFound => "mailbox-not-found",
            BounceReason::DomainNotFound => "domain-not-found",
            BounceReason::InvalidAddress => "invalid-address",
            BounceReason::MailboxDisabled => "mailbox-disabled",
            BounceReason::RecipientRejected => "recipient-rejected",
            BounceReason::MailboxFull => "mailbox-full",
            BounceReason::MessageTooLarge => "message-too-large",
            BounceReason::RateLimited => "rate-limited",
            BounceReason::TemporaryFailure => "temporary-failure",
            BounceReason::SenderBlocked => "sender-blocked",
            BounceReason::ContentRejected => "content-rejected",
            BounceReason::AuthenticationFailed => "authentication-failed",
            BounceReason::Complaint => "complaint",
            BounceReason::Manual => "manual",
            BounceReason::RepeatedSoftBounce => "repeated-soft-bounce",
            BounceReason::Unknown => "unknown",
            BounceReason::Unsubscribed => "unsubscribed",
        }
    }

    /// The suppressing reason named `name` (see [`BounceReason::name`]).
    pub fn from_name(name: &str) -> Option<BounceReason> {
        BounceReason::SUPPRESSING
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// True for reasons that say the address itself is bad (as opposed to the sender, the
    /// message or a passing condition). Such suppressions may later be corrected by replacement.
    pub fn is_address_level(self) -> bool {
        matches!(
            self,
            BounceReason::MailboxNotFound
                | BounceReason::DomainNotFound
                | BounceReason::InvalidAddress
                | BounceReason::MailboxDisabled
        )
    }
}

/// The classifier's verdict on one send result.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The service's outcome type.
    pub bounce_type: BounceType,
    /// The reason behind it.
    pub reason: BounceReason,
    /// Id of the rule that decided, recorded on the event so decisions can be audited.
    pub rule_id: RuleId,
    /// How sure the deciding rule is, 0.0 to 1.0.
    pub confidence: f32,
    /// True when the reporter's label implies a different outcome type.
    pub disagrees_with_reporter: bool,
}

/// The id of a classification rule (`gmail.user_unknown`, `status.5.1.1`, `label.hard`).
///
/// Shared, not copied: the classifier hands out the ids of its compiled rules with a reference
/// count, so a verdict costs no allocation. Stored and sent as a plain string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(Arc<str>);

impl RuleId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for RuleId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RuleId {
    fn from(s: &str) -> Self {
        RuleId(Arc::from(s))
    }
}

impl From<String> for RuleId {
    fn from(s: String) -> Self {
        RuleId(Arc::from(s))
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Everything the classifier looks at for one send result.
#[derive(Debug, Clone, Copy)]
pub struct SmtpEvidence<'a> {
    /// The reporter's label.
    pub reported: ReportedOutcome,
    /// Raw SMTP response or diagnostic text; may be empty. May hold a reply code, an enhanced
    /// status code, `smtp;` prefixes and multi-line `550-` continuations.
    pub smtp_response: &'a str,
    /// Enhanced status code given separately by the reporter (`5.1.1`), if any.
    pub enhanced_status: Option<&'a str>,
    /// Which ESP/MTA reported it (free text, e.g. "ses", "postfix"); may be empty.
    pub provider: &'a str,
}
