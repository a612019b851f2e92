//! What an event does to an address's state. Pure functions over domain records.
//!
//! - Hard bounces and complaints suppress at once.
//! - Soft bounces count; `threshold` of them within `window`, with no delivery after them,
//!   suppress with reason "repeated soft bounce". A delivery resets the count.
//! - Blocks (sender, content or policy rejections) never change the address's state.
//! - Nothing lifts a suppression but [`EscalationPolicy::reactivate`].
//! - A bad address may be *replaced* by a corrected one only with high confidence; the bad one
//!   stays suppressed, the new one awaits validation by its first delivery ([`correction`]).
//! - Bounce and complaint rates of a source give a health verdict ([`health`]).
//! - Forgetting a person erases what names them and keeps the address suppressed ([`forget`]).

pub mod correction;
pub mod forget;
pub mod health;
pub mod reclassify;

use std::time::Duration;

use crate::domain::{
    AddressRecord, BounceReason, BounceType, RecordedEvent, StateChange, StateChangeKind,
    Suppression, Timestamp,
};

/// Actor recorded for changes the service makes by itself.
pub const SYSTEM_ACTOR: &str = "system";

/// Most soft-bounce times kept per address; more than any sane threshold needs.
const MAX_SOFT_BOUNCES_KEPT: usize = 256;

/// The escalation rules in force.
#[derive(Debug, Clone, Copy)]
pub struct EscalationPolicy {
    /// Soft bounces within `window` that suppress an address.
    pub soft_bounce_threshold: u32,
    /// How far back soft bounces count.
    pub soft_bounce_window: Duration,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            soft_bounce_threshold: 3,
            soft_bounce_window: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// An address's next state and the changes that lead there, for its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The record to store.
    pub record: AddressRecord,
    /// State changes to append to the history (empty when the state did not change).
    pub changes: Vec<StateChange>,
}

/// `Reactivate` on an address that is not suppressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address is not suppressed")]
pub struct NotSuppressed;

impl EscalationPolicy {
    /// Applies a classified send result to the address's current record.
    pub fn apply_event(
        &self,
        current: Option<&AddressRecord>,
        event: &RecordedEvent,
    ) -> Transition {
        let mut record = current.cloned().unwrap_or_default();
        let mut changes = Vec::new();
        let at = event.occurred_at;
        let class = &event.classification;
        match class.bounce_type {
            BounceType::Delivered => {
                // Reports may arrive out of order: a delivery clears only the soft bounces
                // that happened before it.
                record.soft_bounces.retain(|&t| t > at);
                record.last_delivered = Some(record.last_delivered.map_or(at, |d| d.max(at)));
                if let Some(pending) = record.pending_validation.take() {
                    changes.push(StateChange {
                        kind: StateChangeKind::Validated,
                        reason: BounceReason::None,
                        actor: SYSTEM_ACTOR.to_string(),
                        on_behalf_of: String::new(),
                        note: format!("first delivery since it replaced {}", pending.replaces),
                        event_id: event.event_id.clone(),
                        at,
                    });
                }
            }
            BounceType::Soft => {
                let delivered_after = record.last_delivered.is_some_and(|d| d >= at);
                if !delivered_after {
                    let pos = record.soft_bounces.partition_point(|&t| t <= at);
                    record.soft_bounces.insert(pos, at);
                    let newest = *record.soft_bounces.last().unwrap_or(&at);
                    let floor = newest.minus(self.soft_bounce_window);
                    record.soft_bounces.retain(|&t| t >= floor);
                    if record.soft_bounces.len() > MAX_SOFT_BOUNCES_KEPT {
                        let excess = record.soft_bounces.len() - MAX_SOFT_BOUNCES_KEPT;
                        record.soft_bounces.drain(..excess);
                    }
                    let in_window = self.count_within(&record.soft_bounces, at);
                    if record.suppression.is_none() && in_window >= self.soft_bounce_threshold {
                        record.suppression =
                            Some(suppression_from(event, BounceReason::RepeatedSoftBounce));
                        changes.push(StateChange {
                            kind: StateChangeKind::Escalated,
                            reason: BounceReason::RepeatedSoftBounce,
                            actor: SYSTEM_ACTOR.to_string(),
                            on_behalf_of: String::new(),
                            note: format!(
                                "{in_window} soft bounces within {} days without a delivery",
                                self.soft_bounce_window.as_secs() / 86_400
                            ),
                            event_id: event.event_id.clone(),
                            at,
                        });
                    }
                }
            }
            BounceType::Hard | BounceType::Complaint => {
                if record.suppression.is_none() {
                    let reason = if class.bounce_type == BounceType::Complaint {
                        BounceReason::Complaint
                    } else {
                        class.reason
                    };
                    record.suppression = Some(suppression_from(event, reason));
                    changes.push(StateChange {
                        kind: StateChangeKind::Suppressed,
                        reason,
                        actor: SYSTEM_ACTOR.to_string(),
                        on_behalf_of: String::new(),
                        note: format!(
                            "{:?} classified by rule {}",
                            class.bounce_type, class.rule_id
                        ),
                        event_id: event.event_id.clone(),
                        at,
                    });
                }
            }
            BounceType::Block => {}
        }
        Transition { record, changes }
    }

