//! Runs the Sisimai corpus (tests/data/sisimai-diagnostics.tsv, 600 real diagnostics with
//! Sisimai's reason and hard flag) through the engine, prints a confusion matrix (Sisimai
//! reason × our type) and holds the engine to two floors:
//!
//! * at least 97 % of rows Sisimai calls userunknown / hostunknown / hasmoved are hard;
//! * at least 97 % of rows Sisimai calls mailboxfull, expired, blocked, spamdetected,
//!   authfailure, requireptr, badreputation, toomanyconn, speeding, networkerror,
//!   systemerror, mesgtoobig, exceedlimit, virusdetected or contenterror are not hard.
//!
//! Sisimai is a reference, not ground truth: the rows where we disagree on purpose are listed
//! at the top of rules.toml. Run with `--nocapture` to see the matrix and every row where the
//! hard/not-hard verdicts differ.

use super::*;
use crate::domain::{BounceType as T, ReportedOutcome as L};
use std::collections::BTreeMap;

const CORPUS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sisimai-diagnostics.tsv"
));

const HARD_REASONS: &[&str] = &["userunknown", "hostunknown", "hasmoved"];
const NOT_HARD_REASONS: &[&str] = &[
    "mailboxfull",
    "expired",
    "blocked",
    "spamdetected",
    "authfailure",
    "requireptr",
    "badreputation",
    "toomanyconn",
    "speeding",
    "networkerror",
    "systemerror",
    "mesgtoobig",
    "exceedlimit",
    "virusdetected",
    "contenterror",
];

pub(crate) struct Row<'a> {
    pub source: &'a str,
    pub status: &'a str,
    pub diagnostic: &'a str,
    pub reason: &'a str,
    pub hard: &'a str,
}

pub(crate) fn rows() -> Vec<Row<'static>> {
    let mut out = Vec::new();
    for (n, line) in CORPUS.lines().enumerate() {
        if n == 0 || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 6, "line {}: {line}", n + 1);
        out.push(Row {
            source: f[0],
            status: f[2],
            diagnostic: f[3],
            reason: f[4],
            hard: f[5],
        });
    }
    out
}

/// Prints a confusion matrix: Sisimai reason × our type (hard, soft, block, complaint,
/// delivered).
pub(super) fn print_matrix(title: &str, matrix: &BTreeMap<&str, [usize; 5]>) {
    println!("\n{title}");
    println!(
        "{:<16} {:>5} {:>5} {:>5} {:>9} {:>9}",
        "reason", "hard", "soft", "block", "complaint", "delivered"
    );
    for (reason, k) in matrix {
        println!(
            "{reason:<16} {:>5} {:>5} {:>5} {:>9} {:>9}",
            k[0], k[1], k[2], k[3], k[4]
        );
    }
}

pub(super) fn type_name(t: T) -> &'static str {
    match t {
        T::Hard => "hard",
        T::Soft => "soft",
        T::Block => "block",
        T::Complaint => "complaint",
        T::Delivered => "delivered",
        T::Unsubscribe => "unsubscribe",
    }
}

#[test]
fn sisimai_corpus_meets_the_hard_and_not_hard_floors() {
    let c = Classifier::new();
    let rows = rows();
    assert_eq!(rows.len(), 600);
    let cols = ["hard", "soft", "block", "complaint", "delivered"];
    let mut matrix: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    let (mut hard_total, mut hard_ok) = (0usize, 0usize);
    let (mut soft_total, mut soft_ok) = (0usize, 0usize);
    let (mut agree, mut compared) = (0usize, 0usize);
    let mut diffs = Vec::new();
    for r in &rows {
        let status = (!r.status.is_empty()).then_some(r.status);
        let got = c.classify(&SmtpEvidence {
            reported: L::Bounce,
            smtp_response: r.diagnostic,
            enhanced_status: status,
            provider: "",
        });
        let col = cols
            .iter()
            .position(|&x| x == type_name(got.bounce_type))
            .unwrap();
        matrix.entry(r.reason).or_default()[col] += 1;
        let is_hard = got.bounce_type == T::Hard;
        if HARD_REASONS.contains(&r.reason) {
            hard_total += 1;
            hard_ok += is_hard as usize;
        }
        if NOT_HARD_REASONS.contains(&r.reason) {
            soft_total += 1;
            soft_ok += !is_hard as usize;
        }
        if !r.hard.is_empty() {
            compared += 1;
            if (r.hard == "1") == is_hard {
                agree += 1;
            } else {
                diffs.push(format!(
                    "  {:<48} sisimai {}/{} ours {:?}/{:?} by {}\n      {}",
                    r.source,
                    r.reason,
                    r.hard,
                    got.bounce_type,
                    got.reason,
                    got.rule_id,
                    r.diagnostic.chars().take(160).collect::<String>()
                ));
            }
        }
    }

    print_matrix(
        &format!("Sisimai reason × our type ({} rows)", rows.len()),
        &matrix,
    );
    let hard_pct = 100.0 * hard_ok as f64 / hard_total as f64;
    let soft_pct = 100.0 * soft_ok as f64 / soft_total as f64;
    println!("\nuserunknown/hostunknown/hasmoved classified hard: {hard_ok}/{hard_total} = {hard_pct:.2} %");
    println!("sender/message/temporary reasons classified not hard: {soft_ok}/{soft_total} = {soft_pct:.2} %");
    println!(
        "hard/not-hard agreement with Sisimai over all rows with a flag: {agree}/{compared} = {:.2} %",
        100.0 * agree as f64 / compared as f64
    );
    println!(
        "\nrows where the hard/not-hard verdicts differ:\n{}",
        diffs.join("\n")
    );

    assert!(hard_pct >= 97.0, "hard floor: {hard_pct:.2} %");
    assert!(soft_pct >= 97.0, "not-hard floor: {soft_pct:.2} %");
}
