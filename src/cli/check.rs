//! `suppressd check`: a CSV of contacts screened through CheckImport, one verdict row per
//! input row, in input order.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::connect::ClientArgs;
use super::{text, usage, Outcome};
use crate::grpc::proto as pb;

/// Screen a CSV of contacts before importing them.
///
/// The address column is found by name in the header (`--column`), or, in a file without a
/// header, as the first field holding an `@`. Verdicts go to stdout (or `--out`) as CSV: the
/// id column under its input name (the line number, under `line`, when there is none), the
/// address, then decision, reason, since and suggestion. A summary goes to stderr.
///
/// Exit codes: 0 done; 1 a file cannot be read or written, or a bad row under --strict; 2 a
/// usage error (no such column); 3 the server cannot be reached or failed the call; 4 with
/// --fail-on-blocked, at least one contact is not `allow`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CHECK_EXIT_CODES)]
pub struct CheckArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The CSV file (UTF-8, with or without BOM; `-` reads stdin).
    pub file: PathBuf,
    /// Header name of the address column.
    #[arg(long, default_value = "email")]
    pub column: String,
    /// Header name of the record id column, echoed in the verdicts (default: `id` when the
    /// header has one, else the line number).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Write the verdicts to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write only the verdicts that are not `allow`.
    #[arg(long)]
    pub only_blocked: bool,
    /// Stop at the first bad row (exit code 1) instead of reporting it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Exit with code 4 when any contact is not `allow`.
    #[arg(long)]
    pub fail_on_blocked: bool,
    /// Contacts per request message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Request messages sent and not yet answered, at most (flow control: memory stays
    /// bounded by this many batches).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub window: u32,
}

/// The contacts of one request message, kept until its answer comes back: each contact's id
/// (or line number) and address as written, in one buffer (no allocation per contact).
struct Batch {
    text: String,
    /// Per contact: where its id ends and where its address ends in `text`.
    ends: Vec<(u32, u32)>,
    /// How far into the file the batch reaches (for the progress bar).
    bytes: u64,
}

impl Batch {
    fn new(contacts: usize) -> Batch {
        Batch {
            text: String::with_capacity(contacts * 40),
            ends: Vec::with_capacity(contacts),
            bytes: 0,
        }
    }

    fn push(&mut self, id: impl std::fmt::Display, address: &str) {
        use std::fmt::Write as _;
        let _ = write!(self.text, "{id}");
        let id_end = self.text.len() as u32;
        self.text.push_str(address);
        self.ends.push((id_end, self.text.len() as u32));
    }

    /// The id and address of contact `i`.
    fn get(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1].1 as usize
        };
        let (id_end, end) = self.ends[i];
        (
            &self.text[start..id_end as usize],
            &self.text[id_end as usize..end as usize],
        )
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Where the id and the address are in each record.
struct Layout {
    address: usize,
    id: Option<usize>,
    id_header: String,
    fields: usize,
}

/// Finds the columns from the first record; true when that record is a header.
fn layout(first: &csv::StringRecord, args: &CheckArgs) -> anyhow::Result<(Layout, bool)> {
    let named = |name: &str| {
        first
            .iter()
            .position(|f| f.trim().eq_ignore_ascii_case(name.trim()))
    };
    let is_header = named(&args.column).is_some() || !first.iter().any(|f| f.contains('@'));
    if !is_header {
        if args.id_column.is_some() {
            return Err(usage(
                "--id-column needs a header line naming the columns; the file has none",
            ));
        }
        let address = first.iter().position(|f| f.contains('@')).unwrap_or(0);
        return Ok((
            Layout {
                address,
                id: None,
                id_header: "line".into(),
                fields: first.len(),
            },
            false,
        ));
    }
    let columns = || first.iter().collect::<Vec<_>>().join(", ");
    let address = named(&args.column).ok_or_else(|| {
        usage(format!(
            "no column named {:?} in the header (columns: {}); name it with --column",
            args.column,
            columns()
        ))
    })?;
    let (id, id_header) = match &args.id_column {
        Some(name) => {
            let i = named(name).ok_or_else(|| {
                usage(format!(
                    "no column named {name:?} in the header (columns: {})",
                    columns()
                ))
            })?;
            (Some(i), first[i].trim().to_string())
        }
        None => match named("id") {
            Some(i) => (Some(i), first[i].trim().to_string()),
            None => (None, "line".to_string()),
        },
    };
    Ok((
        Layout {
            address,
            id,
            id_header,
            fields: first.len(),
        },
        true,
    ))
}

/// Decision values the tally counts by; anything else counts under the last.
const DECISIONS: usize = 8;

