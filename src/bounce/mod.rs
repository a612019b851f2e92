//! Raw bounce messages -> what they say: RFC 3464 delivery status notifications, the
//! non-standard formats of the common MTAs and mailbox providers, RFC 5965 feedback reports
//! (complaints) and RFC 3834 auto-replies. Pure functions over bytes, no I/O; each recipient's
//! result is classified by [`crate::classify`], as a reported send result would be.
//!
//! The order of recognition (first that applies wins):
//!
//! 1. a `message/feedback-report` part, or a feedback-loop format: a feedback report;
//! 2. a `message/delivery-status` part with per-recipient fields: a delivery status report,
//!    its diagnostics completed from the human-readable part when the fields carry none;
//! 3. a message from a mailer daemon, or one a recogniser of `formats.toml` knows: the
//!    non-standard formats, read by their recipient patterns;
//! 4. RFC 3834 `Auto-Submitted`, `X-Autoreply`, `Precedence: auto_reply` and auto-reply
//!    subjects: an auto-reply, no bounce;
//! 5. anything else is not a bounce.
//!
//! Hostile input is bounded: the MIME walk keeps at most a few hundred parts of limited size
//! and depth (see `mime.rs`), recipients per message are capped, and no pattern is run over
//! more than a bounded amount of text.

mod arf;
mod autoreply;
mod dsn;
mod formats;
mod json;
pub mod mailbox;
mod mime;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use regex::Regex;

use crate::classify::Classifier;
use crate::domain::{BounceType, Classification, EmailAddress, ReportedOutcome, SmtpEvidence};

pub use formats::Formats;

/// Most recipients read from one message.
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest diagnostic text kept, in bytes (what a send result may carry).
pub const MAX_DIAGNOSTIC_BYTES: usize = crate::domain::MAX_SMTP_RESPONSE_BYTES;
/// Most campaign/source headers of the original message kept.
const MAX_ORIGINAL_HEADERS: usize = 16;

/// What kind of message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceMessageKind {
    /// A delivery status report (RFC 3464 or a non-standard bounce).
    DeliveryStatus,
    /// A feedback-loop report (RFC 5965 ARF): a complaint.
    FeedbackReport,
    /// An automatic reply (out of office, vacation): not a bounce.
    AutoReply,
    /// Anything else.
    NotABounce,
}

impl BounceMessageKind {
    /// The name the CLI prints.
    pub fn name(self) -> &'static str {
        match self {
            BounceMessageKind::DeliveryStatus => "delivery_status",
            BounceMessageKind::FeedbackReport => "feedback_report",
            BounceMessageKind::AutoReply => "auto_reply",
            BounceMessageKind::NotABounce => "not_a_bounce",
        }
    }
}

/// RFC 3464 `Action`: what became of the message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Delivery failed; no further attempt.
    Failed,
    /// Delivery has not succeeded yet; still being retried.
    Delayed,
    /// Delivered.
    Delivered,
    /// Passed on to a system that sends no status reports.
    Relayed,
    /// Delivered and forwarded to further recipients.
    Expanded,
}

impl Action {
    /// The RFC 3464 spelling.
    pub fn name(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }

    /// Reads an `Action` field value (case-insensitive, comments ignored).
    pub fn parse(s: &str) -> Option<Action> {
        let word = s
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty())?
            .to_ascii_lowercase();
        Some(match word.as_str() {
            "failed" | "failure" => Action::Failed,
            "delayed" => Action::Delayed,
            "delivered" => Action::Delivered,
            "relayed" => Action::Relayed,
            "expanded" => Action::Expanded,
            _ => return None,
        })
    }

    /// Whether a result of this action is recorded as a bounce.
    pub fn is_bounce(self) -> bool {
        matches!(self, Action::Failed | Action::Delayed)
    }
}

