//! Address normalizations per second (`cargo bench --bench normalize`), on a realistic mix:
//! mostly plain ASCII addresses in mixed case, some internationalized domains, some invalid.
//! The "thrpt" line is in elements (addresses) per second, on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use suppressd::domain::EmailAddress;

fn addresses() -> Vec<String> {
    let domains = [
        "gmail.com",
        "Example.COM",
        "company.co.uk",
        "bücher.example",
        "mail.ru",
        "xn--bcher-kva.example",
    ];
    (0..1000)
        .map(|i| match i % 50 {
            0 => format!("broken-{i}-at-example.com"),
            1 => format!("Jane.Doe+{i}@{}", domains[3]),
            _ => format!("  User.{i}_Name@{} ", domains[i % domains.len()]),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let addresses = addresses();
    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(addresses.len() as u64));
    group.bench_function("mixed_1000", |b| {
        b.iter(|| {
            for a in &addresses {
                let _ = black_box(EmailAddress::parse(black_box(a)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
