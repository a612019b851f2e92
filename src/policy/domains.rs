//! What send results and operators do to a whole domain. Pure functions over
//! [`DomainRecord`]s.
//!
//! - An operator suppresses a domain (optionally with every domain under it) and lifts it with
//!   a justification; every address there answers SUPPRESSED, unless it is suppressed itself
//!   (its own suppression is more specific).
//! - Automatically: when `suppression_threshold` distinct addresses at one domain hard-bounce
//!   with DOMAIN_NOT_FOUND within `suppression_window`, the domain is suppressed, unless it is a
//!   popular mailbox provider (or under one) or had a delivery within the larger of the window
//!   and [`DELIVERY_GUARD`]: a DNS outage at a big provider must not suppress it. A later
//!   delivery lifts an automatic suppression.
//! - Accept-all: an address delivered to and then hard-bounced as a missing or disabled mailbox
//!   within [`ACCEPTED_THEN_BOUNCED`] (the bounce came after the server accepted the message)
//!   counts once toward its domain's evidence; at `accept_all_threshold` the domain is marked
//!   accept-all, inferred. An operator sets or clears the mark; clearing also clears an
//!   inferred mark and its evidence.

use std::time::Duration;

use super::SYSTEM_ACTOR;
use crate::domain::{
    self_and_parents, AcceptAll, AcceptAllOrigin, AddressRecord, BounceReason, BounceType,
    DomainRecord, DomainSuppression, RecentBounce, RecordedEvent, StateChange, StateChangeKind,
    Timestamp,
};

/// A domain with a delivery this recent is never suppressed automatically.
pub const DELIVERY_GUARD: Duration = Duration::from_secs(30 * 24 * 3600);
/// A hard bounce this soon after a delivery to the same address counts as a bounce after
/// acceptance (the accept-all evidence). Asynchronous bounces follow the accepted message
/// within minutes or hours; a mailbox that existed and was closed months later is ordinary
/// churn, not evidence.
pub const ACCEPTED_THEN_BOUNCED: Duration = Duration::from_secs(3 * 24 * 3600);
/// Most DOMAIN_NOT_FOUND bounces remembered per domain.
const MAX_RECENT: usize = 256;
const HOUR_MICROS: i64 = 3_600_000_000;

/// The domain rules in force.
#[derive(Debug, Clone, Copy)]
pub struct DomainPolicy {
    /// Distinct addresses with DOMAIN_NOT_FOUND hard bounces within the window that suppress
    /// their domain.
    pub suppression_threshold: u32,
    /// How far back those bounces count.
    pub suppression_window: Duration,
    /// Addresses delivered to and later hard-bounced that mark their domain accept-all.
    pub accept_all_threshold: u32,
    /// Domains never suppressed automatically, nor any domain under them.
    pub protected: &'static [&'static str],
}

impl Default for DomainPolicy {
    fn default() -> Self {
        DomainPolicy {
            suppression_threshold: 3,
            suppression_window: Duration::from_secs(7 * 24 * 3600),
            accept_all_threshold: 3,
            protected: &[],
        }
    }
}

/// A domain's next record and the changes that lead there, for its history.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainTransition {
    /// The record to store.
    pub record: DomainRecord,
    /// State changes to append to the domain's history.
    pub changes: Vec<StateChange>,
}

/// `ReactivateDomain` on a domain that is not suppressed itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("domain is not suppressed")]
pub struct DomainNotSuppressed;

/// The start of the hour holding `t`.
pub fn hour_of(t: Timestamp) -> Timestamp {
    Timestamp(t.micros().div_euclid(HOUR_MICROS) * HOUR_MICROS)
}

fn change(
    kind: StateChangeKind,
    reason: BounceReason,
    actor: &str,
    note: String,
    event_id: &str,
    at: Timestamp,
) -> StateChange {
    StateChange {
        kind,
        reason,
        actor: actor.to_string(),
        on_behalf_of: String::new(),
        note,
        event_id: event_id.to_string(),
        at,
    }
}