/// One recipient's result, as the message tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBounce {
    /// The recipient, normalized (lowercased; as written when it is not a valid address).
    pub recipient: String,
    /// What became of the message for this recipient (a complaint is `Failed`).
    pub action: Action,
    /// The enhanced status code (`5.1.1`), when the message gives one.
    pub status: Option<String>,
    /// The remote server's reply (or the report's own words), unfolded.
    pub diagnostic: String,
    /// The MTA that wrote the report.
    pub reporting_mta: String,
    /// The MTA that refused the message.
    pub remote_mta: String,
    /// The Message-ID of the message that bounced.
    pub original_message_id: String,
    /// `X-` and `List-` headers of the original message that identify its campaign or source.
    pub original_headers: Vec<(String, String)>,
    /// ARF `Feedback-Type` (`abuse`, `fraud`, ...), for a feedback report.
    pub feedback_type: String,
    /// Our classification of it.
    pub classification: Classification,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessage {
    /// Its kind.
    pub kind: BounceMessageKind,
    /// One entry per recipient the report names (failed, delayed, complained-about, and
    /// delivered or relayed ones of a DSN that says so).
    pub bounces: Vec<ParsedBounce>,
    /// The report's own Message-ID (without angle brackets), empty when it has none.
    pub message_id: String,
    /// The recogniser that read it (`rfc3464`, `arf`, a format name of `formats.toml`, ...).
    pub format: String,
}

impl ParsedMessage {
    fn nothing(kind: BounceMessageKind, message_id: String, format: &str) -> Self {
        ParsedMessage {
            kind,
            bounces: Vec::new(),
            message_id,
            format: format.to_string(),
        }
    }
}

/// A recipient's result before classification.
#[derive(Debug, Clone, Default)]
struct Found {
    recipient: String,
    action: Option<Action>,
    status: Option<String>,
    diagnostic: String,
    reporting_mta: String,
    remote_mta: String,
    feedback_type: String,
}

/// Reads bounce messages. Build once (the format recognisers are compiled), share freely.
pub struct BounceParser {
    formats: Formats,
}

impl std::fmt::Debug for BounceParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BounceParser")
            .field("formats", &self.formats.len())
            .finish()
    }
}

impl Default for BounceParser {
    fn default() -> Self {
        Self::new()
    }
}

impl BounceParser {
    /// Compiles the built-in format recognisers.
    ///
    /// # Panics
    /// Only if the built-in `formats.toml` is broken, which the unit tests guard against.
    pub fn new() -> Self {
        match Formats::builtin() {
            Ok(formats) => BounceParser { formats },
            Err(e) => panic!("built-in bounce formats are broken: {e}"),
        }
    }

    /// Reads `raw` and classifies each recipient's result with `classifier`. `provider` is a
    /// hint passed on to the classifier (which ESP or MTA the mailbox receives bounces from);
    /// may be empty. Never panics.
    pub fn parse(&self, raw: &[u8], provider: &str, classifier: &Classifier) -> ParsedMessage {
        let Some(walked) = mime::walk(raw) else {
            return ParsedMessage::nothing(BounceMessageKind::NotABounce, String::new(), "");
        };
        let message_id = message_id(walked.header("message-id").unwrap_or(""));
        let original = walked.original.clone().unwrap_or_default();
        let original_id = message_id_of_original(&original, &walked);
        let original_headers = campaign_headers(&original);

        let (kind, format, found) = self.recognise(&walked);
        let mut bounces = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for f in found {
            if bounces.len() >= MAX_RECIPIENTS {
                break;
            }
            let Some(recipient) = normalize_recipient(&f.recipient) else {
                continue;
            };
            let action = f.action.unwrap_or(Action::Failed);
            if !seen.insert((recipient.clone(), action)) {
                continue;
            }
            let mut diagnostic = mime::unfold(&f.diagnostic);
            mime::cut(&mut diagnostic, MAX_DIAGNOSTIC_BYTES);
            let status = f.status.filter(|s| is_status(s));
            let reported = match (kind, action) {
                (BounceMessageKind::FeedbackReport, _) => ReportedOutcome::Complaint,
                (_, Action::Delivered | Action::Relayed | Action::Expanded) => {
                    ReportedOutcome::Delivered
                }
                (_, Action::Delayed) => ReportedOutcome::SoftBounce,
                (_, Action::Failed) => ReportedOutcome::Bounce,
            };
            let mut classification = if kind == BounceMessageKind::FeedbackReport {
                // a complaint is a complaint whatever its report's prose says
                classifier.classify(&SmtpEvidence {
                    reported,
                    smtp_response: "",
                    enhanced_status: None,
                    provider,
                })
            } else {
                classifier.classify(&SmtpEvidence {
                    reported,
                    smtp_response: &diagnostic,
                    enhanced_status: status.as_deref(),
                    provider: if provider.is_empty() {
                        &format
                    } else {
                        provider
                    },
                })
            };
            // a delayed message is still being retried: never a permanent verdict
            if action == Action::Delayed && classification.bounce_type == BounceType::Hard {
                classification.bounce_type = BounceType::Soft;
            }
            bounces.push(ParsedBounce {
                recipient,
                action,
                status,
                diagnostic,
                reporting_mta: f.reporting_mta,
                remote_mta: f.remote_mta,
                original_message_id: original_id.clone(),
                original_headers: original_headers.clone(),
                feedback_type: f.feedback_type,
                classification,
            });
        }
        let kind = if bounces.is_empty() && kind == BounceMessageKind::DeliveryStatus {
            // a report that names no recipient we can read
            BounceMessageKind::NotABounce
        } else {
            kind
        };
        ParsedMessage {
            kind,
            bounces,
            message_id,
            format,
        }
    }

