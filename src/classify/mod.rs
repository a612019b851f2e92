//! SMTP response -> bounce type and reason. Pure functions, no I/O.
//!
//! PLACEHOLDER while the rule engine is being built: decides from the enhanced status code and
//! the reply code only.

use crate::domain::{BounceReason, BounceType, Classification, ReportedOutcome, SmtpEvidence};

/// Version of the rule set; stored on every event so a later rule change can be re-applied.
pub const RULES_VERSION: u32 = 1;

/// The compiled classification rules. Build once, share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Classifier {}

impl Classifier {
    /// Compiles the rule set.
    pub fn new() -> Self {
        Classifier {}
    }

    /// Classifies one send result.
    pub fn classify(&self, ev: &SmtpEvidence<'_>) -> Classification {
        let (t, r, id) = match ev.reported {
            ReportedOutcome::Delivered => {
                (BounceType::Delivered, BounceReason::None, "label.delivered")
            }
            ReportedOutcome::Complaint => (
                BounceType::Complaint,
                BounceReason::Complaint,
                "label.complaint",
            ),
            ReportedOutcome::HardBounce => (BounceType::Hard, BounceReason::Unknown, "label.hard"),
            ReportedOutcome::SoftBounce => (BounceType::Soft, BounceReason::Unknown, "label.soft"),
            ReportedOutcome::Block => (BounceType::Block, BounceReason::Unknown, "label.block"),
            ReportedOutcome::Bounce => (BounceType::Soft, BounceReason::Unknown, "label.bounce"),
        };
        let text = ev.smtp_response;
        let (t, r, id) = if text.contains("5.1.1") {
            (
                BounceType::Hard,
                BounceReason::MailboxNotFound,
                "status.5.1.1",
            )
        } else if text.contains("5.7.1") || text.contains("5.7.26") {
            (BounceType::Block, BounceReason::SenderBlocked, "status.5.7")
        } else if text.contains("5.2.2") {
            (BounceType::Soft, BounceReason::MailboxFull, "status.5.2.2")
        } else if text.starts_with('4') {
            (BounceType::Soft, BounceReason::TemporaryFailure, "code.4xx")
        } else {
            (t, r, id)
        };
        Classification {
            bounce_type: t,
            reason: r,
            rule_id: id.to_string(),
            confidence: 0.5,
            disagrees_with_reporter: false,
        }
    }
}
