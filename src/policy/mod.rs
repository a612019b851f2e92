//! What an event does to an address's state. Pure functions over domain records.
//!
//! - Hard bounces and complaints suppress at once.
//! - Soft bounces count; `threshold` of them within `window`, with no delivery after them,
//!   suppress with reason "repeated soft bounce". A delivery resets the count.
//! - Blocks (sender, content or policy rejections) never change the address's state.
//! - Unsubscribes suppress at once, like complaints; one naming a list only blocks mail of
//!   that list.
//! - Suppressions of a reason with a lifetime end by themselves at their expiry ([`expiry`]);
//!   otherwise nothing lifts a suppression but [`EscalationPolicy::reactivate`].
//! - A bad address may be *replaced* by a corrected one only with high confidence; the bad one
//!   stays suppressed, the new one awaits validation by its first delivery ([`correction`]).
//! - Bounce and complaint rates of a source give a health verdict ([`health`]).
//! - Whole domains: suppressed by an operator or by repeated DOMAIN_NOT_FOUND bounces, and
//!   marked accept-all ([`domains`]). At an accept-all domain a delivery does not prove that a
//!   mailbox exists, so it validates a pending replacement only if a person was seen acting
//!   through the mailbox (`AddressRecord::engaged_at`).
//! - Forgetting a person erases what names them and keeps the address suppressed ([`forget`]).

pub mod correction;
pub mod domains;
pub mod expiry;
pub mod forget;
pub mod health;
pub mod import;
pub mod reclassify;

use std::time::Duration;

use crate::domain::{
    AddressRecord, BounceReason, BounceType, RecordedEvent, StateChange, StateChangeKind,
    Suppression, Timestamp,
};

pub use expiry::{expire, outlasts, ReasonTtl, SuppressionTtl};

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
    /// How long suppressions last, by reason (by default none ends by itself).
    pub ttl: SuppressionTtl,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            soft_bounce_threshold: 3,
            soft_bounce_window: Duration::from_secs(14 * 24 * 3600),
            ttl: SuppressionTtl::default(),
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

/// `Reactivate` on an address that is not suppressed (or not unsubscribed from the list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address is not suppressed")]
pub struct NotSuppressed;

/// A suppression asked for by an operator.
#[derive(Debug, Clone, Copy)]
pub struct ManualSuppress<'a> {
    /// Why.
    pub reason: BounceReason,
    /// Where the request came from.
    pub source: &'a str,
    /// The operator's note.
    pub note: &'a str,
    /// Who asks.
    pub actor: &'a str,
    /// When.
    pub now: Timestamp,
    /// When it ends by itself; `None`: the lifetime of its reason, if it has one.
    pub expires_at: Option<Timestamp>,
    /// For an unsubscribe from one list: the list (empty: every mail).
    pub list_id: &'a str,
}

/// How a suppression came to replace one that would have ended by itself, for the history.
fn replacing(previous: Option<&Suppression>) -> String {
    match previous.and_then(|p| p.expires_at.map(|end| (p.reason, end))) {
        Some((reason, end)) => format!(
            "; in place of a suppression for {} that would have ended at {}",
            reason.name(),
            end.to_rfc3339()
        ),
        None => String::new(),
    }
}

/// Whether the record holds a suppression of every mail (with `list`, an unsubscribe from
/// it) that never ends by itself: nothing can take its place.
fn holds_lasting(record: &AddressRecord, list: &str) -> bool {
    let current = if list.is_empty() {
        record.suppression.as_ref()
    } else {
        record.list_unsubscribes.iter().find(|s| s.list_id == list)
    };
    current.is_some_and(|s| s.expires_at.is_none())
}

/// Puts `new` in place as the suppression of every mail (or, with a list, as the unsubscribe
/// from that list) unless the one there lasts at least as long ([`outlasts`]). Returns the
/// one it replaced, if any, or `Err` when `new` was not taken.
fn take(record: &mut AddressRecord, new: Suppression) -> Result<Option<Suppression>, ()> {
    if new.list_id.is_empty() {
        match &record.suppression {
            Some(current) if !outlasts(&new, current) => Err(()),
            _ => Ok(record.suppression.replace(new)),
        }
    } else {
        let at = record
            .list_unsubscribes
            .iter()
            .position(|s| s.list_id == new.list_id);
        match at {
            Some(i) if !outlasts(&new, &record.list_unsubscribes[i]) => Err(()),
            Some(i) => Ok(Some(std::mem::replace(
                &mut record.list_unsubscribes[i],
                new,
            ))),
            None => {
                record.list_unsubscribes.push(new);
                Ok(None)
            }
        }
    }
}