impl DomainPolicy {
    /// True for a popular mailbox provider's domain or a domain under one.
    pub fn is_protected(&self, domain: &str) -> bool {
        self_and_parents(domain).any(|d| self.protected.contains(&d))
    }

    /// How far back a delivery keeps a domain from automatic suppression.
    pub fn delivery_guard(&self) -> Duration {
        self.suppression_window.max(DELIVERY_GUARD)
    }

    /// Whether `event` (its address's record was `before`) may change its domain's record
    /// beyond the time of its latest delivery: a DOMAIN_NOT_FOUND hard bounce, or a hard bounce
    /// of a missing or disabled mailbox soon after a delivery to it. Called for every recorded
    /// send result: cheap.
    pub fn concerns(&self, event: &RecordedEvent, before: Option<&AddressRecord>) -> bool {
        let class = &event.classification;
        if class.bounce_type != BounceType::Hard {
            return false;
        }
        class.reason == BounceReason::DomainNotFound || bounced_after_delivery(event, before)
    }

    /// What a recorded send result does to its domain's record, `None` when nothing changes
    /// beyond the delivery time (which the store keeps by itself). `address` is the address's
    /// keyed hash.
    pub fn apply_event(
        &self,
        domain: &str,
        current: &DomainRecord,
        event: &RecordedEvent,
        address: u64,
        before: Option<&AddressRecord>,
    ) -> Option<DomainTransition> {
        let class = &event.classification;
        let at = event.occurred_at;
        let mut record = current.clone();
        let mut changes = Vec::new();
        match class.bounce_type {
            BounceType::Delivered => {
                let lifts = record
                    .suppression
                    .as_ref()
                    .is_some_and(|s| s.automatic && at >= s.since);
                if !lifts {
                    return None;
                }
                if let Some(lifted) = record.suppression.take() {
                    // The domain receives mail: the bounces that suppressed it are stale.
                    record.recent_not_found.clear();
                    changes.push(change(
                        StateChangeKind::DomainReactivated,
                        lifted.reason,
                        SYSTEM_ACTOR,
                        format!(
                            "event {} was delivered to an address at {domain}: the domain \
                             receives mail again",
                            event.event_id
                        ),
                        &event.event_id,
                        at,
                    ));
                }
            }
            BounceType::Hard if class.reason == BounceReason::DomainNotFound => {
                self.remember_not_found(&mut record, address, at);
                if let Some(c) = self.automatic_suppression(domain, &mut record, event) {
                    changes.push(c);
                }
            }
            BounceType::Hard if bounced_after_delivery(event, before) => {
                record.bounced_after_delivery = record.bounced_after_delivery.saturating_add(1);
                if record.accept_all.is_none()
                    && record.bounced_after_delivery >= self.accept_all_threshold
                {
                    let note = format!(
                        "{} addresses at {domain} were delivered to and later hard-bounced as \
                         missing or disabled mailboxes (latest event {})",
                        record.bounced_after_delivery, event.event_id
                    );
                    record.accept_all = Some(AcceptAll {
                        origin: AcceptAllOrigin::Inferred,
                        note: note.clone(),
                        since: at,
                        actor: SYSTEM_ACTOR.to_string(),
                    });
                    changes.push(change(
                        StateChangeKind::DomainPolicyChanged,
                        BounceReason::None,
                        SYSTEM_ACTOR,
                        format!("accept-all inferred: {note}"),
                        &event.event_id,
                        at,
                    ));
                }
            }
            _ => return None,
        }
        (record != *current).then_some(DomainTransition { record, changes })
    }

