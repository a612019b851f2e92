//! Raw bounce messages: read one without storing anything, or read it and record each failed,
//! delayed or complained-about recipient's result as a send result, idempotently on an event
//! id derived from the message (its Message-ID and the recipient, or a hash of its content when
//! it has no Message-ID), so that a mailbox scanned twice records nothing twice.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::report::{Recorded, Reporter};
use super::{blocking, AppError, Caller};
use crate::bounce::{mailbox, BounceMessageKind, BounceParser, ParsedBounce, ParsedMessage};
use crate::classify::Classifier;
use crate::domain::{
    Campaign, EmailAddress, ListId, ReportedOutcome, Segment, SendReport, Source, Tenant,
};

/// The largest raw message accepted unless configured: 10 MiB.
pub const DEFAULT_MAX_BOUNCE_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// Reads and records bounce messages.
#[derive(Clone)]
pub struct BounceMessages {
    reporter: Reporter,
    classifier: Arc<Classifier>,
    parser: Arc<BounceParser>,
    max_bytes: usize,
}

/// The labels a reported bounce message's results are recorded with.
#[derive(Debug, Clone, Default)]
pub struct BounceLabels {
    /// Where the contacts were acquired.
    pub source: Source,
    /// Campaign of the message that bounced.
    pub campaign: Campaign,
    /// Audience segment of the message that bounced.
    pub segment: Segment,
    /// The ESP or MTA the mailbox receives bounces from (a classification hint); may be empty.
    pub provider: String,
}

/// What became of one recipient of a reported message.
#[derive(Debug, Clone)]
pub struct ReportedBounce {
    /// What the message says of the recipient (its classification: the stored one).
    pub bounce: ParsedBounce,
    /// The event id it was recorded under; empty when nothing was recorded.
    pub event_id: String,
    /// What recording it did; `None` for delivered and relayed recipients, and for recipients
    /// that are not valid addresses.
    pub recorded: Option<Recorded>,
}

/// What a reported message said and what recording it did.
#[derive(Debug, Clone)]
pub struct BounceReport {
    /// The message's kind.
    pub kind: BounceMessageKind,
    /// The report's own Message-ID.
    pub message_id: String,
    /// The recogniser that read it.
    pub format: String,
    /// One entry per recipient, in the message's order.
    pub results: Vec<ReportedBounce>,
}

impl BounceMessages {
    pub(super) fn new(reporter: Reporter, classifier: Arc<Classifier>, max_bytes: usize) -> Self {
        BounceMessages {
            reporter,
            classifier,
            parser: Arc::new(BounceParser::new()),
            max_bytes,
        }
    }

