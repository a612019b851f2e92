//! SMTP response -> bounce type and reason. Pure functions, no I/O.
//!
//! The decision is made in this order (first that applies wins):
//!
//! 0. **Unsubscribes**: a result the reporter labels an unsubscribe is one, whatever its text
//!    says (only the sender knows of them; rule `label.unsubscribe`, confidence 1.0).
//! 1. **No evidence** (empty text and no enhanced status): the reporter's label decides
//!    (confidence 0.5, rule `label.*`).
//! 2. **Success codes** (enhanced class 2, or a 2xx reply without an enhanced code): delivered.
//! 3. **Text rules** from `rules.toml`, in file order: phrases (found in one pass over the
//!    normalised text, see `phrases.rs`), optionally narrowed by provider, reply code, enhanced status and a
//!    regex. Confidence 0.85-0.99.
//! 4. **Enhanced status fallback** (RFC 3463 class.subject.detail), confidence 0.55-0.8.
//! 5. **Basic reply code fallback**, confidence 0.5-0.6.
//! 6. **The reporter's label**, confidence 0.5.
//!
//! Then two adjustments: a Hard verdict becomes Soft when the reply is temporary (enhanced
//! class 4, or a 4xx code without enhanced status), except for rules marked
//! `permanent_even_if_4xx` and for address-level texts whose own status detail is one RFC 3463
//! reserves for permanent failures (`4.1.1` + "user unknown" is a misused class, not a
//! temporary state); and a `Delivered` or `Complaint` label keeps its outcome unless the text is
//! clearly a failure (a 4xx/5xx class *and* a text rule or status-code entry that decided).
//! Weak evidence never makes a recipient Hard: the status entries that are not address-level
//! and the bare reply codes say Hard only when the reporter did (else Soft, reason Unknown).

mod phrases;
mod rules;
mod smtp;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
pub(crate) mod phrase_tests;
#[cfg(test)]
mod provider_tests;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt;

use crate::domain::{
    BounceReason, BounceType, Classification, ReportedOutcome, RuleId, SmtpEvidence,
};
use rules::{Bits, Outcome, RuleSet, PAT_WORDS, RULE_WORDS};
pub use smtp::{parse_reply, parse_status, EnhancedStatus, ParsedReply};

/// Version of the rule set; stored on every event so a later rule change can be re-applied.
/// Must equal `version` in `rules.toml` (a unit test checks).
pub const RULES_VERSION: u32 = 4;

/// The built-in rule table.
const RULES_TOML: &str = include_str!("rules.toml");

/// Longest text looked at, in bytes; anything beyond is ignored (the service stores at most
/// 4096 bytes anyway).
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// The compiled classification rules. Build once, share behind an `Arc`.
pub struct Classifier {
    rules: RuleSet,
    /// Ids of the decisions the reporter's label makes on its own.
    label_ids: LabelIds,
}

/// The `label.*` rule ids, built once so that a verdict by label allocates nothing.
struct LabelIds {
    delivered: RuleId,
    complaint: RuleId,
    hard: RuleId,
    soft: RuleId,
    block: RuleId,
    bounce: RuleId,
    unsubscribe: RuleId,
}

impl LabelIds {
    fn new() -> Self {
        LabelIds {
            delivered: "label.delivered".into(),
            complaint: "label.complaint".into(),
            hard: "label.hard".into(),
            soft: "label.soft".into(),
            block: "label.block".into(),
            bounce: "label.bounce".into(),
            unsubscribe: "label.unsubscribe".into(),
        }
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("rules_version", &self.rules.version)
            .field("text_rules", &self.rules.rules.len())
            .field("phrases", &self.rules.phrases.len())
            .field("status_rules", &self.rules.status_rules.len())
            .field("code_rules", &self.rules.code_rules.len())
            .finish()
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(1024));
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Text,
    Status,
    Code,
    Label,
}

