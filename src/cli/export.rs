//! `suppressd export`: every suppression of a tenant, streamed page by page.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::connect::ClientArgs;
use super::{text, usage, Outcome};
use crate::grpc::proto as pb;

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Write every suppression of the tenant (newest first): address, reason, since, source,
/// the deciding SMTP response and event id.
///
/// Exit codes: 0 done; 1 the output cannot be written; 2 a usage error (unknown reason, bad
/// time); 3 the server cannot be reached or failed a call.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Only this reason (repeatable): `mailbox-not-found`, `complaint`, … or the proto name.
    #[arg(long)]
    pub reason: Vec<String>,
    /// Only suppressions since this time or later (RFC 3339, or a date).
    #[arg(long)]
    pub since: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const COLUMNS: [&str; 6] = [
    "address",
    "reason",
    "since",
    "source",
    "smtp_response",
    "event_id",
];

/// One exported suppression as a JSON object, keys in column order.
struct JsonRow<'a, I>(I)
where
    I: Iterator<Item = (&'a &'static str, &'a String)> + Clone;

impl<'a, I> serde::Serialize for JsonRow<'a, I>
where
    I: Iterator<Item = (&'a &'static str, &'a String)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.clone())
    }
}

pub async fn run(args: ExportArgs) -> Outcome {
    let reasons = args
        .reason
        .iter()
        .map(|r| {
            text::parse_reason(r).map(|r| r as i32).ok_or_else(|| {
                usage(format!(
                    "unknown --reason {r:?} (one of: {})",
                    text::reason_names()
                ))
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start_time = match &args.since {
        Some(s) => Some(text::parse_time(s).ok_or_else(|| {
            usage(format!(
                "--since {s:?} is not an RFC 3339 time (2026-01-31T00:00:00Z) or a date"
            ))
        })?),
        None => None,
    };
    let out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut client = args.client.connect().await?;
    let (mut csv, mut out) = match args.format {
        Format::Csv => (Some(csv::Writer::from_writer(out)), None),
        Format::Jsonl => (None, Some(BufWriter::new(out))),
    };
    if let Some(w) = &mut csv {
        w.write_record(COLUMNS)?;
    }
    let mut page_token = String::new();
    loop {
        let page = client
            .list_suppressions(pb::ListSuppressionsRequest {
                tenant: args.client.tenant.clone(),
                reasons: reasons.clone(),
                start_time,
                page_size: 1000,
                page_token: std::mem::take(&mut page_token),
                ..Default::default()
            })
            .await
            .context("ListSuppressions")?
            .into_inner();
        for status in &page.suppressions {
            let s = status.suppression.clone().unwrap_or_default();
            let row = [
                status.address.clone(),
                text::reason(s.reason),
                text::time(s.since.as_ref()),
                s.source,
                s.smtp_response,
                s.event_id,
            ];
            match &mut csv {
                Some(w) => w.write_record(&row)?,
                None => {
                    let out = out.as_mut().expect("jsonl writes to `out`");
                    // A map of the columns in their order (serde_json's own map sorts keys).
                    let object = JsonRow(COLUMNS.iter().zip(&row));
                    serde_json::to_writer(&mut *out, &object)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if let Some(w) = &mut csv {
        w.flush().context("cannot write the export")?;
    }
    if let Some(out) = &mut out {
        out.flush().context("cannot write the export")?;
    }
    Ok(0)
}
