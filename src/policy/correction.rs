//! Replacing a bad address by a corrected one.
//!
//! The brief's rule: correct only with high confidence. A replacement never lifts the old
//! address's suppression; it points the old record at the new address (so an import of the old
//! one can be fixed instead of dropped) and marks the new one "pending validation" until its
//! first delivery. Below the confidence threshold nothing is replaced, and the old record is
//! marked as needing enrichment instead.

use crate::domain::{
    AddressRecord, BounceReason, EmailAddress, EvidenceKind, Replacement, StateChange,
    StateChangeKind, Timestamp,
};

/// Why a replacement cannot be made at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceRefusal {
    /// The old address is not suppressed.
    #[error("{0} is not suppressed; only suppressed addresses are replaced")]
    OldNotSuppressed(String),
    /// The old address is suppressed for a reason that says nothing about the address itself.
    #[error("{0} is suppressed for {1:?}, which is not a problem of the address; only addresses suppressed as not found, domain not found, invalid or disabled are replaced")]
    NotAddressLevel(String, BounceReason),
    /// The old address already points at another replacement.
    #[error("{0} was already replaced by {1}")]
    AlreadyReplaced(String, String),
    /// The new address is suppressed itself.
    #[error("{0} is itself suppressed")]
    NewSuppressed(String),
}

/// What a replacement request does.
#[derive(Debug, Clone, PartialEq)]
// One value per write, moved once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ReplaceDecision {
    /// Replace: the new records of both addresses.
    Replace {
        old: AddressRecord,
        new: AddressRecord,
        old_changes: Vec<StateChange>,
        new_changes: Vec<StateChange>,
    },
    /// Already replaced by this same address: nothing to do.
    AlreadyDone,
    /// Too little confidence: the old record is marked for enrichment (`old`, with its change
    /// if the mark is new), nothing is replaced.
    LowConfidence {
        old: AddressRecord,
        old_changes: Vec<StateChange>,
    },
}

/// A replacement request, validated.
#[derive(Debug, Clone)]
pub struct ReplaceRequest<'a> {
    pub old_address: &'a EmailAddress,
    pub new_address: &'a EmailAddress,
    pub evidence: EvidenceKind,
    pub confidence: f32,
    pub note: &'a str,
    pub actor: &'a str,
    pub now: Timestamp,
    /// Confidence below which nothing is replaced.
    pub threshold: f32,
}