#[derive(Debug, Clone, Copy)]
struct Decision<'r> {
    kind: BounceType,
    reason: BounceReason,
    confidence: f32,
    id: &'r RuleId,
    source: Source,
    /// The deciding rule says the failure is permanent even with a 4xx reply.
    permanent: bool,
}

/// What one classification knows besides the text.
struct Ctx<'e> {
    code: Option<u16>,
    enhanced: Option<EnhancedStatus>,
    provider: &'e str,
}

impl Classifier {
    /// Compiles the rule set.
    ///
    /// # Panics
    /// Only if the built-in rule file is broken, which the unit tests guard against.
    pub fn new() -> Self {
        match rules::compile(RULES_TOML) {
            Ok(rules) => Classifier {
                rules,
                label_ids: LabelIds::new(),
            },
            Err(e) => panic!("built-in classification rules are broken: {e}"),
        }
    }

    /// Classifies one send result.
    pub fn classify(&self, ev: &SmtpEvidence<'_>) -> Classification {
        let d = self.decide(ev);
        Classification {
            bounce_type: d.kind,
            reason: d.reason,
            rule_id: d.id.clone(),
            confidence: d.confidence,
            disagrees_with_reporter: label_type(ev.reported).is_some_and(|t| t != d.kind),
        }
    }

    fn decide<'r>(&'r self, ev: &SmtpEvidence<'_>) -> Decision<'r> {
        if ev.reported == ReportedOutcome::Unsubscribe {
            return self.label_decision(ev.reported);
        }
        let text = truncate(ev.smtp_response, MAX_TEXT_BYTES);
        let has_text = !text.trim().is_empty();
        let body = smtp::strip_type_prefix(text);
        let reply = if has_text {
            smtp::parse_body(body)
        } else {
            ParsedReply::default()
        };
        // the server's own status in the text wins over the one the reporter passed along,
        // which is only read when the text has none
        let enhanced = reply.enhanced.or_else(|| {
            ev.enhanced_status
                .and_then(|s| parse_status(truncate(s, 64)))
        });
        if !has_text && enhanced.is_none() {
            return self.label_decision(ev.reported);
        }
        let parsed = ParsedReply {
            code: reply.code,
            enhanced,
        };
        let class = parsed.class();
        let ctx = Ctx {
            code: parsed.code,
            enhanced: parsed.enhanced,
            provider: truncate(ev.provider, 256),
        };

        let mut d = None;
        if class != Some(2) && has_text {
            d = self.match_text(body, &ctx);
        }
        if d.is_none() {
            d = parsed
                .enhanced
                .and_then(|e| self.status_fallback(e, ev.reported));
        }
        if d.is_none() {
            d = parsed.code.and_then(|c| self.code_fallback(c, ev.reported));
        }
        let mut d = d.unwrap_or_else(|| self.label_decision(ev.reported));

        // a temporary reply cannot make a recipient Hard, unless the rule or the status says
        // the failure is permanent whatever the class
        if d.kind == BounceType::Hard && class == Some(4) && !Self::keeps_hard(&d, &parsed) {
            d.kind = BounceType::Soft;
            d.confidence = (d.confidence - 0.05).max(0.5);
        }

        // a Delivered or Complaint label stands unless the text is clearly a failure
        if matches!(
            ev.reported,
            ReportedOutcome::Delivered | ReportedOutcome::Complaint
        ) {
            let clearly_failure = matches!(class, Some(4 | 5))
                && matches!(d.source, Source::Text | Source::Status)
                && !matches!(d.kind, BounceType::Delivered | BounceType::Complaint);
            if !clearly_failure {
                return self.label_decision(ev.reported);
            }
        }
        d
    }