/// The history entry of a suppression an operator or an import set: of every mail
/// (`list_id` empty), or an unsubscribe from one list (its note names the list).
pub(crate) fn suppressed_by_hand(
    reason: BounceReason,
    list_id: &str,
    note: &str,
    actor: &str,
    now: Timestamp,
) -> StateChange {
    let (kind, note) = if list_id.is_empty() {
        (StateChangeKind::ManuallySuppressed, note.to_string())
    } else if note.is_empty() {
        (
            StateChangeKind::UnsubscribedFromList,
            format!("list {list_id}"),
        )
    } else {
        (
            StateChangeKind::UnsubscribedFromList,
            format!("list {list_id}: {note}"),
        )
    };
    StateChange {
        kind,
        reason,
        actor: actor.to_string(),
        on_behalf_of: String::new(),
        note,
        event_id: String::new(),
        at: now,
    }
}

impl EscalationPolicy {
    /// Applies a classified send result to the address's current record. What had expired
    /// by the time the result happened is cleared first: an expired suppression does not make
    /// the address suppressed any more.
    pub fn apply_event(
        &self,
        current: Option<&AddressRecord>,
        event: &RecordedEvent,
    ) -> Transition {
        self.apply_event_at(current, event, false)
    }

    /// [`EscalationPolicy::apply_event`] for an address whose domain is marked accept-all when
    /// `accept_all` is true: there a delivery validates a pending replacement only if the
    /// address has confirmed engagement, since the server accepts mail for any local part.
    pub fn apply_event_at(
        &self,
        current: Option<&AddressRecord>,
        event: &RecordedEvent,
        accept_all: bool,
    ) -> Transition {
        let mut record = current.cloned().unwrap_or_default();
        let at = event.occurred_at;
        let mut changes = expire(&mut record, at);
        let class = &event.classification;
        match class.bounce_type {
            BounceType::Delivered => {
                // Reports may arrive out of order: a delivery clears only the soft bounces
                // that happened before it.
                record.soft_bounces.retain(|&t| t > at);
                record.last_delivered = Some(record.last_delivered.map_or(at, |d| d.max(at)));
                let proven = !accept_all || record.engaged_at.is_some();
                if let Some(pending) = record.pending_validation.take_if(|_| proven) {
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
                            Some(self.suppression_from(event, BounceReason::RepeatedSoftBounce));
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
            BounceType::Hard | BounceType::Complaint | BounceType::Unsubscribe => {
                if matches!(
                    class.bounce_type,
                    BounceType::Complaint | BounceType::Unsubscribe
                ) {
                    // A person acted through the mailbox: it exists.
                    record.engaged_at = Some(record.engaged_at.map_or(at, |e| e.max(at)));
                }
                let reason = match class.bounce_type {
                    BounceType::Complaint => BounceReason::Complaint,
                    BounceType::Unsubscribe => BounceReason::Unsubscribed,
                    _ => class.reason,
                };
                let list = match class.bounce_type {
                    BounceType::Unsubscribe => event.list_id.as_str(),
                    _ => "",
                };
                // Most such results are for an address suppressed for good already: nothing
                // to build for those.
                let taken = if holds_lasting(&record, list) {
                    Err(())
                } else {
                    take(&mut record, self.suppression_from(event, reason))
                };
                if let Ok(previous) = taken {
                    let (kind, what) = if list.is_empty() {
                        (
                            StateChangeKind::Suppressed,
                            format!(
                                "{:?} classified by rule {}",
                                class.bounce_type, class.rule_id
                            ),
                        )
                    } else {
                        (
                            StateChangeKind::UnsubscribedFromList,
                            format!("list {list}"),
                        )
                    };
                    changes.push(StateChange {
                        kind,
                        reason,
                        actor: SYSTEM_ACTOR.to_string(),
                        on_behalf_of: String::new(),
                        note: what + &replacing(previous.as_ref()),
                        event_id: event.event_id.clone(),
                        at,
                    });
                }
            }
            BounceType::Block => {}
        }
        Transition { record, changes }
    }

    /// Suppresses by hand (every mail, or, with a list, mail of that list). `None` when the
    /// address is already suppressed so (nothing changes).
    pub fn suppress_manually(
        &self,
        current: Option<&AddressRecord>,
        request: ManualSuppress<'_>,
    ) -> Option<Transition> {
        let ManualSuppress {
            reason,
            source,
            note,
            actor,
            now,
            expires_at,
            list_id,
        } = request;
        let mut record = current.cloned().unwrap_or_default();
        let mut changes = expire(&mut record, now);
        let new = Suppression {
            reason,
            bounce_type: None,
            since: now,
            source: source.to_string(),
            smtp_response: note.to_string(),
            event_id: String::new(),
            rule_id: String::new(),
            expires_at: expires_at.or_else(|| self.ttl.expires_at(reason, now)),
            list_id: list_id.to_string(),
        };
        let previous = take(&mut record, new).ok()?;
        let mut change = suppressed_by_hand(reason, list_id, note, actor, now);
        change.note += &replacing(previous.as_ref());
        changes.push(change);
        Some(Transition { record, changes })
    }

    /// Lifts the suppression of every mail (`list` `None`; the soft-bounce count starts again
    /// from zero), or the unsubscribe from one list. Only what is in force at `now` can be
    /// lifted.
    pub fn reactivate(
        &self,
        current: Option<&AddressRecord>,
        actor: &str,
        justification: &str,
        now: Timestamp,
        list: Option<&str>,
    ) -> Result<(Transition, Suppression), NotSuppressed> {
        let mut record = current.cloned().ok_or(NotSuppressed)?;
        let mut changes = expire(&mut record, now);
        let (lifted, note) = match list {
            None => {
                let lifted = record.suppression.take().ok_or(NotSuppressed)?;
                record.soft_bounces.clear();
                (lifted, justification.to_string())
            }
            Some(list) => {
                let at = record
                    .list_unsubscribes
                    .iter()
                    .position(|s| s.list_id == list)
                    .ok_or(NotSuppressed)?;
                (
                    record.list_unsubscribes.remove(at),
                    format!("list {list}: {justification}"),
                )
            }
        };
        changes.push(StateChange {
            kind: StateChangeKind::Reactivated,
            reason: lifted.reason,
            actor: actor.to_string(),
            on_behalf_of: String::new(),
            note,
            event_id: lifted.event_id.clone(),
            at: now,
        });
        Ok((Transition { record, changes }, lifted))
    }

    /// Soft bounces of `record` within the window ending at `now`. After the end of a
    /// suppression the count restarts: soft bounces from before it do not count, whether or
    /// not the sweep has cleared it yet.
    pub fn recent_soft_bounces(&self, record: &AddressRecord, now: Timestamp) -> u32 {
        let restart = record
            .suppression
            .as_ref()
            .and_then(|s| s.expires_at)
            .filter(|&end| end <= now);
        let times = match restart {
            Some(end) => &record.soft_bounces[record.soft_bounces.partition_point(|&t| t < end)..],
            None => &record.soft_bounces[..],
        };
        self.count_within(times, now)
    }

    fn count_within(&self, times: &[Timestamp], end: Timestamp) -> u32 {
        let start = end.minus(self.soft_bounce_window);
        times.iter().filter(|&&t| t >= start && t <= end).count() as u32
    }

    /// The suppression `event` causes for `reason`, with the lifetime of the reason.
    fn suppression_from(&self, event: &RecordedEvent, reason: BounceReason) -> Suppression {
        Suppression {
            reason,
            bounce_type: Some(event.classification.bounce_type),
            since: event.occurred_at,
            source: event.source.clone(),
            smtp_response: event.smtp_response.clone(),
            event_id: event.event_id.clone(),
            rule_id: event.classification.rule_id.to_string(),
            expires_at: self.ttl.expires_at(reason, event.occurred_at),
            list_id: if event.classification.bounce_type == BounceType::Unsubscribe {
                event.list_id.clone()
            } else {
                String::new()
            },
        }
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
            list_id: String::new(),
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
    fn at_an_accept_all_domain_only_an_engaged_address_is_validated_by_a_delivery() {
        let p = EscalationPolicy::default();
        let pending = AddressRecord {
            pending_validation: Some(crate::domain::Replacement {
                replaces: "old@catchall.example".into(),
                evidence: crate::domain::EvidenceKind::CrmCorrection,
                confidence: 0.95,
                at: Timestamp(0),
            }),
            ..AddressRecord::default()
        };
        let delivered = event("d", BounceType::Delivered, BounceReason::None, 2);
        let t = p.apply_event_at(Some(&pending), &delivered, true);
        assert!(
            t.record.pending_validation.is_some(),
            "a delivery alone proves nothing"
        );
        assert!(t.changes.is_empty());
        assert_eq!(t.record.last_delivered, Some(delivered.occurred_at));

        let engaged = AddressRecord {
            engaged_at: Some(Timestamp(DAY)),
            ..pending.clone()
        };
        let t = p.apply_event_at(Some(&engaged), &delivered, true);
        assert!(t.record.pending_validation.is_none());
        assert_eq!(t.changes[0].kind, StateChangeKind::Validated);

        let t = p.apply_event_at(Some(&pending), &delivered, false);
        assert!(
            t.record.pending_validation.is_none(),
            "elsewhere a delivery validates"
        );
    }

    #[test]
    fn a_complaint_is_engagement() {
        let p = EscalationPolicy::default();
        let complaint = event("c", BounceType::Complaint, BounceReason::Complaint, 3);
        let (r, _) = run(&p, std::slice::from_ref(&complaint));
        assert_eq!(r.engaged_at, Some(complaint.occurred_at));
        let (r, _) = run(&p, &[soft("s", 1)]);
        assert_eq!(r.engaged_at, None);
    }

    #[test]
    fn delivery_does_not_lift_a_suppression() {
        let p = EscalationPolicy::default();
        let hard = event("h", BounceType::Hard, BounceReason::MailboxNotFound, 1);
        let delivered = event("d", BounceType::Delivered, BounceReason::None, 2);
        let (r, _) = run(&p, &[hard, delivered]);
        assert!(r.is_suppressed());
    }

    fn manual<'a>(reason: BounceReason, note: &'a str, now: Timestamp) -> ManualSuppress<'a> {
        ManualSuppress {
            reason,
            source: "support",
            note,
            actor: "ops",
            now,
            expires_at: None,
            list_id: "",
        }
    }

    #[test]
    fn manual_suppression_is_idempotent_and_reactivation_needs_a_suppression() {
        let p = EscalationPolicy::default();
        let now = Timestamp(DAY);
        let t = p
            .suppress_manually(None, manual(BounceReason::Manual, "ticket 1", now))
            .expect("first suppression applies");
        assert!(p
            .suppress_manually(Some(&t.record), manual(BounceReason::Manual, "again", now))
            .is_none());
        let (after, lifted) = p
            .reactivate(Some(&t.record), "ops", "confirmed by phone", now, None)
            .unwrap();
        assert_eq!(lifted.reason, BounceReason::Manual);
        assert!(!after.record.is_suppressed());
        assert_eq!(after.changes[0].kind, StateChangeKind::Reactivated);
        assert_eq!(
            p.reactivate(Some(&after.record), "ops", "x", now, None),
            Err(NotSuppressed)
        );
        assert_eq!(
            p.reactivate(None, "ops", "x", now, None),
            Err(NotSuppressed)
        );
    }

    fn with_ttl(entries: &[&str]) -> EscalationPolicy {
        let entries: Vec<ReasonTtl> = entries.iter().map(|e| e.parse().unwrap()).collect();
        EscalationPolicy {
            ttl: SuppressionTtl::from_entries(&entries).unwrap(),
            ..EscalationPolicy::default()
        }
    }

    fn unsubscribe(id: &str, list: &str, day: i64) -> RecordedEvent {
        RecordedEvent {
            list_id: list.into(),
            ..event(id, BounceType::Unsubscribe, BounceReason::Unsubscribed, day)
        }
    }

    #[test]
    fn a_suppression_gets_the_lifetime_of_its_reason_from_the_deciding_event() {
        let p = with_ttl(&["repeated-soft-bounce=30d"]);
        let (r, _) = run(&p, &[soft("s1", 1), soft("s2", 2), soft("s3", 3)]);
        assert_eq!(r.suppression.unwrap().expires_at, Some(Timestamp(33 * DAY)));
        let (r, _) = run(
            &p,
            &[event(
                "h",
                BounceType::Hard,
                BounceReason::MailboxNotFound,
                1,
            )],
        );
        assert_eq!(r.suppression.unwrap().expires_at, None, "no lifetime given");
    }

    #[test]
    fn after_its_expiry_soft_bounces_from_before_do_not_count_and_a_new_escalation_needs_all() {
        let p = with_ttl(&["repeated-soft-bounce=10d"]);
        // Suppressed on day 3 until day 13; soft bounces keep coming while suppressed.
        let (r, _) = run(
            &p,
            &[soft("s1", 1), soft("s2", 2), soft("s3", 3), soft("s4", 12)],
        );
        assert!(r.suppression.is_some());
        assert_eq!(p.recent_soft_bounces(&r, Timestamp(12 * DAY)), 4);
        assert_eq!(
            p.recent_soft_bounces(&r, Timestamp(13 * DAY)),
            0,
            "the count restarts at the expiry, before any sweep"
        );
        let t = p.apply_event(Some(&r), &soft("s5", 14));
        assert!(
            t.record.suppression.is_none(),
            "one soft bounce after the expiry"
        );
        assert_eq!(t.record.soft_bounces, [Timestamp(14 * DAY)]);
        assert_eq!(t.changes.len(), 1);
        assert_eq!(t.changes[0].kind, StateChangeKind::Expired);
        assert_eq!(t.changes[0].at, Timestamp(13 * DAY));
        let t2 = p.apply_event(Some(&t.record), &soft("s6", 15));
        let t3 = p.apply_event(Some(&t2.record), &soft("s7", 16));
        assert_eq!(t3.changes[0].kind, StateChangeKind::Escalated);
    }

    #[test]
    fn a_bounce_after_an_expiry_that_was_not_swept_treats_the_address_as_not_suppressed() {
        let p = with_ttl(&["mailbox-full=5d"]);
        let full = event("f", BounceType::Hard, BounceReason::MailboxFull, 1);
        let (r, _) = run(&p, &[full]);
        // A late report of a bounce from before the expiry changes nothing.
        let late = event("l", BounceType::Hard, BounceReason::MailboxFull, 4);
        assert!(p.apply_event(Some(&r), &late).changes.is_empty());
        // One after it suppresses again, recording the expiry first.
        let again = event("g", BounceType::Hard, BounceReason::MailboxFull, 7);
        let t = p.apply_event(Some(&r), &again);
        let kinds: Vec<_> = t.changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [StateChangeKind::Expired, StateChangeKind::Suppressed]
        );
        let s = t.record.suppression.unwrap();
        assert_eq!(
            (s.event_id.as_str(), s.expires_at),
            ("g", Some(Timestamp(12 * DAY)))
        );
    }

