//! What the audit layer costs one tools/call on the request path, in
//! process: recording its request event (before the call is forwarded)
//! and its answer's event (before the answer is delivered), as
//! `pipeline/` calls `Audit::request` and `Audit::response`, into a SQLite
//! log at each durability level. The writer thread applies the records to
//! SQLite on its own thread, mostly inside the untimed flushes between
//! timed calls: neither its CPU nor how it disturbs the request path is
//! in these figures (`cargo bench -p hoop-audit-log --bench append --
//! apply` measures its CPU; the end-to-end benchmark the rest).
//!
//! `events_built` is the part of that which is CPU alone: the same two
//! events made into log entries (`Event::entry`), not written.
//!
//! Run: `cargo bench -p hoop-broker --bench audit`. Figures in
//! docs/benchmarks.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use hoop_audit_log::{AuditLog, Durability, LogConfig};
use hoop_broker::audit::event::{Actor, Event, EventKind};
use hoop_broker::audit::{Audit, AuditLocation, RequestFacts};
use hoop_broker::identity::{Caller, VerifiedToken};
use hoop_broker::masking::Masking;
use hoop_broker::mcp::message::McpMessage;
use hoop_broker::mcp::server::ServerMessage;
use hoop_broker::policy::Decision;
use hoop_proto::frame::{Identity, IdentityKind};

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;
const ANSWER: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Echo: hi"}]}}"#;

/// Calls between two untimed flushes: well under the log's queue (four
/// batches of 4,096 events), so no timed call waits for room in it.
const FLUSH_EVERY: u64 = 1000;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn caller() -> Caller {
    let token = VerifiedToken {
        identity: Identity {
            subject: "alice@bank.example".into(),
            email: Some("alice@bank.example".into()),
            groups: vec!["payments".into(), "oncall".into()],
            issuer: "https://idp.bank.example".into(),
            kind: IdentityKind::Human,
        },
        expires_at: u64::MAX,
        token_id: "3f2a9c".into(),
    };
    let remote: SocketAddr = ([127, 0, 0, 1], 51234).into();
    Caller::new(token, remote, "hoop/0.1.0".into())
}

fn audit_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let caller = caller();
    let msg = McpMessage::parse(REQUEST).expect("the request parses");
    let body = msg.to_bytes();
    let decision = Decision::Allow {
        rule: "payments-read".into(),
    };
    let masking = Arc::new(Masking::off());
    let mut g = c.benchmark_group("audit_layer");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("events_built", |b| {
        let answer = ServerMessage::parse(Bytes::from_static(ANSWER));
        let exchange = "00000000deadbeef";
        b.iter(|| {
            // As `Audit::request` and `Audit::response` fill them.
            let on_exchange = |kind, latency_us| {
                let mut e = Event::now(kind);
                e.exchange = Some(exchange);
                e.actor = Some(Actor::of(&caller));
                e.target = Some("demo");
                e.jsonrpc_id = msg.id.as_ref();
                e.method = msg.method.as_deref();
                e.name = msg.item.as_deref();
                e.latency_us = Some(latency_us);
                e
            };
            let mut request = on_exchange(EventKind::Request, 3);
            request.decision = Some("allow");
            request.rule = Some(decision.rule());
            request.bytes = Some(body.len());
            let request = request.entry(Some(&body)).expect("an entry");
            let mut response = on_exchange(EventKind::Response, 250);
            response.outcome = Some("ok");
            response.bytes = Some(ANSWER.len());
            let line = hoop_broker::audit::event::one_line(ANSWER, answer.value());
            let response = response.entry(Some(&line)).expect("an entry");
            std::hint::black_box((request, response))
        });
    });
    for durability in [Durability::Os, Durability::Fsync] {
        let dir = TempDir(std::env::temp_dir().join(format!(
            "hoop-audit-layer-bench-{}-{}",
            durability.as_str(),
            std::process::id()
        )));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).expect("a scratch dir");
        let db = dir.0.join("audit.db");
        let log = AuditLog::open_sqlite(
            &db,
            &dir.0.join("audit-signing.key"),
            LogConfig {
                durability,
                ..LogConfig::default()
            },
        )
        .expect("the log opens");
        let audit = Audit::new(
            log.clone(),
            AuditLocation::Sqlite(db),
            Vec::new(),
            masking.clone(),
        );
        let masker = masking.default_masker();
        g.bench_function(format!("tools_call_{}", durability.as_str()), |b| {
            b.iter_custom(|iters| {
                let answer = ServerMessage::parse(Bytes::from_static(ANSWER));
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    // Untimed: the writer thread catches up, as it does
                    // behind a broker's few thousand calls a second. Timed
                    // back to back, the calls would fill the queue and wait
                    // for the writer, measuring its rate instead.
                    if i % FLUSH_EVERY == 0 {
                        runtime.block_on(log.flush()).expect("the log is flushed");
                    }
                    let start = Instant::now();
                    let exchange = audit.exchange();
                    let facts = RequestFacts {
                        caller: &caller,
                        target: "demo",
                        exchange: &exchange,
                        session: None,
                        msg: &msg,
                    };
                    runtime.block_on(async {
                        audit
                            .request(&facts, &body, &decision, masker, None)
                            .await
                            .expect("the request is recorded");
                        audit
                            .response(&facts, &answer, ANSWER, None)
                            .await
                            .expect("the answer is recorded");
                    });
                    spent += start.elapsed();
                }
                spent
            });
        });
        runtime
            .block_on(log.shutdown())
            .expect("the log shuts down");
    }
    g.finish();
}

criterion_group!(benches, audit_layer);
criterion_main!(benches);
