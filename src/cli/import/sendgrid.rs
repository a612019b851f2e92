//! SendGrid suppression CSVs: bounces and blocks (`email,reason,status,created`), spam reports
//! (`email,ip,created`), global unsubscribes (`email,created`). Blocks and bounces share their
//! columns: the kind comes from `--kind`, else from the file name (`blocks` in it), else the
//! columns. A block is skipped: it says the receiver refused the sender, not that the address
//! is bad.

use std::io::Read;

use super::{csv_header, csv_rows, row, Parsed, Row};
use crate::domain::BounceReason;

/// Our reason for a bounce, from its enhanced status code and text.
fn bounce_reason(status: &str, text: &str) -> BounceReason {
    let text = text.to_ascii_lowercase();
    if status.starts_with("5.1.3") || text.contains("invalid address") || text.contains("syntax") {
        BounceReason::InvalidAddress
    } else if status.starts_with("5.1.2") || text.contains("domain not found") {
        BounceReason::DomainNotFound
    } else {
        BounceReason::MailboxNotFound
    }
}

/// Reads one export; `kind` is `bounces`, `blocks`, `spam_reports` or `unsubscribes`.
pub fn parse(kind: Option<&str>, name: &str, mut input: impl Read) -> Result<Vec<Row>, String> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let header = csv_header(&bytes);
    let has = |c: &str| header.iter().any(|h| h == c);
    let name = name.to_ascii_lowercase();
    let kind = match kind {
        Some(k) => k.replace('-', "_"),
        None if name.contains("block") => "blocks".into(),
        None if has("status") || has("reason") => "bounces".into(),
        None if has("ip") || name.contains("spam") => "spam_reports".into(),
        None => "unsubscribes".into(),
    };
    match kind.as_str() {
        "blocks" => csv_rows(bytes.as_slice(), |_| {
            Parsed::Skipped("a block: the receiver refused the sender, not the address".into())
        }),
        "bounces" => csv_rows(bytes.as_slice(), |get| {
            let status = get("status").unwrap_or_default();
            let text = get("reason").unwrap_or_default();
            let reason = bounce_reason(&status, &text);
            let original = if status.is_empty() {
                text
            } else {
                format!("{status} {text}")
            };
            row(get("email"), reason, original, get("created"), "")
        }),
        "spam_reports" => csv_rows(bytes.as_slice(), |get| {
            row(
                get("email"),
                BounceReason::Complaint,
                "spam report".into(),
                get("created"),
                "",
            )
        }),
        "unsubscribes" => csv_rows(bytes.as_slice(), |get| {
            row(
                get("email"),
                BounceReason::Unsubscribed,
                "global unsubscribe".into(),
                get("created"),
                "",
            )
        }),
        other => Err(format!(
            "unknown SendGrid export {other:?}: bounces, blocks, spam_reports or unsubscribes"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sample, Parsed};
    use super::*;
    use crate::domain::Timestamp;

    fn import(rows: &[Row], i: usize) -> &super::super::ImportRow {
        match &rows[i].parsed {
            Parsed::Import(r) => r,
            other => panic!("row {i}: {other:?}"),
        }
    }

    #[test]
    fn bounces_map_by_status_and_keep_status_and_text() {
        let rows = parse(
            None,
            "bounces.csv",
            sample("sendgrid_bounces.csv").as_slice(),
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        let first = import(&rows, 0);
        assert_eq!(first.reason, BounceReason::MailboxNotFound);
        assert_eq!(
            first.original_reason,
            "5.1.1 550 5.1.1 The email account does not exist"
        );
        assert_eq!(first.original_time, Timestamp(1_704_164_645_000_000));
        assert_eq!(import(&rows, 1).reason, BounceReason::InvalidAddress);
        assert_eq!(import(&rows, 2).address, "not-an-address");
        assert_eq!(rows[3].line, 5);
        assert!(matches!(rows[3].parsed, Parsed::Invalid(_)));
    }

    #[test]
    fn blocks_are_skipped_by_file_name_or_kind() {
        let by_name = parse(
            None,
            "sendgrid_blocks.csv",
            sample("sendgrid_blocks.csv").as_slice(),
        )
        .unwrap();
        assert_eq!(by_name.len(), 2);
        assert!(by_name
            .iter()
            .all(|r| matches!(r.parsed, Parsed::Skipped(_))));
        let by_kind = parse(
            Some("blocks"),
            "export.csv",
            sample("sendgrid_blocks.csv").as_slice(),
        )
        .unwrap();
        assert!(by_kind
            .iter()
            .all(|r| matches!(r.parsed, Parsed::Skipped(_))));
    }

    #[test]
    fn spam_reports_are_complaints_and_unsubscribes_are_unsubscribes() {
        let spam = parse(
            None,
            "x.csv",
            sample("sendgrid_spam_reports.csv").as_slice(),
        )
        .unwrap();
        assert_eq!(import(&spam, 0).reason, BounceReason::Complaint);
        let unsub = parse(
            None,
            "x.csv",
            sample("sendgrid_unsubscribes.csv").as_slice(),
        )
        .unwrap();
        assert_eq!(import(&unsub, 0).reason, BounceReason::Unsubscribed);
        assert_eq!(import(&unsub, 0).list_id, "");
    }
}
