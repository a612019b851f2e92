//! Amazon SES account-level suppression list: the JSON of `aws sesv2
//! list-suppressed-destinations` (`SuppressedDestinationSummaries`, each with `EmailAddress`,
//! `Reason` BOUNCE or COMPLAINT, `LastUpdateTime`), or the CSV of the same columns.

use std::io::Read;

use serde::Deserialize;

use super::{csv_rows, row, AddressLines, Row};
use crate::domain::BounceReason;

/// Our reason for an SES reason.
fn reason(ses: &str) -> BounceReason {
    match ses.to_ascii_uppercase().as_str() {
        "BOUNCE" => BounceReason::MailboxNotFound,
        "COMPLAINT" => BounceReason::Complaint,
        _ => BounceReason::Manual,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listing {
    suppressed_destination_summaries: Vec<Summary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Summary {
    email_address: Option<String>,
    reason: Option<String>,
    last_update_time: Option<serde_json::Value>,
}

/// Reads the JSON listing or the CSV.
pub fn parse(mut input: impl Read) -> Result<Vec<Row>, String> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return csv_rows(bytes.as_slice(), |get| {
            let text = get("reason").unwrap_or_default();
            row(
                get("emailaddress"),
                reason(&text),
                text,
                get("lastupdatetime"),
                "",
            )
        });
    }
    let listing: Listing =
        serde_json::from_slice(&bytes).map_err(|e| format!("not an SES listing: {e}"))?;
    // Each summary starts on the line where its address is written.
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = AddressLines::new(&text);
    Ok(listing
        .suppressed_destination_summaries
        .into_iter()
        .map(|s| {
            let line = lines.line_of(s.email_address.as_deref());
            let time = match s.last_update_time {
                Some(serde_json::Value::String(t)) => Some(t),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let text = s.reason.unwrap_or_default();
            let parsed = row(s.email_address, reason(&text), text, time, "");
            Row { line, parsed }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{sample, ImportRow, Parsed};
    use super::*;
    use crate::domain::Timestamp;

    #[test]
    fn the_json_listing_maps_bounces_and_complaints_with_their_lines() {
        let rows = parse(sample("ses.json").as_slice()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            Row {
                line: 4,
                parsed: Parsed::Import(ImportRow {
                    address: "bounced@example.com".into(),
                    reason: BounceReason::MailboxNotFound,
                    original_reason: "BOUNCE".into(),
                    original_time: Timestamp(1_704_164_645_000_000),
                    list_id: String::new(),
                }),
            }
        );
        assert!(
            matches!(&rows[1].parsed, Parsed::Import(r) if r.reason == BounceReason::Complaint)
        );
        assert_eq!(rows[2].line, 14);
        assert!(matches!(rows[2].parsed, Parsed::Invalid(_)));
    }

    #[test]
    fn the_csv_export_reads_the_same_columns() {
        let rows = parse(sample("ses.csv").as_slice()).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(
            matches!(&rows[0].parsed, Parsed::Import(r) if r.reason == BounceReason::MailboxNotFound && r.original_time == Timestamp(1_704_164_645_000_000))
        );
        assert!(
            matches!(&rows[1].parsed, Parsed::Import(r) if r.reason == BounceReason::Complaint)
        );
        assert_eq!(rows[2].line, 4);
        assert!(matches!(rows[2].parsed, Parsed::Invalid(_)));
    }
}