    #[test]
    fn a_lasting_suppression_takes_the_place_of_one_that_would_end() {
        let p = with_ttl(&["repeated-soft-bounce=30d"]);
        let (r, _) = run(&p, &[soft("s1", 1), soft("s2", 2), soft("s3", 3)]);
        let t = p.apply_event(Some(&r), &unsubscribe("u", "", 4));
        let s = t.record.suppression.unwrap();
        assert_eq!((s.reason, s.expires_at), (BounceReason::Unsubscribed, None));
        assert_eq!(t.changes[0].kind, StateChangeKind::Suppressed);
        assert!(
            t.changes[0].note.contains("would have ended"),
            "{}",
            t.changes[0].note
        );
    }

    #[test]
    fn an_unsubscribe_suppresses_every_mail_or_only_its_list_once() {
        let p = EscalationPolicy::default();
        let (r, changes) = run(&p, &[unsubscribe("u1", "weekly", 1)]);
        assert!(r.suppression.is_none());
        assert_eq!(r.list_unsubscribes.len(), 1);
        assert_eq!(
            r.blocking(Timestamp(2 * DAY), Some("weekly"))
                .map(|s| s.list_id.as_str()),
            Some("weekly")
        );
        assert!(r.blocking(Timestamp(2 * DAY), Some("daily")).is_none());
        assert!(r.blocking(Timestamp(2 * DAY), None).is_none());
        assert_eq!(changes[0].kind, StateChangeKind::UnsubscribedFromList);
        assert_eq!(changes[0].note, "list weekly");
        assert!(p
            .apply_event(Some(&r), &unsubscribe("u2", "weekly", 2))
            .changes
            .is_empty());

        let t = p.apply_event(Some(&r), &unsubscribe("u3", "", 3));
        assert_eq!(
            t.record.suppression.unwrap().reason,
            BounceReason::Unsubscribed
        );
        assert_eq!(t.changes[0].kind, StateChangeKind::Suppressed);

        let (lifted_list, list) = p
            .reactivate(
                Some(&r),
                "ops",
                "asked to come back",
                Timestamp(4 * DAY),
                Some("weekly"),
            )
            .unwrap();
        assert_eq!(list.list_id, "weekly");
        assert!(lifted_list.record.list_unsubscribes.is_empty());
        assert_eq!(
            lifted_list.changes[0].note,
            "list weekly: asked to come back"
        );
        assert_eq!(
            p.reactivate(Some(&r), "ops", "x", Timestamp(4 * DAY), Some("daily")),
            Err(NotSuppressed)
        );
    }
}
