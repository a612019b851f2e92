//! Mail domains as the service keeps them: a validated name, and what is known of the domain
//! as a whole (a domain-level suppression, an accept-all mark, and the activity the automatic
//! rules read).

use std::fmt;

use super::address::{normalize_domain, AddressError};
use super::{BounceReason, Suppression, Timestamp};

/// A normalized mail domain: lowercased, in its ASCII (IDNA) form, validated as the domain of
/// an [`super::EmailAddress`] is, so that a domain names exactly the addresses whose
/// `domain()` it equals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailDomain(String);

/// Why a string is not an acceptable mail domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Nothing given.
    #[error("is required")]
    Empty,
    /// An address (or anything with an `@`) where a domain was expected.
    #[error("must be a domain alone (e.g. example.com), without a local part or '@'")]
    HasAt,
    /// Not a valid domain name.
    #[error("{0}")]
    Invalid(AddressError),
}

impl MailDomain {
    /// Normalizes and validates `input` (surrounding whitespace and one trailing root dot are
    /// ignored).
    pub fn parse(input: &str) -> Result<MailDomain, DomainError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(DomainError::Empty);
        }
        if s.contains('@') {
            return Err(DomainError::HasAt);
        }
        normalize_domain(s)
            .map(MailDomain)
            .map_err(DomainError::Invalid)
    }

    /// The normalized domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The domains a suppression of `domain` with subdomains would cover, and `domain` itself:
/// `domain`, then each parent domain (`a.b.example.com`, `b.example.com`, `example.com`,
/// `com`).
pub fn self_and_parents(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |d| {
        d.split_once('.').map(|(_, parent)| parent)
    })
}

/// Why a whole domain is suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainSuppression {
    /// The reason: `Manual`, `DomainNotFound` for the automatic rule, or what an operator gave.
    pub reason: BounceReason,
    /// When the domain became suppressed.
    pub since: Timestamp,
    /// Every domain under it is suppressed too.
    pub include_subdomains: bool,
    /// The service suppressed it (repeated DOMAIN_NOT_FOUND bounces); a later delivery to the
    /// domain lifts it.
    pub automatic: bool,
    /// The operator's note, or what triggered the automatic suppression.
    pub note: String,
    /// Who suppressed it: the principal, or "system".
    pub actor: String,
    /// The latest event that triggered an automatic suppression (empty for manual ones).
    pub event_id: String,
}

/// The source an address's answer names when its domain's suppression answers for it.
pub const DOMAIN_SOURCE: &str = "domain";

impl Suppression {
    /// An address's suppression as its domain's suppression `s` makes it: the domain's reason
    /// and time, source [`DOMAIN_SOURCE`], the note as the response text, and the event that
    /// triggered an automatic one.
    pub fn of_domain(s: DomainSuppression) -> Suppression {
        Suppression {
            reason: s.reason,
            bounce_type: None,
            since: s.since,
            source: DOMAIN_SOURCE.to_string(),
            smtp_response: s.note,
            event_id: s.event_id,
            rule_id: String::new(),
            expires_at: None,
            list_id: String::new(),
        }
    }
}

/// How a domain's accept-all mark came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptAllOrigin {
    /// An operator set it.
    Set,
    /// The service inferred it from deliveries that were later hard-bounced.
    Inferred,
}

/// The mark of a domain that accepts mail for any local part: a delivery there does not prove
/// that the mailbox exists.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptAll {
    /// Set by an operator, or inferred.
    pub origin: AcceptAllOrigin,
    /// The operator's note, or the inference's evidence.
    pub note: String,
    /// When the mark was made.
    pub since: Timestamp,
    /// Who made it: the principal, or "system".
    pub actor: String,
}

impl AcceptAll {
    /// Why an address at `domain` has an uncertain mailbox, in words.
    pub fn cause(&self, domain: &str) -> String {
        match self.origin {
            AcceptAllOrigin::Set => {
                format!("{domain} accepts mail for any address (set by an operator)")
            }
            AcceptAllOrigin::Inferred => format!(
                "{domain} accepts mail for any address (inferred: addresses there were \
                 delivered to and later hard-bounced)"
            ),
        }
    }
}

/// One address's DOMAIN_NOT_FOUND hard bounce, as the automatic rule remembers it: the
/// address by its keyed hash (never its text), and the bounce's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentBounce {
    /// 64 bits of the address's keyed hash.
    pub address: u64,
    /// When it bounced.
    pub at: Timestamp,
}

/// What the service keeps of one domain of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainRecord {
    /// Set while the domain itself is suppressed.
    pub suppression: Option<DomainSuppression>,
    /// Set while the domain is marked accept-all.
    pub accept_all: Option<AcceptAll>,
    /// The start of the hour of the latest delivery to an address at the domain.
    pub last_delivered: Option<Timestamp>,
    /// DOMAIN_NOT_FOUND hard bounces of distinct addresses, oldest first, pruned to the
    /// automatic rule's window.
    pub recent_not_found: Vec<RecentBounce>,
    /// Addresses at the domain that were delivered to and later hard-bounced (the accept-all
    /// inference's evidence).
    pub bounced_after_delivery: u32,
}

impl DomainRecord {
    /// The parts every status lookup needs (kept in memory): the suppression and the
    /// accept-all mark.
    pub fn marks(&self) -> DomainMarks {
        DomainMarks {
            suppression: self.suppression.clone(),
            accept_all: self.accept_all.clone(),
        }
    }
}

/// A domain's suppression and accept-all mark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainMarks {
    /// Set while the domain itself is suppressed.
    pub suppression: Option<DomainSuppression>,
    /// Set while the domain is marked accept-all.
    pub accept_all: Option<AcceptAll>,
}

impl DomainMarks {
    /// True when neither is set.
    pub fn is_empty(&self) -> bool {
        self.suppression.is_none() && self.accept_all.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalized_like_the_domain_of_an_address() {
        assert_eq!(
            MailDomain::parse("  Defunct-Corp.EXAMPLE. ")
                .unwrap()
                .as_str(),
            "defunct-corp.example"
        );
        assert_eq!(
            MailDomain::parse("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(MailDomain::parse(""), Err(DomainError::Empty));
        assert_eq!(MailDomain::parse("a@b.com"), Err(DomainError::HasAt));
        assert_eq!(
            MailDomain::parse("localhost"),
            Err(DomainError::Invalid(AddressError::DomainSingleLabel))
        );
        assert!(MailDomain::parse("exa_mple.com").is_err());
    }

    #[test]
    fn a_domain_is_covered_by_itself_and_each_parent() {
        let all: Vec<&str> = self_and_parents("mail.eu.defunct.example").collect();
        assert_eq!(
            all,
            [
                "mail.eu.defunct.example",
                "eu.defunct.example",
                "defunct.example",
                "example"
            ]
        );
    }
}