/// Decides a replacement from both addresses' current records.
pub fn decide_replacement(
    req: &ReplaceRequest<'_>,
    old: Option<&AddressRecord>,
    new: Option<&AddressRecord>,
) -> Result<ReplaceDecision, ReplaceRefusal> {
    let old_name = req.old_address.as_str().to_string();
    let new_name = req.new_address.as_str().to_string();
    let old = old
        .filter(|r| r.suppression_at(req.now).is_some())
        .ok_or_else(|| ReplaceRefusal::OldNotSuppressed(old_name.clone()))?;
    let reason = old
        .suppression
        .as_ref()
        .map_or(BounceReason::Unknown, |s| s.reason);
    if !reason.is_address_level() {
        return Err(ReplaceRefusal::NotAddressLevel(old_name, reason));
    }
    match &old.replaced_by {
        Some(existing) if *existing == new_name => return Ok(ReplaceDecision::AlreadyDone),
        Some(existing) => return Err(ReplaceRefusal::AlreadyReplaced(old_name, existing.clone())),
        None => {}
    }
    if new.is_some_and(|r| r.suppression_at(req.now).is_some()) {
        return Err(ReplaceRefusal::NewSuppressed(new_name));
    }
    let change = |kind, note: String| StateChange {
        kind,
        reason,
        actor: req.actor.to_string(),
        on_behalf_of: String::new(),
        note,
        event_id: String::new(),
        at: req.now,
    };
    if req.confidence < req.threshold {
        let mut old = old.clone();
        let mut old_changes = Vec::new();
        if !old.needs_enrichment {
            old.needs_enrichment = true;
            old_changes.push(change(
                StateChangeKind::MarkedForEnrichment,
                format!(
                    "replacement by {new_name} refused: confidence {:.2} below {:.2} ({:?}); {}",
                    req.confidence, req.threshold, req.evidence, req.note
                ),
            ));
        }
        return Ok(ReplaceDecision::LowConfidence { old, old_changes });
    }
    let mut old = old.clone();
    old.replaced_by = Some(new_name.clone());
    old.needs_enrichment = false;
    let mut new = new.cloned().unwrap_or_default();
    if req.evidence == EvidenceKind::VerifiedReplacement {
        // The contact confirmed the address: a person acts through that mailbox.
        new.engaged_at = Some(req.now);
    }
    // An address that has already had a delivery needs no validation message.
    if new.last_delivered.is_none() {
        new.pending_validation = Some(Replacement {
            replaces: old_name.clone(),
            evidence: req.evidence,
            confidence: req.confidence,
            at: req.now,
        });
    }
    let old_changes = vec![change(
        StateChangeKind::Replaced,
        format!(
            "replaced by {new_name} ({:?}, confidence {:.2}); {}",
            req.evidence, req.confidence, req.note
        ),
    )];
    let new_changes = vec![StateChange {
        reason: BounceReason::None,
        ..change(
            StateChangeKind::ReplacementPending,
            format!(
                "replaces {old_name} ({:?}, confidence {:.2}); {}",
                req.evidence, req.confidence, req.note
            ),
        )
    }];
    Ok(ReplaceDecision::Replace {
        old,
        new,
        old_changes,
        new_changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BounceType, Suppression};

    fn suppressed(reason: BounceReason) -> AddressRecord {
        AddressRecord {
            suppression: Some(Suppression {
                reason,
                bounce_type: Some(BounceType::Hard),
                since: Timestamp(1),
                source: "s".into(),
                smtp_response: String::new(),
                event_id: "e".into(),
                rule_id: "r".into(),
                expires_at: None,
                list_id: String::new(),
            }),
            ..AddressRecord::default()
        }
    }

    fn request<'a>(
        old: &'a EmailAddress,
        new: &'a EmailAddress,
        confidence: f32,
    ) -> ReplaceRequest<'a> {
        ReplaceRequest {
            old_address: old,
            new_address: new,
            evidence: EvidenceKind::CompanyPattern,
            confidence,
            note: "",
            actor: "ops",
            now: Timestamp(2),
            threshold: 0.9,
        }
    }

    #[test]
    fn replaces_with_high_confidence_and_keeps_the_old_suppressed() {
        let old = EmailAddress::parse("jnae@company.com").unwrap();
        let new = EmailAddress::parse("jane.smith@company.com").unwrap();
        let rec = suppressed(BounceReason::MailboxNotFound);
        let d = decide_replacement(&request(&old, &new, 0.95), Some(&rec), None).unwrap();
        let ReplaceDecision::Replace { old: o, new: n, .. } = d else {
            panic!("{d:?}")
        };
        assert!(o.is_suppressed());
        assert_eq!(o.replaced_by.as_deref(), Some("jane.smith@company.com"));
        assert_eq!(n.pending_validation.unwrap().replaces, "jnae@company.com");
        assert_eq!(n.engaged_at, None, "a company pattern is a guess");
        let verified = ReplaceRequest {
            evidence: EvidenceKind::VerifiedReplacement,
            ..request(&old, &new, 0.95)
        };
        let ReplaceDecision::Replace { new: n, .. } =
            decide_replacement(&verified, Some(&rec), None).unwrap()
        else {
            panic!("replaced")
        };
        assert_eq!(n.engaged_at, Some(Timestamp(2)), "the contact confirmed it");
    }

    #[test]
    fn low_confidence_marks_for_enrichment_once() {
        let old = EmailAddress::parse("jnae@company.com").unwrap();
        let new = EmailAddress::parse("jane.smith@company.com").unwrap();
        let rec = suppressed(BounceReason::MailboxNotFound);
        let d = decide_replacement(&request(&old, &new, 0.5), Some(&rec), None).unwrap();
        let ReplaceDecision::LowConfidence {
            old: o,
            old_changes,
        } = d
        else {
            panic!()
        };
        assert!(o.needs_enrichment && o.replaced_by.is_none());
        assert_eq!(old_changes.len(), 1);
        let again = decide_replacement(&request(&old, &new, 0.5), Some(&o), None).unwrap();
        let ReplaceDecision::LowConfidence { old_changes, .. } = again else {
            panic!()
        };
        assert!(old_changes.is_empty());
    }

    #[test]
    fn refuses_what_must_not_be_replaced() {
        let old = EmailAddress::parse("a@company.com").unwrap();
        let new = EmailAddress::parse("b@company.com").unwrap();
        let r = request(&old, &new, 1.0);
        assert!(matches!(
            decide_replacement(&r, None, None),
            Err(ReplaceRefusal::OldNotSuppressed(_))
        ));
        let complained = suppressed(BounceReason::Complaint);
        assert!(matches!(
            decide_replacement(&r, Some(&complained), None),
            Err(ReplaceRefusal::NotAddressLevel(..))
        ));
        let rec = suppressed(BounceReason::MailboxNotFound);
        let bad_new = suppressed(BounceReason::MailboxNotFound);
        assert!(matches!(
            decide_replacement(&r, Some(&rec), Some(&bad_new)),
            Err(ReplaceRefusal::NewSuppressed(_))
        ));
    }
}