    /// True when a Hard verdict survives a temporary (class 4) reply.
    fn keeps_hard(d: &Decision<'_>, parsed: &ParsedReply) -> bool {
        if d.source != Source::Text {
            return false;
        }
        if d.permanent {
            return true;
        }
        // RFC 3463: x.1.1, x.1.2, x.1.3, x.1.6 and x.1.10 "are only useful for permanent
        // failures"; a 4.1.1 next to "user unknown" is a misused class (e.g. soft_bounce)
        matches!(
            (parsed.enhanced, d.reason),
            (
                Some((4, 1, 1 | 6)),
                BounceReason::MailboxNotFound | BounceReason::RecipientRejected
            ) | (Some((4, 1, 2 | 10)), BounceReason::DomainNotFound)
                | (Some((4, 1, 3)), BounceReason::InvalidAddress)
        )
    }

    /// Runs the text rules over `body` (the text without its type prefix).
    fn match_text<'r>(&'r self, body: &str, ctx: &Ctx<'_>) -> Option<Decision<'r>> {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let d = self.match_body(body, &mut buf, ctx);
                if buf.capacity() > 64 * 1024 {
                    *buf = String::with_capacity(1024);
                }
                d
            }
            Err(_) => self.match_body(body, &mut String::new(), ctx),
        })
    }

    /// Normalises `body` into `buf` and runs the text rules over it.
    #[inline]
    fn match_body<'r>(
        &'r self,
        body: &str,
        buf: &mut String,
        ctx: &Ctx<'_>,
    ) -> Option<Decision<'r>> {
        smtp::normalize_stripped_into(body, buf);
        self.match_normalized(buf, ctx)
    }

    /// The text rules over `norm`, a normalised text.
    fn match_normalized<'r>(&'r self, norm: &str, ctx: &Ctx<'_>) -> Option<Decision<'r>> {
        let rs = &self.rules;
        let mut hits: Bits<PAT_WORDS> = Bits::EMPTY;
        let mut cand: Bits<RULE_WORDS> = rs.always;
        rs.matcher.find(norm, |p| {
            hits.set(p);
            let (a, b) = (
                rs.pat_rule_start[p] as usize,
                rs.pat_rule_start[p + 1] as usize,
            );
            for &r in &rs.pat_rule_ids[a..b] {
                cand.set(r as usize);
            }
        });
        let mut provider_mask: Option<u64> = None;
        cand.first_where(|ri| {
            let r = &rs.rules[ri];
            if !r.codes.is_empty()
                && !ctx
                    .code
                    .is_some_and(|c| r.codes.iter().any(|p| p.matches(c)))
            {
                return None;
            }
            if !r.statuses.is_empty()
                && !ctx
                    .enhanced
                    .is_some_and(|e| r.statuses.iter().any(|p| p.matches(e)))
            {
                return None;
            }
            if !r.and.is_empty() && !r.and.iter().any(|&p| hits.get(p as usize)) {
                return None;
            }
            if r.unless.iter().any(|&p| hits.get(p as usize)) {
                return None;
            }
            if let Some(scope) = r.scope {
                let mask = *provider_mask.get_or_insert_with(|| self.providers_seen(&hits, ctx));
                if mask & (1 << scope) == 0 {
                    return None;
                }
            }
            if let Some(re) = &r.regex {
                if !re.is_match(norm) {
                    return None;
                }
            }
            Some(Decision {
                kind: r.kind,
                reason: r.reason,
                confidence: r.confidence,
                id: &r.id,
                source: Source::Text,
                permanent: r.keep_hard_if_temporary,
            })
        })
    }

    /// Bit `i` set when provider `i` is named by `SmtpEvidence::provider` or recognised by a
    /// marker phrase in the text.
    fn providers_seen(&self, hits: &Bits<PAT_WORDS>, ctx: &Ctx<'_>) -> u64 {
        let mut mask = 0u64;
        for (i, p) in self.rules.providers.iter().enumerate().take(64) {
            let named = p
                .names
                .iter()
                .any(|n| contains_ignore_ascii_case(ctx.provider, n));
            if named || p.markers.iter().any(|&m| hits.get(m as usize)) {
                mask |= 1 << i;
            }
        }
        mask
    }

    fn status_fallback<'r>(
        &'r self,
        e: EnhancedStatus,
        reported: ReportedOutcome,
    ) -> Option<Decision<'r>> {
        let r = self
            .rules
            .status_rules
            .iter()
            .find(|r| r.status.is_some_and(|p| p.matches(e)))?;
        let (mut kind, mut reason) = resolve(r.outcome, r.reason, reported);
        // 4.x.x: temporary whatever the subject says
        if e.0 == 4 {
            kind = BounceType::Soft;
            if reason != BounceReason::MailboxFull && reason != BounceReason::RateLimited {
                reason = BounceReason::TemporaryFailure;
            }
        }
        Some(Decision {
            kind,
            reason,
            confidence: r.confidence,
            id: &r.id,
            source: Source::Status,
            permanent: false,
        })
    }

    fn code_fallback<'r>(&'r self, code: u16, reported: ReportedOutcome) -> Option<Decision<'r>> {
        let r = self
            .rules
            .code_rules
            .iter()
            .find(|r| r.code.is_some_and(|p| p.matches(code)))?;
        let (kind, reason) = resolve(r.outcome, r.reason, reported);
        Some(Decision {
            kind,
            reason,
            confidence: r.confidence,
            id: &r.id,
            source: Source::Code,
            permanent: false,
        })
    }

    /// The decision the reporter's label makes on its own.
    fn label_decision(&self, l: ReportedOutcome) -> Decision<'_> {
        let ids = &self.label_ids;
        let (kind, reason, id) = match l {
            ReportedOutcome::Delivered => {
                (BounceType::Delivered, BounceReason::None, &ids.delivered)
            }
            ReportedOutcome::Complaint => (
                BounceType::Complaint,
                BounceReason::Complaint,
                &ids.complaint,
            ),
            ReportedOutcome::HardBounce => (BounceType::Hard, BounceReason::Unknown, &ids.hard),
            ReportedOutcome::SoftBounce => (BounceType::Soft, BounceReason::Unknown, &ids.soft),
            ReportedOutcome::Block => (BounceType::Block, BounceReason::Unknown, &ids.block),
            ReportedOutcome::Bounce => (BounceType::Soft, BounceReason::Unknown, &ids.bounce),
            ReportedOutcome::Unsubscribe => (
                BounceType::Unsubscribe,
                BounceReason::Unsubscribed,
                &ids.unsubscribe,
            ),
        };
        Decision {
            kind,
            reason,
            // The sender alone knows of an unsubscribe: its label is the whole evidence.
            confidence: if l == ReportedOutcome::Unsubscribe {
                1.0
            } else {
                0.5
            },
            id,
            source: Source::Label,
            permanent: false,
        }
    }
}

/// The outcome a reporter's label implies (`Bounce` implies none).
fn label_type(l: ReportedOutcome) -> Option<BounceType> {
    match l {
        ReportedOutcome::Delivered => Some(BounceType::Delivered),
        ReportedOutcome::HardBounce => Some(BounceType::Hard),
        ReportedOutcome::SoftBounce => Some(BounceType::Soft),
        ReportedOutcome::Block => Some(BounceType::Block),
        ReportedOutcome::Complaint => Some(BounceType::Complaint),
        ReportedOutcome::Unsubscribe => Some(BounceType::Unsubscribe),
        ReportedOutcome::Bounce => None,
    }
}

/// Resolves a fallback outcome: `label` entries are Hard or Block only if the reporter said
/// so, Soft otherwise.
fn resolve(
    o: Outcome,
    reason: BounceReason,
    reported: ReportedOutcome,
) -> (BounceType, BounceReason) {
    match o {
        Outcome::Fixed(k) => (k, reason),
        Outcome::FromLabel => match reported {
            ReportedOutcome::HardBounce => (BounceType::Hard, reason),
            ReportedOutcome::Block => (BounceType::Block, reason),
            _ => (BounceType::Soft, reason),
        },
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn contains_ignore_ascii_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}
