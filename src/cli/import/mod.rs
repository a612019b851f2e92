//! The suppression exports `suppressd import` reads, one module per provider, each turned into
//! rows: a suppression to import (address as written, our reason, the provider's reason, its
//! time, a list for list unsubscribes), a row skipped on purpose (a block is the sender's
//! problem, not the address's), or an invalid row, each with its line number. Where the formats
//! come from: docs/import-formats.md.

pub mod generic;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

use std::io::Read;

use crate::domain::{BounceReason, Timestamp};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Amazon SES: `aws sesv2 list-suppressed-destinations` JSON, or its CSV
    /// (`EmailAddress,Reason,LastUpdateTime`).
    Ses,
    /// SendGrid: the bounces, blocks, spam reports or unsubscribes CSV.
    Sendgrid,
    /// Postmark: the suppression dump (JSON) of a message stream.
    Postmark,
    /// Mailgun: the bounces, complaints or unsubscribes CSV.
    Mailgun,
    /// Our own CSV: `email,reason,created_at[,list_id]`.
    Csv,
}

impl Format {
    /// The source recorded with each suppression of this format.
    pub fn source(self) -> &'static str {
        match self {
            Format::Ses => "import:ses",
            Format::Sendgrid => "import:sendgrid",
            Format::Postmark => "import:postmark",
            Format::Mailgun => "import:mailgun",
            Format::Csv => "import:csv",
        }
    }
}

/// A suppression to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The address as written.
    pub address: String,
    /// Our reason.
    pub reason: BounceReason,
    /// The provider's reason, as written.
    pub original_reason: String,
    /// When the provider suppressed the address.
    pub original_time: Timestamp,
    /// For an unsubscribe from one list: the list (empty: every mail).
    pub list_id: String,
}

/// What one row of an export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A suppression to import.
    Import(ImportRow),
    /// Not a suppression, on purpose (why).
    Skipped(String),
    /// Unreadable (why).
    Invalid(String),
}

/// One row with the line it starts on (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The line number in the file.
    pub line: u64,
    /// What it is.
    pub parsed: Parsed,
}

/// Reads a whole export of `format`; `name` (the file name) tells SendGrid's blocks from its
/// bounces when `kind` does not.
pub fn parse(
    format: Format,
    kind: Option<&str>,
    name: &str,
    input: impl Read,
) -> Result<Vec<Row>, String> {
    match format {
        Format::Ses => ses::parse(input),
        Format::Sendgrid => sendgrid::parse(kind, name, input),
        Format::Postmark => postmark::parse(input),
        Format::Mailgun => mailgun::parse(kind, input),
        Format::Csv => generic::parse(input),
    }
}

/// Reads a time as exports write it: RFC 3339 (`2024-01-02T03:04:05Z`, with an offset or
/// fractions), `2024-01-02 03:04:05` (UTC), RFC 2822 (`Fri, 21 Oct 2011 11:02:55 UTC`), or
/// seconds since the epoch.
pub fn parse_time(input: &str) -> Result<Timestamp, String> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    use time::{OffsetDateTime, PrimitiveDateTime};
    let s = input.trim();
    let bad = || format!("unreadable time {s:?}");
    if s.is_empty() {
        return Err("no time given".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().map_err(|_| bad())?;
        return Ok(Timestamp((secs * 1e6).round() as i64));
    }
    let to_ts = |t: OffsetDateTime| Timestamp((t.unix_timestamp_nanos() / 1_000) as i64);
    // RFC 3339, also with a space between date and time.
    let mut tee = s.to_string();
    if tee.len() > 10 && tee.as_bytes()[10] == b' ' {
        tee.replace_range(10..11, "T");
    }
    if let Ok(t) = OffsetDateTime::parse(&tee, &Rfc3339) {
        return Ok(to_ts(t));
    }
    for naive in [
        "[year]-[month]-[day]T[hour]:[minute]:[second]",
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]",
    ] {
        let naive =
            time::format_description::parse_borrowed::<1>(naive).map_err(|e| e.to_string())?;
        if let Ok(t) = PrimitiveDateTime::parse(&tee, &naive) {
            return Ok(to_ts(t.assume_utc()));
        }
    }
    let zoned = match s.strip_suffix(" UTC").or_else(|| s.strip_suffix(" GMT")) {
        Some(rest) => format!("{rest} +0000"),
        None => s.to_string(),
    };
    OffsetDateTime::parse(&zoned, &Rfc2822)
        .map(to_ts)
        .map_err(|_| bad())
}

