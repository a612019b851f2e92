//! Forgetting a person (`ForgetAddress`): what is left of an address's record once its
//! personal data is erased. The address stays suppressed, by what suppressed it if it was (the
//! person asked to be erased, so it must never be mailed again), by an operator's `MANUAL`
//! suppression from source `forget` if it was not. Only what names no one is kept: the reason,
//! outcome type, time, source and rule of the suppression. The history keeps one entry: who
//! forgot the address, when, and why.

use crate::domain::{
    AddressRecord, BounceReason, StateChange, StateChangeKind, Suppression, Timestamp,
};

use super::Transition;

/// The source of the suppression that forgetting an unsuppressed address sets.
pub const FORGET_SOURCE: &str = "forget";

/// The forgotten form of `current`, with its one history entry; `None` if it is forgotten
/// already (nothing changes).
pub fn forget(
    current: Option<&AddressRecord>,
    actor: &str,
    justification: &str,
    now: Timestamp,
) -> Option<Transition> {
    if current.is_some_and(|r| r.forgotten) {
        return None;
    }
    let suppression = match current.and_then(|r| r.suppression.clone()) {
        // The erasure and the suppression that keeps the person from being mailed again are
        // one: it no longer ends by itself.
        Some(s) => Suppression {
            smtp_response: String::new(),
            event_id: String::new(),
            expires_at: None,
            ..s
        },
        None => Suppression {
            reason: BounceReason::Manual,
            bounce_type: None,
            since: now,
            source: FORGET_SOURCE.to_string(),
            smtp_response: String::new(),
            event_id: String::new(),
            rule_id: String::new(),
            expires_at: None,
            list_id: String::new(),
        },
    };
    let change = StateChange {
        kind: StateChangeKind::Forgotten,
        reason: suppression.reason,
        actor: actor.to_string(),
        on_behalf_of: String::new(),
        note: justification.to_string(),
        event_id: String::new(),
        at: now,
    };
    Some(Transition {
        record: AddressRecord {
            suppression: Some(suppression),
            forgotten: true,
            ..AddressRecord::default()
        },
        changes: vec![change],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BounceType, EvidenceKind, Replacement};

    fn full_record() -> AddressRecord {
        AddressRecord {
            suppression: Some(Suppression {
                reason: BounceReason::MailboxNotFound,
                bounce_type: Some(BounceType::Hard),
                since: Timestamp(10),
                source: "signup-form".into(),
                smtp_response: "550 5.1.1 <jo@example.com> unknown".into(),
                event_id: "e1".into(),
                rule_id: "status.5.1.1".into(),
                expires_at: None,
                list_id: String::new(),
            }),
            soft_bounces: vec![Timestamp(3)],
            last_delivered: Some(Timestamp(2)),
            replaced_by: Some("jo.new@example.com".into()),
            needs_enrichment: true,
            pending_validation: Some(Replacement {
                replaces: "jo.old@example.com".into(),
                evidence: EvidenceKind::TypoFix,
                confidence: 1.0,
                at: Timestamp(1),
            }),
            list_unsubscribes: Vec::new(),
            engaged_at: None,
            forgotten: false,
        }
    }

    #[test]
    fn a_suppressed_address_keeps_its_suppression_without_anything_that_names_the_person() {
        let t = forget(
            Some(&full_record()),
            "ops",
            "erasure ticket 12",
            Timestamp(99),
        )
        .unwrap();
        let s = t.record.suppression.clone().unwrap();
        assert!(t.record.forgotten);
        assert_eq!(
            (
                s.reason,
                s.bounce_type,
                s.since,
                s.source.as_str(),
                s.rule_id.as_str()
            ),
            (
                BounceReason::MailboxNotFound,
                Some(BounceType::Hard),
                Timestamp(10),
                "signup-form",
                "status.5.1.1"
            )
        );
        assert!(s.smtp_response.is_empty() && s.event_id.is_empty());
        assert_eq!(
            t.record,
            AddressRecord {
                suppression: Some(s),
                forgotten: true,
                ..AddressRecord::default()
            },
            "no soft bounces, deliveries, links or enrichment mark"
        );
        assert_eq!(t.changes.len(), 1);
        let c = &t.changes[0];
        assert_eq!(
            (c.kind, c.reason, c.actor.as_str(), c.note.as_str(), c.at),
            (
                StateChangeKind::Forgotten,
                BounceReason::MailboxNotFound,
                "ops",
                "erasure ticket 12",
                Timestamp(99)
            )
        );
    }

    #[test]
    fn an_address_that_was_not_suppressed_is_suppressed_by_hand_from_now_on() {
        for current in [None, Some(AddressRecord::default())] {
            let t = forget(current.as_ref(), "ops", "asked", Timestamp(5)).unwrap();
            let s = t.record.suppression.unwrap();
            assert_eq!(
                (s.reason, s.bounce_type, s.since, s.source.as_str()),
                (BounceReason::Manual, None, Timestamp(5), FORGET_SOURCE)
            );
            assert_eq!(t.changes[0].reason, BounceReason::Manual);
        }
    }

    #[test]
    fn forgetting_twice_changes_nothing() {
        let once = forget(None, "ops", "asked", Timestamp(5)).unwrap().record;
        assert_eq!(forget(Some(&once), "ops", "again", Timestamp(6)), None);
    }
}
