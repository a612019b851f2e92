//! Runs every entry of the receivers' and relays' published bounce-code lists
//! (tests/data/provider-codes.tsv, one row per published entry, see docs/provider-codes.md)
//! through the engine, prints a confusion matrix per provider (expected type × decided type)
//! and fails on any row decided otherwise than expected.
//!
//! A row whose `divergence` column is filled is a deliberate disagreement with what the
//! published list says: the column starts with the verdict we give instead
//! (`block/SenderBlocked: why`), and the row must be decided that way. Run with
//! `--nocapture` to see the matrices.

use super::*;
use crate::domain::{BounceReason as R, BounceType as T, ReportedOutcome as L};
use std::collections::BTreeMap;

const PROVIDER_CODES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/provider-codes.tsv"
));

const COLUMNS: [&str; 8] = [
    "provider",
    "list",
    "entry",
    "reply",
    "type",
    "reason",
    "note",
    "divergence",
];

const TYPES: [&str; 5] = ["hard", "soft", "block", "complaint", "delivered"];

/// One published entry.
struct Entry<'a> {
    line: usize,
    provider: &'a str,
    entry: &'a str,
    reply: &'a str,
    expected: (T, R),
    /// The verdict we give instead of the published one, when we differ on purpose.
    divergence: Option<(T, R)>,
}

fn parse_type(s: &str) -> T {
    match s {
        "hard" => T::Hard,
        "soft" => T::Soft,
        "block" => T::Block,
        "complaint" => T::Complaint,
        "delivered" => T::Delivered,
        other => panic!("unknown type {other:?}"),
    }
}

fn parse_reason(s: &str) -> R {
    match s {
        "MailboxNotFound" => R::MailboxNotFound,
        "DomainNotFound" => R::DomainNotFound,
        "InvalidAddress" => R::InvalidAddress,
        "MailboxDisabled" => R::MailboxDisabled,
        "RecipientRejected" => R::RecipientRejected,
        "MailboxFull" => R::MailboxFull,
        "MessageTooLarge" => R::MessageTooLarge,
        "RateLimited" => R::RateLimited,
        "TemporaryFailure" => R::TemporaryFailure,
        "SenderBlocked" => R::SenderBlocked,
        "ContentRejected" => R::ContentRejected,
        "AuthenticationFailed" => R::AuthenticationFailed,
        "Complaint" => R::Complaint,
        "Unknown" => R::Unknown,
        other => panic!("unknown reason {other:?}"),
    }
}

/// `block/SenderBlocked: why` -> the verdict before the colon.
fn parse_verdict(s: &str) -> (T, R) {
    let head = s.split(':').next().unwrap_or_default().trim();
    let (t, r) = head
        .split_once('/')
        .unwrap_or_else(|| panic!("divergence {s:?} must start with type/Reason:"));
    (parse_type(t), parse_reason(r))
}

fn entries() -> Vec<Entry<'static>> {
    let mut lines = PROVIDER_CODES.lines().enumerate();
    let (_, header) = lines.next().expect("a header line");
    assert_eq!(header.split('\t').collect::<Vec<_>>(), COLUMNS);
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), COLUMNS.len(), "line {}: {l}", n + 1);
            assert!(!f[3].trim().is_empty(), "line {}: no reply text", n + 1);
            Entry {
                line: n + 1,
                provider: f[0],
                entry: f[2],
                reply: f[3],
                expected: (parse_type(f[4]), parse_reason(f[5])),
                divergence: (!f[7].trim().is_empty()).then(|| parse_verdict(f[7])),
            }
        })
        .collect()
}

fn type_col(t: T) -> usize {
    match t {
        T::Hard => 0,
        T::Soft => 1,
        T::Block => 2,
        T::Complaint => 3,
        T::Delivered | T::Unsubscribe => 4,
    }
}

#[derive(Default)]
struct Tally {
    /// expected type (row) × decided type (column)
    matrix: [[usize; 5]; 5],
    rows: usize,
    /// decided exactly as the list says (type and reason)
    agree: usize,
    /// decided by a text rule rather than a status/code fallback
    by_rule: usize,
    divergences: usize,
    /// entries no text rule decides (a status or reply-code fallback did)
    fallbacks: Vec<String>,
}

#[test]
fn every_published_provider_entry_is_decided_as_expected() {
    let c = Classifier::new();
    let entries = entries();
    assert!(entries.len() >= 200, "{} entries", entries.len());
    let mut per_provider: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    for e in &entries {
        let got = c.classify(&SmtpEvidence {
            reported: L::Bounce,
            smtp_response: e.reply,
            enhanced_status: None,
            provider: e.provider,
        });
        let decided = (got.bounce_type, got.reason);
        let t = per_provider.entry(e.provider).or_default();
        t.rows += 1;
        t.matrix[type_col(e.expected.0)][type_col(decided.0)] += 1;
        t.agree += (decided == e.expected) as usize;
        let by_fallback = got.rule_id.starts_with("status.")
            || got.rule_id.starts_with("code.")
            || got.rule_id.starts_with("label.");
        if by_fallback {
            t.fallbacks.push(format!("{} ({})", e.entry, got.rule_id));
        } else {
            t.by_rule += 1;
        }
        let wanted = match e.divergence {
            Some(d) => {
                t.divergences += 1;
                d
            }
            None => e.expected,
        };
        if decided != wanted {
            failures.push(format!(
                "line {} {} {}: expected {:?}/{:?}, got {:?}/{:?} by {}\n    {}",
                e.line,
                e.provider,
                e.entry,
                wanted.0,
                wanted.1,
                decided.0,
                decided.1,
                got.rule_id,
                e.reply
            ));
        }
    }

    for (provider, t) in &per_provider {
        println!(
            "\n{provider}: {} entries, {} decided by a text rule, {} as published ({:.1} %), {} deliberate divergences",
            t.rows,
            t.by_rule,
            t.agree,
            100.0 * t.agree as f64 / t.rows as f64,
            t.divergences
        );
        println!(
            "{:<18} {:>5} {:>5} {:>5} {:>9} {:>9}",
            "expected \\ ours", TYPES[0], TYPES[1], TYPES[2], TYPES[3], TYPES[4]
        );
        if !t.fallbacks.is_empty() {
            println!("decided by a fallback: {}", t.fallbacks.join(", "));
        }
        for (i, row) in t.matrix.iter().enumerate() {
            if row.iter().any(|&n| n > 0) {
                println!(
                    "{:<18} {:>5} {:>5} {:>5} {:>9} {:>9}",
                    TYPES[i], row[0], row[1], row[2], row[3], row[4]
                );
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_divergence_names_a_verdict_other_than_the_published_one() {
    for e in entries() {
        if let Some(d) = e.divergence {
            assert_ne!(d, e.expected, "line {}: a divergence must differ", e.line);
        }
    }
}
