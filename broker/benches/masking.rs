//! What the masking layer adds to one upstream answer, in process: a tool
//! result of 4 KiB and of 1 MiB, with no protected data and with a
//! customer record in every line. Timed from the message the pipeline has
//! already parsed (it parses every upstream message once, masking or not)
//! to the bytes delivered, so a changed message's re-serialisation counts.
//! `off` is the same path with masking turned off.
//!
//! Run: `cargo bench -p hoop-broker --bench masking`. Figures in
//! docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hoop_broker::masking::Masking;
use hoop_broker::mcp::server::ServerMessage;
use hoop_masking::{HashKey, MaskingProfile, ProfileConfig};

const CLEAN: &str = "The quarterly reconciliation completed for branch 42 with 318 items matched, \
                     total 1234567.89 USD, batch 2026-12-03T10:42:00Z, request 8f14e45f-ceea.\n";
const DIRTY: &str =
    "Jane Sample card 4111 1111 1111 1111 SSN 078-05-1120 IBAN GB82WEST12345698765432 \
                     account 000123456789 mail jane.sample@example.com.\n";

/// A JSON-RPC tool result whose text is `line` repeated to about `size` bytes.
fn answer(line: &str, size: usize) -> Bytes {
    let text: String = line.repeat(size / line.len() + 1);
    let v = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": text}], "isError": false}});
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn masking(c: &mut Criterion) {
    let profile = MaskingProfile::compile(
        "default",
        &ProfileConfig::default(),
        HashKey::from_bytes([7; 32]),
    )
    .expect("the default profile compiles");
    let on = Masking::new(profile);
    let off = Masking::off();
    let mut g = c.benchmark_group("masking_layer");
    for (size, label) in [(4096, "4k"), (1 << 20, "1m")] {
        for (kind, line) in [("clean", CLEAN), ("dirty", DIRTY)] {
            let raw = answer(line, size);
            g.throughput(Throughput::Bytes(raw.len() as u64));
            for (mode, m) in [("on", &on), ("off", &off)] {
                if mode == "off" && kind == "dirty" {
                    continue; // off does not look: clean and dirty cost the same
                }
                g.bench_function(format!("{kind}_{label}_{mode}"), |b| {
                    b.iter_batched_ref(
                        || ServerMessage::parse(raw.clone()),
                        |msg| {
                            let summary = m.default_masker().response(msg, false);
                            black_box(summary.is_ok());
                            black_box(msg.delivered())
                        },
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    targets = masking
}
criterion_main!(benches);
