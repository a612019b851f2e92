//! What a change of classification rules does to an address.
//!
//! Given every send result of an address with the classification the current rules give it,
//! the address is suppressed exactly when one of its results since its last reactivation is a
//! hard bounce or a complaint (the earliest such result decides), or when it was suppressed for
//! another reason (by hand, or by repeated soft bounces), which rules do not undo.

use std::collections::HashMap;

use crate::domain::{
    AddressRecord, BounceReason, BounceType, Classification, RecordedEvent, StateChange,
    StateChangeKind, Suppression, Timestamp,
};

use super::{SuppressionTtl, Transition, SYSTEM_ACTOR};

/// What reclassification does to an address's suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// The suppression is lifted.
    Lifted,
    /// The address becomes suppressed.
    Suppressed,
    /// The suppression now rests on another event.
    Repointed,
}

fn decides(t: BounceType) -> bool {
    matches!(t, BounceType::Hard | BounceType::Complaint)
}

/// The address's next state. `events` are all its results, with the current rules'
/// classification; `before` maps the ids of reclassified events to their old classification;
/// `reactivated_at` is the time of its last reactivation, if any; a suppression it makes gets
/// the lifetime `ttl` gives its reason.
pub fn reclassify_address(
    current: Option<&AddressRecord>,
    events: &[RecordedEvent],
    before: &HashMap<String, Classification>,
    reactivated_at: Option<Timestamp>,
    now: Timestamp,
    ttl: &SuppressionTtl,
) -> (Effect, Option<Transition>) {
    let record = current.cloned().unwrap_or_default();
    let rule_change = |e: &RecordedEvent| -> String {
        match before.get(&e.event_id) {
            Some(old) => format!(
                "event {} now {:?}/{:?} by rule {} (was {:?}/{:?} by rule {})",
                e.event_id,
                e.classification.bounce_type,
                e.classification.reason,
                e.classification.rule_id,
                old.bounce_type,
                old.reason,
                old.rule_id
            ),
            None => format!(
                "event {} {:?} by rule {}",
                e.event_id, e.classification.bounce_type, e.classification.rule_id
            ),
        }
    };
    // The earliest result since the last reactivation that suppresses under the current rules.
    let decider = events
        .iter()
        .filter(|e| decides(e.classification.bounce_type))
        .filter(|e| reactivated_at.is_none_or(|r| e.occurred_at > r))
        .min_by_key(|e| (e.occurred_at, e.event_id.clone()));
    let suppression_for = |e: &RecordedEvent| {
        let reason = if e.classification.bounce_type == BounceType::Complaint {
            BounceReason::Complaint
        } else {
            e.classification.reason
        };
        Suppression {
            reason,
            bounce_type: Some(e.classification.bounce_type),
            since: e.occurred_at,
            source: e.source.clone(),
            smtp_response: e.smtp_response.clone(),
            event_id: e.event_id.clone(),
            rule_id: e.classification.rule_id.to_string(),
            expires_at: ttl.expires_at(reason, e.occurred_at),
            list_id: String::new(),
        }
    };
    let change = |kind, reason, note: String, event_id: &str| StateChange {
        kind,
        reason,
        actor: SYSTEM_ACTOR.to_string(),
        on_behalf_of: String::new(),
        note,
        event_id: event_id.to_string(),
        at: now,
    };
    match &record.suppression {
        // Suppressed by hand or by escalation: rules do not undo that.
        Some(s) if !s.bounce_type.is_some_and(decides) => (Effect::None, None),
        Some(s) => {
            let Some(deciding) = events.iter().find(|e| e.event_id == s.event_id) else {
                return (Effect::None, None);
            };
            if decides(deciding.classification.bounce_type) {
                return (Effect::None, None);
            }
            let mut next = record.clone();
            match decider {
                Some(other) => {
                    next.suppression = Some(suppression_for(other));
                    let note = format!(
                        "{}; suppression now rests on {}",
                        rule_change(deciding),
                        rule_change(other)
                    );
                    let c = change(
                        StateChangeKind::Reclassified,
                        s.reason,
                        note,
                        &other.event_id,
                    );
                    (
                        Effect::Repointed,
                        Some(Transition {
                            record: next,
                            changes: vec![c],
                        }),
                    )
                }
                None => {
                    next.suppression = None;
                    let c = change(
                        StateChangeKind::Reclassified,
                        s.reason,
                        rule_change(deciding),
                        &deciding.event_id,
                    );
                    (
                        Effect::Lifted,
                        Some(Transition {
                            record: next,
                            changes: vec![c],
                        }),
                    )
                }
            }
        }
        None => match decider {
            // Only an event whose classification changed can newly suppress.
            Some(e) if before.contains_key(&e.event_id) => {
                let mut next = record.clone();
                let s = suppression_for(e);
                let reason = s.reason;
                next.suppression = Some(s);
                let c = change(
                    StateChangeKind::Suppressed,
                    reason,
                    format!("reclassified: {}", rule_change(e)),
                    &e.event_id,
                );
                (
                    Effect::Suppressed,
                    Some(Transition {
                        record: next,
                        changes: vec![c],
                    }),
                )
            }
            _ => (Effect::None, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReportedOutcome;

    fn event(id: &str, t: BounceType, reason: BounceReason, at: i64) -> RecordedEvent {
        RecordedEvent {
            event_id: id.into(),
            address: "a@example.com".into(),
            outcome: ReportedOutcome::Bounce,
            smtp_response: "550 x".into(),
            enhanced_status: None,
            source: "s".into(),
            campaign: String::new(),
            segment: String::new(),
            provider: String::new(),
            occurred_at: Timestamp(at),
            recorded_at: Timestamp(at),
            classification: Classification {
                bounce_type: t,
                reason,
                rule_id: format!("rule-{id}").into(),
                confidence: 0.9,
                disagrees_with_reporter: false,
            },
            rules_version: 2,
            list_id: String::new(),
        }
    }

    fn suppressed_by(e: &RecordedEvent, t: BounceType) -> AddressRecord {
        AddressRecord {
            suppression: Some(Suppression {
                reason: BounceReason::MailboxNotFound,
                bounce_type: Some(t),
                since: e.occurred_at,
                source: "s".into(),
                smtp_response: String::new(),
                event_id: e.event_id.clone(),
                rule_id: "old".into(),
                expires_at: None,
                list_id: String::new(),
            }),
            ..AddressRecord::default()
        }
    }

    fn old(t: BounceType) -> Classification {
        Classification {
            bounce_type: t,
            reason: BounceReason::MailboxNotFound,
            rule_id: "old-rule".into(),
            confidence: 0.5,
            disagrees_with_reporter: false,
        }
    }

    #[test]
    fn a_suppression_resting_on_an_event_now_judged_block_is_lifted() {
        let e = event("e1", BounceType::Block, BounceReason::ContentRejected, 1);
        let record = suppressed_by(&e, BounceType::Hard);
        let before = HashMap::from([("e1".to_string(), old(BounceType::Hard))]);
        let (effect, t) = reclassify_address(
            Some(&record),
            &[e],
            &before,
            None,
            Timestamp(9),
            &SuppressionTtl::default(),
        );
        assert_eq!(effect, Effect::Lifted);
        let t = t.unwrap();
        assert!(!t.record.is_suppressed());
        assert!(t.changes[0].note.contains("rule-e1") && t.changes[0].note.contains("old-rule"));
    }

    #[test]
    fn another_hard_bounce_keeps_the_address_suppressed() {
        let e1 = event("e1", BounceType::Block, BounceReason::ContentRejected, 1);
        let e2 = event("e2", BounceType::Hard, BounceReason::MailboxNotFound, 2);
        let record = suppressed_by(&e1, BounceType::Hard);
        let before = HashMap::from([("e1".to_string(), old(BounceType::Hard))]);
        let (effect, t) = reclassify_address(
            Some(&record),
            &[e1, e2],
            &before,
            None,
            Timestamp(9),
            &SuppressionTtl::default(),
        );
        assert_eq!(effect, Effect::Repointed);
        assert_eq!(t.unwrap().record.suppression.unwrap().event_id, "e2");
    }

    #[test]
    fn an_event_now_judged_hard_suppresses_unless_reactivated_since() {
        let e = event("e1", BounceType::Hard, BounceReason::MailboxNotFound, 5);
        let before = HashMap::from([("e1".to_string(), old(BounceType::Soft))]);
        let (effect, _) = reclassify_address(
            None,
            std::slice::from_ref(&e),
            &before,
            None,
            Timestamp(9),
            &SuppressionTtl::default(),
        );
        assert_eq!(effect, Effect::Suppressed);
        let (effect, _) = reclassify_address(
            None,
            &[e],
            &before,
            Some(Timestamp(6)),
            Timestamp(9),
            &SuppressionTtl::default(),
        );
        assert_eq!(
            effect,
            Effect::None,
            "an operator's reactivation after the event stands"
        );
    }

    #[test]
    fn manual_suppressions_are_left_alone() {
        let e = event("e1", BounceType::Block, BounceReason::ContentRejected, 1);
        let mut record = suppressed_by(&e, BounceType::Hard);
        record.suppression.as_mut().unwrap().bounce_type = None;
        let before = HashMap::from([("e1".to_string(), old(BounceType::Hard))]);
        assert_eq!(
            reclassify_address(
                Some(&record),
                &[e],
                &before,
                None,
                Timestamp(9),
                &SuppressionTtl::default()
            )
            .0,
            Effect::None
        );
    }
}
