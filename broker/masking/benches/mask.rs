//! Masking throughput: `cargo bench -p hoop-masking --bench mask`.
//! Figures and the aims they are held to are in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hoop_masking::{HashKey, MaskReport, MaskingProfile, ProfileConfig};
use serde_json::Value;

/// A tool result of about 4 KiB of ordinary text, no protected data.
fn clean_result() -> Value {
    let line = "The quarterly reconciliation completed for branch 42 with 318 items matched, \
                total 1234567.89 USD, batch 2026-12-03T10:42:00Z, request 8f14e45f-ceea.\n";
    let text: String = line.repeat(4096 / line.len() + 1);
    serde_json::json!({"content": [{"type": "text", "text": text}], "isError": false})
}

/// The same size, with a customer record in every line.
fn dirty_result() -> Value {
    let line = "Jane Sample card 4111 1111 1111 1111 SSN 078-05-1120 IBAN GB82WEST12345698765432 \
                account 000123456789 mail jane.sample@example.com.\n";
    let text: String = line.repeat(4096 / line.len() + 1);
    serde_json::json!({"content": [{"type": "text", "text": text}], "isError": false})
}

fn bench(c: &mut Criterion) {
    let profile = MaskingProfile::compile(
        "default",
        &ProfileConfig::default(),
        HashKey::from_bytes([7; 32]),
    )
    .expect("the default profile compiles");
    let mut group = c.benchmark_group("mask");
    for (name, value) in [("clean_4k", clean_result()), ("dirty_4k", dirty_result())] {
        let bytes = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0) as u64;
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || value.clone(),
                |v| {
                    let mut report = MaskReport::default();
                    profile.mask_value(v, &[], &mut report)
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