    /// Adds an address's DOMAIN_NOT_FOUND bounce to the record's recent ones: one per address
    /// (its latest), pruned to the window ending at the newest.
    fn remember_not_found(&self, record: &mut DomainRecord, address: u64, at: Timestamp) {
        let recent = &mut record.recent_not_found;
        match recent.iter_mut().find(|b| b.address == address) {
            Some(b) => b.at = b.at.max(at),
            None => recent.push(RecentBounce { address, at }),
        }
        recent.sort_by_key(|b| b.at);
        let newest = recent.last().map_or(at, |b| b.at);
        let floor = newest.minus(self.suppression_window);
        recent.retain(|b| b.at >= floor);
        if recent.len() > MAX_RECENT {
            let excess = recent.len() - MAX_RECENT;
            recent.drain(..excess);
        }
    }

    /// Distinct addresses with DOMAIN_NOT_FOUND bounces within the window ending at `now`.
    pub fn recent_not_found(&self, record: &DomainRecord, now: Timestamp) -> u32 {
        let floor = now.minus(self.suppression_window);
        record
            .recent_not_found
            .iter()
            .filter(|b| b.at >= floor && b.at <= now)
            .count() as u32
    }

    /// Suppresses the domain if the automatic rule and its guards allow it.
    fn automatic_suppression(
        &self,
        domain: &str,
        record: &mut DomainRecord,
        event: &RecordedEvent,
    ) -> Option<StateChange> {
        let at = event.occurred_at;
        let bounced = record.recent_not_found.len();
        if record.suppression.is_some()
            || bounced < self.suppression_threshold as usize
            || self.is_protected(domain)
        {
            return None;
        }
        let guard = self.delivery_guard();
        // A delivery within the guard before the bounce, or any after it, shows the domain
        // receives mail.
        if record
            .last_delivered
            .is_some_and(|d| d >= hour_of(at.minus(guard)))
        {
            return None;
        }
        let note = format!(
            "{bounced} addresses at {domain} hard-bounced with DOMAIN_NOT_FOUND within {} days, \
             and no delivery to it within {} days (latest event {})",
            self.suppression_window.as_secs() / 86_400,
            guard.as_secs() / 86_400,
            event.event_id
        );
        record.suppression = Some(DomainSuppression {
            reason: BounceReason::DomainNotFound,
            since: at,
            include_subdomains: false,
            automatic: true,
            note: note.clone(),
            actor: SYSTEM_ACTOR.to_string(),
            event_id: event.event_id.clone(),
        });
        Some(change(
            StateChangeKind::DomainSuppressed,
            BounceReason::DomainNotFound,
            SYSTEM_ACTOR,
            note,
            &event.event_id,
            at,
        ))
    }

    /// An operator suppresses the domain. `None` when it is suppressed already just so (same
    /// `include_subdomains`, by an operator): nothing changes. A suppression that differs (an
    /// automatic one, or another scope) is replaced by the operator's.
    pub fn suppress(
        &self,
        current: &DomainRecord,
        reason: BounceReason,
        note: &str,
        include_subdomains: bool,
        actor: &str,
        now: Timestamp,
    ) -> Option<DomainTransition> {
        if current
            .suppression
            .as_ref()
            .is_some_and(|s| !s.automatic && s.include_subdomains == include_subdomains)
        {
            return None;
        }
        let mut record = current.clone();
        record.suppression = Some(DomainSuppression {
            reason,
            since: now,
            include_subdomains,
            automatic: false,
            note: note.to_string(),
            actor: actor.to_string(),
            event_id: String::new(),
        });
        let scope = if include_subdomains {
            " (and every domain under it)"
        } else {
            ""
        };
        let changes = vec![change(
            StateChangeKind::DomainSuppressed,
            reason,
            actor,
            with_note(format!("suppressed{scope}"), note),
            "",
            now,
        )];
        Some(DomainTransition { record, changes })
    }

