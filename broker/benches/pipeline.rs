//! CPU cost of the broker's per-message checks on a typical tools/call:
//! the one canonical parse, the header check, the derivation of the
//! upstream's headers, and the canonical re-serialization sent upstream.
//!
//! Run: `cargo bench -p hoop-broker --bench pipeline`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hoop_broker::mcp::message::McpMessage;
use hoop_broker::pipeline::headers;
use hoop_proto::McpHeaders;

/// The same request tests/bench/run.sh sends to the demo server.
const TOOLS_CALL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;

fn pipeline(c: &mut Criterion) {
    let msg = McpMessage::parse(TOOLS_CALL).expect("the benchmark body parses");
    let client_headers = McpHeaders {
        protocol_version: Some("2026-07-28".into()),
        session_id: None,
        method: Some("tools/call".into()),
        name: Some("echo".into()),
        params: Vec::new(),
        last_event_id: None,
    };
    headers::check(&msg, &client_headers, None).expect("the benchmark headers agree with the body");

    let mut g = c.benchmark_group("tools_call");
    g.bench_function("parse", |b| {
        b.iter(|| black_box(McpMessage::parse(black_box(TOOLS_CALL))))
    });
    g.bench_function("headers_check", |b| {
        b.iter(|| {
            black_box(headers::check(
                black_box(&msg),
                black_box(&client_headers),
                None,
            ))
        })
    });
    g.bench_function("headers_derive", |b| {
        b.iter(|| black_box(headers::derive(black_box(&msg), None, None)))
    });
    g.bench_function("to_bytes", |b| {
        b.iter(|| black_box(black_box(&msg).to_bytes()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = pipeline
}
criterion_main!(benches);
