//! Durable appends per second through `AuditLog` with many concurrent
//! appenders (group commit), at both durability levels; what the SQLite
//! store alone spends per event applying batches as the writer thread does
//! behind the journal (the CPU that competes with the request path); and
//! the rate of offline verification of an export.
//!
//!     cargo bench -p hoop-audit-log --bench append

#![allow(clippy::unwrap_used)] // a benchmark: a failure should panic

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hoop_audit_log::{
    export_jsonl, verify_export, AuditLog, AuditStore, Durability, EntryIndex, ExportRange,
    LogConfig, PendingEntry, SqliteStore,
};

/// Tasks appending at once, as many requests in flight.
const APPENDERS: usize = 4096;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("hoop-audit-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `mcp.request` event of about 600 bytes, as the broker records one:
/// exchange `i` from one counter shared by every task and the time now, as
/// the broker stamps them, so both index columns grow as they do in a real
/// log. (Numbering each task's events from its own range instead scatters
/// the `time_ns` and `exchange` index inserts over the whole index, and a
/// batch of 4,096 rewrote ~3,600 old index pages; no broker writes that.)
fn event(i: u64) -> PendingEntry {
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let fields = format!(
        concat!(
            r#"{{"v":1,"time":"2026-12-03T09:25:53.{:09}Z","type":"mcp.request","exchange":"{:016x}","#,
            r#""actor":{{"sub":"alice@bank.example","email":"alice@bank.example","groups":["payments","oncall"],"#,
            r#""iss":"https://idp.bank.example","kind":"human","jti":"3f2a9c","addr":"10.1.2.3:51234","client":"hoop/0.1.0"}},"#,
            r#""target":"files","session":"s-81c2","jsonrpc_id":{},"method":"tools/call","name":"read_file","#,
            r#""decision":"allow","rule":"payments-read","bytes":180,"#,
            r#""message":{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":"/srv/reports/2026-12-03.csv"}}}}}}}}"#
        ),
        time_ns % 1_000_000_000,
        i,
        i,
        i
    );
    PendingEntry {
        fields: fields.into_bytes(),
        bodies: Vec::new(),
        index: EntryIndex {
            time_ns,
            kind: "mcp.request".into(),
            subject: Some("alice@bank.example".into()),
            target: Some("files".into()),
            name: Some("read_file".into()),
            decision: Some("allow".into()),
            exchange: Some(format!("{i:016x}")),
            session: Some("s-81c2".into()),
        },
    }
}

/// `iters` appends spread over `APPENDERS` tasks; the time until all are
/// durable. `next` numbers the events, as the broker's exchange counter.
async fn append_many(log: &AuditLog, iters: u64, next: &Arc<AtomicU64>) -> Duration {
    let tasks = (APPENDERS as u64).min(iters.max(1));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks as usize);
    for t in 0..tasks {
        let log = log.clone();
        let next = next.clone();
        let count = iters / tasks + u64::from(t < iters % tasks);
        handles.push(tokio::spawn(async move {
            for _ in 0..count {
                let i = next.fetch_add(1, Ordering::Relaxed);
                log.append(event(i)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

/// Events per batch in `apply`: what the writer gathered in 20 ms at
/// about 6,000 events a second, before it waited for more while they
/// keep coming (a batch of 1,024 costs nearly the same per event:
/// docs/benchmarks.md, seventh sitting).
const APPLY_BATCH: u64 = 128;

/// The store alone, as the writer thread applies journal records to it:
/// batches of `APPLY_BATCH` events, each one transaction with the
/// journal's mark, at `os` (as behind the journal). Time per event.
fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(APPLY_BATCH));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    let dir = TempDir::new("apply");
    let mut store = SqliteStore::open(&dir.0.join("audit.db"), Durability::Os).unwrap();
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("sqlite", APPLY_BATCH), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<PendingEntry> = (next..next + APPLY_BATCH).map(event).collect();
                next += APPLY_BATCH;
                let start = Instant::now();
                store
                    .append_batch_marked(&batch, "journal_applied", &next.to_string())
                    .unwrap();
                spent += start.elapsed();
            }
            spent
        });
    });
    group.finish();
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    for durability in [Durability::Fsync, Durability::Os] {
        let dir = TempDir::new(durability.as_str());
        let config = LogConfig {
            durability,
            ..LogConfig::default()
        };
        let log = AuditLog::open_sqlite(
            &dir.0.join("audit.db"),
            &dir.0.join("audit-signing.key"),
            config,
        )
        .unwrap();
        let next = Arc::new(AtomicU64::new(0));
        group.bench_function(BenchmarkId::new("durable", durability.as_str()), |b| {
            b.iter_custom(|iters| runtime.block_on(append_many(&log, iters, &next)));
        });
        runtime.block_on(log.shutdown()).unwrap();
    }
    group.finish();
}

fn verification(c: &mut Criterion) {
    const EVENTS: u64 = 20_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = TempDir::new("verify");
    let db = dir.0.join("audit.db");
    let log = AuditLog::open_sqlite(
        &db,
        &dir.0.join("audit-signing.key"),
        LogConfig {
            durability: Durability::Os,
            ..LogConfig::default()
        },
    )
    .unwrap();
    runtime.block_on(async {
        append_many(&log, EVENTS, &Arc::new(AtomicU64::new(0))).await;
        log.shutdown().await.unwrap();
    });
    let key = vec![log.verifier_key().to_owned()];
    let store = SqliteStore::open_read_only(&db).unwrap();
    let mut export = Vec::new();
    let started = Instant::now();
    export_jsonl(&store, ExportRange::All, None, &mut export).unwrap();
    eprintln!(
        "export: {EVENTS} events, {} MB, in {:?}",
        export.len() / 1_000_000,
        started.elapsed()
    );

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("export", |b| {
        b.iter(|| {
            let report = verify_export(export.as_slice(), &key).unwrap();
            assert_eq!(report.events, EVENTS);
        })
    });
    group.bench_function("store", |b| {
        b.iter(|| {
            let report = hoop_audit_log::verify_store(&store, &key).unwrap();
            assert_eq!(report.events, EVENTS);
        })
    });
    group.bench_function("write_export", |b| {
        b.iter(|| export_jsonl(&store, ExportRange::All, None, std::io::sink()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, appends, apply, verification);
criterion_main!(benches);
