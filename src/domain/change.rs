//! Changes of a suppression list, in commit order: what the change feed (WatchSuppressions)
//! gives followers, and what replicas of the store apply to their in-memory indexes.

use super::{StateChange, StateChangeKind, Suppression, Timestamp};

/// What changed in a suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The address became suppressed, or its suppression changed.
    Suppressed,
    /// The address's suppression was lifted.
    Lifted,
    /// The (still suppressed) address was replaced by a corrected one.
    Replaced,
    /// The address's suppression reached its expiry.
    Expired,
    /// The address's personal data was erased; it stays suppressed.
    Forgotten,
    /// A domain was suppressed.
    DomainSuppressed,
    /// A domain's suppression was lifted.
    DomainLifted,
}

impl ChangeKind {
    /// Every kind, in wire order.
    pub const ALL: [ChangeKind; 7] = [
        ChangeKind::Suppressed,
        ChangeKind::Lifted,
        ChangeKind::Replaced,
        ChangeKind::Expired,
        ChangeKind::Forgotten,
        ChangeKind::DomainSuppressed,
        ChangeKind::DomainLifted,
    ];

    /// The feed's changes for one committed change of an address's record: its suppression
    /// before and after, and the state changes written with it (the last one says who and why).
    /// Empty when the suppression list did not change.
    pub fn of_address(
        before: Option<&Suppression>,
        after: Option<&Suppression>,
        changes: &[StateChange],
    ) -> Vec<ChangeKind> {
        let has = |kind| changes.iter().any(|c| c.kind == kind);
        let mut kinds = Vec::new();
        match (before, after) {
            (Some(_), None) if has(StateChangeKind::Expired) => kinds.push(ChangeKind::Expired),
            (Some(_), None) => kinds.push(ChangeKind::Lifted),
            (b, Some(a)) if b != Some(a) => kinds.push(ChangeKind::Suppressed),
            _ => {}
        }
        if after.is_some() && has(StateChangeKind::Replaced) {
            kinds.push(ChangeKind::Replaced);
        }
        if has(StateChangeKind::Forgotten) {
            kinds.push(ChangeKind::Forgotten);
        }
        kinds
    }
}

/// One change of a tenant's suppression list, as the change log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListChange {
    /// Its place in the store's commit order (increasing, not dense).
    pub seq: u64,
    /// What changed.
    pub kind: ChangeKind,
    /// The normalized address; empty for domain changes and for forgotten addresses.
    pub address: String,
    /// The address's opaque stable id; empty for domain changes.
    pub address_id: String,
    /// The domain of a domain change, or the address's domain.
    pub domain: String,
    /// The suppression set, or the one that ended.
    pub suppression: Option<Suppression>,
    /// Who made the change.
    pub actor: String,
    /// The note or justification of the change, or what triggered it.
    pub note: String,
    /// When the change was made.
    pub at: Timestamp,
}

/// Builds a [`ListChange`] from the state change that caused it (its actor, note and time).
pub fn list_change(
    kind: ChangeKind,
    suppression: Option<Suppression>,
    cause: Option<&StateChange>,
    at: Timestamp,
) -> ListChange {
    ListChange {
        seq: 0,
        kind,
        address: String::new(),
        address_id: String::new(),
        domain: String::new(),
        suppression,
        actor: cause.map(|c| c.actor.clone()).unwrap_or_default(),
        note: cause.map(|c| c.note.clone()).unwrap_or_default(),
        at: cause.map_or(at, |c| c.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BounceReason;

    fn suppression(since: i64) -> Suppression {
        Suppression {
            reason: BounceReason::MailboxNotFound,
            bounce_type: None,
            since: Timestamp(since),
            source: String::new(),
            smtp_response: String::new(),
            event_id: String::new(),
            rule_id: String::new(),
            expires_at: None,
            list_id: String::new(),
        }
    }

    fn change(kind: StateChangeKind) -> StateChange {
        StateChange {
            kind,
            reason: BounceReason::MailboxNotFound,
            actor: "system".into(),
            note: String::new(),
            event_id: String::new(),
            at: Timestamp(5),
            on_behalf_of: String::new(),
        }
    }

    #[test]
    fn record_diffs_map_onto_feed_kinds() {
        let s1 = suppression(1);
        let s2 = suppression(2);
        let of = ChangeKind::of_address;
        assert_eq!(
            of(None, Some(&s1), &[change(StateChangeKind::Suppressed)]),
            [ChangeKind::Suppressed]
        );
        assert_eq!(
            of(
                Some(&s1),
                Some(&s2),
                &[change(StateChangeKind::Reclassified)]
            ),
            [ChangeKind::Suppressed]
        );
        assert_eq!(
            of(Some(&s1), None, &[change(StateChangeKind::Reactivated)]),
            [ChangeKind::Lifted]
        );
        assert_eq!(
            of(Some(&s1), None, &[change(StateChangeKind::Expired)]),
            [ChangeKind::Expired]
        );
        assert_eq!(
            of(Some(&s1), Some(&s1), &[change(StateChangeKind::Replaced)]),
            [ChangeKind::Replaced]
        );
        assert_eq!(
            of(Some(&s1), Some(&s1), &[change(StateChangeKind::Forgotten)]),
            [ChangeKind::Forgotten]
        );
        // Soft bounces, deliveries and enrichment marks leave the list alone.
        assert!(of(None, None, &[]).is_empty());
        assert!(of(
            Some(&s1),
            Some(&s1),
            &[change(StateChangeKind::MarkedForEnrichment)]
        )
        .is_empty());
    }
}
