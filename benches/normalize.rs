//! Address normalizations per second (`cargo bench --bench normalize`), on the stress mix of
//! `workload::address_mix`: plain ASCII addresses in mixed case, a third internationalized
//! domains, some invalid.
//! The "thrpt" line is in elements (addresses) per second, on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use suppressd::domain::EmailAddress;

#[path = "workload/mod.rs"]
mod workload;

fn bench(c: &mut Criterion) {
    let addresses = workload::address_mix(1000);
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
