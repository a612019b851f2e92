//! How long suppressions last, and what happens when one ends.
//!
//! - Each reason may be given a lifetime (`--suppression-ttl mailbox-full=14d`); a reason
//!   without one lasts until lifted (the default for every reason). The lifetime is fixed on
//!   the suppression when it is made: `expires_at = since + ttl`, shown to clients and kept
//!   when the server's setting changes later.
//! - A suppression stops blocking at its `expires_at` ([`Suppression::blocks_at`]), whether
//!   or not it has been swept from the record yet; [`expire`] clears what has ended, with an
//!   `Expired` change, and restarts the soft-bounce count.
//! - A suppression that ends later takes the place of one that ends sooner ([`outlasts`]), so
//!   that a hard bounce, complaint or unsubscribe is never lost when a passing suppression
//!   ends.

use std::str::FromStr;
use std::time::Duration;

use super::SYSTEM_ACTOR;
use crate::domain::{
    AddressRecord, BounceReason, StateChange, StateChangeKind, Suppression, Timestamp,
};

/// One `REASON=DURATION` of `--suppression-ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonTtl {
    /// The reason whose suppressions expire.
    pub reason: BounceReason,
    /// How long they last.
    pub ttl: Duration,
}

impl FromStr for ReasonTtl {
    type Err = String;

    /// `mailbox-full=14d`, `repeated-soft-bounce=30d`, `manual=12h`: a reason as
    /// [`BounceReason::name`] spells it (the proto name, `BOUNCE_REASON_MAILBOX_FULL`, is taken
    /// too) and a duration as humantime reads it (`30d`, `12h`, `1w 2d`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (reason, duration) = s.split_once('=').ok_or_else(|| {
            format!("expected REASON=DURATION (e.g. mailbox-full=14d), got {s:?}")
        })?;
        let name = reason.trim().to_ascii_lowercase().replace('_', "-");
        let name = name.strip_prefix("bounce-reason-").unwrap_or(&name);
        let reason = BounceReason::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = BounceReason::SUPPRESSING.iter().map(|r| r.name()).collect();
            format!("unknown reason {reason:?} (one of {})", known.join(", "))
        })?;
        let ttl = humantime::parse_duration(duration.trim())
            .map_err(|e| format!("invalid duration {duration:?} (e.g. 30d, 12h): {e}"))?;
        if ttl.is_zero() {
            return Err(format!(
                "the duration of {} must be longer than zero",
                reason.name()
            ));
        }
        Ok(ReasonTtl { reason, ttl })
    }
}

/// How long suppressions last, by reason. A reason without an entry lasts until lifted.
/// `Copy`, so that the write policy can carry it into every write's decision for free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SuppressionTtl {
    /// By position of the reason in [`BounceReason::SUPPRESSING`].
    by_reason: [Option<Duration>; BounceReason::SUPPRESSING.len()],
}

impl SuppressionTtl {
    /// The table of `entries`; a reason named twice is refused.
    pub fn from_entries(entries: &[ReasonTtl]) -> Result<SuppressionTtl, String> {
        let mut table = SuppressionTtl::default();
        for e in entries {
            let slot = table
                .slot(e.reason)
                .ok_or_else(|| format!("suppressions for {} cannot expire", e.reason.name()))?;
            if slot.replace(e.ttl).is_some() {
                return Err(format!("{} is given a lifetime twice", e.reason.name()));
            }
        }
        Ok(table)
    }

    fn slot(&mut self, reason: BounceReason) -> Option<&mut Option<Duration>> {
        let at = BounceReason::SUPPRESSING
            .iter()
            .position(|r| *r == reason)?;
        self.by_reason.get_mut(at)
    }

    /// How long suppressions for `reason` last; `None`: until lifted.
    pub fn ttl(&self, reason: BounceReason) -> Option<Duration> {
        let at = BounceReason::SUPPRESSING
            .iter()
            .position(|r| *r == reason)?;
        self.by_reason[at]
    }

    /// When a suppression for `reason` that starts at `since` ends; `None`: never by itself.
    pub fn expires_at(&self, reason: BounceReason, since: Timestamp) -> Option<Timestamp> {
        self.ttl(reason).map(|ttl| since.plus(ttl))
    }

    /// The reasons with a lifetime, in [`BounceReason::SUPPRESSING`] order.
    pub fn entries(&self) -> impl Iterator<Item = ReasonTtl> + '_ {
        BounceReason::SUPPRESSING
            .iter()
            .zip(&self.by_reason)
            .filter_map(|(&reason, ttl)| ttl.map(|ttl| ReasonTtl { reason, ttl }))
    }
}

/// Whether `new` should take the place of `current` (both suppressions of every mail, or both
/// unsubscribes from one list): only when `current` ends by itself and `new` ends later, so
/// that a lasting reason is never lost when a passing one ends. Of two suppressions for the
/// same reason that both end, the first stands (suppressing again changes nothing).
pub fn outlasts(new: &Suppression, current: &Suppression) -> bool {
    match (current.expires_at, new.expires_at) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(current_end), Some(new_end)) => new_end > current_end && new.reason != current.reason,
    }
}

