//! RFC 3464 delivery status notifications: the `message/delivery-status` part's per-message
//! and per-recipient fields, with the diagnostic completed from the human-readable part when
//! the fields carry none.

use super::mime::{self, Walked};
use super::{first_address, Action, Found, MAX_RECIPIENTS};

/// The per-recipient results of the message's delivery status parts; `None` when it has none.
pub fn read(m: &Walked) -> Option<Vec<Found>> {
    let mut any = false;
    let mut out = Vec::new();
    for part in &m.parts {
        let ct = part.content_type.as_str();
        if ct != "message/delivery-status" && ct != "message/global-delivery-status" {
            continue;
        }
        any = true;
        let mut reporting_mta = String::new();
        for block in mime::field_blocks(&part.text) {
            let get = |name: &str| mime::header(&block, name);
            let recipient = get("final-recipient")
                .or_else(|| get("original-recipient"))
                .or_else(|| get("x-actual-recipient"));
            let Some(recipient) = recipient else {
                if let Some(r) = get("reporting-mta") {
                    reporting_mta = after_type(r).to_string();
                }
                continue;
            };
            if out.len() >= MAX_RECIPIENTS {
                break;
            }
            // an unusable Final-Recipient (no address in it): the original one may have it
            let usable = |r: &str| {
                let v = r.split_once(';').map_or(r, |(_, v)| v);
                first_address(v).is_some() || super::loose_address(v).is_some()
            };
            // a Final-Recipient whose domain has one label (`user@mailhub`) is a name inside the
            // receiving system: the Original-Recipient, when it is a full address, is the one
            // the sender wrote
            let full = |r: &str| {
                let v = r.split_once(';').map_or(r, |(_, v)| v);
                v.rsplit_once('@')
                    .is_some_and(|(_, d)| d.trim().trim_end_matches('>').contains('.'))
            };
            let recipient = if !usable(recipient) {
                get("original-recipient")
                    .or_else(|| get("x-actual-recipient"))
                    .unwrap_or(recipient)
            } else if !full(recipient) {
                get("original-recipient")
                    .filter(|o| full(o))
                    .unwrap_or(recipient)
            } else {
                recipient
            };
            let status = get("status")
                .and_then(|s| s.split_whitespace().next())
                .map(|s| {
                    s.trim_end_matches(|c: char| !c.is_ascii_digit())
                        .to_string()
                });
            let action = get("action").and_then(Action::parse).or_else(|| {
                // a report without an Action: its status class tells
                match status.as_deref().and_then(|s| s.chars().next()) {
                    Some('2') => Some(Action::Delivered),
                    Some('4') => Some(Action::Delayed),
                    _ => Some(Action::Failed),
                }
            });
            // no Diagnostic-Code: the comment after the Status code says why (`5.4.4 (Illegal
            // host/domain name found)`)
            let diagnostic = get("diagnostic-code")
                .map(|d| after_type(d).to_string())
                .or_else(|| {
                    let (_, comment) = get("status")?.trim().split_once(char::is_whitespace)?;
                    let comment = comment.trim().trim_start_matches('(').trim_end_matches(')');
                    let words = comment.chars().filter(|c| c.is_alphanumeric()).count();
                    (words > 8).then(|| comment.trim().to_string())
                })
                .unwrap_or_default();
            out.push(Found {
                recipient: recipient.to_string(),
                action,
                status,
                diagnostic,
                reporting_mta: get("reporting-mta")
                    .map(|r| after_type(r).to_string())
                    .unwrap_or_else(|| reporting_mta.clone()),
                remote_mta: get("remote-mta")
                    .map(|r| after_type(r).to_string())
                    .unwrap_or_default(),
                feedback_type: String::new(),
            });
        }
    }
    if !any {
        return None;
    }
    // the human-readable parts, lowercased once; bounded so that a report of many recipients
    // without diagnostics cannot make this search quadratic in the message's size
    let texts: Vec<(&str, String)> = m
        .parts
        .iter()
        .filter(|p| p.content_type.starts_with("text/") && p.content_type != "text/rfc822-headers")
        .take(TEXT_PARTS)
        .map(|p| {
            let mut end = p.text.len().min(TEXT_BYTES);
            while !p.text.is_char_boundary(end) {
                end -= 1;
            }
            let text = &p.text[..end];
            (text, text.to_ascii_lowercase())
        })
        .collect();
    for f in out.iter_mut().take(TEXT_RECIPIENTS) {
        if f.diagnostic.trim().is_empty() {
            if let Some(d) = diagnostic_from_text(&texts, &f.recipient) {
                f.diagnostic = d;
            }
        }
    }
    Some(out)
}