    fn recognise(&self, m: &mime::Walked) -> (BounceMessageKind, String, Vec<Found>) {
        if let Some((kind, found)) = json::read(m) {
            return (kind, "amazonses".into(), found);
        }
        if let Some(found) = arf::read(m) {
            return (BounceMessageKind::FeedbackReport, "arf".into(), found);
        }
        if let Some(found) = dsn::read(m) {
            // a report whose recipient fields hold no address (a mailbox path): its prose may
            if found
                .iter()
                .any(|f| normalize_recipient(&f.recipient).is_some())
            {
                return (BounceMessageKind::DeliveryStatus, "rfc3464".into(), found);
            }
        }
        if let Some(found) = dsn::read_rejection(m) {
            return (BounceMessageKind::DeliveryStatus, "rfc5429".into(), found);
        }
        if dsn::is_disposition_notification(m) {
            // what became of a message at its recipient (displayed, deleted by a person, or
            // an automatic rejection whose fields are unreadable): no failed recipient to
            // read, whatever the enclosed original's headers name
            return (BounceMessageKind::NotABounce, String::new(), Vec::new());
        }
        if let Some((name, found)) = self.formats.read(m) {
            if !found.is_empty() {
                return (BounceMessageKind::DeliveryStatus, name, found);
            }
        }
        if autoreply::is_auto_reply(m) {
            return (BounceMessageKind::AutoReply, "rfc3834".into(), Vec::new());
        }
        (BounceMessageKind::NotABounce, String::new(), Vec::new())
    }
}

/// An email address anywhere in a text.
pub(crate) static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)[a-z0-9!#$%&'*+/=?^_`{|}~-][a-z0-9.!#$%&'*+/=?^_`{|}~-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}",
    )
    .expect("address pattern")
});

/// A server reply in a text: a reply code or an enhanced status code.
pub(crate) static REPLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\s:;(\[])[45]\d\d[\s-]|\b[45]\.\d{1,3}\.\d{1,3}\b").expect("reply pattern")
});

/// A diagnostic from its first reply code or status on: the report's prose before the server's
/// reply ("Google tried to deliver your message, but ...") is not what the server said.
pub(crate) fn from_reply(diagnostic: &str) -> &str {
    static CODE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[\s:;(\[])[45]\d\d[\s-]").expect("code pattern"));
    match CODE.find(diagnostic) {
        Some(m) if m.start() > 0 => {
            diagnostic[m.start()..].trim_start_matches([' ', ':', ';', '(', '['])
        }
        _ => diagnostic,
    }
}

/// [`from_reply`], except in Sendmail's transcript of a local delivery, where the delivery
/// agent's own words come before the reply they caused (`----- Transcript of session follows
/// ----- mail.local: unknown user: bob 554 <bob@b>... Service unavailable`): the agent says
/// why, the reply only that it failed, so the diagnostic starts at the agent's name.
pub(crate) fn from_reply_or_agent(diagnostic: &str) -> String {
    static AGENT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)transcript of (?:the )?session follows\s*-*\s*([a-z0-9][a-z0-9._-]{0,31}:\s+\S.*)$",
        )
        .expect("agent pattern")
    });
    if let Some(c) = AGENT.captures(diagnostic) {
        let rest = &c[1];
        // the agent's words end where the reply begins; a reply must follow them
        let reply = from_reply(rest);
        if reply.len() < rest.len() && !REPLY.is_match(&rest[..rest.len() - reply.len()]) {
            return rest.trim().to_string();
        }
    }
    from_reply(diagnostic).to_string()
}