/// Ends what of `record` has expired by `at` (its suppression of every mail, its unsubscribes
/// from lists): removes it and returns an `Expired` change for each, dated at its expiry, by
/// the system. Soft bounces from before an expired suppression's end no longer count: the
/// count restarts. Every write applies it first, at its own instant, and the sweep applies it
/// to the records whose expiry has come.
pub fn expire(record: &mut AddressRecord, at: Timestamp) -> Vec<StateChange> {
    let mut changes = Vec::new();
    let ended = |s: &Suppression, note: String| StateChange {
        kind: StateChangeKind::Expired,
        reason: s.reason,
        actor: SYSTEM_ACTOR.to_string(),
        on_behalf_of: String::new(),
        note,
        event_id: s.event_id.clone(),
        at: s.expires_at.unwrap_or(at),
    };
    if let Some(s) = record.suppression.take_if(|s| !s.blocks_at(at)) {
        let end = s.expires_at.unwrap_or(at);
        record.soft_bounces.retain(|&t| t >= end);
        changes.push(ended(&s, "the suppression reached its expiry".to_string()));
    }
    record.list_unsubscribes.retain(|s| {
        let stays = s.blocks_at(at);
        if !stays {
            changes.push(ended(
                s,
                format!("list {}: the unsubscribe reached its expiry", s.list_id),
            ));
        }
        stays
    });
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn suppression(reason: BounceReason, expires_day: Option<i64>) -> Suppression {
        Suppression {
            reason,
            bounce_type: None,
            since: Timestamp(0),
            source: String::new(),
            smtp_response: String::new(),
            event_id: "e1".into(),
            rule_id: String::new(),
            expires_at: expires_day.map(|d| Timestamp(d * DAY)),
            list_id: String::new(),
        }
    }

    #[test]
    fn a_reason_and_a_duration_are_read_in_the_spellings_operators_use() {
        let parsed: ReasonTtl = "repeated-soft-bounce=30d".parse().unwrap();
        assert_eq!(parsed.reason, BounceReason::RepeatedSoftBounce);
        assert_eq!(parsed.ttl, Duration::from_secs(30 * 86_400));
        let parsed: ReasonTtl = "BOUNCE_REASON_MAILBOX_FULL=12h".parse().unwrap();
        assert_eq!(parsed.reason, BounceReason::MailboxFull);
        assert_eq!(parsed.ttl, Duration::from_secs(12 * 3600));
        for bad in [
            "mailbox-full",
            "mailbox-fool=1d",
            "mailbox-full=soon",
            "manual=0s",
            "none=1d",
        ] {
            assert!(bad.parse::<ReasonTtl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_reasons_with_a_lifetime_expire_and_a_reason_may_be_given_once() {
        let ttl = SuppressionTtl::from_entries(&["mailbox-full=14d".parse().unwrap()]).unwrap();
        assert_eq!(
            ttl.expires_at(BounceReason::MailboxFull, Timestamp(DAY)),
            Some(Timestamp(15 * DAY))
        );
        assert_eq!(
            ttl.expires_at(BounceReason::MailboxNotFound, Timestamp(DAY)),
            None
        );
        assert_eq!(
            SuppressionTtl::default().expires_at(BounceReason::Manual, Timestamp(0)),
            None
        );
        let twice = ["manual=1d".parse().unwrap(), "manual=2d".parse().unwrap()];
        assert!(SuppressionTtl::from_entries(&twice).is_err());
    }

    #[test]
    fn a_suppression_blocks_until_the_instant_of_its_expiry() {
        let s = suppression(BounceReason::MailboxFull, Some(10));
        assert!(s.blocks_at(Timestamp(10 * DAY - 1)));
        assert!(!s.blocks_at(Timestamp(10 * DAY)));
        assert!(suppression(BounceReason::Manual, None).blocks_at(Timestamp(i64::MAX)));
    }

    #[test]
    fn only_a_suppression_that_ends_later_takes_the_place_of_one_that_ends() {
        let passing = suppression(BounceReason::MailboxFull, Some(10));
        let lasting = suppression(BounceReason::MailboxNotFound, None);
        assert!(outlasts(&lasting, &passing));
        assert!(!outlasts(&passing, &lasting));
        assert!(!outlasts(&lasting, &lasting.clone()));
        assert!(outlasts(
            &suppression(BounceReason::Complaint, Some(20)),
            &passing
        ));
        assert!(!outlasts(
            &suppression(BounceReason::Complaint, Some(5)),
            &passing
        ));
        assert!(
            !outlasts(&suppression(BounceReason::MailboxFull, Some(20)), &passing),
            "suppressing again for the same reason changes nothing"
        );
    }

    #[test]
    fn expiry_clears_what_ended_restarts_the_soft_count_and_keeps_the_rest() {
        let mut record = AddressRecord {
            suppression: Some(suppression(BounceReason::RepeatedSoftBounce, Some(10))),
            soft_bounces: vec![Timestamp(2 * DAY), Timestamp(9 * DAY), Timestamp(11 * DAY)],
            list_unsubscribes: vec![
                Suppression {
                    list_id: "weekly".into(),
                    ..suppression(BounceReason::Unsubscribed, Some(12))
                },
                Suppression {
                    list_id: "daily".into(),
                    ..suppression(BounceReason::Unsubscribed, None)
                },
            ],
            ..AddressRecord::default()
        };
        assert!(expire(&mut record.clone(), Timestamp(10 * DAY - 1)).is_empty());

        let changes = expire(&mut record, Timestamp(12 * DAY));
        assert!(record.suppression.is_none());
        assert_eq!(record.soft_bounces, [Timestamp(11 * DAY)]);
        let lists: Vec<&str> = record.unsubscribed_lists_at(Timestamp(12 * DAY)).collect();
        assert_eq!(lists, ["daily"]);
        assert_eq!(changes.len(), 2);
        assert!(changes
            .iter()
            .all(|c| c.kind == StateChangeKind::Expired && c.actor == SYSTEM_ACTOR));
        assert_eq!(changes[0].at, Timestamp(10 * DAY));
        assert_eq!(changes[0].reason, BounceReason::RepeatedSoftBounce);
        assert_eq!(changes[1].at, Timestamp(12 * DAY));
        assert!(changes[1].note.contains("weekly"), "{}", changes[1].note);
    }
}
