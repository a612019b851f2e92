//! RFC 5965 feedback reports (ARF): a `message/feedback-report` part whose fields say what
//! was complained about and by whom; every reported recipient is a complaint, but in the two
//! report types that are no complaint: an authentication-failure report (RFC 6591,
//! `auth-failure`: a message failed SPF, DKIM or DMARC, often one a stranger sent in the
//! sender's name, and its addressee complained of nothing) and a not-spam report (RFC 6430:
//! the addressee said the message was wanted). Those name no recipient.

use super::mime::{self, Walked};
use super::{first_address, Action, Found, ADDRESS, MAX_RECIPIENTS};

/// The complained-about recipients of a feedback report; `None` when it is not one.
pub fn read(m: &Walked) -> Option<Vec<Found>> {
    let report = m
        .parts
        .iter()
        .find(|p| p.content_type == "message/feedback-report")
        .map(|p| {
            mime::field_blocks(&p.text)
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        });
    let is_report = report.is_some()
        || m.content_type()
            .is_some_and(|ct| ct.contains("report-type=feedback-report"))
        || is_feedback_loop(m);
    if !is_report {
        return None;
    }
    let fields = report.unwrap_or_default();
    let feedback_type = mime::header(&fields, "feedback-type")
        .unwrap_or("abuse")
        .trim()
        .to_ascii_lowercase();
    if !is_complaint(&feedback_type) {
        return Some(Vec::new());
    }
    let reporting_mta = mime::header(&fields, "reporting-mta")
        .map(|r| r.split_once(';').map_or(r, |(_, v)| v).trim().to_string())
        .unwrap_or_default();
    let mut recipients: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n == "original-rcpt-to" || n == "removal-recipient")
        .filter_map(|(_, v)| first_address(v).map(str::to_string))
        .collect();
    if recipients.is_empty() {
        // Microsoft's feedback loop (JMRP) names the complainer in the enclosed message's
        // `X-HmXmrOriginalRecipient` (the address mailed, before any forwarding)
        if let Some(r) = m
            .original
            .as_ref()
            .and_then(|o| mime::header(o, "x-hmxmroriginalrecipient"))
            .and_then(first_address)
        {
            recipients.push(r.to_string());
        }
    }
    if recipients.is_empty() {
        // the complainer is the original message's recipient
        if let Some(to) = m.original.as_ref().and_then(|o| mime::header(o, "to")) {
            recipients.extend(ADDRESS.find_iter(to).map(|a| a.as_str().to_string()));
        }
    }
    let diagnostic = m
        .parts
        .iter()
        .find(|p| p.content_type == "text/plain")
        .map(|p| p.text.lines().take(8).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Some(
        recipients
            .into_iter()
            .take(MAX_RECIPIENTS)
            .map(|recipient| Found {
                recipient,
                action: Some(Action::Failed),
                status: None,
                diagnostic: diagnostic.clone(),
                reporting_mta: reporting_mta.clone(),
                remote_mta: String::new(),
                feedback_type: feedback_type.clone(),
            })
            .collect(),
    )
}

/// Whether a report of this `Feedback-Type` is a complaint about its recipients.
fn is_complaint(feedback_type: &str) -> bool {
    !matches!(feedback_type, "auth-failure" | "not-spam")
}

/// Feedback loops that do not use ARF: Microsoft's JMRP/SNDS and older Hotmail reports,
/// known by their senders and subjects.
fn is_feedback_loop(m: &Walked) -> bool {
    let from = m.header("from").unwrap_or("").to_ascii_lowercase();
    let subject = m.header("subject").unwrap_or("").to_ascii_lowercase();
    (from.contains("staff@hotmail.com") || from.contains("complaints@"))
        && (subject.contains("complaint") || subject.contains("abuse"))
        || m.header("x-hmxmroriginalrecipient").is_some()
}