    /// Suppresses by hand. `None` when the address is already suppressed (nothing changes).
    pub fn suppress_manually(
        &self,
        current: Option<&AddressRecord>,
        reason: BounceReason,
        source: &str,
        note: &str,
        actor: &str,
        now: Timestamp,
    ) -> Option<Transition> {
        let mut record = current.cloned().unwrap_or_default();
        if record.suppression.is_some() {
            return None;
        }
        record.suppression = Some(Suppression {
            reason,
            bounce_type: None,
            since: now,
            source: source.to_string(),
            smtp_response: note.to_string(),
            event_id: String::new(),
            rule_id: String::new(),
        });
        let change = StateChange {
            kind: StateChangeKind::ManuallySuppressed,
            reason,
            actor: actor.to_string(),
            on_behalf_of: String::new(),
            note: note.to_string(),
            event_id: String::new(),
            at: now,
        };
        Some(Transition {
            record,
            changes: vec![change],
        })
    }

    /// Lifts a suppression. The soft-bounce count starts again from zero.
    pub fn reactivate(
        &self,
        current: Option<&AddressRecord>,
        actor: &str,
        justification: &str,
        now: Timestamp,
    ) -> Result<(Transition, Suppression), NotSuppressed> {
        let mut record = current.cloned().ok_or(NotSuppressed)?;
        let lifted = record.suppression.take().ok_or(NotSuppressed)?;
        record.soft_bounces.clear();
        let change = StateChange {
            kind: StateChangeKind::Reactivated,
            reason: lifted.reason,
            actor: actor.to_string(),
            on_behalf_of: String::new(),
            note: justification.to_string(),
            event_id: lifted.event_id.clone(),
            at: now,
        };
        Ok((
            Transition {
                record,
                changes: vec![change],
            },
            lifted,
        ))
    }

    /// Soft bounces of `record` within the window ending at `now`.
    pub fn recent_soft_bounces(&self, record: &AddressRecord, now: Timestamp) -> u32 {
        self.count_within(&record.soft_bounces, now)
    }

    fn count_within(&self, times: &[Timestamp], end: Timestamp) -> u32 {
        let start = end.minus(self.soft_bounce_window);
        times.iter().filter(|&&t| t >= start && t <= end).count() as u32
    }
}

