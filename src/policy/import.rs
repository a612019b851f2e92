//! Suppressions brought in from another system (an email provider's export): the suppression
//! keeps the original time as its `since`; the history says where it came from, the original
//! reason and date. An address suppressed already (by an earlier import of the same item, or by
//! anything else) is left as it is, so importing the same list again changes nothing.

use super::{expire, suppressed_by_hand, take, EscalationPolicy, Transition};
use crate::domain::{AddressRecord, BounceReason, Suppression, Timestamp};

/// One imported suppression.
#[derive(Debug, Clone, Copy)]
pub struct ImportedSuppress<'a> {
    /// Our reason for it.
    pub reason: BounceReason,
    /// The reason as the other system wrote it.
    pub original_reason: &'a str,
    /// When the other system suppressed the address.
    pub original_time: Timestamp,
    /// Where it comes from (`import:sendgrid`).
    pub source: &'a str,
    /// Who imports it.
    pub actor: &'a str,
    /// When it is imported.
    pub now: Timestamp,
    /// For an unsubscribe from one list: the list (empty: every mail).
    pub list_id: &'a str,
}

/// The history note of an imported suppression: source, original reason and date.
pub fn import_note(source: &str, original_reason: &str, original_time: Timestamp) -> String {
    let reason = if original_reason.is_empty() {
        "no reason given"
    } else {
        original_reason
    };
    format!("{source}: \"{reason}\" at {}", original_time.to_rfc3339())
}

impl EscalationPolicy {
    /// Records an imported suppression. `None` when the address is already suppressed so
    /// (nothing changes). Its lifetime, if its reason has one, counts from `now`.
    pub fn import_suppression(
        &self,
        current: Option<&AddressRecord>,
        request: ImportedSuppress<'_>,
    ) -> Option<Transition> {
        let ImportedSuppress {
            reason,
            original_reason,
            original_time,
            source,
            actor,
            now,
            list_id,
        } = request;
        let mut record = current.cloned().unwrap_or_default();
        let mut changes = expire(&mut record, now);
        let new = Suppression {
            reason,
            bounce_type: None,
            since: original_time,
            source: source.to_string(),
            smtp_response: original_reason.to_string(),
            event_id: String::new(),
            rule_id: String::new(),
            expires_at: self.ttl.expires_at(reason, now),
            list_id: list_id.to_string(),
        };
        let existing = if list_id.is_empty() {
            record.suppression.as_ref()
        } else {
            record
                .list_unsubscribes
                .iter()
                .find(|s| s.list_id == list_id)
        };
        if existing.is_some() {
            return None;
        }
        take(&mut record, new).ok()?;
        let note = import_note(source, original_reason, original_time);
        changes.push(suppressed_by_hand(reason, list_id, &note, actor, now));
        Some(Transition { record, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StateChangeKind;

    const DAY: i64 = 86_400_000_000;

    fn item(list_id: &str) -> ImportedSuppress<'_> {
        ImportedSuppress {
            reason: BounceReason::Complaint,
            original_reason: "spamreport",
            original_time: Timestamp(10 * DAY),
            source: "import:sendgrid",
            actor: "ops",
            now: Timestamp(100 * DAY),
            list_id,
        }
    }

    #[test]
    fn an_import_keeps_the_original_time_and_cause_and_a_second_changes_nothing() {
        let p = EscalationPolicy::default();
        let t = p.import_suppression(None, item("")).expect("imported");
        let s = t.record.suppression.as_ref().unwrap();
        assert_eq!(s.since, Timestamp(10 * DAY));
        assert_eq!(s.reason, BounceReason::Complaint);
        assert_eq!(t.changes.len(), 1);
        assert_eq!(t.changes[0].kind, StateChangeKind::ManuallySuppressed);
        assert_eq!(t.changes[0].actor, "ops");
        assert!(t.changes[0].note.contains("\"spamreport\""));
        assert!(t.changes[0].note.contains("1970-01-11"));
        assert!(p.import_suppression(Some(&t.record), item("")).is_none());
    }

    #[test]
    fn a_list_unsubscribe_is_imported_for_its_list_only() {
        let p = EscalationPolicy::default();
        let unsub = ImportedSuppress {
            reason: BounceReason::Unsubscribed,
            ..item("news")
        };
        let t = p.import_suppression(None, unsub).expect("imported");
        assert!(t.record.suppression.is_none());
        assert_eq!(t.record.list_unsubscribes.len(), 1);
        assert_eq!(t.changes[0].kind, StateChangeKind::UnsubscribedFromList);
        assert!(p.import_suppression(Some(&t.record), unsub).is_none());
        // Another list, and every mail, are still free to import.
        let other = ImportedSuppress {
            reason: BounceReason::Unsubscribed,
            ..item("offers")
        };
        assert!(p.import_suppression(Some(&t.record), other).is_some());
        assert!(p.import_suppression(Some(&t.record), item("")).is_some());
    }
}
