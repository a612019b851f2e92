//! Postmark's suppression dump of a message stream (`GET
//! /message-streams/{stream}/suppressions/dump`): `Suppressions`, each with `EmailAddress`,
//! `SuppressionReason` (HardBounce, SpamComplaint, ManualSuppression), `Origin` (Recipient,
//! Customer, Admin) and `CreatedAt`. A manual suppression by the recipient is an unsubscribe.

use std::io::Read;

use serde::Deserialize;

use super::{row, AddressLines, Row};
use crate::domain::BounceReason;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Dump {
    suppressions: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    email_address: Option<String>,
    suppression_reason: Option<String>,
    origin: Option<String>,
    created_at: Option<String>,
}

/// Our reason for a Postmark reason and origin.
fn reason(reason: &str, origin: &str) -> BounceReason {
    match (reason, origin) {
        ("HardBounce", _) => BounceReason::MailboxNotFound,
        ("SpamComplaint", _) => BounceReason::Complaint,
        ("ManualSuppression", "Recipient") => BounceReason::Unsubscribed,
        _ => BounceReason::Manual,
    }
}

/// Reads a dump.
pub fn parse(mut input: impl Read) -> Result<Vec<Row>, String> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let dump: Dump =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a Postmark dump: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = AddressLines::new(&text);
    Ok(dump
        .suppressions
        .into_iter()
        .map(|e| {
            let line = lines.line_of(e.email_address.as_deref());
            let why = e.suppression_reason.unwrap_or_default();
            let origin = e.origin.unwrap_or_default();
            let original = if origin.is_empty() {
                why.clone()
            } else {
                format!("{why} (origin {origin})")
            };
            let parsed = row(
                e.email_address,
                reason(&why, &origin),
                original,
                e.created_at,
                "",
            );
            Row { line, parsed }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{sample, Parsed};
    use super::*;

    #[test]
    fn reasons_and_origins_map_onto_ours() {
        let rows = parse(sample("postmark.json").as_slice()).unwrap();
        let reasons: Vec<_> = rows
            .iter()
            .map(|r| match &r.parsed {
                Parsed::Import(i) => Some(i.reason),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                Some(BounceReason::MailboxNotFound),
                Some(BounceReason::Complaint),
                Some(BounceReason::Unsubscribed),
                Some(BounceReason::Manual),
            ]
        );
        assert_eq!(rows[0].line, 4);
        match &rows[0].parsed {
            Parsed::Import(i) => {
                assert_eq!(i.original_reason, "HardBounce (origin Recipient)");
                assert_eq!(i.original_time.to_rfc3339(), "2024-01-02T03:04:05Z");
            }
            other => panic!("{other:?}"),
        }
    }
}