fn suppression_from(event: &RecordedEvent, reason: BounceReason) -> Suppression {
    Suppression {
        reason,
        bounce_type: Some(event.classification.bounce_type),
        since: event.occurred_at,
        source: event.source.clone(),
        smtp_response: event.smtp_response.clone(),
        event_id: event.event_id.clone(),
        rule_id: event.classification.rule_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Classification, ReportedOutcome};

    const DAY: i64 = 86_400_000_000;

    fn event(id: &str, t: BounceType, reason: BounceReason, day: i64) -> RecordedEvent {
        RecordedEvent {
            event_id: id.into(),
            address: "a@example.com".into(),
            outcome: ReportedOutcome::Bounce,
            smtp_response: String::new(),
            enhanced_status: None,
            source: "src".into(),
            campaign: String::new(),
            segment: String::new(),
            provider: String::new(),
            occurred_at: Timestamp(day * DAY),
            recorded_at: Timestamp(day * DAY),
            classification: Classification {
                bounce_type: t,
                reason,
                rule_id: "test".into(),
                confidence: 1.0,
                disagrees_with_reporter: false,
            },
            rules_version: 1,
        }
    }

    fn soft(id: &str, day: i64) -> RecordedEvent {
        event(id, BounceType::Soft, BounceReason::MailboxFull, day)
    }

    fn run(
        policy: &EscalationPolicy,
        events: &[RecordedEvent],
    ) -> (AddressRecord, Vec<StateChange>) {
        let mut record: Option<AddressRecord> = None;
        let mut all = Vec::new();
        for e in events {
            let t = policy.apply_event(record.as_ref(), e);
            all.extend(t.changes);
            record = Some(t.record);
        }
        (record.unwrap_or_default(), all)
    }

    #[test]
    fn hard_bounce_suppresses_at_once_with_its_reason() {
        let p = EscalationPolicy::default();
        let (r, changes) = run(
            &p,
            &[event(
                "e1",
                BounceType::Hard,
                BounceReason::MailboxNotFound,
                1,
            )],
        );
        let s = r.suppression.expect("suppressed");
        assert_eq!(s.reason, BounceReason::MailboxNotFound);
        assert_eq!(s.event_id, "e1");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, StateChangeKind::Suppressed);
    }

    #[test]
    fn complaint_suppresses_with_reason_complaint() {
        let p = EscalationPolicy::default();
        let (r, _) = run(
            &p,
            &[event(
                "c",
                BounceType::Complaint,
                BounceReason::Complaint,
                1,
            )],
        );
        assert_eq!(r.suppression.unwrap().reason, BounceReason::Complaint);
    }

    #[test]
    fn block_never_suppresses() {
        let p = EscalationPolicy::default();
        let blocks: Vec<_> = (0..10)
            .map(|i| {
                event(
                    &format!("b{i}"),
                    BounceType::Block,
                    BounceReason::SenderBlocked,
                    i,
                )
            })
            .collect();
        let (r, changes) = run(&p, &blocks);
        assert!(r.suppression.is_none());
        assert!(r.soft_bounces.is_empty());
        assert!(changes.is_empty());
    }

    #[test]
    fn soft_bounces_escalate_at_the_threshold_within_the_window() {
        let p = EscalationPolicy::default();
        let (r, _) = run(&p, &[soft("s1", 1), soft("s2", 2)]);
        assert!(r.suppression.is_none());
        let (r, changes) = run(&p, &[soft("s1", 1), soft("s2", 2), soft("s3", 3)]);
        assert_eq!(
            r.suppression.unwrap().reason,
            BounceReason::RepeatedSoftBounce
        );
        assert_eq!(changes.last().unwrap().kind, StateChangeKind::Escalated);
    }

    #[test]
    fn soft_bounces_outside_the_window_do_not_count() {
        let p = EscalationPolicy::default();
        let (r, _) = run(&p, &[soft("s1", 1), soft("s2", 10), soft("s3", 20)]);
        assert!(
            r.suppression.is_none(),
            "day 1 is more than 14 days before day 20"
        );
        assert_eq!(p.recent_soft_bounces(&r, Timestamp(20 * DAY)), 2);
    }

    #[test]
    fn a_delivery_resets_the_soft_count() {
        let p = EscalationPolicy::default();
        let delivered = event("d", BounceType::Delivered, BounceReason::None, 3);
        let (r, _) = run(
            &p,
            &[soft("s1", 1), soft("s2", 2), delivered, soft("s3", 4)],
        );
        assert!(r.suppression.is_none());
        assert_eq!(r.soft_bounces.len(), 1);
    }

    #[test]
    fn a_late_report_of_an_older_soft_bounce_does_not_undo_a_delivery() {
        let p = EscalationPolicy::default();
        let delivered = event("d", BounceType::Delivered, BounceReason::None, 5);
        let (r, _) = run(
            &p,
            &[delivered, soft("s1", 1), soft("s2", 2), soft("s3", 3)],
        );
        assert!(r.suppression.is_none());
    }

    #[test]
    fn delivery_does_not_lift_a_suppression() {
        let p = EscalationPolicy::default();
        let hard = event("h", BounceType::Hard, BounceReason::MailboxNotFound, 1);
        let delivered = event("d", BounceType::Delivered, BounceReason::None, 2);
        let (r, _) = run(&p, &[hard, delivered]);
        assert!(r.is_suppressed());
    }

    #[test]
    fn manual_suppression_is_idempotent_and_reactivation_needs_a_suppression() {
        let p = EscalationPolicy::default();
        let now = Timestamp(DAY);
        let t = p
            .suppress_manually(
                None,
                BounceReason::Manual,
                "support",
                "ticket 1",
                "ops",
                now,
            )
            .expect("first suppression applies");
        assert!(p
            .suppress_manually(
                Some(&t.record),
                BounceReason::Manual,
                "support",
                "again",
                "ops",
                now
            )
            .is_none());
        let (after, lifted) = p
            .reactivate(Some(&t.record), "ops", "confirmed by phone", now)
            .unwrap();
        assert_eq!(lifted.reason, BounceReason::Manual);
        assert!(!after.record.is_suppressed());
        assert_eq!(after.changes[0].kind, StateChangeKind::Reactivated);
        assert_eq!(
            p.reactivate(Some(&after.record), "ops", "x", now),
            Err(NotSuppressed)
        );
        assert_eq!(p.reactivate(None, "ops", "x", now), Err(NotSuppressed));
    }
}
