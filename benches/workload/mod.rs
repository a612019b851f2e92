//! The workloads shared by the CPU benchmarks (`benches/classify.rs`, `benches/normalize.rs`)
//! and the instruction-count driver (`examples/classify_count.rs`), so they all measure the
//! same inputs. Each includes this file with `#[path]` and uses the parts it needs.
#![allow(dead_code)]

use std::hint::black_box;

use suppressd::classify::Classifier;
use suppressd::domain::{ReportedOutcome, SmtpEvidence};

const CORPUS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sisimai-diagnostics.tsv"
));

/// (diagnostic, enhanced status) of every corpus row.
pub fn corpus_rows() -> Vec<(&'static str, Option<&'static str>)> {
    CORPUS
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[3], (!f[2].is_empty()).then_some(f[2]))
        })
        .collect()
}

/// `n` recipient addresses: plain ASCII addresses in mixed case with surrounding blanks over
/// six domains, two of which are internationalized (so about a third of the mix takes the
/// IDNA path), and one address in 50 invalid. A stress mix for normalization: real lists
/// hold far fewer internationalized domains.
pub fn address_mix(n: usize) -> Vec<String> {
    let domains = [
        "gmail.com",
        "Example.COM",
        "company.co.uk",
        "bücher.example",
        "mail.ru",
        "xn--bcher-kva.example",
    ];
    mix(n, &domains, Some(domains[3]))
}

/// `n` recipient addresses as most lists hold them: the mix of [`address_mix`] without the
/// internationalized domains (plain ASCII, mixed case, surrounding blanks, one in 50 invalid).
pub fn address_mix_ascii(n: usize) -> Vec<String> {
    let domains = [
        "gmail.com",
        "Example.COM",
        "company.co.uk",
        "mail.ru",
        "yahoo.fr",
        "outlook.com",
    ];
    mix(n, &domains, None)
}

/// One address in 50 invalid, one in 50 `Jane.Doe+i@` at `plus_domain` (or the rotating
/// domain), the rest padded mixed-case addresses over `domains` in turn.
fn mix(n: usize, domains: &[&str], plus_domain: Option<&str>) -> Vec<String> {
    (0..n)
        .map(|i| {
            let domain = domains[i % domains.len()];
            match i % 50 {
                0 => format!("broken-{i}-at-example.com"),
                1 => format!("Jane.Doe+{i}@{}", plus_domain.unwrap_or(domain)),
                _ => format!("  User.{i}_Name@{domain} "),
            }
        })
        .collect()
}

/// Classifies one corpus row as a bounce the reporter did not label further.
pub fn classify_row(classifier: &Classifier, (text, status): (&str, Option<&str>)) {
    let ev = SmtpEvidence {
        reported: ReportedOutcome::Bounce,
        smtp_response: black_box(text),
        enhanced_status: status,
        provider: "",
    };
    black_box(classifier.classify(&ev));
}