/// Counts per decision.
struct Tally {
    names: Vec<String>,
    counts: [u64; DECISIONS],
    contacts: u64,
    not_allowed: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            names: (0..DECISIONS as i32).map(text::decision).collect(),
            counts: [0; DECISIONS],
            contacts: 0,
            not_allowed: 0,
        }
    }

    /// Counts one decision and gives its name.
    fn add(&mut self, decision: i32) -> &str {
        let i = usize::try_from(decision)
            .unwrap_or(DECISIONS - 1)
            .min(DECISIONS - 1);
        self.counts[i] += 1;
        self.contacts += 1;
        if decision != pb::ImportDecision::Allow as i32 {
            self.not_allowed += 1;
        }
        &self.names[i]
    }

    /// The decisions seen, with their counts.
    fn rows(&self) -> impl Iterator<Item = (&str, u64)> {
        self.names
            .iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name.as_str(), n))
    }

    fn line(&self, started: Instant) -> String {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let counts = self
            .rows()
            .map(|(d, n)| format!("{d} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} contacts, {:.0}/s ({counts})",
            self.contacts,
            self.contacts as f64 / secs
        )
    }
}

pub async fn run(args: CheckArgs) -> Outcome {
    let input: Box<dyn Read + Send> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            File::open(&args.file)
                .with_context(|| format!("cannot read {}", args.file.display()))?,
        )
    };
    let total_bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        // Records end at "\n" only, so that line numbers count CRLF files right; the "\r" left
        // at the end of a line's last field is trimmed like any surrounding space.
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(std::io::BufReader::with_capacity(1 << 20, input));

    // The first record decides the layout; without a header it is the first contact.
    let mut first = csv::StringRecord::new();
    let has_first = reader
        .read_record(&mut first)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (layout, is_header) = if has_first {
        layout(&first, &args)?
    } else {
        (
            Layout {
                address: 0,
                id: None,
                id_header: "line".into(),
                fields: 0,
            },
            true,
        )
    };

    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut writer = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, out));
    writer.write_record([
        layout.id_header.as_str(),
        "address",
        "decision",
        "reason",
        "since",
        "suggestion",
    ])?;

    let mut client = args.client.connect().await?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {percent:>3}% ETA {eta} {msg}")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // The reader: records -> batches. Each batch goes first to `pending` (what the writer
    // waits for, in order) and then to the request stream; both channels hold at most
    // `window` batches, so an unanswered backlog stops the reading.
    let window = args.window as usize;
    let (pending_tx, mut pending_rx) = mpsc::channel::<Batch>(window);
    let (request_tx, request_rx) = mpsc::channel::<pb::CheckImportRequest>(window);
    let tenant = args.client.tenant.clone();
    let batch_size = args.batch_size as usize;
    let strict = args.strict;
    let bar = progress.clone();
    let reader_task = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut bad_rows = 0u64;
        let mut batch = Batch::new(batch_size);
        let mut lines = String::new();
        let mut first_message = true;
        let mut send = |batch: &mut Batch, lines: &mut String, bytes: u64| -> bool {
            let request = pb::CheckImportRequest {
                tenant: tenant.clone(),
                address_lines: std::mem::take(lines),
                packed_decisions: first_message,
                ..Default::default()
            };
            first_message = false;
            let mut rows = std::mem::replace(batch, Batch::new(batch_size));
            rows.bytes = bytes;
            pending_tx.blocking_send(rows).is_ok() && request_tx.blocking_send(request).is_ok()
        };
        let mut record = csv::ByteRecord::new();
        let mut pending_first = (!is_header).then(|| first.into_byte_record());
        loop {
            let line = reader.position().line();
            let row = match pending_first.take() {
                Some(r) => {
                    record = r;
                    true
                }
                None => match reader.read_byte_record(&mut record) {
                    Ok(more) => more,
                    Err(e) => {
                        let at = e.position().map(|p| p.line()).unwrap_or(line);
                        let message = format!("line {at}: {}", csv_error(&e));
                        if strict {
                            anyhow::bail!("{message} (--strict)");
                        }
                        bar.suspend(|| eprintln!("bad row: {message}"));
                        bad_rows += 1;
                        continue;
                    }
                },
            };
            if !row {
                break;
            }
            let line = record.position().map(|p| p.line()).unwrap_or(line);
            if record.len() == 1 && record[0].trim_ascii().is_empty() {
                continue; // a blank line
            }
            let problem = if record.len() != layout.fields && layout.fields > 0 {
                Some(format!(
                    "{} fields where the header has {} (broken quoting?)",
                    record.len(),
                    layout.fields
                ))
            } else {
                match record.get(layout.address).map(std::str::from_utf8) {
                    None => Some("no address column".to_string()),
                    Some(Err(_)) => Some("the address is not UTF-8".to_string()),
                    Some(Ok(_)) => None,
                }
            };
            if let Some(problem) = problem {
                let message = format!("line {line}: {problem}");
                if strict {
                    anyhow::bail!("{message} (--strict)");
                }
                bar.suspend(|| eprintln!("bad row: {message}"));
                bad_rows += 1;
                continue;
            }
            let address = std::str::from_utf8(&record[layout.address])
                .expect("checked above")
                .trim();
            // One contact per line: a line break inside a quoted address cannot split it.
            if address.contains(['\n', '\r']) {
                lines.push_str(&address.replace(['\n', '\r'], " "));
            } else {
                lines.push_str(address);
            }
            lines.push('\n');
            match layout.id {
                Some(i) => {
                    let id = String::from_utf8_lossy(record.get(i).unwrap_or(b""));
                    batch.push(id.trim_end_matches('\r'), address);
                }
                None => batch.push(line, address),
            }
            if batch.len() == batch_size && !send(&mut batch, &mut lines, reader.position().byte())
            {
                return Ok(bad_rows);
            }
        }
        if !batch.is_empty() {
            send(&mut batch, &mut lines, reader.position().byte());
        }
        Ok(bad_rows)
    });

    let started = Instant::now();
    let mut tally = Tally::new();
    let mut last_line = Instant::now();
    let mut responses = client
        .check_import(ReceiverStream::new(request_rx))
        .await
        .context("CheckImport")?
        .into_inner();
    while let Some(response) = responses.message().await.context("CheckImport")? {
        let Some(rows) = pending_rx.recv().await else {
            anyhow::bail!("the server answered more batches than were sent");
        };
        let mut verdicts: Vec<Option<&pb::ImportVerdict>> = vec![None; rows.len()];
        for v in &response.verdicts {
            if let Some(slot) = verdicts.get_mut(v.position as usize) {
                *slot = Some(v);
            }
        }
        for (i, verdict) in verdicts.iter().enumerate() {
            let (id, address) = rows.get(i);
            let decision = response
                .decisions
                .get(i)
                .map(|&d| i32::from(d))
                .or_else(|| verdict.map(|v| v.decision))
                .unwrap_or(pb::ImportDecision::Unspecified as i32);
            let allowed = decision == pb::ImportDecision::Allow as i32;
            let name = tally.add(decision);
            if allowed && args.only_blocked {
                continue;
            }
            if allowed {
                writer.write_record([id, address, name, "", "", ""])?;
                continue;
            }
            let (reason, since, suggestion) = match verdict {
                Some(v) => {
                    let reason = match &v.suppression {
                        Some(s) => text::reason(s.reason),
                        None => v.detail.clone(),
                    };
                    let since = text::time(v.suppression.as_ref().and_then(|s| s.since.as_ref()));
                    let suggestion = if v.replacement_address.is_empty() {
                        v.suggestion
                            .as_ref()
                            .map(|s| s.address.clone())
                            .unwrap_or_default()
                    } else {
                        v.replacement_address.clone()
                    };
                    (reason, since, suggestion)
                }
                None => Default::default(),
            };
            writer.write_record([
                id,
                address,
                name,
                reason.as_str(),
                since.as_str(),
                suggestion.as_str(),
            ])?;
        }
        progress.set_position(rows.bytes);
        progress.set_message(tally.line(started));
        if progress.is_hidden() && last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{}", tally.line(started));
            last_line = Instant::now();
        }
    }
    drop(pending_rx);
    let bad_rows = reader_task.await.context("the CSV reader stopped")??;
    writer.flush().context("cannot write the verdicts")?;
    progress.finish_and_clear();

    let mut rows: Vec<Vec<String>> = tally
        .rows()
        .map(|(d, n)| vec![d.to_string(), n.to_string()])
        .collect();
    rows.push(vec!["bad rows".into(), bad_rows.to_string()]);
    rows.push(vec!["contacts".into(), tally.contacts.to_string()]);
    let secs = started.elapsed().as_secs_f64();
    eprint!("{}", text::table(&["decision", "count"], &rows));
    eprintln!(
        "{} contacts in {secs:.1} s ({:.0}/s)",
        tally.contacts,
        tally.contacts as f64 / secs.max(1e-3)
    );
    Ok(if args.fail_on_blocked && tally.not_allowed > 0 {
        4
    } else {
        0
    })
}

/// A CSV error in a few words.
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    }
}
