//! Send results, suppressions and history: the records the service keeps.

use super::{
    BounceReason, BounceType, Campaign, Classification, EmailAddress, ListId, ReportedOutcome,
    Segment, Source, Timestamp,
};

/// A validated send result, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct SendReport {
    /// Idempotency key within the tenant.
    pub event_id: String,
    /// The normalized recipient.
    pub address: EmailAddress,
    /// The reporter's label.
    pub outcome: ReportedOutcome,
    /// Raw SMTP response (≤ 4 KiB).
    pub smtp_response: String,
    /// Enhanced status code given separately, if any.
    pub enhanced_status: Option<String>,
    /// Where the contact was acquired.
    pub source: Source,
    /// Campaign of the message.
    pub campaign: Campaign,
    /// Audience segment of the message.
    pub segment: Segment,
    /// The ESP or MTA that reported it.
    pub provider: String,
    /// When it happened (defaults to when it was received).
    pub occurred_at: Timestamp,
    /// For an unsubscribe: the list the recipient left (empty: every list).
    pub list_id: ListId,
}

/// A send result as stored: the report, the service's verdict and bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Idempotency key within the tenant.
    pub event_id: String,
    /// The normalized recipient.
    pub address: String,
    /// The reporter's label.
    pub outcome: ReportedOutcome,
    /// Raw SMTP response.
    pub smtp_response: String,
    /// Enhanced status code given separately, if any.
    pub enhanced_status: Option<String>,
    /// Where the contact was acquired.
    pub source: String,
    /// Campaign of the message.
    pub campaign: String,
    /// Audience segment of the message.
    pub segment: String,
    /// The ESP or MTA that reported it.
    pub provider: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// When the service recorded it.
    pub recorded_at: Timestamp,
    /// The service's classification.
    pub classification: Classification,
    /// Version of the rule set that classified it, so a rule change can be re-applied.
    pub rules_version: u32,
    /// For an unsubscribe: the list the recipient left (empty: every list).
    pub list_id: String,
}

impl RecordedEvent {
    /// Builds the stored form of a validated report.
    pub fn new(
        report: SendReport,
        classification: Classification,
        rules_version: u32,
        recorded_at: Timestamp,
    ) -> RecordedEvent {
        RecordedEvent {
            event_id: report.event_id,
            address: report.address.as_str().to_string(),
            outcome: report.outcome,
            smtp_response: report.smtp_response,
            enhanced_status: report.enhanced_status,
            source: report.source.into_string(),
            campaign: report.campaign.into_string(),
            segment: report.segment.into_string(),
            provider: report.provider,
            occurred_at: report.occurred_at,
            recorded_at,
            classification,
            rules_version,
            list_id: report.list_id.into_string(),
        }
    }

    /// True for the events listed by `ListBounces`: everything but deliveries and unsubscribes.
    pub fn is_bounce(&self) -> bool {
        !matches!(
            self.classification.bounce_type,
            BounceType::Delivered | BounceType::Unsubscribe
        )
    }
}

/// Why an address is suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    /// The reason.
    pub reason: BounceReason,
    /// The outcome type of the deciding event; `None` for manual suppressions.
    pub bounce_type: Option<BounceType>,
    /// When the address became suppressed.
    pub since: Timestamp,
    /// Source of the deciding event, or of the manual request.
    pub source: String,
    /// SMTP response of the deciding event, or the operator's note.
    pub smtp_response: String,
    /// Event id of the deciding event; empty for manual suppressions.
    pub event_id: String,
    /// Rule that classified the deciding event; empty for manual suppressions.
    pub rule_id: String,
    /// When it ends by itself; `None`: it lasts until lifted.
    pub expires_at: Option<Timestamp>,
    /// For an unsubscribe from one list: that list; empty for a suppression of every mail.
    pub list_id: String,
}

impl Suppression {
    /// Whether it blocks mail at instant `t`: always, or until its expiry (from the instant of
    /// its expiry on, it no longer does). The one rule every read and write applies, so that
    /// status lookups, import screening, listings and the write policy agree at every instant,
    /// whether or not the expired suppression has been swept from the record yet.
    pub fn blocks_at(&self, t: Timestamp) -> bool {
        self.expires_at.is_none_or(|end| t < end)
    }
}

/// What backs a replacement of a bad address by a corrected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// A trusted CRM record was corrected by a person.
    CrmCorrection,
    /// The company's known email pattern applied to the contact's name.
    CompanyPattern,
    /// The contact confirmed a replacement address.
    VerifiedReplacement,
    /// An obvious typo in the domain was fixed.
    TypoFix,
}