/// Human-readable parts searched for diagnostics the fields lack.
const TEXT_PARTS: usize = 4;
/// Bytes of each searched.
const TEXT_BYTES: usize = 64 * 1024;
/// Recipients whose diagnostic is looked for there.
const TEXT_RECIPIENTS: usize = 64;

/// Header lines of the original message quoted in a report's text: they name the recipient
/// but say nothing of the failure.
const QUOTED_HEADERS: &[&str] = &["to:", "cc:", "bcc:", "from:", "reply-to:", "sender:"];

/// `dns; mx.example.com` -> `mx.example.com`; `smtp; 550 ...` -> `550 ...`.
fn after_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if !t.trim().is_empty() && !t.trim().contains(' ') => rest.trim(),
        _ => v.trim(),
    }
}

/// The lines of the human-readable part that follow the recipient's address, up to the next
/// blank line: Postfix's `<a@b>: host mx said: 550 ...`, Sendmail's `... User unknown`.
fn diagnostic_from_text(texts: &[(&str, String)], recipient: &str) -> Option<String> {
    let addr = first_address(recipient)?.to_ascii_lowercase();
    for (text, lower) in texts {
        // the first line that names the recipient, other than the original's quoted headers
        let mut at = None;
        let mut from = 0;
        while let Some(i) = lower.get(from..).and_then(|l| l.find(&addr)) {
            let i = from + i;
            from = i + addr.len();
            let start = lower[..i].rfind('\n').map_or(0, |i| i + 1);
            let head = lower[start..i].trim_start();
            if !QUOTED_HEADERS.iter().any(|h| head.starts_with(h)) {
                at = Some(i);
                break;
            }
        }
        let Some(at) = at else {
            continue;
        };
        let start = lower[..at].rfind('\n').map_or(0, |i| i + 1);
        let mut lines: Vec<&str> = Vec::new();
        for (i, line) in text[start..].lines().take(12).enumerate() {
            // the next recipient's lines
            if i > 0 {
                let head = line.trim_start().trim_start_matches('<');
                if let Some(other) = first_address(head) {
                    if head.starts_with(other) && !other.eq_ignore_ascii_case(&addr) {
                        break;
                    }
                }
            }
            // a rule of underscores, dashes or stars: a banner or signature follows (a virus
            // scanner's "This email has been scanned ..."), not the recipient's diagnostic
            let l = line.trim();
            if i > 0 && l.len() >= 5 && l.chars().all(|c| matches!(c, '_' | '-' | '=' | '*')) {
                break;
            }
            if line.trim().is_empty() {
                // a label ("because:") introduces the next paragraph
                if lines.len() > 1 && !lines.last().is_some_and(|l| l.ends_with(':')) {
                    break;
                }
                continue;
            }
            lines.push(line.trim());
        }
        let mut joined = lines.join(" ");
        // the server's reply, when the report quotes it in a later paragraph (Gmail)
        if !super::REPLY.is_match(&joined) {
            let later: Vec<&str> = text[start..].lines().skip(lines.len()).take(40).collect();
            for paragraph in later.split(|l| l.trim().is_empty()) {
                let p = paragraph
                    .iter()
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" ");
                if super::REPLY.is_match(&p) {
                    joined = p;
                    break;
                }
            }
        }
        // the line that names the recipient only, without a reply: not a diagnostic
        let rest = joined.to_ascii_lowercase().replace(&addr, "");
        if rest.chars().filter(|c| c.is_ascii_alphanumeric()).count() > 8 {
            return Some(super::from_reply_or_agent(&joined));
        }
        // a list of bare addresses: the sentence that introduces it says why ("Unable to
        // deliver message to the following recipients, due to being unable to connect ...")
        if let Some(intro) = list_intro(&text[..start]) {
            return Some(intro);
        }
    }
    None
}

