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
use suppressd::domain::EmailAddress;

#[path = "workload/mod.rs"]
mod workload;

use workload::{address_mix, address_mix_ascii, classify_row, corpus_rows};

fn bench(c: &mut Criterion) {
    let classifier = Classifier::new();
    let rows = corpus_rows();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("sisimai_corpus", |b| {
        b.iter(|| {
            for &row in &rows {
                classify_row(&classifier, row);
            }
        })
    });
    group.finish();

    // what one reported send result costs before storage: its address and its response
    // with the stress mix of addresses (a third internationalized) and with plain ASCII ones
    let mut group = c.benchmark_group("normalize_and_classify");
    group.throughput(Throughput::Elements(rows.len() as u64));
    for (name, addresses) in [
        ("sisimai_corpus", address_mix(rows.len())),
        (
            "sisimai_corpus_ascii_addresses",
            address_mix_ascii(rows.len()),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for (&row, address) in rows.iter().zip(&addresses) {
                    let _ = black_box(EmailAddress::parse(black_box(address)));
                    classify_row(&classifier, row);
                }
            })
        });
    }
    group.finish();

    c.bench_function("classify/compile_rules", |b| b.iter(Classifier::new));
}

criterion_group!(benches, bench);
criterion_main!(benches);