/// A corrected address that replaced a bad one, until its first delivery validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    /// The bad address it replaces.
    pub replaces: String,
    /// The evidence behind the replacement.
    pub evidence: EvidenceKind,
    /// The caller's confidence, 0.0 to 1.0.
    pub confidence: f32,
    /// When the replacement was made.
    pub at: Timestamp,
}

/// The state the service keeps for one address of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressRecord {
    /// Set while the address is suppressed.
    pub suppression: Option<Suppression>,
    /// Times of soft bounces since the last delivery, oldest first, pruned to the window.
    pub soft_bounces: Vec<Timestamp>,
    /// Time of the latest delivery, if any.
    pub last_delivered: Option<Timestamp>,
    /// For a suppressed bad address: the corrected address that replaced it.
    pub replaced_by: Option<String>,
    /// For a suppressed bad address: a correction was attempted without enough confidence, so
    /// the contact needs enrichment before any outreach.
    pub needs_enrichment: bool,
    /// For a replacement address: set until its first delivery validates it.
    pub pending_validation: Option<Replacement>,
    /// Unsubscribes from single lists (reason `Unsubscribed`, `list_id` set), oldest first, at
    /// most one per list: each blocks only mail of its list.
    pub list_unsubscribes: Vec<Suppression>,
    /// When a person was last seen acting through the mailbox (a complaint, an unsubscribe,
    /// or confirming it as a replacement): proof that the mailbox exists, which a delivery to
    /// an accept-all domain is not.
    pub engaged_at: Option<Timestamp>,
    /// The person's data was erased (`ForgetAddress`): the record keeps only the suppression
    /// that blocks the address (without its SMTP response or note), and nothing changes it
    /// any more.
    pub forgotten: bool,
}

impl AddressRecord {
    /// True while the record holds a suppression of every mail: one in force, or one past its
    /// expiry that the sweep has not cleared yet (see [`AddressRecord::suppression_at`]).
    pub fn is_suppressed(&self) -> bool {
        self.suppression.is_some()
    }

    /// The address's suppression of every mail, if it is in force at `t`.
    pub fn suppression_at(&self, t: Timestamp) -> Option<&Suppression> {
        self.suppression.as_ref().filter(|s| s.blocks_at(t))
    }

    /// The address's unsubscribe from `list`, if it is in force at `t`.
    pub fn list_unsubscribe_at(&self, list: &str, t: Timestamp) -> Option<&Suppression> {
        self.list_unsubscribes
            .iter()
            .find(|s| s.list_id == list && s.blocks_at(t))
    }

    /// What blocks mail to the address at `t`: its suppression of every mail, else, for mail
    /// of list `list`, its unsubscribe from that list. `None`: the address may be mailed.
    pub fn blocking(&self, t: Timestamp, list: Option<&str>) -> Option<&Suppression> {
        self.suppression_at(t)
            .or_else(|| list.and_then(|l| self.list_unsubscribe_at(l, t)))
    }

    /// Takes [`AddressRecord::blocking`]'s answer out of the record (for a caller that needs
    /// the rest of the record and the suppression apart, without copying it).
    pub fn take_blocking(&mut self, t: Timestamp, list: Option<&str>) -> Option<Suppression> {
        if self.suppression_at(t).is_some() {
            return self.suppression.take();
        }
        let list = list?;
        let at = self
            .list_unsubscribes
            .iter()
            .position(|s| s.list_id == list && s.blocks_at(t))?;
        Some(self.list_unsubscribes.swap_remove(at))
    }

    /// The lists the address is unsubscribed from at `t`, oldest unsubscribe first.
    pub fn unsubscribed_lists_at(&self, t: Timestamp) -> impl Iterator<Item = &str> {
        self.list_unsubscribes
            .iter()
            .filter(move |s| s.blocks_at(t))
            .map(|s| s.list_id.as_str())
    }