/// The lines of a JSON dump's entries, found by their addresses in the order the entries come:
/// each entry is numbered by the line where its address is written (0 when it has none, or it
/// cannot be found).
pub(crate) struct AddressLines<'a> {
    text: &'a str,
    /// Where the search for the next address starts.
    from: usize,
    /// Line breaks before `from`.
    breaks: u64,
}

impl<'a> AddressLines<'a> {
    /// Lines of `text`, searched from its start.
    pub(crate) fn new(text: &'a str) -> Self {
        AddressLines {
            text,
            from: 0,
            breaks: 0,
        }
    }

    /// The line of the next entry, whose address is `address`.
    pub(crate) fn line_of(&mut self, address: Option<&str>) -> u64 {
        let Some(address) = address else { return 0 };
        let Some(at) = self.text[self.from..].find(address) else {
            return 0;
        };
        let end = self.from + at + address.len();
        self.breaks += self.text[self.from..end].matches('\n').count() as u64;
        self.from = end;
        self.breaks + 1
    }
}

/// Reads a CSV export with a header line, handing each record (by header name, lowercased) to
/// `row`; a record that is not CSV is an invalid row.
pub(crate) fn csv_rows(
    input: impl Read,
    mut row: impl FnMut(&dyn Fn(&str) -> Option<String>) -> Parsed,
) -> Result<Vec<Row>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("no CSV header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.iter().all(str::is_empty) {
                    continue;
                }
                let get = |name: &str| {
                    header
                        .iter()
                        .position(|h| h == name)
                        .and_then(|i| record.get(i))
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                };
                rows.push(Row {
                    line,
                    parsed: row(&get),
                });
            }
            Err(e) => rows.push(Row {
                line: e.position().map_or(0, |p| p.line()),
                parsed: Parsed::Invalid(e.to_string()),
            }),
        }
    }
    Ok(rows)
}

/// The header names of a CSV export, lowercased (to tell its kinds apart).
pub(crate) fn csv_header(input: &[u8]) -> Vec<String> {
    let first = input.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(first)
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_lowercase())
        .collect()
}

/// A row to import, or an invalid row when the address or the time is missing or unreadable.
pub(crate) fn row(
    address: Option<String>,
    reason: BounceReason,
    original_reason: String,
    time: Option<String>,
    list_id: &str,
) -> Parsed {
    let Some(address) = address else {
        return Parsed::Invalid("no address".into());
    };
    let original_time = match time.as_deref().map(parse_time) {
        None => return Parsed::Invalid("no time".into()),
        Some(Err(e)) => return Parsed::Invalid(e),
        Some(Ok(t)) => t,
    };
    Parsed::Import(ImportRow {
        address,
        reason,
        original_reason,
        original_time,
        list_id: list_id.to_string(),
    })
}

#[cfg(test)]
pub(crate) fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/import/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_every_form_exports_write() {
        let t = Timestamp(1_704_164_645_000_000); // 2024-01-02T03:04:05Z
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T04:04:05+01:00",
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05",
            "Tue, 02 Jan 2024 03:04:05 UTC",
            "Tue, 02 Jan 2024 03:04:05 +0000",
            "1704164645",
        ] {
            assert_eq!(parse_time(s), Ok(t), "{s}");
        }
        assert_eq!(
            parse_time("2024-01-02T03:04:05.250Z"),
            Ok(Timestamp(t.0 + 250_000))
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
    }
}
