//! Frame codec cost: encode and decode of the frames every tools/call
//! crosses the tunnel with (an Open, a Message each way).
//!
//! Run: `cargo bench -p hoop-proto --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hoop_proto::{encode, Decoder, Frame, McpHeaders, McpMessage, OpenStream, StreamKind};

/// A JSON-looking body of exactly `len` bytes.
fn body(len: usize) -> Bytes {
    let head = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""#;
    let tail = br#""}]}}"#;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(head);
    v.resize(len.saturating_sub(tail.len()), b'x');
    v.extend_from_slice(tail);
    v.truncate(len);
    Bytes::from(v)
}

fn open_frame() -> Frame {
    Frame::Open(OpenStream {
        target: "demo".into(),
        kind: StreamKind::Post,
        headers: McpHeaders {
            protocol_version: Some("2026-07-28".into()),
            session_id: None,
            method: Some("tools/call".into()),
            name: Some("echo".into()),
            params: Vec::new(),
            last_event_id: None,
        },
    })
}

fn wire(frame: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    encode(frame, &mut b);
    b
}

fn bench_frame(c: &mut Criterion, name: &str, frame: &Frame, bytes: Option<u64>) {
    let mut g = c.benchmark_group(name);
    if let Some(n) = bytes {
        g.throughput(Throughput::Bytes(n));
    }
    let mut out = BytesMut::with_capacity(128 * 1024);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(frame), &mut out);
            black_box(out.len())
        })
    });
    let on_wire = wire(frame);
    let decoder = Decoder::default();
    // The copy into a fresh buffer is setup, not measured: the decoder
    // splits frames off the reader's buffer as they arrive.
    g.bench_function("decode", |b| {
        b.iter_batched_ref(
            || on_wire.clone(),
            |buf| black_box(decoder.decode(buf)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    for (name, len) in [("message_200B", 200usize), ("message_64KiB", 64 * 1024)] {
        let frame = Frame::Message(McpMessage {
            event_id: None,
            body: body(len),
        });
        bench_frame(c, name, &frame, Some(len as u64));
    }
    bench_frame(c, "open", &open_frame(), None);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = codec
}
criterion_main!(benches);
