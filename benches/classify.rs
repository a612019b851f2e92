//! Classifications per second on the Sisimai corpus rows (tests/data/sisimai-diagnostics.tsv),
//! and the per-event pipeline: one recipient address normalized and one SMTP response
//! classified per item.
//!
//! `cargo bench --bench classify`. Criterion reports the time for one pass over all rows; the
//! "thrpt" line is in elements (classifications, or address + classification items) per
//! second, on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use suppressd::classify::Classifier;
use suppressd::domain::{EmailAddress, ReportedOutcome, SmtpEvidence};

const CORPUS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sisimai-diagnostics.tsv"
));

/// (diagnostic, status) of every corpus row.
fn rows() -> Vec<(&'static str, Option<&'static str>)> {
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

/// One recipient address per corpus row, the mix of `benches/normalize.rs`: mostly plain
/// ASCII addresses in mixed case with surrounding blanks, some internationalized domains,
/// some invalid.
fn addresses(n: usize) -> Vec<String> {
    let domains = [
        "gmail.com",
        "Example.COM",
        "company.co.uk",
        "bücher.example",
        "mail.ru",
        "xn--bcher-kva.example",
    ];
    (0..n)
        .map(|i| match i % 50 {
            0 => format!("broken-{i}-at-example.com"),
            1 => format!("Jane.Doe+{i}@{}", domains[3]),
            _ => format!("  User.{i}_Name@{} ", domains[i % domains.len()]),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let classifier = Classifier::new();
    let rows = rows();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("sisimai_corpus", |b| {
        b.iter(|| {
            for &(text, status) in &rows {
                let ev = SmtpEvidence {
                    reported: ReportedOutcome::Bounce,
                    smtp_response: black_box(text),
                    enhanced_status: status,
                    provider: "",
                };
                black_box(classifier.classify(&ev));
            }
        })
    });
    group.finish();

    // what one reported send result costs before storage: its address and its response
    let addresses = addresses(rows.len());
    let mut group = c.benchmark_group("normalize_and_classify");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("sisimai_corpus", |b| {
        b.iter(|| {
            for (&(text, status), address) in rows.iter().zip(&addresses) {
                let _ = black_box(EmailAddress::parse(black_box(address)));
                let ev = SmtpEvidence {
                    reported: ReportedOutcome::Bounce,
                    smtp_response: black_box(text),
                    enhanced_status: status,
                    provider: "",
                };
                black_box(classifier.classify(&ev));
            }
        })
    });
    group.finish();

    c.bench_function("classify/compile_rules", |b| b.iter(Classifier::new));
}

criterion_group!(benches, bench);
criterion_main!(benches);
