//! Mailgun suppression CSVs: bounces (`address,code,error,created_at`), complaints
//! (`address,created_at`), unsubscribes (`address,tags,created_at`; tag `*` is every mail, any
//! other tag is an unsubscribe from that list). The kind comes from `--kind`, else the columns.

use std::io::Read;

use super::{csv_header, csv_rows, row, Parsed, Row};
use crate::domain::BounceReason;

/// Reads one export; `kind` is `bounces`, `complaints` or `unsubscribes`.
pub fn parse(kind: Option<&str>, mut input: impl Read) -> Result<Vec<Row>, String> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let header = csv_header(&bytes);
    let has = |c: &str| header.iter().any(|h| h == c);
    let kind = match kind {
        Some(k) => k.to_string(),
        None if has("code") || has("error") => "bounces".into(),
        None if has("tags") || has("tag") => "unsubscribes".into(),
        None => "complaints".into(),
    };
    match kind.as_str() {
        "bounces" => csv_rows(bytes.as_slice(), |get| {
            let code = get("code").unwrap_or_default();
            let error = get("error").unwrap_or_default();
            if code.starts_with('4') {
                return Parsed::Skipped(format!("a temporary failure ({code})"));
            }
            let reason = if error.to_ascii_lowercase().contains("invalid") {
                BounceReason::InvalidAddress
            } else {
                BounceReason::MailboxNotFound
            };
            let original = format!("{code} {error}").trim().to_string();
            row(get("address"), reason, original, get("created_at"), "")
        }),
        "complaints" => csv_rows(bytes.as_slice(), |get| {
            row(
                get("address"),
                BounceReason::Complaint,
                "complaint".into(),
                get("created_at"),
                "",
            )
        }),
        "unsubscribes" => csv_rows(bytes.as_slice(), |get| {
            let tag = get("tags").or_else(|| get("tag")).unwrap_or_default();
            let list = if tag == "*" { "" } else { tag.as_str() };
            let original = if list.is_empty() {
                "unsubscribed from every mail".to_string()
            } else {
                format!("unsubscribed from tag {list}")
            };
            row(
                get("address"),
                BounceReason::Unsubscribed,
                original,
                get("created_at"),
                list,
            )
        }),
        other => Err(format!(
            "unknown Mailgun export {other:?}: bounces, complaints or unsubscribes"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sample, ImportRow, Parsed};
    use super::*;

    fn import(rows: &[Row], i: usize) -> &ImportRow {
        match &rows[i].parsed {
            Parsed::Import(r) => r,
            other => panic!("row {i}: {other:?}"),
        }
    }

    #[test]
    fn bounces_keep_code_and_error_with_the_rfc_2822_date() {
        let rows = parse(None, sample("mailgun_bounces.csv").as_slice()).unwrap();
        let first = import(&rows, 0);
        assert_eq!(first.reason, BounceReason::MailboxNotFound);
        assert_eq!(first.original_reason, "550 No such mailbox");
        assert_eq!(first.original_time.to_rfc3339(), "2024-01-02T03:04:05Z");
        assert_eq!(rows[1].line, 3);
        assert!(matches!(rows[1].parsed, Parsed::Invalid(_)));
    }

    #[test]
    fn complaints_and_unsubscribes_by_their_columns() {
        let c = parse(None, sample("mailgun_complaints.csv").as_slice()).unwrap();
        assert_eq!(import(&c, 0).reason, BounceReason::Complaint);
        let u = parse(None, sample("mailgun_unsubscribes.csv").as_slice()).unwrap();
        assert_eq!(import(&u, 0).list_id, "");
        assert_eq!(import(&u, 1).list_id, "newsletter");
        assert_eq!(import(&u, 1).reason, BounceReason::Unsubscribed);
    }
}
