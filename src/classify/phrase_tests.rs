//! Runs every phrase Sisimai knows a reason by (tests/data/sisimai-phrases.tsv: its reason
//! modules' phrase lists and patterns, and the reason tables of its MTA and receiver modules,
//! each made into a reply text) through the engine and prints a confusion matrix (Sisimai reason
//! × our type). Every text whose reason is address-level (userunknown, hostunknown, hasmoved,
//! suspend) must be hard, and every text whose reason is a sender-side, message or temporary one
//! must not be, except where the row's `divergence` column gives our verdict and why; that
//! verdict is then checked instead. Reasons that are neither (rejected, filtered, onhold, ...)
//! are only printed.

use super::corpus_tests::{print_matrix, type_name};
use super::*;
use crate::domain::{BounceType as T, ReportedOutcome as L};
use std::collections::BTreeMap;

const PHRASES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sisimai-phrases.tsv"
));

/// Sisimai's reasons that say the address itself is bad (its `suspend` counted as our disabled
/// mailbox), and those that say the sender, the message or the moment was the cause; the bounce
/// message corpus test holds its figures to the same lists.
pub(crate) const HARD_REASONS: &[&str] = &["userunknown", "hostunknown", "hasmoved", "suspend"];
pub(crate) const NOT_HARD_REASONS: &[&str] = &[
    "blocked",
    "policyviolation",
    "spamdetected",
    "securityerror",
    "mailboxfull",
    "expired",
    "networkerror",
    "toomanyconn",
    "systemerror",
    "systemfull",
    "mesgtoobig",
    "exceedlimit",
    "virusdetected",
    "contenterror",
    "norelaying",
    "authfailure",
    "requireptr",
    "badreputation",
    "speeding",
    "notcompliantrfc",
];

#[test]
fn every_sisimai_phrase_is_decided_as_its_reason_says_or_as_listed() {
    let c = Classifier::new();
    let cols = ["hard", "soft", "block", "complaint", "delivered"];
    let mut matrix: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    let (mut hard_total, mut hard_ok) = (0usize, 0usize);
    let (mut soft_total, mut soft_ok) = (0usize, 0usize);
    let (mut rows, mut listed) = (0usize, 0usize);
    let mut wrong = Vec::new();
    for (n, line) in PHRASES.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 5, "line {}: {line}", n + 1);
        let (source, text, reason, provider, divergence) = (f[0], f[1], f[2], f[3], f[4]);
        rows += 1;
        let got = c.classify(&SmtpEvidence {
            reported: L::Bounce,
            smtp_response: text,
            enhanced_status: None,
            provider,
        });
        let name = type_name(got.bounce_type);
        let col = cols.iter().position(|&x| x == name).unwrap();
        matrix.entry(reason).or_default()[col] += 1;
        let is_hard = got.bounce_type == T::Hard;
        if HARD_REASONS.contains(&reason) {
            hard_total += 1;
            hard_ok += is_hard as usize;
        }
        if NOT_HARD_REASONS.contains(&reason) {
            soft_total += 1;
            soft_ok += !is_hard as usize;
        }
        let ok = if !divergence.is_empty() {
            listed += 1;
            let want = divergence.split('/').next().unwrap_or_default();
            want == name
        } else if HARD_REASONS.contains(&reason) {
            is_hard
        } else if NOT_HARD_REASONS.contains(&reason) {
            !is_hard
        } else {
            true
        };
        if !ok {
            wrong.push(format!(
                "  line {}: {source} {reason} ours {name}/{:?} by {}: {text}{}",
                n + 1,
                got.reason,
                got.rule_id,
                if divergence.is_empty() {
                    String::new()
                } else {
                    format!(" (listed: {divergence})")
                }
            ));
        }
    }
    print_matrix(
        &format!("Sisimai reason × our type ({rows} phrases)"),
        &matrix,
    );
    println!(
        "\naddress-level reasons hard: {hard_ok}/{hard_total} = {:.2} %",
        100.0 * hard_ok as f64 / hard_total as f64
    );
    println!(
        "sender-side, message and temporary reasons not hard: {soft_ok}/{soft_total} = {:.2} %",
        100.0 * soft_ok as f64 / soft_total as f64
    );
    println!("rows where we differ on purpose (divergence column): {listed}");
    assert!(
        wrong.is_empty(),
        "{} phrases decided otherwise than their reason or listed divergence:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