    /// An operator lifts the domain's own suppression (manual or automatic). The
    /// DOMAIN_NOT_FOUND bounces that counted toward it are forgotten, so the next one does not
    /// suppress the domain again at once.
    pub fn reactivate(
        &self,
        current: &DomainRecord,
        justification: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<(DomainTransition, DomainSuppression), DomainNotSuppressed> {
        let mut record = current.clone();
        let lifted = record.suppression.take().ok_or(DomainNotSuppressed)?;
        record.recent_not_found.clear();
        let changes = vec![change(
            StateChangeKind::DomainReactivated,
            lifted.reason,
            actor,
            justification.to_string(),
            "",
            now,
        )];
        Ok((DomainTransition { record, changes }, lifted))
    }

    /// An operator marks the domain accept-all or clears the mark. `None` when nothing changes
    /// (marked by an operator already, or not marked). Clearing also clears the inference's
    /// evidence, so that it starts again from zero.
    pub fn set_accept_all(
        &self,
        current: &DomainRecord,
        accept_all: bool,
        note: &str,
        actor: &str,
        now: Timestamp,
    ) -> Option<DomainTransition> {
        let mut record = current.clone();
        let text = match (accept_all, &current.accept_all) {
            (true, Some(mark)) if mark.origin == AcceptAllOrigin::Set => return None,
            (false, None) => return None,
            (true, _) => {
                record.accept_all = Some(AcceptAll {
                    origin: AcceptAllOrigin::Set,
                    note: note.to_string(),
                    since: now,
                    actor: actor.to_string(),
                });
                with_note("accept-all set".to_string(), note)
            }
            (false, Some(_)) => {
                record.accept_all = None;
                record.bounced_after_delivery = 0;
                with_note("accept-all cleared".to_string(), note)
            }
        };
        let changes = vec![change(
            StateChangeKind::DomainPolicyChanged,
            BounceReason::None,
            actor,
            text,
            "",
            now,
        )];
        Some(DomainTransition { record, changes })
    }
}

/// What happened, then the operator's note if there is one.
fn with_note(what: String, note: &str) -> String {
    if note.is_empty() {
        what
    } else {
        format!("{what}: {note}")
    }
}

/// A hard bounce of a missing or disabled mailbox, at an address that was not suppressed and
/// was delivered to shortly before: the receiving server accepted mail it could not deliver.
/// Counted once per address, as the bounce suppresses it.
fn bounced_after_delivery(event: &RecordedEvent, before: Option<&AddressRecord>) -> bool {
    let class = &event.classification;
    let mailbox = matches!(
        class.reason,
        BounceReason::MailboxNotFound | BounceReason::MailboxDisabled
    );
    let at = event.occurred_at;
    class.bounce_type == BounceType::Hard
        && mailbox
        && before.is_some_and(|r| {
            r.suppression.is_none()
                && r.last_delivered
                    .is_some_and(|d| d <= at && d >= at.minus(ACCEPTED_THEN_BOUNCED))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Classification, ReportedOutcome};

    const DAY: i64 = 86_400_000_000;
    const T0: i64 = 1_780_000_000_000_000;

    fn event(id: &str, t: BounceType, reason: BounceReason, day: i64) -> RecordedEvent {
        RecordedEvent {
            event_id: id.into(),
            address: "a@defunct.example".into(),
            outcome: ReportedOutcome::Bounce,
            smtp_response: String::new(),
            enhanced_status: None,
            source: String::new(),
            campaign: String::new(),
            segment: String::new(),
            provider: String::new(),
            list_id: String::new(),
            occurred_at: Timestamp(T0 + day * DAY),
            recorded_at: Timestamp(T0 + day * DAY),
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

    fn not_found(id: &str, day: i64) -> RecordedEvent {
        event(id, BounceType::Hard, BounceReason::DomainNotFound, day)
    }

    fn policy() -> DomainPolicy {
        DomainPolicy {
            protected: &["gmail.com"],
            ..DomainPolicy::default()
        }
    }

    /// Applies bounces of addresses 1, 2, 3... in order.
    fn run(
        p: &DomainPolicy,
        domain: &str,
        mut record: DomainRecord,
        events: &[RecordedEvent],
    ) -> (DomainRecord, Vec<StateChange>) {
        let mut all = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let Some(t) = p.apply_event(domain, &record, e, i as u64 + 1, None) {
                record = t.record;
                all.extend(t.changes);
            }
        }
        (record, all)
    }

    #[test]
    fn k_distinct_addresses_within_the_window_suppress_the_domain() {
        let p = policy();
        let (r, changes) = run(
            &p,
            "defunct.example",
            DomainRecord::default(),
            &[not_found("e1", 0), not_found("e2", 1), not_found("e3", 2)],
        );
        let s = r.suppression.expect("suppressed");
        assert!(s.automatic && s.reason == BounceReason::DomainNotFound);
        assert_eq!(s.event_id, "e3");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, StateChangeKind::DomainSuppressed);
        assert_eq!(changes[0].actor, SYSTEM_ACTOR);
    }

    #[test]
    fn fewer_than_k_or_outside_the_window_or_one_address_twice_do_not() {
        let p = policy();
        let (r, _) = run(
            &p,
            "defunct.example",
            DomainRecord::default(),
            &[not_found("e1", 0), not_found("e2", 1)],
        );
        assert!(r.suppression.is_none());
        let (r, _) = run(
            &p,
            "defunct.example",
            DomainRecord::default(),
            &[not_found("e1", 0), not_found("e2", 4), not_found("e3", 8)],
        );
        assert!(
            r.suppression.is_none(),
            "day 0 is more than 7 days before day 8"
        );
        assert_eq!(r.recent_not_found.len(), 2);
        let mut record = DomainRecord::default();
        for (i, day) in [0, 1, 2].into_iter().enumerate() {
            let e = not_found(&format!("e{i}"), day);
            if let Some(t) = p.apply_event("defunct.example", &record, &e, 7, None) {
                record = t.record;
            }
        }
        assert!(record.suppression.is_none(), "one address is one address");
        assert_eq!(record.recent_not_found.len(), 1);
    }

    #[test]
    fn popular_providers_and_domains_with_recent_deliveries_are_never_suppressed_automatically() {
        let p = policy();
        let bounces = [not_found("e1", 0), not_found("e2", 1), not_found("e3", 2)];
        for domain in ["gmail.com", "eu.gmail.com"] {
            let (r, _) = run(&p, domain, DomainRecord::default(), &bounces);
            assert!(r.suppression.is_none(), "{domain}");
        }
        let delivered_lately = DomainRecord {
            last_delivered: Some(Timestamp(T0 - 20 * DAY)),
            ..DomainRecord::default()
        };
        let (r, _) = run(&p, "defunct.example", delivered_lately, &bounces);
        assert!(r.suppression.is_none(), "delivered 20 days before");
        let delivered_long_ago = DomainRecord {
            last_delivered: Some(Timestamp(T0 - 40 * DAY)),
            ..DomainRecord::default()
        };
        let (r, _) = run(&p, "defunct.example", delivered_long_ago, &bounces);
        assert!(r.suppression.is_some(), "delivered 40 days before");
    }

    #[test]
    fn a_later_delivery_lifts_an_automatic_suppression_but_not_a_manual_one() {
        let p = policy();
        let (auto, _) = run(
            &p,
            "defunct.example",
            DomainRecord::default(),
            &[not_found("e1", 0), not_found("e2", 1), not_found("e3", 2)],
        );
        let earlier = event("d0", BounceType::Delivered, BounceReason::None, 1);
        assert!(p
            .apply_event("defunct.example", &auto, &earlier, 9, None)
            .is_none());
        let delivered = event("d1", BounceType::Delivered, BounceReason::None, 3);
        let t = p
            .apply_event("defunct.example", &auto, &delivered, 9, None)
            .expect("lifted");
        assert!(t.record.suppression.is_none());
        assert!(t.record.recent_not_found.is_empty());
        assert_eq!(t.changes[0].kind, StateChangeKind::DomainReactivated);
        assert_eq!(t.changes[0].event_id, "d1");
        assert!(t.changes[0].note.contains("d1"));

        let manual = p
            .suppress(
                &DomainRecord::default(),
                BounceReason::Manual,
                "gone",
                false,
                "ops",
                Timestamp(T0),
            )
            .unwrap()
            .record;
        assert!(p
            .apply_event("defunct.example", &manual, &delivered, 9, None)
            .is_none());
    }

    #[test]
    fn n_bounces_after_delivery_infer_accept_all_once_and_clearing_resets_the_evidence() {
        let p = policy();
        let delivered_before = AddressRecord {
            last_delivered: Some(Timestamp(T0 + 5 * DAY - DAY / 2)),
            ..AddressRecord::default()
        };
        let bounce = event("h", BounceType::Hard, BounceReason::MailboxNotFound, 5);
        assert!(p.concerns(&bounce, Some(&delivered_before)));
        let long_ago = AddressRecord {
            last_delivered: Some(Timestamp(T0)),
            ..AddressRecord::default()
        };
        assert!(!p.concerns(&bounce, Some(&long_ago)), "ordinary churn");
        assert!(!p.concerns(&bounce, None));

        let mut record = DomainRecord::default();
        let mut changes = Vec::new();
        for i in 0..4 {
            if let Some(t) = p.apply_event(
                "catchall.example",
                &record,
                &bounce,
                i,
                Some(&delivered_before),
            ) {
                record = t.record;
                changes.extend(t.changes);
            }
        }
        assert_eq!(record.bounced_after_delivery, 4);
        let mark = record.accept_all.clone().expect("inferred");
        assert_eq!(mark.origin, AcceptAllOrigin::Inferred);
        assert_eq!(changes.len(), 1, "inferred once");
        assert_eq!(changes[0].kind, StateChangeKind::DomainPolicyChanged);

        let cleared = p
            .set_accept_all(
                &record,
                false,
                "verified: not accept-all",
                "ops",
                Timestamp(T0),
            )
            .unwrap();
        assert!(cleared.record.accept_all.is_none());
        assert_eq!(cleared.record.bounced_after_delivery, 0);
        assert!(p
            .set_accept_all(&cleared.record, false, "", "ops", Timestamp(T0))
            .is_none());
        let set = p
            .set_accept_all(
                &cleared.record,
                true,
                "provider says catch-all",
                "ops",
                Timestamp(T0),
            )
            .unwrap();
        assert_eq!(set.record.accept_all.unwrap().origin, AcceptAllOrigin::Set);
    }

    #[test]
    fn manual_suppression_is_idempotent_replaces_an_automatic_one_and_reactivation_needs_one() {
        let p = policy();
        let now = Timestamp(T0);
        let t = p
            .suppress(
                &DomainRecord::default(),
                BounceReason::Manual,
                "closed",
                true,
                "ops",
                now,
            )
            .unwrap();
        assert!(p
            .suppress(&t.record, BounceReason::Manual, "again", true, "ops", now)
            .is_none());
        assert!(p
            .suppress(
                &t.record,
                BounceReason::Manual,
                "narrower",
                false,
                "ops",
                now
            )
            .is_some());
        let (auto, _) = run(
            &p,
            "defunct.example",
            DomainRecord::default(),
            &[not_found("e1", 0), not_found("e2", 1), not_found("e3", 2)],
        );
        let made_manual = p
            .suppress(&auto, BounceReason::Manual, "for good", false, "ops", now)
            .unwrap();
        assert!(!made_manual.record.suppression.unwrap().automatic);

        let (lifted, s) = p.reactivate(&auto, "checked the MX", "ops", now).unwrap();
        assert!(s.automatic);
        assert!(lifted.record.suppression.is_none() && lifted.record.recent_not_found.is_empty());
        assert_eq!(
            p.reactivate(&lifted.record, "x", "ops", now),
            Err(DomainNotSuppressed)
        );
    }
}
