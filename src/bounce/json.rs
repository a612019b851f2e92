//! Amazon SES notifications delivered by mail (through SNS or straight): a JSON document whose
//! `notificationType` is `Bounce`, `Complaint` or `Delivery`, with the recipients and, for a
//! bounce, each one's status and diagnostic.

use serde_json::Value;

use super::mime::Walked;
use super::{Action, BounceMessageKind, Found, MAX_RECIPIENTS};

/// The recipients of an SES notification; `None` when the message is not one.
pub fn read(m: &Walked) -> Option<(BounceMessageKind, Vec<Found>)> {
    let text = m
        .parts
        .iter()
        .find(|p| p.content_type == "text/plain" || p.content_type == "application/json")?
        .text
        .as_str();
    if !text.contains("notificationType") {
        return None;
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    let doc = text.get(start..=end)?;
    // long lines are sometimes folded on the way (a line break and a space inserted)
    let outer: Value = serde_json::from_str(doc)
        .or_else(|_| serde_json::from_str(&doc.replace("\r\n ", "").replace("\n ", "")))
        .ok()?;
    // SNS wraps the notification in a string field
    let note = match outer.get("Message").and_then(Value::as_str) {
        Some(inner) => serde_json::from_str(inner).ok()?,
        None => outer,
    };
    let kind = note
        .get("notificationType")
        .or_else(|| note.get("eventType"))?
        .as_str()?;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Vec::new();
    match kind {
        "Bounce" => {
            let b = note.get("bounce")?;
            let transient = str_of(b, "bounceType") == "Transient";
            for r in b
                .get("bouncedRecipients")?
                .as_array()?
                .iter()
                .take(MAX_RECIPIENTS)
            {
                let action = match str_of(r, "action").as_str() {
                    "delayed" => Action::Delayed,
                    _ if transient => Action::Delayed,
                    _ => Action::Failed,
                };
                out.push(Found {
                    recipient: str_of(r, "emailAddress"),
                    action: Some(action),
                    status: Some(str_of(r, "status")).filter(|s| !s.is_empty()),
                    diagnostic: str_of(r, "diagnosticCode"),
                    reporting_mta: str_of(b, "reportingMTA"),
                    remote_mta: str_of(b, "remoteMtaIp"),
                    feedback_type: String::new(),
                });
            }
            Some((BounceMessageKind::DeliveryStatus, out))
        }
        "Complaint" => {
            let c = note.get("complaint")?;
            let feedback = str_of(c, "complaintFeedbackType");
            for r in c
                .get("complainedRecipients")?
                .as_array()?
                .iter()
                .take(MAX_RECIPIENTS)
            {
                out.push(Found {
                    recipient: str_of(r, "emailAddress"),
                    action: Some(Action::Failed),
                    feedback_type: if feedback.is_empty() {
                        "abuse".into()
                    } else {
                        feedback.clone()
                    },
                    ..Found::default()
                });
            }
            Some((BounceMessageKind::FeedbackReport, out))
        }
        "Delivery" => {
            let d = note.get("delivery")?;
            for r in d.get("recipients")?.as_array()?.iter().take(MAX_RECIPIENTS) {
                out.push(Found {
                    recipient: r.as_str().unwrap_or("").to_string(),
                    action: Some(Action::Delivered),
                    diagnostic: str_of(d, "smtpResponse"),
                    reporting_mta: str_of(d, "reportingMTA"),
                    ..Found::default()
                });
            }
            Some((BounceMessageKind::DeliveryStatus, out))
        }
        _ => None,
    }
}