    /// The instants at which something of the record ends by itself (its suppression, its
    /// unsubscribes from lists), each once, in order: what the store's expiry index holds.
    pub fn expiries(&self) -> Vec<Timestamp> {
        let mut out: Vec<Timestamp> = self
            .suppression
            .iter()
            .chain(&self.list_unsubscribes)
            .filter_map(|s| s.expires_at)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// An address's opaque, stable identifier within its tenant: a keyed hash of the address, the
/// only name a forgotten address still has. Shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressId(pub [u8; 16]);

impl std::fmt::Display for AddressId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What happened to an address's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChangeKind {
    /// Suppressed by a hard bounce or complaint.
    Suppressed,
    /// Suppressed after repeated soft bounces.
    Escalated,
    /// Suppressed by an operator.
    ManuallySuppressed,
    /// Lifted by `Reactivate`.
    Reactivated,
    /// A corrected address replaced this (still suppressed) one.
    Replaced,
    /// A correction was refused for low confidence: the contact needs enrichment.
    MarkedForEnrichment,
    /// This address was set as the replacement of a bad one; it awaits validation.
    ReplacementPending,
    /// A first delivery validated this replacement address.
    Validated,
    /// Newer classification rules lifted the suppression or moved it to another event.
    Reclassified,
    /// The suppression reached its expiry.
    Expired,
    /// The address's personal data was erased; it stays suppressed.
    Forgotten,
    /// The address unsubscribed from one list (the note names it); other mail is unaffected.
    UnsubscribedFromList,
    /// Domain history: the domain was suppressed (by an operator, or automatically).
    DomainSuppressed,
    /// Domain history: the domain's suppression was lifted (by an operator, or by a delivery).
    DomainReactivated,
    /// Domain history: the domain's accept-all mark was set, inferred or cleared.
    DomainPolicyChanged,
}

/// A change of an address's state, kept in its history.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// What happened.
    pub kind: StateChangeKind,
    /// Reason of the suppression set or lifted.
    pub reason: BounceReason,
    /// Who: the caller identity for operator actions, "system" for the service's own.
    pub actor: String,
    /// The justification or note, or what triggered it.
    pub note: String,
    /// Event that triggered it, if any.
    pub event_id: String,
    /// When it happened.
    pub at: Timestamp,
    /// The person an operator tool acted for (its `x-caller-id`), beside the authenticated
    /// actor; empty when none was named.
    pub on_behalf_of: String,
}

/// One entry of an address's history.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryEntry {
    /// A send result reported for the address.
    SendResult(RecordedEvent),
    /// A change of its state.
    StateChange(StateChange),
}

impl HistoryEntry {
    /// When the entry happened.
    pub fn at(&self) -> Timestamp {
        match self {
            HistoryEntry::SendResult(e) => e.occurred_at,
            HistoryEntry::StateChange(c) => c.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suppression(list: &str, expires_at: Option<i64>) -> Suppression {
        Suppression {
            reason: BounceReason::Unsubscribed,
            bounce_type: None,
            since: Timestamp(0),
            source: String::new(),
            smtp_response: String::new(),
            event_id: String::new(),
            rule_id: String::new(),
            expires_at: expires_at.map(Timestamp),
            list_id: list.into(),
        }
    }

    #[test]
    fn what_blocks_is_the_suppression_in_force_else_the_named_lists_unsubscribe() {
        let record = AddressRecord {
            suppression: Some(suppression("", Some(10))),
            list_unsubscribes: vec![suppression("weekly", None), suppression("daily", Some(5))],
            ..AddressRecord::default()
        };
        let list_of = |t: i64, list: Option<&str>| {
            record
                .blocking(Timestamp(t), list)
                .map(|s| s.list_id.clone())
        };
        assert_eq!(list_of(9, None), Some(String::new()));
        assert_eq!(
            list_of(9, Some("weekly")),
            Some(String::new()),
            "every mail first"
        );
        assert_eq!(list_of(10, None), None);
        assert_eq!(list_of(10, Some("weekly")), Some("weekly".into()));
        assert_eq!(list_of(4, Some("daily")), Some(String::new()));
        assert_eq!(
            list_of(10, Some("daily")),
            None,
            "that unsubscribe ended at 5"
        );
        let lists: Vec<&str> = record.unsubscribed_lists_at(Timestamp(10)).collect();
        assert_eq!(lists, ["weekly"]);
        assert_eq!(record.expiries(), [Timestamp(5), Timestamp(10)]);

        let mut taken = record.clone();
        let s = taken.take_blocking(Timestamp(10), Some("weekly")).unwrap();
        assert_eq!(s.list_id, "weekly");
        assert!(taken.suppression.is_some(), "the rest stays");
        assert_eq!(taken.list_unsubscribes.len(), 1);
        assert!(record.clone().take_blocking(Timestamp(10), None).is_none());
    }
}