    /// The largest raw message accepted, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Refuses a message larger than the limit, or an empty one.
    fn check(&self, raw: &[u8]) -> Result<(), AppError> {
        if raw.is_empty() {
            return Err(super::FieldViolation::new("raw_message", "is required").into());
        }
        if raw.len() > self.max_bytes {
            return Err(AppError::ResourceExhausted(format!(
                "raw_message has {} bytes; the limit is {} bytes (--max-bounce-message-bytes)",
                raw.len(),
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Reads a message without storing anything (off the async workers: a large message takes
    /// a while).
    async fn read(&self, raw: Vec<u8>, provider: String) -> Result<ParsedMessage, AppError> {
        self.check(&raw)?;
        let (parser, classifier) = (self.parser.clone(), self.classifier.clone());
        blocking(move || {
            if let Some(messages) = mailbox::messages(&raw) {
                return Err(super::FieldViolation::new(
                    "raw_message",
                    format!(
                        "holds {} messages (an mbox file); send each message in a call of its own",
                        messages.len()
                    ),
                )
                .into());
            }
            Ok(parser.parse(&raw, &provider, &classifier))
        })
        .await
    }

    /// [`BounceMessages::read`] for `ParseBounceMessage`: counted as a message read only.
    pub async fn parse(&self, raw: Vec<u8>, provider: String) -> Result<ParsedMessage, AppError> {
        let parsed = self.read(raw, provider).await?;
        count_message(parsed.kind, MessageOutcome::Parsed);
        Ok(parsed)
    }

    /// Reads a message and records each failed, delayed or complained-about recipient's result
    /// for `tenant`, all in one store write; answers once it is durable.
    pub async fn report(
        &self,
        caller: &Caller,
        tenant: Tenant,
        raw: Vec<u8>,
        labels: BounceLabels,
    ) -> Result<BounceReport, AppError> {
        caller.check_tenant(&tenant)?;
        self.check(&raw)?;
        let key = message_key(&raw);
        let parsed = self.read(raw, labels.provider.clone()).await?;
        let key = if parsed.message_id.is_empty() {
            key
        } else {
            format!("mid:{}", parsed.message_id)
        };
        let now = self.reporter.now();
        let complaint = parsed.kind == BounceMessageKind::FeedbackReport;
        let provider = if labels.provider.is_empty() {
            parsed.format.clone()
        } else {
            labels.provider.clone()
        };
        let mut results = Vec::with_capacity(parsed.bounces.len());
        // Which result each report is for: the message's recipients are recorded in one write.
        let mut recorded_at = Vec::new();
        let mut reports = Vec::new();
        for bounce in parsed.bounces {
            let address = EmailAddress::parse(&bounce.recipient).ok();
            let (Some(address), true) = (address, bounce.action.is_bounce()) else {
                results.push(ReportedBounce {
                    bounce,
                    event_id: String::new(),
                    recorded: None,
                });
                continue;
            };
            let event_id = event_id(&key, &bounce);
            reports.push(SendReport {
                event_id: event_id.clone(),
                address,
                outcome: if complaint {
                    ReportedOutcome::Complaint
                } else if bounce.action == crate::bounce::Action::Delayed {
                    ReportedOutcome::SoftBounce
                } else {
                    ReportedOutcome::Bounce
                },
                smtp_response: if complaint {
                    format!("feedback report: {}", bounce.feedback_type)
                } else {
                    bounce.diagnostic.clone()
                },
                enhanced_status: bounce.status.clone(),
                source: labels.source.clone(),
                campaign: labels.campaign.clone(),
                segment: labels.segment.clone(),
                provider: provider.clone(),
                occurred_at: now,
                list_id: ListId::default(),
            });
            recorded_at.push(results.len());
            results.push(ReportedBounce {
                bounce,
                event_id,
                recorded: None,
            });
        }
        let recorded = self.reporter.report_all(caller, tenant, reports).await?;
        for (at, recorded) in recorded_at.into_iter().zip(recorded) {
            if let Some(result) = results.get_mut(at) {
                result.bounce.classification = recorded.classification.clone();
                result.recorded = Some(recorded);
            }
        }
        count_message(parsed.kind, MessageOutcome::of(&results));
        Ok(BounceReport {
            kind: parsed.kind,
            message_id: parsed.message_id,
            format: parsed.format,
            results,
        })
    }
}

/// A message without a Message-ID is known by a hash of its content.
fn message_key(raw: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(raw)))
}

/// `bounce-` and 32 hex digits of a hash of the message's key, the recipient and the action
/// (a delay notice and the final failure of one message are two results).
fn event_id(key: &str, bounce: &ParsedBounce) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(bounce.recipient.as_bytes());
    h.update([0]);
    h.update(bounce.action.name().as_bytes());
    format!("bounce-{}", &hex::encode(h.finalize())[..32])
}

/// What a bounce message read by the service came to: the `outcome` label of
/// `suppressd_bounce_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageOutcome {
    /// Read by `ParseBounceMessage`: nothing is recorded.
    Parsed,
    /// Reported, and at least one recipient's result was recorded for the first time.
    Recorded,
    /// Reported, and every recipient's result had been recorded before (a mailbox scanned again).
    Duplicate,
    /// Reported, and there was nothing to record: an auto-reply, a message that is no bounce,
    /// a report of deliveries only or of no valid address.
    NothingToRecord,
}

impl MessageOutcome {
    /// What recording a reported message's `results` did.
    fn of(results: &[ReportedBounce]) -> Self {
        let mut recorded = results
            .iter()
            .filter_map(|r| r.recorded.as_ref())
            .peekable();
        if recorded.peek().is_none() {
            MessageOutcome::NothingToRecord
        } else if recorded.all(|r| r.duplicate) {
            MessageOutcome::Duplicate
        } else {
            MessageOutcome::Recorded
        }
    }

    fn label(self) -> &'static str {
        match self {
            MessageOutcome::Parsed => "parsed",
            MessageOutcome::Recorded => "recorded",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::NothingToRecord => "nothing_to_record",
        }
    }
}

/// Counts one bounce message read, by its kind and what became of it.
fn count_message(kind: BounceMessageKind, outcome: MessageOutcome) {
    metrics::counter!(
        "suppressd_bounce_messages_total",
        "kind" => kind.name(),
        "outcome" => outcome.label()
    )
    .increment(1);
}
