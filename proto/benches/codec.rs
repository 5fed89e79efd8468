//! Frame codec cost: encode and decode of the frames every tools/call
//! crosses the tunnel with (an Open, a Message each way).
//!
//! Run: `cargo bench -p hoop-proto --bench codec`.
//!
//! Encoding a Message copies its body, so the 64 KiB case is a 64 KiB
//! `memcpy`, whose speed on some CPUs depends on where source and
//! destination sit within a 4 KiB page: on the AMD EPYC these figures were
//! taken on, glibc's `rep movsb` copy is >10x slower when the destination is
//! a few bytes past the source modulo 4096 ("4K aliasing"). The body is
//! therefore placed explicitly: `encode` with source and destination half a
//! page apart, `encode_4k_aliased` with them 6 bytes apart (the frame header
//! length), which is where an allocator that page-aligns both buffers puts
//! them. See docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hoop_proto::{encode, Decoder, Frame, McpHeaders, McpMessage, OpenStream, StreamKind};

/// Bytes a Message frame puts before its body: length, type, event-id flag.
const MESSAGE_HEADER_LEN: usize = 4 + 1 + 1;

/// A JSON-looking body of exactly `len` bytes starting at `page_offset`
/// within a 4 KiB page.
fn body_at(len: usize, page_offset: usize) -> Bytes {
    let head = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""#;
    let tail = br#""}]}}"#;
    let mut v = vec![b'x'; len + 8192];
    let skip = (page_offset + 4096 - v.as_ptr() as usize % 4096) % 4096;
    v[skip..skip + head.len().min(len)].copy_from_slice(&head[..head.len().min(len)]);
    if len >= head.len() + tail.len() {
        v[skip + len - tail.len()..skip + len].copy_from_slice(tail);
    }
    Bytes::from(v).slice(skip..skip + len)
}

fn message(body: Bytes) -> Frame {
    Frame::Message(McpMessage {
        event_id: None,
        body,
    })
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

fn bench_encode(c: &mut Criterion, group: &str, name: &str, frame: &Frame, out: &mut BytesMut) {
    let mut g = c.benchmark_group(group);
    if let Frame::Message(m) = frame {
        g.throughput(Throughput::Bytes(m.body.len() as u64));
    }
    g.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(frame), out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_decode(c: &mut Criterion, group: &str, frame: &Frame) {
    let mut on_wire = BytesMut::new();
    encode(frame, &mut on_wire);
    let decoder = Decoder::default();
    let mut g = c.benchmark_group(group);
    if let Frame::Message(m) = frame {
        g.throughput(Throughput::Bytes(m.body.len() as u64));
    }
    // The copy into a fresh buffer is setup, not measured: the decoder
    // splits frames off the reader's buffer as they arrive, without copying.
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
    let mut out = BytesMut::with_capacity(128 * 1024);
    let dst = (out.as_ptr() as usize + MESSAGE_HEADER_LEN) % 4096;
    for (group, len) in [("message_200B", 200usize), ("message_64KiB", 64 * 1024)] {
        let frame = message(body_at(len, (dst + 2048) % 4096));
        bench_encode(c, group, "encode", &frame, &mut out);
        if len > 4096 {
            let aliased = message(body_at(len, out.as_ptr() as usize % 4096));
            bench_encode(c, group, "encode_4k_aliased", &aliased, &mut out);
        }
        bench_decode(c, group, &frame);
    }
    let open = open_frame();
    bench_encode(c, "open", "encode", &open, &mut out);
    bench_decode(c, "open", &open);
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