/// The paragraph right above a list of recipients, when it introduces the list (it speaks of
/// "the following" recipients or ends with a colon) and says more than that.
fn list_intro(above: &str) -> Option<String> {
    let mut lines: Vec<&str> = Vec::new();
    for line in above.lines().rev() {
        let l = line.trim();
        if l.is_empty() {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        // another address of the same list
        if lines.is_empty() && first_address(l).is_some_and(|a| l.trim_matches(['<', '>']) == a) {
            continue;
        }
        if lines.len() == 3 {
            return None;
        }
        lines.push(l);
    }
    lines.reverse();
    let intro = lines.join(" ");
    let lower = intro.to_ascii_lowercase();
    let introduces = lower.contains("following") || intro.ends_with(':');
    let words = intro
        .trim_matches(|c: char| c == '-' || c == ' ')
        .split_whitespace()
        .count();
    (introduces && words >= 6 && first_address(&intro).is_none()).then(|| {
        intro
            .trim_matches(|c: char| c == '-' || c == ' ')
            .to_string()
    })
}

/// Whether the message is an RFC 8098 disposition notification: a report of type
/// `disposition-notification`, or one with a `message/disposition-notification` part.
pub fn is_disposition_notification(m: &Walked) -> bool {
    m.content_type()
        .is_some_and(|t| t.to_ascii_lowercase().contains("disposition-notification"))
        || m.parts
            .iter()
            .any(|p| p.content_type == "message/disposition-notification")
}

/// An RFC 8098 disposition notification that says the message was deleted by an automatic
/// action: how a Sieve `reject` (RFC 5429) refuses a message after it was accepted (Dovecot,
/// Cyrus: `Your message to <a@b> was automatically rejected: Quota exceeded`). The recipient
/// is the notification's Final-Recipient (or Original-Recipient); the reason, the
/// human-readable part. A read receipt, or a message a person deleted, is no failure: `None`.
pub fn read_rejection(m: &Walked) -> Option<Vec<Found>> {
    let part = m
        .parts
        .iter()
        .find(|p| p.content_type == "message/disposition-notification")?;
    let fields = mime::field_blocks(&part.text).into_iter().next()?;
    let get = |name: &str| mime::header(&fields, name);
    let disposition = get("disposition")?.to_ascii_lowercase();
    let (mode, kind) = disposition.split_once(';')?;
    if !mode.trim().starts_with("automatic-action") || kind.trim() != "deleted" {
        return None;
    }
    let recipient = [get("final-recipient"), get("original-recipient")]
        .into_iter()
        .flatten()
        .map(after_type)
        .find(|r| first_address(r).is_some())?;
    let diagnostic = m
        .parts
        .iter()
        .find(|p| p.content_type == "text/plain")
        .map(|p| {
            let text: String = p.text.chars().take(2_000).collect();
            // the reason follows the sentence that names the recipient
            match text.split_once("rejected:") {
                Some((_, reason)) => reason.trim().to_string(),
                None => text.trim().to_string(),
            }
        })
        .unwrap_or_default();
    Some(vec![Found {
        recipient: recipient.to_string(),
        action: Some(Action::Failed),
        diagnostic,
        reporting_mta: get("reporting-ua")
            .map(|r| after_type(r).to_string())
            .unwrap_or_default(),
        ..Found::default()
    }])
}
