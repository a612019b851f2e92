//! `suppressd parse-bounce FILE...`: what ParseBounceMessage would answer for each raw message
//! file, without a server, for operators debugging a bounce mailbox. An mbox file of several
//! messages is read message by message (`FILE#2` is its second), a Maildir directory file by
//! file. Plain text by default;
//! `--json` prints one JSON object per message (the response's fields, enums by their proto
//! names).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::app::bounce_messages::DEFAULT_MAX_BOUNCE_MESSAGE_BYTES;
use mail_parser::mailbox::maildir::MessageIterator as MaildirMessages;

use crate::bounce::{mailbox, BounceParser, ParsedMessage};
use crate::classify::{Classifier, RULES_VERSION};
use crate::grpc::bounce_response;
use crate::grpc::proto as pb;

/// Arguments of `parse-bounce`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 done; 1 a file cannot be read, or a message is larger than --max-bytes."
)]
pub struct ParseBounceArgs {
    /// Raw messages: RFC 5322 files, mbox files of several messages, or Maildir directories
    /// (every message of their cur/ and new/); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One JSON object per message instead of text.
    #[arg(long)]
    pub json: bool,
    /// Which ESP or MTA the mailbox receives bounces from (a classification hint).
    #[arg(long, default_value = "")]
    pub provider: String,
    /// Largest message read, in bytes (the server's --max-bounce-message-bytes); in an mbox
    /// file, each message's.
    #[arg(long, default_value_t = DEFAULT_MAX_BOUNCE_MESSAGE_BYTES as u64)]
    pub max_bytes: u64,
}

/// Runs `parse-bounce`.
pub fn parse_bounce(args: ParseBounceArgs) -> ExitCode {
    let mut reader = Reader {
        parser: BounceParser::new(),
        classifier: Classifier::new(),
        args: &args,
        failed: false,
    };
    for file in &args.files {
        if file.is_dir() {
            reader.maildir(file);
            continue;
        }
        let raw = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
        } else {
            std::fs::read(file)
        };
        let name = file.display().to_string();
        match raw {
            Ok(raw) => match mailbox::messages(&raw) {
                Some(messages) => {
                    for (i, m) in messages.into_iter().enumerate() {
                        reader.message(&format!("{name}#{}", i + 1), &m);
                    }
                }
                None => reader.message(&name, &raw),
            },
            Err(e) => reader.fail(format!("cannot read {name}: {e}")),
        }
    }
    if reader.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads messages one by one and prints what each says.
struct Reader<'a> {
    parser: BounceParser,
    classifier: Classifier,
    args: &'a ParseBounceArgs,
    failed: bool,
}

impl Reader<'_> {
    fn fail(&mut self, message: String) {
        eprintln!("error: {message}");
        self.failed = true;
    }

    /// Every message of a Maildir (its `cur` and `new` folders), read with mail-parser's
    /// Maildir reader.
    fn maildir(&mut self, dir: &std::path::Path) {
        match MaildirMessages::new(dir) {
            Ok(messages) => {
                for m in messages {
                    match m {
                        Ok(m) => {
                            let name = m.path().display().to_string();
                            self.message(&name, m.contents());
                        }
                        Err(e) => {
                            self.fail(format!("cannot read a message of {}: {e}", dir.display()))
                        }
                    }
                }
            }
            Err(e) => self.fail(format!(
                "{} is a directory but not a Maildir (with cur/ and new/): {e}",
                dir.display()
            )),
        }
    }

    /// One message: refused above `--max-bytes`, otherwise read and printed.
    fn message(&mut self, name: &str, raw: &[u8]) {
        if raw.len() as u64 > self.args.max_bytes {
            return self.fail(format!(
                "{name}: {} bytes; the limit is {} bytes (--max-bytes)",
                raw.len(),
                self.args.max_bytes
            ));
        }
        let parsed = self
            .parser
            .parse(raw, self.args.provider.trim(), &self.classifier);
        if self.args.json {
            println!("{}", to_json(name, &parsed));
        } else {
            print!("{}", to_text(name, &parsed));
        }
    }
}

fn enum_name<E: TryFrom<i32>>(v: i32, name: impl Fn(&E) -> &'static str) -> &'static str {
    E::try_from(v).map_or("UNKNOWN", |e| name(&e))
}

fn response(parsed: &ParsedMessage) -> pb::ParseBounceMessageResponse {
    bounce_response(parsed, RULES_VERSION)
}

/// The response as a JSON object (proto field names, enums by name).
fn to_json(file: &str, parsed: &ParsedMessage) -> Value {
    let r = response(parsed);
    let bounces: Vec<Value> = r
        .bounces
        .iter()
        .map(|b| {
            let c = b.classification.clone().unwrap_or_default();
            json!({
                "recipient": b.recipient,
                "action": enum_name(b.action, pb::BounceAction::as_str_name),
                "enhanced_status": b.enhanced_status,
                "diagnostic": b.diagnostic,
                "reporting_mta": b.reporting_mta,
                "remote_mta": b.remote_mta,
                "original_message_id": b.original_message_id,
                "original_headers": b.original_headers.iter()
                    .map(|h| json!({"name": h.name, "value": h.value}))
                    .collect::<Vec<_>>(),
                "feedback_type": b.feedback_type,
                "classification": {
                    "outcome_type": enum_name(c.outcome_type, pb::OutcomeType::as_str_name),
                    "reason": enum_name(c.reason, pb::BounceReason::as_str_name),
                    "rule_id": c.rule_id,
                    "confidence": c.confidence,
                },
            })
        })
        .collect();
    json!({
        "file": file,
        "kind": enum_name(r.kind, pb::BounceMessageKind::as_str_name),
        "format": r.format,
        "message_id": r.message_id,
        "rules_version": r.rules_version,
        "bounces": bounces,
    })
}

/// The response as a few lines of text.
fn to_text(file: &str, parsed: &ParsedMessage) -> String {
    let mut out = format!("{file}: {}", parsed.kind.name());
    if !parsed.format.is_empty() {
        out.push_str(&format!(" ({})", parsed.format));
    }
    out.push('\n');
    for b in &parsed.bounces {
        let c = &b.classification;
        out.push_str(&format!(
            "  {} {} {} -> {:?}/{:?} (rule {}, confidence {:.2})\n",
            b.recipient,
            b.action.name(),
            b.status.as_deref().unwrap_or("-"),
            c.bounce_type,
            c.reason,
            c.rule_id,
            c.confidence
        ));
        if !b.diagnostic.is_empty() {
            let d: String = b.diagnostic.chars().take(300).collect();
            out.push_str(&format!("    {d}\n"));
        }
    }
    out
}