/// The first address in `s`.
pub(crate) fn first_address(s: &str) -> Option<&str> {
    ADDRESS.find(s).map(|m| m.as_str())
}

/// The address of a recipient field (`rfc822; <a@b>`, `a@b`, `"x" <a@b>`), normalized.
fn normalize_recipient(s: &str) -> Option<String> {
    let value = s.split_once(';').map_or(s, |(_, v)| v);
    static QUOTED_LOCAL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""[^"\r\n]{1,64}"@[A-Za-z0-9.-]{1,253}"#).expect("pattern"));
    if let Some(q) = QUOTED_LOCAL.find(value) {
        return Some(q.as_str().to_ascii_lowercase());
    }
    let addr = first_address(value)
        .or_else(|| first_address(s))
        .or_else(|| loose_address(value))?;
    let addr = addr.trim_matches(|c: char| c == '.' || c == '<' || c == '>');
    Some(match EmailAddress::parse(addr) {
        Ok(a) => a.into_string(),
        Err(_) => addr.to_ascii_lowercase(),
    })
}

/// A DSN recipient field whose domain has a single label (`user@mailhub`): the one word of the
/// value that holds an `@` between other characters.
pub(crate) fn loose_address(value: &str) -> Option<&str> {
    let v = value.trim().trim_matches(|c| c == '<' || c == '>');
    let ok = !v.contains(char::is_whitespace)
        && v.len() <= 254
        && v.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && !d.is_empty()
                && !d.contains('@')
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        });
    ok.then_some(v)
}

/// An enhanced status code as RFC 3463 writes it.
fn is_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A Message-ID without its angle brackets and surrounding space.
fn message_id(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    let s = s.split('>').next().unwrap_or(s);
    let mut s = s.trim().to_string();
    mime::cut(&mut s, 512);
    s
}

/// The original message's Message-ID: from its enclosed headers, else from a `Message-ID:`
/// line quoted in the report's text.
fn message_id_of_original(original: &mime::Headers, m: &mime::Walked) -> String {
    if let Some(id) = mime::header(original, "message-id") {
        return message_id(id);
    }
    static QUOTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?im)^message-id:\s*<([^>\s]{1,500})>").expect("pattern"));
    let own = message_id(m.header("message-id").unwrap_or(""));
    for p in &m.parts {
        for c in QUOTED.captures_iter(&p.text) {
            if c[1] != own {
                return c[1].to_string();
            }
        }
    }
    String::new()
}

/// `X-` and `List-` headers of the original message that say which campaign, list or source
/// it was sent for.
fn campaign_headers(original: &mime::Headers) -> Vec<(String, String)> {
    const NAMES: &[&str] = &[
        "list-id",
        "list-unsubscribe",
        "x-campaign",
        "x-campaign-id",
        "x-campaignid",
        "x-mailer-campaign",
        "x-mc-user",
        "x-mailgun-tag",
        "x-mailgun-variables",
        "x-ses-configuration-set",
        "x-sg-eid",
        "x-smtpapi",
        "x-pm-message-id",
        "x-job",
        "x-source",
        "x-list",
        "x-segment",
        "x-feedback-id",
        "feedback-id",
    ];
    let mut out = Vec::new();
    for (name, value) in original {
        let wanted = NAMES.contains(&name.as_str())
            || (name.starts_with("x-") && (name.contains("campaign") || name.contains("source")));
        if wanted && out.len() < MAX_ORIGINAL_HEADERS {
            let mut v = value.clone();
            mime::cut(&mut v, 1024);
            out.push((name.clone(), v));
        }
    }
    out
}
