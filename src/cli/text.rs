//! How the commands write the service's values: kebab-case names, RFC 3339 times, tables.

use crate::grpc::proto as pb;

/// `BOUNCE_REASON_MAILBOX_NOT_FOUND` -> `mailbox-not-found`; empty when unset.
pub fn enum_name(name: &str, prefix: &str) -> String {
    let short = name.strip_prefix(prefix).unwrap_or(name);
    if short == "UNSPECIFIED" {
        return String::new();
    }
    short.to_ascii_lowercase().replace('_', "-")
}

pub fn reason(reason: i32) -> String {
    pb::BounceReason::try_from(reason)
        .map(|r| enum_name(r.as_str_name(), "BOUNCE_REASON_"))
        .unwrap_or_else(|_| reason.to_string())
}

pub fn decision(decision: i32) -> String {
    pb::ImportDecision::try_from(decision)
        .map(|d| enum_name(d.as_str_name(), "IMPORT_DECISION_"))
        .unwrap_or_else(|_| decision.to_string())
}

pub fn state(state: i32) -> String {
    pb::AddressState::try_from(state)
        .map(|s| enum_name(s.as_str_name(), "ADDRESS_STATE_"))
        .unwrap_or_else(|_| state.to_string())
}

pub fn change_kind(kind: i32) -> String {
    pb::StateChangeKind::try_from(kind)
        .map(|k| enum_name(k.as_str_name(), "STATE_CHANGE_KIND_"))
        .unwrap_or_else(|_| kind.to_string())
}

pub fn outcome(outcome: i32) -> String {
    pb::Outcome::try_from(outcome)
        .map(|o| enum_name(o.as_str_name(), "OUTCOME_"))
        .unwrap_or_else(|_| outcome.to_string())
}

/// A reason as the user writes it: `mailbox-not-found`, `mailbox_not_found` or
/// `BOUNCE_REASON_MAILBOX_NOT_FOUND`.
pub fn parse_reason(text: &str) -> Option<pb::BounceReason> {
    let upper = text.trim().to_ascii_uppercase().replace('-', "_");
    let full = if upper.starts_with("BOUNCE_REASON_") {
        upper
    } else {
        format!("BOUNCE_REASON_{upper}")
    };
    pb::BounceReason::from_str_name(&full).filter(|r| *r != pb::BounceReason::Unspecified)
}

/// Every reason's kebab-case name, for error messages.
pub fn reason_names() -> String {
    (1..)
        .map_while(|i| pb::BounceReason::try_from(i).ok())
        .map(|r| enum_name(r.as_str_name(), "BOUNCE_REASON_"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 3339 in UTC to the second; empty when unset.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else { return String::new() };
    let Ok(seconds) = u64::try_from(t.seconds) else {
        return t.seconds.to_string();
    };
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
    .to_string()
}

/// An RFC 3339 time (`2026-01-31T00:00:00Z`) or a date (`2026-01-31`, midnight UTC).
pub fn parse_time(text: &str) -> Option<prost_types::Timestamp> {
    let text = text.trim();
    let parsed = humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{text}T00:00:00Z")))
        .ok()?;
    let since = parsed.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    })
}

/// Rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A suppression as JSON.
pub fn suppression_json(s: &pb::Suppression) -> serde_json::Value {
    serde_json::json!({
        "reason": reason(s.reason),
        "since": time(s.since.as_ref()),
        "source": s.source,
        "smtp_response": s.smtp_response,
        "event_id": s.event_id,
        "rule_id": s.rule_id,
        "expires_at": time(s.expires_at.as_ref()),
        "list_id": s.list_id,
    })
}

/// An address's status as JSON.
pub fn status_json(s: &pb::AddressStatus) -> serde_json::Value {
    serde_json::json!({
        "address": s.address,
        "given_address": s.given_address,
        "state": state(s.state),
        "suppression": s.suppression.as_ref().map(suppression_json),
        "error": s.error,
        "recent_soft_bounces": s.recent_soft_bounces,
        "domain_level": s.domain_level,
        "replaced_by": s.replaced_by,
        "unsubscribed_lists": s.unsubscribed_lists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_in_kebab_case_or_by_their_proto_name() {
        assert_eq!(
            parse_reason("mailbox-not-found"),
            Some(pb::BounceReason::MailboxNotFound)
        );
        assert_eq!(
            parse_reason("BOUNCE_REASON_COMPLAINT"),
            Some(pb::BounceReason::Complaint)
        );
        assert_eq!(parse_reason("unspecified"), None);
        assert_eq!(parse_reason("nope"), None);
        assert_eq!(
            reason(pb::BounceReason::MailboxNotFound as i32),
            "mailbox-not-found"
        );
        assert!(reason_names().starts_with("mailbox-not-found, domain-not-found"));
    }

    #[test]
    fn times_read_as_rfc3339_or_a_date_and_print_as_rfc3339() {
        let t = parse_time("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(time(Some(&t)), "2026-01-31T12:00:00Z");
        let d = parse_time("2026-01-31").unwrap();
        assert_eq!(t.seconds - d.seconds, 12 * 3600);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let t = table(&["a", "b"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "a     b\nlong  x\n");
    }
}
