//! Our own CSV, for lists kept anywhere else: `email,reason,created_at[,list_id]`. `reason` is
//! one of our reason names (`mailbox-not-found`, `complaint`, `unsubscribed`, …, see the
//! README's classification table) or any other text, imported as `manual` with that text kept.
//! `created_at` is RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or seconds since the epoch.

use std::io::Read;

use super::{csv_rows, row, Row};
use crate::domain::BounceReason;

/// Reads one file.
pub fn parse(input: impl Read) -> Result<Vec<Row>, String> {
    csv_rows(input, |get| {
        let text = get("reason").unwrap_or_default();
        let reason = BounceReason::from_name(&text.to_ascii_lowercase().replace('_', "-"))
            .unwrap_or(BounceReason::Manual);
        let address = get("email").or_else(|| get("address"));
        let time = get("created_at").or_else(|| get("date"));
        let list = get("list_id").unwrap_or_default();
        row(address, reason, text, time, &list)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{sample, Parsed};
    use super::*;

    #[test]
    fn our_reason_names_map_and_other_text_is_manual() {
        let rows = parse(sample("generic.csv").as_slice()).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| match &r.parsed {
                Parsed::Import(i) => Some((i.reason, i.list_id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                Some((BounceReason::MailboxNotFound, "")),
                Some((BounceReason::Complaint, "")),
                Some((BounceReason::Unsubscribed, "weekly")),
                Some((BounceReason::Manual, "")),
                None,
            ]
        );
        assert_eq!(rows[4].line, 6);
    }
}
